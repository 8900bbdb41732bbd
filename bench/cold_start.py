"""Cold start: spawn `pilothouse up` until /readyz answers ok, and its idle memory.

    python bench/cold_start.py [--runs 5]

Each run spawns `python -m pilothouse.cli up --data-dir DIR --port PORT` and polls
`GET /readyz` over HTTPS with the admin bearer token (a new TLS connection every 5 ms,
as soon as `pki/tokens.csv` exists) until it answers 200 "ok". Run 1 is on a fresh
data dir, so it includes creating the CA, the serving and admin certificates and the
bootstrap objects; runs 2..N reuse that data dir, as every later start does. Two seconds
after ready the script reads VmRSS from /proc (the server process and any children it
has started), then stops the server with SIGTERM and times the shutdown.

Baselines, in the same run: spawn-to-exit of `python -c pass` (the interpreter alone)
and of `python -c "import uvicorn, orjson, cryptography"` (the interpreter plus the
dependencies the API server cannot start without; it no longer imports `kubernetes`,
whose models it once built its schemas from), with their peak RSS from
wait4(). The ratio is ours / the import baseline: what Pilothouse adds on top of what
its dependencies cost to load.
"""

from __future__ import annotations

import argparse
import http.client
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (  # noqa: E402
    REPO,
    client_ssl_context,
    descendants,
    free_port,
    machine_line,
    print_table,
    rss_mib,
    stop_process,
)

TARGET_READY_S = 3.0
TARGET_RSS_MIB = 150.0
IDLE_AFTER_READY_S = 2.0
POLL_S = 0.005
IMPORTS = "import uvicorn, orjson, cryptography"


def readyz(port: int, ca: Path, token: str) -> bool:
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=2,
                                       context=client_ssl_context(ca))
    try:
        conn.request("GET", "/readyz", headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        return response.status == 200 and response.read().strip() == b"ok"
    finally:
        conn.close()


def admin_token(data_dir: Path) -> str | None:
    try:
        first = (data_dir / "pki" / "tokens.csv").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    token = first.split(",")[0]
    return token or None


def one_start(data_dir: Path, log: Path) -> dict[str, float]:
    port = free_port()
    with log.open("wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "pilothouse.cli", "up", "--data-dir", str(data_dir),
             "--port", str(port)], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        ready_at = None
        deadline = started + 60
        while time.perf_counter() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}: "
                                   f"{log.read_text()[-2000:]}")
            token = admin_token(data_dir)
            if token is not None:
                try:
                    if readyz(port, data_dir / "pki" / "ca.crt", token):
                        ready_at = time.perf_counter()
                        break
                except (OSError, ssl.SSLError, http.client.HTTPException):
                    pass
            time.sleep(POLL_S)
        if ready_at is None:
            raise RuntimeError("/readyz did not answer ok within 60 s")
        time.sleep(IDLE_AFTER_READY_S)
        rss = rss_mib(process.pid)
        children = descendants(process.pid)
        tree = rss + sum(rss_mib(pid) for pid in children)
        stopping = time.perf_counter()
        stop_process(process)
        stopped = time.perf_counter()
    finally:
        stop_process(process)
    said = ""
    for line in log.read_text().splitlines():
        if line.startswith("Pilothouse is ready in "):
            said = line.split()[4].rstrip("s:")
    return {"ready": ready_at - started, "rss": rss, "tree": tree, "children": len(children),
            "self_reported": float(said) if said else float("nan"),
            "stop": stopped - stopping}


def spawn_to_exit(code: str) -> tuple[float, float]:
    """Seconds from spawn to exit of `python -c code`, and its peak RSS in MiB."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"python -c {code!r} exited with {process.returncode}")
    return elapsed, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"Pilothouse cold start -- {machine_line()}")

    ours = []
    with tempfile.TemporaryDirectory(prefix="pilothouse-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        for run in range(args.runs):
            result = one_start(data_dir, Path(tmp) / f"run{run}.log")
            ours.append(result)
            print(f"  run {run + 1} ({'fresh data dir' if run == 0 else 'existing data dir'}): "
                  f"ready {result['ready']:.2f} s, RSS {result['rss']:.0f} MiB, "
                  f"stop {result['stop']:.2f} s", flush=True)

    baselines = {}
    for name, code in (("python -c pass", "pass"), ("python -c 'import <deps>'", IMPORTS)):
        spawn_to_exit(code)  # warm the page cache, as the server's runs have
        runs = [spawn_to_exit(code) for _ in range(args.runs)]
        baselines[name] = {"time": statistics.median(t for t, _ in runs),
                           "min": min(t for t, _ in runs),
                           "rss": statistics.median(r for _, r in runs)}
    imports = baselines["python -c 'import <deps>'"]

    fresh = ours[0]
    again = ours[1:] or ours
    again_ready = [r["ready"] for r in again]
    rows = [
        ["up, fresh dir (run 1)", fresh["ready"], fresh["ready"], fresh["rss"],
         fresh["self_reported"], f"{fresh['ready'] / imports['time']:.2f}",
         f"{fresh['rss'] / imports['rss']:.2f}"],
        [f"up, existing dir (runs 2-{len(ours)}, median)",
         statistics.median(again_ready), min(again_ready),
         statistics.median(r["rss"] for r in again),
         statistics.median(r["self_reported"] for r in again),
         f"{statistics.median(again_ready) / imports['time']:.2f}",
         f"{statistics.median(r['rss'] for r in again) / imports['rss']:.2f}"],
    ]
    for name, b in baselines.items():
        rows.append([f"{name} (to exit, median)", b["time"], b["min"], b["rss"], "-",
                     f"{b['time'] / imports['time']:.2f}", f"{b['rss'] / imports['rss']:.2f}"])
    print_table(
        f"Spawn to ready (s) and idle RSS (MiB), {args.runs} runs each",
        ["case", "seconds", "best s", "RSS MiB", "server says s", "time / imports",
         "RSS / imports"], rows)
    worst_ready = max(r["ready"] for r in ours)
    worst_rss = max(r["rss"] for r in ours)
    print(f"\n<deps> = {IMPORTS[len('import '):]}. RSS for pilothouse is VmRSS {IDLE_AFTER_READY_S:.0f} s after ready "
          f"(children: {max(r['children'] for r in ours)}; process tree max "
          f"{max(r['tree'] for r in ours):.0f} MiB); for the baselines it is the peak RSS "
          f"(wait4 ru_maxrss). 'server says' is the server's own 'ready in' line, which starts "
          f"its clock after the interpreter and imports. SIGTERM to exit: median "
          f"{statistics.median(r['stop'] for r in ours):.2f} s.")
    print(f"targets: ready under {TARGET_READY_S:.0f} s -> worst {worst_ready:.2f} s, "
          f"{'met' if worst_ready < TARGET_READY_S else 'MISSED'}; idle RSS under "
          f"{TARGET_RSS_MIB:.0f} MB -> worst {worst_rss:.0f} MiB "
          f"({worst_rss * 1.048576:.0f} MB), "
          f"{'met' if worst_rss * 1.048576 < TARGET_RSS_MIB else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
