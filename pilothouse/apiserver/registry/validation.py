"""Validation of built-in objects: the field rules a Kubernetes 1.32 API server enforces.

The API server runs, for a built-in kind keyed by (group, kind), the defaulter
(defaults.py), then `validate_object_meta` and the kind's entry in `VALIDATORS` on every
create and update, and on update also `validate_object_meta_update` and the kind's entry in
`UPDATE_VALIDATORS` (immutable fields). Each returns `Cause`s whose paths and messages are
the ones `kubectl` shows from a real cluster (`spec.containers: Required value`), so a
rejected object reads the same here as there. The rules follow
`pkg/apis/<group>/validation` and apimachinery's `pkg/api/validation`.

This module owns object metadata, the shared field checks and the core, storage, RBAC and
small-group kinds; validation_workloads.py owns pods and their controllers (apps, batch),
validation_networking.py the networking.k8s.io kinds, validation_admissionregistration.py
the webhook configurations, validation_autoscaling.py the HorizontalPodAutoscalers. Import
the tables from here; `WARNINGS` gives the warnings a write of a kind earns
(WarningsOnCreate/OnUpdate).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any

from pilothouse.machinery.equality import semantic
from pilothouse.machinery.errors import (
    TOO_LONG,
    TOO_MANY,
    Cause,
    duplicate,
    forbidden,
    invalid_value,
    not_supported,
    required,
)
from pilothouse.machinery.names import (
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_label_value,
)
from pilothouse.machinery.quantity import canonical, parse_quantity
from pilothouse.machinery.selectors import LabelSelector, label_selector_from_dict

Validator = Callable[[dict], list[Cause]]
UpdateValidator = Callable[[dict, dict], list[Cause]]

FIELD_IMMUTABLE = "field is immutable"
IS_NEGATIVE = "must be greater than or equal to 0"
NOT_POSITIVE = "must be greater than zero"
MAX_ANNOTATIONS_BYTES = 256 * 1024
MAX_SECRET_BYTES = 1024 * 1024
NOT_FOUND = "FieldValueNotFound"
INVALID_IP = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
PORT_RANGE = "must be between 1 and 65535, inclusive"
PROTOCOLS = ("SCTP", "TCP", "UDP")
ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
VOLUME_MODES = ("Block", "Filesystem")
TAINT_EFFECTS = ("NoExecute", "NoSchedule", "PreferNoSchedule")
RBAC_GROUP = "rbac.authorization.k8s.io"

# ---------------------------------------------------------------------------------------
# Small helpers: JSON shapes, paths and causes errors.py does not build.


def as_dict(value: Any) -> dict:
    """`value` if it is a JSON object, else an empty one (absent and null read as empty)."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def not_found(field: str, value: Any) -> Cause:
    return Cause(field, f'Not found: "{value}"', NOT_FOUND)


def too_long(field: str, limit: int) -> Cause:
    return Cause(field, f"Too long: must have at most {limit} bytes", TOO_LONG)


def too_many(field: str, actual: int, limit: int) -> Cause:
    return Cause(field, f"Too many: {actual}: must have at most {limit} items", TOO_MANY)


def immutable(path: str, new: Any, old: Any) -> list[Cause]:
    """ValidateImmutableField: nil and empty compare equal, as apimachinery's DeepEqual."""
    if semantic(new) == semantic(old):
        return []
    return [invalid_value(path, new, FIELD_IMMUTABLE)]


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------
# Shared field checks.


def validate_nonnegative(value: Any, path: str) -> list[Cause]:
    if is_int(value) and value < 0:
        return [invalid_value(path, value, IS_NEGATIVE)]
    return []


def validate_names(value: str, path: str, check: Callable[[str], list[str]]) -> list[Cause]:
    return [invalid_value(path, value, msg) for msg in check(value)]


def validate_labels(labels: Any, path: str) -> list[Cause]:
    """Keys are qualified names and values label values (ValidateLabels)."""
    causes: list[Cause] = []
    for key, value in as_dict(labels).items():
        causes += validate_names(key, path, is_qualified_name)
        causes += validate_names(str(value), path, is_valid_label_value)
    return causes


def validate_annotations(annotations: Any, path: str) -> list[Cause]:
    annotations = as_dict(annotations)
    causes: list[Cause] = []
    for key in annotations:
        causes += [invalid_value(path, key, msg) for msg in is_qualified_name(key.lower())]
    size = sum(len(k.encode()) + len(str(v).encode()) for k, v in annotations.items())
    if size > MAX_ANNOTATIONS_BYTES:
        causes.append(too_long(path, MAX_ANNOTATIONS_BYTES))
    return causes


def validate_label_selector(selector: Any, path: str) -> list[Cause]:
    """A metav1.LabelSelector's syntax (ValidateLabelSelector)."""
    selector = as_dict(selector)
    causes = validate_labels(selector.get("matchLabels"), f"{path}.matchLabels")
    for i, req in enumerate(as_list(selector.get("matchExpressions"))):
        req = as_dict(req)
        at = f"{path}.matchExpressions[{i}]"
        operator, values = req.get("operator"), as_list(req.get("values"))
        if operator in ("In", "NotIn"):
            if not values:
                causes.append(required(
                    f"{at}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                causes.append(forbidden(
                    f"{at}.values",
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            causes.append(invalid_value(f"{at}.operator", operator or "",
                                        "not a valid selector operator"))
        causes += validate_names(str(req.get("key") or ""), f"{at}.key", is_qualified_name)
        for j, value in enumerate(values):
            causes += validate_names(str(value), f"{at}.values[{j}]", is_valid_label_value)
    return causes


def selector_of(selector: Any) -> LabelSelector | None:
    """The selector a LabelSelector dict denotes, or None when it cannot be parsed."""
    try:
        return label_selector_from_dict(as_dict(selector))
    except ValueError:
        return None


def is_valid_port_name(name: str) -> list[str]:
    """IsValidPortName: an IANA service name (1-15 of [-a-z0-9], one letter, no '--')."""
    errs = []
    if len(name) > 15:
        errs.append("must be no more than 15 characters")
    if not re.fullmatch(r"[-a-z0-9]+", name):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search(r"[a-z]", name):
        errs.append("must contain at least one letter (a-z)")
    if "--" in name:
        errs.append("must not contain consecutive hyphens")
    if name and (name[0] == "-" or name[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def validate_port_number(port: Any, path: str) -> list[Cause]:
    if not is_int(port) or not 1 <= port <= 65535:
        return [invalid_value(path, port, PORT_RANGE)]
    return []


def validate_port_num_or_name(port: Any, path: str) -> list[Cause]:
    """An IntOrString port: a number 1-65535 or an IANA port name."""
    if isinstance(port, str):
        return [invalid_value(path, port, msg) for msg in is_valid_port_name(port)]
    return validate_port_number(port, path)


def required_enum(value: Any, path: str, allowed: Sequence[str]) -> list[Cause]:
    """A field that must be set to one of `allowed`: Required, or Unsupported value."""
    if not value:
        return [required(path)]
    if value not in allowed:
        return [not_supported(path, value, allowed)]
    return []


def validate_protocol(protocol: Any, path: str) -> list[Cause]:
    return required_enum(protocol, path, PROTOCOLS)


def is_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


def quantity(value: Any, path: str, causes: list[Cause]) -> Decimal | None:
    """Parse a resource quantity, recording a cause (Kubernetes' message) if it is bad."""
    try:
        return parse_quantity(value)
    except (ValueError, TypeError) as exc:
        causes.append(invalid_value(path, value, str(exc)))
        return None


def shown(value: Any) -> str:
    """A quantity as the server prints it back in messages (its canonical form)."""
    try:
        return canonical(str(value))
    except ValueError:
        return str(value)


def validate_resource_list(resources: Any, path: str, *, positive: bool = False) -> list[Cause]:
    """Every value of a ResourceList parses and is non-negative (or positive)."""
    causes: list[Cause] = []
    for name, value in as_dict(resources).items():
        amount = quantity(value, f"{path}[{name}]", causes)
        if amount is None:
            continue
        if amount < 0:
            causes.append(invalid_value(f"{path}[{name}]", shown(value), IS_NEGATIVE))
        elif positive and amount == 0:
            causes.append(invalid_value(f"{path}[{name}]", shown(value), NOT_POSITIVE))
    return causes


def validate_taint_effect(effect: Any, path: str) -> list[Cause]:
    return required_enum(effect, path, TAINT_EFFECTS)


def validate_tolerations(tolerations: Any, path: str) -> list[Cause]:
    causes: list[Cause] = []
    for i, tol in enumerate(as_list(tolerations)):
        tol = as_dict(tol)
        at = f"{path}[{i}]"
        key, operator, value = tol.get("key") or "", tol.get("operator") or "", tol.get("value")
        effect = tol.get("effect") or ""
        if key:
            causes += validate_names(key, f"{at}.key", is_qualified_name)
        if not key and operator != "Exists":
            causes.append(invalid_value(
                f"{at}.operator", operator,
                'operator must be Exists when `key` is empty, which means "match all values '
                'and all keys"'))
        if tol.get("tolerationSeconds") is not None and effect != "NoExecute":
            causes.append(invalid_value(f"{at}.effect", effect,
                                        "effect must be 'NoExecute' when `tolerationSeconds` is set"))
        if operator in ("Equal", ""):
            errs = is_valid_label_value(str(value or ""))
            if errs:
                causes.append(invalid_value(f"{at}.operator", value or "", ";".join(errs)))
        elif operator == "Exists":
            if value:
                causes.append(invalid_value(f"{at}.operator", tol,
                                            "value must be empty when `operator` is 'Exists'"))
        else:
            causes.append(not_supported(f"{at}.operator", operator, ("Equal", "Exists")))
        if effect:
            causes += validate_taint_effect(effect, f"{at}.effect")
    return causes


def config_key_errors(key: str) -> list[str]:
    """IsConfigMapKey: the keys of ConfigMap and Secret data."""
    errs = []
    if len(key) > 253:
        errs.append("must be no more than 253 characters")
    if not re.fullmatch(r"[-._a-zA-Z0-9]+", key):
        errs.append(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
            "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
            "'[-._a-zA-Z0-9]+')")
    if key == ".":
        errs.append("must not be '.'")
    elif key == "..":
        errs.append("must not be '..'")
    elif key.startswith(".."):
        errs.append("must not start with '..'")
    return errs


# ---------------------------------------------------------------------------------------
# Object metadata.


def _path_segment(name: str, prefix: bool) -> list[str]:
    """IsValidPathSegmentName: the names RBAC objects may have."""
    if not prefix and name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in name]


_NAME_CHECKS: dict[str, Callable[[str], list[str]]] = {
    "subdomain": is_dns1123_subdomain,
    "label": is_dns1123_label,
    "dns1035": is_dns1035_label,
}

#: Kinds whose metadata.name is not a DNS subdomain: "label", "dns1035" or "path".
NAME_RULES: dict[tuple[str, str], str] = {
    ("", "Namespace"): "label",
    ("", "Service"): "dns1035",
    ("apps", "StatefulSet"): "label",
    (RBAC_GROUP, "Role"): "path",
    (RBAC_GROUP, "ClusterRole"): "path",
    (RBAC_GROUP, "RoleBinding"): "path",
    (RBAC_GROUP, "ClusterRoleBinding"): "path",
}


def name_errors(name: str, rule: str, *, prefix: bool = False) -> list[str]:
    """Problems with `name` under a NAME_RULES rule; `prefix` for a generateName."""
    if rule == "path":
        return _path_segment(name, prefix)
    if prefix and name.endswith("-"):
        name = name[:-1] + "a"  # a generated suffix will follow the dash
    return _NAME_CHECKS[rule](name)


def validate_object_meta(obj: dict, *, namespaced: bool, name_rule: str = "subdomain") -> list[Cause]:
    """ObjectMeta on create: name, namespace by scope, labels, annotations, owners, finalizers."""
    meta = as_dict(obj.get("metadata"))
    name, generate = meta.get("name") or "", meta.get("generateName") or ""
    causes: list[Cause] = []
    if generate:
        causes += [invalid_value("metadata.generateName", generate, msg)
                   for msg in name_errors(generate, name_rule, prefix=True)]
    if name:
        causes += [invalid_value("metadata.name", name, msg) for msg in name_errors(name, name_rule)]
    elif not generate:
        causes.append(required("metadata.name", "name or generateName is required"))
    namespace = meta.get("namespace") or ""
    if namespaced:
        if not namespace:
            causes.append(required("metadata.namespace"))
        else:
            causes += validate_names(namespace, "metadata.namespace", is_dns1123_label)
    elif namespace:
        causes.append(forbidden("metadata.namespace", "not allowed on this type"))
    causes += validate_nonnegative(meta.get("generation"), "metadata.generation")
    return causes + _validate_meta_common(meta)


def _validate_meta_common(meta: dict) -> list[Cause]:
    causes = validate_labels(meta.get("labels"), "metadata.labels")
    causes += validate_annotations(meta.get("annotations"), "metadata.annotations")
    causes += _validate_owner_references(as_list(meta.get("ownerReferences")))
    finalizers = [str(f) for f in as_list(meta.get("finalizers"))]
    for finalizer in finalizers:
        causes += validate_names(finalizer, "metadata.finalizers", is_qualified_name)
    if "orphan" in finalizers and "foregroundDeletion" in finalizers:
        causes.append(invalid_value("metadata.finalizers", finalizers,
                                    "finalizer orphan and foregroundDeletion cannot be both set"))
    return causes


def _validate_owner_references(refs: list) -> list[Cause]:
    path = "metadata.ownerReferences"
    causes: list[Cause] = []
    controller = ""
    for ref in refs:
        ref = as_dict(ref)
        api_version = str(ref.get("apiVersion") or "")
        if not api_version.rpartition("/")[2]:
            causes.append(invalid_value(f"{path}.apiVersion", api_version,
                                        "version must not be empty"))
        for key in ("kind", "name", "uid"):
            if not ref.get(key):
                causes.append(invalid_value(f"{path}.{key}", ref.get(key) or "", "must not be empty"))
        if api_version == "v1" and ref.get("kind") == "Event":
            causes.append(invalid_value(path, ref, "/v1, Kind=Event is disallowed from being an owner"))
        if ref.get("controller") is True:
            current = f"{ref.get('kind')}/{ref.get('name')}"
            if controller:
                causes.append(invalid_value(
                    path, refs, "Only one reference can have Controller set to true. Found "
                    f'"true" in references for {controller} and {current}'))
            else:
                controller = current
    return causes


def validate_object_meta_update(new: dict, old: dict) -> list[Cause]:
    """ObjectMeta on update: identity fields immutable, no new finalizers while deleting."""
    meta, old_meta = as_dict(new.get("metadata")), as_dict(old.get("metadata"))
    causes: list[Cause] = []
    if old_meta.get("deletionTimestamp"):
        added = sorted(set(as_list(meta.get("finalizers"))) - set(as_list(old_meta.get("finalizers"))))
        if added:
            causes.append(forbidden(
                "metadata.finalizers", "no new finalizers can be added if the object is being "
                f"deleted, found new finalizers {json.dumps(added)}"))
    generation, old_generation = meta.get("generation"), old_meta.get("generation")
    if is_int(generation) and is_int(old_generation) and generation < old_generation:
        causes.append(invalid_value("metadata.generation", generation, "must not be decremented"))
    for key in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
                "deletionGracePeriodSeconds"):
        causes += immutable(f"metadata.{key}", meta.get(key), old_meta.get(key))
    return causes + _validate_meta_common(meta)


# ---------------------------------------------------------------------------------------
# core/v1 kinds other than pods.

_SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")


def validate_service(svc: dict) -> list[Cause]:
    spec = as_dict(svc.get("spec"))
    causes: list[Cause] = []
    svc_type, cluster_ip = spec.get("type"), spec.get("clusterIP") or ""
    ports = as_list(spec.get("ports"))
    headless = cluster_ip == "None"
    causes += required_enum(svc_type, "spec.type", _SERVICE_TYPES)
    if svc_type == "ExternalName":
        if cluster_ip:
            causes.append(forbidden("spec.clusterIP", "may not be set for ExternalName services"))
        external = spec.get("externalName") or ""
        if not external:
            causes.append(required("spec.externalName"))
        else:
            causes += validate_names(external.rstrip("."), "spec.externalName",
                                     is_dns1123_subdomain)
    elif not ports and not headless:
        causes.append(required("spec.ports"))
    if cluster_ip and not headless and not is_ip(cluster_ip):
        causes.append(invalid_value("spec.clusterIP", cluster_ip, INVALID_IP))
    for i, ip in enumerate(as_list(spec.get("clusterIPs"))):
        if not (i == 0 and ip == "None") and not is_ip(ip):
            causes.append(invalid_value(f"spec.clusterIPs[{i}]", ip, INVALID_IP))
    names: set[str] = set()
    seen: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        port = as_dict(port)
        at = f"spec.ports[{i}]"
        name = port.get("name") or ""
        if len(ports) > 1 and not name:
            causes.append(required(f"{at}.name"))
        elif name:
            causes += validate_names(name, f"{at}.name", is_dns1123_label)
            if name in names:
                causes.append(duplicate(f"{at}.name", name))
            names.add(name)
        causes += validate_port_number(port.get("port"), f"{at}.port")
        causes += validate_protocol(port.get("protocol"), f"{at}.protocol")
        if "targetPort" in port:
            causes += validate_port_num_or_name(port["targetPort"], f"{at}.targetPort")
        if port.get("nodePort"):
            if svc_type == "ClusterIP":
                causes.append(forbidden(f"{at}.nodePort", "may not be used when `type` is 'ClusterIP'"))
            else:
                causes += validate_port_number(port["nodePort"], f"{at}.nodePort")
        key = (port.get("port"), port.get("protocol"))
        if key in seen:
            causes.append(duplicate(at, {"port": key[0], "protocol": key[1]}))
        seen.add(key)
    causes += validate_labels(spec.get("selector"), "spec.selector")
    affinity = spec.get("sessionAffinity")
    causes += required_enum(affinity, "spec.sessionAffinity", ("ClientIP", "None"))
    for key, allowed in (("ipFamilyPolicy", ("PreferDualStack", "RequireDualStack", "SingleStack")),
                         ("internalTrafficPolicy", ("Cluster", "Local"))):
        if spec.get(key) is not None and spec[key] not in allowed:
            causes.append(not_supported(f"spec.{key}", spec[key], allowed))
    for i, family in enumerate(as_list(spec.get("ipFamilies"))):
        if family not in ("IPv4", "IPv6"):
            causes.append(not_supported(f"spec.ipFamilies[{i}]", family, ("IPv4", "IPv6")))
    external_policy = spec.get("externalTrafficPolicy")
    if external_policy:
        if svc_type not in ("NodePort", "LoadBalancer"):
            causes.append(invalid_value("spec.externalTrafficPolicy", external_policy,
                                        "may only be set for externally-accessible services"))
        elif external_policy not in ("Cluster", "Local"):
            causes.append(not_supported("spec.externalTrafficPolicy", external_policy,
                                        ("Cluster", "Local")))
    return causes


def validate_service_update(new: dict, old: dict) -> list[Cause]:
    """An allocated cluster IP stays; the registry carries it over when a client omits it."""
    spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    if "ExternalName" in (spec.get("type"), old_spec.get("type")):
        return []
    old_ips = as_list(old_spec.get("clusterIPs")) or [old_spec.get("clusterIP") or ""]
    new_ips = as_list(spec.get("clusterIPs")) or [spec.get("clusterIP") or ""]
    causes = []
    for i, (new_ip, old_ip) in enumerate(zip(new_ips, old_ips, strict=False)):
        if old_ip and new_ip and new_ip != old_ip:
            causes.append(invalid_value(f"spec.clusterIPs[{i}]", new_ips, "may not change once set"))
    return causes


def validate_config_map(cm: dict) -> list[Cause]:
    causes: list[Cause] = []
    data, binary = as_dict(cm.get("data")), as_dict(cm.get("binaryData"))
    size = 0
    for key, value in data.items():
        causes += [invalid_value(f"data[{key}]", key, msg) for msg in config_key_errors(key)]
        if key in binary:
            causes.append(invalid_value(f"data[{key}]", key, "duplicate of key present in binaryData"))
        size += len(str(value).encode())
    for key, value in binary.items():
        causes += [invalid_value(f"binaryData[{key}]", key, msg) for msg in config_key_errors(key)]
        if key in data:
            causes.append(invalid_value(f"binaryData[{key}]", key, "duplicate of key present in data"))
        decoded = _base64(value, f"binaryData[{key}]", causes)
        size += len(decoded or b"")
    if size > MAX_SECRET_BYTES:
        causes.append(too_long("", MAX_SECRET_BYTES))
    return causes


def _base64(value: Any, path: str, causes: list[Cause]) -> bytes | None:
    """Decode a base64 field, recording Go's error (with the offending byte) if it is bad."""
    text = str(value)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        offset = next((i for i, c in enumerate(text.rstrip("=")) if c not in alphabet),
                      len(text.rstrip("=")))
        causes.append(invalid_value(path, "<secret contents redacted>",
                                    f"illegal base64 data at input byte {offset}"))
        return None


_SECRET_REQUIRED_KEYS = {
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
}


def validate_secret(secret: dict) -> list[Cause]:
    causes: list[Cause] = []
    data = as_dict(secret.get("data"))
    decoded: dict[str, bytes] = {}
    for key, value in data.items():
        causes += [invalid_value(f"data[{key}]", key, msg) for msg in config_key_errors(key)]
        raw = _base64(value, f"data[{key}]", causes)
        if raw is not None:
            decoded[key] = raw
    if sum(len(v) for v in decoded.values()) > MAX_SECRET_BYTES:
        causes.append(too_long("data", MAX_SECRET_BYTES))
    kind = secret.get("type") or "Opaque"
    if kind == "kubernetes.io/service-account-token":
        annotations = as_dict(as_dict(secret.get("metadata")).get("annotations"))
        if not annotations.get("kubernetes.io/service-account.name"):
            causes.append(required("metadata.annotations[kubernetes.io/service-account.name]"))
    elif kind == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            causes += [required("data[username]"), required("data[password]")]
    for key in _SECRET_REQUIRED_KEYS.get(kind, ()):
        if key not in data or (key == "ssh-privatekey" and not decoded.get(key)):
            causes.append(required(f"data[{key}]"))
        elif key.startswith(".docker") and key in decoded:
            try:
                json.loads(decoded[key])
            except ValueError as exc:
                causes.append(invalid_value(f"data[{key}]", "<secret contents redacted>", str(exc)))
    return causes


def _validate_immutable_data(new: dict, old: dict, keys: Iterable[str]) -> list[Cause]:
    if old.get("immutable") is not True:
        return []
    message = "field is immutable when `immutable` is set"
    causes = [] if new.get("immutable") is True else [forbidden("immutable", message)]
    return causes + [forbidden(key, message) for key in keys
                     if semantic(new.get(key)) != semantic(old.get(key))]


def validate_config_map_update(new: dict, old: dict) -> list[Cause]:
    return _validate_immutable_data(new, old, ("data", "binaryData"))


def validate_secret_update(new: dict, old: dict) -> list[Cause]:
    causes = immutable("type", new.get("type"), old.get("type"))
    return causes + _validate_immutable_data(new, old, ("data",))


_STANDARD_FINALIZERS = ("kubernetes", "orphan", "foregroundDeletion")


def validate_namespace(ns: dict) -> list[Cause]:
    causes: list[Cause] = []
    for finalizer in as_list(as_dict(ns.get("spec")).get("finalizers")):
        finalizer = str(finalizer)
        causes += validate_names(finalizer, "spec.finalizers", is_qualified_name)
        if "/" not in finalizer and finalizer not in _STANDARD_FINALIZERS:
            causes.append(invalid_value("spec.finalizers", finalizer,
                                        "name is neither a standard finalizer name nor is it "
                                        "fully qualified"))
    return causes


def validate_node(node: dict) -> list[Cause]:
    spec = as_dict(node.get("spec"))
    causes: list[Cause] = []
    for i, cidr in enumerate(as_list(spec.get("podCIDRs"))):
        try:
            ipaddress.ip_network(str(cidr), strict=False)
        except ValueError:
            causes.append(invalid_value(f"spec.podCIDRs[{i}]", cidr, "must be a valid CIDR"))
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(as_list(spec.get("taints"))):
        taint = as_dict(taint)
        at = f"spec.taints[{i}]"
        causes += validate_names(str(taint.get("key") or ""), f"{at}.key", is_qualified_name)
        causes += validate_names(str(taint.get("value") or ""), f"{at}.value", is_valid_label_value)
        causes += validate_taint_effect(taint.get("effect"), f"{at}.effect")
        key = (str(taint.get("key")), str(taint.get("effect")))
        if key in seen:
            causes.append(duplicate(at, taint))
        seen.add(key)
    status = as_dict(node.get("status"))
    causes += validate_resource_list(status.get("capacity"), "status.capacity")
    causes += validate_resource_list(status.get("allocatable"), "status.allocatable")
    return causes


def validate_node_update(new: dict, old: dict) -> list[Cause]:
    spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    causes = []
    for key, path in (("podCIDRs", "spec.podCIDRs"), ("providerID", "spec.providerID")):
        if old_spec.get(key) and semantic(spec.get(key)) != semantic(old_spec.get(key)):
            name = "podCIDR" if key == "podCIDRs" else key
            causes.append(forbidden(path, f'node updates may not change {name} except from "" '
                                    "to valid"))
    return causes


_PV_SOURCES = ("awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "csi", "fc",
               "flexVolume", "flocker", "gcePersistentDisk", "glusterfs", "hostPath", "iscsi",
               "local", "nfs", "photonPersistentDisk", "portworxVolume", "quobyte", "rbd",
               "scaleIO", "storageos", "vsphereVolume")


def _validate_access_modes(modes: Any, path: str, detail: str = "") -> list[Cause]:
    modes = as_list(modes)
    causes = [] if modes else [required(path, detail)]
    return causes + [not_supported(path, m, ACCESS_MODES) for m in modes if m not in ACCESS_MODES]


def _validate_volume_mode(mode: Any, path: str) -> list[Cause]:
    if mode is not None and mode not in VOLUME_MODES:
        return [not_supported(path, mode, VOLUME_MODES)]
    return []


def validate_persistent_volume(pv: dict) -> list[Cause]:
    spec = as_dict(pv.get("spec"))
    causes = _validate_access_modes(spec.get("accessModes"), "spec.accessModes")
    capacity = as_dict(spec.get("capacity"))
    if not capacity:
        causes.append(required("spec.capacity"))
    if "storage" not in capacity or len(capacity) > 1:
        causes.append(not_supported("spec.capacity", capacity, ("storage",)))
    causes += validate_resource_list(capacity, "spec.capacity", positive=True)
    policy = spec.get("persistentVolumeReclaimPolicy")
    if policy and policy not in ("Delete", "Recycle", "Retain"):
        causes.append(not_supported("spec.persistentVolumeReclaimPolicy", policy,
                                    ("Delete", "Recycle", "Retain")))
    sources = [key for key in _PV_SOURCES if spec.get(key) is not None]
    if not sources:
        causes.append(required("spec", "must specify a volume type"))
    causes += [forbidden(f"spec.{key}", "may not specify more than 1 volume type")
               for key in sources[1:]]
    if "hostPath" in sources and not as_dict(spec["hostPath"]).get("path"):
        causes.append(required("spec.hostPath.path"))
    if "local" in sources and not spec.get("nodeAffinity"):
        causes.append(required("spec.nodeAffinity", "Local volume requires node affinity"))
    return causes + _validate_volume_mode(spec.get("volumeMode"), "spec.volumeMode")


def validate_persistent_volume_update(new: dict, old: dict) -> list[Cause]:
    spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    causes = []
    sources = {k: spec.get(k) for k in _PV_SOURCES}
    if semantic(sources) != semantic({k: old_spec.get(k) for k in _PV_SOURCES}):
        causes.append(forbidden("spec.persistentvolumesource",
                                "spec.persistentvolumesource is immutable after creation"))
    return causes + immutable("volumeMode", spec.get("volumeMode"), old_spec.get("volumeMode"))


def validate_persistent_volume_claim(pvc: dict) -> list[Cause]:
    spec = as_dict(pvc.get("spec"))
    causes = _validate_access_modes(spec.get("accessModes"), "spec.accessModes",
                                    "at least 1 access mode is required")
    if spec.get("selector") is not None:
        causes += validate_label_selector(spec["selector"], "spec.selector")
    requests = as_dict(as_dict(spec.get("resources")).get("requests"))
    if "storage" not in requests:
        causes.append(required("spec.resources[storage]"))
    else:
        amount = quantity(requests["storage"], "spec.resources[storage]", causes)
        if amount is not None and amount <= 0:
            causes.append(invalid_value("spec.resources[storage]", shown(requests["storage"]),
                                        NOT_POSITIVE))
    class_name = spec.get("storageClassName")
    if class_name:
        causes += validate_names(class_name, "spec.storageClassName", is_dns1123_subdomain)
    return causes + _validate_volume_mode(spec.get("volumeMode"), "spec.volumeMode")


def validate_persistent_volume_claim_update(new: dict, old: dict) -> list[Cause]:
    """A claim's spec is fixed but for storage requests (when bound) and a first volumeName."""
    spec, old_spec = dict(as_dict(new.get("spec"))), dict(as_dict(old.get("spec")))
    causes: list[Cause] = []
    if not old_spec.get("volumeName"):
        old_spec["volumeName"] = spec.get("volumeName")
    for key in ("volumeAttributesClassName",):
        old_spec[key] = spec.get(key)
    bound = as_dict(new.get("status")).get("phase") == "Bound"
    if bound:
        old_requests = as_dict(as_dict(old_spec.get("resources")).get("requests"))
        new_resources = dict(as_dict(spec.get("resources")))
        new_requests = dict(as_dict(new_resources.get("requests")))
        new_size, old_size = new_requests.get("storage"), old_requests.get("storage")
        if new_size is not None and old_size is not None:
            grown, before = quantity(new_size, "", []), quantity(old_size, "", [])
            if grown is not None and before is not None and grown < before:
                causes.append(forbidden("spec.resources.requests.storage",
                                        "field can not be less than previous value"))
        new_requests["storage"] = old_size
        new_resources["requests"] = new_requests
        spec["resources"] = new_resources
    if semantic(spec) != semantic(old_spec):
        causes.append(forbidden("spec", "spec is immutable after creation except "
                                "resources.requests and volumeAttributesClassName for bound claims"))
    return causes


_QUOTA_RESOURCES = frozenset({
    "pods", "services", "replicationcontrollers", "resourcequotas", "secrets", "configmaps",
    "persistentvolumeclaims", "services.nodeports", "services.loadbalancers", "cpu", "memory",
    "ephemeral-storage", "storage", "requests.cpu", "requests.memory", "requests.storage",
    "requests.ephemeral-storage", "limits.cpu", "limits.memory", "limits.ephemeral-storage"})
_QUOTA_SCOPES = ("BestEffort", "CrossNamespacePodAffinity", "NotBestEffort", "NotTerminating",
                 "PriorityClass", "Terminating")


def validate_resource_quota(quota: dict) -> list[Cause]:
    spec = as_dict(quota.get("spec"))
    causes: list[Cause] = []
    for name in as_dict(spec.get("hard")):
        standard = (name in _QUOTA_RESOURCES or "/" in name
                    or name.startswith(("hugepages-", "requests.hugepages-", "count/")))
        if not standard:
            causes.append(invalid_value(f"spec.hard[{name}]", name,
                                        "must be a standard resource for quota"))
    causes += validate_resource_list(spec.get("hard"), "spec.hard")
    for i, scope in enumerate(as_list(spec.get("scopes"))):
        if scope not in _QUOTA_SCOPES:
            causes.append(not_supported(f"spec.scopes[{i}]", scope, _QUOTA_SCOPES))
    return causes


_LIMIT_FIELDS = ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio")


def validate_limit_range(limit_range: dict) -> list[Cause]:
    causes: list[Cause] = []
    types: set[str] = set()
    for i, item in enumerate(as_list(as_dict(limit_range.get("spec")).get("limits"))):
        item = as_dict(item)
        at = f"spec.limits[{i}]"
        kind = str(item.get("type") or "")
        causes += validate_names(kind, f"{at}.type", is_qualified_name)
        if kind and "/" not in kind and kind not in ("Container", "Pod", "PersistentVolumeClaim"):
            causes.append(invalid_value(f"{at}.type", kind,
                                        "must be a standard limit type or fully qualified"))
        if kind in types:
            causes.append(duplicate(f"{at}.type", kind))
        types.add(kind)
        values: dict[str, dict[str, Decimal]] = {}
        for key in _LIMIT_FIELDS:
            causes += validate_resource_list(item.get(key), f"{at}.{key}")
            values[key] = {r: q for r, v in as_dict(item.get(key)).items()
                           if (q := quantity(v, "", [])) is not None}
            if kind == "Pod" and key in ("default", "defaultRequest") and values[key]:
                causes.append(forbidden(f"{at}.{key}", "may not be specified when `type` is 'Pod'"))
        causes += _limit_range_order(item, values, at)
    return causes


def _limit_range_order(item: dict, values: dict[str, dict[str, Decimal]], at: str) -> list[Cause]:
    """min <= defaultRequest <= default <= max for each resource; ratios at least 1."""
    causes: list[Cause] = []
    checks = (("min", "max", "min", "min value {a} is greater than max value {b}"),
              ("min", "defaultRequest", "defaultRequest",
               "min value {a} is greater than default request value {b}"),
              ("defaultRequest", "max", "defaultRequest",
               "default request value {a} is greater than max value {b}"),
              ("defaultRequest", "default", "defaultRequest",
               "default request value {a} is greater than default limit value {b}"),
              ("min", "default", "default", "min value {a} is greater than default value {b}"),
              ("default", "max", "default", "default value {a} is greater than max value {b}"))
    for low, high, where, message in checks:
        for name, amount in values[low].items():
            if name in values[high] and amount > values[high][name]:
                a, b = as_dict(item[low])[name], as_dict(item[high])[name]
                causes.append(invalid_value(f"{at}.{where}[{name}]", shown(a),
                                            message.format(a=shown(a), b=shown(b))))
    for name, ratio in values["maxLimitRequestRatio"].items():
        if ratio < 1:
            raw = shown(as_dict(item["maxLimitRequestRatio"])[name])
            causes.append(invalid_value(f"{at}.maxLimitRequestRatio[{name}]", raw,
                                        f"ratio {raw} is less than 1"))
    return causes


def validate_endpoints(endpoints: dict) -> list[Cause]:
    causes: list[Cause] = []
    for i, subset in enumerate(as_list(endpoints.get("subsets"))):
        subset = as_dict(subset)
        for key in ("addresses", "notReadyAddresses"):
            for j, address in enumerate(as_list(subset.get(key))):
                ip = as_dict(address).get("ip") or ""
                if not is_ip(ip):
                    causes.append(invalid_value(f"subsets[{i}].{key}[{j}].ip", ip, INVALID_IP))
        ports = as_list(subset.get("ports"))
        for j, port in enumerate(ports):
            port = as_dict(port)
            at = f"subsets[{i}].ports[{j}]"
            if len(ports) > 1 and not port.get("name"):
                causes.append(required(f"{at}.name"))
            elif port.get("name"):
                causes += validate_names(port["name"], f"{at}.name", is_dns1123_label)
            causes += validate_port_number(port.get("port"), f"{at}.port")
            causes += validate_protocol(port.get("protocol"), f"{at}.protocol")
    return causes


def validate_event(event: dict) -> list[Cause]:
    """A core/v1 Event lives in its involved object's namespace (or default, for old clients)."""
    namespace = as_dict(event.get("metadata")).get("namespace") or ""
    involved = as_dict(event.get("involvedObject")).get("namespace") or ""
    if (involved and namespace != involved) or (not involved and namespace not in ("", "default")):
        return [invalid_value("involvedObject.namespace", involved, "does not match event.namespace")]
    return []


# ---------------------------------------------------------------------------------------
# Small API groups: coordination, discovery, scheduling, node, storage.


def validate_lease(lease: dict) -> list[Cause]:
    spec = as_dict(lease.get("spec"))
    causes = []
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and (not is_int(duration) or duration <= 0):
        causes.append(invalid_value("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    causes += validate_nonnegative(spec.get("leaseTransitions"), "spec.leaseTransitions")
    return causes


_ADDRESS_TYPES = ("FQDN", "IPv4", "IPv6")


def validate_endpoint_slice(eps: dict) -> list[Cause]:
    causes: list[Cause] = []
    address_type = eps.get("addressType")
    causes += required_enum(address_type, "addressType", _ADDRESS_TYPES)
    endpoints = as_list(eps.get("endpoints"))
    if len(endpoints) > 1000:
        causes.append(too_many("endpoints", len(endpoints), 1000))
    for i, endpoint in enumerate(endpoints):
        endpoint = as_dict(endpoint)
        addresses = as_list(endpoint.get("addresses"))
        if not addresses:
            causes.append(required(f"endpoints[{i}].addresses", "must contain at least 1 address"))
        elif len(addresses) > 100:
            causes.append(too_many(f"endpoints[{i}].addresses", len(addresses), 100))
        for j, address in enumerate(addresses):
            causes += _endpoint_address(address, address_type, f"endpoints[{i}].addresses[{j}]")
        if endpoint.get("hostname"):
            causes += validate_names(endpoint["hostname"], f"endpoints[{i}].hostname",
                                     is_dns1123_label)
    names: set[str] = set()
    for i, port in enumerate(as_list(eps.get("ports"))):
        port = as_dict(port)
        name = port.get("name") or ""
        if name:
            causes += validate_names(name, f"ports[{i}].name", is_dns1123_label)
        if name in names:
            causes.append(duplicate(f"ports[{i}].name", name))
        names.add(name)
        causes += validate_protocol(port.get("protocol"), f"ports[{i}].protocol")
        if port.get("port") is not None:
            causes += validate_port_number(port["port"], f"ports[{i}].port")
    return causes


def _endpoint_address(address: Any, address_type: Any, path: str) -> list[Cause]:
    if address_type == "FQDN":
        return validate_names(str(address).rstrip("."), path, is_dns1123_subdomain)
    version = {"IPv4": 4, "IPv6": 6}.get(str(address_type))
    if version is None:
        return []
    try:
        ok = ipaddress.ip_address(str(address)).version == version
    except ValueError:
        ok = False
    return [] if ok else [invalid_value(path, address, f"must be a valid {address_type} address")]


def validate_endpoint_slice_update(new: dict, old: dict) -> list[Cause]:
    return immutable("addressType", new.get("addressType"), old.get("addressType"))


_HIGHEST_USER_PRIORITY = 1_000_000_000
_SYSTEM_PRIORITY_CLASSES = {"system-node-critical": 2_000_001_000,
                            "system-cluster-critical": 2_000_000_000}


def validate_priority_class(pc: dict) -> list[Cause]:
    name = as_dict(pc.get("metadata")).get("name") or ""
    value = pc.get("value", 0)
    causes: list[Cause] = []
    if name.startswith("system-"):
        known = _SYSTEM_PRIORITY_CLASSES.get(name)
        error = (f"{name} is not a known system priority class" if known is None
                 else f"value of {name} PriorityClass must be {known}" if value != known
                 else f"globalDefault of {name} PriorityClass must be false"
                 if pc.get("globalDefault") else "")
        if error:
            causes.append(forbidden("metadata.name", "priority class names with 'system-' prefix "
                                    f"are reserved for system use only. error: {error}"))
    elif is_int(value) and value > _HIGHEST_USER_PRIORITY:
        causes.append(forbidden("value", "maximum allowed value of a user defined priority is "
                                f"{_HIGHEST_USER_PRIORITY}"))
    policy = pc.get("preemptionPolicy")
    if policy is not None and policy not in ("Never", "PreemptLowerPriority"):
        causes.append(not_supported("preemptionPolicy", policy, ("Never", "PreemptLowerPriority")))
    return causes


def validate_priority_class_update(new: dict, old: dict) -> list[Cause]:
    causes = [] if new.get("value", 0) == old.get("value", 0) else [
        forbidden("value", "may not be changed in an update.")]
    return causes + immutable("preemptionPolicy", new.get("preemptionPolicy"),
                              old.get("preemptionPolicy"))


def validate_runtime_class(rc: dict) -> list[Cause]:
    causes = validate_names(str(rc.get("handler") or ""), "handler", is_dns1123_label)
    overhead = as_dict(rc.get("overhead"))
    causes += validate_resource_list(overhead.get("podFixed"), "overhead.podFixed")
    scheduling = as_dict(rc.get("scheduling"))
    causes += validate_labels(scheduling.get("nodeSelector"), "scheduling.nodeSelector")
    return causes + validate_tolerations(scheduling.get("tolerations"), "scheduling.tolerations")


def validate_runtime_class_update(new: dict, old: dict) -> list[Cause]:
    return immutable("handler", new.get("handler"), old.get("handler"))


def validate_storage_class(sc: dict) -> list[Cause]:
    causes: list[Cause] = []
    provisioner = sc.get("provisioner") or ""
    if not provisioner:
        causes.append(required("provisioner"))
    else:
        causes += [invalid_value("provisioner", provisioner.lower(), msg)
                   for msg in is_qualified_name(provisioner.lower())]
    policy = sc.get("reclaimPolicy")
    if policy and policy not in ("Delete", "Retain"):
        causes.append(not_supported("reclaimPolicy", policy, ("Delete", "Retain")))
    mode = sc.get("volumeBindingMode")
    causes += required_enum(mode, "volumeBindingMode", ("Immediate", "WaitForFirstConsumer"))
    return causes


def validate_storage_class_update(new: dict, old: dict) -> list[Cause]:
    causes = [forbidden(key, f"updates to {key} are forbidden.")
              for key in ("parameters", "provisioner", "reclaimPolicy")
              if semantic(new.get(key)) != semantic(old.get(key))]
    return causes + immutable("volumeBindingMode", new.get("volumeBindingMode"),
                              old.get("volumeBindingMode"))


# ---------------------------------------------------------------------------------------
# rbac.authorization.k8s.io


def _validate_policy_rules(obj: dict, *, namespaced: bool) -> list[Cause]:
    causes: list[Cause] = []
    for i, rule in enumerate(as_list(obj.get("rules"))):
        rule = as_dict(rule)
        at = f"rules[{i}]"
        if not as_list(rule.get("verbs")):
            causes.append(required(f"{at}.verbs", "verbs must contain at least one value"))
        urls = as_list(rule.get("nonResourceURLs"))
        if urls:
            if namespaced:
                causes.append(invalid_value(f"{at}.nonResourceURLs", urls,
                                            "namespaced rules cannot apply to non-resource URLs"))
            if any(as_list(rule.get(k)) for k in ("apiGroups", "resources", "resourceNames")):
                causes.append(invalid_value(
                    f"{at}.nonResourceURLs", urls,
                    "rules cannot apply to both regular resources and non-resource URLs"))
            continue
        if not as_list(rule.get("apiGroups")):
            causes.append(required(f"{at}.apiGroups",
                                   "resource rules must supply at least one api group"))
        if not as_list(rule.get("resources")):
            causes.append(required(f"{at}.resources",
                                   "resource rules must supply at least one resource"))
    return causes


def validate_role(role: dict) -> list[Cause]:
    return _validate_policy_rules(role, namespaced=True)


def validate_cluster_role(role: dict) -> list[Cause]:
    causes = _validate_policy_rules(role, namespaced=False)
    aggregation = role.get("aggregationRule")
    if aggregation is not None:
        selectors = as_list(as_dict(aggregation).get("clusterRoleSelectors"))
        if not selectors:
            causes.append(required("aggregationRule.clusterRoleSelectors",
                                   "at least one clusterRoleSelector required if aggregationRule "
                                   "is non-nil"))
        for i, selector in enumerate(selectors):
            causes += validate_label_selector(selector, f"aggregationRule.clusterRoleSelectors[{i}]")
    return causes


def _validate_binding(binding: dict, *, namespaced: bool) -> list[Cause]:
    ref = as_dict(binding.get("roleRef"))
    causes: list[Cause] = []
    if ref.get("apiGroup") != RBAC_GROUP:
        causes.append(not_supported("roleRef.apiGroup", ref.get("apiGroup") or "", (RBAC_GROUP,)))
    kinds = ("Role", "ClusterRole") if namespaced else ("ClusterRole",)
    if ref.get("kind") not in kinds:
        causes.append(not_supported("roleRef.kind", ref.get("kind") or "", kinds))
    name = ref.get("name") or ""
    if not name:
        causes.append(required("roleRef.name"))
    else:
        causes += [invalid_value("roleRef.name", name, m) for m in _path_segment(name, False)]
    for i, subject in enumerate(as_list(binding.get("subjects"))):
        causes += _validate_subject(as_dict(subject), f"subjects[{i}]", namespaced=namespaced)
    return causes


def _validate_subject(subject: dict, at: str, *, namespaced: bool) -> list[Cause]:
    causes: list[Cause] = []
    name, kind, group = subject.get("name") or "", subject.get("kind"), subject.get("apiGroup") or ""
    if not name:
        causes.append(required(f"{at}.name"))
    if kind == "ServiceAccount":
        if name:
            causes += validate_names(name, f"{at}.name", is_dns1123_subdomain)
        if group:
            causes.append(not_supported(f"{at}.apiGroup", group, ("",)))
        if not namespaced and not subject.get("namespace"):
            causes.append(required(f"{at}.namespace"))
    elif kind in ("User", "Group"):
        if group != RBAC_GROUP:
            causes.append(not_supported(f"{at}.apiGroup", group, (RBAC_GROUP,)))
    else:
        causes.append(not_supported(f"{at}.kind", kind or "", ("ServiceAccount", "User", "Group")))
    return causes


def validate_role_binding(binding: dict) -> list[Cause]:
    return _validate_binding(binding, namespaced=True)


def validate_cluster_role_binding(binding: dict) -> list[Cause]:
    return _validate_binding(binding, namespaced=False)


def validate_binding_update(new: dict, old: dict) -> list[Cause]:
    if semantic(new.get("roleRef")) != semantic(old.get("roleRef")):
        return [invalid_value("roleRef", new.get("roleRef"), "cannot change roleRef")]
    return []


# ---------------------------------------------------------------------------------------
# The tables the API server consults. Pods, apps and batch come from validation_workloads,
# networking.k8s.io from validation_networking, admissionregistration.k8s.io from
# validation_admissionregistration.

from .validation_admissionregistration import (  # noqa: E402 -- it builds on the checks above
    ADMISSION_VALIDATORS,
)
from .validation_autoscaling import (  # noqa: E402 -- it builds on the checks above
    AUTOSCALING_VALIDATORS,
)
from .validation_networking import (  # noqa: E402 -- it builds on the checks above
    NETWORKING_VALIDATORS,
    NETWORKING_WARNINGS,
    Warner,
)
from .validation_workloads import (  # noqa: E402 -- it builds on the checks above
    WORKLOAD_UPDATE_VALIDATORS,
    WORKLOAD_VALIDATORS,
)

VALIDATORS: dict[tuple[str, str], Validator] = {
    ("", "Service"): validate_service,
    ("", "ConfigMap"): validate_config_map,
    ("", "Secret"): validate_secret,
    ("", "Namespace"): validate_namespace,
    ("", "Node"): validate_node,
    ("", "PersistentVolume"): validate_persistent_volume,
    ("", "PersistentVolumeClaim"): validate_persistent_volume_claim,
    ("", "ResourceQuota"): validate_resource_quota,
    ("", "LimitRange"): validate_limit_range,
    ("", "Endpoints"): validate_endpoints,
    ("", "Event"): validate_event,
    ("coordination.k8s.io", "Lease"): validate_lease,
    ("discovery.k8s.io", "EndpointSlice"): validate_endpoint_slice,
    ("scheduling.k8s.io", "PriorityClass"): validate_priority_class,
    ("node.k8s.io", "RuntimeClass"): validate_runtime_class,
    ("storage.k8s.io", "StorageClass"): validate_storage_class,
    (RBAC_GROUP, "Role"): validate_role,
    (RBAC_GROUP, "ClusterRole"): validate_cluster_role,
    (RBAC_GROUP, "RoleBinding"): validate_role_binding,
    (RBAC_GROUP, "ClusterRoleBinding"): validate_cluster_role_binding,
    **WORKLOAD_VALIDATORS,
    **NETWORKING_VALIDATORS,
    **ADMISSION_VALIDATORS,
    **AUTOSCALING_VALIDATORS,
}

UPDATE_VALIDATORS: dict[tuple[str, str], UpdateValidator] = {
    ("", "Service"): validate_service_update,
    ("", "ConfigMap"): validate_config_map_update,
    ("", "Secret"): validate_secret_update,
    ("", "Node"): validate_node_update,
    ("", "PersistentVolume"): validate_persistent_volume_update,
    ("", "PersistentVolumeClaim"): validate_persistent_volume_claim_update,
    ("discovery.k8s.io", "EndpointSlice"): validate_endpoint_slice_update,
    ("scheduling.k8s.io", "PriorityClass"): validate_priority_class_update,
    ("node.k8s.io", "RuntimeClass"): validate_runtime_class_update,
    ("storage.k8s.io", "StorageClass"): validate_storage_class_update,
    (RBAC_GROUP, "RoleBinding"): validate_binding_update,
    (RBAC_GROUP, "ClusterRoleBinding"): validate_binding_update,
    **WORKLOAD_UPDATE_VALIDATORS,
}

WARNINGS: dict[tuple[str, str], Warner] = {
    **NETWORKING_WARNINGS,
}

__all__ = ["NAME_RULES", "UPDATE_VALIDATORS", "VALIDATORS", "WARNINGS", "validate_object_meta",
           "validate_object_meta_update"]
