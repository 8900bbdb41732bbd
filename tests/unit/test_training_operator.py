"""The training operator against a real in-process API server (tests/inprocess.py).

The operator runs as its own identity, `kubeflow-operators`, so its RBAC role is exercised;
no scheduler or kubelet runs, so the tests play the kubelet by writing pod status. What is
checked is what a user sees: the CRDs and their 422s, the pods and Services of a job, its
conditions, replica statuses and Events, and `kubectl get pytorchjobs`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pilothouse.client import ApiError, Client
from pilothouse.kubeflow.operators import run_training_operator
from pilothouse.kubeflow.training.crds import JAX, install_crds
from pilothouse.kubeflow.training.webhook import ServiceReference, WebhookServer, shared_chain
from tests.inprocess import InProcessCluster, component_kubeconfigs, in_process_cluster

KUBECTL = "/usr/bin/kubectl"
V1 = "kubeflow.org/v1"
NS = "default"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessCluster]:
    with in_process_cluster(Path(tmp_path_factory.mktemp("training"))) as running:
        yield running


@pytest.fixture(scope="module")
def kubeconfigs(cluster: InProcessCluster, tmp_path_factory: pytest.TempPathFactory
                ) -> dict[str, Path]:
    return component_kubeconfigs(cluster, tmp_path_factory.mktemp("kubeconfigs"),
                                 "kubeflow-operators", "operator")


@pytest.fixture(scope="module")
def operator(cluster: InProcessCluster, kubeconfigs: dict[str, Path]) -> Iterator[None]:
    """The operator, running on the cluster's loop for the module; its CRDs Established."""
    async def start() -> asyncio.Task[None]:
        task = asyncio.create_task(run_training_operator(str(kubeconfigs["operator"]),
                                                         leader_elect=False))
        async with Client.from_kubeconfig(str(kubeconfigs["admin"])) as admin:
            async def established() -> bool:
                try:
                    crd = await admin.get("apiextensions.k8s.io/v1",
                                          "customresourcedefinitions", "pytorchjobs.kubeflow.org")
                except ApiError:
                    return False
                return any(c["type"] == "Established" and c["status"] == "True"
                           for c in crd.get("status", {}).get("conditions", []))
            await eventually(established)
            # The operator's informers list jobs once the CRDs are served.
            await asyncio.sleep(0.5)
        return task

    async def stop(task: asyncio.Task[None]) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    task = cluster.run(start())
    yield
    cluster.run(stop(task))


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 15) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true after {timeout}s: last saw {result!r}")
        await asyncio.sleep(0.05)


def container(command: str = "print(1)", **extra: Any) -> dict[str, Any]:
    return {"name": "pytorch", "image": "python:3.11", "command": ["python", "-c", command],
            **extra}


def pytorchjob(name: str, *, workers: int = 2, master: bool = True,
               restart_policy: str | None = None, **spec: Any) -> dict[str, Any]:
    replica: dict[str, Any] = {"template": {"spec": {"containers": [container()]}}}
    if restart_policy:
        replica["restartPolicy"] = restart_policy
    specs = {}
    if master:
        specs["Master"] = {**replica, "replicas": 1}
    if workers:
        specs["Worker"] = {**replica, "replicas": workers}
    return {"apiVersion": V1, "kind": "PyTorchJob",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"pytorchReplicaSpecs": specs, **spec}}


async def get_job(admin: Client, name: str, plural: str = "pytorchjobs"
                  ) -> dict[str, Any] | None:
    try:
        return await admin.get(V1, plural, name, NS)
    except ApiError as err:
        if err.not_found:
            return None
        raise


def condition(job: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for cond in ((job or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == kind and cond["status"] == "True":
            return cond
    return None


async def wait_condition(admin: Client, name: str, kind: str,
                         timeout: float = 15, plural: str = "pytorchjobs") -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        job = await get_job(admin, name, plural)
        return job if condition(job, kind) else None
    return await eventually(check, timeout=timeout)


async def job_pods(admin: Client, name: str) -> dict[str, dict[str, Any]]:
    items, _ = await admin.list_all(
        "v1", "pods", NS, label_selector=f"training.kubeflow.org/job-name={name}")
    return {p["metadata"]["name"]: p for p in items if not p["metadata"].get(
        "deletionTimestamp")}


async def wait_pods(admin: Client, name: str, count: int) -> dict[str, dict[str, Any]]:
    async def check() -> dict[str, dict[str, Any]] | None:
        pods = await job_pods(admin, name)
        return pods if len(pods) == count else None
    return await eventually(check)


async def set_phase(admin: Client, pod: dict[str, Any], phase: str, *,
                    exit_code: int | None = None, restarts: int = 0) -> None:
    name = pod["spec"]["containers"][0]["name"]
    """Play the kubelet: the pod's phase, and its container's state."""
    state: dict[str, Any] = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    if exit_code is not None:
        state = {"terminated": {"exitCode": exit_code, "reason": "Error" if exit_code
                                else "Completed", "startedAt": "2026-01-01T00:00:00Z",
                                "finishedAt": "2026-01-01T00:00:01Z"}}
    await admin.patch("v1", "pods", pod["metadata"]["name"], {"status": {
        "phase": phase, "containerStatuses": [{
            "name": name, "image": "python:3.11", "imageID": "", "ready": phase == "Running",
            "restartCount": restarts, "state": state}]}}, NS, subresource="status")


async def event_reasons(admin: Client, name: str) -> list[str]:
    items, _ = await admin.list_all("v1", "events", NS)
    return [e["reason"] for e in items if e["involvedObject"].get("name") == name]


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"]}


def admin_client(kubeconfigs: dict[str, Path]) -> Client:
    return Client.from_kubeconfig(str(kubeconfigs["admin"]))


def test_invalid_jobs_are_refused_with_a_cause(cluster: InProcessCluster,
                                               kubeconfigs: dict[str, Path],
                                               operator: None) -> None:
    async def refused(body: dict[str, Any]) -> str:
        async with admin_client(kubeconfigs) as admin:
            with pytest.raises(ApiError) as caught:
                await admin.create(V1, "pytorchjobs", body, NS)
        assert caught.value.status == 422, caught.value
        return json.dumps(caught.value.body["details"]["causes"])

    async def scenario() -> None:
        no_specs = pytorchjob("none")
        no_specs["spec"]["pytorchReplicaSpecs"] = {}
        assert "spec.pytorchReplicaSpecs" in await refused(no_specs)
        unknown_only = pytorchjob("unknown")
        unknown_only["spec"]["pytorchReplicaSpecs"] = {
            "Launcher": unknown_only["spec"]["pytorchReplicaSpecs"]["Master"]}
        assert "spec.pytorchReplicaSpecs" in await refused(unknown_only)
        negative = pytorchjob("negative")
        negative["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = -1
        assert "spec.pytorchReplicaSpecs.Worker.replicas" in await refused(negative)
        assert "spec.nprocPerNode" in await refused(pytorchjob("nproc", nprocPerNode="two"))
        bad_policy = pytorchjob("policy", restart_policy="Sometimes")
        assert "restartPolicy" in await refused(bad_policy)

    cluster.run(scenario())


def test_replicas_behind_a_service_share_one_serving_certificate_in_a_secret(
        cluster: InProcessCluster, kubeconfigs: dict[str, Path]) -> None:
    """Every replica behind the webhook Service serves the chain of the Secret the first
    one wrote, so the leader's registered caBundle verifies whichever replica answers; a
    Secret whose certificate does not name the Service is replaced."""
    service = ServiceReference("default", "training-operator")

    async def handshake(server: WebhookServer, ca_pem: bytes) -> None:
        context = ssl.create_default_context(cadata=ca_pem.decode())
        _, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=context,
                                                  server_hostname=service.dns_name)
        writer.close()

    async def scenario() -> None:
        async with Client.from_kubeconfig(str(kubeconfigs["operator"])) as client:
            first, second = await asyncio.gather(
                *(shared_chain(client, service, host="0.0.0.0") for _ in range(2)))
            assert first == second
            stored = await client.get("v1", "secrets", "training-operator-webhook-cert",
                                      "default")
            assert stored["type"] == "kubernetes.io/tls"
            assert base64.b64decode(stored["data"]["ca.crt"]) == first[0]
            servers = [WebhookServer(host="127.0.0.1", service=service, chain=first)
                       for _ in range(2)]
            try:
                for server in servers:
                    await server.start()
                    await handshake(server, first[0])  # the caBundle any leader registers
            finally:
                for server in servers:
                    await server.stop()
            other = ServiceReference("default", "renamed")
            renewed = await shared_chain(client, other, host="0.0.0.0")
            assert renewed != first and await shared_chain(client, other, host="0.0.0.0") \
                == renewed

    cluster.run(scenario())


def test_the_webhook_refuses_what_the_schema_lets_through(
        cluster: InProcessCluster, kubeconfigs: dict[str, Path], operator: None) -> None:
    """The operator's validating webhook, called by the API server: 422 with its causes."""
    async def refused(body: dict[str, Any]) -> dict[str, Any]:
        async with admin_client(kubeconfigs) as admin:
            with pytest.raises(ApiError) as caught:
                await admin.create(V1, "pytorchjobs", body, NS)
            assert await get_job(admin, body["metadata"]["name"]) is None
        assert (caught.value.status, caught.value.body["reason"]) == (422, "Invalid")
        return caught.value.body

    async def scenario() -> None:
        beside = pytorchjob("beside")
        beside["spec"]["pytorchReplicaSpecs"]["Chief"] = {
            "replicas": 1, "template": {"spec": {"containers": [container()]}}}
        status = await refused(beside)
        assert status["message"] == (
            'pytorchjobs.kubeflow.org "beside" is forbidden: admission webhook '
            '"validator.pytorchjob.training-operator.kubeflow.org" denied the request: '
            'PyTorchJob.kubeflow.org "beside" is invalid: spec.pytorchReplicaSpecs[Chief]: '
            'Unsupported value: "Chief": supported values: "Master", "Worker"')
        assert status["details"] == {
            "name": "beside", "group": "kubeflow.org", "kind": "PyTorchJob",
            "causes": [{"reason": "FieldValueNotSupported", "field":
                        "spec.pytorchReplicaSpecs[Chief]", "message": 'Unsupported value: '
                        '"Chief": supported values: "Master", "Worker"'}]}
        two_masters = pytorchjob("masters")
        two_masters["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] = 2
        assert [c["field"] for c in (await refused(two_masters))["details"]["causes"]] == [
            "spec.pytorchReplicaSpecs[Master].replicas"]
        unnamed = pytorchjob("unnamed", workers=0)
        unnamed["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0][
            "name"] = "main"
        [cause] = (await refused(unnamed))["details"]["causes"]
        assert cause["message"] == \
            "Required value: must have at least one container with name pytorch"
        no_workers = pytorchjob("elastic", workers=0, elasticPolicy={"maxReplicas": 2})
        [cause] = (await refused(no_workers))["details"]["causes"]
        assert cause["field"] == "spec.pytorchReplicaSpecs[Worker]"

    cluster.run(scenario())


def test_a_job_gets_pods_services_env_and_succeeds_with_its_master(
        cluster: InProcessCluster, kubeconfigs: dict[str, Path], operator: None) -> None:
    async def scenario() -> dict[str, Any]:
        async with admin_client(kubeconfigs) as admin:
            created = await admin.create(V1, "pytorchjobs", pytorchjob("mnist"), NS)
            # Schema defaults, stored.
            specs = created["spec"]["pytorchReplicaSpecs"]
            assert specs["Worker"]["restartPolicy"] == "OnFailure"
            assert created["spec"]["runPolicy"] == {"cleanPodPolicy": "None", "suspend": False}
            pods = await wait_pods(admin, "mnist", 3)
            assert set(pods) == {"mnist-master-0", "mnist-worker-0", "mnist-worker-1"}
            master = pods["mnist-master-0"]
            assert master["metadata"]["labels"] == {
                "training.kubeflow.org/job-name": "mnist",
                "training.kubeflow.org/operator-name": "pytorchjob-controller",
                "training.kubeflow.org/replica-type": "master",
                "training.kubeflow.org/replica-index": "0",
                "training.kubeflow.org/job-role": "master"}
            [owner] = master["metadata"]["ownerReferences"]
            assert (owner["kind"], owner["name"], owner["controller"]) == (
                "PyTorchJob", "mnist", True)
            assert master["spec"]["restartPolicy"] == "OnFailure"
            assert (master["spec"]["hostname"], master["spec"]["subdomain"]) == (
                "mnist-master-0", "mnist-master-0")
            assert master["spec"]["containers"][0]["ports"] == [
                {"name": "pytorchjob-port", "containerPort": 23456, "protocol": "TCP"}]
            worker = env_of(pods["mnist-worker-1"])
            assert {k: worker[k] for k in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK",
                                           "PET_NODE_RANK", "PET_NNODES",
                                           "PET_NPROC_PER_NODE", "PYTHONUNBUFFERED")} == {
                "MASTER_ADDR": "mnist-master-0", "MASTER_PORT": "23456", "WORLD_SIZE": "3",
                "RANK": "2", "PET_NODE_RANK": "2", "PET_NNODES": "3",
                "PET_NPROC_PER_NODE": "auto", "PYTHONUNBUFFERED": "1"}
            assert "training.kubeflow.org/job-role" not in pods["mnist-worker-0"]["metadata"][
                "labels"]

            async def services() -> dict[str, Any] | None:
                items, _ = await admin.list_all(
                    "v1", "services", NS, label_selector="training.kubeflow.org/job-name=mnist")
                return {s["metadata"]["name"]: s for s in items} if len(items) == 3 else None
            svc = (await eventually(services))["mnist-master-0"]
            assert svc["spec"]["clusterIP"] == "None"
            assert svc["spec"]["ports"][0]["port"] == 23456
            assert svc["spec"]["selector"]["training.kubeflow.org/replica-index"] == "0"
            assert svc["spec"]["selector"]["training.kubeflow.org/replica-type"] == "master"

            await wait_condition(admin, "mnist", "Created")
            for pod in pods.values():
                await set_phase(admin, pod, "Running")
            await wait_condition(admin, "mnist", "Running")

            async def all_active() -> dict[str, Any] | None:
                job = await get_job(admin, "mnist")
                workers = (job or {}).get("status", {}).get("replicaStatuses", {}).get("Worker")
                return job if (workers or {}).get("active") == 2 else None
            running = await eventually(all_active)
            assert condition(running, "Running")["reason"] == "PyTorchJobRunning"
            statuses = running["status"]["replicaStatuses"]
            assert statuses["Worker"]["selector"] == (
                "training.kubeflow.org/job-name=mnist,training.kubeflow.org/operator-name="
                "pytorchjob-controller,training.kubeflow.org/replica-type=worker")
            assert running["status"]["startTime"]

            await set_phase(admin, pods["mnist-master-0"], "Succeeded", exit_code=0)
            done = await wait_condition(admin, "mnist", "Succeeded")
            assert condition(done, "Succeeded")["reason"] == "PyTorchJobSucceeded"
            assert condition(done, "Succeeded")["message"] == \
                "PyTorchJob mnist is successfully completed."
            assert done["status"]["completionTime"]
            assert not condition(done, "Running")
            # cleanPodPolicy None: the pods stay.
            assert len(await job_pods(admin, "mnist")) == 3
            reasons = await event_reasons(admin, "mnist")
            assert {"SuccessfulCreatePod", "SuccessfulCreateService", "ExitedWithCode",
                    "PyTorchJobSucceeded"} <= set(reasons)
            return done

    cluster.run(scenario())
    if shutil.which(KUBECTL):
        out = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfigs["admin"]), "get",
                              "pytorchjobs", "-n", NS, "mnist"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        header, row = out.splitlines()
        assert header.split() == ["NAME", "STATE", "AGE"]
        assert row.split()[:2] == ["mnist", "Succeeded"]


def test_a_worker_failing_under_never_fails_the_job_and_cleans_up(
        cluster: InProcessCluster, kubeconfigs: dict[str, Path], operator: None) -> None:
    async def scenario() -> None:
        async with admin_client(kubeconfigs) as admin:
            await admin.create(V1, "pytorchjobs", pytorchjob(
                "fails", restart_policy="Never", runPolicy={"cleanPodPolicy": "All"}), NS)
            pods = await wait_pods(admin, "fails", 3)
            assert pods["fails-worker-0"]["spec"]["restartPolicy"] == "Never"
            await set_phase(admin, pods["fails-worker-0"], "Failed", exit_code=1)
            job = await wait_condition(admin, "fails", "Failed")
            failed = condition(job, "Failed")
            assert failed["reason"] == "PyTorchJobFailed"
            assert failed["message"] == "PyTorchJob fails is failed because 1 Worker " \
                                        "replica(s) failed."
            # cleanPodPolicy All: every pod goes once the job has finished.
            await eventually(lambda: _none_left(admin, "fails"))

    cluster.run(scenario())


async def _none_left(admin: Client, name: str) -> bool:
    return not await job_pods(admin, name)


def test_exit_code_policy_retries_signals_and_fails_on_errors(
        cluster: InProcessCluster, kubeconfigs: dict[str, Path], operator: None) -> None:
    async def scenario() -> None:
        async with admin_client(kubeconfigs) as admin:
            await admin.create(V1, "pytorchjobs", pytorchjob("exits", restart_policy="ExitCode",
                                                             workers=1), NS)
            pods = await wait_pods(admin, "exits", 2)
            worker = pods["exits-worker-0"]
            assert worker["spec"]["restartPolicy"] == "Never"
            await set_phase(admin, worker, "Failed", exit_code=137)

            async def replaced() -> dict[str, Any] | None:
                pod = (await job_pods(admin, "exits")).get("exits-worker-0")
                return pod if pod and pod["metadata"]["uid"] != worker["metadata"]["uid"] \
                    else None
            again = await eventually(replaced)
            assert condition(await get_job(admin, "exits"), "Restarting")
            await set_phase(admin, again, "Failed", exit_code=1)
            job = await wait_condition(admin, "exits", "Failed")
            assert condition(job, "Failed")["message"] == \
                'job "exits" is failing because "Worker" replica(s) failed.'

    cluster.run(scenario())


def test_suspend_deletes_pods_and_resume_brings_them_back(
        cluster: InProcessCluster, kubeconfigs: dict[str, Path], operator: None) -> None:
    async def scenario() -> None:
        async with admin_client(kubeconfigs) as admin:
            await admin.create(V1, "pytorchjobs", pytorchjob("pause", workers=1), NS)
            await wait_pods(admin, "pause", 2)
            await admin.patch(V1, "pytorchjobs", "pause",
                              {"spec": {"runPolicy": {"suspend": True}}}, NS)
            job = await wait_condition(admin, "pause", "Suspended")
            assert condition(job, "Suspended")["reason"] == "PyTorchJobSuspended"
            await eventually(lambda: _none_left(admin, "pause"))
            await admin.patch(V1, "pytorchjobs", "pause",
                              {"spec": {"runPolicy": {"suspend": False}}}, NS)
            await wait_pods(admin, "pause", 2)
            resumed = await get_job(admin, "pause")
            suspended = next(c for c in resumed["status"]["conditions"]
                             if c["type"] == "Suspended")
            assert (suspended["status"], suspended["reason"]) == ("False", "PyTorchJobResumed")

    cluster.run(scenario())


def test_min_available_makes_a_pod_group_for_the_gang(
        cluster: InProcessCluster, kubeconfigs: dict[str, Path], operator: None) -> None:
    async def scenario() -> None:
        async with admin_client(kubeconfigs) as admin:
            with contextlib.suppress(ApiError):  # the scheduler installs it in a cluster
                from pilothouse.scheduler.podgroups import CRD
                await admin.create("apiextensions.k8s.io/v1", "customresourcedefinitions", CRD)
            await asyncio.sleep(0.5)
            await admin.create(V1, "pytorchjobs", pytorchjob(
                "gang", runPolicy={"schedulingPolicy": {"minAvailable": 2,
                                                        "scheduleTimeoutSeconds": 30}}), NS)
            group = await eventually(lambda: _pod_group(admin, "gang"))
            assert group["spec"] == {"minMember": 2, "scheduleTimeoutSeconds": 30}
            assert group["metadata"]["ownerReferences"][0]["name"] == "gang"
            pods = await wait_pods(admin, "gang", 3)
            for pod in pods.values():
                assert pod["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"] == "gang"
                assert pod["spec"]["schedulerName"] == "default-scheduler"

    cluster.run(scenario())


async def _pod_group(admin: Client, name: str) -> dict[str, Any] | None:
    try:
        return await admin.get("scheduling.x-k8s.io/v1alpha1", "podgroups", name, NS)
    except ApiError:
        return None


def test_backoff_limit_and_deadline_fail_the_job(
        cluster: InProcessCluster, kubeconfigs: dict[str, Path], operator: None) -> None:
    async def scenario() -> None:
        async with admin_client(kubeconfigs) as admin:
            await admin.create(V1, "pytorchjobs", pytorchjob(
                "flaky", workers=1, runPolicy={"backoffLimit": 2}), NS)
            pods = await wait_pods(admin, "flaky", 2)
            await set_phase(admin, pods["flaky-worker-0"], "Running", restarts=2)
            job = await wait_condition(admin, "flaky", "Failed")
            assert condition(job, "Failed")["message"] == \
                "Job flaky has failed because it has reached the specified backoff limit"

            await admin.create(V1, "pytorchjobs", pytorchjob(
                "slow", workers=1, runPolicy={"activeDeadlineSeconds": 1}), NS)
            job = await wait_condition(admin, "slow", "Failed", timeout=10)
            assert condition(job, "Failed")["message"] == \
                "Job slow has failed because it was active longer than specified deadline"
            await eventually(lambda: _none_left(admin, "slow"))

    cluster.run(scenario())


def test_ttl_deletes_a_finished_job(cluster: InProcessCluster, kubeconfigs: dict[str, Path],
                                    operator: None) -> None:
    async def scenario() -> None:
        async with admin_client(kubeconfigs) as admin:
            await admin.create(V1, "pytorchjobs", pytorchjob(
                "brief", workers=0, runPolicy={"ttlSecondsAfterFinished": 1}), NS)
            pods = await wait_pods(admin, "brief", 1)
            await set_phase(admin, pods["brief-master-0"], "Succeeded", exit_code=0)
            await wait_condition(admin, "brief", "Succeeded")

            async def gone() -> bool:
                return await get_job(admin, "brief") is None
            await eventually(gone, timeout=10)

    cluster.run(scenario())


def test_tfjob_xgboostjob_jaxjob_and_paddlejob_run_through_the_same_controller(
        cluster: InProcessCluster, kubeconfigs: dict[str, Path], operator: None) -> None:
    def framework_job(kind: str, field: str, container_name: str,
                      replicas: dict[str, int]) -> dict[str, Any]:
        template = {"spec": {"containers": [{"name": container_name, "image": "python:3.11"}]}}
        return {"apiVersion": V1, "kind": kind, "metadata": {"name": "multi", "namespace": NS},
                "spec": {field: {rtype: {"replicas": n, "template": template}
                                 for rtype, n in replicas.items()}}}

    async def run(plural: str, body: dict[str, Any], finisher: str,
                  variable: str) -> dict[str, Any]:
        async with admin_client(kubeconfigs) as admin:
            await admin.create(V1, plural, body, NS)
            count = sum(s["replicas"] for s in next(
                v for k, v in body["spec"].items()).values())

            async def pods() -> dict[str, dict[str, Any]] | None:
                items, _ = await admin.list_all(
                    "v1", "pods", NS, label_selector="training.kubeflow.org/job-name=multi")
                return {p["metadata"]["name"]: p for p in items} if len(items) == count \
                    else None
            created = await eventually(pods)
            assert variable in env_of(created[finisher])
            await set_phase(admin, created[finisher], "Succeeded", exit_code=0)

            async def succeeded() -> dict[str, Any] | None:
                job = await admin.get(V1, plural, "multi", NS)
                return job if condition(job, "Succeeded") else None
            done = await eventually(succeeded)
            await admin.delete(V1, plural, "multi", NS)
            for pod in created:
                with contextlib.suppress(ApiError):
                    await admin.delete("v1", "pods", pod, NS)
            await eventually(lambda: _none_left(admin, "multi"))
            return done

    tf = cluster.run(run("tfjobs", framework_job("TFJob", "tfReplicaSpecs", "tensorflow",
                                                 {"PS": 1, "Worker": 2}),
                         "multi-worker-0", "TF_CONFIG"))
    assert condition(tf, "Succeeded")["reason"] == "TFJobSucceeded"
    xgb = cluster.run(run("xgboostjobs", framework_job("XGBoostJob", "xgbReplicaSpecs",
                                                       "xgboost", {"Master": 1, "Worker": 1}),
                          "multi-master-0", "WORKER_ADDRS"))
    assert condition(xgb, "Succeeded")["reason"] == "XGBoostJobSucceeded"
    jax = cluster.run(run("jaxjobs", framework_job("JAXJob", "jaxReplicaSpecs", "jax",
                                                   {"Worker": 1}),
                          "multi-worker-0", "COORDINATOR_ADDRESS"))
    assert condition(jax, "Succeeded")["reason"] == "JAXJobSucceeded"
    paddle = cluster.run(run("paddlejobs", framework_job("PaddleJob", "paddleReplicaSpecs",
                                                         "paddle", {"Master": 1, "Worker": 1}),
                             "multi-master-0", "PADDLE_SERVER_NUM"))
    assert condition(paddle, "Succeeded")["reason"] == "PaddleJobSucceeded"


def test_installing_the_crds_again_changes_nothing_and_repairs_an_old_one(
        cluster: InProcessCluster, kubeconfigs: dict[str, Path], operator: None) -> None:
    crds = "customresourcedefinitions"

    async def scenario() -> None:
        async with admin_client(kubeconfigs) as admin, \
                Client.from_kubeconfig(str(kubeconfigs["operator"])) as as_operator:
            before = await admin.get("apiextensions.k8s.io/v1", crds, "jaxjobs.kubeflow.org")
            await install_crds(as_operator, [JAX])
            after = await admin.get("apiextensions.k8s.io/v1", crds, "jaxjobs.kubeflow.org")
            assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
            after["spec"]["versions"][0]["additionalPrinterColumns"] = []
            await admin.replace("apiextensions.k8s.io/v1", crds, after)
            await install_crds(as_operator, [JAX])
            repaired = await admin.get("apiextensions.k8s.io/v1", crds, "jaxjobs.kubeflow.org")
            assert [c["name"] for c in repaired["spec"]["versions"][0][
                "additionalPrinterColumns"]] == ["State", "Age"]

    cluster.run(scenario())


def test_a_job_managed_by_another_controller_is_left_alone(
        cluster: InProcessCluster, kubeconfigs: dict[str, Path], operator: None) -> None:
    async def scenario() -> None:
        async with admin_client(kubeconfigs) as admin:
            await admin.create(V1, "pytorchjobs", pytorchjob(
                "elsewhere", workers=1, runPolicy={"managedBy": "kueue.x-k8s.io/multikueue"}),
                NS)
            await admin.create(V1, "pytorchjobs", pytorchjob("here", workers=1), NS)
            await wait_pods(admin, "here", 2)  # the operator has had its look at both
            assert await job_pods(admin, "elsewhere") == {}
            assert not (await get_job(admin, "elsewhere") or {}).get("status")

    cluster.run(scenario())


def test_a_pod_that_cannot_start_shows_why_in_the_created_condition_and_an_event(
        cluster: InProcessCluster, kubeconfigs: dict[str, Path], operator: None) -> None:
    async def scenario() -> None:
        async with admin_client(kubeconfigs) as admin:
            await admin.create(V1, "pytorchjobs", pytorchjob("stuck", workers=1), NS)
            pods = await wait_pods(admin, "stuck", 2)
            master = pods["stuck-master-0"]
            message = 'Container image "python:3.11" is not present with pull policy of Never'
            for attempt in range(2):  # the kubelet retrying: still one event
                await admin.patch("v1", "pods", "stuck-master-0", {"status": {
                    "phase": "Pending", "containerStatuses": [{
                        "name": "pytorch", "image": "python:3.11", "imageID": "",
                        "ready": False, "restartCount": 0, "state": {"waiting": {
                            "reason": "ErrImageNeverPull",
                            "message": f"{message} ({attempt})"}}}]}}, NS,
                    subresource="status")

                async def explained(attempt: int = attempt) -> dict[str, Any] | None:
                    created = condition(await get_job(admin, "stuck"), "Created")
                    return created if created and f"({attempt})" in created["message"] \
                        else None
                created = await eventually(explained)
            assert created["message"] == (
                "PyTorchJob stuck is created. Pod default/stuck-master-0 cannot start: "
                f"ErrImageNeverPull: {message} (1)")
            assert created["reason"] == "PyTorchJobCreated"
            items, _ = await admin.list_all("v1", "events", NS)
            [event] = [e for e in items if e["involvedObject"]["name"] == "stuck"
                       and e["reason"] == "ErrImageNeverPull"]
            assert event["type"] == "Warning"
            assert event["message"] == \
                f"Pod: default.stuck-master-0 cannot start: ErrImageNeverPull: {message} (0)"
            assert event["count"] == 1

            await set_phase(admin, master, "Running")

            async def cleared() -> dict[str, Any] | None:
                created = condition(await get_job(admin, "stuck"), "Created")
                return created if created and created["message"] == \
                    "PyTorchJob stuck is created." else None
            await eventually(cleared)
            await admin.delete(V1, "pytorchjobs", "stuck", NS)

    cluster.run(scenario())


def mpijob(name: str, workers: int) -> dict[str, Any]:
    def replica(count: int, command: list[str]) -> dict[str, Any]:
        return {"replicas": count, "template": {"spec": {"containers": [
            {"name": "mpi", "image": "python:3.11", "command": command}]}}}
    return {"apiVersion": V1, "kind": "MPIJob", "metadata": {"name": name, "namespace": NS},
            "spec": {"slotsPerWorker": 2, "mpiReplicaSpecs": {
                "Launcher": replica(1, ["mpirun", "hostname"]),
                "Worker": replica(workers, ["sleep", "60"])}}}


def test_an_mpijob_gets_its_hostfile_rbac_and_pods_and_succeeds_with_its_launcher(
        cluster: InProcessCluster, kubeconfigs: dict[str, Path], operator: None) -> None:
    async def scenario() -> None:
        async with admin_client(kubeconfigs) as admin:
            created = await admin.create(V1, "mpijobs", mpijob("pi", 2), NS)
            assert created["spec"]["mpiReplicaSpecs"]["Worker"]["restartPolicy"] == "Never"
            assert "cleanPodPolicy" not in created["spec"]["runPolicy"]
            pods = await wait_pods(admin, "pi", 3)
            assert set(pods) == {"pi-launcher", "pi-worker-0", "pi-worker-1"}
            config = await admin.get("v1", "configmaps", "pi-config", NS)
            assert config["data"]["hostfile"] == "pi-worker-0 slots=2\npi-worker-1 slots=2\n"
            assert config["data"]["discover_hosts.sh"] == "#!/bin/sh"
            rbac = "rbac.authorization.k8s.io/v1"
            role = await admin.get(rbac, "roles", "pi-launcher", NS)
            assert role["rules"][1]["resourceNames"] == ["pi-worker-0", "pi-worker-1"]
            binding = await admin.get(rbac, "rolebindings", "pi-launcher", NS)
            assert binding["subjects"][0]["name"] == "pi-launcher"
            account = await admin.get("v1", "serviceaccounts", "pi-launcher", NS)
            assert account["metadata"]["ownerReferences"][0]["name"] == "pi"
            launcher = pods["pi-launcher"]
            assert launcher["spec"]["serviceAccountName"] == "pi-launcher"
            assert env_of(launcher)["OMPI_MCA_plm_rsh_agent"] == "/etc/mpi/kubexec.sh"

            async def worker_services() -> list[str] | None:
                items, _ = await admin.list_all(
                    "v1", "services", NS, label_selector="training.kubeflow.org/job-name=pi")
                names = sorted(s["metadata"]["name"] for s in items)
                return names if len(names) == 2 else None
            assert await eventually(worker_services) == ["pi-worker-0", "pi-worker-1"]

            for worker in ("pi-worker-0", "pi-worker-1"):
                await set_phase(admin, pods[worker], "Running")

            async def discovered() -> str | None:
                data = (await admin.get("v1", "configmaps", "pi-config", NS))["data"]
                script = data["discover_hosts.sh"]
                return script if "pi-worker-1" in script else None
            assert await eventually(discovered) == \
                "#!/bin/sh\necho pi-worker-0:2\necho pi-worker-1:2"

            await set_phase(admin, launcher, "Running")
            running = await wait_condition(admin, "pi", "Running", plural="mpijobs")
            assert condition(running, "Running")["reason"] == "MPIJobRunning"
            await set_phase(admin, launcher, "Succeeded", exit_code=0)
            done = await wait_condition(admin, "pi", "Succeeded", plural="mpijobs")
            assert condition(done, "Succeeded")["message"] == \
                "MPIJob default/pi successfully completed."
            assert done["status"]["replicaStatuses"]["Launcher"]["succeeded"] == 1
            reasons = await event_reasons(admin, "pi")
            assert {"SuccessfulCreateConfigMap", "SuccessfulCreateRole",
                    "SuccessfulCreateRoleBinding", "SuccessfulCreateServiceAccount",
                    "MPIJobRunning", "MPIJobSucceeded"} <= set(reasons)

    cluster.run(scenario())


def labelled(kind: str, job: str, rtype: str, index: int, *, name: str | None = None,
             owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """A pod or headless Service labelled as replica `rtype` `index` of PyTorchJob `job`
    (what the operator makes, as another job of that name left it behind)."""
    labels = {"training.kubeflow.org/job-name": job,
              "training.kubeflow.org/operator-name": "pytorchjob-controller",
              "training.kubeflow.org/replica-type": rtype, "training.kubeflow.org/replica-index":
              str(index)}
    metadata: dict[str, Any] = {"name": name or f"{job}-{rtype}-{index}", "namespace": NS,
                                "labels": labels}
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    if kind == "Pod":
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
                "spec": {"containers": [container()]}}
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata,
            "spec": {"clusterIP": "None", "selector": labels,
                     "ports": [{"name": "pytorchjob-port", "port": 23456}]}}


def controller_uid(obj: dict[str, Any] | None) -> str | None:
    return next((ref["uid"] for ref in (obj or {}).get("metadata", {}).get(
        "ownerReferences") or [] if ref.get("controller")), None)


async def get_or_none(admin: Client, plural: str, name: str) -> dict[str, Any] | None:
    try:
        return await admin.get("v1", plural, name, NS)
    except ApiError as err:
        if err.not_found:
            return None
        raise


def test_a_job_adopts_its_orphans_ignores_others_and_releases_what_is_relabelled(
        cluster: InProcessCluster, kubeconfigs: dict[str, Path], operator: None) -> None:
    """As ClaimPods and ClaimServices: pods and Services labelled as the job's and owned by
    nobody become its own (same uids, nothing made twice); one labelled as its own but
    controlled by another owner is not counted; one the job controls whose labels name
    another job is released, and replaced once it is gone (it holds the replica's name)."""
    async def scenario() -> None:
        async with admin_client(kubeconfigs) as admin:
            master = await admin.create("v1", "pods", labelled("Pod", "claim", "master", 0), NS)
            worker = await admin.create("v1", "pods", labelled("Pod", "claim", "worker", 0), NS)
            service = await admin.create("v1", "services",
                                         labelled("Service", "claim", "master", 0), NS)
            other_owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "someone",
                           "uid": "3f0b9c1e-0000-4000-8000-000000000001", "controller": True}
            theirs = await admin.create("v1", "pods", labelled(
                "Pod", "claim", "worker", 1, name="theirs", owner=other_owner), NS)

            job = await admin.create(V1, "pytorchjobs", pytorchjob("claim", workers=2), NS)
            uid = job["metadata"]["uid"]
            pods = await wait_pods(admin, "claim", 4)  # the three above and claim-worker-1

            async def adopted() -> bool:
                pods = await job_pods(admin, "claim")
                svc = await get_or_none(admin, "services", "claim-master-0")
                return all(controller_uid(pods.get(name)) == uid for name in (
                    "claim-master-0", "claim-worker-0", "claim-worker-1")) and \
                    controller_uid(svc) == uid
            await eventually(adopted)
            pods = await job_pods(admin, "claim")
            assert pods["claim-master-0"]["metadata"]["uid"] == master["metadata"]["uid"]
            assert pods["claim-worker-0"]["metadata"]["uid"] == worker["metadata"]["uid"]
            [ref] = pods["claim-master-0"]["metadata"]["ownerReferences"]
            assert ref == {"apiVersion": V1, "kind": "PyTorchJob", "name": "claim", "uid": uid,
                           "controller": True, "blockOwnerDeletion": True}
            assert (await get_or_none(admin, "services", "claim-master-0"))["metadata"][
                "uid"] == service["metadata"]["uid"]
            assert pods["theirs"]["metadata"]["ownerReferences"] == [other_owner]
            assert pods["theirs"]["metadata"]["resourceVersion"] == \
                theirs["metadata"]["resourceVersion"]
            items, _ = await admin.list_all("v1", "events", NS)
            created = sorted(e["message"] for e in items if e["involvedObject"].get("uid") == uid
                             and e["reason"] == "SuccessfulCreatePod")
            assert created == ["Created pod: claim-worker-1"]

            await admin.patch("v1", "pods", "claim-worker-0", {"metadata": {"labels": {
                "training.kubeflow.org/job-name": "someone-else"}}}, NS)

            async def released() -> dict[str, Any] | None:
                pod = await get_or_none(admin, "pods", "claim-worker-0")
                return pod if pod is not None and not pod["metadata"].get(
                    "ownerReferences") else None
            stray = await eventually(released)
            assert stray["metadata"]["uid"] == worker["metadata"]["uid"]
            await admin.delete("v1", "pods", "claim-worker-0", NS)

            async def replaced() -> dict[str, Any] | None:
                pod = (await job_pods(admin, "claim")).get("claim-worker-0")
                return pod if pod is not None and pod["metadata"]["uid"] != \
                    worker["metadata"]["uid"] else None
            again = await eventually(replaced)
            assert controller_uid(again) == uid
            await admin.delete(V1, "pytorchjobs", "claim", NS)
            await admin.delete("v1", "pods", "theirs", NS)

    cluster.run(scenario())


def test_a_job_deleted_orphaning_its_pods_is_left_alone_and_its_successor_adopts_them(
        cluster: InProcessCluster, kubeconfigs: dict[str, Path], operator: None) -> None:
    """`--cascade=orphan`: while the job is being deleted the operator makes nothing (no
    garbage collector runs here, so the test plays it); the job applied again takes the
    pods left behind and makes only what is missing."""
    async def scenario() -> None:
        async with admin_client(kubeconfigs) as admin:
            first = await admin.create(V1, "pytorchjobs", pytorchjob("again", workers=1), NS)
            pods = await wait_pods(admin, "again", 2)
            await admin.delete(V1, "pytorchjobs", "again", NS, propagation_policy="Orphan")
            going = await get_job(admin, "again")
            assert going["metadata"]["deletionTimestamp"] and \
                going["metadata"]["finalizers"] == ["orphan"]
            await admin.delete("v1", "pods", "again-worker-0", NS)
            await asyncio.sleep(1.5)  # more than one sync of a job that would remake it
            assert set(await job_pods(admin, "again")) == {"again-master-0"}

            selector = "training.kubeflow.org/job-name=again"
            services, _ = await admin.list_all("v1", "services", NS, label_selector=selector)
            assert len(services) == 2
            for plural, name in [("pods", "again-master-0"),  # the collector's orphaning
                                 *(("services", s["metadata"]["name"]) for s in services)]:
                await admin.patch("v1", plural, name, {"metadata": {"ownerReferences": None}},
                                  NS)
            await admin.patch(V1, "pytorchjobs", "again", {"metadata": {"finalizers": None}},
                              NS)
            assert await get_job(admin, "again") is None

            second = await admin.create(V1, "pytorchjobs", pytorchjob("again", workers=1), NS)
            assert second["metadata"]["uid"] != first["metadata"]["uid"]

            async def carried_on() -> dict[str, dict[str, Any]] | None:
                now = await job_pods(admin, "again")
                return now if len(now) == 2 and all(
                    controller_uid(p) == second["metadata"]["uid"] for p in now.values()) \
                    else None
            now = await eventually(carried_on)
            assert now["again-master-0"]["metadata"]["uid"] == \
                pods["again-master-0"]["metadata"]["uid"]
            assert now["again-worker-0"]["metadata"]["uid"] != \
                pods["again-worker-0"]["metadata"]["uid"]

            async def services_adopted() -> bool:
                items, _ = await admin.list_all("v1", "services", NS, label_selector=selector)
                return len(items) == 2 and all(
                    controller_uid(s) == second["metadata"]["uid"] for s in items)
            await eventually(services_adopted)
            items, _ = await admin.list_all("v1", "services", NS, label_selector=selector)
            assert {s["metadata"]["uid"] for s in items} == {
                s["metadata"]["uid"] for s in services}
            await admin.delete(V1, "pytorchjobs", "again", NS)

    cluster.run(scenario())
