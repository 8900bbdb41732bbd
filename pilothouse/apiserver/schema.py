"""OpenAPI v3 structural schemas applied to plain JSON objects.

This module owns what the apiextensions-apiserver does with a CustomResourceDefinition's
`openAPIV3Schema` on every custom-resource write, and the static checks a CRD's schema must
pass before it is accepted:

- `prune` drops fields the schema does not declare (and ObjectMeta fields that do not exist),
  returning their paths for strict field validation (`unknown field "spec.foo"`);
- `apply_defaults` fills in `default` values where a field is absent;
- `validate` checks a value against the schema and reports Kubernetes-worded field causes
  (`spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer:
  "string"`), including embedded resources and `x-kubernetes-list-type` uniqueness;
- `is_structural` runs the structural-schema rules and the other schema rules a CRD must meet.

The request path runs prune -> apply_defaults -> validate, in that order, as the real server
does. Nothing here knows about CRDs beyond the schema, so built-in kinds with generated schemas
use the same functions. Schemas are plain mappings with the JSON field names.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Any

from pilothouse.machinery import names
from pilothouse.machinery.errors import (
    DUPLICATE,
    INVALID,
    NOT_SUPPORTED,
    TOO_LONG,
    TOO_MANY,
    TYPE_INVALID,
    Cause,
    forbidden,
    required,
)

EMBEDDED = "x-kubernetes-embedded-resource"
PRESERVE = "x-kubernetes-preserve-unknown-fields"
INT_OR_STRING = "x-kubernetes-int-or-string"
LIST_TYPE = "x-kubernetes-list-type"
LIST_MAP_KEYS = "x-kubernetes-list-map-keys"
MAP_TYPE = "x-kubernetes-map-type"
VALIDATIONS = "x-kubernetes-validations"

_META_FIELDS = frozenset({"apiVersion", "kind", "metadata"})
_OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields",
})
# Fields of the structs nested in ObjectMeta, which strict decoding also checks.
_OBJECT_META_LISTS = {
    "ownerReferences": frozenset({
        "apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion",
    }),
    "managedFields": frozenset({
        "manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1", "subresource",
    }),
}
_OPENAPI_V3_TYPES = ("array", "boolean", "integer", "number", "object", "string")
_INT_OR_STRING_TYPES = ("integer", "string")
_INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]
_ANNOTATIONS_MAX_BYTES = 256 * 1024
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
CEL_UNSUPPORTED = (
    "CEL validation rules are not supported by this server yet; remove "
    "x-kubernetes-validations from the schema"
)


# ---------------------------------------------------------------------------------------------
# How Kubernetes prints values in field errors.


def render_value(value: Any) -> str:
    """A bad value as a Kubernetes field error prints it: Go `%v` for numbers, `%q` for
    strings, JSON for lists and objects."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)


def _go_float(x: float) -> str:
    """Go's `%v` for a float64: shortest digits, exponent form below 1e-4 and from 1e+06."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(x)).normalize().as_tuple()
    text = "".join(map(str, digits))
    exp = len(digits) + int(exponent) - 1
    neg = "-" if sign else ""
    if exp < -4 or exp >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{neg}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp < 0:
        return f"{neg}0.{'0' * (-exp - 1)}{text}"
    whole, frac = text[: exp + 1], text[exp + 1 :]
    return f"{neg}{whole.ljust(exp + 1, '0')}{'.' + frac if frac else ''}"


def value_cause(reason: str, field: str, value: Any, detail: str) -> Cause:
    """A field cause that shows the bad value (`Invalid value: 3: detail`), printed as
    Kubernetes prints it; `reason` is one of the errors.py reasons."""
    prefix = {NOT_SUPPORTED: "Unsupported value", DUPLICATE: "Duplicate value", TOO_MANY: "Too many"}
    head = prefix.get(reason, "Invalid value")
    return Cause(field, f"{head}: {render_value(value)}" + (f": {detail}" if detail else ""), reason)


def _too_many(field: str, actual: int, limit: int) -> Cause:
    unit = "item" if limit == 1 else "items"
    return value_cause(TOO_MANY, field, actual, f"must have at most {limit} {unit}")


def _too_long(field: str, limit: int) -> Cause:
    unit = "byte" if limit == 1 else "bytes"
    return Cause(field, f"Too long: may not be more than {limit} {unit}", TOO_LONG)


def _unique(causes: list[Cause]) -> list[Cause]:
    return list(dict.fromkeys(causes))


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _json_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_copy(v) for v in value]
    return value


def _json_key(value: Any) -> str:
    """Identity of a JSON value for uniqueness checks (keeps 1, 1.0 and true apart)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


# ---------------------------------------------------------------------------------------------
# Regular expressions and string formats.


@lru_cache(maxsize=2048)
def _compile(pattern: str) -> re.Pattern[str] | str:
    """The compiled pattern, or the compiler's complaint when it is not a valid regex."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        return str(exc)


def _is_date(s: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
        return False
    try:
        date(int(s[:4]), int(s[5:7]), int(s[8:10]))
    except ValueError:
        return False
    return True


_TIME = re.compile(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$")


def _is_date_time(s: str) -> bool:
    parts = s.lower().split("t")
    if len(s) < 4 or len(parts) < 2 or not _is_date(parts[0]):
        return False
    m = _TIME.match(parts[1])
    return bool(m) and m[1] <= "23" and m[2] <= "59" and m[3] <= "59"


def _is_ipv4(s: str) -> bool:
    parts = s.split(".")
    return len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts)


def _is_ipv6(s: str) -> bool:
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return True


def _is_cidr(s: str) -> bool:
    if "/" not in s:
        return False
    try:
        ipaddress.ip_network(s, strict=False)
    except ValueError:
        return False
    return True


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _is_credit_card(s: str) -> bool:
    digits = re.sub(r"[^0-9]", "", s)
    return bool(_CREDIT_CARD.fullmatch(digits)) and _luhn(digits)


def _is_isbn10(s: str) -> bool:
    s = re.sub(r"[\s-]", "", s)
    if not re.fullmatch(r"[0-9]{9}[0-9X]", s):
        return False
    total = sum((10 - i) * (10 if c == "X" else int(c)) for i, c in enumerate(s))
    return total % 11 == 0


def _is_isbn13(s: str) -> bool:
    s = re.sub(r"[\s-]", "", s)
    if not re.fullmatch(r"[0-9]{13}", s):
        return False
    total = sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(s))
    return total % 10 == 0


def _is_hostname(s: str) -> bool:
    return len(s) <= 255 and bool(_HOSTNAME.match(s)) and all(len(p) <= 63 for p in s.split("."))


_ALNUM = r"[^\W_]"
_HOSTNAME = re.compile(
    rf"^({_ALNUM}((-?{_ALNUM}{{0,62}})?)|({_ALNUM}(((?:{_ALNUM}|-){{0,61}}{_ALNUM})?)(\.)){{1,}}"
    r"([^\W\d_]){2,63})$"
)
_CREDIT_CARD = re.compile(
    r"(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|(222[1-9]|22[3-9][0-9]|2[3-6][0-9]{2}|27[01]"
    r"[0-9]|2720)[0-9]{12}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])"
    r"[0-9]{11}|(?:2131|1800|35\d{3})\d{11}|6[27][0-9]{14})"
)
_RGB = r"\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*"
_GO_DURATION = re.compile(r"[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+|[-+]?0")
_SCALA_DURATION = re.compile(
    r"(\d+)\s*(ns|nano|nanos|nanosecond|nanoseconds|us|micro|micros|microsecond|microseconds|"
    r"ms|milli|millis|millisecond|milliseconds|s|sec|secs|second|seconds|m|min|mins|minute|"
    r"minutes|h|hr|hrs|hour|hours|d|day|days|w|wk|wks|week|weeks)"
)


def _regex(pattern: str, flags: int = 0) -> Callable[[str], bool]:
    compiled = re.compile(pattern, flags)
    return lambda s: compiled.fullmatch(s) is not None


_UUID = r"[0-9a-f]{8}-?[0-9a-f]{4}-?%s[0-9a-f]{3}-?%s[0-9a-f]{3}-?[0-9a-f]{12}"
_MAC = (
    r"([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}|([0-9a-fA-F]{2}[:-]){7}[0-9a-fA-F]{2}|"
    r"([0-9a-fA-F]{2}[:-]){19}[0-9a-fA-F]{2}|([0-9a-fA-F]{4}\.){2}[0-9a-fA-F]{4}|"
    r"([0-9a-fA-F]{4}\.){3}[0-9a-fA-F]{4}|([0-9a-fA-F]{4}\.){9}[0-9a-fA-F]{4}"
)

# The string formats the Kubernetes API server checks, keyed by name without dashes (as
# go-openapi normalizes them); any other format is ignored, as the server strips it.
_FORMATS: dict[str, Callable[[str], bool]] = {
    "bsonobjectid": _regex(r"[0-9a-fA-F]{24}"),
    "uri": _regex(r"[a-zA-Z][a-zA-Z0-9+.-]*:[^\s]*|/[^\s]*"),
    "email": _regex(r"[^@\s<>]+@[^@\s<>]+|[^<>]*<[^@\s<>]+@[^@\s<>]+>"),
    "hostname": _is_hostname,
    "ipv4": _is_ipv4,
    "ipv6": lambda s: ":" in s and _is_ipv6(s),
    "cidr": _is_cidr,
    "mac": _regex(_MAC),
    "uuid": _regex(_UUID % ("[0-9a-f]", "[0-9a-f]"), re.IGNORECASE),
    "uuid3": _regex(_UUID % ("3", "[0-9a-f]"), re.IGNORECASE),
    "uuid4": _regex(_UUID % ("4", "[89ab]"), re.IGNORECASE),
    "uuid5": _regex(_UUID % ("5", "[89ab]"), re.IGNORECASE),
    "isbn": lambda s: _is_isbn10(s) or _is_isbn13(s),
    "isbn10": _is_isbn10,
    "isbn13": _is_isbn13,
    "creditcard": _is_credit_card,
    "ssn": _regex(r"\d{3}[- ]?\d{2}[- ]?\d{4}"),
    "hexcolor": _regex(r"#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})"),
    "rgbcolor": _regex(rf"rgb\({_RGB},{_RGB},{_RGB}\)"),
    "byte": _regex(
        r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})"
    ),
    "password": lambda s: True,
    "date": _is_date,
    "duration": lambda s: bool(_GO_DURATION.fullmatch(s) or _SCALA_DURATION.fullmatch(s)),
    "datetime": _is_date_time,
}


# ---------------------------------------------------------------------------------------------
# Validation.


def _json_type(value: Any) -> str:
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return "null" if value is None else type(value).__name__


def _types(s: Mapping[str, Any]) -> tuple[str, ...]:
    if s.get(INT_OR_STRING):
        return _INT_OR_STRING_TYPES
    t = s.get("type")
    return (t,) if t else ()


def _type_ok(actual: str, value: Any, types: tuple[str, ...]) -> bool:
    if actual in types:
        return True
    if actual == "number" and "integer" in types:
        return value.is_integer()
    return actual == "integer" and "number" in types


def _subject(name: str) -> str:
    return f"{name} in body" if name else "body"


def validate(obj: Any, schema: Mapping[str, Any], *, path: str = "") -> list[Cause]:
    """Every way `obj` breaks `schema`, as Kubernetes words it; `path` prefixes field paths."""
    out: list[Cause] = []
    _validate(obj, schema, path, out)
    return _unique(out)


def _validate(value: Any, s: Mapping[str, Any], name: str, out: list[Cause]) -> None:
    types = _types(s)
    enum = s.get("enum")
    if value is None:
        if types and not s.get("nullable"):
            out.append(_type_error(name, types, "null"))
        elif enum and None not in enum:
            out.append(_not_in_enum(name, value, enum))
        return
    actual = _json_type(value)
    if types and not _type_ok(actual, value, types):
        out.append(_type_error(name, types, actual))
        return

    _validate_composition(value, s, name, out)
    if actual == "string":
        _validate_string(value, s, types, name, out)
    elif actual in ("integer", "number"):
        _validate_number(value, s, types, name, out)
    elif actual == "array":
        _validate_array(value, s, name, out)
    if enum is not None and not _in_enum(value, enum):
        out.append(_not_in_enum(name, value, enum))
    if actual == "object":
        _validate_object(value, s, name, out)


def _type_error(name: str, types: tuple[str, ...], actual: str) -> Cause:
    detail = f'{_subject(name)} must be of type {",".join(types)}: "{actual}"'
    return value_cause(TYPE_INVALID, name, actual, detail)


def _in_enum(value: Any, enum: list[Any]) -> bool:
    for allowed in enum:
        if value == allowed and (isinstance(value, bool) == isinstance(allowed, bool)):
            return True
    return False


def _not_in_enum(name: str, value: Any, enum: list[Any]) -> Cause:
    options = ", ".join(
        json.dumps(v if isinstance(v, str) else render_value(v), ensure_ascii=False) for v in enum
    )
    return value_cause(NOT_SUPPORTED, name, value, f"supported values: {options}")


def _validate_composition(value: Any, s: Mapping[str, Any], name: str, out: list[Cause]) -> None:
    quoted = json.dumps(name)
    any_of = s.get("anyOf")
    if any_of:
        best: list[Cause] | None = None
        for sub in any_of:
            errs: list[Cause] = []
            _validate(value, sub, name, errs)
            if not errs:
                best = None
                break
            if best is None or len(errs) < len(best):
                best = errs
        if best is not None:
            out.append(value_cause(INVALID, name, "", f"{quoted} must validate at least one schema (anyOf)"))
            out.extend(best)
    one_of = s.get("oneOf")
    if one_of:
        valid = 0
        best = None
        for sub in one_of:
            errs = []
            _validate(value, sub, name, errs)
            if not errs:
                valid += 1
            elif best is None or len(errs) < len(best):
                best = errs
        if valid != 1:
            found = "Found none valid" if valid == 0 else f"Found {valid} valid alternatives"
            detail = f"{quoted} must validate one and only one schema (oneOf). {found}"
            out.append(value_cause(INVALID, name, "", detail))
            if valid == 0 and best:
                out.extend(best)
    all_of = s.get("allOf")
    if all_of:
        valid = 0
        for sub in all_of:
            errs = []
            _validate(value, sub, name, errs)
            valid += not errs
            out.extend(errs)
        if valid != len(all_of):
            none = ". None validated" if valid == 0 else ""
            out.append(value_cause(INVALID, name, "", f"{quoted} must validate all the schemas (allOf){none}"))
    not_schema = s.get("not")
    if not_schema is not None:
        errs = []
        _validate(value, not_schema, name, errs)
        if not errs:
            out.append(value_cause(INVALID, name, "", f"{quoted} must not validate the schema (not)"))


def _validate_string(
    value: str, s: Mapping[str, Any], types: tuple[str, ...], name: str, out: list[Cause]
) -> None:
    max_length = s.get("maxLength")
    min_length = s.get("minLength")
    pattern = s.get("pattern")
    if max_length is not None and len(value) > max_length:
        out.append(_too_long(name, max_length))
    elif min_length is not None and len(value) < min_length:
        detail = f"{_subject(name)} should be at least {min_length} chars long"
        out.append(value_cause(INVALID, name, value, detail))
    elif pattern:
        compiled = _compile(pattern)
        if isinstance(compiled, str):
            detail = f"{_subject(name)} should match '{pattern}, but pattern is invalid: {compiled}'"
            out.append(value_cause(INVALID, name, value, detail))
        elif compiled.search(value) is None:
            out.append(value_cause(INVALID, name, value, f"{_subject(name)} should match '{pattern}'"))
    fmt = s.get("format")
    if fmt and (not types or types == ("string",)):
        check = _FORMATS.get(fmt.replace("-", ""))
        if check is not None and not check(value):
            detail = f"{_subject(name)} must be of type {fmt}: {json.dumps(value, ensure_ascii=False)}"
            out.append(value_cause(TYPE_INVALID, name, value, detail))


def _bound(limit: float, value: int | float) -> str:
    if isinstance(value, int) and float(limit).is_integer():
        return str(int(limit))
    return _go_float(float(limit))


def _validate_number(
    value: int | float, s: Mapping[str, Any], types: tuple[str, ...], name: str, out: list[Cause]
) -> None:
    if types == ("integer",):
        fmt = s.get("format")
        low, high = _INT32 if fmt == "int32" else _INT64
        if not low <= value <= high:
            shown = f"with format {fmt}" if fmt in ("int32", "int64") else "(default format)"
            detail = f"Checked value must be of type integer {shown} in {name}"
            out.append(value_cause(INVALID, name, "", detail))
    subject = _subject(name)
    factor = s.get("multipleOf")
    if factor is not None:
        if factor <= 0:
            detail = f"factor MultipleOf declared for {name} must be positive: {_bound(factor, value)}"
            out.append(value_cause(INVALID, name, value, detail))
        elif not _is_multiple(value, factor):
            detail = f"{subject} should be a multiple of {_bound(factor, value)}"
            out.append(value_cause(INVALID, name, value, detail))
    maximum = s.get("maximum")
    if maximum is not None:
        if s.get("exclusiveMaximum") and value >= maximum:
            out.append(value_cause(INVALID, name, value, f"{subject} should be less than {_bound(maximum, value)}"))
        elif value > maximum:
            detail = f"{subject} should be less than or equal to {_bound(maximum, value)}"
            out.append(value_cause(INVALID, name, value, detail))
    minimum = s.get("minimum")
    if minimum is not None:
        if s.get("exclusiveMinimum") and value <= minimum:
            detail = f"{subject} should be greater than {_bound(minimum, value)}"
            out.append(value_cause(INVALID, name, value, detail))
        elif value < minimum:
            detail = f"{subject} should be greater than or equal to {_bound(minimum, value)}"
            out.append(value_cause(INVALID, name, value, detail))


def _is_multiple(value: int | float, factor: int | float) -> bool:
    if isinstance(value, int) and isinstance(factor, int):
        return value % factor == 0
    quotient = value * (1 / factor) if factor < 1 else value / factor
    if not math.isfinite(quotient):
        return False
    return abs(quotient - round(quotient)) <= 1e-9 * max(abs(quotient), 1.0)


def _validate_array(value: list[Any], s: Mapping[str, Any], name: str, out: list[Cause]) -> None:
    items = s.get("items")
    if isinstance(items, Mapping):
        for i, item in enumerate(value):
            _validate(item, items, f"{name}[{i}]", out)
    subject = _subject(name)
    size = len(value)
    min_items = s.get("minItems")
    if min_items is not None and size < min_items:
        out.append(value_cause(INVALID, name, size, f"{subject} should have at least {min_items} items"))
    max_items = s.get("maxItems")
    if max_items is not None and size > max_items:
        out.append(_too_many(name, size, max_items))
    if s.get("uniqueItems") and len({_json_key(v) for v in value}) != size:
        out.append(value_cause(INVALID, name, "", f"{subject} shouldn't contain duplicates"))
    list_type = s.get(LIST_TYPE)
    if list_type == "set":
        _validate_list_set(value, name, out)
    elif list_type == "map":
        _validate_list_map(value, s.get(LIST_MAP_KEYS) or [], name, out)


def _first_repeats(keys: list[str]) -> list[int]:
    """Indices where a key is seen for the second time (each duplicate reported once)."""
    seen: dict[str, int] = {}
    repeats = []
    for i, key in enumerate(keys):
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 2:
            repeats.append(i)
    return repeats


def _validate_list_set(value: list[Any], name: str, out: list[Cause]) -> None:
    for i in _first_repeats([_json_key(v) for v in value]):
        out.append(value_cause(DUPLICATE, f"{name}[{i}]", value[i], ""))


def _validate_list_map(value: list[Any], keys: list[str], name: str, out: list[Cause]) -> None:
    for i, item in enumerate(value):
        if item is not None and not isinstance(item, Mapping):
            detail = "must be an object for an array of list-type map"
            out.append(value_cause(INVALID, f"{name}[{i}]", item, detail))
            return
    entries = [{k: item[k] for k in keys if k in item} if item else {} for item in value]
    for i in _first_repeats([_json_key(e) for e in entries]):
        out.append(value_cause(DUPLICATE, f"{name}[{i}]", entries[i], ""))


def _validate_object(
    value: Mapping[str, Any], s: Mapping[str, Any], name: str, out: list[Cause]
) -> None:
    subject = _subject(name)
    count = len(value)
    min_props = s.get("minProperties")
    if min_props is not None and count < min_props:
        out.append(value_cause(INVALID, name, count, f"{subject} should have at least {min_props} properties"))
    max_props = s.get("maxProperties")
    if max_props is not None and count > max_props:
        out.append(_too_many(name, count, max_props))
    props = s.get("properties") or {}
    additional = s.get("additionalProperties")
    for key, item in value.items():
        sub = props.get(key)
        if sub is not None:
            _validate(item, sub, _child(name, key), out)
        elif additional is False:
            detail = f"{_child(name, key)} in body is a forbidden property"
            out.append(value_cause(INVALID, name, key, detail))
        elif isinstance(additional, Mapping):
            _validate(item, additional, _child(name, key), out)
    for key in s.get("required") or ():
        if key not in value:
            out.append(required(_child(name, key)))
    if s.get(EMBEDDED):
        _validate_embedded(value, name, out)


def _validate_embedded(value: Mapping[str, Any], name: str, out: list[Cause]) -> None:
    """TypeMeta and ObjectMeta of a resource embedded in another (a pod template, say)."""
    for key in ("apiVersion", "kind"):
        field = _child(name, key)
        item = value.get(key)
        if key not in value:
            out.append(required(field))
        elif not isinstance(item, str):
            out.append(value_cause(INVALID, field, item, "must be a string"))
        elif not item:
            out.append(value_cause(INVALID, field, item, "must not be empty"))
        elif key == "apiVersion" and item.count("/") > 1:
            out.append(value_cause(INVALID, field, item, f"unexpected GroupVersion string: {item}"))
        elif key == "kind" and (errs := names.is_dns1035_label(item.lower())):
            detail = "may have mixed case, but should otherwise match: " + ",".join(errs)
            out.append(value_cause(INVALID, field, item, detail))
    if "metadata" in value:
        out.extend(validate_object_meta(value["metadata"], _child(name, "metadata")))


_META_TYPES = {
    **dict.fromkeys(("name", "generateName", "namespace", "selfLink", "uid", "resourceVersion"), "string"),
    "labels": "map[string]string",
    "annotations": "map[string]string",
}


def _has_go_type(value: Any, wanted: str) -> bool:
    if wanted == "string":
        return isinstance(value, str)
    return isinstance(value, Mapping) and all(isinstance(v, str) for v in value.values())


def _go_json_kind(value: Any) -> str:
    """The JSON kind Go's decoder names in `cannot unmarshal <kind> into ...`."""
    kind = _json_type(value)
    return {"integer": "number", "boolean": "bool"}.get(kind, kind)


def validate_object_meta(meta: Any, path: str) -> list[Cause]:
    """The checks Kubernetes makes of an embedded resource's metadata: its shape, then its
    name, namespace, labels and annotations."""
    if meta is None:
        return []
    if not isinstance(meta, Mapping):
        detail = f"json: cannot unmarshal {_go_json_kind(meta)} into Go value of type v1.ObjectMeta"
        return [value_cause(INVALID, path, meta, detail)]
    for key, value in meta.items():
        wanted = _META_TYPES.get(key)
        if wanted is not None and value is not None and not _has_go_type(value, wanted):
            detail = (
                f"json: cannot unmarshal {_go_json_kind(value)} into Go struct field "
                f"ObjectMeta.{key} of type {wanted}"
            )
            return [value_cause(INVALID, path, meta, detail)]
    out: list[Cause] = []
    name = meta.get("name") or ""
    for bad in (".", ".."):
        if name == bad:
            out.append(value_cause(INVALID, f"{path}.name", name, f"may not be '{bad}'"))
    for generated in ("name", "generateName"):
        text = meta.get(generated) or ""
        for bad in ("/", "%"):
            if bad in text:
                out.append(value_cause(INVALID, f"{path}.{generated}", text, f"may not contain '{bad}'"))
    namespace = meta.get("namespace")
    if namespace:
        for msg in names.is_dns1123_label(namespace):
            out.append(value_cause(INVALID, f"{path}.namespace", namespace, msg))
    for key, value in (meta.get("labels") or {}).items():
        for msg in names.is_qualified_name(key):
            out.append(value_cause(INVALID, f"{path}.labels", key, msg))
        for msg in names.is_valid_label_value(value):
            out.append(value_cause(INVALID, f"{path}.labels", value, msg))
    annotations = meta.get("annotations") or {}
    for key in annotations:
        for msg in names.is_qualified_name(key.lower()):
            out.append(value_cause(INVALID, f"{path}.annotations", key, msg))
    if sum(len(k) + len(v) for k, v in annotations.items()) > _ANNOTATIONS_MAX_BYTES:
        out.append(_too_long(f"{path}.annotations", _ANNOTATIONS_MAX_BYTES))
    return out


# ---------------------------------------------------------------------------------------------
# Pruning.


def prune(obj: Any, schema: Mapping[str, Any] | None, *, root: bool = True) -> list[str]:
    """Remove, in place, every field `schema` does not declare; return their paths.

    At the root `apiVersion`, `kind` and `metadata` are kept, and metadata (of the root and
    of every embedded resource) keeps only ObjectMeta's fields. Non-nullable nulls without a
    default are dropped too (not reported), as the server's decoder does. The paths are the
    ones strict field validation reports: root metadata first, then the rest sorted.
    """
    meta_unknown: list[str] = []
    if root and isinstance(obj, dict) and isinstance(obj.get("metadata"), dict):
        _prune_object_meta(obj["metadata"], "metadata", meta_unknown)
    unknown: list[str] = []
    embedded_unknown: list[str] = []
    _prune(obj, schema, "", unknown, embedded_unknown, root)
    return meta_unknown + sorted(unknown) + sorted(embedded_unknown)


def _drops_null(s: Mapping[str, Any] | None) -> bool:
    return s is not None and not s.get("nullable") and s.get("default") is None


def _prune(
    x: Any,
    s: Mapping[str, Any] | None,
    path: str,
    unknown: list[str],
    embedded_unknown: list[str],
    root: bool = False,
    preserve: bool = False,
) -> None:
    """`preserve` is inherited by array items, as the server's pruning does."""
    preserve = preserve or (s is not None and bool(s.get(PRESERVE)))
    if isinstance(x, dict):
        if s is None:
            if not preserve:
                unknown.extend(_child(path, k) for k in x)
                x.clear()
            return
        embedded = root or s.get(EMBEDDED)
        if embedded and not root and isinstance(x.get("metadata"), dict):
            _prune_object_meta(x["metadata"], _child(path, "metadata"), embedded_unknown)
        props = s.get("properties") or {}
        additional = s.get("additionalProperties")
        for key in list(x):
            if embedded and key in _META_FIELDS:
                continue
            sub = props.get(key)
            if sub is None and additional is None:
                if not preserve:
                    if key not in _META_FIELDS or path:
                        unknown.append(_child(path, key))
                    del x[key]
                continue
            if sub is None:
                sub = additional if isinstance(additional, Mapping) else None
            value = x[key]
            if value is None and _drops_null(sub):
                del x[key]
            else:
                _prune(value, sub, _child(path, key), unknown, embedded_unknown)
    elif isinstance(x, list):
        items = s.get("items") if s is not None else None
        items = items if isinstance(items, Mapping) else None
        if preserve and items is None:
            return
        for i, item in enumerate(x):
            _prune(item, items, f"{path}[{i}]", unknown, embedded_unknown, preserve=preserve)


def _prune_object_meta(meta: dict[str, Any], path: str, unknown: list[str]) -> None:
    for key in list(meta):
        value = meta[key]
        if key not in _OBJECT_META_FIELDS:
            unknown.append(f"{path}.{key}")
            del meta[key]
        elif value is None:
            del meta[key]
        elif key in _OBJECT_META_LISTS and isinstance(value, list):
            known = _OBJECT_META_LISTS[key]
            for i, entry in enumerate(value):
                if isinstance(entry, dict):
                    for field in [f for f in entry if f not in known]:
                        unknown.append(f"{path}.{key}[{i}].{field}")
                        del entry[field]


# ---------------------------------------------------------------------------------------------
# Defaulting.


def apply_defaults(obj: Any, schema: Mapping[str, Any] | None) -> None:
    """Fill in, in place, `default` values where a field is absent (or a non-nullable null).

    Recurses into present objects, array items and additionalProperties values; a default
    below an absent parent is not created, but a defaulted parent gets its own defaults.
    """
    if schema is None:
        return
    if isinstance(obj, dict):
        props = schema.get("properties")
        if props:
            for key, sub in props.items():
                default = sub.get("default")
                if default is not None and (
                    key not in obj or (obj[key] is None and not sub.get("nullable"))
                ):
                    obj[key] = _json_copy(default)
        additional = schema.get("additionalProperties")
        if not isinstance(additional, Mapping):
            additional = None
        for key, value in obj.items():
            sub = props.get(key) if props else None
            if sub is None and additional is not None:
                sub = additional
                if value is None and sub.get("default") is not None and not sub.get("nullable"):
                    obj[key] = value = _json_copy(sub["default"])
            if sub is not None and isinstance(value, (dict, list)):
                apply_defaults(value, sub)
    elif isinstance(obj, list):
        items = schema.get("items")
        if not isinstance(items, Mapping):
            return
        default = items.get("default")
        for i, value in enumerate(obj):
            if value is None and default is not None and not items.get("nullable"):
                obj[i] = value = _json_copy(default)
            if isinstance(value, (dict, list)):
                apply_defaults(value, items)


# ---------------------------------------------------------------------------------------------
# Schema checks for CustomResourceDefinitions.

_ROOT, _ITEM, _FIELD = "root", "item", "field"
_EMPTY_TYPE = {
    _ROOT: "must not be empty at the root",
    _ITEM: "must not be empty for specified array items",
    _FIELD: "must not be empty for specified object fields",
}
# What a nested value validation (inside allOf/anyOf/oneOf/not) may not carry.
_NESTED_FORBIDDEN = (
    ("type", "must be empty to be structural"),
    ("default", "must be undefined to be structural"),
    ("title", "must be empty to be structural"),
    ("description", "must be empty to be structural"),
    ("nullable", "must be false to be structural"),
    (PRESERVE, "must be false to be structural"),
    (EMBEDDED, "must be false to be structural"),
    (INT_OR_STRING, "must be false to be structural"),
    (LIST_MAP_KEYS, "must be empty to be structural"),
    (LIST_TYPE, "must be undefined to be structural"),
    (MAP_TYPE, "must be undefined to be structural"),
    (VALIDATIONS, "must be empty to be structural"),
)
_UNSUPPORTED_KEYWORDS = (
    ("id", "id is not supported"),
    ("additionalItems", "additionalItems is not supported"),
    ("patternProperties", "patternProperties is not supported"),
    ("definitions", "definitions is not supported"),
    ("dependencies", "dependencies is not supported"),
    ("$ref", "$ref is not supported"),
)


def is_structural(schema: Mapping[str, Any], *, path: str = "openAPIV3Schema") -> list[Cause]:
    """Why `schema` cannot serve as a CRD version's openAPIV3Schema (empty when it can).

    Runs the structural-schema rules (every field typed, value validations only restating the
    structure, metadata left implicit), the other OpenAPI rules the server enforces (no $ref,
    additionalProperties and properties exclusive, list-type consistency, ...), and checks
    that each `default` is pruned and valid. `x-kubernetes-validations` (CEL) is rejected:
    this server cannot evaluate it. `path` is where the schema sits in the CRD, e.g.
    `spec.versions[0].schema.openAPIV3Schema`.
    """
    structural: list[Cause] = []
    _structural(schema, _ROOT, path, structural)
    _completeness(schema, schema, path, path, structural)
    structural.sort(key=Cause.render)
    out = structural
    if not structural:
        _defaults(schema, path, out, root=True)
    if schema.get("nullable"):
        out.append(forbidden(f"{path}.nullable", "nullable cannot be true at the root"))
    _openapi(schema, path, out, root=True, inside_meta=False, no_defaults="")
    return _unique(out)


def _properties(s: Mapping[str, Any]) -> Mapping[str, Any]:
    props = s.get("properties")
    return props if isinstance(props, Mapping) else {}


def _structural(s: Mapping[str, Any], level: str, path: str, out: list[Cause]) -> None:
    t = s.get("type") or ""
    items = s.get("items")
    if t == "array" and items is None:
        out.append(required(f"{path}.items", "must be specified"))
    if isinstance(items, Mapping):
        _structural(items, _ITEM, f"{path}.items", out)
    props = _properties(s)
    for key, sub in props.items():
        if isinstance(sub, Mapping):
            _structural(sub, _FIELD, f"{path}.properties[{key}]", out)
    additional = s.get("additionalProperties")
    if additional is not None:
        if level == _ROOT:
            out.append(forbidden(f"{path}.additionalProperties", "must not be used at the root"))
        if isinstance(additional, Mapping):
            _structural(additional, _FIELD, f"{path}.additionalProperties", out)
    embedded = bool(s.get(EMBEDDED))
    if s.get(INT_OR_STRING):
        if s.get(PRESERVE):
            detail = "must be false if x-kubernetes-int-or-string is true"
            out.append(value_cause(INVALID, f"{path}.{PRESERVE}", True, detail))
        if embedded:
            detail = "must be false if x-kubernetes-int-or-string is true"
            out.append(value_cause(INVALID, f"{path}.{EMBEDDED}", True, detail))
    _value_validation(s, path, out, skip_any_of=s.get("anyOf") == _INT_OR_STRING_ANY_OF)
    if embedded and t != "object":
        detail = "must be object if x-kubernetes-embedded-resource is true"
        out.append(
            required(f"{path}.type", detail) if not t
            else value_cause(INVALID, f"{path}.type", t, detail)
        )
    elif not t and not s.get(INT_OR_STRING) and not s.get(PRESERVE):
        out.append(required(f"{path}.type", _EMPTY_TYPE[level]))
    if embedded and additional is not None:
        detail = "must not be used if x-kubernetes-embedded-resource is set"
        out.append(forbidden(f"{path}.additionalProperties", detail))
    if level == _ROOT and t and t != "object":
        out.append(value_cause(INVALID, f"{path}.type", t, "must be object at the root"))
    check_meta = level == _ROOT or embedded
    for key in ("kind", "apiVersion"):
        sub = props.get(key)
        if check_meta and isinstance(sub, Mapping) and sub.get("type") != "string":
            out.append(value_cause(INVALID, f"{path}.properties[{key}].type", sub.get("type") or "", "must be string"))
    meta = props.get("metadata")
    if isinstance(meta, Mapping):
        meta_path = f"{path}.properties[metadata]"
        if check_meta and meta.get("type") != "object":
            out.append(value_cause(INVALID, f"{meta_path}.type", meta.get("type") or "", "must be object"))
        if level == _ROOT and (
            set(meta) - {"type", "default", "properties"}
            or set(_properties(meta)) - {"name", "generateName"}
        ):
            detail = (
                "must not specify anything other than name and generateName, but metadata is "
                "implicitly specified"
            )
            out.append(forbidden(meta_path, detail))
    if embedded and not s.get(PRESERVE) and not props:
        detail = (
            "must not be empty if x-kubernetes-embedded-resource is true without "
            "x-kubernetes-preserve-unknown-fields"
        )
        out.append(required(f"{path}.properties", detail))


def _value_validation(
    v: Mapping[str, Any], path: str, out: list[Cause], *, skip_any_of: bool = False
) -> None:
    """allOf/anyOf/oneOf/not may only restate the structure, never extend it."""
    if not skip_any_of:
        for i, sub in enumerate(v.get("anyOf") or ()):
            _nested(sub, f"{path}.anyOf[{i}]", out)
    for i, sub in enumerate(v.get("allOf") or ()):
        skip = i == 0 and isinstance(sub, Mapping) and sub.get("anyOf") == _INT_OR_STRING_ANY_OF
        _nested(sub, f"{path}.allOf[{i}]", out, skip_any_of=skip)
    for i, sub in enumerate(v.get("oneOf") or ()):
        _nested(sub, f"{path}.oneOf[{i}]", out)
    if isinstance(v.get("not"), Mapping):
        _nested(v["not"], f"{path}.not", out)
    pattern = v.get("pattern")
    if pattern and isinstance(err := _compile(pattern), str):
        detail = f"must be a valid regular expression, but isn't: {err}"
        out.append(value_cause(INVALID, f"{path}.pattern", pattern, detail))


def _is_set(value: Any) -> bool:
    """A keyword counts as used unless it is absent, false or empty (0 is a used default)."""
    if value is None or value is False:
        return False
    return not isinstance(value, (str, list, dict)) or bool(value)


def _nested(v: Any, path: str, out: list[Cause], *, skip_any_of: bool = False) -> None:
    if not isinstance(v, Mapping):
        return
    _value_validation(v, path, out, skip_any_of=skip_any_of)
    if isinstance(v.get("items"), Mapping):
        _nested(v["items"], f"{path}.items", out)
    for key, sub in _properties(v).items():
        _nested(sub, f"{path}.properties[{key}]", out)
    for key, detail in _NESTED_FORBIDDEN:
        if _is_set(v.get(key)):
            out.append(forbidden(f"{path}.{key}", detail))
    if v.get("additionalProperties") is not None and v.get("additionalProperties") is not False:
        out.append(forbidden(f"{path}.additionalProperties", "must be undefined to be structural"))
    if "metadata" in _properties(v):
        out.append(forbidden(f"{path}.properties[metadata]", "must not be specified in a nested context"))


def _completeness(
    v: Mapping[str, Any], s: Mapping[str, Any] | None, s_path: str, v_path: str, out: list[Cause]
) -> None:
    """Properties and items named in value validations must exist in the structure."""
    for key in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(v.get(key) or ()):
            _nested_completeness(sub, s, s_path, f"{v_path}.{key}[{i}]", out)
    if isinstance(v.get("not"), Mapping):
        _nested_completeness(v["not"], s, s_path, f"{v_path}.not", out)


def _nested_completeness(
    v: Any, s: Mapping[str, Any] | None, s_path: str, v_path: str, out: list[Cause]
) -> None:
    if not isinstance(v, Mapping):
        return
    if s is None:
        out.append(required(s_path, f"because it is defined in {v_path}"))
        return
    _completeness(v, s, s_path, v_path, out)
    if isinstance(v.get("items"), Mapping):
        items = s.get("items")
        _nested_completeness(
            v["items"], items if isinstance(items, Mapping) else None,
            f"{s_path}.items", f"{v_path}.items", out,
        )
    s_props = _properties(s)
    for key, sub in _properties(v).items():
        s_sub = s_props.get(key)
        if s_sub is None:
            detail = f"because it is defined in {v_path}.properties[{key}]"
            out.append(required(f"{s_path}.properties[{key}]", detail))
        else:
            _nested_completeness(sub, s_sub, f"{s_path}.properties[{key}]", f"{v_path}.properties[{key}]", out)


def _defaults(s: Mapping[str, Any], path: str, out: list[Cause], *, root: bool = False) -> None:
    """Each default must survive pruning unchanged and validate against its own schema."""
    default = s.get("default")
    if default is not None:
        field = f"{path}.default"
        pruned = _json_copy(default)
        prune(pruned, s, root=bool(s.get(EMBEDDED)))
        if pruned != default:
            out.append(value_cause(INVALID, field, default, "must not have unknown fields"))
        for cause in validate(default, s):
            at = f"{field}.{cause.field}" if cause.field else field
            out.append(Cause(at, cause.message, cause.reason))
    items = s.get("items")
    if isinstance(items, Mapping):
        _defaults(items, f"{path}.items", out)
    for key, sub in _properties(s).items():
        if not (root and key in _META_FIELDS):
            _defaults(sub, f"{path}.properties[{key}]", out)
    additional = s.get("additionalProperties")
    if isinstance(additional, Mapping):
        _defaults(additional, f"{path}.additionalProperties", out)


def _openapi(
    s: Any, path: str, out: list[Cause], *, root: bool, inside_meta: bool, no_defaults: str
) -> None:
    """The OpenAPI rules the server applies to every schema node, nested ones included."""
    if not isinstance(s, Mapping):
        return
    t = s.get("type") or ""
    if t and t not in _OPENAPI_V3_TYPES:
        out.append(value_cause(NOT_SUPPORTED, f"{path}.type", t, "supported values: " + ", ".join(f'"{x}"' for x in _OPENAPI_V3_TYPES)))
    if s.get("default") is not None and no_defaults:
        out.append(forbidden(f"{path}.default", f"must not be set {no_defaults}"))
    for key, detail in _UNSUPPORTED_KEYWORDS:
        if s.get(key):
            out.append(forbidden(f"{path}.{key}", detail))
    if t == "null":
        out.append(forbidden(f"{path}.type", "type cannot be set to null, use nullable as an alternative"))
    items = s.get("items")
    if isinstance(items, list):
        out.append(forbidden(f"{path}.items", "items must be a schema object and not an array"))
    embedded = bool(s.get(EMBEDDED))
    if inside_meta and embedded:
        out.append(forbidden(f"{path}.{EMBEDDED}", "must not be used inside of resource meta"))
    if s.get("uniqueItems"):
        detail = "uniqueItems cannot be set to true since the runtime complexity becomes quadratic"
        out.append(forbidden(f"{path}.uniqueItems", detail))
    props = _properties(s)
    additional = s.get("additionalProperties")
    if additional is not None:
        if props and (additional is False or isinstance(additional, Mapping)):
            detail = "additionalProperties and properties are mutual exclusive"
            out.append(forbidden(f"{path}.additionalProperties", detail))
        reason = "inside additionalProperties applying to object metadata" if inside_meta else no_defaults
        _openapi(additional, f"{path}.additionalProperties", out, root=False, inside_meta=inside_meta, no_defaults=reason)
    for key, sub in props.items():
        sub_meta, reason = inside_meta, no_defaults
        if (root or embedded) and key in _META_FIELDS:
            sub_meta = True
            if root:
                reason = f"in top-level {key}"
        _openapi(sub, f"{path}.properties[{key}]", out, root=False, inside_meta=sub_meta, no_defaults=reason)
    nested = [(f"{path}.not", s.get("not"))]
    for key in ("allOf", "oneOf", "anyOf"):
        nested += [(f"{path}.{key}[{i}]", sub) for i, sub in enumerate(s.get(key) or ())]
    if isinstance(items, Mapping):
        nested.append((f"{path}.items", items))
    elif isinstance(items, list):
        nested += [(f"{path}.items[{i}]", sub) for i, sub in enumerate(items)]
    for sub_path, sub in nested:
        _openapi(sub, sub_path, out, root=False, inside_meta=inside_meta, no_defaults=no_defaults)
    if s.get(PRESERVE) is False:
        out.append(value_cause(INVALID, f"{path}.{PRESERVE}", False, "must be true or undefined"))
    _list_and_map_types(s, t, path, out)
    if s.get(VALIDATIONS):
        out.append(forbidden(f"{path}.{VALIDATIONS}", CEL_UNSUPPORTED))


def _list_and_map_types(s: Mapping[str, Any], t: str, path: str, out: list[Cause]) -> None:
    map_type = s.get(MAP_TYPE)
    if map_type is not None:
        detail = "must be object if x-kubernetes-map-type is specified"
        if t != "object":
            out.append(required(f"{path}.type", detail) if not t else value_cause(INVALID, f"{path}.type", t, detail))
        if map_type not in ("atomic", "granular"):
            out.append(value_cause(NOT_SUPPORTED, f"{path}.{MAP_TYPE}", map_type, 'supported values: "atomic", "granular"'))
    list_type = s.get(LIST_TYPE)
    items = s.get("items") if isinstance(s.get("items"), Mapping) else None
    if list_type is not None and t != "array":
        detail = "must be array if x-kubernetes-list-type is specified"
        out.append(required(f"{path}.type", detail) if not t else value_cause(INVALID, f"{path}.type", t, detail))
    elif list_type == "set" and items is not None:
        item_type = items.get("type")
        detail = "must be atomic as item of a list with x-kubernetes-list-type=set"
        if item_type == "array" and items.get(LIST_TYPE) not in (None, "atomic"):
            out.append(value_cause(INVALID, f"{path}.items.{LIST_TYPE}", items.get(LIST_TYPE), detail))
        elif item_type == "object" and items.get(MAP_TYPE) != "atomic":
            out.append(value_cause(INVALID, f"{path}.items.{MAP_TYPE}", items.get(MAP_TYPE), detail))
    if list_type is not None and list_type not in ("atomic", "set", "map"):
        out.append(value_cause(NOT_SUPPORTED, f"{path}.{LIST_TYPE}", list_type, 'supported values: "atomic", "set", "map"'))
    keys = s.get(LIST_MAP_KEYS) or []
    if keys and list_type != "map":
        detail = "must be map if x-kubernetes-list-map-keys is non-empty"
        out.append(required(f"{path}.{LIST_TYPE}", detail) if list_type is None else value_cause(INVALID, f"{path}.{LIST_TYPE}", list_type, detail))
    if list_type == "map":
        if not keys:
            out.append(required(f"{path}.{LIST_MAP_KEYS}", "must not be empty if x-kubernetes-list-type is map"))
        if s.get("items") is None:
            out.append(required(f"{path}.items", "must have a schema if x-kubernetes-list-type is map"))
        elif items is not None and items.get("type") != "object":
            detail = "must be object if parent array's x-kubernetes-list-type is map"
            out.append(value_cause(INVALID, f"{path}.items.type", items.get("type") or "", detail))
        elif items is not None:
            item_props = _properties(items)
            for i, key in enumerate(keys):
                sub = item_props.get(key)
                if sub is None:
                    detail = "entries must all be names of item properties"
                    out.append(value_cause(INVALID, f"{path}.{LIST_MAP_KEYS}", keys, detail))
                    continue
                key_path = f"{path}.items.properties[{key}]"
                if sub.get("type") in ("array", "object"):
                    detail = "must be a scalar type if parent array's x-kubernetes-list-type is map"
                    out.append(value_cause(INVALID, f"{key_path}.type", sub.get("type"), detail))
                if key in keys[:i]:
                    detail = "must not contain duplicate entries"
                    out.append(value_cause(INVALID, f"{path}.{LIST_MAP_KEYS}", keys, detail))
                if key not in (items.get("required") or ()) and sub.get("default") is None:
                    detail = (
                        "this property is in x-kubernetes-list-map-keys, so it must have a "
                        "default or be a required property"
                    )
                    out.append(required(f"{key_path}.default", detail))
                if sub.get("nullable"):
                    detail = "this property is in x-kubernetes-list-map-keys, so it cannot be nullable"
                    out.append(forbidden(f"{key_path}.nullable", detail))
    if list_type in ("set", "map") and items is not None and items.get("nullable"):
        out.append(forbidden(f"{path}.items.nullable", f"cannot be nullable when x-kubernetes-list-type is {list_type}"))
