"""End-to-end fixtures: a real `pilothouse up` on a free port, and the real kubectl."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

KUBECTL = "/usr/bin/kubectl"
READY_TIMEOUT = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Cluster:
    data_dir: Path
    port: int
    home: Path
    process: subprocess.Popen
    ready_line: str

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(HOME=str(self.home), KUBECONFIG=str(self.kubeconfig))
        return env

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True,
                                env=self.env, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result


def start_cluster(data_dir: Path, home: Path, port: int | None = None, *,
                  command: str = "up", args: tuple[str, ...] = ()) -> Cluster:
    """`pilothouse up` (or `apiserver`, with extra flags), waited for until ready."""
    port = port or free_port()
    home.mkdir(parents=True, exist_ok=True)
    # The server and its child components log to stderr; a file never fills up the way an
    # unread pipe would (which would block them).
    log = (home / "pilothouse.log").open("a")
    process = subprocess.Popen(
        [sys.executable, "-m", "pilothouse.cli", "--log-level", "info", command,
         "--data-dir", str(data_dir), "--port", str(port), *args],
        stdout=subprocess.PIPE, stderr=log, text=True,
        env={**os.environ, "HOME": str(home)},
    )
    deadline = time.monotonic() + READY_TIMEOUT
    assert process.stdout is not None
    line = ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("Pilothouse is ready"):
            return Cluster(data_dir, port, home, process, line)
        if process.poll() is not None:
            break
    process.kill()
    process.wait()
    raise AssertionError(f"pilothouse {command} did not become ready: {line}\n"
                         f"{(home / 'pilothouse.log').read_text()[-3000:]}")


def stop_cluster(cluster: Cluster) -> None:
    if cluster.process.poll() is None:
        cluster.process.send_signal(signal.SIGTERM)
        try:
            cluster.process.wait(15)
        except subprocess.TimeoutExpired:
            cluster.process.kill()
            cluster.process.wait()


def wait_for(check: Callable[[], Any], what: str, *, timeout: float = 30,
             explain: Callable[[], str] = lambda: "") -> Any:
    """Poll `check` until it returns something truthy, and return that; else fail saying
    what never happened (and, through `explain`, what the cluster looked like)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n{explain()}")
        time.sleep(0.2)


def node_ready(node: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


@contextmanager
def hollow_nodes(cluster: Cluster, count: int, prefix: str, *args: str,
                 timeout: float = 30) -> Iterator[list[str]]:
    """`pilothouse node --hollow` for the duration of a block: yields the node names once
    they are Ready; afterwards stops the process and deletes the nodes, so no later test
    has pods scheduled onto nodes that no longer run anything."""
    names = [f"{prefix}{i}" for i in range(count)]
    with (cluster.home / "hollow-nodes.log").open("a") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pilothouse.cli", "--log-level", "info", "node",
             "--hollow", str(count), "--kubeconfig",
             str(cluster.data_dir / "components" / "node.kubeconfig"),
             "--name-prefix", prefix, *args],
            stdout=subprocess.DEVNULL, stderr=log, env=cluster.env)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the hollow nodes exited with {process.returncode}: "
                                 f"{(cluster.home / 'hollow-nodes.log').read_text()[-2000:]}")
        items = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        return {n["metadata"]["name"] for n in items if node_ready(n)} >= set(names)

    try:
        wait_for(ready, f"{count} Ready hollow nodes {prefix}*", timeout=timeout)
        yield names
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        cluster.kubectl("delete", "node", *names, "--ignore-not-found", "--wait=false",
                        check=False)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not shutil.which(KUBECTL):
        pytest.fail(f"the end-to-end tests need the real kubectl at {KUBECTL}")
    root = tmp_path_factory.mktemp("cluster")
    running = start_cluster(root / "data", root / "home")
    yield running
    stop_cluster(running)
