"""Server-side apply and field ownership (`metadata.managedFields`).

`server_side_apply` is what a PATCH with `application/apply-patch+yaml` does
(`kubectl apply --server-side`): the applied configuration is merged into the live object,
its fields become owned by the field manager, fields that manager applied last time but has
now dropped are removed (unless someone else owns them too), and changing a field another
manager owns is a 409 conflict unless `force=true`, which moves the ownership.
`record_update` keeps the ownership books for every other write (create, update, patch).

Ownership is recorded exactly as Kubernetes serialises it: one `managedFields` entry per
(manager, operation[, apiVersion for Update]) with a `FieldsV1` set of paths:
`f:<field>`, `k:{<key fields>}` for an item of an associative list, `v:<json>` for a member of a
set-like list, and `.` for a node that is owned itself and also has owned children. This
follows sigs.k8s.io/structured-merge-diff and k8s.io/apiserver's fieldmanager, simplified:

- Built-in kinds are typed through the client's models (`machinery.patch`'s type graph).
  Lists are associative or sets where k8s.io/api declares `+listType=map` / `+listType=set`
  (`LIST_MAP_KEYS`, `SET_LISTS`); all other lists are atomic. `+structType=atomic` types and
  `+mapType=atomic` maps are owned whole. A missing `protocol` key field defaults to TCP.
- Custom resources (no model): `metadata` is typed; other maps are granular and lists atomic
  (no CRD schema `x-kubernetes-list-type` yet).
- Never owned: apiVersion, kind, status (it belongs to the status subresource), and the
  server-set metadata (name, namespace, uid, resourceVersion, generation, creationTimestamp,
  deletion fields, managedFields).
- Not modelled: conversion of owned sets between API versions, the cap on Update entries
  ("ancient-changes"), and migration from client-side apply's last-applied annotation. An
  Update entry owns leaves only (no `.` on maps it created).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pilothouse.machinery.errors import APIError, Cause, bad_request
from pilothouse.machinery.patch import element_type, field_type, is_model

# `+listType=map` lists of k8s.io/api v1 (+ autoscaling/v2) and their `+listMapKey`s, keyed by
# (client model class, JSON field).
LIST_MAP_KEYS: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("V1AllocatedDeviceStatus", "conditions"): ("type",),
    ("V1CSINodeSpec", "drivers"): ("name",),
    ("V1CSINodeStatus", "storageHealth"): ("name",),
    ("V1CertificateSigningRequestStatus", "conditions"): ("type",),
    ("V1ComponentStatus", "conditions"): ("type",),
    ("V1Container", "env"): ("name",),
    ("V1Container", "ports"): ("containerPort", "protocol"),
    ("V1Container", "volumeDevices"): ("devicePath",),
    ("V1Container", "volumeMounts"): ("mountPath",),
    ("V1ContainerStatus", "allocatedResourcesStatus"): ("name",),
    ("V1ContainerStatus", "volumeMounts"): ("mountPath",),
    ("V1DaemonSetStatus", "conditions"): ("type",),
    ("V1DeploymentStatus", "conditions"): ("type",),
    ("V1DeviceTaintRuleStatus", "conditions"): ("type",),
    ("V1EphemeralContainer", "env"): ("name",),
    ("V1EphemeralContainer", "ports"): ("containerPort", "protocol"),
    ("V1EphemeralContainer", "volumeDevices"): ("devicePath",),
    ("V1EphemeralContainer", "volumeMounts"): ("mountPath",),
    ("V1FlowSchemaStatus", "conditions"): ("type",),
    ("V1JobSchedulingConfiguration", "resourceClaims"): ("name",),
    ("V1MutatingAdmissionPolicySpec", "matchConditions"): ("name",),
    ("V1MutatingWebhook", "matchConditions"): ("name",),
    ("V1MutatingWebhookConfiguration", "webhooks"): ("name",),
    ("V1NamespaceStatus", "conditions"): ("type",),
    ("V1NodeAllocatableResourceClaimStatus", "mapping"): ("name",),
    ("V1NodeAllocatableResourceClaimStatus", "overhead"): ("name",),
    ("V1NodeStatus", "addresses"): ("type",),
    ("V1NodeStatus", "conditions"): ("type",),
    ("V1ObjectMeta", "ownerReferences"): ("uid",),
    ("V1PersistentVolumeClaimStatus", "conditions"): ("type",),
    ("V1PodCertificateRequestStatus", "conditions"): ("type",),
    ("V1PodDisruptionBudgetStatus", "conditions"): ("type",),
    ("V1PodSpec", "containers"): ("name",),
    ("V1PodSpec", "ephemeralContainers"): ("name",),
    ("V1PodSpec", "evictionResponders"): ("name",),
    ("V1PodSpec", "hostAliases"): ("ip",),
    ("V1PodSpec", "imagePullSecrets"): ("name",),
    ("V1PodSpec", "initContainers"): ("name",),
    ("V1PodSpec", "resourceClaims"): ("name",),
    ("V1PodSpec", "schedulingGates"): ("name",),
    ("V1PodSpec", "topologySpreadConstraints"): ("topologyKey", "whenUnsatisfiable"),
    ("V1PodSpec", "volumes"): ("name",),
    ("V1PodStatus", "conditions"): ("type",),
    ("V1PodStatus", "nodeAllocatableResourceClaimStatuses"): ("resourceClaimName",),
    ("V1PodStatus", "podIPs"): ("ip",),
    ("V1PodStatus", "resourceClaimStatuses"): ("name",),
    ("V1PodStatus", "volumeHealth"): ("name",),
    ("V1PodVolumeHealth", "healthConditions"): ("status", "reason"),
    ("V1PriorityLevelConfigurationStatus", "conditions"): ("type",),
    ("V1ReplicaSetStatus", "conditions"): ("type",),
    ("V1ReplicationControllerStatus", "conditions"): ("type",),
    ("V1ResourceClaimStatus", "devices"): ("driver", "device", "pool", "shareID"),
    ("V1ResourceClaimStatus", "reservedFor"): ("uid",),
    ("V1ResourceRequirements", "claims"): ("name",),
    ("V1ResourceStatus", "resources"): ("resourceID",),
    ("V1ServiceAccount", "secrets"): ("name",),
    ("V1ServiceCIDRStatus", "conditions"): ("type",),
    ("V1ServiceSpec", "ports"): ("port", "protocol"),
    ("V1ServiceStatus", "conditions"): ("type",),
    ("V1StatefulSetStatus", "conditions"): ("type",),
    ("V1StorageVersionMigrationStatus", "conditions"): ("type",),
    ("V1ValidatingAdmissionPolicySpec", "matchConditions"): ("name",),
    ("V1ValidatingAdmissionPolicySpec", "variables"): ("name",),
    ("V1ValidatingAdmissionPolicyStatus", "conditions"): ("type",),
    ("V1ValidatingWebhook", "matchConditions"): ("name",),
    ("V1ValidatingWebhookConfiguration", "webhooks"): ("name",),
    ("V1VolumeHealthStatus", "healthConditions"): ("status", "reason"),
    ("V2HorizontalPodAutoscalerStatus", "conditions"): ("type",),
}

SET_LISTS: frozenset[tuple[str, str]] = frozenset(
    {
        ("V1CSIDriverSpec", "volumeLifecycleModes"),
        ("V1ContainerRestartRuleOnExitCodes", "values"),
        ("V1DeviceRequestAllocationResult", "skipNodeOperations"),
        ("V1Endpoint", "addresses"),
        ("V1NodeAllocatableResourceClaimStatus", "containers"),
        ("V1NodePodPreemptionPolicy", "disableResizePreemption"),
        ("V1NodeSpec", "podCIDRs"),
        ("V1NonResourcePolicyRule", "nonResourceURLs"),
        ("V1NonResourcePolicyRule", "verbs"),
        ("V1ObjectMeta", "finalizers"),
        ("V1PodFailurePolicyOnExitCodesRequirement", "values"),
        ("V1ResourcePolicyRule", "apiGroups"),
        ("V1ResourcePolicyRule", "namespaces"),
        ("V1ResourcePolicyRule", "resources"),
        ("V1ResourcePolicyRule", "verbs"),
        ("V1ResourceSliceSpec", "skipNodeOperations"),
        ("V1UncountedTerminatedPods", "failed"),
        ("V1UncountedTerminatedPods", "succeeded"),
        ("V1ValidatingAdmissionPolicyBindingSpec", "validationActions"),
        ("V1VolumeMount", "bindMountOptions"),
    }
)

ATOMIC_MAPS: frozenset[tuple[str, str]] = frozenset(
    {
        ("V1PodSpec", "nodeSelector"),
        ("V1ReplicationControllerSpec", "selector"),
        ("V1Scheduling", "nodeSelector"),
        ("V1ServiceSpec", "selector"),
    }
)

ATOMIC_STRUCTS: frozenset[str] = frozenset(
    {
        "CoreV1EndpointPort",
        "DiscoveryV1EndpointPort",
        "RbacV1Subject",
        "V1ConfigMapKeySelector",
        "V1CrossVersionObjectReference",
        "V1EndpointAddress",
        "V1EvictionResponder",
        "V1FileKeySelector",
        "V1LabelSelector",
        "V1LocalObjectReference",
        "V1MatchResources",
        "V1NamedRuleWithOperations",
        "V1NodeSelector",
        "V1NodeSelectorTerm",
        "V1ObjectFieldSelector",
        "V1ObjectReference",
        "V1OwnerReference",
        "V1ParamKind",
        "V1ParamRef",
        "V1ResourceFieldSelector",
        "V1RoleRef",
        "V1ScopeSelector",
        "V1SecretKeySelector",
        "V1SecretReference",
        "V1ServiceBackendPort",
        "V1TopologySelectorTerm",
        "V1TypedLocalObjectReference",
        "V1Variable",
    }
)

BEFORE_FIRST_APPLY = "before-first-apply"

Path = tuple[str, ...]

# Defaults of list-map key fields, applied before keying items (as the OpenAPI schema does).
_KEY_DEFAULTS = {"protocol": "TCP"}
_CUSTOM_ROOT = "<custom resource>"
_IGNORED_TOP = frozenset({"f:apiVersion", "f:kind", "f:status"})
_IGNORED_META = frozenset(
    "f:" + name
    for name in (
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "selfLink",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
    )
)
_MISSING = object()


class _Item:
    """The value recorded for an associative-list item itself (its fields are compared apart)."""


_ITEM = _Item()


@dataclass
class _Manager:
    manager: str
    operation: str
    api_version: str
    time: str | None = None
    subresource: str = ""
    fields: set[Path] = field(default_factory=set)

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> _Manager:
        fields = entry.get("fieldsV1")
        return cls(
            manager=str(entry.get("manager", "")),
            operation=str(entry.get("operation", "Update")),
            api_version=str(entry.get("apiVersion", "")),
            time=entry.get("time"),
            subresource=str(entry.get("subresource", "")),
            fields=_decode(fields) if isinstance(fields, dict) else set(),
        )

    def matches(self, manager: str, operation: str, api_version: str) -> bool:
        # Appliers keep one entry across API versions; updaters get one per version.
        return (
            self.manager == manager
            and self.operation == operation
            and not self.subresource
            and (operation == "Apply" or self.api_version == api_version)
        )

    def describe(self) -> str:
        text = json.dumps(self.manager)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text

    def to_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
        }
        if self.time:
            entry["time"] = self.time
        entry["fieldsType"] = "FieldsV1"
        entry["fieldsV1"] = _encode(self.fields)
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


@dataclass(frozen=True)
class _ConflictCause(Cause):
    """A conflict cause: Kubernetes keeps the path in `field` only, not in the message."""

    def render(self) -> str:
        return self.message


def server_side_apply(
    live: dict | None,
    applied: dict,
    *,
    manager: str,
    force: bool,
    model: str | None,
    now: str,
) -> dict:
    """Apply `applied` for field manager `manager`; returns the new object (`live` None: create).

    `model` is the client model class of the kind (`"V1Deployment"`), None for custom
    resources; `now` is the RFC 3339 timestamp recorded for the manager. Raises a 409
    Conflict APIError when `applied` changes fields other managers own and `force` is false.
    """
    if not isinstance(applied, dict):
        raise bad_request("error decoding YAML: the applied configuration must be an object")
    metadata = applied.get("metadata")
    if isinstance(metadata, dict) and metadata.get("managedFields") is not None:
        raise bad_request("metadata.managedFields must be nil")
    root = model or _CUSTOM_ROOT
    config = _without_nulls(applied)
    base = copy.deepcopy(live) if live is not None else {}
    if isinstance(base.get("metadata"), dict):
        base["metadata"].pop("managedFields", None)
    api_version = str(config.get("apiVersion") or base.get("apiVersion", ""))

    managers = _managers(live)
    if live is not None and not managers:
        managers = [
            _Manager(
                BEFORE_FIRST_APPLY,
                "Update",
                str(base.get("apiVersion", "")),
                now,
                fields=set(_members(base, root)),
            )
        ]
    me = next((m for m in managers if m.matches(manager, "Apply", api_version)), None)
    if me is None:
        me = _Manager(manager, "Apply", api_version)
        managers.append(me)
    last_applied = me.fields
    me.fields = set(_members(config, root, strict=True))
    me.api_version = api_version

    merged = _merge(base, config, root, None)
    _prune(merged, last_applied - me.fields, managers, root)

    added, modified, removed = _diff(_members(base, root), _members(merged, root))
    changed = added | modified
    others = [m for m in managers if m is not me]
    conflicts = [(m, sorted(m.fields & changed)) for m in others if m.fields & changed]
    if conflicts and not force:
        raise _conflict_error(conflicts)
    for other in others:
        other.fields -= changed | removed
    if me.time is None or merged != base:
        me.time = now
    _store(merged, managers)
    return merged


def record_update(
    old: dict | None,
    new: dict,
    *,
    manager: str,
    operation: str = "Update",
    now: str,
    model: str | None = None,
) -> None:
    """Update `new`'s managedFields for a non-apply write of `old` into `new` by `manager`.

    The manager takes the fields it added or changed; other managers lose them, and everyone
    loses fields that were removed. A request whose managedFields is `[{}]` clears them.
    """
    metadata = new.get("metadata")
    if not isinstance(metadata, dict):
        return
    sent = metadata.get("managedFields")
    if sent == [{}]:
        del metadata["managedFields"]
        return
    if isinstance(sent, list) and sent and all(isinstance(e, dict) for e in sent):
        managers = [_Manager.from_entry(e) for e in sent]
    else:
        managers = _managers(old)
    root = model or _CUSTOM_ROOT
    added, modified, removed = _diff(
        _members(old, root) if old is not None else {}, _members(new, root)
    )
    changed = added | modified
    api_version = str(new.get("apiVersion", ""))
    me = next((m for m in managers if m.matches(manager, operation, api_version)), None)
    if me is None:
        me = _Manager(manager, operation, api_version)
        managers.append(me)
    for other in managers:
        if other is not me:
            other.fields -= changed | removed
    me.fields = (me.fields - removed) | changed
    if changed or removed:
        me.time = now
    _store(new, managers)


# --- the object as a set of owned paths --------------------------------------------------


def _child(type_name: str | None, key: str) -> tuple[str | None, tuple[str, str] | None]:
    """Type of `key` inside a `type_name` value, and the (model, field) that declares it."""
    if type_name == _CUSTOM_ROOT:
        return ("V1ObjectMeta" if key == "metadata" else None), None
    if is_model(type_name):
        return field_type(type_name, key), (type_name, key)
    return element_type(type_name), None


def _ignored(path: Path) -> bool:
    if len(path) == 1:
        return path[0] in _IGNORED_TOP
    return len(path) == 2 and path[0] == "f:metadata" and path[1] in _IGNORED_META


def _atomic_map(type_name: str | None, owner: tuple[str, str] | None) -> bool:
    return owner in ATOMIC_MAPS or type_name in ATOMIC_STRUCTS


def _item_key(item: Any, keys: tuple[str, ...]) -> str | None:
    """The `k:{...}` path element of an associative-list item; None if a key field is absent."""
    if not isinstance(item, dict):
        return None
    values = {}
    for name in sorted(keys):
        value = item.get(name, _KEY_DEFAULTS.get(name))
        if value is None:
            return None
        values[name] = value
    return "k:" + _compact(values)


def _members(obj: Any, root: str, *, strict: bool = False) -> dict[Path, Any]:
    """Every owned-able path of `obj` with its value: leaves, atomic values, list items."""
    out: dict[Path, Any] = {}
    _walk(obj, root, None, (), out, strict)
    return out


def _walk(
    value: Any,
    type_name: str | None,
    owner: tuple[str, str] | None,
    path: Path,
    out: dict[Path, Any],
    strict: bool,
) -> None:
    if isinstance(value, dict):
        if path and (not value or _atomic_map(type_name, owner)):
            out[path] = value
            return
        _walk_fields(value, type_name, path, out, strict)
    elif isinstance(value, list) and owner in LIST_MAP_KEYS:
        keys = LIST_MAP_KEYS[owner]
        item_type = element_type(type_name)
        elements = [_item_key(item, keys) for item in value]
        if None in elements or len(set(elements)) != len(elements):
            if strict:
                raise _bad_list(path, value, keys)
            out[path] = value
            return
        for item, element in zip(value, elements, strict=True):
            if item_type in ATOMIC_STRUCTS:
                out[path + (element,)] = item
            else:
                out[path + (element,)] = _ITEM
                _walk_fields(item, item_type, path + (element,), out, strict)
    elif isinstance(value, list) and owner in SET_LISTS:
        for item in value:
            out[path + ("v:" + _compact(item),)] = item
    elif path:
        out[path] = value


def _walk_fields(
    value: dict, type_name: str | None, path: Path, out: dict[Path, Any], strict: bool
) -> None:
    for key, child in value.items():
        child_path = path + ("f:" + key,)
        if child is None or _ignored(child_path):
            continue
        child_type, child_owner = _child(type_name, key)
        _walk(child, child_type, child_owner, child_path, out, strict)


def _bad_list(path: Path, value: list, keys: tuple[str, ...]) -> APIError:
    where = _path_string(path)
    for index, item in enumerate(value):
        missing = [
            k
            for k in keys
            if not isinstance(item, dict) or item.get(k, _KEY_DEFAULTS.get(k)) is None
        ]
        if missing:
            return bad_request(
                f"{where}: element {index}: associative list with keys has an element that omits "
                f'key field "{missing[0]}" (and doesn\'t have default value)'
            )
    return bad_request(f"{where}: duplicate entries for key in an associative list")


def _diff(old: dict[Path, Any], new: dict[Path, Any]) -> tuple[set[Path], set[Path], set[Path]]:
    """(added, modified, removed) paths between two member maps."""
    added = new.keys() - old.keys()
    removed = old.keys() - new.keys()
    modified = {p for p in old.keys() & new.keys() if not _same(old[p], new[p])}
    return set(added), modified, set(removed)


def _same(a: Any, b: Any) -> bool:
    if a is _ITEM or b is _ITEM:
        return a is b
    return _compact(a, sort_keys=True) == _compact(b, sort_keys=True)


def _compact(value: Any, *, sort_keys: bool = False) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys)


# --- merging the applied configuration and pruning what it dropped -----------------------


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _merge(live: Any, config: Any, type_name: str | None, owner: tuple[str, str] | None) -> Any:
    """`config` laid over `live`: maps merge, associative lists merge by key, sets union."""
    if isinstance(live, dict) and isinstance(config, dict) and not _atomic_map(type_name, owner):
        out = dict(live)
        for key, value in config.items():
            child_type, child_owner = _child(type_name, key)
            out[key] = (
                _merge(live[key], value, child_type, child_owner)
                if key in live
                else copy.deepcopy(value)
            )
        return out
    if isinstance(live, list) and isinstance(config, list) and owner in LIST_MAP_KEYS:
        keys = LIST_MAP_KEYS[owner]
        out = list(live)
        at = {_item_key(item, keys): i for i, item in enumerate(out)}
        if None not in at:
            item_type = element_type(type_name)
            for item in config:
                element = _item_key(item, keys)
                if element in at:
                    out[at[element]] = _merge(out[at[element]], item, item_type, None)
                else:
                    out.append(copy.deepcopy(item))
            return out
    if isinstance(live, list) and isinstance(config, list) and owner in SET_LISTS:
        return live + [copy.deepcopy(v) for v in config if v not in live]
    return copy.deepcopy(config)


def _prune(obj: dict, dropped: set[Path], managers: list[_Manager], root: str) -> None:
    """Remove the paths a manager stopped applying, unless any manager still owns them or
    something beneath them."""
    kept = {p[:i] for m in managers for p in m.fields for i in range(1, len(p) + 1)}
    # Outermost first: pruning an item of an associative list takes its fields with it.
    for path in sorted(dropped - kept, key=len):
        _remove(obj, path, root)


def _remove(obj: dict, path: Path, root: str) -> None:
    """Delete `path` from `obj`; maps and lists it leaves empty go too (they were omitempty)."""
    chain: list[tuple[Any, str | None, tuple[str, str] | None]] = []
    node: Any = obj
    type_name: str | None = root
    owner: tuple[str, str] | None = None
    for element in path[:-1]:
        chain.append((node, type_name, owner))
        node, type_name, owner = _step(node, element, type_name, owner)
        if node is _MISSING:
            return
    chain.append((node, type_name, owner))
    for depth in range(len(path) - 1, -1, -1):
        container, container_type, container_owner = chain[depth]
        _delete(container, path[depth], container_owner)
        if container or depth == 0 or element_type(container_type) is None:
            return


def _step(
    node: Any, element: str, type_name: str | None, owner: tuple[str, str] | None
) -> tuple[Any, str | None, tuple[str, str] | None]:
    if element.startswith("f:") and isinstance(node, dict):
        child_type, child_owner = _child(type_name, element[2:])
        return node.get(element[2:], _MISSING), child_type, child_owner
    if element.startswith("k:") and isinstance(node, list) and owner in LIST_MAP_KEYS:
        for item in node:
            if _item_key(item, LIST_MAP_KEYS[owner]) == element:
                return item, element_type(type_name), None
    return _MISSING, None, None


def _delete(container: Any, element: str, owner: tuple[str, str] | None) -> None:
    if element.startswith("f:") and isinstance(container, dict):
        container.pop(element[2:], None)
    elif isinstance(container, list):
        keys = LIST_MAP_KEYS.get(owner) if owner else None
        container[:] = [
            item
            for item in container
            if (_item_key(item, keys) if keys else "v:" + _compact(item)) != element
        ]


# --- managedFields on the wire ------------------------------------------------------------


def _managers(obj: dict | None) -> list[_Manager]:
    entries = (obj or {}).get("metadata", {}).get("managedFields") or []
    return [_Manager.from_entry(e) for e in entries if isinstance(e, dict)]


def _store(obj: dict, managers: list[_Manager]) -> None:
    entries = [m.to_entry() for m in managers if m.fields]
    entries.sort(
        key=lambda e: (
            e["operation"],
            e.get("time", ""),
            e["manager"],
            e["apiVersion"],
            e.get("subresource", ""),
        )
    )
    metadata = obj.setdefault("metadata", {})
    if entries:
        metadata["managedFields"] = entries
    else:
        metadata.pop("managedFields", None)


_ORDER = {"f": 0, "k": 1, "v": 2, "i": 3}


def _encode(paths: set[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        for element in path:
            node = node.setdefault(element, {})
        node["."] = {}
    return _finish(tree)


def _finish(node: dict[str, Any]) -> dict[str, Any]:
    children = sorted((k for k in node if k != "."), key=lambda k: (_ORDER.get(k[0], 9), k))
    if not children:
        return {}
    out: dict[str, Any] = {".": {}} if "." in node else {}
    for key in children:
        out[key] = _finish(node[key])
    return out


def _decode(fields: Mapping[str, Any], prefix: Path = ()) -> set[Path]:
    paths: set[Path] = set()
    for key, child in fields.items():
        if key == ".":
            paths.add(prefix)
        elif isinstance(child, dict) and child:
            paths |= _decode(child, prefix + (key,))
        else:
            paths.add(prefix + (key,))
    return paths


def _path_string(path: Path) -> str:
    """A path as structured-merge-diff prints it: `.spec.containers[name="nginx"].image`."""
    out = []
    for element in path:
        kind, text = element[0], element[2:]
        if kind == "f":
            out.append("." + text)
        elif kind == "k":
            key = json.loads(text)
            out.append("[" + ",".join(f"{k}={_compact(v)}" for k, v in key.items()) + "]")
        elif kind == "v":
            out.append(f"[={_compact(json.loads(text))}]")
        else:
            out.append(f"[{text}]")
    return "".join(out)


def _conflict_error(conflicts: list[tuple[_Manager, list[Path]]]) -> APIError:
    causes: list[Cause] = [
        _ConflictCause(_path_string(p), f"conflict with {m.describe()}", "FieldManagerConflict")
        for m, paths in conflicts
        for p in paths
    ]
    if len(causes) == 1:
        message = f"Apply failed with 1 conflict: {causes[0].message}: {causes[0].field}"
    else:
        lines = []
        for m, paths in sorted(conflicts, key=lambda c: c[0].describe()):
            lines.append(f"conflicts with {m.describe()}:")
            lines.extend(f"- {_path_string(p)}" for p in paths)
        message = f"Apply failed with {len(causes)} conflicts: " + "\n".join(lines)
    return APIError(409, "Conflict", message, causes=causes)
