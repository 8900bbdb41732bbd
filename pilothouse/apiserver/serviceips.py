"""Service cluster IPs and node ports: one store key per allocated address.

kube-apiserver hands each Service a cluster IP from `--service-cluster-ip-range` and node
ports from `--service-node-port-range` (pkg/registry/core/service/ipallocator,
portallocator, storage/alloc.go). Here every allocated address is its own key,
`/registry/ranges/serviceips/<ip>` or `/registry/ranges/servicenodeports/<port>`, whose
value names the owning Service (namespace, name, uid). Keys are claimed with the store's
atomic create, so two requests, or two API servers sharing one etcd, can never hand out
the same address, and nothing scans the Services on a create.

A write gets an `Allocation`: what it claimed (released by `revert()` if the write then
fails: validation, admission, a store error) and what it gives up (released by `commit()`
once the write is stored, e.g. node ports of a Service that became a ClusterIP one).
Dry runs claim nothing: they only check that a requested address is free.

New addresses are picked at random from the upper part of the range, as the real
allocators do, so addresses that clients request explicitly (the static band at the
bottom, where the `kubernetes` Service's first address lives) rarely collide with them;
when random picks keep colliding, the free addresses are read from the store.

`servicerepair.py` is the loop that keeps these keys and the Services in agreement.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from ..machinery import errors
from ..machinery.addresses import NODE_PORT_RANGE, SERVICE_CLUSTER_IP_RANGE
from ..store import KeyExists, KeyNotFound, KeyValue, RevisionMismatch, Store

IP_PREFIX = "/registry/ranges/serviceips/"
PORT_PREFIX = "/registry/ranges/servicenodeports/"
#: Random picks tried before reading the free addresses from the store.
_RANDOM_TRIES = 8

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class PortRange:
    """An inclusive range of ports, written `base-last` as `--service-node-port-range`."""

    base: int
    last: int

    def __str__(self) -> str:
        return f"{self.base}-{self.last}"

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.base <= port <= self.last


DEFAULT_NODE_PORT_RANGE = PortRange(*NODE_PORT_RANGE)


def parse_port_range(text: str) -> PortRange:
    """`30000-32767`, `30000+2767` or a single port, as utilnet.PortRange parses them."""
    value = text.strip()
    try:
        if "-" in value and "+" not in value:
            low_text, _, high_text = value.partition("-")
            low, high = int(low_text), int(high_text)
        elif "+" in value and "-" not in value:
            low_text, _, offset_text = value.partition("+")
            low = int(low_text)
            high = low + int(offset_text)
        elif "-" not in value and "+" not in value:
            low = high = int(value)
        else:
            raise ValueError
    except ValueError:
        raise ValueError(f"unable to parse port range: {value}") from None
    if low > 65535 or high > 65535:
        raise ValueError(f"the port range cannot be greater than 65535: {value}")
    if high < low:
        raise ValueError(f"end port cannot be less than start port: {value}")
    if low < 1:
        raise ValueError(f"port numbers start at 1: {value}")
    return PortRange(low, high)


def parse_service_cidr(text: str) -> IPNetwork:
    """One `--service-cluster-ip-range`, checked as kube-apiserver checks its primary range."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError("service-cluster-ip-range[0] is not a valid cidr") from None
    bits = network.max_prefixlen
    if bits - network.prefixlen > 20:
        raise ValueError(f"specified --service-cluster-ip-range is too large; for {bits}-bit "
                         f"addresses, the mask must be >= {bits - 20}")
    if network.num_addresses < 8:
        raise ValueError("error determining service IP ranges for primary service cidr: the "
                         "service cluster IP range must be at least 8 IP addresses")
    return network


# -- what a Service needs ---------------------------------------------------------------


def _spec(svc: dict[str, Any]) -> dict[str, Any]:
    spec = svc.get("spec")
    return spec if isinstance(spec, dict) else {}


def _type(svc: dict[str, Any]) -> str:
    return _spec(svc).get("type") or "ClusterIP"


def needs_cluster_ip(svc: dict[str, Any]) -> bool:
    return _type(svc) != "ExternalName"


def needs_node_ports(svc: dict[str, Any]) -> bool:
    return _type(svc) in ("NodePort", "LoadBalancer")


def should_allocate_node_ports(svc: dict[str, Any]) -> bool:
    """NodePort Services always; LoadBalancer ones unless allocateLoadBalancerNodePorts is false."""
    kind = _type(svc)
    return kind == "NodePort" or (
        kind == "LoadBalancer" and _spec(svc).get("allocateLoadBalancerNodePorts") is not False)


def needs_health_check_node_port(svc: dict[str, Any]) -> bool:
    spec = _spec(svc)
    return _type(svc) == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def cluster_ips(svc: dict[str, Any]) -> list[str]:
    """The Service's allocated cluster IPs (none for ExternalName and headless Services)."""
    if not needs_cluster_ip(svc):
        return []
    spec = _spec(svc)
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    if not isinstance(ips, list) or not ips or ips[0] == "None":
        return []
    return [ip for ip in ips if isinstance(ip, str) and ip]


def node_ports(svc: dict[str, Any], *, health_check: bool = True) -> set[int]:
    """Every node port the Service holds (its ports' and its health check's)."""
    spec = _spec(svc)
    ports = {p.get("nodePort") for p in spec.get("ports") or [] if isinstance(p, dict)}
    if health_check:
        ports.add(spec.get("healthCheckNodePort"))
    return {p for p in ports if isinstance(p, int) and not isinstance(p, bool) and p > 0}


def prepare_service_update(new: dict[str, Any], old: dict[str, Any]) -> None:
    """What the service strategy does to an update before allocation and validation.

    dropTypeDependentFields: a type change wipes the addresses the new type does not use
    (and the fields that only fit the old type) when the client left them as they were.
    patchAllocatedValues: addresses the client omitted are kept, so re-applying the YAML a
    Service was created from (with no clusterIP or nodePort) succeeds.
    """
    spec, old_spec = new.setdefault("spec", {}), _spec(old)
    if not isinstance(spec, dict):
        return
    if needs_cluster_ip(old) and not needs_cluster_ip(new):
        for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if key in spec and spec.get(key) == old_spec.get(key):
                del spec[key]
    ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
    old_ports = [p for p in old_spec.get("ports") or [] if isinstance(p, dict)]
    if needs_node_ports(old) and not needs_node_ports(new) and (
            [p.get("nodePort") for p in ports] == [p.get("nodePort") for p in old_ports]):
        for port in ports:
            port.pop("nodePort", None)
    if needs_health_check_node_port(old) and not needs_health_check_node_port(new) and (
            spec.get("healthCheckNodePort") == old_spec.get("healthCheckNodePort")):
        spec.pop("healthCheckNodePort", None)
    if _type(old) == "LoadBalancer" and _type(new) != "LoadBalancer" and (
            spec.get("allocateLoadBalancerNodePorts") == old_spec.get(
                "allocateLoadBalancerNodePorts")):
        spec.pop("allocateLoadBalancerNodePorts", None)
    if needs_node_ports(old) and not needs_node_ports(new) and (
            spec.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy")):
        spec.pop("externalTrafficPolicy", None)
    if needs_cluster_ip(old) and needs_cluster_ip(new):
        if not spec.get("clusterIP") and old_spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
        if not spec.get("clusterIPs") and old_spec.get("clusterIPs"):
            spec["clusterIPs"] = list(old_spec["clusterIPs"])
    if needs_node_ports(old) and needs_node_ports(new):
        used = {p.get("nodePort") for p in ports} & {p.get("nodePort") for p in old_ports}
        by_name = {p.get("name") or "": p.get("nodePort") for p in old_ports}
        for port in ports:
            kept = by_name.get(port.get("name") or "")
            if not port.get("nodePort") and kept and kept not in used:
                port["nodePort"] = kept
                used.add(kept)
    if needs_health_check_node_port(old) and needs_health_check_node_port(new) and (
            not spec.get("healthCheckNodePort")):
        spec["healthCheckNodePort"] = old_spec.get("healthCheckNodePort")


# -- the allocator ----------------------------------------------------------------------


def owner_of(kv: KeyValue) -> dict[str, str]:
    """The Service an allocation key names: {namespace, name, uid}."""
    try:
        meta = orjson.loads(kv.value).get("metadata")
    except (orjson.JSONDecodeError, AttributeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def owner_value(svc: dict[str, Any]) -> bytes:
    meta = svc.get("metadata") or {}
    return orjson.dumps({"kind": "Service", "metadata": {
        "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
        "uid": meta.get("uid", "")}})


def _range_offset(size: int, *, lower: int, upper: int, step: int) -> int:
    """The size of the static band at the bottom of a range (calculateRangeOffset)."""
    if size < lower:
        return 0
    return max(lower, min(upper, size // step))


def _invalid_cluster_ips(svc: dict[str, Any], ip: str, detail: str) -> errors.APIError:
    shown = orjson.dumps(_spec(svc).get("clusterIPs") or [ip]).decode()
    cause = errors.Cause("spec.clusterIPs",
                         f"Invalid value: {shown}: failed to allocate IP {ip}: {detail}")
    return errors.invalid("Service", (svc.get("metadata") or {}).get("name", ""), [cause])


def _invalid_node_port(svc: dict[str, Any], field: str, port: int, detail: str
                       ) -> errors.APIError:
    return errors.invalid("Service", (svc.get("metadata") or {}).get("name", ""),
                          [errors.invalid_value(field, port, detail)])


class ServiceAddresses:
    """Claims and releases cluster IPs and node ports as store keys."""

    def __init__(self, store: Store, *, cluster_ip_range: IPNetwork = SERVICE_CLUSTER_IP_RANGE,
                 node_port_range: PortRange = DEFAULT_NODE_PORT_RANGE) -> None:
        self.store = store
        self.cluster_ip_range = cluster_ip_range
        self.node_port_range = node_port_range
        network = int(cluster_ip_range.network_address)
        # IPv4 ranges lose their network and broadcast addresses, IPv6 ones the first.
        self._first_ip = network + 1
        self._last_ip = network + cluster_ip_range.num_addresses - (
            2 if cluster_ip_range.version == 4 else 1)
        size = self._last_ip - self._first_ip + 1
        self._ip_offset = _range_offset(size, lower=16, upper=256, step=16)
        port_size = node_port_range.last - node_port_range.base + 1
        self._port_offset = _range_offset(port_size, lower=16, upper=128, step=32)

    # -- keys --------------------------------------------------------------------------

    @staticmethod
    def ip_key(ip: str) -> str:
        return f"{IP_PREFIX}{ip}"

    @staticmethod
    def port_key(port: int) -> str:
        return f"{PORT_PREFIX}{port}"

    def ip_in_range(self, ip: IPAddress) -> bool:
        return ip.version == self.cluster_ip_range.version and (
            self._first_ip <= int(ip) <= self._last_ip)

    # -- transactions ------------------------------------------------------------------

    async def allocate_create(self, svc: dict[str, Any], *, dry_run: bool) -> Allocation:
        """Claim a new Service's cluster IP and node ports (the requested ones, or new)."""
        allocation = Allocation(self, (svc.get("metadata") or {}).get("uid", ""), dry_run)
        try:
            if needs_cluster_ip(svc):
                await self._allocate_cluster_ip(svc, allocation)
            if needs_node_ports(svc):
                await self._allocate_node_ports(svc, allocation, held=set())
            if needs_health_check_node_port(svc):
                await self._allocate_health_check(svc, allocation)
        except BaseException:
            await allocation.revert()
            raise
        return allocation

    async def allocate_update(self, new: dict[str, Any], old: dict[str, Any], *,
                              dry_run: bool) -> Allocation:
        """Claim what an update adds (type changes, new node ports); what it drops is
        released by the allocation's `commit()`."""
        allocation = Allocation(self, (old.get("metadata") or {}).get("uid", ""), dry_run)
        try:
            if not needs_cluster_ip(old) and needs_cluster_ip(new):
                await self._allocate_cluster_ip(new, allocation)
            elif needs_cluster_ip(old) and not needs_cluster_ip(new):
                allocation.to_release += [self.ip_key(ip) for ip in cluster_ips(old)]
            old_ports = node_ports(old, health_check=False)
            if needs_node_ports(new):
                await self._allocate_node_ports(
                    new, allocation, held=old_ports & node_ports(new, health_check=False))
            new_ports = node_ports(new, health_check=False)
            allocation.to_release += [self.port_key(p) for p in sorted(old_ports - new_ports)]
            old_hc = _spec(old).get("healthCheckNodePort") if needs_health_check_node_port(
                old) else None
            if needs_health_check_node_port(new):
                new_hc = _spec(new).get("healthCheckNodePort")
                if not new_hc or new_hc != old_hc:
                    await self._allocate_health_check(new, allocation)
                    if old_hc:
                        allocation.to_release.append(self.port_key(old_hc))
            elif old_hc and old_hc not in new_ports:
                allocation.to_release.append(self.port_key(old_hc))
        except BaseException:
            await allocation.revert()
            raise
        return allocation

    async def release_service(self, svc: dict[str, Any]) -> None:
        """Give back everything a removed Service held."""
        uid = (svc.get("metadata") or {}).get("uid", "")
        keys = [self.ip_key(ip) for ip in cluster_ips(svc)]
        keys += [self.port_key(p) for p in sorted(node_ports(svc))]
        for key in keys:
            await self.release(key, uid)

    async def release(self, key: str, uid: str) -> None:
        """Delete an allocation key if `uid` still owns it."""
        kv = await self.store.get(key)
        if kv is None or owner_of(kv).get("uid") != uid:
            return
        try:
            await self.store.delete(key, expected_revision=kv.mod_revision)
        except (KeyNotFound, RevisionMismatch):
            pass

    # -- cluster IPs -------------------------------------------------------------------

    async def _allocate_cluster_ip(self, svc: dict[str, Any], allocation: Allocation) -> None:
        spec = svc.setdefault("spec", {})
        ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
        if not isinstance(ips, list) or ips and ips[0] == "None":
            return
        requested = ips[0] if ips else ""
        if requested:
            try:
                address = ipaddress.ip_address(requested if isinstance(requested, str) else "")
            except ValueError:
                return  # not an IP: validation says so
            if not self.ip_in_range(address):
                raise _invalid_cluster_ips(
                    svc, requested, "provided IP is not in the valid range. The range of "
                    f"valid IPs is {self.cluster_ip_range}")
            if not await allocation.claim(self.ip_key(str(address)), svc):
                raise _invalid_cluster_ips(svc, requested, "provided IP is already allocated")
            ip = str(address)
        else:
            ip = await self._next_ip(svc, allocation)
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip, *ips[1:]]

    async def _next_ip(self, svc: dict[str, Any], allocation: Allocation) -> str:
        first, last = self._first_ip, self._last_ip
        async for index in self._candidates(last - first + 1, self._ip_offset):
            ip = str(ipaddress.ip_address(first + index))
            if await allocation.claim(self.ip_key(ip), svc):
                return ip
        raise errors.internal("failed to allocate a serviceIP: range is full")

    # -- node ports --------------------------------------------------------------------

    async def _allocate_node_ports(self, svc: dict[str, Any], allocation: Allocation, *,
                                   held: set[int]) -> None:
        """initNodePorts/updateNodePorts: the requested ports (unless the Service already
        holds them), a new one for every port without; one node port per port number,
        whatever the protocols."""
        ports = [p for p in _spec(svc).get("ports") or [] if isinstance(p, dict)]
        allocate_new = should_allocate_node_ports(svc)
        by_number: dict[Any, int] = {}
        for i, port in enumerate(ports):
            wanted = port.get("nodePort") or 0
            if not isinstance(wanted, int) or isinstance(wanted, bool):
                continue  # validation says what is wrong
            number = port.get("port")
            shared = by_number.get(number) if isinstance(number, int) else None
            if shared is not None and wanted in (0, shared):
                port["nodePort"] = shared
                continue
            if not wanted:
                if not allocate_new:
                    continue
                wanted = next((p.get("nodePort") for p in ports[i + 1:]
                               if p.get("port") == number and isinstance(p.get("nodePort"), int)
                               and p.get("nodePort")), 0)
            if wanted:
                if wanted not in held:
                    await self._claim_port(svc, allocation, f"spec.ports[{i}].nodePort", wanted)
                    held.add(wanted)
            else:
                wanted = await self._next_port(svc, allocation)
            port["nodePort"] = wanted
            if isinstance(number, int):
                by_number.setdefault(number, wanted)

    async def _allocate_health_check(self, svc: dict[str, Any], allocation: Allocation) -> None:
        spec = svc.setdefault("spec", {})
        wanted = spec.get("healthCheckNodePort") or 0
        if not isinstance(wanted, int) or isinstance(wanted, bool):
            return
        if not wanted:
            spec["healthCheckNodePort"] = await self._next_port(svc, allocation)
            return
        try:
            await self._claim_port(svc, allocation, "spec.healthCheckNodePort", wanted)
        except errors.APIError as err:
            detail = err.causes[0].message.rpartition(": ")[2] if err.causes else str(err)
            raise errors.internal(f"failed to allocate requested HealthCheck NodePort "
                                  f"{wanted}: {detail}") from None

    async def _claim_port(self, svc: dict[str, Any], allocation: Allocation, field: str,
                          port: int) -> None:
        if port not in self.node_port_range:
            raise _invalid_node_port(svc, field, port, "provided port is not in the valid "
                                     f"range. The range of valid ports is {self.node_port_range}")
        if not await allocation.claim(self.port_key(port), svc):
            raise _invalid_node_port(svc, field, port, "provided port is already allocated")

    async def _next_port(self, svc: dict[str, Any], allocation: Allocation) -> int:
        base = self.node_port_range.base
        size = self.node_port_range.last - base + 1
        async for index in self._candidates(size, self._port_offset, prefix=PORT_PREFIX,
                                            base=base):
            if await allocation.claim(self.port_key(base + index), svc):
                return base + index
        raise errors.internal("failed to allocate a nodePort: range is full")

    # -- picking -----------------------------------------------------------------------

    async def _candidates(self, size: int, offset: int, *, prefix: str = IP_PREFIX,
                          base: int = 0) -> AsyncIterator[int]:
        """Indexes to try: random ones above the static band, then the free ones the store
        shows (dynamic band first), each once, in random order."""
        dynamic = size - offset
        for _ in range(_RANDOM_TRIES if dynamic > 0 else 0):
            yield offset + random.randrange(dynamic)
        used = set()
        for kv in (await self.store.range(prefix)).kvs:
            text = kv.key[len(prefix):]
            try:
                used.add(int(ipaddress.ip_address(text)) - self._first_ip if prefix == IP_PREFIX
                         else int(text) - base)
            except ValueError:
                continue
        upper = [i for i in range(offset, size) if i not in used]
        lower = [i for i in range(offset) if i not in used]
        random.shuffle(upper)
        random.shuffle(lower)
        for index in (*upper, *lower):
            yield index


class Allocation:
    """The addresses one write claimed, and those it gives up once it is stored."""

    def __init__(self, addresses: ServiceAddresses, uid: str, dry_run: bool) -> None:
        self.addresses = addresses
        self.uid = uid
        self.dry_run = dry_run
        self.claimed: list[str] = []
        self.to_release: list[str] = []

    async def claim(self, key: str, svc: dict[str, Any]) -> bool:
        """Create the key for `svc`; False if another holds it. A dry run only looks."""
        store = self.addresses.store
        if key in self.claimed:
            return False
        if self.dry_run:
            if await store.get(key) is not None:
                return False
            self.claimed.append(key)
            return True
        try:
            await store.create(key, owner_value(svc))
        except KeyExists:
            return False
        self.claimed.append(key)
        return True

    async def revert(self) -> None:
        """The write failed: give back what it claimed, keep what it would have released."""
        await self._finish(self.claimed)

    async def commit(self) -> None:
        """The write is stored: give back what the Service no longer uses."""
        await self._finish(self.to_release)

    async def _finish(self, release: list[str]) -> None:
        if not self.dry_run:
            for key in release:
                await self.addresses.release(key, self.uid)
        self.claimed, self.to_release = [], []
