"""Validation of autoscaling HorizontalPodAutoscalers, whichever version they come in.

A part of validation.py, which merges `AUTOSCALING_VALIDATORS` into its tables -- use
those. The rules are Kubernetes 1.32's `pkg/apis/autoscaling/validation`, which checks the
internal object: so does this module, on the v2 shape (an autoscaling/v1 object is
converted first, conversion.py), and the field paths are v2's whatever version was sent
(`spec.metrics[0].resource.target.averageUtilization`), as a real server reports them.
minReplicas must be at least 1 (HPAScaleToZero is an alpha gate, off); maxReplicas at
least 1 and not below minReplicas; scaleTargetRef needs a kind and a name; each metric
names one known source type and fills exactly that source, with a valid target;
behavior's rules have at least one policy and bounded windows and periods; the status
counts are not negative. Identical problems are reported once, as the aggregate error
message of a real server lists them.
"""

from __future__ import annotations

from typing import Any

from pilothouse.machinery.errors import (
    Cause,
    forbidden,
    invalid_value,
    not_supported,
    required,
)
from pilothouse.machinery.names import is_dns1123_label, is_qualified_name

from .conversion import HPA_V1, hpa_v1_to_v2
from .validation import (
    Validator,
    as_dict,
    as_list,
    is_int,
    name_errors,
    quantity,
    shown,
    validate_names,
    validate_nonnegative,
)

#: The largest scaling policy period and stabilization window, in seconds.
MAX_PERIOD_SECONDS = 1800
MAX_STABILIZATION_WINDOW_SECONDS = 3600
METRIC_SOURCE_TYPES = ("ContainerResource", "External", "Object", "Pods", "Resource")
#: The field each metric source type fills, in the order upstream looks at them.
SOURCE_FIELDS = {"Object": "object", "External": "external", "Pods": "pods",
                 "Resource": "resource", "ContainerResource": "containerResource"}
TARGET_TYPES = ("Utilization", "Value", "AverageValue")
SELECT_POLICIES = ("Disabled", "Max", "Min")
POLICY_TYPES = ("Percent", "Pods")
_CONTAINER_RESOURCES = ("cpu", "ephemeral-storage", "memory")


def validate_cross_version_object_reference(ref: Any, path: str) -> list[Cause]:
    """A kind and a name, each usable as a path segment."""
    ref = as_dict(ref)
    causes: list[Cause] = []
    for key in ("kind", "name"):
        value = str(ref.get(key) or "")
        if not value:
            causes.append(required(f"{path}.{key}"))
        else:
            causes += [invalid_value(f"{path}.{key}", value, msg)
                       for msg in name_errors(value, "path")]
    return causes


def _positive_quantity(value: Any, path: str) -> list[Cause]:
    causes: list[Cause] = []
    amount = quantity(value, path, causes)
    if amount is not None and amount <= 0:
        causes.append(invalid_value(path, shown(value), "must be positive"))
    return causes


def _validate_target(target: dict, path: str) -> list[Cause]:
    """validateMetricTarget."""
    causes: list[Cause] = []
    kind = target.get("type") or ""
    if not kind:
        causes.append(required(f"{path}.type", "must specify a metric target type"))
    if kind not in TARGET_TYPES:
        causes.append(invalid_value(f"{path}.type", kind,
                                    "must be either Utilization, Value, or AverageValue"))
    for key in ("value", "averageValue"):
        if target.get(key) is not None:
            causes += _positive_quantity(target[key], f"{path}.{key}")
    utilization = target.get("averageUtilization")
    if utilization is not None and (not is_int(utilization) or utilization < 1):
        causes.append(invalid_value(f"{path}.averageUtilization", utilization,
                                    "must be greater than 0"))
    return causes


def _validate_identifier(ident: dict, path: str) -> list[Cause]:
    name = str(ident.get("name") or "")
    if not name:
        return [required(f"{path}.name", "must specify a metric name")]
    return [invalid_value(f"{path}.name", name, msg) for msg in name_errors(name, "path")]


def _validate_resource_target(target: dict, path: str) -> list[Cause]:
    causes: list[Cause] = []
    if target.get("averageUtilization") is None and target.get("averageValue") is None:
        causes.append(required(f"{path}.averageUtilization",
                               "must set either a target raw value or a target utilization"))
    if target.get("averageUtilization") is not None and target.get("averageValue") is not None:
        causes.append(forbidden(f"{path}.averageValue",
                                "may not set both a target raw value and a target utilization"))
    return causes


def _validate_source(field: str, source: dict, path: str) -> list[Cause]:
    """The checks of one filled metric source (validateObjectSource and friends)."""
    target = as_dict(source.get("target"))
    at = f"{path}.target"
    if field == "object":
        causes = validate_cross_version_object_reference(source.get("describedObject"),
                                                         f"{path}.describedObject")
        causes += _validate_identifier(as_dict(source.get("metric")), f"{path}.metric")
        causes += _validate_target(target, at)
        if target.get("value") is None and target.get("averageValue") is None:
            causes.append(required(f"{at}.averageValue",
                                   "must set either a target value or averageValue"))
        return causes
    if field == "external":
        causes = _validate_identifier(as_dict(source.get("metric")), f"{path}.metric")
        causes += _validate_target(target, at)
        if target.get("value") is None and target.get("averageValue") is None:
            causes.append(required(f"{at}.averageValue",
                                   "must set either a target value for metric or a per-pod "
                                   "target"))
        if target.get("value") is not None and target.get("averageValue") is not None:
            causes.append(forbidden(f"{at}.value", "may not set both a target value for metric "
                                                   "and a per-pod target"))
        return causes
    if field == "pods":
        causes = _validate_identifier(as_dict(source.get("metric")), f"{path}.metric")
        causes += _validate_target(target, at)
        if target.get("averageValue") is None:
            causes.append(required(f"{at}.averageValue",
                                   "must specify a positive target averageValue"))
        return causes
    name = str(source.get("name") or "")
    causes = []
    if not name:
        causes.append(required(f"{path}.name", "must specify a resource name"))
    elif field == "containerResource":
        if "/" in name:
            causes += validate_names(name, f"{path}.name", is_qualified_name)
        elif name not in _CONTAINER_RESOURCES and not name.startswith("hugepages-"):
            causes.append(invalid_value(f"{path}.name", name,
                                        "must be a standard resource for containers"))
    if field == "containerResource":
        container = str(source.get("container") or "")
        if not container:
            causes.append(required(f"{path}.container", "must specify a container"))
        else:
            causes += validate_names(container, f"{path}.container", is_dns1123_label)
    return causes + _validate_target(target, at) + _validate_resource_target(target, at)


def validate_metric_spec(metric: dict, path: str) -> list[Cause]:
    """validateMetricSpec: a known type, its source filled, no other source."""
    causes: list[Cause] = []
    kind = metric.get("type") or ""
    if not kind:
        causes.append(required(f"{path}.type", "must specify a metric source type"))
    if kind not in METRIC_SOURCE_TYPES:
        causes.append(not_supported(f"{path}.type", kind, METRIC_SOURCE_TYPES))
    present = [f for f in SOURCE_FIELDS.values() if metric.get(f) is not None]
    if present:
        first = present[0]
        causes += _validate_source(first, as_dict(metric[first]), f"{path}.{first}")
    expected = SOURCE_FIELDS.get(kind)
    if expected is not None and metric.get(expected) is None:
        causes.append(required(f"{path}.{expected}",
                               "must populate information for the given metric source"))
    if len(present) != 1:
        causes += [forbidden(f"{path}.{f}", "must populate the given metric source only")
                   for f in present if f != expected]
    return causes


def _validate_scaling_rules(rules: Any, path: str) -> list[Cause]:
    if rules is None:
        return []
    rules = as_dict(rules)
    causes: list[Cause] = []
    window = rules.get("stabilizationWindowSeconds")
    if is_int(window) and window < 0:
        causes.append(invalid_value(f"{path}.stabilizationWindowSeconds", window,
                                    "must be greater than or equal to zero"))
    if is_int(window) and window > MAX_STABILIZATION_WINDOW_SECONDS:
        causes.append(invalid_value(f"{path}.stabilizationWindowSeconds", window,
                                    f"must be less than or equal to "
                                    f"{MAX_STABILIZATION_WINDOW_SECONDS}"))
    select = rules.get("selectPolicy")
    if select is not None and select not in SELECT_POLICIES:
        causes.append(not_supported(f"{path}.selectPolicy", select, SELECT_POLICIES))
    policies = as_list(rules.get("policies"))
    if not policies:
        causes.append(required(f"{path}.policies", "must specify at least one Policy"))
    for i, policy in enumerate(policies):
        policy = as_dict(policy)
        at = f"{path}.policies[{i}]"
        if policy.get("type") not in POLICY_TYPES:
            causes.append(not_supported(f"{at}.type", policy.get("type") or "", POLICY_TYPES))
        value, period = policy.get("value", 0), policy.get("periodSeconds", 0)
        if not is_int(value) or value <= 0:
            causes.append(invalid_value(f"{at}.value", value, "must be greater than zero"))
        if not is_int(period) or period <= 0:
            causes.append(invalid_value(f"{at}.periodSeconds", period,
                                        "must be greater than zero"))
        if is_int(period) and period > MAX_PERIOD_SECONDS:
            causes.append(invalid_value(f"{at}.periodSeconds", period,
                                        f"must be less than or equal to {MAX_PERIOD_SECONDS}"))
    return causes


def validate_horizontal_pod_autoscaler(hpa: dict) -> list[Cause]:
    """ValidateHorizontalPodAutoscaler (spec) and the status counts, on the v2 shape."""
    if hpa.get("apiVersion") == HPA_V1:
        try:
            hpa = hpa_v1_to_v2(hpa)
        except ValueError as exc:
            return [invalid_value("metadata.annotations", "", str(exc))]
    spec = as_dict(hpa.get("spec"))
    causes: list[Cause] = []
    low, high = spec.get("minReplicas"), spec.get("maxReplicas", 0)
    if low is not None and (not is_int(low) or low < 1):
        causes.append(invalid_value("spec.minReplicas", low, "must be greater than or equal to 1"))
    if not is_int(high) or high < 1:
        causes.append(invalid_value("spec.maxReplicas", high, "must be greater than 0"))
    if is_int(low) and is_int(high) and high < low:
        causes.append(invalid_value("spec.maxReplicas", high,
                                    "must be greater than or equal to `minReplicas`"))
    causes += validate_cross_version_object_reference(spec.get("scaleTargetRef"),
                                                      "spec.scaleTargetRef")
    for i, metric in enumerate(as_list(spec.get("metrics"))):
        causes += validate_metric_spec(as_dict(metric), f"spec.metrics[{i}]")
    behavior = spec.get("behavior")
    if behavior is not None:
        behavior = as_dict(behavior)
        causes += _validate_scaling_rules(behavior.get("scaleUp"), "spec.behavior.scaleUp")
        causes += _validate_scaling_rules(behavior.get("scaleDown"), "spec.behavior.scaleDown")
    status = as_dict(hpa.get("status"))
    causes += validate_nonnegative(status.get("currentReplicas"), "status.currentReplicas")
    causes += validate_nonnegative(status.get("desiredReplicas"), "status.desiredReplicas")
    unique: list[Cause] = []
    for cause in causes:
        if cause not in unique:
            unique.append(cause)
    return unique


AUTOSCALING_VALIDATORS: dict[tuple[str, str], Validator] = {
    ("autoscaling", "HorizontalPodAutoscaler"): validate_horizontal_pod_autoscaler,
}

__all__ = ["AUTOSCALING_VALIDATORS", "validate_cross_version_object_reference",
           "validate_horizontal_pod_autoscaler", "validate_metric_spec"]
