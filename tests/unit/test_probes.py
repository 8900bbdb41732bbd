"""The prober against real servers on loopback: results, thresholds, timing and the
kubelet's event messages."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pilothouse.node.probes import (
    Outcome,
    ProbeEvent,
    ProbeManager,
    ProbeResult,
    ProbeWorker,
    run_probe,
)
from pilothouse.node.runtime.base import RuntimeFailure

HOST = "127.0.0.1"
#: Probe periods and timeouts are whole seconds; tests run them a hundred times faster.
FAST = 0.01


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


async def eventually(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def http_server(routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]],
                      ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0, ssl_context=ssl_context)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def probe_once(probe: dict[str, Any], *, container: dict[str, Any] | None = None,
                     exec_probe: Any = None) -> tuple[Outcome, str]:
    return await run_probe(probe, pod_ip=HOST, container=container or {"name": "app"},
                           exec_probe=exec_probe or no_exec, time_scale=FAST)


async def no_exec(argv: Sequence[str], timeout: float) -> tuple[int, str]:
    raise AssertionError("no exec expected")


def status(code: int, body: str = "") -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=code, text=body)
    return handler


def redirect(location: str, code: int = 302) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=code, headers={"Location": location}, text="moved")
    return handler


# -- httpGet -------------------------------------------------------------------------------

def test_http_probe_succeeds_on_2xx_and_3xx_and_fails_on_4xx_5xx_without_the_body() -> None:
    async def go() -> None:
        routes = {"/ok": status(200, "fine"), "/boom": status(500, "secret stack trace"),
                  "/missing": status(404), "/notmod": status(304)}
        async with http_server(routes) as port:
            assert await probe_once({"httpGet": {"path": "/ok", "port": port}}) == (
                Outcome.SUCCESS, "fine")
            assert await probe_once({"httpGet": {"path": "/boom", "port": port}}) == (
                Outcome.FAILURE, "HTTP probe failed with statuscode: 500")
            assert await probe_once({"httpGet": {"path": "/missing", "port": port}}) == (
                Outcome.FAILURE, "HTTP probe failed with statuscode: 404")
            outcome, message = await probe_once({"httpGet": {"path": "/notmod", "port": port}})
            assert outcome is Outcome.WARNING and outcome.ok
            assert message == "Probe terminated redirects, Response body: "
    run(go())


def test_http_probe_sends_the_kubelets_headers_and_the_probes_own() -> None:
    seen: list[Any] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.headers)
        return web.Response(text="ok")

    async def go() -> None:
        async with http_server({"/h": record}) as port:
            await probe_once({"httpGet": {"path": "/h", "port": port}})
            await probe_once({"httpGet": {"path": "/h", "port": port, "httpHeaders": [
                {"name": "X-Probe", "value": "a"}, {"name": "x-probe", "value": "b"},
                {"name": "User-Agent", "value": "mine/1"}, {"name": "Accept", "value": ""},
                {"name": "Host", "value": "app.example"}]}})
    run(go())
    default, custom = seen
    assert default["User-Agent"] == "kube-probe/1.32"
    assert default["Accept"] == "*/*"
    assert "Accept-Encoding" not in default
    assert default["Host"] == f"{HOST}:{default['Host'].split(':')[1]}"
    assert custom.getall("X-Probe") == ["a", "b"]
    assert custom["User-Agent"] == "mine/1"
    assert "Accept" not in custom
    assert custom["Host"] == "app.example"


def test_http_probe_resolves_named_ports_and_reports_unknown_names_as_errors() -> None:
    async def go() -> None:
        async with http_server({"/": status(200)}) as port:
            container = {"name": "app", "ports": [{"name": "http", "containerPort": port}]}
            assert (await probe_once({"httpGet": {"port": "http"}},
                                     container=container))[0] is Outcome.SUCCESS
            assert (await probe_once({"httpGet": {"port": str(port)}},
                                     container=container))[0] is Outcome.SUCCESS
            assert await probe_once({"httpGet": {"port": "metrics"}}, container=container) == (
                Outcome.UNKNOWN, 'strconv.Atoi: parsing "metrics": invalid syntax')
            assert await probe_once({"httpGet": {"port": 0}}) == (
                Outcome.UNKNOWN, "invalid port number: 0")
    run(go())


def test_http_probe_follows_redirects_only_on_the_same_host() -> None:
    async def go() -> None:
        routes = {"/ok": status(200, "landed"), "/bad": status(503),
                  "/to-ok": redirect("/ok"), "/to-bad": redirect("/bad", 301),
                  "/loop": redirect("/loop", 307)}
        async with http_server(routes) as port:
            assert await probe_once({"httpGet": {"path": "/to-ok", "port": port}}) == (
                Outcome.SUCCESS, "landed")
            assert await probe_once({"httpGet": {"path": "/to-bad", "port": port}}) == (
                Outcome.FAILURE, "HTTP probe failed with statuscode: 503")
            assert await probe_once({"httpGet": {"path": "/loop", "port": port}}) == (
                Outcome.FAILURE,
                f'Get "http://{HOST}:{port}/loop": stopped after 10 redirects')
    run(go())


def test_http_probe_does_not_follow_a_redirect_to_another_host_and_warns() -> None:
    async def go() -> None:
        holder: dict[str, int] = {}

        async def elsewhere(request: web.Request) -> web.Response:
            location = f"http://localhost:{holder['port']}/ok"
            return web.Response(status=302, headers={"Location": location}, text="go away")

        async with http_server({"/elsewhere": elsewhere, "/ok": status(500)}) as port:
            holder["port"] = port
            assert await probe_once({"httpGet": {"path": "/elsewhere", "port": port}}) == (
                Outcome.WARNING, "Probe terminated redirects, Response body: go away")
    run(go())


def self_signed(tmp_path: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not-the-pod")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (tmp_path / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    return context


def test_https_probe_does_not_verify_the_certificate(tmp_path: Path) -> None:
    async def go() -> None:
        async with http_server({"/": status(200, "secure")}, self_signed(tmp_path)) as port:
            assert await probe_once({"httpGet": {"port": port, "scheme": "HTTPS"}}) == (
                Outcome.SUCCESS, "secure")
    run(go())


def test_http_probe_times_out_and_reports_refused_connections_as_go_does() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return web.Response()

    async def go() -> None:
        async with http_server({"/slow": slow}) as port:
            started = time.monotonic()
            result = await probe_once({"httpGet": {"path": "/slow", "port": port},
                                       "timeoutSeconds": 2})
            assert time.monotonic() - started < 0.2
            assert result == (Outcome.FAILURE, f'Get "http://{HOST}:{port}/slow": context '
                              "deadline exceeded (Client.Timeout exceeded while awaiting headers)")
        closed = free_port()
        assert await probe_once({"httpGet": {"path": "/healthz", "port": closed}}) == (
            Outcome.FAILURE, f'Get "http://{HOST}:{closed}/healthz": dial tcp {HOST}:{closed}: '
            "connect: connection refused")
    run(go())


# -- tcpSocket -----------------------------------------------------------------------------

def test_tcp_probe_connects_or_reports_the_dial_error() -> None:
    async def go() -> None:
        accepted: list[int] = []

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(1)
            writer.close()

        server = await asyncio.start_server(on_client, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            container = {"name": "db", "ports": [{"name": "pg", "containerPort": port}]}
            assert await probe_once({"tcpSocket": {"port": "pg"}}, container=container) == (
                Outcome.SUCCESS, "")
            await eventually(lambda: accepted == [1])
        closed = free_port()
        assert await probe_once({"tcpSocket": {"port": closed}}) == (
            Outcome.FAILURE, f"dial tcp {HOST}:{closed}: connect: connection refused")
        assert await probe_once({"tcpSocket": {"port": closed, "host": "127.0.0.5"}}) == (
            Outcome.FAILURE, f"dial tcp 127.0.0.5:{closed}: connect: connection refused")
    run(go())


# -- grpc ----------------------------------------------------------------------------------

SERVING, NOT_SERVING = 1, 2


@contextlib.asynccontextmanager
async def health_server(statuses: dict[str, int] | None) -> AsyncIterator[tuple[int, list]]:
    """A grpc.health.v1 server (None: a gRPC server without the health service)."""
    calls: list[tuple[str, str]] = []

    async def check(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        service = request[2:2 + request[1]].decode() if request else ""
        agent = dict(context.invocation_metadata() or ()).get("user-agent", "")
        calls.append((service, agent))
        if statuses is None or service not in statuses:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return b"\x08" + bytes([statuses[service]]) + b"\x12\x02hi"  # + an unknown field

    server = grpc.aio.server()
    if statuses is not None:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(
                check, request_deserializer=bytes, response_serializer=bytes)}),))
    port = server.add_insecure_port(f"{HOST}:0")
    await server.start()
    try:
        yield port, calls
    finally:
        await server.stop(None)


def test_grpc_probe_asks_the_health_service_for_the_probes_service() -> None:
    async def go() -> None:
        async with health_server({"": SERVING, "db": NOT_SERVING}) as (port, calls):
            assert await probe_once({"grpc": {"port": port}}) == (
                Outcome.SUCCESS, "service healthy")
            assert await probe_once({"grpc": {"port": port, "service": "db"}}) == (
                Outcome.FAILURE, 'service unhealthy (responded with "NOT_SERVING")')
            assert await probe_once({"grpc": {"port": port, "service": "cache"}}) == (
                Outcome.FAILURE,
                "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service")
            assert [service for service, _ in calls] == ["", "db", "cache"]
            assert all(agent.startswith("kube-probe/1.32") for _, agent in calls)
    run(go())


def test_grpc_probe_without_a_health_service_or_a_server() -> None:
    async def go() -> None:
        async with health_server(None) as (port, _):
            outcome, message = await probe_once({"grpc": {"port": port}})
            assert outcome is Outcome.FAILURE
            assert message.startswith("error: this server does not implement the grpc health "
                                      "protocol (grpc.health.v1.Health): ")
        closed = free_port()
        assert await probe_once({"grpc": {"port": closed}, "timeoutSeconds": 5}) == (
            Outcome.FAILURE, f'timeout: failed to connect service "{HOST}:{closed}" within 5s: '
            "context deadline exceeded")
    run(go())


# -- exec ----------------------------------------------------------------------------------

def test_exec_probe_uses_the_exit_code_and_output_and_times_out() -> None:
    calls: list[tuple[list[str], float]] = []

    async def exec_probe(argv: Sequence[str], timeout: float) -> tuple[int, str]:
        calls.append((list(argv), timeout))
        if argv[0] == "sleep":
            await asyncio.sleep(10)
        if argv[0] == "nope":
            raise RuntimeFailure("RunContainerError", 'exec: "nope": executable file not found')
        if argv[0] == "broken":
            raise ConnectionError("shim is gone")
        return (0, "ok\n") if argv[0] == "true" else (1, "cat: /tmp/healthy: No such file")

    async def go() -> None:
        probe = {"exec": {"command": ["true"]}, "timeoutSeconds": 3}
        assert await probe_once(probe, exec_probe=exec_probe) == (Outcome.SUCCESS, "ok\n")
        assert await probe_once({"exec": {"command": ["cat", "/tmp/healthy"]}},
                                exec_probe=exec_probe) == (
            Outcome.FAILURE, "cat: /tmp/healthy: No such file")
        assert await probe_once({"exec": {"command": ["sleep", "10"]}},
                                exec_probe=exec_probe) == (
            Outcome.FAILURE, 'command "sleep 10" timed out')
        assert await probe_once({"exec": {"command": ["nope"]}}, exec_probe=exec_probe) == (
            Outcome.FAILURE, 'exec: "nope": executable file not found')
        assert await probe_once({"exec": {"command": ["broken"]}}, exec_probe=exec_probe) == (
            Outcome.UNKNOWN, "shim is gone")
    run(go())
    assert calls[0] == (["true"], pytest.approx(3 * FAST))


# -- workers -------------------------------------------------------------------------------

class Script:
    """An exec probe that answers from a script (exit codes), repeating the last one."""

    def __init__(self, *codes: int) -> None:
        self.codes = list(codes)
        self.calls: list[float] = []

    async def __call__(self, argv: Sequence[str], timeout: float) -> tuple[int, str]:
        self.calls.append(time.monotonic())
        code = self.codes.pop(0) if len(self.codes) > 1 else self.codes[0]
        return code, f"exit {code}"


def exec_spec(**fields: Any) -> dict[str, Any]:
    return {"exec": {"command": ["check"]}, "periodSeconds": 1, **fields}


def test_liveness_restarts_after_failure_threshold_failures_and_stops_probing() -> None:
    log: list[Any] = []
    script = Script(1)

    async def go() -> None:
        worker = ProbeWorker("liveness", exec_spec(terminationGracePeriodSeconds=7),
                             pod_ip=HOST, container={"name": "app"}, exec_probe=script,
                             on_change=log.append, on_event=log.append, time_scale=FAST)
        assert worker.result is True
        await asyncio.wait_for(worker.run(), 2)  # returns by itself: the container restarts
        assert worker.result is False

    run(go())
    failed = ProbeEvent("liveness", "Unhealthy", "Liveness probe failed: exit 1")
    assert log == [failed, failed, failed, ProbeResult("liveness", False, "exit 1", 7)]
    assert len(script.calls) == 3


def test_readiness_needs_success_threshold_successes_and_keeps_probing() -> None:
    changes: list[ProbeResult] = []
    events: list[ProbeEvent] = []
    script = Script(0, 1, 0, 0, 1, 1, 0, 1, 1, 1, 0)

    async def go() -> None:
        worker = ProbeWorker("readiness", exec_spec(successThreshold=2, failureThreshold=3),
                             pod_ip=HOST, container={"name": "app"}, exec_probe=script,
                             on_change=changes.append, on_event=events.append,
                             time_scale=FAST)
        assert worker.result is False
        task = asyncio.create_task(worker.run())
        await eventually(lambda: len(changes) == 3)
        task.cancel()

    run(go())
    # 0 1 | 0 0 -> ready | 1 1 0 -> still ready | 1 1 1 -> unready | 0 -> one short
    assert [change.success for change in changes] == [True, False, True]
    assert changes[1] == ProbeResult("readiness", False, "exit 1", None)
    assert events[0] == ProbeEvent("readiness", "Unhealthy", "Readiness probe failed: exit 1")


def test_probes_wait_for_the_initial_delay_then_run_every_period() -> None:
    script = Script(0)

    async def go() -> None:
        t0, started_at = time.monotonic(), time.time()
        worker = ProbeWorker("readiness", exec_spec(initialDelaySeconds=10, periodSeconds=5),
                             pod_ip=HOST, container={"name": "app"}, exec_probe=script,
                             on_change=lambda result: None, started_at=started_at,
                             time_scale=FAST)
        task = asyncio.create_task(worker.run())
        await eventually(lambda: len(script.calls) == 3)
        task.cancel()
        first, second, third = script.calls
        assert first - t0 >= 0.095
        assert 0.045 <= second - first < 0.2
        assert 0.045 <= third - second < 0.2

    run(go())


def test_a_probe_that_cannot_run_is_reported_and_never_counts() -> None:
    changes: list[ProbeResult] = []
    events: list[ProbeEvent] = []

    async def go() -> None:
        worker = ProbeWorker("liveness", {"httpGet": {"port": "web"}, "periodSeconds": 1,
                                          "failureThreshold": 1},
                             pod_ip=HOST, container={"name": "app"}, exec_probe=no_exec,
                             on_change=changes.append, on_event=events.append,
                             time_scale=FAST)
        task = asyncio.create_task(worker.run())
        await eventually(lambda: len(events) >= 3)
        task.cancel()
        assert worker.result is True

    run(go())
    assert not changes
    assert events[0] == ProbeEvent(
        "liveness", "Unhealthy",
        'Liveness probe errored and resulted in unknown state: '
        'strconv.Atoi: parsing "web": invalid syntax')


def test_a_redirect_elsewhere_is_a_success_with_a_probe_warning() -> None:
    events: list[ProbeEvent] = []
    changes: list[ProbeResult] = []

    async def go() -> None:
        async with http_server({"/": redirect("http://localhost/")}) as port:
            worker = ProbeWorker("readiness", {"httpGet": {"port": port}}, pod_ip=HOST,
                                 container={"name": "web"}, exec_probe=no_exec,
                                 on_change=changes.append, on_event=events.append,
                                 time_scale=FAST)
            task = asyncio.create_task(worker.run())
            await eventually(lambda: bool(changes))
            task.cancel()

    run(go())
    assert changes[0].success
    assert events[0] == ProbeEvent("readiness", "ProbeWarning",
                                   "Readiness probe warning: Probe terminated redirects, "
                                   "Response body: moved")


# -- the manager ---------------------------------------------------------------------------

def test_startup_probe_gates_liveness_and_readiness_then_readiness_runs_at_once() -> None:
    probed: list[str] = []
    changes: list[tuple[str, ProbeResult]] = []
    events: list[tuple[str, ProbeEvent]] = []
    startup_codes = [1, 1, 0]

    async def exec_probe(argv: Sequence[str], timeout: float) -> tuple[int, str]:
        probed.append(argv[0])
        if argv[0] == "startup":
            return startup_codes.pop(0), ""
        return 0, ""

    container = {
        "name": "app",
        "startupProbe": {"exec": {"command": ["startup"]}, "periodSeconds": 2,
                         "failureThreshold": 5},
        "livenessProbe": {"exec": {"command": ["liveness"]}, "periodSeconds": 30},
        "readinessProbe": {"exec": {"command": ["readiness"]}, "periodSeconds": 30},
    }

    async def go() -> None:
        manager = ProbeManager(on_change=lambda cid, r: changes.append((cid, r)),
                               on_event=lambda cid, e: events.append((cid, e)),
                               time_scale=FAST)
        manager.add("process://c1", container, pod_ip=HOST, exec_probe=exec_probe)
        assert manager.started("process://c1") is False
        assert manager.readiness("process://c1") is False
        await eventually(lambda: manager.readiness("process://c1") is True, timeout=1)
        assert manager.started("process://c1") is True
        await manager.close()
        assert manager.readiness("process://c1") is None

    run(go())
    # Nothing else ran before startup succeeded; readiness ran at once (well before its
    # 30-period tick), and liveness runs only at its next tick.
    assert probed[:4] == ["startup", "startup", "startup", "readiness"]
    assert "liveness" not in probed
    assert [(cid, r.kind, r.success) for cid, r in changes] == [
        ("process://c1", "startup", True), ("process://c1", "readiness", True)]
    assert [e.message for _, e in events] == ["Startup probe failed: "] * 2


def test_containers_without_probes_leave_readiness_and_started_to_the_kubelet() -> None:
    async def go() -> None:
        manager = ProbeManager(on_change=lambda cid, r: None, on_event=lambda cid, e: None)
        manager.add("process://c2", {"name": "plain"}, pod_ip=HOST, exec_probe=no_exec)
        assert manager.readiness("process://c2") is None
        assert manager.started("process://c2") is None
        assert manager.readiness("process://unknown") is None
        await manager.close()

    run(go())


def test_a_terminating_pod_stops_liveness_but_keeps_readiness() -> None:
    probed: list[str] = []

    async def exec_probe(argv: Sequence[str], timeout: float) -> tuple[int, str]:
        probed.append(argv[0])
        return 1, "down"

    container = {"name": "app",
                 "livenessProbe": {"exec": {"command": ["liveness"]}, "periodSeconds": 1,
                                   "failureThreshold": 1000},
                 "readinessProbe": {"exec": {"command": ["readiness"]}, "periodSeconds": 1}}

    async def go() -> None:
        manager = ProbeManager(on_change=lambda cid, r: None, on_event=lambda cid, e: None,
                               time_scale=FAST)
        manager.add("process://c3", container, pod_ip=HOST, exec_probe=exec_probe)
        await eventually(lambda: probed.count("liveness") >= 2)
        manager.terminating()
        await asyncio.sleep(0)
        before = probed.count("liveness")
        readiness_before = probed.count("readiness")
        await asyncio.sleep(0.1)
        assert probed.count("liveness") == before
        assert probed.count("readiness") > readiness_before
        await manager.remove("process://c3")
        stopped = len(probed)
        await asyncio.sleep(0.05)
        assert len(probed) == stopped

    run(go())
