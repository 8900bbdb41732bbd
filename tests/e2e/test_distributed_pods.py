"""Distributed PyTorch across pods, laid out as the training operator lays out a PyTorchJob.

What the PyTorchJob tests will stand on, checked without the operator: one Master and two
Workers, each a pod `<job>-<type>-<index>` behind a headless Service of the same name, with
the operator's labels, port 23456 and environment (MASTER_ADDR=<job>-master-0,
MASTER_PORT, WORLD_SIZE, RANK, PYTHONUNBUFFERED), and the workers' init container that
waits for the master's name to resolve. Each runs `assets/ddp_train.py`
(DistributedDataParallel over gloo on CPU) from a ConfigMap in the default sandbox runtime,
where every pod has its own network namespace: the rendezvous crosses pods through the
cluster DNS, and gloo finds the address it listens on from the pod's hostname in the
kubelet-managed /etc/hosts. The job works when all three pods Succeed, every rank saw
world size 3, the loss fell, and the replicas ended with equal weights.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from pilothouse.kubeflow.training.pytorch import WAIT_FOR_MASTER

from .conftest import IMAGE, Cluster, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="pods get network namespaces only when the node is root")

SCRIPT = Path(__file__).parent / "assets" / "ddp_train.py"
JOB = "ddp"
PORT = 23456
#: The training operator's pod labels (kubeflow/training-operator, release 1.9).
LABEL_JOB = "training.kubeflow.org/job-name"
LABEL_TYPE = "training.kubeflow.org/replica-type"
LABEL_INDEX = "training.kubeflow.org/replica-index"
LABEL_ROLE = "training.kubeflow.org/job-role"
#: The workers' init container: the operator's waits with nslookup in busybox; this one
#: asks the pod's resolver, as the training script will.


def replica(namespace: str, kind: str, index: int, world_size: int) -> list[dict[str, Any]]:
    """The headless Service and the pod the operator makes for one replica."""
    name = f"{JOB}-{kind}-{index}"
    master = f"{JOB}-master-0"
    labels = {LABEL_JOB: JOB, LABEL_TYPE: kind, LABEL_INDEX: str(index)}
    if kind == "master":
        labels[LABEL_ROLE] = "master"
    rank = index if kind == "master" else index + 1
    env = {"MASTER_ADDR": master, "MASTER_PORT": str(PORT), "WORLD_SIZE": str(world_size),
           "RANK": str(rank), "PYTHONUNBUFFERED": "1"}
    spec: dict[str, Any] = {
        "hostname": name, "subdomain": name, "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 2,
        "volumes": [{"name": "code", "configMap": {"name": f"{JOB}-code"}}],
        "containers": [{
            "name": "pytorch", "image": IMAGE,
            "command": ["python", "/code/ddp_train.py", "--timeout", "120"],
            "env": [{"name": k, "value": v} for k, v in env.items()],
            "ports": [{"name": "pytorchjob-port", "containerPort": PORT}],
            "volumeMounts": [{"name": "code", "mountPath": "/code"}]}]}
    if kind == "worker":
        spec["initContainers"] = [{"name": "init-pytorch", "image": IMAGE,
                                   "command": ["python", "-c", WAIT_FOR_MASTER, master]}]
    return [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": name, "namespace": namespace, "labels": labels},
         "spec": {"clusterIP": "None", "selector": labels,
                  "ports": [{"name": "pytorchjob-port", "port": PORT, "targetPort": PORT}]}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": name, "namespace": namespace, "labels": labels},
         "spec": spec},
    ]


def rank_report(cluster: Cluster, namespace: str, pod: str) -> dict[str, Any]:
    """The JSON line the training script printed in the pod's log."""
    log = cluster.kubectl("logs", pod, "-n", namespace, "-c", "pytorch").stdout
    lines = [line for line in log.splitlines() if line.startswith('{"rank"')]
    assert len(lines) == 1, f"{pod} printed no report:\n{log}"
    return json.loads(lines[0])


def test_ddp_over_gloo_across_a_master_and_two_worker_pods(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "configmap", f"{JOB}-code", "-n", ns,
                    f"--from-file=ddp_train.py={SCRIPT}")
    replicas = [("master", 0), ("worker", 0), ("worker", 1)]
    objects = [obj for kind, index in replicas for obj in replica(ns, kind, index, 3)]
    started = time.monotonic()
    for obj in objects:
        cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
    pods = [f"{JOB}-{kind}-{index}" for kind, index in replicas]

    def phases() -> dict[str, str]:
        items = json.loads(cluster.kubectl("get", "pods", "-n", ns, "-o", "json").stdout)
        return {p["metadata"]["name"]: (p.get("status") or {}).get("phase", "")
                for p in items["items"]}

    def explain() -> str:
        logs = {pod: cluster.kubectl("logs", pod, "-n", ns, "--all-containers", "--tail=20",
                                     check=False).stdout for pod in pods}
        events = cluster.kubectl("get", "events", "-n", ns, check=False).stdout
        return "\n".join([*(f"== {pod}:\n{log}" for pod, log in logs.items()), events])

    def finished() -> dict[str, str] | None:
        """All three succeeded, or one failed (the others would wait for it at the
        rendezvous until their timeout)."""
        now = phases()
        done = "Failed" in now.values() or all(now.get(pod) == "Succeeded" for pod in pods)
        return now if done else None

    final = wait_for(finished, "the three pods to finish training", timeout=180,
                     explain=explain)
    seconds = time.monotonic() - started
    assert all(final.get(pod) == "Succeeded" for pod in pods), f"{final}\n{explain()}"
    reports = {pod: rank_report(cluster, ns, pod) for pod in pods}
    print(f"\n3-pod DDP job: {seconds:.1f}s from apply to all Succeeded; per rank: " +
          json.dumps({pod: r["seconds"] for pod, r in reports.items()}))

    assert [reports[pod]["rank"] for pod in pods] == [0, 1, 2]
    assert {r["world_size"] for r in reports.values()} == {3}
    assert [reports[pod]["host"] for pod in pods] == pods  # each pod its own hostname
    for pod, report in reports.items():
        assert report["last_loss"] < report["first_loss"] / 10, (pod, report)
        assert report["replicas_agree"], (pod, report)
