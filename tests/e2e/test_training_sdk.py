"""The `kubeflow-training` SDK from PyPI, unchanged, against `pilothouse up`.

kubeflow-training 1.9.4 (the newest) requires `kubernetes<36`, while Pilothouse needs
`kubernetes>=37` (its OpenAPI is built from that client's models), so the two cannot share
one environment: the SDK gets a virtual environment of its own, installed from the package
index once (as a user would) and kept under ~/.cache/pilothouse-tests, and the test runs
the SDK there as a separate program. `up` runs the training operator.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Cluster

SDK = "kubeflow-training==1.9.4"

PROGRAM = '''
import json, sys
from kubeflow.training import TrainingClient

kubeconfig, namespace = sys.argv[1], sys.argv[2]
client = TrainingClient(config_file=kubeconfig, namespace=namespace)


def train():
    import os
    for name in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT", "PYTHONUNBUFFERED"):
        print(f"{name}={os.environ.get(name)}")


client.create_job(name="sdk-train", train_func=train, num_workers=1, base_image="python:3.11")
job = client.wait_for_job_conditions("sdk-train", polling_interval=1, wait_timeout=120)
logs, _ = client.get_job_logs("sdk-train")
result = {
    "conditions": [c.type for c in job.status.conditions if c.status == "True"],
    "succeeded": client.is_job_succeeded("sdk-train"),
    "listed": [j.metadata.name for j in client.list_jobs()],
    "master": job.spec.pytorch_replica_specs["Master"].replicas,
    "logs": logs,
}
client.delete_job("sdk-train")
print(json.dumps(result))
'''


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    """The Python of a virtual environment with the SDK installed (made once, then reused)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    root = cache / "pilothouse-tests" / SDK.replace("==", "-")
    python = root / "bin" / "python"
    if not (root / "installed").exists():
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", SDK], check=True,
                       timeout=900)
        (root / "installed").touch()
    return python


def test_training_client_creates_waits_for_reads_logs_of_and_deletes_a_job(
        cluster: Cluster, ns: str, sdk_python: Path, tmp_path: Path) -> None:
    program = tmp_path / "sdk_program.py"  # the SDK reads the function's source file
    program.write_text(PROGRAM)
    run = subprocess.run([str(sdk_python), str(program), str(cluster.kubeconfig), ns],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert "Succeeded" in result["conditions"] and result["succeeded"] is True
    assert result["listed"] == ["sdk-train"] and result["master"] == 1
    (pod, log), = result["logs"].items()
    assert pod == "sdk-train-master-0"
    env = dict(line.split("=", 1) for line in log.strip().splitlines())
    assert env == {"WORLD_SIZE": "1", "RANK": "0", "MASTER_ADDR": "sdk-train-master-0",
                   "MASTER_PORT": "23456", "PYTHONUNBUFFERED": "1"}
    gone = cluster.kubectl("get", "pytorchjob", "sdk-train", "-n", ns, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
