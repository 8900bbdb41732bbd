"""The HorizontalPodAutoscaler controller: sets a scale target's replicas from its pods' usage.

As `pkg/controller/podautoscaler` (Kubernetes 1.32): every sync period (15 s, the
controller manager's --horizontal-pod-autoscaler-sync-period) each autoscaling/v2 HPA is
synced: its target's `scale` subresource is read (any kind that serves one: Deployments,
ReplicaSets, StatefulSets, custom resources such as PyTorchJob, found through discovery by
the reference's group and kind), the pods its selector names are grouped (ready, unready,
missing a metric, ignored) and, for each metric, the replica calculator proposes a count
from the pods' usage in `metrics.k8s.io` PodMetrics: `ceil(ratio * ready pods)`, unless the
ratio is within the 10% tolerance; missing and unready pods are counted the way that damps
the move. The largest proposal wins, is stabilized (a scale-down follows the highest
recommendation of the last 300 s, --horizontal-pod-autoscaler-downscale-stabilization, or
the HPA's `behavior`, whose policies also limit the rate) and clamped to min/max replicas,
then written to the target's scale; the HPA's status gets the replicas, the current metrics,
`lastScaleTime` and the AbleToScale, ScalingActive and ScalingLimited conditions with
upstream's reasons, and events say what happened (SuccessfulRescale "New size: 3; reason:
cpu resource utilization (percentage of request) above target").

Resource and ContainerResource metrics are computed (Utilization and AverageValue targets).
Pods and Object metrics need the custom metrics API and External metrics the external
metrics API; this platform serves neither, so such a metric sets ScalingActive False with
the reason and message a real cluster without a metrics adapter reports
(FailedGetPodsMetric: "... no custom metrics API (custom.metrics.k8s.io) registered").

The pure parts (grouping pods, the replica calculator, stabilization, rate limits,
conditions) are functions of plain dicts and times, unit-tested on their own; the
controller holds the per-HPA recommendation and scale-event history in memory, as
upstream's does.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from ..client import ApiError, Controller, EventRecorder, Informer
from ..machinery.meta import now as utc_now
from ..machinery.meta import parse_duration, parse_time, rfc3339
from ..machinery.quantity import format_quantity, milli
from ..machinery.selectors import LabelSelector, parse_label_selector
from ._discovery import ApiResource, ResourceDiscovery
from ._workloads import meta, pod_condition

log = logging.getLogger(__name__)

HPA_API_VERSION = "autoscaling/v2"
HPA_PLURAL = "horizontalpodautoscalers"
METRICS_API_VERSION = "metrics.k8s.io/v1beta1"
COMPONENT = "horizontal-pod-autoscaler"
#: The controller manager's defaults (--horizontal-pod-autoscaler-*).
DEFAULT_SYNC_PERIOD = 15.0
DEFAULT_DOWNSCALE_STABILIZATION = 300.0
DEFAULT_TOLERANCE = 0.1
DEFAULT_CPU_INITIALIZATION_PERIOD = 300.0
DEFAULT_INITIAL_READINESS_DELAY = 30.0
#: Without a behavior, one sync scales up to at most max(2 x current, 4) replicas.
SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0
#: How soon discovery is read again when a scale target's kind is not in it.
DISCOVERY_RETRY_SECONDS = 5.0
MAX_INT32 = 2**31 - 1
#: What the custom and external metrics APIs answer where no adapter serves them.
NO_CUSTOM_METRICS = ("unable to fetch metrics from custom metrics API: no custom metrics API "
                     "(custom.metrics.k8s.io) registered")
NO_EXTERNAL_METRICS = ("unable to fetch metrics from external metrics API: no external "
                       "metrics API (external.metrics.k8s.io) registered")


class MetricError(Exception):
    """A metric could not be computed; the message is upstream's."""


# -- metrics and pods ------------------------------------------------------------------


@dataclass(frozen=True)
class PodMetric:
    """One pod's usage of a resource, in milli-units, and the sample's time and window."""

    value: int
    timestamp: datetime
    window: float = 0.0


def pod_metrics_info(items: Iterable[Mapping[str, Any]], resource: str,
                     container: str = "") -> tuple[dict[str, PodMetric], datetime]:
    """PodMetrics items as usage per pod (the resource metrics client): the sum over the
    containers (a pod missing the resource in any is left out), or one container's.
    Returns the usage and the first item's timestamp."""
    items = list(items)
    if not items:
        raise MetricError("no metrics returned from resource metrics API")
    out: dict[str, PodMetric] = {}
    for item in items:
        name = meta(item).get("name", "")
        when = parse_time(item.get("timestamp")) or utc_now()
        try:
            window = parse_duration(str(item.get("window") or "0s"))
        except ValueError:
            window = 0.0
        containers = item.get("containers") or []
        if container:
            found = next((c for c in containers if c.get("name") == container), None)
            if found is None:
                raise MetricError(
                    f"failed to get container metrics: container {container} not present in "
                    f"metrics for pod {meta(item).get('namespace', '')}/{name}")
            usage = (found.get("usage") or {}).get(resource)
            if usage is not None:
                out[name] = PodMetric(milli(usage), when, window)
            continue
        values = [(c.get("usage") or {}).get(resource) for c in containers]
        if not values or any(v is None for v in values):
            continue
        out[name] = PodMetric(sum(milli(v) for v in values), when, window)
    first = parse_time(items[0].get("timestamp")) or utc_now()
    return out, first


def _phase(pod: Mapping[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase") or ""


@dataclass
class PodGroups:
    """groupPods: how each pod counts towards a metric."""

    ready: int = 0
    unready: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)
    ignored: set[str] = field(default_factory=set)


def group_pods(pods: Iterable[Mapping[str, Any]], metrics: Mapping[str, PodMetric],
               resource: str, *, cpu_initialization_period: float,
               initial_readiness_delay: float, now: datetime) -> PodGroups:
    """Deleted and failed pods are ignored; pending ones unready; pods without a metric
    missing. For CPU, a pod also counts as unready while it is not Ready, and during its
    first `cpu_initialization_period` until one metric window has passed since it became
    Ready (its startup burst is not its load)."""
    groups = PodGroups()
    epoch = datetime.min.replace(tzinfo=now.tzinfo)
    for pod in pods:
        name = meta(pod).get("name", "")
        if meta(pod).get("deletionTimestamp") or _phase(pod) == "Failed":
            groups.ignored.add(name)
            continue
        if _phase(pod) == "Pending":
            groups.unready.add(name)
            continue
        metric = metrics.get(name)
        if metric is None:
            groups.missing.add(name)
            continue
        if resource == "cpu":
            condition = pod_condition(pod, "Ready")
            started = parse_time((pod.get("status") or {}).get("startTime"))
            if condition is None or started is None:
                unready = True
            else:
                changed = parse_time(condition.get("lastTransitionTime")) or epoch
                if started + timedelta(seconds=cpu_initialization_period) > now:
                    unready = condition.get("status") == "False" or \
                        metric.timestamp < changed + timedelta(seconds=metric.window)
                else:
                    unready = condition.get("status") == "False" and \
                        started + timedelta(seconds=initial_readiness_delay) > changed
            if unready:
                groups.unready.add(name)
                continue
        groups.ready += 1
    return groups


def pod_requests(pods: Iterable[Mapping[str, Any]], resource: str,
                 container: str = "") -> dict[str, int]:
    """Each pod's request of `resource` in milli-units: the sum over its containers and
    sidecars (restartable init containers), or one container's. A container without a
    request makes the metric unusable, as upstream."""
    requests: dict[str, int] = {}
    for pod in pods:
        spec = pod.get("spec") or {}
        containers = list(spec.get("containers") or [])
        containers += [c for c in spec.get("initContainers") or []
                       if c.get("restartPolicy") == "Always"]
        total = 0
        for ctr in containers:
            if container and ctr.get("name") != container:
                continue
            request = ((ctr.get("resources") or {}).get("requests") or {}).get(resource)
            if request is None:
                raise MetricError(f"missing request for {resource} in container "
                                  f"{ctr.get('name', '')} of Pod {meta(pod).get('name', '')}")
            total += milli(request)
        requests[meta(pod).get("name", "")] = total
    return requests


def utilization_ratio(metrics: Mapping[str, PodMetric], requests: Mapping[str, int],
                      target: int) -> tuple[float, int, int]:
    """GetResourceUtilizationRatio: (usage/target ratio, utilization %, average usage)
    over the pods with both a metric and a request."""
    used = requested = entries = 0
    for name, metric in metrics.items():
        if name not in requests:
            continue
        used += metric.value
        requested += requests[name]
        entries += 1
    if requested == 0:
        raise MetricError("no metrics returned matched known pods")
    utilization = max(min(used * 100 // requested, MAX_INT32), -MAX_INT32 - 1)
    return utilization / target, utilization, used // entries


def usage_ratio(metrics: Mapping[str, PodMetric], target: int) -> tuple[float, int]:
    """GetMetricUsageRatio: (average usage/target ratio, average usage)."""
    usage = sum(m.value for m in metrics.values()) // len(metrics)
    return usage / target, usage


@dataclass(frozen=True)
class ReplicaCalculator:
    """The replica calculator of Resource metrics, given the pods and their PodMetrics."""

    tolerance: float = DEFAULT_TOLERANCE
    cpu_initialization_period: float = DEFAULT_CPU_INITIALIZATION_PERIOD
    initial_readiness_delay: float = DEFAULT_INITIAL_READINESS_DELAY

    def _groups(self, pods: list[Mapping[str, Any]], metrics: dict[str, PodMetric],
                resource: str, now: datetime) -> PodGroups:
        if not pods:
            raise MetricError("no pods returned by selector while calculating replica count")
        groups = group_pods(pods, metrics, resource,
                            cpu_initialization_period=self.cpu_initialization_period,
                            initial_readiness_delay=self.initial_readiness_delay, now=now)
        for name in groups.ignored | groups.unready:
            metrics.pop(name, None)
        if not metrics:
            raise MetricError("did not receive metrics for targeted pods (pods might be unready)")
        return groups

    def _within(self, ratio: float) -> bool:
        return abs(1.0 - ratio) <= self.tolerance

    def resource_replicas(self, current: int, target_utilization: int, resource: str,
                          pods: list[Mapping[str, Any]], metrics: Mapping[str, PodMetric],
                          *, container: str = "", now: datetime) -> tuple[int, int, int]:
        """GetResourceReplicas: (replicas, utilization %, average usage in milli-units)
        for a Utilization target."""
        metrics = dict(metrics)
        groups = self._groups(pods, metrics, resource, now)
        requests = pod_requests(pods, resource, container)
        ratio, utilization, raw = utilization_ratio(metrics, requests, target_utilization)
        scale_up_with_unready = bool(groups.unready) and ratio > 1.0
        if not scale_up_with_unready and not groups.missing:
            if self._within(ratio):
                return current, utilization, raw
            return math.ceil(ratio * groups.ready), utilization, raw
        if groups.missing:
            if ratio < 1.0:
                fallback = max(100, target_utilization)
                for name in groups.missing:
                    metrics[name] = PodMetric(requests.get(name, 0) * fallback // 100, now)
            elif ratio > 1.0:
                for name in groups.missing:
                    metrics[name] = PodMetric(0, now)
        if scale_up_with_unready:
            for name in groups.unready:
                metrics[name] = PodMetric(0, now)
        new_ratio, _, _ = utilization_ratio(metrics, requests, target_utilization)
        return self._rebalanced(current, ratio, new_ratio, len(metrics)), utilization, raw

    def raw_resource_replicas(self, current: int, target_usage: int, resource: str,
                              pods: list[Mapping[str, Any]], metrics: Mapping[str, PodMetric],
                              *, now: datetime) -> tuple[int, int]:
        """GetRawResourceReplicas (calcPlainMetricReplicas): (replicas, average usage)
        for an AverageValue target, in milli-units."""
        metrics = dict(metrics)
        groups = self._groups(pods, metrics, resource, now)
        ratio, usage = usage_ratio(metrics, target_usage)
        scale_up_with_unready = bool(groups.unready) and ratio > 1.0
        if not scale_up_with_unready and not groups.missing:
            if self._within(ratio):
                return current, usage
            return math.ceil(ratio * groups.ready), usage
        if groups.missing:
            if ratio < 1.0:
                for name in groups.missing:
                    metrics[name] = PodMetric(target_usage, now)
            elif ratio > 1.0:
                for name in groups.missing:
                    metrics[name] = PodMetric(0, now)
        if scale_up_with_unready:
            for name in groups.unready:
                metrics[name] = PodMetric(0, now)
        new_ratio, _ = usage_ratio(metrics, target_usage)
        return self._rebalanced(current, ratio, new_ratio, len(metrics)), usage

    def _rebalanced(self, current: int, ratio: float, new_ratio: float, counted: int) -> int:
        """The count once missing and unready pods are filled in; the current one when that
        change is too small or would turn the direction of the scale around."""
        if self._within(new_ratio) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
            return current
        replicas = math.ceil(new_ratio * counted)
        if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
            return current
        return replicas


# -- normalization: stabilization, limits and rates -------------------------------------


@dataclass
class Recommendation:
    replicas: int
    at: float


@dataclass
class ScaleEvent:
    change: int  # how many replicas were added (scale-up list) or removed (scale-down list)
    at: float
    outdated: bool = False


def stabilize(recommendations: list[Recommendation], desired: int, *, window: float,
              now: float) -> int:
    """stabilizeRecommendation (no behavior): the highest recommendation of the last
    `window` seconds, `desired` included; records `desired`, reusing an expired slot."""
    highest, old = desired, None
    for i, rec in enumerate(recommendations):
        if rec.at < now - window:
            old = i
        elif rec.replicas > highest:
            highest = rec.replicas
    if old is not None:
        recommendations[old] = Recommendation(desired, now)
    else:
        recommendations.append(Recommendation(desired, now))
    return highest


def scale_up_limit(current: int) -> int:
    return int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))


def convert_desired_replicas_with_rules(current: int, desired: int, low: int,
                                        high: int) -> tuple[int, str, str]:
    """Clamp to [min, min(max, scale-up limit)]: (replicas, condition reason, message)."""
    limit = scale_up_limit(current)
    if high > limit:
        maximum, reason = limit, "ScaleUpLimit"
        message = "the desired replica count is increasing faster than the maximum scale rate"
    else:
        maximum, reason = high, "TooManyReplicas"
        message = "the desired replica count is more than the maximum replica count"
    if desired < low:
        return low, "TooFewReplicas", \
            "the desired replica count is less than the minimum replica count"
    if desired > maximum:
        return maximum, reason, message
    return desired, "DesiredWithinRange", "the desired count is within the acceptable range"


def stabilize_with_behavior(recommendations: list[Recommendation], *, current: int,
                            desired: int, up_window: float, down_window: float,
                            now: float) -> tuple[int, str, str]:
    """stabilizeRecommendationWithBehaviors: between the lowest recommendation of the
    scale-up window and the highest of the scale-down window."""
    up, down, old = desired, desired, None
    for i, rec in enumerate(recommendations):
        if rec.at > now - up_window:
            up = min(rec.replicas, up)
        if rec.at > now - down_window:
            down = max(rec.replicas, down)
        if rec.at < now - up_window and rec.at < now - down_window:
            old = i
    recommendation = min(max(current, up), down)
    if old is not None:
        recommendations[old] = Recommendation(desired, now)
    else:
        recommendations.append(Recommendation(desired, now))
    if desired >= current:
        return recommendation, "ScaleUpStabilized", ("recent recommendations were lower than "
                                                     "current one, applying the lowest recent "
                                                     "recommendation")
    return recommendation, "ScaleDownStabilized", ("recent recommendations were higher than "
                                                   "current one, applying the highest recent "
                                                   "recommendation")


def _changed_within(period: float, events: list[ScaleEvent], now: float) -> int:
    return sum(e.change for e in events if e.at > now - period)


def _period_start(current: int, policy: Mapping[str, Any], ups: list[ScaleEvent],
                  downs: list[ScaleEvent], now: float) -> int:
    period = float(policy.get("periodSeconds") or 0)
    return current - _changed_within(period, ups, now) + _changed_within(period, downs, now)


def scale_up_limit_with_rules(current: int, ups: list[ScaleEvent], downs: list[ScaleEvent],
                              rules: Mapping[str, Any], now: float) -> int:
    """calculateScaleUpLimitWithScalingRules: the most replicas the policies allow now."""
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    proposals = []
    for policy in rules.get("policies") or []:
        start = _period_start(current, policy, ups, downs, now)
        value = int(policy.get("value") or 0)
        if policy.get("type") == "Pods":
            proposals.append(start + value)
        elif policy.get("type") == "Percent":
            proposals.append(math.ceil(start * (1 + value / 100)))
    if not proposals:
        return -MAX_INT32 - 1 if select != "Min" else MAX_INT32
    return min(proposals) if select == "Min" else max(proposals)


def scale_down_limit_with_rules(current: int, ups: list[ScaleEvent], downs: list[ScaleEvent],
                                rules: Mapping[str, Any], now: float) -> int:
    """calculateScaleDownLimitWithBehaviors: the fewest replicas the policies allow now."""
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    proposals = []
    for policy in rules.get("policies") or []:
        start = _period_start(current, policy, ups, downs, now)
        value = int(policy.get("value") or 0)
        if policy.get("type") == "Pods":
            proposals.append(start - value)
        elif policy.get("type") == "Percent":
            proposals.append(int(start * (1 - value / 100)))
    if not proposals:
        return -MAX_INT32 - 1 if select == "Min" else MAX_INT32
    return max(proposals) if select == "Min" else min(proposals)


def convert_desired_replicas_with_behavior(*, current: int, desired: int, low: int, high: int,
                                           behavior: Mapping[str, Any], ups: list[ScaleEvent],
                                           downs: list[ScaleEvent],
                                           now: float) -> tuple[int, str, str]:
    """convertDesiredReplicasWithBehaviorRate: clamp to min/max and to what the policies
    allow in their periods."""
    if desired > current:
        limit = max(scale_up_limit_with_rules(current, ups, downs,
                                              behavior.get("scaleUp") or {}, now), current)
        if high > limit:
            maximum, reason = limit, "ScaleUpLimit"
            message = "the desired replica count is increasing faster than the maximum scale rate"
        else:
            maximum, reason = high, "TooManyReplicas"
            message = "the desired replica count is more than the maximum replica count"
        if desired > maximum:
            return maximum, reason, message
    elif desired < current:
        limit = min(scale_down_limit_with_rules(current, ups, downs,
                                                behavior.get("scaleDown") or {}, now), current)
        if low < limit:
            minimum, reason = limit, "ScaleDownLimit"
            message = "the desired replica count is decreasing faster than the maximum scale rate"
        else:
            minimum, reason = low, "TooFewReplicas"
            message = "the desired replica count is less than the minimum replica count"
        if desired < minimum:
            return minimum, reason, message
    return desired, "DesiredWithinRange", "the desired count is within the acceptable range"


def longest_policy_period(rules: Mapping[str, Any]) -> float:
    return float(max((p.get("periodSeconds") or 0 for p in rules.get("policies") or []),
                     default=0))


def store_scale_event(events: list[ScaleEvent], change: int, longest_period: float,
                      now: float) -> None:
    """storeScaleEvent: record a scale, reusing a slot older than every policy period."""
    old = None
    for i, event in enumerate(events):
        if event.at < now - longest_period:
            event.outdated = True
        if event.outdated:
            old = i
    if old is not None:
        events[old] = ScaleEvent(change, now)
    else:
        events.append(ScaleEvent(change, now))


def set_condition(status: dict[str, Any], kind: str, value: str, reason: str, message: str,
                  now: str) -> None:
    """setCondition: the condition's transition time moves only when its status does."""
    conditions = status.setdefault("conditions", [])
    condition = next((c for c in conditions if c.get("type") == kind), None)
    if condition is None:
        condition = {"type": kind}
        conditions.append(condition)
    if condition.get("status") != value:
        condition["lastTransitionTime"] = now
    condition.update(status=value, reason=reason, message=message)


def quantity_milli(value: int) -> str:
    """A milli-value as a Quantity from resource.NewMilliQuantity prints (`250m`)."""
    return format_quantity(Decimal(value).scaleb(-3))


# -- the controller ----------------------------------------------------------------------


class UnableToScale(Exception):
    """The target's scale could not be read (reason FailedGetScale)."""


@dataclass
class MetricResult:
    replicas: int = 0
    name: str = ""
    status: dict[str, Any] = field(default_factory=lambda: {"type": ""})
    error: str = ""
    condition: tuple[str, str] | None = None  # (reason, message) of ScalingActive False


class HorizontalPodAutoscalerController(Controller):
    name = "horizontal-pod-autoscaler-controller"
    workers = 2

    def setup(self) -> None:
        settings = self.context.settings
        self.period = float(settings.get("horizontal_pod_autoscaler_sync_period",
                                         DEFAULT_SYNC_PERIOD))
        self.downscale_window = float(settings.get(
            "horizontal_pod_autoscaler_downscale_stabilization", DEFAULT_DOWNSCALE_STABILIZATION))
        self.calculator = ReplicaCalculator(
            tolerance=float(settings.get("horizontal_pod_autoscaler_tolerance",
                                         DEFAULT_TOLERANCE)),
            cpu_initialization_period=float(settings.get(
                "horizontal_pod_autoscaler_cpu_initialization_period",
                DEFAULT_CPU_INITIALIZATION_PERIOD)),
            initial_readiness_delay=float(settings.get(
                "horizontal_pod_autoscaler_initial_readiness_delay",
                DEFAULT_INITIAL_READINESS_DELAY)))
        self.hpas: Informer = self.context.informers.informer(HPA_API_VERSION, HPA_PLURAL)
        self.pods: Informer = self.context.informers.informer("v1", "pods")
        self.hpas.add_handler(self._on_hpa)
        self.recorder = EventRecorder(self.client, COMPONENT)
        self.discovery = ResourceDiscovery(self.client)
        self._discovered_at = -math.inf
        self._recommendations: dict[str, list[Recommendation]] = {}
        self._scale_ups: dict[str, list[ScaleEvent]] = {}
        self._scale_downs: dict[str, list[ScaleEvent]] = {}
        #: HPA key -> the selector of its target's pods, for the ambiguity check.
        self._selectors: dict[str, LabelSelector] = {}

    def _on_hpa(self, old: dict | None, new: dict | None) -> None:
        """Each HPA is synced one period after it is seen, and every period after (as
        upstream's queue delays every add by the resync period)."""
        if new is None:
            if old is not None:
                self._forget(f"{meta(old).get('namespace')}/{meta(old).get('name')}")
            return
        self.queue.add_after(f"{meta(new).get('namespace')}/{meta(new).get('name')}",
                             self.period)

    def _forget(self, key: str) -> None:
        self._recommendations.pop(key, None)
        self._scale_ups.pop(key, None)
        self._scale_downs.pop(key, None)
        self._selectors.pop(key, None)

    async def reconcile(self, key: str) -> float | None:
        cached = self.hpas.get(key)
        if cached is None:
            self._forget(key)
            return None
        try:
            await self._sync(key, copy.deepcopy(cached))
        except ApiError as err:
            log.info("horizontal-pod-autoscaler: syncing %s failed: %s", key, err)
        return self.period

    async def _event(self, hpa: Mapping[str, Any], kind: str, reason: str,
                     message: str) -> None:
        await self.recorder.record(hpa, kind, reason, message)

    # -- one sync ----------------------------------------------------------------------

    async def _sync(self, key: str, hpa: dict[str, Any]) -> None:
        """reconcileAutoscaler."""
        original = copy.deepcopy(hpa.get("status") or {})
        status = hpa["status"] = copy.deepcopy(original)
        spec = hpa.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        now = rfc3339()
        try:
            scale, api = await self._get_scale(hpa, ref)
        except UnableToScale as exc:
            await self._event(hpa, "Warning", "FailedGetScale", str(exc))
            set_condition(status, "AbleToScale", "False", "FailedGetScale",
                          f"the HPA controller was unable to get the target's current scale: "
                          f"{exc}", now)
            await self._write_status(hpa, original)
            return
        set_condition(status, "AbleToScale", "True", "SucceededGetScale",
                      "the HPA controller was able to get the target's current scale", now)
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        self._recommendations.setdefault(key, [Recommendation(current, time.monotonic())])
        low = spec.get("minReplicas")
        low = 1 if low is None else int(low)
        high = int(spec.get("maxReplicas") or 0)
        statuses: list[dict[str, Any]] = []
        reason = ""
        rescale = True
        desired = 0
        if current == 0 and low != 0:
            rescale = False
            set_condition(status, "ScalingActive", "False", "ScalingDisabled",
                          "scaling is disabled since the replica count of the target is zero",
                          now)
        elif current > high:
            reason, desired = "Current number of replicas above Spec.MaxReplicas", high
        elif current < low:
            reason, desired = "Current number of replicas below Spec.MinReplicas", low
        else:
            proposed, metric, statuses, error = await self._compute(hpa, scale, now)
            if proposed < 0:
                self._set_status(hpa, current, status.get("desiredReplicas", 0), statuses,
                                 rescale=False)
                await self._write_status(hpa, original)
                await self._event(hpa, "Warning", "FailedComputeMetricsReplicas", error)
                return
            if error:
                log.info("horizontal-pod-autoscaler: %s: %s", key, error)
            desired = proposed
            if desired > current:
                reason = f"{metric} above target"
            if desired < current:
                reason = "All metrics below target"
            if spec.get("behavior") is None:
                desired = self._normalize(hpa, key, current, desired, low, high, now)
            else:
                desired = self._normalize_with_behavior(hpa, key, current, desired, low, high,
                                                        now)
            rescale = desired != current
        if rescale:
            scale.setdefault("spec", {})["replicas"] = desired
            try:
                await self.client.replace(api.api_version, api.plural, scale,
                                          subresource="scale")
            except ApiError as err:
                message = _message(err)
                await self._event(hpa, "Warning", "FailedRescale",
                                  f"New size: {desired}; reason: {reason}; error: {message}")
                set_condition(status, "AbleToScale", "False", "FailedUpdateScale",
                              f"the HPA controller was unable to update the target scale: "
                              f"{message}", now)
                self._set_status(hpa, current, status.get("desiredReplicas", 0), statuses,
                                 rescale=False)
                await self._write_status(hpa, original)
                return
            set_condition(status, "AbleToScale", "True", "SucceededRescale",
                          f"the HPA controller was able to update the target scale to "
                          f"{desired}", now)
            await self._event(hpa, "Normal", "SuccessfulRescale",
                              f"New size: {desired}; reason: {reason}")
            self._store_scale_event(spec.get("behavior"), key, current, desired)
            log.info("horizontal-pod-autoscaler: rescaled %s from %d to %d: %s",
                     key, current, desired, reason)
        else:
            desired = current
        self._set_status(hpa, current, desired, statuses, rescale=rescale)
        await self._write_status(hpa, original)

    def _set_status(self, hpa: dict[str, Any], current: int, desired: int,
                    statuses: list[dict[str, Any]], *, rescale: bool) -> None:
        """setStatus: replicas, metrics and conditions; lastScaleTime when it scaled."""
        old = hpa["status"]
        status: dict[str, Any] = {}
        if current:
            status["currentReplicas"] = current
        status["desiredReplicas"] = desired
        status["currentMetrics"] = statuses or None
        last = rfc3339() if rescale else old.get("lastScaleTime")
        if last is not None:
            status["lastScaleTime"] = last
        if old.get("conditions"):
            status["conditions"] = old["conditions"]
        hpa["status"] = status

    async def _write_status(self, hpa: dict[str, Any], original: Mapping[str, Any]) -> None:
        """updateStatusIfNeeded: a PUT of the status subresource when it changed."""
        if hpa["status"] == original:
            return
        body = {**hpa, "apiVersion": HPA_API_VERSION, "kind": "HorizontalPodAutoscaler"}
        try:
            await self.client.replace(HPA_API_VERSION, HPA_PLURAL, body, subresource="status")
        except ApiError as err:
            if not err.not_found:
                await self._event(hpa, "Warning", "FailedUpdateStatus", _message(err))
                raise

    # -- the scale target --------------------------------------------------------------

    async def _mappings(self, group: str, kind: str) -> list[ApiResource]:
        """The served resources of (group, kind), the preferred version first; discovery
        is read again (at most every few seconds) when it knows no such kind."""
        found = self._matching(group, kind)
        if not found and time.monotonic() - self._discovered_at > DISCOVERY_RETRY_SECONDS:
            self._discovered_at = time.monotonic()
            await self.discovery.refresh()
            found = self._matching(group, kind)
        return found

    def _matching(self, group: str, kind: str) -> list[ApiResource]:
        snapshot = self.discovery.snapshot
        preferred = [r for r in snapshot.preferred if r.group == group and r.kind == kind]
        others = [r for r in snapshot.by_kind.values()
                  if r.group == group and r.kind == kind and r not in preferred]
        return preferred + others

    async def _get_scale(self, hpa: Mapping[str, Any],
                         ref: Mapping[str, Any]) -> tuple[dict[str, Any], ApiResource]:
        """The target's Scale and the resource it was read through (scaleForResourceMappings);
        UnableToScale with upstream's message otherwise."""
        api_version, kind = str(ref.get("apiVersion") or ""), str(ref.get("kind") or "")
        if api_version.count("/") > 1:
            raise UnableToScale(f"unexpected GroupVersion string: {api_version}")
        group = api_version.rpartition("/")[0]
        mappings = await self._mappings(group, kind)
        if not mappings:
            raise UnableToScale(f'no matches for kind "{kind}" in group "{group}"')
        first: str | None = None
        for api in mappings:
            try:
                scale = await self.client.get(api.api_version, api.plural, ref.get("name", ""),
                                              meta(hpa).get("namespace"), subresource="scale")
                return scale, api
            except ApiError as err:
                first = first or _message(err)
        raise UnableToScale(first or "unrecognized resource")

    # -- metrics -----------------------------------------------------------------------

    async def _compute(self, hpa: dict[str, Any], scale: Mapping[str, Any],
                       now: str) -> tuple[int, str, list[dict[str, Any]], str]:
        """computeReplicasForMetrics: (replicas or -1, the metric that proposed them, the
        metric statuses, the first error)."""
        status = hpa["status"]
        key = f"{meta(hpa).get('namespace')}/{meta(hpa).get('name')}"
        selector_text = str((scale.get("status") or {}).get("selector") or "")
        selector, problem = await self._selector(hpa, key, selector_text, now)
        if selector is None:
            return -1, "", [], problem
        namespace = meta(hpa).get("namespace") or ""
        pods = [p for p in self.pods.by_index("namespace", namespace)
                if selector.matches(meta(p).get("labels") or {})]
        spec_replicas = int((scale.get("spec") or {}).get("replicas") or 0)
        metrics = (hpa.get("spec") or {}).get("metrics") or []
        results = [await self._compute_metric(hpa, metric, spec_replicas, selector_text, pods)
                   for metric in metrics]
        statuses = [r.status for r in results]
        failed = [r for r in results if r.error]
        replicas, name = 0, ""
        for result in results:
            if not result.error and (replicas == 0 or result.replicas > replicas):
                replicas, name = result.replicas, result.name
        error = ""
        if failed:
            error = (f"invalid metrics ({len(failed)} invalid out of {len(results)}), first "
                     f"error is: {failed[0].error}")
        if len(failed) >= len(results) or (failed and replicas < spec_replicas):
            if failed and failed[0].condition is not None:
                set_condition(status, "ScalingActive", "False", *failed[0].condition, now)
            return -1, "", statuses, error
        set_condition(status, "ScalingActive", "True", "ValidMetricFound",
                      f"the HPA was able to successfully calculate a replica count from {name}",
                      now)
        return replicas, name, statuses, error

    async def _selector(self, hpa: Mapping[str, Any], key: str, text: str,
                        now: str) -> tuple[LabelSelector | None, str]:
        """validateAndParseSelector: the selector of the target's pods, which no other HPA
        may select; or None and what is wrong with it."""
        status = hpa["status"]
        if not text:
            await self._event(hpa, "Warning", "SelectorRequired", "selector is required")
            set_condition(status, "ScalingActive", "False", "InvalidSelector",
                          "the HPA target's scale is missing a selector", now)
            return None, "selector is required"
        try:
            selector = parse_label_selector(text)
        except ValueError as exc:
            message = f"couldn't convert selector into a corresponding internal selector " \
                      f"object: {exc}"
            await self._event(hpa, "Warning", "InvalidSelector", message)
            set_condition(status, "ScalingActive", "False", "InvalidSelector", message, now)
            return None, message
        self._selectors[key] = selector
        namespace = meta(hpa).get("namespace") or ""
        owners: set[str] = set()
        for pod in self.pods.by_index("namespace", namespace):
            labels = meta(pod).get("labels") or {}
            if not selector.matches(labels):
                continue
            owners |= {other for other, sel in self._selectors.items()
                       if other.startswith(f"{namespace}/") and sel.matches(labels)}
        if len(owners) > 1:
            message = f"pods by selector {text} are controlled by multiple HPAs: " \
                      f"[{' '.join(sorted(owners))}]"
            await self._event(hpa, "Warning", "AmbiguousSelector", message)
            set_condition(status, "ScalingActive", "False", "AmbiguousSelector", message, now)
            return None, message
        return selector, ""

    async def _unable(self, hpa: Mapping[str, Any], reason: str, error: str,
                      wrapped: str) -> MetricResult:
        """getUnableComputeReplicaCountCondition: a Warning event and the condition."""
        await self._event(hpa, "Warning", reason, error)
        return MetricResult(error=wrapped, condition=(
            reason, f"the HPA was unable to compute the replica count: {error}"))

    async def _compute_metric(self, hpa: Mapping[str, Any], metric: Mapping[str, Any],
                              current: int, selector: str,
                              pods: list[dict[str, Any]]) -> MetricResult:
        kind = metric.get("type")
        if kind in ("Resource", "ContainerResource"):
            return await self._resource_metric(hpa, metric, current, selector, pods)
        if kind == "Pods":
            name = ((metric.get("pods") or {}).get("metric") or {}).get("name", "")
            error = f"unable to get metric {name}: {NO_CUSTOM_METRICS}"
            return await self._unable(hpa, "FailedGetPodsMetric", error,
                                      f"failed to get pods metric value: {error}")
        if kind == "Object":
            source = metric.get("object") or {}
            name = (source.get("metric") or {}).get("name", "")
            described = source.get("describedObject") or {}
            error = (f"unable to get metric {name}: {described.get('kind', '')} on "
                     f"{meta(hpa).get('namespace')} {described.get('name', '')}/"
                     f"{NO_CUSTOM_METRICS}")
            return await self._unable(hpa, "FailedGetObjectMetric", error,
                                      f"failed to get object metric value: {error}")
        if kind == "External":
            name = ((metric.get("external") or {}).get("metric") or {}).get("name", "")
            selector = ((metric.get("external") or {}).get("metric") or {}).get("selector")
            error = (f"unable to get external metric {meta(hpa).get('namespace')}/{name}/"
                     f"{json.dumps(selector) if selector else '<nil>'}: {NO_EXTERNAL_METRICS}")
            return await self._unable(hpa, "FailedGetExternalMetric", error,
                                      f"failed to get {name} external metric value: {error}")
        error = f'unknown metric source type "{kind}"'
        return await self._unable(hpa, "InvalidMetricSourceType", error, error)

    async def _resource_metric(self, hpa: Mapping[str, Any], metric: Mapping[str, Any],
                               current: int, selector: str,
                               pods: list[dict[str, Any]]) -> MetricResult:
        """computeStatusForResourceMetric(Generic), for Resource and ContainerResource."""
        container_kind = metric.get("type") == "ContainerResource"
        field_name = "containerResource" if container_kind else "resource"
        source = metric.get(field_name) or {}
        resource = str(source.get("name") or "")
        container = str(source.get("container") or "") if container_kind else ""
        target = source.get("target") or {}
        reason = "FailedGetContainerResourceMetric" if container_kind else \
            "FailedGetResourceMetric"
        prefix = f"failed to get {container} container metric value" if container_kind else \
            f"failed to get {resource} resource metric value"
        now = utc_now()
        try:
            if target.get("averageValue") is not None:
                usages = await self._pod_metrics(meta(hpa).get("namespace") or "", selector,
                                                 resource, container)
                replicas, usage = self.calculator.raw_resource_replicas(
                    current, milli(target["averageValue"]), resource, pods, usages, now=now)
                name = f"{resource} resource"
                value: dict[str, Any] = {"averageValue": quantity_milli(usage)}
            elif target.get("averageUtilization") is not None:
                usages = await self._pod_metrics(meta(hpa).get("namespace") or "", selector,
                                                 resource, container)
                replicas, utilization, raw = self.calculator.resource_replicas(
                    current, int(target["averageUtilization"]), resource, pods, usages,
                    container=container, now=now)
                kind = "container resource" if container_kind else "resource"
                name = f"{resource} {kind} utilization (percentage of request)"
                value = {"averageValue": quantity_milli(raw), "averageUtilization": utilization}
            else:
                raise MetricError("invalid resource metric source: neither an average "
                                  "utilization target nor an average value (usage) target was "
                                  "set")
        except MetricError as exc:
            what = "usage" if target.get("averageValue") is not None else "utilization"
            error = f"failed to get {resource} {what}: {exc}"
            return await self._unable(hpa, reason, error, f"{prefix}: {error}")
        measured: dict[str, Any] = {"name": resource}
        if container_kind:
            measured["container"] = container
        measured["current"] = value
        return MetricResult(replicas=replicas, name=name,
                            status={"type": metric.get("type"), field_name: measured})

    async def _pod_metrics(self, namespace: str, selector: str, resource: str,
                           container: str) -> dict[str, PodMetric]:
        """The pods' usage from metrics.k8s.io (GetResourceMetric)."""
        try:
            listed = await self.client.list(METRICS_API_VERSION, "pods", namespace,
                                            label_selector=selector)
        except ApiError as err:
            raise MetricError(f"unable to get metrics for resource {resource}: unable to fetch "
                              f"metrics from resource metrics API: {_message(err)}") from None
        try:
            return pod_metrics_info(listed.get("items") or [], resource, container)[0]
        except MetricError as exc:
            raise MetricError(f"unable to get metrics for resource {resource}: {exc}") from None

    # -- normalization -----------------------------------------------------------------

    def _normalize(self, hpa: dict[str, Any], key: str, current: int, desired: int, low: int,
                   high: int, now: str) -> int:
        """normalizeDesiredReplicas: scale-down stabilization, then min, max and the
        scale-up limit."""
        status = hpa["status"]
        stabilized = stabilize(self._recommendations.setdefault(key, []), desired,
                               window=self.downscale_window, now=time.monotonic())
        if stabilized != desired:
            set_condition(status, "AbleToScale", "True", "ScaleDownStabilized",
                          "recent recommendations were higher than current one, applying the "
                          "highest recent recommendation", now)
        else:
            set_condition(status, "AbleToScale", "True", "ReadyForNewScale",
                          "recommended size matches current size", now)
        replicas, reason, message = convert_desired_replicas_with_rules(current, stabilized, low,
                                                                        high)
        set_condition(status, "ScalingLimited", "False" if replicas == stabilized else "True",
                      reason, message, now)
        return replicas

    def _normalize_with_behavior(self, hpa: dict[str, Any], key: str, current: int,
                                 desired: int, low: int, high: int, now: str) -> int:
        """normalizeDesiredReplicasWithBehaviors: stabilization windows, then policies."""
        status = hpa["status"]
        behavior = hpa["spec"]["behavior"]
        down = behavior.setdefault("scaleDown", {})
        if down.get("stabilizationWindowSeconds") is None:
            down["stabilizationWindowSeconds"] = int(self.downscale_window)
        up = behavior.get("scaleUp") or {}
        moment = time.monotonic()
        stabilized, reason, message = stabilize_with_behavior(
            self._recommendations.setdefault(key, []), current=current, desired=desired,
            up_window=float(up.get("stabilizationWindowSeconds") or 0),
            down_window=float(down["stabilizationWindowSeconds"]), now=moment)
        if stabilized != desired:
            set_condition(status, "AbleToScale", "True", reason, message, now)
        else:
            set_condition(status, "AbleToScale", "True", "ReadyForNewScale",
                          "recommended size matches current size", now)
        replicas, reason, message = convert_desired_replicas_with_behavior(
            current=current, desired=stabilized, low=low, high=high, behavior=behavior,
            ups=self._scale_ups.get(key, []), downs=self._scale_downs.get(key, []), now=moment)
        set_condition(status, "ScalingLimited", "False" if replicas == stabilized else "True",
                      reason, message, now)
        return replicas

    def _store_scale_event(self, behavior: Mapping[str, Any] | None, key: str, before: int,
                           after: int) -> None:
        if behavior is None:
            return  # only behaviors' rate policies read them
        if after > before:
            store_scale_event(self._scale_ups.setdefault(key, []), after - before,
                              longest_policy_period(behavior.get("scaleUp") or {}),
                              time.monotonic())
        else:
            store_scale_event(self._scale_downs.setdefault(key, []), before - after,
                              longest_policy_period(behavior.get("scaleDown") or {}),
                              time.monotonic())


def _message(err: ApiError) -> str:
    return str(err.body.get("message") or err)


CONTROLLER = HorizontalPodAutoscalerController
