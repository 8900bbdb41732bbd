"""The cluster's address plan: every default address stays on this machine.

A laptop cluster must not claim addresses of the networks around it, so by default all of
its virtual addresses live in 127.0.0.0/8, which Linux routes to the host itself and which
any process may bind without privileges:

- `127.96.0.0/16` is the service range (the API server's `--service-cluster-ip-range`):
  cluster IPs come from it and the `kubernetes` Service is its first address, as 10.96.0.1
  is on a kubeadm cluster.
- `127.97.0.0/16` is the local cloud provider's load-balancer pool: a LoadBalancer Service's
  external address.
- `127.N.0.0/16` is node N's pod network for pods that share the host's network (the
  process runtime); N is chosen from the node name and never collides with the two ranges
  above. Its `.0.10` is the node's cluster DNS address.
- `10.244.N.0/24` is node N's pod subnet for pods in their own network namespace (the
  sandboxed runtime as root), on a bridge whose first address is the pods' gateway. Pods
  reach the loopback ranges above through that gateway (the bridge accepts 127/8 traffic,
  `route_localnet`), so cluster IPs are the same addresses for every runtime.

Every range is a setting; these are the defaults.
"""

from __future__ import annotations

import ipaddress
import zlib

SERVICE_CLUSTER_IP_RANGE = ipaddress.IPv4Network("127.96.0.0/16")
LOAD_BALANCER_RANGE = ipaddress.IPv4Network("127.97.0.0/16")
#: Node ports, inclusive, as kube-apiserver's `--service-node-port-range` default.
NODE_PORT_RANGE = (30000, 32767)
POD_SUBNET_PREFIX = "10.244"

#: Second octets of 127/8 that are not pod networks: 127.0.x (localhost's own) and the two
#: ranges above.
_RESERVED_SECOND_OCTETS = frozenset({0, SERVICE_CLUSTER_IP_RANGE.network_address.packed[1],
                                     LOAD_BALANCER_RANGE.network_address.packed[1], 255})
_NODE_OCTETS = tuple(n for n in range(256) if n not in _RESERVED_SECOND_OCTETS)


def node_octet(node_name: str) -> int:
    """N of a node's networks, chosen from its name so nodes on one machine rarely share."""
    return _NODE_OCTETS[zlib.crc32(node_name.encode()) % len(_NODE_OCTETS)]


def pod_network(node_name: str) -> ipaddress.IPv4Network:
    """The node's host-network pod addresses: a /16 of 127.0.0.0/8 (every one of them
    reaches the host through loopback, so a pod can bind its own)."""
    return ipaddress.IPv4Network(f"127.{node_octet(node_name)}.0.0/16")


def pod_subnet(node_name: str) -> ipaddress.IPv4Network:
    """The node's subnet for pods in their own network namespace (`spec.podCIDR`)."""
    return ipaddress.IPv4Network(f"{POD_SUBNET_PREFIX}.{node_octet(node_name)}.0/24")


def node_dns_address(network: ipaddress.IPv4Network) -> str:
    """The node's cluster DNS address: `.0.10` of its pod network, as a cluster's DNS
    Service is the tenth address of the service range."""
    return str(network.network_address + 10)


def first_service_ip(service_range: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """The `kubernetes` Service's cluster IP: the first host address of the range."""
    return str(service_range.network_address + 1)
