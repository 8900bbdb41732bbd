"""Scheduling plugins as pure functions of pods and nodes (plain API dicts)."""

from __future__ import annotations

import asyncio
from typing import Any

from pilothouse.scheduler.cache import SchedulerCache
from pilothouse.scheduler.framework import Code, CycleState, Handle, Status
from pilothouse.scheduler.nodeinfo import NodeInfo, PodInfo, pod_requests
from pilothouse.scheduler.plugins import default_framework
from pilothouse.scheduler.plugins.balancedallocation import BalancedAllocation
from pilothouse.scheduler.plugins.defaultpreemption import DefaultPreemption
from pilothouse.scheduler.plugins.interpodaffinity import InterPodAffinity
from pilothouse.scheduler.plugins.nodeaffinity import NodeAffinity
from pilothouse.scheduler.plugins.noderesources import NodeResourcesFit
from pilothouse.scheduler.plugins.podtopologyspread import PodTopologySpread
from pilothouse.scheduler.plugins.tainttoleration import TaintToleration
from pilothouse.scheduler.scheduler import failure_message, num_feasible_nodes_to_find


def node(name: str, *, cpu: str = "4", memory: str = "8Gi", pods: str = "110",
         labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None,
         **extra: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  **(labels or {})}},
            "spec": {"taints": taints or []},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods, **extra}}}


def pod(name: str, *, cpu: str | None = None, memory: str | None = None, node_name: str = "",
        labels: dict[str, str] | None = None, priority: int = 0, **spec: Any) -> dict[str, Any]:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                         "labels": labels or {}},
            "spec": {"containers": [{"name": "c", "resources": {"requests": requests}}],
                     "nodeName": node_name, "priority": priority, **spec}}


def cluster(*nodes: dict[str, Any], pods: tuple[dict[str, Any], ...] = ()) -> Handle:
    cache = SchedulerCache()
    for n in nodes:
        cache.set_node(n)
    for p in pods:
        cache.set_pod(PodInfo(p))
    return Handle(cache)


def feasible(handle: Handle, p: dict[str, Any]) -> dict[str, Status | None]:
    """Run PreFilter and Filter of the default profile: node name -> None or why not."""
    framework = default_framework(handle)
    state = CycleState()
    info = PodInfo(p)
    rejected = framework.run_pre_filter(state, info)
    nodes = handle.cache.node_list()
    if rejected is not None:
        return {n.name: rejected for n in nodes}
    return {n.name: framework.run_filter(state, info, n) for n in nodes}


def test_requests_count_init_containers_sidecars_and_overhead() -> None:
    spec = {"containers": [{"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
                           {"resources": {"requests": {"cpu": "250m"}}}],
            "initContainers": [{"resources": {"requests": {"cpu": "2", "memory": "100Mi"}}},
                               {"restartPolicy": "Always",
                                "resources": {"requests": {"cpu": "100m"}}}],
            "overhead": {"cpu": "10m"}}
    requests = pod_requests(spec)
    assert requests["cpu"] == 2000 + 10  # the big init container wins over 750m + 100m
    assert requests["memory"] == 1024**3


def test_resources_fit_reports_every_shortage_and_too_many_pods() -> None:
    handle = cluster(node("small", cpu="1", memory="1Gi", pods="1"),
                     pods=(pod("there", cpu="500m", node_name="small"),))
    status = feasible(handle, pod("big", cpu="2", memory="2Gi"))["small"]
    assert status is not None and status.code == Code.UNSCHEDULABLE
    assert status.reasons == ("Too many pods", "Insufficient cpu", "Insufficient memory")


def test_extended_resources_like_gpus_must_be_allocatable() -> None:
    handle = cluster(node("gpu", **{"nvidia.com/gpu": "2"}), node("plain"))
    p = pod("train")
    p["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] = "2"
    result = feasible(handle, p)
    assert result["gpu"] is None
    assert result["plain"] is not None and result["plain"].reasons == (
        "Insufficient nvidia.com/gpu",)


def test_least_allocated_and_balanced_prefer_the_emptier_even_node() -> None:
    handle = cluster(node("busy"), node("idle"),
                     pods=(pod("hog", cpu="3", memory="1Gi", node_name="busy"),))
    nodes = handle.cache.node_list()
    p = PodInfo(pod("new", cpu="100m", memory="100Mi"))
    least = NodeResourcesFit(handle).score(CycleState(), p, nodes)
    balanced = BalancedAllocation(handle).score(CycleState(), p, nodes)
    assert least[1] > least[0]
    assert balanced[1] > balanced[0]


def test_node_selector_and_required_node_affinity() -> None:
    handle = cluster(node("a", labels={"zone": "x", "disk": "ssd"}), node("b", labels={"zone": "y"}))
    by_selector = feasible(handle, pod("p", nodeSelector={"disk": "ssd"}))
    assert by_selector["a"] is None
    assert by_selector["b"] is not None and by_selector["b"].reasons == (
        "node(s) didn't match Pod's node affinity/selector",)
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "NotIn",
                                                     "values": ["x"]}]}]}}}
    result = feasible(handle, pod("q", affinity=affinity))
    assert result["a"] is not None and result["b"] is None


def test_preferred_node_affinity_scores_by_weight() -> None:
    handle = cluster(node("a", labels={"fast": "yes"}), node("b"))
    affinity = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "preference": {"matchExpressions": [
            {"key": "fast", "operator": "Exists"}]}}]}}
    plugin = NodeAffinity(handle)
    state, info, nodes = CycleState(), PodInfo(pod("p", affinity=affinity)), handle.cache.node_list()
    assert plugin.pre_score(state, info, nodes) is None
    assert plugin.normalize(state, info, plugin.score(state, info, nodes)) == [100, 0]


def test_taints_need_tolerations_and_prefer_no_schedule_only_scores() -> None:
    handle = cluster(node("tainted", taints=[{"key": "gpu", "value": "true",
                                              "effect": "NoSchedule"}]),
                     node("soft", taints=[{"key": "spot", "effect": "PreferNoSchedule"}]),
                     node("clean"))
    result = feasible(handle, pod("p"))
    assert result["tainted"] is not None and result["tainted"].reasons == (
        "node(s) had untolerated taint {gpu: true}",)
    assert result["soft"] is None and result["clean"] is None
    tolerant = feasible(handle, pod("q", tolerations=[{"key": "gpu", "operator": "Exists"}]))
    assert tolerant["tainted"] is None
    plugin = TaintToleration(handle)
    nodes, info, state = handle.cache.node_list(), PodInfo(pod("r")), CycleState()
    assert plugin.normalize(state, info, plugin.score(state, info, nodes)) == [100, 0, 100]


def test_cordoned_node_is_unschedulable() -> None:
    cordoned = node("cordoned")
    cordoned["spec"]["unschedulable"] = True
    handle = cluster(cordoned, node("open"))
    result = feasible(handle, pod("p"))
    assert result["cordoned"] is not None and result["cordoned"].reasons == (
        "node(s) were unschedulable",)
    assert result["open"] is None


def test_pod_anti_affinity_both_ways_and_affinity() -> None:
    zones = {"a": "z1", "b": "z1", "c": "z2"}
    web = pod("web-0", labels={"app": "web"}, node_name="a", affinity={"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}},
             "topologyKey": "topology.kubernetes.io/zone"}]}})
    handle = cluster(*(node(n, labels={"topology.kubernetes.io/zone": z})
                       for n, z in zones.items()), pods=(web,))
    # An existing pod's anti-affinity keeps its own kind out of zone z1.
    result = feasible(handle, pod("web-1", labels={"app": "web"}))
    assert result["a"] is not None and result["b"] is not None and result["c"] is None
    assert result["b"].reasons == ("node(s) didn't satisfy existing pods anti-affinity rules",)
    # Affinity to app=web: only its zone.
    near = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}},
         "topologyKey": "topology.kubernetes.io/zone"}]}}
    result = feasible(handle, pod("cache", affinity=near))
    assert result["a"] is None and result["b"] is None
    assert result["c"] is not None and result["c"].reasons == (
        "node(s) didn't match pod affinity rules",)
    # The first pod of a self-affine group may go anywhere.
    first = feasible(handle, pod("db-0", labels={"app": "db"}, affinity={"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}},
             "topologyKey": "topology.kubernetes.io/zone"}]}}))
    assert all(status is None for status in first.values())


def test_preferred_pod_affinity_scores_the_shared_domain() -> None:
    handle = cluster(node("a"), node("b"), pods=(pod("x", labels={"app": "x"}, node_name="a"),))
    p = PodInfo(pod("y", affinity={"podAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "x"}},
                                               "topologyKey": "kubernetes.io/hostname"}}]}}))
    plugin, state, nodes = InterPodAffinity(handle), CycleState(), handle.cache.node_list()
    assert plugin.pre_score(state, p, nodes) is None
    assert plugin.normalize(state, p, plugin.score(state, p, nodes)) == [100, 0]


def test_topology_spread_max_skew() -> None:
    spread = [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
               "labelSelector": {"matchLabels": {"app": "s"}}}]
    handle = cluster(node("a", labels={"zone": "1"}), node("b", labels={"zone": "2"}),
                     node("nolabel"),
                     pods=(pod("s-0", labels={"app": "s"}, node_name="a"),))
    result = feasible(handle, pod("s-1", labels={"app": "s"}, topologySpreadConstraints=spread))
    assert result["a"] is not None and result["a"].reasons == (
        "node(s) didn't match pod topology spread constraints",)
    assert result["b"] is None
    assert result["nolabel"] is not None and result["nolabel"].code == \
        Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    soft = [{**spread[0], "whenUnsatisfiable": "ScheduleAnyway"}]
    plugin, state = PodTopologySpread(handle), CycleState()
    info, nodes = PodInfo(pod("s-2", labels={"app": "s"}, topologySpreadConstraints=soft)), \
        handle.cache.node_list()
    assert plugin.pre_score(state, info, nodes) is None
    scores = plugin.normalize(state, info, plugin.score(state, info, nodes))
    assert scores[1] > scores[0] and scores[2] == 0


def test_preemption_evicts_the_fewest_least_important_pods() -> None:
    handle = cluster(node("n", cpu="2"),
                     pods=(pod("low", cpu="1", priority=1, node_name="n"),
                           pod("lower", cpu="500m", priority=0, node_name="n"),
                           pod("high", cpu="500m", priority=100, node_name="n")))
    framework = default_framework(handle)
    state, info = CycleState(), PodInfo(pod("vip", cpu="1", priority=50))
    assert framework.run_pre_filter(state, info) is None
    statuses = {"n": framework.run_filter(state, info, handle.cache.nodes["n"])}
    assert statuses["n"] is not None
    nominated, status = asyncio.run(
        DefaultPreemption(handle).post_filter(state, info, statuses))  # type: ignore[arg-type]
    assert (nominated, status.code) == ("n", Code.SUCCESS)


def test_no_victims_gives_the_upstream_message() -> None:
    handle = cluster(node("a", cpu="1"), node("b", cpu="1"), node("c", cpu="1"))
    framework = default_framework(handle)
    state, info = CycleState(), PodInfo(pod("huge", cpu="8"))
    framework.run_pre_filter(state, info)
    statuses = {n.name: framework.run_filter(state, info, n) for n in handle.cache.node_list()}
    nominated, post = asyncio.run(framework.run_post_filter(state, info, statuses))  # type: ignore[arg-type]
    assert nominated == ""
    message = failure_message(3, statuses, None, post)  # type: ignore[arg-type]
    assert message == ("0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are "
                       "available: 3 No preemption victims found for incoming pod..")


def test_failure_histogram_is_sorted_like_upstream() -> None:
    statuses = {"a": Status.unschedulable("Insufficient cpu"),
                "b": Status.unresolvable("node(s) didn't match Pod's node affinity/selector"),
                "c": Status.unresolvable("node(s) didn't match Pod's node affinity/selector")}
    assert failure_message(3, statuses, None, None) == (
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node "
        "affinity/selector.")


def test_feasible_sample_size_follows_the_adaptive_percentage() -> None:
    assert num_feasible_nodes_to_find(50) == 50
    assert num_feasible_nodes_to_find(500) == 230
    assert num_feasible_nodes_to_find(5000) == 500
    assert num_feasible_nodes_to_find(150) == 100


def test_assume_counts_before_the_informer_and_forget_undoes() -> None:
    handle = cluster(node("n", cpu="1"))
    cache = handle.cache
    info = PodInfo(pod("p", cpu="800m"))
    cache.assume(info, "n")
    assert cache.nodes["n"].requested_cpu == 800
    assert feasible(handle, pod("q", cpu="800m"))["n"] is not None
    cache.forget(info.key)
    assert cache.nodes["n"].requested_cpu == 0
    cache.assume(info, "n")
    cache.set_pod(PodInfo(pod("p", cpu="800m", node_name="n")))  # the informer confirms
    assert not cache.is_assumed(info.key)
    assert cache.nodes["n"].requested_cpu == 800
    assert isinstance(cache.nodes["n"], NodeInfo)
