"""Real distributed training through the training operator on `pilothouse up`.

A PyTorchJob of a Master and two Workers runs `assets/ddp_train.py` (DistributedDataParallel
over gloo on CPU, torch 2.13) from a ConfigMap, with nothing but the environment the
operator injects: every rank must see world size 3, the loss must fall and the replicas end
equal, and `kubectl logs` of each replica shows its report. A second job's worker fails its
first attempt under restartPolicy OnFailure: the container restarts in place and the job
still Succeeds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .conftest import IMAGE, Cluster, get_json, wait_for

SCRIPT = Path(__file__).parent / "assets" / "ddp_train.py"


def replica(replicas: int, command: list[str], **container: Any) -> dict[str, Any]:
    return {"replicas": replicas, "restartPolicy": "OnFailure", "template": {"spec": {
        "terminationGracePeriodSeconds": 2,
        "volumes": [{"name": "code", "configMap": {"name": "ddp-code"}},
                    {"name": "scratch", "emptyDir": {}}],
        "containers": [{"name": "pytorch", "image": IMAGE, "command": command,
                        "volumeMounts": [{"name": "code", "mountPath": "/code"},
                                         {"name": "scratch", "mountPath": "/scratch"}],
                        **container}]}}}


def run_job(cluster: Cluster, ns: str, name: str, worker_command: list[str]) -> None:
    train = ["python", "/code/ddp_train.py", "--timeout", "120"]
    job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
           "metadata": {"name": name, "namespace": ns},
           "spec": {"pytorchReplicaSpecs": {"Master": replica(1, train),
                                            "Worker": replica(2, worker_command)}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(job))

    def state() -> str:
        fields = cluster.kubectl("get", "pytorchjobs", name, "-n", ns,
                                 "--no-headers").stdout.split()
        return fields[1] if len(fields) >= 3 else ""

    wait_for(lambda: state() == "Succeeded", f"{name} Succeeded", timeout=240,
             explain=lambda: cluster.kubectl("get", "pytorchjob,pods,events", "-n", ns,
                                             check=False).stdout)


def report(cluster: Cluster, ns: str, pod: str) -> dict[str, Any]:
    log = cluster.kubectl("logs", pod, "-n", ns, "-c", "pytorch").stdout
    (line,) = [line for line in log.splitlines() if line.startswith('{"rank"')]
    return json.loads(line)


def test_a_pytorchjob_trains_with_ddp_across_its_replicas(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "configmap", "ddp-code", "-n", ns,
                    f"--from-file=ddp_train.py={SCRIPT}")
    run_job(cluster, ns, "ddp", ["python", "/code/ddp_train.py", "--timeout", "120"])
    reports = {pod: report(cluster, ns, pod)
               for pod in ("ddp-master-0", "ddp-worker-0", "ddp-worker-1")}
    assert [r["rank"] for r in reports.values()] == [0, 1, 2]
    assert {r["world_size"] for r in reports.values()} == {3}
    for r in reports.values():
        assert r["last_loss"] < r["first_loss"] / 10 and r["replicas_agree"], r
    status = (get_json(cluster, "pytorchjob", "ddp", "-n", ns) or {})["status"]
    assert status["replicaStatuses"]["Master"]["succeeded"] == 1


FAIL_ONCE = ("if [ ! -e /scratch/tried ]; then touch /scratch/tried; echo first try fails; "
             "exit 1; fi; exec python /code/ddp_train.py --timeout 120")


def test_on_failure_restarts_a_failed_worker_and_the_job_still_succeeds(
        cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "configmap", "ddp-code", "-n", ns,
                    f"--from-file=ddp_train.py={SCRIPT}")
    run_job(cluster, ns, "retry", ["sh", "-c", FAIL_ONCE])
    for worker in ("retry-worker-0", "retry-worker-1"):
        pod = get_json(cluster, "pod", worker, "-n", ns) or {}
        (container,) = [s for s in pod["status"]["containerStatuses"]
                        if s["name"] == "pytorch"]
        assert container["restartCount"] >= 1, container
        assert report(cluster, ns, worker)["world_size"] == 3
