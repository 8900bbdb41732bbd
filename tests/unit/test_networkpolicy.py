"""NetworkPolicy: the defaults, rejections and `kubectl get netpol` row of a real cluster,
and the warning that says this cluster stores policies without enforcing them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pilothouse.apiserver.printers import table_spec_for
from pilothouse.apiserver.registry.builtin import BUILTIN_RESOURCES
from pilothouse.apiserver.registry.defaults import DEFAULTERS
from pilothouse.apiserver.registry.validation import (
    UPDATE_VALIDATORS,
    VALIDATORS,
    WARNINGS,
    validate_object_meta,
)
from pilothouse.apiserver.registry.validation_networking import NOT_ENFORCED, parse_cidr

KEY = ("networking.k8s.io", "NetworkPolicy")
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NETPOL = next(r for r in BUILTIN_RESOURCES if r.kind == "NetworkPolicy")


def policy(**spec) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "np", "namespace": "default"}, "spec": spec}


def errors_of(obj: dict) -> list[str]:
    """What the API server runs on create: defaults, metadata, then the kind's rules."""
    DEFAULTERS[KEY](obj)
    causes = validate_object_meta(obj, namespaced=True) + VALIDATORS[KEY](obj)
    return [c.render() for c in causes]


def ingress_from(*peers: dict, ports: list[dict] | None = None) -> dict:
    return policy(ingress=[{"from": list(peers), "ports": ports or []}])


# -- resource ---------------------------------------------------------------------------


def test_served_as_kubectl_api_resources_lists_it() -> None:
    assert (NETPOL.group, NETPOL.version, NETPOL.plural, NETPOL.singular) == (
        "networking.k8s.io", "v1", "networkpolicies", "networkpolicy")
    assert NETPOL.namespaced and NETPOL.short_names == ("netpol",)
    assert not NETPOL.subresources and not NETPOL.categories
    assert KEY not in UPDATE_VALIDATORS  # 1.32 has no update-only rule


# -- defaults ---------------------------------------------------------------------------


def test_empty_policy_denies_ingress_to_every_pod() -> None:
    obj = {"metadata": {"name": "deny"}}
    DEFAULTERS[KEY](obj)
    assert obj["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}


def test_egress_rules_add_egress_type_and_ports_default_to_tcp() -> None:
    obj = policy(podSelector={"matchLabels": {"app": "db"}},
                 ingress=[{"ports": [{"port": 5432}, {"port": 53, "protocol": "UDP"}]}],
                 egress=[{"ports": [{"port": "dns"}]}])
    DEFAULTERS[KEY](obj)
    spec = obj["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert [p["protocol"] for p in spec["ingress"][0]["ports"]] == ["TCP", "UDP"]
    assert spec["egress"][0]["ports"] == [{"port": "dns", "protocol": "TCP"}]


def test_given_policy_types_are_kept_and_defaulting_is_idempotent() -> None:
    obj = policy(podSelector={}, egress=[{}], policyTypes=["Egress"])
    DEFAULTERS[KEY](obj)
    first = repr(obj)
    DEFAULTERS[KEY](obj)
    assert obj["spec"]["policyTypes"] == ["Egress"] and repr(obj) == first


# -- validation -------------------------------------------------------------------------


def test_real_world_policies_are_valid() -> None:
    allow = ingress_from(
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
         "podSelector": {"matchExpressions": [{"key": "app", "operator": "In",
                                               "values": ["prometheus"]}]}},
        {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "10.2.3.0/24"]}},
        ports=[{"port": 8080}, {"port": 32000, "endPort": 32768}, {"port": "metrics"}],
    )
    assert errors_of(allow) == []
    assert errors_of(policy(podSelector={}, policyTypes=["Ingress", "Egress"])) == []
    v6 = ingress_from({"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:1::/48"]}})
    assert errors_of(v6) == []


@pytest.mark.parametrize(("block", "message"), [
    ({"cidr": "192.168.0.0/16", "except": ["10.0.0.0/24"]},
     'spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "10.0.0.0/24": '
     "must be a strict subset of `cidr`"),
    ({"cidr": "10.0.0.0/24", "except": ["10.0.0.0/24"]},
     'spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "10.0.0.0/24": '
     "must be a strict subset of `cidr`"),
    ({"cidr": "10.0.0.0/8", "except": ["2001:db8::/64"]},
     'spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "2001:db8::/64": '
     "must be a strict subset of `cidr`"),
    ({"cidr": "10.0.0.0"},
     'spec.ingress[0].from[0].ipBlock.cidr: Invalid value: "10.0.0.0": not a valid CIDR'),
    ({"cidr": "10.0.0.0/8", "except": ["nope"]},
     'spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "nope": not a valid CIDR'),
    ({"except": ["10.0.0.0/24"]}, "spec.ingress[0].from[0].ipBlock.cidr: Required value"),
])
def test_ip_block_rules(block: dict, message: str) -> None:
    assert errors_of(ingress_from({"ipBlock": block})) == [message]


def test_cidrs_are_read_as_go_reads_them() -> None:
    assert str(parse_cidr("10.0.0.1/8")) == "10.0.0.0/8"  # host bits allowed
    assert str(parse_cidr("010.000.0.0/8")) == "10.0.0.0/8"  # ParseCIDRSloppy
    assert parse_cidr("10.0.0.0/33") is None
    assert parse_cidr("10.0.0.0") is None
    assert parse_cidr(8) is None


@pytest.mark.parametrize(("port", "messages"), [
    ({"port": 8080, "endPort": 80},
     ["spec.ingress[0].ports[0].endPort: Invalid value: 80: "
      "must be greater than or equal to `port`"]),
    ({"port": 80, "endPort": 70000},
     ["spec.ingress[0].ports[0].endPort: Invalid value: 70000: "
      "must be between 1 and 65535, inclusive"]),
    ({"port": "http", "endPort": 90},
     ["spec.ingress[0].ports[0].endPort: Invalid value: 90: "
      "may not be specified when `port` is non-numeric"]),
    ({"endPort": 90},
     ["spec.ingress[0].ports[0].endPort: Invalid value: 90: "
      "may not be specified when `port` is not specified"]),
    ({"port": 0},
     ["spec.ingress[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"]),
    ({"port": "Web_Port"},
     ['spec.ingress[0].ports[0].port: Invalid value: "Web_Port": '
      "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"]),
    ({"port": 80, "protocol": "ICMP"},
     ['spec.ingress[0].ports[0].protocol: Unsupported value: "ICMP": '
      'supported values: "TCP", "UDP", "SCTP"']),
])
def test_port_rules(port: dict, messages: list[str]) -> None:
    assert errors_of(policy(ingress=[{"ports": [port]}])) == messages


def test_peers_need_exactly_one_kind_when_one_is_an_ip_block() -> None:
    assert errors_of(policy(egress=[{"to": [{}]}])) == [
        "spec.egress[0].to[0]: Required value: must specify a peer"]
    both = {"podSelector": {}, "ipBlock": {"cidr": "10.0.0.0/8"}}
    assert errors_of(policy(egress=[{"to": [both]}])) == [
        "spec.egress[0].to[0]: Forbidden: may not specify both ipBlock and another peer"]
    assert errors_of(ingress_from({"podSelector": {}, "namespaceSelector": {}})) == []


def test_selectors_and_policy_types() -> None:
    bad_selector = policy(podSelector={"matchExpressions": [{"key": "app", "operator": "In"}]})
    assert errors_of(bad_selector) == [
        "spec.podSelector.matchExpressions[0].values: Required value: "
        "must be specified when `operator` is 'In' or 'NotIn'"]
    assert errors_of(policy(policyTypes=["Ingress", "Sideways"])) == [
        'spec.policyTypes[1]: Unsupported value: "Sideways": '
        'supported values: "Ingress", "Egress"']
    too_many = errors_of(policy(policyTypes=["Ingress", "Egress", "Ingress"]))
    assert len(too_many) == 1 and too_many[0].startswith("spec.policyTypes: Invalid value: ")
    assert too_many[0].endswith("may not specify more than two policyTypes")


def test_every_write_warns_that_the_policy_is_not_enforced() -> None:
    assert WARNINGS[KEY](policy()) == [NOT_ENFORCED]
    assert "not enforced" in NOT_ENFORCED and '"' not in NOT_ENFORCED  # fits a Warning header


# -- printing ---------------------------------------------------------------------------


def test_kubectl_get_netpol_columns() -> None:
    spec = table_spec_for(NETPOL)
    assert [c["name"] for c in spec.columns] == ["Name", "Pod-Selector", "Age"]
    meta = {"name": "allow", "namespace": "default", "creationTimestamp": "2026-01-01T11:55:00Z"}
    deny = {"metadata": meta, "spec": {"podSelector": {}}}
    assert spec.row(deny, NOW) == ["allow", "<none>", "5m"]
    selected = {"metadata": meta, "spec": {"podSelector": {
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["cache"]}]}}}
    assert spec.row(selected, NOW)[1] == "app=web,tier notin (cache)"
