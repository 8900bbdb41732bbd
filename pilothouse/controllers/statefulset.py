"""The StatefulSet controller: pods with stable identities and their own storage.

A StatefulSet of N replicas owns pods `<set>-0` .. `<set>-(N-1)`, each with hostname
= its name and subdomain = `spec.serviceName` (so the headless Service gives it a DNS
name), the labels `statefulset.kubernetes.io/pod-name` and `apps.kubernetes.io/pod-index`,
and one PersistentVolumeClaim per `volumeClaimTemplates` entry, `<claim>-<set>-<i>`,
created before the pod and kept (or owned for deletion) as
`persistentVolumeClaimRetentionPolicy` says.

`OrderedReady` (the default) creates one pod at a time, each after its predecessors are
Running and Ready, and removes pods from the highest ordinal down; `Parallel` does not
wait. Each template lives in an apps/v1 ControllerRevision (`<set>-<hash>`); pods carry
the revision they were made from in `controller-revision-hash`. `RollingUpdate` replaces
pods from the highest ordinal down to `partition`, one at a time, each after the last is
ready again; `OnDelete` leaves that to the user. Status counts replicas, ready, available,
current and updated pods and names the current and update revisions, which is what
`kubectl rollout status sts/x` reads.

The control flow follows upstream's stateful_set_control.go: `plan_sync` is its pure
half (what to create, fix and delete, in order, and the status that results), the
controller executes it. The controller-history helpers at the bottom (revision data,
hashing, names) are shared with the DaemonSet controller.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from ..client import (
    ApiError,
    Client,
    Controller,
    claim,
    classify_claims,
    controller_of,
    controller_ref,
    fresh_owner_check,
    split_key,
)
from ..machinery.selectors import label_selector_from_dict
from ._workloads import is_pod_available, is_pod_ready, meta, omit_zero, pod_from_template

API_VERSION = "apps/v1"
KIND = "StatefulSet"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
REVISION_LABEL = "controller-revision-hash"
_ORDINAL = re.compile(r"^(.*)-([0-9]+)$")


# -- identity and storage ---------------------------------------------------------------


def ordinal_of(pod: Mapping[str, Any]) -> tuple[str, int]:
    """(parent name, ordinal) from a pod's name; ordinal -1 if it has none."""
    match = _ORDINAL.match(meta(pod).get("name") or "")
    if match is None:
        return "", -1
    return match.group(1), int(match.group(2))


def start_ordinal(sts: Mapping[str, Any]) -> int:
    return int(((sts.get("spec") or {}).get("ordinals") or {}).get("start") or 0)


def replica_count(sts: Mapping[str, Any]) -> int:
    replicas = (sts.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def in_ordinal_range(sts: Mapping[str, Any], ordinal: int) -> bool:
    start = start_ordinal(sts)
    return start <= ordinal < start + replica_count(sts)


def claim_name(template: Mapping[str, Any], sts: Mapping[str, Any], ordinal: int) -> str:
    return f"{meta(template)['name']}-{meta(sts)['name']}-{ordinal}"


def retention_policy(sts: Mapping[str, Any]) -> tuple[str, str]:
    """(whenDeleted, whenScaled)."""
    policy = (sts.get("spec") or {}).get("persistentVolumeClaimRetentionPolicy") or {}
    return policy.get("whenDeleted") or "Retain", policy.get("whenScaled") or "Retain"


def claims_for(sts: Mapping[str, Any], ordinal: int) -> dict[str, dict[str, Any]]:
    """template name -> the claim the pod of `ordinal` uses."""
    spec = sts.get("spec") or {}
    match_labels = (spec.get("selector") or {}).get("matchLabels") or {}
    claims = {}
    for template in spec.get("volumeClaimTemplates") or []:
        claim_obj = {k: copy.deepcopy(v) for k, v in template.items() if k != "status"}
        claim_meta = dict(claim_obj.get("metadata") or {})
        claim_meta["name"] = claim_name(template, sts, ordinal)
        claim_meta["namespace"] = meta(sts).get("namespace")
        claim_meta["labels"] = {**(claim_meta.get("labels") or {}), **match_labels}
        claim_obj.update(apiVersion="v1", kind="PersistentVolumeClaim", metadata=claim_meta)
        claims[meta(template)["name"]] = claim_obj
    return claims


def claim_owner_refs(claim_obj: Mapping[str, Any], sts: Mapping[str, Any],
                     pod: Mapping[str, Any] | None, ordinal: int) -> list[dict[str, Any]]:
    """The claim's ownerReferences under the retention policy: the set owns the claims of
    its live ordinals when whenDeleted=Delete; a scaled-down pod owns its claims when
    whenScaled=Delete (so they go with it)."""
    set_uid = meta(sts).get("uid")
    pod_uid = meta(pod).get("uid") if pod else None
    refs = [r for r in meta(claim_obj).get("ownerReferences") or []
            if r.get("uid") not in (set_uid, pod_uid)]
    when_deleted, when_scaled = retention_policy(sts)
    scaled_down = not in_ordinal_range(sts, ordinal)
    if when_scaled == "Delete" and scaled_down and pod_uid:
        refs.append(controller_ref(pod, api_version="v1", kind="Pod"))
    elif when_deleted == "Delete" and not scaled_down:
        refs.append(controller_ref(sts, api_version=API_VERSION, kind=KIND))
    return refs


def new_pod(sts: Mapping[str, Any], template: Mapping[str, Any], ordinal: int,
            revision: str) -> dict[str, Any]:
    """The pod of `ordinal`, made from `template`, at `revision`."""
    pod = pod_from_template(template, sts,
                            owner_ref=controller_ref(sts, api_version=API_VERSION, kind=KIND))
    name = f"{meta(sts)['name']}-{ordinal}"
    pod["metadata"]["name"] = name
    pod["spec"]["hostname"] = name
    service_name = (sts.get("spec") or {}).get("serviceName")
    if service_name:
        pod["spec"]["subdomain"] = service_name
    fix_identity(sts, pod, ordinal)
    fix_storage(sts, pod, ordinal)
    pod["metadata"]["labels"][REVISION_LABEL] = revision
    return pod


def fix_identity(sts: Mapping[str, Any], pod: dict[str, Any], ordinal: int) -> None:
    labels = pod["metadata"].setdefault("labels", {})
    labels[POD_NAME_LABEL] = pod["metadata"]["name"]
    labels[POD_INDEX_LABEL] = str(ordinal)


def fix_storage(sts: Mapping[str, Any], pod: dict[str, Any], ordinal: int) -> None:
    claims = claims_for(sts, ordinal)
    volumes = [{"name": name, "persistentVolumeClaim": {"claimName": meta(c)["name"]}}
               for name, c in claims.items()]
    volumes += [v for v in (pod.get("spec") or {}).get("volumes") or []
                if v.get("name") not in claims]
    if volumes:
        pod["spec"]["volumes"] = volumes


def identity_matches(sts: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    parent, ordinal = ordinal_of(pod)
    labels = meta(pod).get("labels") or {}
    return (ordinal >= 0 and parent == meta(sts)["name"]
            and meta(pod).get("namespace") == meta(sts).get("namespace")
            and labels.get(POD_NAME_LABEL) == meta(pod)["name"]
            and labels.get(POD_INDEX_LABEL) == str(ordinal))


def storage_matches(sts: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    _, ordinal = ordinal_of(pod)
    volumes = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or []}
    for name, claim_obj in claims_for(sts, ordinal).items():
        source = (volumes.get(name) or {}).get("persistentVolumeClaim") or {}
        if source.get("claimName") != meta(claim_obj)["name"]:
            return False
    return True


# -- pod states -------------------------------------------------------------------------


def _phase(pod: Mapping[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase") or ""


def is_created(pod: Mapping[str, Any]) -> bool:
    return _phase(pod) != ""


def is_terminating(pod: Mapping[str, Any]) -> bool:
    return bool(meta(pod).get("deletionTimestamp"))


def running_and_ready(pod: Mapping[str, Any]) -> bool:
    return _phase(pod) == "Running" and is_pod_ready(pod)


def running_and_available(pod: Mapping[str, Any], min_ready: int, now: datetime) -> bool:
    return running_and_ready(pod) and is_pod_available(pod, min_ready, now)


def is_unavailable(pod: Mapping[str, Any], min_ready: int, now: datetime) -> bool:
    return is_terminating(pod) or not running_and_available(pod, min_ready, now)


# -- the plan ---------------------------------------------------------------------------


@dataclass
class Action:
    """One write: `create` (claims, then the pod), `delete`, `update` (identity or storage
    fixed), `claims` (create a pending pod's missing claims) or `claim-owners` (apply the
    retention policy to a scaled-down pod's claims)."""

    verb: str
    pod: dict[str, Any]
    reason: str = ""


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)


def replica_status(pods: Iterable[Mapping[str, Any]], min_ready: int, now: datetime,
                   current_revision: str, update_revision: str) -> dict[str, int]:
    counts = dict(replicas=0, readyReplicas=0, availableReplicas=0, currentReplicas=0,
                  updatedReplicas=0)
    for pod in pods:
        created = is_created(pod)
        counts["replicas"] += created
        if running_and_ready(pod):
            counts["readyReplicas"] += 1
            counts["availableReplicas"] += running_and_available(pod, min_ready, now)
        if created and not is_terminating(pod):
            revision = (meta(pod).get("labels") or {}).get(REVISION_LABEL)
            counts["currentReplicas"] += revision == current_revision
            counts["updatedReplicas"] += revision == update_revision
    return counts


def plan_sync(sts: Mapping[str, Any], pods: Iterable[dict[str, Any]], *,
              current_template: Mapping[str, Any], update_template: Mapping[str, Any],
              current_revision: str, update_revision: str, now: datetime) -> Plan:
    """Upstream's updateStatefulSet as a plan: the writes, in order, and the status."""
    spec = sts.get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    monotonic = spec.get("podManagementPolicy") != "Parallel"
    strategy = spec.get("updateStrategy") or {}
    rolling = strategy.get("rollingUpdate")
    start, count = start_ordinal(sts), replica_count(sts)
    replicas: list[dict[str, Any] | None] = [None] * count
    condemned: list[dict[str, Any]] = []
    for pod in pods:
        _, ordinal = ordinal_of(pod)
        if in_ordinal_range(sts, ordinal):
            replicas[ordinal - start] = pod
        elif ordinal >= 0:
            condemned.append(pod)
    valid = [p for p in replicas if p is not None] + condemned
    plan = Plan(status=replica_status(valid, min_ready, now, current_revision,
                                      update_revision))
    plan.status.update(observedGeneration=meta(sts).get("generation") or 0,
                       currentRevision=current_revision, updateRevision=update_revision)
    rolling_update = strategy.get("type", "RollingUpdate") == "RollingUpdate"
    # Missing pods below this ordinal are made at the current revision, the rest at the
    # update revision (newVersionedStatefulSetPod).
    if not rolling_update:
        current_below = start
    elif rolling is None:
        current_below = start + int((sts.get("status") or {}).get("currentReplicas") or 0)
    else:
        current_below = start + int(rolling.get("partition") or 0)
    for index in range(count):
        if replicas[index] is None:
            ordinal = start + index
            current = ordinal < current_below
            replicas[index] = new_pod(sts, current_template if current else update_template,
                                      ordinal, current_revision if current else update_revision)
    members = [p for p in replicas if p is not None]
    condemned.sort(key=lambda p: -ordinal_of(p)[1])
    first_unavailable = next(
        (p for p in [*members, *reversed(condemned)] if is_unavailable(p, min_ready, now)),
        None)
    if meta(sts).get("deletionTimestamp"):
        return plan

    def exits(blocked: bool) -> bool:
        return blocked and monotonic

    for pod in members:
        if _phase(pod) in ("Failed", "Succeeded"):
            if not is_terminating(pod):
                plan.actions.append(Action("delete", pod, f"pod {_phase(pod).lower()}"))
            if monotonic:
                return plan
            continue
        if not is_created(pod):
            plan.actions.append(Action("create", pod))
            if monotonic:
                return plan
            continue
        if _phase(pod) == "Pending":
            plan.actions.append(Action("claims", pod))
        if exits(is_terminating(pod)) or exits(not running_and_ready(pod)) or exits(
                not running_and_available(pod, min_ready, now)):
            return plan
        if not identity_matches(sts, pod) or not storage_matches(sts, pod):
            fixed = copy.deepcopy(pod)
            _, ordinal = ordinal_of(pod)
            fix_identity(sts, fixed, ordinal)
            fix_storage(sts, fixed, ordinal)
            plan.actions.append(Action("update", fixed))
    for pod in condemned:
        plan.actions.append(Action("claim-owners", pod))
    for pod in condemned:
        if is_terminating(pod):
            if monotonic:
                return plan
            continue
        is_first = first_unavailable is not None and meta(pod)["name"] == meta(
            first_unavailable)["name"]
        if monotonic and not is_first and not running_and_available(pod, min_ready, now):
            return plan
        plan.actions.append(Action("delete", pod, "scale down"))
        if monotonic:
            return plan
    if not rolling_update:
        return plan
    update_min = int((rolling or {}).get("partition") or 0)
    for target in range(count - 1, update_min - 1, -1):
        pod = members[target]
        revision = (meta(pod).get("labels") or {}).get(REVISION_LABEL)
        if revision != update_revision and not is_terminating(pod):
            plan.actions.append(Action("delete", pod, "update"))
            plan.status["currentReplicas"] -= 1
            return plan
        if is_unavailable(pod, min_ready, now):
            return plan
    return plan


def complete_rolling_update(sts: Mapping[str, Any], status: dict[str, Any]) -> None:
    strategy = (sts.get("spec") or {}).get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") == "RollingUpdate" and status[
            "updatedReplicas"] == status["replicas"] and status["readyReplicas"] == status[
            "replicas"]:
        status["currentReplicas"] = status["updatedReplicas"]
        status["currentRevision"] = status["updateRevision"]


_STATUS_FIELDS = ("observedGeneration", "replicas", "readyReplicas", "availableReplicas",
                  "currentReplicas", "updatedReplicas", "currentRevision", "updateRevision",
                  "collisionCount")


def status_changed(sts: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    old = sts.get("status") or {}
    return any((old.get(f) or 0) != (status.get(f) or 0) for f in _STATUS_FIELDS)


# -- controller history (shared with the DaemonSet controller) --------------------------

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def safe_encode(text: str) -> str:
    """rand.SafeEncodeString: each character mapped onto an alphabet with no vowels."""
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in text.encode())


def fnv32(data: bytes, *, variant_a: bool = False) -> int:
    """FNV-1 (or FNV-1a) 32-bit, as Go's hash/fnv."""
    value = 0x811C9DC5
    for byte in data:
        if variant_a:
            value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
        else:
            value = ((value * 0x01000193) & 0xFFFFFFFF) ^ byte
    return value


def canonical_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def template_patch(template: Mapping[str, Any]) -> dict[str, Any]:
    """A revision's data: a strategic merge patch that restores the pod template."""
    return {"spec": {"template": {**copy.deepcopy(dict(template)), "$patch": "replace"}}}


def template_of(revision: Mapping[str, Any]) -> dict[str, Any]:
    template = dict(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
    template.pop("$patch", None)
    return template


def sort_revisions(revisions: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(revisions, key=lambda r: (int(r.get("revision") or 0),
                                            meta(r).get("creationTimestamp") or "",
                                            meta(r).get("name") or ""))


def live_revision_names(pods: Iterable[Mapping[str, Any]], label: str) -> set[str]:
    return {(meta(p).get("labels") or {}).get(label) or "" for p in pods}


async def delete_old_revisions(client: Client, revisions: list[dict[str, Any]],
                               live: set[str], limit: int) -> None:
    """Delete the oldest revisions no pod or status uses, keeping `limit` of them."""
    dead = [r for r in sort_revisions(revisions) if meta(r)["name"] not in live]
    for revision in dead[:max(len(dead) - limit, 0)]:
        try:
            await client.delete(API_VERSION, "controllerrevisions", meta(revision)["name"],
                                meta(revision).get("namespace"))
        except ApiError as err:
            if not err.not_found:
                raise


def statefulset_revision(sts: Mapping[str, Any], number: int, collision_count: int
                         ) -> dict[str, Any]:
    """history.NewControllerRevision for a StatefulSet: named by the hash of its data."""
    template = (sts.get("spec") or {}).get("template") or {}
    data = template_patch(template)
    digest = safe_encode(str(fnv32(canonical_json(data) + str(collision_count).encode())))
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels[REVISION_LABEL] = digest
    revision_meta: dict[str, Any] = {
        "name": f"{meta(sts)['name'][:223]}-{digest}", "namespace": meta(sts).get("namespace"),
        "labels": labels,
        "ownerReferences": [controller_ref(sts, api_version=API_VERSION, kind=KIND)]}
    if meta(sts).get("annotations"):
        revision_meta["annotations"] = dict(meta(sts)["annotations"])
    return {"apiVersion": API_VERSION, "kind": "ControllerRevision", "metadata": revision_meta,
            "data": data, "revision": number}


# -- the controller ---------------------------------------------------------------------


def _parent_name(pod: Mapping[str, Any]) -> str:
    return ordinal_of(pod)[0]


class StatefulSetController(Controller):
    name = "statefulset-controller"
    workers = 4

    def setup(self) -> None:
        informers = self.context.informers
        self.sets = informers.informer(API_VERSION, "statefulsets")
        self.pods = informers.informer("v1", "pods")
        self.revisions = informers.informer(API_VERSION, "controllerrevisions")
        self.claims = informers.informer("v1", "persistentvolumeclaims")
        self.sets.add_handler(self.enqueue_handler)
        self.pods.add_handler(self._pod_changed)
        self.revisions.add_handler(self._owned_changed)

    def _owned_changed(self, old: dict | None, new: dict | None) -> None:
        obj = new if new is not None else old
        ref = controller_of(obj) if obj is not None else None
        if ref is not None and ref.get("kind") == KIND:
            self.queue.add(f"{meta(obj).get('namespace')}/{ref.get('name')}")

    def _pod_changed(self, old: dict | None, new: dict | None) -> None:
        for pod in (old, new):
            if pod is None:
                continue
            ref = controller_of(pod)
            if ref is not None:
                if ref.get("kind") == KIND:
                    self.queue.add(f"{meta(pod).get('namespace')}/{ref.get('name')}")
                continue
            # An orphan: the set that would adopt it.
            key = f"{meta(pod).get('namespace')}/{_parent_name(pod)}"
            if self.sets.get(key) is not None:
                self.queue.add(key)

    async def reconcile(self, key: str) -> float | None:
        sts = self.sets.get(key)
        if sts is None:
            return None
        sts = {**sts, "apiVersion": API_VERSION, "kind": KIND}
        namespace, name = split_key(key)
        try:
            selector = label_selector_from_dict((sts.get("spec") or {}).get("selector"))
        except ValueError as err:
            await self.events.record(sts, "Warning", "InvalidSelector", str(err))
            return None
        if selector.empty:
            return None
        candidates = [p for p in self.pods.by_index("namespace", namespace or "")
                      if _parent_name(p) == name]
        pods = await claim(
            self.client, api_version="v1", plural="pods", owner=sts,
            owner_ref=controller_ref(sts, api_version=API_VERSION, kind=KIND),
            claims=classify_claims(sts, selector, candidates),
            can_adopt=lambda: fresh_owner_check(self.client, api_version=API_VERSION,
                                                plural="statefulsets", owner=sts))
        revisions = list(self.revisions.by_index("owner", meta(sts)["uid"]))
        current, update, collisions = await self._revisions(sts, revisions)
        now = datetime.now(UTC)
        plan = plan_sync(sts, pods, current_template=template_of(current),
                         update_template=template_of(update),
                         current_revision=meta(current)["name"],
                         update_revision=meta(update)["name"], now=now)
        plan.status["collisionCount"] = collisions
        try:
            for action in plan.actions:
                await self._execute(sts, action)
        finally:
            await self._write_status(sts, plan.status)
        live = live_revision_names(pods, REVISION_LABEL) | {meta(current)["name"],
                                                            meta(update)["name"]}
        limit = int((sts.get("spec") or {}).get("revisionHistoryLimit", 10))
        await delete_old_revisions(self.client, revisions, live, limit)
        min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
        if min_ready and plan.status["readyReplicas"] != plan.status["availableReplicas"]:
            return float(min_ready)
        return None

    async def _revisions(self, sts: dict[str, Any], revisions: list[dict[str, Any]]
                         ) -> tuple[dict[str, Any], dict[str, Any], int]:
        """(current, update, collision count), creating or renumbering the update revision."""
        revisions = sort_revisions(revisions)
        collisions = int((sts.get("status") or {}).get("collisionCount") or 0)
        following = int(revisions[-1].get("revision") or 0) + 1 if revisions else 1
        wanted = statefulset_revision(sts, following, collisions)
        equal = [r for r in revisions if r.get("data") == wanted["data"]]
        if equal and equal[-1] is revisions[-1]:
            update = revisions[-1]
        elif equal:
            update = await self.client.patch(
                API_VERSION, "controllerrevisions", meta(equal[-1])["name"],
                {"revision": following}, meta(sts).get("namespace"))
        else:
            update, collisions = await self._create_revision(sts, following, collisions)
        status_current = (sts.get("status") or {}).get("currentRevision")
        current = next((r for r in revisions if meta(r)["name"] == status_current), update)
        return current, update, collisions

    async def _create_revision(self, sts: dict[str, Any], number: int, collisions: int
                               ) -> tuple[dict[str, Any], int]:
        while True:
            revision = statefulset_revision(sts, number, collisions)
            try:
                created = await self.client.create(API_VERSION, "controllerrevisions", revision)
                return created, collisions
            except ApiError as err:
                if not err.conflict:
                    raise
            existing = await self.client.get(API_VERSION, "controllerrevisions",
                                             meta(revision)["name"], meta(sts).get("namespace"))
            if existing.get("data") == revision["data"]:
                return existing, collisions
            collisions += 1

    async def _execute(self, sts: dict[str, Any], action: Action) -> None:
        pod = action.pod
        namespace = meta(sts).get("namespace")
        _, ordinal = ordinal_of(pod)
        if action.verb == "create":
            await self._ensure_claims(sts, pod, ordinal)
            try:
                await self.client.create("v1", "pods", pod, namespace)
            except ApiError as err:
                if not err.conflict:
                    await self.events.record(sts, "Warning", "FailedCreate",
                                             f"create Pod {meta(pod)['name']} in StatefulSet "
                                             f"{meta(sts)['name']} failed error: {err}")
                raise
            await self.events.record(sts, "Normal", "SuccessfulCreate",
                                     f"create Pod {meta(pod)['name']} in StatefulSet "
                                     f"{meta(sts)['name']} successful")
        elif action.verb == "claims":
            await self._ensure_claims(sts, pod, ordinal)
        elif action.verb == "update":
            await self._ensure_claims(sts, pod, ordinal)
            await self.client.replace("v1", "pods", pod)
        elif action.verb == "claim-owners":
            await self._sync_claim_owners(sts, pod, ordinal)
        elif action.verb == "delete":
            try:
                await self.client.delete("v1", "pods", meta(pod)["name"], namespace,
                                         preconditions={"uid": meta(pod)["uid"]})
            except ApiError as err:
                if err.not_found:
                    return
                raise
            await self.events.record(sts, "Normal", "SuccessfulDelete",
                                     f"delete Pod {meta(pod)['name']} in StatefulSet "
                                     f"{meta(sts)['name']} successful")

    async def _ensure_claims(self, sts: dict[str, Any], pod: Mapping[str, Any],
                             ordinal: int) -> None:
        """Create the pod's claims that do not exist yet (a claim being deleted is an error:
        the pod must wait for it to go)."""
        namespace = meta(sts).get("namespace")
        for claim_obj in claims_for(sts, ordinal).values():
            existing = self.claims.get(f"{namespace}/{meta(claim_obj)['name']}")
            if existing is not None:
                if meta(existing).get("deletionTimestamp"):
                    raise RuntimeError(f"the PersistentVolumeClaim {meta(claim_obj)['name']} "
                                       f"is being deleted; waiting for it to go")
                continue
            refs = claim_owner_refs(claim_obj, sts, None, ordinal)
            if refs:
                claim_obj["metadata"]["ownerReferences"] = refs
            try:
                await self.client.create("v1", "persistentvolumeclaims", claim_obj, namespace)
            except ApiError as err:
                if not err.conflict:
                    await self.events.record(
                        sts, "Warning", "FailedCreate",
                        f"create Claim {meta(claim_obj)['name']} for Pod {meta(pod)['name']} "
                        f"in StatefulSet {meta(sts)['name']} failed error: {err}")
                    raise
                continue
            await self.events.record(
                sts, "Normal", "SuccessfulCreate",
                f"create Claim {meta(claim_obj)['name']} Pod {meta(pod)['name']} in "
                f"StatefulSet {meta(sts)['name']} success")

    async def _sync_claim_owners(self, sts: dict[str, Any], pod: Mapping[str, Any],
                                 ordinal: int) -> None:
        namespace = meta(sts).get("namespace")
        for claim_obj in claims_for(sts, ordinal).values():
            existing = self.claims.get(f"{namespace}/{meta(claim_obj)['name']}")
            if existing is None:
                continue
            refs = claim_owner_refs(existing, sts, pod, ordinal)
            if refs == (meta(existing).get("ownerReferences") or []):
                continue
            updated = copy.deepcopy(existing)
            updated["metadata"]["ownerReferences"] = refs
            await self.client.replace("v1", "persistentvolumeclaims", updated)

    async def _write_status(self, sts: dict[str, Any], status: dict[str, Any]) -> None:
        complete_rolling_update(sts, status)
        if not status_changed(sts, status):
            return
        updated = copy.deepcopy(sts)
        updated["status"] = omit_zero(status, keep=("replicas", "availableReplicas"))
        await self.client.replace(API_VERSION, "statefulsets", updated, subresource="status")


CONTROLLER = StatefulSetController
