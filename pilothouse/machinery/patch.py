"""The three patch types a PATCH request may carry, applied to plain JSON objects.

- `json_patch`: RFC 6902 (`application/json-patch+json`), through the `jsonpatch` library.
- `merge_patch`: RFC 7386 (`application/merge-patch+json`): null deletes, objects merge,
  everything else replaces. What `kubectl label/annotate/scale` and custom resources use.
- `strategic_merge_patch`: Kubernetes' strategic merge patch
  (`application/strategic-merge-patch+json`) for built-in kinds, as
  k8s.io/apimachinery/pkg/util/strategicpatch applies it: lists declared with
  `patchStrategy:"merge"` are merged by their `patchMergeKey` (or unioned, for lists of
  primitives), other lists are replaced, and the directives `$patch`, `$retainKeys`,
  `$setElementOrder/<field>` and `$deleteFromPrimitiveList/<field>` are honoured.

This module also owns the type graph those patches walk: the official client's models (as
`machinery.k8s_models` ships them) give each built-in kind's fields and their types
(`field_type`, `field_model`, `element_type`) and `PATCH_META` holds the
`patchStrategy`/`patchMergeKey` struct tags of k8s.io/api. Server-side apply
(`machinery.apply`) and the OpenAPI generator walk the same graph.

Errors follow kube-apiserver (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go):
a patch document that cannot be decoded is 400 BadRequest; a JSON patch operation that cannot
be applied is 422 Invalid. Strategic-patch failures that the real server reports as 500 (a
`$patch: merge` in a list, mixed element types) are 400 here: they are the client's mistake.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Mapping
from typing import Any

import jsonpatch
import jsonpointer

from pilothouse.machinery import k8s_models
from pilothouse.machinery.errors import APIError, bad_request

MAX_JSON_PATCH_OPERATIONS = 10000

# (client model class, JSON field) -> (patchStrategy, patchMergeKey), from the struct tags of
# k8s.io/api (core, apps, batch, admissionregistration, autoscaling/v2, certificates,
# flowcontrol, networking, policy, resource, storage, storagemigration: v1) and
# k8s.io/apimachinery meta/v1. Fields inlined in Go (EphemeralContainerCommon) are listed
# under the model that carries them. A list field that is absent here is replaced whole.
PATCH_META: Mapping[tuple[str, str], tuple[str, str | None]] = {
    ("V1CSINodeSpec", "drivers"): ("merge", "name"),
    ("V1CSINodeStatus", "storageHealth"): ("merge", "name"),
    ("V1ComponentStatus", "conditions"): ("merge", "type"),
    ("V1Container", "env"): ("merge", "name"),
    ("V1Container", "ports"): ("merge", "containerPort"),
    ("V1Container", "volumeDevices"): ("merge", "devicePath"),
    ("V1Container", "volumeMounts"): ("merge", "mountPath"),
    ("V1ContainerStatus", "allocatedResourcesStatus"): ("merge", "name"),
    ("V1ContainerStatus", "volumeMounts"): ("merge", "mountPath"),
    ("V1DaemonSetStatus", "conditions"): ("merge", "type"),
    ("V1DeploymentSpec", "strategy"): ("retainKeys", None),
    ("V1DeploymentStatus", "conditions"): ("merge", "type"),
    ("V1DeviceTaintRuleStatus", "conditions"): ("merge", "type"),
    ("V1EphemeralContainer", "env"): ("merge", "name"),
    ("V1EphemeralContainer", "ports"): ("merge", "containerPort"),
    ("V1EphemeralContainer", "volumeDevices"): ("merge", "devicePath"),
    ("V1EphemeralContainer", "volumeMounts"): ("merge", "mountPath"),
    ("V1FlowSchemaStatus", "conditions"): ("merge", "type"),
    ("V1JobSchedulingConfiguration", "resourceClaims"): ("merge", "name"),
    ("V1JobStatus", "conditions"): ("merge", "type"),
    ("V1MutatingAdmissionPolicySpec", "matchConditions"): ("merge", "name"),
    ("V1MutatingWebhook", "matchConditions"): ("merge", "name"),
    ("V1MutatingWebhookConfiguration", "webhooks"): ("merge", "name"),
    ("V1NamespaceStatus", "conditions"): ("merge", "type"),
    ("V1NodeAllocatableResourceClaimStatus", "mapping"): ("merge", "name"),
    ("V1NodeAllocatableResourceClaimStatus", "overhead"): ("merge", "name"),
    ("V1NodeSpec", "podCIDRs"): ("merge", None),
    ("V1NodeStatus", "addresses"): ("merge", "type"),
    ("V1NodeStatus", "conditions"): ("merge", "type"),
    ("V1ObjectMeta", "finalizers"): ("merge", None),
    ("V1ObjectMeta", "ownerReferences"): ("merge", "uid"),
    ("V1PersistentVolumeClaimStatus", "conditions"): ("merge", "type"),
    ("V1PodCertificateRequestStatus", "conditions"): ("merge", "type"),
    ("V1PodDisruptionBudgetSpec", "selector"): ("replace", None),
    ("V1PodDisruptionBudgetStatus", "conditions"): ("merge", "type"),
    ("V1PodSpec", "containers"): ("merge", "name"),
    ("V1PodSpec", "ephemeralContainers"): ("merge", "name"),
    ("V1PodSpec", "evictionResponders"): ("merge", "name"),
    ("V1PodSpec", "hostAliases"): ("merge", "ip"),
    ("V1PodSpec", "imagePullSecrets"): ("merge", "name"),
    ("V1PodSpec", "initContainers"): ("merge", "name"),
    ("V1PodSpec", "resourceClaims"): ("merge,retainKeys", "name"),
    ("V1PodSpec", "schedulingGates"): ("merge", "name"),
    ("V1PodSpec", "topologySpreadConstraints"): ("merge", "topologyKey"),
    ("V1PodSpec", "volumes"): ("merge,retainKeys", "name"),
    ("V1PodStatus", "conditions"): ("merge", "type"),
    ("V1PodStatus", "hostIPs"): ("merge", "ip"),
    ("V1PodStatus", "nodeAllocatableResourceClaimStatuses"): ("merge", "resourceClaimName"),
    ("V1PodStatus", "podIPs"): ("merge", "ip"),
    ("V1PodStatus", "resourceClaimStatuses"): ("merge,retainKeys", "name"),
    ("V1PodVolumeHealth", "healthConditions"): ("merge", "status"),
    ("V1PriorityLevelConfigurationStatus", "conditions"): ("merge", "type"),
    ("V1ReplicaSetStatus", "conditions"): ("merge", "type"),
    ("V1ReplicationControllerStatus", "conditions"): ("merge", "type"),
    ("V1ResourceClaimStatus", "reservedFor"): ("merge", "uid"),
    ("V1ServiceAccount", "secrets"): ("merge", "name"),
    ("V1ServiceCIDRStatus", "conditions"): ("merge", "type"),
    ("V1ServiceSpec", "ports"): ("merge", "port"),
    ("V1ServiceStatus", "conditions"): ("merge", "type"),
    ("V1StatefulSetStatus", "conditions"): ("merge", "type"),
    ("V1StorageVersionMigrationStatus", "conditions"): ("merge", "type"),
    ("V1ValidatingAdmissionPolicySpec", "matchConditions"): ("merge", "name"),
    ("V1ValidatingAdmissionPolicySpec", "variables"): ("merge", "name"),
    ("V1ValidatingWebhook", "matchConditions"): ("merge", "name"),
    ("V1ValidatingWebhookConfiguration", "webhooks"): ("merge", "name"),
    ("V1VolumeHealthStatus", "healthConditions"): ("merge", "status"),
    ("V2HorizontalPodAutoscalerStatus", "conditions"): ("merge", "type"),
}

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ORDER = "$setElementOrder/"
_DELETE_FROM = "$deleteFromPrimitiveList/"

# The official client spells container types `List[X]`/`Dict[str, X]` (older releases:
# `list[X]`/`dict(str, X)`).
_CONTAINER_TYPE = re.compile(
    r"^(?:[Ll]ist\[(?P<item>.+)\]|Dict\[str, (?P<v1>.+)\]|dict\(str, (?P<v2>.+)\))$"
)


# --- the type graph ---------------------------------------------------------------------


@functools.cache
def _model_fields(model: str) -> Mapping[str, str] | None:
    described = k8s_models.model(model)
    if described is None:
        return None
    return {field.name: field.type for field in described.fields}


def field_type(model: str | None, json_field: str) -> str | None:
    """The client's type string for `model`'s field `json_field` (`'List[V1Container]'`)."""
    fields = _model_fields(model) if model else None
    return fields.get(json_field) if fields else None


def element_type(type_name: str | None) -> str | None:
    """The element type of a list or string-keyed map type (`'List[V1EnvVar]'` -> `'V1EnvVar'`)."""
    match = _CONTAINER_TYPE.match(type_name or "")
    if not match:
        return None
    return match.group("item") or match.group("v1") or match.group("v2")


def is_model(type_name: str | None) -> bool:
    """Whether `type_name` names a client model class (a struct with named fields)."""
    return bool(type_name) and _model_fields(type_name) is not None


@functools.cache
def field_model(model: str, json_field: str) -> str | None:
    """The model class of `model.json_field`, through lists and maps; None for primitives."""
    typ = field_type(model, json_field)
    while element_type(typ):
        typ = element_type(typ)
    return typ if is_model(typ) else None


def merge_key(model: str, json_field: str) -> tuple[str, str | None] | None:
    """`(patchStrategy, patchMergeKey)` declared for `model.json_field`, if any."""
    return PATCH_META.get((model, json_field))


def _lookup(type_name: str | None, key: str) -> tuple[str | None, str, str | None]:
    """(type of the child, patch strategy, merge key) of `key` inside a `type_name` value."""
    if is_model(type_name):
        strategy, mkey = PATCH_META.get((type_name, key), ("", None))
        return field_type(type_name, key), strategy, mkey
    return element_type(type_name), "", None


# --- JSON patch and merge patch ---------------------------------------------------------


def json_patch(doc: dict, ops: Any) -> dict:
    """Apply an RFC 6902 operation list to a copy of `doc`."""
    if not isinstance(ops, list):
        raise bad_request(
            f"json: cannot unmarshal {_json_kind(ops)} into Go value of type jsonpatch.Patch"
        )
    for op in ops:
        if not isinstance(op, dict):
            raise bad_request(
                f"json: cannot unmarshal {_json_kind(op)} into Go value of type jsonpatch.Operation"
            )
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise APIError(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: The allowed maximum operations in a JSON patch is "
            f"{MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}",
        )
    try:
        result = jsonpatch.JsonPatch(ops).apply(doc)
    except (
        jsonpatch.JsonPatchException,
        jsonpointer.JsonPointerException,
        TypeError,
        ValueError,
        KeyError,
        IndexError,
    ) as exc:
        # The real server drops the library's reason here too; the code says "your patch".
        raise _unprocessable() from exc
    if not isinstance(result, dict):
        raise _unprocessable()
    return result


def merge_patch(doc: dict, patch: Any) -> dict:
    """Apply an RFC 7386 merge patch to a copy of `doc`."""
    if not isinstance(patch, dict):
        raise bad_request("Invalid JSON Patch")
    return _merge_json(copy.deepcopy(doc), patch)


def _merge_json(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_json(result.get(key), value)
    return result


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, (int, float)) else "null"


def _unprocessable() -> APIError:
    return APIError(
        422, "Invalid", "the server rejected our request due to an error in our request"
    )


# --- strategic merge patch --------------------------------------------------------------


def strategic_merge_patch(doc: dict, patch: dict, model: str) -> dict:
    """Apply a strategic merge patch to a copy of `doc`, a `model` (e.g. `"V1Pod"`) object.

    Fields the client models do not describe merge like a JSON merge patch.
    """
    if not isinstance(patch, dict):
        raise bad_request(
            f"json: cannot unmarshal {_json_kind(patch)} into Go value of type map[string]interface {{}}"
        )
    return _merge_map(copy.deepcopy(doc), copy.deepcopy(patch), model)


def _merge_map(original: dict, patch: dict, type_name: str | None) -> dict:
    if _DIRECTIVE in patch:
        directive = patch.pop(_DIRECTIVE)
        if directive == "replace":
            return _merge_map({}, patch, type_name)
        if directive == "delete":
            return {}
        if directive != "merge":
            raise bad_request(f"unknown patch type: {directive} in map: {_go(patch)}")
    _retain_keys(original, patch)
    _set_element_orders(original, patch, type_name)
    for key, value in patch.items():
        if key.startswith(_DELETE_FROM):
            _delete_from_primitive_list(original, key, value)
            continue
        if value is None:
            original.pop(key, None)
            continue
        child_type, strategy, mkey = _lookup(type_name, key)
        current = original.get(key)
        if isinstance(current, dict) and isinstance(value, dict) and "replace" not in strategy:
            original[key] = _merge_map(current, value, child_type)
        elif isinstance(current, list) and isinstance(value, list):
            original[key] = _merge_list_field(current, value, child_type, strategy, mkey)
        else:
            original[key] = _fresh(value, child_type, strategy, mkey)
    return original


def _fresh(value: Any, type_name: str | None, strategy: str, mkey: str | None) -> Any:
    """A patch value taken whole, with its directives resolved and its nulls dropped."""
    if isinstance(value, dict):
        return _merge_map({}, value, type_name)
    if isinstance(value, list):
        return _merge_list_field([], value, type_name, strategy, mkey)
    return value


def _merge_list_field(
    original: list, patch: list, type_name: str | None, strategy: str, mkey: str | None
) -> list:
    item_type = element_type(type_name)
    if "merge" not in strategy.split(","):
        return [_fresh(item, item_type, "", None) for item in patch]
    return _merge_slice(original, patch, item_type, mkey)


def _merge_slice(original: list, patch: list, item_type: str | None, mkey: str | None) -> list:
    if not original and not patch:
        return original
    kind = _element_kind(original, patch)
    if kind != "map":
        merged = _dedupe(original + patch)
        patch_items = [v for v in merged if v in patch]
        server_only = [v for v in merged if v not in patch]
        return _normalize_order(patch_items, server_only, patch, original, None)
    if not mkey:
        raise bad_request("cannot merge lists without merge key for type map")
    original, patch = _special_elements(original, patch, mkey)
    merged = list(original)
    for item in patch:
        if mkey not in item:
            raise bad_request(f"map: {_go(item)} does not contain declared merge key: {mkey}")
        at = _index(merged, item, mkey)
        if at >= 0:
            merged[at] = _merge_map(merged[at], item, item_type)
        else:
            merged.append(_merge_map({}, item, item_type))
    patch_keys = [item[mkey] for item in patch]
    patch_items = [m for m in merged if m.get(mkey) in patch_keys]
    server_only = [m for m in merged if m.get(mkey) not in patch_keys]
    return _normalize_order(patch_items, server_only, patch, original, mkey)


def _special_elements(original: list, patch: list, mkey: str) -> tuple[list, list]:
    """Resolve `$patch` list elements: delete by key, or replace the whole list."""
    plain = []
    replace = False
    for item in patch:
        if _DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[_DIRECTIVE]
        if directive == "delete":
            if mkey not in item:
                raise bad_request(f"map: {_go(item)} does not contain declared merge key: {mkey}")
            original = [o for o in original if o.get(mkey) != item[mkey]]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise bad_request("merging lists cannot yet be specified in the patch")
        else:
            raise bad_request(f"unknown patch type: {directive} in map: {_go(item)}")
    if replace:
        return plain, []
    return original, plain


def _element_kind(*lists: list) -> str:
    kinds = set()
    for items in lists:
        for item in items:
            if isinstance(item, list):
                raise _unprocessable()  # "lists of lists are not supported"
            if isinstance(item, dict):
                kinds.add("map")
            elif isinstance(item, bool) or item is None:
                kinds.add(type(item).__name__)
            else:
                kinds.add("number" if isinstance(item, (int, float)) else type(item).__name__)
    if len(kinds) > 1:
        raise bad_request(f"list element types are not identical: {_go(list(lists))}")
    return kinds.pop()


def _dedupe(items: list) -> list:
    out: list = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def _index(items: list, item: Any, mkey: str | None) -> int:
    """Position of `item` in `items`, by merge key for maps, by value for primitives."""
    for i, candidate in enumerate(items):
        if mkey is None:
            if candidate == item:
                return i
        elif isinstance(candidate, dict) and isinstance(item, dict) and mkey in candidate:
            if candidate[mkey] == item.get(mkey):
                return i
    return -1


def _normalize_order(
    patch_items: list, server_only: list, patch_order: list, server_order: list, mkey: str | None
) -> list:
    """Order a merged list as strategicpatch does: patch items in patch order, server-only
    items in live order, interleaved where the live order says a server item comes first."""

    def by(order: list) -> Any:
        return lambda item: i if (i := _index(order, item, mkey)) >= 0 else len(order)

    left = sorted(server_only, key=by(server_order))
    right = sorted(patch_items, key=by(patch_order))
    out = []
    i = j = 0
    while i < len(left) or j < len(right):
        if j >= len(right):
            out.append(left[i])
            i += 1
        elif i >= len(left):
            out.append(right[j])
            j += 1
        else:
            li, ri = _index(server_order, left[i], mkey), _index(server_order, right[j], mkey)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def _retain_keys(original: dict, patch: dict) -> None:
    if _RETAIN_KEYS not in patch:
        return
    keep = patch.pop(_RETAIN_KEYS)
    if not isinstance(keep, list):
        raise bad_request("invalid patch format of retainKeys")
    for key, value in patch.items():
        if value is None or key.startswith((_DELETE_FROM, _SET_ORDER)):
            continue
        if key not in keep:
            raise bad_request("invalid patch format of retainKeys")
    for key in [k for k in original if k not in keep]:
        del original[key]


def _delete_from_primitive_list(original: dict, key: str, values: Any) -> None:
    field = key[len(_DELETE_FROM) :]
    if not field or not isinstance(values, list):
        raise bad_request("invalid patch format of primitive list")
    current = original.get(field)
    if isinstance(current, list):
        original[field] = [v for v in current if v not in values]


def _set_element_orders(original: dict, patch: dict, type_name: str | None) -> None:
    """Merge each list that has a `$setElementOrder/<field>` and put it in that order."""
    for key in [k for k in patch if k.startswith(_SET_ORDER)]:
        order = patch.pop(key)
        field = key[len(_SET_ORDER) :]
        if not field or not isinstance(order, list):
            raise bad_request("invalid patch format of setElementOrder list")
        child_type, strategy, mkey = _lookup(type_name, field)
        live, change = original.get(field), patch.pop(field, None)
        if (live is not None and not isinstance(live, list)) or (
            change is not None and not isinstance(change, list)
        ):
            raise bad_request("invalid patch format of setElementOrder list")
        _check_order(change or [], order, mkey)
        if change is None:
            if live is None:
                continue
            merged = live
        else:
            merged = _merge_list_field(live or [], change, child_type, strategy, mkey)
        in_order = [m for m in merged if _index(order, m, mkey) >= 0]
        server_only = [m for m in merged if _index(order, m, mkey) < 0]
        original[field] = _normalize_order(in_order, server_only, order, live or [], mkey)


def _check_order(change: list, order: list, mkey: str | None) -> None:
    """Items of the patch list must appear in `$setElementOrder` in the same relative order."""
    items = [c for c in change if not (isinstance(c, dict) and _DIRECTIVE in c)]
    at = 0
    for item in items:
        while at < len(order) and _index([order[at]], item, mkey) < 0:
            at += 1
        if at >= len(order):
            raise bad_request(
                f"The order in patch list:\n{_go(change)}\n doesn't match $setElementOrder list:\n"
                f"{_go(order)}\n"
            )
        at += 1


def _go(value: Any) -> str:
    """A value in error messages (JSON; the real server prints Go's %v)."""
    return json.dumps(value, separators=(",", ":"), default=str)
