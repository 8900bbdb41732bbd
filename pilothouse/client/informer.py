"""Informers: a local, indexed cache of one resource kept current by list + watch.

As client-go's SharedInformer: list (paginated), then watch from the list's
resourceVersion; each event updates the cache and then calls the registered handlers
(which enqueue keys -- handlers never do work). A closed watch resumes from the last
resourceVersion seen (bookmarks included); a 410 Gone relists, and the relist emits
deletes for objects that vanished meanwhile, so controllers never miss a delete.

Keys are `namespace/name` (or `name` for cluster-scoped objects). Indexes map an index
value to the keys whose objects produce it; `namespace`, `owner` (controller owner uid)
and `label` are built in -- each maintained only from its first use, since keeping an
index costs on every event -- and callers add their own (e.g. pods by `spec.nodeName`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .api import ApiError, Client

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any] | None, dict[str, Any] | None], None]
IndexFunc = Callable[[dict[str, Any]], Iterable[str]]
RETRY_SECONDS = 1.0
SYNC_TIMEOUT = 30.0


def object_key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta['name']}" if namespace else meta["name"]


def split_key(key: str) -> tuple[str | None, str]:
    namespace, _, name = key.rpartition("/")
    return (namespace or None), name


def controller_owner_uid(obj: dict[str, Any]) -> Iterable[str]:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            yield ref.get("uid", "")


def _namespace(obj: dict[str, Any]) -> Iterable[str]:
    namespace = (obj.get("metadata") or {}).get("namespace")
    return [namespace] if namespace else []


def _labels(obj: dict[str, Any]) -> Iterable[str]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return [f"{k}={v}" for k, v in labels.items()]


BUILTIN_INDEXES: dict[str, IndexFunc] = {
    "namespace": _namespace,
    "owner": controller_owner_uid,
    "label": _labels,
}


@dataclass
class Informer:
    client: Client
    api_version: str
    plural: str
    namespace: str | None = None
    label_selector: str | None = None
    field_selector: str | None = None
    indexers: dict[str, IndexFunc] = field(default_factory=dict)
    #: Applied to every object before it is cached (e.g. keep only metadata).
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        self.indexers = dict(self.indexers)
        self._items: dict[str, dict[str, Any]] = {}
        self._index: dict[str, dict[str, set[str]]] = {name: {} for name in self.indexers}
        self._handlers: list[Handler] = []
        self.synced = asyncio.Event()
        self.resource_version = ""

    # -- reading the cache -------------------------------------------------------------

    def get(self, key: str) -> dict[str, Any] | None:
        return self._items.get(key)

    def list(self) -> list[dict[str, Any]]:
        return list(self._items.values())

    def keys(self) -> list[str]:
        return list(self._items)

    def by_index(self, index: str, value: str) -> list[dict[str, Any]]:
        if index not in self._index:  # a built-in index, kept only once someone asks
            self.add_index(index, BUILTIN_INDEXES[index])
        return [self._items[k] for k in self._index[index].get(value, ()) if k in self._items]

    def add_handler(self, handler: Handler) -> None:
        """`handler(old, new)`: add (None, new), update (old, new), delete (old, None)."""
        self._handlers.append(handler)

    def add_index(self, name: str, func: IndexFunc) -> None:
        if name in self.indexers:
            return
        self.indexers[name] = func
        self._index[name] = {}
        for key, obj in self._items.items():
            for value in func(obj):
                self._index[name].setdefault(value, set()).add(key)

    # -- keeping it current ------------------------------------------------------------

    def _store(self, key: str, obj: dict[str, Any] | None) -> dict[str, Any] | None:
        if obj is not None and self.transform is not None:
            obj = self.transform(obj)
        old = self._items.get(key)
        if old is not None:
            for name, func in self.indexers.items():
                for value in func(old):
                    keys = self._index[name].get(value)
                    if keys is not None:
                        keys.discard(key)
                        if not keys:
                            del self._index[name][value]
        if obj is None:
            self._items.pop(key, None)
        else:
            self._items[key] = obj
            for name, func in self.indexers.items():
                for value in func(obj):
                    self._index[name].setdefault(value, set()).add(key)
        return old

    def _notify(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        for handler in self._handlers:
            try:
                handler(old, new)
            except Exception:
                log.exception("informer handler for %s failed", self.plural)

    async def _relist(self) -> None:
        items, version = await self.client.list_all(
            self.api_version, self.plural, self.namespace,
            label_selector=self.label_selector, field_selector=self.field_selector)
        fresh = {object_key(obj): obj for obj in items}
        for key in [k for k in self._items if k not in fresh]:
            old = self._store(key, None)
            self._notify(old, None)
        for key, obj in fresh.items():
            old = self._store(key, obj)
            if old is None or old["metadata"].get("resourceVersion") != obj["metadata"].get(
                    "resourceVersion"):
                self._notify(old, obj)
        self.resource_version = version
        self.synced.set()

    async def run(self) -> None:
        """List, then watch forever (cancel the task to stop)."""
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                async for event in self.client.watch(
                        self.api_version, self.plural, self.namespace,
                        resource_version=self.resource_version,
                        label_selector=self.label_selector, field_selector=self.field_selector):
                    self._apply(event)
            except ApiError as err:
                if err.gone:
                    need_list = True
                    continue
                log.warning("watch of %s failed: %s; retrying", self.plural, err)
                await asyncio.sleep(RETRY_SECONDS)
            except (TimeoutError, aiohttp.ClientError, OSError) as err:
                log.info("watch of %s interrupted (%s); resuming", self.plural, err)
                await asyncio.sleep(RETRY_SECONDS)

    def _apply(self, event: dict[str, Any]) -> None:
        kind, obj = event["type"], event["object"]
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self.resource_version = version
        if kind == "BOOKMARK":
            return
        key = object_key(obj)
        if kind == "DELETED":
            old = self._store(key, None)
            self._notify(old or obj, None)
        else:
            old = self._store(key, obj)
            self._notify(old, obj)


class InformerFactory:
    """Shares one informer per (apiVersion, plural) among every controller of a process."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._informers: dict[tuple[str, str], Informer] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def informer(self, api_version: str, plural: str,
                 indexers: dict[str, IndexFunc] | None = None) -> Informer:
        informer = self._informers.get((api_version, plural))
        if informer is None:
            informer = Informer(self.client, api_version, plural)
            self._informers[(api_version, plural)] = informer
        for name, func in (indexers or {}).items():
            informer.add_index(name, func)
        return informer

    async def start(self, *, sync_timeout: float = SYNC_TIMEOUT) -> None:
        """Start every informer and wait until their caches are filled.

        An informer that cannot list (a resource this server does not serve, or one its
        identity may not read) is reported by name after `sync_timeout` and keeps
        retrying; the others are not held up by it.
        """
        for informer in self._informers.values():
            self._tasks.append(asyncio.create_task(informer.run(),
                                                   name=f"informer-{informer.plural}"))
        waiting = asyncio.gather(*(i.synced.wait() for i in self._informers.values()))
        try:
            await asyncio.wait_for(asyncio.shield(waiting), sync_timeout)
        except TimeoutError:
            stuck = [f"{i.api_version}/{i.plural}" for i in self._informers.values()
                     if not i.synced.is_set()]
            log.error("caches not synced after %.0fs, still retrying: %s", sync_timeout,
                      ", ".join(stuck))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
