"""OpenAPI for the served API: structural schemas for built-in kinds and the published documents.

Two consumers need to know the shape of every kind:

- The server itself, to prune and strictly validate request bodies (`fieldValidation=Strict`
  rejects unknown fields). `builtin_schema` gives it a fully inlined structural schema per kind.
- Clients. kubectl reads `/openapi/v3` (one document per group version) to decide whether the
  server supports `fieldValidation` (a PATCH operation tagged with the kind's
  `x-kubernetes-group-version-kind` and listing that parameter), for `kubectl explain`
  (`components.schemas` tagged with the kind), and for the strategic-merge-patch metadata of
  client-side apply (`x-kubernetes-patch-strategy` / `-merge-key`). `/openapi/v2` is its fallback.
  `OpenAPIDocuments` builds those documents from the served resources.

Both are generated from the official Python client's models, as `machinery.k8s_models` ships
them (the client itself is not needed at run time): each attribute's type ('List[V1Container]',
'Dict[str, str]', 'V1PodSpec', 'object', 'datetime', ...), JSON name, description, whether it is
required, and whether an 'object' is an int-or-string union or free-form JSON. The models carry no
trace of `resource.Quantity` (they type it 'str'), so `QUANTITY_FIELDS` lists those.

Conventions of the structural schemas (`builtin_schema`):
- IntOrString: `{"x-kubernetes-int-or-string": true}` -- an integer or a string.
- Quantity: `{"x-kubernetes-int-or-string": true, "format": "quantity"}` -- a string or any JSON
  number (clients write `cpu: 0.5`); a validator must accept floats here.
- Free-form JSON (RawExtension, FieldsV1, JSON): `x-kubernetes-preserve-unknown-fields: true`,
  with `type: object` when the value is always an object. Recursion (JSONSchemaProps) is cut the
  same way. Timestamps are `format: date-time`, base64 fields `format: byte`.
Schemas are cached and shared: treat every returned dict as read-only.
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from pilothouse import KUBERNETES_VERSION
from pilothouse.apiserver.openapi_protobuf import encode_document
from pilothouse.apiserver.registry.resource import Resource
from pilothouse.machinery import k8s_models
from pilothouse.machinery.patch import PATCH_META

# --- names and tables ---------------------------------------------------------------------

META = "io.k8s.apimachinery.pkg.apis.meta.v1"
OBJECT_META = f"{META}.ObjectMeta"
LIST_META = f"{META}.ListMeta"
STATUS = f"{META}.Status"
DELETE_OPTIONS = f"{META}.DeleteOptions"
PATCH = f"{META}.Patch"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
SCALE = "io.k8s.api.autoscaling.v1.Scale"

#: Python client models of apimachinery's meta/v1 package, with what they reference.
_META_ROOTS = (
    "V1APIGroupList", "V1APIResourceList", "V1APIVersions", "V1Condition", "V1DeleteOptions",
    "V1FieldSelectorRequirement", "V1LabelSelector", "V1ListMeta", "V1ObjectMeta", "V1Status",
    "V1WatchEvent",
)

#: The core/v1 kinds: every model reachable from them (and not meta) is io.k8s.api.core.v1.
_CORE_KINDS = (
    "V1Binding", "V1ComponentStatus", "V1ConfigMap", "V1Endpoints", "CoreV1Event", "V1LimitRange",
    "V1Namespace", "V1Node", "V1PersistentVolume", "V1PersistentVolumeClaim", "V1Pod",
    "V1PodTemplate", "V1ReplicationController", "V1ResourceQuota", "V1Secret", "V1Service",
    "V1ServiceAccount",
)

#: Go packages whose definition prefix is not io.k8s.api.<group>.
_PACKAGE_PREFIXES = {
    "apiextensions.k8s.io": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions",
    "apiregistration.k8s.io": "io.k8s.kube-aggregator.pkg.apis.apiregistration",
    "internal.apiserver.k8s.io": "io.k8s.api.apiserverinternal",
}

#: (model, JSON field) typed `resource.Quantity` (alone or as map values), which the Python
#: client types 'str'. Clients send these as strings or numbers.
QUANTITY_FIELDS = frozenset({
    ("V1ResourceRequirements", "limits"), ("V1ResourceRequirements", "requests"),
    ("V1VolumeResourceRequirements", "limits"), ("V1VolumeResourceRequirements", "requests"),
    ("V1NodeStatus", "allocatable"), ("V1NodeStatus", "capacity"),
    ("V1PersistentVolumeSpec", "capacity"),
    ("V1PersistentVolumeClaimStatus", "allocatedResources"),
    ("V1PersistentVolumeClaimStatus", "capacity"),
    ("V1ResourceQuotaSpec", "hard"), ("V1ResourceQuotaStatus", "hard"),
    ("V1ResourceQuotaStatus", "used"),
    ("V1LimitRangeItem", "default"), ("V1LimitRangeItem", "defaultRequest"),
    ("V1LimitRangeItem", "max"), ("V1LimitRangeItem", "maxLimitRequestRatio"),
    ("V1LimitRangeItem", "min"),
    ("V1EmptyDirVolumeSource", "sizeLimit"), ("V1ResourceFieldSelector", "divisor"),
    ("V1PodSpec", "overhead"), ("V1PodStatus", "allocatedResources"),
    ("V1ContainerStatus", "allocatedResources"), ("V1Overhead", "podFixed"),
    ("V2MetricTarget", "averageValue"), ("V2MetricTarget", "value"),
    ("V2MetricValueStatus", "averageValue"), ("V2MetricValueStatus", "value"),
    ("V1CSIStorageCapacity", "capacity"), ("V1CSIStorageCapacity", "maximumVolumeSize"),
    ("V1DeviceCapacity", "value"), ("V1CapacityRequirements", "requests"),
})

_CLASS_NAME = re.compile(r"^([A-Z][a-z]+)?(V\d+(?:alpha\d+|beta\d+)?)([A-Z]\w*)$")
_PRIMITIVES: Mapping[str, Mapping[str, str]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "bool": {"type": "boolean"},
    "float": {"type": "number", "format": "double"},
    "datetime": {"type": "string", "format": "date-time"},
    "bytes": {"type": "string", "format": "byte"},
}
_FREE = {"x-kubernetes-preserve-unknown-fields": True}
_FREE_OBJECT = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


# --- the Python client's models ----------------------------------------------------------


def _module_prefix(group: str) -> str:
    """How the Python client names a group's API module: "" -> core, rbac.authorization.k8s.io
    -> rbac_authorization."""
    return group.removesuffix(".k8s.io").replace(".", "_") if group else "core"


def _builtin_group_version(group: str, version: str) -> bool:
    return f"{_module_prefix(group)}_{version}" in k8s_models.group_versions()


@functools.cache
def model_for(group: str, version: str, kind: str) -> str | None:
    """The Python client model class name of a built-in kind, or None if the client has none."""
    if not _builtin_group_version(group, version):
        return None
    versioned = version[0].upper() + version[1:]
    qualified = _module_prefix(group).split("_")[0].capitalize() + versioned + kind
    for name in (qualified, versioned + kind):
        model = k8s_models.model(name)
        if model is not None and model.has_kind:
            return name
    return None


# A field's type, independent of how a document spells references:
# ("model", name) | ("array", T) | ("map", T) | ("scalar", schema) | ("int-or-string",)
# | ("quantity",) | ("free", schema)
_Type = tuple


def _parse_type(spec: str, quantity: bool, admits: str | None) -> _Type:
    """A client type string as a `_Type`; `admits` is what an 'object' attribute admits
    (elements of lists and maps of 'object' are free-form)."""
    if spec.startswith("List[") and spec.endswith("]"):
        return ("array", _parse_type(spec[5:-1], quantity, None))
    if spec.startswith("Dict[str, ") and spec.endswith("]"):
        return ("map", _parse_type(spec[10:-1], quantity, None))
    if spec == "str" and quantity:
        return ("quantity",)
    if spec in _PRIMITIVES:
        return ("scalar", _PRIMITIVES[spec])
    if spec == "object":
        if admits == k8s_models.INT_OR_STRING:
            return ("int-or-string",)
        return ("free", _FREE_OBJECT if admits == k8s_models.OBJECT else _FREE)
    if k8s_models.model(spec) is not None:
        return ("model", spec)
    return ("free", _FREE)


@functools.cache
def _fields(name: str) -> tuple[tuple[str, _Type, str | None, bool], ...]:
    """(JSON name, type, description, required) of each attribute of a model."""
    model = k8s_models.model(name)
    assert model is not None, name
    return tuple(
        (field.name,
         _parse_type(field.type, (name, field.name) in QUANTITY_FIELDS, field.admits),
         field.description, field.required)
        for field in model.fields)


def _class_description(name: str) -> str:
    model = k8s_models.model(name)
    assert model is not None, name
    return model.description


def _references(kind: _Type) -> Iterable[str]:
    if kind[0] == "model":
        yield kind[1]
    elif kind[0] in ("array", "map"):
        yield from _references(kind[1])


# --- structural schemas -------------------------------------------------------------------


def _inline_type(kind: _Type, stack: tuple[str, ...]) -> dict[str, Any]:
    tag = kind[0]
    if tag == "model":
        return _FREE_OBJECT if kind[1] in stack else _inline(kind[1], stack)
    if tag == "array":
        return {"type": "array", "items": _inline_type(kind[1], stack)}
    if tag == "map":
        return {"type": "object", "additionalProperties": _inline_type(kind[1], stack)}
    if tag == "int-or-string":
        return {"x-kubernetes-int-or-string": True}
    if tag == "quantity":
        return {"x-kubernetes-int-or-string": True, "format": "quantity"}
    return kind[1]


_inline_cache: dict[str, dict[str, Any]] = {}


def _inline(name: str, stack: tuple[str, ...] = ()) -> dict[str, Any]:
    """A model's schema with every reference inlined; a model met again below itself becomes
    a preserve-unknown-fields object."""
    if name in _inline_cache:
        return _inline_cache[name]
    inner = (*stack, name)
    schema = {
        "type": "object",
        "properties": {field: _inline_type(kind, inner) for field, kind, _, _ in _fields(name)},
    }
    return _inline_cache.setdefault(name, schema)


@functools.cache
def builtin_schema(group: str, version: str, kind: str) -> dict[str, Any] | None:
    """The structural schema (fully inlined, read-only) of a built-in kind, or None."""
    name = model_for(group, version, kind)
    return _inline(name) if name else None


def warm() -> None:
    """Load the models' data and build every kind's structural schema (for a background
    thread at server start; the first request then pays nothing)."""
    for model in k8s_models.models():
        if model.has_kind:
            _inline(model.name)


# --- components (definitions) -------------------------------------------------------------


def _closure(roots: Iterable[str], stop: frozenset[str] = frozenset()) -> frozenset[str]:
    """The models reachable from `roots` without passing through `stop`."""
    seen: set[str] = set()
    todo = [name for name in roots if k8s_models.model(name) is not None]
    while todo:
        name = todo.pop()
        if name in seen or name in stop:
            continue
        seen.add(name)
        todo.extend(ref for _, kind, _, _ in _fields(name) for ref in _references(kind))
    return frozenset(seen)


@functools.cache
def _meta_models() -> frozenset[str]:
    return _closure(_META_ROOTS)


@functools.cache
def _core_models() -> frozenset[str]:
    return _closure(_CORE_KINDS, _meta_models())


def _package(group: str, version: str) -> str:
    if group in _PACKAGE_PREFIXES:
        return f"{_PACKAGE_PREFIXES[group]}.{version}"
    return f"io.k8s.api.{group.split('.')[0] if group else 'core'}.{version}"


@functools.cache
def _definition_name(model: str, group: str) -> str:
    """Kubernetes' definition name of a model met while documenting `group`:
    V1Pod -> io.k8s.api.core.v1.Pod, V1ObjectMeta -> io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta,
    V1Deployment (group apps) -> io.k8s.api.apps.v1.Deployment."""
    match = _CLASS_NAME.match(model)
    if match is None:
        return model
    qualifier, version, short = match.groups()
    version = version.lower()
    if model in _meta_models():
        return f"{META}.{short}"
    if qualifier:  # CoreV1Event, EventsV1Event, ApiextensionsV1ServiceReference, ...
        qualified_group = "" if qualifier == "Core" else f"{qualifier.lower()}.k8s.io"
        return f"{_package(qualified_group, version)}.{short}"
    if model in _core_models():
        return f"io.k8s.api.core.{version}.{short}"
    return f"{_package(group, version)}.{short}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _component_type(kind: _Type, group: str, deps: set[str]) -> dict[str, Any]:
    """A v3 schema for one field type; references are collected in `deps` (model names, or
    the definition names of Quantity / IntOrString)."""
    tag = kind[0]
    if tag == "model":
        deps.add(kind[1])
        return _ref(_definition_name(kind[1], group))
    if tag in ("int-or-string", "quantity"):
        target = INT_OR_STRING if tag == "int-or-string" else QUANTITY
        deps.add(target)
        return _ref(target)
    if tag == "array":
        return {"type": "array", "items": _component_type(kind[1], group, deps)}
    if tag == "map":
        return {"type": "object", "additionalProperties": _component_type(kind[1], group, deps)}
    return dict(kind[1])


def _property(kind: _Type, group: str, deps: set[str], description: str | None) -> dict[str, Any]:
    """A property's schema with its description.

    A property that refers to another definition is `allOf: [$ref]` beside its own
    description, as kube-apiserver writes it. The Python client drops the descriptions of
    model-typed fields; those become a `$ref` beside the referenced type's description, which
    `kubectl explain` lists for the field without printing it twice for the field itself."""
    schema = _component_type(kind, group, deps)
    if "$ref" not in schema:
        return {**schema, "description": description} if description else schema
    if description:
        return {"allOf": [schema], "description": description}
    if kind[0] == "model":
        return {**schema, "description": _class_description(kind[1])}
    return schema


@functools.cache
def _component(model: str, group: str) -> tuple[dict[str, Any], frozenset[str]]:
    """A model's v3 component schema (references by name) and what it references."""
    deps: set[str] = set()
    properties: dict[str, Any] = {}
    required = []
    for field, kind, description, is_required in _fields(model):
        schema = _property(kind, group, deps, description)
        strategy, merge_key = PATCH_META.get((model, field), (None, None))
        if strategy:
            schema["x-kubernetes-patch-strategy"] = strategy
        if merge_key:
            schema["x-kubernetes-patch-merge-key"] = merge_key
        properties[field] = schema
        if is_required:
            required.append(field)
    component: dict[str, Any] = {"description": _class_description(model), "type": "object",
                                 "properties": properties}
    if required:
        component["required"] = required
    return component, frozenset(deps)


_FIXED_COMPONENTS: Mapping[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (OpenAPI v3 schema, Swagger 2.0 schema)
    QUANTITY: (
        {"description": "A fixed-point number with an optional SI or binary suffix, such as "
                        "500m, 1.5, 2Gi; written as a string or a number.",
         "oneOf": [{"type": "string"}, {"type": "number"}]},
        {"description": "A fixed-point number with an optional SI or binary suffix, such as "
                        "500m, 1.5, 2Gi; written as a string or a number.",
         "type": "string"},
    ),
    INT_OR_STRING: (
        {"description": "Either an integer or a string, such as a port number or name, or a "
                        "count or percentage.",
         "format": "int-or-string", "oneOf": [{"type": "integer"}, {"type": "string"}]},
        {"description": "Either an integer or a string, such as a port number or name, or a "
                        "count or percentage.",
         "format": "int-or-string", "type": "string"},
    ),
    PATCH: (
        {"description": "The body of a PATCH request; its format is given by the Content-Type.",
         "type": "object"},
        {"description": "The body of a PATCH request; its format is given by the Content-Type.",
         "type": "object"},
    ),
}


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


def _add_model(schemas: dict[str, Any], model: str, group: str,
               gvk: dict[str, str] | None = None) -> str:
    """Add a model and everything it references to `schemas`; return its definition name."""
    name = _definition_name(model, group)
    todo = [(model, name, gvk)]
    while todo:
        current, current_name, current_gvk = todo.pop()
        if current_name in schemas and current_gvk is None:
            continue
        component, deps = _component(current, group)
        if current_gvk is not None:
            component = {**component, "x-kubernetes-group-version-kind": [current_gvk]}
        schemas[current_name] = component
        for dep in deps:
            if dep in _FIXED_COMPONENTS:
                schemas.setdefault(dep, _FIXED_COMPONENTS[dep][0])
            elif _definition_name(dep, group) not in schemas:
                todo.append((dep, _definition_name(dep, group), None))
    return name


# --- custom resources ---------------------------------------------------------------------


def _mapping_default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _kind_definition(r: Resource) -> str:
    """kube-apiserver's definition name for a custom kind: the group reversed, the version,
    the kind (org.kubeflow.v1.PyTorchJob); a built-in kind unknown to the client is named
    as its package would be."""
    if not r.custom:
        return f"{_package(r.group, r.version)}.{r.kind}"
    return ".".join([*reversed(r.group.split(".")), r.version, r.kind])


_TYPE_META_PROPERTIES = {
    "apiVersion": {"type": "string", "description": "The versioned schema of this "
                   "representation of an object, as group/version."},
    "kind": {"type": "string", "description": "The REST resource this object represents, in "
             "CamelCase."},
}


def _add_custom(schemas: dict[str, Any], r: Resource) -> tuple[str, str]:
    """Components for a custom (or model-less) kind and its list; return both names."""
    schema = orjson.loads(orjson.dumps(r.schema or _FREE_OBJECT, default=_mapping_default))
    schema["type"] = "object"
    schema["properties"] = {
        **dict(schema.get("properties") or {}),
        **_TYPE_META_PROPERTIES,
        "metadata": {"allOf": [_ref(OBJECT_META)], "description": "Standard object's metadata."},
    }
    schema["x-kubernetes-group-version-kind"] = [_gvk(r.group, r.version, r.kind)]
    name = _kind_definition(r)
    schemas[name] = schema
    schemas[f"{name}List"] = {
        "description": f"A list of {r.kind}.",
        "type": "object",
        "required": ["items"],
        "properties": {
            **_TYPE_META_PROPERTIES,
            "items": {"type": "array", "items": _ref(name),
                      "description": f"List of {r.plural}."},
            "metadata": {"allOf": [_ref(LIST_META)], "description": "Standard list metadata."},
        },
        "x-kubernetes-group-version-kind": [_gvk(r.group, r.version, f"{r.kind}List")],
    }
    _add_model(schemas, "V1ObjectMeta", r.group)
    _add_model(schemas, "V1ListMeta", r.group)
    return name, f"{name}List"


# --- paths --------------------------------------------------------------------------------

#: Query and path parameters: name -> (location, type, description).
_PARAMETERS: Mapping[str, tuple[str, str, str]] = {
    "pretty": ("query", "string", "If 'true', the output is pretty-printed."),
    "dryRun": ("query", "string",
               "When present, the request is validated and processed but nothing is "
               "persisted. The only valid value is All."),
    "fieldManager": ("query", "string",
                     "The name of the actor making the change, used to track field ownership."),
    "fieldValidation": ("query", "string",
                        "What to do with unknown or duplicate fields in the body: Ignore, "
                        "Warn, or Strict (reject the request)."),
    "force": ("query", "boolean",
              "Apply requests only: take ownership of fields other managers own."),
    "gracePeriodSeconds": ("query", "integer",
                           "Seconds to wait before the object is deleted; 0 deletes at once."),
    "orphanDependents": ("query", "boolean",
                         "Deprecated: use propagationPolicy. Whether dependents are orphaned."),
    "propagationPolicy": ("query", "string",
                          "How dependents are garbage collected: Orphan, Background or "
                          "Foreground."),
    "allowWatchBookmarks": ("query", "boolean", "Watch only: ask for BOOKMARK events."),
    "continue": ("query", "string", "The continue token of a previous paginated list."),
    "fieldSelector": ("query", "string", "Restrict the objects returned by their fields."),
    "labelSelector": ("query", "string", "Restrict the objects returned by their labels."),
    "limit": ("query", "integer", "The largest number of objects to return in one page."),
    "resourceVersion": ("query", "string",
                        "The resource version the result must be at least as new as."),
    "resourceVersionMatch": ("query", "string",
                             "How resourceVersion applies: Exact or NotOlderThan."),
    "sendInitialEvents": ("query", "boolean",
                          "Watch only: start with synthetic ADDED events for current objects."),
    "timeoutSeconds": ("query", "integer", "Close the list or watch call after this long."),
    "watch": ("query", "boolean", "Watch for changes and stream them as events."),
    "namespace": ("path", "string", "The namespace of the object."),
}
_LIST = ("allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit",
         "resourceVersion", "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds",
         "watch")
_WRITE = ("dryRun", "fieldManager", "fieldValidation")
_DELETE = ("dryRun", "gracePeriodSeconds", "orphanDependents", "propagationPolicy")
_COLLECTION_DELETE = (*_DELETE, *(p for p in _LIST if p not in ("allowWatchBookmarks", "watch")))
_JSON_TYPES = ("application/json", "application/yaml")
_RESPONSES = {"200": "OK", "201": "Created", "202": "Accepted"}
_PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
                "application/strategic-merge-patch+json", "application/apply-patch+yaml")


def _operation_group(group: str) -> str:
    """The group as operation ids spell it: "" -> Core, rbac.authorization.k8s.io ->
    RbacAuthorization, kubeflow.org -> KubeflowOrg."""
    if not group:
        return "Core"
    return "".join(part.capitalize() for part in group.removesuffix(".k8s.io").split("."))


def _resource_paths(r: Resource, kind_name: str, list_name: str) -> dict[str, Any]:
    """Paths of one resource: path -> (path parameter names, kind, {method: operation})."""
    prefix = f"/apis/{r.group}/{r.version}" if r.group else f"/api/{r.version}"
    scope = "/namespaces/{namespace}" if r.namespaced else ""
    group_version = f"{_operation_group(r.group)}{r.version.capitalize()}"
    namespaced = "Namespaced" if r.namespaced else ""
    op_kind = f"{group_version}{namespaced}{r.kind}"
    tag = f"{_module_prefix(r.group)}_{r.version}"
    gvk = _gvk(r.group, r.version, r.kind)
    scope_parameters = ("namespace",) if r.namespaced else ()
    verbs = set(r.verbs)
    paths: dict[str, Any] = {}

    def operation(action: str, operation_id: str, description: str, *,
                  parameters: tuple[str, ...] = (), body: str | None = None,
                  consumes: tuple[str, ...] = ("*/*",), responses: Mapping[str, str],
                  target: dict[str, str] = gvk) -> dict[str, Any]:
        """An operation in a neutral form, rendered later as OpenAPI v3 or Swagger 2.0."""
        return {"action": action, "id": operation_id, "description": description,
                "tag": tag, "gvk": target, "parameters": parameters, "body": body,
                "consumes": consumes, "responses": responses}

    collection: dict[str, Any] = {}
    if "list" in verbs:
        collection["get"] = operation(
            "list", f"list{op_kind}", f"list or watch objects of kind {r.kind}",
            parameters=_LIST, responses={"200": list_name})
    if "create" in verbs:
        collection["post"] = operation(
            "post", f"create{op_kind}", f"create a {r.kind}", parameters=_WRITE,
            body=kind_name, responses={"200": kind_name, "201": kind_name, "202": kind_name})
    if "deletecollection" in verbs:
        collection["delete"] = operation(
            "deletecollection", f"delete{group_version}Collection{namespaced}{r.kind}",
            f"delete a collection of {r.kind}", parameters=_COLLECTION_DELETE,
            body=DELETE_OPTIONS, responses={"200": STATUS})
    if collection:
        paths[f"{prefix}{scope}/{r.plural}"] = (scope_parameters, r.kind, collection)
    if "list" in verbs and r.namespaced:
        paths[f"{prefix}/{r.plural}"] = ((), r.kind, {"get": operation(
            "list", f"list{group_version}{r.kind}ForAllNamespaces",
            f"list or watch objects of kind {r.kind}", parameters=_LIST,
            responses={"200": list_name})})

    item_parameters = ("name", *scope_parameters)
    item: dict[str, Any] = {}
    if "get" in verbs:
        item["get"] = operation("get", f"read{op_kind}", f"read the specified {r.kind}",
                                responses={"200": kind_name})
    if "update" in verbs:
        item["put"] = operation("put", f"replace{op_kind}", f"replace the specified {r.kind}",
                                parameters=_WRITE, body=kind_name,
                                responses={"200": kind_name, "201": kind_name})
    if "patch" in verbs:
        item["patch"] = operation(
            "patch", f"patch{op_kind}", f"partially update the specified {r.kind}",
            parameters=(*_WRITE, "force"), body=PATCH, consumes=_patch_types(r),
            responses={"200": kind_name, "201": kind_name})
    if "delete" in verbs:
        item["delete"] = operation("delete", f"delete{op_kind}", f"delete a {r.kind}",
                                   parameters=_DELETE, body=DELETE_OPTIONS,
                                   responses={"200": kind_name, "202": kind_name})
    if item:
        paths[f"{prefix}{scope}/{r.plural}/{{name}}"] = (item_parameters, r.kind, item)

    for sub, sub_kind, sub_gvk in (
        ("status", kind_name, gvk),
        ("scale", SCALE, _gvk("autoscaling", "v1", "Scale")),
    ):
        if sub not in r.subresources:
            continue
        suffix = sub.capitalize()
        paths[f"{prefix}{scope}/{r.plural}/{{name}}/{sub}"] = (item_parameters, r.kind, {
            "get": operation("get", f"read{op_kind}{suffix}",
                             f"read {sub} of the specified {r.kind}", target=sub_gvk,
                             responses={"200": sub_kind}),
            "put": operation("put", f"replace{op_kind}{suffix}",
                             f"replace {sub} of the specified {r.kind}", target=sub_gvk,
                             parameters=_WRITE, body=sub_kind,
                             responses={"200": sub_kind, "201": sub_kind}),
            "patch": operation("patch", f"patch{op_kind}{suffix}",
                               f"partially update {sub} of the specified {r.kind}",
                               target=sub_gvk, parameters=(*_WRITE, "force"), body=PATCH,
                               consumes=_patch_types(r),
                               responses={"200": sub_kind, "201": sub_kind}),
        })
    return paths


def _patch_types(r: Resource) -> tuple[str, ...]:
    """Strategic merge patch is for built-in kinds only, as kube-apiserver serves it."""
    if r.custom:
        return tuple(t for t in _PATCH_TYPES if "strategic" not in t)
    return _PATCH_TYPES


def _parameter_v3(name: str, kind: str | None = None) -> dict[str, Any]:
    if name == "name":
        return {"name": "name", "in": "path", "required": True,
                "description": f"The name of the {kind}.", "schema": {"type": "string"}}
    location, type_, description = _PARAMETERS[name]
    parameter: dict[str, Any] = {"name": name, "in": location, "description": description,
                                 "schema": {"type": type_}}
    if location == "path":
        parameter["required"] = True
    return parameter


def _parameter_v2(name: str, kind: str | None = None) -> dict[str, Any]:
    parameter = _parameter_v3(name, kind)
    parameter.update(parameter.pop("schema"))
    return parameter


def _render_v3(paths: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for path, (path_parameters, kind, operations) in paths.items():
        item: dict[str, Any] = {}
        for method, op in operations.items():
            rendered: dict[str, Any] = {
                "description": op["description"],
                "operationId": op["id"],
                "tags": [op["tag"]],
                "responses": {
                    **{code: {"description": _RESPONSES[code],
                              "content": {t: {"schema": _ref(schema)} for t in _JSON_TYPES}}
                       for code, schema in op["responses"].items()},
                    "401": {"description": "Unauthorized"},
                },
                "x-kubernetes-action": op["action"],
                "x-kubernetes-group-version-kind": op["gvk"],
            }
            if op["parameters"]:
                rendered["parameters"] = [_parameter_v3(p) for p in op["parameters"]]
            if op["body"]:
                rendered["requestBody"] = {
                    "content": {t: {"schema": _ref(op["body"])} for t in op["consumes"]},
                    "required": op["action"] not in ("delete", "deletecollection"),
                }
            item[method] = rendered
        item["parameters"] = [_parameter_v3(p, kind) for p in (*path_parameters, "pretty")]
        out[path] = item
    return out


def _render_v2(paths: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for path, (path_parameters, kind, operations) in paths.items():
        item: dict[str, Any] = {}
        for method, op in operations.items():
            parameters = [_parameter_v2(p) for p in op["parameters"]]
            if op["body"]:
                parameters.insert(0, {
                    "name": "body", "in": "body",
                    "required": op["action"] not in ("delete", "deletecollection"),
                    "schema": {"$ref": f"#/definitions/{op['body']}"},
                })
            rendered: dict[str, Any] = {
                "description": op["description"],
                "operationId": op["id"],
                "tags": [op["tag"]],
                "consumes": list(op["consumes"]),
                "produces": list(_JSON_TYPES),
                "schemes": ["https"],
                "responses": {
                    **{code: {"description": _RESPONSES[code],
                              "schema": {"$ref": f"#/definitions/{schema}"}}
                       for code, schema in op["responses"].items()},
                    "401": {"description": "Unauthorized"},
                },
                "x-kubernetes-action": op["action"],
                "x-kubernetes-group-version-kind": op["gvk"],
            }
            if parameters:
                rendered["parameters"] = parameters
            item[method] = rendered
        item["parameters"] = [_parameter_v2(p, kind) for p in (*path_parameters, "pretty")]
        out[path] = item
    return out


# Swagger 2.0 schema objects allow these keys (plus x- extensions); the rest is OpenAPI 3 or
# JSON-schema only and gnostic rejects it.
_SWAGGER2_KEYS = frozenset({
    "$ref", "format", "title", "description", "default", "multipleOf", "maximum",
    "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern",
    "maxItems", "minItems", "uniqueItems", "maxProperties", "minProperties", "required", "enum",
    "additionalProperties", "type", "items", "allOf", "properties", "readOnly", "externalDocs",
    "example",
})


def _swagger2(schema: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAPI v3 schema rewritten as a valid Swagger 2.0 schema."""
    out: dict[str, Any] = {}
    all_of = schema.get("allOf")
    if all_of and len(all_of) == 1 and "$ref" in all_of[0] and "properties" not in schema:
        schema = {**all_of[0], **{k: v for k, v in schema.items() if k != "allOf"}}
    for key, value in schema.items():
        if key.startswith("x-"):
            out[key] = value
        elif key not in _SWAGGER2_KEYS:
            continue
        elif key == "$ref":
            out[key] = value.replace("#/components/schemas/", "#/definitions/")
        elif key == "properties":
            out[key] = {name: _swagger2(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            out[key] = _swagger2(value)
        elif key in ("items", "allOf") and isinstance(value, list):
            out[key] = [_swagger2(sub) for sub in value]
        elif key == "type" and not isinstance(value, str):
            continue
        else:
            out[key] = value
    return out


# --- the documents ------------------------------------------------------------------------


def gv_path(group: str, version: str) -> str:
    """The OpenAPI v3 path of a group version: api/v1, apis/apps/v1."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


@functools.cache
def _generator_fingerprint() -> bytes:
    """What the documents depend on besides the served resources: this generator, the
    client's models (their shipped data) and the patch metadata. Part of every hash, so caches
    keyed by the hash (kubectl keeps OpenAPI documents on disk) never see a stale document."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(k8s_models.digest())
    digest.update(repr(sorted(PATCH_META.items())).encode())
    return digest.digest()


_INFO = {"title": "Kubernetes", "version": f"v{KUBERNETES_VERSION}.0"}
_BEARER_TOKEN = {"type": "apiKey", "name": "authorization", "in": "header",
                 "description": "Bearer token authentication."}


class OpenAPIDocuments:
    """The `/openapi/v3` root, per-group-version documents and the `/openapi/v2` document of
    the served resources, built on first use and kept until `invalidate()` (call it when the
    set of served resources changes, e.g. a CRD is created, updated or deleted).

    Building takes a lock, so a request arriving while `warm()` runs in another thread waits
    for the document rather than building it twice; call these from a worker thread, not the
    event loop."""

    def __init__(self, resources: Callable[[], Iterable[Resource]]) -> None:
        self._resources = resources
        self._lock = threading.RLock()
        self._cache: dict[tuple[str, str], Any] = {}

    def invalidate(self) -> None:
        """Forget every built document; the next request rebuilds from `resources()`."""
        with self._lock:
            self._cache = {}

    def _cached(self, key: tuple[str, str], build: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._cache:
                self._cache[key] = build()
            return self._cache[key]

    def _group_versions(self) -> dict[str, list[Resource]]:
        def build() -> dict[str, list[Resource]]:
            by_gv: dict[str, list[Resource]] = {}
            for r in sorted(self._resources(), key=lambda r: r.plural):
                by_gv.setdefault(gv_path(r.group, r.version), []).append(r)
            return by_gv
        return self._cached(("resources", ""), build)

    def _hash(self, path: str) -> str:
        def build() -> str:
            digest = hashlib.sha512(_generator_fingerprint())
            for r in self._group_versions()[path]:
                digest.update(orjson.dumps(
                    [r.group, r.version, r.plural, r.kind, r.namespaced, r.verbs,
                     r.subresources, r.custom, r.schema],
                    default=_mapping_default, option=orjson.OPT_SORT_KEYS))
            return digest.hexdigest().upper()
        return self._cached(("hash", path), build)

    def v3_root(self) -> dict[str, Any]:
        """`/openapi/v3`: every served group version and the URL of its document."""
        return self._cached(("root", ""), lambda: {"paths": {
            path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={self._hash(path)}"}
            for path in sorted(self._group_versions())
        }})

    def _parts(self, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(neutral paths, v3 component schemas) of one served group version."""
        def build() -> tuple[dict[str, Any], dict[str, Any]]:
            schemas: dict[str, Any] = {}
            paths: dict[str, Any] = {}
            for r in self._group_versions()[path]:
                model = None if r.custom else model_for(r.group, r.version, r.kind)
                if model is None:
                    kind_name, list_name = _add_custom(schemas, r)
                else:
                    gvk = _gvk(r.group, r.version, r.kind)
                    kind_name = _add_model(schemas, model, r.group, gvk)
                    list_name = STATUS
                    if k8s_models.model(model + "List") is not None:
                        list_gvk = _gvk(r.group, r.version, r.kind + "List")
                        list_name = _add_model(schemas, model + "List", r.group, list_gvk)
                if "scale" in r.subresources:
                    _add_model(schemas, "V1Scale", "autoscaling",
                               _gvk("autoscaling", "v1", "Scale"))
                paths.update(_resource_paths(r, kind_name, list_name))
            _add_model(schemas, "V1Status", "")
            _add_model(schemas, "V1DeleteOptions", "")
            schemas[PATCH] = _FIXED_COMPONENTS[PATCH][0]
            return paths, dict(sorted(schemas.items()))
        return self._cached(("parts", path), build)

    def v3_group_version(self, gv_path: str) -> dict[str, Any] | None:
        """The OpenAPI 3.0 document of one group version ("api/v1", "apis/apps/v1"), or None
        if it is not served."""
        if gv_path not in self._group_versions():
            return None

        def build() -> dict[str, Any]:
            paths, schemas = self._parts(gv_path)
            return {
                "openapi": "3.0.0",
                "info": _INFO,
                "paths": _render_v3(paths),
                "components": {"schemas": schemas,
                               "securitySchemes": {"BearerToken": _BEARER_TOKEN}},
                "security": [{"BearerToken": []}],
            }
        return self._cached(("v3", gv_path), build)

    def v3_group_version_bytes(self, gv_path: str) -> tuple[bytes, str] | None:
        """`v3_group_version` serialised as JSON, with the hash the root advertises for it
        (usable as the ETag), or None if it is not served."""
        if gv_path not in self._group_versions():
            return None
        return self._cached(("v3 bytes", gv_path), lambda: (
            orjson.dumps(self.v3_group_version(gv_path)),
            self._hash(gv_path),
        ))

    def v2(self) -> dict[str, Any]:
        """The Swagger 2.0 document of everything served (kubectl's fallback)."""
        def build() -> dict[str, Any]:
            paths: dict[str, Any] = {}
            definitions: dict[str, Any] = {}
            for path in sorted(self._group_versions()):
                neutral, schemas = self._parts(path)
                paths.update(_render_v2(neutral))
                for name, schema in schemas.items():
                    if name in _FIXED_COMPONENTS:
                        definitions[name] = _FIXED_COMPONENTS[name][1]
                    elif name not in definitions:
                        definitions[name] = _swagger2(schema)
            return {
                "swagger": "2.0",
                "info": _INFO,
                "paths": paths,
                "definitions": dict(sorted(definitions.items())),
                "securityDefinitions": {"BearerToken": _BEARER_TOKEN},
                "security": [{"BearerToken": []}],
            }
        return self._cached(("v2", ""), build)

    def v2_json(self) -> tuple[bytes, str]:
        """`v2` serialised as JSON, with its ETag: the SHA-512 of those bytes in upper-case hex,
        as kube-openapi computes it (the protobuf form shares it)."""
        def build() -> tuple[bytes, str]:
            body = orjson.dumps(self.v2())
            return body, hashlib.sha512(body).hexdigest().upper()
        return self._cached(("v2 json", ""), build)

    def v2_protobuf(self) -> bytes:
        """`v2` in gnostic's protobuf encoding, what client-go asks for (`openapi_protobuf`)."""
        return self._cached(("v2 protobuf", ""), lambda: encode_document(self.v2()))

    def warm(self) -> None:
        """Build and serialise every group version document (for a background thread)."""
        for path in self._group_versions():
            self.v3_group_version_bytes(path)
