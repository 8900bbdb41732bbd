"""Decoding of Kubernetes protobuf request bodies into the objects' JSON form.

kubectl's typed clients send bodies as `application/vnd.kubernetes.protobuf`: the magic
`k8s\\0`, then a `runtime.Unknown` envelope carrying the apiVersion and kind and the object's
own protobuf encoding. The rest of the server speaks JSON, so the HTTP layer turns such a body
into the dict that the same Go object would have marshalled to, and defaulting, validation and
storage carry on unchanged. Only request bodies are decoded; responses stay JSON, which those
clients accept.

Field numbers, JSON names and kinds come from the tables in `protobuf_types`. A field absent
on the wire is absent from the result. A field present on the wire is kept, with one
exception that mirrors encoding/json: Go's marshaller writes every non-pointer field, so a
zero value ("", 0, false, a zero Quantity or IntOrString) of a non-pointer `omitempty` field
is dropped, as the JSON would have omitted it. Zero values of pointer fields (`replicas: 0`)
and of fields without `omitempty` are kept, and a zero `metav1.Time` (JSON null) is dropped.
Fields the tables do not know are skipped, as unknown JSON fields are.

The wire format itself (varints, keys, field iteration) is `machinery.protowire`'s; bytes that
are not protobuf at all, like bytes that do not fit the tables, are a 400 Bad Request.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from typing import Any

from pilothouse.apiserver.protobuf_types import KIND_MESSAGES, MESSAGES
from pilothouse.machinery import errors, protowire

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

_EPOCH = datetime(1970, 1, 1)
_GO_ZERO_TIME = datetime(1, 1, 1)
_OMIT = object()


def decode_protobuf(body: bytes) -> dict[str, Any]:
    """Decode a protobuf request body to the object's JSON dict, or raise an APIError."""
    body = bytes(body)
    if not body.startswith(MAGIC):
        raise _malformed("the body does not start with the protobuf magic prefix k8s\\x00")
    try:
        return _unknown(body[len(MAGIC) :])
    except ValueError as exc:  # from protowire: the bytes are not protobuf
        raise _malformed(str(exc)) from exc


def _unknown(envelope: bytes) -> dict[str, Any]:
    """The object a `runtime.Unknown` envelope carries, with its apiVersion and kind."""
    api_version = kind = encoding = ""
    raw = b""
    for num, wire, value in protowire.iter_fields(envelope):
        if num == 1:
            for tm_num, tm_wire, tm_value in protowire.iter_fields(_payload(wire, value)):
                if tm_num == 1:
                    api_version = _string(tm_wire, tm_value)
                elif tm_num == 2:
                    kind = _string(tm_wire, tm_value)
        elif num == 2:
            raw = _payload(wire, value)
        elif num == 3:
            encoding = _string(wire, value)
    if not kind or not api_version:
        raise _malformed("the protobuf envelope carries no apiVersion and kind")
    if encoding:
        raise _malformed(f"content encoding {encoding!r} is not supported")
    message = KIND_MESSAGES.get((api_version, kind))
    if message is None:
        raise errors.unsupported_media_type(
            f"{CONTENT_TYPE} is not supported for {api_version}, Kind={kind}; "
            "send it as application/json"
        )
    return {"apiVersion": api_version, "kind": kind, **_message(message, raw)}


def _malformed(detail: str) -> errors.APIError:
    return errors.bad_request(f"unable to decode the protobuf body: {detail}")


def _payload(wire: int, value: int | bytes) -> bytes:
    if wire != protowire.BYTES:
        raise _malformed(f"expected a length-delimited field, got wire type {wire}")
    assert isinstance(value, bytes)
    return value


def _number(wire: int, value: int | bytes) -> int:
    if wire != protowire.VARINT:
        raise _malformed(f"expected a varint field, got wire type {wire}")
    assert isinstance(value, int)
    return value - (1 << 64) if value >= 1 << 63 else value


def _string(wire: int, value: int | bytes) -> str:
    try:
        return _payload(wire, value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _malformed("a string field is not valid UTF-8") from exc


def _message(name: str, buf: bytes) -> dict[str, Any]:
    table = MESSAGES[name]
    out: dict[str, Any] = {}
    for num, wire, value in protowire.iter_fields(buf):
        field = table.get(num)
        if field is None:
            continue
        json_name, kind, element, omit_zero = field
        if kind == "inline":
            out.update(_message(element, _payload(wire, value)))
        elif kind.startswith("repeated_"):
            out.setdefault(json_name, []).extend(_repeated(kind[9:], element, wire, value))
        elif kind.startswith("map_"):
            key, item = _map_entry(kind[4:], element, _payload(wire, value))
            out.setdefault(json_name, {})[key] = None if item is _OMIT else item
        else:
            decoded = _value(kind, element, wire, value)
            if decoded is _OMIT or (omit_zero and _is_zero(kind, decoded)):
                out.pop(json_name, None)
            elif kind == "message" and isinstance(out.get(json_name), dict):
                out[json_name].update(decoded)
            else:
                out[json_name] = decoded
    return out


def _is_zero(kind: str, value: Any) -> bool:
    return value in ("", 0) or (kind == "quantity" and value == "0")


def _repeated(kind: str, element: str, wire: int, value: int | bytes) -> list[Any]:
    if kind == "int" and wire == protowire.BYTES:
        packed, pos, values = _payload(wire, value), 0, []
        while pos < len(packed):
            number, pos = protowire.read_varint(packed, pos)
            values.append(_number(protowire.VARINT, number))
        return values
    return [_value(kind, element, wire, value)]


def _map_entry(kind: str, element: str, entry: bytes) -> tuple[str, Any]:
    key, wire, value = "", protowire.BYTES, b""
    for num, entry_wire, entry_value in protowire.iter_fields(entry):
        if num == 1:
            key = _string(entry_wire, entry_value)
        elif num == 2:
            wire, value = entry_wire, entry_value
    return key, _value(kind, element, wire, value)


def _value(kind: str, element: str, wire: int, value: int | bytes) -> Any:
    if kind == "string":
        return _string(wire, value)
    if kind == "int":
        return _number(wire, value)
    if kind == "bool":
        return _number(wire, value) != 0
    if kind == "bytes":
        return base64.b64encode(_payload(wire, value)).decode("ascii")
    if kind == "message":
        return _message(element, _payload(wire, value))
    buf = _payload(wire, value)
    if kind in ("time", "microtime"):
        return _time(buf, micro=kind == "microtime")
    if kind == "quantity":
        return next((_string(w, v) for n, w, v in protowire.iter_fields(buf) if n == 1), "0")
    if kind == "intorstring":
        return _int_or_string(buf)
    if kind == "json":
        return _raw_json(buf)
    if kind == "strings":
        return [_string(w, v) for n, w, v in protowire.iter_fields(buf) if n == 1]
    raise AssertionError(f"unknown protobuf field kind {kind!r}")


def _time(buf: bytes, *, micro: bool) -> Any:
    if not buf:
        return _OMIT
    seconds = nanos = 0
    for num, wire, value in protowire.iter_fields(buf):
        if num == 1:
            seconds = _number(wire, value)
        elif num == 2:
            nanos = _number(wire, value)
    try:
        moment = _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError as exc:
        raise _malformed(f"timestamp {seconds}s is out of range") from exc
    if moment == _GO_ZERO_TIME:
        return _OMIT
    return moment.isoformat(timespec="microseconds" if micro else "seconds") + "Z"


def _int_or_string(buf: bytes) -> int | str:
    is_string, int_val, str_val = False, 0, ""
    for num, wire, value in protowire.iter_fields(buf):
        if num == 1:
            is_string = _number(wire, value) == 1
        elif num == 2:
            int_val = _number(wire, value)
        elif num == 3:
            str_val = _string(wire, value)
    return str_val if is_string else int_val


def _raw_json(buf: bytes) -> Any:
    raw = next((_payload(w, v) for n, w, v in protowire.iter_fields(buf) if n == 1), b"")
    if not raw:
        return _OMIT
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise _malformed("an embedded raw object is not JSON") from exc
