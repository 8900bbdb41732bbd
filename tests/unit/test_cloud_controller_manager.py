"""The cloud-controller-manager against a real API server: LoadBalancer Services get local
addresses and lose them, nodes are initialized, and a provider's verdict on a node's
machine deletes or taints it.

The manager runs in-process (tests/inprocess.py) as its own least-privileged identity,
`system:cloud-controller-manager`, so its RBAC role is exercised too; `kubectl get svc` is
the real binary.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pilothouse.client import Client
from pilothouse.cloud import (
    CloudProvider,
    InstanceMetadata,
    InstancesV2,
    register_cloud_provider,
)
from pilothouse.cloud.manager import run_cloud_controller_manager
from pilothouse.cloud.provider import LOAD_BALANCER_CLEANUP_FINALIZER, _registered
from pilothouse.machinery.addresses import LOAD_BALANCER_RANGE
from tests.inprocess import InProcessCluster, component_kubeconfigs, create, in_process_cluster

SERVICES = "/api/v1/namespaces/default/services"
UNINITIALIZED = {"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true",
                 "effect": "NoSchedule"}
SHUTDOWN = "node.cloudprovider.kubernetes.io/shutdown"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessCluster]:
    with in_process_cluster(Path(tmp_path_factory.mktemp("cloud"))) as running:
        yield running


@pytest.fixture(scope="module")
def kubeconfigs(cluster: InProcessCluster, tmp_path_factory: pytest.TempPathFactory
                ) -> dict[str, Path]:
    return component_kubeconfigs(cluster, tmp_path_factory.mktemp("kubeconfigs"),
                                 "cloud-controller-manager", "manager")


@contextlib.asynccontextmanager
async def cloud_controller_manager(kubeconfig: Path, **kwargs: Any) -> AsyncIterator[None]:
    """The manager running on the cluster's loop until the block ends."""
    task = asyncio.create_task(run_cloud_controller_manager(str(kubeconfig), **kwargs))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 15) -> Any:
    """The first truthy result of `check`, polled until `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true after {timeout}s: last saw {result!r}")
        await asyncio.sleep(0.05)


async def get(session: aiohttp.ClientSession, path: str) -> dict[str, Any] | None:
    async with session.get(path) as response:
        if response.status == 404:
            return None
        assert response.status == 200, await response.text()
        return await response.json()


async def patch(session: aiohttp.ClientSession, path: str, body: Any) -> dict[str, Any]:
    async with session.patch(path, json=body, headers={
            "Content-Type": "application/merge-patch+json"}) as response:
        assert response.status == 200, await response.text()
        return await response.json()


def lb_service(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "LoadBalancer", "selector": {"app": name},
                     "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}], **spec}}


async def external_ip(session: aiohttp.ClientSession, name: str) -> str:
    """The Service's load-balancer address, once it has one and the finalizer."""
    async def check() -> str | None:
        svc = await get(session, f"{SERVICES}/{name}")
        ingress = ((svc or {}).get("status") or {}).get("loadBalancer", {}).get("ingress")
        if not ingress or LOAD_BALANCER_CLEANUP_FINALIZER not in svc["metadata"].get(
                "finalizers", []):
            return None
        [point] = ingress
        assert point["ipMode"] == "VIP"
        return point["ip"]

    return await eventually(check)


async def event_reasons(session: aiohttp.ClientSession, name: str,
                        namespace: str = "default") -> list[str]:
    events = await get(session, f"/api/v1/namespaces/{namespace}/events")
    return [e["reason"] for e in (events or {}).get("items", [])
            if e["involvedObject"].get("name") == name]


def test_a_load_balancer_service_gets_a_local_address_shown_by_kubectl(
        cluster: InProcessCluster, kubeconfigs: Mapping[str, Path]) -> None:
    async def scenario() -> tuple[str, str]:
        async with cluster.session() as admin, cloud_controller_manager(
                kubeconfigs["manager"], leader_elect=False):
            # Two at once: each gets its own address.
            await asyncio.gather(create(admin, SERVICES, lb_service("shop")),
                                 create(admin, SERVICES, lb_service("blog")))
            shop, blog = await external_ip(admin, "shop"), await external_ip(admin, "blog")
            assert shop != blog
            assert {ipaddress.ip_address(shop), ipaddress.ip_address(blog)} <= set(
                LOAD_BALANCER_RANGE.hosts())
            reasons = set(await eventually(lambda: event_reasons(admin, "shop")))
            # No node has a providerID yet: the load balancer has no node to use.
            assert reasons == {"EnsuringLoadBalancer", "EnsuredLoadBalancer",
                               "UnAvailableLoadBalancer"}
            await create(admin, SERVICES, lb_service("elsewhere",
                                                     loadBalancerClass="example.com/lb"))
            return shop, blog

    shop, blog = cluster.run(scenario())
    table = kubectl(kubeconfigs["admin"], "get", "svc", "shop", "blog", "elsewhere")
    rows = {line.split()[0]: line.split() for line in table.splitlines()[1:]}
    assert table.split()[:6] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert rows["shop"][3] == shop and rows["blog"][3] == blog
    assert rows["elsewhere"][3] == "<pending>"


def kubectl(kubeconfig: Path, *args: str) -> str:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    done = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_service_with_a_load_balancer_class_is_left_to_its_implementation(
        cluster: InProcessCluster, kubeconfigs: Mapping[str, Path]) -> None:
    async def scenario() -> None:
        async with cluster.session() as admin, cloud_controller_manager(
                kubeconfigs["manager"], leader_elect=False):
            await create(admin, SERVICES, lb_service("classy",
                                                     loadBalancerClass="example.com/lb"))
            await create(admin, SERVICES, lb_service("after-classy"))
            await external_ip(admin, "after-classy")
            await asyncio.sleep(0.3)
            classy = await get(admin, f"{SERVICES}/classy")
            assert classy is not None
            assert "finalizers" not in classy["metadata"]
            assert not classy.get("status", {}).get("loadBalancer")
            assert await event_reasons(admin, "classy") == []

    cluster.run(scenario())


def test_a_load_balancer_the_cloud_cannot_make_is_reported_on_the_service(
        cluster: InProcessCluster, kubeconfigs: Mapping[str, Path]) -> None:
    async def scenario() -> None:
        async with cluster.session() as admin, cloud_controller_manager(
                kubeconfigs["manager"], leader_elect=False):
            await create(admin, SERVICES, lb_service("misfit", loadBalancerIP="10.9.9.9"))

            async def failure() -> str | None:
                events = await get(admin, "/api/v1/namespaces/default/events")
                return next((e["message"] for e in (events or {}).get("items", [])
                             if e["involvedObject"].get("name") == "misfit"
                             and e["reason"] == "SyncLoadBalancerFailed"), None)

            message = await eventually(failure)
            assert message == ("Error syncing load balancer: spec.loadBalancerIP 10.9.9.9 is "
                               "outside the local load-balancer range 127.97.0.0/16")
            misfit = await get(admin, f"{SERVICES}/misfit")
            assert misfit is not None and not _ingress(misfit)

    cluster.run(scenario())


def test_deleting_the_service_deletes_its_load_balancer_first(
        cluster: InProcessCluster, kubeconfigs: Mapping[str, Path]) -> None:
    async def scenario() -> None:
        async with cluster.session() as admin, cloud_controller_manager(
                kubeconfigs["manager"], leader_elect=False):
            await create(admin, SERVICES, lb_service("doomed"))
            await external_ip(admin, "doomed")
            async with admin.delete(f"{SERVICES}/doomed") as response:
                assert response.status == 200, await response.text()
            await eventually(lambda: _gone(admin, f"{SERVICES}/doomed"))
            reasons = set(await event_reasons(admin, "doomed"))
            assert {"DeletingLoadBalancer", "DeletedLoadBalancer"} <= reasons, reasons

    cluster.run(scenario())


async def _gone(session: aiohttp.ClientSession, path: str) -> bool:
    return await get(session, path) is None


def test_a_service_that_stops_being_a_load_balancer_loses_address_and_finalizer(
        cluster: InProcessCluster, kubeconfigs: Mapping[str, Path]) -> None:
    async def scenario() -> None:
        async with cluster.session() as admin, cloud_controller_manager(
                kubeconfigs["manager"], leader_elect=False):
            await create(admin, SERVICES, lb_service("demoted"))
            address = await external_ip(admin, "demoted")
            await patch(admin, f"{SERVICES}/demoted", {"spec": {"type": "ClusterIP"}})

            async def cleaned() -> bool:
                svc = await get(admin, f"{SERVICES}/demoted")
                assert svc is not None
                return (not svc["metadata"].get("finalizers")
                        and not svc.get("status", {}).get("loadBalancer", {}).get("ingress"))

            await eventually(cleaned)
            assert "Type" in await event_reasons(admin, "demoted")
            # Its address is free again: the next load balancer may have it.
            await create(admin, SERVICES, lb_service("promoted", loadBalancerIP=address))
            assert await external_ip(admin, "promoted") == address

    cluster.run(scenario())


def test_a_restarted_manager_keeps_every_address_and_hands_out_no_taken_one(
        cluster: InProcessCluster, kubeconfigs: Mapping[str, Path]) -> None:
    async def scenario() -> None:
        async with cluster.session() as admin:
            async with cloud_controller_manager(kubeconfigs["manager"]):
                # A freed address below a taken one: a manager that forgot what it handed
                # out would give the next Service it syncs the freed one.
                for name in ("gap", "steady"):
                    await create(admin, SERVICES, lb_service(name))
                    await external_ip(admin, name)
                async with admin.delete(f"{SERVICES}/gap") as response:
                    assert response.status == 200, await response.text()
                await eventually(lambda: _gone(admin, f"{SERVICES}/gap"))
            before = await _addresses(admin)
            ensured = {name: await _reason_total(admin, name, "EnsuredLoadBalancer")
                       for name in before}
            async with cloud_controller_manager(kubeconfigs["manager"]):
                # The new leader syncs every load balancer again, and changes none.
                for name, count in ensured.items():
                    await eventually(lambda name=name, count=count: _reason_total_above(
                        admin, name, "EnsuredLoadBalancer", count))
                assert await _addresses(admin) == before
                await create(admin, SERVICES, lb_service("newcomer"))
                newcomer = await external_ip(admin, "newcomer")
                assert newcomer not in {ip for ips in before.values() for ip in ips}

    cluster.run(scenario())


async def _addresses(session: aiohttp.ClientSession) -> dict[str, list[str]]:
    """name -> load-balancer addresses of every Service of ours that has some."""
    services = (await get(session, SERVICES) or {})["items"]
    return {svc["metadata"]["name"]: _ingress(svc) for svc in services if _ingress(svc)}


def _ingress(svc: Mapping[str, Any]) -> list[str]:
    return [p["ip"] for p in (svc.get("status") or {}).get("loadBalancer", {}).get(
        "ingress", [])]


async def _reason_total(session: aiohttp.ClientSession, name: str, reason: str) -> int:
    events = await get(session, "/api/v1/namespaces/default/events")
    return sum(e.get("count", 1) for e in (events or {}).get("items", [])
               if e["involvedObject"].get("name") == name and e["reason"] == reason)


async def _reason_total_above(session: aiohttp.ClientSession, name: str, reason: str,
                              count: int) -> bool:
    return await _reason_total(session, name, reason) > count


def test_a_new_node_is_initialized_and_handed_to_the_load_balancers(
        cluster: InProcessCluster, kubeconfigs: Mapping[str, Path]) -> None:
    async def scenario() -> None:
        async with cluster.session() as admin, cloud_controller_manager(
                kubeconfigs["manager"], leader_elect=False):
            await create(admin, SERVICES, lb_service("watcher"))
            await external_ip(admin, "watcher")
            node = cluster.kubelet.node("fresh")
            node["spec"] = {"taints": [UNINITIALIZED]}
            await create(admin, "/api/v1/nodes", node)

            async def initialized() -> dict[str, Any] | None:
                current = await get(admin, "/api/v1/nodes/fresh")
                return current if current and not current["spec"].get("taints") else None

            fresh = await eventually(initialized)
            assert fresh["spec"]["providerID"] == "local://fresh"
            labels = fresh["metadata"]["labels"]
            assert labels["node.kubernetes.io/instance-type"] == "local"
            assert labels["topology.kubernetes.io/zone"] == "local"
            assert labels["topology.kubernetes.io/region"] == "local"
            assert fresh["status"]["addresses"] == node["status"]["addresses"]
            assert "Synced" in await eventually(lambda: event_reasons(admin, "fresh"))
            # With its providerID the node joins the load balancers' node set.
            await eventually(lambda: _reason_total_above(admin, "watcher", "UpdatedLoadBalancer",
                                                         0))

    cluster.run(scenario())


# -- a provider whose machines can vanish --------------------------------------------------


class FlakyMachines(InstancesV2):
    """Node `gone-*`'s machine no longer exists; `asleep-*`'s is shut down."""

    async def instance_exists(self, node: Mapping[str, Any]) -> bool:
        return not node["metadata"]["name"].startswith("gone-")

    async def instance_shutdown(self, node: Mapping[str, Any]) -> bool:
        return node["metadata"]["name"].startswith("asleep-")

    async def instance_metadata(self, node: Mapping[str, Any]) -> InstanceMetadata:
        return InstanceMetadata(provider_id=f"flaky://{node['metadata']['name']}")


class FlakyCloud(CloudProvider):
    name = "flaky"

    async def initialize(self, client: Client) -> None:
        pass

    def instances_v2(self) -> FlakyMachines:
        return FlakyMachines()


@pytest.fixture
def flaky_cloud() -> Iterator[str]:
    register_cloud_provider(FlakyCloud.name, lambda config: FlakyCloud())
    try:
        yield FlakyCloud.name
    finally:
        _registered.pop(FlakyCloud.name)


def test_nodes_whose_machines_are_gone_are_deleted_and_shut_down_ones_tainted(
        cluster: InProcessCluster, kubeconfigs: Mapping[str, Path], flaky_cloud: str) -> None:
    async def scenario() -> None:
        async with cluster.session() as admin:
            ready = cluster.kubelet.node("asleep-ready")
            ready["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
            ready["spec"] = {"taints": [{"key": SHUTDOWN, "effect": "NoSchedule"}]}
            for body in (cluster.kubelet.node("gone-1"), cluster.kubelet.node("asleep-1"),
                         ready):
                await create(admin, "/api/v1/nodes", body)
            async with cloud_controller_manager(
                    kubeconfigs["manager"], cloud_provider=flaky_cloud, leader_elect=False,
                    settings={"node_monitor_period": 0.2}):
                await eventually(lambda: _gone(admin, "/api/v1/nodes/gone-1"))

                async def taints(name: str) -> list[str]:
                    node = await get(admin, f"/api/v1/nodes/{name}")
                    assert node is not None
                    return [t["key"] for t in node["spec"].get("taints", [])]

                await eventually(lambda: _has(taints("asleep-1"), SHUTDOWN))
                await eventually(lambda: _lacks(taints("asleep-ready"), SHUTDOWN))
            assert "DeletingNode" in await event_reasons(admin, "gone-1")

    cluster.run(scenario())


async def _has(values: Awaitable[list[str]], value: str) -> bool:
    return value in await values


async def _lacks(values: Awaitable[list[str]], value: str) -> bool:
    return value not in await values


def test_an_unknown_provider_or_controller_is_refused_before_connecting() -> None:
    with pytest.raises(ValueError, match="unknown cloud provider 'nimbus'"):
        asyncio.run(run_cloud_controller_manager(None, cloud_provider="nimbus"))
    with pytest.raises(ValueError, match="unknown controllers: route"):
        asyncio.run(run_cloud_controller_manager(None, controllers=["route"]))


def test_an_unreadable_or_malformed_cloud_config_is_refused_before_connecting(
        tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read --cloud-config .*: No such file"):
        asyncio.run(run_cloud_controller_manager(None, cloud_config=str(tmp_path / "none")))
    broken = tmp_path / "broken.yaml"
    broken.write_text("loadBalancerRange: [127.97.0.0/16\n")
    with pytest.raises(ValueError, match="the local cloud config is not YAML"):
        asyncio.run(run_cloud_controller_manager(None, cloud_config=str(broken)))
