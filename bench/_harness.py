"""Shared pieces of the benchmarks: a server under test, a small HTTP/1.1 client, tables.

The benchmarks drive Pilothouse over its real front door (HTTPS, bearer token, one
keep-alive HTTP/1.1 connection per client), so the client is a deliberately thin one on
asyncio streams: one `write` per request, `readuntil` for the head, `readexactly` for the
body (Content-Length or chunked). It adds no dependency and costs a few tens of
microseconds per request; `api_throughput.py` measures that cost against a null TLS
server in the same run so its figures say whether the load generator was the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent


# -- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raise_fd_limit(wanted: int = 65536) -> int:
    """Lift the soft open-files limit towards `wanted` (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_mib(pid: int) -> float:
    """Resident set size of `pid` now (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time `pid` has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children, grandchildren, ...)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class Server:
    """A Pilothouse process on a temporary data dir and a free port."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    port: int
    token: str
    ready_line: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def ssl_context(self) -> ssl.SSLContext:
        return client_ssl_context(self.data_dir / "pki" / "ca.crt")

    async def connect(self) -> HTTPConnection:
        return await HTTPConnection.open("127.0.0.1", self.port, self.ssl_context(),
                                         token=self.token)


def spawn_server(data_dir: Path, port: int, command: str = "apiserver",
                 args: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pilothouse.cli", command, "--data-dir", str(data_dir),
         "--port", str(port), *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def running_server(command: str = "apiserver", timeout: float = 60.0,
                   args: Sequence[str] = ()) -> Iterator[Server]:
    """Start a server on a fresh temp data dir; SIGTERM it (and wait) on exit."""
    with tempfile.TemporaryDirectory(prefix="pilothouse-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        port = free_port()
        process = spawn_server(data_dir, port, command, args)
        try:
            ready = _wait_ready_line(process, timeout)
            token = read_admin_token(data_dir)
            yield Server(process, data_dir, port, token, ready)
        finally:
            stop_process(process)


def _wait_ready_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the server exited (code {process.wait()}) before it was ready")
        text = line.decode(errors="replace").strip()
        if text.startswith("Pilothouse is ready"):
            return text
    raise RuntimeError("the server did not print its ready line in time")


def read_admin_token(data_dir: Path) -> str:
    first = (data_dir / "pki" / "tokens.csv").read_text().splitlines()[0]
    return first.split(",")[0]


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- HTTP/1.1 client ---------------------------------------------------------------------


def client_ssl_context(ca_file: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.check_hostname = False  # the serving certificate names 127.0.0.1/localhost
    return ctx


class HTTPError(Exception):
    pass


class HTTPConnection:
    """One keep-alive HTTP/1.1 connection: sequential request/response, or one stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 host: str, token: str) -> None:
        self.reader = reader
        self.writer = writer
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self._fixed = f"Host: {host}\r\n{auth}Accept: application/json\r\n".encode()

    @classmethod
    async def open(cls, host: str, port: int, ctx: ssl.SSLContext | None, *,
                   token: str = "") -> HTTPConnection:
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx, limit=1 << 22)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer, host, token)

    def send(self, method: str, path: str, body: bytes | None = None) -> None:
        head = f"{method} {path} HTTP/1.1\r\n".encode() + self._fixed
        if body is not None:
            head += (b"Content-Type: application/json\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        else:
            head += b"\r\n"
        self.writer.write(head)

    async def read_head(self) -> tuple[int, dict[bytes, bytes]]:
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
        return status, headers

    async def read_chunk(self) -> bytes:
        """One chunk of a chunked body (b"" at the end)."""
        size_line = await self.reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0], 16)
        data = await self.reader.readexactly(size + 2)
        return data[:-2]

    async def read_body(self, headers: dict[bytes, bytes]) -> bytes:
        length = headers.get(b"content-length")
        if length is not None:
            return await self.reader.readexactly(int(length))
        if headers.get(b"transfer-encoding", b"").lower() != b"chunked":
            raise HTTPError("response with neither Content-Length nor chunked encoding")
        parts = []
        while True:
            chunk = await self.read_chunk()
            if not chunk:
                break
            parts.append(chunk)
        return b"".join(parts)

    async def request(self, method: str, path: str, body: bytes | None = None
                      ) -> tuple[int, bytes]:
        self.send(method, path, body)
        status, headers = await self.read_head()
        return status, await self.read_body(headers)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


# -- API helpers ---------------------------------------------------------------------


async def create_namespace(conn: HTTPConnection, ns: str) -> str:
    """A namespace and its `default` ServiceAccount (which ServiceAccount admission requires
    of every pod, and which the controller manager would make, if one runs); returns the
    namespace's pods path."""
    status, text = await conn.request("POST", "/api/v1/namespaces", orjson.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
    if status >= 300:
        raise RuntimeError(f"create namespace {ns}: {status} {text[:300]!r}")
    status, text = await conn.request(
        "POST", f"/api/v1/namespaces/{ns}/serviceaccounts",
        orjson.dumps({"apiVersion": "v1", "kind": "ServiceAccount",
                      "metadata": {"name": "default"}}))
    if status >= 300 and status != 409:
        raise RuntimeError(f"create serviceaccount {ns}/default: {status} {text[:300]!r}")
    return f"/api/v1/namespaces/{ns}/pods"


async def checked(conn: HTTPConnection, method: str, path: str, body: bytes | None = None
                  ) -> bytes:
    status, text = await conn.request(method, path, body)
    if status >= 300:
        raise RuntimeError(f"{method} {path}: {status} {text[:300]!r}")
    return text


class Watch:
    """One watch stream (from the current resourceVersion) and a callback per object."""

    def __init__(self, conn: HTTPConnection, on_object: Callable[[str, dict], bool]) -> None:
        self.conn = conn
        self.on_object = on_object

    @classmethod
    async def open(cls, server: Server, path: str, on_object: Callable[[str, dict], bool]
                   ) -> Watch:
        conn = await server.connect()
        body = await checked(conn, "GET", f"{path}?limit=1")
        version = orjson.loads(body)["metadata"]["resourceVersion"]
        conn.send("GET", f"{path}?watch=1&resourceVersion={version}")
        await conn.read_head()
        return cls(conn, on_object)

    async def follow(self) -> None:
        """Until `on_object` returns True (it is done)."""
        buffered = b""
        try:
            while True:
                buffered += await self.conn.read_chunk()
                *lines, buffered = buffered.split(b"\n")
                for line in lines:
                    if line:
                        event = orjson.loads(line)
                        if self.on_object(event["type"], event["object"]):
                            return
        finally:
            await self.conn.close()



def new_event_loop_policy() -> None:
    """uvloop for the load generator when present (it is a Pilothouse dependency)."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


# -- figures -----------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in header]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print()
    print(title)
    line = "  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in
                     enumerate(zip(cells[0], widths, strict=True)))
    print(line)
    print("-" * len(line))
    for row in cells[1:]:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                        enumerate(zip(row, widths, strict=True))))
    sys.stdout.flush()


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def machine_line() -> str:
    import platform

    return (f"{platform.node()} | {os.cpu_count()} CPUs | Python {platform.python_version()} | "
            f"SQLite {__import__('sqlite3').sqlite_version} | {ssl.OPENSSL_VERSION} | "
            f"{time.strftime('%Y-%m-%d %H:%M')}")
