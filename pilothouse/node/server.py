"""The kubelet's HTTPS API: what the API server reaches on a node (the real one's port 10250).

The API server proxies `pods/log`, `pods/exec`, `pods/attach`, `pods/portforward` and the
node stats here, on the real kubelet's paths, so its side is a plain relay:

- `GET /containerLogs/{ns}/{pod}/{container}?follow=&previous=&tailLines=&sinceSeconds=&
  sinceTime=&timestamps=&limitBytes=`: text, streamed; errors as the kubelet words them.
- `/exec/{ns}/{pod}/{container}?command=..&input=1&output=1&error=1&tty=1` and
  `/attach/...` (the API server's `stdin=true` spellings work too): WebSocket channel
  protocols v5, v4, v4.base64, channel.k8s.io, base64.channel.k8s.io (`streaming.py`).
- `/portForward/{ns}/{pod}?port=` (or `ports=`): over WebSocket, either kubectl's SPDY
  tunnel (`SPDY/3.1+portforward.k8s.io`, one data and one error stream per connection)
  or the channel protocol (two channels per port) the Python client uses. Each forwarded
  connection is a TCP connection to the pod: for a pod in its own network namespace,
  made inside it to localhost as containerd does (then to the pod's IP, for a server
  bound to that only); else to the pod's IP.
- `POST /run/{ns}/{pod}/{container}?cmd=`, `GET /pods`, `GET /stats/summary`, `GET /healthz`.

What a pod is and how to run in it comes from the kubelet through `PodSource`; the
container runtime does exec and attach (`Runtime.exec`/`attach` give a `StreamSession`).

Security is the real kubelet's with anonymous access off: TLS with a self-signed serving
certificate made on first start (`<cert_dir>/kubelet.crt`, as /var/lib/kubelet/pki has it);
a client certificate signed by the cluster CA names the caller (CN user, O groups); a
request without one gets 401 (the handshake asks for a certificate but lets the request
through so that it can say so, as Go's `RequestClientCert` does), one signed by anyone else
fails the handshake. Every request is then authorized as the kubelet's webhook authorizer
does: resource `nodes`, subresource `stats`, `metrics`, `log` or else `proxy`, verb from
the HTTP method, except that exec, attach, portForward and run are always `create`. (A
WebSocket upgrade is a GET, for which the 1.32 kubelet checks `get`, letting a reader of
`nodes/proxy` run commands; kube-apiserver checks `create` on such upgrades of pods/exec
since 1.35, KEP-4006, and kubernetes#136550 asks the same of the kubelet.)

Why aiohttp: one library gives the TLS server, streamed chunked responses, WebSocket
upgrades with subprotocol selection in the client's order (what the kubelet's wsstream
does) and the peer certificate of each request; it is already a dependency (the API
client). The `websockets` server would need a second HTTP stack for the plain endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import logging
import os
import ssl
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import WSCloseCode, WSMsgType, web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from multidict import MultiMapping

from ..machinery.certs import certificate_builder
from . import streaming
from .logs import read_log
from .podnet import connect_in_netns
from .runtime.base import Runtime, RuntimeFailure, StreamSession
from .streaming import ChannelProtocol, SpdySession, SpdyStream

log = logging.getLogger(__name__)


class PodSource(Protocol):
    """What the server needs from the kubelet (the kubelet implements it)."""

    def find_pod(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...

    def running_container(self, namespace: str, name: str,
                          container: str) -> tuple[Runtime, str] | None:
        """The runtime and container id of the container's current running instance."""

    def log_path(self, namespace: str, name: str, container: str, *,
                 previous: bool) -> Path | None: ...

    def container_running(self, namespace: str, name: str, container: str) -> bool: ...

    def pod_ip(self, namespace: str, name: str) -> str | None: ...

    def pod_netns(self, namespace: str, name: str) -> str | None:
        """The pinned network namespace of the pod, if it has its own."""

    def pods(self) -> list[Mapping[str, Any]]: ...
    async def stats_summary(self) -> dict[str, Any]: ...


#: (user, groups, verb, resource, subresource, node name) -> allowed.
Authorizer = Callable[[str, list[str], str, str, str, str], Awaitable[bool]]

#: After one direction of a forwarded connection ends, how long the other may go on
#: (containerd's port-forward gives it one second, after socat).
FORWARD_LINGER_SECONDS = 1.0
#: How long `stop()` lets streams close and requests in flight finish before cancelling them.
SHUTDOWN_SECONDS = 1.0
SERVING_CERT_DAYS = 365
READ_CHUNK = 32 * 1024

_VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
          "DELETE": "delete"}
#: Endpoints that run code in pods: `create` whatever the HTTP method.
_CREATE_PATHS = ("/exec", "/attach", "/portForward", "/run")
_SUBRESOURCES = (("/stats", "stats"), ("/metrics", "metrics"), ("/logs", "log"))


def request_attributes(method: str, path: str) -> tuple[str, str]:
    """The (verb, subresource) a request to the kubelet API is authorized for; the resource
    is always `nodes` (kubelet `server/auth.go`, GetRequestAttributes)."""
    verb = _VERBS.get(method.upper(), "")
    if any(_is_subpath(path, prefix) for prefix in _CREATE_PATHS):
        verb = "create"
    for prefix, subresource in _SUBRESOURCES:
        if _is_subpath(path, prefix):
            return verb, subresource
    return verb, "proxy"


def _is_subpath(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def ensure_serving_certificate(cert_dir: Path, host: str) -> tuple[Path, Path]:
    """The kubelet's self-signed serving certificate and key, made when missing, expired or
    not naming `host` (SANs: host, localhost, 127.0.0.1)."""
    cert_path, key_path = cert_dir / "kubelet.crt", cert_dir / "kubelet.key"
    if cert_path.exists() and key_path.exists() and _serves(cert_path, host):
        return cert_path, key_path
    cert_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{host}@{int(time.time())}")])
    names: list[x509.GeneralName] = [x509.DNSName("localhost"),
                                     x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    host_name = _general_name(host)
    if host_name is not None and host_name not in names:
        names.append(host_name)
    cert = (
        certificate_builder(name, name, key.public_key(), days=SERVING_CERT_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _general_name(host: str) -> x509.GeneralName | None:
    if not host or host in ("0.0.0.0", "::"):
        return None
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _serves(cert_path: Path, host: str) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    fresh = cert.not_valid_after_utc > datetime.datetime.now(datetime.UTC) + datetime.timedelta(
        days=1)
    wanted = _general_name(host)
    return fresh and (wanted is None or wanted in list(sans))


class KubeletServer:
    """The kubelet API over HTTPS; `start()` binds, `port` is then the bound port."""

    def __init__(self, pods: PodSource, *, host: str, port: int, cert_dir: Path,
                 client_ca_pem: bytes, authorizer: Authorizer, node_name: str = "") -> None:
        self._pods = pods
        self._host = host
        self._port = port
        self._cert_dir = cert_dir
        self._client_ca_pem = client_ca_pem
        self._authorizer = authorizer
        #: The Node's name, the `name` of every authorization check ("" checks all nodes).
        self._node_name = node_name
        self._runner: web.AppRunner | None = None
        self._sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()

    @property
    def port(self) -> int:
        if self._runner is not None and self._runner.addresses:
            return int(self._runner.addresses[0][1])
        return self._port

    async def start(self) -> None:
        cert, key = ensure_serving_certificate(self._cert_dir, self._host)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH,
                                             cadata=self._client_ca_pem.decode("ascii"))
        context.load_cert_chain(cert, key)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_OPTIONAL
        app = web.Application(middlewares=[self._authenticate])
        routes = [
            web.get("/healthz", self._healthz),
            web.get("/pods", self._list_pods),
            web.get("/stats/summary", self._stats_summary),
            web.get("/containerLogs/{namespace}/{pod}/{container}", self._container_logs),
        ]
        for method in ("GET", "POST"):
            for uid in ("", "/{uid}"):
                routes += [
                    web.route(method, f"/exec/{{namespace}}/{{pod}}{uid}/{{container}}",
                              self._exec),
                    web.route(method, f"/attach/{{namespace}}/{{pod}}{uid}/{{container}}",
                              self._attach),
                    web.route(method, f"/portForward/{{namespace}}/{{pod}}{uid}",
                              self._port_forward),
                ]
        routes += [web.post("/run/{namespace}/{pod}/{container}", self._run),
                   web.post("/run/{namespace}/{pod}/{uid}/{container}", self._run)]
        app.add_routes(routes)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                               shutdown_timeout=SHUTDOWN_SECONDS)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port, ssl_context=context).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info("kubelet API listening on https://%s:%d", self._host, self.port)

    async def stop(self) -> None:
        if self._runner is None:
            return
        closing = [asyncio.create_task(ws.close(code=WSCloseCode.GOING_AWAY,
                                                message=b"kubelet stopping"))
                   for ws in list(self._sockets)]
        if closing:  # a client that does not answer the close is not waited for
            await asyncio.wait(closing, timeout=SHUTDOWN_SECONDS)
            for task in closing:
                task.cancel()
            await asyncio.gather(*closing, return_exceptions=True)
        await self._runner.cleanup()
        self._runner = None

    # -- authentication and authorization ------------------------------------------------------

    @web.middleware
    async def _authenticate(self, request: web.Request,
                            handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                            ) -> web.StreamResponse:
        identity = _client_identity(request)
        if identity is None:
            return _text(401, "Unauthorized")
        user, groups = identity
        verb, subresource = request_attributes(request.method, request.path)
        described = f"(user={user}, verb={verb}, resource=nodes, subresource={subresource})"
        try:
            allowed = await self._authorizer(user, groups, verb, "nodes", subresource,
                                             self._node_name)
        except Exception:
            log.exception("authorizing %s %s %s", request.method, request.path, described)
            return _text(500, f"Authorization error {described}")
        if not allowed:
            return _text(403, f"Forbidden {described}")
        return await handler(request)

    # -- plain endpoints -----------------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        return _text(200, "ok")

    async def _list_pods(self, request: web.Request) -> web.Response:
        body = {"kind": "PodList", "apiVersion": "v1", "metadata": {},
                "items": list(self._pods.pods())}
        return web.json_response(body, dumps=_dumps)

    async def _stats_summary(self, request: web.Request) -> web.Response:
        return web.json_response(await self._pods.stats_summary(), dumps=_dumps)

    async def _container_logs(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["pod"]
        container = request.match_info["container"]
        try:
            options = LogOptions.from_query(request.query)
        except ValueError:
            return _text(400, '{"message": "Unable to decode query."}')
        if not options.valid():
            return _text(422, '{"message": "Invalid request."}')
        pod = self._pods.find_pod(namespace, name)
        if pod is None:
            return _text(404, f'pod "{name}" does not exist')
        if container not in _container_names(pod):
            return _text(404, f'container "{container}" not found in pod "{name}"')
        path = self._pods.log_path(namespace, name, container, previous=options.previous)
        if path is None:
            return _text(400, _no_logs_reason(pod, container, previous=options.previous))

        def running() -> bool:
            return not options.previous and self._pods.container_running(namespace, name,
                                                                         container)

        response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8",
                                               "Cache-Control": "no-cache, private"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunks = read_log(path, follow=options.follow, tail_lines=options.tail_lines,
                          since=options.since(), timestamps=options.timestamps,
                          limit_bytes=options.limit_bytes, running=running)
        try:
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    await response.write(chunk)
            await response.write_eof()
        except ConnectionError:
            log.debug("log reader of %s/%s/%s went away", namespace, name, container)
        except OSError as err:
            log.warning("reading the log of %s/%s/%s: %s", namespace, name, container, err)
        return response

    async def _run(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["pod"]
        container = request.match_info["container"]
        if self._find_pod(namespace, name, request.match_info.get("uid")) is None:
            return _text(404, "pod does not exist")
        running = self._pods.running_container(namespace, name, container)
        if running is None:
            return _text(500, f'container not found ("{container}")')
        argv = request.query.get("cmd", "").split(" ")
        runtime, container_id = running
        try:
            session = await runtime.exec(container_id, argv, tty=False, stdin=False)
        except RuntimeFailure as failure:
            return _text(500, failure.message)
        try:
            out: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}
            async for stream, data in session.output():
                out.setdefault(stream, bytearray()).extend(data)
            code = await session.wait()
        finally:
            await session.close()
        if code != 0:
            return _text(500, f"command '{' '.join(argv)}' exited with {code}: "
                              f"{out[2].decode('utf-8', 'replace')}")
        return web.Response(body=bytes(out[1] + out[2]), content_type="application/json")

    # -- exec and attach -----------------------------------------------------------------------

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        argv = request.query.getall("command", [])
        if not argv:
            return _text(400, "you must specify at least one command for the container")
        return await self._remote_command(request, argv)

    async def _attach(self, request: web.Request) -> web.StreamResponse:
        return await self._remote_command(request, None)

    async def _remote_command(self, request: web.Request,
                              argv: list[str] | None) -> web.StreamResponse:
        """exec (argv given) or attach, as the CRI streaming server serves them."""
        namespace, name = request.match_info["namespace"], request.match_info["pod"]
        container = request.match_info["container"]
        try:
            options = StreamOptions.from_query(request.query)
        except ValueError as err:
            return _text(400, str(err))
        if self._find_pod(namespace, name, request.match_info.get("uid")) is None:
            return _text(404, "pod does not exist")
        running = self._pods.running_container(namespace, name, container)
        if running is None:
            return _text(500, f'container not found ("{container}")')
        chosen = _choose_protocol(request, streaming.REMOTE_COMMAND_PROTOCOLS)
        if isinstance(chosen, web.Response):
            return chosen
        protocol = streaming.REMOTE_COMMAND_PROTOCOLS[chosen]
        ws = await self._upgrade(request, chosen)
        try:
            await _send(ws, protocol.encode(options.first_output_channel()))
            runtime, container_id = running
            try:
                if argv is None:
                    session = await runtime.attach(container_id, stdin=options.stdin)
                else:
                    session = await runtime.exec(container_id, argv, tty=options.tty,
                                                 stdin=options.stdin)
            except RuntimeFailure as failure:
                what = ("error attaching to container" if argv is None else
                        "error executing command in container: failed to exec in container")
                await _finish(ws, protocol, streaming.internal_error_status(
                    f"{what}: {failure.message}"))
                return ws
            try:
                status = await _serve_session(ws, protocol, session, options, argv)
            finally:
                await session.close()
            if status is not None:
                await _finish(ws, protocol, status)
        except ConnectionError:
            log.debug("client of %s/%s/%s went away", namespace, name, container)
        finally:
            await ws.close()
        return ws

    # -- port-forward --------------------------------------------------------------------------

    async def _port_forward(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["pod"]
        offered = streaming.offered_protocols(request.headers.get("Sec-WebSocket-Protocol"))
        tunnel = streaming.SPDY_PORT_FORWARD_TUNNEL in offered
        ports: list[int] = []
        if not tunnel and _is_websocket(request):
            try:
                ports = _forward_ports(request.query)
            except ValueError as err:
                return _text(400, str(err))
        pod = self._find_pod(namespace, name, request.match_info.get("uid"))
        if pod is None:
            return _text(404, "pod does not exist")
        target = _ForwardTarget(
            ip=self._pods.pod_ip(namespace, name), netns=self._pods.pod_netns(namespace, name),
            label=f"{name}_{namespace}, uid {(pod.get('metadata') or {}).get('uid', '')}")
        if tunnel:
            if not _is_websocket(request):
                return _text(400, "Upgrade request required")
            ws = await self._upgrade(request, streaming.SPDY_PORT_FORWARD_TUNNEL)
            try:
                await _tunnel_port_forward(ws, target)
            finally:
                await ws.close()
            return ws
        chosen = _choose_protocol(request, streaming.PORT_FORWARD_PROTOCOLS)
        if isinstance(chosen, web.Response):
            return chosen
        ws = await self._upgrade(request, chosen)
        try:
            await _channel_port_forward(ws, streaming.PORT_FORWARD_PROTOCOLS[chosen], ports,
                                        target)
        finally:
            await ws.close()
        return ws

    # -- helpers -------------------------------------------------------------------------------

    def _find_pod(self, namespace: str, name: str, uid: str | None) -> Mapping[str, Any] | None:
        pod = self._pods.find_pod(namespace, name)
        if pod is not None and uid and (pod.get("metadata") or {}).get("uid") != uid:
            return None
        return pod

    async def _upgrade(self, request: web.Request, protocol: str) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=(protocol,) if protocol else ())
        await ws.prepare(request)
        self._sockets.add(ws)
        return ws


# -- request options ---------------------------------------------------------------------------

def _query_bool(value: str) -> bool:
    """A boolean query parameter as apimachinery converts it: only "0", "f" and "false" are
    false (so a bare `?follow` is true)."""
    return value not in ("0",) and value.lower() not in ("f", "false")


def _query_int(query: Mapping[str, str], key: str) -> int | None:
    value = query.get(key, "")
    return int(value) if value != "" else None


@dataclass(frozen=True)
class LogOptions:
    """The kubelet's view of `v1.PodLogOptions` from the query string."""

    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    since_seconds: int | None = None
    since_time: float | None = None
    limit_bytes: int | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> LogOptions:
        """Raises ValueError for a value that does not parse."""
        tail: int | None
        if query.get("tail", ""):  # the old spelling of tailLines; "all" means no limit
            tail = None if query["tail"] == "all" else int(query["tail"])
        else:
            tail = _query_int(query, "tailLines")
        since_time = None
        if query.get("sinceTime", ""):
            moment = datetime.datetime.fromisoformat(query["sinceTime"])
            if moment.tzinfo is None:
                raise ValueError("sinceTime needs a time zone")
            since_time = moment.timestamp()
        return cls(
            follow=_query_bool(query["follow"]) if "follow" in query else False,
            previous=_query_bool(query["previous"]) if "previous" in query else False,
            timestamps=_query_bool(query["timestamps"]) if "timestamps" in query else False,
            tail_lines=tail,
            since_seconds=_query_int(query, "sinceSeconds"),
            since_time=since_time,
            limit_bytes=_query_int(query, "limitBytes"),
        )

    def valid(self) -> bool:
        """ValidatePodLogOptions."""
        if self.tail_lines is not None and self.tail_lines < 0:
            return False
        if self.limit_bytes is not None and self.limit_bytes < 1:
            return False
        if self.since_seconds is not None and self.since_time is not None:
            return False
        return self.since_seconds is None or self.since_seconds >= 1

    def since(self) -> float | None:
        """The earliest log time asked for, in epoch seconds."""
        if self.since_seconds is not None:
            return time.time() - self.since_seconds
        return self.since_time


@dataclass(frozen=True)
class StreamOptions:
    """Which standard streams an exec or attach wants, and whether it has a terminal."""

    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> StreamOptions:
        """The kubelet's names (input, output, error) or the API server's (stdin, stdout,
        stderr), "1" or "true"; a terminal merges stderr into stdout."""

        def flag(*names: str) -> bool:
            return any(query.get(n, "").lower() in ("1", "true") for n in names)

        tty = flag("tty")
        options = cls(stdin=flag("input", "stdin"), stdout=flag("output", "stdout"),
                      stderr=flag("error", "stderr") and not tty, tty=tty)
        if not (options.stdin or options.stdout or options.stderr):
            raise ValueError("you must specify at least 1 of stdin, stdout, stderr")
        return options

    def first_output_channel(self) -> int:
        """Where the server's first (empty) message goes: the lowest channel it writes."""
        if self.stdout:
            return streaming.STDOUT
        return streaming.STDERR if self.stderr else streaming.ERROR


def _forward_ports(query: MultiMapping[str]) -> list[int]:
    """The ports of a channel port-forward: `port` (the kubelet's name) or `ports`, each
    repeatable and comma-separated."""
    values = [v for key in ("port", "ports") for v in query.getall(key, [])]
    if not values:
        raise ValueError('query parameter "port" is required')
    ports = []
    for value in values:
        if not value:
            raise ValueError('query parameter "port" cannot be empty')
        for part in value.split(","):
            try:
                port = int(part)
            except ValueError:
                raise ValueError(f'unable to parse "{value}" as a port') from None
            if not 0 < port < 65536:
                raise ValueError(f'port "{value}" must be > 0 and < 65536')
            ports.append(port)
    return ports


def _container_names(pod: Mapping[str, Any]) -> set[str]:
    spec = pod.get("spec") or {}
    return {c.get("name") for key in ("containers", "initContainers", "ephemeralContainers")
            for c in spec.get(key) or []}


def _no_logs_reason(pod: Mapping[str, Any], container: str, *, previous: bool) -> str:
    """Why a container has no log to show (kubelet validateContainerLogStatus)."""
    name = (pod.get("metadata") or {}).get("name", "")
    if previous:
        return f'previous terminated container "{container}" in pod "{name}" not found'
    status = pod.get("status") or {}
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for entry in status.get(key) or []:
            if entry.get("name") != container:
                continue
            waiting = (entry.get("state") or {}).get("waiting")
            if waiting is None:
                break
            reason = waiting.get("reason", "")
            if reason == "ErrImagePull":
                reason = "image can't be pulled"
            elif reason == "ImagePullBackOff":
                reason = "trying and failing to pull image"
            return f'container "{container}" in pod "{name}" is waiting to start: {reason}'
    return f'container "{container}" in pod "{name}" is waiting to start - no logs yet'


def _client_identity(request: web.Request) -> tuple[str, list[str]] | None:
    """(user, groups) from the verified client certificate: CN and O, as the kubelet's x509
    authenticator reads them."""
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return None
    user, groups = "", []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                user = value
            elif key == "organizationName":
                groups.append(value)
    return (user, groups) if user else None


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def _choose_protocol(request: web.Request,
                     supported: Mapping[str, ChannelProtocol]) -> str | web.Response:
    """The subprotocol to answer a WebSocket upgrade with, or the error response."""
    if not _is_websocket(request):
        return _text(400, "Upgrade request required")
    offered = streaming.offered_protocols(request.headers.get("Sec-WebSocket-Protocol"))
    chosen = streaming.negotiate(offered, supported)
    if chosen is None:
        return _text(400, f"requested protocol(s) are not supported: {offered}; "
                          f"supports {[p for p in supported if p]}")
    return chosen


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


async def _send(ws: web.WebSocketResponse, message: bytes | str) -> None:
    if isinstance(message, str):
        await ws.send_str(message)
    else:
        await ws.send_bytes(message)


# -- exec and attach sessions ------------------------------------------------------------------

async def _serve_session(ws: web.WebSocketResponse, protocol: ChannelProtocol,
                         session: StreamSession, options: StreamOptions,
                         argv: Sequence[str] | None) -> dict[str, Any] | None:
    """Pump a session both ways until its output ends (then: the Status to report) or the
    client leaves (then: None)."""
    reader = asyncio.create_task(_read_client(ws, protocol, session, options))
    writer = asyncio.create_task(_write_output(ws, protocol, session, options))
    try:
        done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reader, writer):
            task.cancel()
        await asyncio.gather(reader, writer, return_exceptions=True)
    if writer not in done:
        return None
    writer.result()  # a failed send: the client is gone
    if argv is None:
        return streaming.success_status()
    code = await session.wait()
    return streaming.success_status() if code == 0 else streaming.exit_code_status(code, argv)


async def _read_client(ws: web.WebSocketResponse, protocol: ChannelProtocol,
                       session: StreamSession, options: StreamOptions) -> None:
    """Client messages to the session: stdin, its close signal, terminal sizes."""
    sizes = streaming.ResizeDecoder()
    stdin_open = options.stdin
    async for message in ws:
        if message.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
            continue
        frame = protocol.decode(message.data)
        if frame is None:
            continue
        try:
            if frame.channel == streaming.STDIN and stdin_open:
                if frame.close:
                    stdin_open = False
                    await session.close_stdin()
                elif frame.data:
                    await session.write_stdin(frame.data)
            elif frame.channel == streaming.RESIZE and options.tty and not frame.close:
                for width, height in sizes.feed(frame.data):
                    await session.resize(width, height)
        except OSError as err:  # the process closed its stdin or ended
            log.debug("dropping input for a finished session: %s", err)
            stdin_open = False


async def _write_output(ws: web.WebSocketResponse, protocol: ChannelProtocol,
                        session: StreamSession, options: StreamOptions) -> None:
    async for stream, data in session.output():
        channel = streaming.STDOUT if stream == 1 or options.tty else streaming.STDERR
        wanted = options.stdout if channel == streaming.STDOUT else options.stderr
        if wanted and data:
            await _send(ws, protocol.encode(channel, data))


async def _finish(ws: web.WebSocketResponse, protocol: ChannelProtocol,
                  status: Mapping[str, Any]) -> None:
    """Report how the session ended on the error channel; the caller then closes (normal
    closure: clients read to the end, then see EOF on every stream)."""
    payload = streaming.error_channel_payload(protocol, status)
    if payload is not None:
        await _send(ws, protocol.encode(streaming.ERROR, payload))


# -- port-forward ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _ForwardTarget:
    ip: str | None
    #: The pod's network namespace (None: it is on the host's network).
    netns: str | None
    #: How error messages name the pod: "<name>_<namespace>, uid <uid>".
    label: str


async def _dial(target: _ForwardTarget, port: int
                ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the pod's port: in its own network namespace, to localhost first
    (where containerd's port-forward dials), then to the pod's IP; else to the pod's IP."""
    if target.ip is None:
        raise OSError("the pod has no IP address yet")
    if target.netns is None:
        return await asyncio.open_connection(target.ip, port)
    try:
        sock = await connect_in_netns(target.netns, "127.0.0.1", port)
    except ConnectionRefusedError:
        sock = await connect_in_netns(target.netns, target.ip, port)
    return await asyncio.open_connection(sock=sock)


class _ByteStream(Protocol):
    """One forwarded connection's client side: a SPDY data stream, or a port's channel."""

    async def read(self) -> bytes: ...
    async def write(self, data: bytes) -> None: ...
    async def close(self) -> None: ...


async def _forward(target: _ForwardTarget, port: int, client: _ByteStream,
                   report_error: Callable[[str], Awaitable[None]]) -> None:
    """Connect to the pod's port and copy both ways. When one direction ends the other has
    FORWARD_LINGER_SECONDS to finish; a failure goes to the error stream as the kubelet
    words it ("error forwarding port P to pod NAME_NS, uid U: ...")."""
    try:
        reader, writer = await _dial(target, port)
    except OSError as err:
        detail = os.strerror(err.errno).lower() if err.errno else str(err)
        await report_error(f"error forwarding port {port} to pod {target.label}: "
                           f"dial tcp {target.ip}:{port}: connect: {detail}")
        return

    async def to_pod() -> None:
        while data := await client.read():
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    async def to_client() -> None:
        while data := await reader.read(READ_CHUNK):
            await client.write(data)
        await client.close()

    tasks = {asyncio.create_task(to_pod()), asyncio.create_task(to_client())}
    try:
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if pending:
            await asyncio.wait(pending, timeout=FORWARD_LINGER_SECONDS)
    finally:
        for task in tasks:
            task.cancel()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, Exception) and not isinstance(result, ConnectionError):
                log.warning("forwarding port %d of pod %s: %r", port, target.label, result)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


class _PortChannel:
    """A forwarded port's data channel in the channel protocol."""

    def __init__(self, ws: web.WebSocketResponse, protocol: ChannelProtocol,
                 channel: int) -> None:
        self._ws, self._protocol, self._channel = ws, protocol, channel
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()

    async def read(self) -> bytes:
        return await self.inbox.get()

    async def write(self, data: bytes) -> None:
        await _send(self._ws, self._protocol.encode(self._channel, data))

    async def close(self) -> None:
        """The channel protocol has no per-channel close: the connection's end says it."""


async def _channel_port_forward(ws: web.WebSocketResponse, protocol: ChannelProtocol,
                                ports: list[int], target: _ForwardTarget) -> None:
    """Port i of the request on channels 2i (data) and 2i+1 (error); the connection ends
    when every port's forward has ended, or when the client leaves."""
    channels = [_PortChannel(ws, protocol, 2 * i) for i in range(len(ports))]
    for i, port in enumerate(ports):
        await _send(ws, protocol.encode(2 * i, streaming.port_prefix(port)))
        await _send(ws, protocol.encode(2 * i + 1, streaming.port_prefix(port)))

    async def forward(i: int, port: int) -> None:
        async def report(message: str) -> None:
            await _send(ws, protocol.encode(2 * i + 1, message.encode()))

        await _forward(target, port, channels[i], report)

    async def read_client() -> None:
        try:
            async for message in ws:
                if message.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                    continue
                frame = protocol.decode(message.data)
                if frame is not None and frame.channel % 2 == 0 and \
                        frame.channel // 2 < len(channels) and frame.data:
                    channels[frame.channel // 2].inbox.put_nowait(frame.data)
        finally:
            for channel in channels:
                channel.inbox.put_nowait(b"")

    forwards = asyncio.gather(*(forward(i, port) for i, port in enumerate(ports)))
    reader = asyncio.create_task(read_client())
    try:
        await asyncio.wait({forwards, reader}, return_when=asyncio.FIRST_COMPLETED)
        if not forwards.done():  # the client left: its channels are at EOF
            await asyncio.wait({forwards}, timeout=FORWARD_LINGER_SECONDS)
    finally:
        forwards.cancel()
        reader.cancel()
        await asyncio.gather(forwards, reader, return_exceptions=True)


@dataclass
class _StreamPair:
    data: SpdyStream | None = None
    error: SpdyStream | None = None


async def _tunnel_port_forward(ws: web.WebSocketResponse, target: _ForwardTarget) -> None:
    """kubectl's port-forward: a SPDY connection inside the WebSocket. Each forwarded
    connection opens an error and a data stream with the same `requestid`; once both are
    there, the pod's port is dialled (kubelet `portforward/httpstream.go`)."""
    session = SpdySession(ws.send_bytes)
    pairs: dict[str, _StreamPair] = {}
    forwards: set[asyncio.Task[None]] = set()

    async def forward(pair: _StreamPair) -> None:
        assert pair.data is not None and pair.error is not None
        data, error = pair.data, pair.error
        port = int(data.header("port"))

        async def report(message: str) -> None:
            await error.write(message.encode())

        try:
            await _forward(target, port, data, report)
            await error.close()
            await data.close()
        except ConnectionError:
            pass
        finally:
            session.discard(error)
            session.discard(data)

    try:
        async for message in ws:
            if message.type != WSMsgType.BINARY:
                break
            try:
                opened = await session.receive(message.data)
            except streaming.SpdyProtocolError as err:
                log.warning("port-forward to pod %s: %s", target.label, err)
                break
            for stream in opened:
                problem = _stream_problem(stream)
                if problem is not None:
                    log.debug("refusing port-forward stream %d: %s", stream.id, problem)
                    await session.refuse(stream)
                    continue
                await session.accept(stream)
                request_id = _request_id(stream)
                pair = pairs.setdefault(request_id, _StreamPair())
                kind = stream.header("streamtype")
                if getattr(pair, kind) is not None:
                    if pair.error is not None:
                        await pair.error.write(f"error processing stream for request "
                                               f"{request_id}: {kind} stream already "
                                               f"assigned".encode())
                    await stream.reset()
                    continue
                setattr(pair, kind, stream)
                if pair.data is not None and pair.error is not None:
                    del pairs[request_id]
                    task = asyncio.create_task(forward(pair))
                    forwards.add(task)
                    task.add_done_callback(forwards.discard)
    finally:
        session.close()
        for task in forwards:
            task.cancel()
        await asyncio.gather(*forwards, return_exceptions=True)


def _stream_problem(stream: SpdyStream) -> str | None:
    """Why a port-forward stream is refused (kubelet httpStreamReceived), or None."""
    port = stream.header("port")
    if not port:
        return '"port" header is required'
    if not port.isdigit() or not 0 < int(port) < 65536:
        return f'unable to parse "{port}" as a port'
    kind = stream.header("streamtype")
    if not kind:
        return '"streamType" header is required'
    if kind not in ("data", "error"):
        return f'invalid stream type "{kind}"'
    return None


def _request_id(stream: SpdyStream) -> str:
    """A stream's `requestid`; old clients sent none, and their error and data streams of
    one connection are consecutive odd ids (the kubelet's guess, kept)."""
    request_id = stream.header("requestid")
    if request_id:
        return request_id
    offset = 0 if stream.header("streamtype") == "error" else 2
    return str(stream.id - offset)
