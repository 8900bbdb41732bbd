"""Cluster DNS on the node agent `up` runs: a StatefulSet's pods found by name.

A headless Service and a StatefulSet of two HTTP servers, each bound to its own loopback
pod IP; a client pod resolves the pods' stable names through the node's DNS server (the
search path and ndots:5 in its /etc/resolv.conf) and fetches from one over HTTP. Only the
sandbox runtime shows a pod its own resolv.conf, so the test needs it (root and bubblewrap,
as the suite's other sandbox tests do).
"""

from __future__ import annotations

import json

from .conftest import IMAGE, POD_IP_ENV, Cluster, get_json, phase_is, pod_manifest, wait_pod

CLIENT = """
import json, socket, time, urllib.request
ns = {ns!r}
def lookup(name):
    return sorted({{a[4][0] for a in socket.getaddrinfo(name, 8080, socket.AF_INET,
                                                        socket.SOCK_STREAM)}})
deadline = time.monotonic() + 20
while True:  # the endpoints may trail the pods' readiness by a moment
    try:
        headless = lookup(f"web.{{ns}}.svc.cluster.local")
        if len(headless) == 2 or time.monotonic() > deadline:
            break
    except OSError:
        if time.monotonic() > deadline:
            raise
    time.sleep(0.5)
fqdn = f"web-0.web.{{ns}}.svc.cluster.local"
with urllib.request.urlopen(f"http://{{fqdn}}:8080/", timeout=5) as response:
    status = response.status
print(json.dumps({{"headless": headless, "web-0": lookup(fqdn), "short": lookup("web-1.web"),
                   "status": status, "resolv": open("/etc/resolv.conf").read()}}))
"""


def test_statefulset_pods_are_found_by_name_through_cluster_dns(cluster: Cluster,
                                                               node: str, ns: str) -> None:
    runtime = (get_json(cluster, "node", node) or {})["status"]["nodeInfo"][
        "containerRuntimeVersion"]
    assert runtime.startswith("sandbox"), \
        f"cluster DNS in pods needs the sandbox runtime (root and bubblewrap), not {runtime}"
    objects = [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
         "spec": {"clusterIP": "None", "selector": {"app": "web"},
                  "ports": [{"name": "http", "port": 8080}]}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet",
         "metadata": {"name": "web", "namespace": ns},
         "spec": {"serviceName": "web", "replicas": 2, "podManagementPolicy": "Parallel",
                  "selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                      "terminationGracePeriodSeconds": 2,
                      "containers": [{
                          "name": "web", "image": IMAGE, "env": [POD_IP_ENV],
                          "command": ["python", "-m", "http.server", "8080",
                                      "--bind", "$(POD_IP)"],
                          "readinessProbe": {"tcpSocket": {"port": 8080},
                                             "periodSeconds": 1}}]}}}},
    ]
    for obj in objects:
        cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
    cluster.kubectl("rollout", "status", "statefulset/web", "-n", ns, "--timeout=60s",
                    timeout=70)
    ips = {name: (get_json(cluster, "pod", name, "-n", ns) or {})["status"]["podIP"]
           for name in ("web-0", "web-1")}

    cluster.kubectl("apply", "-f", "-", input=pod_manifest(
        "client", ns, ["python", "-c", CLIENT.format(ns=ns)], restartPolicy="Never"))
    wait_pod(cluster, ns, "client", phase_is("Succeeded"), "resolved and fetched",
             timeout=60)
    result = json.loads(cluster.kubectl("logs", "client", "-n", ns).stdout)

    assert result["headless"] == sorted(ips.values())
    assert result["web-0"] == [ips["web-0"]]
    assert result["short"] == [ips["web-1"]]  # through the search path
    assert result["status"] == 200
    lines = result["resolv"].splitlines()
    nameserver = next(line.split()[1] for line in lines if line.startswith("nameserver"))
    assert nameserver.startswith("127.") and nameserver.endswith(".0.10")
    assert f"search {ns}.svc.cluster.local svc.cluster.local cluster.local" in \
        result["resolv"]
    assert "options ndots:5" in lines
