"""The scheduler's cache: every node and the pods that hold its resources.

Fed by the node and pod informers, and ahead of them by the scheduler itself: a pod is
"assumed" onto its node the moment a scheduling cycle picks it, before the binding is
written, so the next cycle already sees the node's resources as taken and never
double-books while the informer catches up. The informer's report of the bound pod then
confirms the assumption; a failed binding forgets it.

It also keeps the counts that let plugins skip work no pod needs: pods with required
anti-affinity (which every other pod must respect), pods with any affinity (which score),
members of each pod group, nodes with taints, and preemptors nominated to each node.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .nodeinfo import NodeInfo, PodInfo

_FILTER_EFFECTS = ("NoSchedule", "NoExecute")


class SchedulerCache:
    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self.pods: dict[str, PodInfo] = {}
        self.assumed: set[str] = set()
        self.anti_affinity_pods: dict[str, PodInfo] = {}
        self.affinity_pods: dict[str, PodInfo] = {}
        self.group_members: Counter[tuple[str, str]] = Counter()
        self.nominated: dict[str, dict[str, PodInfo]] = {}
        self._nominated_node: dict[str, str] = {}
        self._node_list: list[NodeInfo] | None = None
        self._tainted = self._unschedulable = self._prefer_no_schedule = 0

    # -- nodes -----------------------------------------------------------------------------

    def node_list(self) -> list[NodeInfo]:
        """The nodes the API reports (not placeholders for pods on unknown nodes)."""
        if self._node_list is None:
            self._node_list = [n for n in self.nodes.values() if n.node is not None]
            self._tainted = sum(
                1 for n in self._node_list
                if any(t.get("effect") in _FILTER_EFFECTS for t in n.taints))
            self._prefer_no_schedule = sum(
                1 for n in self._node_list
                if any(t.get("effect") == "PreferNoSchedule" for t in n.taints))
            self._unschedulable = sum(1 for n in self._node_list if n.unschedulable)
        return self._node_list

    @property
    def tainted_nodes(self) -> int:
        """Nodes with a NoSchedule or NoExecute taint."""
        self.node_list()
        return self._tainted

    @property
    def prefer_no_schedule_nodes(self) -> int:
        self.node_list()
        return self._prefer_no_schedule

    @property
    def unschedulable_nodes(self) -> int:
        self.node_list()
        return self._unschedulable

    def set_node(self, node: dict[str, Any]) -> None:
        name = node["metadata"]["name"]
        info = self.nodes.get(name)
        if info is None:
            self.nodes[name] = NodeInfo(node, name)
        else:
            info.set_node(node)
        self._node_list = None

    def remove_node(self, name: str) -> None:
        info = self.nodes.get(name)
        if info is None:
            return
        if info.pods:
            info.set_node(None)  # keep accounting for its pods until they go too
        else:
            del self.nodes[name]
        self._node_list = None

    def _node(self, name: str) -> NodeInfo:
        info = self.nodes.get(name)
        if info is None:
            info = self.nodes[name] = NodeInfo(None, name)
        return info

    # -- assigned pods ---------------------------------------------------------------------

    def set_pod(self, pod: PodInfo) -> None:
        """An assigned pod as the informer reports it (confirms an assumption)."""
        self.assumed.discard(pod.key)
        self._remove(pod.key)
        self._add(pod)

    def confirm(self, key: str, pod: dict[str, Any]) -> None:
        """The informer reports an assumed pod bound as it was assumed: keep the parsed
        PodInfo (and the node's accounting), only take the API's newer object."""
        self.pods[key].pod = pod
        self.assumed.discard(key)

    def remove_pod(self, key: str) -> None:
        self.assumed.discard(key)
        self._remove(key)

    def assume(self, pod: PodInfo, node: str) -> PodInfo:
        """Count `pod` on `node` now, before the binding is written."""
        assumed = pod.with_node(node)
        self.clear_nomination(pod.key)
        self._remove(pod.key)
        self._add(assumed)
        self.assumed.add(pod.key)
        return assumed

    def forget(self, key: str) -> None:
        """Undo an assumption whose binding failed or was abandoned."""
        if key in self.assumed:
            self.assumed.discard(key)
            self._remove(key)

    def is_assumed(self, key: str) -> bool:
        return key in self.assumed

    def group_count(self, namespace: str, group: str) -> int:
        """Members of a pod group that are bound or assumed."""
        return self.group_members[(namespace, group)]

    def _add(self, pod: PodInfo) -> None:
        self.pods[pod.key] = pod
        self._node(pod.node_name).add_pod(pod)
        if pod.required_anti_affinity:
            self.anti_affinity_pods[pod.key] = pod
        if (pod.required_affinity or pod.preferred_affinity or pod.required_anti_affinity
                or pod.preferred_anti_affinity):
            self.affinity_pods[pod.key] = pod
        if pod.pod_group:
            self.group_members[(pod.namespace, pod.pod_group)] += 1

    def _remove(self, key: str) -> None:
        pod = self.pods.pop(key, None)
        if pod is None:
            return
        info = self.nodes.get(pod.node_name)
        if info is not None:
            info.remove_pod(key)
            if info.node is None and not info.pods:
                del self.nodes[pod.node_name]
        self.anti_affinity_pods.pop(key, None)
        self.affinity_pods.pop(key, None)
        if pod.pod_group:
            group = (pod.namespace, pod.pod_group)
            self.group_members[group] -= 1
            if self.group_members[group] <= 0:
                del self.group_members[group]

    # -- nominations (preemptors waiting for their victims to go) ------------------------------

    def nominate(self, pod: PodInfo, node: str) -> None:
        self.clear_nomination(pod.key)
        if node:
            self.nominated.setdefault(node, {})[pod.key] = pod
            self._nominated_node[pod.key] = node

    def clear_nomination(self, key: str) -> None:
        node = self._nominated_node.pop(key, None)
        if node is not None:
            pods = self.nominated.get(node, {})
            pods.pop(key, None)
            if not pods:
                self.nominated.pop(node, None)
