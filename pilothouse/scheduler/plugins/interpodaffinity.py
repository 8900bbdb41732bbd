"""InterPodAffinity: place a pod near (affinity) or away from (anti-affinity) pods that
match a label selector, within a topology domain (a node label such as
`kubernetes.io/hostname` or `topology.kubernetes.io/zone`).

Filter, as upstream: every required affinity term must find a matching pod in the
node's domain (unless no pod matches yet and the pod matches its own terms -- the first
of a group); no required anti-affinity term may; and no existing pod's required
anti-affinity may match the incoming pod in that domain. Counts per (topology key,
value) are built once in PreFilter, so Filter is a few dictionary lookups per node.
Score (weight 2) sums preferred terms' weights both ways, then scales to 0..100.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

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
from ..nodeinfo import AffinityTerm, NodeInfo, PodInfo

AFFINITY_REASON = "node(s) didn't match pod affinity rules"
ANTI_AFFINITY_REASON = "node(s) didn't match pod anti-affinity rules"
EXISTING_ANTI_AFFINITY_REASON = "node(s) didn't satisfy existing pods anti-affinity rules"
HARD_AFFINITY_WEIGHT = 1

Pair = tuple[str, str]


class _PreFilterState:
    __slots__ = ("existing_anti", "affinity", "anti", "affinity_free_pass")

    def __init__(self) -> None:
        self.existing_anti: Counter[Pair] = Counter()
        self.affinity: Counter[Pair] = Counter()
        self.anti: Counter[Pair] = Counter()
        self.affinity_free_pass = False


class InterPodAffinity(PreFilterPlugin, FilterPlugin, PreScorePlugin, ScorePlugin):
    name = "InterPodAffinity"
    events = NODE_EVENTS | {ASSIGNED_POD_ADD, ASSIGNED_POD_DELETE}
    weight = 2

    def _assigned(self) -> Iterable[tuple[PodInfo, NodeInfo]]:
        nodes = self.handle.cache.nodes
        for node in nodes.values():
            if node.node is None:
                continue
            for pod in node.pods.values():
                yield pod, node

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        cache = self.handle.cache
        if not (pod.required_affinity or pod.required_anti_affinity
                or cache.anti_affinity_pods):
            return SKIP
        labels_of = self.handle.namespace_labels
        s = _PreFilterState()
        for existing in cache.anti_affinity_pods.values():
            node = cache.nodes.get(existing.node_name)
            if node is None or node.node is None:
                continue
            for term in existing.required_anti_affinity:
                value = node.labels.get(term.topology_key)
                if value is not None and term.matches(pod, labels_of):
                    s.existing_anti[(term.topology_key, value)] += 1
        if pod.required_affinity or pod.required_anti_affinity:
            for existing, node in self._assigned():
                if pod.required_affinity and all(
                        t.matches(existing, labels_of) for t in pod.required_affinity):
                    for term in pod.required_affinity:
                        value = node.labels.get(term.topology_key)
                        if value is not None:
                            s.affinity[(term.topology_key, value)] += 1
                for term in pod.required_anti_affinity:
                    value = node.labels.get(term.topology_key)
                    if value is not None and term.matches(existing, labels_of):
                        s.anti[(term.topology_key, value)] += 1
            s.affinity_free_pass = (bool(pod.required_affinity) and not s.affinity
                                    and all(t.matches(pod, labels_of)
                                            for t in pod.required_affinity))
        state.data[self.name] = s
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        s: _PreFilterState = state.data[self.name]
        labels = node.labels
        for key, value in s.existing_anti:
            if labels.get(key) == value:
                return Status.unschedulable(EXISTING_ANTI_AFFINITY_REASON)
        for term in pod.required_anti_affinity:
            value = labels.get(term.topology_key)
            if value is not None and s.anti[(term.topology_key, value)] > 0:
                return Status.unschedulable(ANTI_AFFINITY_REASON)
        if pod.required_affinity:
            for term in pod.required_affinity:
                value = labels.get(term.topology_key)
                if value is None:
                    return Status.unresolvable(AFFINITY_REASON)
                if s.affinity[(term.topology_key, value)] <= 0 and not s.affinity_free_pass:
                    return Status.unresolvable(AFFINITY_REASON)
        return None

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        cache = self.handle.cache
        if not (pod.preferred_affinity or pod.preferred_anti_affinity or cache.affinity_pods):
            return SKIP
        labels_of = self.handle.namespace_labels
        scores: Counter[Pair] = Counter()

        def add(terms: list[AffinityTerm], target: PodInfo, node: NodeInfo, sign: int,
                weight: int | None = None) -> None:
            for term in terms:
                value = node.labels.get(term.topology_key)
                if value is not None and term.matches(target, labels_of):
                    scores[(term.topology_key, value)] += sign * (
                        term.weight if weight is None else weight)

        if pod.preferred_affinity or pod.preferred_anti_affinity:
            for existing, node in self._assigned():
                add(pod.preferred_affinity, existing, node, 1)
                add(pod.preferred_anti_affinity, existing, node, -1)
        for existing in cache.affinity_pods.values():
            node = cache.nodes.get(existing.node_name)
            if node is None or node.node is None:
                continue
            add(existing.preferred_affinity, pod, node, 1)
            add(existing.preferred_anti_affinity, pod, node, -1)
            add(existing.required_affinity, pod, node, 1, HARD_AFFINITY_WEIGHT)
        if not scores:
            return SKIP
        state.data[f"{self.name}/score"] = scores
        return None

    def score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        scores: Counter[Pair] = state.data[f"{self.name}/score"]
        return [sum(w for (key, value), w in scores.items() if node.labels.get(key) == value)
                for node in nodes]

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> list[int]:
        low, high = min(scores, default=0), max(scores, default=0)
        if high == low:
            return [0] * len(scores)
        return [MAX_NODE_SCORE * (s - low) // (high - low) for s in scores]
