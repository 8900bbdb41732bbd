"""An elastic PyTorchJob trains with torchrun's c10d rendezvous on `pilothouse up`.

The job is shaped like the training operator's v1.9 elastic examples: Workers only, an
`elasticPolicy` (c10d backend, 2 to 3 nodes, restarts allowed), and containers that run
`python -m torch.distributed.run` with no arguments of its own but the script: torchrun
takes everything else from the `PET_*` variables the operator injects (PET_NNODES `2:3`,
PET_RDZV_ENDPOINT `<job>-worker-0:23456`, the Worker's port, PET_RDZV_BACKEND,
PET_MAX_RESTARTS, PET_NPROC_PER_NODE from `nprocPerNode: "1"`), finds its peers through the rendezvous store that worker 0's torchrun serves on that name, and
starts one DDP process per pod (`assets/ddp_train.py`). Both ranks must see world size 2,
the loss must fall, the replicas must end equal, and the job Succeeds when its Workers do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .conftest import IMAGE, Cluster, get_json, wait_for, wait_for_training_operator

SCRIPT = Path(__file__).parent / "assets" / "ddp_train.py"


def test_an_elastic_pytorchjob_rendezvous_through_torchrun_and_trains(
        cluster: Cluster, ns: str) -> None:
    wait_for_training_operator(cluster, "pytorchjobs")
    cluster.kubectl("create", "configmap", "elastic-code", "-n", ns,
                    f"--from-file=ddp_train.py={SCRIPT}")
    worker: dict[str, Any] = {"replicas": 2, "restartPolicy": "OnFailure", "template": {
        "spec": {"terminationGracePeriodSeconds": 2,
                 "volumes": [{"name": "code", "configMap": {"name": "elastic-code"}}],
                 "containers": [{
                     "name": "pytorch", "image": IMAGE,
                     "command": ["python", "-m", "torch.distributed.run",
                                 "/code/ddp_train.py", "--timeout", "120"],
                     "env": [{"name": "LOGLEVEL", "value": "WARNING"}],
                     "volumeMounts": [{"name": "code", "mountPath": "/code"}]}]}}}
    job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
           "metadata": {"name": "elastic", "namespace": ns},
           "spec": {"nprocPerNode": "1",  # the default, auto, is a process per CPU
                    "elasticPolicy": {"rdzvBackend": "c10d", "minReplicas": 2,
                                      "maxReplicas": 3, "maxRestarts": 3},
                    "pytorchReplicaSpecs": {"Worker": worker}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(job))

    def state() -> str:
        fields = cluster.kubectl("get", "pytorchjobs", "elastic", "-n", ns,
                                 "--no-headers").stdout.split()
        return fields[1] if len(fields) >= 3 else ""

    wait_for(lambda: state() == "Succeeded", "elastic Succeeded", timeout=240,
             explain=lambda: cluster.kubectl("get", "pytorchjob,pods,events", "-n", ns,
                                             check=False).stdout + "\n".join(
                 cluster.kubectl("logs", f"elastic-worker-{i}", "-n", ns,
                                 check=False).stdout[-3000:] for i in range(2)))

    reports = []
    for i in range(2):
        pod = get_json(cluster, "pod", f"elastic-worker-{i}", "-n", ns) or {}
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert (env["PET_NNODES"], env["PET_RDZV_BACKEND"], env["PET_RDZV_ENDPOINT"],
                env["PET_MAX_RESTARTS"], env["PET_NPROC_PER_NODE"]) == (
            "2:3", "c10d", "elastic-worker-0:23456", "3", "1"), env
        log = cluster.kubectl("logs", f"elastic-worker-{i}", "-n", ns).stdout
        (line,) = [line for line in log.splitlines() if line.startswith('{"rank"')]
        reports.append(json.loads(line))
    assert sorted(r["rank"] for r in reports) == [0, 1]
    for r in reports:
        assert r["world_size"] == 2 and r["replicas_agree"], r
        assert r["last_loss"] < r["first_loss"] / 10, r
    status = (get_json(cluster, "pytorchjob", "elastic", "-n", ns) or {})["status"]
    assert status["replicaStatuses"]["Worker"]["succeeded"] == 2
