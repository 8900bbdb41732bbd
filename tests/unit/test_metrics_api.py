"""The resource metrics API (metrics.k8s.io/v1beta1) the API server serves from the kubelets'
summaries, in the shapes `kubectl top` and metrics-server's clients read."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilothouse.apiserver.metrics import Usage, parse_summary
from tests.fake_kubelet import summary
from tests.inprocess import (
    InProcessCluster,
    create,
    create_namespace_accounts,
    create_nodes,
    in_process_cluster,
    pod,
)

METRICS = "/apis/metrics.k8s.io/v1beta1"
MIB = 1024 * 1024


def test_usage_is_written_as_metrics_server_writes_it() -> None:
    assert Usage("t", 250_000_000, 512 * MIB).quantities() == {"cpu": "250m", "memory": "512Mi"}
    assert Usage("t", 137_435_569, 1_525_387_264).quantities() == {
        "cpu": "137435569n", "memory": "1489636Ki"}
    assert Usage("t", 0, 1000).quantities() == {"cpu": "0", "memory": "1k"}


def test_a_summary_gives_the_node_and_each_pod_with_complete_containers() -> None:
    body = summary("n1", {("default", "web"): {"app": (1_000_000, 4 * MIB)},
                          ("kube-system", "dns"): {"dns": (2_000_000, 8 * MIB)}})
    body["pods"].append({"podRef": {"name": "starting", "namespace": "default"},
                         "containers": [{"name": "app", "cpu": {}, "memory": {}}]})
    node, pods = parse_summary(body)
    assert node is not None and (node.cpu_nanocores, node.memory_bytes) == (250_000_000,
                                                                            512 * MIB)
    assert set(pods) == {("default", "web"), ("kube-system", "dns")}
    (name, usage), = pods[("default", "web")].containers
    assert (name, usage.cpu_nanocores, usage.memory_bytes) == ("app", 1_000_000, 4 * MIB)
    assert parse_summary({}) == (None, {})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessCluster]:
    with in_process_cluster(Path(tmp_path_factory.mktemp("metrics"))) as running:
        running.kubelet.summary = summary("n1", {
            ("default", "web"): {"app": (5_000_000, 20 * MIB), "proxy": (1_000_000, 4 * MIB)},
            ("default", "db"): {"db": (30_000_000, 100 * MIB)},
            ("team", "job"): {"main": (7_000_000, 1 * MIB)},
            ("default", "ghost"): {"app": (1, 1)},  # no such Pod: not reported
        })

        async def setup() -> None:
            async with running.session() as admin:
                await create_nodes(admin, running,
                                   labels={"n1": {"zone": "a"}, "hollow-1": {"zone": "b"}})
                await create(admin, "/api/v1/namespaces", {"metadata": {"name": "team"}})
                await create_namespace_accounts(admin, "team")
                for body in (pod("web", "n1", "app", "proxy", labels={"app": "web"}),
                             pod("db", "n1", "db", labels={"app": "db"}),
                             pod("job", "n1", "main", namespace="team"),
                             pod("queued", None, "app")):
                    namespace = body["metadata"]["namespace"]
                    await create(admin, f"/api/v1/namespaces/{namespace}/pods", body)

        running.run(setup())
        yield running


def _get(cluster: InProcessCluster, path: str, user: str | None = None) -> tuple[int, dict]:
    async def go() -> tuple[int, dict]:
        session = cluster.session() if user is None else cluster.session(user, ())
        async with session as client, client.get(path) as response:
            return response.status, await response.json()

    return cluster.run(go())


def test_discovery_lists_the_group_and_its_resources(cluster: InProcessCluster) -> None:
    _, groups = _get(cluster, "/apis")
    metrics = next(g for g in groups["groups"] if g["name"] == "metrics.k8s.io")
    assert metrics["preferredVersion"] == {"groupVersion": "metrics.k8s.io/v1beta1",
                                           "version": "v1beta1"}
    _, resources = _get(cluster, METRICS)
    assert [(r["name"], r["kind"], r["namespaced"], r["verbs"])
            for r in resources["resources"]] == [
        ("nodes", "NodeMetrics", False, ["get", "list"]),
        ("pods", "PodMetrics", True, ["get", "list"])]


def test_node_metrics_list_and_get(cluster: InProcessCluster) -> None:
    code, listed = _get(cluster, f"{METRICS}/nodes")
    assert code == 200
    assert (listed["kind"], listed["apiVersion"]) == ("NodeMetricsList", "metrics.k8s.io/v1beta1")
    # The hollow node has no kubelet to ask: it is left out, as metrics-server leaves out
    # nodes it cannot scrape.
    (item,) = listed["items"]
    assert item["kind"] == "NodeMetrics"
    assert item["metadata"]["name"] == "n1"
    assert item["metadata"]["labels"]["zone"] == "a"
    assert item["metadata"]["creationTimestamp"].endswith("Z")
    assert item["usage"] == {"cpu": "250m", "memory": "512Mi"}
    assert item["window"] == "10s"
    assert item["timestamp"].endswith("Z")
    code, got = _get(cluster, f"{METRICS}/nodes/n1")
    assert (code, got["usage"]) == (200, item["usage"])
    for name in ("hollow-1", "nope"):
        code, status = _get(cluster, f"{METRICS}/nodes/{name}")
        assert (code, status["reason"]) == (404, "NotFound")
        assert status["message"] == f'nodemetrics.metrics.k8s.io "{name}" not found'


def test_node_metrics_follow_a_label_selector(cluster: InProcessCluster) -> None:
    _, zone_a = _get(cluster, f"{METRICS}/nodes?labelSelector=zone%3Da")
    assert [i["metadata"]["name"] for i in zone_a["items"]] == ["n1"]
    assert _get(cluster, f"{METRICS}/nodes?labelSelector=zone%3Db")[1]["items"] == []


def test_pod_metrics_list_in_a_namespace_and_across_namespaces(
        cluster: InProcessCluster) -> None:
    code, listed = _get(cluster, f"{METRICS}/namespaces/default/pods")
    assert (code, listed["kind"]) == (200, "PodMetricsList")
    by_name = {i["metadata"]["name"]: i for i in listed["items"]}
    assert set(by_name) == {"web", "db"}
    web = by_name["web"]
    assert web["metadata"]["namespace"] == "default"
    assert web["metadata"]["labels"] == {"app": "web"}
    assert web["containers"] == [{"name": "app", "usage": {"cpu": "5m", "memory": "20Mi"}},
                                 {"name": "proxy", "usage": {"cpu": "1m", "memory": "4Mi"}}]
    _, everywhere = _get(cluster, f"{METRICS}/pods")
    assert {(i["metadata"]["namespace"], i["metadata"]["name"])
            for i in everywhere["items"]} == {("default", "web"), ("default", "db"),
                                              ("team", "job")}


def test_pod_metrics_get_and_selectors(cluster: InProcessCluster) -> None:
    code, got = _get(cluster, f"{METRICS}/namespaces/default/pods/db")
    assert (code, got["kind"], got["containers"][0]["usage"]) == (
        200, "PodMetrics", {"cpu": "30m", "memory": "100Mi"})
    for name in ("queued", "nope"):
        code, status = _get(cluster, f"{METRICS}/namespaces/default/pods/{name}")
        assert (code, status["message"]) == (
            404, f'podmetrics.metrics.k8s.io "{name}" not found')
    _, selected = _get(cluster, f"{METRICS}/namespaces/default/pods?labelSelector=app%3Dweb")
    assert [i["metadata"]["name"] for i in selected["items"]] == ["web"]
    _, by_field = _get(cluster, f"{METRICS}/pods?fieldSelector=metadata.namespace%3Dteam")
    assert [i["metadata"]["name"] for i in by_field["items"]] == ["job"]


def test_metrics_are_authorized_like_any_resource(cluster: InProcessCluster) -> None:
    code, status = _get(cluster, f"{METRICS}/namespaces/default/pods", user="mallory")
    assert (code, status["message"]) == (
        403, 'pods.metrics.k8s.io is forbidden: User "mallory" cannot list resource "pods" in '
        'API group "metrics.k8s.io" in the namespace "default"')

    async def grant_view() -> None:
        async with cluster.session() as admin:
            await create(admin,
                         "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
                         {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                          "metadata": {"name": "mallory-view", "namespace": "default"},
                          "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                      "kind": "ClusterRole", "name": "view"},
                          "subjects": [{"apiGroup": "rbac.authorization.k8s.io",
                                        "kind": "User", "name": "mallory"}]})

    cluster.run(grant_view())
    for _ in range(100):  # the authorizer learns of the binding through a watch
        code, listed = _get(cluster, f"{METRICS}/namespaces/default/pods", user="mallory")
        if code == 200:
            break
        time.sleep(0.05)
    # view aggregates system:aggregated-metrics-reader, as with metrics-server installed.
    assert code == 200
    assert {i["metadata"]["name"] for i in listed["items"]} == {"web", "db"}
