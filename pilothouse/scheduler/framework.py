"""The scheduling framework: extension points, plugin statuses and the per-cycle runner.

As kube-scheduler's `framework/interface.go`, a scheduling rule is a plugin implementing
one or more extension points, in the order a pod meets them:

    QueueSort -> PreFilter -> Filter -> PostFilter (only when no node fits)
              -> PreScore -> Score (+ normalize) -> Reserve -> Permit -> PreBind -> Bind
                                                   Unreserve (on any later failure)

Two departures, both for speed in Python and neither visible from outside: a Filter
returns None when the node fits (a Status only to say why not), and a Score plugin
scores the whole list of feasible nodes in one call. A PreFilter or PreScore that
returns SKIP takes its plugin out of that pod's Filter or Score runs, as upstream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any, ClassVar

from .nodeinfo import NamespaceLabels, NodeInfo, PodInfo

if TYPE_CHECKING:
    from ..client import Client
    from .cache import SchedulerCache
    from .queue import QueuedPod

MAX_NODE_SCORE = 100


class Code(IntEnum):
    SUCCESS = 0
    ERROR = 1
    UNSCHEDULABLE = 2
    # The node cannot take the pod and preempting pods on it would not change that.
    UNSCHEDULABLE_AND_UNRESOLVABLE = 3
    WAIT = 4
    SKIP = 5


@dataclass(slots=True)
class Status:
    """A plugin's verdict; `reasons` are the words that reach the pod's condition."""

    code: Code
    reasons: tuple[str, ...] = ()
    plugin: str = ""

    @classmethod
    def unschedulable(cls, *reasons: str) -> Status:
        return cls(Code.UNSCHEDULABLE, reasons)

    @classmethod
    def unresolvable(cls, *reasons: str) -> Status:
        return cls(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, reasons)

    @classmethod
    def error(cls, message: str) -> Status:
        return cls(Code.ERROR, (message,))

    @property
    def message(self) -> str:
        return ", ".join(self.reasons)

    @property
    def success(self) -> bool:
        return self.code == Code.SUCCESS

    @property
    def rejected(self) -> bool:
        """Unschedulable, resolvable or not (an Error is a different thing: retried)."""
        return self.code in (Code.UNSCHEDULABLE, Code.UNSCHEDULABLE_AND_UNRESOLVABLE)


SKIP = Status(Code.SKIP)


class CycleState:
    """What one pod's scheduling cycle shares between its plugins."""

    __slots__ = ("data", "filters", "scorers")

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.filters: list[FilterPlugin] = []
        self.scorers: list[ScorePlugin] = []


# -- the extension points ------------------------------------------------------------------


# Cluster events that can make a rejected pod schedulable (EventsToRegister upstream).
NODE_ADD = "NodeAdd"
NODE_UPDATE = "NodeUpdate"
ASSIGNED_POD_ADD = "AssignedPodAdd"
ASSIGNED_POD_DELETE = "AssignedPodDelete"
UNASSIGNED_POD_ADD = "UnassignedPodAdd"
POD_GROUP_CHANGE = "PodGroupChange"
PERSISTENT_VOLUME_CLAIM_CHANGE = "PersistentVolumeClaimChange"
PERSISTENT_VOLUME_CHANGE = "PersistentVolumeChange"
STORAGE_CLASS_CHANGE = "StorageClassChange"
NODE_EVENTS = frozenset((NODE_ADD, NODE_UPDATE))


class Plugin:
    name: ClassVar[str] = ""
    # The events after which a pod this plugin rejected is worth another try.
    events: ClassVar[frozenset[str]] = NODE_EVENTS

    def __init__(self, handle: Handle) -> None:
        self.handle = handle


class QueueSortPlugin(Plugin):
    def sort_key(self, queued: QueuedPod) -> tuple[Any, ...]:
        """Pods with smaller keys are scheduled first."""
        raise NotImplementedError


class PreFilterPlugin(Plugin):
    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        """None to go on, SKIP to skip this plugin's Filter, or why the pod cannot fit."""
        raise NotImplementedError


class FilterPlugin(Plugin):
    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        """None when `node` can take `pod`, else a Status saying why not."""
        raise NotImplementedError


class PostFilterPlugin(Plugin):
    async def post_filter(self, state: CycleState, pod: PodInfo,
                          statuses: Mapping[str, Status]) -> tuple[str, Status]:
        """Try to make the pod schedulable (preemption); returns (nominated node, status)."""
        raise NotImplementedError


class PreScorePlugin(Plugin):
    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status | None:
        """None to go on, SKIP when this pod gives every node the same score here."""
        raise NotImplementedError


class ScorePlugin(Plugin):
    weight: ClassVar[int] = 1

    def score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        """One score per node, in `nodes` order; normalized to 0..MAX_NODE_SCORE after."""
        raise NotImplementedError

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> list[int]:
        return scores


class ReservePlugin(Plugin):
    def reserve(self, state: CycleState, pod: PodInfo, node: str) -> Status | None:
        raise NotImplementedError

    def unreserve(self, state: CycleState, pod: PodInfo, node: str) -> None:
        raise NotImplementedError


class PermitPlugin(Plugin):
    def permit(self, state: CycleState, pod: PodInfo, node: str) -> tuple[Status | None, float]:
        """(None, 0) to allow, (Status(WAIT), timeout seconds) to hold, or a rejection."""
        raise NotImplementedError


class PreBindPlugin(Plugin):
    async def pre_bind(self, state: CycleState, pod: PodInfo, node: str) -> Status | None:
        """Writes the binding depends on (a claim's selected node); None when done."""
        raise NotImplementedError


class BindPlugin(Plugin):
    async def bind(self, state: CycleState, pod: PodInfo, node: str) -> Status | None:
        """None when bound, SKIP to leave it to the next binder, else the failure."""
        raise NotImplementedError


def reverse_normalize(scores: list[int], *, reverse: bool) -> list[int]:
    """helper.DefaultNormalizeScore: scale to 0..100 by the maximum, optionally reversed."""
    top = max(scores, default=0)
    if top == 0:
        return [MAX_NODE_SCORE] * len(scores) if reverse else scores
    if reverse:
        return [MAX_NODE_SCORE - MAX_NODE_SCORE * s // top for s in scores]
    return [MAX_NODE_SCORE * s // top for s in scores]


# -- Permit's waiting room -----------------------------------------------------------------


class WaitingPod:
    """A reserved pod whose binding waits until every Permit plugin that said WAIT allows it."""

    def __init__(self, pod: PodInfo, node: str, timeouts: Mapping[str, float]) -> None:
        loop = asyncio.get_running_loop()
        self.pod = pod
        self.node = node
        self.result: asyncio.Future[Status | None] = loop.create_future()
        self._pending = {name: loop.call_later(seconds, self._timeout, name, seconds)
                         for name, seconds in timeouts.items()}

    def _timeout(self, plugin: str, seconds: float) -> None:
        self.reject(plugin, f"rejected due to timeout after waiting {seconds:g}s at plugin "
                            f"{plugin}")

    def allow(self, plugin: str) -> None:
        timer = self._pending.pop(plugin, None)
        if timer is not None:
            timer.cancel()
        if not self._pending and not self.result.done():
            self.result.set_result(None)

    def reject(self, plugin: str, message: str) -> None:
        for timer in self._pending.values():
            timer.cancel()
        self._pending.clear()
        if not self.result.done():
            self.result.set_result(Status(Code.UNSCHEDULABLE, (message,), plugin))


class WaitingPods:
    def __init__(self) -> None:
        self._pods: dict[str, WaitingPod] = {}

    def add(self, waiting: WaitingPod) -> None:
        self._pods[waiting.pod.key] = waiting

    def remove(self, key: str) -> None:
        self._pods.pop(key, None)

    def get(self, key: str) -> WaitingPod | None:
        return self._pods.get(key)

    def __iter__(self) -> Iterator[WaitingPod]:
        return iter(list(self._pods.values()))


# -- what plugins may use ------------------------------------------------------------------


@dataclass
class Handle:
    """The scheduler's services, as plugins see them (framework.Handle upstream)."""

    cache: SchedulerCache
    scheduler_name: str = "default-scheduler"
    client: Client | None = None
    waiting: WaitingPods = field(default_factory=WaitingPods)
    namespace_labels: NamespaceLabels = lambda namespace: None
    pod_group: Callable[[str, str], dict[str, Any] | None] = lambda namespace, name: None
    # The keys of the pods (any state) labelled as members of a pod group.
    group_pods: Callable[[str, str], list[str]] = lambda namespace, name: []
    # The cluster's storage as the informers have it: a claim by (namespace, name), a
    # PersistentVolume and a StorageClass by name.
    persistent_volume_claim: Callable[[str, str], dict[str, Any] | None] = (
        lambda namespace, name: None)
    persistent_volume: Callable[[str], dict[str, Any] | None] = lambda name: None
    storage_class: Callable[[str], dict[str, Any] | None] = lambda name: None
    # Called with a pod key to send that pod back to the active queue now.
    activate: Callable[[str], None] = lambda key: None
    # Called with (pod, event type, reason, message) to record an Event.
    record_event: Callable[[dict[str, Any], str, str, str], None] = (
        lambda pod, event_type, reason, message: None)


class Framework:
    """One scheduling profile: its plugins, sorted by extension point, and how to run them."""

    def __init__(self, handle: Handle, plugins: list[Plugin]) -> None:
        self.handle = handle
        self.plugins = plugins
        sorts = [p for p in plugins if isinstance(p, QueueSortPlugin)]
        if len(sorts) != 1:
            raise ValueError("a profile needs exactly one QueueSort plugin")
        self.queue_sort = sorts[0]
        self.pre_filters = [p for p in plugins if isinstance(p, PreFilterPlugin)]
        self.filters = [p for p in plugins if isinstance(p, FilterPlugin)]
        self.post_filters = [p for p in plugins if isinstance(p, PostFilterPlugin)]
        self.pre_scores = [p for p in plugins if isinstance(p, PreScorePlugin)]
        self.scorers = [p for p in plugins if isinstance(p, ScorePlugin)]
        self.reserves = [p for p in plugins if isinstance(p, ReservePlugin)]
        self.permits = [p for p in plugins if isinstance(p, PermitPlugin)]
        self.pre_binds = [p for p in plugins if isinstance(p, PreBindPlugin)]
        self.binders = [p for p in plugins if isinstance(p, BindPlugin)]

    def sort_key(self, queued: QueuedPod) -> tuple[Any, ...]:
        return self.queue_sort.sort_key(queued)

    def run_pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        skipped = set()
        for plugin in self.pre_filters:
            status = plugin.pre_filter(state, pod)
            if status is None:
                continue
            if status.code == Code.SKIP:
                skipped.add(plugin.name)
                continue
            status.plugin = plugin.name
            return status
        state.filters = [p for p in self.filters if p.name not in skipped]
        return None

    @staticmethod
    def run_filter(state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        for plugin in state.filters:
            status = plugin.filter(state, pod, node)
            if status is not None:
                status.plugin = plugin.name
                return status
        return None

    async def run_post_filter(self, state: CycleState, pod: PodInfo,
                              statuses: Mapping[str, Status]) -> tuple[str, Status]:
        """The first plugin that makes room wins; otherwise every plugin's reasons."""
        reasons: list[str] = []
        for plugin in self.post_filters:
            nominated, status = await plugin.post_filter(state, pod, statuses)
            if status.success or status.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE:
                status.plugin = plugin.name
                return nominated, status
            if status.code == Code.ERROR:
                return "", status
            reasons.extend(status.reasons)
        return "", Status(Code.UNSCHEDULABLE, tuple(reasons))

    def run_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        """The weighted sum of every active Score plugin's normalized scores, per node."""
        skipped = set()
        for plugin in self.pre_scores:
            status = plugin.pre_score(state, pod, nodes)
            if status is not None and status.code == Code.SKIP:
                skipped.add(plugin.name)
        totals = [0] * len(nodes)
        for plugin in self.scorers:
            if plugin.name in skipped:
                continue
            scores = plugin.normalize(state, pod, plugin.score(state, pod, nodes))
            weight = plugin.weight
            totals = [t + s * weight for t, s in zip(totals, scores, strict=True)]
        return totals

    def run_reserve(self, state: CycleState, pod: PodInfo, node: str) -> Status | None:
        for plugin in self.reserves:
            status = plugin.reserve(state, pod, node)
            if status is not None:
                status.plugin = plugin.name
                return status
        return None

    def run_unreserve(self, state: CycleState, pod: PodInfo, node: str) -> None:
        for plugin in reversed(self.reserves):
            plugin.unreserve(state, pod, node)

    def run_permit(self, state: CycleState, pod: PodInfo, node: str) -> Status | None:
        """None to bind now; a WAIT status after parking the pod; else the rejection."""
        timeouts: dict[str, float] = {}
        for plugin in self.permits:
            status, timeout = plugin.permit(state, pod, node)
            if status is None:
                continue
            status.plugin = plugin.name
            if status.code == Code.WAIT:
                timeouts[plugin.name] = timeout
                continue
            return status
        if not timeouts:
            return None
        self.handle.waiting.add(WaitingPod(pod, node, timeouts))
        return Status(Code.WAIT)

    async def wait_on_permit(self, pod: PodInfo) -> Status | None:
        waiting = self.handle.waiting.get(pod.key)
        if waiting is None:
            return None
        try:
            return await waiting.result
        finally:
            self.handle.waiting.remove(pod.key)

    async def run_pre_bind(self, state: CycleState, pod: PodInfo, node: str
                           ) -> Status | None:
        for plugin in self.pre_binds:
            status = await plugin.pre_bind(state, pod, node)
            if status is not None:
                status.plugin = plugin.name
                return status
        return None

    async def run_bind(self, state: CycleState, pod: PodInfo, node: str) -> Status | None:
        for plugin in self.binders:
            status = await plugin.bind(state, pod, node)
            if status is not None and status.code == Code.SKIP:
                continue
            if status is not None:
                status.plugin = plugin.name
            return status
        return Status.error(f"no bind plugin bound pod {pod.key}")
