"""The DaemonSet controller's decisions: which nodes, which pods to create and delete,
rolling updates under maxUnavailable and maxSurge, and status."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pilothouse.controllers.daemonset import (
    daemon_pod_spec,
    daemon_status,
    node_affinity_matches,
    pin_to_node,
    plan_nodes,
    plan_rolling_update,
    should_run,
    target_node,
)

NOW = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def ds(**template_spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "ns", "uid": "uid-ds", "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "updateStrategy": {"type": "RollingUpdate",
                                        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "a"}], **template_spec}}}}


def node(name: str, *, labels: dict[str, str] | None = None,
         taints: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints or []}}


def pod(name: str, node_name: str, *, hash_: str = "new", phase: str = "Running",
        ready: bool = True, created: str = "2024-05-01T09:00:00Z") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "creationTimestamp": created,
                         "labels": {"app": "agent", "controller-revision-hash": hash_}},
            "spec": {"nodeName": node_name},
            "status": {"phase": phase, "conditions": [
                {"type": "Ready", "status": "True" if ready else "False",
                 "lastTransitionTime": "2024-05-01T09:00:00Z"}]}}


def test_node_eligibility_follows_selector_affinity_and_taints() -> None:
    assert should_run(node("n1"), ds()) == (True, True)
    assert should_run(node("n1"), ds(nodeSelector={"disk": "ssd"})) == (False, False)
    assert should_run(node("n1", labels={"disk": "ssd"}), ds(nodeSelector={"disk": "ssd"})) == (
        True, True)
    no_schedule = [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]
    assert should_run(node("n1", taints=no_schedule), ds()) == (False, True)
    no_execute = [{"key": "dedicated", "value": "infra", "effect": "NoExecute"}]
    assert should_run(node("n1", taints=no_execute), ds()) == (False, False)
    tolerant = ds(tolerations=[{"key": "dedicated", "operator": "Equal", "value": "infra"}])
    assert should_run(node("n1", taints=no_execute), tolerant) == (True, True)
    cordoned = [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]
    assert should_run(node("n1", taints=cordoned), ds()) == (True, True)
    assert should_run(node("n1"), ds(nodeName="n2")) == (False, False)


def test_required_node_affinity_operators() -> None:
    def spec(*expressions: dict[str, Any]) -> dict[str, Any]:
        return {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": list(expressions)}]}}}}

    gpu = node("n1", labels={"gpus": "4", "zone": "a"})
    assert node_affinity_matches(spec({"key": "zone", "operator": "In", "values": ["a"]}), gpu)
    assert not node_affinity_matches(spec({"key": "zone", "operator": "NotIn",
                                           "values": ["a"]}), gpu)
    assert node_affinity_matches(spec({"key": "gpus", "operator": "Gt", "values": ["2"]}), gpu)
    assert not node_affinity_matches(spec({"key": "gpus", "operator": "Lt",
                                           "values": ["2"]}), gpu)
    assert node_affinity_matches(spec({"key": "ssd", "operator": "DoesNotExist"}), gpu)
    assert not node_affinity_matches(spec(), gpu)


def test_pods_are_pinned_by_node_affinity_and_carry_daemon_tolerations() -> None:
    spec = daemon_pod_spec({"hostNetwork": True, "tolerations": [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 5}]})
    keys = [(t["key"], t["effect"]) for t in spec["tolerations"]]
    assert len(keys) == len(set(keys)) == 7
    assert ("node.kubernetes.io/network-unavailable", "NoSchedule") in keys
    pin_to_node(spec, "n7")
    assert target_node({"spec": spec}) == "n7"
    assert node_affinity_matches(spec, node("n7")) and not node_affinity_matches(spec, node("n8"))


def test_manage_creates_missing_pods_and_deletes_extra_failed_and_misplaced_ones() -> None:
    nodes = [node("n1"), node("n2"), node("n3", taints=[{"key": "x", "effect": "NoExecute"}])]
    node_pods = {
        "n1": [pod("old", "n1", created="2024-05-01T08:00:00Z"),
               pod("young", "n1", created="2024-05-01T09:00:00Z")],
        "n3": [pod("evicted", "n3")],
        "gone": [pod("orphan", "")],
    }
    work = plan_nodes(ds(), nodes, node_pods, "new", NOW)
    assert work.create_on == ["n2"]
    assert sorted(work.delete) == ["evicted", "orphan", "young"]
    failed = plan_nodes(ds(), [node("n1")], {"n1": [pod("dead", "n1", phase="Failed")]}, "new",
                        NOW)
    assert (failed.create_on, failed.delete, failed.failed) == ([], ["dead"], ["dead"])


def test_rolling_update_respects_max_unavailable() -> None:
    nodes = [node(f"n{i}") for i in range(3)]
    node_pods = {f"n{i}": [pod(f"p{i}", f"n{i}", hash_="old")] for i in range(3)}
    assert plan_rolling_update(ds(), nodes, node_pods, "new", NOW).delete == ["p0"]
    # n0 got its new pod but it is not ready yet: nothing more may go.
    node_pods["n0"] = [pod("q0", "n0", ready=False)]
    assert plan_rolling_update(ds(), nodes, node_pods, "new", NOW).delete == []
    # An old pod that is unavailable anyway is always replaced.
    node_pods["n0"] = [pod("q0", "n0")]
    node_pods["n2"] = [pod("p2", "n2", hash_="old", ready=False)]
    assert plan_rolling_update(ds(), nodes, node_pods, "new", NOW).delete == ["p2", "p1"]


def test_rolling_update_with_surge_starts_new_pods_beside_the_old() -> None:
    surge = ds()
    surge["spec"]["updateStrategy"]["rollingUpdate"] = {"maxUnavailable": 0, "maxSurge": 1}
    nodes = [node("n0"), node("n1")]
    node_pods = {"n0": [pod("p0", "n0", hash_="old")], "n1": [pod("p1", "n1", hash_="old")]}
    work = plan_rolling_update(surge, nodes, node_pods, "new", NOW)
    assert (work.create_on, work.delete) == (["n0"], [])
    node_pods["n0"].append(pod("q0", "n0"))
    work = plan_rolling_update(surge, nodes, node_pods, "new", NOW)
    assert (work.create_on, work.delete) == (["n1"], ["p0"])


def test_status_counts_scheduled_ready_updated_and_misscheduled() -> None:
    nodes = [node("n0"), node("n1"), node("n2"),
             node("n3", taints=[{"key": "x", "effect": "NoExecute"}])]
    node_pods = {"n0": [pod("p0", "n0")], "n1": [pod("p1", "n1", hash_="old", ready=False)],
                 "n3": [pod("p3", "n3")]}
    assert daemon_status(ds(), nodes, node_pods, "new", NOW) == {
        "desiredNumberScheduled": 3, "currentNumberScheduled": 2, "numberMisscheduled": 1,
        "numberReady": 1, "updatedNumberScheduled": 1, "numberAvailable": 1,
        "numberUnavailable": 2}
