"""NodeResourcesBalancedAllocation: prefer nodes whose CPU and memory would be used in
equal proportion once the pod is placed (score 100 x (1 - standard deviation of the
two fractions)), so neither runs out while the other sits idle. Weight 1."""

from __future__ import annotations

from ..framework import MAX_NODE_SCORE, CycleState, ScorePlugin
from ..nodeinfo import NodeInfo, PodInfo


def balanced(cpu_fraction: float, memory_fraction: float) -> int:
    std = abs(min(cpu_fraction, 1.0) - min(memory_fraction, 1.0)) / 2
    return int((1 - std) * MAX_NODE_SCORE)


class BalancedAllocation(ScorePlugin):
    name = "NodeResourcesBalancedAllocation"
    weight = 1

    def score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        cpu, memory = pod.non_zero_cpu, pod.non_zero_memory
        return [balanced((node.non_zero_cpu + cpu) / node.allocatable_cpu
                         if node.allocatable_cpu else 1.0,
                         (node.non_zero_memory + memory) / node.allocatable_memory
                         if node.allocatable_memory else 1.0)
                for node in nodes]
