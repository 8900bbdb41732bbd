"""The scheduler process: informers in, bindings out, one scheduling cycle at a time.

Informers keep the cache (nodes, assigned pods) and the queue (pending pods whose
`spec.schedulerName` is ours) current; claims, volumes and storage classes are read by
the VolumeBinding plugin straight from theirs. The scheduling loop pops one pod at a time and
runs the framework: PreFilter, Filter over the nodes (starting where the last cycle
stopped, and only until enough feasible nodes are found, as upstream's
percentageOfNodesToScore), Score, then assumes the pod onto the best node, runs Reserve
and Permit, and hands it to a binding task. Binding (waiting on Permit, then the
`pods/binding` POST) runs concurrently with later cycles, so throughput is not bounded by
API latency; the assumption keeps the next cycles from double-booking the node.

A pod no node fits gets `PodScheduled=False` (reason Unschedulable, upstream's message:
"0/3 nodes are available: 3 Insufficient cpu. preemption: ...") and a FailedScheduling
event, and waits in the queue for a cluster event that may change the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections import Counter
from collections.abc import Coroutine, Iterable
from typing import Any

from ..client import ApiError, Client, EventRecorder, Informer, LeaderElector
from ..machinery.meta import rfc3339
from . import podgroups
from .cache import SchedulerCache
from .events import EventSink
from .framework import (
    ASSIGNED_POD_ADD,
    ASSIGNED_POD_DELETE,
    NODE_ADD,
    NODE_UPDATE,
    PERSISTENT_VOLUME_CHANGE,
    PERSISTENT_VOLUME_CLAIM_CHANGE,
    POD_GROUP_CHANGE,
    STORAGE_CLASS_CHANGE,
    UNASSIGNED_POD_ADD,
    Code,
    CycleState,
    Framework,
    Handle,
    Status,
)
from .nodeinfo import POD_GROUP_LABEL, NodeInfo, PodInfo
from .plugins import default_framework
from .plugins.defaultpreemption import fit_error_message
from .queue import QueuedPod, SchedulingQueue

log = logging.getLogger(__name__)

DEFAULT_SCHEDULER_NAME = "default-scheduler"
# Active pods only: finished pods hold no resources.
POD_FIELD_SELECTOR = "status.phase!=Succeeded,status.phase!=Failed"
MIN_FEASIBLE_NODES = 100
MIN_FEASIBLE_PERCENTAGE = 5
BIND_CONCURRENCY = 64
WRITE_CONCURRENCY = 32
LEFTOVER_FLUSH_SECONDS = 30.0
NO_NODES = "no nodes available to schedule pods"


def num_feasible_nodes_to_find(total: int) -> int:
    """How many feasible nodes are enough to score (upstream's adaptive percentage)."""
    if total < MIN_FEASIBLE_NODES:
        return total
    percentage = max(50 - total // 125, MIN_FEASIBLE_PERCENTAGE)
    return max(total * percentage // 100, MIN_FEASIBLE_NODES)


def failure_message(total: int, statuses: dict[str, Status], pre_filter: Status | None,
                    post_filter: Status | None) -> str:
    """FitError.Error(): the reasons histogram (or the PreFilter's), then PostFilter's."""
    if pre_filter is not None:
        message = f"0/{total} nodes are available: {pre_filter.message}."
    else:
        reasons: Counter[str] = Counter()
        for status in statuses.values():
            reasons.update(status.reasons)
        message = fit_error_message(total, reasons)
    if post_filter is not None and post_filter.message:
        message += f" {post_filter.message}."
    return message


def _relevant_pod_change(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether an update could change where a pending pod fits (not just its status)."""
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    return (old.get("spec") != new.get("spec")
            or old_meta.get("labels") != new_meta.get("labels")
            or old_meta.get("annotations") != new_meta.get("annotations"))


def _relevant_node_change(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Heartbeats change nothing the scheduler reads; labels, taints, cordons, capacity
    and condition statuses do."""
    def view(node: dict[str, Any]) -> tuple[Any, ...]:
        spec, status = node.get("spec") or {}, node.get("status") or {}
        conditions = sorted((c.get("type"), c.get("status"))
                            for c in status.get("conditions") or ())
        return ((node.get("metadata") or {}).get("labels"), spec.get("taints"),
                spec.get("unschedulable"), status.get("allocatable"), conditions)
    return view(old) != view(new)


def _with_kind(pod: dict[str, Any]) -> dict[str, Any]:
    return {**pod, "kind": "Pod", "apiVersion": "v1"}


class Scheduler:
    def __init__(self, client: Client, *, scheduler_name: str = DEFAULT_SCHEDULER_NAME) -> None:
        self.client = client
        self.name = scheduler_name
        self.cache = SchedulerCache()
        self.events = EventSink(EventRecorder(client, scheduler_name))
        self.pods = Informer(client, "v1", "pods", field_selector=POD_FIELD_SELECTOR)
        self.nodes = Informer(client, "v1", "nodes")
        self.namespaces = Informer(client, "v1", "namespaces")
        self.claims = Informer(client, "v1", "persistentvolumeclaims")
        self.volumes = Informer(client, "v1", "persistentvolumes")
        self.storage_classes = Informer(client, "storage.k8s.io/v1", "storageclasses")
        self.pod_groups: Informer | None = None
        self.handle = Handle(
            self.cache, scheduler_name, client,
            namespace_labels=self._namespace_labels, pod_group=self._pod_group,
            group_pods=self._group_pods, activate=self._activate,
            record_event=self._record_event,
            persistent_volume_claim=lambda namespace, name: self.claims.get(
                f"{namespace}/{name}"),
            persistent_volume=self.volumes.get, storage_class=self.storage_classes.get)
        self.framework: Framework = default_framework(self.handle)
        self.queue = SchedulingQueue(self.framework.sort_key)
        self._event_plugins: dict[str, frozenset[str]] = {}
        for plugin in self.framework.plugins:
            for event in plugin.events:
                self._event_plugins[event] = self._event_plugins.get(
                    event, frozenset()) | {plugin.name}
        self._next_start = 0
        self._bind_slots = asyncio.Semaphore(BIND_CONCURRENCY)
        self._write_slots = asyncio.Semaphore(WRITE_CONCURRENCY)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.pods.add_handler(self._on_pod)
        self.nodes.add_handler(self._on_node)
        self.claims.add_handler(self._on_claim)
        self.volumes.add_handler(self._on_volume)
        self.storage_classes.add_handler(self._on_storage_class)

    # -- what plugins ask of the scheduler ------------------------------------------------------

    def _namespace_labels(self, namespace: str) -> dict[str, str] | None:
        obj = self.namespaces.get(namespace)
        return None if obj is None else (obj.get("metadata") or {}).get("labels") or {}

    def _pod_group(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None if self.pod_groups is None else self.pod_groups.get(f"{namespace}/{name}")

    def _group_pods(self, namespace: str, name: str) -> list[str]:
        return [f"{namespace}/{p['metadata']['name']}"
                for p in self.pods.by_index("label", f"{POD_GROUP_LABEL}={name}")
                if p["metadata"].get("namespace") == namespace]

    def _activate(self, key: str) -> None:
        self.queue.activate(key)

    def _record_event(self, pod: dict[str, Any], event_type: str, reason: str,
                      message: str) -> None:
        self.events.record(_with_kind(pod), event_type, reason, message)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        async with self._write_slots:
            try:
                await coroutine
            except ApiError as err:
                log.info("scheduler write failed: %s", err)
            except Exception:
                log.exception("scheduler write failed")

    # -- informer events --------------------------------------------------------------------------

    def _move(self, event: str) -> None:
        self.queue.move_all(self._event_plugins.get(event, frozenset()))

    def _on_pod(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        if new is not None and (new.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            old, new = new, None
        if new is None:
            if old is not None:
                self._pod_gone(old)
            return
        spec = new.get("spec") or {}
        key = f"{new['metadata'].get('namespace')}/{new['metadata']['name']}"
        if spec.get("nodeName"):
            was_assigned = old is not None and (old.get("spec") or {}).get("nodeName")
            if not was_assigned:
                self.queue.delete(key)
            current = self.cache.pods.get(key)
            if (current is None or current.pod.get("spec") != spec
                    or current.labels != (new["metadata"].get("labels") or {})
                    or current.terminating != bool(new["metadata"].get("deletionTimestamp"))):
                self.cache.set_pod(PodInfo(new))
            elif self.cache.is_assumed(key):
                self.cache.confirm(key, new)  # bound as assumed: no need to parse it again
            if not was_assigned:
                self._move(ASSIGNED_POD_ADD)
            return
        if (spec.get("schedulerName") or DEFAULT_SCHEDULER_NAME) != self.name:
            return
        if new["metadata"].get("deletionTimestamp") or self.cache.is_assumed(key):
            return
        info = PodInfo(new)
        if old is None:
            self.queue.add(info)
            if info.pod_group:
                self._move(UNASSIGNED_POD_ADD)
        elif _relevant_pod_change(old, new):
            self.queue.update(info)
        else:
            self.queue.add(info)

    def _pod_gone(self, pod: dict[str, Any]) -> None:
        key = f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"
        self.cache.clear_nomination(key)
        waiting = self.handle.waiting.get(key)
        if waiting is not None:
            waiting.reject("", "pod deleted")
        if key in self.cache.pods and not self.cache.is_assumed(key):
            self.cache.remove_pod(key)
            self._move(ASSIGNED_POD_DELETE)
        else:
            self.queue.delete(key)

    def _on_node(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        if new is None:
            if old is not None:
                self.cache.remove_node(old["metadata"]["name"])
            return
        self.cache.set_node(new)
        if old is None:
            self._move(NODE_ADD)
        elif _relevant_node_change(old, new):
            self._move(NODE_UPDATE)

    def _on_claim(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        if new is not None:
            self._move(PERSISTENT_VOLUME_CLAIM_CHANGE)

    def _on_volume(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        if new is not None:
            self._move(PERSISTENT_VOLUME_CHANGE)

    def _on_storage_class(self, old: dict[str, Any] | None,
                          new: dict[str, Any] | None) -> None:
        """A new class, or new allowedTopologies (the binding mode cannot change)."""
        if new is not None and (old is None or old.get("allowedTopologies")
                                != new.get("allowedTopologies")):
            self._move(STORAGE_CLASS_CHANGE)

    def _on_pod_group(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        if new is not None:
            self._move(POD_GROUP_CHANGE)

    def _pod_groups_ready(self, informer: Informer) -> None:
        informer.add_handler(self._on_pod_group)
        self.pod_groups = informer

    # -- the scheduling cycle ----------------------------------------------------------------------

    async def run(self) -> None:
        """Fill the caches, then schedule until cancelled."""
        informers = (self.nodes, self.pods, self.namespaces, self.claims, self.volumes,
                     self.storage_classes)
        informer_tasks = [asyncio.create_task(i.run(), name=f"informer-{i.plural}")
                          for i in informers]
        background = [
            asyncio.create_task(podgroups.watch_pod_groups(self.client, self._pod_groups_ready),
                                name="podgroups"),
            asyncio.create_task(self._flush_leftovers(), name="flush-unschedulable"),
            asyncio.create_task(self.events.run(), name="events"),
        ]
        try:
            await asyncio.gather(*(i.synced.wait() for i in informers))
            log.info("scheduler %s running: %d nodes, %d pending pods", self.name,
                     len(self.cache.node_list()), self.queue.counts()[0])
            await self._schedule_forever()
        finally:
            for task in (*informer_tasks, *background, *self._tasks):
                task.cancel()
            for task in (*informer_tasks, *background):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _flush_leftovers(self) -> None:
        while True:
            await asyncio.sleep(LEFTOVER_FLUSH_SECONDS)
            self.queue.flush_unschedulable_leftover()

    async def _schedule_forever(self) -> None:
        while True:
            queued = await self.queue.pop()
            try:
                await self.schedule_one(queued)
            except Exception:
                log.exception("scheduling %s failed", queued.key)
                self.queue.add_unschedulable(queued, error=True)
            await asyncio.sleep(0)  # let watch events and bindings in between cycles

    def _pending(self, key: str) -> dict[str, Any] | None:
        """The pod as the informer has it, if it still waits for a node."""
        pod = self.pods.get(key)
        if pod is None or (pod.get("spec") or {}).get("nodeName") or (
                pod.get("metadata") or {}).get("deletionTimestamp"):
            return None
        return pod

    async def schedule_one(self, queued: QueuedPod) -> None:
        pod = queued.info
        if self._pending(pod.key) is None:
            self.queue.done(pod.key)
            return
        state = CycleState()
        nodes = self.cache.node_list()
        pre_filter = self.framework.run_pre_filter(state, pod)
        if pre_filter is not None:
            if not pre_filter.rejected:
                self._fail(queued, pre_filter.message, error=True)
                return
            statuses = {node.name: pre_filter for node in nodes}
            await self._unschedulable(queued, state, statuses, pre_filter)
            return
        if not nodes:
            self._fail(queued, NO_NODES, error=False)
            return
        feasible, statuses = self._find_feasible(state, pod, nodes)
        if not feasible:
            await self._unschedulable(queued, state, statuses, None)
            return
        node = feasible[0] if len(feasible) == 1 else self._select(state, pod, feasible)
        self._assume_and_bind(queued, state, node.name)

    def _find_feasible(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]
                       ) -> tuple[list[NodeInfo], dict[str, Status]]:
        run_filter = self.framework.run_filter
        statuses: dict[str, Status] = {}
        nominated = self.cache.nodes.get(pod.nominated_node_name)
        if nominated is not None and nominated.node is not None:
            if run_filter(state, pod, self._with_nominated(nominated, pod)) is None:
                return [nominated], statuses
        wanted = num_feasible_nodes_to_find(len(nodes))
        start = self._next_start % len(nodes)
        feasible: list[NodeInfo] = []
        checked = 0
        has_nominations = bool(self.cache.nominated)
        for node in nodes[start:] + nodes[:start]:
            checked += 1
            candidate = self._with_nominated(node, pod) if has_nominations else node
            status = run_filter(state, pod, candidate)
            if status is None:
                feasible.append(node)
                if len(feasible) >= wanted:
                    break
            else:
                statuses[node.name] = status
        self._next_start = start + checked
        return feasible, statuses

    def _with_nominated(self, node: NodeInfo, pod: PodInfo) -> NodeInfo:
        """The node as it will be once pods nominated to it (of no lower priority) land."""
        nominated = self.cache.nominated.get(node.name)
        if not nominated:
            return node
        ahead = [p for p in nominated.values() if p.key != pod.key and p.priority >= pod.priority]
        if not ahead:
            return node
        trial = node.clone()
        for other in ahead:
            trial.add_pod(other)
        return trial

    def _select(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> NodeInfo:
        """The highest total score; ties broken at random, as upstream's selectHost."""
        scores = self.framework.run_score(state, pod, nodes)
        best = max(scores)
        winners = [node for node, score in zip(nodes, scores, strict=True) if score == best]
        return winners[0] if len(winners) == 1 else random.choice(winners)

    def _assume_and_bind(self, queued: QueuedPod, state: CycleState, node: str) -> None:
        pod = queued.info
        assumed = self.cache.assume(pod, node)
        status = self.framework.run_reserve(state, assumed, node)
        if status is None:
            status = self.framework.run_permit(state, assumed, node)
            if status is not None and status.code == Code.WAIT:
                status = None
        if status is not None:
            self.framework.run_unreserve(state, assumed, node)
            self.cache.forget(pod.key)
            self._fail(queued, status.message, error=not status.rejected,
                       plugins=(status.plugin,))
            return
        self.queue.done(pod.key)
        self._spawn(self._binding_cycle(queued, state, assumed, node))

    async def _binding_cycle(self, queued: QueuedPod, state: CycleState, pod: PodInfo,
                             node: str) -> None:
        status = await self.framework.wait_on_permit(pod)
        if status is None:
            async with self._bind_slots:
                status = await self.framework.run_pre_bind(state, pod, node)
                if status is None:
                    status = await self.framework.run_bind(state, pod, node)
        if status is None:
            self._record_event(pod.pod, "Normal", "Scheduled",
                               f"Successfully assigned {pod.key} to {node}")
            return
        self.framework.run_unreserve(state, pod, node)
        self.cache.forget(pod.key)
        if self._pending(pod.key) is None:
            return  # deleted, or bound by someone else meanwhile
        queued.info = PodInfo(self.pods.get(pod.key) or queued.info.pod)
        self._fail(queued, status.message, error=not status.rejected, plugins=(status.plugin,))

    async def _unschedulable(self, queued: QueuedPod, state: CycleState,
                             statuses: dict[str, Status], pre_filter: Status | None) -> None:
        nominated, post_filter = await self.framework.run_post_filter(state, queued.info,
                                                                      statuses)
        if nominated:
            self.cache.nominate(queued.info, nominated)
        plugins = {status.plugin for status in statuses.values()}
        if pre_filter is not None:
            plugins.add(pre_filter.plugin)
        message = failure_message(len(self.cache.node_list()), statuses, pre_filter,
                                  post_filter)
        self._fail(queued, message, error=False, plugins=plugins, nominated=nominated)

    def _fail(self, queued: QueuedPod, message: str, *, error: bool,
              plugins: Iterable[str] = (), nominated: str = "") -> None:
        """Requeue the pod, record FailedScheduling, and say why on its PodScheduled condition."""
        pod = queued.info
        self.queue.add_unschedulable(queued, [p for p in plugins if p], error=error)
        reason = "SchedulerError" if error else "Unschedulable"
        self._record_event(pod.pod, "Warning", "FailedScheduling", message)
        current = self.pods.get(pod.key) or pod.pod
        status = current.get("status") or {}
        condition = next((c for c in status.get("conditions") or ()
                          if c.get("type") == "PodScheduled"), {})
        if (condition.get("status") == "False" and condition.get("reason") == reason
                and condition.get("message") == message
                and (not nominated or status.get("nominatedNodeName") == nominated)):
            return
        patch: dict[str, Any] = {"status": {"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": reason, "message": message,
            "lastProbeTime": None, "lastTransitionTime": rfc3339()}]}}
        if nominated:
            patch["status"]["nominatedNodeName"] = nominated
        self._spawn(self._write(self.client.patch(
            "v1", "pods", pod.name, patch, pod.namespace, patch_type="strategic",
            subresource="status")))


async def run_scheduler(kubeconfig: str | None, *,
                        scheduler_name: str = DEFAULT_SCHEDULER_NAME,
                        leader_elect: bool = True) -> None:
    """`pilothouse scheduler`: schedule pods for `scheduler_name` until cancelled.

    With leader election (the default) it first takes the `kube-system/kube-scheduler`
    Lease (or one named after a second scheduler), as kube-scheduler does, so that a standby scheduler never binds the same pods;
    it stops if it loses the lease.
    """
    async with Client.from_kubeconfig(kubeconfig, user_agent="pilothouse-scheduler",
                                      field_manager="pilothouse-scheduler",
                                      max_connections=BIND_CONCURRENCY + WRITE_CONCURRENCY + 8
                                      ) as client:
        await client.wait_ready(timeout=120)
        scheduling = Scheduler(client, scheduler_name=scheduler_name).run()
        if not leader_elect:
            await scheduling
            return
        lease = "kube-scheduler" if scheduler_name == DEFAULT_SCHEDULER_NAME else scheduler_name
        elector = LeaderElector(client, name=lease,
                                identity=f"{socket.gethostname()}_{os.getpid()}")
        await elector.acquire()
        tasks = [asyncio.create_task(scheduling, name="scheduling"),
                 asyncio.create_task(elector.hold(), name="leader-election")]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
            log.error("scheduler stopping: %s ended", [t.get_name() for t in done])
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(elector.release(), 2)
