"""The protobuf wire format: varints, field keys, length-delimited fields, and reading back a
message's fields.

Pilothouse speaks protobuf in a few places without generated code: it decodes kubectl's
`application/vnd.kubernetes.protobuf` request bodies (`apiserver.protobuf`), encodes the
OpenAPI v2 document for client-go (`apiserver.openapi_protobuf`) and asks a container's
grpc.health.v1 service for its status (`node.probes`). Each of them knows its messages; this
module knows only the encoding they share (https://protobuf.dev/programming-guides/encoding/),
as Go's `protowire` package does: no messages, schemas or transport.

A message is a sequence of fields, each a key (field number << 3 | wire type, as a varint)
followed by its value: a varint, 8 or 4 little-endian bytes, or a varint length and that many
bytes. Varints are unsigned and at most 10 bytes; a negative int64 (or int32, or enum) is
written as its 64-bit two's complement, so readers that want signed values convert back
themselves. Malformed input raises a plain `ValueError` whose message says what is wrong;
callers turn it into their own failure (a 400 for a request body).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

#: Wire types (the low three bits of a field's key). Groups (3 and 4) are not supported.
VARINT = 0
FIXED64 = 1
BYTES = 2
FIXED32 = 5

#: The largest valid field number (2^29 - 1).
MAX_FIELD_NUMBER = (1 << 29) - 1
#: A varint holds at most 64 bits, 7 per byte.
MAX_VARINT_BYTES = 10

_FIXED_SIZES = {FIXED64: 8, FIXED32: 4}


def varint(value: int) -> bytes:
    """`value` as a varint; a negative value is written as its 64-bit two's complement."""
    if not -(1 << 63) <= value < 1 << 64:
        raise ValueError(f"{value} does not fit a 64-bit varint")
    value &= (1 << 64) - 1
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@functools.lru_cache(maxsize=1024)  # encoders write the same few keys over and over
def key(number: int, wire_type: int) -> bytes:
    """The key that starts a field: its number and wire type, as a varint."""
    if not 1 <= number <= MAX_FIELD_NUMBER:
        raise ValueError(f"field number {number} is outside 1..{MAX_FIELD_NUMBER}")
    if wire_type not in (VARINT, FIXED64, BYTES, FIXED32):
        raise ValueError(f"unsupported wire type {wire_type}")
    return varint(number << 3 | wire_type)


def delimited(number: int, payload: bytes) -> bytes:
    """A length-delimited field (a string, bytes, an embedded message or a packed list)."""
    return key(number, BYTES) + varint(len(payload)) + payload


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The unsigned varint that starts at `pos`, and the position after it."""
    value = 0
    for index in range(MAX_VARINT_BYTES):
        if pos + index >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos + index]
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            if value >> 64:
                raise ValueError("a varint overflows 64 bits")
            return value, pos + index + 1
    raise ValueError(f"a varint is longer than {MAX_VARINT_BYTES} bytes")


def iter_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field number, wire type, value) for each field of one message, in wire order.

    A varint's value is the unsigned int; every other wire type's is its bytes (little-endian
    for the fixed types, the payload without its length for `BYTES`). Embedded messages are
    not looked into: pass their bytes to `iter_fields` again.
    """
    pos = 0
    while pos < len(buf):
        field_key, pos = read_varint(buf, pos)
        number, wire_type = field_key >> 3, field_key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire_type == VARINT:
            value, pos = read_varint(buf, pos)
            yield number, wire_type, value
            continue
        if wire_type == BYTES:
            size, pos = read_varint(buf, pos)
        elif wire_type in _FIXED_SIZES:
            size = _FIXED_SIZES[wire_type]
        else:
            raise ValueError(f"unsupported wire type {wire_type} for field {number}")
        if pos + size > len(buf):
            raise ValueError(f"field {number} is truncated: {size} bytes long, "
                             f"{len(buf) - pos} left")
        yield number, wire_type, buf[pos : pos + size]
        pos += size
