"""The proxy subresources: pods/proxy, services/proxy and nodes/proxy (what `kubectl proxy`
and `kubectl get --raw .../proxy/...` reach a workload through).

kube-apiserver serves them as connect handlers: find where the named object can be
reached (the ResourceLocation functions of pkg/registry/core/{pod,service,node}), then
relay the request there and the answer back. So does this module:

- the name may carry a port and a scheme: `NAME`, `NAME:PORT` or `SCHEME:NAME:PORT`, with
  SCHEME `http` or `https` (anything else is a 400 "invalid ... request");
- a pod is reached at its first IP (`status.podIPs`, else `status.podIP`) on the port
  asked for (a number, or the name of one of its container ports), else its first
  container port, else 80. A pod without an IP is a 400 "address not allowed", as
  kube-apiserver answers; unlike it, loopback addresses are allowed, because the process
  runtime's pods live on 127.x.y.z;
- a Service is reached at a ready endpoint of its EndpointSlices, picked at random. The
  port is a Service port's name (none: the unnamed port) or number, which resolves to
  that port's name and from there to the endpoint's port; a number no Service port has is
  a 503 "no service port N found", and no ready endpoint a 503 "no endpoints available";
- a node is reached at its kubelet (`nodeproxy.kubelet_endpoint`, so hollow nodes get the
  same 400), with the kubelet client certificate; a port other than the kubelet's is
  reached over plain HTTP (or the scheme asked for) on the node's address.

The relay passes the method, the path after `/proxy` (percent-encoding kept), the query
string, the body and the headers, less the hop-by-hop ones and the credentials the API
server consumed (Authorization, impersonation), and adds X-Forwarded-Uri/-Host/-Proto. The
answer comes back with its status and headers (hop-by-hop ones dropped, a same-host
`Location` rewritten to stay under the proxy path) and its body streamed as it arrives.
A target that cannot be reached is a 503 "error trying to reach service: dial tcp ...".

Not done: upgrades (WebSocket through the proxy), rewriting links inside HTML bodies,
and streaming request bodies (they are read whole, at most 3 MiB, as every request is).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import random
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from yarl import URL

from ..machinery import errors
from ..machinery.selectors import parse_label_selector
from .http import Handler, Request
from .nodeproxy import KubeletClient, kubelet_endpoint, stream_response
from .registry import Resource, ResourceTable
from .registry.generic import GenericRegistry
from .requestinfo import RequestInfo

log = logging.getLogger(__name__)

#: The methods a proxy subresource relays (kube-apiserver's proxyMethods).
PROXY_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
VALID_SCHEMES = ("", "http", "https")
DEFAULT_POD_PORT = 80
CONNECT_TIMEOUT = 10.0
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
#: Headers that belong to one connection, never relayed (RFC 9110 7.6.1).
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"})
#: Request headers the API server consumed or sets itself.
_NOT_RELAYED = frozenset({"authorization", "host", "content-length"})
_IMPERSONATION_PREFIX = "impersonate-"


@dataclass(frozen=True)
class ProxyID:
    """A proxy subresource's name: `NAME`, `NAME:PORT` or `SCHEME:NAME:PORT`."""

    scheme: str
    name: str
    port: str

    @classmethod
    def parse(cls, text: str, kind: str) -> ProxyID:
        parts = text.split(":")
        if len(parts) == 1:
            scheme, name, port = "", parts[0], ""
        elif len(parts) == 2:
            scheme, (name, port) = "", parts
        elif len(parts) == 3:
            scheme, name, port = parts
        else:
            raise errors.bad_request(f'invalid {kind} request "{text}"')
        if not name or scheme not in VALID_SCHEMES:
            raise errors.bad_request(f'invalid {kind} request "{text}"')
        return cls(scheme, name, port)


@dataclass(frozen=True)
class Target:
    """Where a proxied request goes: scheme, host and port."""

    scheme: str
    host: str
    port: int

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def url(self, path: str, query: str) -> URL:
        """The target URL for an already-encoded path and query, kept byte for byte."""
        return URL(urlunsplit((self.scheme or "http", self.netloc, path, query, "")),
                   encoded=True)


def _number(port: str) -> int | None:
    if port.isdigit() and 0 < int(port) < 65536:
        return int(port)
    return None


def pod_target(pod: Mapping[str, Any], wanted: ProxyID) -> Target:
    """Where pods/proxy reaches a pod (kube-apiserver's pod ResourceLocation, with named
    container ports resolved and loopback pod IPs allowed)."""
    spec = pod.get("spec") or {}
    ports = [p for c in spec.get("containers") or () for p in c.get("ports") or ()]
    port: int | None
    if not wanted.port:
        port = int(ports[0]["containerPort"]) if ports else DEFAULT_POD_PORT
    else:
        port = _number(wanted.port) or next(
            (int(p["containerPort"]) for p in ports if p.get("name") == wanted.port), None)
        if port is None:
            raise errors.bad_request(
                f'invalid port "{wanted.port}" for pod "{wanted.name}": not a port number '
                "or the name of one of its container ports")
    status = pod.get("status") or {}
    pod_ips = [entry.get("ip") for entry in status.get("podIPs") or () if entry.get("ip")]
    address = pod_ips[0] if pod_ips else status.get("podIP") or ""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise errors.bad_request(
            f'address not allowed: pod "{wanted.name}" has no IP yet (status.podIPs is '
            "empty); wait until it is running") from None
    if ip.is_unspecified or ip.is_multicast:
        raise errors.bad_request(f"address not allowed: {address}")
    return Target(wanted.scheme, str(ip), port)


def service_target(service: Mapping[str, Any], slices: list[Mapping[str, Any]],
                   wanted: ProxyID, *, choose: Any = random.choice) -> Target:
    """Where services/proxy reaches a Service: a ready endpoint of its EndpointSlices on
    the port that serves the Service port asked for (kube-apiserver's service
    ResourceLocation, with EndpointSlices instead of Endpoints)."""
    port_name = wanted.port
    number = _number(wanted.port)
    if number is not None:
        declared = (service.get("spec") or {}).get("ports") or ()
        match = next((p for p in declared if p.get("port") == number), None)
        if match is None:
            raise _unavailable(
                f'no service port {number} found for service "{wanted.name}"')
        port_name = match.get("name") or ""
    any_ready = False
    candidates: list[Target] = []
    for endpoint_slice in slices:
        ready = [e for e in endpoint_slice.get("endpoints") or ()
                 if (e.get("conditions") or {}).get("ready") is not False and e.get("addresses")]
        any_ready = any_ready or bool(ready)
        for port in endpoint_slice.get("ports") or ():
            if (port.get("name") or "") != port_name or not isinstance(port.get("port"), int):
                continue
            candidates.extend(Target(wanted.scheme, str(e["addresses"][0]), port["port"])
                              for e in ready)
    if not candidates:
        shown = wanted.name if not any_ready else ":".join(
            p for p in (wanted.scheme, wanted.name, wanted.port) if p)
        raise _unavailable(f'no endpoints available for service "{shown}"')
    return choose(candidates)


def relayed_request_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The client's headers as the target gets them: no hop-by-hop headers (nor those the
    Connection header names) and no credentials meant for the API server."""
    named = {h.strip().lower() for h in headers.get("connection", "").split(",")}
    return {name: value for name, value in headers.items()
            if name not in HOP_BY_HOP and name not in named and name not in _NOT_RELAYED
            and not name.startswith(_IMPERSONATION_PREFIX)}


def rewrite_location(location: str, *, prefix: str, target: Target, request_host: str) -> str:
    """A redirect to the target's own host, as a path under the proxy prefix (kube-apiserver's
    proxy transport does the same); any other Location is left alone."""
    parts = urlsplit(location)
    if parts.netloc and parts.netloc not in (target.netloc, request_host):
        return location
    if not parts.path.startswith("/"):
        return location
    path = parts.path
    if not (path == prefix or path.startswith(prefix + "/")):
        path = prefix + path
    return urlunsplit(("", "", path, parts.query, parts.fragment))


def _dial_error(target: Target, exc: BaseException) -> errors.APIError:
    """The 503 of a target that cannot be reached, worded as kube-apiserver's proxy words it
    (`error trying to reach service: dial tcp 10.1.2.3:8080: connect: connection refused`)."""
    cause = getattr(exc, "os_error", None) or exc
    if isinstance(cause, OSError) and cause.errno:
        detail = f"dial tcp {target.netloc}: connect: {os.strerror(cause.errno).lower()}"
    elif isinstance(exc, TimeoutError | aiohttp.ConnectionTimeoutError):
        detail = f"dial tcp {target.netloc}: i/o timeout"
    else:
        detail = str(exc) or type(exc).__name__
    return _unavailable(f"error trying to reach service: {detail}")


class ResourceProxy:
    """The handlers of pods/proxy, services/proxy and nodes/proxy."""

    def __init__(self, *, table: ResourceTable, registry: GenericRegistry,
                 kubelets: KubeletClient) -> None:
        self.registry = registry
        self.kubelets = kubelets
        self._resources = {plural: _lookup(table, group, plural) for group, plural in (
            ("", "pods"), ("", "services"), ("", "nodes"), ("discovery.k8s.io", "endpointslices"))}
        self._session: aiohttp.ClientSession | None = None

    def handlers(self) -> dict[tuple[str, str], Handler]:
        return {("pods", "proxy"): self.pod, ("services", "proxy"): self.service,
                ("nodes", "proxy"): self.node}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _plain(self) -> aiohttp.ClientSession:
        """Plain HTTP, and HTTPS without verifying the target, as kube-apiserver's proxy
        transport (its pods serve whatever certificate they have)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=False, limit=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
                auto_decompress=False)
        return self._session

    # -- locations ----------------------------------------------------------------------

    async def pod(self, request: Request, info: RequestInfo, res: Resource) -> None:
        _check_method(request)
        wanted = ProxyID.parse(info.name, "pod")
        pod = await self.registry.get(res, info.namespace, wanted.name)
        await self._relay(request, info, pod_target(pod, wanted), self._plain())

    async def service(self, request: Request, info: RequestInfo, res: Resource) -> None:
        _check_method(request)
        wanted = ProxyID.parse(info.name, "service")
        service = await self.registry.get(res, info.namespace, wanted.name)
        listed = await self.registry.list(
            self._resources["endpointslices"], info.namespace,
            labels=parse_label_selector(f"{SERVICE_NAME_LABEL}={wanted.name}"))
        target = service_target(service, listed.items, wanted)
        await self._relay(request, info, target, self._plain())

    async def node(self, request: Request, info: RequestInfo, res: Resource) -> None:
        _check_method(request)
        wanted = ProxyID.parse(info.name, "node")
        kubelet = kubelet_endpoint(await self.registry.get(res, None, wanted.name))
        if wanted.port in ("", str(kubelet.port)):
            target = Target("https", kubelet.host, kubelet.port)
            session = self.kubelets.session()
        else:
            port = _number(wanted.port)
            if port is None:
                raise errors.bad_request(f'invalid node request "{info.name}"')
            target, session = Target(wanted.scheme, kubelet.host, port), self._plain()
        await self._relay(request, info, target, session)

    # -- relaying -----------------------------------------------------------------------

    async def _relay(self, request: Request, info: RequestInfo, target: Target,
                     session: aiohttp.ClientSession) -> None:
        prefix, subpath = _split_proxy_path(request, info)
        headers = relayed_request_headers(request.headers)
        client_host = request.headers.get("host", "")
        headers["x-forwarded-uri"] = prefix + subpath
        if client_host:
            headers["x-forwarded-host"] = client_host
        headers["x-forwarded-proto"] = "https"
        url = target.url(subpath, request.query_string)
        async with self._open(session, request, url, headers, target) as response:
            out: list[tuple[bytes, bytes]] = []
            for raw_name, raw_value in response.raw_headers:
                name = raw_name.decode("latin-1").lower()
                if name in HOP_BY_HOP:
                    continue
                if name == "location":
                    raw_value = rewrite_location(
                        raw_value.decode("latin-1"), prefix=prefix, target=target,
                        request_host=client_host).encode("latin-1")
                out.append((name.encode("latin-1"), raw_value))
            await stream_response(request, response, status=response.status, headers=out)

    @contextlib.asynccontextmanager
    async def _open(self, session: aiohttp.ClientSession, request: Request, url: URL,
                    headers: dict[str, str], target: Target
                    ) -> AsyncIterator[aiohttp.ClientResponse]:
        try:
            response = await session.request(
                request.method, url, headers=headers, data=request.body or None,
                allow_redirects=False,
                skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("proxying %s to %s failed: %s", request.path, target.netloc, exc)
            raise _dial_error(target, exc) from None
        try:
            yield response
        finally:
            response.release()


def _unavailable(message: str) -> errors.APIError:
    return errors.APIError(503, "ServiceUnavailable", message)


def _lookup(table: ResourceTable, group: str, plural: str) -> Resource:
    res = table.lookup(group, "v1", plural)
    assert res is not None, plural
    return res


def _check_method(request: Request) -> None:
    if request.method not in PROXY_METHODS:
        raise errors.method_not_allowed()


def _split_proxy_path(request: Request, info: RequestInfo) -> tuple[str, str]:
    """(the path up to and including `/proxy`, the rest as the target's path), taken from
    the path as sent, so that percent-encoded characters reach the target unchanged."""
    before = len(info.path.strip("/").split("/")) - len(info.parts)
    segments = (request.raw_path or request.path).lstrip("/").split("/")
    cut = before + 3  # resource, name, "proxy"
    prefix = "/" + "/".join(segments[:cut])
    return prefix, "/" + "/".join(segments[cut:])


__all__ = ["ProxyID", "ResourceProxy", "Target", "pod_target", "relayed_request_headers",
           "rewrite_location", "service_target"]
