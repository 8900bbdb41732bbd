"""Pods on the real node agent `up` runs, driven with the real kubectl.

The pods run real programs (the host's Python, through the test image's virtual
environment): a Deployment of HTTP servers bound to their pod IPs, restarts and
CrashLoopBackOff, OOMKilled under the sandbox runtime, init and sidecar containers,
probes, the container environment, active deadlines, and the errors a real kubelet shows
for a pod it cannot run.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from pilothouse.machinery.addresses import pod_network, pod_subnet

from .conftest import (
    IMAGE,
    POD_IP_ENV,
    Cluster,
    container_state,
    get_json,
    node_name,
    phase_is,
    pod_manifest,
    wait_for,
    wait_pod,
)

SERVER = ["python", "-c",
          "import http.server, os\n"
          "class H(http.server.BaseHTTPRequestHandler):\n"
          "    def do_GET(self):\n"
          "        body = os.environ['HOSTNAME'].encode()\n"
          "        self.send_response(200 if not os.path.exists('/tmp/sick') else 500)\n"
          "        self.end_headers(); self.wfile.write(body)\n"
          "    def log_message(self, *a): pass\n"
          "http.server.HTTPServer((os.environ['POD_IP'], 8080), H).serve_forever()\n"]


def running(pod: dict) -> bool:
    return phase_is("Running")(pod) and "running" in container_state(pod).get("state", {})


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def test_deployment_of_http_servers_bound_to_their_pod_ips(cluster: Cluster, ns: str) -> None:
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                     "terminationGracePeriodSeconds": 2,
                     "containers": [{"name": "web", "image": IMAGE, "command": SERVER,
                                     "env": [POD_IP_ENV],
                                     "ports": [{"containerPort": 8080}],
                                     "readinessProbe": {"httpGet": {"path": "/",
                                                                    "port": 8080},
                                                        "periodSeconds": 1}}]}}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(deployment))
    cluster.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s",
                    timeout=70)
    pods = json.loads(cluster.kubectl("get", "pods", "-n", ns, "-l", "app=web",
                                      "-o", "json").stdout)["items"]
    assert len(pods) == 2
    ips = {p["status"]["podIP"] for p in pods}
    # Their own namespaces' addresses (sandbox as root), else loopback addresses of the host.
    networks = (pod_subnet(node_name()), pod_network(node_name()))
    assert len(ips) == 2 and all(any(ipaddress.IPv4Address(ip) in n for n in networks)
                                 for ip in ips), ips
    for pod in pods:
        with urllib.request.urlopen(f"http://{pod['status']['podIP']}:8080/",
                                    timeout=5) as response:
            assert response.read().decode() == pod["metadata"]["name"]
    assert all(ready(p) for p in pods)


def test_crash_loop_backoff_and_restart_count(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=pod_manifest(
        "crasher", ns, ["sh", "-c", "echo crashing; exit 3"]))
    pod = wait_pod(cluster, ns, "crasher", lambda p: container_state(p).get("state", {}).get(
        "waiting", {}).get("reason") == "CrashLoopBackOff", "CrashLoopBackOff", timeout=40)
    status = container_state(pod)
    assert status["restartCount"] >= 1
    last = status["lastState"]["terminated"]
    assert last["exitCode"] == 3 and last["reason"] == "Error"
    assert "back-off 10s restarting failed container=main" in \
        status["state"]["waiting"]["message"]
    events = cluster.kubectl("get", "events", "-n", ns, "--field-selector",
                             "involvedObject.name=crasher").stdout
    assert "BackOff" in events and "Back-off restarting failed container main" in events


def test_restart_policy_never_ends_the_pod(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=pod_manifest(
        "once", ns, ["sh", "-c", "echo bye > /dev/termination-log; exit 7"],
        restartPolicy="Never"))
    pod = wait_pod(cluster, ns, "once", phase_is("Failed"), "Failed")
    terminated = container_state(pod)["state"]["terminated"]
    assert terminated["exitCode"] == 7
    assert terminated["reason"] == "Error"
    assert terminated["message"].strip() == "bye"
    cluster.kubectl("apply", "-f", "-", input=pod_manifest(
        "fallback", ns, ["sh", "-c", "echo first; echo boom; exit 2"], restartPolicy="Never",
        container={"terminationMessagePolicy": "FallbackToLogsOnError"}))
    pod = wait_pod(cluster, ns, "fallback", phase_is("Failed"), "Failed")
    assert container_state(pod)["state"]["terminated"]["message"] == "first\nboom\n"
    cluster.kubectl("apply", "-f", "-", input=pod_manifest(
        "done", ns, ["true"], restartPolicy="OnFailure"))
    pod = wait_pod(cluster, ns, "done", phase_is("Succeeded"), "Succeeded")
    assert container_state(pod)["state"]["terminated"]["reason"] == "Completed"


def test_oom_killed_under_the_sandbox_runtime(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=pod_manifest(
        "hog", ns, ["python", "-c", "x = bytearray(300 * 1024 * 1024); print(len(x))"],
        restartPolicy="Never",
        container={"resources": {"limits": {"memory": "64Mi"}}}))
    pod = wait_pod(cluster, ns, "hog", phase_is("Failed"), "Failed", timeout=40)
    terminated = container_state(pod)["state"]["terminated"]
    assert terminated["reason"] == "OOMKilled"
    assert terminated["exitCode"] == 137


def test_init_containers_run_in_order_before_the_app(cluster: Cluster, ns: str) -> None:
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "init", "namespace": ns},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "volumes": [{"name": "work", "emptyDir": {}}],
            "initContainers": [
                {"name": "first", "image": IMAGE, "command": ["sh", "-c",
                                                              "echo one >> /work/order"],
                 "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
                {"name": "second", "image": IMAGE, "command": ["sh", "-c",
                                                               "echo two >> /work/order"],
                 "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
                {"name": "sidecar", "image": IMAGE, "restartPolicy": "Always",
                 "command": ["sh", "-c", "echo side >> /work/order; exec sleep 3600"],
                 "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
            ],
            "containers": [{"name": "app", "image": IMAGE,
                            "command": ["sh", "-c", "cat /work/order; exec sleep 3600"],
                            "volumeMounts": [{"name": "work", "mountPath": "/work"}]}],
        }}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
    found = wait_pod(cluster, ns, "init", ready, "Ready", timeout=40)
    inits = {s["name"]: s for s in found["status"]["initContainerStatuses"]}
    assert inits["first"]["state"]["terminated"]["reason"] == "Completed"
    assert inits["second"]["state"]["terminated"]["reason"] == "Completed"
    assert "running" in inits["sidecar"]["state"]
    logs = wait_for(lambda: cluster.kubectl("logs", "init", "-c", "app", "-n", ns,
                                            check=False).stdout, "app logs")
    assert logs.split() == ["one", "two", "side"]


def test_environment_as_the_kubelet_builds_it(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "configmap", "settings", "-n", ns, "--from-literal=mode=fast")
    cluster.kubectl("create", "service", "clusterip", "db", "-n", ns, "--tcp=5432:5432")
    env = [POD_IP_ENV,
           {"name": "GREETING", "value": "hello $(POD_IP) $$(POD_IP)"},
           {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings",
                                                               "key": "mode"}}},
           {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                              "divisor": "1Mi"}}}]
    cluster.kubectl("apply", "-f", "-", input=pod_manifest(
        "envy", ns, ["sh", "-c", "env | sort; echo ARG=$1", "--", "$(MODE)"],
        restartPolicy="Never",
        container={"env": env, "resources": {"limits": {"memory": "128Mi"}},
                   "workingDir": "/tmp"}))
    pod = wait_pod(cluster, ns, "envy", phase_is("Succeeded"), "Succeeded", timeout=40)
    lines = cluster.kubectl("logs", "envy", "-n", ns).stdout.splitlines()
    values = dict(line.split("=", 1) for line in lines if "=" in line)
    ip = pod["status"]["podIP"]
    assert values["POD_IP"] == ip
    assert values["GREETING"] == f"hello {ip} $(POD_IP)"
    assert values["MODE"] == "fast"
    assert values["MEM"] == "128"
    assert values["HOSTNAME"] == "envy"
    assert values["ARG"] == "fast"
    assert "DB_SERVICE_HOST" in values and values["DB_SERVICE_PORT"] == "5432"
    assert values["KUBERNETES_SERVICE_HOST"] == "127.96.0.1"


def test_liveness_failure_restarts_and_readiness_failure_unreadies(cluster: Cluster,
                                                                   ns: str) -> None:
    container = {"env": [POD_IP_ENV], "ports": [{"containerPort": 8080}],
                 "readinessProbe": {"httpGet": {"path": "/", "port": 8080},
                                    "periodSeconds": 1, "failureThreshold": 1},
                 "livenessProbe": {"exec": {"command": ["test", "!", "-e", "/tmp/dead"]},
                                   "periodSeconds": 1, "failureThreshold": 2}}
    cluster.kubectl("apply", "-f", "-", input=pod_manifest("probed", ns, SERVER,
                                                           container=container))
    wait_pod(cluster, ns, "probed", ready, "Ready", timeout=40)
    cluster.kubectl("exec", "probed", "-n", ns, "--", "touch", "/tmp/sick")
    wait_pod(cluster, ns, "probed", lambda p: not ready(p), "not Ready after /tmp/sick")
    cluster.kubectl("exec", "probed", "-n", ns, "--", "rm", "/tmp/sick")
    wait_pod(cluster, ns, "probed", ready, "Ready again")
    cluster.kubectl("exec", "probed", "-n", ns, "--", "touch", "/tmp/dead")
    pod = wait_pod(cluster, ns, "probed", lambda p: container_state(p).get(
        "restartCount", 0) >= 1, "restarted by its liveness probe", timeout=40)
    assert pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
    events = cluster.kubectl("get", "events", "-n", ns).stdout
    assert "Liveness probe failed" in events
    assert "Readiness probe failed: HTTP probe failed with statuscode: 500" in events


def test_active_deadline_fails_the_pod(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=pod_manifest(
        "slow", ns, ["sleep", "3600"], activeDeadlineSeconds=2))
    pod = wait_pod(cluster, ns, "slow", phase_is("Failed"), "Failed", timeout=30)
    assert pod["status"]["reason"] == "DeadlineExceeded"


def test_pods_the_node_cannot_run_get_the_kubelets_reasons(cluster: Cluster,
                                                           ns: str) -> None:
    def waiting_reason(name: str, reason: str) -> dict:
        return wait_pod(cluster, ns, name, lambda p: container_state(p).get("state", {}).get(
            "waiting", {}).get("reason") == reason, reason)

    cluster.kubectl("apply", "-f", "-", input=pod_manifest("nocmd", ns, ["no-such-cmd"]))
    pod = waiting_reason("nocmd", "RunContainerError")
    assert "no-such-cmd" in container_state(pod)["state"]["waiting"]["message"]
    cluster.kubectl("create", "configmap", "partial", "-n", ns, "--from-literal=a=1")
    cluster.kubectl("apply", "-f", "-", input=pod_manifest(
        "nokey", ns, ["true"], container={"env": [{"name": "B", "valueFrom": {
            "configMapKeyRef": {"name": "partial", "key": "b"}}}]}))
    pod = waiting_reason("nokey", "CreateContainerConfigError")
    assert container_state(pod)["state"]["waiting"]["message"] == \
        f"couldn't find key b in ConfigMap {ns}/partial"
    cluster.kubectl("apply", "-f", "-", input=pod_manifest(
        "noclass", ns, ["true"], runtimeClassName="no-such-class"))
    wait_for(lambda: "FailedCreatePodSandBox" in cluster.kubectl(
        "get", "events", "-n", ns, "--field-selector", "involvedObject.name=noclass").stdout,
        "FailedCreatePodSandBox event")
    events = cluster.kubectl("get", "events", "-n", ns, "--field-selector",
                             "involvedObject.name=noclass").stdout
    assert 'RuntimeClass "no-such-class" not found' in events
    assert get_json(cluster, "pod", "noclass", "-n", ns)["status"]["phase"] == "Pending"


def test_runtime_class_picks_the_process_runtime(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
        "metadata": {"name": f"plain-{ns}"}, "handler": "process"}))
    try:
        cluster.kubectl("apply", "-f", "-", input=pod_manifest(
            "plain", ns, ["sh", "-c", "hostname; exit 0"], restartPolicy="Never",
            runtimeClassName=f"plain-{ns}"))
        pod = wait_pod(cluster, ns, "plain", phase_is("Succeeded"), "Succeeded")
        assert container_state(pod)["containerID"].startswith("process://")
    finally:
        cluster.kubectl("delete", "runtimeclass", f"plain-{ns}", check=False)


def test_an_absent_container_engine_fails_clearly(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
        "metadata": {"name": f"engine-{ns}"}, "handler": "docker"}))
    try:
        cluster.kubectl("apply", "-f", "-", input=pod_manifest(
            "engine", ns, ["true"], runtimeClassName=f"engine-{ns}"))

        def sandbox_event() -> str:
            events = cluster.kubectl("get", "events", "-n", ns, "--field-selector",
                                     "involvedObject.name=engine").stdout
            return events if "FailedCreatePodSandBox" in events else ""

        events = wait_for(sandbox_event, "FailedCreatePodSandBox for the docker handler")
        assert "docker" in events
        assert get_json(cluster, "pod", "engine", "-n", ns)["status"]["phase"] == "Pending"
    finally:
        cluster.kubectl("delete", "runtimeclass", f"engine-{ns}", check=False)


def test_pull_policy_never_needs_the_image_present(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=pod_manifest(
        "never", ns, ["true"], container={"image": f"absent-{ns}:1",
                                          "imagePullPolicy": "Never"}))
    pod = wait_pod(cluster, ns, "never", lambda p: container_state(p).get("state", {}).get(
        "waiting", {}).get("reason") == "ErrImageNeverPull", "ErrImageNeverPull")
    assert container_state(pod)["state"]["waiting"]["message"] == \
        f'Container image "absent-{ns}:1" is not present with pull policy of Never'


def test_attach_reaches_the_containers_stdin_and_stdout(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=pod_manifest(
        "echoer", ns, ["sh", "-c", "while read line; do echo got-$line; done"],
        container={"stdin": True}))
    wait_pod(cluster, ns, "echoer", lambda p: "running" in container_state(p).get(
        "state", {}), "running")
    # Without stdinOnce the container's stdin stays open after this client leaves, so
    # kubectl keeps following its output, as on a real cluster: read, then stop it.
    attach = subprocess.Popen(["/usr/bin/kubectl", "attach", "-i", "echoer", "-n", ns],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=cluster.env)
    try:
        assert attach.stdin is not None and attach.stdout is not None
        attach.stdin.write("hello\n")
        attach.stdin.flush()
        line = attach.stdout.readline()
        while line and "got-" not in line:
            line = attach.stdout.readline()
        assert line.strip() == "got-hello"
    finally:
        attach.kill()
        attach.wait()
    assert "got-hello" in cluster.kubectl("logs", "echoer", "-n", ns).stdout
    pod = get_json(cluster, "pod", "echoer", "-n", ns)
    assert container_state(pod)["restartCount"] == 0


def test_pre_stop_hook_runs_before_the_container_stops(cluster: Cluster, ns: str,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "hook"
    out.mkdir()
    cluster.kubectl("apply", "-f", "-", input=pod_manifest(
        "hooked", ns, ["sleep", "3600"], terminationGracePeriodSeconds=10,
        volumes=[{"name": "out", "hostPath": {"path": str(out)}}],
        container={"volumeMounts": [{"name": "out", "mountPath": "/out"}],
                   "lifecycle": {"preStop": {"exec": {"command": [
                       "sh", "-c", "echo stopping > /out/prestop"]}}}}))
    wait_pod(cluster, ns, "hooked", lambda p: "running" in container_state(p).get(
        "state", {}), "running")
    cluster.kubectl("delete", "pod", "hooked", "-n", ns, "--timeout=30s")
    assert (out / "prestop").read_text() == "stopping\n"


def test_empty_dir_over_its_size_limit_evicts_the_pod(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=pod_manifest(
        "greedy", ns, ["sh", "-c", "head -c 3000000 /dev/zero > /cache/blob; sleep 3600"],
        volumes=[{"name": "cache", "emptyDir": {"sizeLimit": "1Mi"}}],
        container={"volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}))
    pod = wait_pod(cluster, ns, "greedy", phase_is("Failed"), "Failed (evicted)", timeout=60)
    assert pod["status"]["reason"] == "Evicted"
    assert 'Usage of EmptyDir volume "cache" exceeds the limit "1Mi".' in \
        pod["status"]["message"]


def test_image_is_a_virtual_environment_a_pod_can_change_alone(cluster: Cluster,
                                                              ns: str) -> None:
    script = ("import sys, yaml, site; print(sys.prefix); "
              "open(site.getsitepackages()[0] + '/podonly_marker.py', 'w').write('X = 1')")
    cluster.kubectl("apply", "-f", "-", input=pod_manifest(
        "venv", ns, ["python", "-c", script], restartPolicy="Never"))
    wait_pod(cluster, ns, "venv", phase_is("Succeeded"), "Succeeded", timeout=60)
    prefix = cluster.kubectl("logs", "venv", "-n", ns).stdout.strip()
    assert prefix != sys.prefix and "/images/" in prefix
    host = subprocess.run([sys.executable, "-c", "import podonly_marker"],
                          capture_output=True)
    assert host.returncode != 0, "a pod changed the host's Python environment"
