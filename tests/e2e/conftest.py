"""End-to-end fixtures: a real `pilothouse up` on a free port, and the real kubectl."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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


def start_cluster(data_dir: Path, home: Path, port: int | None = None) -> Cluster:
    port = port or free_port()
    home.mkdir(parents=True, exist_ok=True)
    # The server and its child components log to stderr; a file never fills up the way an
    # unread pipe would (which would block them).
    log = (home / "pilothouse.log").open("a")
    process = subprocess.Popen(
        [sys.executable, "-m", "pilothouse.cli", "--log-level", "info", "up",
         "--data-dir", str(data_dir), "--port", str(port)],
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
    raise AssertionError(f"pilothouse up did not become ready: {line}\n"
                         f"{(home / 'pilothouse.log').read_text()[-3000:]}")


def stop_cluster(cluster: Cluster) -> None:
    if cluster.process.poll() is None:
        cluster.process.send_signal(signal.SIGTERM)
        try:
            cluster.process.wait(15)
        except subprocess.TimeoutExpired:
            cluster.process.kill()
            cluster.process.wait()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not shutil.which(KUBECTL):
        pytest.fail(f"the end-to-end tests need the real kubectl at {KUBECTL}")
    root = tmp_path_factory.mktemp("cluster")
    running = start_cluster(root / "data", root / "home")
    yield running
    stop_cluster(running)
