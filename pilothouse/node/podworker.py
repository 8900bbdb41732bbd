"""One pod worker per pod bound to this node: the kubelet's syncPod loop.

Each worker is its own task that sleeps until woken (the pod changed in the API, one of
its containers started or exited, a probe flipped) or until its next timer (a back-off
ends, the active deadline passes, the periodic resync that refreshes volumes), then makes
one pass that moves the pod towards its spec and reports what is true:

1. Gone from the API, or deletionTimestamp set: run preStop hooks, stop the containers
   within the grace period (regular containers first, then sidecars), report the final
   status, finish the deletion (grace 0, as the kubelet does) and clean up.
2. activeDeadlineSeconds passed: stop everything; Failed, reason DeadlineExceeded.
3. Otherwise: the runtime (RuntimeClass), the sandbox (pod IP and network namespace,
   hosts, resolv.conf), the volumes; init containers one at a time (sidecars,
   restartPolicy Always, keep running and must have started before the next); then the
   containers. An exited container is restarted as restartPolicy says, after the
   kubelet's back-off (none for the first restart, then 10 s doubling to 5 minutes; reset
   after 10 minutes of running), shown as CrashLoopBackOff. A liveness failure stops the
   container, which then restarts.
4. The status is computed by `podstatus` and patched only when it changed.

Problems a user must see become a container's waiting reason and a Warning event, as the
kubelet shows them, never an exception out of the worker: CreateContainerConfigError (env
references), ErrImagePull / ErrImageNeverPull, RunContainerError (no such command),
FailedMount (volumes), FailedCreatePodSandBox (unknown RuntimeClass, absent runtime).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..client import ApiError
from ..machinery.meta import parse_time, rfc3339
from ..machinery.quantity import parse_quantity
from . import podstatus
from .env import ConfigError, container_argv, container_env
from .logs import read_log
from .podstatus import TERMINAL_PHASES, ContainerView, restart_backoff
from .probes import ProbeEvent, ProbeManager, ProbeResult, run_probe
from .runtime.base import (
    ContainerConfig,
    ContainerStatus,
    PodSandboxConfig,
    Runtime,
    RuntimeFailure,
    RuntimeUnavailable,
)
from .volumes import VolumeError

if TYPE_CHECKING:
    from .kubelet import Kubelet

log = logging.getLogger(__name__)

#: A container that ran this long has its back-off forgotten (the kubelet's 2x max).
BACKOFF_RESET_SECONDS = 600.0
RESYNC_SECONDS = 10.0
DEFAULT_GRACE_SECONDS = 30
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048
LABEL_POD_UID = "io.kubernetes.pod.uid"
LABEL_POD_NAME = "io.kubernetes.pod.name"
LABEL_POD_NAMESPACE = "io.kubernetes.pod.namespace"
LABEL_CONTAINER = "io.kubernetes.container.name"
LABEL_KIND = "io.pilothouse.container.kind"


def pod_dir_name(pod: Mapping[str, Any]) -> str:
    meta = pod["metadata"]
    return f"{meta.get('namespace')}_{meta['name']}_{meta['uid']}"


class _Waiting(Exception):
    """A container cannot start now: its waiting reason and message."""

    def __init__(self, reason: str, message: str, *, event: str = "Failed") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.event = event


class PodWorker:
    def __init__(self, kubelet: Kubelet, key: str, uid: str) -> None:
        self.kubelet = kubelet
        self.key = key
        self.uid = uid
        self.views: dict[str, ContainerView] = {}
        self.pod: dict[str, Any] | None = None
        self.runtime: Runtime | None = None
        self.sandbox: PodSandboxConfig | None = None
        self.volume_paths: dict[str, Path] | None = None
        self.probes = ProbeManager(on_change=self._on_probe_change, on_event=self._on_probe_event)
        self.deadline_exceeded = False
        self.done = False
        self._wake = asyncio.Event()
        self._next_resync = 0.0
        self._start_failures: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        self._liveness_failed: set[str] = set()
        self._last_status: dict[str, Any] | None = None
        self._task: asyncio.Task | None = None

    # -- the loop ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pod-worker {self.key}")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.probes.close()

    async def _run(self) -> None:
        delay: float | None = 0.0
        while not self.done:
            if delay is None or delay > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            try:
                delay = await self.sync()
            except asyncio.CancelledError:
                raise
            except ApiError as err:
                log.warning("pod %s: API error while syncing: %s", self.key, err)
                delay = 1.0
            except Exception:
                log.exception("pod %s: sync failed", self.key)
                delay = 5.0
        await self.probes.close()
        self.kubelet.worker_done(self)

    # -- one pass ------------------------------------------------------------------------

    async def sync(self) -> float | None:
        pod = self.kubelet.pod_by_uid(self.uid)
        if pod is None:
            await self._terminate(None, grace=0)
            await self._cleanup()
            return None
        self.pod = pod
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            grace = meta.get("deletionGracePeriodSeconds")
            await self._terminate(pod, grace=DEFAULT_GRACE_SECONDS if grace is None else grace)
            await self._finish_deletion(pod)
            return None
        phase = (pod.get("status") or {}).get("phase")
        if phase in TERMINAL_PHASES and self._last_status is None and not self.views:
            await self._adopt(pod)
            if not any(v.running for v in self.views.values()):
                return None  # a finished pod from before a restart: nothing to do
        if self.deadline_exceeded or self._deadline_passed(pod):
            if not self.deadline_exceeded:
                self.deadline_exceeded = True
                await self.kubelet.event(pod, "Normal", "DeadlineExceeded",
                                         "Pod was active on the node longer than the "
                                         "specified deadline")
            await self._stop_all(pod, grace=_grace(pod))
            await self._report(pod, phase_override=(
                "Failed", "DeadlineExceeded",
                "Pod was active on the node longer than the specified deadline"))
            return None
        if not self.views:
            await self._adopt(pod)
        try:
            await self._ensure_sandbox(pod)
        except _Waiting as err:
            await self.kubelet.event(pod, "Warning", err.event, err.message)
            await self._report(pod)
            return 10.0
        now = time.monotonic()
        if self.volume_paths is None or now >= self._next_resync:
            try:
                self.volume_paths = await self.kubelet.volumes.prepare(pod)
            except VolumeError as err:
                await self.kubelet.event(pod, "Warning", "FailedMount", str(err))
                await self._report(pod)
                return 5.0
            self._next_resync = now + RESYNC_SECONDS
        exceeded = self.kubelet.volumes.usage_exceeded(pod)
        if exceeded:
            await self._evict(pod, exceeded)
            return None
        await self._refresh(pod)
        waits = [RESYNC_SECONDS]
        initialized = await self._sync_init_containers(pod, waits)
        if initialized:
            await self._sync_containers(pod, waits)
        status = await self._report(pod)
        if status.get("phase") in TERMINAL_PHASES:
            await self._stop_sidecars(pod)
        deadline = self._deadline_remaining(pod)
        if deadline is not None:
            waits.append(deadline)
        return max(0.05, min(waits))

    # -- containers ------------------------------------------------------------------------

    def _spec_views(self, pod: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], ContainerView]]:
        spec = pod.get("spec") or {}
        pairs = []
        for container in spec.get("initContainers") or ():
            kind = "sidecar" if container.get("restartPolicy") == "Always" else "init"
            pairs.append((container, self._view(container, kind)))
        for container in spec.get("containers") or ():
            pairs.append((container, self._view(container, "regular")))
        return pairs

    def _view(self, container: Mapping[str, Any], kind: str) -> ContainerView:
        view = self.views.get(container["name"])
        if view is None:
            view = ContainerView(name=container["name"], image=container.get("image", ""),
                                 kind=kind)
            if kind == "regular" and (self.pod or {}).get("spec", {}).get("initContainers"):
                view.waiting_reason = "PodInitializing"
            self.views[container["name"]] = view
        return view

    async def _adopt(self, pod: Mapping[str, Any]) -> None:
        """Take over the containers a previous kubelet started for this pod (found by their
        labels when this kubelet started)."""
        found: dict[str, list[ContainerStatus]] = {}
        for runtime, status in self.kubelet.existing_containers(self.uid):
            self.runtime = runtime
            found.setdefault(status.name, []).append(status)
        if self.runtime is None:
            self.runtime = self._runtime_guess(pod)
        for container, view in self._spec_views(pod):
            runs = sorted(found.get(container["name"], ()), key=lambda s: s.attempt)
            if runs:
                view.current = runs[-1]
                view.previous = runs[-2] if len(runs) > 1 else None
                view.image_id = runs[-1].image_id
                if view.current.state == "running":
                    self._watch_probes(pod, container, view)

    def _runtime_guess(self, pod: Mapping[str, Any]) -> Runtime | None:
        try:
            return self.kubelet.runtime_for_handler(self.kubelet.cached_handler(pod))
        except (RuntimeUnavailable, KeyError):
            return None

    async def _refresh(self, pod: Mapping[str, Any]) -> None:
        """Bring each view's current run up to date from the runtime."""
        assert self.runtime is not None
        for container, view in self._spec_views(pod):
            if view.current is None:
                continue
            status = await self.runtime.container_status(view.current.id)
            if status is None:
                continue
            if view.current.state == "running" and status.state == "exited":
                await self.probes.remove(status.id)
                view.ready = False
                status = await self._fallback_message(pod, container, status)
            elif view.current.state == "exited" and view.current.id == status.id:
                status = dataclasses.replace(status, message=view.current.message)
            view.current = status

    async def _fallback_message(self, pod: Mapping[str, Any], container: Mapping[str, Any],
                                status: ContainerStatus) -> ContainerStatus:
        """terminationMessagePolicy FallbackToLogsOnError: a failed container that wrote no
        termination message gets the tail of its log (80 lines, 2048 bytes at most)."""
        if status.message or status.exit_code == 0 or \
                container.get("terminationMessagePolicy") != "FallbackToLogsOnError":
            return status
        path = self.kubelet.pod_dir(pod) / status.name / f"{status.attempt}.log"
        chunks = [chunk async for chunk in read_log(path, tail_lines=FALLBACK_LOG_LINES)]
        tail = b"".join(chunks)[-FALLBACK_LOG_BYTES:].decode("utf-8", "replace")
        return dataclasses.replace(status, message=tail)

    async def _sync_init_containers(self, pod: Mapping[str, Any], waits: list[float]) -> bool:
        """Run init containers in order; True once all have completed (sidecars started)."""
        policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
        for container, view in self._spec_views(pod):
            if view.kind == "regular":
                continue
            if view.kind == "sidecar":
                await self._keep_running(pod, container, view, restart=True, waits=waits)
                if not (view.running and view.started):
                    return False
                continue
            if view.succeeded:
                continue
            if view.running:
                return False
            if view.exited:
                if policy == "Never":
                    return False  # the pod fails: phase computed from this below
                await self._restart_after_backoff(pod, container, view, waits)
                return False
            await self._start(pod, container, view, waits)
            return False
        return True

    async def _sync_containers(self, pod: Mapping[str, Any], waits: list[float]) -> None:
        policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
        for container, view in self._spec_views(pod):
            if view.kind != "regular":
                continue
            if view.current is None:
                await self._start(pod, container, view, waits)
                continue
            if view.running:
                if view.current.id in self._liveness_failed:
                    await self._kill_for_liveness(pod, container, view)
                else:
                    continue
            if view.exited:
                code = view.current.exit_code
                if policy == "Always" or (policy == "OnFailure" and code != 0):
                    await self._restart_after_backoff(pod, container, view, waits)

    async def _keep_running(self, pod: Mapping[str, Any], container: Mapping[str, Any],
                            view: ContainerView, *, restart: bool, waits: list[float]) -> None:
        if view.current is None:
            await self._start(pod, container, view, waits)
        elif view.running and view.current.id in self._liveness_failed:
            await self._kill_for_liveness(pod, container, view)
            await self._restart_after_backoff(pod, container, view, waits)
        elif view.exited and restart:
            await self._restart_after_backoff(pod, container, view, waits)

    def restart_pending(self, pod: Mapping[str, Any]) -> set[str]:
        """Names of exited containers this worker will start again."""
        policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
        pending = set()
        if self.deadline_exceeded or (pod.get("metadata") or {}).get("deletionTimestamp"):
            return pending
        for view in self.views.values():
            if not view.exited or view.current is None:
                continue
            failed = view.current.exit_code != 0
            if view.kind == "sidecar" or (view.kind == "init" and failed and policy != "Never") \
                    or (view.kind == "regular" and (policy == "Always" or (
                        policy == "OnFailure" and failed))):
                pending.add(view.name)
        return pending

    async def _restart_after_backoff(self, pod: Mapping[str, Any], container: Mapping[str, Any],
                                     view: ContainerView, waits: list[float]) -> None:
        assert view.current is not None
        ran = (view.current.finished_at or 0) - (view.current.started_at or 0)
        delay = 0.0 if ran >= BACKOFF_RESET_SECONDS else restart_backoff(view.restart_count)
        due = (view.current.finished_at or time.time()) + delay
        remaining = due - time.time()
        if remaining > 0:
            meta = pod["metadata"]
            message = (f"back-off {delay:g}s restarting failed container={view.name} "
                       f"pod={meta['name']}_{meta.get('namespace')}({meta['uid']})")
            if view.waiting_reason != "CrashLoopBackOff" or view.waiting_message != message:
                await self.kubelet.event(pod, "Warning", "BackOff",
                                         f"Back-off restarting failed container {view.name} "
                                         f"in pod {meta['name']}_{meta.get('namespace')}"
                                         f"({meta['uid']})")
            view.waiting_reason, view.waiting_message = "CrashLoopBackOff", message
            waits.append(remaining)
            return
        await self._start(pod, container, view, waits)

    async def _kill_for_liveness(self, pod: Mapping[str, Any], container: Mapping[str, Any],
                                 view: ContainerView) -> None:
        assert view.current is not None and self.runtime is not None
        cid = view.current.id
        self._liveness_failed.discard(cid)
        probe = container.get("livenessProbe") or container.get("startupProbe") or {}
        grace = probe.get("terminationGracePeriodSeconds")
        await self.kubelet.event(pod, "Normal", "Killing",
                                 f"Container {view.name} failed liveness probe, will be "
                                 "restarted")
        await self._stop_container(pod, container, view,
                                   grace=_grace(pod) if grace is None else grace)

    async def _start(self, pod: Mapping[str, Any], container: Mapping[str, Any],
                     view: ContainerView, waits: list[float]) -> None:
        name = view.name
        retry_at = self._retry_at.get(name, 0.0)
        if time.monotonic() < retry_at:
            waits.append(retry_at - time.monotonic())
            return
        assert self.runtime is not None and self.sandbox is not None
        attempt = view.current.attempt + 1 if view.current is not None else 0
        try:
            config = await self._container_config(pod, container, view, attempt)
            status = await self.runtime.start_container(self.sandbox, config)
        except (_Waiting, RuntimeFailure) as err:
            reason = err.reason
            message = err.message
            view.waiting_reason, view.waiting_message = reason, message
            failures = self._start_failures.get(name, 0) + 1
            self._start_failures[name] = failures
            delay = restart_backoff(failures)
            self._retry_at[name] = time.monotonic() + max(delay, 1.0)
            waits.append(max(delay, 1.0))
            event = err.event if isinstance(err, _Waiting) else "Failed"
            await self.kubelet.event(pod, "Warning", event, f"Error: {message}")
            return
        self._start_failures.pop(name, None)
        self._retry_at.pop(name, None)
        if view.current is not None and view.current.state == "exited":
            view.previous = view.current
        view.current = status
        view.waiting_reason, view.waiting_message = "ContainerCreating", ""
        view.ready = False
        view.started = not container.get("startupProbe")
        await self.kubelet.event(pod, "Normal", "Created", f"Created container {name}")
        await self.kubelet.event(pod, "Normal", "Started", f"Started container {name}")
        self._remove_old_runs(view)
        hook = ((container.get("lifecycle") or {}).get("postStart"))
        if hook:
            ok, output = await self._run_hook(hook, container, status.id, _grace(pod))
            if not ok:
                await self.kubelet.event(pod, "Warning", "FailedPostStartHook",
                                         f"PostStartHook failed: {output}".strip())
                await self._stop_container(pod, container, view, grace=_grace(pod))
                return
        self._watch_probes(pod, container, view)

    def _remove_old_runs(self, view: ContainerView) -> None:
        """Keep the current and the previous run of each container (for --previous); there
        is an older one to remove only from the third run on."""
        if view.current is None or view.current.attempt < 2:
            return
        keep = {s.id for s in (view.current, view.previous) if s is not None}
        self.kubelet.collect_old_runs(self.uid, view.name, keep)

    async def _container_config(self, pod: Mapping[str, Any], container: Mapping[str, Any],
                                view: ContainerView, attempt: int) -> ContainerConfig:
        image_ref = await self.kubelet.ensure_image(pod, container)
        view.image_id = image_ref.id
        assert self.sandbox is not None
        try:
            env = await container_env(
                pod, container, lookup=self.kubelet.lookup, services=self.kubelet.services(),
                pod_ip=self.sandbox.ip, host_ip=self.kubelet.node_ip,
                node_name=self.kubelet.node_name,
                node_allocatable=self.kubelet.allocatable)
        except ConfigError as err:
            raise _Waiting("CreateContainerConfigError", str(err)) from None
        argv = container_argv(container, env)
        if not argv:
            raise _Waiting("RunContainerError",
                           "no command specified: the image has no entrypoint, so the "
                           "container needs a command")
        try:
            mounts = self.kubelet.volumes.mounts(pod, container, self.volume_paths or {},
                                                 env=env)
        except VolumeError as err:
            raise _Waiting("CreateContainerConfigError", str(err)) from None
        limits = (container.get("resources") or {}).get("limits") or {}
        cpu = limits.get("cpu")
        memory = limits.get("memory")
        pod_dir = self.kubelet.pod_dir(pod)
        meta = pod["metadata"]
        return ContainerConfig(
            name=view.name, attempt=attempt, image=container.get("image", ""),
            image_dir=image_ref.dir, argv=argv, env=env,
            working_dir=container.get("workingDir") or None, mounts=mounts,
            log_path=pod_dir / view.name / f"{attempt}.log",
            termination_message_path=container.get("terminationMessagePath")
            or "/dev/termination-log",
            tty=bool(container.get("tty")), stdin=bool(container.get("stdin")),
            stdin_once=bool(container.get("stdinOnce")),
            cpu_limit_millicores=int(parse_quantity(str(cpu)) * 1000) if cpu else None,
            memory_limit_bytes=int(parse_quantity(str(memory))) if memory else None,
            labels={LABEL_POD_UID: meta["uid"], LABEL_POD_NAME: meta["name"],
                    LABEL_POD_NAMESPACE: meta.get("namespace", ""),
                    LABEL_CONTAINER: view.name, LABEL_KIND: view.kind})

    # -- probes and hooks ----------------------------------------------------------------

    def _watch_probes(self, pod: Mapping[str, Any], container: Mapping[str, Any],
                      view: ContainerView) -> None:
        assert view.current is not None and self.sandbox is not None
        cid = view.current.id
        if not any(container.get(k) for k in ("livenessProbe", "readinessProbe",
                                             "startupProbe")):
            view.started = True
            view.ready = True
            return
        view.started = not container.get("startupProbe")
        view.ready = view.started and not container.get("readinessProbe")
        self.probes.add(cid, container, pod_ip=self.sandbox.ip,
                        exec_probe=self._exec_probe(cid), started_at=view.current.started_at)

    def _on_probe_change(self, container_id: str, result: ProbeResult) -> None:
        for view in self.views.values():
            if view.current is None or view.current.id != container_id:
                continue
            if result.kind == "readiness":
                view.ready = result.success
            elif result.success:  # startup passed: liveness and readiness begin
                view.started = True
                container = _container_spec(self.pod or {}, view.name) or {}
                view.ready = not container.get("readinessProbe")
            else:  # liveness or startup failed: the container is restarted
                self._liveness_failed.add(container_id)
        self.wake()

    def _on_probe_event(self, container_id: str, event: ProbeEvent) -> None:
        if self.pod is not None:
            asyncio.get_running_loop().create_task(self.kubelet.event(
                self.pod, event.type, event.reason, event.message))

    def _exec_probe(self, container_id: str):  # noqa: ANN202 - a closure for the prober
        async def run(argv: list[str], timeout: float) -> tuple[int, str]:
            assert self.runtime is not None
            return await exec_collect(self.runtime, container_id, argv, timeout)
        return run

    async def _run_hook(self, hook: Mapping[str, Any], container: Mapping[str, Any],
                        container_id: str, timeout: float) -> tuple[bool, str]:
        if "sleep" in hook:
            await asyncio.sleep(float((hook.get("sleep") or {}).get("seconds") or 0))
            return True, ""
        assert self.sandbox is not None
        probe = {**hook, "timeoutSeconds": max(1, int(timeout))}
        outcome, output = await run_probe(probe, pod_ip=self.sandbox.ip, container=container,
                                          exec_probe=self._exec_probe(container_id))
        return outcome.ok, output

    # -- sandbox ----------------------------------------------------------------------------

    async def _ensure_sandbox(self, pod: Mapping[str, Any]) -> None:
        try:
            handler = await self.kubelet.runtime_handler(pod)
            self.runtime = self.kubelet.runtime_for_handler(handler)
        except (RuntimeUnavailable, KeyError) as err:
            message = err.args[0] if err.args else str(err)
            raise _Waiting("ContainerCreating", f"Failed to create pod sandbox: {message}",
                           event="FailedCreatePodSandBox") from None
        if self.sandbox is not None:
            return
        meta = pod["metadata"]
        ip, netns = await self.kubelet.sandbox_network(pod, self.runtime)
        hostname, domain = self.kubelet.pod_hostname(pod)
        sandbox = PodSandboxConfig(
            uid=meta["uid"], namespace=meta.get("namespace", ""), name=meta["name"],
            hostname=hostname, pod_dir=self.kubelet.pod_dir(pod), ip=ip,
            hosts=self.kubelet.hosts_file(pod, ip=ip, hostname=hostname, domain=domain),
            resolv_conf=self.kubelet.resolv_conf(pod),
            labels={LABEL_POD_UID: meta["uid"], LABEL_POD_NAME: meta["name"],
                    LABEL_POD_NAMESPACE: meta.get("namespace", "")}, netns=netns)
        try:
            await self.runtime.run_pod_sandbox(sandbox)
        except RuntimeFailure as err:
            raise _Waiting("ContainerCreating", f"Failed to create pod sandbox: {err.message}",
                           event="FailedCreatePodSandBox") from None
        self.sandbox = sandbox

    # -- stopping ---------------------------------------------------------------------------

    async def _stop_container(self, pod: Mapping[str, Any] | None,
                              container: Mapping[str, Any] | None, view: ContainerView, *,
                              grace: float) -> None:
        if self.runtime is None or view.current is None or view.current.state != "running":
            return
        cid = view.current.id
        deadline = time.monotonic() + grace
        hook = ((container or {}).get("lifecycle") or {}).get("preStop")
        if hook and grace > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                ok, output = await asyncio.wait_for(
                    self._run_hook(hook, container or {}, cid, grace), grace)
                if not ok and pod is not None:
                    await self.kubelet.event(pod, "Warning", "FailedPreStopHook",
                                             f"PreStopHook failed: {output}".strip())
        await self.probes.remove(cid)
        await self.runtime.stop_container(cid, max(0.0, deadline - time.monotonic()))
        status = await self.runtime.container_status(cid)
        if status is not None:
            view.current = status
        view.ready = False

    async def _stop_all(self, pod: Mapping[str, Any] | None, *, grace: float) -> None:
        """Regular containers together, then sidecars in reverse order, within `grace`."""
        deadline = time.monotonic() + grace
        specs = {c["name"]: c for c in _all_containers(pod)} if pod is not None else {}
        regular = [v for v in self.views.values() if v.kind != "sidecar" and v.running]
        sidecars = [v for v in self.views.values() if v.kind == "sidecar" and v.running]
        for view in [*regular, *sidecars]:
            if pod is not None:
                await self.kubelet.event(pod, "Normal", "Killing",
                                         f"Stopping container {view.name}")
        await asyncio.gather(*(self._stop_container(pod, specs.get(v.name), v,
                                                    grace=max(0.0, deadline - time.monotonic()))
                               for v in regular))
        for view in reversed(sidecars):
            await self._stop_container(pod, specs.get(view.name), view,
                                       grace=max(0.0, deadline - time.monotonic()))

    async def shut_down(self, *, grace: float) -> None:
        """The node is shutting down: stop the containers and release memory volumes; the
        pod's folder and API object stay, and the next kubelet runs the pod again."""
        await self._stop_all(self.pod, grace=grace)
        if self.pod is not None:
            await self.kubelet.volumes.release_memory(self.kubelet.pod_dir(self.pod))

    async def _stop_sidecars(self, pod: Mapping[str, Any]) -> None:
        if any(v.kind == "sidecar" and v.running for v in self.views.values()):
            specs = {c["name"]: c for c in _all_containers(pod)}
            for view in reversed([v for v in self.views.values() if v.kind == "sidecar"]):
                await self._stop_container(pod, specs.get(view.name), view, grace=_grace(pod))
            await self._report(pod)

    async def _terminate(self, pod: Mapping[str, Any] | None, *, grace: float) -> None:
        self.probes.terminating()
        if self.runtime is None and pod is not None:
            await self._adopt(pod)
        await self._stop_all(pod, grace=grace)

    async def _finish_deletion(self, pod: Mapping[str, Any]) -> None:
        await self._report(pod, final=True)
        meta = pod["metadata"]
        try:
            await self.kubelet.client.delete("v1", "pods", meta["name"], meta.get("namespace"),
                                             grace_period_seconds=0,
                                             preconditions={"uid": meta["uid"]})
        except ApiError as err:
            if not (err.not_found or err.conflict):
                raise
        await self._cleanup()

    async def _evict(self, pod: Mapping[str, Any], message: str) -> None:
        await self.kubelet.event(pod, "Warning", "Evicted", message)
        await self._stop_all(pod, grace=_grace(pod))
        await self._report(pod, phase_override=("Failed", "Evicted", message))

    async def _cleanup(self) -> None:
        """The pod is gone: forget its containers, sandbox, volumes and folder."""
        await self.probes.close()
        pod_dir = self.kubelet.pod_dir_by_uid(self.uid)
        if self.runtime is not None:
            for status in await self.runtime.list_containers():
                if status.labels.get(LABEL_POD_UID) == self.uid:
                    if status.state == "running":
                        await self.runtime.stop_container(status.id, 0)
                    await self.runtime.remove_container(status.id)
            sandbox = self.sandbox
            if sandbox is None and pod_dir is not None:
                # Adopted after a restart and deleted before it ran again: what the runtime
                # needs to forget the sandbox (its folder and cgroups) is the uid and folder.
                sandbox = PodSandboxConfig(uid=self.uid, namespace="", name="", hostname="",
                                           pod_dir=pod_dir, ip="", hosts="", resolv_conf="")
            if sandbox is not None:
                await self.runtime.remove_pod_sandbox(sandbox)
        if pod_dir is not None:
            await self.kubelet.volumes.cleanup(self.uid, pod_dir)
            await asyncio.to_thread(shutil.rmtree, pod_dir, True)
        await self.kubelet.release_network(self.uid)
        self.done = True

    # -- status -----------------------------------------------------------------------------

    def _deadline_remaining(self, pod: Mapping[str, Any]) -> float | None:
        deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds")
        started = parse_time((pod.get("status") or {}).get("startTime"))
        if deadline is None or started is None:
            return None
        return started.timestamp() + float(deadline) - time.time()

    def _deadline_passed(self, pod: Mapping[str, Any]) -> bool:
        remaining = self._deadline_remaining(pod)
        return remaining is not None and remaining <= 0

    async def _report(self, pod: Mapping[str, Any], *, final: bool = False,
                      phase_override: tuple[str, str, str] | None = None) -> dict[str, Any]:
        status = self.status(pod, final=final, phase_override=phase_override)
        current = pod.get("status") or {}
        if all(current.get(k) == v for k, v in status.items()) or status == self._last_status:
            return status
        meta = pod["metadata"]
        try:
            await self.kubelet.client.patch(
                "v1", "pods", meta["name"], {"metadata": {"uid": meta["uid"]}, "status": status},
                meta.get("namespace"), subresource="status")
        except ApiError as err:
            if err.not_found or err.conflict:
                return status
            raise
        self._last_status = status
        return status

    def status(self, pod: Mapping[str, Any], *, final: bool = False,
               phase_override: tuple[str, str, str] | None = None) -> dict[str, Any]:
        now = rfc3339()
        pending = set() if final else self.restart_pending(pod)
        pairs = self._spec_views(pod)
        init_views = [v for _, v in pairs if v.kind != "regular"]
        main_views = [v for _, v in pairs if v.kind == "regular"]
        init_pending = [v.name for v in init_views
                        if not (v.succeeded or (v.kind == "sidecar" and v.running and v.started))]
        initialized = not init_pending
        statuses = [podstatus.container_status(v, restart_pending=v.name in pending)
                    for v in main_views]
        init_statuses = [podstatus.container_status(v, restart_pending=v.name in pending)
                         for v in init_views]
        policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
        if phase_override is not None:
            phase = phase_override[0]
        elif not initialized and policy == "Never" and any(
                v.exited and not v.succeeded for v in init_views if v.kind == "init"):
            phase = "Failed"
        else:
            phase = podstatus.pod_phase(pod, list(self.views.values()),
                                        initialized=initialized, restart_pending=pending)
        if final and phase not in TERMINAL_PHASES:
            phase = "Succeeded" if main_views and all(v.succeeded for v in main_views) \
                else "Failed"
        current = pod.get("status") or {}
        ip = self.sandbox.ip if self.sandbox is not None else current.get("podIP")
        result: dict[str, Any] = {
            "phase": phase,
            "conditions": podstatus.pod_conditions(
                pod, phase=phase, sandbox_ready=self.sandbox is not None,
                initialized=initialized, init_pending=init_pending, statuses=statuses,
                now=now),
            "hostIP": self.kubelet.node_ip, "hostIPs": [{"ip": self.kubelet.node_ip}],
            "startTime": current.get("startTime") or now,
            "containerStatuses": statuses,
            "qosClass": current.get("qosClass"),
        }
        if ip:
            result["podIP"] = ip
            result["podIPs"] = [{"ip": ip}]
        if init_statuses:
            result["initContainerStatuses"] = init_statuses
        if phase_override is not None:
            result["reason"], result["message"] = phase_override[1], phase_override[2]
        if result["qosClass"] is None:
            del result["qosClass"]
        return result


def _grace(pod: Mapping[str, Any]) -> float:
    grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    return float(DEFAULT_GRACE_SECONDS if grace is None else grace)


def _all_containers(pod: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    spec = (pod or {}).get("spec") or {}
    return [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]


def _container_spec(pod: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    return next((c for c in _all_containers(pod) if c.get("name") == name), None)


async def exec_collect(runtime: Runtime, container_id: str, argv: list[str],
                       timeout: float) -> tuple[int, str]:
    """Run a command in a container and collect its exit code and (capped) output."""
    session = await runtime.exec(container_id, argv, tty=False, stdin=False)
    chunks: list[bytes] = []
    size = 0

    async def drain() -> int:
        nonlocal size
        async for _stream, data in session.output():
            if size < 10240:
                chunks.append(data)
                size += len(data)
        return await session.wait()

    try:
        code = await asyncio.wait_for(drain(), timeout)
    except TimeoutError:
        await session.close()
        raise
    return code, b"".join(chunks).decode("utf-8", "replace")[:10240]

