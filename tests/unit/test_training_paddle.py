"""PaddleJob, as pure functions: its CRD, defaults, the environment each replica gets, its
success and failure rules, and what its webhook refuses (release-1.9's)."""

from __future__ import annotations

import copy
from typing import Any

from pilothouse.apiserver.schema import apply_defaults, prune, validate
from pilothouse.kubeflow.training.common import JOB_ROLE_LABEL, new_pod, new_service
from pilothouse.kubeflow.training.crds import ALL_KINDS, PADDLE, crd
from pilothouse.kubeflow.training.paddle import PaddleFramework, PaddleJobController
from pilothouse.kubeflow.training.validation import VALIDATED_KINDS, validate_job
from pilothouse.kubeflow.training.webhook import WebhookServer

PADDLE_FW = PaddleFramework()


def paddlejob(replicas: dict[str, int], *, ports: list[dict[str, Any]] | None = None,
              **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "paddle", "image": "x"}
    if ports is not None:
        container["ports"] = ports
    specs = {rtype: {"replicas": n, "template": {"spec": {"containers": [
        {"name": "sidecar", "image": "y"}, copy.deepcopy(container)]}}}
        for rtype, n in replicas.items()}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PaddleJob",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"paddleReplicaSpecs": specs, **spec}}


def defaulted(obj: dict[str, Any]) -> dict[str, Any]:
    PADDLE_FW.set_defaults(obj)
    return obj


def pod_of(obj: dict[str, Any], rtype: str, index: int) -> dict[str, Any]:
    pod, _ = new_pod(obj, PADDLE_FW, rtype, index, gang_scheduler=None)
    return pod


def env_of(obj: dict[str, Any], rtype: str, index: int) -> list[dict[str, Any]]:
    containers = pod_of(obj, rtype, index)["spec"]["containers"]
    # Every container gets the same variables, the sidecar as well as `paddle`.
    assert containers[0]["env"] == containers[1]["env"]
    return containers[1]["env"]


def true_conditions(status: dict[str, Any]) -> set[str]:
    return {c["type"] for c in status.get("conditions", []) if c["status"] == "True"}


POD_IP = {"name": "POD_IP_DUMMY", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}


def test_the_crd_is_v1_9s() -> None:
    assert PADDLE in ALL_KINDS and PADDLE in VALIDATED_KINDS
    definition = crd(PADDLE)
    assert definition["metadata"]["name"] == "paddlejobs.kubeflow.org"
    assert definition["spec"]["names"] == {"kind": "PaddleJob", "listKind": "PaddleJobList",
                                           "plural": "paddlejobs", "singular": "paddlejob"}
    [version] = definition["spec"]["versions"]
    assert [(c["name"], c["jsonPath"]) for c in version["additionalPrinterColumns"]] == [
        ("State", ".status.conditions[-1:].type"), ("Age", ".metadata.creationTimestamp")]
    assert version["subresources"] == {"status": {}, "scale": {
        "labelSelectorPath": ".status.replicaStatuses.Worker.selector",
        "specReplicasPath": ".spec.paddleReplicaSpecs.Worker.replicas",
        "statusReplicasPath": ".status.replicaStatuses.Worker.active"}}


def test_the_schema_defaults_replicas_and_on_failure_and_keeps_the_elastic_policy() -> None:
    schema = crd(PADDLE)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    obj = {"apiVersion": "kubeflow.org/v1", "kind": "PaddleJob", "metadata": {"name": "a"},
           "spec": {"paddleReplicaSpecs": {"Worker": {"template": {}}},
                    "elasticPolicy": {"minReplicas": 1, "maxReplicas": 4, "maxRestarts": 3,
                                      "rdzvBackend": "c10d"}}}
    prune(obj, schema)
    apply_defaults(obj, schema)
    assert obj["spec"]["paddleReplicaSpecs"]["Worker"] == {
        "template": {}, "replicas": 1, "restartPolicy": "OnFailure"}
    # PaddleElasticPolicy has no rendezvous fields: PyTorch's are dropped, as on a real cluster.
    assert obj["spec"]["elasticPolicy"] == {"minReplicas": 1, "maxReplicas": 4, "maxRestarts": 3}
    assert obj["spec"]["runPolicy"] == {"cleanPodPolicy": "None", "suspend": False}
    assert validate(obj, schema) == []
    bad = {**obj, "spec": {**obj["spec"], "elasticPolicy": {"maxRestarts": -1}}}
    assert [c.field for c in validate(bad, schema)] == ["spec.elasticPolicy.maxRestarts"]


def test_defaults_give_the_paddle_container_its_master_port() -> None:
    obj = defaulted(paddlejob({"Worker": 2}))
    worker = obj["spec"]["paddleReplicaSpecs"]["Worker"]
    assert worker["restartPolicy"] == "OnFailure"
    sidecar, paddle = worker["template"]["spec"]["containers"]
    assert paddle["ports"] == [{"name": "master", "containerPort": 36543}]
    assert "ports" not in sidecar
    service = new_service(obj, PADDLE_FW, "Worker", 0)
    assert service["metadata"]["name"] == "p-worker-0"
    assert service["spec"]["ports"] == [{"name": "master", "port": 36543}]
    assert PaddleJobController.name == "paddlejob-controller"


def test_collective_mode_worker_0_is_the_rendezvous_at_its_own_pod_ip() -> None:
    obj = defaulted(paddlejob({"Worker": 2}, ports=[{"name": "master", "containerPort": 37777}]))
    common = [{"name": "PYTHONUNBUFFERED", "value": "1"},
              {"name": "PADDLE_JOB_ID", "value": "p"},
              {"name": "PADDLE_NNODES", "value": "2"}]
    assert env_of(obj, "Worker", 0) == [
        *common, POD_IP, {"name": "PADDLE_MASTER", "value": "$(POD_IP_DUMMY):37777"}]
    assert env_of(obj, "Worker", 1) == [
        *common, {"name": "PADDLE_MASTER", "value": "p-worker-0:37777"}]
    # Without a Master nobody is the master role; the pod is OnFailure, as the replica.
    pod = pod_of(obj, "Worker", 0)
    assert JOB_ROLE_LABEL not in pod["metadata"]["labels"]
    assert pod["spec"]["restartPolicy"] == "OnFailure"


def test_ps_mode_master_0_is_the_rendezvous_and_counts_servers_and_trainers() -> None:
    obj = defaulted(paddlejob({"Master": 2, "Worker": 3}))
    common = [{"name": "PYTHONUNBUFFERED", "value": "1"},
              {"name": "PADDLE_JOB_ID", "value": "p"},
              {"name": "PADDLE_NNODES", "value": "5"}]
    assert env_of(obj, "Master", 0) == [
        *common, POD_IP, {"name": "PADDLE_MASTER", "value": "$(POD_IP_DUMMY):36543"},
        {"name": "PADDLE_SERVER_NUM", "value": "1"}]
    assert env_of(obj, "Master", 1) == [
        *common, {"name": "PADDLE_MASTER", "value": "p-master-0:36543"},
        {"name": "PADDLE_SERVER_NUM", "value": "1"}]
    # Worker 0 is not the rendezvous here: it reaches Master 0 through its Service.
    assert env_of(obj, "Worker", 0) == [
        *common, {"name": "PADDLE_MASTER", "value": "p-master-0:36543"},
        {"name": "PADDLE_TRAINER_NUM", "value": "1"}]
    assert pod_of(obj, "Master", 1)["metadata"]["labels"][JOB_ROLE_LABEL] == "master"
    assert JOB_ROLE_LABEL not in pod_of(obj, "Worker", 0)["metadata"]["labels"]


def test_the_job_succeeds_with_its_master_or_else_all_its_workers() -> None:
    ps = defaulted(paddlejob({"Master": 1, "Worker": 2}))
    status: dict[str, Any] = {"replicaStatuses": {"Master": {"active": 1},
                                                  "Worker": {"active": 2}}}
    assert PADDLE_FW.update_job_status(ps, status, [], None) == []
    [running] = status["conditions"]
    assert (running["type"], running["reason"], running["message"]) == (
        "Running", "PaddleJobRunning", "PaddleJob p is running.")
    status = {"replicaStatuses": {"Master": {"succeeded": 1}, "Worker": {"active": 2}}}
    [event] = PADDLE_FW.update_job_status(ps, status, [], None)
    assert (event.reason, event.message) == ("PaddleJobSucceeded",
                                             "PaddleJob p is successfully completed.")
    assert true_conditions(status) == {"Succeeded"} and status["completionTime"]

    collective = defaulted(paddlejob({"Worker": 2}))
    status = {"replicaStatuses": {"Worker": {"succeeded": 1, "active": 1}}}
    PADDLE_FW.update_job_status(collective, status, [], None)
    assert [(c["reason"], c["message"]) for c in status["conditions"]] == [
        ("PaddleJobRunning", "PaddleJob ns/p is running.")]
    status = {"replicaStatuses": {"Worker": {"succeeded": 2}}}
    [event] = PADDLE_FW.update_job_status(collective, status, [], None)
    assert event.message == "PaddleJob ns/p successfully completed."
    assert true_conditions(status) == {"Succeeded"}


def test_a_failed_replica_restarts_the_job_unless_its_policy_is_never() -> None:
    obj = defaulted(paddlejob({"Worker": 2}))
    status: dict[str, Any] = {"replicaStatuses": {"Worker": {"failed": 1, "active": 1}}}
    [event] = PADDLE_FW.update_job_status(obj, status, [], None)
    assert (event.type, event.reason, event.message) == (
        "Warning", "PaddleJobRestarting",
        "PaddleJob p is restarting because 1 Worker replica(s) failed.")
    assert true_conditions(status) == {"Restarting"}
    obj["spec"]["paddleReplicaSpecs"]["Worker"]["restartPolicy"] = "Never"
    status = {"replicaStatuses": {"Worker": {"failed": 1, "active": 1}}}
    [event] = PADDLE_FW.update_job_status(obj, status, [], None)
    assert (event.reason, event.message) == (
        "PaddleJobFailed", "PaddleJob p is failed because 1 Worker replica(s) failed.")
    assert true_conditions(status) == {"Failed"} and status["completionTime"]


def rendered(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    return [cause.render() for cause in validate_job(PADDLE, obj, old).causes]


def test_the_webhook_allows_either_mode_and_any_replica_counts() -> None:
    assert rendered(paddlejob({"Worker": 2})) == []
    assert rendered(paddlejob({"Master": 3, "Worker": 0})) == []
    assert rendered(paddlejob({"Master": 1})) == []


def test_the_webhook_refuses_what_v1_9_refuses() -> None:
    obj = paddlejob({"Worker": 1, "PS": 1}, runPolicy={"managedBy": "someone/else"})
    obj["metadata"]["name"] = "Paddle"
    worker = obj["spec"]["paddleReplicaSpecs"]["Worker"]["template"]["spec"]
    worker["containers"] = [{"name": "main", "image": ""}]
    assert rendered(obj) == [
        'metadata.name: Invalid value: "Paddle": should match: a DNS-1035 label must '
        "consist of lower case alphanumeric characters or '-', start with an alphabetic "
        "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
        "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
        'spec.runPolicy.managedBy: Unsupported value: "someone/else": supported values: '
        '"kubeflow.org/training-operator", "kueue.x-k8s.io/multikueue"',
        'spec.paddleReplicaSpecs[PS]: Unsupported value: "PS": supported values: "Master", '
        '"Worker"',
        "spec.paddleReplicaSpecs[Worker].template.spec.containers[0].image: Required value: "
        "must be required",
        "spec.paddleReplicaSpecs[Worker].template.spec.containers: Required value: must have "
        'at least one container with name "paddle"']
    missing = paddlejob({})
    del missing["spec"]["paddleReplicaSpecs"]
    assert rendered(missing) == ["spec.paddleReplicaSpecs: Required value: must be required"]
    moved = paddlejob({"Worker": 1}, runPolicy={"managedBy": "kueue.x-k8s.io/multikueue"})
    assert rendered(moved, paddlejob({"Worker": 1})) == [
        'spec.runPolicy.managedBy: Invalid value: "kueue.x-k8s.io/multikueue": field is '
        "immutable"]


def test_the_webhook_is_registered_under_v1_9s_name_and_path() -> None:
    [hook] = WebhookServer(port=40123, kinds=[PADDLE]).configuration()["webhooks"]
    assert hook["name"] == "validator.paddlejob.training-operator.kubeflow.org"
    assert hook["clientConfig"]["url"] == \
        "https://127.0.0.1:40123/validate-kubeflow-org-v1-paddlejob"
    assert hook["rules"][0]["resources"] == ["paddlejobs"]
