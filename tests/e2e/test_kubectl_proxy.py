"""The real kubectl through the API server's pods/proxy and services/proxy to a real pod.

`pilothouse up` runs a pod serving `python -m http.server` on its own loopback pod IP, and
a Service selecting it; `kubectl get --raw` and `kubectl proxy` reach it through the API
server, as they would reach a dashboard or a metrics endpoint in a real cluster.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from .conftest import IMAGE, KUBECTL, POD_IP_ENV, Cluster, wait_for, wait_pod


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _web(ns: str) -> tuple[str, str]:
    """A pod serving a directory whose file `hello` holds the pod's name, and its Service."""
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "web", "namespace": ns, "labels": {"app": "web"}},
           "spec": {"terminationGracePeriodSeconds": 2,
                    "volumes": [{"name": "site", "downwardAPI": {"items": [
                        {"path": "hello", "fieldRef": {"fieldPath": "metadata.name"}}]}}],
                    "containers": [{
                        "name": "main", "image": IMAGE, "env": [POD_IP_ENV],
                        "command": ["python", "-m", "http.server", "8080", "--bind", "$(POD_IP)",
                                    "--directory", "/etc/site"],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "volumeMounts": [{"name": "site", "mountPath": "/etc/site"}],
                        "readinessProbe": {"httpGet": {"path": "/", "port": 8080},
                                           "periodSeconds": 1}}]}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
               "spec": {"selector": {"app": "web"},
                        "ports": [{"name": "http", "port": 8080, "targetPort": "http"}]}}
    return json.dumps(pod), json.dumps(service)


@pytest.fixture
def web(cluster: Cluster, ns: str) -> Iterator[str]:
    for manifest in _web(ns):
        cluster.kubectl("apply", "-f", "-", input=manifest)
    wait_pod(cluster, ns, "web", ready, "Ready", timeout=90)
    # The EndpointSlice follows readiness: wait until the Service has the pod behind it.
    wait_for(lambda: cluster.kubectl("get", "--raw", f"/api/v1/namespaces/{ns}/services/"
                                     "web:8080/proxy/hello", check=False).returncode == 0,
             "a ready endpoint behind Service web", timeout=30)
    yield ns


def test_get_raw_through_pods_and_services_proxy(cluster: Cluster, web: str) -> None:
    ns = web
    base = f"/api/v1/namespaces/{ns}"
    assert cluster.kubectl("get", "--raw", f"{base}/pods/web:8080/proxy/hello").stdout == "web"
    # No port: the pod's first container port.
    assert cluster.kubectl("get", "--raw", f"{base}/pods/web/proxy/hello").stdout == "web"
    assert cluster.kubectl("get", "--raw", f"{base}/services/web:http/proxy/hello").stdout \
        == "web"
    listing = cluster.kubectl("get", "--raw", f"{base}/services/web:8080/proxy/").stdout
    assert "Directory listing for /" in listing and 'href="hello"' in listing

    refused = cluster.kubectl("get", "--raw", f"{base}/pods/web:8081/proxy/", check=False)
    assert refused.returncode != 0
    assert "Error from server (ServiceUnavailable): error trying to reach service: dial tcp" \
        in refused.stderr
    assert ":8081: connect: connection refused" in refused.stderr
    missing = cluster.kubectl("get", "--raw", f"{base}/services/web:9999/proxy/", check=False)
    assert 'no service port 9999 found for service "web"' in missing.stderr


def test_kubectl_proxy_serves_the_pod_on_a_local_port(cluster: Cluster, web: str) -> None:
    ns = web
    process = subprocess.Popen([KUBECTL, "proxy", "--port=0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=cluster.env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"Starting to serve on 127\.0\.0\.1:(\d+)", line)
        assert match, f"kubectl proxy said {line!r}"
        local = f"http://127.0.0.1:{match.group(1)}/api/v1/namespaces/{ns}"
        with urllib.request.urlopen(f"{local}/services/web:8080/proxy/hello", timeout=20) as r:
            assert (r.status, r.read()) == (200, b"web")
        with urllib.request.urlopen(f"{local}/services/web:8080/proxy/", timeout=20) as r:
            assert r.headers["Content-Type"].startswith("text/html")
            assert b"Directory listing for /" in r.read()
        with urllib.request.urlopen(f"{local}/pods/web/proxy/hello?x=1", timeout=20) as r:
            assert r.read() == b"web"
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(f"{local}/pods/web/proxy/absent", timeout=20)
        assert failed.value.code == 404  # the pod's own answer, passed through
    finally:
        process.terminate()
        process.wait(10)
