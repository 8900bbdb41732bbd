"""Resource quantities: `resource.Quantity` of k8s.io/apimachinery/pkg/api/resource.

This module owns the quantity grammar (`500m`, `1.5Gi`, `12e6`), its exact decimal value
and the canonical string the API server stores and returns (`1.5` -> `1500m`,
`1024Mi` -> `1Gi`). Values are `decimal.Decimal`, never floats, so nothing drifts as
requests, limits and quota are added up. As in Kubernetes, a value is rounded up to a
whole nano unit, and a quantity already in canonical form keeps its exact spelling.
"""

from __future__ import annotations

import re
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, InvalidOperation

DECIMAL_SI = "DecimalSI"
BINARY_SI = "BinarySI"
DECIMAL_EXPONENT = "DecimalExponent"

_SPLIT_RE = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
ERR_FORMAT = f"quantities must match the regular expression '{_SPLIT_RE}'"
ERR_NUMERIC = "unable to parse numeric part of quantity"
ERR_SUFFIX = "unable to parse quantity's suffix"

# The scanner of parseQuantityString: sign, number (leading zeros apart), fraction,
# suffix letters, then an optional signed exponent.
_SCAN = re.compile(
    r"(?P<sign>[+-]?)0*(?P<num>[0-9]*)(?:\.(?P<denom>[0-9]*))?"
    r"(?P<suffix>[eEinumkKMGTP]*[-+]?[0-9]*)"
)

_DECIMAL_SUFFIXES = {
    "n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18,
}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_BY_EXPONENT = {e: s for s, e in _DECIMAL_SUFFIXES.items()}
_BINARY_BY_POWER = {e // 10: s for s, e in _BINARY_SUFFIXES.items()}

_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)
_INT32_MAX = 2**31 - 1
_MAX_INT64_FACTORS = 18  # decimal digits that always fit an int64
_NANO = -9

QuantityValue = str | int | float

# Arithmetic that never rounds: quantities are exact however many digits they carry.
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


def _suffix(suffix: str) -> tuple[int, int, str]:
    """(base, exponent, format) for a suffix, or ValueError(ERR_SUFFIX)."""
    if suffix in _DECIMAL_SUFFIXES:
        return 10, _DECIMAL_SUFFIXES[suffix], DECIMAL_SI
    if suffix in _BINARY_SUFFIXES:
        return 2, _BINARY_SUFFIXES[suffix], BINARY_SI
    if len(suffix) > 1 and suffix[0] in "eE" and re.fullmatch(r"[+-]?[0-9]+", suffix[1:]):
        exponent = int(suffix[1:])
        if -_INT32_MAX <= exponent <= _INT32_MAX:
            return 10, exponent, DECIMAL_EXPONENT
    raise ValueError(ERR_SUFFIX)


def _text(value: QuantityValue) -> str:
    """The text a JSON string or number holds, trimmed as UnmarshalJSON trims it."""
    if isinstance(value, bool):
        raise ValueError(ERR_FORMAT)
    if isinstance(value, int | float):
        return repr(value)
    return value.strip()


def _round_up_to_nano(amount: Decimal) -> Decimal:
    """Round a magnitude away from zero to a whole nano unit, exactly."""
    sign, digits, exponent = amount.as_tuple()
    if not isinstance(exponent, int) or exponent >= _NANO:
        return amount
    shift = _NANO - exponent
    unscaled = int("".join(map(str, digits)))
    if shift >= len(digits):
        rounded = 1 if unscaled else 0
    else:
        rounded, rest = divmod(unscaled, 10**shift)
        rounded += 1 if rest else 0
    return Decimal(f"{'-' if sign else ''}{rounded}e{_NANO}")


def _parse(text: str) -> tuple[Decimal, str, bool]:
    """ParseQuantity: (value, format, whether `text` is already the canonical spelling)."""
    if not text:
        raise ValueError(ERR_FORMAT)
    if text == "0":
        return Decimal(0), DECIMAL_SI, True
    match = _SCAN.fullmatch(text)
    if match is None:
        raise ValueError(ERR_FORMAT)
    negative = match["sign"] == "-"
    num = match["num"] or "0"
    denom = match["denom"] or ""
    base, exponent, fmt = _suffix(match["suffix"])

    try:
        amount = Decimal(f"{num}.{denom}e{exponent if base == 10 else 0}")
    except InvalidOperation:
        raise ValueError(ERR_NUMERIC) from None
    if base == 2:
        amount = _EXACT.multiply(amount, Decimal(2**exponent))
    amount = _round_up_to_nano(amount)
    if fmt == BINARY_SI:
        amount = min(amount, Decimal(_INT64_MAX))
        if 0 < amount < 1:
            fmt = DECIMAL_SI
    if negative and amount:
        amount = -amount
    return amount, fmt, _keeps_spelling(num, denom, exponent, fmt)


def _keeps_spelling(num: str, denom: str, exponent: int, fmt: str) -> bool:
    """Whether ParseQuantity remembers the input string as the quantity's rendering.

    Kubernetes skips re-rendering a quantity its fast integer path already finds
    canonical (no trailing thousands, no leading zero, exponent on a multiple of
    three, a binary value not divisible by 8), and then returns the input verbatim.
    """
    shifted = num + denom
    if fmt == BINARY_SI:
        if denom:
            return False
        if len(num) + int(exponent * 3 / 10) + 1 > 15:
            return False
        return int(shifted) % 8 != 0
    if len(num) + len(denom) > _MAX_INT64_FACTORS:
        return False
    scale = exponent - len(denom)
    if scale < _NANO:
        return False
    return scale % 3 == 0 and not shifted.endswith("000") and shifted[0] != "0"


def parse_quantity(value: QuantityValue) -> Decimal:
    """The exact value of a quantity string (or JSON number).

    Raises ValueError with Kubernetes' message for malformed input.
    """
    return _parse(_text(value))[0]


def _decimal_parts(amount: Decimal) -> tuple[int, int]:
    """(mantissa, exponent) with every factor of ten moved into the exponent."""
    sign, digits, exponent = _EXACT.normalize(amount).as_tuple()
    mantissa = int("".join(map(str, digits)))
    return (-mantissa if sign else mantissa), int(exponent)


def format_quantity(value: Decimal, fmt: str = DECIMAL_SI) -> str:
    """The canonical spelling of `value` in format `fmt`, as Quantity.String() renders it.

    The suffix is as large as it can be without a fractional mantissa; BinarySI falls
    back to DecimalSI for magnitudes under 1024 and for values that are not whole.
    """
    if fmt not in (DECIMAL_SI, BINARY_SI, DECIMAL_EXPONENT):
        raise ValueError(f"unknown quantity format {fmt!r}")
    if not value.is_finite():
        raise ValueError(f"quantity must be a finite number, not {value}")
    amount = _round_up_to_nano(value)
    if not amount:
        return "0"
    if fmt == BINARY_SI:
        if -1024 < amount < 1024 or amount != amount.to_integral_value():
            fmt = DECIMAL_SI
        else:
            mantissa, power = int(amount), 0
            while power < 6 and mantissa % 1024 == 0:
                mantissa //= 1024
                power += 1
            return f"{mantissa}{_BINARY_BY_POWER.get(power, '')}"
    mantissa, exponent = _decimal_parts(amount)
    drop = exponent % 3  # lower the exponent to a multiple of three
    mantissa, exponent = mantissa * 10**drop, exponent - drop
    if fmt == DECIMAL_EXPONENT:
        return f"{mantissa}e{exponent}" if exponent else str(mantissa)
    if exponent > 18:
        mantissa, exponent = mantissa * 10 ** (exponent - 18), 18
    return f"{mantissa}{_DECIMAL_BY_EXPONENT[exponent]}"


def canonical(value: QuantityValue) -> str:
    """What the API server stores for a quantity: parsed, then rendered in its own format."""
    text = _text(value)
    amount, fmt, keeps_spelling = _parse(text)
    return text if keeps_spelling else format_quantity(amount, fmt)


def _scaled(value: QuantityValue | Decimal, scale: int) -> int:
    """ScaledValue: the value in units of 10**scale, rounded away from zero, int64-capped."""
    amount = value if isinstance(value, Decimal) else parse_quantity(value)
    scaled = _EXACT.scaleb(amount, -scale)
    if scaled >= _INT64_MAX:
        return _INT64_MAX
    if scaled <= _INT64_MIN:
        return _INT64_MIN
    whole = int(scaled)  # truncates toward zero
    if whole != scaled:
        whole += 1 if scaled > 0 else -1
    return whole


def milli(value: QuantityValue | Decimal) -> int:
    """MilliValue(): thousandths, e.g. CPU millicores (`"1.5"` -> 1500, `"1n"` -> 1)."""
    return _scaled(value, -3)


def to_int(value: QuantityValue | Decimal) -> int:
    """Value(): whole units such as bytes, rounded up (`"1.5"` -> 2, `"1Ki"` -> 1024)."""
    return _scaled(value, 0)
