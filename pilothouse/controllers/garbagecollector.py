"""The garbage collector: deletes objects whose owners are gone, and runs cascading deletion.

As upstream's garbage collector it has two halves.

- The graph builder (`DependencyGraph`) watches every resource that supports list, watch
  and delete -- read from discovery, custom resources included, refreshed when CRDs change
  -- and keeps, per object uid, its identity, ownerReferences and deletion state, plus
  the reverse edges (owner uid -> dependent uids). Only metadata is cached: the server has
  no PartialObjectMetadata lists, so each monitor trims objects to their metadata on
  receipt. Every change to the graph says which uids deserve a look: a dependent whose
  owner is not (or not validly) in the graph, the dependents of an owner that went away or
  began a foreground deletion, an owner whose blocking dependents changed.
- The workers act, always on live state: `attempt_delete` re-reads the object and each of
  its owners with a GET before deciding (`decide`), because the graph may lag. An object
  none of whose owners exist (absent, or present with another uid) is deleted in the
  background; one with a live owner keeps living, minus the references to absent owners.
  An owner being deleted in the foreground (`foregroundDeletion` finalizer) has its
  dependents deleted and loses the finalizer once no dependent with blockOwnerDeletion is
  left. An owner with the `orphan` finalizer has its dependents' references to it removed,
  then the finalizer.

Owner references carry no namespace: a namespaced owner is looked for in the dependent's
namespace, a cluster-scoped owner cluster-wide, and a cluster-scoped object naming a
namespaced owner is invalid (reported as an event, never acted on).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..client import ApiError, Client, Controller, Informer
from ._discovery import (
    CRD_API_VERSION,
    CRD_PLURAL,
    RETRY_SECONDS,
    ApiResource,
    DiscoverySnapshot,
    ResourceDiscovery,
)

log = logging.getLogger(__name__)

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
#: Resources never watched: events (under both groups) own nothing and are owned by none.
IGNORED_RESOURCES = frozenset({("", "events"), ("events.k8s.io", "events")})
#: How long the first graph build waits for every monitor's initial list.
SYNC_TIMEOUT_SECONDS = 30.0
ABSENT_OWNER_CACHE_SIZE = 4096

#: A unit of work: ("delete", uid) to decide an object's fate, ("orphan", uid) to orphan
#: an owner's dependents.
Work = tuple[str, str]


@dataclass(frozen=True)
class Identity:
    """Which object a graph node is: enough to GET, PATCH or DELETE it."""

    api_version: str
    kind: str
    plural: str
    namespace: str
    name: str
    uid: str

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where} ({self.uid})"


@dataclass
class Node:
    identity: Identity
    owners: list[dict[str, Any]]
    finalizers: tuple[str, ...]
    being_deleted: bool

    @property
    def deleting_dependents(self) -> bool:
        return self.being_deleted and FOREGROUND in self.finalizers

    @property
    def orphaning(self) -> bool:
        return self.being_deleted and ORPHAN in self.finalizers

    def blocks(self, owner_uid: str) -> bool:
        """Whether this dependent holds back the foreground deletion of `owner_uid`."""
        return any(ref.get("uid") == owner_uid and ref.get("blockOwnerDeletion")
                   for ref in self.owners)


def node_for(obj: Mapping[str, Any], resource: ApiResource) -> Node:
    meta = obj.get("metadata") or {}
    return Node(
        identity=Identity(resource.api_version, resource.kind, resource.plural,
                          meta.get("namespace") or "", meta.get("name") or "",
                          meta.get("uid") or ""),
        owners=[dict(ref) for ref in meta.get("ownerReferences") or ()],
        finalizers=tuple(meta.get("finalizers") or ()),
        being_deleted=bool(meta.get("deletionTimestamp")))


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


class DependencyGraph:
    """Objects by uid and the owner -> dependents edges between them.

    `observe` and `forget` update the graph from watch events and return the work the
    change calls for; they never talk to the API.
    """

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self._dependents: dict[str, set[str]] = {}

    def dependents_of(self, uid: str) -> list[Node]:
        return [self.nodes[d] for d in self._dependents.get(uid, ()) if d in self.nodes]

    def blocking_dependents(self, uid: str) -> list[Node]:
        return [dep for dep in self.dependents_of(uid) if dep.blocks(uid)]

    def satisfied(self, dependent: Node, ref: Mapping[str, Any]) -> bool:
        """Whether the graph holds an object that `ref`, written on `dependent`, names.

        A namespaced owner must live in the dependent's namespace; a cluster-scoped
        dependent may have only cluster-scoped owners.
        """
        owner = self.nodes.get(ref.get("uid", ""))
        if owner is None:
            return False
        mine, theirs = owner.identity, dependent.identity
        return (mine.kind == ref.get("kind") and mine.name == ref.get("name")
                and _group(mine.api_version) == _group(ref.get("apiVersion", ""))
                and (not mine.namespace or mine.namespace == theirs.namespace))

    def observe(self, node: Node) -> list[Work]:
        """An object was added or changed."""
        uid = node.identity.uid
        old = self.nodes.get(uid)
        self.nodes[uid] = node
        work: list[Work] = []
        old_refs = {ref.get("uid"): ref for ref in (old.owners if old else ())}
        new_refs = {ref.get("uid"): ref for ref in node.owners}
        for owner_uid in old_refs.keys() - new_refs.keys():
            self._unlink(owner_uid, uid)
        for owner_uid, ref in new_refs.items():
            self._dependents.setdefault(owner_uid, set()).add(uid)
            if owner_uid not in old_refs and not self.satisfied(node, ref):
                work.append(("delete", uid))
        # A dependent that stopped blocking (reference removed or unblocked) may be what
        # a foreground deletion of its owner waits for.
        for owner_uid, ref in old_refs.items():
            still_blocks = bool(new_refs.get(owner_uid, {}).get("blockOwnerDeletion"))
            owner = self.nodes.get(owner_uid)
            if (ref.get("blockOwnerDeletion") and not still_blocks and owner is not None
                    and owner.deleting_dependents):
                work.append(("delete", owner_uid))
        if node.orphaning and not (old and old.orphaning):
            work.append(("orphan", uid))
        if node.deleting_dependents and not (old and old.deleting_dependents):
            work.extend(("delete", dep.identity.uid) for dep in self.dependents_of(uid))
            work.append(("delete", uid))
        return _unique(work)

    def forget(self, uid: str) -> list[Work]:
        """An object is gone: its dependents need a look, and so do owners waiting on it."""
        node = self.nodes.pop(uid, None)
        if node is None:
            return []
        work: list[Work] = [("delete", dep.identity.uid) for dep in self.dependents_of(uid)]
        for ref in node.owners:
            owner_uid = ref.get("uid", "")
            self._unlink(owner_uid, uid)
            owner = self.nodes.get(owner_uid)
            if owner is not None and owner.deleting_dependents:
                work.append(("delete", owner_uid))
        return _unique(work)

    def _unlink(self, owner_uid: str, dependent_uid: str) -> None:
        dependents = self._dependents.get(owner_uid)
        if dependents is not None:
            dependents.discard(dependent_uid)
            if not dependents:
                del self._dependents[owner_uid]


def _unique(work: Iterable[Work]) -> list[Work]:
    return list(dict.fromkeys(work))


# -- decisions ---------------------------------------------------------------------------


@dataclass
class OwnerStates:
    """An object's ownerReferences sorted by what a live read found behind each."""

    solid: list[dict[str, Any]] = field(default_factory=list)
    dangling: list[dict[str, Any]] = field(default_factory=list)
    waiting: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Decision:
    """What to do with an object: keep it (minus some references), or delete it."""

    remove_owner_uids: tuple[str, ...] = ()
    delete_policy: str | None = None
    unblock_first: bool = False


KEEP = Decision()


def decide(finalizers: Iterable[str], owners: OwnerStates, *, has_dependents: bool,
           dependent_deleting_dependents: bool) -> Decision:
    """The garbage collector's verdict on one object, given the live state of its owners.

    - Any owner alive and not deleting in the foreground: keep the object; drop the
      references to absent owners and to owners waiting for their dependents (else those
      owners would wait for it forever).
    - Else, if an owner waits for its dependents and this object has dependents of its
      own: delete it in the foreground too (after making its own references
      non-blocking when one of its dependents also waits, to break a cycle).
    - Else delete it, honouring an `orphan` or `foregroundDeletion` finalizer it already
      carries, in the background otherwise.
    """
    if owners.solid:
        stale = tuple(ref["uid"] for ref in owners.dangling + owners.waiting)
        return Decision(remove_owner_uids=stale) if stale else KEEP
    if owners.waiting and has_dependents:
        return Decision(delete_policy="Foreground", unblock_first=dependent_deleting_dependents)
    finalizers = set(finalizers)
    if ORPHAN in finalizers:
        return Decision(delete_policy="Orphan")
    if FOREGROUND in finalizers:
        return Decision(delete_policy="Foreground")
    return Decision(delete_policy="Background")


def deleting_dependents(obj: Mapping[str, Any]) -> bool:
    meta = obj.get("metadata") or {}
    return bool(meta.get("deletionTimestamp")) and FOREGROUND in (meta.get("finalizers") or ())


# -- the controller ----------------------------------------------------------------------


class InvalidOwnerReference(Exception):
    """A cluster-scoped object names a namespaced owner; retrying cannot help."""


class UnknownOwnerKind(Exception):
    """An ownerReference names a kind discovery does not serve (yet)."""


def metadata_only(obj: dict[str, Any]) -> dict[str, Any]:
    """What the graph keeps of an object: its metadata, all it ever reads."""
    return {"metadata": obj.get("metadata")}


@dataclass
class Monitor:
    resource: ApiResource
    informer: Informer
    task: asyncio.Task[None]


class GarbageCollector(Controller):
    name = "garbage-collector-controller"
    workers = 10

    def setup(self) -> None:
        self.graph = DependencyGraph()
        self.discovery = ResourceDiscovery(self.client)
        self.discovery.follow_crds(
            self.context.informers.informer(CRD_API_VERSION, CRD_PLURAL))
        self.monitors: dict[tuple[str, str], Monitor] = {}
        self._absent_owners: dict[tuple[str, str], None] = {}
        # One watch holds one connection for its whole life, so the monitors get their
        # own unbounded pool rather than starving the shared one of the manager.
        self.watch_client = Client(self.client.connection,
                                   user_agent="pilothouse-garbage-collector",
                                   field_manager=self.client.field_manager, max_connections=0)

    async def run(self) -> None:
        refresher: asyncio.Task[None] | None = None
        try:
            while True:
                try:
                    snapshot = await self.discovery.refresh()
                    break
                except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as err:
                    log.warning("garbage collector: discovery failed: %s; retrying", err)
                    await asyncio.sleep(RETRY_SECONDS)
            await self.sync_monitors(snapshot)
            await self._wait_for_monitors()
            refresher = asyncio.create_task(self.discovery.run(self.sync_monitors),
                                            name=f"{self.name}-discovery")
            await super().run()
        finally:
            if refresher is not None:
                refresher.cancel()
            for monitor in list(self.monitors.values()):
                await self._stop_monitor(monitor)
            await self.watch_client.close()

    # -- monitors ----------------------------------------------------------------------

    async def sync_monitors(self, snapshot: DiscoverySnapshot) -> None:
        """Watch every deletable resource; stop watching those no longer served (but keep
        the monitors of groups whose discovery failed this time)."""
        wanted = {(r.api_version, r.plural): r for r in snapshot.select("delete", "list", "watch")
                  if (r.group, r.plural) not in IGNORED_RESOURCES}
        failed = snapshot.failed_groups()
        for key, monitor in list(self.monitors.items()):
            if key not in wanted and monitor.resource.group not in failed:
                await self._stop_monitor(monitor)
        for key, resource in wanted.items():
            if key not in self.monitors:
                self._start_monitor(resource)

    def _start_monitor(self, resource: ApiResource) -> None:
        informer = Informer(self.watch_client, resource.api_version, resource.plural,
                            transform=metadata_only)
        informer.add_handler(lambda old, new: self._on_event(resource, old, new))
        task = asyncio.create_task(informer.run(), name=f"gc-monitor-{resource.plural}")
        self.monitors[(resource.api_version, resource.plural)] = Monitor(resource, informer, task)
        log.info("garbage collector: watching %s", resource.group_resource)

    async def _stop_monitor(self, monitor: Monitor) -> None:
        monitor.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor.task
        self.monitors.pop((monitor.resource.api_version, monitor.resource.plural), None)
        for obj in monitor.informer.list():
            self._enqueue(self.graph.forget((obj.get("metadata") or {}).get("uid", "")))

    async def _wait_for_monitors(self) -> None:
        waits = [m.informer.synced.wait() for m in self.monitors.values()]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), SYNC_TIMEOUT_SECONDS)
        except TimeoutError:
            missing = [m.resource.group_resource for m in self.monitors.values()
                       if not m.informer.synced.is_set()]
            log.warning("garbage collector: starting before these caches filled: %s",
                        ", ".join(missing))

    def _on_event(self, resource: ApiResource, old: dict | None, new: dict | None) -> None:
        if new is None:
            uid = ((old or {}).get("metadata") or {}).get("uid", "")
            self._enqueue(self.graph.forget(uid))
        else:
            self._enqueue(self.graph.observe(node_for(new, resource)))

    def _enqueue(self, work: Iterable[Work]) -> None:
        for action, uid in work:
            if uid:
                self.queue.add(f"{action}/{uid}")

    # -- workers -----------------------------------------------------------------------

    async def reconcile(self, key: str) -> float | None:
        action, _, uid = key.partition("/")
        node = self.graph.nodes.get(uid)
        if node is None:
            return None
        if action == "orphan":
            await self.orphan_dependents(node)
        else:
            await self.attempt_delete(node)
        return None

    async def attempt_delete(self, node: Node) -> None:
        """Decide, on live state, whether `node`'s object should go, and act."""
        if node.being_deleted and not node.deleting_dependents:
            return  # on its way out; its dependents are looked at once it is gone
        latest = await self._get_live(node.identity)
        if latest is None:
            return
        if deleting_dependents(latest):
            await self._process_deleting_dependents(node)
            return
        if (latest.get("metadata") or {}).get("deletionTimestamp"):
            return  # the graph had not seen its deletion yet
        refs = (latest.get("metadata") or {}).get("ownerReferences") or []
        if not refs:
            return
        try:
            owners = await self._classify(node.identity, refs)
        except InvalidOwnerReference as err:
            await self.events.record(latest, "Warning", "OwnerRefInvalidNamespace", str(err))
            return
        dependents = self.graph.dependents_of(node.identity.uid)
        decision = decide((latest.get("metadata") or {}).get("finalizers") or (), owners,
                          has_dependents=bool(dependents),
                          dependent_deleting_dependents=any(d.deleting_dependents
                                                            for d in dependents))
        if decision.remove_owner_uids:
            log.info("garbage collector: %s keeps a live owner; dropping references to %s",
                     node.identity, ", ".join(decision.remove_owner_uids))
            await self._remove_owner_refs(node.identity, set(decision.remove_owner_uids), latest)
        if decision.delete_policy is None:
            return
        if decision.unblock_first:
            await self._unblock_owner_refs(node.identity, latest)
        log.info("garbage collector: deleting %s (propagation %s)", node.identity,
                 decision.delete_policy)
        await self._delete(node.identity, decision.delete_policy)

    async def _process_deleting_dependents(self, node: Node) -> None:
        """A foreground deletion: finish it once no dependent blocks, else push them."""
        blocking = self.graph.blocking_dependents(node.identity.uid)
        if not blocking:
            log.info("garbage collector: %s has no blocking dependents left", node.identity)
            await self._remove_finalizer(node.identity, FOREGROUND)
            return
        self._enqueue(("delete", dep.identity.uid) for dep in blocking
                      if not dep.deleting_dependents)

    async def orphan_dependents(self, node: Node) -> None:
        """Remove `node` from its dependents' ownerReferences, then its `orphan` finalizer."""
        uid = node.identity.uid
        await asyncio.gather(*(self._remove_owner_refs(dep.identity, {uid})
                               for dep in self.graph.dependents_of(uid)))
        await self._remove_finalizer(node.identity, ORPHAN)

    async def _classify(self, identity: Identity, refs: list[dict[str, Any]]) -> OwnerStates:
        states = OwnerStates()
        for ref in refs:
            owner = await self._get_owner(identity, ref)
            if owner is None:
                states.dangling.append(ref)
            elif deleting_dependents(owner):
                states.waiting.append(ref)
            else:
                states.solid.append(ref)
        return states

    async def _get_owner(self, identity: Identity, ref: Mapping[str, Any]) -> dict | None:
        """The live owner `ref` names, or None if it is absent or has another uid."""
        resource = self.discovery.snapshot.lookup(ref.get("apiVersion", ""), ref.get("kind", ""))
        if resource is None:
            self.discovery.invalidate()
            raise UnknownOwnerKind(f"{identity}: owner kind {ref.get('kind')} of "
                                   f"{ref.get('apiVersion')} is not served")
        if resource.namespaced and not identity.namespace:
            raise InvalidOwnerReference(
                f"ownerRef [{ref.get('apiVersion')}/{ref.get('kind')}, namespace: , name: "
                f"{ref.get('name')}, uid: {ref.get('uid')}] does not exist in namespace \"\"")
        namespace = identity.namespace if resource.namespaced else ""
        absent_key = (namespace, ref.get("uid", ""))
        if absent_key in self._absent_owners:
            return None
        try:
            owner = await self.client.get(resource.api_version, resource.plural,
                                          ref.get("name", ""), namespace or None)
        except ApiError as err:
            if not err.not_found:
                raise
            owner = None
        if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
            self._absent_owners[absent_key] = None
            if len(self._absent_owners) > ABSENT_OWNER_CACHE_SIZE:
                del self._absent_owners[next(iter(self._absent_owners))]
            return None
        return owner

    # -- writes ------------------------------------------------------------------------

    async def _get_live(self, identity: Identity) -> dict | None:
        """The object as the server has it now; None (and the graph told) if it is gone."""
        try:
            obj = await self.client.get(identity.api_version, identity.plural, identity.name,
                                        identity.namespace or None)
        except ApiError as err:
            if not err.not_found:
                raise
            obj = None
        if obj is None or obj["metadata"].get("uid") != identity.uid:
            self._enqueue(self.graph.forget(identity.uid))
            return None
        return obj

    async def _patch_metadata(self, identity: Identity, latest: Mapping[str, Any],
                              changes: Mapping[str, Any]) -> None:
        """Merge-patch metadata fields, guarded by the uid and resourceVersion read."""
        meta = latest.get("metadata") or {}
        patch = {"metadata": {**changes, "uid": identity.uid,
                              "resourceVersion": meta.get("resourceVersion")}}
        try:
            await self.client.patch(identity.api_version, identity.plural, identity.name,
                                    patch, identity.namespace or None)
        except ApiError as err:
            if not err.not_found:
                raise

    async def _remove_owner_refs(self, identity: Identity, owner_uids: set[str],
                                 latest: Mapping[str, Any] | None = None) -> None:
        if latest is None:
            latest = await self._get_live(identity)
            if latest is None:
                return
        refs = (latest.get("metadata") or {}).get("ownerReferences") or []
        kept = [ref for ref in refs if ref.get("uid") not in owner_uids]
        if len(kept) != len(refs):
            await self._patch_metadata(identity, latest, {"ownerReferences": kept or None})

    async def _unblock_owner_refs(self, identity: Identity, latest: Mapping[str, Any]) -> None:
        refs = (latest.get("metadata") or {}).get("ownerReferences") or []
        await self._patch_metadata(identity, latest, {"ownerReferences": [
            {**ref, "blockOwnerDeletion": False} if ref.get("blockOwnerDeletion") else ref
            for ref in refs]})

    async def _remove_finalizer(self, identity: Identity, finalizer: str) -> None:
        latest = await self._get_live(identity)
        if latest is None:
            return
        finalizers = (latest.get("metadata") or {}).get("finalizers") or []
        if finalizer in finalizers:
            kept = [f for f in finalizers if f != finalizer]
            await self._patch_metadata(identity, latest, {"finalizers": kept or None})

    async def _delete(self, identity: Identity, policy: str) -> None:
        try:
            await self.client.delete(identity.api_version, identity.plural, identity.name,
                                     identity.namespace or None, propagation_policy=policy,
                                     preconditions={"uid": identity.uid})
        except ApiError as err:
            if not (err.not_found or err.conflict):
                raise


CONTROLLER = GarbageCollector
