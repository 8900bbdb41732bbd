"""Real pod networks on this machine (root only): namespaces on a bridge that reach each
other, the host and the host's 127/8; containers of the sandbox runtime inside them; and
nothing left behind once they are torn down."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilothouse.node.podnet import (
    PodNetwork,
    connect_in_netns,
    link_name,
    socket_in_netns,
    unavailable,
)
from pilothouse.node.runtime.cgroups import Cgroups
from pilothouse.node.runtime.sandbox import SandboxRuntime
from tests.unit.test_runtime_process import HOST_PATH, container, exited, logged, pod
from tests.unit.test_runtime_sandbox import sandbox_unavailable

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

#: A node octet no real node on this machine uses in these tests.
OCTET = 253
SUBNET = ipaddress.IPv4Network(f"10.244.{OCTET}.0/24")
#: A host loopback address outside the pod's own 127.0.0.0/16 (as cluster IPs and the
#: node's DNS are).
HOST_LISTENER = f"127.{OCTET}.0.77"


@pytest.fixture
def network(tmp_path: Path) -> Iterator[PodNetwork]:
    """A pod network for the test to set up in its event loop (its spares are made there)."""
    assert not unavailable(), unavailable()
    network = PodNetwork(octet=OCTET, subnet=SUBNET, owner=str(tmp_path),
                         state_root=tmp_path / "ipam")
    yield network
    asyncio.run(network.teardown())
    assert not links(f"ph{OCTET}"), "interfaces left behind"
    assert not [n for n in os.listdir("/run/netns") if n.startswith(f"ph{OCTET}")]
    assert not list((tmp_path / "ipam").rglob("10.*")), "addresses left taken"


def links(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()
            if line.split(":")[1].strip().startswith(prefix)]


async def serve(sock: socket.socket, answer: bytes) -> asyncio.Server:
    """An answering TCP server on a listening socket (the host's, or a pod's)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[0]
        writer.write(answer + b" to " + peer.encode())
        await writer.drain()
        writer.close()

    sock.listen(8)
    return await asyncio.start_server(handle, sock=sock)


async def listen_in(pin: str, host: str, port: int) -> socket.socket:
    sock = await socket_in_netns(pin)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


async def ask(sock: socket.socket) -> bytes:
    reader, writer = await asyncio.open_connection(sock=sock)
    data = await reader.read()
    writer.close()
    return data


def test_pods_listen_on_one_port_and_reach_each_other_and_the_hosts_loopback(
        network: PodNetwork) -> None:
    async def go() -> None:
        await network.setup()
        a = await network.attach("pod-a")
        b = await network.attach("pod-b")
        assert a.ip != b.ip and {ipaddress.IPv4Address(a.ip), ipaddress.IPv4Address(b.ip)} \
            <= set(SUBNET.hosts())
        assert await network.attach("pod-a") == a  # made once, then kept
        servers = [await serve(await listen_in(a.netns, "0.0.0.0", 8080), b"a"),
                   await serve(await listen_in(b.netns, "0.0.0.0", 8080), b"b"),
                   # the pod's own localhost, which the host's 127.0.0.1 does not see
                   await serve(await listen_in(a.netns, "127.0.0.1", 8081), b"a-local")]
        host = socket.socket()
        host.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        host.bind((HOST_LISTENER, 0))
        servers.append(await serve(host, b"host"))
        host_port = host.getsockname()[1]
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((HOST_LISTENER, 0))
        try:
            gateway = str(SUBNET.network_address + 1)
            # The node reaches each pod at its own address, on the same port.
            for pod, name in ((a, b"a"), (b, b"b")):
                reader, writer = await asyncio.open_connection(pod.ip, 8080)
                assert await reader.read() == name + b" to " + gateway.encode()
                writer.close()
            # Pods reach each other, and the host's loopback (TCP and UDP, as DNS) through
            # their gateway, from their own address.
            assert await ask(await connect_in_netns(a.netns, b.ip, 8080)) == \
                b"b to " + a.ip.encode()
            assert await ask(await connect_in_netns(b.netns, HOST_LISTENER, host_port)) == \
                b"host to " + b.ip.encode()
            query = await socket_in_netns(b.netns, socket.AF_INET, socket.SOCK_DGRAM)
            with query:
                query.setblocking(True)
                query.settimeout(5)
                query.sendto(b"q", udp.getsockname())
                data, peer = await asyncio.to_thread(udp.recvfrom, 16)
                assert (data, peer[0]) == (b"q", b.ip)
                udp.sendto(b"r", peer)
                assert (await asyncio.to_thread(query.recvfrom, 16))[0] == b"r"
            # A pod's 127.0.0.1 is its own.
            assert await ask(await connect_in_netns(a.netns, "127.0.0.1", 8081)) == \
                b"a-local to 127.0.0.1"
            with pytest.raises(ConnectionRefusedError):
                await connect_in_netns(b.netns, "127.0.0.1", 8081)
        finally:
            udp.close()
            for server in servers:
                server.close()
        veth = link_name(OCTET, SUBNET, a.ip)
        assert veth in links(f"ph{OCTET}p") and a.netns == f"/run/netns/{veth}"
        await network.detach("pod-a")
        assert veth not in links(f"ph{OCTET}p")
        assert not os.path.exists(a.netns)
        assert network.attached() == {"pod-b"}
        # Two spares are made ahead (not pods: housekeeping leaves them alone).
        await asyncio.sleep(0.5)
        assert len(network.addresses.owners()) == 3

    asyncio.run(go())


def test_an_agent_restarted_keeps_the_networks_of_its_pods(network: PodNetwork,
                                                           tmp_path: Path) -> None:
    async def go() -> None:
        await network.setup()
        first = await network.attach("pod-a")
        again = PodNetwork(octet=OCTET, subnet=SUBNET, owner=str(tmp_path),
                           state_root=tmp_path / "ipam")
        assert again.attached() == {"pod-a"}
        assert await again.attach("pod-a") == first
        other = PodNetwork(octet=OCTET, subnet=SUBNET, owner="/another/agent",
                           state_root=tmp_path / "ipam")
        assert other.attached() == set()  # not its pod: its housekeeping leaves it alone
        assert (await other.attach("pod-x")).ip != first.ip
        await other.teardown()
        assert os.path.exists(first.netns) and f"ph{OCTET}br" in links(f"ph{OCTET}br")
        await again.teardown()

    asyncio.run(go())


@pytest.mark.skipif(bool(sandbox_unavailable()), reason=sandbox_unavailable())
def test_containers_of_a_pod_share_its_network_namespace(network: PodNetwork,
                                                         tmp_path: Path) -> None:
    cgroups = Cgroups.detect(parent=f"pilothouse-test-{os.urandom(4).hex()}")
    runtime = SandboxRuntime(tmp_path / "pods", tmp_path / "run", host_path=HOST_PATH,
                             cgroups=cgroups)

    async def go() -> None:
        await network.setup()
        attachment = await network.attach("0b6f7e2c-uid")
        sandbox = dataclasses.replace(pod(tmp_path), ip=attachment.ip, netns=attachment.netns)
        await runtime.run_pod_sandbox(sandbox)
        server = container(sandbox, "server", ["python3", "-c",
                           "import socket\ns = socket.socket()\n"
                           "s.bind(('127.0.0.1', 9000)); s.listen(1)\n"
                           "c, _ = s.accept(); c.sendall(b'same netns'); c.close()\n"])
        await runtime.start_container(sandbox, server)
        client = container(sandbox, "client", ["python3", "-c",
                           "import socket, time\n"
                           "for _ in range(100):\n"
                           "    try:\n"
                           "        c = socket.create_connection(('127.0.0.1', 9000))\n"
                           "        break\n"
                           "    except OSError:\n"
                           "        time.sleep(0.05)\n"
                           "print(c.recv(64).decode())\n"
                           "print(open('/proc/net/dev').read())\n"])
        status = await runtime.start_container(sandbox, client)
        assert (await exited(runtime, status.id)).exit_code == 0
        out = (await logged(client, b"same netns")).decode()
        assert "eth0:" in out and f"ph{OCTET}br" not in out  # not the host's interfaces
        for status in await runtime.list_containers():
            await runtime.stop_container(status.id, 0)
            await runtime.remove_container(status.id)
        await runtime.remove_pod_sandbox(sandbox)

    try:
        asyncio.run(go())
    finally:
        cgroups.remove_parent()


def test_networks_of_an_agent_whose_data_dir_is_gone_are_removed(
        network: PodNetwork, tmp_path: Path) -> None:
    """An agent stopped before its teardown leaves pinned namespaces and address records;
    once its data dir is gone nobody can adopt them, and the next agent on the bridge
    removes them. Another live agent's (its data dir exists) are left alone."""
    ipam = tmp_path / "ipam" / network.bridge
    ipam.mkdir(parents=True, exist_ok=True)
    gone, alive = "10.244.253.201", "10.244.253.202"
    (ipam / gone).write_text(f"spare-0123\n{tmp_path / 'deleted-cluster' / 'data'}")
    other = tmp_path / "other-cluster"
    other.mkdir()
    (ipam / alive).write_text(f"spare-4567\n{other}")
    for address in (gone, alive):
        subprocess.run(["ip", "netns", "add", link_name(OCTET, SUBNET, address)], check=True)
    try:
        fresh = PodNetwork(octet=OCTET, subnet=SUBNET, owner=str(tmp_path),
                           state_root=tmp_path / "ipam")
        async def start_and_stop() -> list[str]:
            await fresh.setup()
            names = os.listdir("/run/netns")
            await fresh.teardown()
            return names

        names = asyncio.run(start_and_stop())
        assert link_name(OCTET, SUBNET, gone) not in names and not (ipam / gone).exists()
        assert link_name(OCTET, SUBNET, alive) in names and (ipam / alive).exists()
    finally:
        for address in (gone, alive):
            subprocess.run(["ip", "netns", "del", link_name(OCTET, SUBNET, address)],
                           capture_output=True)
            (ipam / address).unlink(missing_ok=True)
