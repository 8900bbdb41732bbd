"""A PaddleJob on a real `pilothouse up`, applied with the real kubectl as v1.9's example
(`examples/paddlepaddle/simple-cpu.yaml`) is written: two Workers, collective mode, the
`paddle` container's port named `master` on 37777.

PaddlePaddle is not installed here, so each container runs what `paddle.distributed.launch`
needs of the operator: Worker 0, the rendezvous, serves PADDLE_MASTER (its own pod IP,
expanded from POD_IP_DUMMY) until the other PADDLE_NNODES - 1 nodes have said hello; Worker
1 resolves PADDLE_MASTER's host through cluster DNS and connects. Both print their PADDLE_*
environment as JSON and exit 0, so the job Succeeds, as `kubectl get paddlejobs` shows under
STATE. A PaddleJob the operator's webhook refuses gets kubectl's 422 with every cause.
"""

from __future__ import annotations

import json

from .conftest import IMAGE, Cluster, get_json, wait_for, wait_for_training_operator

PROGRAM = """
import json, os, socket, time
host, port = os.environ["PADDLE_MASTER"].rsplit(":", 1)
report = {"env": {k: v for k, v in os.environ.items()
                  if k.startswith("PADDLE_") or k == "POD_IP_DUMMY"}}
if "POD_IP_DUMMY" in os.environ:  # the rendezvous: wait for every other node
    report["heard"] = []
    with socket.create_server((host, int(port))) as server:
        server.settimeout(60)
        for _ in range(int(os.environ["PADDLE_NNODES"]) - 1):
            conn, _ = server.accept()
            with conn:
                report["heard"].append(conn.recv(100).decode())
                conn.sendall(b"welcome")
else:
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=5) as conn:
                report["connected_to"] = conn.getpeername()[0]
                conn.sendall(("hello from " + socket.gethostname()).encode())
                report["reply"] = conn.recv(100).decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
print(json.dumps(report), flush=True)
"""

#: v1.9's simple-cpu example, with this machine's image and program.
SIMPLE = """
apiVersion: "kubeflow.org/v1"
kind: PaddleJob
metadata:
  name: paddle-simple-cpu
  namespace: {namespace}
spec:
  paddleReplicaSpecs:
    Worker:
      replicas: 2
      restartPolicy: OnFailure
      template:
        spec:
          terminationGracePeriodSeconds: 2
          containers:
            - name: paddle
              image: {image}
              command:
                - python
              args:
                - "-c"
                - {program}
              ports:
                - containerPort: 37777
                  name: master
"""

#: Refused by the webhook: a replica type PaddleJob does not have, and no `paddle` container.
BAD = """
apiVersion: kubeflow.org/v1
kind: PaddleJob
metadata:
  name: bad
  namespace: {namespace}
spec:
  paddleReplicaSpecs:
    PS:
      template:
        spec:
          containers:
            - name: paddle
              image: {image}
    Worker:
      template:
        spec:
          containers:
            - name: main
              image: {image}
"""


def test_the_v1_9_example_finds_its_master_and_succeeds(cluster: Cluster, ns: str) -> None:
    wait_for_training_operator(cluster, "paddlejobs", webhooks=True)
    name = "paddle-simple-cpu"
    cluster.kubectl("apply", "-f", "-", input=SIMPLE.format(
        namespace=ns, image=IMAGE, program=json.dumps(PROGRAM)))

    def state() -> str:
        lines = cluster.kubectl("get", "paddlejobs", "-n", ns).stdout.splitlines()
        assert lines[0].split() == ["NAME", "STATE", "AGE"], lines
        fields = lines[1].split() if len(lines) > 1 else []
        return fields[1] if len(fields) >= 3 else ""

    wait_for(lambda: state() == "Succeeded", f"{name} Succeeded", timeout=120,
             explain=lambda: cluster.kubectl("get", "paddlejob,pods,events", "-n", ns,
                                             check=False).stdout)
    rendezvous, other = f"{name}-worker-0", f"{name}-worker-1"
    ip = (get_json(cluster, "pod", rendezvous, "-n", ns) or {})["status"]["podIP"]
    seen = {pod: json.loads(cluster.kubectl("logs", pod, "-n", ns).stdout)
            for pod in (rendezvous, other)}
    common = {"PADDLE_JOB_ID": name, "PADDLE_NNODES": "2"}
    assert seen[rendezvous]["env"] == {**common, "POD_IP_DUMMY": ip,
                                       "PADDLE_MASTER": f"{ip}:37777"}
    assert seen[other]["env"] == {**common, "PADDLE_MASTER": f"{rendezvous}:37777"}
    assert seen[other]["connected_to"] == ip and seen[other]["reply"] == "welcome"
    assert seen[rendezvous]["heard"] == [f"hello from {other}"]

    status = (get_json(cluster, "paddlejob", name, "-n", ns) or {})["status"]
    assert status["replicaStatuses"]["Worker"]["succeeded"] == 2
    assert [c["reason"] for c in status["conditions"] if c["type"] == "Succeeded"] == [
        "PaddleJobSucceeded"]


def test_kubectl_gets_a_422_naming_every_cause(cluster: Cluster, ns: str) -> None:
    wait_for_training_operator(cluster, "paddlejobs", webhooks=True)
    result = cluster.kubectl("apply", "-v=6", "-f", "-",
                             input=BAD.format(namespace=ns, image=IMAGE), check=False)
    assert result.returncode == 1, result
    assert "422 Unprocessable Entity" in result.stderr, result.stderr
    assert 'The PaddleJob "bad" is invalid' in result.stderr, result.stderr
    for cause in ('spec.paddleReplicaSpecs[PS]: Unsupported value: "PS": supported values: '
                  '"Master", "Worker"',
                  "spec.paddleReplicaSpecs[Worker].template.spec.containers: Required value: "
                  'must have at least one container with name "paddle"'):
        assert cause in result.stderr, result.stderr
    assert get_json(cluster, "paddlejob", "bad", "-n", ns) is None
