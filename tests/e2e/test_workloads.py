"""Deployments and ReplicaSets end to end: the real kubectl against `pilothouse up`, with
hollow nodes that run the pods, as a user rolls an app out, scales it, updates it, rolls
it back, pauses it and restarts it."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .conftest import Cluster, hollow_nodes, wait_for

NODES = 3
#: How long the first pod may take to be scheduled and run (scheduler and nodes start).
FIRST_POD_TIMEOUT = 30
ROLLOUT_TIMEOUT = "45s"


def get_json(cluster: Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def diagnostics(cluster: Cluster, namespace: str) -> str:
    shown = cluster.kubectl("-n", namespace, "get", "deploy,rs,pods", "-o", "wide",
                            check=False)
    events = cluster.kubectl("-n", namespace, "get", "events", check=False)
    return f"{shown.stdout}{shown.stderr}\n{events.stdout}"


@pytest.fixture(scope="module")
def nodes(cluster: Cluster) -> Iterator[list[str]]:
    """Hollow nodes under a unique prefix, registered and ready; removed afterwards."""
    with hollow_nodes(cluster, NODES, f"wl-{secrets.token_hex(3)}-") as names:
        yield names


@pytest.fixture(scope="module")
def namespace(cluster: Cluster, nodes: list[str]) -> Iterator[str]:
    """A namespace of this module's own, where pods provably get scheduled and run."""
    name = f"workloads-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("-n", name, "run", "probe", "--image=busybox", "--restart=Never")

    def probe_running() -> bool:
        pod = get_json(cluster, "-n", name, "pod", "probe")
        return (pod.get("status") or {}).get("phase") == "Running"

    try:
        wait_for(probe_running, "a pod to be scheduled onto a hollow node and run "
                 "(are the scheduler and the hollow nodes working?)",
                 timeout=FIRST_POD_TIMEOUT, explain=lambda: diagnostics(cluster, name))
        cluster.kubectl("-n", name, "delete", "pod", "probe", "--wait=false")
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def rollout_status(cluster: Cluster, namespace: str, deployment: str) -> str:
    result = cluster.kubectl("-n", namespace, "rollout", "status", f"deploy/{deployment}",
                             f"--timeout={ROLLOUT_TIMEOUT}", check=False, timeout=60)
    assert result.returncode == 0, (
        f"rollout of {deployment} did not finish:\n{result.stdout}{result.stderr}\n"
        f"{diagnostics(cluster, namespace)}")
    assert f'deployment "{deployment}" successfully rolled out' in result.stdout
    return result.stdout


def create_deployment(cluster: Cluster, namespace: str, name: str, *, image: str = "nginx:1.27",
                      replicas: int = 3) -> None:
    cluster.kubectl("-n", namespace, "create", "deployment", name, f"--image={image}",
                    f"--replicas={replicas}")
    rollout_status(cluster, namespace, name)


def live_pods(cluster: Cluster, namespace: str, app: str) -> list[dict[str, Any]]:
    pods = get_json(cluster, "-n", namespace, "pods", "-l", f"app={app}")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def images(pods: list[dict[str, Any]]) -> set[str]:
    return {p["spec"]["containers"][0]["image"] for p in pods}


def history_revisions(cluster: Cluster, namespace: str, deployment: str) -> list[str]:
    out = cluster.kubectl("-n", namespace, "rollout", "history", f"deploy/{deployment}").stdout
    return [line.split()[0] for line in out.splitlines() if line[:1].isdigit()]


def test_create_deployment_rolls_out_through_a_replica_set(cluster: Cluster,
                                                           namespace: str) -> None:
    create_deployment(cluster, namespace, "web")
    row = cluster.kubectl("-n", namespace, "get", "deploy", "web", "--no-headers").stdout.split()
    assert row[:4] == ["web", "3/3", "3", "3"]
    [rs] = get_json(cluster, "-n", namespace, "rs", "-l", "app=web")["items"]
    template_hash = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{template_hash}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web",
                                                     "pod-template-hash": template_hash}
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    pods = live_pods(cluster, namespace, "web")
    assert len(pods) == 3
    for pod in pods:
        assert pod["metadata"]["name"].startswith(f"web-{template_hash}-")
        assert pod["metadata"]["ownerReferences"][0]["name"] == rs["metadata"]["name"]
    events = cluster.kubectl("-n", namespace, "get", "events",
                             "--field-selector", "reason=ScalingReplicaSet").stdout
    assert f"Scaled up replica set web-{template_hash} to 3 from 0" in events


def test_scale_up_and_down(cluster: Cluster, namespace: str) -> None:
    create_deployment(cluster, namespace, "scaled", replicas=2)
    cluster.kubectl("-n", namespace, "scale", "deploy/scaled", "--replicas=5")
    rollout_status(cluster, namespace, "scaled")
    assert cluster.kubectl("-n", namespace, "get", "deploy", "scaled",
                           "--no-headers").stdout.split()[1] == "5/5"
    cluster.kubectl("-n", namespace, "scale", "deploy/scaled", "--replicas=1")
    rollout_status(cluster, namespace, "scaled")
    wait_for(lambda: len(live_pods(cluster, namespace, "scaled")) == 1, "scale down to 1 pod",
             explain=lambda: diagnostics(cluster, namespace))
    assert len(get_json(cluster, "-n", namespace, "rs", "-l", "app=scaled")["items"]) == 1


def test_set_image_rolls_out_a_second_revision_and_undo_returns_to_the_first(
        cluster: Cluster, namespace: str) -> None:
    create_deployment(cluster, namespace, "app", image="nginx:1.27")
    cluster.kubectl("-n", namespace, "set", "image", "deploy/app", "nginx=nginx:1.28")
    rollout_status(cluster, namespace, "app")
    assert images(live_pods(cluster, namespace, "app")) == {"nginx:1.28"}
    assert history_revisions(cluster, namespace, "app") == ["1", "2"]
    replica_sets = get_json(cluster, "-n", namespace, "rs", "-l", "app=app")["items"]
    assert sorted(rs["spec"]["replicas"] for rs in replica_sets) == [0, 3]

    cluster.kubectl("-n", namespace, "rollout", "undo", "deploy/app")
    rollout_status(cluster, namespace, "app")
    wait_for(lambda: images(live_pods(cluster, namespace, "app")) == {"nginx:1.27"},
             "the old pods of revision 2 to go", explain=lambda: diagnostics(cluster, namespace))
    deploy = get_json(cluster, "-n", namespace, "deploy", "app")
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    assert history_revisions(cluster, namespace, "app") == ["2", "3"]


def test_pause_holds_a_rollout_until_resume(cluster: Cluster, namespace: str) -> None:
    create_deployment(cluster, namespace, "held", image="nginx:1.27", replicas=2)
    cluster.kubectl("-n", namespace, "rollout", "pause", "deploy/held")
    cluster.kubectl("-n", namespace, "set", "image", "deploy/held", "nginx=nginx:1.29")

    def paused_condition() -> bool:
        status = get_json(cluster, "-n", namespace, "deploy", "held")["status"]
        return any(c["type"] == "Progressing" and c["reason"] == "DeploymentPaused"
                   for c in status.get("conditions") or [])

    wait_for(paused_condition, "the Progressing condition to say DeploymentPaused")
    time.sleep(1)
    assert len(get_json(cluster, "-n", namespace, "rs", "-l", "app=held")["items"]) == 1
    assert images(live_pods(cluster, namespace, "held")) == {"nginx:1.27"}

    cluster.kubectl("-n", namespace, "rollout", "resume", "deploy/held")
    rollout_status(cluster, namespace, "held")
    wait_for(lambda: images(live_pods(cluster, namespace, "held")) == {"nginx:1.29"},
             "the resumed rollout to replace every pod")


def test_restart_replaces_every_pod(cluster: Cluster, namespace: str) -> None:
    create_deployment(cluster, namespace, "restarted", replicas=2)
    before = {p["metadata"]["name"] for p in live_pods(cluster, namespace, "restarted")}
    cluster.kubectl("-n", namespace, "rollout", "restart", "deploy/restarted")
    rollout_status(cluster, namespace, "restarted")

    def all_new() -> bool:
        pods = live_pods(cluster, namespace, "restarted")
        return len(pods) == 2 and not before & {p["metadata"]["name"] for p in pods}

    wait_for(all_new, "every pod to be replaced", explain=lambda: diagnostics(cluster, namespace))
    template = get_json(cluster, "-n", namespace, "deploy", "restarted")["spec"]["template"]
    assert "kubectl.kubernetes.io/restartedAt" in template["metadata"]["annotations"]
    assert history_revisions(cluster, namespace, "restarted") == ["1", "2"]


REPLICA_SET = """
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: keeper}
spec:
  replicas: 2
  selector: {matchLabels: {app: keeper}}
  template:
    metadata: {labels: {app: keeper}}
    spec:
      containers: [{name: main, image: busybox}]
"""


def test_replica_set_adopts_a_matching_orphan_and_replaces_deleted_pods(
        cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("-n", namespace, "run", "stray", "--image=busybox", "--labels=app=keeper")
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=REPLICA_SET)

    def adopted() -> bool:
        stray = get_json(cluster, "-n", namespace, "pod", "stray")
        refs = stray["metadata"].get("ownerReferences") or []
        return [(r["kind"], r["name"], r.get("controller")) for r in refs] == [
            ("ReplicaSet", "keeper", True)]

    wait_for(adopted, "the ReplicaSet to adopt the orphan pod",
             explain=lambda: diagnostics(cluster, namespace))

    def ready(count: int) -> Callable[[], bool]:
        def check() -> bool:
            status = get_json(cluster, "-n", namespace, "rs", "keeper").get("status") or {}
            return status.get("readyReplicas") == count and status.get("replicas") == count
        return check

    wait_for(ready(2), "2 ready replicas", explain=lambda: diagnostics(cluster, namespace))
    assert len(live_pods(cluster, namespace, "keeper")) == 2

    cluster.kubectl("-n", namespace, "delete", "pod", "stray", "--wait=false")
    wait_for(lambda: len(live_pods(cluster, namespace, "keeper")) == 2 and all(
        p["metadata"]["name"] != "stray" for p in live_pods(cluster, namespace, "keeper")),
        "a replacement for the deleted pod", explain=lambda: diagnostics(cluster, namespace))
    wait_for(ready(2), "2 ready replicas again", explain=lambda: diagnostics(cluster, namespace))
