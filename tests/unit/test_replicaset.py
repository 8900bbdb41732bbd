"""ReplicaSet decisions: which pods to delete, what to adopt, what status to report."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from pilothouse.client import ApiError, classify_claims
from pilothouse.controllers._workloads import (
    Expectations,
    int_or_percent,
    is_pod_available,
    pod_from_template,
    slow_start_batch,
)
from pilothouse.controllers.replicaset import calculate_status, pods_to_delete
from pilothouse.machinery.meta import rfc3339
from pilothouse.machinery.selectors import label_selector_from_dict

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def pod(name: str, *, node: str = "n1", phase: str = "Running", ready: bool = True,
        ready_ago: float = 3600, created_ago: float = 7200, restarts: int = 0,
        labels: dict[str, str] | None = None, owner: str | None = None,
        cost: int | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                            "labels": labels if labels is not None else {"app": "web"},
                            "creationTimestamp": rfc3339(NOW - timedelta(seconds=created_ago))}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                    "name": owner, "uid": owner, "controller": True}]
    if cost is not None:
        meta["annotations"] = {"controller.kubernetes.io/pod-deletion-cost": str(cost)}
    conditions = [{"type": "Ready", "status": "True" if ready else "False",
                   "lastTransitionTime": rfc3339(NOW - timedelta(seconds=ready_ago))}]
    return {"metadata": meta, "spec": {"nodeName": node} if node else {},
            "status": {"phase": phase, "conditions": conditions,
                       "containerStatuses": [{"name": "c", "restartCount": restarts}]}}


def names(pods: list[dict[str, Any]]) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


def delete(pods: list[dict[str, Any]], count: int,
           related: list[dict[str, Any]] | None = None) -> list[str]:
    return names(pods_to_delete(pods, related if related is not None else pods, count, NOW))


def test_unscheduled_pods_go_before_scheduled_ones() -> None:
    pods = [pod("running"), pod("unscheduled", node="", phase="Pending", ready=False)]
    assert delete(pods, 1) == ["unscheduled"]


def test_pending_before_running_and_not_ready_before_ready() -> None:
    assert delete([pod("running"), pod("pending", phase="Pending", ready=False)], 1) == [
        "pending"]
    assert delete([pod("ready"), pod("unready", ready=False)], 1) == ["unready"]


def test_lower_deletion_cost_goes_first() -> None:
    assert delete([pod("cheap", cost=-5), pod("dear", cost=100)], 1) == ["cheap"]


def test_pods_doubled_up_on_a_node_go_before_pods_alone() -> None:
    pods = [pod("alone", node="n1"), pod("crowded-a", node="n2"), pod("crowded-b", node="n2")]
    assert delete(pods, 1)[0].startswith("crowded")


def test_recently_ready_and_restarting_and_young_pods_go_first() -> None:
    assert delete([pod("old-ready", ready_ago=86400), pod("new-ready", ready_ago=10)], 1) == [
        "new-ready"]
    assert delete([pod("stable"), pod("flaky", restarts=7)], 1) == ["flaky"]
    assert delete([pod("old", created_ago=86400 * 30, ready_ago=100),
                   pod("young", created_ago=100, ready_ago=100)], 1) == ["young"]


def test_deleting_all_returns_all() -> None:
    pods = [pod("a"), pod("b")]
    assert sorted(delete(pods, 5)) == ["a", "b"]


def rs(replicas: int = 3, *, min_ready: int = 0, conditions: list | None = None
       ) -> dict[str, Any]:
    status: dict[str, Any] = {"replicas": 0}
    if conditions:
        status["conditions"] = conditions
    return {"metadata": {"name": "web", "namespace": "ns", "uid": "rs-uid", "generation": 4},
            "spec": {"replicas": replicas, "minReadySeconds": min_ready,
                     "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", "tier": "front"}},
                                  "spec": {"containers": [{"name": "c", "image": "x"}]}}},
            "status": status}


def test_status_counts_ready_available_and_fully_labeled_pods() -> None:
    pods = [pod("a", labels={"app": "web", "tier": "front"}, ready_ago=60),
            pod("b", labels={"app": "web"}, ready_ago=5),
            pod("c", ready=False)]
    status = calculate_status(rs(min_ready=30), pods, None, NOW)
    assert status == {"replicas": 3, "fullyLabeledReplicas": 1, "readyReplicas": 2,
                      "availableReplicas": 1, "observedGeneration": 4}


def test_status_reports_and_clears_replica_failure() -> None:
    quota = ApiError(403, {"reason": "Forbidden",
                           "message": 'pods "web-x" is forbidden: exceeded quota: q'})
    failed = calculate_status(rs(), [], quota, NOW)
    [cond] = failed["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == ("ReplicaFailure", "True",
                                                              "FailedCreate")
    assert "exceeded quota" in cond["message"]
    cleared = calculate_status(rs(conditions=failed["conditions"]), [], None, NOW)
    assert "conditions" not in cleared
    assert cleared["replicas"] == 0


def test_availability_needs_min_ready_seconds() -> None:
    fresh = pod("a", ready_ago=5)
    assert is_pod_available(fresh, 0, NOW)
    assert not is_pod_available(fresh, 10, NOW)
    assert is_pod_available(fresh, 5, NOW)
    assert not is_pod_available(pod("b", ready=False), 0, NOW)


def test_claims_adopt_orphans_release_strays_and_ignore_others() -> None:
    owner = {"metadata": {"name": "web", "uid": "me"}}
    selector = label_selector_from_dict({"matchLabels": {"app": "web"}})
    mine = pod("mine", owner="me")
    stray = pod("stray", owner="me", labels={"app": "other"})
    orphan = pod("orphan")
    theirs = pod("theirs", owner="someone-else")
    unmatched_orphan = pod("unmatched", labels={"app": "db"})
    claims = classify_claims(owner, selector, [mine, stray, orphan, theirs, unmatched_orphan])
    assert names(claims.owned) == ["mine"]
    assert names(claims.adopt) == ["orphan"]
    assert names(claims.release) == ["stray"]
    deleting = {"metadata": {"name": "web", "uid": "me", "deletionTimestamp": rfc3339(NOW)}}
    claims = classify_claims(deleting, selector, [mine, stray, orphan])
    assert (names(claims.owned), claims.adopt, claims.release) == (["mine"], [], [])


def test_pod_from_template_is_owned_and_generated() -> None:
    owner = rs()
    ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs-uid",
           "controller": True, "blockOwnerDeletion": True}
    created = pod_from_template(owner["spec"]["template"], owner, owner_ref=ref)
    assert created["metadata"]["generateName"] == "web-"
    assert created["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert created["metadata"]["ownerReferences"] == [ref]
    assert created["spec"] == owner["spec"]["template"]["spec"]
    assert created["spec"] is not owner["spec"]["template"]["spec"]


def test_expectations_hold_until_observed() -> None:
    exp = Expectations()
    assert exp.satisfied("ns/web")
    exp.expect_creations("ns/web", 2)
    exp.creation_observed("ns/web")
    assert not exp.satisfied("ns/web")
    exp.creation_observed("ns/web")
    assert exp.satisfied("ns/web")
    exp.expect_deletions("ns/web", ["ns/a"])
    assert not exp.satisfied("ns/web")
    exp.deletion_observed("ns/web", "ns/a")
    assert exp.satisfied("ns/web")
    lapsed = Expectations(timeout=-1)
    lapsed.expect_creations("ns/web", 5)
    assert lapsed.satisfied("ns/web")


def test_slow_start_grows_batches_and_stops_at_the_first_failing_batch() -> None:
    calls = 0

    async def create() -> None:
        nonlocal calls
        calls += 1
        if calls > 4:
            raise RuntimeError("quota")

    done, errors = asyncio.run(slow_start_batch(20, create))
    assert (done, calls) == (3 + 1, 1 + 2 + 4)
    assert len(errors) == 3


def test_int_or_percent_rounds_as_asked() -> None:
    assert int_or_percent("25%", 10, round_up=True) == 3
    assert int_or_percent("25%", 10, round_up=False) == 2
    assert int_or_percent(4, 10, round_up=False) == 4
