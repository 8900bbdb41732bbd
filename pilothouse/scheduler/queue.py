"""The scheduling queue: active, backoff and unschedulable pods (kube-scheduler's
PriorityQueue).

- **active**: ready to schedule, ordered by the profile's QueueSort plugin.
- **backoff**: failed recently; each pod waits 1 s after its first failed attempt,
  doubling per attempt up to 10 s, then moves to active by itself.
- **unschedulable**: no node fits and nothing will change until the cluster does. A
  cluster event (a node added or changed, an assigned pod deleted, a pod group created)
  moves the pods that a plugin which rejected them may now accept, to backoff (if their
  backoff has not expired) or active. Pods left there for five minutes are retried anyway.

A pod that fails while an event arrived during its own cycle goes to backoff, not
unschedulable, so the event is not lost (upstream's moveRequestCycle).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .nodeinfo import PodInfo

INITIAL_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 10.0
MAX_UNSCHEDULABLE_SECONDS = 300.0


@dataclass(slots=True, eq=False)
class QueuedPod:
    info: PodInfo
    timestamp: float
    attempts: int = 0
    cycle: int = 0
    backoff_until: float = 0.0
    unschedulable_since: float = 0.0
    unschedulable_plugins: frozenset[str] = field(default_factory=frozenset)

    @property
    def key(self) -> str:
        return self.info.key


class SchedulingQueue:
    def __init__(self, sort_key: Callable[[QueuedPod], tuple[Any, ...]], *,
                 initial_backoff: float = INITIAL_BACKOFF_SECONDS,
                 max_backoff: float = MAX_BACKOFF_SECONDS,
                 max_unschedulable: float = MAX_UNSCHEDULABLE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sort_key = sort_key
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._max_unschedulable = max_unschedulable
        self._clock = clock
        self._seq = itertools.count()
        self._active_heap: list[tuple[tuple[Any, ...], int, QueuedPod]] = []
        self._active: dict[str, QueuedPod] = {}
        self._backoff_heap: list[tuple[float, int, QueuedPod]] = []
        self._backoff: dict[str, QueuedPod] = {}
        self._unschedulable: dict[str, QueuedPod] = {}
        self._in_flight: dict[str, QueuedPod] = {}
        self._ready = asyncio.Event()
        self.scheduling_cycle = 0
        self.move_request_cycle = -1

    # -- sizes, for logs and tests ------------------------------------------------------------

    def counts(self) -> tuple[int, int, int]:
        """(active, backoff, unschedulable)."""
        return len(self._active), len(self._backoff), len(self._unschedulable)

    # -- pods coming and going -----------------------------------------------------------------

    def add(self, info: PodInfo) -> None:
        """A new pending pod, or a newer copy of one: keep its place, refresh its object."""
        key = info.key
        for queue in (self._in_flight, self._active, self._backoff, self._unschedulable):
            queued = queue.get(key)
            if queued is not None:
                queued.info = info
                return
        self._push_active(QueuedPod(info, self._clock()))

    def update(self, info: PodInfo) -> None:
        """The pod's spec or labels changed: an unschedulable pod may fit now."""
        queued = self._unschedulable.pop(info.key, None)
        if queued is None:
            self.add(info)
            return
        queued.info = info
        self._requeue(queued)

    def delete(self, key: str) -> None:
        self._active.pop(key, None)
        self._backoff.pop(key, None)
        self._unschedulable.pop(key, None)
        self._in_flight.pop(key, None)

    def _push_active(self, queued: QueuedPod) -> None:
        self._active[queued.key] = queued
        heapq.heappush(self._active_heap, (self._sort_key(queued), next(self._seq), queued))
        self._ready.set()

    def _push_backoff(self, queued: QueuedPod) -> None:
        self._backoff[queued.key] = queued
        heapq.heappush(self._backoff_heap, (queued.backoff_until, next(self._seq), queued))
        self._ready.set()

    def _requeue(self, queued: QueuedPod) -> None:
        if queued.backoff_until > self._clock():
            self._push_backoff(queued)
        else:
            self._push_active(queued)

    # -- the scheduling loop's side --------------------------------------------------------------

    def pop_nowait(self) -> QueuedPod | None:
        """The next pod to schedule, if one is ready; it is then in flight until `done`."""
        self._flush_backoff()
        heap = self._active_heap
        while heap:
            queued = heapq.heappop(heap)[2]
            key = queued.key
            if self._active.get(key) is not queued:
                continue  # deleted or re-pushed since
            del self._active[key]
            queued.attempts += 1
            self.scheduling_cycle += 1
            queued.cycle = self.scheduling_cycle
            self._in_flight[key] = queued
            return queued
        return None

    async def pop(self) -> QueuedPod:
        while True:
            queued = self.pop_nowait()
            if queued is not None:
                return queued
            self._ready.clear()
            wait = None
            if self._backoff_heap:
                wait = max(0.0, self._backoff_heap[0][0] - self._clock())
            try:
                async with asyncio.timeout(wait):
                    await self._ready.wait()
            except TimeoutError:
                pass

    def done(self, key: str) -> None:
        """The pod's scheduling cycle ended with it assumed (or gone)."""
        self._in_flight.pop(key, None)

    def backoff_seconds(self, attempts: int) -> float:
        return min(self._initial_backoff * 2 ** max(attempts - 1, 0), self._max_backoff)

    def add_unschedulable(self, queued: QueuedPod, plugins: Iterable[str] = (), *,
                          error: bool = False) -> None:
        """A failed attempt. Unschedulable pods wait for a cluster event; errors back off."""
        key = queued.key
        self._in_flight.pop(key, None)
        if key in self._active or key in self._backoff or key in self._unschedulable:
            return
        now = self._clock()
        queued.backoff_until = now + self.backoff_seconds(queued.attempts)
        queued.unschedulable_plugins = frozenset(plugins)
        if error or self.move_request_cycle >= queued.cycle:
            self._push_backoff(queued)
        else:
            queued.unschedulable_since = now
            self._unschedulable[key] = queued

    def _flush_backoff(self) -> None:
        heap = self._backoff_heap
        if not heap:
            return
        now = self._clock()
        while heap and heap[0][0] <= now:
            queued = heapq.heappop(heap)[2]
            if self._backoff.get(queued.key) is queued:
                del self._backoff[queued.key]
                self._push_active(queued)

    # -- cluster events --------------------------------------------------------------------------

    def move_all(self, plugins: frozenset[str] | None = None) -> int:
        """A cluster event that `plugins` care about (None: every plugin) happened."""
        self.move_request_cycle = self.scheduling_cycle
        moved = 0
        for key, queued in list(self._unschedulable.items()):
            rejectors = queued.unschedulable_plugins
            if plugins is not None and rejectors and rejectors.isdisjoint(plugins):
                continue
            del self._unschedulable[key]
            self._requeue(queued)
            moved += 1
        return moved

    def activate(self, key: str) -> None:
        """Move one waiting pod straight to active (a gang sibling's turn)."""
        queued = self._unschedulable.pop(key, None) or self._backoff.pop(key, None)
        if queued is not None:
            self._push_active(queued)

    def flush_unschedulable_leftover(self) -> None:
        now = self._clock()
        for key, queued in list(self._unschedulable.items()):
            if now - queued.unschedulable_since >= self._max_unschedulable:
                del self._unschedulable[key]
                self._requeue(queued)
