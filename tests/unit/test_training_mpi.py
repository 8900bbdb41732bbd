"""MPIJob: its defaults, ConfigMap, launcher RBAC, pods and status rules, as pure functions;
and the start problems every framework reports (`common.start_problem`)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from pilothouse.kubeflow.training.common import (
    count_replica_pod,
    created_message,
    new_pod,
    new_service,
    start_problem,
)
from pilothouse.kubeflow.training.crds import MPI, crd
from pilothouse.kubeflow.training.mpi import (
    MPIFramework,
    new_config_map,
    new_launcher_role,
    new_launcher_role_binding,
    new_service_account,
)
from pilothouse.kubeflow.training.validation import validate_job

MPI_FRAMEWORK = MPIFramework()
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def mpijob(workers: int | None = 2, *, launcher_container: dict[str, Any] | None = None,
           **spec: Any) -> dict[str, Any]:
    container = {"name": "trainer", "image": "mpi:1", "command": ["mpirun", "hostname"]}
    specs: dict[str, Any] = {"Launcher": {"template": {"spec": {"containers": [
        launcher_container or copy.deepcopy(container)]}}}}
    if workers is not None:
        specs["Worker"] = {"replicas": workers, "template": {"spec": {"containers": [
            {"name": "trainer", "image": "mpi:1"}]}}}
    obj = {"apiVersion": "kubeflow.org/v1", "kind": "MPIJob",
           "metadata": {"name": "pi", "namespace": "ns", "uid": "u"},
           "spec": {"mpiReplicaSpecs": specs, **spec}}
    MPI_FRAMEWORK.set_defaults(obj)
    return obj


def pod_of(obj: dict[str, Any], rtype: str, index: int = 0) -> dict[str, Any]:
    pod, _ = new_pod(obj, MPI_FRAMEWORK, rtype, index, gang_scheduler=None)
    return pod


def test_defaults_are_the_real_v1_ones() -> None:
    obj = mpijob(workers=None)
    spec = obj["spec"]
    assert spec["slotsPerWorker"] == 1
    assert spec["runPolicy"]["cleanPodPolicy"] == spec["cleanPodPolicy"] == "None"
    assert spec["mpiReplicaSpecs"]["Launcher"] == {**spec["mpiReplicaSpecs"]["Launcher"],
                                                   "replicas": 1, "restartPolicy": "Never"}
    # The deprecated top-level field counts when the run policy leaves it unset...
    assert mpijob(cleanPodPolicy="Running")["spec"]["runPolicy"]["cleanPodPolicy"] == "Running"
    # ...and the run policy wins when both are set.
    both = mpijob(cleanPodPolicy="Running", runPolicy={"cleanPodPolicy": "All"})
    assert both["spec"]["runPolicy"]["cleanPodPolicy"] == both["spec"]["cleanPodPolicy"] == "All"
    # So the CRD must not default runPolicy.cleanPodPolicy over the top-level field.
    schema = crd(MPI)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert "default" not in schema["properties"]["runPolicy"]["properties"]["cleanPodPolicy"]
    worker = mpijob(workers=None)
    worker["spec"]["mpiReplicaSpecs"]["Worker"] = {"template": {}}
    MPI_FRAMEWORK.set_defaults(worker)
    assert worker["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"] == 0


def test_the_config_map_holds_the_hostfile_kubexec_and_discover_hosts() -> None:
    obj = mpijob(workers=2, slotsPerWorker=4, mainContainer="trainer")
    cm = new_config_map(obj, ["pi-worker-1", "pi-worker-0"])
    assert cm["metadata"]["name"] == "pi-config"
    assert cm["metadata"]["labels"] == {"app": "pi"}
    assert cm["metadata"]["ownerReferences"][0]["kind"] == "MPIJob"
    assert cm["metadata"]["ownerReferences"][0]["controller"] is True
    assert cm["data"]["hostfile"] == "pi-worker-0 slots=4\npi-worker-1 slots=4\n"
    assert cm["data"]["kubexec.sh"] == (
        '#!/bin/sh\nset -x\nPOD_NAME=$1\nshift\n'
        'kubectl exec ${POD_NAME} --container trainer -- /bin/sh -c "$*"')
    assert cm["data"]["discover_hosts.sh"] == (
        "#!/bin/sh\necho pi-worker-0:4\necho pi-worker-1:4")
    assert "--container" not in new_config_map(mpijob(), [])["data"]["kubexec.sh"]


def test_a_gpu_launcher_heads_the_hostfile_and_keeps_the_nvidia_variables() -> None:
    gpu = {"name": "trainer", "image": "mpi:1",
           "resources": {"limits": {"nvidia.com/gpu": 1}}}
    obj = mpijob(workers=1, launcher_container=gpu)
    assert new_config_map(obj, [])["data"]["hostfile"] == (
        "pi-launcher slots=1\npi-worker-0 slots=1\n")
    env = {e["name"] for e in pod_of(obj, "Launcher")["spec"]["containers"][0]["env"]}
    assert "NVIDIA_VISIBLE_DEVICES" not in env


def test_the_launcher_may_read_pods_and_exec_into_its_workers_only() -> None:
    obj = mpijob(workers=2)
    role = new_launcher_role(obj)
    assert role["metadata"]["name"] == "pi-launcher"
    assert role["rules"] == [
        {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods"]},
        {"verbs": ["create", "get"], "apiGroups": [""], "resources": ["pods/exec"],
         "resourceNames": ["pi-worker-0", "pi-worker-1"]}]
    # No workers: nothing to exec into, rather than every pod of the namespace.
    assert [r["resources"] for r in new_launcher_role(mpijob(workers=0))["rules"]] == [
        ["pods"]]
    binding = new_launcher_role_binding(obj)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pi-launcher",
                                    "namespace": "ns"}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "pi-launcher"}
    assert new_service_account(obj)["metadata"]["name"] == "pi-launcher"
    own = mpijob()
    own["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"][
        "serviceAccountName"] = "mine"
    assert new_service_account(own)["metadata"]["name"] == "mine"
    assert new_launcher_role_binding(own)["subjects"][0]["name"] == "mine"
    assert pod_of(own, "Launcher")["spec"]["serviceAccountName"] == "mine"


def test_the_launcher_pod_gets_the_mpi_environment_and_etc_mpi() -> None:
    container = {"name": "trainer", "image": "mpi:1", "command": ["mpirun", "hostname"],
                 "env": [{"name": "I_MPI_HYDRA_BOOTSTRAP", "value": "ssh"}]}
    pod = pod_of(mpijob(launcher_container=container), "Launcher")
    assert pod["metadata"]["name"] == "pi-launcher"
    assert pod["metadata"]["labels"]["training.kubeflow.org/replica-type"] == "launcher"
    assert pod["metadata"]["labels"]["training.kubeflow.org/job-role"] == "master"
    assert pod["metadata"]["labels"]["training.kubeflow.org/operator-name"] == \
        "mpijob-controller"
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "pi-launcher"
    assert spec["restartPolicy"] == "Never"
    assert "subdomain" not in spec
    (delivery,) = spec["initContainers"]  # starts mpirun once the workers run
    assert (delivery["name"], delivery["image"]) == ("kubectl-delivery", "mpi:1")
    assert delivery["command"] == ["kubectl", "wait", "--for=jsonpath={.status.phase}=Running",
                                   "--timeout=-1s", "pod/pi-worker-0", "pod/pi-worker-1"]
    assert delivery["env"] == [{"name": "NAMESPACE", "value": "ns"}]
    assert delivery["resources"]["requests"] == {"cpu": "100m", "memory": "512Mi"}
    env = [(e["name"], e["value"]) for e in spec["containers"][0]["env"]]
    assert env == [("I_MPI_HYDRA_BOOTSTRAP", "ssh"),
                   ("OMPI_MCA_plm_rsh_agent", "/etc/mpi/kubexec.sh"),
                   ("OMPI_MCA_orte_default_hostfile", "/etc/mpi/hostfile"),
                   ("NVIDIA_VISIBLE_DEVICES", ""), ("NVIDIA_DRIVER_CAPABILITIES", ""),
                   ("I_MPI_HYDRA_BOOTSTRAP_EXEC", "/etc/mpi/kubexec.sh")]
    assert spec["containers"][0]["volumeMounts"] == [
        {"name": "mpi-job-config", "mountPath": "/etc/mpi"}]
    assert spec["volumes"] == [{"name": "mpi-job-config", "configMap": {
        "name": "pi-config", "items": [
            {"key": "kubexec.sh", "path": "kubexec.sh", "mode": 0o555},
            {"key": "hostfile", "path": "hostfile", "mode": 0o444},
            {"key": "discover_hosts.sh", "path": "discover_hosts.sh", "mode": 0o555}]}}]


def test_worker_pods_sleep_by_default_and_get_kubexec_and_a_service() -> None:
    obj = mpijob(workers=2)
    pod = pod_of(obj, "Worker", 1)
    assert pod["metadata"]["name"] == "pi-worker-1"
    spec = pod["spec"]
    assert (spec["hostname"], spec["subdomain"]) == ("pi-worker-1", "pi-worker-1")
    container = spec["containers"][0]
    assert (container["command"], container["args"]) == (["sleep"], ["365d"])
    assert "env" not in container
    assert spec["volumes"][0]["configMap"]["items"] == [
        {"key": "kubexec.sh", "path": "kubexec.sh", "mode": 0o555}]
    service = new_service(obj, MPI_FRAMEWORK, "Worker", 1)
    assert service["metadata"]["name"] == "pi-worker-1"
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["ports"] == []
    assert MPI_FRAMEWORK.has_service("Worker") and not MPI_FRAMEWORK.has_service("Launcher")
    assert MPI_FRAMEWORK.replica_types_in_order(obj["spec"]["mpiReplicaSpecs"]) == [
        "Worker", "Launcher"]


def test_validation_is_the_real_controllers() -> None:
    assert validate_job(MPI, mpijob()).causes == []
    no_launcher = mpijob()
    del no_launcher["spec"]["mpiReplicaSpecs"]["Launcher"]
    causes = [c.render() for c in validate_job(MPI, no_launcher).causes]
    assert causes == ["spec.mpiReplicaSpecs[Launcher]: Required value: must be present"]
    two = mpijob()
    two["spec"]["mpiReplicaSpecs"]["Launcher"]["replicas"] = 2
    assert [c.field for c in validate_job(MPI, two).causes] == [
        "spec.mpiReplicaSpecs[Launcher].replicas"]
    nameless = mpijob()
    nameless["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0][
        "name"] = ""
    assert [c.field for c in validate_job(MPI, nameless).causes] == [
        "spec.mpiReplicaSpecs[Worker].template.spec.containers[0].name"]


def pod(rtype: str, phase: str, index: int = 0, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": f"pi-{rtype.lower()}-{index}", "namespace": "ns",
                         "labels": {"training.kubeflow.org/replica-type": rtype.lower(),
                                    "training.kubeflow.org/replica-index": str(index)}},
            "status": {"phase": phase, **status}}


def status_after(obj: dict[str, Any], pods: list[dict[str, Any]]) -> tuple[dict[str, Any],
                                                                             list[Any]]:
    status: dict[str, Any] = {}
    for p in pods:
        count_replica_pod(status, p["metadata"]["labels"][
            "training.kubeflow.org/replica-type"].capitalize(), p)
    events = MPI_FRAMEWORK.update_job_status(obj, status, pods, NOW)
    return status, events


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions", [])}


def test_the_launcher_decides_the_job() -> None:
    obj = mpijob(workers=2)
    running = [pod("Worker", "Running", 0), pod("Worker", "Running", 1)]
    status, events = status_after(obj, [pod("Launcher", "Running"), *running])
    assert conditions(status) == {"Running": ("True", "MPIJobRunning")}
    assert [e.reason for e in events] == ["MPIJobRunning"]
    status, events = status_after(obj, [pod("Launcher", "Succeeded"), *running])
    assert conditions(status)["Succeeded"] == ("True", "MPIJobSucceeded")
    assert status["conditions"][-1]["message"] == "MPIJob ns/pi successfully completed."
    assert "completionTime" in status
    status, events = status_after(obj, [pod("Launcher", "Failed"), *running])
    assert conditions(status)["Failed"] == ("True", "MPIJobFailed")
    assert status["conditions"][-1]["message"] == "MPIJob ns/pi has failed"
    status, events = status_after(obj, [pod("Launcher", "Failed", reason="Evicted"),
                                        *running])
    assert conditions(status)["Failed"] == ("True", "MPIJobEvicted")
    assert [e.reason for e in events] == ["Evicted"] and "completionTime" not in status


def test_a_failed_or_evicted_worker_fails_the_job() -> None:
    obj = mpijob(workers=2)
    status, _ = status_after(obj, [pod("Launcher", "Running"), pod("Worker", "Running", 0),
                                   pod("Worker", "Failed", 1)])
    assert conditions(status)["Failed"] == ("True", "MPIJobFailed")
    assert status["conditions"][-1]["message"] == \
        "MPIJob pi is failed because 1 Worker replica(s) failed."
    status, events = status_after(obj, [pod("Launcher", "Running"),
                                        pod("Worker", "Running", 0),
                                        pod("Worker", "Failed", 1, reason="Evicted")])
    assert conditions(status)["Failed"] == ("True", "MPIJobEvicted")
    assert status["conditions"][-1]["message"] == "1/2 workers are evicted"


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    return {"containerStatuses": [{"name": "c", "state": {"waiting": {
        "reason": reason, "message": message}}}]}


def test_start_problems_are_the_reasons_a_pod_cannot_start() -> None:
    never = pod("Worker", "Pending", 0, **waiting(
        "ErrImageNeverPull", 'Container image "x" is not present with pull policy of Never'))
    problem = start_problem(never)
    assert problem is not None
    assert (problem.pod, problem.reason) == ("ns/pi-worker-0", "ErrImageNeverPull")
    assert start_problem(pod("Worker", "Pending", **waiting("ContainerCreating"))) is None
    assert start_problem(pod("Worker", "Running", **waiting("CrashLoopBackOff"))) is None
    sandbox = start_problem(pod("Worker", "Pending", **waiting(
        "ContainerCreating", "Failed to create pod sandbox: no pod IP left")))
    assert sandbox is not None and sandbox.reason == "FailedCreatePodSandBox"
    init = pod("Worker", "Pending", initContainerStatuses=waiting(
        "CreateContainerConfigError", 'configmap "c" not found')["containerStatuses"])
    assert (start_problem(init) or problem).reason == "CreateContainerConfigError"
    unschedulable = pod("Worker", "Pending", conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/1 nodes are available: 1 Insufficient cpu."}])
    assert start_problem(unschedulable) == type(problem)(
        "ns/pi-worker-0", "Unschedulable", "0/1 nodes are available: 1 Insufficient cpu.")
    assert created_message("MPIJob", "pi", []) == "MPIJob pi is created."
    assert created_message("MPIJob", "pi", [problem, problem]) == (
        "MPIJob pi is created. Pod ns/pi-worker-0 cannot start: ErrImageNeverPull: Container "
        'image "x" is not present with pull policy of Never (and 1 more pod(s) cannot start)')
