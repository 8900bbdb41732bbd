"""A TFJob on a real `pilothouse up`: every replica gets a TF_CONFIG naming every peer.

Two workers and a parameter server print the TF_CONFIG the operator gave them and the
address each peer's `host:port` resolves to through cluster DNS (the sandbox runtime), then
exit 0; the job Succeeds, as `kubectl get tfjobs` shows.
"""

from __future__ import annotations

import json

from .conftest import IMAGE, Cluster, get_json, wait_for, wait_for_training_operator

PROGRAM = """
import json, os, socket, time
config = json.loads(os.environ["TF_CONFIG"])
peers = [a for addresses in config["cluster"].values() for a in addresses]
resolved, deadline = {}, time.monotonic() + 60
while len(resolved) < len(peers) and time.monotonic() < deadline:
    for peer in peers:
        host, port = peer.rsplit(":", 1)
        try:
            resolved[peer] = socket.getaddrinfo(host, int(port), socket.AF_INET)[0][4][0]
        except OSError:
            pass
    time.sleep(0.3)
print(json.dumps({"config": config, "resolved": resolved}), flush=True)
time.sleep(5)  # stay resolvable while the others look this pod up
"""


def replica(replicas: int) -> dict:
    return {"replicas": replicas, "restartPolicy": "Never", "template": {"spec": {
        "terminationGracePeriodSeconds": 2,
        "containers": [{"name": "tensorflow", "image": IMAGE,
                        "command": ["python", "-c", PROGRAM]}]}}}


def test_a_tfjob_gets_a_tf_config_naming_every_peer(cluster: Cluster, ns: str) -> None:
    wait_for_training_operator(cluster, "tfjobs")
    job = {"apiVersion": "kubeflow.org/v1", "kind": "TFJob",
           "metadata": {"name": "dist", "namespace": ns},
           "spec": {"tfReplicaSpecs": {"PS": replica(1), "Worker": replica(2)}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(job))

    def state() -> str:
        fields = cluster.kubectl("get", "tfjobs", "dist", "-n", ns, "--no-headers").stdout.split()
        return fields[1] if len(fields) >= 3 else ""

    wait_for(lambda: state() == "Succeeded", "the TFJob Succeeded", timeout=120,
             explain=lambda: cluster.kubectl("get", "tfjob,pods,events", "-n", ns,
                                             check=False).stdout)
    pods = {"dist-ps-0": ("ps", 0), "dist-worker-0": ("worker", 0),
            "dist-worker-1": ("worker", 1)}
    ips = {pod: (get_json(cluster, "pod", pod, "-n", ns) or {})["status"]["podIP"]
           for pod in pods}
    for pod, (kind, index) in pods.items():
        seen = json.loads(cluster.kubectl("logs", pod, "-n", ns).stdout)
        config = seen["config"]
        assert config["task"] == {"type": kind, "index": index}
        assert config["cluster"] == {
            "ps": [f"dist-ps-0.{ns}.svc:2222"],
            "worker": [f"dist-worker-0.{ns}.svc:2222", f"dist-worker-1.{ns}.svc:2222"]}
        assert seen["resolved"] == {f"{peer}.{ns}.svc:2222": ip for peer, ip in ips.items()}
