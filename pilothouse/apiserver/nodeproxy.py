"""The API server's side of the node agent: reaching a pod's kubelet and relaying to it.

kube-apiserver serves pods/log, pods/exec, pods/attach and pods/portforward by finding the
pod's node, finding that node's kubelet, and proxying to it (the *Location functions of
pkg/registry/core/pod/strategy.go, then an upgrade-aware proxy). So does this module:

- the pod must exist, name a valid container (exec, attach and log: the one asked for,
  else the `kubectl.kubernetes.io/default-container` annotation, else the only container)
  and be bound to a node (`spec.nodeName`);
- the kubelet is at the node's first `InternalIP` (else `Hostname`) address in
  `status.addresses`, on `status.daemonEndpoints.kubeletEndpoint.Port`. A hollow node
  (runtime `hollow://`) or a node without a port has no kubelet to reach: a 400 says so;
- the kubelet serves `/containerLogs/{ns}/{pod}/{container}`, `/exec/...`,
  `/attach/{ns}/{pod}/{container}`, `/portForward/{ns}/{pod}` and `/stats/summary` over
  HTTPS. The API server presents its kubelet client certificate (`pki.py`); it does not
  verify the kubelet's self-signed serving certificate, as kube-apiserver does not when
  `--kubelet-certificate-authority` is unset.

Streams: exec, attach and port-forward arrive as WebSockets (kubectl 1.30+ for exec and
attach, 1.31+ for port-forward). The relay opens a WebSocket to the kubelet offering the
client's subprotocols, accepts the client with the one the kubelet chose, and copies
messages both ways until either side closes; the bytes are not interpreted, so
`v5.channel.k8s.io`, `v4.channel.k8s.io` and `SPDY/3.1+portforward.k8s.io` (SPDY frames
inside binary messages) all pass. If the kubelet refuses or cannot be reached, a channel
client gets the Status on the error channel (as kube-apiserver's stream translator writes
it); others get it as the handshake's HTTP response. Plain SPDY upgrades cannot pass an
ASGI server, so they are answered with a 400 that says to use WebSocket, after the same
checks: kubectl falls back to SPDY when its WebSocket is refused, and prints what the
SPDY request is told, so a missing pod or container still reads as such.

Logs are the kubelet's response, streamed through as it arrives (`follow` included) until
the kubelet ends it or the client goes away; a pod not scheduled yet has an empty log, as
kube-apiserver answers. A kubelet that cannot be reached is a 503 naming its address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson

from ..machinery import errors
from .http import Handler, Request, Response
from .registry import Resource, ResourceTable
from .registry.generic import GenericRegistry
from .requestinfo import RequestInfo

log = logging.getLogger(__name__)

DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
#: What a hollow node reports as its container runtime (node/hollow.py): nothing runs there.
HOLLOW_RUNTIME_PREFIX = "hollow://"
#: Node address types tried in order for the kubelet's host.
ADDRESS_TYPES = ("InternalIP", "Hostname")
CONNECT_TIMEOUT = 5.0
#: The query parameters of pods/log the kubelet's /containerLogs takes.
LOG_PARAMS = ("follow", "previous", "timestamps", "sinceSeconds", "sinceTime", "limitBytes",
              "tailLines")
#: Channel protocols whose error channel (3) carries a Status as JSON.
STATUS_CHANNEL_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
ERROR_CHANNEL = 3
_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            409: "Conflict", 500: "InternalError", 503: "ServiceUnavailable",
            504: "Timeout"}
# WebSocket close codes that say why a connection ended but may not be sent in a frame.
_UNSENDABLE_CLOSE = {1005: 1000, 1006: 1011, 1015: 1011}
_SPDY_REFUSAL = (
    "{what} over SPDY is not supported: this server streams exec/attach/port-forward over "
    "WebSocket (v5.channel.k8s.io); use kubectl 1.30 or newer (1.31 for port-forward) and "
    "leave KUBECTL_REMOTE_COMMAND_WEBSOCKETS and KUBECTL_PORT_FORWARD_WEBSOCKETS unset")


@dataclass(frozen=True)
class KubeletEndpoint:
    """Where one node's kubelet listens."""

    node: str
    host: str
    port: int

    def url(self, path: str, query: Iterable[tuple[str, str]] = (), scheme: str = "https") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        encoded = urlencode(list(query))
        return f"{scheme}://{host}:{self.port}{path}" + (f"?{encoded}" if encoded else "")


def kubelet_endpoint(node: Mapping[str, Any]) -> KubeletEndpoint:
    """The kubelet of a Node object, or a 400 saying why it has none to reach."""
    name = (node.get("metadata") or {}).get("name", "")
    status = node.get("status") or {}
    runtime = str((status.get("nodeInfo") or {}).get("containerRuntimeVersion") or "")
    if runtime.startswith(HOLLOW_RUNTIME_PREFIX):
        raise errors.bad_request(f"node {name} has no kubelet endpoint (hollow node): logs "
                                 "and exec need a real node agent")
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise errors.bad_request(
            f"node {name} has no kubelet endpoint (status.daemonEndpoints.kubeletEndpoint.Port "
            "is not set): logs and exec need a running node agent")
    addresses = status.get("addresses") or []
    for kind in ADDRESS_TYPES:
        for address in addresses:
            if address.get("type") == kind and address.get("address"):
                return KubeletEndpoint(name, str(address["address"]), port)
    known = ", ".join(f"{a.get('type')}: {a.get('address')}" for a in addresses) or "none"
    raise errors.bad_request(
        f"node {name} reports no {' or '.join(ADDRESS_TYPES)} address, so its kubelet cannot "
        f"be reached (known addresses: {known})")


def _names(containers: Any) -> list[str]:
    return [str(c.get("name")) for c in containers or () if isinstance(c, dict)]


def select_container(pod: Mapping[str, Any], requested: str) -> str:
    """The container a log/exec/attach request is about, as kube-apiserver picks it.

    An explicit name must be one of the pod's containers (init and ephemeral ones
    included). Without one: the default-container annotation if it names a container,
    else the only container, else a 400 listing the choices.
    """
    meta = pod.get("metadata") or {}
    name = meta.get("name", "")
    spec = pod.get("spec") or {}
    containers = _names(spec.get("containers"))
    init = _names(spec.get("initContainers"))
    if requested:
        if requested not in (*containers, *init, *_names(spec.get("ephemeralContainers"))):
            raise errors.bad_request(f"container {requested} is not valid for pod {name}")
        return requested
    default = (meta.get("annotations") or {}).get(DEFAULT_CONTAINER_ANNOTATION)
    if default in containers:
        return default
    if len(containers) == 1:
        return containers[0]
    if not containers:
        raise errors.bad_request(f"a container name must be specified for pod {name}")
    message = (f"a container name must be specified for pod {name}, choose one of: "
               f"[{' '.join(containers)}]")
    if init:
        message += f" or one of the init containers: [{' '.join(init)}]"
    raise errors.bad_request(message)


def kubelet_error(node: str, status: int, body: bytes) -> errors.APIError:
    """What a kubelet's refusal becomes for the API client: its own Status if it sent one,
    else its text under the reason its code means (as kube-apiserver's response checker)."""
    with contextlib.suppress(orjson.JSONDecodeError):
        sent = orjson.loads(body)
        if isinstance(sent, dict) and sent.get("kind") == "Status" and sent.get("message"):
            code = sent.get("code") if isinstance(sent.get("code"), int) else status
            return errors.APIError(code, str(sent.get("reason") or _REASONS.get(code, "")),
                                   str(sent["message"]))
    text = body.decode("utf-8", "replace").strip()
    if status == 500:
        return errors.internal(text or f"the kubelet of node {node} failed")
    if not text:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        text = f"the kubelet of node {node} answered {status} {phrase}".rstrip()
    return errors.APIError(status, _REASONS.get(status, ""), text)


def _unreachable(endpoint: KubeletEndpoint, exc: BaseException) -> errors.APIError:
    detail = str(exc) or type(exc).__name__
    return errors.APIError(
        503, "ServiceUnavailable",
        f"cannot reach the kubelet of node {endpoint.node} at {endpoint.host}:{endpoint.port}: "
        f"{detail}")


#: Where a refused WebSocket handshake's body goes while `KubeletClient.connect` waits:
#: aiohttp's ws_connect raises without it, and it is the kubelet's reason.
_REFUSAL_BODY: ContextVar[list[bytes] | None] = ContextVar("kubelet_refusal", default=None)


async def _keep_refusal_body(session: aiohttp.ClientSession, context: Any,
                             params: aiohttp.TraceRequestEndParams) -> None:
    sink = _REFUSAL_BODY.get()
    if sink is not None and params.response.status != 101:
        with contextlib.suppress(TimeoutError, aiohttp.ClientError):
            async with asyncio.timeout(CONNECT_TIMEOUT):
                sink.append(await params.response.content.read(64 * 1024))


class KubeletClient:
    """HTTPS to kubelets with the API server's kubelet client certificate."""

    def __init__(self, *, cert: Path, key: Path, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        # Kubelets serve a self-signed certificate; kube-apiserver without
        # --kubelet-certificate-authority does not verify it either.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.load_cert_chain(cert, key)
        self.ssl = context
        self.connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The session that presents the kubelet client certificate (nodes/proxy relays
        through it)."""
        return self._client()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            tracing = aiohttp.TraceConfig()
            tracing.on_request_end.append(_keep_refusal_body)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.ssl, limit=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout),
                auto_decompress=False, trace_configs=[tracing])
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @contextlib.asynccontextmanager
    async def get(self, endpoint: KubeletEndpoint, path: str,
                  query: Iterable[tuple[str, str]] = ()) -> AsyncIterator[aiohttp.ClientResponse]:
        """A GET whose 2xx response is yielded unread; anything else raises the APIError
        the API client should see."""
        try:
            async with self._client().get(endpoint.url(path, query)) as response:
                if not 200 <= response.status < 300:
                    body = await response.content.read(64 * 1024)
                    raise kubelet_error(endpoint.node, response.status, body)
                yield response
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unreachable(endpoint, exc) from None

    async def get_json(self, endpoint: KubeletEndpoint, path: str, *, timeout: float) -> Any:
        async with asyncio.timeout(timeout), self.get(endpoint, path) as response:
            return orjson.loads(await response.read())

    async def connect(self, endpoint: KubeletEndpoint, path: str,
                      query: Iterable[tuple[str, str]],
                      subprotocols: Iterable[str]) -> aiohttp.ClientWebSocketResponse:
        """A WebSocket to the kubelet; its refusal raises the APIError to show."""
        refusal: list[bytes] = []
        token = _REFUSAL_BODY.set(refusal)
        try:
            return await self._client().ws_connect(
                endpoint.url(path, query), protocols=tuple(subprotocols), compress=0,
                max_msg_size=0, autoping=True)
        except aiohttp.WSServerHandshakeError as refused:
            if refused.status == 101:  # upgraded, but not to a WebSocket we can speak
                raise _unreachable(endpoint, refused) from None
            raise kubelet_error(endpoint.node, refused.status, b"".join(refusal)) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unreachable(endpoint, exc) from None
        finally:
            _REFUSAL_BODY.reset(token)


class NodeProxy:
    """The handlers of pods/log, pods/exec, pods/attach and pods/portforward."""

    def __init__(self, *, table: ResourceTable, registry: GenericRegistry,
                 kubelets: KubeletClient) -> None:
        self.registry = registry
        self.kubelets = kubelets
        nodes = table.lookup("", "v1", "nodes")
        assert nodes is not None
        self._nodes = nodes

    def handlers(self) -> dict[tuple[str, str], Handler]:
        return {
            ("pods", "log"): self.log,
            ("pods", "exec"): self.exec,
            ("pods", "attach"): self.attach,
            ("pods", "portforward"): self.port_forward,
        }

    async def endpoint(self, node_name: str) -> KubeletEndpoint:
        return kubelet_endpoint(await self.registry.get(self._nodes, None, node_name))

    # -- logs ---------------------------------------------------------------------------

    async def log(self, request: Request, info: RequestInfo, res: Resource) -> Response | None:
        if request.method != "GET":
            raise errors.method_not_allowed()
        pod = await self.registry.get(res, info.namespace, info.name)
        container = select_container(pod, request.param("container"))
        for name in ("tailLines", "limitBytes", "sinceSeconds"):
            request.int_param(name)
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            # Not scheduled yet: no logs, as kube-apiserver answers (an empty stream).
            return Response(200, b"", "text/plain")
        endpoint = await self.endpoint(node)
        query = [(k, v) for k, v in request.query_items if k in LOG_PARAMS]
        path = f"/containerLogs/{_segment(info.namespace)}/{_segment(info.name)}/" \
               f"{_segment(container)}"
        async with self.kubelets.get(endpoint, path, query) as response:
            await stream_response(request, response)
        return None

    # -- exec, attach, port-forward -----------------------------------------------------

    async def exec(self, request: Request, info: RequestInfo, res: Resource) -> Response | None:
        return await self._connect(request, info, res, "exec")

    async def attach(self, request: Request, info: RequestInfo, res: Resource) -> Response | None:
        return await self._connect(request, info, res, "attach")

    async def port_forward(self, request: Request, info: RequestInfo,
                           res: Resource) -> Response | None:
        return await self._connect(request, info, res, "portForward")

    async def _connect(self, request: Request, info: RequestInfo, res: Resource,
                       action: str) -> Response | None:
        if request.method not in ("GET", "POST"):
            raise errors.method_not_allowed()
        pod = await self.registry.get(res, info.namespace, info.name)
        path = f"/{action}/{_segment(info.namespace)}/{_segment(info.name)}"
        query = request.query_items
        if action != "portForward":
            container = select_container(pod, request.param("container"))
            path += f"/{_segment(container)}"
            query = [(k, v) for k, v in query if k != "container"]
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            raise errors.bad_request(f"pod {info.name} does not have a host assigned")
        endpoint = await self.endpoint(node)
        if not request.websocket:
            upgrade = request.headers.get("upgrade", "")
            if "spdy" in upgrade.lower():
                raise errors.bad_request(_SPDY_REFUSAL.format(what=f"pods/{info.subresource}"))
            raise errors.bad_request("Upgrade request required")
        await self._relay(request, endpoint, path, query)
        return None

    async def _relay(self, request: Request, endpoint: KubeletEndpoint, path: str,
                     query: list[tuple[str, str]]) -> None:
        try:
            upstream = await self.kubelets.connect(endpoint, path, query, request.subprotocols)
        except errors.APIError as err:
            channel = next((p for p in request.subprotocols if p in STATUS_CHANNEL_PROTOCOLS),
                           None)
            if channel is None:
                raise
            # As kube-apiserver's stream translator: accept, report on the error channel.
            await request.send({"type": "websocket.accept", "subprotocol": channel})
            await request.send({"type": "websocket.send",
                                "bytes": bytes([ERROR_CHANNEL]) + orjson.dumps(err.status())})
            await request.send({"type": "websocket.close", "code": 1000})
            return
        try:
            await request.send({"type": "websocket.accept", "subprotocol": upstream.protocol})
            await _pump(request, upstream)
        finally:
            await upstream.close()


async def _pump(request: Request, upstream: aiohttp.ClientWebSocketResponse) -> None:
    """Copy messages both ways until one side closes; pass its close code to the other."""

    async def from_client() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "websocket.disconnect":
                code = message.get("code", 1000)
                await upstream.close(code=_UNSENDABLE_CLOSE.get(code, code),
                                     message=(message.get("reason") or "").encode())
                return
            if message.get("bytes") is not None:
                await upstream.send_bytes(message["bytes"])
            else:
                await upstream.send_str(message.get("text") or "")

    async def from_kubelet() -> None:
        reason = ""
        async for message in upstream:
            if message.type == aiohttp.WSMsgType.BINARY:
                await request.send({"type": "websocket.send", "bytes": message.data})
            elif message.type == aiohttp.WSMsgType.TEXT:
                await request.send({"type": "websocket.send", "text": message.data})
            elif message.type == aiohttp.WSMsgType.ERROR:
                reason = str(message.data)
                break
        code = upstream.close_code or (1011 if reason else 1000)
        await request.send({"type": "websocket.close", "code": _UNSENDABLE_CLOSE.get(code, code),
                            "reason": reason[:120]})

    await _until_first_ends([from_client(), from_kubelet()], f"relaying {request.path}",
                            expected=(OSError, aiohttp.ClientError))


_TEXT_HEADERS = ((b"content-type", b"text/plain"), (b"cache-control", b"no-cache, private"))


async def stream_response(request: Request, response: aiohttp.ClientResponse, *,
                          status: int = 200,
                          headers: Iterable[tuple[bytes, bytes]] = _TEXT_HEADERS) -> None:
    """Send an upstream response body on as it arrives, until it ends or the client leaves,
    under the status and headers given (by default a 200 of plain text, as logs are)."""
    send = request.send
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})

    async def copy() -> None:
        try:
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("the upstream stream for %s ended early: %s", request.path, exc)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def client_gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    await _until_first_ends([copy(), client_gone()], f"streaming {request.path}",
                            expected=(OSError,))


def _segment(value: str) -> str:
    return quote(value, safe="")


__all__ = ["KubeletClient", "KubeletEndpoint", "NodeProxy", "kubelet_endpoint",
           "kubelet_error", "select_container", "stream_response"]


async def _until_first_ends(coroutines: list[Any], what: str, *,
                            expected: tuple[type[BaseException], ...]) -> None:
    """Run the two directions of a relay until either ends, then stop the other; an error
    other than the connection closing (`expected`) is logged."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception) and not isinstance(result, expected):
            log.warning("%s ended with %r", what, result)
