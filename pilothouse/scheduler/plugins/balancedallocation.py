"""NodeResourcesBalancedAllocation: prefer nodes whose CPU and memory would be used in
equal proportion once the pod is placed (score 100 x (1 - standard deviation of the
two fractions)), so neither runs out while the other sits idle. Weight 1."""

from __future__ import annotations

from ..framework import MAX_NODE_SCORE, CycleState, ScorePlugin
from ..nodeinfo import NodeInfo, PodInfo


class BalancedAllocation(ScorePlugin):
    name = "NodeResourcesBalancedAllocation"
    weight = 1

    def score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        # Inlined, no call per node: this runs for every sampled node of every pod.
        cpu, memory = pod.non_zero_cpu, pod.non_zero_memory
        scores = []
        for node in nodes:
            allocatable_cpu, allocatable_memory = node.allocatable_cpu, node.allocatable_memory
            cpu_fraction = ((node.non_zero_cpu + cpu) / allocatable_cpu
                            if allocatable_cpu else 1.0)
            memory_fraction = ((node.non_zero_memory + memory) / allocatable_memory
                               if allocatable_memory else 1.0)
            if cpu_fraction > 1.0:
                cpu_fraction = 1.0
            if memory_fraction > 1.0:
                memory_fraction = 1.0
            std = abs(cpu_fraction - memory_fraction) / 2
            scores.append(int((1 - std) * MAX_NODE_SCORE))
        return scores
