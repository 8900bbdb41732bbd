"""The training operator claims its pods as a ControllerRefManager does, on a real `up`.

A PyTorchJob deleted with `kubectl delete --cascade=orphan` leaves its pods running (the
garbage collector strips their ownerReferences); applied again, the job adopts them (the
same pods, now controlled by the new job, none created) and carries on to Succeeded when
its master is told to finish. A pod whose `training.kubeflow.org/job-name` label is
overwritten with `kubectl label` is released (its ownerReference removed) and, once it is
gone (it holds the replica's name), replaced by the job.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import IMAGE, Cluster, get_json, wait_for, wait_for_training_operator

#: The master waits for /tmp/go (written with `kubectl exec`), then exits 0; it gives up
#: with 1 after a bound so a broken test never leaves it running.
MASTER = """
import os, time
deadline = time.monotonic() + 240
while not os.path.exists("/tmp/go"):
    if time.monotonic() > deadline:
        raise SystemExit(1)
    time.sleep(0.2)
"""
WORKER = "import time; time.sleep(600)"
JOB_NAME_LABEL = "training.kubeflow.org/job-name"


@pytest.fixture(scope="module")
def training_operator(cluster: Cluster) -> None:
    wait_for_training_operator(cluster, "pytorchjobs")


def pytorchjob(name: str, namespace: str) -> dict[str, Any]:
    def replica(code: str) -> dict[str, Any]:
        return {"replicas": 1, "template": {"spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "pytorch", "image": IMAGE,
                            "command": ["python", "-c", code]}]}}}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"pytorchReplicaSpecs": {"Master": replica(MASTER),
                                             "Worker": replica(WORKER)}}}


def items(cluster: Cluster, kind: str, namespace: str, job: str) -> dict[str, dict[str, Any]]:
    found = get_json(cluster, kind, "-n", namespace, "-l", f"{JOB_NAME_LABEL}={job}") or {}
    return {o["metadata"]["name"]: o for o in found.get("items") or []}


def controller_uid(obj: dict[str, Any]) -> str | None:
    return next((ref["uid"] for ref in obj["metadata"].get("ownerReferences") or []
                 if ref.get("controller")), None)


def job_state(cluster: Cluster, namespace: str, name: str) -> str:
    out = cluster.kubectl("get", "pytorchjobs", name, "-n", namespace, "--no-headers",
                          check=False).stdout
    fields = out.split()
    return fields[1] if len(fields) >= 3 else ""


def explain(cluster: Cluster, namespace: str) -> str:
    return "\n".join([
        cluster.kubectl("get", "pytorchjobs,pods,services", "-n", namespace, "-o", "yaml",
                        check=False).stdout[-6000:],
        cluster.kubectl("get", "events", "-n", namespace, check=False).stdout,
        (cluster.home / "pilothouse.log").read_text()[-3000:]])


def running_pods(cluster: Cluster, namespace: str, job: str,
                 names: set[str]) -> dict[str, dict[str, Any]]:
    def running() -> dict[str, dict[str, Any]] | None:
        pods = items(cluster, "pods", namespace, job)
        return pods if set(pods) == names and all(
            p.get("status", {}).get("phase") == "Running" for p in pods.values()) else None
    return wait_for(running, f"pods {sorted(names)} Running", timeout=120,
                    explain=lambda: explain(cluster, namespace))


def created_pods(cluster: Cluster, namespace: str, job_uid: str) -> dict[str, int]:
    """How often the job said it created each pod (repeats of an Event are counted)."""
    events = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)
    counts: dict[str, int] = {}
    for event in events["items"]:
        if event["involvedObject"].get("uid") == job_uid and \
                event["reason"] == "SuccessfulCreatePod":
            counts[event["message"]] = counts.get(event["message"], 0) + (event.get("count") or 1)
    return counts


def finish(cluster: Cluster, namespace: str, job: str) -> None:
    cluster.kubectl("exec", f"{job}-master-0", "-n", namespace, "--", "touch", "/tmp/go")
    wait_for(lambda: job_state(cluster, namespace, job) == "Succeeded", f"{job} Succeeded",
             timeout=60, explain=lambda: explain(cluster, namespace))


def test_a_job_applied_again_after_an_orphaning_delete_adopts_its_pods_and_succeeds(
        cluster: Cluster, ns: str, training_operator: None) -> None:
    manifest = json.dumps(pytorchjob("keep", ns))
    cluster.kubectl("apply", "-f", "-", input=manifest)
    names = {"keep-master-0", "keep-worker-0"}
    before = running_pods(cluster, ns, "keep", names)
    services = items(cluster, "services", ns, "keep")
    assert set(services) == names
    first_uid = get_json(cluster, "pytorchjob", "keep", "-n", ns)["metadata"]["uid"]

    cluster.kubectl("delete", "pytorchjob", "keep", "-n", ns, "--cascade=orphan", timeout=90)
    left = running_pods(cluster, ns, "keep", names)
    assert {n: p["metadata"]["uid"] for n, p in left.items()} == {
        n: p["metadata"]["uid"] for n, p in before.items()}
    assert all(not p["metadata"].get("ownerReferences") for p in left.values())

    cluster.kubectl("apply", "-f", "-", input=manifest)
    second_uid = get_json(cluster, "pytorchjob", "keep", "-n", ns)["metadata"]["uid"]
    assert second_uid != first_uid

    def adopted() -> bool:
        pods, svcs = items(cluster, "pods", ns, "keep"), items(cluster, "services", ns, "keep")
        return set(pods) == names and set(svcs) == names and all(
            controller_uid(o) == second_uid for o in [*pods.values(), *svcs.values()])
    wait_for(adopted, "the pods and Services controlled by the new job", timeout=60,
             explain=lambda: explain(cluster, ns))
    pods = items(cluster, "pods", ns, "keep")
    assert {n: p["metadata"]["uid"] for n, p in pods.items()} == {
        n: p["metadata"]["uid"] for n, p in before.items()}
    assert {n: s["metadata"]["uid"] for n, s in items(cluster, "services", ns, "keep").items()
            } == {n: s["metadata"]["uid"] for n, s in services.items()}
    assert created_pods(cluster, ns, second_uid) == {}

    finish(cluster, ns, "keep")
    assert created_pods(cluster, ns, second_uid) == {}
    status = get_json(cluster, "pytorchjob", "keep", "-n", ns)["status"]
    assert status["replicaStatuses"]["Master"]["succeeded"] == 1


def test_a_relabelled_pod_is_released_and_replaced_once_it_is_gone(
        cluster: Cluster, ns: str, training_operator: None) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pytorchjob("move", ns)))
    names = {"move-master-0", "move-worker-0"}
    before = running_pods(cluster, ns, "move", names)
    job_uid = get_json(cluster, "pytorchjob", "move", "-n", ns)["metadata"]["uid"]
    worker_uid = before["move-worker-0"]["metadata"]["uid"]

    cluster.kubectl("label", "pod", "move-worker-0", "-n", ns, "--overwrite",
                    f"{JOB_NAME_LABEL}=elsewhere")

    def released() -> dict[str, Any] | None:
        pod = get_json(cluster, "pod", "move-worker-0", "-n", ns)
        return pod if pod is not None and not pod["metadata"].get("ownerReferences") else None
    stray = wait_for(released, "move-worker-0 released", timeout=30,
                     explain=lambda: explain(cluster, ns))
    assert stray["metadata"]["uid"] == worker_uid
    assert stray["status"]["phase"] == "Running"
    # The stray holds the replica's name: no second pod of it meanwhile.
    assert set(items(cluster, "pods", ns, "move")) == {"move-master-0"}

    cluster.kubectl("delete", "pod", "move-worker-0", "-n", ns, timeout=60)

    def replaced() -> dict[str, Any] | None:
        pod = items(cluster, "pods", ns, "move").get("move-worker-0")
        return pod if pod is not None and pod["metadata"]["uid"] != worker_uid else None
    again = wait_for(replaced, "a new move-worker-0", timeout=60,
                     explain=lambda: explain(cluster, ns))
    assert controller_uid(again) == job_uid
    running_pods(cluster, ns, "move", names)
    assert created_pods(cluster, ns, job_uid) == {"Created pod: move-master-0": 1,
                                                  "Created pod: move-worker-0": 2}
    finish(cluster, ns, "move")
