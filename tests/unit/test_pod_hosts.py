"""The kubelet-managed /etc/hosts and hostname of a pod (`node/kubelet.py`), byte for byte as
the real kubelet writes them: programs that find their own address from their hostname
(gloo, NCCL, MPI) depend on the pod IP line."""

from __future__ import annotations

from typing import Any

from pilothouse.node.kubelet import pod_hostname_and_domain, pod_hosts_file

BOILERPLATE = ("# Kubernetes-managed hosts file.\n"
               "127.0.0.1\tlocalhost\n"
               "::1\tlocalhost ip6-localhost ip6-loopback\n"
               "fe00::0\tip6-localnet\n"
               "fe00::0\tip6-mcastprefix\n"
               "fe00::1\tip6-allnodes\n"
               "fe00::2\tip6-allrouters\n")


def pod(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "team"}, "spec": spec}


def hosts(obj: dict[str, Any], ip: str = "10.244.1.7", node_hosts: str = "") -> str:
    hostname, domain = pod_hostname_and_domain(obj, cluster_domain="cluster.local")
    return pod_hosts_file(obj, ips=[ip], hostname=hostname, domain=domain,
                          node_hosts=node_hosts)


def test_a_pod_maps_its_hostname_to_its_ip() -> None:
    assert hosts(pod()) == BOILERPLATE + "10.244.1.7\tweb\n"


def test_hostname_and_subdomain_give_the_pod_its_fqdn_first() -> None:
    obj = pod("ddp-worker-0", hostname="ddp-worker-0", subdomain="ddp")
    assert pod_hostname_and_domain(obj, cluster_domain="cluster.local") == \
        ("ddp-worker-0", "ddp.team.svc.cluster.local")
    assert hosts(obj) == BOILERPLATE + \
        "10.244.1.7\tddp-worker-0.ddp.team.svc.cluster.local\tddp-worker-0\n"


def test_host_aliases_follow_under_their_header_one_line_per_ip() -> None:
    obj = pod(hostAliases=[{"ip": "127.0.0.1", "hostnames": ["foo.local", "bar.local"]},
                           {"ip": "10.1.2.3", "hostnames": ["foo.remote"]}])
    assert hosts(obj) == BOILERPLATE + "10.244.1.7\tweb\n" \
        "\n# Entries added by HostAliases.\n" \
        "127.0.0.1\tfoo.local\tbar.local\n" \
        "10.1.2.3\tfoo.remote\n"


def test_host_network_pods_get_the_nodes_hosts_file_and_their_aliases() -> None:
    node = "127.0.0.1\tlocalhost\n192.168.5.4\tnode-a\n"
    obj = pod(hostNetwork=True, hostAliases=[{"ip": "10.1.2.3", "hostnames": ["db"]}])
    assert hosts(obj, ip="192.168.5.4", node_hosts=node) == \
        "# Kubernetes-managed hosts file (host network).\n" + node + \
        "\n# Entries added by HostAliases.\n10.1.2.3\tdb\n"


def test_a_pod_name_longer_than_a_hostname_is_cut_to_63_characters() -> None:
    name = "a" * 62 + "-" + "b" * 20  # character 63 is a dash, which a hostname cannot end on
    hostname, domain = pod_hostname_and_domain(pod(name), cluster_domain="cluster.local")
    assert (hostname, domain) == ("a" * 62, "")
    assert pod_hostname_and_domain(pod("x" * 70), cluster_domain="c")[0] == "x" * 63
