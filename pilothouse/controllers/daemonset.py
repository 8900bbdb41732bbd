"""The DaemonSet controller: one pod of the template on every eligible node.

A node is eligible when the template's nodeSelector and required node affinity match it
and its NoSchedule/NoExecute taints are tolerated -- counting the tolerations every
daemon pod gets (not-ready and unreachable NoExecute; disk-, memory- and pid-pressure
and unschedulable NoSchedule; network-unavailable for host-network pods). A pod already
on a node whose NoExecute taints it tolerates keeps running there.

As in Kubernetes 1.32 the controller does not bind: each pod it creates carries a
required node affinity on `metadata.name` pinning it to its node, and the default
scheduler binds it there. Failed pods are deleted (to be recreated), extra pods on a node
are deleted keeping the oldest, and pods on nodes that are no longer eligible go.

Templates are recorded as apps/v1 ControllerRevisions (`<ds>-<hash>`, the hash also on
each pod's `controller-revision-hash` label). `RollingUpdate` replaces out-of-date pods
while no more than `maxUnavailable` nodes are without an available pod, or, with
`maxSurge`, starts the new pod beside the old one first; `OnDelete` waits for the user.
Status counts desired, current, ready, available, updated and misscheduled pods, which is
what `kubectl rollout status ds/x` reads. Creates and deletes go through expectations so a
lagging cache never makes the controller act twice.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    split_key,
)
from ..machinery.selectors import label_selector_from_dict, node_selector_term_matches
from ._workloads import (
    Expectations,
    error_message,
    int_or_percent,
    is_pod_available,
    is_pod_ready,
    meta,
    omit_zero,
    pod_from_template,
    slow_start_batch,
)
from .statefulset import (
    canonical_json,
    delete_old_revisions,
    fnv32,
    live_revision_names,
    safe_encode,
    sort_revisions,
    template_patch,
)

API_VERSION = "apps/v1"
KIND = "DaemonSet"
HASH_LABEL = "controller-revision-hash"
GENERATION_LABEL = "pod-template-generation"
GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"
#: At most this many pods are created or deleted in one sync (upstream's BurstReplicas).
BURST_REPLICAS = 250

#: Tolerations every daemon pod carries (util.AddOrUpdateDaemonPodTolerations).
DAEMON_TOLERATIONS = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
HOST_NETWORK_TOLERATION = {"key": "node.kubernetes.io/network-unavailable",
                           "operator": "Exists", "effect": "NoSchedule"}


# -- which nodes ------------------------------------------------------------------------


def daemon_pod_spec(template_spec: Mapping[str, Any]) -> dict[str, Any]:
    """The template's pod spec with the daemon tolerations added (replacing same key+effect)."""
    spec = copy.deepcopy(dict(template_spec))
    extra = list(DAEMON_TOLERATIONS)
    if spec.get("hostNetwork"):
        extra.append(HOST_NETWORK_TOLERATION)
    tolerations = list(spec.get("tolerations") or [])
    for toleration in extra:
        tolerations = [t for t in tolerations if (t.get("key"), t.get("effect")) != (
            toleration["key"], toleration["effect"])]
        tolerations.append(dict(toleration))
    spec["tolerations"] = tolerations
    return spec


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("key") and toleration["key"] != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def untolerated(taints: Iterable[Mapping[str, Any]], tolerations: list[Mapping[str, Any]],
                effects: tuple[str, ...]) -> bool:
    return any(taint.get("effect") in effects
               and not any(tolerates(t, taint) for t in tolerations) for taint in taints)


def node_matches_term(term: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """A node selector term: all its label and field requirements (and at least one)."""
    return node_selector_term_matches(term, meta(node).get("labels") or {},
                                      {"metadata.name": meta(node).get("name")})


def node_affinity_matches(pod_spec: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """nodeSelector and required node affinity (nodeaffinity.GetRequiredNodeAffinity)."""
    labels = meta(node).get("labels") or {}
    if any(labels.get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
        return False
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"))
    if required is None:
        return True
    return any(node_matches_term(t, node) for t in required.get("nodeSelectorTerms") or [])


def should_run(node: Mapping[str, Any], ds: Mapping[str, Any]) -> tuple[bool, bool]:
    """(a daemon pod should be started on the node, one already there should stay)."""
    template_spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    wanted_node = template_spec.get("nodeName")
    if wanted_node and wanted_node != meta(node).get("name"):
        return False, False
    spec = daemon_pod_spec(template_spec)
    if not node_affinity_matches(spec, node):
        return False, False
    taints = (node.get("spec") or {}).get("taints") or []
    tolerations = spec["tolerations"]
    if untolerated(taints, tolerations, ("NoSchedule", "NoExecute")):
        return False, not untolerated(taints, tolerations, ("NoExecute",))
    return True, True


def target_node(pod: Mapping[str, Any]) -> str | None:
    """The node a daemon pod is for: its nodeName, else its pinning node affinity."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return spec["nodeName"]
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or {})
    for term in required.get("nodeSelectorTerms") or []:
        for requirement in term.get("matchFields") or []:
            values = requirement.get("values") or []
            if requirement.get("key") == "metadata.name" and requirement.get(
                    "operator") == "In" and len(values) == 1:
                return values[0]
    return None


def pin_to_node(spec: dict[str, Any], node_name: str) -> None:
    """Replace the pod's required node affinity terms with one naming `node_name`."""
    term = {"matchFields": [{"key": "metadata.name", "operator": "In",
                             "values": [node_name]}]}
    affinity = spec.setdefault("affinity", {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    required = node_affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    required["nodeSelectorTerms"] = [term]


# -- which pods -------------------------------------------------------------------------


def _creation_order(pod: Mapping[str, Any]) -> tuple:
    """Oldest first; among equals, scheduled and running pods first."""
    phase_rank = {"Running": 0, "Pending": 1}.get((pod.get("status") or {}).get("phase"), 2)
    return (meta(pod).get("creationTimestamp") or "", not (pod.get("spec") or {}).get(
        "nodeName"), phase_rank, meta(pod).get("name") or "")


def is_updated(pod: Mapping[str, Any], hash_: str, generation: str | None) -> bool:
    labels = meta(pod).get("labels") or {}
    return (bool(hash_) and labels.get(HASH_LABEL) == hash_) or (
        generation is not None and labels.get(GENERATION_LABEL) == generation)


def updated_and_old(pods: Iterable[Mapping[str, Any]], hash_: str, generation: str | None
                    ) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None, bool]:
    """(the new pod, the old pod, False if a node has more than one of either)."""
    new = old = None
    for pod in pods:
        if meta(pod).get("deletionTimestamp"):
            continue
        if is_updated(pod, hash_, generation):
            if new is not None:
                return None, None, False
            new = pod
        else:
            if old is not None:
                return None, None, False
            old = pod
    return new, old, True


@dataclass
class NodeWork:
    """What a sync does: nodes that need a pod, pods to delete (by name), and why."""

    create_on: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _surge_limits(ds: Mapping[str, Any], desired: int) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as pod counts; both zero means one unavailable."""
    strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return 0, 1
    rolling = strategy.get("rollingUpdate") or {}
    surge = int_or_percent(rolling.get("maxSurge", 0), desired, round_up=True)
    unavailable = int_or_percent(rolling.get("maxUnavailable", 1), desired, round_up=True)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def plan_nodes(ds: Mapping[str, Any], nodes: Iterable[Mapping[str, Any]],
               node_pods: Mapping[str, list[dict[str, Any]]], hash_: str, now: datetime
               ) -> NodeWork:
    """upstream's manage(): which nodes need a pod and which pods must go."""
    work = NodeWork()
    desired = sum(should_run(n, ds)[0] for n in nodes)
    surge, _ = _surge_limits(ds, desired)
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    names = set()
    for node in nodes:
        name = meta(node)["name"]
        names.add(name)
        run, keep = should_run(node, ds)
        pods = node_pods.get(name) or []
        if run and not pods:
            work.create_on.append(name)
        elif keep:
            running = []
            for pod in pods:
                if meta(pod).get("deletionTimestamp"):
                    continue
                phase = (pod.get("status") or {}).get("phase")
                if phase == "Failed":
                    work.failed.append(meta(pod)["name"])
                    work.delete.append(meta(pod)["name"])
                elif phase == "Succeeded":
                    work.delete.append(meta(pod)["name"])
                else:
                    running.append(pod)
            running.sort(key=_creation_order)
            if not surge:
                work.delete += [meta(p)["name"] for p in running[1:]]
                continue
            oldest_new = oldest_old = None
            for pod in running:
                if (meta(pod).get("labels") or {}).get(HASH_LABEL) == hash_:
                    if oldest_new is None:
                        oldest_new = pod
                        continue
                elif oldest_old is None:
                    oldest_old = pod
                    continue
                work.delete.append(meta(pod)["name"])
            if oldest_new is not None and oldest_old is not None and (
                    not is_pod_ready(oldest_old) or is_pod_available(oldest_new, min_ready, now)):
                work.delete.append(meta(oldest_old)["name"])
        elif pods:
            work.delete += [meta(p)["name"] for p in pods if not meta(p).get("deletionTimestamp")]
    for name, pods in node_pods.items():
        if name not in names:
            work.delete += [meta(p)["name"] for p in pods if not (p.get("spec") or {}).get(
                "nodeName")]
    return work


def plan_rolling_update(ds: Mapping[str, Any], nodes: Iterable[Mapping[str, Any]],
                        node_pods: Mapping[str, list[dict[str, Any]]], hash_: str,
                        now: datetime) -> NodeWork:
    """upstream's rollingUpdate(): old pods to delete (and, with surge, nodes to start the
    new pod on) while keeping unavailability within maxUnavailable (or maxSurge)."""
    nodes = list(nodes)
    by_name = {meta(n)["name"]: n for n in nodes}
    desired = sum(should_run(n, ds)[0] for n in nodes)
    surge, max_unavailable = _surge_limits(ds, desired)
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    generation = (meta(ds).get("annotations") or {}).get(GENERATION_ANNOTATION)
    work = NodeWork()
    if not surge:
        unavailable = 0
        replace, candidates = [], []
        for name in sorted(node_pods):
            new, old, ok = updated_and_old(node_pods[name], hash_, generation)
            if not ok or (new is None) == (old is None):
                unavailable += 1
            elif new is not None:
                unavailable += not is_pod_available(new, min_ready, now)
            elif old is not None and not is_pod_available(old, min_ready, now):
                replace.append(meta(old)["name"])
            elif old is not None and unavailable < max_unavailable:
                candidates.append(meta(old)["name"])
        room = min(max(max_unavailable - unavailable, 0), len(candidates))
        work.delete = replace + candidates[:room]
        return work
    surged = 0
    allowed, candidates = [], []
    for name in sorted(node_pods):
        new, old, ok = updated_and_old(node_pods[name], hash_, generation)
        if not ok:
            surged += 1
        elif old is None:
            continue
        elif new is None:
            if not is_pod_available(old, min_ready, now):
                node = by_name.get(name)
                if node is None or not should_run(node, ds)[0]:
                    work.delete.append(meta(old)["name"])
                else:
                    allowed.append(name)
            elif surged < surge:
                candidates.append(name)
        elif not is_pod_available(new, min_ready, now):
            surged += 1
        else:
            work.delete.append(meta(old)["name"])
    room = min(max(surge - surged, 0), len(candidates))
    work.create_on = allowed + candidates[:room]
    return work


def daemon_status(ds: Mapping[str, Any], nodes: Iterable[Mapping[str, Any]],
                  node_pods: Mapping[str, list[dict[str, Any]]], hash_: str,
                  now: datetime) -> dict[str, int]:
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    generation = (meta(ds).get("annotations") or {}).get(GENERATION_ANNOTATION)
    status = dict(desiredNumberScheduled=0, currentNumberScheduled=0, numberMisscheduled=0,
                  numberReady=0, updatedNumberScheduled=0, numberAvailable=0)
    for node in nodes:
        run, _ = should_run(node, ds)
        pods = sorted(node_pods.get(meta(node)["name"]) or [], key=_creation_order)
        if not run:
            status["numberMisscheduled"] += bool(pods)
            continue
        status["desiredNumberScheduled"] += 1
        if not pods:
            continue
        status["currentNumberScheduled"] += 1
        pod = pods[0]
        if is_pod_ready(pod):
            status["numberReady"] += 1
            status["numberAvailable"] += is_pod_available(pod, min_ready, now)
        status["updatedNumberScheduled"] += is_updated(pod, hash_, generation)
    status["numberUnavailable"] = status["desiredNumberScheduled"] - status["numberAvailable"]
    return status


def daemonset_hash(template: Mapping[str, Any], collision_count: int) -> str:
    """controller.ComputeHash: FNV-1a of the template, then the collision count."""
    data = canonical_json(template)
    if collision_count:
        data += collision_count.to_bytes(4, "little")
    return safe_encode(str(fnv32(data, variant_a=True)))


# -- the controller ---------------------------------------------------------------------


class DaemonSetController(Controller):
    name = "daemonset-controller"
    workers = 2

    def setup(self) -> None:
        informers = self.context.informers
        self.daemonsets = informers.informer(API_VERSION, "daemonsets")
        self.pods = informers.informer("v1", "pods")
        self.nodes = informers.informer("v1", "nodes")
        self.revisions = informers.informer(API_VERSION, "controllerrevisions")
        self.daemonsets.add_handler(self.enqueue_handler)
        self.pods.add_handler(self._pod_changed)
        self.nodes.add_handler(self._node_changed)
        self.revisions.add_handler(self._revision_changed)
        self.creations = Expectations()
        self.deletions = Expectations()

    def _owner_key(self, obj: Mapping[str, Any]) -> str | None:
        ref = controller_of(obj)
        if ref is None or ref.get("kind") != KIND:
            return None
        return f"{meta(obj).get('namespace')}/{ref.get('name')}"

    def _pod_changed(self, old: dict | None, new: dict | None) -> None:
        pod = new if new is not None else old
        if pod is None:
            return
        key = self._owner_key(pod)
        if key is None:
            # An orphan: every DaemonSet that might adopt it looks.
            namespace = meta(pod).get("namespace") or ""
            for ds in self.daemonsets.by_index("namespace", namespace):
                self.enqueue(ds)
            return
        if old is None:
            self.creations.creation_observed(key)
        elif new is None or (meta(new).get("deletionTimestamp") and not meta(old).get(
                "deletionTimestamp")):
            self.deletions.deletion_observed(key, object_key(pod))
        self.queue.add(key)

    def _revision_changed(self, old: dict | None, new: dict | None) -> None:
        obj = new if new is not None else old
        key = self._owner_key(obj) if obj is not None else None
        if key is not None:
            self.queue.add(key)

    def _node_changed(self, old: dict | None, new: dict | None) -> None:
        for ds in self.daemonsets.list():
            if old is None or new is None or should_run(old, ds) != should_run(new, ds):
                self.enqueue(ds)

    async def reconcile(self, key: str) -> float | None:
        ds = self.daemonsets.get(key)
        if ds is None:
            self.creations.forget(key)
            self.deletions.forget(key)
            return None
        ds = {**ds, "apiVersion": API_VERSION, "kind": KIND}
        namespace, _ = split_key(key)
        try:
            selector = label_selector_from_dict((ds.get("spec") or {}).get("selector"))
        except ValueError as err:
            await self.events.record(ds, "Warning", "SelectingAll", str(err))
            return None
        if selector.empty:
            await self.events.record(ds, "Warning", "SelectingAll",
                                     "This daemon set is selecting all pods. A non-empty "
                                     "selector is required.")
            return None
        if meta(ds).get("deletionTimestamp"):
            return None
        pods = await claim(
            self.client, api_version="v1", plural="pods", owner=ds,
            owner_ref=controller_ref(ds, api_version=API_VERSION, kind=KIND),
            claims=classify_claims(ds, selector, self.pods.by_index("namespace",
                                                                     namespace or "")),
            can_adopt=lambda: fresh_owner_check(self.client, api_version=API_VERSION,
                                                plural="daemonsets", owner=ds))
        node_pods: dict[str, list[dict[str, Any]]] = {}
        for pod in pods:
            node_pods.setdefault(target_node(pod) or "", []).append(pod)
        nodes = sorted(self.nodes.list(), key=lambda n: meta(n)["name"])
        revisions = list(self.revisions.by_index("owner", meta(ds)["uid"]))
        hash_ = await self._current_hash(ds, revisions)
        now = datetime.now(UTC)
        satisfied = self.creations.satisfied(key) and self.deletions.satisfied(key)
        if satisfied:
            work = plan_nodes(ds, nodes, node_pods, hash_, now)
            await self._sync_nodes(key, ds, work, hash_)
            strategy = ((ds.get("spec") or {}).get("updateStrategy") or {}).get(
                "type", "RollingUpdate")
            if strategy == "RollingUpdate" and self.creations.satisfied(
                    key) and self.deletions.satisfied(key):
                await self._sync_nodes(key, ds, plan_rolling_update(ds, nodes, node_pods,
                                                                    hash_, now), hash_)
        status = daemon_status(ds, nodes, node_pods, hash_, now)
        await self._write_status(ds, status, observed=satisfied)
        live_hashes = live_revision_names(pods, HASH_LABEL) | {hash_}
        live = {meta(r)["name"] for r in revisions
                if (meta(r).get("labels") or {}).get(HASH_LABEL) in live_hashes}
        limit = int((ds.get("spec") or {}).get("revisionHistoryLimit", 10))
        await delete_old_revisions(self.client, revisions, live, limit)
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        if min_ready and status["numberReady"] != status["numberAvailable"]:
            return float(min_ready)
        return None

    async def _current_hash(self, ds: dict[str, Any], revisions: list[dict[str, Any]]) -> str:
        """The hash of the revision holding the current template, recording one (or
        renumbering an old one, on a rollback) as needed."""
        template = (ds.get("spec") or {}).get("template") or {}
        data = template_patch(template)
        revisions = sort_revisions(revisions)
        following = int(revisions[-1].get("revision") or 0) + 1 if revisions else 1
        matching = [r for r in revisions if r.get("data") == data]
        if matching:
            current = matching[-1]
            for duplicate in matching[:-1]:
                await self._delete_revision(duplicate)
            if current is not revisions[-1]:
                current = await self.client.patch(
                    API_VERSION, "controllerrevisions", meta(current)["name"],
                    {"revision": following}, meta(ds).get("namespace"))
            hash_ = (meta(current).get("labels") or {}).get(HASH_LABEL)
            if hash_:
                return hash_
            return meta(current)["name"].rsplit("-", 1)[-1]
        collisions = int((ds.get("status") or {}).get("collisionCount") or 0)
        hash_ = daemonset_hash(template, collisions)
        revision = {
            "apiVersion": API_VERSION, "kind": "ControllerRevision",
            "metadata": {
                "name": f"{meta(ds)['name']}-{hash_}", "namespace": meta(ds).get("namespace"),
                "labels": {**((template.get("metadata") or {}).get("labels") or {}),
                           HASH_LABEL: hash_},
                "ownerReferences": [controller_ref(ds, api_version=API_VERSION, kind=KIND)]},
            "data": data, "revision": following}
        if meta(ds).get("annotations"):
            revision["metadata"]["annotations"] = dict(meta(ds)["annotations"])
        try:
            await self.client.create(API_VERSION, "controllerrevisions", revision)
        except ApiError as err:
            if not err.conflict:
                raise
            existing = await self.client.get(API_VERSION, "controllerrevisions",
                                             revision["metadata"]["name"],
                                             meta(ds).get("namespace"))
            if existing.get("data") != data:
                # A hash collision with another template: count it and retry with a new name.
                updated = copy.deepcopy(ds)
                updated.setdefault("status", {})["collisionCount"] = collisions + 1
                await self.client.replace(API_VERSION, "daemonsets", updated,
                                          subresource="status")
                raise
        return hash_

    async def _delete_revision(self, revision: Mapping[str, Any]) -> None:
        try:
            await self.client.delete(API_VERSION, "controllerrevisions", meta(revision)["name"],
                                     meta(revision).get("namespace"))
        except ApiError as err:
            if not err.not_found:
                raise

    async def _sync_nodes(self, key: str, ds: dict[str, Any], work: NodeWork,
                          hash_: str) -> None:
        creates = work.create_on[:BURST_REPLICAS]
        deletes = list(dict.fromkeys(work.delete))[:BURST_REPLICAS]
        namespace = meta(ds).get("namespace")
        for name in work.failed:
            await self.events.record(ds, "Warning", "FailedDaemonPod",
                                     f"Found failed daemon pod {namespace}/{name}, will try "
                                     f"to kill it")
        if creates:
            self.creations.expect_creations(key, len(creates))
        if deletes:
            self.deletions.expect_deletions(key, (f"{namespace}/{n}" for n in deletes))
        template = self._pod_template(ds, hash_)
        pending = list(creates)

        async def create_one() -> None:
            node_name = pending.pop(0)
            pod = copy.deepcopy(template)
            pin_to_node(pod["spec"], node_name)
            try:
                created = await self.client.create("v1", "pods", pod, namespace)
            except ApiError as err:
                self.creations.creation_observed(key)
                await self.events.record(ds, "Warning", "FailedCreate",
                                         f"Error creating: {error_message(err)}")
                raise
            await self.events.record(ds, "Normal", "SuccessfulCreate",
                                     f"Created pod: {meta(created)['name']}")

        _, errors = await slow_start_batch(len(creates), create_one)
        for _ in pending:
            self.creations.creation_observed(key)

        async def delete_one(name: str) -> None:
            try:
                await self.client.delete("v1", "pods", name, namespace)
            except ApiError as err:
                self.deletions.deletion_observed(key, f"{namespace}/{name}")
                if not err.not_found:
                    raise
                return
            await self.events.record(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {name}")

        results = await asyncio.gather(*(delete_one(n) for n in deletes), return_exceptions=True)
        errors += [r for r in results if isinstance(r, Exception)]
        if errors:
            raise errors[0]

    def _pod_template(self, ds: Mapping[str, Any], hash_: str) -> dict[str, Any]:
        """The template every new daemon pod starts from (util.CreatePodTemplate)."""
        template = copy.deepcopy((ds.get("spec") or {}).get("template") or {})
        template["spec"] = daemon_pod_spec(template.get("spec") or {})
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        generation = (meta(ds).get("annotations") or {}).get(GENERATION_ANNOTATION)
        if generation is not None:
            labels[GENERATION_LABEL] = generation
        labels[HASH_LABEL] = hash_
        return pod_from_template(template, ds,
                                 owner_ref=controller_ref(ds, api_version=API_VERSION,
                                                          kind=KIND))

    async def _write_status(self, ds: dict[str, Any], counts: dict[str, int], *,
                            observed: bool) -> None:
        old = ds.get("status") or {}
        status = {**old, **counts}
        if observed:
            status["observedGeneration"] = meta(ds).get("generation") or 0
        if all((old.get(k) or 0) == (v or 0) for k, v in status.items()):
            return
        updated = copy.deepcopy(ds)
        updated["status"] = omit_zero(status, keep=(
            "currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled",
            "numberReady"))
        await self.client.replace(API_VERSION, "daemonsets", updated, subresource="status")


CONTROLLER = DaemonSetController
