"""API throughput: GET, LIST (100 objects), CREATE, UPDATE with 1 and 16 clients.

    python bench/api_throughput.py [--seconds 3]

Starts `pilothouse apiserver` on a temporary data dir, drives it over HTTPS with a
bearer token and keep-alive HTTP/1.1 connections (one per client), and prints ops/s,
p50 and p99 latency per case beside the raw-SQLite figure for the same operation:

- GET    one ConfigMap        vs  a point SELECT on the `current` table
- LIST   100 ConfigMaps       vs  a range SELECT of 100 rows from `current`
- CREATE a new ConfigMap      vs  one transaction: INSERT into `log` + upsert `current`
- UPDATE PUT with resourceVersion  vs  the same transaction on an existing key

Then the targets' load in open loop -- GET at 2,000/s and CREATE at 800/s together, latency
counted from when each request was due -- so a server stall is charged to every request
due during it, which a closed loop of 16 clients would hide.

The raw side uses a WAL database with synchronous=NORMAL on the same disk, the same key
shapes and the value sizes the server actually stored in this run (read back from its
state.db). It runs on one connection in one thread: SQLite has one writer at a time, and
the server also runs every SQLite call on its single event-loop thread, so one thread is
the raw ceiling at any client count and both client counts are compared with it.

The load generator runs in this process (uvloop, one connection per client) while the
server has its own process; the script first measures the generator against a null TLS
server (fixed responses of GET and LIST size) so the table says how far it is from being
the limit, and it reports the CPU both processes used during each case.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (  # noqa: E402
    HTTPConnection,
    Server,
    cpu_seconds,
    free_port,
    machine_line,
    new_event_loop_policy,
    percentile,
    print_table,
    running_server,
)

NS = "bench"
LIST_NS = "bench-list"
LIST_SIZE = 100
PAYLOAD = "x" * 512  # ConfigMap data value: a typical small object (~1 KB stored)
CEILING_CLIENTS = 64
TARGET_GET = 2000.0
TARGET_CREATE = 800.0
TARGET_P99_MUTATING_MS = 50.0

Op = Callable[[HTTPConnection, int, int], Awaitable[None]]


# -- the server side ---------------------------------------------------------------------


def configmap(name: str, namespace: str, rv: str = "", serial: int = 0) -> bytes:
    meta: dict[str, str] = {"name": name, "namespace": namespace}
    if rv:
        meta["resourceVersion"] = rv
    return orjson.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                         "data": {"payload": PAYLOAD, "serial": str(serial)}})


async def expect(conn: HTTPConnection, method: str, path: str, body: bytes | None,
                 ok: tuple[int, ...]) -> bytes:
    status, data = await conn.request(method, path, body)
    if status not in ok:
        raise RuntimeError(f"{method} {path} -> {status}: {data[:300]!r}")
    return data


async def setup(server: Server) -> None:
    conn = await server.connect()
    for ns in (NS, LIST_NS):
        await expect(conn, "POST", "/api/v1/namespaces",
                     orjson.dumps({"metadata": {"name": ns}}), (201, 409))
    await expect(conn, "POST", f"/api/v1/namespaces/{NS}/configmaps",
                 configmap("get-target", NS), (201,))
    for i in range(LIST_SIZE):
        await expect(conn, "POST", f"/api/v1/namespaces/{LIST_NS}/configmaps",
                     configmap(f"item-{i:03d}", LIST_NS), (201,))
    await conn.close()


Prepare = Callable[[HTTPConnection, int], Awaitable[None]]


def make_ops(run_id: str, clients: int) -> dict[str, tuple[Op, Prepare]]:
    """name -> (op(conn, worker, i), prepare(conn, worker))."""
    update_rv: dict[int, str] = {}

    async def no_prep(conn: HTTPConnection, worker: int) -> None:
        return None

    async def get(conn: HTTPConnection, worker: int, i: int) -> None:
        await expect(conn, "GET", f"/api/v1/namespaces/{NS}/configmaps/get-target", None, (200,))

    async def list_(conn: HTTPConnection, worker: int, i: int) -> None:
        await expect(conn, "GET", f"/api/v1/namespaces/{LIST_NS}/configmaps", None, (200,))

    async def create(conn: HTTPConnection, worker: int, i: int) -> None:
        await expect(conn, "POST", f"/api/v1/namespaces/{NS}/configmaps",
                     configmap(f"c{run_id}-{clients}-{worker}-{i}", NS), (201,))

    async def prep_update(conn: HTTPConnection, worker: int) -> None:
        name = f"u{run_id}-{clients}-{worker}"
        data = await expect(conn, "POST", f"/api/v1/namespaces/{NS}/configmaps",
                            configmap(name, NS), (201,))
        update_rv[worker] = orjson.loads(data)["metadata"]["resourceVersion"]

    async def update(conn: HTTPConnection, worker: int, i: int) -> None:
        name = f"u{run_id}-{clients}-{worker}"
        data = await expect(conn, "PUT", f"/api/v1/namespaces/{NS}/configmaps/{name}",
                            configmap(name, NS, update_rv[worker], i), (200,))
        update_rv[worker] = orjson.loads(data)["metadata"]["resourceVersion"]

    return {"GET": (get, no_prep), "LIST": (list_, no_prep), "CREATE": (create, no_prep),
            "UPDATE": (update, prep_update)}


async def drive(connect: Callable[[], Awaitable[HTTPConnection]], op: Op,
                prepare: Callable[[HTTPConnection, int], Awaitable[None]], clients: int,
                seconds: float, warmup: float, server_pid: int | None) -> dict[str, float]:
    conns = [await connect() for _ in range(clients)]
    for worker, conn in enumerate(conns):
        await prepare(conn, worker)
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from = start + warmup
    stop_at = measure_from + seconds
    marks: dict[str, float] = {}

    async def worker_loop(worker: int, conn: HTTPConnection) -> None:
        i = 0
        clock = time.perf_counter
        while True:
            t0 = clock()
            await op(conn, worker, i)
            t1 = clock()
            i += 1
            now = loop.time()
            if now >= stop_at:
                return
            if now >= measure_from:
                latencies.append(t1 - t0)

    async def sampler() -> None:
        await asyncio.sleep(max(0.0, measure_from - loop.time()))
        marks["client0"] = time.process_time()
        marks["server0"] = cpu_seconds(server_pid) if server_pid else 0.0
        marks["wall0"] = time.perf_counter()
        await asyncio.sleep(max(0.0, stop_at - loop.time()))
        marks["client1"] = time.process_time()
        marks["server1"] = cpu_seconds(server_pid) if server_pid else 0.0
        marks["wall1"] = time.perf_counter()

    await asyncio.gather(sampler(), *(worker_loop(w, c) for w, c in enumerate(conns)))
    for conn in conns:
        await conn.close()
    wall = marks["wall1"] - marks["wall0"]
    latencies.sort()
    return {
        "ops": len(latencies) / seconds,
        "p50": percentile(latencies, 50) * 1000,
        "p99": percentile(latencies, 99) * 1000,
        "max": latencies[-1] * 1000,
        "client_cpu": (marks["client1"] - marks["client0"]) / wall * 100,
        "server_cpu": (marks["server1"] - marks["server0"]) / wall * 100,
    }


async def drive_at_rate(connect: Callable[[], Awaitable[HTTPConnection]], op: Op, rate: float,
                        seconds: float, server_pid: int, connections: int = 32
                        ) -> dict[str, float]:
    """Open loop: requests are due at a fixed rate, whatever the answers' speed; latency is
    counted from when a request was due, so a stall delays every request due during it
    (no coordinated omission). `connections` clients take due requests from one queue."""
    conns = [await connect() for _ in range(connections)]
    due: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    latencies: list[float] = []
    clock = time.perf_counter
    total = int(rate * seconds)

    async def client(worker: int, conn: HTTPConnection) -> None:
        while (item := await due.get()) is not None:
            i, due_at = item
            await op(conn, worker, i)
            latencies.append(clock() - due_at)

    async def schedule() -> None:
        start = clock()
        for i in range(total):
            due_at = start + i / rate
            delay = due_at - clock()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            due.put_nowait((i, due_at))
        for _ in conns:
            due.put_nowait(None)

    cpu0, wall0, client0 = cpu_seconds(server_pid), clock(), time.process_time()
    await asyncio.gather(schedule(), *(client(w, c) for w, c in enumerate(conns)))
    wall = clock() - wall0
    cpu1, client1 = cpu_seconds(server_pid), time.process_time()
    for conn in conns:
        await conn.close()
    latencies.sort()
    return {"ops": len(latencies) / wall, "p50": percentile(latencies, 50) * 1000,
            "p99": percentile(latencies, 99) * 1000, "max": latencies[-1] * 1000,
            "client_cpu": (client1 - client0) / wall * 100,
            "server_cpu": (cpu1 - cpu0) / wall * 100}


def stored_layout(data_dir: Path, run_id: str) -> tuple[str, dict[str, int]]:
    """The ConfigMap key prefix and the average stored value size per case, read from the
    server's own state.db (read-only; WAL lets it share the file with the server)."""
    db = sqlite3.connect(f"file:{data_dir / 'state.db'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT key FROM current WHERE key LIKE ?",
                         (f"%/configmaps/{NS}/get-target",)).fetchone()
        if row is None:
            raise RuntimeError("cannot find the benchmark's ConfigMap in the server's state.db")
        base = row[0][: -len(f"{NS}/get-target")]  # e.g. /registry/core/configmaps/

        def avg(low: str, high: str) -> int:
            row = db.execute("SELECT AVG(LENGTH(value)) FROM current WHERE key >= ? AND key < ?",
                             (low, high)).fetchone()
            if not row[0]:
                raise RuntimeError(f"no stored values between {low!r} and {high!r}")
            return int(row[0])

        prefix = f"{base}{NS}/"
        return base, {
            "GET": avg(prefix + "get-target", prefix + "get-target\0"),
            "LIST": avg(f"{base}{LIST_NS}/", f"{base}{LIST_NS}0"),
            "CREATE": avg(f"{prefix}c{run_id}-", f"{prefix}c{run_id}."),
            "UPDATE": avg(f"{prefix}u{run_id}-", f"{prefix}u{run_id}."),
        }
    finally:
        db.close()


# -- the load generator's own ceiling ----------------------------------------------------

_NULL_SERVER = r"""
import asyncio, ssl, sys
import uvloop

body_get = b"g" * int(sys.argv[3])
body_list = b"l" * int(sys.argv[4])

def response(body):
    return (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked"
            b"\r\n\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")

responses = {b"get": response(body_get), b"list": response(body_list)}

class Null(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport
        self.buf = b""
    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buf = self.buf[:end], self.buf[end + 4:]
            path = head.split(b" ", 2)[1]
            self.t.write(responses[b"list" if path.endswith(b"list") else b"get"])

async def main():
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    server = await asyncio.get_running_loop().create_server(Null, "127.0.0.1", int(sys.argv[5]),
                                                               ssl=ctx)
    print("ready", flush=True)
    await server.serve_forever()

uvloop.run(main())
"""


async def client_ceiling(server: Server, get_bytes: int, list_bytes: int, seconds: float
                         ) -> dict[str, dict[str, float]]:
    """The generator's own rate against a null TLS server answering fixed bodies."""
    port = free_port()
    pki = server.data_dir / "pki"
    proc = subprocess.Popen(
        [sys.executable, "-c", _NULL_SERVER, str(pki / "apiserver.crt"), str(pki / "apiserver.key"),
         str(get_bytes), str(list_bytes), str(port)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()

        async def connect() -> HTTPConnection:
            return await HTTPConnection.open("127.0.0.1", port, server.ssl_context(),
                                             token=server.token)

        async def null_get(conn: HTTPConnection, worker: int, i: int) -> None:
            await conn.request("GET", "/get")

        async def null_list(conn: HTTPConnection, worker: int, i: int) -> None:
            await conn.request("GET", "/list")

        async def no_prep(conn: HTTPConnection, worker: int) -> None:
            return None

        return {
            "GET": await drive(connect, null_get, no_prep, CEILING_CLIENTS, seconds, 0.3,
                               proc.pid),
            "LIST": await drive(connect, null_list, no_prep, CEILING_CLIENTS, seconds, 0.3,
                                proc.pid),
        }
    finally:
        proc.terminate()
        proc.wait()


# -- the raw SQLite baseline -------------------------------------------------------------

_RAW_SCHEMA = """
CREATE TABLE log (rev INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL,
                  create_rev INTEGER NOT NULL, prev_rev INTEGER NOT NULL,
                  deleted INTEGER NOT NULL, value BLOB NOT NULL);
CREATE INDEX log_key_rev ON log(key, rev);
CREATE TABLE current (key TEXT PRIMARY KEY, create_rev INTEGER NOT NULL,
                      mod_rev INTEGER NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
"""


def raw_sqlite(base: str, sizes: dict[str, int], seconds: float) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="pilothouse-bench-raw-") as tmp:
        db = sqlite3.connect(str(Path(tmp) / "raw.db"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_RAW_SCHEMA)

        def write(key: str, value: bytes, create_rev: int, prev_rev: int) -> int:
            db.execute("BEGIN IMMEDIATE")
            rev = db.execute(
                "INSERT INTO log (key, create_rev, prev_rev, deleted, value) VALUES (?,?,?,0,?)",
                (key, create_rev, prev_rev, value)).lastrowid
            db.execute("INSERT OR REPLACE INTO current (key, create_rev, mod_rev, value) "
                       "VALUES (?,?,?,?)", (key, create_rev or rev, rev, value))
            db.execute("COMMIT")
            return rev

        prefix = f"{base}{NS}/"
        list_prefix = f"{base}{LIST_NS}/"
        write(prefix + "get-target", b"g" * sizes["GET"], 0, 0)
        for i in range(LIST_SIZE):
            write(f"{list_prefix}item-{i:03d}", b"l" * sizes["LIST"], 0, 0)
        update_rev = write(prefix + "u-0", b"u" * sizes["UPDATE"], 0, 0)
        update_create = update_rev
        create_value = b"c" * sizes["CREATE"]
        update_value = b"u" * sizes["UPDATE"]
        state = {"update_rev": update_rev}

        def get(i: int) -> None:
            db.execute("SELECT create_rev, mod_rev, value FROM current WHERE key = ?",
                       (prefix + "get-target",)).fetchone()

        def list_(i: int) -> None:
            rows = db.execute("SELECT key, create_rev, mod_rev, value FROM current "
                              "WHERE key >= ? AND key < ? ORDER BY key LIMIT ?",
                              (list_prefix, list_prefix[:-1] + "0", LIST_SIZE + 1)).fetchall()
            assert len(rows) == LIST_SIZE

        def create(i: int) -> None:
            write(f"{prefix}c-raw-{i}", create_value, 0, 0)

        def update(i: int) -> None:
            state["update_rev"] = write(prefix + "u-0", update_value, update_create,
                                        state["update_rev"])

        results = {}
        for name, fn in (("GET", get), ("LIST", list_), ("CREATE", create), ("UPDATE", update)):
            latencies: list[float] = []
            clock = time.perf_counter
            warm_until = clock() + 0.2
            i = 0
            while clock() < warm_until:
                fn(i)
                i += 1
            begin = clock()
            end = begin + seconds
            while True:
                t0 = clock()
                fn(i)
                t1 = clock()
                i += 1
                latencies.append(t1 - t0)
                if t1 >= end:
                    break
            elapsed = clock() - begin
            latencies.sort()
            results[name] = {"ops": len(latencies) / elapsed,
                             "p50": percentile(latencies, 50) * 1000,
                             "p99": percentile(latencies, 99) * 1000}
        db.close()
        return results


# -- main --------------------------------------------------------------------------------


def target_for(op: str) -> tuple[str, bool | None, bool | None]:
    """(target text, rate met?, p99 met?) -- None where the case has no target."""
    if op == "GET":
        return f">={TARGET_GET:,.0f}/s", True, None
    if op == "CREATE":
        return f">={TARGET_CREATE:,.0f}/s, p99<{TARGET_P99_MUTATING_MS:.0f}ms", True, True
    if op == "UPDATE":
        return f"p99<{TARGET_P99_MUTATING_MS:.0f}ms", None, True
    return "-", None, None


async def bench(seconds: float) -> None:
    run_id = str(os.getpid())
    print(f"Pilothouse API throughput -- {machine_line()}")
    with running_server() as server:
        print(f"server pid {server.pid} on port {server.port}: {server.ready_line}")
        await setup(server)
        ours: dict[tuple[str, int], dict[str, float]] = {}
        for clients in (1, 16):
            for name, (op, prepare) in make_ops(run_id, clients).items():
                ours[(name, clients)] = await drive(server.connect, op, prepare, clients,
                                                    seconds, 0.5, server.pid)
                r = ours[(name, clients)]
                print(f"  {name:6} x{clients:<2} {r['ops']:8,.0f} ops/s  p50 {r['p50']:6.2f} ms"
                      f"  p99 {r['p99']:6.2f} ms", flush=True)
        # The targets' load, open loop: GET at 2,000/s and CREATE at 800/s at the same time.
        loaded_ops = make_ops(run_id + "r", 0)
        loaded_get, loaded_create = await asyncio.gather(
            drive_at_rate(server.connect, loaded_ops["GET"][0], TARGET_GET, seconds + 2,
                          server.pid, 16),
            drive_at_rate(server.connect, loaded_ops["CREATE"][0], TARGET_CREATE, seconds + 2,
                          server.pid, 16))
        print(f"  at target load: GET p99 {loaded_get['p99']:.2f} ms, CREATE p99 "
              f"{loaded_create['p99']:.2f} ms", flush=True)
        base, sizes = stored_layout(server.data_dir, run_id)
        # Response sizes for the generator's ceiling: the real GET and LIST bodies.
        conn = await server.connect()
        get_body = await expect(conn, "GET", f"/api/v1/namespaces/{NS}/configmaps/get-target",
                                None, (200,))
        list_body = await expect(conn, "GET", f"/api/v1/namespaces/{LIST_NS}/configmaps",
                                 None, (200,))
        await conn.close()
        # The server is idle from here on; it only lends its certificate to the null server.
        ceiling = await client_ceiling(server, len(get_body), len(list_body), min(seconds, 2.0))
    raw = raw_sqlite(base, sizes, min(seconds, 1.5))

    print(f"\nkeys {base}<ns>/<name>; stored value sizes (bytes, from the server's state.db): "
          f"{sizes}; "
          f"response bodies: GET {len(get_body):,} B, LIST {len(list_body):,} B")
    rows = []
    for (name, clients), r in ours.items():
        b = raw[name]
        target, rate_goal, p99_goal = target_for(name)
        verdict = []
        if rate_goal:
            goal = TARGET_GET if name == "GET" else TARGET_CREATE
            verdict.append("rate ok" if r["ops"] >= goal else "rate MISS")
        if p99_goal:
            verdict.append("p99 ok" if r["p99"] < TARGET_P99_MUTATING_MS else "p99 MISS")
        rows.append([f"{name} x{clients}", r["ops"], r["p50"], r["p99"], r["max"], b["ops"],
                     b["p50"] * 1000,
                     b["p99"] * 1000, f"{r['ops'] / b['ops']:.4f}", target,
                     ", ".join(verdict) or "-", f"{r['server_cpu']:.0f}%",
                     f"{r['client_cpu']:.0f}%", r["client_cpu"] / 100 / r["ops"] * 1e6])
    print_table(
        "Pilothouse over HTTPS vs raw SQLite (same write pattern, same value sizes, same disk)",
        ["case", "ops/s", "p50 ms", "p99 ms", "max ms", "raw ops/s", "raw p50 us", "raw p99 us",
         "ours/raw", "target", "verdict", "server CPU", "loadgen CPU", "loadgen us/op"], rows)
    loaded_cpu = f"{loaded_get['server_cpu']:.0f}%"
    print_table(
        f"At the targets' load, open loop ({TARGET_GET:,.0f} GET/s and {TARGET_CREATE:,.0f} "
        f"CREATE/s together for {seconds + 2:.0f} s; latency from when each request was due)",
        ["case", "ops/s", "p50 ms", "p99 ms", "max ms", "target", "verdict", "server CPU"],
        [["GET @2,000/s", loaded_get["ops"], loaded_get["p50"], loaded_get["p99"],
          loaded_get["max"], f">={TARGET_GET:,.0f}/s",
          "rate ok" if loaded_get["ops"] >= 0.98 * TARGET_GET else "rate MISS", loaded_cpu],
         ["CREATE @800/s", loaded_create["ops"], loaded_create["p50"], loaded_create["p99"],
          loaded_create["max"], f"p99<{TARGET_P99_MUTATING_MS:.0f}ms",
          "p99 ok" if loaded_create["p99"] < TARGET_P99_MUTATING_MS else "p99 MISS",
          loaded_cpu]])
    print_table(
        f"Load generator ceiling: {CEILING_CLIENTS} clients against a null TLS server "
        "(fixed bodies of the real GET/LIST size)",
        ["case", "ops/s", "p50 ms", "p99 ms", "null-server CPU", "loadgen CPU", "loadgen us/op",
         "loadgen max ops/s at 1 core", "ours x16 / that"],
        [[name, c["ops"], c["p50"], c["p99"], f"{c['server_cpu']:.0f}%",
          f"{c['client_cpu']:.0f}%", c["client_cpu"] / 100 / c["ops"] * 1e6,
          c["ops"] / (c["client_cpu"] / 100),
          f"{ours[(name, 16)]['ops'] / (c['ops'] / (c['client_cpu'] / 100)):.2f}"]
         for name, c in ceiling.items()])
    print("\nCPU columns are percent of one core over the measured window (2 cores here: "
          "server and load generator each get about one). 'loadgen us/op' is the generator's "
          "CPU per request; 'loadgen max ops/s at 1 core' is 1 s / that cost, the rate at which "
          "the generator itself would be the limit.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="measured seconds per case (after 0.5 s of warm-up)")
    args = parser.parse_args()
    new_event_loop_policy()
    asyncio.run(bench(args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
