"""NodeResourcesFit: a node must have room for the pod's requests -- CPU, memory,
ephemeral storage, pod count and extended resources such as `nvidia.com/gpu` -- and,
scored with the LeastAllocated strategy (weight 1), the emptier a node the better.

Room is allocatable minus what the node's pods (bound or assumed) request; the failure
reasons are upstream's ("Insufficient cpu", "Too many pods"), all of them per node.
"""

from __future__ import annotations

from ..framework import (
    ASSIGNED_POD_DELETE,
    MAX_NODE_SCORE,
    NODE_EVENTS,
    CycleState,
    FilterPlugin,
    ScorePlugin,
    Status,
)
from ..nodeinfo import NodeInfo, PodInfo

TOO_MANY_PODS = "Too many pods"


def insufficient(pod: PodInfo, node: NodeInfo) -> list[str]:
    """The reasons `node` cannot hold `pod` now (empty when it can)."""
    reasons = []
    if len(node.pods) + 1 > node.allowed_pods:
        reasons.append(TOO_MANY_PODS)
    if pod.cpu and node.allocatable_cpu < pod.cpu + node.requested_cpu:
        reasons.append("Insufficient cpu")
    if pod.memory and node.allocatable_memory < pod.memory + node.requested_memory:
        reasons.append("Insufficient memory")
    if pod.ephemeral_storage and (node.allocatable_ephemeral_storage
                                  < pod.ephemeral_storage + node.requested_ephemeral_storage):
        reasons.append("Insufficient ephemeral-storage")
    for name, value in pod.scalars.items():
        if node.allocatable_scalars.get(name, 0) < value + node.requested_scalars.get(name, 0):
            reasons.append(f"Insufficient {name}")
    return reasons


class NodeResourcesFit(FilterPlugin, ScorePlugin):
    name = "NodeResourcesFit"
    events = NODE_EVENTS | {ASSIGNED_POD_DELETE}
    weight = 1

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        # The common case inline: room for everything, no extended resources.
        if (len(node.pods) < node.allowed_pods
                and node.requested_cpu + pod.cpu <= node.allocatable_cpu
                and node.requested_memory + pod.memory <= node.allocatable_memory
                and (not pod.ephemeral_storage or pod.ephemeral_storage
                     + node.requested_ephemeral_storage <= node.allocatable_ephemeral_storage)
                and not pod.scalars):
            return None
        reasons = insufficient(pod, node)
        return Status.unschedulable(*reasons) if reasons else None

    def score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        # LeastAllocated per node, inlined (no call per node): this runs for every sampled node of every pod.
        cpu, memory = pod.non_zero_cpu, pod.non_zero_memory
        scores = []
        for node in nodes:
            allocatable_cpu, allocatable_memory = node.allocatable_cpu, node.allocatable_memory
            free_cpu = allocatable_cpu - node.non_zero_cpu - cpu
            free_memory = allocatable_memory - node.non_zero_memory - memory
            cpu_score = (free_cpu * MAX_NODE_SCORE // allocatable_cpu
                         if free_cpu >= 0 and allocatable_cpu > 0 else 0)
            memory_score = (free_memory * MAX_NODE_SCORE // allocatable_memory
                            if free_memory >= 0 and allocatable_memory > 0 else 0)
            scores.append((cpu_score + memory_score) // 2)
        return scores
