"""Cluster DNS throughput: Service A queries over UDP, beside a minimal dnspython server.

    python bench/dns_throughput.py [--seconds 3] [--clients 16] [--services 500]

Starts `pilothouse apiserver` on a temp dir and creates `--services` ClusterIP Services
(spread over 10 namespaces), each with an EndpointSlice of three ready endpoints. Then, each
in its own process (this script with `--serve`), on uvloop as `pilothouse node` runs:

- **ours**: the node's DNS server as the kubelet builds it (`pilothouse/node/dns.py`):
  `ClusterRecords` over informers on Services, EndpointSlices and all pods (slimmed) that
  list and watch the API server with the admin token, served by `DNSServer` on a free
  loopback port once the informers have synced. No upstreams: every name asked is in the
  cluster domain.
- **the baseline**: a minimal dnspython UDP server that parses each query and answers it
  with one fixed A record (`dns.message.from_wire`, `make_response`, one rrset, `to_wire`,
  in the datagram callback): the floor of the library ours is built on, on this machine.

The load generator (this process, uvloop) runs closed loops of 1 and `--clients` clients,
each with its own UDP socket, asking `<svc>.<ns>.svc.cluster.local A` for the Services in
turn, 0.5 s of warm-up then `--seconds` measured. Every reply is checked (its id, NOERROR,
one answer); the first three to each server are checked in full (ours must answer the
Service's cluster IP). Reported per case: queries/s, p50/p99/max latency, the CPU of the DNS
server (also per query), of the generator, of the API server (idle: nothing is written while
the queries run, so the informers receive nothing) and of the rest of the machine, and
ours / baseline. The machine's load is printed before and after: on a shared machine
queries/s moves with other work, the server's CPU per query much less.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import orjson

from pilothouse.client import Client, Informer
from pilothouse.client.api import Connection
from pilothouse.node.dns import ClusterRecords, DNSServer, slim_pod

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (  # noqa: E402
    REPO,
    HTTPConnection,
    Server,
    checked,
    client_ssl_context,
    cpu_seconds,
    machine_line,
    new_event_loop_policy,
    percentile,
    print_table,
    read_admin_token,
    running_server,
    stop_process,
)

NAMESPACES = 10
ENDPOINTS_PER_SERVICE = 3
WARMUP = 0.5
QUERY_TIMEOUT = 2.0
FIXED_ADDRESS = "10.96.0.10"
TTL = 5
CREATE_CONNECTIONS = 16


# -- the cluster the DNS server reads ------------------------------------------------------


def service_names(count: int) -> list[tuple[str, str]]:
    """(namespace, name) of every Service, spread over the namespaces."""
    return [(f"dns-{i % NAMESPACES}", f"svc-{i}") for i in range(count)]


async def populate(server: Server, count: int) -> dict[str, str]:
    """Create the Services and their EndpointSlices; return each query name's cluster IP."""
    conns = [await server.connect() for _ in range(CREATE_CONNECTIONS)]
    for i in range(NAMESPACES):
        await checked(conns[0], "POST", "/api/v1/namespaces", orjson.dumps(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"dns-{i}"}}))
    names = service_names(count)
    ips: dict[str, str] = {}

    async def create(conn: HTTPConnection, worker: int) -> None:
        for i in range(worker, count, CREATE_CONNECTIONS):
            ns, name = names[i]
            body = await checked(conn, "POST", f"/api/v1/namespaces/{ns}/services", orjson.dumps({
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                "spec": {"selector": {"app": name},
                         "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}))
            ips[f"{name}.{ns}.svc.cluster.local."] = orjson.loads(body)["spec"]["clusterIP"]
            await checked(conn, "POST", f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
                          orjson.dumps({
                              "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                              "metadata": {"name": f"{name}-abcde",
                                           "labels": {"kubernetes.io/service-name": name}},
                              "addressType": "IPv4",
                              "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                              "endpoints": [{"addresses": [f"127.8.{i % 250}.{j + 1}"],
                                             "conditions": {"ready": True}}
                                            for j in range(ENDPOINTS_PER_SERVICE)]}))

    try:
        await asyncio.gather(*(create(c, w) for w, c in enumerate(conns)))
    finally:
        for conn in conns:
            await conn.close()
    return ips


# -- the servers, each run in a process of its own (`--serve`) -----------------------------


async def serve_cluster_dns(api_port: int, data_dir: Path) -> None:
    """The node's DNS server over real informers, as `Kubelet.__init__` wires it."""
    connection = Connection(f"https://127.0.0.1:{api_port}",
                            client_ssl_context(data_dir / "pki" / "ca.crt"),
                            {"Authorization": f"Bearer {read_admin_token(data_dir)}"})
    async with Client(connection, user_agent="dns-bench") as client:
        informers = (Informer(client, "v1", "services"),
                     Informer(client, "discovery.k8s.io/v1", "endpointslices"),
                     Informer(client, "v1", "pods", transform=slim_pod))
        records = ClusterRecords(services=informers[0], endpoint_slices=informers[1],
                                 pods=informers[2])
        tasks = [asyncio.create_task(informer.run()) for informer in informers]
        await asyncio.gather(*(informer.synced.wait() for informer in informers))
        server = DNSServer(records, host="127.0.0.1", port=0)
        await server.start()
        print(f"ready {server.port}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            for task in tasks:
                task.cancel()
            await server.stop()


class _FixedA(asyncio.DatagramProtocol):
    """Every query answered with one A record: parse, make the response, serialise."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        response.answer.append(dns.rrset.from_text_list(
            query.question[0].name, TTL, dns.rdataclass.IN, dns.rdatatype.A, [FIXED_ADDRESS]))
        self.transport.sendto(response.to_wire(), addr)


async def serve_baseline() -> None:
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        _FixedA, local_addr=("127.0.0.1", 0))
    print(f"ready {transport.get_extra_info('sockname')[1]}", flush=True)
    await asyncio.Event().wait()


def spawn(*args: str) -> tuple[subprocess.Popen[bytes], int]:
    """This script in `--serve` mode; returns the process and the UDP port it answers on."""
    process = subprocess.Popen([sys.executable, __file__, "--serve", *args], cwd=REPO,
                               stdout=subprocess.PIPE)
    assert process.stdout is not None
    line = process.stdout.readline().decode().split()
    if not line or line[0] != "ready":
        stop_process(process)
        raise RuntimeError(f"the {args[0]} DNS server did not start")
    return process, int(line[1])


# -- the load ------------------------------------------------------------------------------


class _Client(asyncio.DatagramProtocol):
    """One closed-loop client socket: one query in flight, its reply resolves `waiting`."""

    def __init__(self) -> None:
        self.waiting: asyncio.Future[bytes] | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_result(data)


def reply_ok(query: bytes, reply: bytes) -> bool:
    """The reply's id is the query's, its rcode NOERROR and it carries one answer."""
    qid, flags, _, answers = struct.unpack_from("!HHHH", reply)
    return qid == struct.unpack_from("!H", query)[0] and flags & 0xF == 0 and answers == 1


async def check_answers(port: int, ips: dict[str, str], *, fixed: bool) -> None:
    for name, ip in list(ips.items())[:3]:
        reply = await dns.asyncquery.udp(dns.message.make_query(name, "A"), "127.0.0.1",
                                         port=port, timeout=QUERY_TIMEOUT)
        got = {r.to_text() for rrset in reply.answer for r in rrset}
        if reply.rcode() != dns.rcode.NOERROR or got != {FIXED_ADDRESS if fixed else ip}:
            raise RuntimeError(f"{name}: {dns.rcode.to_text(reply.rcode())} {got}")


async def drive(port: int, names: Sequence[str], clients: int, seconds: float,
                server_pid: int, api_pid: int) -> dict[str, float]:
    """`clients` closed loops for WARMUP + `seconds`; figures over the measured part, with the
    CPU of the DNS server, the generator, the (idle) API server and everything else."""
    loop = asyncio.get_running_loop()
    queries = [dns.message.make_query(name, "A").to_wire() for name in names]
    sockets = [await loop.create_datagram_endpoint(_Client, remote_addr=("127.0.0.1", port))
               for _ in range(clients)]
    latencies: list[float] = []
    lost = 0
    measure_from = loop.time() + WARMUP
    stop_at = measure_from + seconds
    marks: dict[str, float] = {}

    async def client(worker: int, transport: asyncio.DatagramTransport,
                     protocol: _Client) -> None:
        nonlocal lost
        i = worker
        clock = time.perf_counter
        while True:
            query = queries[i % len(queries)]
            i += clients
            protocol.waiting = loop.create_future()
            t0 = clock()
            transport.sendto(query)
            try:
                async with asyncio.timeout(QUERY_TIMEOUT):
                    reply = await protocol.waiting
            except TimeoutError:
                lost += 1
                continue
            t1 = clock()
            if not reply_ok(query, reply):
                raise RuntimeError(f"bad reply to query {i}: {reply[:12].hex()}")
            now = loop.time()
            if now >= stop_at:
                return
            if now >= measure_from:
                latencies.append(t1 - t0)

    async def sampler() -> None:
        await asyncio.sleep(max(0.0, measure_from - loop.time()))
        marks["client0"], marks["server0"] = time.process_time(), cpu_seconds(server_pid)
        marks["api0"] = cpu_seconds(api_pid)
        marks["machine0"], marks["steal0"] = machine_cpu()
        marks["wall0"] = time.perf_counter()
        await asyncio.sleep(max(0.0, stop_at - loop.time()))
        marks["client1"], marks["server1"] = time.process_time(), cpu_seconds(server_pid)
        marks["api1"] = cpu_seconds(api_pid)
        marks["machine1"], marks["steal1"] = machine_cpu()
        marks["wall1"] = time.perf_counter()

    try:
        await asyncio.gather(sampler(), *(client(w, t, p) for w, (t, p) in enumerate(sockets)))
    finally:
        for transport, _ in sockets:
            transport.close()
    wall = marks["wall1"] - marks["wall0"]
    latencies.sort()
    client_cpu = (marks["client1"] - marks["client0"]) / wall
    server_cpu = (marks["server1"] - marks["server0"]) / wall
    api_cpu = (marks["api1"] - marks["api0"]) / wall
    machine = (marks["machine1"] - marks["machine0"]) / wall
    return {"qps": len(latencies) / seconds, "p50": percentile(latencies, 50) * 1e6,
            "p99": percentile(latencies, 99) * 1e6, "max": latencies[-1] * 1e6,
            "server_cpu": server_cpu * 100, "client_cpu": client_cpu * 100,
            "server_us": server_cpu / (len(latencies) / seconds) * 1e6, "api_cpu": api_cpu * 100,
            "other_cpu": max(0.0, machine - server_cpu - client_cpu - api_cpu) * 100,
            "steal": (marks["steal1"] - marks["steal0"]) / wall * 100,
            "client_us": client_cpu / (len(latencies) / seconds) * 1e6, "lost": lost}


def machine_cpu() -> tuple[float, float]:
    """CPU seconds the whole machine has spent busy (user, system, interrupts) and stolen by
    the hypervisor, summed over its CPUs (/proc/stat)."""
    user, nice, system, _, _, irq, softirq, steal = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def load_line(when: str) -> str:
    """The load average and the machine's CPU use over one second: on a shared machine the
    figures mean little without it."""
    busy0, steal0 = machine_cpu()
    time.sleep(1.0)
    busy1, steal1 = machine_cpu()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return (f"{when}: load average {load}; CPUs busy {(busy1 - busy0) * 100:.0f}% and stolen "
            f"{(steal1 - steal0) * 100:.0f}% of one core over one second")


# -- main ----------------------------------------------------------------------------------


async def bench(seconds: float, clients: int, services: int) -> None:
    print(f"Cluster DNS throughput -- {machine_line()}")
    print(load_line("before"))
    with running_server() as api:
        started = time.perf_counter()
        ips = await populate(api, services)
        print(f"{services} Services with EndpointSlices created in "
              f"{time.perf_counter() - started:.1f} s")
        names = list(ips)
        results: dict[tuple[str, int], dict[str, float]] = {}
        for label, args in (("ours", ("cluster", str(api.port), str(api.data_dir))),
                            ("baseline", ("baseline",))):
            process, port = spawn(*args)
            try:
                await check_answers(port, ips, fixed=label == "baseline")
                for n in (1, clients):
                    r = results[(label, n)] = await drive(port, names, n, seconds,
                                                          process.pid, api.pid)
                    print(f"  {label:8} x{n:<3} {r['qps']:8,.0f} q/s  p50 {r['p50']:7.0f} us  "
                          f"p99 {r['p99']:7.0f} us", flush=True)
            finally:
                stop_process(process)
    rows = []
    for n in (1, clients):
        ours, base = results[("ours", n)], results[("baseline", n)]
        for label, r in (("cluster DNS", ours), ("dnspython fixed A", base)):
            rows.append([f"{label} x{n}", r["qps"], r["p50"], r["p99"], r["max"],
                         f"{r['server_cpu']:.0f}%", r["server_us"], f"{r['client_cpu']:.0f}%",
                         r["client_us"],
                         f"{r['api_cpu']:.0f}%", f"{r['other_cpu']:.0f}%",
                         f"{r['steal']:.0f}%", int(r["lost"])])
        rows.append([f"ours / baseline x{n}", f"{ours['qps'] / base['qps']:.2f}",
                     f"{ours['p50'] / base['p50']:.2f}", f"{ours['p99'] / base['p99']:.2f}",
                     "", "", f"{ours['server_us'] / base['server_us']:.2f}", "", "", "", "",
                     "", ""])
    print_table(
        f"Cluster DNS vs a minimal dnspython server: UDP A queries for {services} Services, "
        f"closed loop, {seconds:g} s measured",
        ["case", "queries/s", "p50 us", "p99 us", "max us", "server CPU", "server us/q",
         "loadgen CPU",
         "loadgen us/q", "API server CPU", "rest of machine", "stolen", "lost"], rows)
    print("\nCPU columns are percent of one core over the measured window. 'server us/q' is "
          "the server's CPU per query: what each answer costs, which other load on the machine "
          "moves far less than queries/s. 'loadgen us/q' is the generator's (near 100% loadgen "
          "CPU, the server was not the limit). 'rest of machine' is every other process and the kernel's interrupt work "
          "(loopback UDP included); 'stolen' is time the hypervisor gave to other VMs.")
    print(load_line("after"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--services", type=int, default=500)
    parser.add_argument("--serve", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    new_event_loop_policy()
    if args.serve:
        kind, *rest = args.serve
        if kind == "cluster":
            asyncio.run(serve_cluster_dns(int(rest[0]), Path(rest[1])))
        else:
            asyncio.run(serve_baseline())
        return 0
    asyncio.run(bench(args.seconds, args.clients, args.services))
    return 0


if __name__ == "__main__":
    sys.exit(main())
