"""Conversion between the versions of a built-in kind served in more than one version.

A real API server stores each kind in one version and converts on every read and write
through another. Pilothouse has one such kind: HorizontalPodAutoscaler, stored as
`autoscaling/v2` and also served as `autoscaling/v1`. A `Resource` whose `storage_version`
is set is converted here: `from_storage` as an object is read through it, `to_storage`
before it is written, so the generic registry stores one shape whatever version a client
speaks.

autoscaling/v1 knows a CPU utilization target only. As `pkg/apis/autoscaling/v1/conversion.go`
does, the rest of a v2 object rides along in annotations of the v1 object: the metrics
other than a CPU utilization target (`autoscaling.alpha.kubernetes.io/metrics`), the
current metrics (`.../current-metrics`) and the conditions (`.../conditions`), each a JSON
list in the v1 (v2beta1-like) shape; converting back takes them out again. A v1 object
with no metric at all gets the CPU target of 80% that v1 always implied. `spec.behavior`
has no v1 form and is lost on a write through v1, as upstream.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from .resource import Resource

METRIC_SPECS_ANNOTATION = "autoscaling.alpha.kubernetes.io/metrics"
METRIC_STATUSES_ANNOTATION = "autoscaling.alpha.kubernetes.io/current-metrics"
CONDITIONS_ANNOTATION = "autoscaling.alpha.kubernetes.io/conditions"
#: What autoscaling/v1 implies when no target is given (autoscaling.DefaultCPUUtilization).
DEFAULT_CPU_UTILIZATION = 80
HPA_V1 = "autoscaling/v1"
HPA_V2 = "autoscaling/v2"

Converter = Callable[[dict[str, Any]], dict[str, Any]]


def _set(out: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        out[key] = value


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _encode(items: list[dict[str, Any]]) -> str:
    """A JSON annotation value, compact as Go's json.Marshal writes it."""
    return json.dumps(items, separators=(",", ":"), ensure_ascii=False)


def _is_cpu_utilization(metric: dict[str, Any]) -> bool:
    resource = _dict(metric.get("resource"))
    return (metric.get("type") == "Resource" and resource.get("name") == "cpu"
            and _dict(resource.get("target")).get("averageUtilization") is not None)


# -- metric specs ------------------------------------------------------------------------


def metric_spec_to_v1(metric: dict[str, Any]) -> dict[str, Any]:
    """A v2 MetricSpec in the v1 shape the metrics annotation carries."""
    out: dict[str, Any] = {"type": metric.get("type", "")}
    obj, pods = _dict(metric.get("object")), _dict(metric.get("pods"))
    if metric.get("object") is not None:
        target, ident = _dict(obj.get("target")), _dict(obj.get("metric"))
        source: dict[str, Any] = {"target": _dict(obj.get("describedObject")),
                                  "metricName": ident.get("name", ""),
                                  "targetValue": target.get("value") or "0"}
        _set(source, "selector", ident.get("selector"))
        _set(source, "averageValue", target.get("averageValue"))
        out["object"] = source
    if metric.get("pods") is not None:
        target, ident = _dict(pods.get("target")), _dict(pods.get("metric"))
        source = {"metricName": ident.get("name", ""),
                  "targetAverageValue": target.get("averageValue") or "0"}
        _set(source, "selector", ident.get("selector"))
        out["pods"] = source
    for key in ("resource", "containerResource"):
        if metric.get(key) is None:
            continue
        resource = _dict(metric[key])
        target = _dict(resource.get("target"))
        source = {"name": resource.get("name", "")}
        _set(source, "targetAverageUtilization", target.get("averageUtilization"))
        _set(source, "targetAverageValue", target.get("averageValue"))
        if key == "containerResource":
            source["container"] = resource.get("container", "")
        out[key] = source
    if metric.get("external") is not None:
        external = _dict(metric["external"])
        target, ident = _dict(external.get("target")), _dict(external.get("metric"))
        source = {"metricName": ident.get("name", "")}
        _set(source, "metricSelector", ident.get("selector"))
        _set(source, "targetValue", target.get("value"))
        _set(source, "targetAverageValue", target.get("averageValue"))
        out["external"] = source
    return out


def metric_spec_from_v1(metric: dict[str, Any]) -> dict[str, Any]:
    """A v1 (annotation) MetricSpec as the v2 MetricSpec it stands for."""
    out: dict[str, Any] = {"type": metric.get("type", "")}
    if metric.get("object") is not None:
        obj = _dict(metric["object"])
        average = obj.get("averageValue")
        target: dict[str, Any] = {"type": "Value" if average is None else "AverageValue",
                                  "value": obj.get("targetValue") or "0"}
        _set(target, "averageValue", average)
        out["object"] = {"describedObject": _dict(obj.get("target")),
                         "metric": _identifier(obj.get("metricName"), obj.get("selector")),
                         "target": target}
    if metric.get("pods") is not None:
        pods = _dict(metric["pods"])
        out["pods"] = {"metric": _identifier(pods.get("metricName"), pods.get("selector")),
                       "target": {"type": "AverageValue",
                                  "averageValue": pods.get("targetAverageValue") or "0"}}
    for key in ("resource", "containerResource"):
        if metric.get(key) is None:
            continue
        source = _dict(metric[key])
        utilization = source.get("targetAverageUtilization")
        target = {"type": "AverageValue" if utilization is None else "Utilization"}
        _set(target, "averageUtilization", utilization)
        _set(target, "averageValue", source.get("targetAverageValue"))
        resource: dict[str, Any] = {"name": source.get("name", "")}
        if key == "containerResource":
            resource["container"] = source.get("container", "")
        resource["target"] = target
        out[key] = resource
    if metric.get("external") is not None:
        external = _dict(metric["external"])
        value = external.get("targetValue")
        target = {"type": "AverageValue" if value is None else "Value"}
        _set(target, "value", value)
        _set(target, "averageValue", external.get("targetAverageValue"))
        out["external"] = {
            "metric": _identifier(external.get("metricName"), external.get("metricSelector")),
            "target": target}
    return out


def _identifier(name: Any, selector: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name or ""}
    _set(out, "selector", selector)
    return out


# -- metric statuses ---------------------------------------------------------------------


def metric_status_to_v1(metric: dict[str, Any]) -> dict[str, Any]:
    """A v2 MetricStatus in the v1 shape the current-metrics annotation carries."""
    out: dict[str, Any] = {"type": metric.get("type", "")}
    if metric.get("object") is not None:
        obj = _dict(metric["object"])
        current, ident = _dict(obj.get("current")), _dict(obj.get("metric"))
        status: dict[str, Any] = {"target": _dict(obj.get("describedObject")),
                                  "metricName": ident.get("name", ""),
                                  "currentValue": current.get("value") or "0"}
        _set(status, "selector", ident.get("selector"))
        _set(status, "averageValue", current.get("averageValue"))
        out["object"] = status
    if metric.get("pods") is not None:
        pods = _dict(metric["pods"])
        current, ident = _dict(pods.get("current")), _dict(pods.get("metric"))
        status = {"metricName": ident.get("name", ""),
                  "currentAverageValue": current.get("averageValue") or "0"}
        _set(status, "selector", ident.get("selector"))
        out["pods"] = status
    for key in ("resource", "containerResource"):
        if metric.get(key) is None:
            continue
        resource = _dict(metric[key])
        current = _dict(resource.get("current"))
        status = {"name": resource.get("name", "")}
        _set(status, "currentAverageUtilization", current.get("averageUtilization"))
        status["currentAverageValue"] = current.get("averageValue") or "0"
        if key == "containerResource":
            status["container"] = resource.get("container", "")
        out[key] = status
    if metric.get("external") is not None:
        external = _dict(metric["external"])
        current, ident = _dict(external.get("current")), _dict(external.get("metric"))
        status = {"metricName": ident.get("name", "")}
        _set(status, "metricSelector", ident.get("selector"))
        status["currentValue"] = current.get("value") or "0"
        _set(status, "currentAverageValue", current.get("averageValue"))
        out["external"] = status
    return out


def metric_status_from_v1(metric: dict[str, Any]) -> dict[str, Any]:
    """A v1 (annotation) MetricStatus as the v2 MetricStatus it stands for."""
    out: dict[str, Any] = {"type": metric.get("type", "")}
    if metric.get("object") is not None:
        obj = _dict(metric["object"])
        current: dict[str, Any] = {"value": obj.get("currentValue") or "0"}
        _set(current, "averageValue", obj.get("averageValue"))
        out["object"] = {"describedObject": _dict(obj.get("target")),
                         "metric": _identifier(obj.get("metricName"), obj.get("selector")),
                         "current": current}
    if metric.get("pods") is not None:
        pods = _dict(metric["pods"])
        out["pods"] = {"metric": _identifier(pods.get("metricName"), pods.get("selector")),
                       "current": {"averageValue": pods.get("currentAverageValue") or "0"}}
    for key in ("resource", "containerResource"):
        if metric.get(key) is None:
            continue
        source = _dict(metric[key])
        current = {"averageValue": source.get("currentAverageValue") or "0"}
        _set(current, "averageUtilization", source.get("currentAverageUtilization"))
        resource: dict[str, Any] = {"name": source.get("name", "")}
        if key == "containerResource":
            resource["container"] = source.get("container", "")
        resource["current"] = current
        out[key] = resource
    if metric.get("external") is not None:
        external = _dict(metric["external"])
        current = {"value": external.get("currentValue") or "0"}
        _set(current, "averageValue", external.get("currentAverageValue"))
        out["external"] = {
            "metric": _identifier(external.get("metricName"), external.get("metricSelector")),
            "current": current}
    return out


# -- whole objects -----------------------------------------------------------------------


def hpa_v2_to_v1(obj: dict[str, Any]) -> dict[str, Any]:
    """An autoscaling/v2 HorizontalPodAutoscaler as autoscaling/v1 shows it."""
    out = {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("spec", "status")}
    out["apiVersion"] = HPA_V1
    meta = out.setdefault("metadata", {})
    spec, status = _dict(obj.get("spec")), _dict(obj.get("status"))
    metrics = [_dict(m) for m in _list(spec.get("metrics"))]
    v1_spec: dict[str, Any] = {"scaleTargetRef": copy.deepcopy(_dict(spec.get("scaleTargetRef")))}
    _set(v1_spec, "minReplicas", spec.get("minReplicas"))
    v1_spec["maxReplicas"] = spec.get("maxReplicas", 0)
    for metric in metrics:
        resource = _dict(metric.get("resource"))
        if metric.get("type") == "Resource" and resource.get("name") == "cpu":
            _set(v1_spec, "targetCPUUtilizationPercentage",
                 _dict(resource.get("target")).get("averageUtilization"))
            break
    out["spec"] = v1_spec
    current_metrics = [_dict(m) for m in _list(status.get("currentMetrics"))]
    v1_status: dict[str, Any] = {}
    _set(v1_status, "observedGeneration", status.get("observedGeneration"))
    _set(v1_status, "lastScaleTime", status.get("lastScaleTime"))
    v1_status["currentReplicas"] = status.get("currentReplicas", 0)
    v1_status["desiredReplicas"] = status.get("desiredReplicas", 0)
    for metric in current_metrics:
        resource = _dict(metric.get("resource"))
        if metric.get("type") == "Resource" and resource.get("name") == "cpu":
            _set(v1_status, "currentCPUUtilizationPercentage",
                 _dict(resource.get("current")).get("averageUtilization"))
    out["status"] = v1_status
    others = [metric_spec_to_v1(m) for m in metrics if not _is_cpu_utilization(m)]
    conditions = [copy.deepcopy(_dict(c)) for c in _list(status.get("conditions"))]
    annotations = dict(_dict(meta.get("annotations")))
    if others:
        annotations[METRIC_SPECS_ANNOTATION] = _encode(others)
    if current_metrics:
        annotations[METRIC_STATUSES_ANNOTATION] = _encode(
            [metric_status_to_v1(m) for m in current_metrics])
    if conditions:
        annotations[CONDITIONS_ANNOTATION] = _encode(conditions)
    if annotations:
        meta["annotations"] = annotations
    return out


def _annotation_list(annotations: dict[str, Any], key: str) -> list[dict[str, Any]] | None:
    """The JSON list in annotation `key` (removed from `annotations`), or None if absent.

    Raises ValueError when it is not a JSON list of objects."""
    if key not in annotations:
        return None
    raw = annotations.pop(key)
    try:
        items = json.loads(raw) if isinstance(raw, str) else None
    except json.JSONDecodeError as exc:
        raise ValueError(f"annotation {key} is not valid JSON: {exc}") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValueError(f"annotation {key} must be a JSON list of objects")
    return items


def hpa_v1_to_v2(obj: dict[str, Any]) -> dict[str, Any]:
    """An autoscaling/v1 HorizontalPodAutoscaler as stored (autoscaling/v2).

    Raises ValueError when one of the conversion annotations does not parse."""
    out = {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("spec", "status")}
    out["apiVersion"] = HPA_V2
    meta = out.setdefault("metadata", {})
    annotations = dict(_dict(meta.get("annotations")))
    spec, status = _dict(obj.get("spec")), _dict(obj.get("status"))
    v2_spec: dict[str, Any] = {"scaleTargetRef": copy.deepcopy(_dict(spec.get("scaleTargetRef")))}
    _set(v2_spec, "minReplicas", spec.get("minReplicas"))
    v2_spec["maxReplicas"] = spec.get("maxReplicas", 0)
    metrics: list[dict[str, Any]] = []
    if spec.get("targetCPUUtilizationPercentage") is not None:
        metrics.append({"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization",
            "averageUtilization": spec["targetCPUUtilizationPercentage"]}}})
    others = _annotation_list(annotations, METRIC_SPECS_ANNOTATION)
    if others is not None:
        metrics = [metric_spec_from_v1(m) for m in others] + metrics
    if not metrics:
        metrics = [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": DEFAULT_CPU_UTILIZATION}}}]
    v2_spec["metrics"] = metrics
    out["spec"] = v2_spec
    v2_status: dict[str, Any] = {}
    _set(v2_status, "observedGeneration", status.get("observedGeneration"))
    _set(v2_status, "lastScaleTime", status.get("lastScaleTime"))
    if status.get("currentReplicas"):
        v2_status["currentReplicas"] = status["currentReplicas"]
    v2_status["desiredReplicas"] = status.get("desiredReplicas", 0)
    if status.get("currentCPUUtilizationPercentage") is not None:
        v2_status["currentMetrics"] = [{"type": "Resource", "resource": {"name": "cpu", "current": {
            "averageUtilization": status["currentCPUUtilizationPercentage"]}}}]
    current = _annotation_list(annotations, METRIC_STATUSES_ANNOTATION)
    if current is not None:
        v2_status["currentMetrics"] = [metric_status_from_v1(m) for m in current]
    conditions = _annotation_list(annotations, CONDITIONS_ANNOTATION)
    if conditions is not None:
        v2_status["conditions"] = conditions
    out["status"] = v2_status
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return out


def as_v2(obj: dict[str, Any]) -> dict[str, Any]:
    """A HorizontalPodAutoscaler of either version in the v2 shape (v1 is converted)."""
    return hpa_v1_to_v2(obj) if obj.get("apiVersion") == HPA_V1 else obj


#: (group, served version, kind) -> (to storage, from storage).
CONVERTERS: dict[tuple[str, str, str], tuple[Converter, Converter]] = {
    ("autoscaling", "v1", "HorizontalPodAutoscaler"): (hpa_v1_to_v2, hpa_v2_to_v1),
}


def to_storage(res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    """`obj`, written through `res`, in the version it is stored in."""
    if not res.storage_version:
        return obj
    return CONVERTERS[(res.group, res.version, res.kind)][0](obj)


def from_storage(res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    """A stored object as `res` serves it."""
    if not res.storage_version:
        return obj
    return CONVERTERS[(res.group, res.version, res.kind)][1](obj)


__all__ = ["CONDITIONS_ANNOTATION", "CONVERTERS", "METRIC_SPECS_ANNOTATION",
           "METRIC_STATUSES_ANNOTATION", "as_v2", "from_storage", "hpa_v1_to_v2", "hpa_v2_to_v1",
           "to_storage"]
