"""The client runtime against a real server: informers and leader election."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

from pilothouse.client import ApiError, Client, InformerFactory, LeaderElector

from .conftest import Cluster, wait_for


def test_informer_tracks_adds_updates_deletes_with_indexes(cluster: Cluster) -> None:
    async def go() -> None:
        admin = Client.from_kubeconfig(str(cluster.kubeconfig))
        await admin.create("v1", "namespaces", {"metadata": {"name": "informed"}})
        async with admin:
            factory = InformerFactory(admin)
            informer = factory.informer("v1", "configmaps")
            events: list[tuple[str, str]] = []

            def record(old: dict | None, new: dict | None) -> None:
                obj = new if new is not None else old
                kind = "add" if old is None else "delete" if new is None else "update"
                if obj and obj["metadata"].get("namespace") == "informed" and \
                        obj["metadata"]["name"] != "kube-root-ca.crt":
                    events.append((kind, obj["metadata"]["name"]))

            informer.add_handler(record)
            await factory.start()
            await admin.create("v1", "configmaps", {"metadata": {"name": "a", "labels": {
                "tier": "web"}}}, "informed")
            await admin.patch("v1", "configmaps", "a", {"data": {"k": "v"}}, "informed")
            await admin.delete("v1", "configmaps", "a", "informed")
            await admin.create("v1", "configmaps", {"metadata": {"name": "b", "labels": {
                "tier": "db"}}}, "informed")
            for _ in range(50):
                if len(events) >= 4:
                    break
                await asyncio.sleep(0.05)
            assert events == [("add", "a"), ("update", "a"), ("delete", "a"), ("add", "b")]
            assert [o["metadata"]["name"] for o in informer.by_index("label", "tier=db")] == ["b"]
            assert informer.get("informed/a") is None
            await factory.stop()

    asyncio.run(go())


def test_leader_election_hands_over_when_the_leader_stops(cluster: Cluster) -> None:
    kubeconfig = str(cluster.data_dir / "components" / "controller-manager.kubeconfig")

    async def go() -> None:
        async with Client.from_kubeconfig(kubeconfig) as client:
            first = LeaderElector(client, name="test-election", identity="one",
                                  lease_seconds=2, renew_seconds=0.2)
            second = LeaderElector(client, name="test-election", identity="two",
                                   lease_seconds=2, renew_seconds=0.2)
            assert await first.try_acquire()
            assert not await second.try_acquire()  # held and fresh
            await asyncio.wait_for(second.acquire(), 6)  # first stopped renewing
            lease = await client.get("coordination.k8s.io/v1", "leases", "test-election",
                                     "kube-system")
            assert lease["spec"]["holderIdentity"] == "two"
            assert lease["spec"]["leaseTransitions"] == 1
            assert not await first.try_acquire()

    asyncio.run(go())


def test_component_identity_is_refused_what_its_role_lacks(cluster: Cluster) -> None:
    kubeconfig = str(cluster.data_dir / "components" / "scheduler.kubeconfig")

    async def go() -> int:
        async with Client.from_kubeconfig(kubeconfig) as client:
            try:
                await client.list("v1", "secrets")
            except ApiError as err:
                return err.status
        return 200

    assert asyncio.run(go()) == 403


def test_up_components_hold_their_leases_and_a_standby_waits(cluster: Cluster) -> None:
    def holder(name: str) -> str:
        return cluster.kubectl("get", "lease", name, "-n", "kube-system", "-o",
                               "jsonpath={.spec.holderIdentity}", check=False).stdout

    wait_for(lambda: holder("kube-scheduler") and holder("kube-controller-manager"),
             "the scheduler and controller manager to take their leases")
    leader = holder("kube-scheduler")
    standby = subprocess.Popen(
        [sys.executable, "-m", "pilothouse.cli", "scheduler", "--kubeconfig",
         str(cluster.data_dir / "components" / "scheduler.kubeconfig")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(4)
        assert standby.poll() is None  # waiting for the lease, not failing
        assert holder("kube-scheduler") == leader
    finally:
        standby.terminate()
        standby.wait(10)


def test_a_stopped_leader_releases_its_lease(cluster: Cluster) -> None:
    kubeconfig = str(cluster.data_dir / "components" / "controller-manager.kubeconfig")

    async def go() -> dict:
        async with Client.from_kubeconfig(kubeconfig) as client:
            elector = LeaderElector(client, name="released", identity="me")
            assert await elector.try_acquire()
            await elector.release()
            assert await LeaderElector(client, name="released", identity="next").try_acquire()
            return await client.get("coordination.k8s.io/v1", "leases", "released",
                                    "kube-system")

    assert asyncio.run(go())["spec"]["holderIdentity"] == "next"
