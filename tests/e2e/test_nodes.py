"""Hollow nodes and the node lifecycle controller, seen through the real kubectl.

The cluster here is put together by hand, so that nothing but the parts under test acts:
the API server alone, a controller manager running only the node lifecycle controller
with short timeouts (a node is lost after 4 s without heartbeat, its pods are evicted 2 s
later), and hollow nodes. No scheduler runs: pods are bound with POST pods/binding or
created with spec.nodeName.

Hollow nodes here renew their leases every half second (a 2 s lease), well inside the
4 s grace period, as the kubelet's 10 s sits inside the default 40 s; they are started
through `run_hollow_nodes` because `pilothouse node` takes no lease-duration flag. The
command itself is exercised by the last test.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Cluster, start_cluster, stop_cluster, wait_for

GRACE_SECONDS = 4
EVICTION_SECONDS = 2
LEASE_SECONDS = 2


class NodeCluster:
    """The API server, the node lifecycle controller, and a way to start hollow nodes."""

    def __init__(self, cluster: Cluster, log: Path) -> None:
        self.cluster = cluster
        self.log = log
        self.node_kubeconfig = cluster.data_dir / "components" / "node.kubeconfig"
        self.processes: list[subprocess.Popen] = []

    def kubectl(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl(*args, **kwargs)

    def spawn(self, *args: str) -> subprocess.Popen:
        with self.log.open("a") as log:
            process = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL,
                                       stderr=log)
        self.processes.append(process)
        return process

    def hollow(self, prefix: str, count: int) -> subprocess.Popen:
        """Hollow nodes `<prefix>0..`, waited for until Ready."""
        process = self.spawn("-m", "pilothouse.cli", "--log-level", "info", "node",
                             "--hollow", str(count), "--kubeconfig", str(self.node_kubeconfig),
                             "--name-prefix", prefix, "--cpu", "4", "--memory", "16Gi",
                             "--node-lease-duration-seconds", str(LEASE_SECONDS))
        wait_for(lambda: all(self.ready(f"{prefix}{i}") == "True" for i in range(count)),
                 f"{count} Ready hollow nodes {prefix}*")
        return process

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        args = ["get", kind, name, "-o", "json", "--ignore-not-found"]
        if namespace:
            args += ["-n", namespace]
        out = self.kubectl(*args).stdout
        return json.loads(out) if out.strip() else None

    def ready(self, node_name: str) -> str | None:
        node = self.get("node", node_name) or {}
        return next((c["status"] for c in node.get("status", {}).get("conditions", [])
                     if c["type"] == "Ready"), None)

    def phase(self, pod: str) -> str | None:
        return ((self.get("pod", pod, "default") or {}).get("status") or {}).get("phase")

    def create_pod(self, name: str, *, node: str | None = None,
                   annotations: dict[str, str] | None = None, **spec: Any) -> None:
        manifest = {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": "default",
                                 "annotations": annotations or {}},
                    "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}],
                             **({"nodeName": node} if node else {}), **spec}}
        self.kubectl("create", "-f", "-", input=json.dumps(manifest))


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    root = tmp_path_factory.mktemp("nodes")
    # Pods tolerate an unreachable node for EVICTION_SECONDS, as the API server's
    # --default-*-toleration-seconds make them (300 s unless set).
    cluster = start_cluster(root / "data", root / "home", command="apiserver", args=(
        "--default-not-ready-toleration-seconds", str(EVICTION_SECONDS),
        "--default-unreachable-toleration-seconds", str(EVICTION_SECONDS)))
    data_dir = cluster.data_dir
    running = NodeCluster(cluster, cluster.home / "pilothouse.log")
    running.spawn("-m", "pilothouse.cli", "--log-level", "info", "controller-manager",
                  "--kubeconfig", str(data_dir / "components" / "controller-manager.kubeconfig"),
                  "--controllers",
                  "node-lifecycle-controller,replicaset-controller,serviceaccount-controller",
                  "--no-leader-elect",
                  "--node-monitor-grace-period", str(GRACE_SECONDS))
    running.spawn("-m", "pilothouse.cli", "--log-level", "info", "scheduler",
                  "--kubeconfig", str(data_dir / "components" / "scheduler.kubeconfig"))
    try:
        running.hollow("hollow-", 3)
        yield running
    finally:
        for process in running.processes:
            if process.poll() is None:
                process.terminate()
                process.wait(10)
        stop_cluster(running.cluster)


def test_kubectl_lists_hollow_nodes_ready_with_their_lease(nodes: NodeCluster) -> None:
    out = nodes.kubectl("get", "nodes", "-o", "wide").stdout.splitlines()
    assert out[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP",
                              "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    rows = {line.split()[0]: line.split() for line in out[1:]}
    ips = set()
    for name in ("hollow-0", "hollow-1", "hollow-2"):
        row = rows[name]
        assert row[1:3] == ["Ready", "<none>"]
        assert row[4] == "v1.32.0"
        assert row[5].startswith("10.")
        assert row[-1] == "hollow://"
        ips.add(row[5])
    assert len(ips) == 3
    labels = nodes.kubectl("get", "nodes", "-l", "node.kubernetes.io/instance-type=hollow",
                           "-L", "kubernetes.io/os,kubernetes.io/hostname").stdout
    assert "linux" in labels and "hollow-2" in labels.split()
    leases = nodes.kubectl("get", "leases", "-n", "kube-node-lease").stdout.splitlines()
    assert ["hollow-1", "hollow-1"] in [line.split()[:2] for line in leases]


def test_a_bound_pod_runs_on_its_node_and_deletes_promptly(nodes: NodeCluster) -> None:
    nodes.create_pod("web", schedulerName="nobody")  # bound by hand below
    uid = nodes.kubectl("get", "pod", "web", "-o", "jsonpath={.metadata.uid}").stdout
    binding = {"apiVersion": "v1", "kind": "Binding",
               "metadata": {"name": "web", "namespace": "default", "uid": uid},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "hollow-1"}}
    nodes.kubectl("create", "--raw", "/api/v1/namespaces/default/pods/web/binding",
                  "-f", "-", input=json.dumps(binding))
    wait_for(lambda: nodes.phase("web") == "Running", "the bound pod to run")
    row = nodes.kubectl("get", "pod", "web", "-o", "wide").stdout.splitlines()[1].split()
    assert row[1:3] == ["1/1", "Running"]
    assert row[5].startswith("10.") and row[6] == "hollow-1"
    pod = nodes.get("pod", "web", "default")
    assert pod is not None
    node = nodes.get("node", "hollow-1")
    assert node is not None
    internal_ip = next(a["address"] for a in node["status"]["addresses"]
                       if a["type"] == "InternalIP")
    assert pod["status"]["hostIP"] == internal_ip
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert {conditions[k] for k in ("Initialized", "Ready", "ContainersReady",
                                    "PodScheduled")} == {"True"}
    started = time.monotonic()
    nodes.kubectl("delete", "pod", "web", "--timeout=20s")
    assert time.monotonic() - started < 10, "the hollow kubelet should finish the deletion"
    assert nodes.get("pod", "web", "default") is None


def test_the_exit_code_hook_ends_or_restarts_pods(nodes: NodeCluster) -> None:
    hook = "pilothouse.dev/hollow-exit-code"
    nodes.create_pod("done", node="hollow-0", restartPolicy="Never",
                     annotations={hook: "0"})
    nodes.create_pod("broken", node="hollow-0", restartPolicy="Never",
                     annotations={hook: "3"})
    nodes.create_pod("flaky", node="hollow-2", restartPolicy="OnFailure",
                     annotations={hook: "1", "pilothouse.dev/hollow-run-seconds": "0.5"})
    wait_for(lambda: nodes.phase("done") == "Succeeded", "the exit-0 pod to succeed")
    wait_for(lambda: nodes.phase("broken") == "Failed", "the exit-3 pod to fail")
    table = {line.split()[0]: line.split()
             for line in nodes.kubectl("get", "pods").stdout.splitlines()[1:]}
    assert table["done"][1:3] == ["0/1", "Completed"]
    assert table["broken"][1:3] == ["0/1", "Error"]
    broken = nodes.get("pod", "broken", "default")
    assert broken is not None
    assert broken["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3

    def restarted() -> bool:
        pod = nodes.get("pod", "flaky", "default") or {}
        statuses = pod.get("status", {}).get("containerStatuses") or [{}]
        return statuses[0].get("restartCount", 0) >= 1
    wait_for(restarted, "the OnFailure pod to restart")
    assert nodes.phase("flaky") == "Running"
    nodes.kubectl("delete", "pod", "done", "broken", "flaky", "--timeout=20s")


def test_a_dead_node_goes_unreachable_and_its_pods_are_evicted(nodes: NodeCluster) -> None:
    kubelet = nodes.hollow("doomed-", 1)
    nodes.create_pod("evicted", node="doomed-0")
    nodes.create_pod("tolerant", node="doomed-0", tolerations=[
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}])
    for name in ("evicted", "tolerant"):
        wait_for(lambda name=name: nodes.phase(name) == "Running", f"{name} to run")

    kubelet.send_signal(signal.SIGKILL)
    kubelet.wait()
    killed = time.monotonic()
    wait_for(lambda: nodes.ready("doomed-0") == "Unknown", "the node to turn Unknown",
             timeout=GRACE_SECONDS + 10)
    assert time.monotonic() - killed >= GRACE_SECONDS - 1
    row = nodes.kubectl("get", "node", "doomed-0").stdout.splitlines()[1].split()
    assert row[1] == "NotReady"
    node = nodes.get("node", "doomed-0")
    assert node is not None
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["reason"], ready["message"]) == ("NodeStatusUnknown",
                                                   "Kubelet stopped posting node status.")

    def unreachable_taint() -> dict[str, Any] | None:
        taints = (nodes.get("node", "doomed-0") or {}).get("spec", {}).get("taints") or []
        return next((t for t in taints if t["key"] == "node.kubernetes.io/unreachable"
                     and t["effect"] == "NoExecute"), None)
    assert wait_for(unreachable_taint, "the unreachable taint", timeout=5).get("timeAdded")

    wait_for(lambda: nodes.get("pod", "evicted", "default") is None,
             "the pod without a toleration of its own to be evicted",
             timeout=EVICTION_SECONDS + 10)
    time.sleep(EVICTION_SECONDS + 1)
    tolerant = nodes.get("pod", "tolerant", "default")
    assert tolerant is not None, "a pod tolerating the taint forever must stay"
    conditions = {c["type"]: c["status"] for c in tolerant["status"]["conditions"]}
    assert conditions["Ready"] == "False"
    events = json.loads(nodes.kubectl("get", "events", "-o", "json").stdout)["items"]
    reasons = {(e["reason"], e["involvedObject"]["name"]) for e in events}
    assert ("NodeNotReady", "doomed-0") in reasons
    assert ("TaintManagerEviction", "evicted") in reasons

    nodes.hollow("doomed-", 1)
    wait_for(lambda: unreachable_taint() is None, "the taints to go when the kubelet returns",
             timeout=5)

    def ready_again() -> bool:
        pod = nodes.get("pod", "tolerant", "default") or {}
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for c in pod.get("status", {}).get("conditions", []))
    wait_for(ready_again, "the surviving pod to be Ready again", timeout=5)


def test_a_dead_nodes_replica_set_pod_is_replaced_on_a_live_node(nodes: NodeCluster) -> None:
    kubelet = nodes.hollow("lost-", 1)
    nodes.kubectl("cordon", "hollow-0")  # so the first pod can only land on lost-0
    nodes.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "survivor", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "survivor"}},
                 "template": {"metadata": {"labels": {"app": "survivor"}}, "spec": {
                     "containers": [{"name": "main", "image": "busybox:1.36"}],
                     "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                         "nodeSelectorTerms": [{"matchExpressions": [{
                             "key": "kubernetes.io/hostname", "operator": "In",
                             "values": ["lost-0", "hollow-0"]}]}]}}}}}}}))

    def running_on() -> str | None:
        items = json.loads(nodes.kubectl("get", "pods", "-l", "app=survivor", "-o",
                                         "json").stdout)["items"]
        live = [p for p in items if not p["metadata"].get("deletionTimestamp")
                and p["status"].get("phase") == "Running"]
        return live[0]["spec"]["nodeName"] if len(live) == 1 else None

    assert wait_for(running_on, "the ReplicaSet's pod to run") == "lost-0"
    nodes.kubectl("uncordon", "hollow-0")
    kubelet.send_signal(signal.SIGKILL)
    kubelet.wait()
    # grace period, then the default toleration (EVICTION_SECONDS), then a new pod placed
    # by the scheduler away from the unreachable node.
    wait_for(lambda: running_on() == "hollow-0", "a replacement pod on the live node",
             timeout=GRACE_SECONDS + EVICTION_SECONDS + 20)
    nodes.kubectl("delete", "rs", "survivor")


def test_the_node_command_registers_labels_and_taints_and_stops_on_sigterm(
        nodes: NodeCluster) -> None:
    command = nodes.spawn("-m", "pilothouse.cli", "node", "--hollow", "1",
                          "--kubeconfig", str(nodes.node_kubeconfig), "--name-prefix", "cli-",
                          "--cpu", "2", "--memory", "4Gi", "--max-pods", "20",
                          "--node-labels", "e2e=cli,tier=gpu",
                          "--register-with-taints", "dedicated=ml:NoSchedule")
    node = wait_for(lambda: nodes.get("node", "cli-0"), "the node to register")
    labels = node["metadata"]["labels"]
    assert (labels["e2e"], labels["tier"], labels["kubernetes.io/hostname"]) == (
        "cli", "gpu", "cli-0")
    assert {"key": "dedicated", "value": "ml", "effect": "NoSchedule"} in node["spec"]["taints"]
    assert node["status"]["capacity"]["cpu"] == "2"
    assert node["status"]["allocatable"]["pods"] == "20"
    assert nodes.ready("cli-0") == "True"
    command.send_signal(signal.SIGTERM)
    assert command.wait(10) == 0
    assert nodes.get("node", "cli-0") is not None, "a stopped kubelet leaves its node behind"
