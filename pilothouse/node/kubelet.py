"""The node agent (kubelet): keeps the pods bound to this node running, and says so.

What it owns, and where each part lives:

- **The Node and its heartbeat** (here): registers the Node with the machine's real
  capacity and allocatable (`stats.node_capacity`), addresses, nodeInfo, labels and taints
  from the flags; renews its Lease in `kube-node-lease` every quarter of the lease
  duration; recomputes the node status (Ready and the Memory/Disk/PID pressure conditions)
  every 10 s and posts it when it changed or every 5 minutes, as the kubelet does.
- **Pods**: an informer on the pods bound to this node (`spec.nodeName=<node>`) starts one
  `PodWorker` per pod (`podworker.py`), woken by pod updates, by the runtimes' container
  events and by probe results. Statuses are computed in `podstatus.py`.
- **Runtimes** (`runtime/`): the node's default (sandbox where Linux namespaces work, else
  process) and any other a pod asks for through its RuntimeClass handler.
- **Pod IPs**: a pod of a runtime that can join network namespaces (sandbox) gets its own
  namespace on the node's bridge with an address of the node's pod subnet (`podnet.py`;
  the subnet is the Node's `spec.podCIDR`, which this agent sets when it registers, since
  no controller allocates it here); other pods share the host's network with a loopback
  address of the node's pod network (127.N.0.0/16), and hostNetwork pods the node's IP.
  Where namespaces cannot be made (not root, no iproute2) the node says so in its log and
  sandboxed pods share the host's network too.
- **Images** (`runtime/images.py`): imagePullPolicy and the Pulling/Pulled events here;
  an image is a virtual environment made on first use.
- **Volumes and environment** (`volumes.py`, `env.py`), **probes** (`probes.py`),
  **stats** (`stats.py`: the Summary API behind `kubectl top`).
- **Cluster DNS** (`dns.py`): a DNS server for the cluster domain at the node's DNS
  address (`--cluster-dns`, by default `.0.10` of the node's pod network, port 53: root
  only), fed by informers on Services, EndpointSlices and Pods, forwarding other names to
  the host's resolvers (`--resolv-conf`). Pods' resolv.conf follows their dnsPolicy and
  dnsConfig as the kubelet writes it (`pod_dns_config`), and their /etc/hosts is the
  kubelet-managed one (`pod_hosts_file`: the pod IP under the pod's hostname and FQDN,
  hostAliases; the node's own for hostNetwork). Only runtimes that bind the pod's own
  /etc/resolv.conf and /etc/hosts (sandbox, engine) show them to the pod; a process-runtime pod
  reads the host's and resolves what the host resolves (no cluster names). When the
  address cannot be bound (not root, port taken) the node runs on without it, with a
  warning, and ClusterFirst pods get the host's resolver, as a kubelet without
  clusterDNS falls back to Default.
- **The kubelet API** (`server.py`): logs, exec, attach, port-forward and stats over
  HTTPS, which the API server proxies to. This class is its `PodSource`; callers are
  authorized by a SubjectAccessReview, as the kubelet's webhook authorizer does.

Restarts: all container state lives with the runtime, in the data dir, so a kubelet killed
with SIGKILL comes back, finds its containers (`list_containers`) and adopts them without
restarting them. A graceful stop (SIGTERM, e.g. when `up` stops) is a node shutdown: every
pod's containers are stopped within their grace period (capped by the shutdown grace
period), and come back when the kubelet starts again. One kubelet per data dir (a lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import ipaddress
import logging
import platform
import socket
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..client import ApiError, Client, Informer, load_kubeconfig
from ..client.controller import EventRecorder
from ..machinery.addresses import node_dns_address, node_octet, pod_network, pod_subnet
from ..machinery.meta import now as utcnow
from ..machinery.meta import rfc3339, rfc3339_micro
from .dns import ClusterRecords, DNSServer, ResolvConf, parse_resolv_conf, slim_pod
from .hollow import ARCH, KUBELET_VERSION, LEASE_NAMESPACE, lease_object
from .logs import log_attempts
from .podnet import PodNetwork, PodNetworkError
from .podnet import unavailable as pod_network_unavailable
from .podworker import LABEL_POD_UID, PodWorker, _Waiting, pod_dir_name
from .runtime import RUNTIMES, default_runtime
from .runtime.base import ContainerStatus, Runtime, RuntimeUnavailable
from .runtime.images import ImageRef, ImageStore
from .server import KubeletServer
from .stats import (
    StatsProvider,
    disk_pressure,
    memory_pressure,
    node_allocatable,
    node_capacity,
    pid_pressure,
)
from .volumes import VolumeManager

log = logging.getLogger(__name__)

STATUS_UPDATE_SECONDS = 10.0
STATUS_REPORT_SECONDS = 300.0
RELIST_SECONDS = 5.0
SAR_CACHE_SECONDS = 300.0
#: The kubelet's limits on what a pod's resolv.conf may list.
MAX_DNS_NAMESERVERS = 3
MAX_DNS_SEARCHES = 32
MAX_DNS_SEARCH_CHARS = 2048


class NodeAgentError(Exception):
    """The node agent cannot start; the message says why (the CLI prints it)."""


@dataclass(frozen=True)
class KubeletSettings:
    node_name: str
    data_dir: Path
    #: The address the node reports and the kubelet API listens on.
    node_ip: str
    #: The kubelet API port; 0 picks a free one (reported in daemonEndpoints).
    port: int = 10250
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Mapping[str, str], ...] = ()
    max_pods: int = 110
    lease_duration_seconds: int = 40
    #: The default runtime's name; None chooses as `runtime.default_runtime()` does.
    runtime: str | None = None
    #: A node shutdown gives pods at most this long in all (shutdownGracePeriod).
    shutdown_grace_seconds: float = 30.0
    #: The node's DNS server address (--cluster-dns); "" is `.0.10` of the pod network.
    cluster_dns: str = ""
    #: Its port: a resolv.conf cannot name one, so pods use it only on 53 (tests change it).
    cluster_dns_port: int = 53
    cluster_domain: str = "cluster.local"
    #: The host's resolver configuration (--resolv-conf): dnsPolicy Default pods get it and
    #: the cluster DNS forwards to its nameservers.
    resolv_conf: Path = Path("/etc/resolv.conf")


def detect_node_ip(api_server: str) -> str:
    """The address this machine uses to reach the API server (127.0.0.1 for a local one),
    which is the address the API server can reach the kubelet at."""
    host = urlparse(api_server).hostname or "127.0.0.1"
    try:
        infos = socket.getaddrinfo(host, 443, socket.AF_INET, socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(infos[0][4])
            return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def _dedupe(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _merge_options(existing: Iterable[str], extra: Iterable[Mapping[str, Any]]) -> list[str]:
    """resolv.conf options with dnsConfig's by name: a pod's `ndots` replaces the default."""
    merged = {o.partition(":")[0]: o for o in existing}
    for option in extra:
        name = option.get("name") or ""
        if name:
            value = option.get("value")
            merged[name] = f"{name}:{value}" if value is not None else name
    return list(merged.values())


def pod_dns_config(pod: Mapping[str, Any], *, host: ResolvConf, cluster_dns: str | None,
                   domain: str) -> tuple[ResolvConf, bool]:
    """A pod's resolv.conf from its dnsPolicy and dnsConfig, as the kubelet makes it, and
    whether ClusterFirst fell back to the host's for want of a cluster DNS.

    ClusterFirst (the default): the cluster DNS, the search path `<ns>.svc.<domain>
    svc.<domain> <domain>` then the host's, `ndots:5`; with hostNetwork it is Default
    unless the policy is ClusterFirstWithHostNet. Default: the host's. None: only
    dnsConfig, which the others append to (options replace same-named ones).
    """
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "ClusterFirst" and spec.get("hostNetwork"):
        policy = "Default"
    missing = policy in ("ClusterFirst", "ClusterFirstWithHostNet") and not cluster_dns
    if policy == "None":
        base = ResolvConf()
    elif policy in ("ClusterFirst", "ClusterFirstWithHostNet") and cluster_dns:
        namespace = (pod.get("metadata") or {}).get("namespace") or "default"
        base = ResolvConf((cluster_dns,), (f"{namespace}.svc.{domain}", f"svc.{domain}",
                                           domain, *host.searches), ("ndots:5",))
    else:
        base = host
    extra = spec.get("dnsConfig") or {}
    searches: list[str] = []
    for search in _dedupe([*base.searches, *(extra.get("searches") or ())]):
        if len(searches) == MAX_DNS_SEARCHES or \
                len(" ".join([*searches, search])) > MAX_DNS_SEARCH_CHARS:
            break
        searches.append(search)
    return ResolvConf(
        tuple(_dedupe([*base.nameservers, *(extra.get("nameservers") or ())])[
            :MAX_DNS_NAMESERVERS]),
        tuple(searches),
        tuple(_merge_options(base.options, extra.get("options") or ()))), missing


#: The node's hosts file, which hostNetwork pods see (the kubelet's etcHostsPath).
ETC_HOSTS = Path("/etc/hosts")
MANAGED_HOSTS_HEADER = "# Kubernetes-managed hosts file.\n"
MANAGED_HOSTS_HEADER_HOST_NETWORK = "# Kubernetes-managed hosts file (host network).\n"
#: sethostname(2) takes at most 64 bytes: the kubelet cuts a longer hostname to 63.
HOSTNAME_MAX_LEN = 63


def pod_hostname_and_domain(pod: Mapping[str, Any], *, cluster_domain: str) -> tuple[str, str]:
    """A pod's hostname and, with a subdomain, its domain (`<subdomain>.<ns>.svc.<domain>`),
    as the kubelet derives them: spec.hostname or the pod's name, cut to 63 characters
    without a trailing '-' or '.' (pod names may be longer; hostnames may not)."""
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    hostname = (spec.get("hostname") or meta.get("name") or "")[:HOSTNAME_MAX_LEN]
    hostname = hostname.rstrip("-.")
    domain = ""
    if spec.get("subdomain"):
        domain = f"{spec['subdomain']}.{meta.get('namespace') or 'default'}.svc.{cluster_domain}"
    return hostname, domain


def _host_alias_entries(pod: Mapping[str, Any]) -> str:
    aliases = (pod.get("spec") or {}).get("hostAliases") or ()
    if not aliases:
        return ""
    return "\n# Entries added by HostAliases.\n" + "".join(
        f"{alias.get('ip')}\t{chr(9).join(alias.get('hostnames') or ())}\n"
        for alias in aliases)


def pod_hosts_file(pod: Mapping[str, Any], *, ips: Iterable[str], hostname: str, domain: str,
                   node_hosts: str) -> str:
    """A pod's /etc/hosts, as the kubelet writes it: with hostNetwork, the node's own
    (`node_hosts`) under a header; otherwise localhost, the IPv6 boilerplate and each pod
    IP with the pod's FQDN (when it has a domain) and hostname -- what lets a program find
    its own address from its hostname, as gloo and NCCL do -- then spec.hostAliases."""
    if (pod.get("spec") or {}).get("hostNetwork"):
        return MANAGED_HOSTS_HEADER_HOST_NETWORK + node_hosts + _host_alias_entries(pod)
    names = f"{hostname}.{domain}\t{hostname}" if domain else hostname
    return (MANAGED_HOSTS_HEADER + "127.0.0.1\tlocalhost\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n"
            "fe00::0\tip6-localnet\n"
            "fe00::0\tip6-mcastprefix\n"
            "fe00::1\tip6-allnodes\n"
            "fe00::2\tip6-allrouters\n"
            + "".join(f"{ip}\t{names}\n" for ip in ips) + _host_alias_entries(pod))


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.partition("=")[2].strip('"')
    return platform.platform()


class Kubelet:
    def __init__(self, client: Client, settings: KubeletSettings, *,
                 client_ca_pem: bytes) -> None:
        self.client = client
        self.settings = settings
        self.node_name = settings.node_name
        self.node_ip = settings.node_ip
        data = settings.data_dir
        self.pods_root = data / "pods"
        self.run_dir = data / "node" / "run"
        self.pods_root.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.default_runtime, self.runtime_reason = (settings.runtime, "chosen by flag") \
            if settings.runtime else default_runtime()
        self._runtimes: dict[str, Runtime] = {}
        self.images = ImageStore(data / "images")
        self.volumes = VolumeManager(client, pods_root=self.pods_root,
                                     node_name=self.node_name, data_dir=data)
        self.capacity = node_capacity(data)
        self.capacity["pods"] = str(settings.max_pods)
        self.allocatable = node_allocatable(self.capacity)
        self.stats = StatsProvider(node_name=self.node_name, data_dir=data,
                                   containers=self._running_containers)
        self.recorder = EventRecorder(client, "kubelet", host=self.node_name)
        self.server = KubeletServer(self, host=self.node_ip, port=settings.port,
                                    cert_dir=data / "node" / "pki", client_ca_pem=client_ca_pem,
                                    authorizer=self._authorize, node_name=self.node_name)
        self.pod_informer = Informer(client, "v1", "pods",
                             field_selector=f"spec.nodeName={self.node_name}")
        self.services_informer = Informer(client, "v1", "services")
        self.pod_informer.add_handler(self._on_pod)
        self.workers: dict[str, PodWorker] = {}
        self._uid_keys: dict[str, str] = {}
        self._network = pod_network(self.node_name)
        #: Network namespaces for sandboxed pods; None where they cannot be made here.
        self.pod_network: PodNetwork | None = None
        self.host_resolv = parse_resolv_conf(_read(str(settings.resolv_conf)))
        self.dns_address = settings.cluster_dns or node_dns_address(self._network)
        #: The address pods' resolv.conf names: set once the DNS server listens.
        self.cluster_dns: str | None = None
        self.endpoint_slices_informer = Informer(client, "discovery.k8s.io/v1",
                                                 "endpointslices")
        self.all_pods_informer = Informer(client, "v1", "pods", transform=slim_pod)
        self.dns = DNSServer(
            ClusterRecords(services=self.services_informer,
                           endpoint_slices=self.endpoint_slices_informer,
                           pods=self.all_pods_informer, domain=settings.cluster_domain,
                           nameserver=self.dns_address),
            host=self.dns_address, port=settings.cluster_dns_port,
            upstreams=[(server, 53) for server in self.host_resolv.nameservers])
        self._ips: dict[str, str] = {}
        self._runtime_classes: dict[str, str] = {}
        self._existing: dict[str, list[tuple[Runtime, ContainerStatus]]] = {}
        self._event_tasks: set[asyncio.Task] = set()
        self._sar_cache: dict[tuple, tuple[bool, float]] = {}
        self._pulls: dict[str, asyncio.Lock] = {}
        self._node_uid = ""
        self._reported_status: dict[str, Any] | None = None
        self._reported_at = 0.0
        self._lock_file: Any = None
        self._tasks: list[asyncio.Task] = []
        self._started = time.time()

    # -- running ----------------------------------------------------------------------------

    def _lock(self) -> None:
        path = self.settings.data_dir / "node" / "kubelet.lock"
        handle = path.open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise NodeAgentError(f"another node agent is using {self.settings.data_dir}; "
                                 "give this one its own --data-dir") from None
        self._lock_file = handle

    async def run(self) -> None:
        """Serve until cancelled; then shut the node down gracefully."""
        self._lock()
        try:
            self.runtime_for_handler("")
        except RuntimeUnavailable as err:
            raise NodeAgentError(f"runtime {self.default_runtime}: {err}") from None
        await self._index_existing()
        await self.server.start()
        # Stopped while still starting (SIGTERM during registration), the node must still
        # tear down what it made: the pod network's bridge and spare namespaces above all.
        try:
            await self._start_pod_network()
            await self._register()
            await self._start_dns()
            self._tasks += [
                asyncio.create_task(self.pod_informer.run(), name="kubelet-pods"),
                asyncio.create_task(self.services_informer.run(), name="kubelet-services"),
                asyncio.create_task(self._heartbeat(), name="kubelet-heartbeat"),
            ]
            await self.stats.start()
            await self.pod_informer.synced.wait()
            await self.services_informer.synced.wait()
            await self._housekeeping_once()
            for runtime in list(self._runtimes.values()):
                self._tasks.append(asyncio.create_task(self._events(runtime),
                                                       name=f"pleg-{runtime.name}"))
            self._tasks.append(asyncio.create_task(self._relist(), name="kubelet-relist"))
            log.info("node %s ready (runtime %s: %s)", self.node_name, self.default_runtime,
                     self.runtime_reason)
            await asyncio.gather(*self._tasks)
        finally:
            await self._shutdown()

    async def _start_pod_network(self) -> None:
        """The bridge for sandboxed pods' network namespaces, if this node can make them;
        else say why, once: sandboxed pods then share the host's network."""
        try:
            self.runtime_for_handler("sandbox")
        except (RuntimeUnavailable, KeyError):
            return  # no sandboxed pods here: the process runtime shares the host's network
        network = PodNetwork(octet=node_octet(self.node_name), subnet=pod_subnet(self.node_name),
                             owner=str(self.settings.data_dir.resolve()))
        reason = pod_network_unavailable()
        if not reason:
            try:
                await network.setup()
            except PodNetworkError as err:
                reason = str(err)
        if reason:
            log.warning("pod network unavailable: %s; sandboxed pods share the host's network "
                        "with loopback pod IPs in %s", reason, self._network)
            return
        self.pod_network = network
        log.info("pod network: sandboxed pods get their own network namespace on bridge %s, "
                 "pod IPs from %s", network.bridge, network.subnet)

    async def _start_dns(self) -> None:
        where = f"{self.dns_address}:{self.settings.cluster_dns_port}"
        try:
            await self.dns.start()
        except OSError as err:
            log.warning("cluster DNS cannot listen on %s (%s): pods keep the host's resolver "
                        "(run the node as root, or free the port, or pick another address "
                        "with --cluster-dns)", where, err.strerror or err)
            return
        self.cluster_dns = self.dns_address
        self._tasks += [
            asyncio.create_task(self.endpoint_slices_informer.run(), name="dns-endpointslices"),
            asyncio.create_task(self.all_pods_informer.run(), name="dns-pods"),
        ]
        log.info("cluster DNS for %s serving on %s", self.settings.cluster_domain, where)

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        workers = list(self.workers.values())
        for worker in workers:
            await worker.stop()
        grace = self.settings.shutdown_grace_seconds

        async def stop_pod(worker: PodWorker) -> None:
            pod_grace = 30.0
            if worker.pod is not None:
                pod_grace = float((worker.pod.get("spec") or {}).get(
                    "terminationGracePeriodSeconds", 30))
            with contextlib.suppress(Exception):
                await worker.shut_down(grace=min(pod_grace, grace))

        await asyncio.gather(*(stop_pod(w) for w in workers))
        if self.pod_network is not None:
            # The pods come back in new namespaces when the node starts again.
            with contextlib.suppress(Exception):
                await self.pod_network.teardown()
        await self.dns.stop()  # last: stopping pods may still look names up
        await self.stats.stop()
        await self.server.stop()

    # -- the node -------------------------------------------------------------------------

    def _node_info(self) -> dict[str, str]:
        machine = _read("/etc/machine-id") or hashlib.sha256(
            self.node_name.encode()).hexdigest()[:32]
        return {
            "machineID": machine, "systemUUID": _read("/sys/class/dmi/id/product_uuid")
            or machine, "bootID": _read("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": platform.release(), "osImage": _os_image(),
            "containerRuntimeVersion": f"{self.default_runtime}://pilothouse",
            "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": ARCH,
        }

    def node_status(self, previous: Mapping[str, Any] | None) -> dict[str, Any]:
        stamp = rfc3339()
        before = {c.get("type"): c for c in ((previous or {}).get("conditions") or ())}
        stats = self.stats.node_stats()
        checks = [("MemoryPressure", memory_pressure(stats)),
                  ("DiskPressure", disk_pressure(stats)),
                  ("PIDPressure", pid_pressure(stats))]
        conditions = []
        for kind, (pressure, reason, message) in checks:
            conditions.append(self._condition(before.get(kind), kind,
                                              "True" if pressure else "False", reason,
                                              message, stamp))
        conditions.append(self._condition(before.get("Ready"), "Ready", "True", "KubeletReady",
                                          "kubelet is posting ready status", stamp))
        return {
            "capacity": dict(self.capacity), "allocatable": dict(self.allocatable),
            "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": self.node_ip},
                          {"type": "Hostname", "address": self.node_name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.server.port}},
            "nodeInfo": self._node_info(),
        }

    @staticmethod
    def _condition(old: Mapping[str, Any] | None, kind: str, status: str, reason: str,
                   message: str, stamp: str) -> dict[str, Any]:
        unchanged = old is not None and old.get("status") == status and \
            old.get("lastTransitionTime")
        return {"type": kind, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": old["lastTransitionTime"] if unchanged else stamp}

    async def _register(self) -> None:
        labels = {"kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": ARCH, "beta.kubernetes.io/os": "linux",
                  "beta.kubernetes.io/arch": ARCH, **self.settings.labels}
        node = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.node_name, "labels": labels,
                         "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                         "volumes.kubernetes.io/controller-managed-attach"
                                         "-detach": "true"}},
            "spec": {"taints": [dict(t) for t in self.settings.taints]}
            if self.settings.taints else {},
            "status": self.node_status(None),
        }
        cidr = str(self.pod_network.subnet) if self.pod_network is not None else ""
        if cidr:
            node["spec"].update(podCIDR=cidr, podCIDRs=[cidr])
        try:
            created = await self.client.create("v1", "nodes", node)
            self._node_uid = created["metadata"]["uid"]
        except ApiError as err:
            if not err.conflict:
                raise
            existing = await self.client.get("v1", "nodes", self.node_name)
            self._node_uid = existing["metadata"]["uid"]
            patch: dict[str, Any] = {"metadata": {"labels": labels}}
            known = (existing.get("spec") or {}).get("podCIDR")
            if cidr and not known:
                patch["spec"] = {"podCIDR": cidr, "podCIDRs": [cidr]}
            await self.client.patch("v1", "nodes", self.node_name, patch)
            if cidr and known and known != cidr:
                await self._drop_pod_network(f"Node {self.node_name} has spec.podCIDR {known} "
                                             f"(set elsewhere), not this node's {cidr}")
            await self._post_status(existing.get("status"))
        self._reported_at = time.monotonic()
        await self._renew_lease()

    async def _drop_pod_network(self, reason: str) -> None:
        assert self.pod_network is not None
        log.warning("pod network unavailable: %s; sandboxed pods share the host's network "
                    "with loopback pod IPs in %s", reason, self._network)
        network, self.pod_network = self.pod_network, None
        await network.teardown()

    async def _post_status(self, previous: Mapping[str, Any] | None) -> None:
        status = self.node_status(previous)
        node = await self.client.patch("v1", "nodes", self.node_name, {"status": status},
                                       subresource="status")
        self._reported_status = node.get("status")
        self._reported_at = time.monotonic()

    async def _renew_lease(self) -> None:
        body = {"spec": {"holderIdentity": self.node_name,
                         "leaseDurationSeconds": self.settings.lease_duration_seconds,
                         "renewTime": rfc3339_micro(utcnow())}}
        try:
            await self.client.patch("coordination.k8s.io/v1", "leases", self.node_name, body,
                                    LEASE_NAMESPACE)
        except ApiError as err:
            if not err.not_found:
                raise
            await self.client.create("coordination.k8s.io/v1", "leases",
                                     lease_object(self.node_name, self._node_uid, utcnow(),
                                                  duration=self.settings.lease_duration_seconds),
                                     LEASE_NAMESPACE)

    async def _heartbeat(self) -> None:
        renew = self.settings.lease_duration_seconds / 4
        next_status = time.monotonic() + STATUS_UPDATE_SECONDS
        while True:
            await asyncio.sleep(min(renew, max(0.0, next_status - time.monotonic())))
            try:
                await self._renew_lease()
                if time.monotonic() >= next_status:
                    next_status = time.monotonic() + STATUS_UPDATE_SECONDS
                    await self._maybe_post_status()
            except ApiError as err:
                if err.not_found:
                    log.warning("node %s was deleted; registering it again", self.node_name)
                    await self._register()
                else:
                    log.warning("node heartbeat failed: %s", err)
            except Exception as err:  # the API server may be restarting: keep beating
                log.warning("node heartbeat failed: %s", err)

    async def _maybe_post_status(self) -> None:
        node = await self.client.get("v1", "nodes", self.node_name)
        previous = node.get("status") or {}
        desired = self.node_status(previous)

        def shape(status: Mapping[str, Any]) -> Any:
            return ([(c.get("type"), c.get("status")) for c in status.get("conditions") or ()],
                    status.get("allocatable"), status.get("daemonEndpoints"))

        if shape(desired) != shape(previous) or \
                time.monotonic() - self._reported_at >= STATUS_REPORT_SECONDS:
            await self._post_status(previous)

    # -- pods -------------------------------------------------------------------------------

    def _on_pod(self, old: dict | None, new: dict | None) -> None:
        pod = new if new is not None else old
        if pod is None:
            return
        uid = pod["metadata"].get("uid", "")
        key = f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"
        if new is not None:
            self._uid_keys[uid] = key
            ip = (new.get("status") or {}).get("podIP")
            if ip and uid not in self._ips and ipaddress.IPv4Address(ip) in self._network:
                self._ips[uid] = ip
        worker = self.workers.get(uid)
        if worker is None:
            if new is None:
                return
            worker = PodWorker(self, key, uid)
            self.workers[uid] = worker
            worker.start()
        else:
            worker.wake()

    def pod_by_uid(self, uid: str) -> dict[str, Any] | None:
        key = self._uid_keys.get(uid)
        pod = self.pod_informer.get(key) if key else None
        if pod is None or pod["metadata"].get("uid") != uid:
            return None
        return pod

    def worker_done(self, worker: PodWorker) -> None:
        if self.workers.get(worker.uid) is worker:
            del self.workers[worker.uid]
            self._uid_keys.pop(worker.uid, None)

    def pod_dir(self, pod: Mapping[str, Any]) -> Path:
        return self.pods_root / pod_dir_name(pod)

    def pod_dir_by_uid(self, uid: str) -> Path | None:
        return next(iter(self.pods_root.glob(f"*_{uid}")), None)

    def pod_ip_for(self, pod: Mapping[str, Any]) -> str:
        uid = pod["metadata"]["uid"]
        if uid in self._ips:
            return self._ips[uid]
        used = set(self._ips.values())
        start = zlib.crc32(uid.encode()) % (self._network.num_addresses - 2)
        for offset in range(self._network.num_addresses - 2):
            address = self._network.network_address + 1 + (start + offset) % (
                self._network.num_addresses - 2)
            text = str(address)
            if text not in used and text != self.dns_address and \
                    int(address) & 0xFF not in (0, 255):
                self._ips[uid] = text
                return text
        raise _Waiting("ContainerCreating", "Failed to create pod sandbox: no pod IP left in "
                       f"{self._network}", event="FailedCreatePodSandBox")

    async def sandbox_network(self, pod: Mapping[str, Any], runtime: Runtime
                              ) -> tuple[str, str]:
        """The pod's IP and the network namespace its containers join ("": the host's)."""
        if (pod.get("spec") or {}).get("hostNetwork"):
            return self.node_ip, ""
        if self.pod_network is None or not runtime.network_namespaces:
            return self.pod_ip_for(pod), ""
        try:
            attachment = await self.pod_network.attach(pod["metadata"]["uid"])
        except PodNetworkError as err:
            raise _Waiting("ContainerCreating", "Failed to create pod sandbox: failed to set up "
                           f"the pod's network: {err}", event="FailedCreatePodSandBox") from None
        return attachment.ip, attachment.netns

    async def release_network(self, uid: str) -> None:
        """The pod is gone: its address, and its network namespace if it had one."""
        self._ips.pop(uid, None)
        if self.pod_network is not None:
            await self.pod_network.detach(uid)

    def pod_hostname(self, pod: Mapping[str, Any]) -> tuple[str, str]:
        """The pod's hostname and domain (`pod_hostname_and_domain`); a hostNetwork pod is
        named after the node, whose UTS namespace it would share."""
        hostname, domain = pod_hostname_and_domain(pod,
                                                   cluster_domain=self.settings.cluster_domain)
        if (pod.get("spec") or {}).get("hostNetwork"):
            hostname = self.node_name
        return hostname, domain

    def hosts_file(self, pod: Mapping[str, Any], *, ip: str, hostname: str, domain: str
                   ) -> str:
        """The pod's /etc/hosts (`pod_hosts_file`); the node's is read afresh for each
        hostNetwork pod, as the kubelet reads it."""
        node_hosts = ""
        if (pod.get("spec") or {}).get("hostNetwork"):
            try:
                node_hosts = ETC_HOSTS.read_text()
            except OSError as err:
                log.warning("cannot read %s for hostNetwork pod %s/%s: %s", ETC_HOSTS,
                            (pod.get("metadata") or {}).get("namespace"),
                            (pod.get("metadata") or {}).get("name"), err)
        return pod_hosts_file(pod, ips=[ip], hostname=hostname, domain=domain,
                              node_hosts=node_hosts)

    def resolv_conf(self, pod: Mapping[str, Any]) -> str:
        config, missing = pod_dns_config(pod, host=self.host_resolv,
                                         cluster_dns=self.cluster_dns,
                                         domain=self.settings.cluster_domain)
        if missing:
            meta = pod.get("metadata") or {}
            task = asyncio.get_running_loop().create_task(self.event(
                pod, "Warning", "MissingClusterDNS",
                f'pod: "{meta.get("name")}_{meta.get("namespace")}({meta.get("uid")})". '
                "kubelet does not have ClusterDNS IP configured and cannot create Pod using "
                '"ClusterFirst" policy. Falling back to "Default" policy.'))
            self._event_tasks.add(task)
            task.add_done_callback(self._event_tasks.discard)
        return config.render()

    def services(self) -> list[dict[str, Any]]:
        return self.services_informer.list()

    async def lookup(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        plural = {"ConfigMap": "configmaps", "Secret": "secrets"}[kind]
        try:
            return await self.client.get("v1", plural, name, namespace)
        except ApiError as err:
            if err.not_found:
                return None
            raise

    async def event(self, pod: Mapping[str, Any], event_type: str, reason: str,
                    message: str) -> None:
        """Record an Event on the pod without waiting for the write, as the kubelet's event
        broadcaster does: a pod's start is not held up by its Pulled/Created/Started."""
        obj = {"kind": "Pod", "apiVersion": "v1", "metadata": pod.get("metadata") or {}}
        task = asyncio.get_running_loop().create_task(
            self.recorder.record(obj, event_type, reason, message))
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)

    # -- runtimes and images ------------------------------------------------------------

    def runtime_for_handler(self, handler: str) -> Runtime:
        name = handler or self.default_runtime
        runtime = self._runtimes.get(name)
        if runtime is not None:
            return runtime
        cls = RUNTIMES.get(name)
        if cls is None:
            raise KeyError(f'RuntimeHandler "{name}" not supported')
        cls.check()
        runtime = cls(self.pods_root, self.run_dir)
        self._runtimes[name] = runtime
        if self._tasks:
            self._tasks.append(asyncio.create_task(self._events(runtime),
                                                   name=f"pleg-{name}"))
        return runtime

    def cached_handler(self, pod: Mapping[str, Any]) -> str:
        name = (pod.get("spec") or {}).get("runtimeClassName")
        return self._runtime_classes.get(name, "") if name else ""

    async def runtime_handler(self, pod: Mapping[str, Any]) -> str:
        name = (pod.get("spec") or {}).get("runtimeClassName")
        if not name:
            return ""
        try:
            runtime_class = await self.client.get("node.k8s.io/v1", "runtimeclasses", name)
        except ApiError as err:
            if err.not_found:
                raise KeyError(f'RuntimeClass "{name}" not found') from None
            raise
        handler = runtime_class.get("handler") or ""
        self._runtime_classes[name] = handler
        return handler

    async def ensure_image(self, pod: Mapping[str, Any], container: Mapping[str, Any]
                           ) -> ImageRef:
        image = container.get("image") or ""
        policy = container.get("imagePullPolicy") or "IfNotPresent"
        present = self.images.present(image)
        if present is not None and policy != "Always":
            await self.event(pod, "Normal", "Pulled",
                             f'Container image "{image}" already present on machine')
            return present
        if policy == "Never":
            raise _Waiting("ErrImageNeverPull",
                           f'Container image "{image}" is not present with pull policy of '
                           "Never", event="ErrImageNeverPull")
        lock = self._pulls.setdefault(image, asyncio.Lock())
        async with lock:
            await self.event(pod, "Normal", "Pulling", f'Pulling image "{image}"')
            started = time.monotonic()
            from .runtime.base import RuntimeFailure

            try:
                ref = await self.images.pull(image)
            except RuntimeFailure as err:
                raise _Waiting(err.reason if err.reason != "RunContainerError" else
                               "ErrImagePull", err.message) from None
            took = time.monotonic() - started
            await self.event(pod, "Normal", "Pulled",
                             f'Successfully pulled image "{image}" in {took * 1000:.0f}ms '
                             f"({took * 1000:.0f}ms including waiting). Image size: 0 bytes.")
            return ref

    async def _index_existing(self) -> None:
        """What a previous kubelet left running, by pod uid, for the pod workers to adopt:
        listed once at start, from each local runtime that works here."""
        for name in ("sandbox", "process"):
            try:
                runtime = self.runtime_for_handler(name)
            except (RuntimeUnavailable, KeyError):
                continue
            for status in await runtime.list_containers():
                if status.id.startswith(f"{runtime.name}://"):
                    uid = status.labels.get(LABEL_POD_UID, "")
                    self._existing.setdefault(uid, []).append((runtime, status))

    def existing_containers(self, uid: str) -> list[tuple[Runtime, ContainerStatus]]:
        return self._existing.pop(uid, [])

    def collect_old_runs(self, uid: str, name: str, keep: set[str]) -> None:
        async def collect() -> None:
            for runtime in list(self._runtimes.values()):
                for status in await runtime.list_containers():
                    if status.labels.get(LABEL_POD_UID) == uid and status.name == name and \
                            status.id not in keep and status.state == "exited":
                        await runtime.remove_container(status.id)

        asyncio.get_running_loop().create_task(collect())

    async def _events(self, runtime: Runtime) -> None:
        async for container_id in runtime.container_events():
            status = await runtime.container_status(container_id)
            uid = status.labels.get(LABEL_POD_UID) if status is not None else None
            worker = self.workers.get(uid or "")
            if worker is not None:
                worker.wake()

    async def _relist(self) -> None:
        """The PLEG's relist: a lost container event only delays, and orphans are reaped."""
        while True:
            await asyncio.sleep(RELIST_SECONDS)
            for worker in list(self.workers.values()):
                if any(v.running for v in worker.views.values()):
                    worker.wake()
            with contextlib.suppress(Exception):
                await self._housekeeping_once()

    async def _housekeeping_once(self) -> None:
        """Stop and forget containers, and remove network namespaces, of pods this node no
        longer has."""
        known = {p["metadata"].get("uid") for p in self.pod_informer.list()}
        if self.pod_network is not None:
            for uid in self.pod_network.attached() - known - set(self.workers):
                log.info("removing the network namespace of pod %s, no longer bound here", uid)
                try:
                    await self.pod_network.detach(uid)
                except PodNetworkError as err:
                    log.warning("pod %s: %s", uid, err)
        for runtime in list(self._runtimes.values()):
            for status in await runtime.list_containers():
                uid = status.labels.get(LABEL_POD_UID)
                if uid in known or uid in self.workers:
                    continue
                log.info("removing container %s of pod %s, no longer bound here",
                         status.id, uid)
                if status.state == "running":
                    await runtime.stop_container(status.id, 2.0)
                await runtime.remove_container(status.id)

    def _running_containers(self) -> Iterable[tuple[Mapping[str, Any], str, Runtime, str]]:
        for worker in list(self.workers.values()):
            if worker.pod is None or worker.runtime is None:
                continue
            for view in worker.views.values():
                if view.running and view.current is not None:
                    yield worker.pod, view.name, worker.runtime, view.current.id

    # -- the kubelet API's view (server.PodSource) -------------------------------------------

    def find_pod(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.pod_informer.get(f"{namespace}/{name}")

    def _worker(self, namespace: str, name: str) -> PodWorker | None:
        pod = self.find_pod(namespace, name)
        return self.workers.get(pod["metadata"].get("uid", "")) if pod else None

    def running_container(self, namespace: str, name: str,
                          container: str) -> tuple[Runtime, str] | None:
        worker = self._worker(namespace, name)
        view = worker.views.get(container) if worker else None
        if worker is None or view is None or not view.running or worker.runtime is None:
            return None
        assert view.current is not None
        return worker.runtime, view.current.id

    def container_running(self, namespace: str, name: str, container: str) -> bool:
        return self.running_container(namespace, name, container) is not None

    def log_path(self, namespace: str, name: str, container: str, *,
                 previous: bool) -> Path | None:
        pod = self.find_pod(namespace, name)
        if pod is None:
            return None
        worker = self._worker(namespace, name)
        view = worker.views.get(container) if worker else None
        folder = self.pod_dir(pod) / container
        if view is not None and view.current is not None:
            run: ContainerStatus | None = view.previous if previous else view.current
            if previous and run is None and view.current.state == "exited":
                return None
            return folder / f"{run.attempt}.log" if run is not None else None
        attempts = log_attempts(folder)
        if previous:
            return folder / f"{attempts[-2]}.log" if len(attempts) > 1 else None
        return folder / f"{attempts[-1]}.log" if attempts else None

    def pod_ip(self, namespace: str, name: str) -> str | None:
        worker = self._worker(namespace, name)
        if worker is not None and worker.sandbox is not None:
            return worker.sandbox.ip
        pod = self.find_pod(namespace, name)
        return ((pod or {}).get("status") or {}).get("podIP")

    def pod_netns(self, namespace: str, name: str) -> str | None:
        worker = self._worker(namespace, name)
        if worker is not None and worker.sandbox is not None:
            return worker.sandbox.netns or None
        return None

    def pods(self) -> list[Mapping[str, Any]]:
        return self.pod_informer.list()

    async def stats_summary(self) -> dict[str, Any]:
        return await self.stats.summary()

    async def _authorize(self, user: str, groups: list[str], verb: str, resource: str,
                         subresource: str, node_name: str) -> bool:
        key = (user, tuple(groups), verb, resource, subresource)
        cached = self._sar_cache.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        review = await self.client.create("authorization.k8s.io/v1", "subjectaccessreviews", {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": groups, "resourceAttributes": {
                "verb": verb, "resource": resource, "subresource": subresource,
                "name": node_name}}})
        allowed = bool((review.get("status") or {}).get("allowed"))
        self._sar_cache[key] = (allowed, time.monotonic() + SAR_CACHE_SECONDS)
        return allowed


def read_ca_pem(kubeconfig: str | None) -> bytes:
    """The cluster CA from a kubeconfig: the kubelet trusts client certificates it signed."""
    ca_file = load_kubeconfig(kubeconfig).ca_file
    if not ca_file:
        raise NodeAgentError("the kubeconfig names no certificate authority; the node agent "
                             "needs it to check the API server's client certificate")
    return Path(ca_file).read_bytes()


async def run_kubelet(kubeconfig: str | None, settings: KubeletSettings) -> None:
    client_ca = read_ca_pem(kubeconfig)
    async with Client.from_kubeconfig(kubeconfig, user_agent=f"kubelet/{KUBELET_VERSION}",
                                      field_manager="kubelet") as client:
        await client.wait_ready()
        await Kubelet(client, settings, client_ca_pem=client_ca).run()

