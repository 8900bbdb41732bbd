"""The node lifecycle controller: notices dead kubelets, taints their nodes, evicts pods.

As upstream's node lifecycle and taint-eviction controllers, merged into one loop keyed
by node name:

- Health. A node is alive while its kubelet renews its Lease in `kube-node-lease` (or
  re-posts its Ready condition). The times are this controller's own clock at which it
  *saw* a renewal, not the timestamps written by the kubelet, so clock skew does not
  matter, and a node seen for the first time gets a full grace period. Once no renewal
  was seen for `node_monitor_grace_period` seconds (settings; 40 by default), the node's
  Ready, MemoryPressure, DiskPressure and PIDPressure conditions become Unknown (reason
  NodeStatusUnknown, "Kubelet stopped posting node status.") through `nodes/status`,
  with a NodeNotReady event; the kubelet sets them back when it returns.
- Taints follow the conditions: Ready=Unknown gives `node.kubernetes.io/unreachable`,
  Ready=False `node.kubernetes.io/not-ready`, each as NoSchedule and as NoExecute (with
  timeAdded); pressure conditions and `spec.unschedulable` give their NoSchedule taints.
  They are removed when the condition clears. Other taints are left alone.
- Pods on a node that is not Ready get their Ready condition set to False (the
  endpoints stop sending them traffic), with a NodeNotReady event.
- Taint-based eviction: a pod on a node with NoExecute taints is deleted once its
  tolerations run out -- at once if some taint is not tolerated, never if the tolerations
  that match have no tolerationSeconds, else after the smallest tolerationSeconds counted
  from the taint's timeAdded. Before deleting, the pod gets a DisruptionTarget condition
  and a TaintManagerEviction event.

Pilothouse differences, on purpose:

- Dead kubelets cannot finish a graceful deletion, so pods evicted from an unreachable
  node are deleted with gracePeriodSeconds 0, and a pod already terminating there is
  force-deleted once its grace period has passed.
- No eviction rate limits and no zone disruption modes: every unreachable node is
  handled, even when all nodes are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..client import ApiError, Controller
from ..machinery.meta import now as utcnow
from ..machinery.meta import parse_time, rfc3339

LEASE_NAMESPACE = "kube-node-lease"
NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
NO_EXECUTE = "NoExecute"
NO_SCHEDULE = "NoSchedule"
DEFAULT_GRACE_PERIOD = 40.0
NODE_NAME_INDEX = "spec.nodeName"

#: (condition type, status) -> the key of the taint it brings.
CONDITION_TAINTS: Mapping[tuple[str, str], str] = {
    ("Ready", "False"): NOT_READY,
    ("Ready", "Unknown"): UNREACHABLE,
    ("MemoryPressure", "True"): "node.kubernetes.io/memory-pressure",
    ("DiskPressure", "True"): "node.kubernetes.io/disk-pressure",
    ("PIDPressure", "True"): "node.kubernetes.io/pid-pressure",
    ("NetworkUnavailable", "True"): "node.kubernetes.io/network-unavailable",
}
#: The (key, effect) pairs this controller owns; it adds and removes only these.
MANAGED_TAINTS = frozenset(
    {(key, NO_SCHEDULE) for key in CONDITION_TAINTS.values()}
    | {(NOT_READY, NO_EXECUTE), (UNREACHABLE, NO_EXECUTE), (UNSCHEDULABLE, NO_SCHEDULE)})
#: The conditions a silent kubelet can no longer vouch for (NetworkUnavailable is not its).
KUBELET_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


# -- health ------------------------------------------------------------------------------

@dataclass
class NodeHealth:
    """What the controller last saw of a node's heartbeats, on its own clock."""

    probe: datetime
    renew_time: str | None = None
    heartbeat: str | None = None
    ready: str | None = None
    taints_seen: dict[tuple[str, str], datetime] = field(default_factory=dict)


def condition(node: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in (node.get("status") or {}).get("conditions") or ():
        if cond.get("type") == kind:
            return cond
    return None


def ready_status(node: Mapping[str, Any]) -> str:
    """"True", "False" or "Unknown" (also when the kubelet never posted the condition)."""
    return (condition(node, "Ready") or {}).get("status") or "Unknown"


def observe(previous: NodeHealth | None, *, renew_time: str | None, heartbeat: str | None,
            now: datetime) -> NodeHealth:
    """The node's health after seeing its lease renewTime and Ready lastHeartbeatTime."""
    if previous is None:
        return NodeHealth(probe=now, renew_time=renew_time, heartbeat=heartbeat)
    renewed = renew_time is not None and renew_time != previous.renew_time
    posted = heartbeat is not None and heartbeat != previous.heartbeat
    if renewed or posted:
        previous.probe = now
    previous.renew_time, previous.heartbeat = renew_time, heartbeat
    return previous


def lease_expired(health: NodeHealth, now: datetime, grace_seconds: float) -> bool:
    """Whether no heartbeat was seen for longer than the grace period."""
    return now > health.probe + timedelta(seconds=grace_seconds)


def unknown_conditions(conditions: Sequence[Mapping[str, Any]], *, now: datetime,
                       created: str | None) -> list[dict[str, Any]] | None:
    """The conditions with the kubelet's ones set Unknown, or None when they already are."""
    stamp = rfc3339(now)
    result = [dict(c) for c in conditions]
    changed = False
    for kind in KUBELET_CONDITIONS:
        current = next((c for c in result if c.get("type") == kind), None)
        if current is None:
            result.append({"type": kind, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                           "message": "Kubelet never posted node status.",
                           "lastHeartbeatTime": created or stamp, "lastTransitionTime": stamp})
            changed = True
        elif current.get("status") != "Unknown":
            current.update(status="Unknown", reason="NodeStatusUnknown",
                           message="Kubelet stopped posting node status.",
                           lastTransitionTime=stamp)
            changed = True
    return result if changed else None


# -- taints ------------------------------------------------------------------------------

def desired_taints(node: Mapping[str, Any], now: datetime) -> list[dict[str, Any]]:
    """The node's taints with the controller-owned ones matching its conditions."""
    wanted: list[tuple[str, str]] = []
    for cond in (node.get("status") or {}).get("conditions") or ():
        key = CONDITION_TAINTS.get((cond.get("type", ""), cond.get("status", "")))
        if key is not None:
            wanted.append((key, NO_SCHEDULE))
    ready = (condition(node, "Ready") or {}).get("status")
    if ready == "False":
        wanted.append((NOT_READY, NO_EXECUTE))
    elif ready == "Unknown":
        wanted.append((UNREACHABLE, NO_EXECUTE))
    if (node.get("spec") or {}).get("unschedulable"):
        wanted.append((UNSCHEDULABLE, NO_SCHEDULE))
    taints = [dict(t) for t in (node.get("spec") or {}).get("taints") or ()
              if (t.get("key"), t.get("effect")) not in MANAGED_TAINTS
              or (t.get("key"), t.get("effect")) in wanted]
    present = {(t.get("key"), t.get("effect")) for t in taints}
    for key, effect in wanted:
        if (key, effect) not in present:
            taint: dict[str, Any] = {"key": key, "effect": effect}
            if effect == NO_EXECUTE:
                taint["timeAdded"] = rfc3339(now)
            taints.append(taint)
            present.add((key, effect))
    return taints


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """v1.Toleration.ToleratesTaint: effect and key match (empty matches all), then value."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("key") and toleration["key"] != taint.get("key"):
        return False
    if toleration.get("operator") == "Exists":
        return True
    return (toleration.get("value") or "") == (taint.get("value") or "")


def eviction_time(tolerations: Iterable[Mapping[str, Any]],
                  taints: Sequence[tuple[Mapping[str, Any], datetime]]) -> datetime | None:
    """When a pod with `tolerations` must leave a node with these NoExecute taints.

    `taints` pairs each taint with the time it was added. Returns None when the pod may
    stay forever; a time not after now means at once.
    """
    if not taints:
        return None
    tolerations = list(tolerations)
    since = min(added for _, added in taints)
    limits: list[float] = []
    for taint, _ in taints:
        match = next((t for t in tolerations if tolerates(t, taint)), None)
        if match is None:
            return since
        if match.get("tolerationSeconds") is not None:
            limits.append(max(float(match["tolerationSeconds"]), 0.0))
    if not limits:
        return None
    return since + timedelta(seconds=min(limits))


# -- the controller ----------------------------------------------------------------------

def _node_name(pod: dict[str, Any]) -> list[str]:
    name = (pod.get("spec") or {}).get("nodeName")
    return [name] if name else []


class NodeLifecycleController(Controller):
    """Marks silent nodes Unknown, keeps condition taints, evicts pods from NoExecute taints."""

    name = "node-lifecycle-controller"
    workers = 4

    def setup(self) -> None:
        settings = self.context.settings
        self.grace = float(settings.get("node_monitor_grace_period", DEFAULT_GRACE_PERIOD))
        informers = self.context.informers
        self.nodes = informers.informer("v1", "nodes")
        self.leases = informers.informer("coordination.k8s.io/v1", "leases")
        self.pods = informers.informer("v1", "pods", indexers={NODE_NAME_INDEX: _node_name})
        self.nodes.add_handler(self.enqueue_handler)
        self.leases.add_handler(self._on_lease)
        self.pods.add_handler(self._on_pod)
        self._health: dict[str, NodeHealth] = {}

    def _on_lease(self, old: dict | None, new: dict | None) -> None:
        lease = new if new is not None else old
        if lease is not None and lease["metadata"].get("namespace") == LEASE_NAMESPACE:
            self.queue.add(lease["metadata"]["name"])

    def _on_pod(self, old: dict | None, new: dict | None) -> None:
        if new is None:
            return
        node = self.nodes.get((new.get("spec") or {}).get("nodeName") or "")
        if node is None:
            return
        tainted = any(t.get("effect") == NO_EXECUTE for t in (node.get("spec") or {}).get(
            "taints") or ())
        if tainted or ready_status(node) != "True":
            self.queue.add(node["metadata"]["name"])

    async def reconcile(self, key: str) -> float | None:
        node = self.nodes.get(key)
        if node is None:
            self._health.pop(key, None)
            return None
        now = utcnow()
        lease = self.leases.get(f"{LEASE_NAMESPACE}/{key}") or {}
        health = observe(self._health.get(key),
                         renew_time=(lease.get("spec") or {}).get("renewTime"),
                         heartbeat=(condition(node, "Ready") or {}).get("lastHeartbeatTime"),
                         now=now)
        self._health[key] = health
        waits: list[float] = []
        if lease_expired(health, now, self.grace):
            conditions = unknown_conditions(
                (node.get("status") or {}).get("conditions") or (), now=now,
                created=node["metadata"].get("creationTimestamp"))
            if conditions is not None:
                node = await self.client.replace(
                    "v1", "nodes", {**node, "status": {**node.get("status", {}),
                                                       "conditions": conditions}},
                    subresource="status")
        else:
            waits.append((health.probe + timedelta(seconds=self.grace) - now).total_seconds()
                         + 0.1)
        ready = ready_status(node)
        if health.ready == "True" and ready != "True":
            await self.events.record(_typed(node, "Node"), "Normal", "NodeNotReady",
                                     f"Node {key} status is now: NodeNotReady")
        health.ready = ready
        taints = desired_taints(node, now)
        if taints != ((node.get("spec") or {}).get("taints") or []):
            node = await self.client.replace(
                "v1", "nodes", {**node, "spec": {**node.get("spec", {}), "taints": taints}})
        waits += await self._sync_pods(node, health, now)
        return min(waits) if waits else None

    async def _sync_pods(self, node: dict[str, Any], health: NodeHealth,
                         now: datetime) -> list[float]:
        """Mark the node's pods not ready and evict those out of toleration; returns waits."""
        name = node["metadata"]["name"]
        ready = ready_status(node)
        no_execute = []
        seen: dict[tuple[str, str], datetime] = {}
        for taint in (node.get("spec") or {}).get("taints") or ():
            if taint.get("effect") != NO_EXECUTE:
                continue
            ident = (taint.get("key", ""), taint.get("value", ""))
            seen[ident] = parse_time(taint.get("timeAdded")) or health.taints_seen.get(ident, now)
            no_execute.append((taint, seen[ident]))
        health.taints_seen = seen
        unreachable = ready == "Unknown"
        waits: list[float] = []
        for pod in self.pods.by_index(NODE_NAME_INDEX, name):
            meta = pod["metadata"]
            if meta.get("deletionTimestamp"):
                deadline = parse_time(meta["deletionTimestamp"]) or now
                if unreachable and deadline <= now:
                    await self._delete(pod, grace=0)
                elif unreachable:
                    waits.append((deadline - now).total_seconds())
                continue
            # A pod's default tolerations (300 s, or the API server's
            # --default-*-toleration-seconds) were added at admission, as on a real cluster.
            when = eviction_time((pod.get("spec") or {}).get("tolerations") or (), no_execute)
            if when is not None and when <= now:
                await self._evict(pod, grace=0 if unreachable else None)
                continue
            if when is not None:
                waits.append((when - now).total_seconds())
            if ready != "True":
                await self._mark_not_ready(pod, now)
        return waits

    async def _mark_not_ready(self, pod: dict[str, Any], now: datetime) -> None:
        status = pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            return
        current = next((c for c in status.get("conditions") or ()
                        if c.get("type") == "Ready"), None)
        if current is None or current.get("status") == "False":
            return
        await self._patch_condition(pod, {**current, "status": "False",
                                          "lastTransitionTime": rfc3339(now)})
        await self.events.record(_typed(pod, "Pod"), "Warning", "NodeNotReady",
                                 "Node is not ready")

    async def _evict(self, pod: dict[str, Any], *, grace: int | None) -> None:
        meta = pod["metadata"]
        await self.events.record(_typed(pod, "Pod"), "Normal", "TaintManagerEviction",
                                 f"Marking for deletion Pod {meta['namespace']}/{meta['name']}")
        try:
            await self._patch_condition(pod, {
                "type": "DisruptionTarget", "status": "True", "lastProbeTime": None,
                "lastTransitionTime": rfc3339(), "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint"})
        except ApiError as err:
            if err.not_found:
                return
            raise
        await self._delete(pod, grace=grace)

    async def _patch_condition(self, pod: dict[str, Any], cond: Mapping[str, Any]) -> None:
        meta = pod["metadata"]
        await self.client.patch("v1", "pods", meta["name"],
                                {"metadata": {"uid": meta["uid"]},
                                 "status": {"conditions": [dict(cond)]}},
                                meta["namespace"], patch_type="strategic", subresource="status")

    async def _delete(self, pod: dict[str, Any], *, grace: int | None) -> None:
        meta = pod["metadata"]
        try:
            await self.client.delete("v1", "pods", meta["name"], meta["namespace"],
                                     grace_period_seconds=grace,
                                     preconditions={"uid": meta["uid"]})
        except ApiError as err:
            if not (err.not_found or err.conflict):
                raise


def _typed(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    """Informer items carry no kind; events about them need one."""
    return {"apiVersion": "v1", "kind": kind, **obj}


CONTROLLER = NodeLifecycleController
