"""Logs, exec, cp, port-forward and top with the real kubectl, through the API server to
the node agent's kubelet API (WebSocket channel protocols, SPDY tunnelled for
port-forward), and the same streams from the official Python client."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import (
    KUBECTL,
    Cluster,
    container_state,
    phase_is,
    pod_manifest,
    wait_for,
    wait_pod,
)

TICKER = ["python", "-u", "-c",
          "import time, sys\n"
          "for i in range(100000):\n"
          "    print(f'tick {i}', flush=True)\n"
          "    print(f'err {i}', file=sys.stderr, flush=True)\n"
          "    time.sleep(0.2)\n"]


def running(pod: dict) -> bool:
    return "running" in container_state(pod).get("state", {})


@pytest.fixture
def ticker(cluster: Cluster, ns: str) -> str:
    cluster.kubectl("apply", "-f", "-", input=pod_manifest("ticker", ns, TICKER))
    wait_pod(cluster, ns, "ticker", running, "running", timeout=40)
    wait_for(lambda: "tick 3" in cluster.kubectl("logs", "ticker", "-n", ns).stdout,
             "four ticks")
    return ns


def test_logs_tail_since_timestamps_and_follow(cluster: Cluster, ticker: str) -> None:
    ns = ticker
    # Old enough that the last second holds only part of the output.
    wait_for(lambda: "tick 10" in cluster.kubectl("logs", "ticker", "-n", ns).stdout,
             "eleven ticks")
    full = cluster.kubectl("logs", "ticker", "-n", ns).stdout.splitlines()
    assert full[0] == "tick 0" and "err 0" in full
    tail = cluster.kubectl("logs", "ticker", "-n", ns, "--tail=2").stdout.splitlines()
    assert len(tail) == 2
    stamped = cluster.kubectl("logs", "ticker", "-n", ns, "--timestamps",
                              "--tail=1").stdout
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z (tick|err) \d+$", stamped.strip())
    recent = cluster.kubectl("logs", "ticker", "-n", ns, "--since=1s").stdout.splitlines()
    assert 0 < len(recent) < len(full)
    limited = cluster.kubectl("logs", "ticker", "-n", ns, "--limit-bytes=5").stdout
    assert limited == "tick "
    follow = subprocess.Popen([KUBECTL, "logs", "-f", "ticker", "-n", ns, "--tail=1"],
                              stdout=subprocess.PIPE, text=True, env=cluster.env)
    try:
        assert follow.stdout is not None
        seen = [follow.stdout.readline() for _ in range(6)]
    finally:
        follow.kill()
        follow.wait()
    numbers = [int(line.split()[1]) for line in seen if line.startswith("tick")]
    assert len(numbers) >= 2 and numbers == sorted(numbers)


def test_logs_of_the_previous_run(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=pod_manifest(
        "twice", ns, ["sh", "-c", "echo run $(date +%s%N); sleep 1; exit 1"]))
    wait_pod(cluster, ns, "twice", lambda p: container_state(p).get("restartCount", 0) >= 1,
             "restarted", timeout=40)
    previous = cluster.kubectl("logs", "twice", "-n", ns, "--previous").stdout
    assert previous.startswith("run ")
    bad = cluster.kubectl("logs", "twice", "-n", ns, "-c", "nope", check=False)
    assert bad.returncode != 0 and "container nope is not valid for pod twice" in bad.stderr


def test_exec_streams_and_exit_codes(cluster: Cluster, ticker: str) -> None:
    ns = ticker
    out = cluster.kubectl("exec", "ticker", "-n", ns, "--", "sh", "-c",
                          "echo out; echo err >&2; hostname")
    assert out.stdout.split() == ["out", "ticker"] and out.stderr.strip() == "err"
    failed = cluster.kubectl("exec", "ticker", "-n", ns, "--", "sh", "-c", "exit 42",
                             check=False)
    assert failed.returncode == 42
    piped = cluster.kubectl("exec", "-i", "ticker", "-n", ns, "--", "tr", "a-z", "A-Z",
                            input="shout\n")
    assert piped.stdout == "SHOUT\n"
    missing = cluster.kubectl("exec", "ticker", "-n", ns, "--", "no-such-binary",
                              check=False)
    assert missing.returncode != 0 and "no-such-binary" in missing.stderr


def test_exec_with_a_terminal(cluster: Cluster, ticker: str) -> None:
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(KUBECTL, [KUBECTL, "exec", "-it", "ticker", "-n", ticker, "--", "sh"],
                  cluster.env)
    try:
        os.write(fd, b"tty; stty size; echo done-$((6*7)); exit 5\n")
        output = b""
        deadline = time.monotonic() + 20
        while b"done-42" not in output and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    output += os.read(fd, 4096)
                except OSError:
                    break
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    text = output.decode(errors="replace")
    assert "/dev/pts/" in text, text
    assert "done-42" in text
    assert os.waitstatus_to_exitcode(status) == 5


def test_cp_to_and_from_a_pod(cluster: Cluster, ticker: str, tmp_path: Path) -> None:
    ns = ticker
    source = tmp_path / "data.txt"
    source.write_text("payload " * 1000)
    cluster.kubectl("cp", str(source), f"{ns}/ticker:/tmp/data.txt")
    inside = cluster.kubectl("exec", "ticker", "-n", ns, "--", "wc", "-c", "/tmp/data.txt")
    assert inside.stdout.split()[0] == str(len(source.read_text()))
    back = tmp_path / "back.txt"
    cluster.kubectl("cp", f"{ns}/ticker:/tmp/data.txt", str(back))
    assert back.read_text() == source.read_text()


def test_port_forward_reaches_the_pod(cluster: Cluster, ns: str) -> None:
    server = ["python", "-c",
              "import http.server, os\n"
              "class H(http.server.BaseHTTPRequestHandler):\n"
              "    def do_GET(self):\n"
              "        self.send_response(200); self.end_headers()\n"
              "        self.wfile.write(b'forwarded ' + self.path.encode())\n"
              "    def log_message(self, *a): pass\n"
              "http.server.HTTPServer((os.environ['POD_IP'], 9090), H).serve_forever()\n"]
    env = [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    cluster.kubectl("apply", "-f", "-", input=pod_manifest(
        "pf", ns, server, container={"env": env, "ports": [{"containerPort": 9090}]}))
    wait_pod(cluster, ns, "pf", running, "running", timeout=40)
    forward = subprocess.Popen([KUBECTL, "port-forward", "-n", ns, "pod/pf", ":9090"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=cluster.env)
    try:
        assert forward.stdout is not None
        line = forward.stdout.readline()
        match = re.search(r"127\.0\.0\.1:(\d+) -> 9090", line)
        assert match, line + (forward.stderr.read() if forward.poll() is not None else "")
        port = int(match.group(1))
        for path in ("/one", "/two"):
            body = wait_for(lambda p=path: _get(f"http://127.0.0.1:{port}{p}"),
                            f"a response through the forward for {path}", timeout=10)
            assert body == f"forwarded {path}"
    finally:
        forward.terminate()
        forward.wait()


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except OSError:
        return None


def test_top_pods_and_nodes(cluster: Cluster, ticker: str, node: str) -> None:
    ns = ticker

    def top(*args: str) -> str | None:
        result = cluster.kubectl("top", *args, check=False)
        return result.stdout if result.returncode == 0 else None

    pods = wait_for(lambda: top("pods", "-n", ns), "kubectl top pods", timeout=40)
    assert re.search(r"^ticker\s+\d+m\s+\d+Mi\s*$", pods, re.M), pods
    nodes = wait_for(lambda: top("nodes"), "kubectl top nodes", timeout=40)
    assert re.search(rf"^{re.escape(node)}\s+\d+m\s+\d+%\s+\d+Mi\s+\d+%", nodes,
                     re.M), nodes
    containers = top("pods", "-n", ns, "--containers")
    assert containers and "main" in containers


def test_python_client_exec_and_logs(cluster: Cluster, ticker: str) -> None:
    from kubernetes import client, config
    from kubernetes.stream import stream

    api = client.CoreV1Api(config.new_client_from_config(str(cluster.kubeconfig)))
    output = stream(api.connect_get_namespaced_pod_exec, "ticker", ticker,
                    command=["sh", "-c", "echo from-python"], stderr=True, stdin=False,
                    stdout=True, tty=False)
    assert output.strip() == "from-python"
    logs = api.read_namespaced_pod_log("ticker", ticker, tail_lines=1)
    assert logs.startswith(("tick", "err"))


def test_logs_of_a_finished_pod(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=pod_manifest(
        "said", ns, ["sh", "-c", "echo said-it"], restartPolicy="Never"))
    wait_pod(cluster, ns, "said", phase_is("Succeeded"), "Succeeded", timeout=40)
    assert cluster.kubectl("logs", "said", "-n", ns).stdout == "said-it\n"
