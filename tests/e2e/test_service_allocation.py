"""Service addresses through the real kubectl: node ports and cluster IPs from the
configured ranges, kube-apiserver's refusals, and the `kubernetes` Service's endpoints."""

from __future__ import annotations

import ipaddress
import json

from tests.e2e.conftest import Cluster


def test_service_addresses_come_from_the_ranges(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "service", "nodeport", "web", "--tcp=80:8080", "-n", ns)
    web = json.loads(cluster.kubectl("get", "svc", "web", "-n", ns, "-o", "json").stdout)
    assert ipaddress.ip_address(web["spec"]["clusterIP"]) in ipaddress.ip_network(
        "127.96.0.0/16")
    assert 30000 <= web["spec"]["ports"][0]["nodePort"] <= 32767

    refused = cluster.kubectl("create", "service", "clusterip", "far", "--tcp=80",
                              "--clusterip=10.0.0.5", "-n", ns, check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        'error: failed to create ClusterIP service: Service "far" is invalid: spec.clusterIPs: Invalid value: ["10.0.0.5"]: failed to '
        'allocate IP 10.0.0.5: provided IP is not in the valid range. The range of valid IPs '
        'is 127.96.0.0/16')
    taken = cluster.kubectl("create", "service", "nodeport", "twin", "--tcp=80",
                            f"--node-port={web['spec']['ports'][0]['nodePort']}", "-n", ns,
                            check=False)
    assert "provided port is already allocated" in taken.stderr


def test_the_kubernetes_service_points_at_the_api_server(cluster: Cluster) -> None:
    columns = cluster.kubectl("get", "svc", "kubernetes", "-o", "wide").stdout.split("\n")[1]
    assert columns.split()[:4] == ["kubernetes", "ClusterIP", "127.96.0.1", "<none>"]
    slice_ = json.loads(cluster.kubectl("get", "endpointslices", "kubernetes",
                                        "-o", "json").stdout)
    assert slice_["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes"
    assert slice_["endpoints"][0]["addresses"] == ["127.0.0.1"]
    assert slice_["ports"] == [{"name": "https", "port": cluster.port, "protocol": "TCP"}]
    listed = cluster.kubectl("get", "endpointslices", "kubernetes").stdout
    assert "127.0.0.1" in listed and str(cluster.port) in listed
