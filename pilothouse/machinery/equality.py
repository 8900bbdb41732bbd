"""apimachinery's `equality.Semantic` for JSON values: what two objects mean, not their spelling.

Kubernetes compares objects with `equality.Semantic.DeepEqual` wherever a spelling must not
count as a change: immutable fields in validation, a controller deciding whether what it
wants differs from what is stored. Two rules matter on the wire:

- nil and empty maps and lists are equal (DeepEqual's rule), so a field left out, written
  `null`, `{}` or `[]` is the same field (`semantic` drops them, for comparing normalised
  values with `==`);
- resource.Quantity values compare by value (`Cmp`), so the `"0.5"` a controller asks for
  equals the `"500m"` the server stores (`semantically_equal`, which also applies the
  first rule).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .quantity import parse_quantity


def semantic(value: Any) -> Any:
    """`value` with null, empty maps and empty lists dropped, for apiequality comparisons."""
    if isinstance(value, dict):
        out = {k: semantic(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [semantic(v) for v in value]
    return value


def semantically_equal(a: Any, b: Any) -> bool:
    """Semantic.DeepEqual of two JSON values: nil and empty alike, and numbers or strings that
    are both quantities compared by value; everything else exactly."""
    return _equal(semantic(a), semantic(b))


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):  # JSON true is not the number 1
        return a is b
    if a == b:
        return True
    if isinstance(a, str | int | float) and isinstance(b, str | int | float):
        quantity = _quantity(a)
        return quantity is not None and quantity == _quantity(b)
    return False


def _quantity(value: Any) -> Decimal | None:
    try:
        return parse_quantity(value)
    except (TypeError, ValueError):
        return None
