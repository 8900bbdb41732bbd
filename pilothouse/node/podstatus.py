"""What the kubelet reports about a pod: phase, conditions and container statuses.

Pure functions over the pod worker's view of its containers (`ContainerView`), so the rules
the real kubelet applies (its `getPhase` and status generation) are pinned by unit tests:

- A container's state is waiting (with the reason the worker set: ContainerCreating,
  PodInitializing, CrashLoopBackOff, CreateContainerConfigError, ErrImagePull, ...),
  running, or terminated (exitCode, reason Completed/Error/OOMKilled, message, times).
  The previous run, if any, is `lastState.terminated`; `restartCount` is the attempt.
- Phase: Pending until the init containers are done and every container has started once;
  Running while any container runs or will be restarted; Succeeded/Failed once every
  container has terminated for good (restartPolicy Never, or OnFailure after success).
  A container waiting to be restarted after a run (CrashLoopBackOff) counts as stopped,
  not pending, as in the kubelet.
- Conditions: PodReadyToStartContainers (the sandbox exists), Initialized, ContainersReady,
  Ready (also gated by readinessGates), with PodScheduled and other writers' conditions
  kept. A condition keeps its lastTransitionTime while its status, reason and message stay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..machinery.meta import rfc3339
from .runtime.base import ContainerStatus

TERMINAL_PHASES = ("Succeeded", "Failed")
#: The kubelet's container restart back-off: none for the first restart, then 10 s
#: doubling up to 5 minutes.
BACKOFF_BASE = 10.0
BACKOFF_MAX = 300.0


def restart_backoff(restarts: int) -> float:
    """Seconds to wait before restarting a container that has restarted `restarts` times."""
    if restarts <= 0:
        return 0.0
    return min(BACKOFF_BASE * 2 ** (restarts - 1), BACKOFF_MAX)


@dataclass
class ContainerView:
    """The worker's knowledge of one container of the pod (all of its runs)."""

    name: str
    image: str
    #: "init", "sidecar" (an init container with restartPolicy Always) or "regular".
    kind: str
    current: ContainerStatus | None = None
    previous: ContainerStatus | None = None
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    ready: bool = False
    #: The startup probe passed (or there is none) for the current run.
    started: bool = False
    image_id: str = ""

    @property
    def restart_count(self) -> int:
        return self.current.attempt if self.current is not None else 0

    @property
    def running(self) -> bool:
        return self.current is not None and self.current.state == "running"

    @property
    def exited(self) -> bool:
        return self.current is not None and self.current.state == "exited"

    @property
    def succeeded(self) -> bool:
        return self.exited and self.current is not None and self.current.exit_code == 0


def _stamp(seconds: float | None) -> str | None:
    """RFC 3339 (seconds, as the API shows container times) of an epoch time."""
    return rfc3339(datetime.fromtimestamp(seconds, tz=UTC)) if seconds else None


def terminated_state(status: ContainerStatus) -> dict[str, Any]:
    state: dict[str, Any] = {
        "exitCode": status.exit_code if status.exit_code is not None else 137,
        "reason": status.reason or ("Completed" if status.exit_code == 0 else "Error"),
        "startedAt": _stamp(status.started_at),
        "finishedAt": _stamp(status.finished_at),
        "containerID": status.id,
    }
    if status.message:
        state["message"] = status.message
    return state


def container_status(view: ContainerView, *, restart_pending: bool) -> dict[str, Any]:
    """containerStatuses[] for one container. `restart_pending`: an exited container the
    worker will start again (so its state is waiting, the run goes to lastState)."""
    current, previous = view.current, view.previous
    last: dict[str, Any] = {}
    if current is None:
        state: dict[str, Any] = {"waiting": _waiting(view)}
    elif current.state == "running":
        state = {"running": {"startedAt": _stamp(current.started_at)}}
    elif restart_pending:
        state = {"waiting": _waiting(view)}
        last = {"terminated": terminated_state(current)}
    else:
        state = {"terminated": terminated_state(current)}
    if not last and previous is not None and previous.state == "exited":
        last = {"terminated": terminated_state(previous)}
    status: dict[str, Any] = {
        "name": view.name, "state": state, "lastState": last,
        "ready": view.ready and current is not None and current.state == "running",
        "restartCount": view.restart_count, "image": view.image,
        "imageID": view.image_id or (current.image_id if current else ""),
        "started": bool(current is not None and current.state == "running" and view.started),
    }
    if current is not None:
        status["containerID"] = current.id
    return status


def _waiting(view: ContainerView) -> dict[str, Any]:
    waiting: dict[str, Any] = {"reason": view.waiting_reason}
    if view.waiting_message:
        waiting["message"] = view.waiting_message
    return waiting


def pod_phase(pod: Mapping[str, Any], views: Sequence[ContainerView], *,
              initialized: bool, restart_pending: Iterable[str]) -> str:
    """The kubelet's getPhase over the regular containers."""
    if not initialized:
        return "Pending"
    policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
    pending = set(restart_pending)
    regular = [v for v in views if v.kind == "regular"]
    waiting = running = stopped = succeeded = 0
    for view in regular:
        if view.running:
            running += 1
        elif view.exited:
            stopped += 1
            if view.succeeded and view.name not in pending:
                succeeded += 1
        elif view.previous is not None:
            stopped += 1
        else:
            waiting += 1
    if waiting:
        return "Pending" if not running and not stopped else "Running"
    if running:
        return "Running"
    if stopped == len(regular):
        if pending or policy == "Always":
            return "Running"
        if policy == "OnFailure":
            return "Succeeded" if succeeded == stopped else "Running"
        return "Succeeded" if succeeded == stopped else "Failed"
    return "Pending"


def condition(old: Mapping[str, Any] | None, kind: str, status: str, now: str,
              reason: str = "", message: str = "") -> dict[str, Any]:
    """A pod condition, keeping `old` (and its transition time) when nothing changed."""
    if old is not None and old.get("status") == status and old.get("reason", "") == reason \
            and old.get("message", "") == message:
        return dict(old)
    result: dict[str, Any] = {"type": kind, "status": status, "lastProbeTime": None,
                              "lastTransitionTime": now}
    if reason:
        result["reason"] = reason
    if message:
        result["message"] = message
    return result


def pod_conditions(pod: Mapping[str, Any], *, phase: str, sandbox_ready: bool,
                   initialized: bool, init_pending: Sequence[str],
                   statuses: Sequence[Mapping[str, Any]], now: str) -> list[dict[str, Any]]:
    """The kubelet's four conditions; PodScheduled and others' conditions are kept."""
    existing = {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or ()}
    unready = [s["name"] for s in statuses if not s.get("ready")]
    if phase == "Succeeded":
        reason, message = "PodCompleted", ""
    elif unready:
        reason = "ContainersNotReady"
        message = f"containers with unready status: [{' '.join(unready)}]"
    else:
        reason, message = "", ""
    ready = "False" if unready or phase in TERMINAL_PHASES else "True"
    gates = [g.get("conditionType") for g in (pod.get("spec") or {}).get("readinessGates") or ()]
    gated = [g for g in gates if (existing.get(g) or {}).get("status") != "True"]
    pod_ready, pod_reason, pod_message = ready, reason, message
    if ready == "True" and gated:
        pod_ready, pod_reason = "False", "ReadinessGatesNotReady"
        pod_message = (f"corresponding condition of pod readiness gate \"{gated[0]}\" does "
                       "not exist.")
    if initialized:
        init = condition(existing.get("Initialized"), "Initialized", "True", now,
                         "PodCompleted" if phase == "Succeeded" else "")
    else:
        init = condition(existing.get("Initialized"), "Initialized", "False", now,
                         "ContainersNotInitialized",
                         f"containers with incomplete status: [{' '.join(init_pending)}]")
    ours = {
        "PodReadyToStartContainers": condition(
            existing.get("PodReadyToStartContainers"), "PodReadyToStartContainers",
            "True" if sandbox_ready and phase not in TERMINAL_PHASES else "False", now),
        "Initialized": init,
        "Ready": condition(existing.get("Ready"), "Ready", pod_ready, now, pod_reason,
                           pod_message),
        "ContainersReady": condition(existing.get("ContainersReady"), "ContainersReady",
                                     ready, now, reason, message),
        "PodScheduled": existing.get("PodScheduled") or condition(None, "PodScheduled",
                                                                  "True", now),
    }
    others = [c for kind, c in existing.items() if kind not in ours]
    return [*ours.values(), *others]
