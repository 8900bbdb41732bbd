"""The common training job controller's decisions, as pure functions: names, pods and
Services, conditions, restart policies, run policy and the CRDs' schemas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pilothouse.apiserver.crd import default_crd, validate_crd
from pilothouse.apiserver.schema import apply_defaults, prune, validate
from pilothouse.kubeflow.training.common import (
    NO_EXIT_CODE,
    count_replica_pod,
    deadline_left,
    exit_code,
    new_pod,
    new_pod_group,
    new_service,
    on_failed_pod,
    past_backoff_limit,
    pod_restart_policy,
    pods_to_clean,
    replica_name,
    restarts_counted,
    slices,
    ttl_left,
    update_job_conditions,
)
from pilothouse.kubeflow.training.crds import ALL_KINDS, PYTORCH, crd
from pilothouse.kubeflow.training.pytorch import PyTorchFramework

FRAMEWORK = PyTorchFramework()
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def job(**run_policy: Any) -> dict[str, Any]:
    replica = {"replicas": 2, "restartPolicy": "OnFailure", "template": {
        "metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}},
        "spec": {"containers": [{"name": "pytorch", "image": "x"}]}}}
    obj = {"metadata": {"name": "mnist", "namespace": "ns", "uid": "u1"},
           "spec": {"pytorchReplicaSpecs": {"Worker": replica}, "runPolicy": run_policy}}
    FRAMEWORK.set_defaults(obj)
    return obj


def pod(phase: str, *, index: int = 0, rtype: str = "worker", restarts: int = 0,
        code: int | None = None, deleting: bool = False) -> dict[str, Any]:
    state = {"terminated": {"exitCode": code}} if code is not None else {"running": {}}
    meta: dict[str, Any] = {"name": f"p{index}", "uid": f"uid{index}", "labels": {
        "training.kubeflow.org/replica-type": rtype,
        "training.kubeflow.org/replica-index": str(index)}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase, "containerStatuses": [
        {"name": "pytorch", "restartCount": restarts, "state": state}]}}


def test_names_are_type_lowercase_and_index() -> None:
    assert replica_name("mnist", "Worker", 3) == "mnist-worker-3"
    assert replica_name("a/b", "PS", 0) == "a-b-ps-0"


def test_a_pod_keeps_its_template_and_gets_labels_owner_and_dns_names() -> None:
    obj = job()
    built, events = new_pod(obj, FRAMEWORK, "Worker", 0, gang_scheduler=None)
    assert events == []
    assert built["metadata"]["name"] == "mnist-worker-0"
    assert built["metadata"]["labels"] == {
        "team": "a", "training.kubeflow.org/job-name": "mnist",
        "training.kubeflow.org/operator-name": "pytorchjob-controller",
        "training.kubeflow.org/replica-type": "worker",
        "training.kubeflow.org/replica-index": "0",
        # No Master: Worker 0 is the master.
        "training.kubeflow.org/job-role": "master"}
    assert built["metadata"]["annotations"] == {"note": "x"}
    assert built["metadata"]["ownerReferences"] == [{
        "apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "name": "mnist", "uid": "u1",
        "controller": True, "blockOwnerDeletion": True}]
    assert (built["spec"]["hostname"], built["spec"]["subdomain"]) == (
        "mnist-worker-0", "mnist-worker-0")
    assert built["spec"]["restartPolicy"] == "OnFailure"
    assert "schedulerName" not in built["spec"]
    # The template is not changed by building a pod from it.
    template = obj["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]
    assert "env" not in template["spec"]["containers"][0]


def test_template_restart_policy_and_scheduler_earn_warnings() -> None:
    obj = job(schedulingPolicy={})
    spec = obj["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]
    spec["restartPolicy"] = "Always"
    spec["schedulerName"] = "mine"
    built, events = new_pod(obj, FRAMEWORK, "Worker", 1, gang_scheduler="gang")
    assert [e.reason for e in events] == ["SetPodTemplateRestartPolicy",
                                          "SetPodTemplateSchedulerName"]
    assert built["spec"]["restartPolicy"] == "OnFailure"
    assert built["spec"]["schedulerName"] == "mine"
    assert built["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"] == "mnist"


def test_a_service_is_headless_and_selects_one_replica() -> None:
    service = new_service(job(), FRAMEWORK, "Worker", 1)
    assert service["metadata"]["name"] == "mnist-worker-1"
    assert service["spec"] == {
        "clusterIP": "None",
        "selector": {"training.kubeflow.org/job-name": "mnist",
                     "training.kubeflow.org/operator-name": "pytorchjob-controller",
                     "training.kubeflow.org/replica-type": "worker",
                     "training.kubeflow.org/replica-index": "1"},
        "ports": [{"name": "pytorchjob-port", "port": 23456}]}


def test_pod_group_min_member() -> None:
    assert new_pod_group(job(schedulingPolicy={}), PYTORCH)["spec"] == {"minMember": 2}
    group = new_pod_group(job(schedulingPolicy={"minAvailable": 1, "minResources": {
        "cpu": "2"}}), PYTORCH)
    assert group["spec"] == {"minMember": 1, "minResources": {"cpu": "2"}}


def test_restart_policies() -> None:
    assert pod_restart_policy("ExitCode") == "Never"
    assert pod_restart_policy("OnFailure") == "OnFailure"
    assert on_failed_pod("ExitCode", 137) == "restart"
    assert on_failed_pod("ExitCode", 128) == "restart"
    assert on_failed_pod("ExitCode", 1) == "fail"
    assert on_failed_pod("OnFailure", 1) == "restart"
    assert on_failed_pod("Always", 0) == "restart"
    assert on_failed_pod("Never", 137) == ""
    assert exit_code(pod("Failed", code=3), "pytorch") == 3
    assert exit_code(pod("Running"), "pytorch") == NO_EXIT_CODE


def test_conditions_follow_the_real_rules() -> None:
    status: dict[str, Any] = {}
    update_job_conditions(status, "Created", "True", "PyTorchJobCreated", "created", T0)
    update_job_conditions(status, "Running", "True", "PyTorchJobRunning", "running", T0)
    update_job_conditions(status, "Restarting", "True", "PyTorchJobRestarting", "again", T0)
    assert [c["type"] for c in status["conditions"]] == ["Created", "Restarting"]
    update_job_conditions(status, "Running", "True", "PyTorchJobRunning", "running", T0)
    assert [c["type"] for c in status["conditions"]] == ["Created", "Running"]
    later = T0 + timedelta(minutes=1)
    update_job_conditions(status, "Running", "True", "PyTorchJobRunning", "other", later)
    assert status["conditions"][-1]["message"] == "running"  # same status and reason
    update_job_conditions(status, "Succeeded", "True", "PyTorchJobSucceeded", "done", later)
    running = next(c for c in status["conditions"] if c["type"] == "Running")
    assert running["status"] == "False"
    assert status["conditions"][-1]["type"] == "Succeeded"
    failed: dict[str, Any] = {}
    update_job_conditions(failed, "Failed", "True", "PyTorchJobFailed", "no", T0)
    update_job_conditions(failed, "Running", "True", "PyTorchJobRunning", "yes", T0)
    assert [c["type"] for c in failed["conditions"]] == ["Failed"]  # Failed is final


def test_replica_counts_and_slices() -> None:
    status: dict[str, Any] = {}
    for item in (pod("Running"), pod("Running", deleting=True), pod("Succeeded"),
                 pod("Failed"), pod("Pending")):
        count_replica_pod(status, "Worker", item)
    assert status["replicaStatuses"]["Worker"] == {"active": 1, "failed": 2, "succeeded": 1}
    by_index = slices([pod("Running", index=0), pod("Running", index=3)], 2)
    assert [len(s) for s in by_index] == [1, 0, 0, 1]


def test_backoff_counts_restarts_of_running_pods_of_restarting_types() -> None:
    specs = job()["spec"]["pytorchReplicaSpecs"]
    pods = [pod("Running", restarts=2), pod("Failed", index=1, restarts=5)]
    assert restarts_counted(specs, pods) == 2
    specs["Worker"]["restartPolicy"] = "Never"
    assert restarts_counted(specs, pods) == 0
    assert past_backoff_limit({"backoffLimit": 2}, 2)
    assert not past_backoff_limit({"backoffLimit": 2}, 1)
    assert past_backoff_limit({"backoffLimit": 0}, 1)
    assert not past_backoff_limit({}, 100)


def test_deadline_ttl_and_clean_pod_policy() -> None:
    started = {"startTime": "2026-01-01T00:00:00Z"}
    assert deadline_left({"activeDeadlineSeconds": 10}, started, T0 + timedelta(seconds=4)) == 6
    assert deadline_left({}, started, T0) is None
    done = {"completionTime": "2026-01-01T00:00:00Z",
            "conditions": [{"type": "Succeeded", "status": "True"}]}
    assert ttl_left({"ttlSecondsAfterFinished": 5}, done, T0 + timedelta(seconds=5)) == 0
    assert ttl_left({}, done, T0) is None
    pods = [pod("Running"), pod("Pending", index=1), pod("Succeeded", index=2)]
    assert pods_to_clean({"cleanPodPolicy": "None"}, done, pods) == []
    assert len(pods_to_clean({"cleanPodPolicy": "Running"}, done, pods)) == 2
    assert len(pods_to_clean({"cleanPodPolicy": "All"}, done, pods)) == 3
    # Unfinished (suspended, or past a limit): everything goes, whatever the policy.
    assert len(pods_to_clean({"cleanPodPolicy": "None"}, {}, pods)) == 3


def test_the_crds_are_accepted_and_their_schemas_default_and_refuse() -> None:
    for kind in ALL_KINDS:
        definition = crd(kind)
        default_crd(definition)
        assert validate_crd(definition) == [], kind.kind
    schema = crd(PYTORCH)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    obj = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "a"},
           "spec": {"pytorchReplicaSpecs": {"Worker": {"template": {}}, "Chief": {}}}}
    # An unknown replica type is kept (and defaulted), for the webhook to refuse by name.
    assert prune(obj, schema) == []
    apply_defaults(obj, schema)
    assert obj["spec"]["pytorchReplicaSpecs"]["Worker"] == {
        "template": {}, "replicas": 1, "restartPolicy": "OnFailure"}
    assert obj["spec"]["pytorchReplicaSpecs"].pop("Chief") == {
        "replicas": 1, "restartPolicy": "OnFailure"}
    assert obj["spec"]["runPolicy"] == {"cleanPodPolicy": "None", "suspend": False}
    assert validate(obj, schema) == []
    for bad, field in (({"pytorchReplicaSpecs": {}}, "spec.pytorchReplicaSpecs"),
                       ({}, "spec.pytorchReplicaSpecs"),
                       ({"pytorchReplicaSpecs": {"Worker": {"replicas": -1}}},
                        "spec.pytorchReplicaSpecs.Worker.replicas"),
                       ({"pytorchReplicaSpecs": {"Worker": {}}, "nprocPerNode": "2x"},
                        "spec.nprocPerNode")):
        causes = validate({**obj, "spec": bad}, schema)
        assert [c for c in causes if c.field == field], (bad, causes)
    for good in ("auto", "cpu", "gpu", "8"):
        assert validate({**obj, "spec": {"pytorchReplicaSpecs": {"Worker": {}},
                                         "nprocPerNode": good}}, schema) == []
