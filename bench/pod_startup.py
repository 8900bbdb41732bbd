"""Pod startup latency: create to Running on the real node agent, beside a plain Popen.

    python bench/pod_startup.py [--runs 20] [--burst 50]

Starts `pilothouse up` (with its node agent, on the node's default runtime) on a temp dir,
warms the test image (its virtual environment is made on first use, as a pull would be;
that first pod is reported on its own), then, in the same run:

1. **One pod at a time** (`--runs` pods): `POST` a pod running `sleep 3600` and time it
   until a watch opened before sees it Running (phase Running, its container running).
2. **A burst** (`--burst` pods created at once, concurrently): each pod timed from just
   before its own `POST` until the watch sees it Running.
3. **The baseline**: `subprocess.Popen(["sleep", "3600"])`, timed until Popen returns
   (Python's Popen returns once the child has exec'd), once at a time and then `--burst`
   started back to back from one thread (each timed from the start of the burst).

`ours / Popen` is what Pilothouse adds on top of starting the process: the API write,
the scheduler's decision and binding, the watch to the node, the pod worker, the sandbox
and the shim, and the status write back. Kubernetes' SLO is a p99 under 5 s for stateless
pods; our target is a p99 under 300 ms for the single pod.
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


def pod(name: str) -> bytes:
    return orjson.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "main", "image": IMAGE,
                                 "command": ["sleep", "3600"]}]}})


def is_running(obj: dict) -> bool:
    status = obj.get("status") or {}
    states = [s.get("state") or {} for s in status.get("containerStatuses") or ()]
    return status.get("phase") == "Running" and bool(states) and all(
        "running" in s for s in states)


class RunningTimes:
    """When the watch first saw each pod Running, until `expected` pods have been."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.seen: dict[str, float] = {}
        self.done = asyncio.Event()

    def on_pod(self, kind: str, obj: dict) -> bool:
        name = obj["metadata"]["name"]
        if kind != "DELETED" and name not in self.seen and is_running(obj):
            self.seen[name] = time.perf_counter()
        if len(self.seen) >= self.expected:
            self.done.set()
            return True
        return False


async def start_pods(server: Server, ns: str, names: list[str]) -> list[float]:
    """Create `names` at once; return each pod's create-to-Running seconds."""
    path = f"/api/v1/namespaces/{ns}/pods"
    times = RunningTimes(len(names))
    watch = await Watch.open(server, path, times.on_pod)
    follower = asyncio.create_task(watch.follow())
    conns = [await server.connect() for _ in names]
    started: dict[str, float] = {}

    async def create(conn, name: str) -> None:  # noqa: ANN001
        started[name] = time.perf_counter()
        await checked(conn, "POST", path, pod(name))

    try:
        await asyncio.gather(*(create(c, n) for c, n in zip(conns, names, strict=True)))
        await asyncio.wait_for(follower, TIMEOUT)
    finally:
        follower.cancel()
        for conn in conns:
            await conn.close()
    return sorted(times.seen[n] - started[n] for n in names)


async def delete_all(server: Server, ns: str) -> None:
    conn = await server.connect()
    try:
        await checked(conn, "DELETE", f"/api/v1/namespaces/{ns}/pods?gracePeriodSeconds=0")
    finally:
        await conn.close()


def popen_times(count: int, *, together: bool) -> list[float]:
    processes = []
    times = []
    start = time.perf_counter()
    for _ in range(count):
        if not together:
            start = time.perf_counter()
        processes.append(subprocess.Popen(["sleep", "3600"]))
        times.append(time.perf_counter() - start)
    for process in processes:
        process.kill()
        process.wait()
    return sorted(times)


def row(label: str, ours: list[float], base: list[float]) -> list[object]:
    p50, p99 = percentile(ours, 50), percentile(ours, 99)
    b50, b99 = percentile(base, 50), percentile(base, 99)
    return [label, len(ours), f"{p50 * 1000:.0f}", f"{p99 * 1000:.0f}",
            f"{b50 * 1000:.2f}", f"{b99 * 1000:.2f}", f"{p50 / b50:.0f}x",
            f"{p99 / b99:.0f}x"]


async def main(runs: int, burst: int) -> None:
    print(machine_line())
    with running_server("up", timeout=90) as server:
        print(server.ready_line)
        conn = await server.connect()
        await create_namespace(conn, "bench")
        await conn.close()
        warm = await start_pods(server, "bench", ["warm"])
        print(f"first pod, including making the image's virtual environment: "
              f"{warm[0] * 1000:.0f} ms")
        single: list[float] = []
        for i in range(runs):
            single += await start_pods(server, "bench", [f"one-{i}"])
        await delete_all(server, "bench")
        together = await start_pods(server, "bench", [f"burst-{i}" for i in range(burst)])
        await delete_all(server, "bench")
    rows = [row("1 pod at a time", sorted(single), popen_times(runs, together=False)),
            row(f"{burst} pods at once", together, popen_times(burst, together=True))]
    print_table("Pod startup: create to Running (ms) beside subprocess.Popen (ms)",
                ["case", "pods", "p50", "p99", "Popen p50", "Popen p99", "p50 ratio",
                 "p99 ratio"], rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--burst", type=int, default=50)
    args = parser.parse_args()
    new_event_loop_policy()
    asyncio.run(main(args.runs, args.burst))
