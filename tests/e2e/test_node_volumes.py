"""Every volume type on the real node agent: emptyDir (also in memory), configMap and secret
(with items, modes and live updates), downwardAPI, projected with a service account token,
hostPath, and a PersistentVolumeClaim provisioned by the built-in local-path provisioner."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from .conftest import IMAGE, Cluster, container_state, get_json, wait_for, wait_pod


def running(pod: dict) -> bool:
    return "running" in container_state(pod).get("state", {})


def run_pod(cluster: Cluster, ns: str, name: str, volumes: list, mounts: list) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns, "labels": {"tier": "gold"}},
           "spec": {"terminationGracePeriodSeconds": 1, "volumes": volumes,
                    "containers": [{"name": "main", "image": IMAGE,
                                    "command": ["sleep", "3600"], "volumeMounts": mounts,
                                    "resources": {"limits": {"cpu": "500m"}}}]}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
    wait_pod(cluster, ns, name, running, "running", timeout=40)


def sh(cluster: Cluster, ns: str, pod: str, script: str) -> str:
    return cluster.kubectl("exec", pod, "-n", ns, "--", "sh", "-c", script).stdout


def test_configmap_and_secret_volumes_with_items_modes_and_updates(cluster: Cluster,
                                                                   ns: str) -> None:
    cluster.kubectl("create", "configmap", "conf", "-n", ns, "--from-literal=a=alpha",
                    "--from-literal=b=beta")
    cluster.kubectl("create", "secret", "generic", "creds", "-n", ns,
                    "--from-literal=password=s3cret")
    run_pod(cluster, ns, "cm", [
        {"name": "conf", "configMap": {"name": "conf"}},
        {"name": "picked", "configMap": {"name": "conf", "items": [
            {"key": "b", "path": "sub/renamed", "mode": 0o600}]}},
        {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}},
    ], [{"name": "conf", "mountPath": "/etc/conf"},
        {"name": "picked", "mountPath": "/etc/picked", "readOnly": True},
        {"name": "creds", "mountPath": "/etc/creds"}])
    assert sh(cluster, ns, "cm", "cat /etc/conf/a /etc/picked/sub/renamed "
                                 "/etc/creds/password") == "alphabetas3cret"
    assert sh(cluster, ns, "cm", "ls /etc/picked").split() == ["sub"]
    modes = sh(cluster, ns, "cm", "stat -L -c %a /etc/picked/sub/renamed /etc/creds/password")
    assert modes.split() == ["600", "400"]
    denied = cluster.kubectl("exec", "cm", "-n", ns, "--", "sh", "-c",
                             "echo x > /etc/picked/new", check=False)
    assert denied.returncode != 0
    cluster.kubectl("patch", "configmap", "conf", "-n", ns, "--type=merge",
                    "-p", '{"data": {"a": "updated"}}')
    wait_for(lambda: sh(cluster, ns, "cm", "cat /etc/conf/a") == "updated",
             "the configMap update in the volume", timeout=60)


def test_downward_api_projected_token_and_empty_dirs(cluster: Cluster, ns: str) -> None:
    run_pod(cluster, ns, "dw", [
        {"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "cpu", "resourceFieldRef": {"containerName": "main",
                                                 "resource": "limits.cpu",
                                                 "divisor": "1m"}}]}},
        {"name": "token", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "audience": "vault",
                                     "expirationSeconds": 3600}},
            {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {
                "fieldPath": "metadata.namespace"}}]}}]}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "ram", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
    ], [{"name": "info", "mountPath": "/etc/info"},
        {"name": "token", "mountPath": "/var/run/secrets/tokens"},
        {"name": "scratch", "mountPath": "/scratch"},
        {"name": "ram", "mountPath": "/ram"}])
    assert sh(cluster, ns, "dw", "cat /etc/info/name") == "dw"
    assert sh(cluster, ns, "dw", "cat /etc/info/labels") == 'tier="gold"'
    assert sh(cluster, ns, "dw", "cat /etc/info/cpu") == "500"
    assert sh(cluster, ns, "dw", "cat /var/run/secrets/tokens/ns") == ns
    token = sh(cluster, ns, "dw", "cat /var/run/secrets/tokens/token")
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert payload["aud"] == ["vault"]
    assert payload["sub"] == f"system:serviceaccount:{ns}:default"
    sh(cluster, ns, "dw", "echo kept > /scratch/f && echo fast > /ram/f")
    assert sh(cluster, ns, "dw", "cat /scratch/f /ram/f") == "kept\nfast\n"
    review = cluster.kubectl("create", "--validate=false", "-o", "json", "-f", "-",
                             input=json.dumps({
                                 "apiVersion": "authentication.k8s.io/v1",
                                 "kind": "TokenReview",
                                 "spec": {"token": token, "audiences": ["vault"]}}))
    assert json.loads(review.stdout)["status"]["authenticated"] is True


def test_host_path_volume(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    run_pod(cluster, ns, "hp", [
        {"name": "host", "hostPath": {"path": str(shared), "type": "DirectoryOrCreate"}},
    ], [{"name": "host", "mountPath": "/host"}])
    sh(cluster, ns, "hp", "echo from-pod > /host/out")
    assert (shared / "out").read_text() == "from-pod\n"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hp-bad", "namespace": ns},
           "spec": {"volumes": [{"name": "x", "hostPath": {"path": str(tmp_path / "absent"),
                                                           "type": "Directory"}}],
                    "containers": [{"name": "main", "image": IMAGE, "command": ["true"],
                                    "volumeMounts": [{"name": "x", "mountPath": "/x"}]}]}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
    wait_for(lambda: "FailedMount" in cluster.kubectl(
        "get", "events", "-n", ns, "--field-selector", "involvedObject.name=hp-bad").stdout,
        "a FailedMount event")


def test_persistent_volume_claim_from_the_local_path_provisioner(cluster: Cluster,
                                                                 ns: str) -> None:
    classes = json.loads(cluster.kubectl("get", "storageclass", "-o", "json").stdout)["items"]
    default = [c for c in classes if (c["metadata"].get("annotations") or {}).get(
        "storageclass.kubernetes.io/is-default-class") == "true"]
    assert [c["metadata"]["name"] for c in default] == ["local-path"]
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": ns},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Gi"}}}}))
    claim = get_json(cluster, "pvc", "data", "-n", ns)
    assert claim["spec"]["storageClassName"] == "local-path"
    assert claim["status"]["phase"] == "Pending"  # WaitForFirstConsumer
    for name in ("writer", "reader"):
        run_pod(cluster, ns, name, [{"name": "d", "persistentVolumeClaim": {
            "claimName": "data"}}], [{"name": "d", "mountPath": "/data"}])
        if name == "writer":
            sh(cluster, ns, "writer", "echo persisted > /data/file")
            cluster.kubectl("delete", "pod", "writer", "-n", ns)
    assert sh(cluster, ns, "reader", "cat /data/file") == "persisted\n"
    claim = get_json(cluster, "pvc", "data", "-n", ns)
    assert claim["status"]["phase"] == "Bound"
    volume = get_json(cluster, "pv", claim["spec"]["volumeName"])
    assert volume["spec"]["claimRef"]["name"] == "data"
    assert volume["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == \
        "pilothouse.dev/local-path"
