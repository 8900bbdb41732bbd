"""Endpoints, EndpointSlices, StatefulSets and DaemonSets through the real kubectl, against
`pilothouse up` (controller manager and scheduler) with hollow nodes that run the pods.

The hollow nodes carry a label of their own, and the StatefulSet and DaemonSet select them
by it, so no pod lands on a node another test module started (and may have stopped); one
of them is tainted before the DaemonSet exists.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from .conftest import Cluster, hollow_nodes, wait_for

NAMESPACE = "sets-e2e"
PREFIX = "sets-node-"
NODES = 3
GROUP_LABEL = "pilothouse.dev/e2e-group"
GROUP = "sets"


def apply(cluster: Cluster, *objects: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))


def get_json(cluster: Cluster, *args: str) -> dict[str, Any]:
    return json.loads(cluster.kubectl("get", *args, "-n", NAMESPACE, "-o", "json").stdout)


def pod_table(cluster: Cluster) -> str:
    """The namespace's pods and where they run, for failure messages."""
    return cluster.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide", check=False).stdout


@pytest.fixture(scope="module")
def nodes(cluster: Cluster) -> Iterator[list[str]]:
    """NODES hollow nodes, Ready; stopped and deleted at the end."""
    cluster.kubectl("create", "namespace", NAMESPACE)
    try:
        with hollow_nodes(cluster, NODES, PREFIX, "--node-labels",
                          f"{GROUP_LABEL}={GROUP}") as names:
            yield names
    finally:
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def bound_pod(name: str, node: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
            "spec": {"nodeName": node, "containers": [{
                "name": "web", "image": "nginx", "ports": [
                    {"name": "http", "containerPort": 8080}]}]}}


def test_service_endpoints_and_slices_list_ready_pods(cluster: Cluster, nodes: list[str]) -> None:
    apply(cluster,
          {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "web", "namespace": NAMESPACE, "labels": {"tier": "front"}},
           "spec": {"selector": {"app": "web"},
                    "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}},
          {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "manual", "namespace": NAMESPACE},
           "spec": {"ports": [{"port": 80}]}},
          *(bound_pod(f"web-{i}", nodes[i], {"app": "web"}) for i in range(3)),
          bound_pod("other", nodes[0], {"app": "other"}))

    def endpoints() -> list[tuple[str, str, int]] | None:
        ep = get_json(cluster, "endpoints", "web")
        found = sorted((a["targetRef"]["name"], a["nodeName"], s["ports"][0]["port"])
                       for s in ep.get("subsets") or [] for a in s.get("addresses") or [])
        return found if len(found) == 3 else None

    assert wait_for(endpoints, "3 ready addresses in the Endpoints") == [
        ("web-0", nodes[0], 8080), ("web-1", nodes[1], 8080), ("web-2", nodes[2], 8080)]
    ep = get_json(cluster, "endpoints", "web")
    assert ep["metadata"]["labels"] == {"tier": "front"}
    # The trigger-time annotation is only set by a write whose change has a newer trigger
    # than the last sync saw (second-precision, as upstream), so it is not asserted here.

    def slice_endpoints() -> list[dict[str, Any]] | None:
        slices = get_json(cluster, "endpointslices", "-l",
                          "kubernetes.io/service-name=web")["items"]
        found = [e for s in slices for e in s.get("endpoints") or []]
        return slices if len(slices) == 1 and len(found) == 3 and all(
            e["conditions"]["ready"] for e in found) else None

    (web_slice,) = wait_for(slice_endpoints, "one EndpointSlice with 3 ready endpoints")
    assert web_slice["metadata"]["name"].startswith("web-")
    assert web_slice["metadata"]["labels"][
        "endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    assert web_slice["addressType"] == "IPv4"
    assert web_slice["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert sorted(e["targetRef"]["name"] for e in web_slice["endpoints"]) == [
        "web-0", "web-1", "web-2"]

    cluster.kubectl("delete", "pod", "web-1", "-n", NAMESPACE)
    wait_for(lambda: [
        a["targetRef"]["name"] for s in get_json(cluster, "endpoints", "web").get("subsets") or []
        for a in s.get("addresses") or []] == ["web-0", "web-2"], "web-1 to leave the Endpoints")
    # A Service without a selector gets no Endpoints from the controller.
    missing = cluster.kubectl("get", "endpoints", "manual", "-n", NAMESPACE, check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_statefulset_comes_up_in_order_with_claims(cluster: Cluster, nodes: list[str]) -> None:
    apply(cluster,
          {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "db", "namespace": NAMESPACE},
           "spec": {"clusterIP": "None", "selector": {"app": "db"},
                    "ports": [{"port": 5432}]}},
          {"apiVersion": "apps/v1", "kind": "StatefulSet",
           "metadata": {"name": "db", "namespace": NAMESPACE},
           "spec": {"replicas": 3, "serviceName": "db",
                    "selector": {"matchLabels": {"app": "db"}},
                    "template": {"metadata": {"labels": {"app": "db"}},
                                 "spec": {"nodeSelector": {GROUP_LABEL: GROUP},
                                          "containers": [{"name": "db", "image": "postgres"}]}},
                    "volumeClaimTemplates": [{
                        "metadata": {"name": "data"},
                        "spec": {"accessModes": ["ReadWriteOnce"],
                                 "resources": {"requests": {"storage": "1Gi"}}}}]}})
    rollout = cluster.kubectl("rollout", "status", "sts/db", "-n", NAMESPACE, "--timeout=45s",
                              check=False, timeout=60)
    assert rollout.returncode == 0, rollout.stdout + rollout.stderr + pod_table(cluster)
    pods = {p["metadata"]["name"]: p for p in get_json(cluster, "pods", "-l", "app=db")["items"]}
    assert sorted(pods) == ["db-0", "db-1", "db-2"]
    for ordinal in range(3):
        pod = pods[f"db-{ordinal}"]
        assert pod["spec"]["hostname"] == f"db-{ordinal}"
        assert pod["spec"]["subdomain"] == "db"
        assert pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == f"db-{ordinal}"
        assert pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == str(ordinal)
        claim = next(v for v in pod["spec"]["volumes"] if v["name"] == "data")
        assert claim["persistentVolumeClaim"]["claimName"] == f"data-db-{ordinal}"
    # OrderedReady: each pod was created only once its predecessor was ready.
    for ordinal in (1, 2):
        before = pods[f"db-{ordinal - 1}"]
        ready = next(c for c in before["status"]["conditions"] if c["type"] == "Ready")
        assert pods[f"db-{ordinal}"]["metadata"]["creationTimestamp"] >= ready[
            "lastTransitionTime"]
    claims = get_json(cluster, "persistentvolumeclaims")["items"]
    assert sorted(c["metadata"]["name"] for c in claims) == ["data-db-0", "data-db-1",
                                                             "data-db-2"]
    assert all(c["metadata"]["labels"] == {"app": "db"} for c in claims)
    sts = get_json(cluster, "statefulset", "db")
    status = sts["status"]
    assert (status["replicas"], status["readyReplicas"], status["currentReplicas"],
            status["updatedReplicas"]) == (3, 3, 3, 3)
    assert status["currentRevision"] == status["updateRevision"]
    assert {p["metadata"]["labels"]["controller-revision-hash"] for p in pods.values()} == {
        status["updateRevision"]}
    revisions = get_json(cluster, "controllerrevisions")["items"]
    assert status["updateRevision"] in [r["metadata"]["name"] for r in revisions]
    # The headless Service names each pod by its hostname.
    ep = wait_for(lambda: (lambda s: s if len(
        s) == 3 else None)([a for s in get_json(cluster, "endpoints", "db").get("subsets") or []
                            for a in s.get("addresses") or []]), "the headless Service's 3 addresses")
    assert sorted(a["hostname"] for a in ep) == ["db-0", "db-1", "db-2"]


def test_daemonset_runs_one_pod_per_eligible_node(cluster: Cluster, nodes: list[str]) -> None:
    tainted = nodes[2]
    cluster.kubectl("taint", "node", tainted, "dedicated=infra:NoSchedule")
    apply(cluster, {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": NAMESPACE},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
                 "template": {"metadata": {"labels": {"app": "agent"}},
                              "spec": {"nodeSelector": {GROUP_LABEL: GROUP},
                                       "containers": [{"name": "agent", "image": "busybox"}]}}}})
    rollout = cluster.kubectl("rollout", "status", "ds/agent", "-n", NAMESPACE, "--timeout=45s",
                              check=False, timeout=60)
    assert rollout.returncode == 0, rollout.stdout + rollout.stderr + pod_table(cluster)
    pods = get_json(cluster, "pods", "-l", "app=agent")["items"]
    assert sorted(p["spec"].get("nodeName") for p in pods) == sorted(nodes[:2])
    for pod in pods:
        terms = pod["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert terms == [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                           "values": [pod["spec"]["nodeName"]]}]}]
        assert {"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                "effect": "NoSchedule"} in pod["spec"]["tolerations"]
    status = get_json(cluster, "daemonset", "agent")["status"]
    assert (status["desiredNumberScheduled"], status["currentNumberScheduled"],
            status["numberReady"], status["updatedNumberScheduled"],
            status["numberAvailable"], status["numberMisscheduled"]) == (2, 2, 2, 2, 2, 0)

    # Lifting the taint makes the third node eligible.
    cluster.kubectl("taint", "node", tainted, "dedicated=infra:NoSchedule-")
    wait_for(lambda: tainted in [
        p["spec"].get("nodeName") for p in get_json(cluster, "pods", "-l", "app=agent")["items"]],
        "a daemon pod on the untainted node")
