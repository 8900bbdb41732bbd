"""The node lifecycle controller's decisions: when a node is lost, how it is tainted, and
when each pod on it must go, given its tolerations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pilothouse.controllers.nodelifecycle import (
    NOT_READY,
    UNREACHABLE,
    desired_taints,
    eviction_time,
    lease_expired,
    observe,
    tolerates,
    unknown_conditions,
)

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def node(ready: str | None, *, taints: list[dict] | None = None, **spec: object) -> dict:
    conditions = [] if ready is None else [{"type": "Ready", "status": ready}]
    return {"metadata": {"name": "n1"}, "spec": {"taints": taints or [], **spec},
            "status": {"conditions": conditions}}


# -- health --------------------------------------------------------------------------------

def test_a_node_seen_first_gets_a_full_grace_period() -> None:
    health = observe(None, renew_time="2020-01-01T00:00:00.000000Z", heartbeat=None, now=T0)
    assert not lease_expired(health, at(40), 40)
    assert lease_expired(health, at(40.5), 40)


def test_each_lease_renewal_restarts_the_grace_period() -> None:
    health = observe(None, renew_time="r1", heartbeat="h1", now=T0)
    health = observe(health, renew_time="r2", heartbeat="h1", now=at(30))
    assert not lease_expired(health, at(60), 40)
    health = observe(health, renew_time="r2", heartbeat="h1", now=at(60))
    assert lease_expired(health, at(71), 40)


def test_a_new_ready_heartbeat_counts_like_a_renewal() -> None:
    health = observe(None, renew_time=None, heartbeat="h1", now=T0)
    health = observe(health, renew_time=None, heartbeat="h2", now=at(35))
    assert not lease_expired(health, at(70), 40)


def test_a_silent_kubelets_conditions_become_unknown() -> None:
    conditions = [
        {"type": "Ready", "status": "True", "reason": "KubeletReady",
         "lastHeartbeatTime": "2025-01-01T11:59:00Z", "lastTransitionTime": "2025-01-01T10:00:00Z"},
        {"type": "MemoryPressure", "status": "False"},
        {"type": "NetworkUnavailable", "status": "False"},
    ]
    result = unknown_conditions(conditions, now=T0, created="2025-01-01T09:00:00Z")
    assert result is not None
    by_type = {c["type"]: c for c in result}
    ready = by_type["Ready"]
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
    assert ready["lastHeartbeatTime"] == "2025-01-01T11:59:00Z"
    assert ready["lastTransitionTime"] == "2025-01-01T12:00:00Z"
    assert by_type["MemoryPressure"]["status"] == "Unknown"
    assert by_type["DiskPressure"]["reason"] == "NodeStatusNeverUpdated"
    assert by_type["NetworkUnavailable"]["status"] == "False"
    assert unknown_conditions(result, now=at(10), created=None) is None


# -- taints --------------------------------------------------------------------------------

def test_an_unreachable_node_is_tainted_for_scheduling_and_execution() -> None:
    taints = desired_taints(node("Unknown", taints=[{"key": "team", "effect": "NoSchedule"}]), T0)
    assert {"key": "team", "effect": "NoSchedule"} in taints
    assert {"key": UNREACHABLE, "effect": "NoSchedule"} in taints
    assert {"key": UNREACHABLE, "effect": "NoExecute",
            "timeAdded": "2025-01-01T12:00:00Z"} in taints
    assert all(t["key"] != NOT_READY for t in taints)


def test_not_ready_swaps_for_unreachable_and_ready_clears_both() -> None:
    not_ready = [{"key": NOT_READY, "effect": "NoSchedule"},
                 {"key": NOT_READY, "effect": "NoExecute", "timeAdded": "2025-01-01T11:00:00Z"}]
    swapped = desired_taints(node("Unknown", taints=not_ready), T0)
    assert sorted((t["key"], t["effect"]) for t in swapped) == [
        (UNREACHABLE, "NoExecute"), (UNREACHABLE, "NoSchedule")]
    assert desired_taints(node("True", taints=swapped), at(5)) == []


def test_taints_already_in_place_keep_their_time() -> None:
    present = [{"key": UNREACHABLE, "effect": "NoSchedule"},
               {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2025-01-01T11:00:00Z"}]
    assert desired_taints(node("Unknown", taints=present), at(60)) == present


def test_a_node_that_never_reported_and_an_unschedulable_one() -> None:
    assert desired_taints(node(None), T0) == []
    assert desired_taints(node("True", unschedulable=True), T0) == [
        {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]


# -- eviction ------------------------------------------------------------------------------

UNREACHABLE_TAINT = {"key": UNREACHABLE, "effect": "NoExecute"}


def test_toleration_matching() -> None:
    assert tolerates({"operator": "Exists"}, UNREACHABLE_TAINT)
    assert tolerates({"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"},
                     UNREACHABLE_TAINT)
    assert not tolerates({"key": UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"},
                         UNREACHABLE_TAINT)
    assert tolerates({"key": "k", "value": "v"}, {"key": "k", "value": "v", "effect": "NoExecute"})
    assert not tolerates({"key": "k", "operator": "Equal", "value": "w"},
                         {"key": "k", "value": "v", "effect": "NoExecute"})


def test_a_pod_that_does_not_tolerate_a_taint_goes_at_once() -> None:
    taints = [({"key": "maintenance", "effect": "NoExecute"}, T0)]
    assert eviction_time([], taints) == T0


def test_a_pod_stays_forever_without_toleration_seconds() -> None:
    forever = [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]
    assert eviction_time(forever, [(UNREACHABLE_TAINT, T0)]) is None
    assert eviction_time([], []) is None


def test_the_smallest_toleration_counts_from_the_first_taint() -> None:
    tolerations = [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
                    "tolerationSeconds": 60},
                   {"key": "slow", "operator": "Exists", "effect": "NoExecute",
                    "tolerationSeconds": 30}]
    taints = [(UNREACHABLE_TAINT, at(10)), ({"key": "slow", "effect": "NoExecute"}, T0)]
    assert eviction_time(tolerations, taints) == at(30)
    zero = [{"operator": "Exists", "tolerationSeconds": -5}]
    assert eviction_time(zero, taints) == T0


