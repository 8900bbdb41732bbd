"""ResourceQuota arithmetic and usage: what each object costs against a quota.

Pure functions shared by the API server's ResourceQuota admission (which charges a create
against `status.used` before the object is stored) and the resource quota controller
(which recomputes `status.used` from the objects that exist), so both sides count alike.
They follow k8s.io/apiserver/pkg/quota/v1 (resource list arithmetic, object counts) and
pkg/quota/v1/evaluator/core (pods, services, persistentvolumeclaims).

A resource list is the JSON form, `{"requests.cpu": "500m"}`. Sums keep the quantity
format of the left operand (as `Quantity.Add` does), so `1Gi + 1Gi` is `2Gi`, not bytes.
Kinds are named by (group, plural), the way quota resource names spell them
(`count/deployments.apps`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any

from .meta import parse_time
from .quantity import BINARY_SI, DECIMAL_EXPONENT, DECIMAL_SI, format_quantity, parse_quantity
from .selectors import label_selector_from_dict

ResourceList = dict[str, str]
Kind = tuple[str, str]  # (group, plural)

PODS: Kind = ("", "pods")
SERVICES: Kind = ("", "services")
PERSISTENT_VOLUME_CLAIMS: Kind = ("", "persistentvolumeclaims")

#: The legacy names that count objects of a core kind (`secrets` beside `count/secrets`).
LEGACY_COUNT_NAMES: Mapping[Kind, str] = {
    ("", "configmaps"): "configmaps",
    ("", "resourcequotas"): "resourcequotas",
    ("", "replicationcontrollers"): "replicationcontrollers",
    ("", "secrets"): "secrets",
}

_POD_RESOURCES = frozenset({
    "count/pods", "cpu", "memory", "ephemeral-storage", "requests.cpu", "requests.memory",
    "requests.ephemeral-storage", "limits.cpu", "limits.memory", "limits.ephemeral-storage",
    "pods",
})
_POD_RESOURCE_PREFIXES = ("hugepages-", "requests.hugepages-")
#: A quota on these makes every container say its value ("must specify ..."): a historical
#: coupling Kubernetes keeps for cpu and memory only.
_REQUIRED_ON_CONTAINERS = frozenset({
    "cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory",
})
_SERVICE_RESOURCES = frozenset({
    "count/services", "services", "services.nodeports", "services.loadbalancers",
})
_PVC_RESOURCES = ("persistentvolumeclaims", "requests.storage")
STORAGE_CLASS_SUFFIX = ".storageclass.storage.k8s.io/"
_STORAGE_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"
_QOS_RESOURCES = ("cpu", "memory")

_BINARY_SUFFIX = re.compile(r"[0-9.]+[KMGTPE]i$")
_EXPONENT_SUFFIX = re.compile(r"[0-9.]+[eE][-+]?[0-9]+$")


# -- resource list arithmetic ------------------------------------------------------------


def _format_of(text: str) -> str:
    """The quantity format a string was written in (which a sum keeps)."""
    text = str(text).strip()
    if _BINARY_SUFFIX.search(text):
        return BINARY_SI
    if _EXPONENT_SUFFIX.search(text):
        return DECIMAL_EXPONENT
    return DECIMAL_SI


def _value(text: str) -> Decimal:
    return parse_quantity(text)


def _render(value: Decimal, like: str, other: str = "") -> str:
    """`value` in the format of `like`, or of `other` when `like` is zero (Quantity.Add)."""
    fmt = _format_of(like) if _value(like) or not other else _format_of(other)
    return format_quantity(value, fmt)


def add(a: Mapping[str, str], b: Mapping[str, str]) -> ResourceList:
    """a + b, key by key; a key in only one list is copied."""
    result = dict(a)
    for name, quantity in b.items():
        if name in result:
            result[name] = _render(_value(result[name]) + _value(quantity), result[name],
                                   quantity)
        else:
            result[name] = quantity
    return result


def subtract_non_negative(a: Mapping[str, str], b: Mapping[str, str]) -> ResourceList:
    """a - b key by key, never below zero; a key only in b becomes zero."""
    result: ResourceList = {}
    for name, quantity in a.items():
        left = _value(quantity) - (_value(b[name]) if name in b else Decimal(0))
        result[name] = _render(max(left, Decimal(0)), quantity)
    for name in b:
        result.setdefault(name, "0")
    return result


def mask(a: Mapping[str, str], names: Iterable[str]) -> ResourceList:
    """Only the keys of `a` that are in `names`."""
    keep = set(names)
    return {name: quantity for name, quantity in a.items() if name in keep}


def remove_zeros(a: Mapping[str, str]) -> ResourceList:
    return {name: quantity for name, quantity in a.items() if _value(quantity)}


def negative(a: Mapping[str, str]) -> list[str]:
    """The names whose quantity is below zero, sorted."""
    return sorted(name for name, quantity in a.items() if _value(quantity) < 0)


def exceeded(a: Mapping[str, str], limits: Mapping[str, str]) -> list[str]:
    """The names of `a` above their value in `limits` (a name `limits` lacks is free)."""
    return sorted(name for name, quantity in a.items()
                  if name in limits and _value(quantity) > _value(limits[name]))


def equals(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """Same names, equal quantities (`1` equals `1000m`)."""
    return a.keys() == b.keys() and all(_value(a[k]) == _value(b[k]) for k in a)


def pretty(a: Mapping[str, str]) -> str:
    """`name=quantity` pairs sorted by name, as quota errors print a resource list."""
    return ",".join(f"{name}={a[name]}" for name in sorted(a))


# -- which quota resources a kind is charged for ------------------------------------------


def object_count_name(kind: Kind) -> str:
    """`count/pods`, `count/deployments.apps`."""
    group, plural = kind
    return f"count/{plural}.{group}" if group else f"count/{plural}"


def kind_of_count_name(name: str) -> Kind | None:
    """The kind a `count/<plural>[.<group>]` resource name counts, else None."""
    if not name.startswith("count/"):
        return None
    plural, _, group = name[len("count/"):].partition(".")
    return (group, plural) if plural else None


def _is_extended_for_quota(name: str) -> bool:
    """`requests.example.com/gpu`: a non-native resource quota names by its request."""
    native = "/" not in name or "kubernetes.io/" in name
    return not native and name.startswith("requests.")


def matching_resources(kind: Kind, names: Iterable[str]) -> list[str]:
    """Of the quota resource `names`, those objects of `kind` are charged for."""
    names = list(names)
    if kind == PODS:
        return [n for n in names if n in _POD_RESOURCES or n.startswith(_POD_RESOURCE_PREFIXES)
                or _is_extended_for_quota(n)]
    if kind == SERVICES:
        return [n for n in names if n in _SERVICE_RESOURCES]
    if kind == PERSISTENT_VOLUME_CLAIMS:
        return [n for n in names if n == "count/persistentvolumeclaims" or n in _PVC_RESOURCES
                or any(n.endswith(STORAGE_CLASS_SUFFIX + r) for r in _PVC_RESOURCES)]
    counted = {object_count_name(kind), LEGACY_COUNT_NAMES.get(kind, "")}
    return [n for n in names if n in counted]


def tracked_kinds(names: Iterable[str]) -> set[Kind]:
    """Every kind whose objects count toward some of these quota resource names."""
    kinds: set[Kind] = set()
    for name in names:
        for kind in (PODS, SERVICES, PERSISTENT_VOLUME_CLAIMS, *LEGACY_COUNT_NAMES):
            if matching_resources(kind, [name]):
                kinds.add(kind)
        counted = kind_of_count_name(name)
        if counted is not None:
            kinds.add(counted)
    return kinds


# -- usage of one object -----------------------------------------------------------------


def _pod_spec(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return pod.get("spec") or {}


def _max_into(target: ResourceList, other: Mapping[str, str]) -> None:
    for name, quantity in other.items():
        if name not in target or _value(quantity) > _value(target[name]):
            target[name] = quantity


def _pod_total(pod: Mapping[str, Any], key: str, overhead: bool) -> ResourceList:
    """The pod's effective requests or limits (`key`): containers summed, init containers
    taken at their peak (sidecars, restartPolicy Always, run alongside), plus overhead."""
    spec = _pod_spec(pod)
    total: ResourceList = {}
    for container in spec.get("containers") or []:
        total = add(total, (container.get("resources") or {}).get(key) or {})
    sidecars: ResourceList = {}
    init_peak: ResourceList = {}
    for container in spec.get("initContainers") or []:
        own = (container.get("resources") or {}).get(key) or {}
        if container.get("restartPolicy") == "Always":
            total = add(total, own)
            sidecars = add(sidecars, own)
            running = sidecars
        else:
            running = add(own, sidecars)
        _max_into(init_peak, running)
    _max_into(total, init_peak)
    extra = (spec.get("overhead") or {}) if overhead else {}
    if key == "requests":
        return add(total, extra)
    return add(total, mask(extra, total))  # overhead only where a limit is set


def pod_requests(pod: Mapping[str, Any], *, overhead: bool = True) -> ResourceList:
    """What the pod requests as a whole (PodRequests); LimitRange leaves overhead out."""
    return _pod_total(pod, "requests", overhead)


def pod_limits(pod: Mapping[str, Any], *, overhead: bool = True) -> ResourceList:
    """The pod's limits as a whole (PodLimits)."""
    return _pod_total(pod, "limits", overhead)


def _compute_usage(requests: Mapping[str, str], limits: Mapping[str, str]) -> ResourceList:
    """What a pod (or one container) with these requests and limits is charged."""
    usage: ResourceList = {"pods": "1"}
    for name in ("cpu", "memory", "ephemeral-storage"):
        if name in requests:
            usage[name] = usage[f"requests.{name}"] = requests[name]
        if name in limits:
            usage[f"limits.{name}"] = limits[name]
    for name, quantity in requests.items():
        if name.startswith("hugepages-"):
            usage[name] = usage[f"requests.{name}"] = quantity
        elif "/" in name and "kubernetes.io/" not in name and not name.startswith("requests."):
            usage[f"requests.{name}"] = quantity
    return usage


def pod_is_charged(pod: Mapping[str, Any], now: datetime) -> bool:
    """Whether a pod still holds compute quota: not finished, not past its deletion grace."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    meta = pod.get("metadata") or {}
    deleted_at = parse_time(meta.get("deletionTimestamp"))
    grace = meta.get("deletionGracePeriodSeconds")
    return not (deleted_at is not None and grace is not None
                and now > deleted_at + timedelta(seconds=grace))


def _pvc_storage_class(pvc: Mapping[str, Any]) -> str:
    annotations = (pvc.get("metadata") or {}).get("annotations") or {}
    if _STORAGE_CLASS_ANNOTATION in annotations:
        return str(annotations[_STORAGE_CLASS_ANNOTATION])
    return str((pvc.get("spec") or {}).get("storageClassName") or "")


def _pvc_storage(pvc: Mapping[str, Any]) -> str | None:
    """Requested storage in whole bytes, or the allocated size when larger (a resize)."""
    requested = (((pvc.get("spec") or {}).get("resources") or {}).get("requests") or {}).get(
        "storage")
    if requested is None:
        return None
    value = _value(requested)
    allocated = ((pvc.get("status") or {}).get("allocatedResources") or {}).get("storage")
    if allocated is not None and _value(allocated) > value:
        requested, value = allocated, _value(allocated)
    if value == value.to_integral_value():
        return requested
    return format_quantity(value.to_integral_value(rounding=ROUND_CEILING), _format_of(requested))


def usage(kind: Kind, obj: Mapping[str, Any], now: datetime) -> ResourceList:
    """What one object of `kind` is charged against quota."""
    count = object_count_name(kind)
    if kind == PODS:
        if not pod_is_charged(obj, now):
            return {count: "1"}
        return add({count: "1"}, _compute_usage(pod_requests(obj), pod_limits(obj)))
    if kind == SERVICES:
        spec = obj.get("spec") or {}
        ports = len(spec.get("ports") or [])
        service_type = spec.get("type")
        result = {count: "1", "services": "1", "services.loadbalancers": "0",
                  "services.nodeports": "0"}
        if service_type == "NodePort":
            result["services.nodeports"] = str(ports)
        elif service_type == "LoadBalancer":
            if spec.get("allocateLoadBalancerNodePorts") is False:
                ports = sum(1 for p in spec.get("ports") or [] if p.get("nodePort"))
            result["services.nodeports"] = str(ports)
            result["services.loadbalancers"] = "1"
        return result
    if kind == PERSISTENT_VOLUME_CLAIMS:
        result = {"persistentvolumeclaims": "1", count: "1"}
        storage_class = _pvc_storage_class(obj)
        if storage_class:
            result[f"{storage_class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"] = "1"
        storage = _pvc_storage(obj)
        if storage is not None:
            result["requests.storage"] = storage
            if storage_class:
                result[f"{storage_class}{STORAGE_CLASS_SUFFIX}requests.storage"] = storage
        return result
    result = {count: "1"}
    if kind in LEGACY_COUNT_NAMES:
        result[LEGACY_COUNT_NAMES[kind]] = "1"
    return result


# -- scopes ------------------------------------------------------------------------------


def _qos_relevant(resources: Mapping[str, str]) -> ResourceList:
    return {n: q for n, q in resources.items() if n in _QOS_RESOURCES and _value(q) > 0}


def pod_qos_class(pod: Mapping[str, Any]) -> str:
    """The pod's QoS class (GetPodQOS): from the cpu and memory of every container."""
    spec = _pod_spec(pod)
    requests: ResourceList = {}
    limits: ResourceList = {}
    guaranteed = True
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        resources = container.get("resources") or {}
        own_requests = _qos_relevant(resources.get("requests") or {})
        own_limits = _qos_relevant(resources.get("limits") or {})
        requests, limits = add(requests, own_requests), add(limits, own_limits)
        if own_limits.keys() != set(_QOS_RESOURCES):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and requests.keys() == limits.keys() and all(
            _value(requests[n]) == _value(limits[n]) for n in requests):
        return "Guaranteed"
    return "Burstable"


def _cross_namespace_affinity(pod: Mapping[str, Any]) -> bool:
    affinity = _pod_spec(pod).get("affinity") or {}
    for kind in ("podAffinity", "podAntiAffinity"):
        terms = affinity.get(kind) or {}
        required = terms.get("requiredDuringSchedulingIgnoredDuringExecution") or []
        preferred = [t.get("podAffinityTerm") or {}
                     for t in terms.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
        if any(t.get("namespaces") or t.get("namespaceSelector") is not None
               for t in [*required, *preferred]):
            return True
    return False


def scope_selectors(quota: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The quota's scopes as selector requirements: `spec.scopes` plus `spec.scopeSelector`."""
    spec = quota.get("spec") or {}
    selectors: list[dict[str, Any]] = [{"scopeName": s, "operator": "Exists"}
                                       for s in spec.get("scopes") or []]
    selectors += (spec.get("scopeSelector") or {}).get("matchExpressions") or []
    return selectors


def scope_matches(kind: Kind, selector: Mapping[str, Any], obj: Mapping[str, Any]) -> bool:
    """Whether `obj` falls in one quota scope; only pods are scoped."""
    if kind != PODS:
        return False
    scope = selector.get("scopeName")
    spec = _pod_spec(obj)
    if scope in ("Terminating", "NotTerminating"):
        deadline = spec.get("activeDeadlineSeconds")
        terminating = isinstance(deadline, int) and deadline >= 0
        return terminating == (scope == "Terminating")
    if scope in ("BestEffort", "NotBestEffort"):
        return (pod_qos_class(obj) == "BestEffort") == (scope == "BestEffort")
    if scope == "PriorityClass":
        priority_class = spec.get("priorityClassName") or ""
        if selector.get("operator") == "Exists":
            return bool(priority_class)
        selected = label_selector_from_dict({"matchExpressions": [{
            "key": "PriorityClass", "operator": selector.get("operator"),
            "values": list(selector.get("values") or [])}]})
        return selected.matches({"PriorityClass": priority_class} if priority_class else {})
    if scope == "CrossNamespacePodAffinity":
        return _cross_namespace_affinity(obj)
    return False


def matches(quota: Mapping[str, Any], hard: Mapping[str, str], kind: Kind,
            obj: Mapping[str, Any]) -> bool:
    """Whether `quota` (with limits `hard`) governs `obj`: a resource in common, every scope."""
    if not matching_resources(kind, hard):
        return False
    return all(scope_matches(kind, s, obj) for s in scope_selectors(quota))


def pod_constraints(required: Iterable[str], pod: Mapping[str, Any]) -> str | None:
    """`must specify requests.cpu for: a,b; ...` when containers omit what a quota needs."""
    wanted = set(required) & _REQUIRED_ON_CONTAINERS
    missing: dict[str, set[str]] = {}
    spec = _pod_spec(pod)
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        resources = container.get("resources") or {}
        has = _compute_usage(resources.get("requests") or {}, resources.get("limits") or {})
        for name in wanted - has.keys():
            missing.setdefault(name, set()).add(str(container.get("name", "")))
    if not missing:
        return None
    return "must specify " + "; ".join(
        f"{name} for: {','.join(sorted(missing[name]))}" for name in sorted(missing))


# -- usage of a namespace ----------------------------------------------------------------


def calculate_usage(quota: Mapping[str, Any], objects: Mapping[Kind, Iterable[Mapping]],
                    now: datetime) -> ResourceList:
    """`status.used` for `quota` from the namespace's objects of each tracked kind.

    Every hard resource some kind is charged for starts at zero, so a quota over objects
    that do not exist yet still reports its usage (and admission can proceed).
    """
    hard = (quota.get("spec") or {}).get("hard") or {}
    selectors = scope_selectors(quota)
    used: ResourceList = {}
    for kind, items in objects.items():
        names = matching_resources(kind, hard)
        if not names:
            continue
        total: ResourceList = dict.fromkeys(names, "0")
        for obj in items:
            if all(scope_matches(kind, s, obj) for s in selectors):
                total = add(total, usage(kind, obj, now))
        used = add(used, mask(total, names))
    return mask(used, hard)
