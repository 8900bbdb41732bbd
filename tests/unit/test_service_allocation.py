"""Services' cluster IPs and node ports: claimed as store keys on create and update,
released on delete and on failure, and refused with kube-apiserver's 422s."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator

import pytest

from pilothouse.apiserver.registry.builtin import BUILTIN_RESOURCES
from pilothouse.apiserver.registry.generic import MERGE_PATCH, GenericRegistry, WriteOptions
from pilothouse.apiserver.serviceips import (
    IP_PREFIX,
    PORT_PREFIX,
    PortRange,
    ServiceAddresses,
    parse_port_range,
    parse_service_cidr,
)
from pilothouse.machinery import errors
from pilothouse.store.sqlite import SQLiteStore

RES = {r.plural: r for r in BUILTIN_RESOURCES if r.group == ""}
SERVICES = RES["services"]


@pytest.fixture
def registry(tmp_path) -> Iterator[GenericRegistry]:
    store = SQLiteStore.open(tmp_path / "state.db")
    registry = GenericRegistry(store)
    asyncio.run(registry.create(RES["namespaces"], None, {"metadata": {"name": "ns"}},
                                WriteOptions()))
    yield registry
    asyncio.run(store.close())


def service(name: str, kind: str = "ClusterIP", ports: list | None = None, **spec) -> dict:
    return {"metadata": {"name": name},
            "spec": {"type": kind, "ports": ports or [{"name": "http", "port": 80}], **spec}}


def create(registry: GenericRegistry, obj: dict, *, dry_run: bool = False) -> dict:
    return asyncio.run(registry.create(SERVICES, "ns", obj, WriteOptions(dry_run=dry_run)))


def refused(registry: GenericRegistry, obj: dict) -> str:
    with pytest.raises(errors.APIError) as caught:
        create(registry, obj)
    assert caught.value.code == 422, caught.value
    return str(caught.value)


def patch(registry: GenericRegistry, name: str, body: dict) -> dict:
    return asyncio.run(registry.patch(SERVICES, "ns", name, MERGE_PATCH, body,
                                      WriteOptions()))[0]


def delete(registry: GenericRegistry, name: str) -> None:
    asyncio.run(registry.delete(SERVICES, "ns", name, {}, WriteOptions()))


def keys(registry: GenericRegistry) -> set[str]:
    kvs = asyncio.run(registry.store.range("/registry/ranges/")).kvs
    return {kv.key.removeprefix(IP_PREFIX).removeprefix(PORT_PREFIX) for kv in kvs}


def test_concurrent_creates_get_distinct_addresses_each_recorded(registry):
    async def fifty() -> list[dict]:
        return await asyncio.gather(*(
            registry.create(SERVICES, "ns", service(f"s{i}", "NodePort"), WriteOptions())
            for i in range(50)))

    created = asyncio.run(fifty())
    ips = {s["spec"]["clusterIP"] for s in created}
    ports = {s["spec"]["ports"][0]["nodePort"] for s in created}
    assert len(ips) == 50 and len(ports) == 50
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network("127.96.0.0/16") for ip in ips)
    assert all(30000 <= p <= 32767 for p in ports)
    assert keys(registry) == ips | {str(p) for p in ports}


def test_a_small_range_is_filled_to_the_last_address_then_full(tmp_path):
    store = SQLiteStore.open(tmp_path / "state.db")
    registry = GenericRegistry(store, service_addresses=ServiceAddresses(
        store, cluster_ip_range=ipaddress.ip_network("10.0.0.0/29"),
        node_port_range=PortRange(30000, 30001)))
    asyncio.run(registry.create(RES["namespaces"], None, {"metadata": {"name": "ns"}},
                                WriteOptions()))
    ips = {create(registry, service(f"s{i}"))["spec"]["clusterIP"] for i in range(6)}
    assert ips == {f"10.0.0.{i}" for i in range(1, 7)}  # not .0 (network) nor .7 (broadcast)
    with pytest.raises(errors.APIError) as caught:
        create(registry, service("full"))
    assert caught.value.code == 500
    assert "failed to allocate a serviceIP: range is full" in str(caught.value)
    asyncio.run(store.close())


def test_requested_ip_in_range_is_granted_and_then_taken(registry):
    assert create(registry, service("a", clusterIP="127.96.1.5"))["spec"]["clusterIPs"] == [
        "127.96.1.5"]
    assert refused(registry, service("b", clusterIP="127.96.1.5")) == (
        'Service "b" is invalid: spec.clusterIPs: Invalid value: ["127.96.1.5"]: failed to '
        'allocate IP 127.96.1.5: provided IP is already allocated')


def test_requested_ip_out_of_range_is_refused(registry):
    assert refused(registry, service("a", clusterIP="10.0.0.5")) == (
        'Service "a" is invalid: spec.clusterIPs: Invalid value: ["10.0.0.5"]: failed to '
        'allocate IP 10.0.0.5: provided IP is not in the valid range. The range of valid '
        'IPs is 127.96.0.0/16')
    assert keys(registry) == set()


def test_headless_and_external_name_services_get_no_ip(registry):
    assert create(registry, service("h", clusterIP="None"))["spec"]["clusterIP"] == "None"
    external = create(registry, {"metadata": {"name": "e"},
                                 "spec": {"type": "ExternalName", "externalName": "x.example"}})
    assert "clusterIP" not in external["spec"]
    assert keys(registry) == set()


def test_node_ports_out_of_range_or_taken_are_refused(registry):
    assert refused(registry, service("a", "NodePort", [{"port": 80, "nodePort": 99}])) == (
        'Service "a" is invalid: spec.ports[0].nodePort: Invalid value: 99: provided port is '
        'not in the valid range. The range of valid ports is 30000-32767')
    create(registry, service("b", "NodePort", [{"port": 80, "nodePort": 30080}]))
    assert refused(registry, service("c", "NodePort", [{"port": 80, "nodePort": 30080}])) == (
        'Service "c" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port '
        'is already allocated')


def test_one_node_port_serves_a_port_number_over_two_protocols(registry):
    svc = create(registry, service("dns", "NodePort", [
        {"name": "udp", "port": 53, "protocol": "UDP"},
        {"name": "tcp", "port": 53, "protocol": "TCP", "nodePort": 30053}]))
    assert [p["nodePort"] for p in svc["spec"]["ports"]] == [30053, 30053]


def test_load_balancers_may_go_without_node_ports_and_local_ones_get_a_health_check(registry):
    bare = create(registry, service("lb", "LoadBalancer", allocateLoadBalancerNodePorts=False))
    assert "nodePort" not in bare["spec"]["ports"][0]
    local = create(registry, service("local", "LoadBalancer", externalTrafficPolicy="Local"))
    health = local["spec"]["healthCheckNodePort"]
    assert 30000 <= health <= 32767 and str(health) in keys(registry)
    delete(registry, "local")
    assert str(health) not in keys(registry)


def test_a_failed_create_gives_back_what_it_claimed(registry):
    message = refused(registry, service("bad", "NodePort", [{"port": 80, "nodePort": 30001},
                                                            {"port": 81}],
                                        clusterIP="127.96.2.2"))
    assert "spec.ports[0].name: Required value" in message  # validation, after allocation
    assert keys(registry) == set()
    create(registry, service("taken"))
    with pytest.raises(errors.APIError) as caught:  # the store refuses: name exists
        create(registry, service("taken", "NodePort", [{"port": 80, "nodePort": 30002}],
                                 clusterIP="127.96.2.3"))
    assert caught.value.code == 409
    assert not {"30002", "127.96.2.3"} & keys(registry)


def test_dry_run_checks_but_claims_nothing(registry):
    create(registry, service("a", clusterIP="127.96.3.3"))
    dry = create(registry, service("b", "NodePort"), dry_run=True)
    assert dry["spec"]["clusterIP"] and dry["spec"]["ports"][0]["nodePort"]
    assert keys(registry) == {"127.96.3.3"}
    with pytest.raises(errors.APIError) as caught:
        create(registry, service("c", clusterIP="127.96.3.3"), dry_run=True)
    assert "provided IP is already allocated" in str(caught.value)


def test_type_changes_claim_and_release(registry):
    svc = create(registry, service("web"))
    ip = svc["spec"]["clusterIP"]
    node_port = patch(registry, "web", {"spec": {"type": "NodePort"}})["spec"]["ports"][0][
        "nodePort"]
    assert keys(registry) == {ip, str(node_port)}
    back = patch(registry, "web", {"spec": {"type": "ClusterIP"}})
    assert "nodePort" not in back["spec"]["ports"][0]
    assert "externalTrafficPolicy" not in back["spec"]
    assert keys(registry) == {ip}
    external = patch(registry, "web", {"spec": {"type": "ExternalName",
                                                "externalName": "db.example.com"}})
    assert "clusterIP" not in external["spec"] and keys(registry) == set()
    again = patch(registry, "web", {"spec": {"type": "ClusterIP", "externalName": None}})
    assert keys(registry) == {again["spec"]["clusterIP"]}


def test_node_port_changes_claim_the_new_release_the_old(registry):
    create(registry, service("web", "NodePort", [{"name": "http", "port": 80,
                                                  "nodePort": 30100}]))
    create(registry, service("other", "NodePort", [{"name": "http", "port": 80,
                                                    "nodePort": 30200}]))
    moved = patch(registry, "web", {"spec": {"ports": [{"name": "http", "port": 80,
                                                        "nodePort": 30101}]}})
    assert moved["spec"]["ports"][0]["nodePort"] == 30101
    assert "30100" not in keys(registry) and "30101" in keys(registry)
    with pytest.raises(errors.APIError) as caught:
        patch(registry, "web", {"spec": {"ports": [{"name": "http", "port": 80,
                                                    "nodePort": 30200}]}})
    assert caught.value.code == 422 and "provided port is already allocated" in str(caught.value)
    assert "30101" in keys(registry)  # the failed update released nothing


def test_an_update_that_omits_allocated_values_keeps_them(registry):
    svc = create(registry, service("web", "NodePort"))
    body = service("web", "NodePort")
    body["metadata"]["resourceVersion"] = svc["metadata"]["resourceVersion"]
    updated, _ = asyncio.run(registry.update(SERVICES, "ns", "web", body, WriteOptions()))
    assert updated["spec"]["clusterIP"] == svc["spec"]["clusterIP"]
    assert updated["spec"]["ports"][0]["nodePort"] == svc["spec"]["ports"][0]["nodePort"]


def test_delete_releases_and_the_address_can_be_had_again(registry):
    create(registry, service("a", "NodePort", [{"port": 80, "nodePort": 30300}],
                             clusterIP="127.96.4.4"))
    delete(registry, "a")
    assert keys(registry) == set()
    again = create(registry, service("b", "NodePort", [{"port": 80, "nodePort": 30300}],
                                     clusterIP="127.96.4.4"))
    assert again["spec"]["clusterIP"] == "127.96.4.4"


def test_a_finalized_load_balancer_releases_only_when_really_removed(registry):
    create(registry, {**service("lb", "LoadBalancer", clusterIP="127.96.5.5"), "metadata": {
        "name": "lb", "finalizers": ["service.kubernetes.io/load-balancer-cleanup"]}})
    delete(registry, "lb")
    assert "127.96.5.5" in keys(registry)  # still terminating: still its own
    patch(registry, "lb", {"metadata": {"finalizers": None}})
    assert keys(registry) == set()


def test_flag_values_parse_as_kube_apiserver_parses_them():
    assert parse_port_range("30000-32767") == PortRange(30000, 32767)
    assert parse_port_range("30000+10") == PortRange(30000, 30010)
    assert str(parse_service_cidr("10.0.0.7/24")) == "10.0.0.0/24"
    for text, message in (("abc", "unable to parse port range: abc"),
                          ("70000-70001", "the port range cannot be greater than 65535"),
                          ("300-200", "end port cannot be less than start port")):
        with pytest.raises(ValueError, match=message):
            parse_port_range(text)
    for text, message in (("nope", r"service-cluster-ip-range\[0\] is not a valid cidr"),
                          ("10.0.0.0/30", "must be at least 8 IP addresses"),
                          ("10.0.0.0/8", "the mask must be >= 12")):
        with pytest.raises(ValueError, match=message):
            parse_service_cidr(text)
