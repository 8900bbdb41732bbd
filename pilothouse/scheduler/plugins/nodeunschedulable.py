"""NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes only pods that tolerate
the `node.kubernetes.io/unschedulable:NoSchedule` taint."""

from __future__ import annotations

from ..framework import SKIP, CycleState, FilterPlugin, PreFilterPlugin, Status
from ..nodeinfo import NodeInfo, PodInfo
from .tainttoleration import tolerates

REASON = "node(s) were unschedulable"
_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


class NodeUnschedulable(PreFilterPlugin, FilterPlugin):
    name = "NodeUnschedulable"

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        return None if self.handle.cache.unschedulable_nodes else SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if node.unschedulable and not any(tolerates(t, _TAINT) for t in pod.tolerations):
            return Status.unresolvable(REASON)
        return None
