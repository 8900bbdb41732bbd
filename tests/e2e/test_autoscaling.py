"""HorizontalPodAutoscalers on a real `pilothouse up`, driven with the real kubectl.

`kubectl autoscale` (which sends an autoscaling/v1 object, as protobuf) puts a Deployment
whose pod burns CPU under an autoscaler; the controller manager's HPA controller reads the
pod's usage from metrics.k8s.io and scales the Deployment to its maximum, and `kubectl get
hpa` shows the measured utilization against the target. An elastic PyTorchJob with metrics
gets its HorizontalPodAutoscaler from the training operator, aimed at the job's scale
subresource, which the HPA controller can read.

`up` runs the controller manager with the default 15 s sync period (it has no flag to pass
a shorter one down), so each test waits out at least one period.
"""

from __future__ import annotations

import json
import re

from .conftest import IMAGE, Cluster, get_json, wait_for, wait_for_training_operator

#: About a fifth of a core: busy 20 ms out of every 100 ms.
BURN = """
import time
while True:
    start = time.monotonic()
    while time.monotonic() - start < 0.02:
        pass
    time.sleep(0.08)
"""


def explain(cluster: Cluster, namespace: str) -> str:
    return "\n".join([
        cluster.kubectl("describe", "hpa", "-n", namespace, check=False).stdout,
        cluster.kubectl("get", "pods,events", "-n", namespace, check=False).stdout,
        cluster.kubectl("top", "pods", "-n", namespace, check=False).stdout])


def test_kubectl_autoscale_scales_a_busy_deployment(cluster: Cluster, ns: str) -> None:
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "burn", "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "burn"}},
                 "template": {"metadata": {"labels": {"app": "burn"}}, "spec": {
                     "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "burn", "image": IMAGE,
                                     "command": ["python", "-c", BURN],
                                     "resources": {"requests": {"cpu": "20m"}}}]}}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(deployment))
    cluster.kubectl("rollout", "status", "deployment/burn", "-n", ns, "--timeout=60s",
                    timeout=70)

    out = cluster.kubectl("autoscale", "deployment", "burn", "-n", ns, "--min", "1", "--max",
                          "3", "--cpu-percent", "50").stdout
    assert out.strip() == "horizontalpodautoscaler.autoscaling/burn autoscaled"
    # Stored as autoscaling/v2; read back through v1 the target is the v1 field.
    v1 = json.loads(cluster.kubectl("get", "--raw", f"/apis/autoscaling/v1/namespaces/{ns}/"
                                    "horizontalpodautoscalers/burn").stdout)
    assert v1["spec"]["targetCPUUtilizationPercentage"] == 50
    hpa = get_json(cluster, "hpa", "burn", "-n", ns)
    assert hpa is not None and hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]

    def scaled() -> bool:
        current = get_json(cluster, "deployment", "burn", "-n", ns) or {}
        return (current.get("spec") or {}).get("replicas") == 3

    wait_for(scaled, "the HPA to scale deployment burn to 3", timeout=75,
             explain=lambda: explain(cluster, ns))
    row = cluster.kubectl("get", "hpa", "burn", "-n", ns, "--no-headers").stdout.split()
    name, reference, targets, min_pods, max_pods = row[0], row[1], row[2:4], row[4], row[5]
    assert (name, reference, min_pods, max_pods) == ("burn", "Deployment/burn", "1", "3")
    assert re.fullmatch(r"cpu: \d+%/50%", " ".join(targets)), row
    utilization = int(targets[1].split("%")[0])
    assert utilization > 55, f"a busy pod measured at {utilization}% of its request"

    described = cluster.kubectl("describe", "hpa", "burn", "-n", ns).stdout
    assert re.search(r"ScalingActive\s+True\s+ValidMetricFound", described), described
    assert "New size: 3; reason: cpu resource utilization (percentage of request) above " \
           "target" in described, described


def test_elastic_pytorchjob_gets_its_hpa(cluster: Cluster, ns: str) -> None:
    wait_for_training_operator(cluster, "pytorchjobs")
    job = {
        "apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
        "metadata": {"name": "elastic", "namespace": ns},
        "spec": {
            "elasticPolicy": {"minReplicas": 1, "maxReplicas": 3, "rdzvBackend": "c10d",
                              "metrics": [{"type": "Resource", "resource": {
                                  "name": "cpu", "target": {"type": "Utilization",
                                                            "averageUtilization": 80}}}]},
            "pytorchReplicaSpecs": {"Worker": {"replicas": 1, "restartPolicy": "OnFailure",
                                               "template": {"spec": {
                                                   "terminationGracePeriodSeconds": 1,
                                                   "containers": [{
                                                       "name": "pytorch", "image": IMAGE,
                                                       "command": ["sleep", "300"],
                                                       "resources": {"requests": {
                                                           "cpu": "20m"}}}]}}}}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(job))

    def hpa_row() -> list[str] | None:
        result = cluster.kubectl("get", "hpa", "elastic", "-n", ns, "--no-headers",
                                 check=False)
        return result.stdout.split() if result.returncode == 0 else None

    row = wait_for(hpa_row, "the PyTorchJob's HorizontalPodAutoscaler", timeout=30,
                   explain=lambda: explain(cluster, ns))
    assert row[:2] == ["elastic", "PyTorchJob/elastic"], row
    assert (row[-4], row[-3]) == ("1", "3"), row  # MINPODS, MAXPODS
    hpa = get_json(cluster, "hpa", "elastic", "-n", ns)
    assert hpa is not None
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "kubeflow.org/v1",
                                             "kind": "PyTorchJob", "name": "elastic"}
    owner = hpa["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("PyTorchJob", "elastic", True)

    # The HPA controller reads the job's Workers through the PyTorchJob scale subresource.
    def able_to_scale() -> bool:
        current = get_json(cluster, "hpa", "elastic", "-n", ns) or {}
        return any(c.get("type") == "AbleToScale" and c.get("status") == "True"
                   for c in (current.get("status") or {}).get("conditions") or [])

    wait_for(able_to_scale, "the HPA controller to read the job's scale", timeout=40,
             explain=lambda: explain(cluster, ns))
