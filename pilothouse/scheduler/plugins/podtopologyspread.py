"""PodTopologySpread: keep matching pods evenly spread over topology domains.

For each `topologySpreadConstraints` entry the plugin counts the pods matching its
selector (in the pod's namespace) per value of its topology key, over the nodes the pod
could use at all (its nodeSelector and required node affinity, `nodeAffinityPolicy:
Honor`). `DoNotSchedule` constraints filter: placing the pod must not make its domain
exceed the least-loaded domain by more than `maxSkew` (with fewer domains than
`minDomains`, the minimum counts as 0). `ScheduleAnyway` constraints score (weight 2):
fewer matching pods in a node's domain, higher score.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

from ..framework import (
    ASSIGNED_POD_ADD,
    ASSIGNED_POD_DELETE,
    MAX_NODE_SCORE,
    NODE_EVENTS,
    SKIP,
    CycleState,
    FilterPlugin,
    PreFilterPlugin,
    PreScorePlugin,
    ScorePlugin,
    Status,
)
from ..nodeinfo import NodeInfo, PodInfo, selector
from .nodeaffinity import required_node_test

REASON = "node(s) didn't match pod topology spread constraints"
MISSING_LABEL_REASON = "node(s) didn't match pod topology spread constraints (missing required label)"


class Constraint:
    __slots__ = ("key", "max_skew", "min_domains", "selector", "self_match", "counts")

    def __init__(self, spec: Mapping[str, Any], pod: PodInfo) -> None:
        self.key: str = spec.get("topologyKey") or ""
        self.max_skew = int(spec.get("maxSkew") or 1)
        self.min_domains = int(spec.get("minDomains") or 1)
        label_selector = dict(spec.get("labelSelector") or {})
        match_keys = [k for k in spec.get("matchLabelKeys") or () if k in pod.labels]
        if match_keys:
            expressions = list(label_selector.get("matchExpressions") or ())
            expressions += [{"key": k, "operator": "In", "values": [pod.labels[k]]}
                            for k in match_keys]
            label_selector["matchExpressions"] = expressions
        self.selector = selector(label_selector)
        self.self_match = 1 if self.selector.matches(pod.labels) else 0
        self.counts: Counter[str] = Counter()

    def min_count(self) -> int:
        if len(self.counts) < self.min_domains:
            return 0
        return min(self.counts.values(), default=0)


def count_constraints(pod: PodInfo, specs: list[Mapping[str, Any]],
                      nodes: list[NodeInfo]) -> list[Constraint]:
    constraints = [Constraint(spec, pod) for spec in specs]
    eligible = required_node_test(pod)
    keys = [c.key for c in constraints]
    for node in nodes:
        labels = node.labels
        if any(k not in labels for k in keys):
            continue
        if eligible is not None and not eligible(node):
            continue
        for constraint in constraints:
            matching = sum(1 for p in node.pods.values()
                           if p.namespace == pod.namespace and not p.terminating
                           and constraint.selector.matches(p.labels))
            constraint.counts[labels[constraint.key]] += matching
    return constraints


class PodTopologySpread(PreFilterPlugin, FilterPlugin, PreScorePlugin, ScorePlugin):
    name = "PodTopologySpread"
    events = NODE_EVENTS | {ASSIGNED_POD_ADD, ASSIGNED_POD_DELETE}
    weight = 2

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        hard = [c for c in pod.spread_constraints
                if (c.get("whenUnsatisfiable") or "DoNotSchedule") == "DoNotSchedule"]
        if not hard:
            return SKIP
        state.data[self.name] = count_constraints(pod, hard, self.handle.cache.node_list())
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        for constraint in state.data[self.name]:
            value = node.labels.get(constraint.key)
            if value is None:
                return Status.unresolvable(MISSING_LABEL_REASON)
            skew = constraint.counts[value] + constraint.self_match - constraint.min_count()
            if skew > constraint.max_skew:
                return Status.unschedulable(REASON)
        return None

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        soft = [c for c in pod.spread_constraints if c.get("whenUnsatisfiable") == "ScheduleAnyway"]
        if not soft:
            return SKIP
        state.data[f"{self.name}/score"] = count_constraints(
            pod, soft, self.handle.cache.node_list())
        return None

    def score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        constraints: list[Constraint] = state.data[f"{self.name}/score"]
        scores = []
        for node in nodes:
            if any(c.key not in node.labels for c in constraints):
                scores.append(-1)
                continue
            total = 0.0
            for c in constraints:
                weight = math.log(len(c.counts) + 2)
                total += c.counts[node.labels[c.key]] * weight + (c.max_skew - 1)
            scores.append(round(total))
        return scores

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> list[int]:
        present = [s for s in scores if s >= 0]
        if not present:
            return [0] * len(scores)
        low, high = min(present), max(present)
        if high == 0:
            return [MAX_NODE_SCORE if s >= 0 else 0 for s in scores]
        return [MAX_NODE_SCORE * (high + low - s) // high if s >= 0 else 0 for s in scores]
