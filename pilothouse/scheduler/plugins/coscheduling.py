"""Coscheduling: all-or-nothing scheduling of a PodGroup (scheduler-plugins' gang plugin).

Pods join a group with the label `scheduling.x-k8s.io/pod-group: <name>`; the group is
a `scheduling.x-k8s.io/v1alpha1` PodGroup in the same namespace with `spec.minMember`.
Each member is scheduled on its own, reserved on its node, and held at Permit until
`minMember` members are reserved or bound; then all are released to bind together. If
that does not happen within `spec.scheduleTimeoutSeconds` (default 60), or a member
finds no node while the group is still short, every waiting member is rejected and its
reservation released, so a half-placed gang never holds resources other pods need.

A pod naming a group the scheduler cannot see (not created yet, or the PodGroup API not
readable) is rejected at Permit and retried when a PodGroup appears.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..framework import (
    ASSIGNED_POD_DELETE,
    NODE_ADD,
    NODE_UPDATE,
    POD_GROUP_CHANGE,
    UNASSIGNED_POD_ADD,
    Code,
    CycleState,
    PermitPlugin,
    PostFilterPlugin,
    PreFilterPlugin,
    ReservePlugin,
    Status,
)
from ..nodeinfo import PodInfo

DEFAULT_TIMEOUT_SECONDS = 60.0


def min_member(group: Mapping[str, Any]) -> int:
    return int((group.get("spec") or {}).get("minMember") or 0)


def timeout_seconds(group: Mapping[str, Any]) -> float:
    seconds = (group.get("spec") or {}).get("scheduleTimeoutSeconds")
    return float(seconds) if seconds else DEFAULT_TIMEOUT_SECONDS


class Coscheduling(PreFilterPlugin, PostFilterPlugin, ReservePlugin, PermitPlugin):
    name = "Coscheduling"
    events = frozenset((NODE_ADD, NODE_UPDATE, ASSIGNED_POD_DELETE, UNASSIGNED_POD_ADD,
                        POD_GROUP_CHANGE))

    def _group(self, pod: PodInfo) -> dict[str, Any] | None:
        return self.handle.pod_group(pod.namespace, pod.pod_group) if pod.pod_group else None

    def _siblings_waiting(self, pod: PodInfo) -> list[Any]:
        return [w for w in self.handle.waiting
                if w.pod.namespace == pod.namespace and w.pod.pod_group == pod.pod_group
                and w.pod.key != pod.key]

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        group = self._group(pod)
        if group is None:
            return None
        members = len(self.handle.group_pods(pod.namespace, pod.pod_group))
        wanted = min_member(group)
        if members < wanted:
            return Status.unresolvable(
                f"pre-filter pod {pod.name} cannot find enough sibling pods, current pods "
                f"number: {members}, minMember of group: {wanted}")
        return None

    async def post_filter(self, state: CycleState, pod: PodInfo,
                          statuses: Mapping[str, Status]) -> tuple[str, Status]:
        group = self._group(pod)
        if group is None:
            return "", Status(Code.UNSCHEDULABLE)
        if self.handle.cache.group_count(pod.namespace, pod.pod_group) >= min_member(group):
            return "", Status(Code.UNSCHEDULABLE)
        for waiting in self._siblings_waiting(pod):
            waiting.reject(self.name, "optimistic rejection in PostFilter")
        return "", Status.unschedulable(
            f"PodGroup {pod.namespace}/{pod.pod_group} gets rejected due to Pod {pod.name} "
            "is unschedulable even after PostFilter")

    def reserve(self, state: CycleState, pod: PodInfo, node: str) -> Status | None:
        return None

    def unreserve(self, state: CycleState, pod: PodInfo, node: str) -> None:
        if not pod.pod_group:
            return
        for waiting in self._siblings_waiting(pod):
            waiting.reject(self.name, "rejection in Unreserve")

    def permit(self, state: CycleState, pod: PodInfo, node: str) -> tuple[Status | None, float]:
        if not pod.pod_group:
            return None, 0
        group = self._group(pod)
        if group is None:
            return Status.unschedulable(
                f"PodGroup {pod.namespace}/{pod.pod_group} not found"), 0
        # The pod is already assumed, so it counts itself.
        if self.handle.cache.group_count(pod.namespace, pod.pod_group) >= min_member(group):
            for waiting in self._siblings_waiting(pod):
                waiting.allow(self.name)
            return None, 0
        for key in self.handle.group_pods(pod.namespace, pod.pod_group):
            if key != pod.key:
                self.handle.activate(key)
        return Status(Code.WAIT), timeout_seconds(group)
