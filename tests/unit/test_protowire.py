"""The protobuf wire format, against the byte vectors of the encoding guide
(https://protobuf.dev/programming-guides/encoding/) and against malformed input."""

from __future__ import annotations

import pytest

from pilothouse.machinery import protowire
from pilothouse.machinery.protowire import BYTES, FIXED32, FIXED64, VARINT


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (150, b"\x96\x01"),
        (300, b"\xac\x02"),
        (270, b"\x8e\x02"),
        (86942, b"\x9e\xa7\x05"),
        ((1 << 63) - 1, b"\xff" * 8 + b"\x7f"),
        ((1 << 64) - 1, b"\xff" * 9 + b"\x01"),
        (-1, b"\xff" * 9 + b"\x01"),  # an int64 -1 is its 64-bit two's complement
        (-2, b"\xfe" + b"\xff" * 8 + b"\x01"),
        (-(1 << 63), b"\x80" * 9 + b"\x01"),
    ],
)
def test_varints_encode_as_the_guide_writes_them(value: int, encoded: bytes) -> None:
    assert protowire.varint(value) == encoded
    unsigned = value & ((1 << 64) - 1)
    assert protowire.read_varint(b"\x08" + encoded + b"\x10", 1) == (unsigned, 1 + len(encoded))


@pytest.mark.parametrize("value", [1 << 64, -(1 << 63) - 1])
def test_a_value_beyond_64_bits_is_refused(value: int) -> None:
    with pytest.raises(ValueError, match="does not fit a 64-bit varint"):
        protowire.varint(value)


def test_keys_carry_the_field_number_and_wire_type() -> None:
    assert protowire.key(1, VARINT) == b"\x08"
    assert protowire.key(1, BYTES) == b"\x0a"
    assert protowire.key(2, BYTES) == b"\x12"
    assert protowire.key(1, FIXED64) == b"\x09"
    assert protowire.key(1, FIXED32) == b"\x0d"
    assert protowire.key(16, VARINT) == b"\x80\x01"  # past 15, the key takes two bytes
    assert protowire.key(protowire.MAX_FIELD_NUMBER, BYTES) == b"\xfa\xff\xff\xff\x0f"


@pytest.mark.parametrize(("number", "wire_type"), [(0, VARINT), (1 << 29, BYTES), (1, 3), (1, 6)])
def test_keys_outside_the_format_are_refused(number: int, wire_type: int) -> None:
    with pytest.raises(ValueError, match="field number|wire type"):
        protowire.key(number, wire_type)


def test_the_guides_messages_round_trip() -> None:
    # Test1{int32 a = 1} with a = 150; Test2{string b = 2} with b = "testing";
    # Test3{Test1 c = 3}; Test5{repeated int32 f = 6 [packed]} with 3, 270, 86942.
    test1 = protowire.key(1, VARINT) + protowire.varint(150)
    assert test1 == bytes.fromhex("089601")
    assert protowire.delimited(2, b"testing") == bytes.fromhex("120774657374696e67")
    assert protowire.delimited(3, test1) == bytes.fromhex("1a03089601")
    packed = b"".join(protowire.varint(v) for v in (3, 270, 86942))
    assert protowire.delimited(6, packed) == bytes.fromhex("3206038e029ea705")

    message = test1 + protowire.delimited(2, b"testing") + protowire.delimited(3, test1)
    assert list(protowire.iter_fields(message)) == [
        (1, VARINT, 150), (2, BYTES, b"testing"), (3, BYTES, test1)]
    assert list(protowire.iter_fields(test1)) == [(1, VARINT, 150)]


def test_fixed_fields_and_empty_payloads_are_read_as_bytes() -> None:
    message = (b"\x09" + bytes(range(8)) + b"\x15" + b"\xff\xff\xff\xff"
               + protowire.delimited(3, b"") + protowire.key(4, VARINT) + b"\x00")
    assert list(protowire.iter_fields(message)) == [
        (1, FIXED64, bytes(range(8))), (2, FIXED32, b"\xff\xff\xff\xff"), (3, BYTES, b""),
        (4, VARINT, 0)]
    assert list(protowire.iter_fields(b"")) == []


def test_reading_a_varint_at_a_position_walks_a_packed_list() -> None:
    packed, pos, values = bytes.fromhex("038e029ea705"), 0, []
    while pos < len(packed):
        value, pos = protowire.read_varint(packed, pos)
        values.append(value)
    assert values == [3, 270, 86942]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x96", "truncated varint"),
        (b"", "truncated varint"),
        (b"\xff" * 10 + b"\x01", "a varint is longer than 10 bytes"),
        (b"\xff" * 9 + b"\x02", "a varint overflows 64 bits"),
    ],
)
def test_malformed_varints(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        protowire.read_varint(data, 0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x08", "truncated varint"),  # a key and no value
        (b"\x08\x96", "truncated varint"),
        (b"\x80", "truncated varint"),  # half a key
        (b"\x08" + b"\x80" * 10 + b"\x00", "a varint is longer than 10 bytes"),
        (b"\x00\x01", "field number 0"),
        (b"\x0b", "unsupported wire type 3 for field 1"),  # a start group
        (b"\x14", "unsupported wire type 4 for field 2"),  # an end group
        (b"\x0e", "unsupported wire type 6 for field 1"),
        (b"\x12\x07tes", "field 2 is truncated: 7 bytes long, 3 left"),
        (b"\x09\x00\x00", "field 1 is truncated: 8 bytes long, 2 left"),
        (b"\x0d\x00", "field 1 is truncated: 4 bytes long, 1 left"),
        (b"\x12", "truncated varint"),  # a length-delimited key without its length
    ],
)
def test_malformed_messages(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        list(protowire.iter_fields(data))


def test_fields_before_the_damage_are_yielded() -> None:
    fields = protowire.iter_fields(b"\x08\x01\x12\x05ab")
    assert next(fields) == (1, VARINT, 1)
    with pytest.raises(ValueError, match="field 2 is truncated"):
        next(fields)
