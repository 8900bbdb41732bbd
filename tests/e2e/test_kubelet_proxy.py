"""The real kubectl's logs, exec and top through `pilothouse up`'s API server to a kubelet.

The kubelet here is a stand-in (tests/fake_kubelet.py) on 127.0.0.1, registered as a Node
of its own, so what these tests pin is the API server's side: finding the kubelet from the
Node, presenting its kubelet client certificate, relaying WebSocket channel frames and
streamed logs, the metrics API `kubectl top` reads, and the errors kubectl prints.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.fake_kubelet import BackgroundLoop, FakeKubelet, kubelet_in_thread, summary

from .conftest import KUBECTL, Cluster, wait_for

NODE = "stand-in-kubelet"
HOLLOW = "stand-in-hollow"
NS = "kubelet-proxy"
MIB = 1024 * 1024


def _pod(name: str, node: str | None, *containers: str) -> str:
    spec: dict = {"containers": [{"name": c, "image": "python:3.11"} for c in containers]}
    if node:
        spec["nodeName"] = node
    else:  # stays unscheduled: no node has this label
        spec["nodeSelector"] = {"pilothouse.dev/no-such-node": "true"}
    return json.dumps({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": name, "namespace": NS}, "spec": spec})


@pytest.fixture(scope="module")
def kubelet(cluster: Cluster) -> Iterator[tuple[FakeKubelet, BackgroundLoop]]:
    workdir = cluster.home / "stand-in-kubelet"
    workdir.mkdir(exist_ok=True)
    with kubelet_in_thread(cluster.data_dir / "pki" / "ca.crt", workdir) as (fake, loop):
        fake.summary = summary(NODE, {(NS, "web"): {"app": (5_000_000, 20 * MIB),
                                                    "proxy": (1_000_000, 4 * MIB)}})
        # Tainted so that no other test's pods are scheduled to it; these are bound by name.
        taints = {"taints": [{"key": "pilothouse.dev/stand-in", "effect": "NoSchedule"}]}
        node = {**fake.node(NODE), "spec": taints}
        hollow = {**fake.node(HOLLOW), "spec": taints}
        hollow["status"]["nodeInfo"] = {"containerRuntimeVersion": "hollow://"}
        cluster.kubectl("create", "-f", "-", input=json.dumps(node))
        cluster.kubectl("create", "-f", "-", input=json.dumps(hollow))
        cluster.kubectl("create", "namespace", NS)
        for manifest in (_pod("web", NODE, "app", "proxy"), _pod("queued", None, "app"),
                         _pod("broken", NODE, "missing"), _pod("sim", HOLLOW, "app")):
            cluster.kubectl("create", "-f", "-", input=manifest)
        try:
            yield fake, loop
        finally:
            cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)
            cluster.kubectl("delete", "node", NODE, HOLLOW, "--wait=false", check=False)


def test_kubectl_logs_come_from_the_kubelet(
        cluster: Cluster, kubelet: tuple[FakeKubelet, BackgroundLoop]) -> None:
    fake, loop = kubelet
    logs = cluster.kubectl("logs", "web", "-n", NS, "-c", "proxy", "--tail=10")
    assert logs.stdout == "line 1\nline 2\n"
    path, query, user = fake.requests[-1]
    assert (path, query, user) == ("/containerLogs/kubelet-proxy/web/proxy",
                                   [("tailLines", "10")], "kube-apiserver-kubelet-client")
    loop.run(fake.more_logs.put(b"line 3\n"))
    loop.run(fake.more_logs.put(None))  # the kubelet ends the stream after line 3
    followed = cluster.kubectl("logs", "-f", "web", "-n", NS, "-c", "app", timeout=20)
    assert followed.stdout == "line 1\nline 2\nline 3\n"


def test_kubectl_exec_streams_over_websocket(
        cluster: Cluster, kubelet: tuple[FakeKubelet, BackgroundLoop]) -> None:
    fake, _ = kubelet
    out = cluster.kubectl("exec", "web", "-n", NS, "-c", "app", "--", "echo", "hi")
    assert out.stdout == "echo hi\n"
    piped = cluster.kubectl("exec", "-i", "web", "-n", NS, "-c", "app", "--", "cat",
                            input="hello\n")
    assert piped.stdout == "cat\nhello\n"
    assert b"\xff\x00" in fake.received  # kubectl closed stdin the v5 way


def test_kubectl_prints_why_a_pod_cannot_be_reached(
        cluster: Cluster, kubelet: tuple[FakeKubelet, BackgroundLoop]) -> None:
    def stderr(*args: str) -> str:
        result = cluster.kubectl("-n", NS, *args, check=False)
        assert result.returncode != 0
        return result.stderr

    assert "pod queued does not have a host assigned" in stderr("exec", "queued", "--", "ls")
    hollow = ("node stand-in-hollow has no kubelet endpoint (hollow node): logs and exec need "
              "a real node agent")
    assert hollow in stderr("exec", "sim", "--", "ls")
    assert hollow in stderr("logs", "sim")
    assert 'container not found ("missing")' in stderr("exec", "broken", "--", "ls")
    spdy = subprocess.run(
        [KUBECTL, "exec", "web", "-n", NS, "-c", "app", "--", "ls"], capture_output=True,
        text=True, timeout=60,
        env={**cluster.env, "KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"})
    assert spdy.returncode != 0
    assert "SPDY is not supported" in spdy.stderr


def test_kubectl_top_reads_the_metrics_api(
        cluster: Cluster, kubelet: tuple[FakeKubelet, BackgroundLoop]) -> None:
    def top(*args: str) -> list[list[str]]:
        result = cluster.kubectl("top", *args, check=False)
        return [line.split() for line in result.stdout.splitlines()] if \
            result.returncode == 0 else []

    nodes = wait_for(lambda: top("node", NODE), "kubectl top node")
    assert nodes[0][:2] == ["NAME", "CPU(cores)"]
    assert nodes[1][:5] == [NODE, "250m", "6%", "512Mi", "6%"]
    pods = top("pod", "-n", NS)
    assert pods == [["NAME", "CPU(cores)", "MEMORY(bytes)"], ["web", "6m", "24Mi"]]
    containers = top("pod", "web", "-n", NS, "--containers")
    assert containers[1:] == [["web", "app", "5m", "20Mi"], ["web", "proxy", "1m", "4Mi"]]
    everywhere = top("pod", "-A")
    assert [NS, "web", "6m", "24Mi"] in everywhere
