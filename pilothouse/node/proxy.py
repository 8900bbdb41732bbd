"""The node's service proxy (kube-proxy): traffic for a Service reaches its ready endpoints.

Informers on Services and EndpointSlices feed a table of *frontends*, one per address, port
and protocol a Service answers on, each with the endpoints it forwards to:

- every cluster IP at each service port;
- every node-port address (`--nodeport-addresses`, by default the node's IP) at each
  `nodePort`;
- each `status.loadBalancer.ingress[].ip` whose ipMode is VIP (the cloud controller's
  load-balancer address) and each `spec.externalIPs` address, at each service port.

A frontend's endpoints are the ready addresses of the Service's EndpointSlices at the slice
port that carries the service port's name and protocol (so a named targetPort resolves per
pod). When none is ready, serving-but-terminating endpoints are used, as kube-proxy does
for graceful shutdown. `internalTrafficPolicy: Local` restricts cluster-IP frontends, and
`externalTrafficPolicy: Local` node-port and load-balancer frontends, to endpoints on this
node. Headless and ExternalName Services are not proxied (DNS answers for them).

Mode `userspace`: an asyncio listener per frontend. A TCP connection is
relayed byte for byte (half-closes included) to an endpoint chosen round-robin, or, with
`sessionAffinity: ClientIP`, to the one the client's address last used within the
affinity timeout; an endpoint that refuses is skipped for the next. UDP is relayed per
client address, with flows expiring after `UDP_IDLE_SECONDS` of silence as conntrack's do.
A frontend without endpoints has no listener, so a client is refused at once, as
kube-proxy's REJECT rule does. Listeners use SO_REUSEPORT, so two node agents on one machine
may both serve a cluster IP.

Mode `nftables` (root, with the `nft` tool): the listeners stay, and an nftables table of
the proxy's own (`pilothouse-proxy-<pid>`) DNATs TCP to a frontend straight to an endpoint
picked at random, as kube-proxy's nftables mode does, both the host's own connections and
pods' arriving from the node bridge (which then forwards only what was DNAT'd, and
masquerades what would otherwise return around the DNAT: see `render_nft_table`), so no
TCP byte passes through Python. UDP (whose stale conntrack entries kube-proxy must flush
with a tool this machine lacks) and ClientIP affinity keep the userspace relay. The table
is replaced atomically on each change and deleted on shutdown; tables of proxies that died
are swept at start.

Every change is applied within `MIN_SYNC_SECONDS` of the event that caused it; only the
Services an event touched are recomputed. An address that cannot be bound (a port below
1024 without root, a node port another program holds) is logged and retried every
`RETRY_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from ..client import Client, Informer, InformerFactory
from ..client.informer import object_key

log = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
PROXY_MODES = ("auto", "userspace", "nftables")
MIN_SYNC_SECONDS = 0.05
RETRY_SECONDS = 5.0
CONNECT_TIMEOUT = 2.0
UDP_IDLE_SECONDS = 30.0
UDP_MAX_DATAGRAM = 65535
PROXIED_PROTOCOLS = ("TCP", "UDP")


@dataclass(frozen=True)
class FrontendKey:
    address: str
    port: int
    protocol: str

    def __str__(self) -> str:
        return f"{self.address}:{self.port}/{self.protocol}"


@dataclass(frozen=True)
class Frontend:
    """One address a service port answers on, and the endpoints behind it."""

    key: FrontendKey
    #: namespace/name:port-name, for logs.
    service_port: str
    endpoints: tuple[tuple[str, int], ...]
    #: sessionAffinity ClientIP's timeout in seconds; None without affinity.
    affinity_seconds: float | None = None


def _ready(endpoint: Mapping[str, Any]) -> tuple[bool, bool]:
    """(ready, serving-and-terminating) as EndpointSlice conditions say (nil ready = ready)."""
    conditions = endpoint.get("conditions") or {}
    ready = conditions.get("ready") is not False
    serving = conditions.get("serving")
    serving = ready if serving is None else bool(serving)
    return ready, serving and bool(conditions.get("terminating"))


def service_endpoints(port: Mapping[str, Any], slices: Iterable[Mapping[str, Any]], *,
                      local_node: str | None = None) -> tuple[tuple[str, int], ...]:
    """The (address, port) pairs a service port forwards to, from its EndpointSlices.

    Ready endpoints, or, when none is ready, the serving ones that are terminating; with
    `local_node`, only those on that node.
    """
    name, protocol = port.get("name") or "", port.get("protocol") or "TCP"
    ready: dict[tuple[str, int], None] = {}
    terminating: dict[tuple[str, int], None] = {}
    for endpoint_slice in slices:
        if endpoint_slice.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
            continue
        number = next((p.get("port") for p in endpoint_slice.get("ports") or ()
                       if (p.get("name") or "") == name
                       and (p.get("protocol") or "TCP") == protocol), None)
        if not isinstance(number, int):
            continue
        for endpoint in endpoint_slice.get("endpoints") or ():
            if local_node is not None and endpoint.get("nodeName") != local_node:
                continue
            is_ready, is_terminating = _ready(endpoint)
            target = ready if is_ready else terminating if is_terminating else None
            if target is not None:
                for address in endpoint.get("addresses") or ():
                    target[(address, number)] = None
    return tuple(ready or terminating)


def service_frontends(service: Mapping[str, Any], slices: Sequence[Mapping[str, Any]], *,
                      node_name: str, node_port_addresses: Sequence[str]) -> list[Frontend]:
    """Every frontend of one Service, with its endpoints (empty when none is usable)."""
    spec = service.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return []
    cluster_ips = [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")]
                   if ip and ip != "None"]
    if not cluster_ips:
        return []
    meta = service.get("metadata") or {}
    affinity = None
    if spec.get("sessionAffinity") == "ClientIP":
        config = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
        affinity = float(config.get("timeoutSeconds") or 10800)
    internal_local = spec.get("internalTrafficPolicy") == "Local"
    external_local = spec.get("externalTrafficPolicy") == "Local"
    external_ips = list(spec.get("externalIPs") or ())
    external_ips += [ingress["ip"] for ingress in
                     ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ()
                     if ingress.get("ip") and ingress.get("ipMode", "VIP") == "VIP"]
    frontends: list[Frontend] = []
    for port in spec.get("ports") or ():
        protocol = port.get("protocol") or "TCP"
        if protocol not in PROXIED_PROTOCOLS or not isinstance(port.get("port"), int):
            continue
        label = f"{meta.get('namespace')}/{meta.get('name')}:{port.get('name') or ''}"
        internal = service_endpoints(port, slices,
                                     local_node=node_name if internal_local else None)
        external = service_endpoints(port, slices,
                                     local_node=node_name if external_local else None)
        addresses = [(ip, port["port"], internal) for ip in cluster_ips]
        addresses += [(ip, port["port"], external) for ip in external_ips]
        if isinstance(port.get("nodePort"), int) and port["nodePort"]:
            addresses += [(ip, port["nodePort"], external) for ip in node_port_addresses]
        frontends += [Frontend(FrontendKey(ip, number, protocol), label, endpoints, affinity)
                      for ip, number, endpoints in addresses]
    return frontends


class Backends:
    """The endpoints a listener forwards to, and how the next one is picked."""

    def __init__(self, frontend: Frontend) -> None:
        self._counter = itertools.count()
        self._affinity: dict[str, tuple[tuple[str, int], float]] = {}
        self.update(frontend)

    def update(self, frontend: Frontend) -> None:
        self.frontend = frontend
        if frontend.affinity_seconds is None:
            self._affinity.clear()
        else:
            alive = set(frontend.endpoints)
            self._affinity = {c: v for c, v in self._affinity.items() if v[0] in alive}

    def candidates(self, client_ip: str) -> list[tuple[str, int]]:
        """Endpoints in the order to try them: the client's affine one first, then
        round-robin from the next in turn."""
        endpoints = self.frontend.endpoints
        if not endpoints:
            return []
        start = next(self._counter) % len(endpoints)
        order = list(endpoints[start:] + endpoints[:start])
        timeout = self.frontend.affinity_seconds
        if timeout is not None:
            sticky = self._affinity.get(client_ip)
            if sticky is not None and time.monotonic() - sticky[1] < timeout \
                    and sticky[0] in order:
                order.remove(sticky[0])
                order.insert(0, sticky[0])
        return order

    def used(self, client_ip: str, endpoint: tuple[str, int]) -> None:
        if self.frontend.affinity_seconds is not None:
            self._affinity[client_ip] = (endpoint, time.monotonic())


# -- TCP -----------------------------------------------------------------------------------


class _Pipe(asyncio.Protocol):
    """One side of a relayed TCP connection: what arrives here is written to its peer, with
    the peer's write buffer pausing this side's reads."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Pipe | None = None
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None and self.peer.transport is not None
        self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is None or peer.transport is None or peer.transport.is_closing():
            return False
        if peer.eof:  # both directions are done
            peer.transport.close()
            return False
        if peer.transport.can_write_eof():
            peer.transport.write_eof()
        return True

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


class _ClientPipe(_Pipe):
    """The client's side: reads wait until an endpoint has accepted the connection."""

    def __init__(self, backends: Backends, tasks: set[asyncio.Task]) -> None:
        super().__init__()
        self._backends = backends
        self._tasks = tasks
        self._connecting: asyncio.Task | None = None
        #: What arrived before the endpoint accepted (uvloop may deliver a read in flight
        #: after pause_reading), and whether the client half-closed by then.
        self._early: list[bytes] = []
        self._early_eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.pause_reading()
        self._connecting = asyncio.get_running_loop().create_task(self._connect())
        self._tasks.add(self._connecting)
        self._connecting.add_done_callback(self._tasks.discard)

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            self._early.append(data)
        else:
            super().data_received(data)

    def eof_received(self) -> bool:
        if self.peer is None:
            self._early_eof = self.eof = True
            return True
        return super().eof_received()

    async def _connect(self) -> None:
        assert self.transport is not None
        peername = self.transport.get_extra_info("peername") or ("", 0)
        client_ip = peername[0]
        loop = asyncio.get_running_loop()
        for endpoint in self._backends.candidates(client_ip):
            backend = _Pipe()
            backend.peer = self
            try:
                await asyncio.wait_for(
                    loop.create_connection(lambda b=backend: b, *endpoint), CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                log.debug("%s: endpoint %s:%d failed: %s", self._backends.frontend.service_port,
                          *endpoint, exc)
                continue
            if self.transport.is_closing():
                assert backend.transport is not None
                backend.transport.close()
                return
            self._backends.used(client_ip, endpoint)
            self.peer = backend
            assert backend.transport is not None
            for data in self._early:
                backend.transport.write(data)
            self._early.clear()
            if self._early_eof and backend.transport.can_write_eof():
                backend.transport.write_eof()
            else:
                self.transport.resume_reading()
            return
        self.transport.abort()  # no endpoint took it: the client sees a reset

    def connection_lost(self, exc: Exception | None) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        super().connection_lost(exc)


# -- UDP -----------------------------------------------------------------------------------


class _UdpFlow(asyncio.DatagramProtocol):
    """One client's datagrams to one endpoint, and the endpoint's replies back."""

    def __init__(self, front: _UdpFront, client: tuple[str, int]) -> None:
        self.front = front
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None
        self.last = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.last = time.monotonic()
        if self.front.transport is not None:
            self.front.transport.sendto(data, self.client)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp flow for %s: %s", self.client, exc)


class _UdpFront(asyncio.DatagramProtocol):
    def __init__(self, backends: Backends) -> None:
        self.backends = backends
        self.transport: asyncio.DatagramTransport | None = None
        self.flows: dict[tuple[str, int], _UdpFlow] = {}
        self._pending: dict[tuple[str, int], list[bytes]] = {}
        self._tasks: set[asyncio.Task] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        flow = self.flows.get(addr)
        if flow is not None and flow.transport is not None and not flow.transport.is_closing():
            flow.last = time.monotonic()
            flow.transport.sendto(data)
            return
        if addr in self._pending:
            self._pending[addr].append(data)
            return
        candidates = self.backends.candidates(addr[0])
        if not candidates:
            return
        self._pending[addr] = [data]
        task = asyncio.get_running_loop().create_task(self._open(addr, candidates[0]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open(self, client: tuple[str, int], endpoint: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, flow = await loop.create_datagram_endpoint(
                lambda: _UdpFlow(self, client), remote_addr=endpoint)
        except OSError as exc:
            log.debug("udp %s -> %s:%d: %s", client, *endpoint, exc)
            self._pending.pop(client, None)
            return
        self.backends.used(client[0], endpoint)
        self.flows[client] = flow
        for data in self._pending.pop(client, ()):
            transport.sendto(data)

    def expire(self, now: float) -> None:
        for client, flow in list(self.flows.items()):
            if now - flow.last > UDP_IDLE_SECONDS:
                del self.flows[client]
                if flow.transport is not None:
                    flow.transport.close()

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for flow in self.flows.values():
            if flow.transport is not None:
                flow.transport.close()
        self.flows.clear()
        if self.transport is not None:
            self.transport.close()


# -- listeners -----------------------------------------------------------------------------


@dataclass
class _Listener:
    backends: Backends
    server: asyncio.Server | None = None
    udp: _UdpFront | None = None

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.udp is not None:
            self.udp.close()


async def _listen(frontend: Frontend, tasks: set[asyncio.Task]) -> _Listener:
    """Bind one frontend; raises OSError when its address cannot be had."""
    loop = asyncio.get_running_loop()
    backends = Backends(frontend)
    key = frontend.key
    if key.protocol == "UDP":
        sock = socket.socket(socket.AF_INET6 if ":" in key.address else socket.AF_INET,
                             socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((key.address, key.port))
        except OSError:
            sock.close()
            raise
        _, front = await loop.create_datagram_endpoint(lambda: _UdpFront(backends), sock=sock)
        return _Listener(backends, udp=front)
    server = await loop.create_server(lambda: _ClientPipe(backends, tasks), key.address,
                                      key.port, reuse_address=True, reuse_port=True,
                                      backlog=1024)
    return _Listener(backends, server=server)


@dataclass
class ProxySettings:
    node_name: str
    #: Where node ports listen (kube-proxy's --nodeport-addresses, as addresses).
    node_port_addresses: tuple[str, ...] = ()
    #: "userspace" or "nftables", as `proxy_mode` chose it.
    mode: str = "userspace"


@dataclass
class ServiceProxy:
    """Keeps one listener per frontend of every Service, in step with the informers."""

    services: Informer
    endpoint_slices: Informer
    settings: ProxySettings
    _listeners: dict[FrontendKey, _Listener] = field(default_factory=dict)
    #: The frontends each Service (namespace/name) wants, as of its last sync.
    _wanted: dict[str, dict[FrontendKey, Frontend]] = field(default_factory=dict)
    #: Frontends that could not be bound, by key, with the error last seen.
    _failed: dict[FrontendKey, str] = field(default_factory=dict)
    _dirty: set[str] = field(default_factory=set)
    _tasks: set[asyncio.Task] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._wake = asyncio.Event()
        self.kernel = KernelRules(nft_table_name(os.getpid())) \
            if self.settings.mode == "nftables" else None
        self.endpoint_slices.add_index("service", _slice_service)
        self.services.add_handler(self._on_service)
        self.endpoint_slices.add_handler(self._on_slice)

    # -- events ------------------------------------------------------------------------

    def _mark(self, key: str | None) -> None:
        if key:
            self._dirty.add(key)
            self._wake.set()

    def _on_service(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        self._mark(object_key(new or old or {}))

    def _on_slice(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        for obj in (old, new):
            for key in _slice_service(obj or {}):
                self._mark(key)

    # -- the sync loop -----------------------------------------------------------------

    async def run(self) -> None:
        """Apply changes as they come, until cancelled; then close every listener."""
        try:
            await asyncio.gather(self.services.synced.wait(), self.endpoint_slices.synced.wait())
            self._dirty.update(object_key(s) for s in self.services.list())
            next_retry = time.monotonic() + RETRY_SECONDS
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), RETRY_SECONDS)
                self._wake.clear()
                await asyncio.sleep(MIN_SYNC_SECONDS)
                now = time.monotonic()
                retry = now >= next_retry
                if retry:
                    next_retry = now + RETRY_SECONDS
                    self._expire_udp(now)
                await self.sync(retry_failed=retry)
        finally:
            self.close()

    async def sync(self, *, retry_failed: bool = False) -> None:
        dirty, self._dirty = self._dirty, set()
        for key in dirty:
            service = self.services.get(key)
            slices = self.endpoint_slices.by_index("service", key)
            frontends = [] if service is None else service_frontends(
                service, slices, node_name=self.settings.node_name,
                node_port_addresses=self.settings.node_port_addresses)
            old = self._wanted.pop(key, {})
            wanted = {f.key: f for f in frontends if f.endpoints}
            if wanted:
                self._wanted[key] = wanted
            for gone in old.keys() - wanted.keys():
                self._close(gone)
            for frontend in wanted.values():
                await self._apply(frontend)
        if retry_failed:
            for key in list(self._failed):
                frontend = self._owner(key)
                if frontend is None:
                    self._failed.pop(key, None)
                else:
                    await self._apply(frontend)
        if self.kernel is not None and (dirty or retry_failed):
            await self.kernel.apply(f for wanted in self._wanted.values()
                                    for f in wanted.values())

    def _owner(self, key: FrontendKey) -> Frontend | None:
        for wanted in self._wanted.values():
            if key in wanted:
                return wanted[key]
        return None

    async def _apply(self, frontend: Frontend) -> None:
        listener = self._listeners.get(frontend.key)
        if listener is not None:
            listener.backends.update(frontend)
            return
        try:
            self._listeners[frontend.key] = await _listen(frontend, self._tasks)
        except OSError as exc:
            reason = _bind_error(exc)
            if self._failed.get(frontend.key) != reason:
                log.warning("service proxy: cannot listen on %s for %s: %s", frontend.key,
                            frontend.service_port, reason)
            self._failed[frontend.key] = reason
            return
        self._failed.pop(frontend.key, None)
        log.info("service proxy: %s -> %s", frontend.key, frontend.service_port)

    def _close(self, key: FrontendKey) -> None:
        self._failed.pop(key, None)
        listener = self._listeners.pop(key, None)
        if listener is not None:
            listener.close()

    def _expire_udp(self, now: float) -> None:
        for listener in self._listeners.values():
            if listener.udp is not None:
                listener.udp.expire(now)

    def close(self) -> None:
        if self.kernel is not None:
            self.kernel.remove()
        for key in list(self._listeners):
            self._close(key)
        for task in self._tasks:
            task.cancel()

    @property
    def frontends(self) -> dict[FrontendKey, Frontend]:
        """What is being served now, by frontend."""
        return {k: listener.backends.frontend for k, listener in self._listeners.items()}


def _slice_service(endpoint_slice: Mapping[str, Any]) -> list[str]:
    meta = endpoint_slice.get("metadata") or {}
    name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return [f"{meta.get('namespace')}/{name}"] if name else []


def _bind_error(exc: OSError) -> str:
    if exc.errno == errno.EACCES:
        return f"{exc.strerror} (ports below 1024 need root or a lower " \
               "net.ipv4.ip_unprivileged_port_start)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{exc.strerror} (the address is not on this machine)"
    return exc.strerror or str(exc)


# -- kernel forwarding ---------------------------------------------------------------------


def kernel_eligible(frontend: Frontend) -> bool:
    """Whether nftables may carry this frontend's locally originated traffic."""
    return (frontend.key.protocol == "TCP" and frontend.affinity_seconds is None
            and bool(frontend.endpoints) and ":" not in frontend.key.address)


TABLE_PREFIX = "pilothouse-proxy-"


def nft_table_name(pid: int) -> str:
    """A proxy's table is named for its process, so two node agents on one machine (even
    of the same node name, of two clusters) never rewrite each other's."""
    return f"{TABLE_PREFIX}{pid}"


def stale_tables(listing: str, alive: Callable[[int], bool]) -> list[str]:
    """Tables of `nft list tables` output left by proxies whose process is gone."""
    stale = []
    for match in re.finditer(rf"^table ip ({re.escape(TABLE_PREFIX)}(\d+))$", listing, re.M):
        if not alive(int(match.group(2))):
            stale.append(match.group(1))
    return stale


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: Interfaces pods' traffic arrives on: the node bridges `ph<N>br` (node/podnet.py) and
#: their veth ports, as an nftables wildcard.
POD_INTERFACES = "ph*"


def render_nft_table(table: str, frontends: Iterable[Frontend]) -> str:
    """The whole table as one `nft -f` script that replaces it atomically.

    - `output`: the host's own connections to a frontend are DNAT'd to an endpoint;
    - `prerouting`: so are pods' connections arriving from the node bridge;
    - `postrouting`: a connection DNAT'd out of the host with a loopback source (the host
      talking to a pod in its own namespace, whose loopback that source would be) or from
      the bridge back into it (pod to pod: the answer would go straight over the bridge,
      around the DNAT) leaves with the bridge's address, as kube-proxy masquerades
      localhost and hairpin traffic;
    - `forward`: what comes from the bridge goes only back to it (pod to pod, which
      br_netfilter, where loaded, shows this hook) or where a DNAT sent it: the proxy
      turns forwarding on for the bridge, and pods reach Services, not the networks
      beyond the host.
    """
    chosen = sorted((f for f in frontends if kernel_eligible(f)),
                    key=lambda f: (f.key.address, f.key.port))
    verdicts = ", ".join(f"{f.key.address} . {f.key.port} : jump frontend-{i}"
                         for i, f in enumerate(chosen))
    dispatch = [f"    ip daddr . tcp dport vmap {{ {verdicts} }}"] if chosen else []
    lines = [f"table ip {table}", f"delete table ip {table}", f"table ip {table} {{",
             "  chain output {", "    type nat hook output priority -100; policy accept;",
             *dispatch, "  }",
             "  chain prerouting {",
             "    type nat hook prerouting priority -100; policy accept;",
             *[f'    iifname "{POD_INTERFACES}"' + line[3:] for line in dispatch], "  }",
             "  chain postrouting {", "    type nat hook postrouting priority 100; policy accept;",
             '    ct status dnat ip saddr 127.0.0.0/8 oifname != "lo" masquerade',
             f'    ct status dnat iifname "{POD_INTERFACES}" oifname "{POD_INTERFACES}" '
             "masquerade", "  }",
             "  chain forward {", "    type filter hook forward priority 0; policy accept;",
             f'    iifname "{POD_INTERFACES}" ct status dnat accept',
             f'    iifname "{POD_INTERFACES}" oifname "{POD_INTERFACES}" accept',
             f'    iifname "{POD_INTERFACES}" drop', "  }"]
    for i, frontend in enumerate(chosen):
        targets = ", ".join(f"{n} : {ip} . {port}"
                            for n, (ip, port) in enumerate(frontend.endpoints))
        lines += [f"  chain frontend-{i} {{",
                  f"    # {frontend.service_port}",
                  f"    meta l4proto tcp dnat ip to numgen random mod "
                  f"{len(frontend.endpoints)} map {{ {targets} }}",
                  "  }"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def enable_bridge_forwarding(sys_net: Path = Path("/proc/sys/net/ipv4/conf")) -> None:
    """Let the node bridges route what prerouting DNATs to another pod (per interface:
    the host's global ip_forward is left alone)."""
    for conf in sys_net.glob(POD_INTERFACES.replace("*", "*br")):
        forwarding = conf / "forwarding"
        with contextlib.suppress(OSError):
            if forwarding.read_text().strip() != "1":
                forwarding.write_text("1")


class KernelRules:
    """The node's nftables table, rewritten when the kernel-eligible frontends change."""

    def __init__(self, table: str) -> None:
        self.table = table
        self._applied = ""
        self._swept = False
        #: Set before the first `nft` run: a shutdown that cancels it midway still cleans up.
        self._written = False

    async def _sweep(self) -> None:
        """Delete the tables of proxies that died without removing theirs (SIGKILL), whose
        rules would send traffic to endpoints of a cluster that may no longer exist."""
        process = await asyncio.create_subprocess_exec(
            "nft", "list", "tables", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
        listing, _ = await process.communicate()
        for table in stale_tables(listing.decode(errors="replace"), _alive):
            log.info("service proxy: deleting nftables table %s of a proxy that is gone", table)
            await (await asyncio.create_subprocess_exec(
                "nft", "delete", "table", "ip", table, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL)).wait()
        self._swept = True

    async def apply(self, frontends: Iterable[Frontend]) -> None:
        if not self._swept:
            await self._sweep()
        enable_bridge_forwarding()
        script = render_nft_table(self.table, frontends)
        if script == self._applied:
            return
        self._written = True
        process = await asyncio.create_subprocess_exec(
            "nft", "-f", "-", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        _, stderr = await process.communicate(script.encode())
        if process.returncode != 0:
            log.error("service proxy: nft rejected table %s: %s", self.table,
                      stderr.decode(errors="replace").strip())
            return
        self._applied = script
        log.info("service proxy: nftables table %s holds %d frontends", self.table,
                 script.count(": jump frontend-"))

    def remove(self) -> None:
        """Delete the table (synchronously: this runs while the proxy shuts down)."""
        if self._written:
            subprocess.run(["nft", "delete", "table", "ip", self.table], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
            self._applied, self._written = "", False


def _nftables_unavailable() -> str | None:
    """Why kernel forwarding cannot be used here, or None when it can."""
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("nft") is None:
        return "the nft tool is not installed"
    probe = subprocess.run(["nft", "list", "tables"], check=False, capture_output=True,
                           timeout=10)
    if probe.returncode != 0:
        return "nft cannot reach the kernel: " + probe.stderr.decode(errors="replace").strip()
    return None


def proxy_mode(requested: str = "auto") -> tuple[str, str]:
    """The mode the proxy will run in, and why; ValueError when `requested` cannot be had."""
    if requested == "userspace":
        return "userspace", "chosen by flag"
    unavailable = _nftables_unavailable()
    if unavailable is None:
        return "nftables", ("TCP forwarded by the kernel; UDP and ClientIP affinity by the "
                            "userspace relay")
    if requested == "nftables":
        raise ValueError(f"--proxy-mode nftables is not available: {unavailable}")
    return "userspace", f"nftables unavailable: {unavailable}"


async def run_proxy(kubeconfig: str | None, settings: ProxySettings) -> None:
    """Run the service proxy with its own informers until cancelled."""
    async with Client.from_kubeconfig(kubeconfig, user_agent="kube-proxy/pilothouse",
                                      field_manager="kube-proxy") as client:
        await client.wait_ready()
        informers = InformerFactory(client)
        proxy = ServiceProxy(informers.informer("v1", "services"),
                             informers.informer("discovery.k8s.io/v1", "endpointslices"),
                             settings)
        await informers.start()
        try:
            await proxy.run()
        finally:
            await informers.stop()
