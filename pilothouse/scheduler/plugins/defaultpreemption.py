"""DefaultPreemption (PostFilter): when no node fits, make room by evicting lower-priority
pods, and nominate the node (`status.nominatedNodeName`) so the pod gets it next.

For each node that failed for a reason preemption could change (Unschedulable, not
UnschedulableAndUnresolvable), remove every pod of lower priority and check the pod
fits; then give back as many of those pods as still leave room, most important first.
What is not given back are the victims. The chosen node is the one whose most important
victim is least important, then with the least total victim priority, then the fewest
victims. Victims get a `DisruptionTarget` condition and are deleted (gracefully), as
kube-scheduler does; pods still waiting in Permit are simply rejected.

Limits: PodDisruptionBudgets are not consulted, and the affinity and spread counts from
PreFilter are not recomputed for the what-if (resources are).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping

from ...client import ApiError
from ...machinery.meta import rfc3339
from ..framework import (
    Code,
    CycleState,
    Framework,
    PostFilterPlugin,
    Status,
)
from ..nodeinfo import NodeInfo, PodInfo

log = logging.getLogger(__name__)

NO_VICTIMS = "No preemption victims found for incoming pod"
NOT_HELPFUL = "Preemption is not helpful for scheduling"


def select_victims(state: CycleState, pod: PodInfo, node: NodeInfo) -> list[PodInfo] | None:
    """The fewest, least important pods to evict from `node` for `pod`; None if none do."""
    lower = [p for p in node.pods.values() if p.priority < pod.priority]
    if not lower:
        return None
    trial = node.clone()
    for victim in lower:
        trial.remove_pod(victim.key)
    if Framework.run_filter(state, pod, trial) is not None:
        return None
    victims = []
    for candidate in sorted(lower, key=lambda p: -p.priority):
        trial.add_pod(candidate)
        if Framework.run_filter(state, pod, trial) is not None:
            trial.remove_pod(candidate.key)
            victims.append(candidate)
    return victims or None


def fit_error_message(total: int, reasons: Counter[str]) -> str:
    """FitError's text: `0/N nodes are available: <count reason, ...>.`"""
    histogram = sorted(f"{count} {reason}" for reason, count in reasons.items())
    text = f"0/{total} nodes are available"
    return f"{text}: {', '.join(histogram)}." if histogram else f"{text}."


class DefaultPreemption(PostFilterPlugin):
    name = "DefaultPreemption"

    def _ineligible(self, pod: PodInfo) -> str:
        if (pod.pod.get("spec") or {}).get("preemptionPolicy") == "Never":
            return "not eligible due to preemptionPolicy=Never."
        nominated = self.handle.cache.nodes.get(pod.nominated_node_name)
        if nominated is not None and any(p.terminating and p.priority < pod.priority
                                         for p in nominated.pods.values()):
            return "not eligible due to a terminating pod on the nominated node."
        return ""

    async def post_filter(self, state: CycleState, pod: PodInfo,
                          statuses: Mapping[str, Status]) -> tuple[str, Status]:
        ineligible = self._ineligible(pod)
        if ineligible:
            return "", Status.unschedulable(f"preemption: {ineligible}")
        nodes = self.handle.cache.node_list()
        reasons: Counter[str] = Counter()
        candidates: list[tuple[tuple[int, int, int], NodeInfo, list[PodInfo]]] = []
        for node in nodes:
            status = statuses.get(node.name)
            if status is None or status.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE:
                reasons[NOT_HELPFUL] += 1
                continue
            victims = select_victims(state, pod, node)
            if victims is None:
                reasons[NO_VICTIMS] += 1
                continue
            rank = (max(v.priority for v in victims), sum(v.priority for v in victims),
                    len(victims))
            candidates.append((rank, node, victims))
        if not candidates:
            return "", Status.unschedulable(f"preemption: {fit_error_message(len(nodes), reasons)}")
        _, node, victims = min(candidates, key=lambda c: c[0])
        for victim in victims:
            await self._evict(pod, victim, node.name)
        return node.name, Status(Code.SUCCESS)

    async def _evict(self, preemptor: PodInfo, victim: PodInfo, node: str) -> None:
        waiting = self.handle.waiting.get(victim.key)
        if waiting is not None:
            waiting.reject(self.name, "preempted")
            return
        client = self.handle.client
        if client is None:
            return
        condition = {"type": "DisruptionTarget", "status": "True",
                     "reason": "PreemptionByScheduler",
                     "message": f"{self.handle.scheduler_name}: preempting to accommodate a "
                                "higher priority pod",
                     "lastTransitionTime": rfc3339()}
        try:
            await client.patch("v1", "pods", victim.name,
                               {"status": {"conditions": [condition]}}, victim.namespace,
                               patch_type="strategic", subresource="status")
            await client.delete("v1", "pods", victim.name, victim.namespace,
                                preconditions={"uid": victim.uid})
        except ApiError as err:
            if not err.not_found:
                log.warning("preempting %s for %s failed: %s", victim.key, preemptor.key, err)
            return
        self.handle.record_event(victim.pod, "Normal", "Preempted",
                                 f"Preempted by pod {preemptor.uid} on node {node}")
