"""The kubelet API server driven by real clients over loopback TLS: aiohttp WebSockets, the
official Python client's stream code, and a SPDY client built from our framing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509

from pilothouse.apiserver.pki import PKI
from pilothouse.node import server as server_module
from pilothouse.node import streaming
from pilothouse.node.runtime.base import RuntimeFailure, StreamSession
from pilothouse.node.server import KubeletServer, request_attributes
from pilothouse.node.streaming import (
    DataFrame,
    PingFrame,
    SpdyFramer,
    SynReplyFrame,
    SynStreamFrame,
)

NS, POD, CONTAINER = "default", "web", "main"
USER = "system:kube-apiserver"

# -- a runtime whose exec runs real processes --------------------------------------------------


class ProcessSession(StreamSession):
    def __init__(self, process: asyncio.subprocess.Process, *, tty: bool) -> None:
        self.process = process
        self.tty = tty
        self.resizes: list[tuple[int, int]] = []
        self.stdin_closed = False
        self.closed = False

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()

        async def pump(number: int, reader: asyncio.StreamReader | None) -> None:
            while reader is not None and (chunk := await reader.read(4096)):
                await queue.put((number, chunk))
            await queue.put(None)

        pumps = [asyncio.create_task(pump(1, self.process.stdout)),
                 asyncio.create_task(pump(2, self.process.stderr))]
        remaining = len(pumps)
        while remaining:
            item = await queue.get()
            if item is None:
                remaining -= 1
            else:
                yield item

    async def write_stdin(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        await self.process.stdin.drain()

    async def close_stdin(self) -> None:
        assert self.process.stdin is not None
        self.stdin_closed = True
        self.process.stdin.close()

    async def resize(self, width: int, height: int) -> None:
        self.resizes.append((width, height))

    async def wait(self) -> int:
        return await self.process.wait()

    async def close(self) -> None:
        self.closed = True
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


class ProcessRuntime:
    """The two calls the server makes of a Runtime."""

    def __init__(self) -> None:
        self.sessions: list[ProcessSession] = []

    async def exec(self, container_id: str, argv: Sequence[str], *, tty: bool,
                   stdin: bool) -> StreamSession:
        if shutil.which(argv[0]) is None:
            raise RuntimeFailure("RunContainerError",
                                 f'exec: "{argv[0]}": executable file not found in $PATH')
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT if tty else asyncio.subprocess.PIPE)
        session = ProcessSession(process, tty=tty)
        self.sessions.append(session)
        return session

    async def attach(self, container_id: str, *, stdin: bool) -> StreamSession:
        return await self.exec(container_id, ["sh", "-c", "echo attached"], tty=False,
                               stdin=stdin)


@dataclass
class FakePods:
    """A kubelet running one pod with one container, whose IP is the loopback address."""

    runtime: ProcessRuntime
    log_dir: Path
    running: bool = True
    ip: str = "127.0.0.1"
    netns: str | None = None
    pod: dict[str, Any] = field(default_factory=lambda: {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": NS, "name": POD, "uid": "uid-1"},
        "spec": {"containers": [{"name": CONTAINER}, {"name": "waiting"}]},
        "status": {"containerStatuses": [
            {"name": CONTAINER, "state": {"running": {}}},
            {"name": "waiting", "state": {"waiting": {"reason": "ContainerCreating"}}}]},
    })

    def find_pod(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.pod if (namespace, name) == (NS, POD) else None

    def running_container(self, namespace: str, name: str,
                          container: str) -> tuple[Any, str] | None:
        if self.find_pod(namespace, name) and container == CONTAINER and self.running:
            return self.runtime, "process://c1"
        return None

    def log_path(self, namespace: str, name: str, container: str, *,
                 previous: bool) -> Path | None:
        if container != CONTAINER or previous:
            return None
        return self.log_dir / "0.log"

    def container_running(self, namespace: str, name: str, container: str) -> bool:
        return self.running and container == CONTAINER

    def pod_ip(self, namespace: str, name: str) -> str | None:
        return self.ip

    def pod_netns(self, namespace: str, name: str) -> str | None:
        return self.netns

    def pods(self) -> list[Mapping[str, Any]]:
        return [self.pod]

    async def stats_summary(self) -> dict[str, Any]:
        return {"node": {"nodeName": "n1"}, "pods": []}


# -- the server, its credentials, clients ------------------------------------------------------


@dataclass
class Harness:
    server: KubeletServer
    pods: FakePods
    runtime: ProcessRuntime
    pki: PKI
    cert_dir: Path
    checks: list[tuple[str, list[str], str, str, str, str]]
    refuse: set[str]

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.server.port}"

    def ssl(self, *, client_cert: bool = True) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.cert_dir / "kubelet.crt"))
        if client_cert:
            cert, key = self.pki.ensure_client(USER, ("system:masters",))
            context.load_cert_chain(cert, key)
        return context

    @contextlib.asynccontextmanager
    async def session(self, *, client_cert: bool = True) -> AsyncIterator[aiohttp.ClientSession]:
        connector = aiohttp.TCPConnector(ssl=self.ssl(client_cert=client_cert))
        async with aiohttp.ClientSession(connector=connector) as client:
            yield client

    def python_client_config(self) -> Any:
        from kubernetes.client import Configuration

        config = Configuration()
        cert, key = self.pki.ensure_client(USER, ("system:masters",))
        config.cert_file, config.key_file = str(cert), str(key)
        config.ssl_ca_cert = str(self.cert_dir / "kubelet.crt")
        config.verify_ssl = True
        return config


@contextlib.asynccontextmanager
async def kubelet(tmp_path: Path) -> AsyncIterator[Harness]:
    pki = PKI(tmp_path / "pki")
    pki.ensure()
    runtime = ProcessRuntime()
    pods = FakePods(runtime, tmp_path / "logs")
    checks: list[tuple[str, list[str], str, str, str, str]] = []
    refuse: set[str] = set()

    async def authorizer(user: str, groups: list[str], verb: str, resource: str,
                         subresource: str, node: str) -> bool:
        checks.append((user, groups, verb, resource, subresource, node))
        return user not in refuse

    cert_dir = tmp_path / "kubelet-pki"
    server = KubeletServer(pods, host="127.0.0.1", port=0, cert_dir=cert_dir,
                           client_ca_pem=pki.ca_cert.read_bytes(), authorizer=authorizer,
                           node_name="n1")
    await server.start()
    try:
        yield Harness(server, pods, runtime, pki, cert_dir, checks, refuse)
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    """A TCP echo server on loopback; it closes its side when the client does."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(4096):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def channel_session(ws: aiohttp.ClientWebSocketResponse,
                          protocol: streaming.ChannelProtocol) -> dict[int, bytes]:
    """Everything the server sent, by channel, until it closed the connection."""
    received: dict[int, bytes] = {}
    async for message in ws:
        frame = protocol.decode(message.data)
        assert frame is not None
        received[frame.channel] = received.get(frame.channel, b"") + frame.data
    assert ws.close_code == 1000
    return received


def exec_url(harness: Harness, *command: str, **flags: str) -> str:
    query = "&".join([f"command={c}" for c in command] + [f"{k}={v}" for k, v in flags.items()])
    return f"{harness.base}/exec/{NS}/{POD}/{CONTAINER}?{query}"


# -- exec and attach ---------------------------------------------------------------------------


def test_exec_streams_stdout_and_reports_success(tmp_path: Path) -> None:
    async def go() -> None:
        async with kubelet(tmp_path) as harness, harness.session() as client:
            async with client.ws_connect(
                    exec_url(harness, "echo", "hello", output="1", error="1"),
                    protocols=("v5.channel.k8s.io", "v4.channel.k8s.io")) as ws:
                assert ws.protocol == "v5.channel.k8s.io"
                first = await ws.receive_bytes()
                assert first == b"\x01"  # the empty message on the lowest output channel
                received = await channel_session(ws, streaming.V5)
            assert received[streaming.STDOUT] == b"hello\n"
            assert json.loads(received[streaming.ERROR]) == {"metadata": {},
                                                             "status": "Success"}
            assert harness.checks[-1] == (USER, ["system:masters"], "create", "nodes",
                                          "proxy", "n1")

    asyncio.run(go())


def test_a_non_zero_exit_is_reported_with_its_code(tmp_path: Path) -> None:
    async def go() -> None:
        async with kubelet(tmp_path) as harness, harness.session() as client:
            url = exec_url(harness, "sh", "-c", "echo%20oops%20%3E%262;%20exit%203",
                           stdout="true", stderr="true")
            async with client.ws_connect(url, protocols=("v4.channel.k8s.io",)) as ws:
                received = await channel_session(ws, streaming.V4)
            assert received[streaming.STDERR] == b"oops\n"
            status = json.loads(received[streaming.ERROR])
            assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
            assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]

    asyncio.run(go())


def test_stdin_ends_with_the_v5_close_signal(tmp_path: Path) -> None:
    async def go() -> None:
        async with kubelet(tmp_path) as harness, harness.session() as client:
            payload = bytes(range(256)) * 300  # binary, several messages' worth, as tar is
            async with client.ws_connect(exec_url(harness, "cat", input="1", output="1"),
                                         protocols=("v5.channel.k8s.io",)) as ws:
                for start in range(0, len(payload), 32 * 1024):
                    await ws.send_bytes(b"\x00" + payload[start:start + 32 * 1024])
                await ws.send_bytes(bytes([streaming.CLOSE_SIGNAL, streaming.STDIN]))
                received = await channel_session(ws, streaming.V5)
            assert received[streaming.STDOUT] == payload
            assert json.loads(received[streaming.ERROR])["status"] == "Success"
            assert harness.runtime.sessions[0].stdin_closed

    asyncio.run(go())


def test_a_terminal_gets_resizes_and_no_stderr_channel(tmp_path: Path) -> None:
    async def go() -> None:
        async with kubelet(tmp_path) as harness, harness.session() as client:
            url = exec_url(harness, "sh", "-c", "read%20x;%20echo%20got%20$x%20>%262",
                           stdin="true", stdout="true", stderr="true", tty="true")
            async with client.ws_connect(url, protocols=("v5.channel.k8s.io",)) as ws:
                await ws.send_bytes(b"\x04" + json.dumps({"Width": 100, "Height": 40}).encode())
                await ws.send_bytes(b"\x00go\n")
                received = await channel_session(ws, streaming.V5)
            # With a terminal everything is one stream, on stdout.
            assert received[streaming.STDOUT] == b"got go\n"
            assert streaming.STDERR not in received
            session = harness.runtime.sessions[0]
            assert session.tty and session.resizes == [(100, 40)]

    asyncio.run(go())


def test_base64_protocol_and_text_stdin(tmp_path: Path) -> None:
    async def go() -> None:
        async with kubelet(tmp_path) as harness, harness.session() as client:
            url = exec_url(harness, "sh", "-c", "read%20x;%20echo%20$x$x", input="1", output="1")
            async with client.ws_connect(url, protocols=("v4.base64.channel.k8s.io",)) as ws:
                assert await ws.receive_str() == "1"  # the empty opening message
                await ws.send_str(streaming.V4_BASE64.encode(streaming.STDIN, b"ab\n"))
                received = await channel_session(ws, streaming.V4_BASE64)
            assert received[streaming.STDOUT] == b"abab\n"

    asyncio.run(go())


def test_a_missing_command_is_an_internal_error(tmp_path: Path) -> None:
    async def go() -> None:
        async with kubelet(tmp_path) as harness, harness.session() as client:
            async with client.ws_connect(exec_url(harness, "nosuchcmd", output="1"),
                                         protocols=("v5.channel.k8s.io",)) as ws:
                received = await channel_session(ws, streaming.V5)
            status = json.loads(received[streaming.ERROR])
            assert status["reason"] == "InternalError" and status["code"] == 500
            assert status["message"] == (
                "Internal error occurred: error executing command in container: failed to "
                'exec in container: exec: "nosuchcmd": executable file not found in $PATH')

    asyncio.run(go())


def test_a_client_that_leaves_ends_the_process(tmp_path: Path) -> None:
    async def go() -> None:
        async with kubelet(tmp_path) as harness, harness.session() as client:
            async with client.ws_connect(exec_url(harness, "sleep", "30", output="1"),
                                         protocols=("v4.channel.k8s.io",)) as ws:
                await ws.receive_bytes()
            for _ in range(100):
                session = harness.runtime.sessions[0]
                if session.closed:
                    break
                await asyncio.sleep(0.05)
            assert session.closed and session.process.returncode is not None

    asyncio.run(go())


def test_attach_reports_success(tmp_path: Path) -> None:
    async def go() -> None:
        async with kubelet(tmp_path) as harness, harness.session() as client:
            url = f"{harness.base}/attach/{NS}/{POD}/{CONTAINER}?output=1"
            async with client.ws_connect(url, protocols=("v5.channel.k8s.io",)) as ws:
                received = await channel_session(ws, streaming.V5)
            assert received[streaming.STDOUT] == b"attached\n"
            assert json.loads(received[streaming.ERROR])["status"] == "Success"

    asyncio.run(go())


def test_exec_refusals_before_the_upgrade(tmp_path: Path) -> None:
    async def go() -> None:
        async with kubelet(tmp_path) as harness, harness.session() as client:
            async def status_of(url: str, **headers: str) -> tuple[int, str]:
                async with client.get(url, headers=headers) as response:
                    return response.status, await response.text()

            assert await status_of(exec_url(harness, "ls")) == (
                400, "you must specify at least 1 of stdin, stdout, stderr")
            assert await status_of(exec_url(harness, "ls", output="1")) == (
                400, "Upgrade request required")
            assert await status_of(
                f"{harness.base}/exec/{NS}/nope/{CONTAINER}?command=ls&output=1") == (
                404, "pod does not exist")
            harness.pods.running = False
            assert await status_of(exec_url(harness, "ls", output="1")) == (
                500, f'container not found ("{CONTAINER}")')

    asyncio.run(go())


def test_the_python_client_reads_exit_codes(tmp_path: Path) -> None:
    from kubernetes.stream.ws_client import WSClient

    async def go() -> None:
        async with kubelet(tmp_path) as harness:
            url = exec_url(harness, "sh", "-c", "echo%20hi;%20exit%205", stdout="True",
                           stderr="True").replace("https://", "wss://")

            def run() -> tuple[str, int | None, str | None]:
                client = WSClient(harness.python_client_config(), url, None, capture_all=True)
                client.run_forever(timeout=10)
                code = client.returncode  # before read_all, which drops the error channel
                output = client.read_all()
                client.sock.shutdown()  # the client answers the close but keeps its socket
                return output, code, client.subprotocol

            output, code, protocol = await asyncio.to_thread(run)
            assert (output, code, protocol) == ("hi\n", 5, "v5.channel.k8s.io")

    asyncio.run(go())


# -- logs, pods, stats -------------------------------------------------------------------------


@dataclass
class RecordedLog:
    calls: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    chunks: Sequence[bytes] = (b"line 1\n", b"line 2\n")

    async def __call__(self, path: Path, **options: Any) -> AsyncIterator[bytes]:
        self.calls.append((path, options))
        for chunk in self.chunks:
            yield chunk
        running: Callable[[], bool] = options["running"]
        while options["follow"] and running():
            await asyncio.sleep(0.01)
        if options["follow"]:
            yield b"after exit\n"


@pytest.fixture
def recorded_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordedLog]:
    recorder = RecordedLog()
    monkeypatch.setattr(server_module, "read_log", recorder)
    yield recorder


def test_logs_pass_the_query_to_the_log_reader(tmp_path: Path, recorded_log: RecordedLog) -> None:
    async def go() -> None:
        async with kubelet(tmp_path) as harness, harness.session() as client:
            url = (f"{harness.base}/containerLogs/{NS}/{POD}/{CONTAINER}"
                   "?tailLines=2&timestamps=true&limitBytes=100&sinceTime=2025-01-01T00:00:00Z")
            async with client.get(url) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain")
                assert await response.read() == b"line 1\nline 2\n"
            path, options = recorded_log.calls[0]
            assert path == harness.pods.log_dir / "0.log"
            assert options["tail_lines"] == 2 and options["timestamps"] is True
            assert options["limit_bytes"] == 100 and options["follow"] is False
            assert options["since"] == 1735689600.0
            assert harness.checks[-1][2:5] == ("get", "nodes", "proxy")

    asyncio.run(go())


def test_logs_come_from_the_cri_log_file(tmp_path: Path) -> None:
    async def go() -> None:
        async with kubelet(tmp_path) as harness, harness.session() as client:
            harness.pods.log_dir.mkdir()
            (harness.pods.log_dir / "0.log").write_bytes(b"".join(
                b"2025-01-01T00:00:0%dZ stdout F line %d\n" % (i, i) for i in range(4)))
            harness.pods.running = False
            url = f"{harness.base}/containerLogs/{NS}/{POD}/{CONTAINER}?tailLines=2"
            async with client.get(url) as response:
                assert await response.read() == b"line 2\nline 3\n"

    asyncio.run(go())


def test_following_logs_streams_until_the_container_stops(tmp_path: Path,
                                                          recorded_log: RecordedLog) -> None:
    async def go() -> None:
        async with kubelet(tmp_path) as harness, harness.session() as client:
            url = f"{harness.base}/containerLogs/{NS}/{POD}/{CONTAINER}?follow=true"
            async with client.get(url) as response:
                assert response.headers.get("Transfer-Encoding") == "chunked"
                assert await response.content.readexactly(14) == b"line 1\nline 2\n"
                harness.pods.running = False
                assert await response.content.read() == b"after exit\n"
            assert recorded_log.calls[0][1]["follow"] is True

    asyncio.run(go())


def test_log_errors_are_the_kubelets(tmp_path: Path, recorded_log: RecordedLog) -> None:
    async def go() -> None:
        async with kubelet(tmp_path) as harness, harness.session() as client:
            async def get(path: str) -> tuple[int, str]:
                async with client.get(harness.base + path) as response:
                    return response.status, await response.text()

            logs = f"/containerLogs/{NS}/{POD}"
            assert await get(f"/containerLogs/{NS}/nope/{CONTAINER}") == (
                404, 'pod "nope" does not exist')
            assert await get(f"{logs}/other") == (404, 'container "other" not found in pod "web"')
            assert await get(f"{logs}/{CONTAINER}?previous=true") == (
                400, 'previous terminated container "main" in pod "web" not found')
            assert await get(f"{logs}/waiting") == (
                400, 'container "waiting" in pod "web" is waiting to start: ContainerCreating')
            assert await get(f"{logs}/{CONTAINER}?tailLines=x") == (
                400, '{"message": "Unable to decode query."}')
            assert await get(f"{logs}/{CONTAINER}?tailLines=-1") == (
                422, '{"message": "Invalid request."}')
            assert await get(f"{logs}/{CONTAINER}?sinceSeconds=5&sinceTime=2025-01-01T00:00:00Z") \
                == (422, '{"message": "Invalid request."}')
            assert recorded_log.calls == []

    asyncio.run(go())


def test_pods_stats_and_healthz(tmp_path: Path) -> None:
    async def go() -> None:
        async with kubelet(tmp_path) as harness, harness.session() as client:
            async with client.get(f"{harness.base}/pods") as response:
                body = await response.json()
            assert body["kind"] == "PodList" and body["items"][0]["metadata"]["name"] == POD
            async with client.get(f"{harness.base}/stats/summary") as response:
                assert (await response.json())["node"]["nodeName"] == "n1"
            assert harness.checks[-1][2:5] == ("get", "nodes", "stats")
            async with client.get(f"{harness.base}/healthz") as response:
                assert await response.text() == "ok"

    asyncio.run(go())


# -- port-forward ------------------------------------------------------------------------------


def test_port_forward_over_channels(tmp_path: Path) -> None:
    async def go() -> None:
        async with kubelet(tmp_path) as harness, echo_server() as port, harness.session() as client:
            url = f"{harness.base}/portForward/{NS}/{POD}?ports={port}"
            async with client.ws_connect(url, protocols=("v5.channel.k8s.io",
                                                         "v4.channel.k8s.io")) as ws:
                assert ws.protocol == "v4.channel.k8s.io"
                prefix = streaming.port_prefix(port)
                assert await ws.receive_bytes() == b"\x00" + prefix
                assert await ws.receive_bytes() == b"\x01" + prefix
                await ws.send_bytes(b"\x00ping")
                assert await ws.receive_bytes() == b"\x00ping"
            assert harness.checks[-1][2:5] == ("create", "nodes", "proxy")

    asyncio.run(go())


def test_port_forward_reports_a_refused_connection(tmp_path: Path) -> None:
    async def go() -> None:
        async with kubelet(tmp_path) as harness, harness.session() as client:
            port = free_port()
            url = f"{harness.base}/portForward/{NS}/{POD}?port={port}"
            async with client.ws_connect(url, protocols=("v4.channel.k8s.io",)) as ws:
                received = await channel_session(ws, streaming.V4)
            error = received[1][2:].decode()
            assert error.startswith(f"error forwarding port {port} to pod web_default, uid uid-1:")
            assert "connection refused" in error

    asyncio.run(go())


def test_the_python_clients_port_forward(tmp_path: Path) -> None:
    from kubernetes.stream.ws_client import PortForward, create_websocket

    async def go() -> None:
        async with kubelet(tmp_path) as harness, echo_server() as port:
            url = f"wss://127.0.0.1:{harness.server.port}/portForward/{NS}/{POD}?ports={port}"

            def run() -> bytes:
                forward = PortForward(create_websocket(harness.python_client_config(), url),
                                      [port])
                sock = forward.socket(port)
                sock.settimeout(10)
                sock.sendall(b"through the tunnel")
                data = sock.recv(1024)
                forward.close()
                return data

            assert await asyncio.to_thread(run) == b"through the tunnel"

    asyncio.run(go())


class SpdyClient:
    """kubectl's side of the port-forward tunnel, from our framing code."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.framer = SpdyFramer()
        self.pending: list[Any] = []

    async def send(self, frame: Any, *, split: bool = False) -> None:
        wire = self.framer.encode(frame)
        parts = [wire[:5], wire[5:]] if split else [wire]  # frames may straddle messages
        for part in parts:
            await self.ws.send_bytes(part)

    async def receive(self) -> Any:
        while not self.pending:
            message = await self.ws.receive(timeout=10)
            if message.type != aiohttp.WSMsgType.BINARY:
                return None
            self.pending += self.framer.feed(message.data)
        return self.pending.pop(0)

    async def open(self, stream_id: int, kind: str, port: int) -> None:
        headers = {"streamtype": [kind], "port": [str(port)], "requestid": ["0"]}
        await self.send(SynStreamFrame(stream_id, headers), split=True)
        assert await self.receive() == SynReplyFrame(stream_id, {})


def test_port_forward_through_the_spdy_tunnel(tmp_path: Path) -> None:
    async def go() -> None:
        async with kubelet(tmp_path) as harness, echo_server() as port, harness.session() as client:
            url = f"{harness.base}/portForward/{NS}/{POD}"
            async with client.ws_connect(url, protocols=("SPDY/3.1+portforward.k8s.io",)) as ws:
                assert ws.protocol == "SPDY/3.1+portforward.k8s.io"
                spdy = SpdyClient(ws)
                await spdy.open(1, "error", port)
                await spdy.send(DataFrame(1, b"", fin=True))  # kubectl never writes to it
                await spdy.open(3, "data", port)
                await spdy.send(DataFrame(3, b"hello pod"))
                assert await spdy.receive() == DataFrame(3, b"hello pod")
                await spdy.send(PingFrame(1))
                assert await spdy.receive() == PingFrame(1)
                # The local side closes; the pod closes in turn; both streams end cleanly.
                await spdy.send(DataFrame(3, b"", fin=True))
                ends = {await spdy.receive(), await spdy.receive()}
                assert ends == {DataFrame(3, b"", fin=True), DataFrame(1, b"", fin=True)}

    asyncio.run(go())


def test_spdy_port_forward_errors_go_on_the_error_stream(tmp_path: Path) -> None:
    async def go() -> None:
        async with kubelet(tmp_path) as harness, harness.session() as client:
            url = f"{harness.base}/portForward/{NS}/{POD}"
            port = free_port()
            async with client.ws_connect(url, protocols=("SPDY/3.1+portforward.k8s.io",)) as ws:
                spdy = SpdyClient(ws)
                await spdy.open(1, "error", port)
                await spdy.open(3, "data", port)
                frames = [await spdy.receive() for _ in range(3)]
            message = b"".join(f.data for f in frames if f.stream_id == 1).decode()
            assert message.startswith(f"error forwarding port {port} to pod web_default")
            assert "connection refused" in message
            assert DataFrame(1, b"", fin=True) in frames

    asyncio.run(go())


# -- authentication, authorization, certificates ------------------------------------------------


def test_no_client_certificate_is_unauthorized(tmp_path: Path) -> None:
    async def go() -> None:
        async with kubelet(tmp_path) as harness, harness.session(client_cert=False) as client:
            async with client.get(f"{harness.base}/healthz") as response:
                assert (response.status, await response.text()) == (401, "Unauthorized")
            assert harness.checks == []

    asyncio.run(go())


def test_a_certificate_from_another_ca_fails_the_handshake(tmp_path: Path) -> None:
    async def go() -> None:
        async with kubelet(tmp_path) as harness:
            stranger = PKI(tmp_path / "stranger")
            stranger.ensure()
            context = harness.ssl(client_cert=False)
            context.load_cert_chain(*stranger.ensure_client(USER, ("system:masters",)))
            connector = aiohttp.TCPConnector(ssl=context)
            async with aiohttp.ClientSession(connector=connector) as client:
                with pytest.raises(aiohttp.ClientError):
                    async with client.get(f"{harness.base}/healthz") as response:
                        await response.read()
            assert harness.checks == []

    asyncio.run(go())


def test_a_refused_caller_is_forbidden(tmp_path: Path) -> None:
    async def go() -> None:
        async with kubelet(tmp_path) as harness, harness.session() as client:
            harness.refuse.add(USER)
            async with client.get(exec_url(harness, "ls", output="1")) as response:
                assert response.status == 403
                assert await response.text() == (
                    f"Forbidden (user={USER}, verb=create, resource=nodes, subresource=proxy)")
            assert harness.runtime.sessions == []

    asyncio.run(go())


def test_request_attributes_follow_the_kubelet() -> None:
    assert request_attributes("GET", "/stats/summary") == ("get", "stats")
    assert request_attributes("GET", "/metrics/resource") == ("get", "metrics")
    assert request_attributes("GET", "/logs/") == ("get", "log")
    assert request_attributes("GET", "/containerLogs/a/b/c") == ("get", "proxy")
    assert request_attributes("GET", "/statsfoo") == ("get", "proxy")
    assert request_attributes("GET", "/exec/a/b/c") == ("create", "proxy")
    assert request_attributes("GET", "/portForward/a/b") == ("create", "proxy")
    assert request_attributes("POST", "/run/a/b/c") == ("create", "proxy")


def test_the_serving_certificate_is_made_once_and_names_the_host(tmp_path: Path) -> None:
    async def go() -> None:
        async with kubelet(tmp_path) as harness:
            first = (harness.cert_dir / "kubelet.crt").read_bytes()
        cert = x509.load_pem_x509_certificate(first)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "localhost" in sans.get_values_for_type(x509.DNSName)
        assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
        async with kubelet(tmp_path) as harness:
            assert (harness.cert_dir / "kubelet.crt").read_bytes() == first

    asyncio.run(go())
