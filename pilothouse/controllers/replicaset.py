"""The ReplicaSet controller: keep `spec.replicas` pods of a template running.

As pkg/controller/replicaset: a sync reads the ReplicaSet and the pods of its namespace
from the shared caches, claims the pods its selector matches (adopting orphans,
releasing pods whose labels moved away), creates the missing pods in slow-start batches
or deletes the surplus -- the least valuable first: unscheduled before scheduled,
pending before running, not ready before ready, doubled-up on a node before alone,
recently ready before long ready, restarting before stable, young before old -- and then
writes status (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas,
observedGeneration, and a ReplicaFailure condition when a create or delete is refused).
Expectations hold further creates and deletes back until the cache shows the previous
ones, so the controller never over-creates while its cache catches up.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
from datetime import datetime
from functools import cmp_to_key
from typing import Any

from ..client import (
    ApiError,
    Controller,
    claim,
    classify_claims,
    controller_of,
    controller_ref,
    fresh_owner_check,
    object_key,
)
from ..machinery.meta import now as utcnow
from ..machinery.meta import parse_time
from ..machinery.selectors import label_selector_from_dict
from ._workloads import (
    Expectations,
    error_message,
    get_condition,
    is_pod_active,
    is_pod_available,
    is_pod_ready,
    meta,
    new_condition,
    omit_zero,
    pod_from_template,
    pod_ready_since,
    remove_condition,
    selecting_owners,
    set_condition,
    slow_start_batch,
    with_kind,
)

log = logging.getLogger(__name__)

API_VERSION = "apps/v1"
KIND = "ReplicaSet"
#: At most this many pods are created or deleted in one sync (controller's burstReplicas).
BURST_REPLICAS = 500
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"


# -- which pods to delete --------------------------------------------------------------


def _deletion_cost(pod: dict[str, Any]) -> int:
    value = (meta(pod).get("annotations") or {}).get(DELETION_COST_ANNOTATION)
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def _max_restarts(pod: dict[str, Any]) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return max((s.get("restartCount") or 0 for s in statuses), default=0)


def _log_rank(moment: datetime, now: datetime) -> int:
    """log2 of how long ago, in nanoseconds: times in one bucket rank alike."""
    elapsed = (now - moment).total_seconds() * 1e9
    return -1 if elapsed <= 0 else int(math.log2(elapsed))


def _newer_first(t1: datetime | None, t2: datetime | None, now: datetime,
                 uid1: str, uid2: str) -> int:
    """-1 if t1 should be deleted first: unknown times first, then the more recent (by
    logarithmic bucket, ties broken by uid so the choice spreads)."""
    if t1 is None or t2 is None:
        if t1 is None and t2 is None:
            return 0
        return -1 if t1 is None else 1
    diff = _log_rank(t1, now) - _log_rank(t2, now)
    if diff == 0:
        return -1 if uid1 < uid2 else (1 if uid1 > uid2 else 0)
    return -1 if diff < 0 else 1


_PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}


def compare_for_deletion(a: dict[str, Any], b: dict[str, Any], rank_a: int, rank_b: int,
                         now: datetime) -> int:
    """-1 if `a` is the better pod to delete (controller.ActivePodsWithRanks.Less)."""
    def cmp(x: Any, y: Any) -> int:
        return (x > y) - (x < y)

    node_a, node_b = bool((a.get("spec") or {}).get("nodeName")), bool(
        (b.get("spec") or {}).get("nodeName"))
    if node_a != node_b:
        return cmp(node_a, node_b)
    phase_a = _PHASE_ORDER.get((a.get("status") or {}).get("phase", ""), 0)
    phase_b = _PHASE_ORDER.get((b.get("status") or {}).get("phase", ""), 0)
    if phase_a != phase_b:
        return cmp(phase_a, phase_b)
    ready_a, ready_b = is_pod_ready(a), is_pod_ready(b)
    if ready_a != ready_b:
        return cmp(ready_a, ready_b)
    cost_a, cost_b = _deletion_cost(a), _deletion_cost(b)
    if cost_a != cost_b:
        return cmp(cost_a, cost_b)
    if rank_a != rank_b:
        return cmp(rank_b, rank_a)
    uid_a, uid_b = meta(a).get("uid", ""), meta(b).get("uid", "")
    if ready_a and ready_b:
        since_a, since_b = pod_ready_since(a), pod_ready_since(b)
        if since_a != since_b:
            order = _newer_first(since_a, since_b, now, uid_a, uid_b)
            if order:
                return order
    restarts_a, restarts_b = _max_restarts(a), _max_restarts(b)
    if restarts_a != restarts_b:
        return cmp(restarts_b, restarts_a)
    created_a = parse_time(meta(a).get("creationTimestamp"))
    created_b = parse_time(meta(b).get("creationTimestamp"))
    if created_a != created_b:
        return _newer_first(created_a, created_b, now, uid_a, uid_b)
    return 0


def pods_to_delete(pods: list[dict[str, Any]], related: list[dict[str, Any]], count: int,
                   now: datetime) -> list[dict[str, Any]]:
    """The `count` pods whose deletion costs least.

    A pod's rank is how many related pods (of every ReplicaSet under the same owner)
    share its node: pods doubled up on a node go before pods alone on theirs.
    """
    if count >= len(pods):
        return list(pods)
    on_node: dict[str, int] = {}
    for pod in related:
        node = (pod.get("spec") or {}).get("nodeName")
        if node and is_pod_active(pod):
            on_node[node] = on_node.get(node, 0) + 1
    ranked = [(pod, on_node.get((pod.get("spec") or {}).get("nodeName") or "", 0))
              for pod in pods]
    ranked.sort(key=cmp_to_key(lambda x, y: compare_for_deletion(x[0], y[0], x[1], y[1], now)))
    return [pod for pod, _ in ranked[:count]]


# -- status ----------------------------------------------------------------------------


def calculate_status(rs: dict[str, Any], pods: list[dict[str, Any]],
                     manage_error: Exception | None, now: datetime) -> dict[str, Any]:
    """The status a sync writes, from the pods it controls (as the API serializes it)."""
    spec = rs.get("spec") or {}
    min_ready = spec.get("minReadySeconds") or 0
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    status: dict[str, Any] = {
        "replicas": len(pods),
        "fullyLabeledReplicas": sum(
            1 for p in pods
            if all((meta(p).get("labels") or {}).get(k) == v for k, v in template_labels.items())),
        "readyReplicas": sum(1 for p in pods if is_pod_ready(p)),
        "availableReplicas": sum(1 for p in pods if is_pod_available(p, min_ready, now)),
        "observedGeneration": meta(rs).get("generation") or 0,
    }
    old = rs.get("status") or {}
    if old.get("conditions"):
        status["conditions"] = copy.deepcopy(old["conditions"])
    failure = get_condition(status, "ReplicaFailure")
    if manage_error is not None and failure is None:
        reason = "FailedCreate" if len(pods) < (spec.get("replicas") or 0) else "FailedDelete"
        set_condition(status, new_condition("ReplicaFailure", "True", reason,
                                            error_message(manage_error), now=now))
    elif manage_error is None and failure is not None:
        remove_condition(status, "ReplicaFailure")
    return omit_zero(status, keep=("replicas",))


def status_differs(rs: dict[str, Any], status: dict[str, Any]) -> bool:
    return omit_zero(rs.get("status") or {}, keep=("replicas",)) != status


# -- the controller --------------------------------------------------------------------


class ReplicaSetController(Controller):
    name = "replicaset-controller"
    workers = 4

    def setup(self) -> None:
        self.expectations = Expectations()
        self.replicasets = self.context.informers.informer(API_VERSION, "replicasets")
        self.pods = self.context.informers.informer("v1", "pods")
        self.replicasets.add_handler(self._on_replicaset)
        self.pods.add_handler(self._on_pod)

    # -- event handlers: map pod changes to the ReplicaSets that care ------------------

    def _on_replicaset(self, old: dict | None, new: dict | None) -> None:
        self.enqueue(new if new is not None else old)

    def _owner_key(self, pod: dict[str, Any]) -> str | None:
        ref = controller_of(pod)
        if ref is None or ref.get("kind") != KIND:
            return None
        key = f"{meta(pod).get('namespace')}/{ref.get('name')}"
        rs = self.replicasets.get(key)
        if rs is None or meta(rs).get("uid") != ref.get("uid"):
            return None
        return key

    def _matching_replicasets(self, pod: dict[str, Any]) -> list[str]:
        return selecting_owners(self.replicasets, meta(pod).get("namespace") or "",
                                meta(pod).get("labels") or {})

    def _on_pod(self, old: dict | None, new: dict | None) -> None:
        if new is None:
            assert old is not None
            self._pod_gone(old)
            return
        if old is not None and meta(old).get("resourceVersion") == meta(new).get(
                "resourceVersion"):
            return
        if meta(new).get("deletionTimestamp"):
            self._pod_gone(new)
            if old is not None and meta(old).get("labels") != meta(new).get("labels"):
                self._pod_gone(old)
            return
        old_ref = controller_of(old) if old is not None else None
        new_ref = controller_of(new)
        if old is not None and old_ref is not None and old_ref != new_ref:
            old_key = self._owner_key(old)
            if old_key:
                self.queue.add(old_key)
        key = self._owner_key(new)
        if key is not None:
            if old is None:
                self.expectations.creation_observed(key)
            self.queue.add(key)
            rs = self.replicasets.get(key)
            min_ready = ((rs or {}).get("spec") or {}).get("minReadySeconds") or 0
            if old is not None and min_ready and not is_pod_ready(old) and is_pod_ready(new):
                self.queue.add_after(key, min_ready + 1)
            return
        if new_ref is None and (old is None or old_ref != new_ref or meta(old).get(
                "labels") != meta(new).get("labels")):
            for rs_key in self._matching_replicasets(new):
                self.queue.add(rs_key)

    def _pod_gone(self, pod: dict[str, Any]) -> None:
        key = self._owner_key(pod)
        if key is None:
            return
        self.expectations.deletion_observed(key, object_key(pod))
        self.queue.add(key)

    # -- sync ------------------------------------------------------------------------

    async def reconcile(self, key: str) -> float | None:
        cached = self.replicasets.get(key)
        if cached is None:
            self.expectations.forget(key)
            return None
        rs = with_kind(cached, api_version=API_VERSION, kind=KIND)
        try:
            selector = label_selector_from_dict((rs.get("spec") or {}).get("selector"))
        except ValueError as err:
            log.warning("replicaset %s has an invalid selector: %s", key, err)
            return None
        needs_sync = self.expectations.satisfied(key)
        candidates = [p for p in self.pods.by_index("namespace", meta(rs).get("namespace", ""))
                      if is_pod_active(p)]
        owner_ref = controller_ref(rs, api_version=API_VERSION, kind=KIND)
        pods = await claim(
            self.client, api_version="v1", plural="pods", owner=rs, owner_ref=owner_ref,
            claims=classify_claims(rs, selector, candidates),
            can_adopt=lambda: fresh_owner_check(self.client, api_version=API_VERSION,
                                                plural="replicasets", owner=rs))
        manage_error: Exception | None = None
        if needs_sync and not meta(rs).get("deletionTimestamp"):
            try:
                await self._manage(key, rs, pods)
            except ApiError as err:
                manage_error = err
        now = utcnow()
        status = calculate_status(rs, pods, manage_error, now)
        if status_differs(rs, status):
            await self.client.replace(API_VERSION, "replicasets", {**rs, "status": status},
                                      subresource="status")
        if manage_error is not None:
            raise manage_error
        min_ready = (rs.get("spec") or {}).get("minReadySeconds") or 0
        if min_ready and status.get("readyReplicas", 0) == status["replicas"] and status.get(
                "availableReplicas", 0) != status["replicas"]:
            return float(min_ready)
        return None

    async def _manage(self, key: str, rs: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        """Create or delete pods so that `len(pods) == spec.replicas`."""
        want = (rs.get("spec") or {}).get("replicas")
        want = 1 if want is None else want
        diff = len(pods) - want
        if diff < 0:
            await self._create(key, rs, min(-diff, BURST_REPLICAS))
        elif diff > 0:
            await self._delete(key, rs, pods, min(diff, BURST_REPLICAS))

    async def _create(self, key: str, rs: dict[str, Any], count: int) -> None:
        self.expectations.expect_creations(key, count)
        owner_ref = controller_ref(rs, api_version=API_VERSION, kind=KIND)
        template = (rs.get("spec") or {}).get("template") or {}
        namespace = meta(rs).get("namespace")

        async def create_one() -> None:
            pod = pod_from_template(template, rs, owner_ref=owner_ref)
            try:
                created = await self.client.create("v1", "pods", pod, namespace)
            except ApiError as err:
                if err.reason != "AlreadyExists" and "being terminated" not in error_message(err):
                    await self.events.record(rs, "Warning", "FailedCreate",
                                             f"Error creating: {error_message(err)}")
                raise
            await self.events.record(rs, "Normal", "SuccessfulCreate",
                                     f"Created pod: {meta(created)['name']}")

        done, errors = await slow_start_batch(count, create_one)
        for _ in range(count - done):
            self.expectations.creation_observed(key)
        if errors:
            raise errors[0]

    async def _delete(self, key: str, rs: dict[str, Any], pods: list[dict[str, Any]],
                      count: int) -> None:
        victims = pods_to_delete(pods, self._related_pods(rs, pods), count, utcnow())
        self.expectations.expect_deletions(key, [object_key(p) for p in victims])

        async def delete_one(pod: dict[str, Any]) -> None:
            try:
                await self.client.delete("v1", "pods", meta(pod)["name"], meta(pod)["namespace"])
            except ApiError as err:
                self.expectations.deletion_observed(key, object_key(pod))
                if err.not_found:
                    return
                await self.events.record(rs, "Warning", "FailedDelete",
                                         f"Error deleting: {error_message(err)}")
                raise
            await self.events.record(rs, "Normal", "SuccessfulDelete",
                                     f"Deleted pod: {meta(pod)['name']}")

        results = await asyncio.gather(*(delete_one(p) for p in victims),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                raise result

    def _related_pods(self, rs: dict[str, Any], pods: list[dict[str, Any]]
                      ) -> list[dict[str, Any]]:
        """Pods of every ReplicaSet that shares this one's controller (a Deployment's
        revisions), so deletions spread over nodes across revisions."""
        ref = controller_of(rs)
        if ref is None:
            return pods
        related = []
        for sibling in self.replicasets.by_index("owner", ref.get("uid", "")):
            related.extend(self.pods.by_index("owner", meta(sibling).get("uid", "")))
        return related


CONTROLLER = ReplicaSetController
