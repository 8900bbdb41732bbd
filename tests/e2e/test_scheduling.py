"""The scheduler inside `pilothouse up`, seen through kubectl: pods land on hollow nodes
that suit them, and a pod or gang that fits nowhere says why and waits."""

from __future__ import annotations

import json
import time
from typing import Any

import yaml

from .conftest import Cluster, hollow_nodes, wait_for


def nodes(cluster: Cluster) -> list[dict[str, Any]]:
    return json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]


def pod(cluster: Cluster, name: str, namespace: str) -> dict[str, Any]:
    return json.loads(cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout)


def pod_manifest(name: str, *, cpu: str = "100m", labels: dict[str, str] | None = None,
                 **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.36",
                                     "resources": {"requests": {"cpu": cpu}}}], **spec}}


def create(cluster: Cluster, namespace: str, *objects: dict[str, Any]) -> None:
    cluster.kubectl("create", "-n", namespace, "-f", "-",
                    input=yaml.safe_dump_all(objects))


def namespace(cluster: Cluster, name: str) -> str:
    cluster.kubectl("create", "namespace", name)
    return name


def test_pods_are_bound_and_run_where_selectors_and_taints_allow(cluster: Cluster) -> None:
    ns = namespace(cluster, "sched-place")
    with hollow_nodes(cluster, 2, "sched-gpu-", "--node-labels", "sched-e2e=place,gpu=yes",
                      "--register-with-taints", "dedicated=gpu:NoSchedule"), \
            hollow_nodes(cluster, 2, "sched-cpu-", "--node-labels", "sched-e2e=place"):
        create(cluster, ns,
               *(pod_manifest(f"plain-{i}", nodeSelector={"sched-e2e": "place"})
                 for i in range(4)),
               pod_manifest("wants-gpu", nodeSelector={"gpu": "yes"},
                            tolerations=[{"key": "dedicated", "operator": "Equal",
                                          "value": "gpu", "effect": "NoSchedule"}]),
               pod_manifest("affinity", affinity={"nodeAffinity": {
                   "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                       {"matchExpressions": [{"key": "sched-e2e", "operator": "In",
                                              "values": ["place"]},
                                             {"key": "gpu", "operator": "DoesNotExist"}]}]}}}))
        names = [*(f"plain-{i}" for i in range(4)), "wants-gpu", "affinity"]

        def running() -> bool:
            return all(pod(cluster, n, ns)["status"].get("phase") == "Running" for n in names)

        wait_for(running, "every pod Running")
        placed = {n: pod(cluster, n, ns)["spec"]["nodeName"] for n in names}
        assert placed["wants-gpu"].startswith("sched-gpu-")
        assert placed["affinity"].startswith("sched-cpu-")
        for i in range(4):  # untolerated taint: never on the gpu nodes
            assert placed[f"plain-{i}"].startswith("sched-cpu-"), placed
        scheduled = next(c for c in pod(cluster, "affinity", ns)["status"]["conditions"]
                         if c["type"] == "PodScheduled")
        assert scheduled["status"] == "True"
        events = cluster.kubectl("get", "events", "-n", ns,
                                 "--field-selector", "reason=Scheduled").stdout
        assert f"Successfully assigned {ns}/affinity to {placed['affinity']}" in events


def test_pod_too_large_for_every_node_says_why(cluster: Cluster) -> None:
    ns = namespace(cluster, "sched-big")
    with hollow_nodes(cluster, 2, "sched-big-"):
        # Tolerating every taint makes CPU the only reason on every node, whatever other
        # tests left behind.
        create(cluster, ns, pod_manifest("huge", cpu="1000",
                                         tolerations=[{"operator": "Exists"}]))

        def condition() -> dict[str, Any] | None:
            return next((c for c in pod(cluster, "huge", ns)["status"].get("conditions", [])
                         if c["type"] == "PodScheduled"), None)

        found = wait_for(condition, "a PodScheduled condition")
        total = len(nodes(cluster))
        assert found["status"] == "False"
        assert found["reason"] == "Unschedulable"
        # As a real cluster words it, double full stop included.
        assert found["message"] == (
            f"0/{total} nodes are available: {total} Insufficient cpu. preemption: 0/{total} "
            f"nodes are available: {total} No preemption victims found for incoming pod..")
        described = cluster.kubectl("describe", "pod", "huge", "-n", ns).stdout
        assert "FailedScheduling" in described
        assert f"0/{total} nodes are available: {total} Insufficient cpu." in described


def test_gang_waits_for_room_for_all_of_its_members(cluster: Cluster) -> None:
    ns = namespace(cluster, "sched-gang")
    wait_for(lambda: cluster.kubectl("get", "crd", "podgroups.scheduling.x-k8s.io",
                                     check=False).returncode == 0,
             "the scheduler to install the PodGroup CRD")
    cluster.kubectl("wait", "--for=condition=Established",
                    "crd/podgroups.scheduling.x-k8s.io", "--timeout=20s")
    create(cluster, ns, {"apiVersion": "scheduling.x-k8s.io/v1alpha1", "kind": "PodGroup",
                         "metadata": {"name": "trio"},
                         "spec": {"minMember": 3, "scheduleTimeoutSeconds": 5}})
    gang = [pod_manifest(f"member-{i}", cpu="600m",
                         labels={"scheduling.x-k8s.io/pod-group": "trio"},
                         nodeSelector={"sched-e2e": "gang"}) for i in range(3)]
    # 1-CPU nodes take one member each: two nodes are one short.
    with hollow_nodes(cluster, 2, "sched-gang-a-", "--cpu", "1",
                      "--node-labels", "sched-e2e=gang"):
        create(cluster, ns, *gang)
        time.sleep(4)
        for i in range(3):
            member = pod(cluster, f"member-{i}", ns)
            assert not member["spec"].get("nodeName"), "a gang member was bound alone"
            assert member["status"].get("phase") == "Pending"
        with hollow_nodes(cluster, 1, "sched-gang-b-", "--cpu", "1",
                          "--node-labels", "sched-e2e=gang"):
            wait_for(lambda: all(pod(cluster, f"member-{i}", ns)["spec"].get("nodeName")
                                 for i in range(3)), "the whole gang bound")
            placed = {pod(cluster, f"member-{i}", ns)["spec"]["nodeName"] for i in range(3)}
            assert len(placed) == 3
