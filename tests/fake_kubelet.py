"""A stand-in kubelet for tests of the API server's side of the node agent.

It serves, over HTTPS on 127.0.0.1 and only to clients with a certificate of the cluster
CA (as a kubelet with webhook authentication would), the endpoints the API server calls:
`/containerLogs/...` (canned lines; with `follow=true` it then waits for `more_logs`),
`/exec/...` and `/attach/...` (WebSocket; writes the command to stdout, echoes stdin back
on stdout until the v5 close signal, then reports Success on the error channel),
`/portForward/...` (WebSocket; echoes every message verbatim) and `/stats/summary`.
A container named `missing` is refused with 404, as a kubelet refuses a container it
does not run. Everything it saw is kept for assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import WSMsgType, web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

STREAM_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "SPDY/3.1+portforward.k8s.io")
SUCCESS = orjson.dumps({"metadata": {}, "status": "Success"})


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-kubelet")])
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "kubelet.crt", directory / "kubelet.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class FakeKubelet:
    ca_cert: Path
    workdir: Path
    logs: bytes = b"line 1\nline 2\n"
    summary: dict[str, Any] = field(default_factory=dict)
    #: (path, query pairs, client certificate CN) of every request.
    requests: list[tuple[str, list[tuple[str, str]], str]] = field(default_factory=list)
    #: Every binary message an exec/attach/port-forward client sent.
    received: list[bytes] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self.more_logs: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.follow_ended = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*_self_signed(self.workdir))
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(self.ca_cert)
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._logs)
        app.router.add_get("/exec/{namespace}/{pod}/{container}", self._exec)
        app.router.add_get("/attach/{namespace}/{pod}/{container}", self._exec)
        app.router.add_get("/portForward/{namespace}/{pod}", self._port_forward)
        app.router.add_get("/stats/summary", self._summary)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def node(self, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
        """A Node whose kubelet is this one."""
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  **(labels or {})}},
            "status": {
                "addresses": [{"type": "Hostname", "address": "localhost"},
                              {"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "nodeInfo": {"containerRuntimeVersion": "fake://1"},
            },
        }

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        common_name = next((v for rdn in (peer or {}).get("subject", ()) for k, v in rdn
                            if k == "commonName"), "")
        self.requests.append((request.path, list(request.query.items()), common_name))
        return await handler(request)

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["container"] == "missing":
            return web.Response(status=404, text='container "missing" not found')
        if request.query.get("follow") != "true":
            return web.Response(body=self.logs, content_type="text/plain")
        response = web.StreamResponse()
        response.content_type = "text/plain"
        await response.prepare(request)
        await response.write(self.logs)
        try:
            while request.transport is not None and not request.transport.is_closing():
                try:
                    chunk = await asyncio.wait_for(self.more_logs.get(), 0.05)
                except TimeoutError:
                    continue
                if chunk is None:
                    await response.write_eof()
                    break
                await response.write(chunk)
        finally:
            self.follow_ended.set()
        return response

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["container"] == "missing":
            return web.Response(status=404, text='container not found ("missing")')
        ws = web.WebSocketResponse(protocols=STREAM_PROTOCOLS)
        await ws.prepare(request)
        command = " ".join(request.query.getall("command", []))
        if command:
            await ws.send_bytes(b"\x01" + command.encode() + b"\n")
        if request.query.get("stdin") == "true":
            async for message in ws:
                if message.type != WSMsgType.BINARY:
                    break
                self.received.append(message.data)
                if message.data == b"\xff\x00":  # v5: the client closed stdin
                    break
                if message.data[:1] == b"\x00":
                    await ws.send_bytes(b"\x01" + message.data[1:])
        await ws.send_bytes(b"\x03" + SUCCESS)
        await ws.close()
        return ws

    async def _port_forward(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=STREAM_PROTOCOLS)
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                self.received.append(message.data)
                await ws.send_bytes(message.data)
        return ws

    async def _summary(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.summary), content_type="application/json")


def summary(node: str, pods: dict[tuple[str, str], dict[str, tuple[int, int]]], *,
            node_usage: tuple[int, int] = (250_000_000, 512 * 1024 * 1024)) -> dict[str, Any]:
    """A kubelet Summary: node usage and, per (namespace, pod), container -> (nanocores,
    working-set bytes)."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def usage(cpu: int, memory: int) -> dict[str, Any]:
        return {"cpu": {"time": stamp, "usageNanoCores": cpu, "usageCoreNanoSeconds": cpu * 7},
                "memory": {"time": stamp, "workingSetBytes": memory, "usageBytes": memory}}

    return {
        "node": {"nodeName": node, **usage(*node_usage)},
        "pods": [{"podRef": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
                  "containers": [{"name": c, **usage(*u)} for c, u in containers.items()]}
                 for (namespace, name), containers in pods.items()],
    }


class BackgroundLoop:
    """An event loop in a daemon thread, for running async servers under synchronous tests."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@contextlib.contextmanager
def kubelet_in_thread(ca_cert: Path, workdir: Path) -> Iterator[tuple[FakeKubelet, BackgroundLoop]]:
    """A FakeKubelet serving from a background loop, for synchronous (end-to-end) tests."""
    background = BackgroundLoop("fake-kubelet")
    kubelet = FakeKubelet(ca_cert, workdir)
    try:
        background.run(kubelet.start())
        yield kubelet, background
    finally:
        background.run(kubelet.stop())
        background.close()
