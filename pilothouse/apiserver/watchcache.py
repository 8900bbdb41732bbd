"""The watch cache: one datastore watch fanned out to every client watch.

Like kube-apiserver's cacher, the server opens a single store watch on `/registry/` and
keeps the most recent events in a ring buffer. A client watch registers a `Watcher`
(a key prefix and a queue); each event is decoded once and pushed to every watcher whose
prefix matches, and its JSON line is encoded once per event type, whatever the number of
watchers. A watch from a resourceVersion still in the buffer replays the buffered events
after it; one older than the buffer gets 410 Gone ("too old resource version"), as on a
real cluster, and the client relists.

Registration and replay run without yielding to the event loop, so a watcher sees every
event after its revision exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

import orjson

from ..machinery import errors
from ..store import Event, Store

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 20_000
#: A watcher this far behind is cut off; its client re-watches (and may relist).
MAX_PENDING = 50_000


class CachedEvent:
    """A store event, decoded lazily and at most once for all watchers."""

    __slots__ = ("event", "_obj", "_prev", "_before", "_lines")

    def __init__(self, event: Event, before: CachedEvent | None = None) -> None:
        self.event = event
        #: The cached event that wrote the previous version, whose decoded object this
        #: event's `prev()` (and, for a delete, `obj()`) reuse instead of decoding again.
        self._before = before
        self._obj: dict[str, Any] | None = None
        self._prev: dict[str, Any] | None = None
        self._lines: dict[tuple[str, str], bytes] = {}

    @property
    def key(self) -> str:
        return self.event.kv.key

    @property
    def revision(self) -> int:
        return self.event.kv.mod_revision

    @property
    def deleted(self) -> bool:
        return self.event.type == "DELETE"

    def obj(self) -> dict[str, Any]:
        """The object after the event (for DELETE: its last state at the delete revision)."""
        if self._obj is None:
            before = self.prev() if self.deleted else None
            if before is not None:  # a delete's object is the last version, at a new revision
                self._obj = {**before, "metadata": {**before["metadata"],
                                                    "resourceVersion": str(self.revision)}}
            else:
                self._obj = orjson.loads(self.event.kv.value)
                self._obj["metadata"]["resourceVersion"] = str(self.revision)
        return self._obj

    def prev(self) -> dict[str, Any] | None:
        if self._prev is None and self.event.prev is not None:
            if self._before is not None:
                self._prev = self._before.obj()
            else:
                self._prev = orjson.loads(self.event.prev.value)
                self._prev["metadata"]["resourceVersion"] = str(self.event.prev.mod_revision)
        return self._prev

    def forget_older(self) -> None:
        """Cut the link below the previous event, so a key's events never form a chain
        through its whole history (a lagging reader then decodes, which is correct)."""
        if self._before is not None:
            self._before._before = None

    def line(self, event_type: str, api_version: str = "") -> bytes:
        """`{"type":...,"object":...}\\n`, encoded once per (type, apiVersion)."""
        cache_key = (event_type, api_version)
        line = self._lines.get(cache_key)
        if line is None:
            obj = self.obj()
            if api_version and obj.get("apiVersion") != api_version:
                obj = {**obj, "apiVersion": api_version}
            line = orjson.dumps({"type": event_type, "object": obj}) + b"\n"
            self._lines[cache_key] = line
        return line


class Watcher:
    """One client watch: the events under `prefix` after `revision`, in order."""

    def __init__(self, cache: WatchCache, prefix: str, revision: int) -> None:
        self.cache = cache
        self.prefix = prefix
        self.revision = revision
        self.queue: asyncio.Queue[CachedEvent | None] = asyncio.Queue()
        self.closed = False

    def offer(self, event: CachedEvent) -> None:
        if self.closed or event.revision <= self.revision or not event.key.startswith(
            self.prefix
        ):
            return
        if self.queue.qsize() >= MAX_PENDING:
            self.close()
            return
        self.revision = event.revision
        self.queue.put_nowait(event)

    async def next(self, timeout: float) -> CachedEvent | None:
        """The next event, or None on timeout or when the watcher was closed."""
        if self.closed and self.queue.empty():
            return None
        if not self.queue.empty():  # the common case under load: no timer, no task
            return self.queue.get_nowait()
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)
            self.cache.unregister(self)


class WatchCache:
    def __init__(self, store: Store, *, capacity: int = DEFAULT_CAPACITY) -> None:
        self.store = store
        self.capacity = capacity
        self._buffer: deque[CachedEvent] = deque(maxlen=capacity)
        self._watchers: set[Watcher] = set()
        #: key -> the newest cached event of that key, so the next event can reuse its
        #: decoded object as its previous one (field- and label-filtered watches need it).
        self._latest: dict[str, CachedEvent] = {}
        self._start_revision = 0
        self.revision = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._start_revision = self.revision = self.store.revision
        self._task = asyncio.create_task(self._run(), name="watch-cache")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.close_watchers()

    def close_watchers(self) -> None:
        """End every open watch (its stream then ends cleanly, as on a server shutdown)."""
        for watcher in list(self._watchers):
            watcher.close()

    async def _run(self) -> None:
        async for event in self.store.watch("/registry/", self._start_revision):
            key = event.kv.key
            before = self._latest.get(key)
            if before is not None and (event.prev is None
                                       or before.revision != event.prev.mod_revision):
                before = None
            if before is not None:
                before.forget_older()  # links at most two deep: no chain through history
            cached = CachedEvent(event, before)
            if event.type == "DELETE":
                self._latest.pop(key, None)
            else:
                self._latest[key] = cached
            self._buffer.append(cached)
            self.revision = cached.revision
            for watcher in tuple(self._watchers):
                watcher.offer(cached)

    @property
    def oldest_revision(self) -> int:
        """The oldest revision a watch may start from."""
        if len(self._buffer) == self.capacity:
            return self._buffer[0].revision
        return self._start_revision

    def watch(self, prefix: str, revision: int) -> Watcher:
        """Register a watcher for events after `revision` (410 Gone if that is too old)."""
        if revision < self.oldest_revision:
            raise errors.gone(
                f"too old resource version: {revision} ({self.oldest_revision})"
            )
        watcher = Watcher(self, prefix, revision)
        for cached in self._buffer:
            if cached.revision > revision:
                watcher.offer(cached)
        self._watchers.add(watcher)
        return watcher

    def unregister(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)
