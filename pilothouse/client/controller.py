"""Controllers: `reconcile(key)` loops fed by informers through a work queue.

A controller declares, in `setup()`, the informers it reads and how their events map to
keys of its own objects; the runtime runs `workers` coroutines that take keys off the
queue and call `reconcile(key)`. Reconcile is level-triggered: it reads desired and
observed state from the caches, acts through the API, writes status, and is safe to run
again at any time. It returns None when done, or seconds after which to look again
(deadlines, backoffs); an exception retries the key with exponential backoff.

Also here: the EventRecorder (core/v1 Events, repeats counted on one Event as kubectl
describe shows them) and leader election on a coordination.k8s.io Lease, so that two
controller managers can run and only one acts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..machinery.meta import parse_time, rfc3339, rfc3339_micro
from .api import ApiError, Client
from .informer import InformerFactory, object_key
from .workqueue import WorkQueue

log = logging.getLogger(__name__)


class EventRecorder:
    """Writes core/v1 Events about objects; a repeat bumps the count of the same Event."""

    def __init__(self, client: Client, component: str, *, host: str = "") -> None:
        self.client = client
        self.component = component
        self.host = host
        self._seen: dict[tuple[str, str, str, str], tuple[str, int]] = {}

    async def record(self, obj: Mapping[str, Any], event_type: str, reason: str,
                     message: str) -> None:
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        identity = (meta.get("uid", ""), event_type, reason, message)
        now = rfc3339()
        try:
            seen = self._seen.get(identity)
            if seen is not None:
                name, count = seen
                await self.client.patch("v1", "events", name,
                                        {"count": count + 1, "lastTimestamp": now}, namespace)
                self._seen[identity] = (name, count + 1)
                return
            name = f"{meta.get('name')}.{secrets.token_hex(8)}"
            await self.client.create("v1", "events", {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {
                    "kind": obj.get("kind"), "apiVersion": obj.get("apiVersion"),
                    "name": meta.get("name"), "namespace": meta.get("namespace"),
                    "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")},
                "reason": reason, "message": message, "type": event_type,
                "source": {"component": self.component, **({"host": self.host}
                                                           if self.host else {})},
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
                "reportingComponent": self.component, "reportingInstance": self.host,
            }, namespace)
            self._seen[identity] = (name, 1)
            if len(self._seen) > 4096:
                self._seen.clear()
        except ApiError as err:
            log.info("could not record event %s on %s: %s", reason, meta.get("name"), err)


@dataclass
class ControllerContext:
    """What every controller of one process shares."""

    client: Client
    informers: InformerFactory
    events: EventRecorder
    settings: Mapping[str, Any] = field(default_factory=dict)


class Controller(ABC):
    """Subclass: set `name`, register informers and handlers in `setup`, write `reconcile`."""

    name = "controller"
    workers = 2

    def __init__(self, context: ControllerContext) -> None:
        self.context = context
        self.client = context.client
        self.events = context.events
        self.queue = WorkQueue()
        self.setup()

    @abstractmethod
    def setup(self) -> None:
        """Get informers from `self.context.informers` and map their events to keys."""

    @abstractmethod
    async def reconcile(self, key: str) -> float | None:
        """Close the gap for one object; return seconds to requeue after, or None."""

    def enqueue(self, obj: Mapping[str, Any] | None) -> None:
        if obj is not None:
            self.queue.add(object_key(dict(obj)))

    def enqueue_handler(self, old: dict | None, new: dict | None) -> None:
        """An informer handler that enqueues the object itself."""
        self.enqueue(new if new is not None else old)

    async def run(self) -> None:
        workers = [asyncio.create_task(self._worker(), name=f"{self.name}-{i}")
                   for i in range(self.workers)]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()

    async def _worker(self) -> None:
        await process_queue(self.queue, self.reconcile, name=self.name)


async def process_queue(queue: WorkQueue, sync: Callable[[str], Awaitable[float | None]], *,
                        name: str) -> None:
    """One worker: take keys until the queue shuts down, `sync` each, and requeue.

    A key whose sync raises is retried with backoff (a write conflict is routine and
    logged quietly); one whose sync returns seconds is looked at again after them.
    """
    while True:
        key = await queue.get()
        if key is None:
            return
        try:
            again = await sync(key)
        except Exception as err:
            if isinstance(err, ApiError) and err.conflict:
                log.info("%s: %s changed meanwhile; retrying", name, key)
            else:
                log.warning("%s: syncing %s failed: %s", name, key, err,
                            exc_info=not isinstance(err, ApiError | OSError | TimeoutError))
            queue.add_rate_limited(key)
        else:
            queue.forget(key)
            if again is not None:
                queue.add_after(key, again)
        finally:
            queue.done(key)


class LeaderElector:
    """Holds a Lease while renewing it; another holder takes over once it expires."""

    def __init__(self, client: Client, *, name: str, identity: str,
                 namespace: str = "kube-system", lease_seconds: int = 15,
                 renew_seconds: float = 2.0) -> None:
        self.client = client
        self.name = name
        self.identity = identity
        self.namespace = namespace
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds

    async def try_acquire(self) -> bool:
        now = datetime.now(UTC)
        try:
            lease = await self.client.get("coordination.k8s.io/v1", "leases", self.name,
                                          self.namespace)
        except ApiError as err:
            if not err.not_found:
                raise
            try:
                await self.client.create("coordination.k8s.io/v1", "leases", {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(now, transitions=0, acquired=now)}, self.namespace)
                return True
            except ApiError as create_err:
                if create_err.conflict:
                    return False
                raise
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = parse_time(spec.get("renewTime")) or datetime.min.replace(tzinfo=UTC)
        duration = spec.get("leaseDurationSeconds") or self.lease_seconds
        if holder not in (None, "", self.identity) and renewed + timedelta(seconds=duration) > now:
            return False
        transitions = (spec.get("leaseTransitions") or 0) + (holder != self.identity)
        acquired = now if holder != self.identity else (
            parse_time(spec.get("acquireTime")) or now)
        lease["spec"] = self._spec(now, transitions=transitions, acquired=acquired)
        try:
            await self.client.replace("coordination.k8s.io/v1", "leases", lease)
        except ApiError as err:
            if err.conflict:
                return False
            raise
        return True

    def _spec(self, now: datetime, *, transitions: int, acquired: datetime) -> dict[str, Any]:
        return {"holderIdentity": self.identity, "leaseDurationSeconds": self.lease_seconds,
                "acquireTime": rfc3339_micro(acquired), "renewTime": rfc3339_micro(now),
                "leaseTransitions": transitions}

    async def release(self) -> None:
        """Give the lease up on a clean stop, so a standby need not wait for it to expire."""
        try:
            lease = await self.client.get("coordination.k8s.io/v1", "leases", self.name,
                                          self.namespace)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            lease["spec"] = {**spec, "holderIdentity": "", "leaseDurationSeconds": 1}
            await self.client.replace("coordination.k8s.io/v1", "leases", lease)
        except ApiError as err:
            log.info("could not release the lease %s: %s", self.name, err)

    async def acquire(self) -> None:
        """Wait until this process leads."""
        while not await self.try_acquire():
            await asyncio.sleep(self.renew_seconds)
        log.info("%s is now the leader for %s", self.identity, self.name)

    async def hold(self) -> None:
        """Renew forever; returns (so the caller can stop) if leadership is lost."""
        last_ok = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(self.renew_seconds)
            try:
                if await self.try_acquire():
                    last_ok = asyncio.get_running_loop().time()
                    continue
                log.error("%s lost the lease %s", self.identity, self.name)
                return
            except Exception as err:
                log.warning("renewing lease %s failed: %s", self.name, err)
            if asyncio.get_running_loop().time() - last_ok > self.lease_seconds * 2 / 3:
                log.error("%s could not renew the lease %s in time", self.identity, self.name)
                return


async def run_controllers(
        client: Client, controllers: Mapping[str, type[Controller]], *, component: str,
        lease_name: str, leader_elect: bool, settings: Mapping[str, Any],
        on_leading: Callable[[Client], Awaitable[None]] | None = None) -> None:
    """The loop of a controller manager: take the lease (with `leader_elect`), call
    `on_leading`, start the named controllers on shared informers, and run until cancelled,
    until a controller ends or until leadership is lost; the lease is given up on the way
    out so a standby takes over at once."""
    elector = LeaderElector(client, name=lease_name,
                            identity=f"{socket.gethostname()}_{os.getpid()}") \
        if leader_elect else None
    if elector is not None:
        await elector.acquire()
    if on_leading is not None:
        await on_leading(client)
    informers = InformerFactory(client)
    context = ControllerContext(client, informers, EventRecorder(client, component),
                                dict(settings))
    running = [controller(context) for controller in controllers.values()]
    await informers.start()
    log.info("%s running: %s", component, ", ".join(controllers))
    tasks = [asyncio.create_task(c.run(), name=c.name) for c in running]
    if elector is not None:
        tasks.append(asyncio.create_task(elector.hold(), name="leader-election"))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
        log.error("%s stopping: %s ended", component, [t.get_name() for t in done])
    finally:
        for task in tasks:
            task.cancel()
        await informers.stop()
        if elector is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(elector.release(), 2)
