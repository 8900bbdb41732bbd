"""Pods in their own network namespaces on the node `up` runs (the sandbox runtime, as root),
driven with the real kubectl: two pods listen on one port, each at its own address of the
node's pod subnet, which the host and other pods reach; a pod resolves cluster names at
the node's DNS on the host's loopback; probes and `kubectl port-forward` reach it; and
deleting the pods, then stopping `up`, leaves no interface or namespace behind."""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest

from pilothouse.machinery.addresses import (
    SERVICE_CLUSTER_IP_RANGE,
    first_service_ip,
    node_octet,
    pod_subnet,
)

from .conftest import (
    KUBECTL,
    POD_IP_ENV,
    Cluster,
    container_state,
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

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="pods get network namespaces only when the node is root")



def server(bind: str) -> list[str]:
    """An HTTP server on port 8080 of the address the Python expression `bind` gives,
    answering with the pod's name."""
    return ["python", "-c",
            "import http.server, os\n"
            "class H(http.server.BaseHTTPRequestHandler):\n"
            "    def do_GET(self):\n"
            "        self.send_response(200); self.end_headers()\n"
            "        self.wfile.write(os.environ['HOSTNAME'].encode())\n"
            "    def log_message(self, *a): pass\n"
            f"http.server.HTTPServer(({bind}, 8080), H).serve_forever()\n"]


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def running(pod: dict) -> bool:
    return "running" in container_state(pod).get("state", {})


def links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def pod_network_of(cluster: Cluster, name: str, namespace: str) -> tuple[str, str, str]:
    """(pod IP, its pinned namespace, its veth's host end) of a running pod (the pin and
    the veth are named after the address)."""
    pod = get_json(cluster, "pod", name, "-n", namespace) or {}
    ip = pod["status"]["podIP"]
    subnet = pod_subnet(node_name())
    octet = node_octet(node_name())
    index = int(ipaddress.IPv4Address(ip)) - int(subnet.network_address)
    return ip, f"/run/netns/ph{octet}p{index}", f"ph{octet}p{index}"


def get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except OSError:
        return None


def test_two_pods_on_one_port_each_at_its_own_ip(cluster: Cluster, ns: str, node: str) -> None:
    subnet = pod_subnet(node)
    spec = get_json(cluster, "node", node)["spec"]
    assert (spec.get("podCIDR"), spec.get("podCIDRs")) == (str(subnet), [str(subnet)])
    probes = {"readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
              "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}
    for name in ("web-a", "web-b"):
        cluster.kubectl("apply", "-f", "-", input=pod_manifest(
            name, ns, server("'0.0.0.0'"), container={"env": [POD_IP_ENV], **probes}))
    pods = [wait_pod(cluster, ns, name, ready, "Ready through its probes", timeout=60)
            for name in ("web-a", "web-b")]
    ips = [p["status"]["podIP"] for p in pods]
    assert len(set(ips)) == 2
    assert all(ipaddress.IPv4Address(ip) in subnet for ip in ips), ips
    assert all(p["status"]["podIPs"] == [{"ip": p["status"]["podIP"]}] for p in pods)
    for pod in pods:  # the node reaches each at its own address
        assert get(f"http://{pod['status']['podIP']}:8080/") == pod["metadata"]["name"]
        ip, netns, veth = pod_network_of(cluster, pod["metadata"]["name"], ns)
        assert os.path.exists(netns) and f" {veth}@" in links()
    client = ("import urllib.request\n"
              f"for ip in {ips!r}:\n"
              "    print(urllib.request.urlopen(f'http://{ip}:8080/', timeout=5).read().decode())\n")
    cluster.kubectl("apply", "-f", "-", input=pod_manifest(
        "client", ns, ["python", "-c", client], restartPolicy="Never"))
    wait_pod(cluster, ns, "client", phase_is("Succeeded"), "fetched from both", timeout=60)
    assert cluster.kubectl("logs", "client", "-n", ns).stdout == "web-a\nweb-b\n"
    restarts = [container_state(get_json(cluster, "pod", n, "-n", ns))["restartCount"]
                for n in ("web-a", "web-b")]
    assert restarts == [0, 0]  # the liveness probe reached them all along


def test_a_pod_resolves_cluster_names_at_the_node_dns(cluster: Cluster, ns: str) -> None:
    script = ("import socket\n"
              "print(socket.gethostbyname('kubernetes.default.svc.cluster.local'))\n"
              "server = [l.split()[1] for l in open('/etc/resolv.conf')"
              " if l.startswith('nameserver')][0]\n"
              "socket.create_connection((server, 53), timeout=5).close()\n"
              "print('tcp', server)\n")
    cluster.kubectl("apply", "-f", "-", input=pod_manifest(
        "resolver", ns, ["python", "-c", script], restartPolicy="Never"))
    pod = wait_pod(cluster, ns, "resolver", phase_is("Succeeded"), "resolved", timeout=60)
    assert ipaddress.IPv4Address(pod["status"]["podIP"]) in pod_subnet(node_name())
    lines = cluster.kubectl("logs", "resolver", "-n", ns).stdout.splitlines()
    assert lines[0] == first_service_ip(SERVICE_CLUSTER_IP_RANGE)
    assert re.fullmatch(r"tcp 127\.\d+\.0\.10", lines[1]), lines


@pytest.mark.parametrize("bind", ["'127.0.0.1'", "os.environ['POD_IP']"])
def test_port_forward_reaches_a_server_in_the_pods_namespace(cluster: Cluster, ns: str,
                                                             bind: str) -> None:
    """kubectl port-forward dials the pod's own localhost, as containerd does, and its IP
    for a server bound only to that."""
    cluster.kubectl("apply", "-f", "-", input=pod_manifest(
        "pf", ns, server(bind), container={"env": [POD_IP_ENV]}))
    wait_pod(cluster, ns, "pf", running, "running", timeout=60)
    forward = subprocess.Popen([KUBECTL, "port-forward", "-n", ns, "pod/pf", ":8080"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=cluster.env)
    try:
        assert forward.stdout is not None
        line = forward.stdout.readline()
        match = re.search(r"127\.0\.0\.1:(\d+) -> 8080", line)
        assert match, line + (forward.stderr.read() if forward.poll() is not None else "")
        body = wait_for(lambda: get(f"http://127.0.0.1:{match.group(1)}/"),
                        "a response through the forward", timeout=15)
        assert body == "pf"
    finally:
        forward.terminate()
        forward.wait()


def test_deleted_pods_and_a_stopped_up_leave_no_interface_or_namespace(tmp_path: Path
                                                                       ) -> None:
    own = start_cluster(tmp_path / "data", tmp_path / "home")
    bridge = f"ph{node_octet(node_name())}br"
    try:
        wait_node_ready(own, node_name())
        for name in ("gone", "kept"):
            own.kubectl("apply", "-f", "-", input=pod_manifest(
                name, "default", ["sleep", "600"]))
        networks = {}
        for name in ("gone", "kept"):
            wait_pod(own, "default", name, running, "running", timeout=60)
            networks[name] = pod_network_of(own, name, "default")
            _, netns, veth = networks[name]
            assert os.path.exists(netns) and f" {veth}@" in links()
            assert f" {bridge}:" in links()
        own.kubectl("delete", "pod", "gone", "--wait=true", timeout=60)
        _, netns, veth = networks["gone"]
        wait_for(lambda: not os.path.exists(netns) and f" {veth}@" not in links(),
                 "the deleted pod's namespace and veth gone", timeout=15)
    finally:
        stop_cluster(own)
    _, netns, veth = networks["kept"]
    assert not os.path.exists(netns)
    assert f" {veth}@" not in links()
    owner = str((tmp_path / "data").resolve())
    records = Path("/run/pilothouse/pod-network") / bridge
    assert not [r for r in records.iterdir() if r.read_text().endswith("\n" + owner)]
    # The bridge goes too, unless another agent of this node name (the session's `up`)
    # still has pods on it.
    brif = Path(f"/sys/class/net/{bridge}/brif")
    assert not brif.exists() or any(brif.iterdir())
