"""Services on the node `up` runs: cluster IPs, node ports and load balancers carry traffic.

A Deployment of two HTTP servers (each answers its pod's name) behind a Service. Clients
are this test (the host, whose TCP the proxy's nftables mode DNATs in the kernel where it
is active) and a pod (in its own network namespace in the sandbox runtime, so its traffic
crosses the node bridge to the proxy's relay). Readiness is a file the test removes and
puts back with `kubectl exec`.
"""

from __future__ import annotations

import json
import random
import re
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilothouse.node.proxy import proxy_mode

from .conftest import (
    IMAGE,
    KUBECTL,
    POD_IP_ENV,
    Cluster,
    get_json,
    node_name,
    phase_is,
    pod_manifest,
    start_cluster,
    stop_cluster,
    wait_for,
    wait_node_ready,
    wait_pod,
)

SERVER = """
import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["HOSTNAME"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
open("/tmp/ready", "w").close()
http.server.ThreadingHTTPServer((os.environ["POD_IP"], 8080), Handler).serve_forever()
"""


def deployment(ns: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                         "terminationGracePeriodSeconds": 1,
                         "containers": [{
                             "name": "web", "image": IMAGE, "env": [POD_IP_ENV],
                             "command": ["python", "-c", SERVER],
                             "ports": [{"name": "http", "containerPort": 8080}],
                             "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]},
                                                "periodSeconds": 1}}]}}}}


def service(ns: str, kind: str = "ClusterIP") -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
            "spec": {"type": kind, "selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


def apply(cluster: Cluster, *objects: dict) -> None:
    for obj in objects:
        cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))


@pytest.fixture
def web(cluster: Cluster, ns: str) -> Iterator[list[str]]:
    """The two ready pods' names."""
    apply(cluster, deployment(ns))
    cluster.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s",
                    timeout=70)
    pods = get_json(cluster, "pods", "-n", ns, "-l", "app=web") or {}
    yield sorted(p["metadata"]["name"] for p in pods["items"])


def fetch(url: str, timeout: float = 3) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def answers(url: str, count: int = 20) -> set[str]:
    """Who answered `count` requests; empty while the address refuses (the proxy listens
    only once the Service has ready endpoints)."""
    try:
        return {fetch(url) for _ in range(count)}
    except (urllib.error.URLError, ConnectionError):
        return set()


def eventually(check, what: str, timeout: float = 10):  # noqa: ANN001, ANN201
    return wait_for(check, what, timeout=timeout)


CLIENT = """
import json, os, ssl, urllib.request
ns, cluster_ip = {ns!r}, {cluster_ip!r}
def get(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()
seen = {{"short": sorted({{get("http://web/") for _ in range(10)}}),
        "fqdn": get(f"http://web.{{ns}}.svc.cluster.local/"),
        "ip": sorted({{get(f"http://{{cluster_ip}}/") for _ in range(10)}})}}
account = "/var/run/secrets/kubernetes.io/serviceaccount"
context = ssl.create_default_context(cafile=f"{{account}}/ca.crt")
request = urllib.request.Request(
    "https://kubernetes.default.svc/version",
    headers={{"Authorization": "Bearer " + open(f"{{account}}/token").read()}})
with urllib.request.urlopen(request, context=context, timeout=5) as response:
    seen["api"] = json.loads(response.read())["gitVersion"]
seen["env"] = os.environ["KUBERNETES_SERVICE_HOST"] + ":" + os.environ["KUBERNETES_SERVICE_PORT"]
print(json.dumps(seen))
"""


def test_a_pod_reaches_a_deployment_by_service_name_and_cluster_ip(
        cluster: Cluster, ns: str, web: list[str]) -> None:
    apply(cluster, service(ns))
    cluster_ip = (get_json(cluster, "service", "web", "-n", ns) or {})["spec"]["clusterIP"]
    assert cluster_ip.startswith("127.96.")
    cluster.kubectl("apply", "-f", "-", input=pod_manifest(
        "client", ns, ["python", "-c", CLIENT.format(ns=ns, cluster_ip=cluster_ip)],
        restartPolicy="Never"))
    wait_pod(cluster, ns, "client", phase_is("Succeeded"), "reached the service", timeout=60)
    seen = json.loads(cluster.kubectl("logs", "client", "-n", ns).stdout)
    assert seen["short"] == web and seen["ip"] == web  # connections spread over both pods
    assert seen["fqdn"] in web
    assert seen["api"].startswith("v1.")  # the in-cluster API through the kubernetes Service
    assert seen["env"] == "127.96.0.1:443"


PROCESS_CLIENT = """
import json, os, urllib.request
def get(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()
host, port = os.environ["WEB_SERVICE_HOST"], os.environ["WEB_SERVICE_PORT"]
print(json.dumps({"env": sorted({get(f"http://{host}:{port}/") for _ in range(10)})}))
"""


def test_a_process_runtime_pod_reaches_a_service_by_its_variables(
        cluster: Cluster, ns: str, web: list[str]) -> None:
    apply(cluster, service(ns), {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                                 "metadata": {"name": f"plain-{ns}"}, "handler": "process"})
    try:
        cluster.kubectl("apply", "-f", "-", input=pod_manifest(
            "client", ns, ["python", "-c", PROCESS_CLIENT], restartPolicy="Never",
            runtimeClassName=f"plain-{ns}"))
        pod = wait_pod(cluster, ns, "client", phase_is("Succeeded"), "reached the service",
                       timeout=60)
        assert pod["status"]["podIP"].startswith("127.")  # the host's network, its own address
        seen = json.loads(cluster.kubectl("logs", "client", "-n", ns).stdout)
        assert seen["env"] == web
    finally:
        cluster.kubectl("delete", "runtimeclass", f"plain-{ns}", check=False)


def test_endpoints_follow_readiness(cluster: Cluster, ns: str, web: list[str]) -> None:
    apply(cluster, service(ns))
    cluster_ip = (get_json(cluster, "service", "web", "-n", ns) or {})["spec"]["clusterIP"]
    url = f"http://{cluster_ip}/"
    eventually(lambda: answers(url) == set(web), "both pods answering on the cluster IP")
    cluster.kubectl("exec", "-n", ns, web[0], "--", "rm", "/tmp/ready")
    eventually(lambda: answers(url) == {web[1]}, "the unready pod dropped", timeout=15)
    cluster.kubectl("exec", "-n", ns, web[0], "--", "touch", "/tmp/ready")
    eventually(lambda: answers(url) == set(web), "the pod back once ready", timeout=15)


def test_node_port_and_load_balancer(cluster: Cluster, ns: str, web: list[str]) -> None:
    apply(cluster, service(ns, "LoadBalancer"))

    def external_ip() -> str | None:
        ingress = ((get_json(cluster, "service", "web", "-n", ns) or {}).get("status") or {}
                   ).get("loadBalancer", {}).get("ingress") or [{}]
        return ingress[0].get("ip")

    address = eventually(external_ip, "the load balancer's address")
    assert address.startswith("127.97.")
    listing = cluster.kubectl("get", "service", "web", "-n", ns).stdout
    assert re.search(rf"web\s+LoadBalancer\s+127\.96\.\S+\s+{re.escape(address)}\s+80:3\d+/TCP",
                     listing), listing
    spec = (get_json(cluster, "service", "web", "-n", ns) or {})["spec"]
    node_port = spec["ports"][0]["nodePort"]
    eventually(lambda: answers(f"http://127.0.0.1:{node_port}/") == set(web),
               "both pods on the node port")
    eventually(lambda: answers(f"http://{address}/") == set(web),
               "both pods on the load balancer's address")
    cluster.kubectl("delete", "service", "web", "-n", ns)

    def refused() -> bool:
        try:
            fetch(f"http://{spec['clusterIP']}/", timeout=1)
        except (urllib.error.URLError, ConnectionError):
            return True
        return False

    eventually(refused, "the cluster IP refusing once the Service is gone")


def test_client_ip_affinity_and_several_ports(cluster: Cluster, ns: str, web: list[str]) -> None:
    svc = service(ns)
    svc["spec"]["sessionAffinity"] = "ClientIP"
    svc["spec"]["ports"].append({"name": "alt", "port": 81, "targetPort": 8080})
    apply(cluster, svc)
    cluster_ip = (get_json(cluster, "service", "web", "-n", ns) or {})["spec"]["clusterIP"]
    for port in (80, 81):
        sticky = eventually(lambda port=port: answers(f"http://{cluster_ip}:{port}/"),
                            f"answers on port {port}")
        assert len(sticky) == 1 and sticky <= set(web)  # every request to the same pod


def test_port_forward_to_a_service(cluster: Cluster, ns: str, web: list[str]) -> None:
    apply(cluster, service(ns))
    forward = subprocess.Popen(
        [KUBECTL, "port-forward", "-n", ns, "service/web", ":80"], env=cluster.env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert forward.stdout is not None
        line = forward.stdout.readline()
        match = re.search(r"Forwarding from 127\.0\.0\.1:(\d+) -> 8080", line)
        assert match, line + (forward.stderr.read() if forward.poll() is not None else "")
        assert fetch(f"http://127.0.0.1:{match.group(1)}/") in web
    finally:
        forward.terminate()
        forward.wait(timeout=10)


UDP_ECHO = """
import os, socket
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((os.environ["POD_IP"], 5353))
while True:
    data, peer = sock.recvfrom(2048)
    sock.sendto(b"echo:" + data, peer)
"""


def test_udp_through_a_cluster_ip(cluster: Cluster, ns: str) -> None:
    pod = json.loads(pod_manifest("echo", ns, ["python", "-c", UDP_ECHO],
                                  container={"env": [POD_IP_ENV]}))
    pod["metadata"]["labels"] = {"app": "echo"}
    apply(cluster, pod, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": ns},
        "spec": {"selector": {"app": "echo"},
                 "ports": [{"name": "dns", "port": 53, "targetPort": 5353,
                            "protocol": "UDP"}]}})
    wait_pod(cluster, ns, "echo", phase_is("Running"), "running")
    cluster_ip = (get_json(cluster, "service", "echo", "-n", ns) or {})["spec"]["clusterIP"]

    def echoed() -> bytes | None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.5)
            sock.sendto(b"ping", (cluster_ip, 53))
            try:
                return sock.recv(100)
            except (TimeoutError, ConnectionRefusedError):
                return None

    assert eventually(echoed, "a UDP answer through the cluster IP") == b"echo:ping"


def test_stopping_up_leaves_no_proxy_behind(tmp_path: Path) -> None:
    backend = socket.create_server(("127.0.0.1", 0))
    ip = f"127.96.{random.randrange(200, 250)}.{random.randrange(1, 250)}"
    own = start_cluster(tmp_path / "data", tmp_path / "home")
    try:
        wait_node_ready(own, node_name())
        apply(own, {"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "outside", "namespace": "default"},
                    "spec": {"clusterIP": ip, "ports": [{"name": "tcp", "port": 80}]}},
              {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "outside-1", "namespace": "default",
                            "labels": {"kubernetes.io/service-name": "outside"}},
               "addressType": "IPv4",
               "ports": [{"name": "tcp", "port": backend.getsockname()[1]}],
               "endpoints": [{"addresses": ["127.0.0.1"]}]})
        eventually(lambda: _tcp_open(ip, 80), "the Service answering")
        agents = subprocess.run(["pgrep", "-f", f"{own.data_dir}/components/node.kubeconfig"],
                                capture_output=True, text=True).stdout.split()
        assert agents, "the node agent's process"
        kernel = proxy_mode()[0] == "nftables"
        if kernel:
            assert f"pilothouse-proxy-{agents[0]}" in _nft_tables()
    finally:
        stop_cluster(own)
        backend.close()
    assert not _tcp_open(ip, 80)
    if kernel:
        assert all(f"pilothouse-proxy-{pid}" not in _nft_tables() for pid in agents)


def _nft_tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
