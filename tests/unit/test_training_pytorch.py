"""PyTorchJob's defaults, environment and success rules, as pure functions (its validation:
test_training_webhook.py)."""

from __future__ import annotations

import copy
from typing import Any

from pilothouse.kubeflow.training.common import new_pod
from pilothouse.kubeflow.training.pytorch import PyTorchFramework, pytorch_env

FRAMEWORK = PyTorchFramework()
NOW = None


def job(*, master: int | None = 1, workers: int | None = 2, **spec: Any) -> dict[str, Any]:
    replica = {"template": {"spec": {"containers": [{"name": "pytorch", "image": "x"}]}}}
    specs = {}
    if master is not None:
        specs["Master"] = {**copy.deepcopy(replica), "replicas": master}
    if workers is not None:
        specs["Worker"] = {**copy.deepcopy(replica), "replicas": workers}
    obj = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
           "metadata": {"name": "mnist", "namespace": "ns", "uid": "u1"},
           "spec": {"pytorchReplicaSpecs": specs, **spec}}
    FRAMEWORK.set_defaults(obj)
    return obj


def env(obj: dict[str, Any], rtype: str, index: int) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pytorch_env(obj, rtype, index)}


def test_defaults_are_the_real_operators() -> None:
    obj = job()
    worker = obj["spec"]["pytorchReplicaSpecs"]["Worker"]
    assert worker["restartPolicy"] == "OnFailure"
    assert worker["template"]["spec"]["containers"][0]["ports"] == [
        {"name": "pytorchjob-port", "containerPort": 23456}]
    assert obj["spec"]["nprocPerNode"] == "auto"
    assert obj["spec"]["runPolicy"]["cleanPodPolicy"] == "None"
    # Elastic bounds default to the worker count, or to the one bound given.
    custom = job(elasticPolicy={})
    assert custom["spec"]["elasticPolicy"] == {"minReplicas": 2, "maxReplicas": 2}
    one_bound = job(elasticPolicy={"maxReplicas": 4})
    assert one_bound["spec"]["elasticPolicy"] == {"minReplicas": 4, "maxReplicas": 4}
    # nProcPerNode in the elastic policy leaves nprocPerNode unset.
    assert "nprocPerNode" not in job(elasticPolicy={"nProcPerNode": 2})["spec"]


def test_master_and_worker_environment() -> None:
    obj = job(nprocPerNode="4")
    master, worker = env(obj, "master", 0), env(obj, "worker", 1)
    assert master == {
        "PYTHONUNBUFFERED": "1", "MASTER_PORT": "23456", "PET_MASTER_PORT": "23456",
        "MASTER_ADDR": "mnist-master-0", "PET_MASTER_ADDR": "mnist-master-0",
        "WORLD_SIZE": "12", "RANK": "0", "PET_NODE_RANK": "0", "PET_NPROC_PER_NODE": "4",
        "PET_NNODES": "3"}
    assert (worker["RANK"], worker["PET_NODE_RANK"]) == ("2", "2")
    # "auto" counts as one process per node in WORLD_SIZE.
    assert env(job(), "worker", 0)["WORLD_SIZE"] == "3"


def test_workers_only_get_no_master_variables() -> None:
    variables = env(job(master=None, workers=3), "worker", 1)
    assert variables == {"PYTHONUNBUFFERED": "1", "PET_NPROC_PER_NODE": "auto",
                         "PET_NNODES": "3"}


def test_elastic_environment() -> None:
    obj = job(master=None, workers=2, elasticPolicy={
        "minReplicas": 1, "maxReplicas": 3, "rdzvBackend": "etcd", "rdzvId": "abc",
        "rdzvConf": [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}],
        "standalone": True, "maxRestarts": 5, "nProcPerNode": 2})
    variables = env(obj, "worker", 0)
    assert variables == {
        "PYTHONUNBUFFERED": "1", "PET_RDZV_ENDPOINT": "mnist-worker-0:23456",
        "PET_RDZV_BACKEND": "etcd", "PET_NNODES": "1:3", "PET_MAX_RESTARTS": "5",
        "PET_NPROC_PER_NODE": "2", "PET_RDZV_ID": "abc", "PET_RDZV_CONF": "a=1,b=2",
        "PET_STANDALONE": ""}
    hosted = job(master=None, elasticPolicy={"rdzvHost": "etcd.svc", "rdzvPort": 2379})
    assert env(hosted, "worker", 0)["PET_RDZV_ENDPOINT"] == "etcd.svc:2379"
    assert env(hosted, "worker", 0)["PET_RDZV_BACKEND"] == "c10d"


def test_env_is_added_to_every_container_after_the_users() -> None:
    obj = job()
    containers = obj["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"]
    containers[0]["env"] = [{"name": "MINE", "value": "x"}]
    containers.append({"name": "sidecar", "image": "y"})
    pod, _ = new_pod(obj, FRAMEWORK, "Worker", 0, gang_scheduler=None)
    first, second = pod["spec"]["containers"]
    assert first["env"][0] == {"name": "MINE", "value": "x"}
    assert {e["name"] for e in second["env"]} >= {"MASTER_ADDR", "RANK"}


def test_workers_wait_for_their_master_in_an_init_container() -> None:
    obj = job()
    worker, _ = new_pod(obj, FRAMEWORK, "Worker", 1, gang_scheduler=None)
    (init,) = worker["spec"]["initContainers"]
    assert init["name"] == "init-pytorch" and init["image"] == "x"
    assert init["command"][:2] == ["python", "-c"] and init["command"][-1] == "mnist-master-0"
    master, _ = new_pod(obj, FRAMEWORK, "Master", 0, gang_scheduler=None)
    assert "initContainers" not in master["spec"]
    workers_only, _ = new_pod(job(master=None), FRAMEWORK, "Worker", 0, gang_scheduler=None)
    assert "initContainers" not in workers_only["spec"]


def status_with(**counts: dict[str, int]) -> dict[str, Any]:
    return {"replicaStatuses": dict(counts)}


def true_conditions(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["reason"] for c in status.get("conditions", [])
            if c["status"] == "True"}


def test_success_is_the_masters() -> None:
    obj = job()
    status = status_with(Master={"active": 1}, Worker={"active": 2})
    assert FRAMEWORK.update_job_status(obj, status, [], NOW) == []
    assert true_conditions(status) == {"Running": "PyTorchJobRunning"}
    status = status_with(Master={"succeeded": 1}, Worker={"active": 2})
    [event] = FRAMEWORK.update_job_status(obj, status, [], NOW)
    assert (event.reason, event.message) == (
        "PyTorchJobSucceeded", "PyTorchJob mnist is successfully completed.")
    assert true_conditions(status) == {"Succeeded": "PyTorchJobSucceeded"}
    assert status["completionTime"]
    # Workers finishing first is not success while the master runs.
    status = status_with(Master={"active": 1}, Worker={"succeeded": 2})
    FRAMEWORK.update_job_status(obj, status, [], NOW)
    assert "Succeeded" not in true_conditions(status)


def test_without_a_master_all_workers_must_succeed_unless_elastic() -> None:
    obj = job(master=None, workers=2)
    status = status_with(Worker={"succeeded": 1, "active": 1})
    FRAMEWORK.update_job_status(obj, status, [], NOW)
    assert true_conditions(status) == {"Running": "PyTorchJobRunning"}
    assert status["conditions"][0]["message"] == "PyTorchJob ns/mnist is running."
    status = status_with(Worker={"succeeded": 2})
    FRAMEWORK.update_job_status(obj, status, [], NOW)
    assert true_conditions(status) == {"Succeeded": "PyTorchJobSucceeded"}
    elastic = job(master=None, workers=2, elasticPolicy={})
    status = status_with(Worker={"succeeded": 1, "active": 1})
    FRAMEWORK.update_job_status(elastic, status, [], NOW)
    assert "Succeeded" in true_conditions(status)


def test_failed_replicas_restart_or_fail_by_policy() -> None:
    obj = job()
    status = status_with(Master={"active": 1}, Worker={"active": 1, "failed": 1})
    [event] = FRAMEWORK.update_job_status(obj, status, [], NOW)
    assert event.reason == "PyTorchJobRestarting"
    assert true_conditions(status) == {"Restarting": "PyTorchJobRestarting"}
    for spec in obj["spec"]["pytorchReplicaSpecs"].values():
        spec["restartPolicy"] = "Never"
    status = status_with(Master={"active": 1}, Worker={"active": 1, "failed": 1})
    [event] = FRAMEWORK.update_job_status(obj, status, [], NOW)
    assert (event.reason, event.message) == (
        "PyTorchJobFailed", "PyTorchJob mnist is failed because 1 Worker replica(s) failed.")
    assert "Failed" in true_conditions(status)
