"""Quota and limit ranges through the real kubectl: refused creates, counted usage, defaults."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

from .conftest import Cluster

TIMEOUT = 15.0


def pod_manifest(name: str, cpu: str | None = None, *, limit: str | None = None) -> str:
    resources = {"requests": {"cpu": cpu}} if cpu else {}
    if limit:
        resources["limits"] = {"cpu": limit}
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"],
                        "resources": resources}]}})


def eventually(check: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    last: object = None
    while time.monotonic() < deadline:
        last = check()
        if last is True:
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last saw {last!r}")


def used(cluster: Cluster, namespace: str) -> dict[str, str]:
    out = cluster.kubectl("get", "quota", "q", "-n", namespace, "-o", "json").stdout
    return json.loads(out).get("status", {}).get("used") or {}


def test_quota_refuses_past_its_limits_and_releases_on_delete(cluster: Cluster) -> None:
    ns = "quota-e2e"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("create", "quota", "q", "--hard=pods=2,requests.cpu=1", "-n", ns)
    eventually(lambda: used(cluster, ns) == {"pods": "0", "requests.cpu": "0"} or
               used(cluster, ns), "the controller's first count")

    refused = cluster.kubectl("create", "-n", ns, "-f", "-", input=pod_manifest("bare"),
                              check=False)
    assert refused.returncode == 1
    assert ('pods "bare" is forbidden: failed quota: q: must specify requests.cpu for: c'
            in refused.stderr)

    cluster.kubectl("create", "-n", ns, "-f", "-", input=pod_manifest("a", "500m"))
    cluster.kubectl("create", "-n", ns, "-f", "-", input=pod_manifest("b", "250m"))
    assert used(cluster, ns) == {"pods": "2", "requests.cpu": "750m"}  # charged on admission

    third = cluster.kubectl("create", "-n", ns, "-f", "-", input=pod_manifest("c", "100m"),
                            check=False)
    assert third.returncode == 1
    assert "Error from server (Forbidden)" in third.stderr
    assert ('pods "c" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, '
            "limited: pods=2") in third.stderr

    describe = cluster.kubectl("describe", "quota", "q", "-n", ns).stdout
    assert re.search(r"^pods\s+2\s+2$", describe, re.M), describe
    assert re.search(r"^requests\.cpu\s+750m\s+1$", describe, re.M), describe

    cluster.kubectl("delete", "pod", "a", "-n", ns, "--grace-period=0", "--force")
    eventually(lambda: used(cluster, ns) == {"pods": "1", "requests.cpu": "250m"} or
               used(cluster, ns), "the delete to release quota")
    cluster.kubectl("create", "-n", ns, "-f", "-", input=pod_manifest("c", "100m"))
    assert used(cluster, ns) == {"pods": "2", "requests.cpu": "350m"}


LIMIT_RANGE = """
apiVersion: v1
kind: LimitRange
metadata: {name: defaults}
spec:
  limits:
  - type: Container
    default: {cpu: 500m, memory: 256Mi}
    defaultRequest: {cpu: 100m, memory: 128Mi}
    max: {cpu: "1"}
"""


def test_limit_range_defaults_and_bounds_pods(cluster: Cluster) -> None:
    ns = "limits-e2e"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=LIMIT_RANGE)
    cluster.kubectl("run", "plain", "-n", ns, "--image=busybox:1.36", "--restart=Never",
                    "--", "sleep", "3600")
    pod = json.loads(cluster.kubectl("get", "pod", "plain", "-n", ns, "-o", "json").stdout)
    assert pod["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "500m", "memory": "256Mi"},
        "requests": {"cpu": "100m", "memory": "128Mi"}}
    assert pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu, memory request for container plain; "
        "cpu, memory limit for container plain")
    assert pod["status"]["qosClass"] == "Burstable"
    assert {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
            "tolerationSeconds": 300} in pod["spec"]["tolerations"]

    big = cluster.kubectl("create", "-n", ns, "-f", "-", input=pod_manifest("big", limit="2"),
                          check=False)
    assert big.returncode == 1
    assert ('pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2'
            in big.stderr)


def test_object_count_quota_on_another_group(cluster: Cluster) -> None:
    ns = "count-e2e"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("create", "quota", "q", "--hard=count/cronjobs.batch=1", "-n", ns)
    eventually(lambda: used(cluster, ns) == {"count/cronjobs.batch": "0"} or used(cluster, ns),
               "the controller's first count")
    nightly = ("create", "cronjob", "-n", ns, "--image=busybox:1.36", "--schedule=0 0 * * *")
    cluster.kubectl(*nightly, "first")
    second = cluster.kubectl(*nightly, "second", check=False)
    assert second.returncode == 1
    assert ('cronjobs.batch "second" is forbidden: exceeded quota: q, requested: '
            "count/cronjobs.batch=1, used: count/cronjobs.batch=1, limited: "
            "count/cronjobs.batch=1") in second.stderr
    cluster.kubectl("delete", "cronjob", "first", "-n", ns)
    eventually(lambda: used(cluster, ns) == {"count/cronjobs.batch": "0"} or used(cluster, ns),
               "the delete to release quota")
    cluster.kubectl(*nightly, "second")
