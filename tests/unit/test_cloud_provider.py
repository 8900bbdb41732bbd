"""The cloud provider side: finding providers by name, the local provider's addresses and
instances, and the cloud controllers' decisions (which updates matter to a load balancer,
what an initialized node looks like)."""

from __future__ import annotations

import asyncio
import ipaddress
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pilothouse.client import Client
from pilothouse.cloud import (
    CloudProvider,
    CloudProviderError,
    InstanceMetadata,
    cloud_provider_names,
    get_cloud_provider,
    register_cloud_provider,
)
from pilothouse.cloud.local import LocalProvider
from pilothouse.cloud.node import initialized_node, node_addresses, twin_labels_to_update
from pilothouse.cloud.provider import LOAD_BALANCER_CLEANUP_FINALIZER, _registered
from pilothouse.cloud.service import load_balancer_changes, load_balancer_node
from pilothouse.machinery.addresses import LOAD_BALANCER_RANGE


def service(name: str = "web", uid: str | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "uid": uid or f"uid-{name}"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}],
                     **spec}}


def ensure(provider: LocalProvider, svc: dict[str, Any]) -> str:
    balancer = provider.load_balancer()
    status = asyncio.run(balancer.ensure_load_balancer("kubernetes", svc, []))
    [ingress] = status["ingress"]
    assert ingress["ipMode"] == "VIP"
    return ingress["ip"]


# -- finding providers -------------------------------------------------------------------


class _Unused(CloudProvider):
    name = "unused"

    async def initialize(self, client: Client) -> None:
        pass


def test_a_registered_provider_is_found_by_name_and_an_unknown_name_says_what_there_is(
        ) -> None:
    register_cloud_provider("registered-cloud", lambda config: _Unused())
    try:
        assert isinstance(get_cloud_provider("registered-cloud"), _Unused)
        assert {"local", "registered-cloud"} <= set(cloud_provider_names())
        with pytest.raises(ValueError, match="registered twice"):
            register_cloud_provider("registered-cloud", lambda config: _Unused())
        with pytest.raises(ValueError, match="registered twice"):
            register_cloud_provider("local", lambda config: _Unused())
    finally:
        _registered.pop("registered-cloud")
    with pytest.raises(ValueError) as raised:
        get_cloud_provider("no-such-cloud")
    message = str(raised.value)
    assert "unknown cloud provider 'no-such-cloud'" in message
    assert "available: local" in message and "pilothouse.cloud_providers" in message


def test_an_installed_package_provides_a_cloud_through_its_entry_point(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "acme_cloud.py").write_text(textwrap.dedent("""
        from pilothouse.cloud import CloudProvider

        class AcmeCloud(CloudProvider):
            name = "acme"

            def __init__(self, config):
                self.config = config

            async def initialize(self, client):
                pass
    """))
    info = tmp_path / "acme_cloud-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-cloud\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[pilothouse.cloud_providers]\nacme = acme_cloud:AcmeCloud\n"
        "[other.group]\nbroken = acme_cloud:Nothing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "acme" in cloud_provider_names()
    provider = get_cloud_provider("acme", "region: moon\n")
    assert type(provider).__name__ == "AcmeCloud" and provider.config == "region: moon\n"
    assert provider.load_balancer() is None and provider.instances_v2() is None


def test_the_local_cloud_config_sets_its_range_and_topology_and_rejects_typos() -> None:
    provider = get_cloud_provider("local", "loadBalancerRange: 127.98.0.0/30\nzone: z1\n")
    assert provider.load_balancer().pool == ipaddress.ip_network("127.98.0.0/30")
    assert provider.instances_v2().zone == "z1" and provider.instances_v2().region == "local"
    assert get_cloud_provider("local", "").load_balancer().pool == LOAD_BALANCER_RANGE
    with pytest.raises(ValueError, match="loadBalancerRange, region, zone"):
        get_cloud_provider("local", "zones: z1\n")


# -- local load balancers ----------------------------------------------------------------


def test_each_service_gets_its_own_stable_address_from_the_pool() -> None:
    provider = LocalProvider()
    first, second = ensure(provider, service("a")), ensure(provider, service("b"))
    assert first != second
    assert {ipaddress.ip_address(first), ipaddress.ip_address(second)} <= set(
        LOAD_BALANCER_RANGE.hosts())
    assert ensure(provider, service("a")) == first  # ensuring again changes nothing
    balancer = provider.load_balancer()
    status, exists = asyncio.run(balancer.get_load_balancer("kubernetes", service("a")))
    assert exists and status == {"ingress": [{"ip": first, "ipMode": "VIP"}]}
    asyncio.run(balancer.ensure_load_balancer_deleted("kubernetes", service("a")))
    assert asyncio.run(balancer.get_load_balancer("kubernetes", service("a"))) == (None, False)
    # The freed address is handed out again; a service recreated under the same name
    # (a new uid) is a new load balancer.
    assert ensure(provider, service("a", uid="uid-a2")) == first


def test_a_requested_address_must_be_in_the_pool_and_free() -> None:
    provider = LocalProvider()
    assert ensure(provider, service("a", loadBalancerIP="127.97.3.3")) == "127.97.3.3"
    with pytest.raises(CloudProviderError, match="already another load balancer's"):
        ensure(provider, service("b", loadBalancerIP="127.97.3.3"))
    with pytest.raises(CloudProviderError, match="outside the local load-balancer range"):
        ensure(provider, service("b", loadBalancerIP="10.0.0.1"))
    with pytest.raises(CloudProviderError, match="loadBalancerIP"):
        ensure(provider, service("b", loadBalancerIP="not-an-ip"))
    # Changing the request moves the load balancer and frees the old address.
    assert ensure(provider, service("a", loadBalancerIP="127.97.4.4")) == "127.97.4.4"
    assert ensure(provider, service("b", loadBalancerIP="127.97.3.3")) == "127.97.3.3"


def test_an_exhausted_pool_is_an_error() -> None:
    provider = LocalProvider(load_balancer_range=ipaddress.ip_network("127.98.0.0/30"))
    assert [ensure(provider, service(n)) for n in "ab"] == ["127.98.0.1", "127.98.0.2"]
    with pytest.raises(CloudProviderError, match="no free address left"):
        ensure(provider, service("c"))


def test_addresses_are_taken_back_from_the_services_that_own_load_balancers() -> None:
    def owned(name: str, ip: str, *, finalizer: bool = True) -> dict[str, Any]:
        svc = service(name)
        if finalizer:
            svc["metadata"]["finalizers"] = [LOAD_BALANCER_CLEANUP_FINALIZER]
        svc["status"] = {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}
        return svc

    provider = LocalProvider()
    provider.load_balancer().restore([
        owned("a", "127.97.0.1"), owned("b", "127.97.0.1"),  # a duplicate: b gets another
        owned("c", "127.97.0.2", finalizer=False),  # not ours: its address is free
        owned("d", "10.1.1.1")])  # outside the pool
    assert ensure(provider, service("a")) == "127.97.0.1"
    assert ensure(provider, service("e")) == "127.97.0.2"
    assert ensure(provider, service("b")) == "127.97.0.3"
    assert ensure(provider, service("d")) == "127.97.0.4"
    with pytest.raises(CloudProviderError, match="does not exist"):
        asyncio.run(provider.load_balancer().update_load_balancer(
            "kubernetes", service("never"), []))


def test_local_instances_are_this_machine_as_the_kubelet_described_it() -> None:
    node = {"metadata": {"name": "n1"}, "status": {"addresses": [
        {"type": "InternalIP", "address": "127.0.0.1"}, {"type": "ExternalIP", "address": "1.2.3.4"},
        {"type": "Hostname", "address": "box"}]}}
    instances = LocalProvider().instances_v2()
    metadata = asyncio.run(instances.instance_metadata(node))
    assert metadata == InstanceMetadata(
        provider_id="local://n1", instance_type="local", zone="local", region="local",
        node_addresses=[{"type": "InternalIP", "address": "127.0.0.1"},
                        {"type": "Hostname", "address": "box"}])
    assert asyncio.run(instances.instance_exists(node))
    assert not asyncio.run(instances.instance_shutdown(node))


# -- the controllers' decisions ----------------------------------------------------------


def test_only_changes_that_matter_to_a_load_balancer_sync_it() -> None:
    lb = service()
    assert load_balancer_changes(lb, {**lb, "status": {"x": 1}}) == (False, [])
    assert load_balancer_changes(lb, service(type="ClusterIP")) == (
        True, [("Type", "LoadBalancer -> ClusterIP")])
    assert load_balancer_changes(service(type="ClusterIP"), service(type="NodePort")) == (
        False, [])
    assert load_balancer_changes(lb, service(ports=[{"port": 81, "protocol": "TCP"}]))[0]
    assert load_balancer_changes(lb, service(loadBalancerIP="127.97.1.1")) == (
        True, [("LoadbalancerIP", " -> 127.97.1.1")])
    assert load_balancer_changes(lb, service(externalIPs=["1.1.1.1"])) == (
        True, [("ExternalIP", "Count: 0 -> 1")])
    annotated = service()
    annotated["metadata"]["annotations"] = {"a": "b"}
    assert load_balancer_changes(lb, annotated) == (True, [])
    # A class hands the Service to another implementation: no longer ours.
    assert load_balancer_changes(lb, service(loadBalancerClass="x/y"))[0]


def test_load_balancer_nodes_have_a_provider_id_and_are_not_excluded_or_going() -> None:
    def node(**spec: Any) -> dict[str, Any]:
        return {"metadata": {"name": "n", "labels": {}}, "spec": {"providerID": "local://n",
                                                                 **spec}}

    assert load_balancer_node(node())
    assert not load_balancer_node(node(providerID=""))
    assert not load_balancer_node(node(taints=[{"key": "ToBeDeletedByClusterAutoscaler",
                                                "effect": "NoSchedule"}]))
    excluded = node()
    excluded["metadata"]["labels"] = {
        "node.kubernetes.io/exclude-from-external-load-balancers": ""}
    assert not load_balancer_node(excluded)


def test_an_initialized_node_has_the_clouds_facts_and_no_taint() -> None:
    node = {"metadata": {"name": "n1", "labels": {"team": "a"}},
            "spec": {"taints": [
                {"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true",
                 "effect": "NoSchedule"},
                {"key": "dedicated", "effect": "NoSchedule"}]}}
    metadata = InstanceMetadata(provider_id="local://n1", instance_type="local", zone="z",
                                region="r", additional_labels={
                                    "team": "b", "acme.io/rack": "7",
                                    "node.kubernetes.io/sneaky": "x"})
    updated = initialized_node(node, metadata)
    assert updated["spec"] == {"providerID": "local://n1",
                               "taints": [{"key": "dedicated", "effect": "NoSchedule"}]}
    assert updated["metadata"]["labels"] == {
        "team": "a", "acme.io/rack": "7",
        "node.kubernetes.io/instance-type": "local", "beta.kubernetes.io/instance-type": "local",
        "topology.kubernetes.io/zone": "z", "failure-domain.beta.kubernetes.io/zone": "z",
        "topology.kubernetes.io/region": "r", "failure-domain.beta.kubernetes.io/region": "r"}
    assert node["spec"]["taints"][0]["key"].endswith("uninitialized")  # input untouched
    # A providerID the kubelet set is kept.
    node["spec"]["providerID"] = "local://kept"
    assert initialized_node(node, metadata)["spec"]["providerID"] == "local://kept"
    assert twin_labels_to_update({"metadata": {"labels": {
        "failure-domain.beta.kubernetes.io/zone": "z", "topology.kubernetes.io/zone": "old",
        "beta.kubernetes.io/instance-type": "t"}}}) == {
        "topology.kubernetes.io/zone": "z", "node.kubernetes.io/instance-type": "t"}


def test_node_addresses_come_from_the_cloud_keeping_the_kubelets_hostname() -> None:
    node = {"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"},
                                     {"type": "Hostname", "address": "box"}]}}
    assert node_addresses(node, InstanceMetadata()) is None  # the cloud says nothing
    assert node_addresses(node, InstanceMetadata(node_addresses=[
        {"type": "InternalIP", "address": "10.0.0.1"}])) is None  # unchanged
    assert node_addresses(node, InstanceMetadata(node_addresses=[
        {"type": "InternalIP", "address": "10.0.0.2"},
        {"type": "ExternalIP", "address": "1.2.3.4"}])) == [
        {"type": "InternalIP", "address": "10.0.0.2"}, {"type": "ExternalIP", "address": "1.2.3.4"},
        {"type": "Hostname", "address": "box"}]
