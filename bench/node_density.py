"""Node density: 100 running pods on one node agent, and what the agent costs per pod.

    python bench/node_density.py [--pods 100] [--window 30]

Starts `pilothouse up` (with its node agent, on the node's default runtime) on a temp dir,
creates `--pods` pods running `sleep 3600` at once and waits until all are Running, lets
the node settle for 5 s, then over `--window` seconds measures:

- the node agent's CPU (its process: the kubelet loop, probes-free pods, PLEG relists,
  status and lease heartbeats), as millicores in all and per pod;
- memory: the agent's, the per-container supervisors' (shims) and, under the sandbox
  runtime, each container's bubblewrap init's — all that the node adds beside the
  container's own process — in all and per pod, as RSS and as PSS (shared pages split
  among their sharers, so the sum counts each page once).

The baseline, in the same run: the same `--pods` `sleep 3600` processes started with
`subprocess.Popen`, whose own RSS per process is the work itself. `overhead / process`
says how many times a pod's own process the node spends to run it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (  # noqa: E402
    cpu_seconds,
    create_namespace,
    descendants,
    machine_line,
    new_event_loop_policy,
    print_table,
    rss_mib,
    running_server,
)
from pod_startup import start_pods  # noqa: E402


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def node_agent(up_pid: int) -> int:
    for pid in descendants(up_pid):
        if " node --kubeconfig " in cmdline(pid):
            return pid
    raise RuntimeError("no node agent below the up process")


def supervisors(pods_root: Path) -> list[int]:
    """Shims of this cluster's containers and, under the sandbox runtime, the bubblewrap
    processes below them (its monitor outside the namespaces and its init inside)."""
    shims = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            line = cmdline(int(entry))
            if "shim.py" in line and str(pods_root) in line:
                shims.append(int(entry))
    wrappers = []
    for shim in shims:
        for pid in descendants(shim):
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "bwrap":
                    wrappers.append(pid)
            except OSError:
                pass
    return shims + wrappers


def total_rss(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += rss_mib(pid)
        except (OSError, RuntimeError):
            pass
    return total


def total_pss(pids: list[int]) -> float:
    """Proportional set size: shared pages (the interpreter, libraries) split among the
    processes sharing them, so a sum over processes counts each page once."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


async def main(count: int, window: float) -> None:
    print(machine_line())
    with running_server("up", timeout=90) as server:
        print(server.ready_line)
        conn = await server.connect()
        await create_namespace(conn, "bench")
        await conn.close()
        await start_pods(server, "bench", ["warm"])
        started = time.perf_counter()
        await start_pods(server, "bench", [f"dense-{i}" for i in range(count)])
        print(f"{count} pods Running in {time.perf_counter() - started:.1f} s")
        agent = node_agent(server.pid)
        await asyncio.sleep(5)
        cpu_before = cpu_seconds(agent)
        await asyncio.sleep(window)
        agent_millicores = (cpu_seconds(agent) - cpu_before) / window * 1000
        agent_rss = rss_mib(agent)
        shims = supervisors(server.data_dir / "pods")
        shim_rss = total_rss(shims)
        shim_pss = total_pss(shims)
        agent_pss = total_pss([agent])
    processes = [subprocess.Popen(["sleep", "3600"]) for _ in range(count + 1)]
    try:
        time.sleep(0.5)
        process_rss = total_rss([p.pid for p in processes]) / len(processes)
        process_pss = total_pss([p.pid for p in processes]) / len(processes)
    finally:
        for process in processes:
            process.kill()
            process.wait()
    pods = count + 1  # the warm-up pod runs too
    per_pod = (agent_pss + shim_pss) / pods
    print_table(f"Node density: {pods} running pods on one node agent", [
        "measure", "in all", "per pod"], [
        ["agent CPU (millicores)", f"{agent_millicores:.0f}", f"{agent_millicores / pods:.2f}"],
        ["agent RSS (MiB)", f"{agent_rss:.0f}", f"{agent_rss / pods:.2f}"],
        [f"shims + bwrap RSS (MiB, {len(shims)} processes)", f"{shim_rss:.0f}",
         f"{shim_rss / pods:.2f}"],
        [f"shims + bwrap PSS (MiB, {len(shims)} processes)", f"{shim_pss:.0f}",
         f"{shim_pss / pods:.2f}"],
        ["node overhead PSS: agent + shims + bwrap (MiB)", f"{agent_pss + shim_pss:.0f}",
         f"{per_pod:.2f}"],
        ["baseline: a Popen'd sleep's own PSS (MiB)", f"{process_pss * pods:.0f}",
         f"{process_pss:.2f}"],
        ["overhead / process (PSS)", "", f"{per_pod / process_pss:.1f}x"],
    ])
    print(f"(a sleep's RSS, counting its shared libraries in full: {process_rss:.2f} MiB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--window", type=float, default=30.0)
    args = parser.parse_args()
    new_event_loop_policy()
    asyncio.run(main(args.pods, args.window))
