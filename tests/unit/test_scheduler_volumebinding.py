"""VolumeBinding: claims, volumes and storage classes decide where a pod can go."""

from __future__ import annotations

import asyncio
from typing import Any

from pilothouse.scheduler.framework import Code, CycleState, Handle
from pilothouse.scheduler.nodeinfo import PodInfo
from pilothouse.scheduler.plugins import DEFAULT_PLUGINS
from pilothouse.scheduler.plugins.noderesources import NodeResourcesFit
from pilothouse.scheduler.plugins.podtopologyspread import PodTopologySpread
from pilothouse.scheduler.plugins.volumebinding import VolumeBinding
from pilothouse.scheduler.scheduler import Scheduler
from tests.unit.test_scheduler_plugins import cluster, feasible, node, pod

HOSTNAME = "kubernetes.io/hostname"


def claim(name: str, *, storage_class: str = "local-path", volume: str = "",
          bound: bool = False, **annotations: str) -> dict[str, Any]:
    if bound:
        annotations["pv.kubernetes.io/bind-completed"] = "yes"
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                         "annotations": annotations},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
                     "volumeName": volume, "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Bound" if bound else "Pending"}}


def volume(name: str, *, on: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"capacity": {"storage": "1Gi"}}
    if on:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": HOSTNAME, "operator": "In", "values": [on]}]}]}}
    return {"metadata": {"name": name}, "spec": spec}


def storage_class(name: str, mode: str = "WaitForFirstConsumer",
                  allowed_topologies: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": name}, "provisioner": "pilothouse.dev/local-path",
                           "volumeBindingMode": mode}
    if allowed_topologies is not None:
        obj["allowedTopologies"] = allowed_topologies
    return obj


def with_storage(handle: Handle, claims: tuple[dict[str, Any], ...] = (),
                 volumes: tuple[dict[str, Any], ...] = (),
                 classes: tuple[dict[str, Any], ...] = (storage_class("local-path"),)
                 ) -> Handle:
    by_key = {f"{c['metadata']['namespace']}/{c['metadata']['name']}": c for c in claims}
    handle.persistent_volume_claim = lambda namespace, name: by_key.get(f"{namespace}/{name}")
    handle.persistent_volume = {v["metadata"]["name"]: v for v in volumes}.get
    handle.storage_class = {c["metadata"]["name"]: c for c in classes}.get
    return handle


def using(*claims: str, **spec: Any) -> dict[str, Any]:
    return pod("p", volumes=[{"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}}
                             for i, c in enumerate(claims)], **spec)


def reasons(result: dict[str, Any]) -> dict[str, tuple[str, ...] | None]:
    return {name: None if status is None else status.reasons
            for name, status in result.items()}


def test_runs_after_resources_and_before_spread_as_upstream() -> None:
    order = list(DEFAULT_PLUGINS)
    assert order.index(NodeResourcesFit) < order.index(VolumeBinding) < order.index(
        PodTopologySpread)


def test_pods_without_claims_skip_the_plugin() -> None:
    handle = with_storage(cluster(node("a")))
    result = feasible(handle, pod("p", volumes=[{"name": "e", "emptyDir": {}}]))
    assert result == {"a": None}


def test_missing_deleting_and_lost_claims_reject_the_pod_everywhere() -> None:
    handle = with_storage(cluster(node("a"), node("b")), claims=(
        {**claim("going"), "metadata": {**claim("going")["metadata"],
                                        "deletionTimestamp": "2024-01-01T00:00:00Z"}},
        {**claim("lost", volume="gone", bound=True), "status": {"phase": "Lost"}}))
    for name, message in (
            ("absent", 'persistentvolumeclaim "absent" not found'),
            ("going", 'persistentvolumeclaim "going" is being deleted'),
            ("lost", 'persistentvolumeclaim "lost" bound to non-existent persistentvolume '
                     '"gone"')):
        result = feasible(handle, using(name))
        assert reasons(result) == {"a": (message,), "b": (message,)}
        assert result["a"].code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE
        assert result["a"].plugin == "VolumeBinding"


def test_unbound_immediate_claims_wait_for_the_controller() -> None:
    message = ("pod has unbound immediate PersistentVolumeClaims",)
    handle = with_storage(
        cluster(node("a")),
        claims=(claim("fast", storage_class="fast"), claim("none", storage_class=""),
                claim("unknown", storage_class="nope"),
                claim("prebound", volume="pv-1"), claim("later")),
        classes=(storage_class("fast", "Immediate"), storage_class("local-path")))
    for name in ("fast", "none", "unknown", "prebound"):
        assert reasons(feasible(handle, using("later", name))) == {"a": message}, name
    assert reasons(feasible(handle, using("later"))) == {"a": None}


def test_bound_volume_node_affinity_picks_the_node() -> None:
    handle = with_storage(cluster(node("a"), node("b")),
                          claims=(claim("data", volume="pv-a", bound=True),
                                  claim("anywhere", volume="pv-any", bound=True)),
                          volumes=(volume("pv-a", on="a"), volume("pv-any")))
    result = feasible(handle, using("anywhere", "data"))
    assert reasons(result) == {"a": None, "b": ("node(s) had volume node affinity conflict",)}
    assert result["b"].code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert reasons(feasible(handle, using("anywhere"))) == {"a": None, "b": None}


def test_claim_bound_to_a_volume_that_is_gone() -> None:
    handle = with_storage(cluster(node("a")),
                          claims=(claim("data", volume="pv-gone", bound=True),))
    assert reasons(feasible(handle, using("data"))) == {"a": (
        "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)",)}


def test_wait_for_first_consumer_follows_topology_and_the_selected_node() -> None:
    zoned = storage_class("zoned", allowed_topologies=[{"matchLabelExpressions": [
        {"key": "zone", "values": ["x"]}]}])
    handle = with_storage(
        cluster(node("a", labels={"zone": "x"}), node("b", labels={"zone": "y"})),
        claims=(claim("local"), claim("zoned", storage_class="zoned"),
                claim("picked", **{"volume.kubernetes.io/selected-node": "b"})),
        classes=(storage_class("local-path"), zoned))
    no_volume = ("node(s) didn't find available persistent volumes to bind",)
    assert reasons(feasible(handle, using("local"))) == {"a": None, "b": None}
    assert reasons(feasible(handle, using("local", "zoned"))) == {"a": None, "b": no_volume}
    assert reasons(feasible(handle, using("picked"))) == {"a": no_volume, "b": None}


def test_both_conflicts_are_reported_in_upstream_order() -> None:
    handle = with_storage(cluster(node("a"), node("b")),
                          claims=(claim("data", volume="pv-a", bound=True),
                                  claim("picked", **{"volume.kubernetes.io/selected-node": "a"})),
                          volumes=(volume("pv-a", on="a"),))
    assert reasons(feasible(handle, using("picked", "data")))["b"] == (
        "node(s) had volume node affinity conflict",
        "node(s) didn't find available persistent volumes to bind")


# -- the scheduler: failure message, informers and requeueing ------------------------------


class RecordingClient:
    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    async def patch(self, api_version: str, plural: str, name: str, body: dict[str, Any],
                    namespace: str | None = None, **options: Any) -> dict[str, Any]:
        self.patches.append(body)
        return body


def added(informer: Any, obj: dict[str, Any], kind: str = "ADDED") -> None:
    """Deliver a watch event, as the API server would."""
    informer._apply({"type": kind, "object": obj})


def test_a_pod_waits_for_its_claim_and_comes_back_when_it_appears() -> None:
    async def scenario() -> None:
        client = RecordingClient()
        scheduler = Scheduler(client)  # type: ignore[arg-type]
        added(scheduler.nodes, node("a"))
        added(scheduler.storage_classes, storage_class("local-path"))
        added(scheduler.pods, using("data"))
        await scheduler.schedule_one(scheduler.queue.pop_nowait())
        await asyncio.sleep(0)
        condition = client.patches[-1]["status"]["conditions"][0]
        assert condition["reason"] == "Unschedulable"
        assert condition["message"] == (
            '0/1 nodes are available: persistentvolumeclaim "data" not found. preemption: '
            "0/1 nodes are available: 1 Preemption is not helpful for scheduling..")
        assert scheduler.queue.counts() == (0, 0, 1)
        added(scheduler.storage_classes, storage_class("local-path"), "MODIFIED")
        assert scheduler.queue.counts() == (0, 0, 1)  # same topologies: nothing new
        added(scheduler.claims, claim("data"))
        assert scheduler.queue.counts() in ((1, 0, 0), (0, 1, 0))
        await asyncio.sleep(scheduler.queue.backoff_seconds(1))
        queued = scheduler.queue.pop_nowait()
        assert queued is not None
        await scheduler.schedule_one(queued)
        assert scheduler.cache.is_assumed("ns/p")

    asyncio.run(scenario())


def test_claim_events_leave_pods_other_plugins_rejected_alone() -> None:
    async def scenario() -> None:
        scheduler = Scheduler(RecordingClient())  # type: ignore[arg-type]
        added(scheduler.nodes, node("a", cpu="1"))
        added(scheduler.pods, pod("big", cpu="2"))
        await scheduler.schedule_one(scheduler.queue.pop_nowait())
        assert scheduler.queue.counts() == (0, 0, 1)
        added(scheduler.claims, claim("data"))
        added(scheduler.volumes, volume("pv-a", on="a"))
        assert scheduler.queue.counts() == (0, 0, 1)
        added(scheduler.nodes, node("b", cpu="4"))
        assert scheduler.queue.counts() != (0, 0, 1)

    asyncio.run(scenario())


def test_pre_bind_names_the_node_on_claims_that_wait_for_their_first_consumer() -> None:
    handle = with_storage(
        cluster(node("a")),
        claims=(claim("wait"), claim("done", volume="pv", bound=True),
                claim("named", **{"volume.kubernetes.io/selected-node": "a"}),
                claim("now", storage_class="fast")),
        classes=(storage_class("local-path"), storage_class("fast", mode="Immediate")))
    client = RecordingClient()
    handle.client = client  # type: ignore[assignment]
    plugin = VolumeBinding(handle)
    status = asyncio.run(plugin.pre_bind(CycleState(), PodInfo(using("wait", "done", "named",
                                                                     "now")), "a"))
    assert status is None
    assert client.patches == [{"metadata": {
        "annotations": {"volume.kubernetes.io/selected-node": "a"}}}]
