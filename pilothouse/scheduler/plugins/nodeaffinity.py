"""NodeAffinity: `spec.nodeSelector` and required node affinity filter nodes; preferred
node affinity terms add their weights to a node's score (weight 2).

Node selector terms are ORed, the expressions and fields inside a term ANDed, and a
term with neither matches nothing -- as `nodeaffinity.NodeSelector` upstream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..framework import (
    MAX_NODE_SCORE,
    SKIP,
    CycleState,
    FilterPlugin,
    PreFilterPlugin,
    PreScorePlugin,
    ScorePlugin,
    Status,
)
from ..nodeinfo import NodeInfo, PodInfo

REASON = "node(s) didn't match Pod's node affinity/selector"
NodeTest = Callable[[NodeInfo], bool]


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _expression(expr: Mapping[str, Any], value_of: Callable[[NodeInfo, str], str | None]
                ) -> NodeTest:
    key = expr.get("key") or ""
    operator = expr.get("operator")
    values = frozenset(expr.get("values") or ())
    if operator == "In":
        return lambda node: value_of(node, key) in values
    if operator == "NotIn":
        return lambda node: value_of(node, key) not in values
    if operator == "Exists":
        return lambda node: value_of(node, key) is not None
    if operator == "DoesNotExist":
        return lambda node: value_of(node, key) is None
    if operator in ("Gt", "Lt") and len(values) == 1:
        bound = _int(next(iter(values)))
        greater = operator == "Gt"

        def compare(node: NodeInfo) -> bool:
            number = _int(value_of(node, key))
            if number is None or bound is None:
                return False
            return number > bound if greater else number < bound
        return compare
    return lambda node: False


def _label(node: NodeInfo, key: str) -> str | None:
    return node.labels.get(key)


def _field(node: NodeInfo, key: str) -> str | None:
    return node.name if key == "metadata.name" else None


def compile_term(term: Mapping[str, Any]) -> NodeTest:
    tests = [_expression(e, _label) for e in term.get("matchExpressions") or ()]
    tests += [_expression(e, _field) for e in term.get("matchFields") or ()]
    if not tests:
        return lambda node: False
    return lambda node: all(test(node) for test in tests)


def compile_node_selector(selector: Mapping[str, Any]) -> NodeTest:
    """A v1.NodeSelector (ORed terms) as one test."""
    terms = [compile_term(t) for t in selector.get("nodeSelectorTerms") or ()]
    return lambda node: any(term(node) for term in terms)


def required_node_test(pod: PodInfo) -> NodeTest | None:
    """The pod's nodeSelector and required node affinity together; None if it has neither."""
    tests: list[NodeTest] = []
    node_selector = (pod.pod.get("spec") or {}).get("nodeSelector") or {}
    if node_selector:
        wanted = tuple(node_selector.items())
        tests.append(lambda node: all(node.labels.get(k) == v for k, v in wanted))
    required = ((pod.affinity.get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required is not None:
        tests.append(compile_node_selector(required))
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]
    return lambda node: all(test(node) for test in tests)


class NodeAffinity(PreFilterPlugin, FilterPlugin, PreScorePlugin, ScorePlugin):
    name = "NodeAffinity"
    weight = 2

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        test = required_node_test(pod)
        if test is None:
            return SKIP
        state.data[self.name] = test
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if state.data[self.name](node):
            return None
        return Status.unresolvable(REASON)

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        preferred = ((pod.affinity.get("nodeAffinity") or {})
                     .get("preferredDuringSchedulingIgnoredDuringExecution")) or []
        terms = [(int(p.get("weight", 0)), compile_term(p.get("preference") or {}))
                 for p in preferred if p.get("weight")]
        if not terms:
            return SKIP
        state.data[f"{self.name}/preferred"] = terms
        return None

    def score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        terms = state.data[f"{self.name}/preferred"]
        return [sum(weight for weight, term in terms if term(node)) for node in nodes]

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> list[int]:
        top = max(scores, default=0)
        return [MAX_NODE_SCORE * s // top for s in scores] if top > 0 else scores
