"""The resource quota controller: keeps each ResourceQuota's status true to its namespace.

As pkg/controller/resourcequota: `status.hard` is a copy of `spec.hard`, and `status.used`
is recounted from the objects that exist (pods, services, claims, object counts), with the
same arithmetic the API server's quota admission charges with (machinery/quota.py). A
quota is recounted when it is created or its limits change, when an object it counts is
deleted or stops costing (a pod finishes, a service changes type), and every five minutes.
New objects do not trigger a recount: admission has already charged them, and a recount
racing a create still in flight would hand its charge back.

The counts come from informer caches: shared ones for pods, services, claims and quotas,
and for each other counted kind (`secrets`, `count/<resource>.<group>`) a monitor started
on first use once discovery says the API serves it, as the real controller's quota
monitor does -- so a kind this server does not serve never holds the others up.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from datetime import UTC, datetime
from typing import Any

from ..client import ApiError, Controller, Informer, object_key, split_key
from ..machinery import quota as q

log = logging.getLogger(__name__)

FULL_RESYNC_SECONDS = 300.0
MONITOR_SYNC_SECONDS = 30.0
#: Kinds watched from the start: those with their own evaluators, and quotas themselves.
#: Every other counted kind gets a monitor once a quota names it and the API serves it.
_WATCHED: tuple[q.Kind, ...] = (q.PODS, q.SERVICES, q.PERSISTENT_VOLUME_CLAIMS,
                                ("", "resourcequotas"))


def _now() -> datetime:
    return datetime.now(UTC)


class ResourceQuotaController(Controller):
    name = "resourcequota-controller"

    def setup(self) -> None:
        informers = self.context.informers
        self.quotas = informers.informer("v1", "resourcequotas")
        self.quotas.add_handler(self._quota_changed)
        self.sources: dict[q.Kind, Informer] = {}
        self._monitors: list[asyncio.Task[None]] = []
        self._monitor_lock = asyncio.Lock()
        for kind in _WATCHED:
            self._watch(kind, informers.informer("v1", kind[1]))

    def _watch(self, kind: q.Kind, informer: Informer) -> None:
        self.sources[kind] = informer
        informer.add_handler(lambda old, new: self._object_changed(kind, old, new))

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            for task in self._monitors:
                task.cancel()

    # -- event handlers: which quotas to recount ---------------------------------------

    def _quota_changed(self, old: dict | None, new: dict | None) -> None:
        """A new quota, or new limits, is counted now; status writes are ours to ignore."""
        if new is not None and (old is None or old.get("spec") != new.get("spec")):
            self.enqueue(new)

    def _object_changed(self, kind: q.Kind, old: dict | None, new: dict | None) -> None:
        """A delete, or an update that lowers what the object costs, gives quota back."""
        if new is None:
            self._replenish(kind, old)
        elif old is not None and q.usage(kind, old, _now()) != q.usage(kind, new, _now()):
            self._replenish(kind, new)

    def _replenish(self, kind: q.Kind, obj: dict | None) -> None:
        namespace = ((obj or {}).get("metadata") or {}).get("namespace")
        if not namespace:
            return
        for quota in self.quotas.by_index("namespace", namespace):
            if q.matching_resources(kind, (quota.get("spec") or {}).get("hard") or {}):
                self.queue.add(object_key(quota))

    # -- reconcile ---------------------------------------------------------------------

    async def reconcile(self, key: str) -> float | None:
        namespace, _ = split_key(key)
        quota = self.quotas.get(key)
        if quota is None or not namespace:
            return None
        hard = dict((quota.get("spec") or {}).get("hard") or {})
        objects = {kind: await self._objects(kind, namespace) for kind in q.tracked_kinds(hard)}
        used = q.calculate_usage(quota, objects, _now())
        status = quota.get("status") or {}
        if q.equals(status.get("hard") or {}, hard) and "used" in status and q.equals(
                status["used"], used):
            return FULL_RESYNC_SECONDS
        updated = copy.deepcopy(quota)
        updated["status"] = {"hard": hard, "used": used}
        # Written at the cached resourceVersion: if admission charged meanwhile, this
        # conflicts and the key is retried against the newer quota.
        await self.client.replace("v1", "resourcequotas", updated, subresource="status")
        return FULL_RESYNC_SECONDS

    async def _objects(self, kind: q.Kind, namespace: str) -> list[dict[str, Any]]:
        informer = self.sources.get(kind) or await self._monitor(kind)
        return informer.by_index("namespace", namespace) if informer else []

    async def _monitor(self, kind: q.Kind) -> Informer | None:
        """A cache of another counted kind: started once, if the API serves it."""
        async with self._monitor_lock:
            if kind in self.sources:
                return self.sources[kind]
            api_version = await self._served_version(kind)
            if api_version is None:
                return None
            informer = self.context.informers.informer(api_version, kind[1])
            if not informer.synced.is_set():
                self._monitors.append(asyncio.create_task(informer.run(),
                                                          name=f"quota-monitor-{kind[1]}"))
            self._watch(kind, informer)
        await asyncio.wait_for(informer.synced.wait(), MONITOR_SYNC_SECONDS)
        return informer

    async def _served_version(self, kind: q.Kind) -> str | None:
        """The preferred version serving `kind` as a namespaced resource, from discovery."""
        group, plural = kind
        try:
            if group:
                info = await self.client.request("GET", f"/apis/{group}")
                api_version = info["preferredVersion"]["groupVersion"]
                listing = await self.client.request("GET", f"/apis/{api_version}")
            else:
                api_version = "v1"
                listing = await self.client.request("GET", "/api/v1")
        except ApiError as err:
            if err.not_found:
                return None
            raise
        with contextlib.suppress(KeyError, TypeError):
            if any(r["name"] == plural and r.get("namespaced") for r in listing["resources"]):
                return api_version
        log.info("quota counts %s.%s, which the API does not serve", plural, group)
        return None


CONTROLLER = ResourceQuotaController
