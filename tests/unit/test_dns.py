"""The node's cluster DNS server, queried with dnspython over loopback, and pods' resolv.conf.

The server reads informer caches filled here with watch events, as the API server would
send them; names outside the cluster domain go to a fake upstream resolver on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from pilothouse.client import Informer
from pilothouse.node.dns import ClusterRecords, DNSServer, ResolvConf, parse_resolv_conf
from pilothouse.node.kubelet import pod_dns_config

NS = "default"


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 20))


# -- the cluster's objects ------------------------------------------------------------------

def service(name: str, *, cluster_ip: str = "None", ports: tuple[tuple[str, int], ...] = (),
            **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NS, "resourceVersion": "1"},
            "spec": {"clusterIP": cluster_ip, "type": "ClusterIP",
                     "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports],
                     **spec}}


def endpoint_slice(service_name: str, *endpoints: tuple[str, bool, str | None],
                   ports: tuple[tuple[str, int], ...] = ()) -> dict[str, Any]:
    """Endpoints as (address, ready, hostname)."""
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service_name}-abcde", "namespace": NS,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4",
            "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports],
            "endpoints": [{"addresses": [address], "conditions": {"ready": ready},
                           **({"hostname": hostname} if hostname else {})}
                          for address, ready, hostname in endpoints]}


def pod(name: str, ip: str, *, ready: bool, hostname: str, subdomain: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"hostname": hostname, "subdomain": subdomain},
            "status": {"podIP": ip, "conditions": [
                {"type": "Ready", "status": "True" if ready else "False"}]}}


def records(*objects: dict[str, Any], synced: bool = True) -> ClusterRecords:
    informers = {kind: Informer(None, version, plural)  # type: ignore[arg-type]
                 for kind, version, plural in (("Service", "v1", "services"),
                                               ("EndpointSlice", "discovery.k8s.io/v1",
                                                "endpointslices"),
                                               ("Pod", "v1", "pods"))}
    result = ClusterRecords(services=informers["Service"],
                            endpoint_slices=informers["EndpointSlice"], pods=informers["Pod"])
    for obj in objects:
        informers[obj["kind"]]._apply({"type": "ADDED", "object": obj})
    if synced:
        for informer in informers.values():
            informer.synced.set()
    return result


CLUSTER = (
    service("web", cluster_ip="10.96.0.5", ports=(("http", 80),)),
    service("db", ports=(("pg", 5432),)),
    endpoint_slice("db", ("127.7.0.11", True, "db-0"), ("127.7.0.12", True, "db-1"),
                   ("127.7.0.13", False, "db-2"), ports=(("pg", 5432),)),
    service("workers"),
    pod("trainer", "127.7.0.21", ready=True, hostname="worker-0", subdomain="workers"),
    pod("starting", "127.7.0.22", ready=False, hostname="worker-1", subdomain="workers"),
    service("search", type="ExternalName", externalName="example.test"),
)


# -- a fake upstream resolver ---------------------------------------------------------------

UPSTREAM_ANSWERS = {"example.test.": "192.0.2.7", "big.test.": "192.0.2.8"}


def upstream_reply(wire: bytes, *, tcp: bool) -> bytes:
    query = dns.message.from_wire(wire)
    reply = dns.message.make_response(query)
    name = query.question[0].name.to_text().lower()
    if name == "big.test." and not tcp:
        reply.flags |= dns.flags.TC  # too big for UDP: the client must retry over TCP
    elif name in UPSTREAM_ANSWERS:
        reply.answer.append(dns.rrset.from_text(name, 60, "IN", "A", UPSTREAM_ANSWERS[name]))
    else:
        reply.set_rcode(dns.rcode.NXDOMAIN)
    return reply.to_wire()


class _UpstreamUDP(asyncio.DatagramProtocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(upstream_reply(data, tcp=False), addr)


async def _upstream_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(asyncio.IncompleteReadError):
        size = struct.unpack("!H", await reader.readexactly(2))[0]
        reply = upstream_reply(await reader.readexactly(size), tcp=True)
        writer.write(struct.pack("!H", len(reply)) + reply)
        await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def upstream() -> AsyncIterator[tuple[str, int]]:
    tcp = await asyncio.start_server(_upstream_tcp, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    udp, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        _UpstreamUDP, local_addr=("127.0.0.1", port))
    try:
        yield ("127.0.0.1", port)
    finally:
        udp.close()
        tcp.close()


@contextlib.asynccontextmanager
async def cluster_dns(cluster: ClusterRecords) -> AsyncIterator[DNSServer]:
    async with upstream() as resolver:
        server = DNSServer(cluster, host="127.0.0.1", port=0, upstreams=[resolver])
        await server.start()
        try:
            yield server
        finally:
            await server.stop()


async def ask(server: DNSServer, name: str, rdtype: str = "A", *,
              tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    if tcp:
        return await dns.asyncquery.tcp(query, server.host, port=server.port, timeout=3)
    return await dns.asyncquery.udp(query, server.host, port=server.port, timeout=3)


def addresses(reply: dns.message.Message, rdtype: int = dns.rdatatype.A) -> set[str]:
    return {r.to_text() for rrset in reply.answer if rrset.rdtype == rdtype for r in rrset}


# -- the cluster domain ---------------------------------------------------------------------

def test_a_cluster_ip_service_resolves_to_its_cluster_ip() -> None:
    async def scenario() -> None:
        async with cluster_dns(records(*CLUSTER)) as server:
            reply = await ask(server, "web.default.svc.cluster.local")
            assert reply.rcode() == dns.rcode.NOERROR
            assert addresses(reply) == {"10.96.0.5"}
            assert reply.answer[0].ttl == 5 and reply.flags & dns.flags.AA
            upper = await ask(server, "WEB.Default.svc.cluster.local")
            assert addresses(upper) == {"10.96.0.5"}

    run(scenario)


def test_a_headless_service_resolves_to_its_ready_endpoints_only() -> None:
    async def scenario() -> None:
        async with cluster_dns(records(*CLUSTER)) as server:
            reply = await ask(server, "db.default.svc.cluster.local")
            assert addresses(reply) == {"127.7.0.11", "127.7.0.12"}

    run(scenario)


def test_srv_records_name_the_port_and_the_targets_with_their_addresses() -> None:
    async def scenario() -> None:
        async with cluster_dns(records(*CLUSTER)) as server:
            reply = await ask(server, "_pg._tcp.db.default.svc.cluster.local", "SRV")
            targets = {(r.port, r.target.to_text()) for r in reply.answer[0]}
            assert targets == {(5432, "db-0.db.default.svc.cluster.local."),
                               (5432, "db-1.db.default.svc.cluster.local.")}
            extra = {rrset.name.to_text(): {r.to_text() for r in rrset}
                     for rrset in reply.additional if rrset.rdtype == dns.rdatatype.A}
            assert extra == {"db-0.db.default.svc.cluster.local.": {"127.7.0.11"},
                             "db-1.db.default.svc.cluster.local.": {"127.7.0.12"}}
            web = await ask(server, "_http._tcp.web.default.svc.cluster.local", "SRV")
            assert [(r.port, r.target.to_text()) for r in web.answer[0]] == [
                (80, "web.default.svc.cluster.local.")]
            missing = await ask(server, "_nope._tcp.web.default.svc.cluster.local", "SRV")
            assert missing.rcode() == dns.rcode.NXDOMAIN

    run(scenario)


def test_statefulset_pods_and_pods_with_a_subdomain_have_their_own_names() -> None:
    async def scenario() -> None:
        async with cluster_dns(records(*CLUSTER)) as server:
            assert addresses(await ask(server, "db-1.db.default.svc.cluster.local")) == {
                "127.7.0.12"}
            assert addresses(await ask(server, "worker-0.workers.default.svc.cluster.local")
                             ) == {"127.7.0.21"}
            for unready in ("db-2.db", "worker-1.workers"):
                reply = await ask(server, f"{unready}.default.svc.cluster.local")
                assert reply.rcode() == dns.rcode.NXDOMAIN
            dashed = await ask(server, "127-7-0-11.default.pod.cluster.local")
            assert addresses(dashed) == {"127.7.0.11"}

    run(scenario)


def test_an_external_name_service_is_a_cname_followed_upstream() -> None:
    async def scenario() -> None:
        async with cluster_dns(records(*CLUSTER)) as server:
            reply = await ask(server, "search.default.svc.cluster.local")
            assert addresses(reply, dns.rdatatype.CNAME) == {"example.test."}
            assert addresses(reply) == {"192.0.2.7"}
            cname = await ask(server, "search.default.svc.cluster.local", "CNAME")
            assert addresses(cname, dns.rdatatype.CNAME) == {"example.test."}
            assert not addresses(cname)

    run(scenario)


def test_unknown_names_are_nxdomain_and_missing_types_nodata_both_with_the_soa() -> None:
    async def scenario() -> None:
        async with cluster_dns(records(*CLUSTER)) as server:
            for name in ("nope.default.svc.cluster.local", "web.other.svc.cluster.local",
                         "web.default.svc.cluster.local.default.svc.cluster.local",
                         "x.cluster.local"):
                reply = await ask(server, name)
                assert reply.rcode() == dns.rcode.NXDOMAIN, name
                assert reply.authority[0].rdtype == dns.rdatatype.SOA
            aaaa = await ask(server, "web.default.svc.cluster.local", "AAAA")
            assert aaaa.rcode() == dns.rcode.NOERROR and not aaaa.answer
            assert aaaa.authority[0].rdtype == dns.rdatatype.SOA

    run(scenario)


def test_cluster_names_are_servfail_until_the_caches_have_synced() -> None:
    async def scenario() -> None:
        async with cluster_dns(records(*CLUSTER, synced=False)) as server:
            reply = await ask(server, "web.default.svc.cluster.local")
            assert reply.rcode() == dns.rcode.SERVFAIL

    run(scenario)


# -- forwarding and transports --------------------------------------------------------------

def test_other_names_are_forwarded_to_the_upstream_resolver() -> None:
    async def scenario() -> None:
        async with cluster_dns(records(*CLUSTER)) as server:
            reply = await ask(server, "example.test")
            assert addresses(reply) == {"192.0.2.7"}
            assert not reply.flags & dns.flags.AA
            truncated_over_udp = await ask(server, "big.test")
            assert addresses(truncated_over_udp) == {"192.0.2.8"}
            unknown = await ask(server, "nowhere.test")
            assert unknown.rcode() == dns.rcode.NXDOMAIN

    run(scenario)


def test_no_upstream_answering_is_servfail() -> None:
    async def scenario() -> None:
        server = DNSServer(records(*CLUSTER), host="127.0.0.1", port=0, upstreams=[])
        await server.start()
        try:
            assert (await ask(server, "example.test")).rcode() == dns.rcode.SERVFAIL
        finally:
            await server.stop()

    run(scenario)


def test_queries_over_tcp() -> None:
    async def scenario() -> None:
        async with cluster_dns(records(*CLUSTER)) as server:
            reply = await ask(server, "db.default.svc.cluster.local", tcp=True)
            assert addresses(reply) == {"127.7.0.11", "127.7.0.12"}
            forwarded = await ask(server, "example.test", tcp=True)
            assert addresses(forwarded) == {"192.0.2.7"}

    run(scenario)


def test_a_taken_address_fails_to_start_with_an_os_error() -> None:
    async def scenario() -> None:
        async with cluster_dns(records(*CLUSTER)) as first:
            second = DNSServer(records(), host="127.0.0.1", port=first.port)
            try:
                await second.start()
            except OSError:
                return
            await second.stop()
            raise AssertionError("a second server bound the same port")

    run(scenario)


# -- pods' resolv.conf ----------------------------------------------------------------------

HOST = parse_resolv_conf("# host\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n"
                         "search corp.example\noptions edns0 ndots:2\n")


def dns_config(spec: dict[str, Any], cluster_dns: str | None = "127.7.0.10"
               ) -> tuple[ResolvConf, bool]:
    pod = {"metadata": {"name": "p", "namespace": "team"}, "spec": spec}
    return pod_dns_config(pod, host=HOST, cluster_dns=cluster_dns, domain="cluster.local")


def test_the_host_resolv_conf_is_read_as_the_resolver_reads_it() -> None:
    assert HOST == ResolvConf(("10.0.0.2", "10.0.0.3"), ("corp.example",),
                              ("edns0", "ndots:2"))


def test_cluster_first_pods_use_the_cluster_dns_with_the_search_path_and_ndots_5() -> None:
    config, missing = dns_config({})
    assert not missing
    assert config.render() == (
        "nameserver 127.7.0.10\n"
        "search team.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
        "options ndots:5\n")
    assert dns_config({"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"})[0] == \
        config


def test_default_and_host_network_pods_use_the_host_resolver() -> None:
    assert dns_config({"dnsPolicy": "Default"}) == (HOST, False)
    assert dns_config({"hostNetwork": True}) == (HOST, False)


def test_without_a_cluster_dns_cluster_first_falls_back_to_the_host_resolver() -> None:
    assert dns_config({}, cluster_dns=None) == (HOST, True)


def test_dns_config_is_merged_and_policy_none_uses_only_it() -> None:
    extra = {"nameservers": ["1.1.1.1", "127.7.0.10"], "searches": ["extra.example"],
             "options": [{"name": "ndots", "value": "2"}, {"name": "single-request"}]}
    merged, _ = dns_config({"dnsConfig": extra})
    assert merged.nameservers == ("127.7.0.10", "1.1.1.1")
    assert merged.searches[-1] == "extra.example"
    assert merged.options == ("ndots:2", "single-request")
    only, _ = dns_config({"dnsPolicy": "None", "dnsConfig": extra})
    assert only == ResolvConf(("1.1.1.1", "127.7.0.10"), ("extra.example",),
                              ("ndots:2", "single-request"))
