"""CustomResourceDefinitions (apiextensions.k8s.io/v1): validation, defaulting and status.

This module is the CRD registry strategy's knowledge, taken from the apiextensions-apiserver:
what a CRD must look like to be accepted (`validate_crd`, `validate_crd_update`), what the
server fills in (`default_crd`), and the status its naming and establishing controllers
write once the names are accepted (`crd_conditions`), which is what makes
`kubectl wait --for=condition=Established` return. The version schemas are checked by
`schema.is_structural`. CRDs arrive as plain dicts, as clients send them.

Not supported yet, and rejected with a cause saying so: conversion webhooks and CEL rules
(`x-kubernetes-validations`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from pilothouse.apiserver.schema import is_structural, value_cause
from pilothouse.machinery import names
from pilothouse.machinery.errors import (
    INVALID,
    NOT_SUPPORTED,
    Cause,
    forbidden,
    not_supported,
    required,
)

_SCOPES = ("Cluster", "Namespaced")
_PRINTER_TYPES = ("boolean", "date", "integer", "number", "string")
_PRINTER_FORMATS = ("byte", "date", "date-time", "double", "float", "int32", "int64", "password")
# The keywords a root schema may use when the status subresource is on, so that the
# schema of `status` can be carried by properties.status alone.
_STATUS_ROOT_KEYWORDS = {
    "description": "Description", "type": "Type", "format": "Format", "title": "Title",
    "maximum": "Maximum", "exclusiveMaximum": "ExclusiveMaximum", "minimum": "Minimum",
    "exclusiveMinimum": "ExclusiveMinimum", "maxLength": "MaxLength", "minLength": "MinLength",
    "pattern": "Pattern", "maxItems": "MaxItems", "minItems": "MinItems",
    "uniqueItems": "UniqueItems", "multipleOf": "MultipleOf", "required": "Required",
    "items": "Items", "properties": "Properties", "externalDocs": "ExternalDocs",
    "example": "Example", "x-kubernetes-preserve-unknown-fields": "XPreserveUnknownFields",
    "x-kubernetes-validations": "XValidations",
}
_APPROVAL_ANNOTATION = "api-approved.kubernetes.io"
_APPROVAL_PATH = f"metadata.annotations[{_APPROVAL_ANNOTATION}]"
_IMMUTABLE = "field is immutable"


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _invalid(field: str, value: Any, detail: str) -> Cause:
    return value_cause(INVALID, field, value, detail)


# ---------------------------------------------------------------------------------------------
# Defaulting.


def default_crd(crd: dict[str, Any]) -> None:
    """Fill in what the server defaults: names.singular (lowercased kind), names.listKind
    (kind + "List") and conversion strategy None."""
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return
    spec_names = spec.get("names")
    if isinstance(spec_names, dict):
        kind = _str(spec_names.get("kind"))
        if not spec_names.get("singular"):
            spec_names["singular"] = kind.lower()
        if not spec_names.get("listKind") and kind:
            spec_names["listKind"] = kind + "List"
    if spec.get("conversion") is None:
        spec["conversion"] = {"strategy": "None"}


# ---------------------------------------------------------------------------------------------
# Validation.


def validate_crd(crd: Mapping[str, Any]) -> list[Cause]:
    """Why the server would reject creating this CRD (empty when it is acceptable)."""
    spec = _dict(crd.get("spec"))
    out = _validate_name(crd, spec)
    out += _validate_spec(spec)
    out += _validate_approval(crd, None)
    return out


def validate_crd_update(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[Cause]:
    """Why the server would reject replacing `old` with `new`: everything `validate_crd`
    checks, plus group and plural never change, scope and kind not once the CRD is
    Established, and versions once stored stay in spec.versions."""
    spec, old_spec = _dict(new.get("spec")), _dict(old.get("spec"))
    out = _validate_name(new, spec)
    out += _validate_spec(spec)
    immutable = [("group",), ("names", "plural")]
    if _condition_true(old, "Established"):
        immutable += [("scope",), ("names", "kind")]
    for path in immutable:
        value, old_value = _nested(spec, path), _nested(old_spec, path)
        if value != old_value:
            out.append(_invalid("spec." + ".".join(path), value, _IMMUTABLE))
    out += _validate_stored_versions(spec, _list(_dict(old.get("status")).get("storedVersions")))
    out += _validate_approval(new, old)
    return out


def _nested(obj: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    for key in path[:-1]:
        obj = _dict(obj.get(key))
    return obj.get(path[-1])


def _validate_name(crd: Mapping[str, Any], spec: Mapping[str, Any]) -> list[Cause]:
    name = _str(_dict(crd.get("metadata")).get("name"))
    if not name:
        return [required("metadata.name", "name or generateName is required")]
    out = [_invalid("metadata.name", name, msg) for msg in names.is_dns1123_subdomain(name)]
    spec_names = _dict(spec.get("names"))
    if name != f"{_str(spec_names.get('plural'))}.{_str(spec.get('group'))}":
        out.append(_invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    return out


def _validate_spec(spec: Mapping[str, Any]) -> list[Cause]:
    out: list[Cause] = []
    group = _str(spec.get("group"))
    if not group:
        out.append(required("spec.group"))
    elif errs := names.is_dns1123_subdomain(group):
        out.append(_invalid("spec.group", group, ",".join(errs)))
    elif "." not in group:
        out.append(_invalid("spec.group", group, "should be a domain with at least one dot"))

    scope = _str(spec.get("scope"))
    if not scope:
        out.append(required("spec.scope"))
    elif scope not in _SCOPES:
        out.append(not_supported("spec.scope", scope, _SCOPES))

    if spec.get("preserveUnknownFields"):
        detail = (
            "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in "
            "spec.versions[*].schema instead"
        )
        out.append(_invalid("spec.preserveUnknownFields", True, detail))

    versions = _list(spec.get("versions"))
    seen: set[str] = set()
    unique = True
    for i, version in enumerate(versions):
        version = _dict(version)
        version_name = _str(version.get("name"))
        unique = unique and version_name not in seen
        seen.add(version_name)
        if errs := names.is_dns1035_label(version_name):
            out.append(_invalid(f"spec.versions[{i}].name", version_name, ",".join(errs)))
        out += _validate_version(version, f"spec.versions[{i}]")
    if not unique:
        out.append(_invalid("spec.versions", versions, "must contain unique version names"))
    if sum(1 for v in versions if _dict(v).get("storage") is True) != 1:
        detail = "must have exactly one version marked as storage version"
        out.append(_invalid("spec.versions", versions, detail))

    out += _validate_names(_dict(spec.get("names")))
    out += _validate_conversion(spec.get("conversion"))
    return out


def _validate_names(spec_names: Mapping[str, Any]) -> list[Cause]:
    out: list[Cause] = []
    for key in ("plural", "singular", "kind", "listKind"):
        if not spec_names.get(key):
            out.append(required(f"spec.names.{key}"))
    for key in ("plural", "singular"):
        value = _str(spec_names.get(key))
        if value and (errs := names.is_dns1035_label(value)):
            out.append(_invalid(f"spec.names.{key}", value, ",".join(errs)))
    for key in ("kind", "listKind"):
        value = _str(spec_names.get(key))
        if value and (errs := names.is_dns1035_label(value.lower())):
            detail = "may have mixed case, but should otherwise match: " + ",".join(errs)
            out.append(_invalid(f"spec.names.{key}", value, detail))
    for key in ("shortNames", "categories"):
        for i, value in enumerate(_list(spec_names.get(key))):
            if errs := names.is_dns1035_label(_str(value)):
                out.append(_invalid(f"spec.names.{key}[{i}]", value, ",".join(errs)))
    kind = spec_names.get("kind")
    if kind and kind == spec_names.get("listKind"):
        out.append(_invalid("spec.names.listKind", kind, "kind and listKind may not be the same"))
    return out


def _validate_version(version: Mapping[str, Any], path: str) -> list[Cause]:
    out: list[Cause] = []
    warning = version.get("deprecationWarning")
    if warning is not None:
        warning_path = f"{path}.deprecationWarning"
        if not version.get("deprecated"):
            out.append(_invalid(warning_path, warning, "can only be set for deprecated versions"))
        elif not isinstance(warning, str) or not warning:
            out.append(_invalid(warning_path, warning, "must not be an empty string"))
        elif len(warning.encode()) > 256:
            out.append(_invalid(warning_path, warning, "must be <= 256 characters long"))
        elif not warning.isprintable():
            out.append(_invalid(warning_path, warning, "must only contain printable UTF-8 characters"))

    subresources = _dict(version.get("subresources"))
    schema_path = f"{path}.schema.openAPIV3Schema"
    schema = _dict(version.get("schema")).get("openAPIV3Schema")
    if not isinstance(schema, Mapping):
        out.append(required(schema_path))
    else:
        if subresources.get("status") is not None:
            out += _validate_status_root(schema, schema_path)
        out += is_structural(schema, path=schema_path)

    scale = subresources.get("scale")
    if scale is not None:
        out += _validate_scale(_dict(scale), f"{path}.subresources.scale")
    for i, column in enumerate(_list(version.get("additionalPrinterColumns"))):
        out += _validate_printer_column(_dict(column), f"{path}.additionalPrinterColumns[{i}]")
    return out


def _validate_status_root(schema: Mapping[str, Any], path: str) -> list[Cause]:
    out: list[Cause] = []
    if "type" in schema and schema["type"] != "object":
        detail = 'only "object" is allowed as the type at the root of the schema if the status subresource is enabled'
        out.append(_invalid(f"{path}.type", schema["type"], detail))
    allowed = "[" + " ".join(_STATUS_ROOT_KEYWORDS.values()) + "]"
    for key, value in schema.items():
        unset = value is None or value is False or (isinstance(value, (str, list, dict)) and not value)
        if key not in _STATUS_ROOT_KEYWORDS and not unset:
            detail = f"only {allowed} fields are allowed at the root of the schema if the status subresource is enabled"
            out.append(forbidden(f"{path}.{key}", detail))
            break
    return out


def _simple_json_path(value: str, field: str) -> list[Cause]:
    if not value:
        return [_invalid(field, value, "must not be empty")]
    if not value.startswith("."):
        return [_invalid(field, value, "must be a simple json path starting with .")]
    return []


def _validate_scale(scale: Mapping[str, Any], path: str) -> list[Cause]:
    out: list[Cause] = []
    for key, prefix, detail in (
        ("specReplicasPath", (".spec.",), "should be a json path under .spec"),
        ("statusReplicasPath", (".status.",), "should be a json path under .status"),
        ("labelSelectorPath", (".spec.", ".status."), "should be a json path under either .spec or .status"),
    ):
        value = _str(scale.get(key))
        field = f"{path}.{key}"
        if not value:
            if key != "labelSelectorPath":
                out.append(required(field))
        elif errs := _simple_json_path(value, field):
            out += errs
        elif not value.startswith(prefix):
            out.append(_invalid(field, value, detail))
    return out


def _validate_printer_column(column: Mapping[str, Any], path: str) -> list[Cause]:
    out: list[Cause] = []
    if not column.get("name"):
        out.append(required(f"{path}.name"))
    column_type = column.get("type")
    types = "must be one of " + ",".join(_PRINTER_TYPES)
    if not column_type:
        out.append(required(f"{path}.type", types))
    elif column_type not in _PRINTER_TYPES:
        out.append(_invalid(f"{path}.type", column_type, types))
    column_format = column.get("format")
    if column_format and column_format not in _PRINTER_FORMATS:
        out.append(_invalid(f"{path}.format", column_format, "must be one of " + ",".join(_PRINTER_FORMATS)))
    json_path = _str(column.get("jsonPath"))
    if not json_path:
        out.append(required(f"{path}.JSONPath"))
    else:
        out += _simple_json_path(json_path, f"{path}.JSONPath")
    return out


def _validate_conversion(conversion: Any) -> list[Cause]:
    if conversion is None:
        return []
    conversion = _dict(conversion)
    strategy = _str(conversion.get("strategy"))
    if not strategy:
        return [required("spec.conversion.strategy")]
    if strategy == "Webhook":
        detail = "conversion webhooks are not supported by this server yet; use strategy None"
        return [forbidden("spec.conversion.strategy", detail)]
    if strategy != "None":
        return [value_cause(NOT_SUPPORTED, "spec.conversion.strategy", strategy, 'supported values: "None", "Webhook"')]
    webhook = _dict(conversion.get("webhook"))
    out: list[Cause] = []
    detail = "should not be set when strategy is not set to Webhook"
    if webhook.get("clientConfig") is not None:
        out.append(forbidden("spec.conversion.webhookClientConfig", detail))
    if webhook.get("conversionReviewVersions"):
        out.append(forbidden("spec.conversion.conversionReviewVersions", detail))
    return out


def _validate_stored_versions(spec: Mapping[str, Any], stored: list[Any]) -> list[Cause]:
    """Versions that ever held data must stay listed until a storage migration drops them."""
    versions = [_str(_dict(v).get("name")) for v in _list(spec.get("versions"))]
    storage = next((_str(_dict(v).get("name")) for v in _list(spec.get("versions")) if _dict(v).get("storage") is True), None)
    stored = list(stored)
    if storage and storage not in stored:
        stored.append(storage)
    out = []
    for i, version in enumerate(stored):
        if version not in versions:
            detail = (
                f"missing from spec.versions; {version} was previously a storage version, and "
                f"must remain in spec.versions until a storage migration ensures no data remains "
                f"persisted in {version} and removes {version} from status.storedVersions"
            )
            out.append(_invalid(f"status.storedVersions[{i}]", version, detail))
    return out


def _approval_state(crd: Mapping[str, Any]) -> tuple[str, str]:
    annotation = _str(_dict(_dict(crd.get("metadata")).get("annotations")).get(_APPROVAL_ANNOTATION))
    see = "see https://github.com/kubernetes/enhancements/pull/1111"
    if not annotation:
        return "missing", f'protected groups must have approval annotation "{_APPROVAL_ANNOTATION}", {see}'
    if annotation.startswith("unapproved"):
        return "bypassed", ""
    url = urlsplit(annotation)
    if url.scheme and url.netloc:
        return "approved", ""
    return "invalid", (
        f'protected groups must have approval annotation "{_APPROVAL_ANNOTATION}" with either a '
        f'URL or a reason starting with "unapproved", {see}'
    )


def _validate_approval(crd: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[Cause]:
    """Groups under k8s.io and kubernetes.io need the API-review approval annotation."""
    group = _str(_dict(crd.get("spec")).get("group"))
    if not any(group == g or group.endswith("." + g) for g in ("k8s.io", "kubernetes.io")):
        return []
    state, reason = _approval_state(crd)
    if old is not None and _approval_state(old)[0] == state:
        return []
    if state == "missing":
        return [required(_APPROVAL_PATH, reason)]
    if state == "invalid":
        value = _dict(_dict(crd.get("metadata")).get("annotations")).get(_APPROVAL_ANNOTATION)
        return [_invalid(_APPROVAL_PATH, value, reason)]
    return []


# ---------------------------------------------------------------------------------------------
# Status.


def _condition_true(crd: Mapping[str, Any], condition_type: str) -> bool:
    return any(
        _dict(c).get("type") == condition_type and _dict(c).get("status") == "True"
        for c in _list(_dict(crd.get("status")).get("conditions"))
    )


def _accepted_names_in_group(crds: Iterable[Mapping[str, Any]], group: str) -> tuple[set[str], set[str]]:
    resources: set[str] = set()
    kinds: set[str] = set()
    for crd in crds:
        if _dict(crd.get("spec")).get("group") != group:
            continue
        accepted = _dict(_dict(crd.get("status")).get("acceptedNames"))
        resources.update(_str(accepted.get(k)) for k in ("plural", "singular"))
        resources.update(_str(s) for s in _list(accepted.get("shortNames")))
        kinds.update(_str(accepted.get(k)) for k in ("kind", "listKind"))
    return resources, kinds


def _in_use(requested: str, accepted: str, used: set[str]) -> str:
    """Why `requested` cannot be taken ("" when it can): it is free or already ours."""
    if requested == accepted or requested not in used:
        return ""
    return f'"{requested}" is already in use'


def _set_condition(conditions: list[dict[str, Any]], new: dict[str, str], now: str) -> None:
    """Replace the condition of the same type, keeping lastTransitionTime unless the status
    changed (SetCRDCondition in the apiextensions helpers)."""
    for existing in conditions:
        if existing.get("type") == new["type"]:
            if existing.get("status") != new["status"] or not existing.get("lastTransitionTime"):
                existing["lastTransitionTime"] = now
            existing.update(status=new["status"], reason=new["reason"], message=new["message"])
            return
    conditions.append({**new, "lastTransitionTime": now})


def crd_conditions(
    crd: Mapping[str, Any], now: str, *, other_crds: Iterable[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """The status the server writes for `crd` at time `now` (RFC 3339).

    Names requested in spec are accepted unless another CRD of the same group (from
    `other_crds`) already holds them; NamesAccepted says which conflicted. Established
    turns True once the names are accepted and stays True. storedVersions gains the current
    storage version. Other status fields and conditions are kept.
    """
    spec = _dict(crd.get("spec"))
    requested = _dict(spec.get("names"))
    status = dict(_dict(crd.get("status")))
    accepted = _dict(status.get("acceptedNames"))
    name = _dict(crd.get("metadata")).get("name")
    peers = [c for c in other_crds if _dict(c.get("metadata")).get("name") != name]
    resources, kinds = _accepted_names_in_group([crd, *peers], _str(spec.get("group")))

    new_names = dict(accepted)
    names_accepted = {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found"}

    def conflict(reason: str, message: str) -> None:
        names_accepted.update(status="False", reason=reason, message=message)

    for key, used, reason in (
        ("plural", resources, "PluralConflict"),
        ("singular", resources, "SingularConflict"),
    ):
        if problem := _in_use(_str(requested.get(key)), _str(accepted.get(key)), used):
            conflict(reason, problem)
        else:
            new_names[key] = requested.get(key)
    short_names = _list(requested.get("shortNames"))
    if short_names != _list(accepted.get("shortNames")):
        held = set(_list(accepted.get("shortNames")))
        problems = [p for s in short_names if s not in held and (p := _in_use(_str(s), "", resources))]
        if problems:
            conflict("ShortNamesConflict", problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]")
        else:
            new_names["shortNames"] = short_names
    for key, reason in (("kind", "KindConflict"), ("listKind", "ListKindConflict")):
        if problem := _in_use(_str(requested.get(key)), _str(accepted.get(key)), kinds):
            conflict(reason, problem)
        else:
            new_names[key] = requested.get(key)
    new_names["categories"] = requested.get("categories")

    conditions = [dict(c) for c in _list(status.get("conditions")) if isinstance(c, Mapping)]
    if not _condition_true(crd, "Established"):
        if names_accepted["status"] == "True":
            established = {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"}
        else:
            established = {"type": "Established", "status": "False", "reason": "NotAccepted", "message": "not all names are accepted"}
        _set_condition(conditions, names_accepted, now)
        _set_condition(conditions, established, now)
    else:
        _set_condition(conditions, names_accepted, now)

    stored = [v for v in _list(status.get("storedVersions")) if isinstance(v, str)]
    for version in _list(spec.get("versions")):
        version = _dict(version)
        if version.get("storage") is True:
            if version.get("name") not in stored:
                stored.append(version.get("name"))
            break

    status["acceptedNames"] = {
        k: v or "" for k, v in new_names.items() if v or k in ("plural", "kind")
    }
    status["conditions"] = conditions
    status["storedVersions"] = stored
    return status
