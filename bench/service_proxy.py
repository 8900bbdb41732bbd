"""Service traffic: requests through a cluster IP and a node port beside straight to the pod.

    python bench/service_proxy.py [--requests 2000] [--connections 300] [--seconds 3]
                                  [--proxy-mode auto|userspace|nftables]

Starts `pilothouse up` (with its node agent and service proxy) on a temp dir, runs one pod
serving HTTP/1.1 (a small asyncio server: `/ping` answers 2 bytes, `/bytes/N` N bytes) behind
a NodePort Service, and then measures, alternating the targets so drift hits each alike:

1. **Latency, one keep-alive connection**: `--requests` sequential `GET /ping`, p50/p99.
2. **Latency, a new connection per request**: `--connections` sequential connect + GET +
   close, p50/p99 (through the proxy this includes its connect to the pod).
3. **Request throughput**: 8 keep-alive clients (threads) for `--seconds`, requests/s.
4. **Bulk throughput**: `GET /bytes/268435456` (256 MiB) three times, MiB/s.

The same measurements then run from a client pod (the same code, shipped as its program):
with the sandbox runtime as root the pod has its own network namespace, so its traffic to
the cluster IP crosses the node bridge to the proxy's userspace relay, while the host's
goes through the nftables DNAT where that mode is active (`up` prints the mode).

Targets (the issue's): proxied latency within 1.5x of direct, throughput at least half of
direct. The client is plain blocking sockets, the same for every target, so the ratios
carry the proxy's cost; the machine's two cores are shared by the client, the proxy (in the
node agent) and the pod, so the proxied run also pays for the proxy's CPU, as it would.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (  # noqa: E402
    Server,
    Watch,
    checked,
    create_namespace,
    machine_line,
    new_event_loop_policy,
    percentile,
    print_table,
    running_server,
)

IMAGE = "python:3.11"
TIMEOUT = 120.0
BULK_BYTES = 256 << 20
CLIENTS = 8
POD_SERVER = r"""
import asyncio, os
CHUNK = b"x" * (1 << 20)

async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1]
            if path.startswith(b"/bytes/"):
                left = int(path[7:])
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % left)
                while left > 0:
                    writer.write(CHUNK[:left])
                    left -= len(CHUNK)
                    await writer.drain()
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(handle, os.environ["POD_IP"], 8080)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


def manifests() -> tuple[bytes, bytes]:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "server", "labels": {"app": "server"}},
           "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
               "name": "server", "image": IMAGE, "command": ["python", "-c", POD_SERVER],
               "env": [{"name": "POD_IP",
                        "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
               "ports": [{"containerPort": 8080, "name": "http"}],
               "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1}}]}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "server"},
               "spec": {"type": "NodePort", "selector": {"app": "server"},
                        "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}
    return orjson.dumps(pod), orjson.dumps(service)


# -- a blocking HTTP/1.1 client ----------------------------------------------------------


def request(sock: socket.socket, path: bytes, buffer: bytearray) -> int:
    """GET `path` on a keep-alive connection; returns the body's length."""
    sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: bench\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed mid-response")
        head += chunk
    head, _, body = head.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    received = len(body)
    view = memoryview(buffer)
    while received < length:
        n = sock.recv_into(view, min(len(buffer), length - received))
        if not n:
            raise ConnectionError("closed mid-body")
        received += n
    return length


def connect(target: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(target, timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def keepalive_latency(target: tuple[str, int], count: int) -> list[float]:
    buffer = bytearray(1 << 16)
    times = []
    with connect(target) as sock:
        for _ in range(count):
            start = time.perf_counter()
            request(sock, b"/ping", buffer)
            times.append(time.perf_counter() - start)
    return sorted(times)


def new_connection_latency(target: tuple[str, int], count: int) -> list[float]:
    buffer = bytearray(1 << 16)
    times = []
    for _ in range(count):
        start = time.perf_counter()
        with connect(target) as sock:
            request(sock, b"/ping", buffer)
        times.append(time.perf_counter() - start)
    return sorted(times)


def request_rate(target: tuple[str, int], seconds: float) -> float:
    counts = [0] * CLIENTS
    stop = time.perf_counter() + seconds

    def client(i: int) -> None:
        buffer = bytearray(1 << 16)
        with connect(target) as sock:
            while time.perf_counter() < stop:
                request(sock, b"/ping", buffer)
                counts[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


def bulk_rate(target: tuple[str, int]) -> float:
    buffer = bytearray(1 << 20)
    with connect(target) as sock:
        start = time.perf_counter()
        total = sum(request(sock, b"/bytes/%d" % BULK_BYTES, buffer) for _ in range(3))
        return total / (time.perf_counter() - start) / (1 << 20)


# -- the cluster -------------------------------------------------------------------------


async def start_workload(server: Server) -> tuple[str, int, str]:
    """Create the pod and its Service; return (pod IP, node port, cluster IP) once the pod
    is Ready and the proxy answers on the cluster IP."""
    conn = await server.connect()
    await create_namespace(conn, "bench")
    ready: dict[str, str] = {}
    done = asyncio.Event()

    def on_pod(kind: str, obj: dict) -> bool:
        status = obj.get("status") or {}
        if any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in status.get("conditions") or ()):
            ready["ip"] = status["podIP"]
            done.set()
            return True
        return False

    watch = await Watch.open(server, "/api/v1/namespaces/bench/pods", on_pod)
    follower = asyncio.create_task(watch.follow())
    pod, service = manifests()
    await checked(conn, "POST", "/api/v1/namespaces/bench/pods", pod)
    created = orjson.loads(await checked(conn, "POST", "/api/v1/namespaces/bench/services",
                                         service))
    await conn.close()
    await asyncio.wait_for(done.wait(), TIMEOUT)
    follower.cancel()
    spec = created["spec"]
    cluster = (spec["clusterIP"], 80)
    deadline = time.monotonic() + 10
    while True:
        try:
            keepalive_latency(cluster, 1)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
    return ready["ip"], spec["ports"][0]["nodePort"], spec["clusterIP"]


def alternate(targets: dict[str, tuple[str, int]], measure: Callable[[tuple[str, int]], Any],
              rounds: int) -> dict[str, list[Any]]:
    """`measure` each target `rounds` times, interleaved."""
    results: dict[str, list[Any]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, target in targets.items():
            results[name].append(measure(target))
    return results


def measure_all(targets: dict[str, tuple[str, int]], requests: int, connections: int,
                seconds: float) -> dict[str, dict[str, float]]:
    """Every figure for every target, alternating targets: latencies in seconds, rates in
    requests/s and MiB/s. Runs here and, as source, in the client pod."""
    for target in targets.values():  # warm every path once
        keepalive_latency(target, 200)
    keepalive = alternate(targets, lambda t: keepalive_latency(t, requests // 4), 4)
    fresh = alternate(targets, lambda t: new_connection_latency(t, connections // 3), 3)
    rates = alternate(targets, lambda t: request_rate(t, seconds / 3), 3)
    bulk = alternate(targets, bulk_rate, 2)
    figures = {}
    for name in targets:
        keep = sorted(v for part in keepalive[name] for v in part)
        new = sorted(v for part in fresh[name] for v in part)
        figures[name] = {"keep50": percentile(keep, 50), "keep99": percentile(keep, 99),
                         "new50": percentile(new, 50), "new99": percentile(new, 99),
                         "rate": sum(rates[name]) / len(rates[name]),
                         "bulk": sum(bulk[name]) / len(bulk[name])}
    return figures


def pod_client_source(targets: dict[str, tuple[str, int]], requests: int, connections: int,
                      seconds: float) -> str:
    """`measure_all` as a program for the client pod: the same code, run from a pod."""
    parts = [inspect.getsource(f) for f in (
        request, connect, keepalive_latency, new_connection_latency, request_rate,
        bulk_rate, alternate, percentile, measure_all)]
    return "\n".join([
        "from __future__ import annotations",
        "import json, socket, threading, time",
        "from typing import Any",
        "from collections.abc import Callable, Sequence",
        f"BULK_BYTES, CLIENTS = {BULK_BYTES}, {CLIENTS}", *parts,
        f"print(json.dumps(measure_all({targets!r}, {requests}, {connections}, {seconds})))"])


async def run_pod_client(server: Server, source: str) -> dict[str, dict[str, float]]:
    """Run `source` in a client pod (in its own network namespace where the node gives
    pods one) and return what it printed."""
    done = asyncio.Event()

    def on_pod(kind: str, obj: dict) -> bool:
        if obj["metadata"]["name"] == "client" and \
                (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            done.set()
            return True
        return False

    watch = await Watch.open(server, "/api/v1/namespaces/bench/pods", on_pod)
    follower = asyncio.create_task(watch.follow())
    conn = await server.connect()
    await checked(conn, "POST", "/api/v1/namespaces/bench/pods", orjson.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "client", "image": IMAGE, "command": ["python", "-c", source]}]}}))
    await asyncio.wait_for(done.wait(), TIMEOUT * 2)
    follower.cancel()
    log = await checked(conn, "GET", "/api/v1/namespaces/bench/pods/client/log")
    await conn.close()
    try:
        return orjson.loads(log.splitlines()[-1])
    except (IndexError, orjson.JSONDecodeError):
        raise RuntimeError(f"the client pod failed:\n{log.decode()}") from None


def rows_for(client: str, figures: dict[str, dict[str, float]]) -> list[list[object]]:
    base = figures["direct to the pod"]
    rows: list[list[object]] = []
    for name, f in figures.items():
        rows.append([
            client, name,
            f"{f['keep50'] * 1e6:.0f}", f"{f['keep99'] * 1e6:.0f}",
            f"{f['keep50'] / base['keep50']:.2f}x",
            f"{f['new50'] * 1e6:.0f}", f"{f['new99'] * 1e6:.0f}",
            f"{f['new50'] / base['new50']:.2f}x",
            f"{f['rate']:,.0f}", f"{f['rate'] / base['rate']:.2f}x",
            f"{f['bulk']:,.0f}", f"{f['bulk'] / base['bulk']:.2f}x"])
    return rows


def main(requests: int, connections: int, seconds: float, proxy_mode: str) -> None:
    print(machine_line())
    with running_server("up", timeout=90, args=("--proxy-mode", proxy_mode)) as server:
        print(server.ready_line)
        pod_ip, node_port, cluster_ip = asyncio.run(start_workload(server))
        targets = {"direct to the pod": (pod_ip, 8080),
                   "cluster IP": (cluster_ip, 80),
                   "node port": ("127.0.0.1", node_port)}
        print("targets: " + ", ".join(f"{k} {h}:{p}" for k, (h, p) in targets.items()))
        host = measure_all(targets, requests, connections, seconds)
        in_pod = {k: v for k, v in targets.items() if k != "node port"}
        pod = asyncio.run(run_pod_client(server, pod_client_source(
            in_pod, requests, connections, seconds)))
    print_table(
        "Service traffic beside straight to the pod (latency in microseconds)",
        ["client", "target", "keep-alive p50", "p99", "p50 ratio", "new conn p50", "p99",
         "p50 ratio", f"req/s ({CLIENTS} clients)", "ratio", "bulk MiB/s", "ratio"],
        rows_for("host", host) + rows_for("pod", pod))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--proxy-mode", choices=("auto", "userspace", "nftables"),
                        default="auto", help="the node proxy's mode (`up --proxy-mode`)")
    args = parser.parse_args()
    new_event_loop_policy()
    main(args.requests, args.connections, args.seconds, args.proxy_mode)
