"""The kubelet's pod phase, conditions and container statuses (node/podstatus.py)."""

from __future__ import annotations

from pilothouse.node.podstatus import (
    ContainerView,
    container_status,
    pod_conditions,
    pod_phase,
)
from pilothouse.node.runtime.base import ContainerStatus

T0 = 1_790_000_000.0


def run(name: str, attempt: int = 0, *, state: str = "running", code: int | None = None,
        reason: str = "") -> ContainerStatus:
    return ContainerStatus(id=f"process://{name}{attempt}", name=name, attempt=attempt,
                           state=state, labels={}, started_at=T0, exit_code=code,
                           finished_at=T0 + 5 if state == "exited" else None, reason=reason)


def view(name: str, current: ContainerStatus | None = None, *, kind: str = "regular",
         previous: ContainerStatus | None = None, ready: bool = False) -> ContainerView:
    return ContainerView(name=name, image="python:3.11", kind=kind, current=current,
                         previous=previous, ready=ready, started=current is not None)


def pod(policy: str = "Always", **spec: object) -> dict:
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"restartPolicy": policy, "containers": [{"name": "app"}], **spec},
            "status": {}}


def test_pending_until_every_container_has_started() -> None:
    views = [view("a", run("a")), view("b")]
    assert pod_phase(pod(), views, initialized=True, restart_pending=()) == "Running"
    assert pod_phase(pod(), [view("b")], initialized=True, restart_pending=()) == "Pending"
    assert pod_phase(pod(), [view("a", run("a"))], initialized=False,
                     restart_pending=()) == "Pending"


def test_restart_policy_decides_the_end() -> None:
    ok = [view("a", run("a", state="exited", code=0))]
    failed = [view("a", run("a", state="exited", code=1))]
    assert pod_phase(pod("Never"), ok, initialized=True, restart_pending=()) == "Succeeded"
    assert pod_phase(pod("Never"), failed, initialized=True, restart_pending=()) == "Failed"
    assert pod_phase(pod("OnFailure"), ok, initialized=True, restart_pending=()) == "Succeeded"
    assert pod_phase(pod("OnFailure"), failed, initialized=True,
                     restart_pending={"a"}) == "Running"
    assert pod_phase(pod("Always"), ok, initialized=True, restart_pending={"a"}) == "Running"


def test_crash_looping_container_is_waiting_with_its_last_run() -> None:
    crashed = run("a", 2, state="exited", code=1, reason="Error")
    v = view("a", crashed)
    v.waiting_reason, v.waiting_message = "CrashLoopBackOff", "back-off 20s restarting"
    status = container_status(v, restart_pending=True)
    assert status["state"] == {"waiting": {"reason": "CrashLoopBackOff",
                                           "message": "back-off 20s restarting"}}
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert status["lastState"]["terminated"]["reason"] == "Error"
    assert status["restartCount"] == 2
    assert status["ready"] is False


def test_running_container_shows_previous_run_and_readiness() -> None:
    previous = run("a", 0, state="exited", code=137, reason="OOMKilled")
    status = container_status(view("a", run("a", 1), previous=previous, ready=True),
                              restart_pending=False)
    assert "running" in status["state"]
    assert status["lastState"]["terminated"]["reason"] == "OOMKilled"
    assert status["ready"] is True and status["started"] is True
    assert status["containerID"] == "process://a1"


def test_conditions_report_unready_containers_and_keep_transition_times() -> None:
    p = pod()
    statuses = [{"name": "a", "ready": False}, {"name": "b", "ready": True}]
    first = pod_conditions(p, phase="Running", sandbox_ready=True, initialized=True,
                           init_pending=[], statuses=statuses, now="2026-01-01T00:00:00Z")
    by_type = {c["type"]: c for c in first}
    assert by_type["Ready"]["status"] == "False"
    assert by_type["Ready"]["message"] == "containers with unready status: [a]"
    assert by_type["PodReadyToStartContainers"]["status"] == "True"
    p["status"]["conditions"] = first
    again = pod_conditions(p, phase="Running", sandbox_ready=True, initialized=True,
                           init_pending=[], statuses=statuses, now="2026-01-01T00:01:00Z")
    assert {c["type"]: c["lastTransitionTime"] for c in again} == \
        {c["type"]: c["lastTransitionTime"] for c in first}


def test_uninitialized_pod_names_its_pending_init_containers() -> None:
    conditions = pod_conditions(pod(), phase="Pending", sandbox_ready=True, initialized=False,
                                init_pending=["setup"], statuses=[],
                                now="2026-01-01T00:00:00Z")
    init = next(c for c in conditions if c["type"] == "Initialized")
    assert init["status"] == "False"
    assert init["reason"] == "ContainersNotInitialized"
    assert init["message"] == "containers with incomplete status: [setup]"
