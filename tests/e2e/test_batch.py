"""Jobs, CronJobs and TTL cleanup end to end: the real kubectl against `pilothouse up`
(controller manager and scheduler) with hollow nodes that run the pods.

Pods finish through the hollow nodes' test hooks: `pilothouse.dev/hollow-exit-code` makes
their containers exit with that code after `pilothouse.dev/hollow-run-seconds`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import yaml

from .conftest import Cluster, hollow_nodes

NAMESPACE = "batch-e2e"
NODES = 2


def job_manifest(name: str, *, exit_code: int = 0, completions: int = 1,
                 parallelism: int = 1, backoff_limit: int = 6, **spec: object) -> str:
    return yaml.safe_dump({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"completions": completions, "parallelism": parallelism,
                 "backoffLimit": backoff_limit, **spec,
                 "template": pod_template(exit_code)}})


def pod_template(exit_code: int) -> dict:
    return {"metadata": {"annotations": {"pilothouse.dev/hollow-exit-code": str(exit_code),
                                         "pilothouse.dev/hollow-run-seconds": "1"}},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "work", "image": "busybox",
                                     "command": ["sh", "-c", f"exit {exit_code}"]}]}}


def get(cluster: Cluster, kind: str, name: str) -> dict:
    return json.loads(cluster.kubectl("get", kind, name, "-n", NAMESPACE, "-o", "json").stdout)


def pods_of(cluster: Cluster, job: str) -> list[dict]:
    out = cluster.kubectl("get", "pods", "-n", NAMESPACE, "-l",
                          f"batch.kubernetes.io/job-name={job}", "-o", "json").stdout
    return json.loads(out)["items"]


def event_reasons(cluster: Cluster, name: str) -> list[str]:
    out = cluster.kubectl("get", "events", "-n", NAMESPACE, "--field-selector",
                          f"involvedObject.name={name}", "-o", "json").stdout
    return [e["reason"] for e in json.loads(out)["items"]]


def condition(obj: dict, kind: str) -> dict | None:
    return next((c for c in obj.get("status", {}).get("conditions") or []
                 if c["type"] == kind), None)


@pytest.fixture(scope="module", autouse=True)
def batch_cluster(cluster: Cluster) -> Iterator[Cluster]:
    """A namespace, hollow nodes, and the every-minute CronJob, created first so that its
    wait for the next minute overlaps the other tests."""
    cluster.kubectl("create", "namespace", NAMESPACE)
    with hollow_nodes(cluster, NODES, "batch-node-"):
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "tick", "namespace": NAMESPACE},
            "spec": {"schedule": "* * * * *", "concurrencyPolicy": "Forbid",
                     "jobTemplate": {"spec": {"template": pod_template(0)}}}}))
        yield cluster


def test_job_runs_completions_with_parallelism_to_complete(batch_cluster: Cluster):
    batch_cluster.kubectl("apply", "-f", "-",
                          input=job_manifest("squares", completions=3, parallelism=2))
    batch_cluster.kubectl("wait", "--for=condition=complete", "job/squares", "-n", NAMESPACE,
                          "--timeout=40s", timeout=50)
    job = get(batch_cluster, "job", "squares")
    status = job["status"]
    assert status["succeeded"] == 3
    assert status.get("failed", 0) == 0 and status.get("active", 0) == 0
    assert status["uncountedTerminatedPods"] == {}
    assert status["startTime"] <= status["completionTime"]
    met = condition(job, "SuccessCriteriaMet")
    complete = condition(job, "Complete")
    assert met and complete and complete["reason"] == met["reason"] == "CompletionsReached"
    assert complete["message"] == "Reached expected number of succeeded pods"
    pods = pods_of(batch_cluster, "squares")
    assert len(pods) == 3
    for pod in pods:
        assert pod["metadata"]["generateName"] == "squares-"
        assert pod["metadata"]["labels"]["batch.kubernetes.io/controller-uid"] == \
            job["metadata"]["uid"]
        assert pod["metadata"]["ownerReferences"][0]["kind"] == "Job"
        assert "batch.kubernetes.io/job-tracking" not in (pod["metadata"].get("finalizers")
                                                          or [])
    reasons = event_reasons(batch_cluster, "squares")
    assert reasons.count("SuccessfulCreate") == 3 and "Completed" in reasons


def test_failing_job_stops_at_the_backoff_limit(batch_cluster: Cluster):
    # backoffLimit 1: the first failure is retried after the 10 s back-off, the second
    # fails the Job.
    batch_cluster.kubectl("apply", "-f", "-",
                          input=job_manifest("doomed", exit_code=1, backoff_limit=1))
    batch_cluster.kubectl("wait", "--for=condition=failed", "job/doomed", "-n", NAMESPACE,
                          "--timeout=40s", timeout=50)
    job = get(batch_cluster, "job", "doomed")
    failed = condition(job, "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert failed["message"] == "Job has reached the specified backoff limit"
    assert condition(job, "FailureTarget")["reason"] == "BackoffLimitExceeded"
    assert job["status"]["failed"] == 2
    assert "completionTime" not in job["status"]
    pods = sorted(pods_of(batch_cluster, "doomed"),
                  key=lambda p: p["metadata"]["creationTimestamp"])
    assert [p["status"]["phase"] for p in pods] == ["Failed", "Failed"]
    first_end = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]
    gap = (datetime.fromisoformat(pods[1]["metadata"]["creationTimestamp"])
           - datetime.fromisoformat(first_end)).total_seconds()
    assert gap >= 9, f"the replacement pod came {gap}s after the failure, not after 10 s"
    assert "BackoffLimitExceeded" in event_reasons(batch_cluster, "doomed")


def test_indexed_job_gives_each_pod_its_completion_index(batch_cluster: Cluster):
    batch_cluster.kubectl("apply", "-f", "-", input=job_manifest(
        "shards", completions=3, parallelism=3, completionMode="Indexed"))
    batch_cluster.kubectl("wait", "--for=condition=complete", "job/shards", "-n", NAMESPACE,
                          "--timeout=30s", timeout=40)
    assert get(batch_cluster, "job", "shards")["status"]["completedIndexes"] == "0-2"
    indexes = set()
    for pod in pods_of(batch_cluster, "shards"):
        index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        assert pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == index
        assert pod["metadata"]["generateName"] == f"shards-{index}-"
        assert pod["spec"]["hostname"] == f"shards-{index}"
        env = pod["spec"]["containers"][0]["env"]
        assert env[0]["name"] == "JOB_COMPLETION_INDEX"
        indexes.add(index)
    assert indexes == {"0", "1", "2"}


def test_finished_job_is_deleted_after_its_ttl(batch_cluster: Cluster):
    batch_cluster.kubectl("apply", "-f", "-",
                          input=job_manifest("ephemeral", ttlSecondsAfterFinished=2))
    batch_cluster.kubectl("wait", "--for=condition=complete", "job/ephemeral", "-n", NAMESPACE,
                          "--timeout=30s", timeout=40)
    batch_cluster.kubectl("wait", "--for=delete", "job/ephemeral", "-n", NAMESPACE,
                          "--timeout=20s", timeout=30)


def test_cronjob_creates_the_job_of_each_scheduled_minute(batch_cluster: Cluster):
    deadline = time.monotonic() + 75
    cronjob = get(batch_cluster, "cronjob", "tick")
    while not cronjob.get("status", {}).get("lastScheduleTime"):
        assert time.monotonic() < deadline, "the CronJob was not scheduled within a minute"
        time.sleep(1)
        cronjob = get(batch_cluster, "cronjob", "tick")
    scheduled = datetime.fromisoformat(cronjob["status"]["lastScheduleTime"])
    assert scheduled.second == 0 and scheduled <= datetime.now(UTC)
    name = f"tick-{int(scheduled.timestamp()) // 60}"
    job = get(batch_cluster, "job", name)
    assert job["metadata"]["ownerReferences"][0]["name"] == "tick"
    assert job["metadata"]["annotations"][
        "batch.kubernetes.io/cronjob-scheduled-timestamp"] == \
        cronjob["status"]["lastScheduleTime"]
    batch_cluster.kubectl("wait", "--for=condition=complete", f"job/{name}", "-n", NAMESPACE,
                          "--timeout=30s", timeout=40)
    deadline = time.monotonic() + 10
    while not get(batch_cluster, "cronjob", "tick")["status"].get("lastSuccessfulTime"):
        assert time.monotonic() < deadline, "lastSuccessfulTime was not recorded"
        time.sleep(0.5)
    assert "SuccessfulCreate" in event_reasons(batch_cluster, "tick")
