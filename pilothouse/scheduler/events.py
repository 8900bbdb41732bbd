"""The scheduler's event sink: Events are written behind the scheduling, never beside it.

A Scheduled event per bound pod is a fourth API write per pod, after the create, the
binding and the kubelet's status. kube-scheduler's event broadcaster keeps it out of the
way, and so does this: events go into a bounded queue (1,000, as client-go's
`maxQueuedEvents`) that drops new events when full, and one writer drains it at the
event client's rate (client-go's token bucket; kube-scheduler's `clientConnection`
defaults of 50 QPS, burst 100, which apply to its event client separately from the
bindings). A few events -- a test, a rollout of ten pods -- are all written at once; a
burst of thousands of bindings records the first ~100, then 50 a second, and the rest
are dropped (counted and logged) rather than slowing the bindings down.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..client import ApiError, EventRecorder

log = logging.getLogger(__name__)

MAX_QUEUED_EVENTS = 1000
EVENT_QPS = 50.0
EVENT_BURST = 100


class TokenBucket:
    """client-go's flowcontrol token bucket: `burst` tokens, refilled at `qps` a second."""

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.qps = qps
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def delay(self) -> float:
        """Take a token; the seconds to wait before using it (0 when one was there)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps


class EventSink:
    """A bounded queue of Events and the one task that writes them."""

    def __init__(self, recorder: EventRecorder, *, qps: float = EVENT_QPS,
                 burst: int = EVENT_BURST, max_queued: int = MAX_QUEUED_EVENTS) -> None:
        self.recorder = recorder
        self.bucket = TokenBucket(qps, burst)
        self.max_queued = max_queued
        self.dropped = 0
        self._queue: collections.deque[tuple[Mapping[str, Any], str, str, str]] = (
            collections.deque())
        self._ready = asyncio.Event()

    def record(self, obj: Mapping[str, Any], event_type: str, reason: str,
               message: str) -> None:
        """Queue an Event about `obj` (with kind and apiVersion); drop it if the queue is full."""
        if len(self._queue) >= self.max_queued:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("event queue full (%d): dropped %d events so far, the latest %s "
                            "on %s", self.max_queued, self.dropped, reason,
                            (obj.get("metadata") or {}).get("name"))
            return
        self._queue.append((obj, event_type, reason, message))
        self._ready.set()

    async def run(self) -> None:
        """Write queued events one at a time, at most `qps` a second, until cancelled."""
        while True:
            if not self._queue:
                self._ready.clear()
                await self._ready.wait()
                continue
            delay = self.bucket.delay()
            if delay:
                await asyncio.sleep(delay)
            obj, event_type, reason, message = self._queue.popleft()
            try:
                await self.recorder.record(obj, event_type, reason, message)
            except ApiError as err:
                log.info("could not record event %s: %s", reason, err)
            except Exception:
                log.exception("could not record event %s", reason)
