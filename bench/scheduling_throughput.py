"""Scheduling throughput: 5,000 pods onto 500 hollow nodes, beside raw binding writes.

    python bench/scheduling_throughput.py [--nodes 500] [--pods 5000]

Starts `pilothouse apiserver` on a temp dir, 500 hollow nodes (`pilothouse node
--hollow`, one process, which also reports each bound pod Running, as in real use), and
then, in the same run:

1. **raw binding writes** (the baseline): 5,000 pods with a scheduler name nobody serves
   are created, then bound directly -- `POST pods/{name}/binding`, round-robin over the
   nodes, 64 requests in flight on 64 keep-alive connections. This is the rate the API
   server accepts the scheduler's one write per pod, with no decisions made at all.
2. **Pilothouse's scheduler, backlog** (`pilothouse scheduler`, its own process and
   identity): 5,000 pending pods are created first, then the scheduler starts; pods/s
   from the first binding a watch sees to the last (the figure comparable with 1).
3. **Pilothouse's scheduler, streaming**: 5,000 more pods are created (16 connections)
   while it runs; a watch notes when each first shows `spec.nodeName`. Reported: pods/s
   from the first create to the last binding, and create-to-bound p50/p99 (from just
   before each POST). Here the API server also serves the creates, so the create rate
   it sustains bounds the figure.

Each binding is one write; the Scheduled event that follows it goes through the
scheduler's event sink, which (as kube-scheduler's event client: 50 QPS, burst 100, a
queue of 1,000) writes a burst's first 100 at once, then 50 a second, and drops what
does not fit in the queue.
The script counts the Scheduled events written, so the figure says what it traded.

Pods ask for 100m CPU and 128Mi, so 10 per 8-CPU node leave every node a candidate:
the scheduler filters and scores the full adaptive sample (230 of 500 nodes) per pod.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (  # noqa: E402
    REPO,
    HTTPConnection,
    Server,
    cpu_seconds,
    create_namespace,
    machine_line,
    new_event_loop_policy,
    percentile,
    print_table,
    raise_fd_limit,
    running_server,
    stop_process,
)

CREATE_CLIENTS = 16
BIND_CLIENTS = 64
TARGET_PODS_PER_SECOND = 800.0


def pod(name: str, scheduler: str) -> bytes:
    return orjson.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"schedulerName": scheduler, "containers": [{
            "name": "main", "image": "busybox:1.36",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}})


async def pool(server: Server, size: int) -> list[HTTPConnection]:
    return list(await asyncio.gather(*(server.connect() for _ in range(size))))


async def closed_loop(conns: list[HTTPConnection], requests: list[tuple[str, str, bytes]]
                      ) -> list[float]:
    """Send every request over the connections, one in flight per connection."""
    latencies: list[float] = []
    todo = iter(requests)

    async def worker(conn: HTTPConnection) -> None:
        for method, path, body in todo:
            start = time.perf_counter()
            status, text = await conn.request(method, path, body)
            if status >= 300:
                raise RuntimeError(f"{method} {path}: {status} {text[:300]!r}")
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(worker(c) for c in conns))
    return latencies


def spawn(server: Server, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "pilothouse.cli", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def wait_ready_nodes(conn: HTTPConnection, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, body = await conn.request("GET", "/api/v1/nodes")
        items = orjson.loads(body)["items"]
        ready = sum(1 for n in items if any(c["type"] == "Ready" and c["status"] == "True"
                                            for c in n["status"].get("conditions", [])))
        if ready >= count:
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"{count} hollow nodes did not become Ready in {timeout:.0f}s")


async def raw_binding(server: Server, pods: int, nodes: list[str]) -> dict[str, float]:
    ns = "bench-bind-raw"
    conns = await pool(server, BIND_CLIENTS)
    base = await create_namespace(conns[0], ns)
    await closed_loop(conns[:CREATE_CLIENTS],
                      [("POST", base, pod(f"raw-{i}", "nobody")) for i in range(pods)])
    bindings = [("POST", f"{base}/raw-{i}/binding", orjson.dumps({
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": f"raw-{i}"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": nodes[i % len(nodes)]}}))
        for i in range(pods)]
    cpu0 = cpu_seconds(server.pid)
    start = time.perf_counter()
    latencies = sorted(await closed_loop(conns, bindings))
    elapsed = time.perf_counter() - start
    server_cpu = cpu_seconds(server.pid) - cpu0
    for conn in conns:
        await conn.close()
    return {"rate": pods / elapsed, "p50": percentile(latencies, 50) * 1000,
            "p99": percentile(latencies, 99) * 1000, "server_cpu": server_cpu / elapsed}


class BindWatch:
    """A watch on one namespace's pods, noting when each first shows a node."""

    def __init__(self, conn: HTTPConnection, expected: int) -> None:
        self.conn = conn
        self.expected = expected
        self.bound: dict[str, float] = {}

    @classmethod
    async def open(cls, server: Server, base: str, expected: int) -> BindWatch:
        conn = await server.connect()
        _, body = await conn.request("GET", f"{base}?limit=1")
        version = orjson.loads(body)["metadata"]["resourceVersion"]
        conn.send("GET", f"{base}?watch=1&resourceVersion={version}")
        await conn.read_head()
        return cls(conn, expected)

    async def follow(self) -> None:
        buffered = b""
        while len(self.bound) < self.expected:
            buffered += await self.conn.read_chunk()
            *lines, buffered = buffered.split(b"\n")
            for line in lines:
                obj = orjson.loads(line)["object"] if line else None
                if obj and obj["spec"].get("nodeName"):
                    self.bound.setdefault(obj["metadata"]["name"], time.perf_counter())
        await self.conn.close()


async def scheduled_events(conn: HTTPConnection, ns: str) -> int:
    """How many Scheduled events the scheduler wrote in `ns` (it drops some under load)."""
    _, body = await conn.request(
        "GET", f"/api/v1/namespaces/{ns}/events?fieldSelector=reason%3DScheduled")
    return len(orjson.loads(body)["items"])


async def scheduled(server: Server, pods: int) -> tuple[dict[str, float], dict[str, float]]:
    """(backlog, streaming): a backlog of pending pods, then pods created while it runs."""
    conns = await pool(server, CREATE_CLIENTS)
    backlog_base = await create_namespace(conns[0], "bench-backlog")
    stream_base = await create_namespace(conns[0], "bench-stream")
    await closed_loop(conns, [("POST", backlog_base, pod(f"pod-{i}", "default-scheduler"))
                              for i in range(pods)])
    backlog_watch = await BindWatch.open(server, backlog_base, pods)
    follower = asyncio.create_task(backlog_watch.follow())
    scheduler = spawn(server, "scheduler", "--kubeconfig",
                      str(server.data_dir / "components" / "scheduler.kubeconfig"))
    try:
        await asyncio.wait_for(follower, 300)
        times = sorted(backlog_watch.bound.values())
        backlog = {"rate": (pods - 1) / (times[-1] - times[0]),
                   "events": await scheduled_events(conns[0], "bench-backlog")}
        stream_watch = await BindWatch.open(server, stream_base, pods)
        follower = asyncio.create_task(stream_watch.follow())
        sent: dict[str, float] = {}
        todo = iter(range(pods))

        async def creator(conn: HTTPConnection) -> None:
            for i in todo:
                name = f"pod-{i}"
                sent[name] = time.perf_counter()
                status, text = await conn.request("POST", stream_base,
                                                  pod(name, "default-scheduler"))
                if status >= 300:
                    raise RuntimeError(f"create {name}: {status} {text[:300]!r}")

        cpu0 = cpu_seconds(scheduler.pid)
        start = time.perf_counter()
        await asyncio.gather(*(creator(c) for c in conns))
        created = time.perf_counter() - start
        await asyncio.wait_for(follower, 300)
        elapsed = max(stream_watch.bound.values()) - start
        latencies = sorted(stream_watch.bound[n] - sent[n] for n in sent)
        streaming = {"rate": pods / elapsed, "p50": percentile(latencies, 50) * 1000,
                     "p99": percentile(latencies, 99) * 1000, "create_rate": pods / created,
                     "scheduler_cpu": (cpu_seconds(scheduler.pid) - cpu0) / elapsed,
                     "events": await scheduled_events(conns[0], "bench-stream")}
    finally:
        stop_process(scheduler)
        for conn in conns:
            await conn.close()
    return backlog, streaming


async def bench(node_count: int, pods: int) -> None:
    print(machine_line())
    with running_server() as server:
        hollow = spawn(server, "node", "--hollow", str(node_count), "--kubeconfig",
                       str(server.data_dir / "components" / "node.kubeconfig"),
                       "--name-prefix", "bench-node-")
        try:
            conn = await server.connect()
            await wait_ready_nodes(conn, node_count)
            await conn.close()
            nodes = [f"bench-node-{i}" for i in range(node_count)]
            raw = await raw_binding(server, pods, nodes)
            backlog, ours = await scheduled(server, pods)
        finally:
            stop_process(hollow)

    def verdict(rate: float) -> str:
        return "met" if rate >= TARGET_PODS_PER_SECOND else "not met"

    target = f">={TARGET_PODS_PER_SECOND:.0f}/s"
    print_table(
        f"Scheduling {pods:,} pods onto {node_count} hollow nodes",
        ["path", "pods/s", "p50 ms", "p99 ms", "ours/raw", "target", "verdict"],
        [["scheduler, backlog of pending pods", backlog["rate"], float("nan"), float("nan"),
          f"{backlog['rate'] / raw['rate']:.2f}", target, verdict(backlog["rate"])],
         ["scheduler, pods created meanwhile (create to bound)", ours["rate"], ours["p50"],
          ours["p99"], f"{ours['rate'] / raw['rate']:.2f}", target, verdict(ours["rate"])],
         [f"raw POST pods/binding x{BIND_CLIENTS}", raw["rate"], raw["p50"], raw["p99"],
          "1.00", "-", "-"]])
    print(f"\nWhile pods were created (at {ours['create_rate']:,.0f}/s) the scheduler process "
          f"used {ours['scheduler_cpu'] * 100:.0f}% of a core; the API server used "
          f"{raw['server_cpu'] * 100:.0f}% of a core during the raw bindings.")
    print(f"Scheduled events written (the scheduler's event sink drops what exceeds 50/s, "
          f"burst 100, queue 1,000, as kube-scheduler's): backlog {backlog['events']:,} "
          f"and streaming {ours['events']:,} of {pods:,} pods each, counted right after the "
          f"last binding.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--pods", type=int, default=5000)
    args = parser.parse_args()
    raise_fd_limit()
    new_event_loop_policy()
    asyncio.run(bench(args.nodes, args.pods))
    return 0


if __name__ == "__main__":
    sys.exit(main())
