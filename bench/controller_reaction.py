"""Controller reaction: a 100-replica Deployment, from create to Available, on hollow nodes.

    python bench/controller_reaction.py [--runs 3] [--replicas 100] [--nodes 20]

Starts `pilothouse up --disable-agent` (API server, controller manager, scheduler; no real
node) on a temp dir and 20 hollow nodes (`pilothouse node --hollow`, one process), then, in
the same run:

1. **The Deployment** (the figure), 3 runs, each in a fresh namespace: `POST` a
   Deployment of 100 replicas (a busybox container asking for 10m CPU), with a watch on
   the namespace's pods and one on its Deployments opened before. Timed from just before
   the POST until the Deployment's status says `Available=True` with `availableReplicas`
   100, and broken down by when the watch saw the 100th pod created, bound
   (`spec.nodeName`), Running (`status.phase`), and the Deployment Available. Between
   runs the Deployment is deleted (background propagation) and its pods waited out.
2. **Raw writes** (the baseline), 3 runs: the writes the controllers, the scheduler and
   the hollow kubelet must make at the least, made directly, each at the concurrency of
   the component that makes it -- 100 pod creates in the ReplicaSet controller's
   slow-start batches (1, 2, 4, ... at once), 100 `pods/binding` POSTs with 64 in flight
   (the scheduler's binding slots), and 100 `pods/status` patches with 8 in flight (the
   hollow kubelet's workers; the same body it writes, from `hollow.pod_status`). The
   pods name a scheduler nobody serves and are bound to node names no kubelet serves,
   so no component touches them.

`ours / raw` is then what the control loop adds on top of its own writes: watch
latency between the components, the work queues, slow start, the Deployment and
ReplicaSet objects and their status updates, Events, and the scheduling decisions.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (  # noqa: E402
    HTTPConnection,
    Server,
    Watch,
    checked,
    cpu_seconds,
    create_namespace,
    descendants,
    machine_line,
    new_event_loop_policy,
    percentile,
    print_table,
    raise_fd_limit,
    running_server,
    stop_process,
)
from scheduling_throughput import spawn, wait_ready_nodes  # noqa: E402

from pilothouse.machinery.meta import now as utcnow  # noqa: E402
from pilothouse.node.hollow import pod_status  # noqa: E402

BIND_CLIENTS = 64  # the scheduler's BIND_CONCURRENCY
STATUS_CLIENTS = 8  # the hollow kubelet's POD_WORKERS
CONNECTIONS = 64
TIMEOUT = 60.0
CONTAINER = {"name": "main", "image": "busybox:1.36",
             "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}


def deployment(name: str, replicas: int) -> bytes:
    labels = {"app": name}
    return orjson.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [CONTAINER]}}}})


async def merge_patch(conn: HTTPConnection, token: str, path: str, body: bytes) -> None:
    """A PATCH with `application/merge-patch+json` (the harness client sends plain JSON)."""
    conn.writer.write(
        f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Accept: application/json\r\nContent-Type: application/merge-patch+json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    status, headers = await conn.read_head()
    text = await conn.read_body(headers)
    if status >= 300:
        raise RuntimeError(f"PATCH {path}: {status} {text[:300]!r}")


class Milestones:
    """When the watches first saw each pod created, bound and Running, and the
    Deployment Available with every replica."""

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas
        self.created: dict[str, float] = {}
        self.bound: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.available = 0.0

    def on_pod(self, kind: str, pod: dict) -> bool:
        if kind not in ("ADDED", "MODIFIED"):
            return False
        now = time.perf_counter()
        name = pod["metadata"]["name"]
        self.created.setdefault(name, now)
        if pod["spec"].get("nodeName"):
            self.bound.setdefault(name, now)
        if (pod.get("status") or {}).get("phase") == "Running":
            self.running.setdefault(name, now)
        return len(self.running) >= self.replicas

    def on_deployment(self, kind: str, obj: dict) -> bool:
        status = obj.get("status") or {}
        available = any(c.get("type") == "Available" and c.get("status") == "True"
                        for c in status.get("conditions") or ())
        if available and status.get("availableReplicas") == self.replicas:
            self.available = time.perf_counter()
            return True
        return False

    def nth(self, seen: dict[str, float], start: float) -> float:
        return sorted(seen.values())[self.replicas - 1] - start


async def deployment_run(server: Server, conn: HTTPConnection, run: int, replicas: int
                         ) -> dict[str, float]:
    ns = f"reaction-{run}"
    await create_namespace(conn, ns)
    pods_path = f"/api/v1/namespaces/{ns}/pods"
    deployments_path = f"/apis/apps/v1/namespaces/{ns}/deployments"
    seen = Milestones(replicas)
    pod_watch = await Watch.open(server, pods_path, seen.on_pod)
    deployment_watch = await Watch.open(server, deployments_path, seen.on_deployment)
    followers = [asyncio.create_task(pod_watch.follow()),
                 asyncio.create_task(deployment_watch.follow())]
    start = time.perf_counter()
    await checked(conn, "POST", deployments_path, deployment("web", replicas))
    await asyncio.wait_for(asyncio.gather(*followers), TIMEOUT)
    figures = {"created": seen.nth(seen.created, start), "bound": seen.nth(seen.bound, start),
               "running": seen.nth(seen.running, start), "available": seen.available - start}
    await checked(conn, "DELETE", f"{deployments_path}/web", orjson.dumps(
        {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}))
    await wait_no_pods(conn, pods_path)
    return figures


async def wait_no_pods(conn: HTTPConnection, pods_path: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if not orjson.loads(await checked(conn, "GET", pods_path))["items"]:
            return
        await asyncio.sleep(0.25)
    raise RuntimeError(f"pods under {pods_path} still there after {TIMEOUT:.0f}s")


async def in_flight(conns: list[HTTPConnection], width: int,
                    calls: list[Callable[[HTTPConnection], Awaitable[object]]]) -> None:
    """Run every call with at most `width` in flight, one connection each."""
    todo = iter(calls)

    async def worker(conn: HTTPConnection) -> None:
        for call in todo:
            await call(conn)

    await asyncio.gather(*(worker(c) for c in conns[:width]))


async def slow_start(conns: list[HTTPConnection],
                     calls: list[Callable[[HTTPConnection], Awaitable[object]]]) -> None:
    """Batches of 1, 2, 4, ... at once, each waiting for the last (slowStartBatch)."""
    done, batch = 0, 1
    while done < len(calls):
        batch = min(batch, len(calls) - done)
        await asyncio.gather(*(call(conns[i]) for i, call in
                               enumerate(calls[done:done + batch])))
        done += batch
        batch *= 2


async def raw_run(conns: list[HTTPConnection], token: str, run: int, replicas: int,
                  nodes: int) -> dict[str, float]:
    ns = f"raw-{run}"
    await create_namespace(conns[0], ns)
    base = f"/api/v1/namespaces/{ns}/pods"
    created: dict[str, dict] = {}

    def create(i: int) -> Callable[[HTTPConnection], Awaitable[None]]:
        async def call(conn: HTTPConnection) -> None:
            obj = orjson.loads(await checked(conn, "POST", base, orjson.dumps({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"web-{i}", "labels": {"app": "web"}},
                "spec": {"schedulerName": "nobody", "containers": [CONTAINER]}})))
            created[obj["metadata"]["name"]] = obj
        return call

    def bind(name: str, node: str) -> Callable[[HTTPConnection], Awaitable[None]]:
        async def call(conn: HTTPConnection) -> None:
            uid = created[name]["metadata"]["uid"]
            await checked(conn, "POST", f"{base}/{name}/binding", orjson.dumps({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name, "namespace": ns, "uid": uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}))
            created[name]["spec"]["nodeName"] = node
        return call

    def report_running(name: str, index: int) -> Callable[[HTTPConnection], Awaitable[None]]:
        async def call(conn: HTTPConnection) -> None:
            pod = created[name]
            status, _ = pod_status(pod, host_ip=f"10.250.0.{index % nodes + 1}",
                                   pod_ip=f"10.251.{index // 250}.{index % 250 + 1}",
                                   now=utcnow())
            await merge_patch(conn, token, f"{base}/{name}/status", orjson.dumps(
                {"metadata": {"uid": pod["metadata"]["uid"]}, "status": status}))
        return call

    def delete(name: str) -> Callable[[HTTPConnection], Awaitable[None]]:
        async def call(conn: HTTPConnection) -> None:  # no kubelet: grace period 0
            await checked(conn, "DELETE", f"{base}/{name}", orjson.dumps(
                {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0}))
        return call

    names = [f"web-{i}" for i in range(replicas)]
    start = time.perf_counter()
    await slow_start(conns, [create(i) for i in range(replicas)])
    created_at = time.perf_counter()
    await in_flight(conns, BIND_CLIENTS,
                    [bind(n, f"raw-node-{i % nodes}") for i, n in enumerate(names)])
    bound_at = time.perf_counter()
    await in_flight(conns, STATUS_CLIENTS,
                    [report_running(n, i) for i, n in enumerate(names)])
    running_at = time.perf_counter()
    await in_flight(conns, CONNECTIONS, [delete(n) for n in names])
    return {"created": created_at - start, "bound": bound_at - start,
            "running": running_at - start}


async def bench(runs: int, replicas: int, node_count: int) -> None:
    print(machine_line())
    # The control plane alone: the pods go to hollow nodes, not to a real node agent.
    with running_server("up", args=("--disable-agent",)) as server:
        hollow = spawn(server, "node", "--hollow", str(node_count), "--kubeconfig",
                       str(server.data_dir / "components" / "node.kubeconfig"),
                       "--name-prefix", "reaction-node-")
        try:
            conn = await server.connect()
            await wait_ready_nodes(conn, node_count)
            conns = list(await asyncio.gather(*(server.connect() for _ in range(CONNECTIONS))))
            await raw_run(conns, server.token, 0, replicas, node_count)  # warm-up: connections, caches
            await deployment_run(server, conn, 0, replicas)
            processes = [server.pid, *descendants(server.pid), hollow.pid]
            cpu0 = sum(cpu_seconds(p) for p in processes)
            ours, wall = [], 0.0
            for run in range(1, runs + 1):
                started = time.perf_counter()
                ours.append(await deployment_run(server, conn, run, replicas))
                wall += time.perf_counter() - started
            cpu_ours = sum(cpu_seconds(p) for p in processes) - cpu0
            raw = [await raw_run(conns, server.token, run, replicas, node_count)
                   for run in range(1, runs + 1)]
            for c in (conn, *conns):
                await c.close()
        finally:
            stop_process(hollow)

    def stat(values: list[float], q: float) -> float:
        return percentile(sorted(values), q) * 1000

    rows = []
    for key, label in (("created", f"{replicas} pods created"),
                       ("bound", f"{replicas} pods bound"),
                       ("running", f"{replicas} pods Running"),
                       ("available", f"Deployment Available, availableReplicas={replicas}")):
        ours_p50, ours_max = stat([r[key] for r in ours], 50), stat([r[key] for r in ours], 100)
        if key in raw[0]:
            raw_p50 = stat([r[key] for r in raw], 50)
            raw_max = stat([r[key] for r in raw], 100)
        else:  # Available: the raw path has nothing after its status writes
            raw_p50 = stat([r["running"] for r in raw], 50)
            raw_max = stat([r["running"] for r in raw], 100)
        rows.append([label, ours_p50, ours_max, raw_p50, raw_max, f"{ours_p50 / raw_p50:.1f}x"])
    print_table(
        f"Deployment of {replicas} replicas on {node_count} hollow nodes, {runs} runs "
        f"(time from the create, ms)",
        ["milestone", "ours p50", "ours max", "raw writes p50", "raw max", "ours/raw p50"],
        rows)
    per_run = [[f"run {i}", *(r[k] * 1000 for k in ("created", "bound", "running",
                                                     "available"))]
               for i, r in enumerate(ours, 1)]
    print_table("Each Deployment run (ms)",
                ["run", "created", "bound", "Running", "Available"], per_run)
    print(f"\nThe raw row for Available is its last write (the status patches): nothing is "
          f"left to wait for. API server, controller manager, scheduler and hollow node "
          f"together used {cpu_ours / wall * 100:.0f}% of a core over the Deployment runs "
          f"(create, wait, delete: {cpu_ours / runs:.2f} s of CPU per Deployment).")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=20)
    args = parser.parse_args()
    raise_fd_limit()
    new_event_loop_policy()
    asyncio.run(bench(args.runs, args.replicas, args.nodes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
