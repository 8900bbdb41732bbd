"""Label and field selectors: the `labelSelector` / `fieldSelector` query parameters, and
the node selector terms of node affinity and PersistentVolume node affinity.

This module owns the two selector grammars of k8s.io/apimachinery (`pkg/labels`,
`pkg/fields`) and the conversion of a `metav1.LabelSelector` (matchLabels +
matchExpressions) into the same matcher. The API server parses a selector once per
request and then evaluates it against every object of a list and every watch event,
so parsing compiles each requirement into a small test function up front.

Errors read as the real API server words them, so kubectl shows the familiar
`unable to parse requirement: ...` lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pilothouse.machinery import errors, names

# selection.Operator values, as k8s.io/apimachinery/pkg/selection spells them.
IN = "in"
NOT_IN = "notin"
EQUALS = "="
DOUBLE_EQUALS = "=="
NOT_EQUALS = "!="
EXISTS = "exists"
DOES_NOT_EXIST = "!"
GREATER_THAN = "gt"
LESS_THAN = "lt"

_BINARY_OPERATORS = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN)

# metav1.LabelSelectorOperator -> selection.Operator
_EXPRESSION_OPERATORS = {
    "In": IN,
    "NotIn": NOT_IN,
    "Exists": EXISTS,
    "DoesNotExist": DOES_NOT_EXIST,
}

_INT64 = re.compile(r"[+-]?[0-9]+")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

LabelTest = Callable[[Mapping[str, str]], bool]


def _parse_int64(text: str) -> int | None:
    """strconv.ParseInt(text, 10, 64), or None where Go would fail."""
    if not _INT64.fullmatch(text):
        return None
    value = int(text)
    return value if _INT64_MIN <= value <= _INT64_MAX else None


def _invalid_list(values: list[str], detail: str) -> str:
    """field.Invalid on `values`, which Go prints with `%#v` as a []string literal."""
    shown = "[]string{" + ", ".join(f'"{v}"' for v in values) + "}"
    return f"values: Invalid value: {shown}: {detail}"


def _aggregate(problems: list[str]) -> str:
    """utilerrors.NewAggregate(...).Error(): one message alone, several in brackets."""
    unique = list(dict.fromkeys(problems))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


def _key_problem(key: str, path: str) -> str | None:
    problems = names.is_qualified_name(key)
    if not problems:
        return None
    return errors.invalid_value(path, key, "; ".join(problems)).render()


@dataclass(frozen=True)
class Requirement:
    """One clause of a label selector: `key operator values`."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def __str__(self) -> str:
        op = self.operator
        if op == EXISTS:
            return self.key
        if op == DOES_NOT_EXIST:
            return "!" + self.key
        shown = self.values[0] if len(self.values) == 1 else ",".join(sorted(self.values))
        if op in (IN, NOT_IN):
            return f"{self.key} {op} ({shown})"
        symbol = {GREATER_THAN: ">", LESS_THAN: "<"}.get(op, op)
        return f"{self.key}{symbol}{shown}"

    def compile(self) -> LabelTest:
        """A function answering whether a label set satisfies this requirement."""
        key, op = self.key, self.operator
        if op in (IN, EQUALS, DOUBLE_EQUALS, NOT_IN, NOT_EQUALS):
            wanted = frozenset(self.values)
            if op in (IN, EQUALS, DOUBLE_EQUALS):
                if len(wanted) == 1:
                    (only,) = wanted
                    return lambda labels: labels.get(key) == only
                return lambda labels: labels.get(key) in wanted
            # A missing key satisfies NotIn / NotEquals; label values are never None.
            return lambda labels: labels.get(key) not in wanted
        if op == EXISTS:
            return lambda labels: key in labels
        if op == DOES_NOT_EXIST:
            return lambda labels: key not in labels
        bound = int(self.values[0])
        greater = op == GREATER_THAN

        def compare(labels: Mapping[str, str]) -> bool:
            value = labels.get(key)
            number = _parse_int64(value) if value is not None else None
            if number is None:
                return False
            return number > bound if greater else number < bound

        return compare


def new_requirement(key: str, operator: str, values: Iterable[str] = ()) -> Requirement:
    """labels.NewRequirement: validate and build one requirement.

    Raises ValueError with Kubernetes' aggregated field-error message.
    """
    vals = list(values)
    problems = []
    key_problem = _key_problem(key, "key")
    if key_problem:
        problems.append(key_problem)
    if operator in (IN, NOT_IN):
        if not vals:
            problems.append(_invalid_list(
                vals, "for 'in', 'notin' operators, values set can't be empty"
            ))
    elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
        if len(vals) != 1:
            problems.append(_invalid_list(vals, "exact-match compatibility requires one single value"))
    elif operator in (EXISTS, DOES_NOT_EXIST):
        if vals:
            problems.append(_invalid_list(
                vals, "values set must be empty for exists and does not exist"
            ))
    elif operator in (GREATER_THAN, LESS_THAN):
        if len(vals) != 1:
            problems.append(_invalid_list(
                vals, "for 'Gt', 'Lt' operators, exactly one value is required"
            ))
        for i, value in enumerate(vals):
            if _parse_int64(value) is None:
                problems.append(errors.invalid_value(
                    f"values[{i}]", value, "for 'Gt', 'Lt' operators, the value must be an integer"
                ).render())
    else:
        supported = ", ".join(f'"{o}"' for o in (*_BINARY_OPERATORS, EXISTS, DOES_NOT_EXIST))
        problems.append(
            f'operator: Unsupported value: "{operator}": supported values: {supported}'
        )
    for i, value in enumerate(vals):
        value_problems = names.is_valid_label_value(value)
        if value_problems:
            problems.append(errors.invalid_value(
                f"values[{i}][{key}]", value, "; ".join(value_problems)
            ).render())
    if problems:
        raise ValueError(_aggregate(problems))
    return Requirement(key, operator, tuple(vals))


class LabelSelector:
    """A parsed label selector: the AND of its requirements, compiled for matching."""

    __slots__ = ("requirements", "_nothing", "_tests")

    def __init__(self, requirements: Iterable[Requirement] = (), *, nothing: bool = False):
        self.requirements: tuple[Requirement, ...] = tuple(
            sorted(requirements, key=lambda r: r.key)
        )
        self._nothing = nothing
        self._tests = tuple(r.compile() for r in self.requirements)

    @classmethod
    def nothing(cls) -> LabelSelector:
        """labels.Nothing(): what a nil metav1.LabelSelector means."""
        return cls(nothing=True)

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (Everything)."""
        return not self._nothing and not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self._nothing:
            return False
        if labels is None:
            labels = {}
        for test in self._tests:
            if not test(labels):
                return False
        return True

    def exact(self, key: str) -> str | None:
        """RequiresExactMatch: the one value `key` must have, if the selector pins it."""
        for r in self.requirements:
            if r.key == key:
                if r.operator in (EQUALS, DOUBLE_EQUALS, IN) and len(r.values) == 1:
                    return r.values[0]
                return None
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return "LabelSelector(<nothing>)" if self._nothing else f"LabelSelector({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabelSelector):
            return NotImplemented
        return self._nothing == other._nothing and self.requirements == other.requirements

    def __hash__(self) -> int:
        return hash((self._nothing, self.requirements))


# --- label selector string grammar (labels.Parse) -------------------------------------

_EOS, _CLOSE, _COMMA, _NOT, _DEQ, _EQ, _GT, _ID, _IN, _LT, _NEQ, _NOTIN, _OPEN = range(13)

_SYMBOLS = {
    ")": _CLOSE,
    ",": _COMMA,
    "!": _NOT,
    "==": _DEQ,
    "=": _EQ,
    ">": _GT,
    "<": _LT,
    "!=": _NEQ,
    "(": _OPEN,
}
_KEYWORDS = {"in": _IN, "notin": _NOTIN}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")
_OPERATOR_TOKENS = {
    _IN: IN, _EQ: EQUALS, _DEQ: DOUBLE_EQUALS, _GT: GREATER_THAN,
    _LT: LESS_THAN, _NOTIN: NOT_IN, _NEQ: NOT_EQUALS,
}


def _lex(text: str) -> list[tuple[int, str]]:
    tokens = []
    pos, end = 0, len(text)
    while True:
        while pos < end and text[pos] in _WHITESPACE:
            pos += 1
        if pos >= end:
            tokens.append((_EOS, ""))
            return tokens
        if text[pos] in _SPECIAL:
            # Longest run of symbol characters that still spells a known operator.
            literal = text[pos]
            pos += 1
            while pos < end and text[pos] in _SPECIAL and literal + text[pos] in _SYMBOLS:
                literal += text[pos]
                pos += 1
            tokens.append((_SYMBOLS[literal], literal))
            continue
        start = pos
        while pos < end and text[pos] not in _SPECIAL and text[pos] not in _WHITESPACE:
            pos += 1
        literal = text[start:pos]
        tokens.append((_KEYWORDS.get(literal, _ID), literal))


class _LabelParser:
    """labels.Parser: recursive descent over the token list, same messages."""

    def __init__(self, text: str) -> None:
        self.tokens = _lex(text)
        self.pos = 0

    def lookahead(self, values: bool = True) -> tuple[int, str]:
        tok, lit = self.tokens[self.pos]
        # In a value position the keywords `in` / `notin` are ordinary identifiers.
        return (_ID, lit) if values and tok in (_IN, _NOTIN) else (tok, lit)

    def consume(self, values: bool = True) -> tuple[int, str]:
        item = self.lookahead(values)
        self.pos += 1
        return item

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            tok, lit = self.lookahead()
            if tok in (_ID, _NOT):
                try:
                    requirements.append(self.requirement())
                except ValueError as exc:
                    raise ValueError(f"unable to parse requirement: {exc}") from None
                tok, lit = self.consume()
                if tok == _EOS:
                    return requirements
                if tok != _COMMA:
                    raise ValueError(f"found '{lit}', expected: ',' or 'end of string'")
                tok, lit = self.lookahead()
                if tok not in (_ID, _NOT):
                    raise ValueError(f"found '{lit}', expected: identifier after ','")
            elif tok == _EOS:
                return requirements
            else:
                raise ValueError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def requirement(self) -> Requirement:
        operator = None
        tok, key = self.consume()
        if tok == _NOT:
            operator = DOES_NOT_EXIST
            tok, key = self.consume()
        if tok != _ID:
            raise ValueError(f"found '{key}', expected: identifier")
        problem = _key_problem(key, "<nil>")
        if problem:
            raise ValueError(problem)
        if self.lookahead()[0] in (_EOS, _COMMA) and operator is None:
            operator = EXISTS
        if operator in (EXISTS, DOES_NOT_EXIST):
            return new_requirement(key, operator)
        tok, lit = self.consume(values=False)
        if tok not in _OPERATOR_TOKENS:
            raise ValueError(f"found '{lit}', expected: {', '.join(_BINARY_OPERATORS)}")
        operator = _OPERATOR_TOKENS[tok]
        values = self.value_set() if operator in (IN, NOT_IN) else self.exact_value()
        return new_requirement(key, operator, sorted(values))

    def value_set(self) -> set[str]:
        tok, lit = self.consume()
        if tok != _OPEN:
            raise ValueError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead()
        if tok == _CLOSE:
            self.consume()
            return {""}
        if tok not in (_ID, _COMMA):
            raise ValueError(f"found '{lit}', expected: ',', ')' or identifier")
        values = self.identifiers()
        self.consume()  # the ')' that identifiers() stopped at
        return values

    def identifiers(self) -> set[str]:
        values: set[str] = set()
        while True:
            tok, lit = self.consume()
            if tok == _ID:
                values.add(lit)
                tok2, lit2 = self.lookahead()
                if tok2 == _COMMA:
                    continue
                if tok2 == _CLOSE:
                    return values
                raise ValueError(f"found '{lit2}', expected: ',' or ')'")
            if tok == _COMMA:
                # Empty members: "(,a)", "(a,)", "(a,,b)" each add the empty value.
                if not values:
                    values.add("")
                if self.lookahead()[0] in (_CLOSE, _COMMA):
                    values.add("")
                if self.lookahead()[0] == _CLOSE:
                    return values
                continue
            raise ValueError(f"found '{lit}', expected: ',', or identifier")

    def exact_value(self) -> set[str]:
        if self.lookahead()[0] in (_EOS, _COMMA):
            return {""}
        tok, lit = self.consume()
        if tok == _ID:
            return {lit}
        raise ValueError(f"found '{lit}', expected: identifier")


def parse_label_selector(text: str) -> LabelSelector:
    """Parse the `labelSelector` query grammar (kubectl `-l`); "" selects everything.

    Raises a 400 `APIError` worded as the API server words it.
    """
    try:
        return LabelSelector(_LabelParser(text).parse())
    except ValueError as exc:
        raise errors.bad_request(str(exc)) from None


def label_selector_from_dict(sel: Mapping[str, Any] | None) -> LabelSelector:
    """metav1.LabelSelectorAsSelector: None selects nothing, `{}` selects everything.

    Raises ValueError when a key, value or operator is invalid.
    """
    if sel is None:
        return LabelSelector.nothing()
    match_labels = sel.get("matchLabels") or {}
    expressions = sel.get("matchExpressions") or []
    requirements = [new_requirement(k, EQUALS, [v]) for k, v in match_labels.items()]
    for expr in expressions:
        operator = expr.get("operator", "")
        if operator not in _EXPRESSION_OPERATORS:
            raise ValueError(f'"{operator}" is not a valid label selector operator')
        requirements.append(new_requirement(
            expr.get("key", ""), _EXPRESSION_OPERATORS[operator], expr.get("values") or []
        ))
    return LabelSelector(requirements)


def selector_string_from_dict(sel: Mapping[str, Any] | None) -> str:
    """The canonical string of a metav1.LabelSelector, as Scale `status.selector` shows it."""
    return str(label_selector_from_dict(sel))


# --- field selectors (fields.ParseSelector) -------------------------------------------

_FIELD_OPERATORS = ("!=", "==", "=")


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not backslash-escaped; escapes stay in the terms."""
    terms, start, escaped = [], 0, False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    """Split at the first operator; the field name has no escaping."""
    for i in range(len(term)):
        for op in _FIELD_OPERATORS:
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


def _unescape(value: str) -> str:
    if "\\" not in value and "," not in value and "=" not in value:
        return value
    out, escaped = [], False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise ValueError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            # Go prints the rune with %v, i.e. as its code point.
            raise ValueError(f"invalid field selector: unescaped character in value: {ord(ch)}")
        else:
            out.append(ch)
    if escaped:
        raise ValueError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def escape_field_value(value: str) -> str:
    """fields.EscapeValue: make any literal safe as a field selector value."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


class FieldSelector:
    """A parsed field selector: the AND of `field=value` / `field!=value` terms."""

    __slots__ = ("requirements", "_equal", "_not_equal")

    def __init__(self, requirements: Iterable[tuple[str, str, str]] = ()) -> None:
        self.requirements: list[tuple[str, str, str]] = list(requirements)
        self._equal = tuple((f, v) for f, op, v in self.requirements if op == EQUALS)
        self._not_equal = tuple((f, v) for f, op, v in self.requirements if op == NOT_EQUALS)

    @property
    def empty(self) -> bool:
        return not self.requirements

    @property
    def fields(self) -> set[str]:
        """The field names referenced, for rejecting unsupported ones."""
        return {f for f, _, _ in self.requirements}

    def exact(self, field: str) -> str | None:
        """RequiresExactMatch: the value an `=` term pins `field` to, if any."""
        for f, v in self._equal:
            if f == field:
                return v
        return None

    def matches(self, fields: Mapping[str, str]) -> bool:
        """A missing field reads as "", as `fields.Set.Get` does."""
        for f, v in self._equal:
            if fields.get(f, "") != v:
                return False
        for f, v in self._not_equal:
            if fields.get(f, "") == v:
                return False
        return True

    def __str__(self) -> str:
        return ",".join(f"{f}{op}{escape_field_value(v)}" for f, op, v in self.requirements)

    def __repr__(self) -> str:
        return f"FieldSelector({str(self)!r})"


def parse_field_selector(text: str) -> FieldSelector:
    """Parse the `fieldSelector` query grammar; "" selects everything.

    Terms are `field=value`, `field==value` or `field!=value`, joined by commas; a value
    escapes `\\`, `,` and `=` with a backslash. Raises a 400 `APIError` on bad syntax.
    """
    requirements = []
    for term in sorted(_split_terms(text)) if text else ():
        if not term:
            continue
        split = _split_term(term)
        if split is None:
            raise errors.bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        field, op, raw = split
        try:
            value = _unescape(raw)
        except ValueError as exc:
            raise errors.bad_request(str(exc)) from None
        requirements.append((field, NOT_EQUALS if op == "!=" else EQUALS, value))
    return FieldSelector(requirements)


# -- node selectors (node affinity, PersistentVolume node affinity) -----------------------


def node_requirement_matches(requirement: Mapping[str, Any], value: str | None) -> bool:
    """One NodeSelectorRequirement against a node's label or field value (None: absent).
    Gt and Lt compare integers, and never match an absent or non-integer value."""
    operator = requirement.get("operator")
    values = requirement.get("values") or []
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt") and value is not None and len(values) == 1:
        try:
            have, bound = int(value), int(values[0])
        except ValueError:
            return False
        return have > bound if operator == "Gt" else have < bound
    return False


def node_selector_term_matches(term: Mapping[str, Any], labels: Mapping[str, str],
                               fields: Mapping[str, str]) -> bool:
    """A NodeSelectorTerm: every label expression and field requirement holds, and it has at
    least one (an empty term matches nothing)."""
    expressions = term.get("matchExpressions") or []
    field_terms = term.get("matchFields") or []
    if not expressions and not field_terms:
        return False
    return all(node_requirement_matches(e, labels.get(e.get("key", ""))) for e in expressions) \
        and all(node_requirement_matches(f, fields.get(f.get("key", ""))) for f in field_terms)
