"""The node's service proxy: which frontends a Service gets, and real traffic relayed
through them to echo servers on loopback.

Informer caches are filled here with watch events, as the API server would send them; the
cluster IPs are loopback addresses of the default service range, so any user may bind them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
import uvloop

from pilothouse.client import Informer
from pilothouse.node import proxy as proxy_module
from pilothouse.node.proxy import (
    Backends,
    Frontend,
    FrontendKey,
    ProxySettings,
    ServiceProxy,
    nft_table_name,
    proxy_mode,
    render_nft_table,
    service_endpoints,
    service_frontends,
    stale_tables,
)

NS = "shop"
NODE = "node-a"


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Under asyncio's own loop and uvloop, which `pilothouse node` runs on: they deliver
    reads around pause_reading differently."""
    asyncio.run(asyncio.wait_for(scenario(), 30))
    uvloop.run(asyncio.wait_for(scenario(), 30))


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def service(name: str, cluster_ip: str, *ports: dict[str, Any], status: dict | None = None,
            **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NS, "resourceVersion": "1"},
            "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                     "ports": list(ports), **spec},
            "status": status or {}}


def endpoint_slice(name: str, service_name: str, ports: list[dict[str, Any]],
                   *endpoints: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": NS, "resourceVersion": "1",
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4", "ports": ports, "endpoints": list(endpoints)}


def endpoint(address: str, *, ready: bool = True, terminating: bool = False,
             serving: bool | None = None, node: str = NODE) -> dict[str, Any]:
    conditions: dict[str, Any] = {"ready": ready, "terminating": terminating}
    if serving is not None:
        conditions["serving"] = serving
    return {"addresses": [address], "conditions": conditions, "nodeName": node}


# -- which frontends and endpoints --------------------------------------------------------


def test_a_named_target_port_resolves_per_slice_and_only_ready_endpoints_count() -> None:
    port = {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "web"}
    slices = [
        endpoint_slice("a", "web", [{"name": "http", "port": 8080, "protocol": "TCP"}],
                       endpoint("127.5.0.1"), endpoint("127.5.0.2", ready=False)),
        endpoint_slice("b", "web", [{"name": "http", "port": 9090, "protocol": "TCP"}],
                       endpoint("127.5.0.3")),
        endpoint_slice("c", "web", [{"name": "metrics", "port": 7070, "protocol": "TCP"}],
                       endpoint("127.5.0.4")),
    ]
    assert service_endpoints(port, slices) == (("127.5.0.1", 8080), ("127.5.0.3", 9090))


def test_terminating_serving_endpoints_are_used_only_when_none_is_ready() -> None:
    port = {"name": "", "port": 80, "protocol": "TCP"}
    ports = [{"name": "", "port": 8080, "protocol": "TCP"}]
    draining = endpoint_slice("a", "web", ports,
                              endpoint("127.5.0.1", ready=False, terminating=True, serving=True),
                              endpoint("127.5.0.2", ready=False, terminating=True, serving=False))
    assert service_endpoints(port, [draining]) == (("127.5.0.1", 8080),)
    mixed = endpoint_slice("b", "web", ports, endpoint("127.5.0.3"))
    assert service_endpoints(port, [draining, mixed]) == (("127.5.0.3", 8080),)


def test_frontends_cover_cluster_ip_node_port_load_balancer_and_external_ips() -> None:
    svc = service("web", "127.96.0.7",
                  {"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080},
                  {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
                  {"name": "sctp", "port": 99, "protocol": "SCTP"},
                  type="LoadBalancer", externalIPs=["127.98.0.1"],
                  status={"loadBalancer": {"ingress": [{"ip": "127.97.0.1", "ipMode": "VIP"},
                                                       {"ip": "127.97.0.2", "ipMode": "Proxy"},
                                                       {"hostname": "lb.example"}]}})
    slices = [endpoint_slice("a", "web", [{"name": "http", "port": 8080, "protocol": "TCP"},
                                          {"name": "dns", "port": 5353, "protocol": "UDP"}],
                             endpoint("127.5.0.1"))]
    frontends = service_frontends(svc, slices, node_name=NODE,
                                  node_port_addresses=("127.0.0.1",))
    assert {str(f.key) for f in frontends} == {
        "127.96.0.7:80/TCP", "127.98.0.1:80/TCP", "127.97.0.1:80/TCP", "127.0.0.1:30080/TCP",
        "127.96.0.7:53/UDP", "127.98.0.1:53/UDP", "127.97.0.1:53/UDP", "127.0.0.1:30053/UDP"}
    by_key = {str(f.key): f for f in frontends}
    assert by_key["127.0.0.1:30053/UDP"].endpoints == (("127.5.0.1", 5353),)
    assert by_key["127.96.0.7:80/TCP"].service_port == "shop/web:http"


def test_headless_and_external_name_services_are_not_proxied() -> None:
    port = {"name": "", "port": 80, "protocol": "TCP"}
    assert service_frontends(service("h", "None", port), [], node_name=NODE,
                             node_port_addresses=()) == []
    external = service("x", "", port, type="ExternalName", externalName="example.org")
    assert service_frontends(external, [], node_name=NODE, node_port_addresses=()) == []


def test_local_traffic_policies_keep_only_this_nodes_endpoints_on_their_frontends() -> None:
    svc = service("web", "127.96.0.7", {"name": "", "port": 80, "protocol": "TCP",
                                        "nodePort": 30080},
                  type="NodePort", internalTrafficPolicy="Local", externalTrafficPolicy="Cluster")
    slices = [endpoint_slice("a", "web", [{"name": "", "port": 8080, "protocol": "TCP"}],
                             endpoint("127.5.0.1"), endpoint("127.6.0.1", node="node-b"))]
    by_key = {str(f.key): f.endpoints for f in service_frontends(
        svc, slices, node_name=NODE, node_port_addresses=("127.0.0.1",))}
    assert by_key["127.96.0.7:80/TCP"] == (("127.5.0.1", 8080),)
    assert by_key["127.0.0.1:30080/TCP"] == (("127.5.0.1", 8080), ("127.6.0.1", 8080))


def test_backends_spread_round_robin_and_client_ip_affinity_sticks() -> None:
    key = FrontendKey("127.96.0.7", 80, "TCP")
    endpoints = (("127.5.0.1", 1), ("127.5.0.2", 1), ("127.5.0.3", 1))
    spread = Backends(Frontend(key, "shop/web:", endpoints))
    assert {spread.candidates("127.0.0.1")[0] for _ in range(3)} == set(endpoints)
    sticky = Backends(Frontend(key, "shop/web:", endpoints, affinity_seconds=60))
    first = sticky.candidates("127.0.0.9")[0]
    sticky.used("127.0.0.9", first)
    assert all(sticky.candidates("127.0.0.9")[0] == first for _ in range(6))
    sticky.update(Frontend(key, "shop/web:", tuple(e for e in endpoints if e != first), 60))
    assert sticky.candidates("127.0.0.9")[0] != first


# -- real traffic ----------------------------------------------------------------------------


class Cluster:
    """Informer caches fed by hand, and a proxy over them."""

    def __init__(self, mode: str = "userspace") -> None:
        self.services = Informer(None, "v1", "services")  # type: ignore[arg-type]
        self.slices = Informer(None, "discovery.k8s.io/v1", "endpointslices")  # type: ignore[arg-type]
        self.proxy = ServiceProxy(self.services, self.slices,
                                  ProxySettings(node_name=NODE, mode=mode,
                                                node_port_addresses=("127.0.0.1",)))

    def put(self, obj: dict[str, Any]) -> None:
        informer = self.services if obj["kind"] == "Service" else self.slices
        informer._apply({"type": "MODIFIED", "object": obj})

    def delete(self, obj: dict[str, Any]) -> None:
        informer = self.services if obj["kind"] == "Service" else self.slices
        informer._apply({"type": "DELETED", "object": obj})


@contextlib.asynccontextmanager
async def proxied() -> AsyncIterator[Cluster]:
    cluster = Cluster()
    cluster.services.synced.set()
    cluster.slices.synced.set()
    task = asyncio.create_task(cluster.proxy.run())
    try:
        yield cluster
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def name_server(name: bytes) -> tuple[asyncio.Server, int]:
    """A TCP server that reads until EOF, then answers its name and what it read."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()
        writer.write(name + b":" + data)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def ask(host: str, port: int, payload: bytes = b"hello") -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(payload)
    writer.write_eof()  # a half-close: the answer comes after it
    answer = await reader.read()
    writer.close()
    return answer


async def until(predicate: Callable[[], Any], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def web(cluster_ip: str, port: int, *, node_port: int | None = None, **spec: Any) -> dict:
    entry: dict[str, Any] = {"name": "http", "port": port, "protocol": "TCP"}
    if node_port:
        entry["nodePort"] = node_port
        spec.setdefault("type", "NodePort")
    return service("web", cluster_ip, entry, **spec)


def slices_for(ports: list[int], ready: list[bool] | None = None) -> list[dict[str, Any]]:
    ready = ready or [True] * len(ports)
    return [endpoint_slice(f"web-{i}", "web", [{"name": "http", "port": port, "protocol": "TCP"}],
                           endpoint("127.0.0.1", ready=is_ready))
            for i, (port, is_ready) in enumerate(zip(ports, ready, strict=True))]


def test_connections_spread_over_ready_endpoints_and_follow_readiness() -> None:
    async def scenario() -> None:
        (one, one_port), (two, two_port) = await name_server(b"one"), await name_server(b"two")
        cluster_port = free_port()
        async with proxied() as cluster:
            cluster.put(web("127.96.0.7", cluster_port))
            for item in slices_for([one_port, two_port]):
                cluster.put(item)
            await until(lambda: cluster.proxy.frontends)
            answers = [await ask("127.96.0.7", cluster_port) for _ in range(6)]
            assert sorted(set(answers)) == [b"one:hello", b"two:hello"]
            for item in slices_for([one_port, two_port], [True, False]):
                cluster.put(item)
            await until(lambda: len(next(iter(cluster.proxy.frontends.values())).endpoints) == 1)
            assert {await ask("127.96.0.7", cluster_port) for _ in range(4)} == {b"one:hello"}
            cluster.delete(web("127.96.0.7", cluster_port))
            await until(lambda: not cluster.proxy.frontends)
            with pytest.raises(ConnectionRefusedError):
                await ask("127.96.0.7", cluster_port)
        one.close()
        two.close()

    run(scenario)


def test_node_port_and_session_affinity() -> None:
    async def scenario() -> None:
        (one, one_port), (two, two_port) = await name_server(b"one"), await name_server(b"two")
        node_port = free_port()
        async with proxied() as cluster:
            cluster.put(web("127.96.0.8", free_port(), node_port=node_port,
                            sessionAffinity="ClientIP",
                            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}))
            for item in slices_for([one_port, two_port]):
                cluster.put(item)
            await until(lambda: len(cluster.proxy.frontends) == 2)
            answers = {await ask("127.0.0.1", node_port) for _ in range(6)}
            assert len(answers) == 1
        one.close()
        two.close()

    run(scenario)


def test_an_endpoint_that_refuses_is_skipped() -> None:
    async def scenario() -> None:
        live, live_port = await name_server(b"live")
        dead_port = free_port()  # nothing listens there
        cluster_port = free_port()
        async with proxied() as cluster:
            cluster.put(web("127.96.0.9", cluster_port))
            for item in slices_for([dead_port, live_port]):
                cluster.put(item)
            await until(lambda: cluster.proxy.frontends)
            assert {await ask("127.96.0.9", cluster_port) for _ in range(4)} == {b"live:hello"}
        live.close()

    run(scenario)


def test_udp_is_relayed_both_ways() -> None:
    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.transport.sendto(b"echo:" + data, addr)  # type: ignore[attr-defined]

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        echo, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        echo_port = echo.get_extra_info("sockname")[1]
        cluster_port = free_port(socket.SOCK_DGRAM)
        async with proxied() as cluster:
            cluster.put(service("dns", "127.96.0.10",
                                {"name": "dns", "port": cluster_port, "protocol": "UDP"}))
            cluster.put(endpoint_slice("dns-1", "dns",
                                       [{"name": "dns", "port": echo_port, "protocol": "UDP"}],
                                       endpoint("127.0.0.1")))
            await until(lambda: cluster.proxy.frontends)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.settimeout(3)
                client.connect(("127.96.0.10", cluster_port))
                for message in (b"one", b"two"):
                    client.send(message)
                    reply = await loop.run_in_executor(None, client.recv, 100)
                    assert reply == b"echo:" + message
        echo.close()

    run(scenario)


def test_a_frontend_that_cannot_be_bound_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proxy_module, "RETRY_SECONDS", 0.2)

    async def scenario() -> None:
        live, live_port = await name_server(b"live")
        squatter = socket.socket()
        squatter.bind(("127.96.0.11", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        async with proxied() as cluster:
            cluster.put(web("127.96.0.11", port))
            for item in slices_for([live_port]):
                cluster.put(item)
            await asyncio.sleep(0.3)
            assert not cluster.proxy.frontends
            squatter.close()
            await until(lambda: cluster.proxy.frontends)
            assert await ask("127.96.0.11", port) == b"live:hello"
        live.close()

    run(scenario)


# -- nftables mode ---------------------------------------------------------------------------


def test_the_nft_table_dnats_only_what_the_kernel_may_carry() -> None:
    key = FrontendKey("127.96.0.7", 80, "TCP")
    script = render_nft_table("pilothouse-proxy-1", [
        Frontend(key, "shop/web:http", (("127.5.0.1", 8080), ("127.5.0.2", 8080))),
        Frontend(FrontendKey("127.96.0.8", 80, "TCP"), "shop/sticky:", (("127.5.0.3", 1),),
                 affinity_seconds=60),
        Frontend(FrontendKey("127.96.0.9", 53, "UDP"), "shop/dns:", (("127.5.0.4", 53),)),
    ])
    assert script.startswith("table ip pilothouse-proxy-1\ndelete table ip pilothouse-proxy-1\n")
    assert "127.96.0.7 . 80 : jump frontend-0" in script
    assert "numgen random mod 2 map { 0 : 127.5.0.1 . 8080, 1 : 127.5.0.2 . 8080 }" in script
    assert "127.96.0.8" not in script and "127.96.0.9" not in script
    # Pods' connections from the bridge are DNAT'd too; the bridge forwards only those and
    # pod-to-pod traffic.
    assert 'iifname "ph*" ip daddr . tcp dport vmap { 127.96.0.7 . 80 : jump frontend-0 }' \
        in script
    forward = script[script.index("chain forward"):]
    assert forward.index('ct status dnat accept') < forward.index(
        'oifname "ph*" accept') < forward.index('iifname "ph*" drop')


def test_tables_of_dead_proxies_are_found_for_sweeping() -> None:
    listing = ("table inet filter\ntable ip pilothouse-proxy-10\n"
               "table ip pilothouse-proxy-20\ntable ip other-30\n")
    assert stale_tables(listing, lambda pid: pid == 20) == ["pilothouse-proxy-10"]


def test_nftables_mode_forwards_local_tcp_in_the_kernel() -> None:
    mode, why = proxy_mode()
    if mode != "nftables":
        pytest.skip(f"nftables mode is unavailable here: {why}")

    async def scenario() -> None:
        peers: list[tuple[str, int]] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peers.append(writer.get_extra_info("peername"))
            writer.write(b"kernel")
            await writer.drain()
            writer.close()

        backend = await asyncio.start_server(serve, "127.0.0.1", 0)
        backend_port = backend.sockets[0].getsockname()[1]
        cluster_port = free_port()
        cluster = Cluster(mode="nftables")
        cluster.services.synced.set()
        cluster.slices.synced.set()
        task = asyncio.create_task(cluster.proxy.run())
        try:
            cluster.put(web("127.96.0.12", cluster_port))
            for item in slices_for([backend_port]):
                cluster.put(item)
            table = nft_table_name(os.getpid())
            await until(lambda: table in subprocess.run(
                ["nft", "list", "tables"], capture_output=True, text=True).stdout)
            reader, writer = await asyncio.open_connection("127.96.0.12", cluster_port)
            local = writer.get_extra_info("sockname")
            assert await reader.read() == b"kernel"
            writer.close()
            # DNAT keeps the client's own address and port; the relay would connect anew.
            assert peers == [local]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            backend.close()
        listing = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
        assert table not in listing.stdout

    run(scenario)
