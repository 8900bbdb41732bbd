"""Quantities parse, round and print as resource.Quantity does."""

from decimal import Decimal

import pytest

from pilothouse.machinery.quantity import (
    ERR_FORMAT,
    canonical,
    format_quantity,
    milli,
    parse_quantity,
    to_int,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", Decimal(1)),
        ("1500m", Decimal("1.5")),
        ("0.1", Decimal("0.1")),
        ("5n", Decimal("5e-9")),
        ("3u", Decimal("3e-6")),
        ("2k", Decimal(2000)),
        ("1M", Decimal(10**6)),
        ("1G", Decimal(10**9)),
        ("1T", Decimal(10**12)),
        ("1P", Decimal(10**15)),
        ("1E", Decimal(10**18)),
        ("1Ki", Decimal(1024)),
        ("1Mi", Decimal(2**20)),
        ("1.5Gi", Decimal(3 * 2**29)),
        ("1Ti", Decimal(2**40)),
        ("1Pi", Decimal(2**50)),
        ("1Ei", Decimal(2**60)),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("12e-3", Decimal("0.012")),
        ("-2", Decimal(-2)),
        ("+2", Decimal(2)),
        (".5", Decimal("0.5")),
        (" 2 ", Decimal(2)),
        (3, Decimal(3)),
        (0.25, Decimal("0.25")),
    ],
)
def test_parse_quantity(text, value):
    assert parse_quantity(text) == value


def test_parse_rounds_up_to_nano_away_from_zero():
    assert parse_quantity("0.1n") == Decimal("1e-9")
    assert parse_quantity("-0.1n") == Decimal("-1e-9")
    assert parse_quantity("1.0000000001") == Decimal("1.000000001")


def test_binary_values_are_capped_at_int64():
    assert parse_quantity("8Ei") == Decimal(2**63 - 1)


@pytest.mark.parametrize("bad", ["", "abc", "1.2.3", "1x", "1Kb", "1 Ki", True])
def test_malformed_quantities_raise_the_kubernetes_message(bad):
    with pytest.raises(ValueError) as caught:
        parse_quantity(bad)
    assert str(caught.value) == (
        "quantities must match the regular expression "
        "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )
    assert str(caught.value) == ERR_FORMAT


@pytest.mark.parametrize("bad", ["1kk", "1e", "1ki", "1mi", "--1"])
def test_unknown_suffixes_raise(bad):
    with pytest.raises(ValueError, match="unable to parse quantity's suffix"):
        parse_quantity(bad)


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("1500m", "1500m"),
        ("1.5", "1500m"),
        ("0.1", "100m"),
        ("0.5", "500m"),
        ("1000m", "1"),
        ("1000", "1k"),
        ("1.5k", "1500"),
        ("1024Mi", "1Gi"),
        ("2048Ki", "2Mi"),
        ("1.5Gi", "1536Mi"),
        ("0.5Gi", "512Mi"),
        ("0.5Ki", "512"),
        ("1.1Ki", "1126400m"),
        ("1e3", "1e3"),
        ("1.5e3", "1500"),
        ("12e6", "12e6"),
        ("1e-10", "1e-9"),
        ("0", "0"),
        ("0Mi", "0"),
        ("-0", "0"),
        ("100Mi", "100Mi"),
        ("-1Ki", "-1Ki"),
        ("1000E", "1000E"),
        (2, "2"),
        (0.5, "500m"),
        # Already-canonical spellings are kept verbatim, as the API server keeps them.
        ("+1", "+1"),
        ("1E3", "1E3"),
    ],
)
def test_canonical(text, stored):
    assert canonical(text) == stored


@pytest.mark.parametrize(
    ("value", "fmt", "text"),
    [
        (Decimal("1.5"), "DecimalSI", "1500m"),
        (Decimal("0.1"), "DecimalSI", "100m"),
        (Decimal(2**30), "BinarySI", "1Gi"),
        (Decimal(1536 * 2**20), "BinarySI", "1536Mi"),
        (Decimal(1000), "BinarySI", "1k"),
        (Decimal("1.5"), "BinarySI", "1500m"),
        (Decimal(1500000), "DecimalExponent", "1500e3"),
        (Decimal("0.001"), "DecimalExponent", "1e-3"),
        (Decimal(-1500), "DecimalSI", "-1500"),
        (Decimal(0), "BinarySI", "0"),
    ],
)
def test_format_quantity(value, fmt, text):
    assert format_quantity(value, fmt) == text


def test_format_quantity_rejects_unknown_format():
    with pytest.raises(ValueError):
        format_quantity(Decimal(1), "Hex")


def test_milli_and_to_int_round_up():
    assert milli("1.5") == 1500
    assert milli("250m") == 250
    assert milli("1n") == 1
    assert milli(2) == 2000
    assert to_int("1Ki") == 1024
    assert to_int("1.5") == 2
    assert to_int("1m") == 1
    assert to_int("-1.5") == -2
    assert to_int(Decimal("2.0")) == 2
    assert to_int("1e30") == 2**63 - 1
