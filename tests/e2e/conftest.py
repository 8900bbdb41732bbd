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
    has pods scheduled onto nodes that no longer run anything.

    Meanwhile the cluster's real node is cordoned, so the block's pods (images that exist
    nowhere, counted on hollow nodes) are scheduled to the hollow nodes only."""
    names = [f"{prefix}{i}" for i in range(count)]
    real = cluster.kubectl("get", "node", node_name(), check=False).returncode == 0
    if real:
        cluster.kubectl("cordon", node_name())
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
        if real:
            cluster.kubectl("uncordon", node_name(), check=False)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not shutil.which(KUBECTL):
        pytest.fail(f"the end-to-end tests need the real kubectl at {KUBECTL}")
    root = tmp_path_factory.mktemp("cluster")
    running = start_cluster(root / "data", root / "home")
    try:
        wait_node_ready(running, node_name())
        yield running
    finally:
        stop_cluster(running)


def wait_node_ready(cluster: Cluster, name: str, timeout: float = 60) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        result = cluster.kubectl("get", "node", name, "-o", "json", check=False)
        node = json.loads(result.stdout) if result.returncode == 0 else None
        return node if node is not None and node_ready(node) else None

    return wait_for(ready, f"node {name} Ready", timeout=timeout,
                    explain=lambda: (cluster.home / "pilothouse.log").read_text()[-3000:])


# -- the node agent `up` runs ------------------------------------------------------------

#: The image tests run: a Python virtual environment on the node, made on first use.
IMAGE = "python:3.11"
#: The env var pods bind their servers with: their own pod IP, from the downward API.
POD_IP_ENV = {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}


def node_name() -> str:
    """The node `up` runs is named after this machine, as a kubelet's node is."""
    return socket.gethostname().lower()


@pytest.fixture(scope="session")
def node(cluster: Cluster) -> str:
    """The Ready node of the session cluster (its agent starts with `up`)."""
    return wait_node_ready(cluster, node_name())["metadata"]["name"]


@pytest.fixture
def ns(cluster: Cluster, node: str) -> Iterator[str]:
    """A namespace of the test's own, deleted afterwards (its pods stop with it)."""
    name = f"t{os.urandom(4).hex()}"
    cluster.kubectl("create", "namespace", name)
    wait_for(lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name,
                                     check=False).returncode == 0,
             f"the default service account of {name}")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def get_json(cluster: Cluster, *args: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", *args, "-o", "json", check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    return json.loads(result.stdout)


def wait_for_training_operator(cluster: Cluster, *plurals: str, webhooks: bool = False) -> None:
    """`up` runs the training operator, which installs its CRDs and registers its validating
    webhooks once it leads: wait until the CRDs of `plurals` ("pytorchjobs", ...) are
    Established and, with `webhooks`, their kinds' webhooks are registered (MPIJob has none,
    as in the real v1)."""
    for plural in plurals:
        wait_for(lambda plural=plural: cluster.kubectl(
            "get", "crd", f"{plural}.kubeflow.org", check=False).returncode == 0,
            f"the {plural} CRD", timeout=60)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    *(f"crd/{plural}.kubeflow.org" for plural in plurals), timeout=70)
    if not webhooks:
        return
    wanted = {f"validator.{plural.removesuffix('s')}.training-operator.kubeflow.org"
              for plural in plurals if plural != "mpijobs"}

    def registered() -> bool:
        config = get_json(cluster, "validatingwebhookconfiguration",
                          "validator.training-operator.kubeflow.org") or {}
        return wanted <= {hook["name"] for hook in config.get("webhooks") or []}

    wait_for(registered, "the training operator's validating webhooks", timeout=30)


def wait_pod(cluster: Cluster, namespace: str, name: str,
             check: Callable[[dict[str, Any]], Any], what: str, *,
             timeout: float = 30) -> dict[str, Any]:
    """Wait until `check(pod)` holds; on timeout, show the pod's status and events."""
    def current() -> Any:
        pod = get_json(cluster, "pod", name, "-n", namespace)
        return pod if pod is not None and check(pod) else None

    def explain() -> str:
        pod = get_json(cluster, "pod", name, "-n", namespace) or {}
        events = cluster.kubectl("get", "events", "-n", namespace, check=False).stdout
        return f"status: {json.dumps(pod.get('status'), indent=1)}\nevents:\n{events}"

    return wait_for(current, f"pod {namespace}/{name}: {what}", timeout=timeout,
                    explain=explain)


def phase_is(phase: str) -> Callable[[dict[str, Any]], bool]:
    return lambda pod: (pod.get("status") or {}).get("phase") == phase


def container_state(pod: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    status = next((s for s in statuses if name is None or s["name"] == name), None)
    return status or {}


def pod_manifest(name: str, namespace: str, command: list[str], **spec: Any) -> str:
    """A one-container pod running `command` in the test image, as JSON for kubectl."""
    container = {"name": spec.pop("container_name", "main"), "image": IMAGE,
                 "command": command, **spec.pop("container", {})}
    return json.dumps({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": name, "namespace": namespace},
                       "spec": {"containers": [container],
                                "terminationGracePeriodSeconds": 2, **spec}})
