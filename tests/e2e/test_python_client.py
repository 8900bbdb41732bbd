"""The official `kubernetes` Python client against a real `pilothouse up`."""

from __future__ import annotations

import os
import signal
import subprocess
import threading

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from .conftest import Cluster, start_cluster, stop_cluster


def api_client(cluster: Cluster) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


def pod(name: str, labels: dict[str, str] | None = None) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels or {}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="main", image="python:3.11")]),
    )


def test_crud_selectors_pagination(cluster: Cluster) -> None:
    core = client.CoreV1Api(api_client(cluster))
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="py")))
    for i in range(7):
        core.create_namespaced_pod("py", pod(f"p{i}", {"parity": "even" if i % 2 == 0 else "odd"}))
    created = core.read_namespaced_pod("p0", "py")
    assert created.status.phase == "Pending"
    assert created.spec.restart_policy == "Always"  # defaulted
    assert created.metadata.uid and created.metadata.resource_version

    evens = core.list_namespaced_pod("py", label_selector="parity=even")
    assert sorted(p.metadata.name for p in evens.items) == ["p0", "p2", "p4", "p6"]
    one = core.list_namespaced_pod("py", field_selector="metadata.name=p3")
    assert [p.metadata.name for p in one.items] == ["p3"]
    pending = core.list_namespaced_pod("py", field_selector="status.phase=Pending")
    assert len(pending.items) == 7

    names, token = [], None
    while True:
        page = core.list_namespaced_pod("py", limit=3, _continue=token)
        names += [p.metadata.name for p in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert names == [f"p{i}" for i in range(7)]

    with pytest.raises(ApiException) as bad_selector:
        core.list_namespaced_pod("py", field_selector="spec.nope=1")
    assert bad_selector.value.status == 400


def test_conflict_patch_and_delete(cluster: Cluster) -> None:
    core = client.CoreV1Api(api_client(cluster))
    cm = core.create_namespaced_config_map("default", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="cfg"), data={"k": "v1"}))
    cm.data["k"] = "v2"
    updated = core.replace_namespaced_config_map("cfg", "default", cm)
    cm.data["k"] = "v3"  # still carries the old resourceVersion
    with pytest.raises(ApiException) as stale:
        core.replace_namespaced_config_map("cfg", "default", cm)
    assert stale.value.status == 409
    assert int(updated.metadata.resource_version) > int(cm.metadata.resource_version)
    patched = core.patch_namespaced_config_map("cfg", "default", {"data": {"extra": "x"}})
    assert patched.data == {"k": "v2", "extra": "x"}
    core.delete_namespaced_config_map("cfg", "default")
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_config_map("cfg", "default")
    assert gone.value.status == 404


def test_watch_stream(cluster: Cluster) -> None:
    api = api_client(cluster)
    core = client.CoreV1Api(api)
    start = core.list_namespaced_config_map("default").metadata.resource_version
    seen: list[tuple[str, str]] = []

    def follow() -> None:
        w = watch.Watch()
        for event in w.stream(core.list_namespaced_config_map, "default",
                              resource_version=start, timeout_seconds=10):
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) == 3:
                w.stop()

    thread = threading.Thread(target=follow)
    thread.start()
    core.create_namespaced_config_map("default", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="w"), data={"a": "1"}))
    core.patch_namespaced_config_map("w", "default", {"data": {"a": "2"}})
    core.delete_namespaced_config_map("w", "default")
    thread.join(15)
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def test_custom_objects(cluster: Cluster) -> None:
    api = api_client(cluster)
    ext = client.ApiextensionsV1Api(api)
    ext.create_custom_resource_definition({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gizmos.pyclient.example.org"},
        "spec": {"group": "pyclient.example.org", "scope": "Cluster",
                 "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"},
                 "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {
                                   "type": "object",
                                   "x-kubernetes-preserve-unknown-fields": True}}}]}})
    custom = client.CustomObjectsApi(api)
    for _ in range(50):
        try:
            custom.create_cluster_custom_object("pyclient.example.org", "v1alpha1", "gizmos", {
                "apiVersion": "pyclient.example.org/v1alpha1", "kind": "Gizmo",
                "metadata": {"name": "g"}, "spec": {"anything": [1, 2]}})
            break
        except ApiException as exc:
            assert exc.status == 404
            threading.Event().wait(0.1)
    got = custom.get_cluster_custom_object("pyclient.example.org", "v1alpha1", "gizmos", "g")
    assert got["spec"] == {"anything": [1, 2]}
    custom.patch_cluster_custom_object("pyclient.example.org", "v1alpha1", "gizmos", "g",
                                       {"spec": {"more": True}})
    got = custom.get_cluster_custom_object("pyclient.example.org", "v1alpha1", "gizmos", "g")
    assert got["spec"] == {"anything": [1, 2], "more": True}
    # Cluster-scoped and shared: leave no kind behind for later tests' kubectl to match.
    ext.delete_custom_resource_definition("gizmos.pyclient.example.org")


def test_acknowledged_writes_survive_kill_9(tmp_path) -> None:
    """Create objects as fast as possible, SIGKILL the server, restart: all acked objects exist."""
    cluster = start_cluster(tmp_path / "data", tmp_path / "home")
    acked: list[str] = []
    try:
        core = client.CoreV1Api(api_client(cluster))

        def writer() -> None:
            i = 0
            while True:
                try:
                    core.create_namespaced_config_map("default", client.V1ConfigMap(
                        metadata=client.V1ObjectMeta(name=f"c{i}"), data={"i": str(i)}))
                except Exception:
                    return
                acked.append(f"c{i}")
                i += 1

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        while len(acked) < 100:
            threading.Event().wait(0.01)
        os.kill(cluster.process.pid, signal.SIGKILL)
        cluster.process.wait()
        thread.join(10)
    finally:
        if cluster.process.poll() is None:
            cluster.process.kill()
    restarted = start_cluster(tmp_path / "data", tmp_path / "home", cluster.port)
    try:
        core = client.CoreV1Api(api_client(restarted))
        names = {c.metadata.name for c in core.list_namespaced_config_map("default").items}
        assert set(acked) <= names
    finally:
        stop_cluster(restarted)


def test_second_up_on_same_data_dir_is_refused(cluster: Cluster) -> None:
    result = subprocess.run(
        ["python", "-m", "pilothouse.cli", "up", "--data-dir", str(cluster.data_dir),
         "--port", "1"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "in use by another Pilothouse process" in result.stderr


def test_services_get_cluster_ips(cluster: Cluster) -> None:
    core = client.CoreV1Api(api_client(cluster))
    assert core.read_namespaced_service("kubernetes", "default").spec.cluster_ip == "127.96.0.1"
    ips = set()
    for name in ("a", "b"):
        svc = core.create_namespaced_service("default", client.V1Service(
            metadata=client.V1ObjectMeta(name=f"svc-{name}"),
            spec=client.V1ServiceSpec(selector={"app": name},
                                      ports=[client.V1ServicePort(port=80)], type="NodePort")))
        assert svc.spec.cluster_ip.startswith("127.96.") and svc.spec.cluster_ips == [svc.spec.cluster_ip]
        assert 30000 <= svc.spec.ports[0].node_port <= 32767
        ips.add(svc.spec.cluster_ip)
    assert len(ips) == 2 and "127.96.0.1" not in ips
    headless = core.create_namespaced_service("default", client.V1Service(
        metadata=client.V1ObjectMeta(name="svc-headless"),
        spec=client.V1ServiceSpec(cluster_ip="None", selector={"app": "x"},
                                  ports=[client.V1ServicePort(port=80)])))
    assert headless.spec.cluster_ip == "None"


def test_binding_and_graceful_pod_deletion(cluster: Cluster) -> None:
    core = client.CoreV1Api(api_client(cluster))
    manual = pod("graceful")
    manual.spec.scheduler_name = "nobody"  # bound by this test, not by the scheduler
    core.create_namespaced_pod("default", manual)
    binding = client.V1Binding(metadata=client.V1ObjectMeta(name="graceful"),
                               target=client.V1ObjectReference(kind="Node", name="node-a"))
    core.create_namespaced_pod_binding("graceful", "default", binding,
                                       _preload_content=False)
    bound = core.read_namespaced_pod("graceful", "default")
    assert bound.spec.node_name == "node-a"
    assert [(c.type, c.status) for c in bound.status.conditions] == [("PodScheduled", "True")]
    with pytest.raises(ApiException) as again:
        core.create_namespaced_pod_binding("graceful", "default", binding,
                                           _preload_content=False)
    assert again.value.status == 409
    core.delete_namespaced_pod("graceful", "default")  # its node's agent would finish it
    terminating = core.read_namespaced_pod("graceful", "default")
    assert terminating.metadata.deletion_timestamp is not None
    assert terminating.metadata.deletion_grace_period_seconds == 30
    core.delete_namespaced_pod("graceful", "default", grace_period_seconds=0)
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_pod("graceful", "default")
    assert gone.value.status == 404
