"""NodeName: a pod that names its node (`spec.nodeName`) fits only there.

Pending pods never carry a node name, so this matters when the framework is asked about
an already placed pod (preemption's what-ifs); for everything else PreFilter skips it.
"""

from __future__ import annotations

from ..framework import SKIP, CycleState, FilterPlugin, PreFilterPlugin, Status
from ..nodeinfo import NodeInfo, PodInfo

REASON = "node(s) didn't match the requested node name"


class NodeName(PreFilterPlugin, FilterPlugin):
    name = "NodeName"

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        return None if pod.node_name else SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        if pod.node_name and pod.node_name != node.name:
            return Status.unresolvable(REASON)
        return None
