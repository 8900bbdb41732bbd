"""Every pod gets its service account's credentials, as on a real cluster: the
ServiceAccount admission plugin runs it as `default` and adds the `kube-api-access-*`
volume (a bound token, the cluster CA from `kube-root-ca.crt`, the namespace), which the
node agent projects at /var/run/secrets/kubernetes.io/serviceaccount."""

from __future__ import annotations

import base64
import json

from .conftest import Cluster, container_state, get_json, pod_manifest, wait_for, wait_pod

TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def running(pod: dict) -> bool:
    return "running" in container_state(pod).get("state", {})


def cat(cluster: Cluster, ns: str, pod: str, name: str) -> str:
    return cluster.kubectl("exec", pod, "-n", ns, "--", "cat", f"{TOKEN_DIR}/{name}").stdout


def test_a_pod_reads_its_namespace_the_cluster_ca_and_a_token_the_api_accepts(
        cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "-f", "-", input=pod_manifest("app", ns, ["sleep", "3600"]))
    assert cluster.kubectl("get", "pod", "app", "-n", ns, "-o",
                           "jsonpath={.spec.serviceAccountName}").stdout == "default"
    pod = wait_pod(cluster, ns, "app", running, "running", timeout=40)
    [volume] = pod["spec"]["volumes"]
    assert volume["name"].startswith("kube-api-access-")
    assert pod["spec"]["containers"][0]["volumeMounts"] == [
        {"name": volume["name"], "mountPath": TOKEN_DIR, "readOnly": True}]

    assert cat(cluster, ns, "app", "namespace") == ns
    assert cat(cluster, ns, "app", "ca.crt") == (cluster.data_dir / "pki" / "ca.crt").read_text()
    token = cat(cluster, ns, "app", "token")
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert payload["sub"] == f"system:serviceaccount:{ns}:default"
    assert payload["kubernetes.io"]["pod"]["name"] == "app"
    review = cluster.kubectl("create", "--validate=false", "-o", "json", "-f", "-",
                             input=json.dumps({"apiVersion": "authentication.k8s.io/v1",
                                               "kind": "TokenReview",
                                               "spec": {"token": token}}))
    status = json.loads(review.stdout)["status"]
    assert status["authenticated"] is True
    assert status["user"]["username"] == f"system:serviceaccount:{ns}:default"


def test_automount_false_gives_no_token_volume(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "-f", "-", input=pod_manifest(
        "quiet", ns, ["true"], automountServiceAccountToken=False))
    pod = get_json(cluster, "pod", "quiet", "-n", ns)
    assert pod is not None
    assert pod["spec"]["serviceAccountName"] == "default"
    assert "volumes" not in pod["spec"]
    assert "volumeMounts" not in pod["spec"]["containers"][0]


def test_a_pod_naming_a_missing_service_account_is_refused(cluster: Cluster, ns: str) -> None:
    refused = cluster.kubectl("create", "-f", "-", check=False, input=pod_manifest(
        "lost", ns, ["true"], serviceAccountName="robot"))
    assert refused.returncode != 0
    assert (f'pods "lost" is forbidden: error looking up service account {ns}/robot: '
            'serviceaccount "robot" not found') in refused.stderr
    assert get_json(cluster, "pod", "lost", "-n", ns) is None


def test_the_root_ca_config_map_is_published_and_put_back(cluster: Cluster, ns: str) -> None:
    ca = (cluster.data_dir / "pki" / "ca.crt").read_text()

    def published() -> dict | None:
        found = get_json(cluster, "configmap", "kube-root-ca.crt", "-n", ns)
        return found if found is not None and found["data"] == {"ca.crt": ca} else None

    first = wait_for(published, f"kube-root-ca.crt in {ns}")
    assert first["metadata"]["annotations"]["kubernetes.io/description"].startswith(
        "Contains a CA bundle that can be used to verify the kube-apiserver")
    cluster.kubectl("delete", "configmap", "kube-root-ca.crt", "-n", ns)
    again = wait_for(published, "kube-root-ca.crt recreated")
    assert again["metadata"]["uid"] != first["metadata"]["uid"]
    cluster.kubectl("patch", "configmap", "kube-root-ca.crt", "-n", ns, "--type=merge",
                    "-p", '{"data": {"ca.crt": "forged"}}')
    wait_for(published, "kube-root-ca.crt restored")
