"""TFJob, XGBoostJob and JAXJob: their environment and success rules, as pure functions."""

from __future__ import annotations

import copy
import json
from typing import Any

from pilothouse.kubeflow.training.common import Framework, new_pod
from pilothouse.kubeflow.training.jax import JAXFramework
from pilothouse.kubeflow.training.tensorflow import TensorFlowFramework
from pilothouse.kubeflow.training.xgboost import XGBoostFramework

TF, XGB, JAX = TensorFlowFramework(), XGBoostFramework(), JAXFramework()


def job(framework: Framework, replicas: dict[str, int], **spec: Any) -> dict[str, Any]:
    container = {"name": framework.default_container, "image": "x"}
    specs = {rtype: {"replicas": n, "template": {"spec": {"containers": [
        copy.deepcopy(container)]}}} for rtype, n in replicas.items()}
    obj = {"metadata": {"name": "j", "namespace": "ns", "uid": "u"},
           "spec": {framework.kind.replica_specs_field: specs, **spec}}
    framework.set_defaults(obj)
    return obj


def env(framework: Framework, obj: dict[str, Any], rtype: str, index: int) -> dict[str, str]:
    pod, _ = new_pod(obj, framework, rtype, index, gang_scheduler=None)
    return {e["name"]: e["value"] for e in pod["spec"]["containers"][0].get("env") or []}


def true_conditions(status: dict[str, Any]) -> set[str]:
    return {c["type"] for c in status.get("conditions", []) if c["status"] == "True"}


def test_tf_config_lists_the_cluster_and_the_task() -> None:
    obj = job(TF, {"PS": 1, "Worker": 2})
    config = env(TF, obj, "Worker", 1)["TF_CONFIG"]
    assert config == (
        '{"cluster":{"ps":["j-ps-0.ns.svc:2222"],"worker":["j-worker-0.ns.svc:2222",'
        '"j-worker-1.ns.svc:2222"]},"task":{"type":"worker","index":1},'
        '"environment":"cloud"}')
    assert obj["spec"]["tfReplicaSpecs"]["PS"]["restartPolicy"] == "Never"
    # One replica in all is local training: no TF_CONFIG.
    assert "TF_CONFIG" not in env(TF, job(TF, {"Worker": 1}), "Worker", 0)
    sparse = json.loads(env(TF, job(TF, {"PS": 1, "Worker": 2}, enableDynamicWorker=True),
                            "Worker", 1)["TF_CONFIG"])
    assert sparse == {"cluster": {"worker": {"1": "j-worker-1.ns.svc:2222"},
                                  "ps": ["j-ps-0.ns.svc:2222"]},
                      "task": {"type": "worker", "index": 1}}


def tf_pod(index: int, phase: str, code: int) -> dict[str, Any]:
    return {"metadata": {"labels": {"training.kubeflow.org/replica-type": "worker",
                                    "training.kubeflow.org/replica-index": str(index)}},
            "status": {"phase": phase, "containerStatuses": [
                {"name": "tensorflow", "state": {"terminated": {"exitCode": code}}}]}}


def test_tf_success_is_the_chiefs_or_worker_0s() -> None:
    chief = job(TF, {"Chief": 1, "Worker": 2})
    status = {"replicaStatuses": {"Chief": {"succeeded": 1}, "Worker": {"active": 2}}}
    TF.update_job_status(chief, status, [], None)
    assert "Succeeded" in true_conditions(status)
    workers = job(TF, {"Worker": 2})
    status = {"replicaStatuses": {"Worker": {"succeeded": 1, "active": 1}}}
    TF.update_job_status(workers, status, [tf_pod(0, "Succeeded", 0)], None)
    assert "Succeeded" in true_conditions(status)
    all_workers = job(TF, {"Worker": 2}, successPolicy="AllWorkers")
    status = {"replicaStatuses": {"Worker": {"succeeded": 1, "active": 1}}}
    TF.update_job_status(all_workers, status, [tf_pod(0, "Succeeded", 0)], None)
    assert true_conditions(status) == {"Running"}


def test_tf_failures_fail_unless_dynamic_workers() -> None:
    status = {"replicaStatuses": {"Worker": {"failed": 1, "active": 1}}}
    [event] = TF.update_job_status(job(TF, {"Worker": 2}), status, [], None)
    assert event.message == "TFJob ns/j has failed because 1 Worker replica(s) failed."
    status = {"replicaStatuses": {"Worker": {"failed": 1, "active": 1}}}
    TF.update_job_status(job(TF, {"Worker": 2}, enableDynamicWorker=True), status, [], None)
    assert "Failed" not in true_conditions(status)


def test_xgboost_env_and_rules() -> None:
    obj = job(XGB, {"Master": 1, "Worker": 2})
    assert env(XGB, obj, "Worker", 1) == {
        "MASTER_PORT": "9999", "MASTER_ADDR": "j-master-0", "WORLD_SIZE": "3", "RANK": "2",
        "PYTHONUNBUFFERED": "1", "WORKER_PORT": "9999",
        "WORKER_ADDRS": "j-worker-0,j-worker-1"}
    assert "WORKER_ADDRS" not in env(XGB, job(XGB, {"Master": 1}), "Master", 0)
    status = {"replicaStatuses": {"Master": {"succeeded": 1}, "Worker": {"active": 2}}}
    [event] = XGB.update_job_status(obj, status, [], None)
    assert event.message == "XGBoostJob j is successfully completed."
    status = {"replicaStatuses": {"Master": {"active": 1}, "Worker": {"failed": 1}}}
    XGB.update_job_status(obj, status, [], None)
    assert "Failed" in true_conditions(status)


def test_jax_env_and_rules() -> None:
    obj = job(JAX, {"Worker": 3})
    assert env(JAX, obj, "Worker", 2) == {
        "PYTHONUNBUFFERED": "1", "COORDINATOR_PORT": "6666", "COORDINATOR_ADDRESS": "j-worker-0",
        "NUM_PROCESSES": "3", "PROCESS_ID": "2"}
    status = {"replicaStatuses": {"Worker": {"succeeded": 2, "active": 1}}}
    JAX.update_job_status(obj, status, [], None)
    assert true_conditions(status) == {"Running"}
    status = {"replicaStatuses": {"Worker": {"succeeded": 3}}}
    JAX.update_job_status(obj, status, [], None)
    assert true_conditions(status) == {"Succeeded"}
