"""JSONPath as Kubernetes evaluates it: k8s.io/client-go/util/jsonpath.

This module owns the path language of CRD `additionalPrinterColumns` (and of kubectl's
`-o jsonpath` actions): `.spec.replicas`, `.spec.items[0].name`, `.spec.items[*].name`,
`..name`, unions `[0,2]`, slices `[1:3]`, escaped keys
`.metadata.labels.app\\.kubernetes\\.io/name`, bracketed keys `['name']`, and filters
`[?(@.type=="Ready")]` with ==, !=, <, >, <=, >= or bare existence `[?(@.x)]`.

A path is compiled once (when a CRD is stored) and then evaluated per row. Evaluation
follows Kubernetes with missing keys allowed, as the Table printer runs it: a missing
key yields nothing, and an impossible step (indexing past the end of a list, indexing a
map) makes the whole path yield nothing, the empty cell kubectl shows.

As in Kubernetes, a bracketed key is read as a path: `['a.b']` means `.a.b`, so a key
that contains dots needs its dots escaped even inside brackets (`['a\\.b']`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

_TERMINATORS = frozenset(" \t\r\n.,[]$@{}")
_DICT_KEY = re.compile(r"'([^']*)'")
_SLICE = re.compile(r"(-?\d*)(:-?\d*)?(:-?\d*)?")
_FILTER = re.compile(r"([^!<>=]+)([!<>=]+)(.+?)")
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
}


class _Impossible(Exception):
    """A step Kubernetes reports as an error; the whole path then finds nothing."""


class _Step(Protocol):
    def apply(self, values: list[Any]) -> list[Any]: ...


Steps = tuple[_Step, ...]


@dataclass(frozen=True)
class _Field:
    name: str

    def apply(self, values: list[Any]) -> list[Any]:
        if not self.name:  # `.` alone is the current object
            return values
        return [v[self.name] for v in values if isinstance(v, dict) and self.name in v]


@dataclass(frozen=True)
class _Wildcard:
    def apply(self, values: list[Any]) -> list[Any]:
        out: list[Any] = []
        for v in values:
            if isinstance(v, dict):
                out.extend(v.values())
            elif isinstance(v, list):
                out.extend(v)
        return out


@dataclass(frozen=True)
class _Recursive:
    def apply(self, values: list[Any]) -> list[Any]:
        out: list[Any] = []
        for v in values:
            if isinstance(v, dict):
                children = list(v.values())
            else:
                children = v if isinstance(v, list) else []
            if children:
                out.append(v)
                out.extend(self.apply(children))
        return out


@dataclass(frozen=True)
class _Slice:
    start: int | None
    end: int | None
    step: int | None
    single: bool  # `[i]`: end is derived as start + 1

    def apply(self, values: list[Any]) -> list[Any]:
        out: list[Any] = []
        for v in values:
            if v is None:
                continue
            if not isinstance(v, list):
                raise _Impossible
            length = len(v)
            start = self.start or 0
            if start < 0:
                start += length
            if self.single:
                end = start + 1
            else:
                end = length if self.end is None else self.end
                if end < 0:
                    end += length
            if start == end:
                continue
            if not 0 <= start < length or not 0 <= end <= length or start > end:
                raise _Impossible
            if self.step is not None and self.step <= 0:
                raise _Impossible
            out.extend(v[start:end:self.step])
        return out


@dataclass(frozen=True)
class _Union:
    branches: tuple[Steps, ...]

    def apply(self, values: list[Any]) -> list[Any]:
        out: list[Any] = []
        for branch in self.branches:
            out.extend(_evaluate(branch, values))
        return out


@dataclass(frozen=True)
class _Literal:
    value: Any

    def apply(self, values: list[Any]) -> list[Any]:
        return [self.value]


@dataclass(frozen=True)
class _Filter:
    left: Steps
    operator: str  # "exists" or a comparison
    right: Steps = ()

    def apply(self, values: list[Any]) -> list[Any]:
        out: list[Any] = []
        for v in values:
            if not isinstance(v, list):
                raise _Impossible
            out.extend(item for item in v if self._keeps(item))
        return out

    def _keeps(self, item: Any) -> bool:
        lefts = _evaluate(self.left, [item])
        if self.operator == "exists":
            return bool(lefts)
        rights = _evaluate(self.right, [item])
        if not lefts or not rights:
            return False
        if len(lefts) > 1 or len(rights) > 1:
            raise _Impossible  # "can only compare one element at a time"
        return _compare(lefts[0], self.operator, rights[0])


def _compare(left: Any, operator: str, right: Any) -> bool:
    """Compare like text/template: numbers with numbers, strings with strings."""

    def kind(x: Any) -> str | None:
        if isinstance(x, bool):
            return "bool"
        if isinstance(x, int | float):
            return "number"
        if isinstance(x, str):
            return "string"
        return None

    left_kind, right_kind = kind(left), kind(right)
    if left_kind is None or left_kind != right_kind:
        return False
    if left_kind == "bool" and operator not in ("==", "!="):
        return False
    return _COMPARISONS[operator](left, right)


def _evaluate(steps: Steps, values: list[Any]) -> list[Any]:
    for step in steps:
        if not values:
            return values
        values = step.apply(values)
    return values


class _Parser:
    """A single `{...}` action of client-go's jsonpath parser, built into steps."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.steps: list[_Step] = []

    def parse(self) -> Steps:
        text = self.text
        while self.pos < len(text):
            if text.startswith("[?(", self.pos):
                self.filter()
            elif text.startswith("..", self.pos):
                self.recursive()
            else:
                ch = text[self.pos]
                self.pos += 1
                if ch in " @$":  # the current object: nothing to do
                    continue
                if ch in "\r\n":
                    raise ValueError("unclosed action")
                if ch == "[":
                    self.array()
                elif ch in "\"'":
                    self.quote(ch)
                elif ch == ".":
                    self.field()
                elif ch in "+-" or ch.isdigit():
                    self.pos -= 1
                    self.number()
                elif ch == "_" or ch.isalnum():
                    self.pos -= 1
                    self.identifier()
                else:
                    raise ValueError(f"unrecognized character in action: U+{ord(ch):04X} '{ch}'")
        return tuple(self.steps)

    def field(self) -> None:
        start, text = self.pos, self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch == "\\":
                self.pos += 2
            elif ch in _TERMINATORS:
                break
            else:
                self.pos += 1
        name = text[start:self.pos]
        self.steps.append(_Wildcard() if name == "*" else _Field(name.replace("\\", "")))

    def recursive(self) -> None:
        if self.steps and isinstance(self.steps[-1], _Recursive):
            raise ValueError("invalid multiple recursive descent")
        self.pos += 2
        self.steps.append(_Recursive())
        following = self.text[self.pos:self.pos + 1]
        if following == "_" or following.isalnum():
            self.field()

    def number(self) -> None:
        start = self.pos
        if self.text[self.pos] in "+-":
            self.pos += 1
        while self.text[self.pos:self.pos + 1] == "." or self.text[self.pos:self.pos + 1].isdigit():
            self.pos += 1
        literal = self.text[start:self.pos]
        for convert in (int, float):
            try:
                self.steps.append(_Literal(convert(literal)))
                return
            except ValueError:
                continue
        raise ValueError(f"cannot parse number {literal}")

    def identifier(self) -> None:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _TERMINATORS:
            self.pos += 1
        word = self.text[start:self.pos]
        if word not in ("true", "false"):
            raise ValueError(f"unrecognized identifier {word}")
        self.steps.append(_Literal(word == "true"))

    def quote(self, quote: str) -> None:
        start = self.pos - 1
        while True:
            if self.pos >= len(self.text) or self.text[self.pos] == "\n":
                raise ValueError("unterminated quoted string")
            ch = self.text[self.pos]
            self.pos += 1
            if ch == quote and self.text[self.pos - 2] != "\\":
                break
        literal = self.text[start:self.pos]
        self.steps.append(_Literal(_unquote(literal)))

    def array(self) -> None:
        end = self.text.find("]", self.pos)
        newline = self.text.find("\n", self.pos)
        if end < 0 or 0 <= newline < end:
            raise ValueError("unterminated array")
        inner = self.text[self.pos:end]
        self.pos = end + 1
        if inner == "*":
            inner = ":"
        members = inner.split(",")
        if len(members) > 1:
            self.steps.append(_Union(tuple(
                _Parser(f"[{m.strip(' ')}]").parse() for m in members
            )))
            return
        key = _DICT_KEY.fullmatch(inner)
        if key:
            self.steps.extend(_Parser("." + key[1]).parse())
            return
        parts = _SLICE.fullmatch(inner)
        if parts is None:
            raise ValueError(f"invalid array index {inner}")
        start, stop, step = parts[1], parts[2], parts[3]
        self.steps.append(_Slice(
            start=_index(start) if start else None,
            end=_index(stop[1:]) if stop and stop != ":" else None,
            step=_index(step[1:]) if step and step != ":" else None,
            single=stop is None,
        ))

    def filter(self) -> None:
        self.pos += 3
        start, text = self.pos, self.text
        opened = closed = False
        pair = ""
        while True:
            if self.pos >= len(text) or text[self.pos] == "\n":
                raise ValueError("unterminated filter")
            ch = text[self.pos]
            self.pos += 1
            if ch in "\"'":
                if not opened:
                    opened, pair = True, ch
                elif ch == pair and text[self.pos - 2] != "\\":
                    closed = True
            elif ch == ")" and opened == closed:
                break
        if self.pos >= len(text) or text[self.pos] != "]":
            raise ValueError("unclosed array expect ]")
        self.pos += 1
        body = text[start:self.pos - 2]
        comparison = _FILTER.fullmatch(body)
        if comparison is None:
            self.steps.append(_Filter(_Parser(body).parse(), "exists"))
            return
        left, operator, right = comparison.groups()
        if operator not in _COMPARISONS:
            raise ValueError(f"unrecognized filter operator {operator}")
        self.steps.append(_Filter(_Parser(left).parse(), operator, _Parser(right).parse()))


def _index(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"array index {text} is not a number") from None


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"'}


def _unquote(literal: str) -> str:
    """Strip the quotes of a string literal and resolve its backslash escapes."""
    body, out, i = literal[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body) and body[i + 1] in _ESCAPES:
            out.append(_ESCAPES[body[i + 1]])
            i += 2
            continue
        if ch == "\\":
            raise ValueError(f"unquote string {literal} error invalid syntax")
        out.append(ch)
        i += 1
    return "".join(out)


class JSONPath:
    """A compiled path; `find` returns every value it reaches, in document order."""

    __slots__ = ("expression", "_steps")

    def __init__(self, expression: str, steps: Steps) -> None:
        self.expression = expression
        self._steps = steps

    def find(self, obj: Any) -> list[Any]:
        try:
            return _evaluate(self._steps, [obj])
        except _Impossible:
            return []

    def __repr__(self) -> str:
        return f"JSONPath({self.expression!r})"


def compile_jsonpath(expr: str) -> JSONPath:
    """Compile a path such as `.status.conditions[?(@.type=="Ready")].status`.

    The path may be written bare or wrapped in one `{...}` action. Raises ValueError
    with client-go's parser message when the expression is malformed.
    """
    text = expr.strip()
    if text.startswith("{"):
        if not text.endswith("}"):
            raise ValueError("unclosed action")
        text = text[1:-1]
    if not text:
        raise ValueError("empty JSONPath expression")
    return JSONPath(expr, _Parser(text).parse())
