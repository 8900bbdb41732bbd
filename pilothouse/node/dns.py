"""Cluster DNS: the DNS server every node agent runs for its pods.

It answers for the cluster domain (`cluster.local` by default) the way CoreDNS's kubernetes
plugin does, from informers on Services, EndpointSlices and Pods, and forwards every other
name to the host's resolvers (UDP, then TCP when the answer is truncated):

- `<svc>.<ns>.svc.<domain>`: A for the cluster IP; for a headless Service (`clusterIP:
  None`) every ready endpoint address; for an ExternalName Service a CNAME to its target
  (whose records follow, resolved as any other name).
- `_<port>._<proto>.<svc>.<ns>.svc.<domain>`: SRV per named port, to the Service's name
  (or, headless, to each endpoint's name), with their A records as additional data.
- `<hostname>.<svc>.<ns>.svc.<domain>` for headless Services: the endpoint carrying that
  hostname (StatefulSet pods; pods with spec.hostname and spec.subdomain naming the
  Service, also read straight from the pod), or, without one, its dashed address.
- `<a-b-c-d>.<ns>.pod.<domain>`: that address (CoreDNS's `pods insecure`).
- Unknown names in the domain are NXDOMAIN, known names without records of the asked type
  NOERROR with no answers (AAAA: every address here is IPv4); both carry the zone's SOA.
  Records live 5 s, as CoreDNS's default TTL.

Until the informers have synced, names in the domain get SERVFAIL rather than a wrong
NXDOMAIN a resolver would cache.

The kubelet points a pod's /etc/resolv.conf at this server, which only the sandbox
runtime (and the engine runtime) can show the pod: a process-runtime pod reads the host's
/etc/resolv.conf, so it resolves what the host resolves -- external names, but no cluster
names unless the host itself uses this server. The service environment variables work in
every runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from ..client import Informer
from ..controllers._workloads import is_pod_ready

log = logging.getLogger(__name__)

TTL = 5
#: How long one upstream resolver gets before the next is tried.
FORWARD_TIMEOUT = 2.0
#: ExternalName targets that are themselves ExternalNames, followed at most this deep.
MAX_CNAME_CHAIN = 8
TCP_IDLE_SECONDS = 10.0
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


# -- the host's resolver configuration ------------------------------------------------------

@dataclass(frozen=True)
class ResolvConf:
    """What a resolv.conf says: nameservers, search domains and options, in order."""
    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def render(self) -> str:
        lines = [f"nameserver {server}" for server in self.nameservers]
        if self.searches:
            lines.append("search " + " ".join(self.searches))
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "\n".join(lines) + "\n"


def parse_resolv_conf(text: str) -> ResolvConf:
    """As the resolver reads it: the last `search` (or `domain`) line wins; options add up."""
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) < 2:
            continue
        keyword, values = fields[0], fields[1:]
        if keyword == "nameserver":
            nameservers.append(values[0])
        elif keyword in ("search", "domain"):
            searches = [v.rstrip(".") for v in values]
        elif keyword == "options":
            options.extend(values)
    return ResolvConf(tuple(nameservers), tuple(searches), tuple(options))


# -- the cluster's records ------------------------------------------------------------------

@dataclass
class Answer:
    """The cluster part of a response: an rcode and its sections."""
    rcode: int = dns.rcode.NOERROR
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)
    #: An ExternalName's target, whose records the server appends.
    cname_target: dns.name.Name | None = None


def _slice_service(obj: dict[str, Any]) -> Iterable[str]:
    meta = obj.get("metadata") or {}
    service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return [f"{meta.get('namespace')}/{service}"] if service else []


def _pod_subdomain(obj: dict[str, Any]) -> Iterable[str]:
    spec = obj.get("spec") or {}
    if spec.get("hostname") and spec.get("subdomain"):
        return [f"{(obj.get('metadata') or {}).get('namespace')}/{spec['subdomain']}"]
    return []


def slim_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """What DNS needs of a pod (the informer's transform: every pod of the cluster is cached)."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    return {"metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                              "deletionTimestamp") if k in meta},
            "spec": {k: spec[k] for k in ("hostname", "subdomain") if k in spec},
            "status": {k: status[k] for k in ("podIP", "conditions") if k in status}}


def _dashed(address: str) -> str:
    return address.replace(".", "-").replace(":", "-")


def _is_ipv4(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 4
    except ValueError:
        return False


@dataclass(frozen=True)
class _Endpoint:
    name: str
    address: str


class ClusterRecords:
    """Answers questions about names in the cluster domain from informer caches."""

    def __init__(self, *, services: Informer, endpoint_slices: Informer, pods: Informer,
                 domain: str = "cluster.local", nameserver: str = "127.0.0.1") -> None:
        self.services = services
        self.endpoint_slices = endpoint_slices
        self.pods = pods
        self.zone = dns.name.from_text(domain)
        self.nameserver = nameserver
        endpoint_slices.add_index("service", _slice_service)
        pods.add_index("subdomain", _pod_subdomain)
        self._serial = int(time.time()) & 0xFFFFFFFF

    @property
    def synced(self) -> bool:
        return all(i.synced.is_set() for i in (self.services, self.endpoint_slices, self.pods))

    def covers(self, name: dns.name.Name) -> bool:
        return name.is_subdomain(self.zone)

    # records -------------------------------------------------------------------------------

    def _rrset(self, name: dns.name.Name, rdtype: int, *texts: str) -> dns.rrset.RRset:
        return dns.rrset.from_text_list(name, TTL, dns.rdataclass.IN, rdtype, list(texts))

    def soa(self) -> dns.rrset.RRset:
        return self._rrset(self.zone, dns.rdatatype.SOA,
                           f"ns.dns.{self.zone} hostmaster.{self.zone} {self._serial} "
                           f"7200 1800 86400 {TTL}")

    def _child(self, *labels: str) -> dns.name.Name:
        return dns.name.from_text(".".join(labels), origin=self.zone)

    # the caches ----------------------------------------------------------------------------

    def _endpoints(self, namespace: str, service: Mapping[str, Any]
                   ) -> tuple[list[_Endpoint], list[tuple[str, int, str]]]:
        """Ready endpoints (name, IPv4 address) and the ports (name, port, protocol) of a
        Service's EndpointSlices, plus pods naming the Service as their subdomain."""
        name = service["metadata"]["name"]
        publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
        endpoints: dict[tuple[str, str], _Endpoint] = {}
        ports: dict[tuple[str, int, str], None] = {}
        for endpoint_slice in self.endpoint_slices.by_index("service", f"{namespace}/{name}"):
            if endpoint_slice.get("addressType", "IPv4") != "IPv4":
                continue
            for port in endpoint_slice.get("ports") or ():
                if port.get("port"):
                    ports[(port.get("name") or "", int(port["port"]),
                           port.get("protocol") or "TCP")] = None
            for endpoint in endpoint_slice.get("endpoints") or ():
                if (endpoint.get("conditions") or {}).get("ready") is False and not publish:
                    continue
                for address in endpoint.get("addresses") or ():
                    hostname = endpoint.get("hostname") or _dashed(address)
                    endpoints[(hostname, address)] = _Endpoint(hostname, address)
        for pod in self.pods.by_index("subdomain", f"{namespace}/{name}"):
            address = (pod.get("status") or {}).get("podIP") or ""
            if not _is_ipv4(address) or pod["metadata"].get("deletionTimestamp"):
                continue
            if publish or is_pod_ready(pod):
                hostname = pod["spec"]["hostname"]
                endpoints[(hostname, address)] = _Endpoint(hostname, address)
        return list(endpoints.values()), list(ports)

    # answering -----------------------------------------------------------------------------

    def answer(self, qname: dns.name.Name, rdtype: int) -> Answer:
        """The answer for a name in the zone (`covers(qname)` must hold)."""
        labels = [label.decode("ascii", "replace").lower()
                  for label in qname.relativize(self.zone).labels]
        if not labels:
            return self._apex(qname, rdtype)
        kind, rest = labels[-1], labels[:-1]
        if kind == "svc":
            found = self._service_name(qname, rdtype, rest)
        elif kind == "pod":
            found = self._pod_name(qname, rdtype, rest)
        else:
            found = None
        return found if found is not None else Answer(dns.rcode.NXDOMAIN)

    def _apex(self, qname: dns.name.Name, rdtype: int) -> Answer:
        if rdtype == dns.rdatatype.SOA:
            return Answer(answer=[self.soa()])
        if rdtype == dns.rdatatype.NS:
            server = self._child("ns", "dns")
            return Answer(answer=[self._rrset(qname, dns.rdatatype.NS, server.to_text())],
                          additional=[self._rrset(server, dns.rdatatype.A, self.nameserver)])
        return Answer()

    def _pod_name(self, qname: dns.name.Name, rdtype: int, rest: list[str]) -> Answer | None:
        if len(rest) == 1:  # <ns>.pod: an empty non-terminal
            return Answer()
        if len(rest) != 2:
            return None
        address = rest[0].replace("-", ".")
        if not _is_ipv4(address):
            return None
        return Answer(answer=[self._rrset(qname, rdtype, address)]) \
            if rdtype == dns.rdatatype.A else Answer()

    def _service_name(self, qname: dns.name.Name, rdtype: int,
                      rest: list[str]) -> Answer | None:
        if not rest:  # svc.<domain>
            return Answer()
        namespace = rest[-1]
        if len(rest) == 1:
            return Answer() if self.services.by_index("namespace", namespace) else None
        service = self.services.get(f"{namespace}/{rest[-2]}")
        if service is None:
            return None
        if len(rest) == 2:
            return self._service(qname, rdtype, namespace, service)
        if len(rest) == 3:
            return self._endpoint(qname, rdtype, namespace, service, rest[0])
        if len(rest) == 4 and rest[0].startswith("_") and rest[1].startswith("_"):
            return self._port(qname, rdtype, namespace, service, rest[0][1:], rest[1][1:])
        return None

    def _service(self, qname: dns.name.Name, rdtype: int, namespace: str,
                 service: Mapping[str, Any]) -> Answer:
        spec = service.get("spec") or {}
        if spec.get("type") == "ExternalName":
            target = dns.name.from_text(spec.get("externalName") or "")
            answer = Answer(answer=[self._rrset(qname, dns.rdatatype.CNAME, target.to_text())])
            if rdtype != dns.rdatatype.CNAME:
                answer.cname_target = target
            return answer
        if rdtype == dns.rdatatype.A:
            addresses = self._service_addresses(namespace, service)
            return Answer(answer=[self._rrset(qname, rdtype, *addresses)] if addresses else [])
        if rdtype == dns.rdatatype.SRV:
            return self._srv(qname, namespace, service, None, None)
        return Answer()

    def _service_addresses(self, namespace: str, service: Mapping[str, Any]) -> list[str]:
        spec = service.get("spec") or {}
        if spec.get("clusterIP") == "None":
            endpoints, _ = self._endpoints(namespace, service)
            return list(dict.fromkeys(e.address for e in endpoints))
        ips = spec.get("clusterIPs") or [spec.get("clusterIP") or ""]
        return [ip for ip in ips if _is_ipv4(ip)]

    def _endpoint(self, qname: dns.name.Name, rdtype: int, namespace: str,
                  service: Mapping[str, Any], hostname: str) -> Answer | None:
        if (service.get("spec") or {}).get("clusterIP") != "None":
            return None
        endpoints, _ = self._endpoints(namespace, service)
        addresses = list(dict.fromkeys(e.address for e in endpoints if e.name == hostname))
        if not addresses:
            return None
        if rdtype != dns.rdatatype.A:
            return Answer()
        return Answer(answer=[self._rrset(qname, rdtype, *addresses)])

    def _port(self, qname: dns.name.Name, rdtype: int, namespace: str,
              service: Mapping[str, Any], port: str, protocol: str) -> Answer | None:
        answer = self._srv(qname, namespace, service, port, protocol)
        if not answer.answer:
            return None
        return answer if rdtype == dns.rdatatype.SRV else Answer()

    def _srv(self, qname: dns.name.Name, namespace: str, service: Mapping[str, Any],
             port_name: str | None, protocol: str | None) -> Answer:
        """SRV records for the Service's ports (only `port_name`/`protocol` when given)."""
        spec = service.get("spec") or {}
        name = service["metadata"]["name"]
        service_name = self._child(name, namespace, "svc")

        def wanted(port: str, proto: str) -> bool:
            return port_name is None or (port.lower() == port_name and
                                         proto.lower() == protocol)

        targets: list[tuple[int, dns.name.Name, str]] = []
        if spec.get("clusterIP") == "None":
            endpoints, ports = self._endpoints(namespace, service)
            for port, number, proto in ports:
                if wanted(port, proto):
                    targets += [(number, self._child(e.name, name, namespace, "svc"), e.address)
                                for e in endpoints]
        else:
            addresses = self._service_addresses(namespace, service)
            for port in spec.get("ports") or ():
                if wanted(port.get("name") or "", port.get("protocol") or "TCP"):
                    targets += [(int(port["port"]), service_name, address)
                                for address in addresses[:1]]
        if not targets:
            return Answer()
        weight = max(1, 100 // len(targets))
        records = [f"0 {weight} {number} {target}" for number, target, _ in targets]
        extra: dict[dns.name.Name, list[str]] = {}
        for _, target, address in targets:
            if address not in extra.setdefault(target, []):
                extra[target].append(address)
        return Answer(answer=[self._rrset(qname, dns.rdatatype.SRV, *dict.fromkeys(records))],
                      additional=[self._rrset(target, dns.rdatatype.A, *addresses)
                                  for target, addresses in extra.items()])


# -- the server -----------------------------------------------------------------------------

class DNSServer:
    """Serves `records` on UDP and TCP at host:port; forwards other names to `upstreams`."""

    def __init__(self, records: ClusterRecords, *, host: str, port: int = 53,
                 upstreams: Sequence[tuple[str, int]] = ()) -> None:
        self.records = records
        self.host = host
        self.port = port
        self.upstreams = [u for u in upstreams if u != (host, port)]
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        """Bind both sockets; raises OSError when the address cannot be had."""
        loop = asyncio.get_running_loop()
        self._tcp = await asyncio.start_server(self._serve_tcp, self.host, self.port)
        if self.port == 0:
            self.port = self._tcp.sockets[0].getsockname()[1]
        try:
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _UDPProtocol(self), local_addr=(self.host, self.port))
        except OSError:
            self._tcp.close()
            raise

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await self._tcp.wait_closed()
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_tcp(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_SECONDS)
                wire = await reader.readexactly(struct.unpack("!H", header)[0])
                reply = await self.handle(wire, max_size=65535)
                if reply is not None:
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def handle(self, wire: bytes, *, max_size: int) -> bytes | None:
        """The reply to one query's wire form (None: not worth answering)."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            if len(wire) < 12:
                return None
            error = dns.message.Message(id=struct.unpack("!H", wire[:2])[0])
            error.flags = dns.flags.QR
            error.set_rcode(dns.rcode.FORMERR)
            return error.to_wire()
        response = await self.resolve(query)
        limit = max_size if max_size > 512 else max(512, query.payload if query.edns >= 0
                                                    else 512)
        return response.to_wire(max_size=limit, prefer_truncation=True)

    async def resolve(self, query: dns.message.Message, *, depth: int = 0
                      ) -> dns.message.Message:
        response = dns.message.make_response(query, recursion_available=True)
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        if not self.records.covers(question.name):
            forwarded = await self._forward(query)
            if forwarded is None:
                response.set_rcode(dns.rcode.SERVFAIL)
                return response
            return forwarded
        if question.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        if not self.records.synced:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        found = self.records.answer(question.name, question.rdtype)
        response.flags |= dns.flags.AA
        response.set_rcode(found.rcode)
        response.answer.extend(found.answer)
        response.additional.extend(found.additional)
        if found.cname_target is not None and depth < MAX_CNAME_CHAIN:
            chased = await self.resolve(
                dns.message.make_query(found.cname_target, question.rdtype), depth=depth + 1)
            if chased.rcode() == dns.rcode.NOERROR:
                response.answer.extend(chased.answer)
        if not response.answer:
            response.authority.append(self.records.soa())
        return response

    async def _forward(self, query: dns.message.Message) -> dns.message.Message | None:
        for host, port in self.upstreams:
            try:
                reply, _ = await dns.asyncquery.udp_with_fallback(
                    query, host, timeout=FORWARD_TIMEOUT, port=port)
                return reply
            except (dns.exception.DNSException, OSError) as err:
                log.debug("upstream %s:%d failed for %s: %s", host, port,
                          query.question[0].name, err)
        return None


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server._spawn(self._reply(data, addr))

    async def _reply(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            reply = await self.server.handle(data, max_size=0)
        except Exception:
            log.exception("DNS query from %s:%d failed", *addr)
            return
        if reply is not None and self.transport is not None and \
                not self.transport.is_closing():
            self.transport.sendto(reply, addr)

