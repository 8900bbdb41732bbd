"""Deployment decisions: surge and unavailability arithmetic, new and old ReplicaSets,
proportional scaling, revisions and status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pilothouse.controllers.deployment import (
    DESIRED_REPLICAS,
    HASH_LABEL,
    MAX_REPLICAS,
    REVISION,
    REVISION_HISTORY,
    calculate_status,
    cleanup_candidates,
    equal_ignore_hash,
    find_active_or_latest,
    find_new_rs,
    find_old_rss,
    is_saturated,
    max_surge,
    max_unavailable,
    new_rs_new_replicas,
    old_replica_set_targets,
    pod_template_hash,
    proportional_sizes,
    resolve_fenceposts,
    rollout_status,
    set_new_rs_annotations,
    stuck_requeue_after,
)
from pilothouse.machinery.meta import rfc3339

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
TEMPLATE = {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}


def deployment(replicas: int = 10, *, surge: int | str = "25%", unavailable: int | str = "25%",
               strategy: str = "RollingUpdate", image: str = "nginx:1",
               status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    template = {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]}}
    body: dict[str, Any] = {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                            "template": template, "strategy": {"type": strategy},
                            "progressDeadlineSeconds": 600, "revisionHistoryLimit": 10, **spec}
    if strategy == "RollingUpdate":
        body["strategy"]["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {"metadata": {"name": "web", "namespace": "ns", "uid": "d-uid", "generation": 2,
                         "annotations": {}},
            "spec": body, "status": status or {}}


def replica_set(name: str, replicas: int, *, available: int | None = None,
                image: str = "nginx:1", age: int = 100, revision: int | None = None,
                annotations: dict[str, str] | None = None) -> dict[str, Any]:
    notes = dict(annotations or {})
    if revision is not None:
        notes[REVISION] = str(revision)
    template = {"metadata": {"labels": {"app": "web", HASH_LABEL: name}},
                "spec": {"containers": [{"name": "web", "image": image}]}}
    available = replicas if available is None else available
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                         "creationTimestamp": rfc3339(NOW - timedelta(seconds=age)),
                         "annotations": notes, "generation": 1},
            "spec": {"replicas": replicas, "template": template},
            "status": {"replicas": replicas, "readyReplicas": available,
                       "availableReplicas": available, "observedGeneration": 1}}


@pytest.mark.parametrize(("surge", "unavailable", "desired", "expected"), [
    ("25%", "25%", 10, (3, 2)),
    ("25%", "25%", 3, (1, 0)),
    ("25%", "25%", 1, (1, 0)),
    (0, "1%", 2, (0, 1)),
    (0, 0, 5, (0, 1)),
    (2, "50%", 5, (2, 2)),
    ("100%", 0, 4, (4, 0)),
])
def test_fenceposts_round_surge_up_and_unavailable_down(
        surge: int | str, unavailable: int | str, desired: int,
        expected: tuple[int, int]) -> None:
    assert resolve_fenceposts(surge, unavailable, desired) == expected


def test_max_unavailable_is_capped_and_recreate_has_no_fenceposts() -> None:
    assert max_unavailable(deployment(2, surge=0, unavailable=5)) == 2
    assert max_unavailable(deployment(0)) == 0
    recreate = deployment(4, strategy="Recreate")
    assert (max_surge(recreate), max_unavailable(recreate)) == (0, 0)


def test_new_replica_set_grows_within_surge() -> None:
    d = deployment(10)
    old = replica_set("old", 10)
    new = replica_set("new", 0)
    assert new_rs_new_replicas(d, [old, new], new) == 3
    new["spec"]["replicas"] = 3
    assert new_rs_new_replicas(d, [old, new], new) == 3
    old["spec"]["replicas"] = 7
    assert new_rs_new_replicas(d, [old, new], new) == 6
    assert new_rs_new_replicas(deployment(4, strategy="Recreate"), [new], new) == 4


def test_old_replica_sets_scale_down_within_max_unavailable() -> None:
    d = deployment(10)
    old = replica_set("old", 10)
    new = replica_set("new", 3, available=0)
    # 13 pods, 10 available, at least 8 must stay: 2 may go.
    assert [(rs["metadata"]["name"], n) for rs, n in
            old_replica_set_targets(d, [old, new], [old], new)] == [("old", 8)]
    # The new pods are not available yet and 5 of the surge are unavailable: nothing moves.
    stuck_new = replica_set("new", 5, available=0)
    old["spec"]["replicas"] = 8
    assert old_replica_set_targets(d, [old, stuck_new], [old], stuck_new) == []


def test_unhealthy_old_replicas_go_first_oldest_replica_set_first() -> None:
    d = deployment(3, surge=2, unavailable=0)
    older = replica_set("older", 2, available=0, age=300)
    old = replica_set("old", 2, available=2, age=200)
    new = replica_set("new", 1, available=1, age=10)
    targets = old_replica_set_targets(d, [older, old, new], [older, old], new)
    assert [(rs["metadata"]["name"], n) for rs, n in targets] == [("older", 0)]


def test_new_and_old_replica_sets_are_found_by_template() -> None:
    d = deployment(3, image="nginx:2")
    first = replica_set("first", 3, image="nginx:1", age=300)
    second = replica_set("second", 0, image="nginx:2", age=200)
    dup = replica_set("dup", 0, image="nginx:2", age=100)
    assert find_new_rs(d, [dup, first, second]) is second
    assert [rs["metadata"]["name"] for rs in find_old_rss(d, [first, second, dup])] == [
        "first", "dup"]
    assert find_new_rs(deployment(3, image="nginx:9"), [first, second]) is None


def test_templates_differing_only_in_hash_are_equal() -> None:
    hashed = {"metadata": {"labels": {"app": "web", HASH_LABEL: "abc"}}, "spec": TEMPLATE["spec"]}
    assert equal_ignore_hash(TEMPLATE, hashed)
    assert equal_ignore_hash({"spec": {}}, {"metadata": {"labels": {HASH_LABEL: "x"}},
                                            "spec": {}})
    other = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}
    assert not equal_ignore_hash(TEMPLATE, other)


def test_pod_template_hash_is_stable_and_salted_by_collisions() -> None:
    first = pod_template_hash(TEMPLATE)
    assert first == pod_template_hash({"spec": TEMPLATE["spec"], "metadata": TEMPLATE["metadata"]})
    assert set(first) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert pod_template_hash(TEMPLATE, 1) != first
    assert pod_template_hash(TEMPLATE, 0) != first


def test_new_replica_set_annotations_carry_revision_history_and_deployment_notes() -> None:
    d = deployment(4, surge=1)
    d["metadata"]["annotations"] = {"kubernetes.io/change-cause": "v2",
                                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                                    REVISION: "7"}
    fresh = replica_set("fresh", 0)
    assert set_new_rs_annotations(d, fresh, "3", exists=False)
    notes = fresh["metadata"]["annotations"]
    assert notes == {"kubernetes.io/change-cause": "v2", REVISION: "3",
                     DESIRED_REPLICAS: "4", MAX_REPLICAS: "5"}
    rolled_back = replica_set("back", 4, revision=1,
                              annotations={REVISION_HISTORY: "0"})
    assert set_new_rs_annotations(d, rolled_back, "3", exists=True)
    assert rolled_back["metadata"]["annotations"][REVISION] == "3"
    assert rolled_back["metadata"]["annotations"][REVISION_HISTORY] == "0,1"
    assert not set_new_rs_annotations(d, rolled_back, "3", exists=True)


def test_proportional_scaling_spreads_by_size() -> None:
    d = deployment(15, surge=3, unavailable=2)
    notes = {MAX_REPLICAS: "13"}
    old = replica_set("old", 8, age=300, annotations=notes)
    new = replica_set("new", 5, age=10, annotations=notes)
    # 10 -> 15 replicas: allowed 18, 13 exist, +5 spread 8:5.
    assert proportional_sizes(d, [old, new]) == {"old": 11, "new": 7}
    d_down = deployment(5, surge=3, unavailable=2)
    assert sum(proportional_sizes(d_down, [old, new]).values()) == 8
    assert proportional_sizes(deployment(0), [old, new]) == {"old": 0, "new": 0}


def test_active_or_latest_and_saturation() -> None:
    old = replica_set("old", 0, age=300)
    older = replica_set("older", 0, age=400)
    new = replica_set("new", 3)
    assert find_active_or_latest(new, [old]) is new
    assert find_active_or_latest(None, [older, old]) is old
    busy = replica_set("busy", 2)
    assert find_active_or_latest(new, [busy]) is None
    d = deployment(3)
    new["metadata"]["annotations"][DESIRED_REPLICAS] = "3"
    assert is_saturated(d, new)
    new["status"]["availableReplicas"] = 2
    assert not is_saturated(d, new)


def test_status_sums_replica_sets_and_judges_availability() -> None:
    d = deployment(4, surge=1, unavailable=1)
    old = replica_set("old", 2, available=2)
    new = replica_set("new", 3, available=1)
    status = calculate_status([old, new], new, d, NOW)
    assert {k: status[k] for k in ("observedGeneration", "replicas", "updatedReplicas",
                                   "readyReplicas", "availableReplicas",
                                   "unavailableReplicas")} == {
        "observedGeneration": 2, "replicas": 5, "updatedReplicas": 3, "readyReplicas": 3,
        "availableReplicas": 3, "unavailableReplicas": 2}
    [available] = status["conditions"]
    assert (available["type"], available["status"], available["reason"]) == (
        "Available", "True", "MinimumReplicasAvailable")
    short = calculate_status([replica_set("new", 4, available=2)], None, d, NOW)
    assert short["conditions"][0]["reason"] == "MinimumReplicasUnavailable"
    assert "updatedReplicas" not in short


def progressing(reason: str, ago: float) -> dict[str, Any]:
    stamp = rfc3339(NOW - timedelta(seconds=ago))
    return {"type": "Progressing", "status": "True", "lastUpdateTime": stamp,
            "lastTransitionTime": stamp, "reason": reason, "message": ""}


def test_rollout_status_reports_progress_completion_and_deadline() -> None:
    new = replica_set("web-abc", 3, available=3)
    d = deployment(3, status={"replicas": 3, "updatedReplicas": 2, "availableReplicas": 2,
                              "conditions": [progressing("ReplicaSetUpdated", 30)]})
    done = rollout_status([new], new, d, NOW)
    cond = [c for c in done["conditions"] if c["type"] == "Progressing"][0]
    assert (cond["reason"], cond["message"]) == (
        "NewReplicaSetAvailable", 'ReplicaSet "web-abc" has successfully progressed.')

    slow = replica_set("web-abc", 3, available=1)
    d = deployment(3, status={"replicas": 3, "updatedReplicas": 3, "readyReplicas": 1,
                              "availableReplicas": 1, "observedGeneration": 2,
                              "conditions": [progressing("ReplicaSetUpdated", 601)]})
    timed_out = rollout_status([slow], slow, d, NOW)
    cond = [c for c in timed_out["conditions"] if c["type"] == "Progressing"][0]
    assert (cond["status"], cond["reason"]) == ("False", "ProgressDeadlineExceeded")

    d["status"]["conditions"] = [progressing("ReplicaSetUpdated", 100)]
    assert stuck_requeue_after(d, rollout_status([slow], slow, d, NOW), NOW) == 501


def test_cleanup_keeps_revision_history_limit_and_skips_live_replica_sets() -> None:
    d = deployment(3, revisionHistoryLimit=1)
    oldest = replica_set("r1", 0, revision=1, age=500)
    busy = replica_set("r2", 1, revision=2, age=400)
    recent = replica_set("r3", 0, revision=3, age=300)
    assert [rs["metadata"]["name"] for rs in cleanup_candidates(d, [recent, busy, oldest])] == [
        "r1"]
    assert cleanup_candidates(deployment(3), [recent, busy, oldest]) == []
