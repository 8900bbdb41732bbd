"""The kubelet's prober: liveness, readiness and startup probes of running containers.

One `ProbeWorker` per (container instance, probe kind) probes on its own period and turns
attempts into a result with thresholds; a `ProbeManager` owns the workers of container
instances, gates them on startup and hands the kubelet what it acts on. What follows is
the real kubelet's behaviour (pkg/kubelet/prober, pkg/probe), in its words:

- **Results.** Readiness starts as failure (the container is not Ready until a probe
  says so), liveness as success, startup as unknown. A result flips only after
  `successThreshold` consecutive successes (always 1 for liveness and startup) or
  `failureThreshold` consecutive failures (default 3); `on_change` reports each flip.
  A liveness or startup failure means the kubelet restarts the container: the worker
  stops there (the restarted container is a new instance with new workers). A startup
  success also ends its worker: a container starts once.
- **Events.** Every failed attempt is reported through `on_event` as the kubelet's
  `Warning Unhealthy` event (`Liveness probe failed: HTTP probe failed with statuscode:
  500`), an HTTP redirect to another host as `Warning ProbeWarning` (counted as a
  success), and a probe that could not be run at all (a port name the container does
  not declare) as `... probe errored and resulted in unknown state: ...`; such an
  attempt is retried up to three times and then thrown away, counting neither way.
- **Startup gating.** Until the startup probe succeeds, liveness and readiness are not
  run; its success triggers an immediate readiness probe (the kubelet's manual trigger)
  so Ready does not wait out a period. Without a readiness or startup probe the kubelet
  decides for itself (ready, started once running): `readiness()`/`started()` say None.
- **Handlers.** exec (through the kubelet's `exec_probe(argv, timeout)`; non-zero exit
  is failure, running past timeoutSeconds is failure `command "..." timed out`);
  httpGet (host defaults to the pod IP, the port a number or a container port's name,
  HTTPS without certificate verification, no keep-alive, no proxy, `User-Agent:
  kube-probe/1.32` and `Accept: */*` unless the probe sets them, 200-399 is success,
  redirects followed only on the same host and at most ten); tcpSocket (a connection
  within the timeout); grpc (grpc.health.v1 Health/Check with the probe's `service`,
  SERVING is success). Failure messages are the real prober's, Go error text included
  (`dial tcp 127.0.0.5:8080: connect: connection refused`).

Timing. A worker waits `initialDelaySeconds` from the container's start (its
`started_at`), then probes at once and every `periodSeconds` after that on a fixed
ticker: an attempt that overruns (a timeout longer than the period) skips the ticks it
missed rather than bunching probes up. Each attempt is bounded by `timeoutSeconds`.
(The real kubelet probes on a ticker from the worker's start and skips ticks until the
delay has passed, so its first probe can come up to a period late; here it comes when
the documentation says.) `time_scale` multiplies every one of these durations and is
meant for tests only, so thresholds and delays run in milliseconds against real servers;
messages still quote the spec's seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import json
import logging
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
from multidict import CIMultiDict
from yarl import URL

from ..machinery import protowire
from .runtime.base import RuntimeFailure

log = logging.getLogger(__name__)

LIVENESS = "liveness"
READINESS = "readiness"
STARTUP = "startup"
#: Probe kinds and the container fields that hold them, in the order they are started.
PROBE_FIELDS = {STARTUP: "startupProbe", LIVENESS: "livenessProbe", READINESS: "readinessProbe"}

#: The kubelet's User-Agent for HTTP and gRPC probes (`kube-probe/<major>.<minor>`).
USER_AGENT = "kube-probe/1.32"
#: Event reasons and type of the kubelet's probe events.
REASON_UNHEALTHY = "Unhealthy"
REASON_PROBE_WARNING = "ProbeWarning"
EVENT_TYPE_WARNING = "Warning"

DEFAULT_PERIOD_SECONDS = 10
DEFAULT_TIMEOUT_SECONDS = 1
DEFAULT_SUCCESS_THRESHOLD = 1
DEFAULT_FAILURE_THRESHOLD = 3
#: Attempts at a probe that errors (could not be run) before the worker gives up on a tick.
MAX_PROBE_RETRIES = 3
#: At most this much of an HTTP body or of an exec's output is kept (the kubelet's 10 KiB).
MAX_OUTPUT = 10 * 1024
#: Redirects an HTTP probe follows before it fails (Go's http.Client default).
MAX_REDIRECTS = 10
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

#: What a worker's result is before any probe has counted (`None`: unknown).
_INITIAL_RESULT: dict[str, bool | None] = {LIVENESS: True, READINESS: False, STARTUP: None}

#: Go's text for the connect errors a probe meets (syscall.Errno.Error()).
_CONNECT_ERRORS = {
    errno.ECONNREFUSED: "connection refused",
    errno.EHOSTUNREACH: "no route to host",
    errno.ENETUNREACH: "network is unreachable",
    errno.ECONNRESET: "connection reset by peer",
    errno.ETIMEDOUT: "connection timed out",
}

#: grpc.health.v1.HealthCheckResponse.ServingStatus names.
_SERVING = 1
_SERVING_STATUS_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
_HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check"


class Outcome(enum.StrEnum):
    """One attempt's result, as pkg/probe's Result: warning counts as success, and
    unknown (the probe could not be run) counts neither way."""

    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"
    UNKNOWN = "unknown"

    @property
    def ok(self) -> bool:
        return self in (Outcome.SUCCESS, Outcome.WARNING)


class ProbeError(Exception):
    """A probe that could not be run (a bad port): the attempt's outcome is unknown."""


#: The kubelet's exec-in-container for probes: (argv, timeout seconds) -> (exit code,
#: stdout and stderr combined). Raising RuntimeFailure (the command could not be
#: started) is a failed probe with the failure's message; TimeoutError is a timeout.
ExecProbe = Callable[[Sequence[str], float], Awaitable[tuple[int, str]]]


@dataclass(frozen=True)
class ProbeResult:
    """A worker's result flipped: what the kubelet acts on.

    A liveness or startup failure means "restart the container", with the probe's own
    `terminationGracePeriodSeconds` (None: the pod's) as the grace period of the kill.
    """

    kind: str
    success: bool
    #: The output of the attempt that flipped the result (the failure's message).
    message: str
    termination_grace_period_seconds: int | None = None


@dataclass(frozen=True)
class ProbeEvent:
    """An event the kubelet records on the pod for one probe attempt."""

    kind: str
    #: "Unhealthy" (failed or errored) or "ProbeWarning" (redirect not followed).
    reason: str
    #: The event's message, e.g. "Readiness probe failed: HTTP probe failed with ...".
    message: str
    type: str = EVENT_TYPE_WARNING


# -- one attempt ---------------------------------------------------------------------------

async def run_probe(probe: Mapping[str, Any], *, pod_ip: str, container: Mapping[str, Any],
                    exec_probe: ExecProbe, time_scale: float = 1.0) -> tuple[Outcome, str]:
    """Run one attempt of `probe` against a container; return its outcome and output.

    The output is what the kubelet puts in its events: the failure's message, the body
    of a successful HTTP probe, an exec's output. `time_scale` is for tests (see the
    module's notes on timing).
    """
    spec_timeout = _seconds(probe, "timeoutSeconds", DEFAULT_TIMEOUT_SECONDS)
    timeout = spec_timeout * time_scale
    try:
        if (action := probe.get("exec")) is not None:
            return await _exec(action, exec_probe, timeout)
        if (action := probe.get("httpGet")) is not None:
            return await _http_get(action, pod_ip, container, timeout)
        if (action := probe.get("tcpSocket")) is not None:
            return await _tcp_socket(action, pod_ip, container, timeout)
        if (action := probe.get("grpc")) is not None:
            return await _grpc(action, pod_ip, timeout, spec_timeout)
    except ProbeError as error:
        return Outcome.UNKNOWN, str(error)
    return Outcome.UNKNOWN, f"missing probe handler for {container.get('name', '')}"


async def _exec(action: Mapping[str, Any], exec_probe: ExecProbe,
                timeout: float) -> tuple[Outcome, str]:
    argv = [str(arg) for arg in action.get("command") or []]
    try:
        async with asyncio.timeout(timeout):
            code, output = await exec_probe(argv, timeout)
    except TimeoutError:
        return Outcome.FAILURE, f"command {_go_quote(' '.join(argv))} timed out"
    except RuntimeFailure as failure:
        return Outcome.FAILURE, failure.message
    except Exception as error:  # the runtime could not exec at all: the attempt errored
        log.debug("exec probe %s errored", argv, exc_info=True)
        raise ProbeError(str(error) or type(error).__name__) from error
    return (Outcome.SUCCESS if code == 0 else Outcome.FAILURE), output[:MAX_OUTPUT]


async def _http_get(action: Mapping[str, Any], pod_ip: str, container: Mapping[str, Any],
                    timeout: float) -> tuple[Outcome, str]:
    scheme = str(action.get("scheme") or "HTTP").lower()
    host = action.get("host") or pod_ip
    port = resolve_port(action.get("port"), container)
    path = str(action.get("path") or "")
    if path and not path.startswith("/"):
        path = "/" + path
    # `shown` is the URL being fetched as Go's errors print it ("Get \"<url>\": ...").
    shown = f"{scheme}://{join_host_port(host, port)}{path}"
    url = current = URL(shown, encoded=True)
    headers = _request_headers(action.get("httpHeaders") or [])
    try:
        async with asyncio.timeout(timeout), aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=False, force_close=True),
                auto_decompress=False,
                skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent")) as session:
            for hop in range(1, MAX_REDIRECTS + 1):
                async with session.get(current, headers=headers, allow_redirects=False) as resp:
                    location = resp.headers.get("Location")
                    if resp.status in _REDIRECT_STATUSES and location is not None:
                        target = current.join(URL(location, encoded=True))
                        if target.host == url.host:  # only redirects to the same host
                            if hop == MAX_REDIRECTS:
                                return (Outcome.FAILURE, f"Get {_go_quote(shown)}: stopped after "
                                        f"{MAX_REDIRECTS} redirects")
                            if URL(location, encoded=True).is_absolute():
                                headers.popall("Host", None)  # a custom Host only on relative
                            current, shown = target, _go_url(target)
                            continue
                    status = resp.status
                    body = await _read_at_most(resp.content, MAX_OUTPUT)
                    break
    except TimeoutError:
        return (Outcome.FAILURE, f"Get {_go_quote(shown)}: context deadline exceeded "
                "(Client.Timeout exceeded while awaiting headers)")
    except aiohttp.ClientConnectorError as error:
        dial = _dial_error(join_host_port(error.host, error.port), error.host, error.os_error)
        return Outcome.FAILURE, f"Get {_go_quote(shown)}: {dial}"
    except aiohttp.ServerDisconnectedError:
        return Outcome.FAILURE, f"Get {_go_quote(shown)}: EOF"
    except aiohttp.ClientError as error:
        return Outcome.FAILURE, f"Get {_go_quote(shown)}: {error}"

    text = body.decode("utf-8", "replace")
    if 200 <= status < 400:
        if status >= 300:
            return Outcome.WARNING, f"Probe terminated redirects, Response body: {text}"
        return Outcome.SUCCESS, text
    # As the kubelet: never the body in a failure message (kubernetes#99425).
    return Outcome.FAILURE, f"HTTP probe failed with statuscode: {status}"


def _request_headers(http_headers: Sequence[Mapping[str, Any]]) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for header in http_headers:
        headers.add(_canonical_header(str(header.get("name", ""))), str(header.get("value", "")))
    if "User-Agent" not in headers:
        headers["User-Agent"] = USER_AGENT
    if "Accept" not in headers:
        headers["Accept"] = "*/*"
    elif headers["Accept"] == "":  # an empty Accept removes the header
        headers.popall("Accept")
    return headers


def _canonical_header(name: str) -> str:
    """Go's CanonicalMIMEHeaderKey: x-probe-token -> X-Probe-Token."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


async def _read_at_most(stream: aiohttp.StreamReader, limit: int) -> bytes:
    data = b""
    while len(data) < limit:
        chunk = await stream.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return data


async def _tcp_socket(action: Mapping[str, Any], pod_ip: str, container: Mapping[str, Any],
                      timeout: float) -> tuple[Outcome, str]:
    host = action.get("host") or pod_ip
    port = resolve_port(action.get("port"), container)
    address = join_host_port(host, port)
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return Outcome.FAILURE, f"dial tcp {address}: i/o timeout"
    except OSError as error:
        return Outcome.FAILURE, _dial_error(address, host, error)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return Outcome.SUCCESS, ""


async def _grpc(action: Mapping[str, Any], pod_ip: str, timeout: float,
                spec_timeout: int) -> tuple[Outcome, str]:
    address = join_host_port(pod_ip, int(action.get("port") or 0))
    service = str(action.get("service") or "")
    within = _go_duration(spec_timeout)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    options = [("grpc.primary_user_agent", USER_AGENT), ("grpc.enable_http_proxy", 0)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        try:
            await asyncio.wait_for(channel.channel_ready(), timeout)
        except TimeoutError:
            return (Outcome.FAILURE, f"timeout: failed to connect service {_go_quote(address)} "
                    f"within {within}: context deadline exceeded")
        check = channel.unary_unary(_HEALTH_CHECK_METHOD,
                                    request_serializer=encode_health_check_request,
                                    response_deserializer=decode_health_check_response)
        try:
            status = await check(service, timeout=max(deadline - loop.time(), 0.001))
        except grpc.aio.AioRpcError as error:
            code, details = error.code(), error.details() or ""
            if code == grpc.StatusCode.UNIMPLEMENTED:
                return (Outcome.FAILURE, "error: this server does not implement the grpc health "
                        f"protocol (grpc.health.v1.Health): {details}")
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return Outcome.FAILURE, f"timeout: health rpc did not complete within {within}"
            return (Outcome.FAILURE, "error: health rpc probe failed: rpc error: "
                    f"code = {_go_status_code(code)} desc = {details}")
    if status != _SERVING:
        name = _SERVING_STATUS_NAMES.get(status, str(status))
        return Outcome.FAILURE, f"service unhealthy (responded with {_go_quote(name)})"
    return Outcome.SUCCESS, "service healthy"


# -- grpc.health.v1 on the wire ------------------------------------------------------------

def encode_health_check_request(service: str) -> bytes:
    """HealthCheckRequest{string service = 1} in protobuf encoding."""
    data = service.encode()
    return protowire.delimited(1, data) if data else b""


def decode_health_check_response(data: bytes) -> int:
    """The `status` (field 1, an enum) of a HealthCheckResponse; 0 (UNKNOWN) if absent.
    Raises ValueError if `data` is not protobuf."""
    status = 0
    for number, wire_type, value in protowire.iter_fields(data):
        if number == 1 and wire_type == protowire.VARINT:
            assert isinstance(value, int)
            status = value
    return status


# -- helpers the kubelet shares ------------------------------------------------------------

def resolve_port(port: int | str | None, container: Mapping[str, Any]) -> int:
    """A probe's port: a number, the name of one of the container's ports, or a number
    written as a string. Raises ProbeError with the kubelet's message otherwise."""
    if isinstance(port, int) and not isinstance(port, bool):
        number = port
    else:
        text = "" if port is None else str(port)
        named = [p for p in container.get("ports") or [] if p.get("name") == text]
        if named:
            number = int(named[0].get("containerPort") or 0)
        elif re.fullmatch(r"[+-]?[0-9]+", text):
            number = int(text)
        else:
            raise ProbeError(f"strconv.Atoi: parsing {_go_quote(text)}: invalid syntax")
    if 0 < number < 65536:
        return number
    raise ProbeError(f"invalid port number: {number}")


def join_host_port(host: str, port: int) -> str:
    """Go's net.JoinHostPort: IPv6 literals in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _dial_error(address: str, host: str, error: OSError | None) -> str:
    if isinstance(error, socket.gaierror):
        return f"dial tcp: lookup {host}: no such host"
    if error is None or error.errno is None:
        return f"dial tcp {address}: {error}"
    text = _CONNECT_ERRORS.get(error.errno) or os.strerror(error.errno).lower()
    return f"dial tcp {address}: connect: {text}"


def _go_url(url: URL) -> str:
    """A URL as Go prints it: an explicit port stays, even the scheme's default."""
    host = url.raw_host or ""
    host = f"[{host}]" if ":" in host else host
    port = f":{url.explicit_port}" if url.explicit_port is not None else ""
    query = f"?{url.raw_query_string}" if url.raw_query_string else ""
    return f"{url.scheme}://{host}{port}{url.raw_path}{query}"


def _go_quote(text: str) -> str:
    """Go's %q for the strings probes quote (URLs, commands, addresses)."""
    return json.dumps(text, ensure_ascii=False)


def _go_duration(seconds: int) -> str:
    """time.Duration's String() for whole seconds: 1s, 1m30s, 1h0m0s."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _go_status_code(code: grpc.StatusCode) -> str:
    """codes.Code's String(): NOT_FOUND -> NotFound (and CANCELLED -> Canceled)."""
    if code == grpc.StatusCode.CANCELLED:
        return "Canceled"
    if code == grpc.StatusCode.OK:
        return "OK"
    return "".join(word.capitalize() for word in code.name.split("_"))


def _seconds(probe: Mapping[str, Any], name: str, default: int) -> int:
    value = probe.get(name)
    return int(value) if value else default


# -- workers -------------------------------------------------------------------------------

class ProbeWorker:
    """Probes one container instance for one kind, periodically, until cancelled or done.

    `on_change` gets each flip of the thresholded result; `on_event` gets the event of
    every attempt that failed, warned or errored. `started` is the startup gate of
    liveness and readiness (None: no startup probe). `started_at` is the container's
    start (epoch seconds; default now), from which `initialDelaySeconds` counts.
    """

    def __init__(self, kind: str, probe: Mapping[str, Any], *, pod_ip: str,
                 container: Mapping[str, Any], exec_probe: ExecProbe,
                 on_change: Callable[[ProbeResult], None],
                 on_event: Callable[[ProbeEvent], None] | None = None,
                 started: Callable[[], bool] | None = None,
                 started_at: float | None = None, time_scale: float = 1.0) -> None:
        if kind not in PROBE_FIELDS:
            raise ValueError(f"unknown probe kind {kind!r}: want one of {sorted(PROBE_FIELDS)}")
        self.kind = kind
        self.probe = probe
        self._pod_ip = pod_ip
        self._container = container
        self._exec_probe = exec_probe
        self._on_change = on_change
        self._on_event = on_event
        self._started = started
        self._started_at = time.time() if started_at is None else started_at
        self._time_scale = time_scale
        self._period = _seconds(probe, "periodSeconds", DEFAULT_PERIOD_SECONDS) * time_scale
        self._initial_delay = int(probe.get("initialDelaySeconds") or 0) * time_scale
        # successThreshold must be 1 for liveness and startup (validation says so too).
        self._success_threshold = (_seconds(probe, "successThreshold", DEFAULT_SUCCESS_THRESHOLD)
                                   if kind == READINESS else 1)
        self._failure_threshold = _seconds(probe, "failureThreshold", DEFAULT_FAILURE_THRESHOLD)
        grace = probe.get("terminationGracePeriodSeconds")
        self._grace = None if grace is None or kind == READINESS else int(grace)
        self._result = _INITIAL_RESULT[kind]
        self._last: bool | None = None
        self._run = 0
        self._wake = asyncio.Event()

    @property
    def result(self) -> bool | None:
        """The thresholded result: True, False, or None (startup not yet decided)."""
        return self._result

    def trigger(self) -> None:
        """Probe now instead of at the next tick (ignored during the initial delay)."""
        self._wake.set()

    async def run(self) -> None:
        """Probe until cancelled, or until there is nothing left to probe for this
        container instance (startup succeeded; liveness or startup failed)."""
        delay = self._started_at + self._initial_delay - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        self._wake.clear()
        loop = asyncio.get_running_loop()
        tick = loop.time()
        while True:
            gated = self._started is not None and not self._started()
            if not gated and not await self._probe():
                return
            # The next tick of a fixed ticker: a trigger does not move it, and an attempt
            # that overran skips the ticks it missed.
            now = loop.time()
            if tick <= now:
                tick += self._period * ((now - tick) // self._period + 1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), tick - now)
            self._wake.clear()

    async def _probe(self) -> bool:
        """One tick: an attempt (retried while it errors), its event and the thresholds.
        Returns whether to keep probing this container instance."""
        for _ in range(MAX_PROBE_RETRIES):
            outcome, output = await run_probe(self.probe, pod_ip=self._pod_ip,
                                              container=self._container,
                                              exec_probe=self._exec_probe,
                                              time_scale=self._time_scale)
            if outcome is not Outcome.UNKNOWN:
                break
        name = self.kind.capitalize()
        if outcome is Outcome.UNKNOWN:
            self._emit(REASON_UNHEALTHY,
                       f"{name} probe errored and resulted in unknown state: {output}")
            return True
        if outcome is Outcome.FAILURE:
            self._emit(REASON_UNHEALTHY, f"{name} probe failed: {output}")
        elif outcome is Outcome.WARNING:
            self._emit(REASON_PROBE_WARNING, f"{name} probe warning: {output}")

        success = outcome.ok
        if success == self._last:
            self._run += 1
        else:
            self._last, self._run = success, 1
        if self._run < (self._success_threshold if success else self._failure_threshold):
            return True
        if self._result != success:
            self._result = success
            grace = None if success else self._grace
            self._notify(ProbeResult(self.kind, success, output, grace))
        if self.kind == STARTUP:
            return False  # started, or failed and about to be restarted: done either way
        return success or self.kind != LIVENESS

    def _emit(self, reason: str, message: str) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(ProbeEvent(self.kind, reason, message))
        except Exception:
            log.exception("%s probe of container %s: on_event failed", self.kind,
                          self._container.get("name"))

    def _notify(self, result: ProbeResult) -> None:
        try:
            self._on_change(result)
        except Exception:
            log.exception("%s probe of container %s: on_change failed", self.kind,
                          self._container.get("name"))


@dataclass
class _ContainerProbes:
    workers: dict[str, ProbeWorker]
    tasks: dict[str, asyncio.Task[None]]


class ProbeManager:
    """The probe workers of container instances (one pod's, or a whole node's).

    `add` starts a worker per probe the container declares, `remove` stops them (a
    restarted container is removed and added again under its new id). The kubelet reads
    `readiness()` and `started()` when it writes container statuses, and acts on
    `on_change` (restart on a liveness or startup failure, status update otherwise) and
    `on_event` (record the event on the pod), each called with the container id.
    """

    def __init__(self, *, on_change: Callable[[str, ProbeResult], None],
                 on_event: Callable[[str, ProbeEvent], None],
                 time_scale: float = 1.0) -> None:
        self._on_change = on_change
        self._on_event = on_event
        self._time_scale = time_scale
        self._containers: dict[str, _ContainerProbes] = {}

    def add(self, container_id: str, container: Mapping[str, Any], *, pod_ip: str,
            exec_probe: ExecProbe, started_at: float | None = None) -> None:
        """Start probing a running container instance (again: nothing happens)."""
        if container_id in self._containers:
            return
        probes = _ContainerProbes(workers={}, tasks={})
        gated = bool(container.get(PROBE_FIELDS[STARTUP]))

        def started() -> bool:
            return probes.workers[STARTUP].result is True

        for kind, field_name in PROBE_FIELDS.items():
            spec = container.get(field_name)
            if not spec:
                continue
            probes.workers[kind] = ProbeWorker(
                kind, spec, pod_ip=pod_ip, container=container, exec_probe=exec_probe,
                on_change=lambda result, cid=container_id: self._changed(cid, result),
                on_event=lambda event, cid=container_id: self._on_event(cid, event),
                started=started if gated and kind != STARTUP else None,
                started_at=started_at, time_scale=self._time_scale)
        self._containers[container_id] = probes
        for kind, worker in probes.workers.items():
            probes.tasks[kind] = asyncio.create_task(
                worker.run(), name=f"{kind} probe {container.get('name')} {container_id}")

    async def remove(self, container_id: str) -> None:
        """Stop probing a container instance and forget its results."""
        probes = self._containers.pop(container_id, None)
        if probes is not None:
            await _cancel(probes.tasks.values())

    async def close(self) -> None:
        """Stop every worker."""
        for container_id in list(self._containers):
            await self.remove(container_id)

    def terminating(self) -> None:
        """The pod is being deleted: stop liveness and startup probing, so a container
        shutting down gracefully is not restarted; readiness goes on (the kubelet's
        graceful shutdown of probes)."""
        for probes in self._containers.values():
            for kind in (LIVENESS, STARTUP):
                task = probes.tasks.get(kind)
                if task is not None:
                    task.cancel()

    def readiness(self, container_id: str) -> bool | None:
        """The readiness probe's result; None without a readiness probe (or container)."""
        worker = self._worker(container_id, READINESS)
        return None if worker is None else worker.result

    def started(self, container_id: str) -> bool | None:
        """Whether the startup probe has succeeded; None without a startup probe."""
        worker = self._worker(container_id, STARTUP)
        return None if worker is None else worker.result is True

    def _worker(self, container_id: str, kind: str) -> ProbeWorker | None:
        probes = self._containers.get(container_id)
        return None if probes is None else probes.workers.get(kind)

    def _changed(self, container_id: str, result: ProbeResult) -> None:
        readiness = self._worker(container_id, READINESS)
        if result.kind == STARTUP and result.success and readiness is not None:
            readiness.trigger()
        self._on_change(container_id, result)


async def _cancel(tasks: Iterable[asyncio.Task[None]]) -> None:
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
