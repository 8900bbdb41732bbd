"""The node agent as a process: joining a cluster with the kubelet's flags, surviving its own
SIGKILL without restarting its pods, and stopping its pods gracefully when `up` stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .conftest import (
    Cluster,
    container_state,
    get_json,
    node_name,
    node_ready,
    pod_manifest,
    start_cluster,
    stop_cluster,
    wait_for,
    wait_node_ready,
    wait_pod,
)


def running(pod: dict) -> bool:
    return "running" in container_state(pod).get("state", {})


def test_a_second_node_joins_with_the_kubelets_flags(cluster: Cluster, ns: str,
                                                     tmp_path: Path) -> None:
    name = f"joined-{ns}"
    log = (tmp_path / "node.log").open("w")
    agent = subprocess.Popen(
        [sys.executable, "-m", "pilothouse.cli", "--log-level", "info", "node",
         "--kubeconfig", str(cluster.data_dir / "components" / "node.kubeconfig"),
         "--data-dir", str(tmp_path / "data"), "--node-name", name, "--port", "0",
         "--node-labels", "pool=gpu,zone=a", "--register-with-taints",
         "dedicated=ml:NoSchedule", "--max-pods", "7"],
        stdout=log, stderr=log, env=cluster.env)
    try:
        node = wait_for(lambda: (n := get_json(cluster, "node", name)) and node_ready(n) and n,
                        f"node {name} Ready", timeout=30)
        assert node["metadata"]["labels"]["pool"] == "gpu"
        assert node["spec"]["taints"] == [{"key": "dedicated", "value": "ml",
                                           "effect": "NoSchedule"}]
        status = node["status"]
        assert status["capacity"]["pods"] == "7"
        assert int(status["capacity"]["cpu"]) == os.cpu_count()
        assert {"cpu", "memory", "ephemeral-storage", "pods"} <= set(status["allocatable"])
        assert {c["type"] for c in status["conditions"]} == {
            "Ready", "MemoryPressure", "DiskPressure", "PIDPressure"}
        assert status["nodeInfo"]["kubeletVersion"].startswith("v1.")
        assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] > 0
        assert get_json(cluster, "lease", name, "-n", "kube-node-lease") is not None
        cluster.kubectl("apply", "-f", "-", input=pod_manifest(
            "placed", ns, ["sh", "-c", "echo on-$(hostname)"], restartPolicy="Never",
            nodeSelector={"pool": "gpu"},
            tolerations=[{"key": "dedicated", "operator": "Equal", "value": "ml",
                          "effect": "NoSchedule"}]))
        pod = wait_pod(cluster, ns, "placed",
                       lambda p: (p.get("status") or {}).get("phase") == "Succeeded",
                       "Succeeded on the joined node", timeout=40)
        assert pod["spec"]["nodeName"] == name
        assert cluster.kubectl("logs", "placed", "-n", ns).stdout == "on-placed\n"
        assert (tmp_path / "data" / "pods").is_dir()
    finally:
        agent.terminate()
        agent.wait(40)
        log.close()
        cluster.kubectl("delete", "node", name, "--wait=false", check=False)


def _agent_pid(cluster: Cluster) -> int:
    kubeconfig = str(cluster.data_dir / "components" / "node.kubeconfig")
    found = subprocess.run(["pgrep", "-f", f"pilothouse.cli .*node --kubeconfig {kubeconfig}"],
                           capture_output=True, text=True).stdout.split()
    assert len(found) == 1, found
    return int(found[0])


def test_agent_killed_with_sigkill_adopts_its_running_pods(cluster: Cluster, ns: str,
                                                           node: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=pod_manifest(
        "survivor", ns, ["python", "-u", "-c",
                         "import time\nwhile True:\n    print('alive', flush=True)\n"
                         "    time.sleep(0.3)\n"]))
    before = wait_pod(cluster, ns, "survivor", running, "running", timeout=40)
    old_agent = _agent_pid(cluster)
    os.kill(old_agent, signal.SIGKILL)
    new_agent = wait_for(lambda: (pid := _try_agent_pid(cluster)) and pid != old_agent and pid,
                         "the node agent restarted by up", timeout=30)
    assert new_agent != old_agent
    # The restarted agent serves the pod again (logs need it) without having restarted it.
    wait_for(lambda: "alive" in cluster.kubectl("logs", "survivor", "-n", ns, "--tail=1",
                                                check=False).stdout,
             "logs from the adopted pod", timeout=30)
    time.sleep(2)
    after = get_json(cluster, "pod", "survivor", "-n", ns)
    assert container_state(after)["containerID"] == container_state(before)["containerID"]
    assert container_state(after)["restartCount"] == 0
    assert container_state(after)["state"]["running"]["startedAt"] == \
        container_state(before)["state"]["running"]["startedAt"]


def _try_agent_pid(cluster: Cluster) -> int | None:
    try:
        return _agent_pid(cluster)
    except AssertionError:
        return None


def test_stopping_up_stops_pods_gracefully_and_leaves_no_process(tmp_path: Path) -> None:
    own = start_cluster(tmp_path / "data", tmp_path / "home")
    marker = f"graceful-{os.urandom(4).hex()}"
    out = tmp_path / "out"
    out.mkdir()
    try:
        wait_node_ready(own, node_name())
        script = (f"trap 'echo graceful > /out/{marker}; exit 0' TERM; "
                  f"echo {marker}; while true; do sleep 0.2; done")
        own.kubectl("apply", "-f", "-", input=pod_manifest(
            "polite", "default", ["sh", "-c", script],
            volumes=[{"name": "out", "hostPath": {"path": str(out)}}],
            container={"volumeMounts": [{"name": "out", "mountPath": "/out"}]}))
        wait_pod(own, "default", "polite", running, "running", timeout=40)
        assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 0
    finally:
        stop_cluster(own)
    assert (out / marker).read_text() == "graceful\n"
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert left.returncode == 1, f"processes left after up stopped: {left.stdout}"
    left = subprocess.run(["pgrep", "-f", str(tmp_path / "data")], capture_output=True,
                          text=True)
    assert left.returncode == 1, f"pilothouse processes left: {left.stdout}"
