"""Hollow nodes: what they register and what they report for the pods bound to them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pilothouse.node.hollow import (
    EXIT_CODE_ANNOTATION,
    RUN_SECONDS_ANNOTATION,
    exit_plan,
    lease_object,
    needs_status,
    node_ip,
    node_object,
    node_status,
    pod_status,
    restart_backoff,
)

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
CAPACITY = {"cpu": "8", "memory": "32Gi", "pods": "110"}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# -- nodes ---------------------------------------------------------------------------------

def test_a_registered_node_looks_like_a_kubelets() -> None:
    node = node_object("h-0", ip="10.64.0.1", capacity=CAPACITY, labels={"zone": "a"},
                       taints=[{"key": "gpu", "effect": "NoSchedule"}], now=T0)
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "h-0"
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["node.kubernetes.io/instance-type"] == "hollow"
    assert labels["kubernetes.io/arch"] and labels["zone"] == "a"
    assert node["spec"]["taints"] == [{"key": "gpu", "effect": "NoSchedule"}]
    status = node["status"]
    assert status["capacity"] == status["allocatable"] == {**CAPACITY,
                                                           "ephemeral-storage": "100Gi"}
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == ("True",
                                                                              "KubeletReady")
    assert {conditions[k]["status"] for k in ("MemoryPressure", "DiskPressure",
                                              "PIDPressure")} == {"False"}
    assert {"type": "InternalIP", "address": "10.64.0.1"} in status["addresses"]
    assert status["nodeInfo"]["kubeletVersion"] == "v1.32.0"
    assert status["nodeInfo"]["containerRuntimeVersion"] == "hollow://"
    assert not needs_status(node)


def test_a_reposted_status_keeps_transition_times_unless_the_status_changed() -> None:
    first = node_status("h-0", ip="10.64.0.1", capacity=CAPACITY, now=T0, previous=None)
    again = node_status("h-0", ip="10.64.0.1", capacity=CAPACITY, now=at(300), previous=first)
    ready = next(c for c in again["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == "2025-01-01T12:00:00Z"
    assert ready["lastHeartbeatTime"] == "2025-01-01T12:05:00Z"
    lost = {**first, "conditions": [{**c, "status": "Unknown"} for c in first["conditions"]]}
    assert needs_status({"status": lost})
    back = node_status("h-0", ip="10.64.0.1", capacity=CAPACITY, now=at(400), previous=lost)
    assert {c["lastTransitionTime"] for c in back["conditions"]} == {"2025-01-01T12:06:40Z"}


def test_node_addresses_are_stable_and_distinct() -> None:
    assert node_ip("h-", 0) == node_ip("h-", 0)
    assert len({node_ip("h-", i) for i in range(500)}) == 500
    assert node_ip("h-", 0).startswith("10.")


def test_the_lease_is_held_by_and_owned_by_its_node() -> None:
    lease = lease_object("h-0", "uid-1", T0, duration=4)
    assert lease["metadata"]["namespace"] == "kube-node-lease"
    assert lease["metadata"]["ownerReferences"][0] == {
        "apiVersion": "v1", "kind": "Node", "name": "h-0", "uid": "uid-1"}
    assert lease["spec"] == {"holderIdentity": "h-0", "leaseDurationSeconds": 4,
                             "renewTime": "2025-01-01T12:00:00.000000Z"}


# -- pods ----------------------------------------------------------------------------------

def pod(*, exit_code: int | None = None, run_seconds: float | None = None,
        restart_policy: str = "Always", status: dict[str, Any] | None = None,
        **spec: Any) -> dict[str, Any]:
    annotations = {}
    if exit_code is not None:
        annotations[EXIT_CODE_ANNOTATION] = str(exit_code)
    if run_seconds is not None:
        annotations[RUN_SECONDS_ANNOTATION] = str(run_seconds)
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                         "annotations": annotations},
            "spec": {"nodeName": "h-0", "restartPolicy": restart_policy,
                     "containers": [{"name": "main", "image": "busybox"}], **spec},
            "status": status or {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                 "lastTransitionTime": "2025-01-01T11:59:59Z"}]}}


def report(obj: dict[str, Any], now: datetime) -> tuple[dict[str, Any] | None, float | None]:
    return pod_status(obj, host_ip="10.64.0.1", pod_ip="10.128.0.5", now=now)


def step(obj: dict[str, Any], now: datetime) -> tuple[dict[str, Any], float | None]:
    """Report, and apply the report as the API server would."""
    status, again = report(obj, now)
    assert status is not None
    return {**obj, "status": {**obj["status"], **status}}, again


def conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in obj["status"]["conditions"]}


def test_exit_plan_reads_the_test_hooks() -> None:
    assert exit_plan(pod()) is None
    assert exit_plan(pod(exit_code=3)) == (3, 1.0)
    assert exit_plan(pod(exit_code=0, run_seconds=2.5)) == (0, 2.5)
    assert exit_plan({"metadata": {"annotations": {EXIT_CODE_ANNOTATION: "x"}}}) is None


def test_restart_backoff_doubles_up_to_five_minutes() -> None:
    assert [restart_backoff(n) for n in range(7)] == [0, 10, 20, 40, 80, 160, 300]


def test_a_bound_pod_runs_and_then_nothing_changes() -> None:
    running, again = step(pod(), T0)
    assert again is None
    status = running["status"]
    assert status["phase"] == "Running"
    assert conditions(running) == {"PodReadyToStartContainers": "True", "Initialized": "True",
                                   "Ready": "True", "ContainersReady": "True",
                                   "PodScheduled": "True"}
    assert (status["podIP"], status["hostIP"]) == ("10.128.0.5", "10.64.0.1")
    assert status["podIPs"] == [{"ip": "10.128.0.5"}]
    assert status["startTime"] == "2025-01-01T12:00:00Z"
    container = status["containerStatuses"][0]
    assert container["ready"] and container["started"]
    assert container["state"] == {"running": {"startedAt": "2025-01-01T12:00:00Z"}}
    assert container["containerID"].startswith("hollow://")
    assert report(running, at(60)) == (None, None)


def test_a_pod_marked_not_ready_by_the_controller_is_reported_ready_again() -> None:
    running, _ = step(pod(), T0)
    running["status"]["conditions"] = [
        {**c, "status": "False"} if c["type"] == "Ready" else c
        for c in running["status"]["conditions"]] + [
        {"type": "DisruptionTarget", "status": "True"}]
    repaired, _ = step(running, at(30))
    assert conditions(repaired)["Ready"] == "True"
    assert conditions(repaired)["DisruptionTarget"] == "True"


def test_exit_zero_under_never_succeeds_after_the_run_time() -> None:
    running, again = step(pod(exit_code=0, restart_policy="Never", run_seconds=2), T0)
    assert again == 2
    status, again = report(running, at(1))
    assert status is None and again == 1
    done, again = step(running, at(2))
    assert again is None
    assert done["status"]["phase"] == "Succeeded"
    terminated = done["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert conditions(done)["Ready"] == "False"
    assert report(done, at(100)) == (None, None)


def test_a_failing_container_under_never_fails_the_pod() -> None:
    running, _ = step(pod(exit_code=3, restart_policy="Never"), T0)
    failed, _ = step(running, at(1))
    assert failed["status"]["phase"] == "Failed"
    terminated = failed["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")


def test_on_failure_restarts_then_backs_off_in_crash_loop() -> None:
    running, _ = step(pod(exit_code=1, restart_policy="OnFailure"), T0)
    restarted, again = step(running, at(1))
    container = restarted["status"]["containerStatuses"][0]
    assert restarted["status"]["phase"] == "Running" and again == 1
    assert container["restartCount"] == 1 and "running" in container["state"]
    assert container["lastState"]["terminated"]["reason"] == "Error"
    crashed, again = step(restarted, at(2))
    container = crashed["status"]["containerStatuses"][0]
    assert container["state"]["waiting"]["reason"] == "CrashLoopBackOff" and again == 10
    assert conditions(crashed)["Ready"] == "False"
    assert report(crashed, at(5)) == (None, 7)
    back, _ = step(crashed, at(12))
    container = back["status"]["containerStatuses"][0]
    assert container["restartCount"] == 2 and "running" in container["state"]


def test_on_failure_ends_the_pod_on_success_and_always_restarts_it() -> None:
    done, _ = step(step(pod(exit_code=0, restart_policy="OnFailure"), T0)[0], at(1))
    assert done["status"]["phase"] == "Succeeded"
    again, _ = step(step(pod(exit_code=0, restart_policy="Always"), T0)[0], at(1))
    container = again["status"]["containerStatuses"][0]
    assert again["status"]["phase"] == "Running" and container["restartCount"] == 1
    assert container["lastState"]["terminated"]["reason"] == "Completed"


def test_init_containers_have_completed_and_sidecars_run() -> None:
    running, _ = step(pod(initContainers=[{"name": "setup", "image": "busybox"},
                                          {"name": "proxy", "image": "envoy",
                                           "restartPolicy": "Always"}]), T0)
    setup, proxy = running["status"]["initContainerStatuses"]
    assert setup["state"]["terminated"]["reason"] == "Completed"
    assert "running" in proxy["state"]
    assert report(running, at(5)) == (None, None)
