"""The training operator on a real `pilothouse up`, driven with the real kubectl.

A PyTorchJob of a Master and two Workers whose containers print the environment the
operator gave them and the addresses their peers' names resolve to through cluster DNS,
then exit 0: the job ends Succeeded as `kubectl get pytorchjobs` shows. It runs in both
runtimes: the sandbox's (the default; each pod its own network namespace) and the process
runtime's (host processes, whose resolv.conf the runtime binds in a mount namespace). A job whose worker exits 1 under restartPolicy Never
ends Failed. Jobs the operator cannot run are refused by the API server (its schema, or the
operator's validating webhook) with kubectl's `is invalid` and exit code 1.

An MPIJob's launcher reads /etc/mpi/hostfile, resolves every worker named there and runs
a command on each through /etc/mpi/kubexec.sh (`kubectl exec`, as mpirun starts its
daemons; `test_training_mpi.py` runs the real mpirun), so the job Succeeds. A PyTorchJob whose image the
kubelet refuses (pull policy Never) shows why in `kubectl describe pytorchjob`.

`up` runs the operator as its own process, with its own identity
(`components/kubeflow-operators.kubeconfig`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from .conftest import IMAGE, Cluster, get_json, wait_for, wait_for_training_operator

PEERS = """
import json, os, socket, time
names = {names!r}
resolved, deadline = {{}}, time.monotonic() + 60
while len(resolved) < len(names) and time.monotonic() < deadline:
    for name in names:
        try:
            resolved[name] = socket.getaddrinfo(name, 0, socket.AF_INET)[0][4][0]
        except OSError:
            pass
    time.sleep(0.3)
print(json.dumps({{"env": dict(os.environ), "resolved": resolved}}), flush=True)
time.sleep(5)  # stay resolvable while the others look this pod up
"""


@pytest.fixture(scope="module")
def training_operator(cluster: Cluster) -> None:
    wait_for_training_operator(cluster, "pytorchjobs", "mpijobs", webhooks=True)


def replica(command: list[str], replicas: int, *, pod: dict[str, Any] | None = None,
            **extra: Any) -> dict[str, Any]:
    return {"replicas": replicas, **extra, "template": {"spec": {
        "terminationGracePeriodSeconds": 2, **(pod or {}),
        "containers": [{"name": "pytorch", "image": IMAGE, "command": command}]}}}


def job_state(cluster: Cluster, namespace: str, name: str) -> str:
    out = cluster.kubectl("get", "pytorchjobs", name, "-n", namespace, "--no-headers").stdout
    fields = out.split()
    return fields[1] if len(fields) >= 3 else ""


def explain(cluster: Cluster, namespace: str, name: str) -> str:
    return "\n".join([
        cluster.kubectl("get", "pytorchjob", name, "-n", namespace, "-o", "yaml",
                        check=False).stdout,
        cluster.kubectl("get", "pods,events", "-n", namespace, check=False).stdout,
        (cluster.home / "pilothouse.log").read_text()[-3000:]])


@pytest.mark.parametrize("runtime", ["sandbox", "process"])
def test_a_pytorchjob_gets_its_env_finds_its_master_and_succeeds(
        cluster: Cluster, node: str, ns: str, training_operator: None, runtime: str) -> None:
    default = (get_json(cluster, "node", node) or {})["status"]["nodeInfo"][
        "containerRuntimeVersion"]
    assert default.startswith("sandbox"), \
        f"these tests need the sandbox runtime (root and bubblewrap), not {default}"
    extra: dict[str, Any] = {}  # the pod spec's
    if runtime == "process":  # host processes, the pod's resolv.conf in a mount namespace
        cluster.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
            "metadata": {"name": f"process-{ns}"}, "handler": "process"}))
        extra["runtimeClassName"] = f"process-{ns}"
    names = ["mnist-master-0", "mnist-worker-0", "mnist-worker-1",
             "mnist-master-0.mnist-master-0"]
    command = ["python", "-c", PEERS.format(names=names)]
    job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
           "metadata": {"name": "mnist", "namespace": ns},
           "spec": {"pytorchReplicaSpecs": {"Master": replica(command, 1, pod=extra),
                                            "Worker": replica(command, 2, pod=extra)}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(job))
    wait_for(lambda: job_state(cluster, ns, "mnist") == "Succeeded", "mnist Succeeded",
             timeout=120, explain=lambda: explain(cluster, ns, "mnist"))

    ips = {}
    seen = {}
    for pod in ("mnist-master-0", "mnist-worker-0", "mnist-worker-1"):
        ips[pod] = (get_json(cluster, "pod", pod, "-n", ns) or {})["status"]["podIP"]
        seen[pod] = json.loads(cluster.kubectl("logs", pod, "-n", ns).stdout)
    for pod, rank in (("mnist-master-0", "0"), ("mnist-worker-0", "1"),
                      ("mnist-worker-1", "2")):
        env = seen[pod]["env"]
        assert (env["MASTER_ADDR"], env["MASTER_PORT"], env["WORLD_SIZE"], env["RANK"]) == (
            "mnist-master-0", "23456", "3", rank), env
        assert env["PET_NNODES"] == "3" and env["PYTHONUNBUFFERED"] == "1"
    for worker in ("mnist-worker-0", "mnist-worker-1"):
        resolved = seen[worker]["resolved"]
        assert resolved.get("mnist-master-0") == ips["mnist-master-0"], resolved
        assert resolved.get("mnist-master-0.mnist-master-0") == ips["mnist-master-0"]
    assert seen["mnist-master-0"]["resolved"].get("mnist-worker-1") == ips["mnist-worker-1"]

    status = (get_json(cluster, "pytorchjob", "mnist", "-n", ns) or {})["status"]
    assert status["replicaStatuses"]["Master"]["succeeded"] == 1
    assert [c["reason"] for c in status["conditions"] if c["type"] == "Succeeded"] == [
        "PyTorchJobSucceeded"]
    events = cluster.kubectl("get", "events", "-n", ns,
                             "--field-selector", "involvedObject.name=mnist").stdout
    assert "SuccessfulCreatePod" in events and "PyTorchJobSucceeded" in events


@pytest.mark.parametrize(("name", "change", "cause"), [
    ("unknown", lambda specs: specs.update(Chief=specs["Worker"]),
     'spec.pytorchReplicaSpecs[Chief]: Unsupported value: "Chief": supported values: '
     '"Master", "Worker"'),
    ("negative", lambda specs: specs["Worker"].update(replicas=-1),
     "spec.pytorchReplicaSpecs.Worker.replicas: Invalid value: -1"),
    ("two-masters", lambda specs: specs["Master"].update(replicas=2),
     "spec.pytorchReplicaSpecs[Master].replicas: Forbidden: must be 1"),
    ("nproc", None, 'spec.nprocPerNode: Invalid value: "many"'),
    ("empty", lambda specs: specs.clear(), "spec.pytorchReplicaSpecs: Invalid value"),
])
def test_kubectl_is_refused_a_job_the_operator_cannot_run(
        cluster: Cluster, ns: str, training_operator: None, name: str,
        change: Callable[[dict[str, Any]], None] | None, cause: str) -> None:
    command = ["python", "-c", "print(1)"]
    specs = {"Master": replica(command, 1), "Worker": replica(command, 1)}
    job: dict[str, Any] = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
                           "metadata": {"name": name, "namespace": ns},
                           "spec": {"pytorchReplicaSpecs": specs}}
    if change is None:
        job["spec"]["nprocPerNode"] = "many"
    else:
        change(specs)
    result = cluster.kubectl("apply", "-f", "-", input=json.dumps(job), check=False)
    assert result.returncode == 1, result
    assert f'The PyTorchJob "{name}" is invalid' in result.stderr, result.stderr
    assert cause in result.stderr, result.stderr
    assert get_json(cluster, "pytorchjob", name, "-n", ns) is None


def test_kubectl_is_refused_a_job_without_replica_specs(
        cluster: Cluster, ns: str, training_operator: None) -> None:
    job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
           "metadata": {"name": "nothing", "namespace": ns}, "spec": {"nprocPerNode": "2"}}
    result = cluster.kubectl("apply", "-f", "-", input=json.dumps(job), check=False)
    assert result.returncode == 1, result
    assert 'The PyTorchJob "nothing" is invalid' in result.stderr, result.stderr
    assert "spec.pytorchReplicaSpecs: Required value" in result.stderr, result.stderr


def test_a_worker_exiting_1_under_never_fails_the_job(
        cluster: Cluster, node: str, ns: str, training_operator: None) -> None:
    job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
           "metadata": {"name": "broken", "namespace": ns},
           "spec": {"runPolicy": {"cleanPodPolicy": "Running"}, "pytorchReplicaSpecs": {
               "Master": replica(["python", "-c", "import time; time.sleep(120)"], 1,
                                 restartPolicy="Never"),
               "Worker": replica(["python", "-c", "raise SystemExit(1)"], 1,
                                 restartPolicy="Never")}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(job))
    wait_for(lambda: job_state(cluster, ns, "broken") == "Failed", "broken Failed",
             timeout=120, explain=lambda: explain(cluster, ns, "broken"))
    status = (get_json(cluster, "pytorchjob", "broken", "-n", ns) or {})["status"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["message"] == "PyTorchJob broken is failed because 1 Worker replica(s) failed."
    # cleanPodPolicy Running: the still-running master goes, the failed worker stays.
    wait_for(lambda: get_json(cluster, "pod", "broken-master-0", "-n", ns) is None,
             "the running master deleted", timeout=60,
             explain=lambda: explain(cluster, ns, "broken"))
    assert (get_json(cluster, "pod", "broken-worker-0", "-n", ns) or {})["status"][
        "phase"] == "Failed"


def test_a_gang_scheduled_job_runs_as_one_and_its_pod_group_goes_after(
        cluster: Cluster, node: str, ns: str, training_operator: None) -> None:
    command = ["python", "-c", "print('done')"]
    job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
           "metadata": {"name": "gang", "namespace": ns},
           "spec": {"runPolicy": {"schedulingPolicy": {"minAvailable": 3}},
                    "pytorchReplicaSpecs": {"Master": replica(command, 1),
                                            "Worker": replica(command, 2)}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(job))
    wait_for(lambda: job_state(cluster, ns, "gang") == "Succeeded", "gang Succeeded",
             timeout=120, explain=lambda: explain(cluster, ns, "gang"))
    pod = get_json(cluster, "pod", "gang-worker-1", "-n", ns) or {}
    assert pod["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"] == "gang"
    assert pod["spec"]["nodeName"] == node
    wait_for(lambda: get_json(cluster, "podgroup", "gang", "-n", ns) is None,
             "the PodGroup deleted once the job finished", timeout=30)


LAUNCHER = """
import json, socket, subprocess, time
hosts = [line.split()[0] for line in open("/etc/mpi/hostfile") if line.strip()]
resolved, deadline = {}, time.monotonic() + 60
while len(resolved) < len(hosts) and time.monotonic() < deadline:
    for host in hosts:
        try:
            resolved[host] = socket.getaddrinfo(host, 0, socket.AF_INET)[0][4][0]
        except OSError:
            pass
    time.sleep(0.3)
ran = {}
for host in hosts:  # what mpirun does to start a daemon on each host
    # A few tries: another cluster on this machine may answer the kubernetes Service's
    # address too (its proxy shares the listener), and refuse this cluster's token.
    for attempt in range(5):
        done = subprocess.run(["/etc/mpi/kubexec.sh", host, "echo", "$(hostname)"],
                              capture_output=True, text=True, timeout=60)
        ran[host] = [done.returncode, done.stdout.strip(), done.stderr[-500:]]
        if done.returncode == 0:
            break
print(json.dumps({"hosts": hosts, "resolved": resolved, "ran": ran}), flush=True)
raise SystemExit(0 if len(resolved) == len(hosts) and all(r[0] == 0 for r in ran.values())
                 else 1)
"""


def mpi_state(cluster: Cluster, namespace: str, name: str) -> str:
    out = cluster.kubectl("get", "mpijobs", name, "-n", namespace, "--no-headers").stdout
    fields = out.split()  # NAME AGE STATE: the real MPIJob CRD lists AGE first
    return fields[2] if len(fields) >= 3 else ""


def test_an_mpijob_launcher_reaches_every_worker_in_its_hostfile_and_succeeds(
        cluster: Cluster, node: str, ns: str, training_operator: None) -> None:
    def replica(replicas: int, command: list[str] | None) -> dict[str, Any]:
        container: dict[str, Any] = {"name": "mpi", "image": IMAGE}
        if command:
            container["command"] = command
        return {"replicas": replicas, "template": {"spec": {
            "terminationGracePeriodSeconds": 2, "containers": [container]}}}
    job = {"apiVersion": "kubeflow.org/v1", "kind": "MPIJob",
           "metadata": {"name": "pi", "namespace": ns},
           "spec": {"slotsPerWorker": 2, "runPolicy": {"cleanPodPolicy": "Running"},
                    "mpiReplicaSpecs": {
                        "Launcher": replica(1, ["python", "-c", LAUNCHER]),
                        # No command: the operator makes workers `sleep 365d`.
                        "Worker": replica(2, None)}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(job))

    def explain_mpi() -> str:
        return "\n".join([
            cluster.kubectl("get", "mpijob", "pi", "-n", ns, "-o", "yaml", check=False).stdout,
            cluster.kubectl("logs", "pi-launcher", "-n", ns, check=False).stdout,
            explain(cluster, ns, "pi")])
    wait_for(lambda: mpi_state(cluster, ns, "pi") == "Succeeded", "pi Succeeded",
             timeout=180, explain=explain_mpi)

    seen = json.loads(cluster.kubectl("logs", "pi-launcher", "-n", ns).stdout)
    assert seen["hosts"] == ["pi-worker-0", "pi-worker-1"]
    for host in seen["hosts"]:
        assert seen["ran"][host][:2] == [0, host], seen["ran"]
    config = get_json(cluster, "configmap", "pi-config", "-n", ns) or {}
    assert config["data"]["hostfile"] == "pi-worker-0 slots=2\npi-worker-1 slots=2\n"
    status = (get_json(cluster, "mpijob", "pi", "-n", ns) or {})["status"]
    assert status["replicaStatuses"]["Launcher"]["succeeded"] == 1
    # cleanPodPolicy Running: the sleeping workers go, the finished launcher stays.
    for worker in ("pi-worker-0", "pi-worker-1"):
        wait_for(lambda w=worker: get_json(cluster, "pod", w, "-n", ns) is None,
                 f"{worker} deleted", timeout=60, explain=explain_mpi)
    assert (get_json(cluster, "pod", "pi-launcher", "-n", ns) or {})["status"][
        "phase"] == "Succeeded"


def test_a_pytorchjob_whose_image_cannot_be_used_says_why_in_kubectl_describe(
        cluster: Cluster, node: str, ns: str, training_operator: None) -> None:
    image = f"absent-{ns}:1"
    master = replica(["python", "-c", "print(1)"], 1)
    master["template"]["spec"]["containers"][0].update(image=image, imagePullPolicy="Never")
    job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
           "metadata": {"name": "absent", "namespace": ns},
           "spec": {"pytorchReplicaSpecs": {"Master": master}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(job))
    why = f'Container image "{image}" is not present with pull policy of Never'

    def described() -> str:
        out = cluster.kubectl("describe", "pytorchjob", "absent", "-n", ns).stdout
        return out if why in out.split("Events:")[-1] else ""
    out = wait_for(described, "ErrImageNeverPull in kubectl describe", timeout=60,
                   explain=lambda: explain(cluster, ns, "absent"))
    conditions, events = out.split("Events:")
    assert (f"Message: PyTorchJob absent is created. Pod {ns}/absent-master-0 cannot start: "
            f"ErrImageNeverPull: {why}") in " ".join(conditions.split()), conditions
    assert "Warning  ErrImageNeverPull" in events, events
    assert f"Pod: {ns}.absent-master-0 cannot start: ErrImageNeverPull" in events, events
    assert job_state(cluster, ns, "absent") == "Created"
