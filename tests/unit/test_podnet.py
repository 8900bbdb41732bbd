"""The pod network's plan, without touching the machine: names, address management and the
`ip` lines that make a pod's namespace reach its gateway, its peers and the host's 127/8."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from pilothouse.machinery.addresses import node_octet, pod_network, pod_subnet
from pilothouse.node.podnet import (
    AddressAllocator,
    PodNetworkError,
    bridge_name,
    gateway,
    link_name,
    node_commands,
    pod_commands,
)

SUBNET = ipaddress.IPv4Network("10.244.7.0/24")


def test_names_fit_the_kernels_limit_and_are_unique_per_address() -> None:
    assert bridge_name(254) == "ph254br"
    wide = ipaddress.IPv4Network("10.0.0.0/16")
    longest = link_name(254, wide, "10.0.255.254")
    assert longest == "ph254p65534" and len(longest) <= 15
    assert link_name(7, SUBNET, "10.244.7.2") == "ph7p2"
    assert len({link_name(7, SUBNET, str(a)) for a in SUBNET.hosts()}) == 254


def test_the_bridge_is_the_gateway_of_the_nodes_pod_subnet() -> None:
    subnet = pod_subnet("node-a")
    assert subnet.prefixlen == 24 and str(subnet).startswith("10.244.")
    assert subnet.network_address.packed[2] == node_octet("node-a")
    assert str(gateway(subnet)) == str(subnet.network_address + 1)
    assert node_commands("ph7br", SUBNET) == ["address replace 10.244.7.1/24 dev ph7br",
                                              "link set ph7br up"]


def test_the_pod_keeps_its_own_loopback_and_reaches_the_hosts_127_through_the_gateway(
        ) -> None:
    lines = pod_commands("10.244.7.9", SUBNET)
    assert lines == [
        "link set lo up",
        "route del local 127.0.0.0/8 dev lo table local",
        "route add local 127.0.0.0/16 dev lo table local",
        "address add 10.244.7.9/24 dev eth0",
        "link set eth0 up",
        "route add default via 10.244.7.1 dev eth0",
        "route add 127.0.0.0/8 via 10.244.7.1 dev eth0",
    ]
    # The host's loopback ranges a pod must reach are outside its own 127.0.0.0/16: the
    # service range, the load-balancer pool and every node's pod network and DNS.
    own = ipaddress.IPv4Network("127.0.0.0/16")
    for network in (ipaddress.IPv4Network("127.96.0.0/16"), ipaddress.IPv4Network(
            "127.97.0.0/16"), pod_network("node-a"), pod_network("vm")):
        assert not network.overlaps(own)


def test_addresses_are_unique_stable_and_released(tmp_path: Path) -> None:
    allocator = AddressAllocator(SUBNET, tmp_path, "/data/a")
    given = {allocator.allocate(f"uid-{i}") for i in range(50)}
    assert len(given) == 50
    assert all(ipaddress.IPv4Address(a) in SUBNET for a in given)
    assert not given & {"10.244.7.0", "10.244.7.1", "10.244.7.255"}
    first = allocator.allocate("uid-0")
    assert allocator.allocate("uid-0") == first  # the same pod keeps its address
    # A restarted agent reads what it gave out.
    again = AddressAllocator(SUBNET, tmp_path, "/data/a")
    assert again.get("uid-0") == first and len(again.owners()) == 50
    assert again.reassign("uid-1", "pod-x") == allocator.get("uid-1")
    assert AddressAllocator(SUBNET, tmp_path, "/data/a").get("pod-x") == allocator.get("uid-1")
    again.release("uid-0")
    assert again.get("uid-0") is None and not (tmp_path / first).exists()
    assert "uid-0" not in AddressAllocator(SUBNET, tmp_path, "/data/a").owners()


def test_two_agents_sharing_the_records_never_share_an_address(tmp_path: Path) -> None:
    tiny = ipaddress.IPv4Network("10.244.7.0/29")  # .2 to .6: five pods
    one = AddressAllocator(tiny, tmp_path, "/data/one")
    other = AddressAllocator(tiny, tmp_path, "/data/other")
    mine = {one.allocate(f"a{i}") for i in range(3)}
    theirs = {other.allocate(f"b{i}") for i in range(2)}
    assert not mine & theirs and len(mine | theirs) == 5
    with pytest.raises(PodNetworkError, match="no pod IP left in 10.244.7.0/29"):
        one.allocate("a3")
    # Each agent knows (and so cleans up) only its own pods.
    assert set(AddressAllocator(tiny, tmp_path, "/data/one").owners()) == {"a0", "a1", "a2"}
    other.release("b0")
    assert one.allocate("a3") not in mine
