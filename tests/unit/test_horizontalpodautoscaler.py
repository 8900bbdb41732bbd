"""The HPA controller's arithmetic: grouping pods, the replica calculator, stabilization,
the scale-up limit and behavior policies, conditions.

The replica-calculator cases are those of upstream's `replica_calculator_test.go`
(TestReplicaCalcScaleUp and friends): the same pods, usages and targets must give the same
replica counts and utilizations.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pilothouse.controllers.horizontalpodautoscaler import (
    MetricError,
    PodMetric,
    Recommendation,
    ReplicaCalculator,
    ScaleEvent,
    convert_desired_replicas_with_behavior,
    convert_desired_replicas_with_rules,
    group_pods,
    pod_metrics_info,
    pod_requests,
    quantity_milli,
    scale_down_limit_with_rules,
    scale_up_limit_with_rules,
    set_condition,
    stabilize,
    stabilize_with_behavior,
    store_scale_event,
)
from pilothouse.machinery.meta import rfc3339

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(hours=1)
SCALE_UP = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
    {"type": "Pods", "value": 4, "periodSeconds": 15},
    {"type": "Percent", "value": 100, "periodSeconds": 15}]}
SCALE_DOWN = {"selectPolicy": "Max", "policies": [
    {"type": "Percent", "value": 100, "periodSeconds": 15}]}


def pod(name: str, request: str | None = "1", *, ready: str = "True", phase: str = "Running",
        started: datetime = LONG_AGO, ready_since: datetime = LONG_AGO,
        **extra: Any) -> dict[str, Any]:
    resources = {"requests": {"cpu": request}} if request is not None else {}
    return {"metadata": {"name": name, "namespace": "ns", **extra},
            "spec": {"containers": [{"name": "app", "resources": resources}]},
            "status": {"phase": phase, "startTime": rfc3339(started), "conditions": [
                {"type": "Ready", "status": ready,
                 "lastTransitionTime": rfc3339(ready_since)}]}}


def usage(**millis: int) -> dict[str, PodMetric]:
    return {name: PodMetric(value, NOW, 60.0) for name, value in millis.items()}


CALC = ReplicaCalculator()


def test_scale_up_on_utilization() -> None:
    pods = [pod("a"), pod("b"), pod("c")]
    replicas, utilization, raw = CALC.resource_replicas(
        3, 30, "cpu", pods, usage(a=300, b=500, c=700), now=NOW)
    assert (replicas, utilization, raw) == (5, 50, 500)


def test_scale_down_on_utilization() -> None:
    pods = [pod(n) for n in "abcde"]
    replicas, utilization, _ = CALC.resource_replicas(
        5, 50, "cpu", pods, usage(a=100, b=300, c=500, d=250, e=250), now=NOW)
    assert (replicas, utilization) == (3, 28)


def test_a_change_within_the_tolerance_keeps_the_replicas() -> None:
    pods = [pod("a", "0.9"), pod("b", "1.0"), pod("c", "1.1")]
    replicas, utilization, _ = CALC.resource_replicas(
        3, 100, "cpu", pods, usage(a=1010, b=1030, c=1020), now=NOW)
    assert (replicas, utilization) == (3, 102)


def test_unready_pods_count_as_idle_on_a_scale_up() -> None:
    pods = [pod("a", ready="False"), pod("b"), pod("c")]
    replicas, utilization, _ = CALC.resource_replicas(
        3, 30, "cpu", pods, usage(a=300, b=500, c=700), now=NOW)
    assert (replicas, utilization) == (4, 60)


def test_pods_without_metrics_damp_a_scale_down() -> None:
    pods = [pod(n) for n in "abcd"]
    # Three pods at 10%: alone they ask for 1 replica; the pod with no metric counts as
    # using 100% of its request, so the autoscaler only goes to 3.
    replicas, _, _ = CALC.resource_replicas(4, 50, "cpu", pods, usage(a=100, b=100, c=100),
                                            now=NOW)
    assert replicas == 3


def test_average_value_targets_are_per_pod_usage() -> None:
    pods = [pod("a"), pod("b")]
    replicas, average = CALC.raw_resource_replicas(2, 200, "cpu", pods, usage(a=500, b=700),
                                                   now=NOW)
    assert (replicas, average) == (6, 600)


def test_a_container_without_a_request_makes_utilization_unusable() -> None:
    with pytest.raises(MetricError, match="missing request for cpu in container app of Pod a"):
        CALC.resource_replicas(1, 50, "cpu", [pod("a", None)], usage(a=100), now=NOW)


def test_no_pods_or_no_ready_metrics_are_errors() -> None:
    with pytest.raises(MetricError, match="no pods returned by selector"):
        CALC.resource_replicas(1, 50, "cpu", [], usage(a=100), now=NOW)
    with pytest.raises(MetricError, match="did not receive metrics for targeted pods"):
        CALC.resource_replicas(1, 50, "cpu", [pod("a", phase="Pending")], usage(a=100),
                               now=NOW)


def test_group_pods_after_a_recent_start() -> None:
    fresh = NOW - timedelta(seconds=20)
    pods = [pod("old"), pod("gone", deletionTimestamp=rfc3339(NOW)),
            pod("failed", phase="Failed"), pod("pending", phase="Pending"),
            pod("silent"),
            # started 20 s ago, ready 15 s ago: a 60 s metric window has not passed since
            pod("warming", started=fresh, ready_since=NOW - timedelta(seconds=15)),
            # started an hour ago, unready since shortly after start: never ready
            pod("never", ready="False", ready_since=LONG_AGO + timedelta(seconds=5))]
    metrics = usage(old=1, gone=1, failed=1, pending=1, warming=1, never=1)
    groups = group_pods(pods, metrics, "cpu", cpu_initialization_period=300,
                        initial_readiness_delay=30, now=NOW)
    assert groups.ready == 1
    assert groups.ignored == {"gone", "failed"}
    assert groups.unready == {"pending", "warming", "never"}
    assert groups.missing == {"silent"}
    # Memory does not look at readiness.
    memory = group_pods(pods, metrics, "memory", cpu_initialization_period=300,
                        initial_readiness_delay=30, now=NOW)
    assert memory.ready == 3 and memory.unready == {"pending"}


def test_pod_metrics_sum_containers_or_pick_one() -> None:
    items = [{"metadata": {"name": "a", "namespace": "ns"}, "timestamp": rfc3339(NOW),
              "window": "10s", "containers": [
                  {"name": "app", "usage": {"cpu": "250m", "memory": "10Mi"}},
                  {"name": "side", "usage": {"cpu": "1500000n", "memory": "1Mi"}}]},
             {"metadata": {"name": "b", "namespace": "ns"}, "timestamp": rfc3339(NOW),
              "window": "10s", "containers": [{"name": "app", "usage": {"memory": "1Mi"}}]}]
    metrics, stamp = pod_metrics_info(items, "cpu")
    assert stamp == NOW
    assert metrics == {"a": PodMetric(252, NOW, 10.0)}  # 1.5m rounds up, b lacks cpu
    only, _ = pod_metrics_info(items[:1], "cpu", "side")
    assert only == {"a": PodMetric(2, NOW, 10.0)}
    with pytest.raises(MetricError, match="container nope not present in metrics for pod ns/a"):
        pod_metrics_info(items[:1], "cpu", "nope")
    with pytest.raises(MetricError, match="no metrics returned from resource metrics API"):
        pod_metrics_info([], "cpu")


def test_requests_include_sidecars() -> None:
    sidecar = pod("a", "100m")
    sidecar["spec"]["initContainers"] = [
        {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}},
        {"name": "init", "resources": {}}]
    assert pod_requests([sidecar], "cpu") == {"a": 150}
    assert pod_requests([sidecar], "cpu", "side") == {"a": 50}


def test_without_behavior_scale_up_is_limited_and_clamped() -> None:
    assert convert_desired_replicas_with_rules(1, 20, 1, 3) == (
        3, "TooManyReplicas", "the desired replica count is more than the maximum replica count")
    assert convert_desired_replicas_with_rules(2, 20, 1, 10)[:2] == (4, "ScaleUpLimit")
    assert convert_desired_replicas_with_rules(10, 30, 1, 100)[:2] == (20, "ScaleUpLimit")
    assert convert_desired_replicas_with_rules(3, 0, 2, 10)[:2] == (2, "TooFewReplicas")
    assert convert_desired_replicas_with_rules(3, 5, 1, 10)[:2] == (5, "DesiredWithinRange")


def test_scale_down_follows_the_highest_recent_recommendation() -> None:
    history = [Recommendation(5, 0.0)]
    assert stabilize(history, 2, window=300, now=100.0) == 5
    assert stabilize(history, 3, window=300, now=200.0) == 5
    # The 5 is out of the window by now: the highest left is the 3.
    assert stabilize(history, 1, window=300, now=350.0) == 3
    assert len(history) == 3  # the expired slot was reused


def test_behavior_windows_bound_the_recommendation() -> None:
    history = [Recommendation(6, 90.0)]
    replicas, reason, _ = stabilize_with_behavior(history, current=4, desired=2, up_window=0,
                                                  down_window=60, now=100.0)
    assert (replicas, reason) == (4, "ScaleDownStabilized")  # the recent 6 holds it at 4
    history = [Recommendation(2, 90.0)]
    replicas, reason, _ = stabilize_with_behavior(history, current=2, desired=8, up_window=30,
                                                  down_window=0, now=100.0)
    assert (replicas, reason) == (2, "ScaleUpStabilized")


def test_behavior_policies_limit_the_rate() -> None:
    assert scale_up_limit_with_rules(2, [], [], SCALE_UP, 100.0) == 6  # max(2+4, 2*2)
    assert scale_up_limit_with_rules(10, [], [], SCALE_UP, 100.0) == 20
    assert scale_up_limit_with_rules(2, [], [], {**SCALE_UP, "selectPolicy": "Min"}, 100.0) == 4
    assert scale_up_limit_with_rules(2, [], [], {**SCALE_UP, "selectPolicy": "Disabled"},
                                     100.0) == 2
    # Four added five seconds ago count against this period: it started at 2 replicas.
    assert scale_up_limit_with_rules(6, [ScaleEvent(4, 95.0)], [], SCALE_UP, 100.0) == 6
    assert scale_down_limit_with_rules(5, [], [], SCALE_DOWN, 100.0) == 0
    slow = {"selectPolicy": "Max", "policies": [{"type": "Pods", "value": 1,
                                                 "periodSeconds": 60}]}
    behavior = {"scaleUp": SCALE_UP, "scaleDown": slow}
    assert convert_desired_replicas_with_behavior(
        current=5, desired=1, low=1, high=10, behavior=behavior, ups=[], downs=[],
        now=100.0)[:2] == (4, "ScaleDownLimit")
    assert convert_desired_replicas_with_behavior(
        current=5, desired=30, low=1, high=12, behavior=behavior, ups=[], downs=[],
        now=100.0)[:2] == (10, "ScaleUpLimit")
    assert convert_desired_replicas_with_behavior(
        current=5, desired=30, low=1, high=8, behavior=behavior, ups=[], downs=[],
        now=100.0)[:2] == (8, "TooManyReplicas")


def test_scale_events_reuse_outdated_slots() -> None:
    events = [ScaleEvent(2, 0.0)]
    store_scale_event(events, 3, 15.0, 100.0)
    assert events == [ScaleEvent(3, 100.0)]
    store_scale_event(events, 1, 15.0, 105.0)
    assert [e.change for e in events] == [3, 1]


def test_condition_transition_time_moves_only_with_its_status() -> None:
    status: dict[str, Any] = {}
    set_condition(status, "AbleToScale", "True", "SucceededGetScale", "ok", "t1")
    set_condition(status, "AbleToScale", "True", "SucceededRescale", "scaled", "t2")
    assert status["conditions"] == [{"type": "AbleToScale", "lastTransitionTime": "t1",
                                     "status": "True", "reason": "SucceededRescale",
                                     "message": "scaled"}]
    set_condition(status, "AbleToScale", "False", "FailedGetScale", "gone", "t3")
    assert status["conditions"][0]["lastTransitionTime"] == "t3"


def test_milli_quantities_print_canonically() -> None:
    assert [quantity_milli(v) for v in (250, 1000, 1500, 0)] == ["250m", "1", "1500m", "0"]
