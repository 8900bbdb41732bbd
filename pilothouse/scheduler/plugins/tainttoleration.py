"""TaintToleration: a node's NoSchedule and NoExecute taints keep out pods that do not
tolerate them; PreferNoSchedule taints only lower the node's score (weight 3)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..framework import (
    SKIP,
    CycleState,
    FilterPlugin,
    PreFilterPlugin,
    PreScorePlugin,
    ScorePlugin,
    Status,
    reverse_normalize,
)
from ..nodeinfo import NodeInfo, PodInfo

_FILTER_EFFECTS = ("NoSchedule", "NoExecute")


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """v1.Toleration.ToleratesTaint."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def untolerated(taints: Iterable[Mapping[str, Any]], tolerations: list[dict[str, Any]],
                effects: tuple[str, ...]) -> Mapping[str, Any] | None:
    """The first taint with one of `effects` that no toleration tolerates."""
    for taint in taints:
        if taint.get("effect") in effects and not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


class TaintToleration(PreFilterPlugin, FilterPlugin, PreScorePlugin, ScorePlugin):
    name = "TaintToleration"
    weight = 3

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        return None if self.handle.cache.tainted_nodes else SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if not node.taints:
            return None
        taint = untolerated(node.taints, pod.tolerations, _FILTER_EFFECTS)
        if taint is None:
            return None
        return Status.unresolvable(
            f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value') or ''}}}")

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        return None if self.handle.cache.prefer_no_schedule_nodes else SKIP

    def score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        tolerations = [t for t in pod.tolerations
                       if (t.get("effect") or "PreferNoSchedule") == "PreferNoSchedule"]
        return [sum(1 for taint in node.taints if taint.get("effect") == "PreferNoSchedule"
                    and not any(tolerates(t, taint) for t in tolerations))
                for node in nodes]

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> list[int]:
        return reverse_normalize(scores, reverse=True)
