"""A real Open MPI `mpirun` through an MPIJob on `pilothouse up`, driven with the real kubectl.

An MPIJob (`kubeflow.org/v1`) shaped like the training operator's v1.9 `examples/mpi/`: a
Launcher whose container is `mpirun -np 2 --allow-run-as-root -bind-to none -map-by slot
-x PATH -mca pml ob1 -mca btl ^openib python /code/mpi_rank.py` (pods run as root here) and
two Workers with no command (the operator makes them sleep), one slot each. mpirun reads
the operator's hostfile, starts an `orted` on each worker through /etc/mpi/kubexec.sh
(`kubectl exec`, in-cluster with the launcher's service-account token and the Role the
operator made), and the orteds start the ranks, which all-reduce over TCP between the
pods' network namespaces (`assets/mpi_rank.py`: libmpi.so.40 through ctypes). The job
Succeeds, and the launcher's `kubectl logs` shows the kubexec.sh trace for each worker
and both ranks' reports: world size 2, the right sum, each rank on its own worker, started
by orted. A job one of whose ranks exits 3 ends Failed (reason MPIJobFailed) under the
launcher's restartPolicy Never, with mpirun's own explanation in the launcher's log.

No MCA settings beyond the example's are needed: the sandbox runtime gives each pod
only `lo` and `eth0` (10.244.N.x/24 on the node's bridge), and Open MPI leaves loopback out
by default (the TCP BTL's btl_tcp_if_exclude is 127.0.0.1/8; the out-of-band channel skips
loopback when another interface exists), so both pick each pod's eth0, which every other
pod reaches: the orteds dial the launcher's eth0 address from mpirun's URI
(orte_hnp_uri), the ranks each other's.

The launcher starts mpirun only once its workers run: the operator gives it the real
`kubectl-delivery` init container's wait (`kubectl wait` until every worker in the
hostfile is Running); without it mpirun's first `kubectl exec` can reach a worker whose
container has not started ("container not found") and the job fails. The workers of
the first job take 3 s to start (an init container) to show it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import IMAGE, Cluster, get_json, wait_for, wait_for_training_operator

SCRIPT = Path(__file__).parent / "assets" / "mpi_rank.py"
MPIRUN_ARGS = ["-np", "2", "--allow-run-as-root", "-bind-to", "none", "-map-by", "slot",
               "-x", "PATH", "-mca", "pml", "ob1", "-mca", "btl", "^openib",
               "python", "/code/mpi_rank.py"]
WORKERS = 2


@pytest.fixture
def mpi_code(cluster: Cluster, ns: str) -> None:
    """The MPIJob CRD (the operator installs it once it leads) and the ranks' script."""
    wait_for_training_operator(cluster, "mpijobs")
    cluster.kubectl("create", "configmap", "mpi-code", "-n", ns,
                    f"--from-file=mpi_rank.py={SCRIPT}")


def replica(replicas: int, restart_policy: str, container: dict[str, Any],
            **spec: Any) -> dict[str, Any]:
    return {"replicas": replicas, "restartPolicy": restart_policy, "template": {"spec": {
        "terminationGracePeriodSeconds": 2,
        "volumes": [{"name": "code", "configMap": {"name": "mpi-code"}}],
        "containers": [{"name": "mpi", "image": IMAGE,
                        "volumeMounts": [{"name": "code", "mountPath": "/code"}],
                        **container}],
        **spec}}}


def run_mpijob(cluster: Cluster, ns: str, name: str, rank_args: list[str],
               state: str, **worker_spec: Any) -> None:
    """Apply the MPIJob and wait until `kubectl get mpijobs` shows `state`."""
    launcher = replica(1, "Never", {"command": ["mpirun"], "args": MPIRUN_ARGS + rank_args})
    job = {"apiVersion": "kubeflow.org/v1", "kind": "MPIJob",
           "metadata": {"name": name, "namespace": ns},
           "spec": {"slotsPerWorker": 1, "runPolicy": {"cleanPodPolicy": "Running"},
                    "mpiReplicaSpecs": {"Launcher": launcher,
                                        "Worker": replica(WORKERS, "Never", {},
                                                           **worker_spec)}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(job))

    def current() -> str:
        out = cluster.kubectl("get", "mpijobs", name, "-n", ns, "--no-headers").stdout
        fields = out.split()  # NAME AGE STATE: the real MPIJob CRD lists AGE first
        return fields[2] if len(fields) >= 3 else ""

    def explain() -> str:
        return "\n".join([
            cluster.kubectl("get", "mpijob", name, "-n", ns, "-o", "yaml",
                            check=False).stdout,
            cluster.kubectl("logs", f"{name}-launcher", "-n", ns, "--all-containers",
                            check=False).stdout,
            cluster.kubectl("get", "pods,events", "-n", ns, check=False).stdout])

    wait_for(lambda: current() == state, f"MPIJob {name} {state}", timeout=120,
             explain=explain)


def launcher_log(cluster: Cluster, ns: str, name: str) -> str:
    return cluster.kubectl("logs", f"{name}-launcher", "-n", ns, "-c", "mpi").stdout


def rank_reports(log: str) -> list[dict[str, Any]]:
    reports = [json.loads(line) for line in log.splitlines() if line.startswith('{"rank"')]
    return sorted(reports, key=lambda report: report["rank"])


def test_mpirun_runs_a_rank_on_each_worker_and_they_allreduce(
        cluster: Cluster, ns: str, mpi_code: None) -> None:
    # Workers slow to start: mpirun must not exec into them before they run.
    slow_start = {"name": "slow-start", "image": IMAGE, "command": ["sleep", "3"]}
    run_mpijob(cluster, ns, "hello", [], "Succeeded", initContainers=[slow_start])

    log = launcher_log(cluster, ns, "hello")
    for i in range(WORKERS):  # kubexec.sh's `set -x`: mpirun's rsh agent started orted
        assert any(line.startswith(f"+ kubectl exec hello-worker-{i} -- /bin/sh -c ")
                   and " orted " in line for line in log.splitlines()), log
    assert rank_reports(log) == [
        {"rank": i, "world_size": 2, "allreduce_sum": 1 + 2, "host": f"hello-worker-{i}",
         "parent": "orted"} for i in range(WORKERS)], log
    status = (get_json(cluster, "mpijob", "hello", "-n", ns) or {})["status"]
    assert status["replicaStatuses"]["Launcher"]["succeeded"] == 1


def test_a_failing_rank_fails_the_mpijob_under_restart_policy_never(
        cluster: Cluster, ns: str, mpi_code: None) -> None:
    run_mpijob(cluster, ns, "broken", ["--fail-rank", "1"], "Failed")

    log = launcher_log(cluster, ns, "broken")
    assert "mpirun detected that one or more processes exited with non-zero status" in log
    assert [r["host"] for r in rank_reports(log)] == ["broken-worker-0", "broken-worker-1"]
    launcher = get_json(cluster, "pod", "broken-launcher", "-n", ns) or {}
    (container,) = launcher["status"]["containerStatuses"]
    assert launcher["status"]["phase"] == "Failed"
    assert (container["restartCount"], container["state"]["terminated"]["exitCode"]) == (0, 3)
    job = get_json(cluster, "mpijob", "broken", "-n", ns) or {}
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "MPIJobFailed"), failed
    assert job["status"]["replicaStatuses"]["Launcher"]["failed"] == 1
