"""The repair loop that keeps Services and their address keys in agreement.

As kube-apiserver's ipallocator and portallocator repair controllers do
(pkg/registry/core/service/{ipallocator,portallocator}/controller/repair.go), the API
server runs this at start and then every `interval`: every cluster IP and node port a
Service holds must have its key in `/registry/ranges/` (a missing one is written again,
as after a crash between claiming and storing, or an upgrade from before the keys); an
address out of the configured range, or held by two Services, is logged and reported as
a Warning Event on the Service (the user must recreate it); and a key no Service holds is
released only once it has been seen leaked on `LEAK_RUNS` consecutive runs, so a create
that has claimed its address but not yet stored its Service is never robbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..machinery import errors
from ..machinery.meta import rfc3339
from ..store import KeyExists, KeyNotFound, KeyValue, RevisionMismatch
from .registry import ResourceTable
from .registry.generic import GenericRegistry, WriteOptions, decode
from .serviceips import (
    IP_PREFIX,
    PORT_PREFIX,
    ServiceAddresses,
    cluster_ips,
    node_ports,
    owner_of,
    owner_value,
)

log = logging.getLogger(__name__)

#: How many consecutive runs must see a key leaked before it is released
#: (numRepairsBeforeLeakCleanup).
LEAK_RUNS = 3
#: kube-apiserver's default repair interval.
DEFAULT_INTERVAL = 180.0
IP_REPAIR = "ipallocator-repair-controller"
PORT_REPAIR = "portallocator-repair-controller"


@dataclass
class _Claims:
    """One address and the Services that hold it, in the order they were listed."""

    key: str
    holders: list[dict[str, Any]] = field(default_factory=list)


class ServiceAddressRepair:
    """One run reconciles every Service's addresses with the keys; `run()` loops."""

    def __init__(self, registry: GenericRegistry, table: ResourceTable, *,
                 interval: float = DEFAULT_INTERVAL) -> None:
        self.registry = registry
        self.addresses: ServiceAddresses = registry.service_addresses
        self.interval = interval
        services = table.lookup("", "v1", "services")
        events = table.lookup("", "v1", "events")
        assert services is not None and events is not None
        self._services, self._events = services, events
        #: Runs left before a leaked key is released, by key.
        self.leaks: dict[str, int] = {}
        self._recorded: dict[tuple[str, str, str], tuple[str, int]] = {}

    async def run(self) -> None:
        """Repair every interval, until cancelled (the server runs it once at start)."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.run_once()
            except Exception:  # a failed run is retried at the next interval
                log.exception("service address repair failed")

    async def run_once(self) -> None:
        store = self.registry.store
        # Keys first, Services second: a Service stored after the keys were read has its
        # key already (claimed before the store write), so it cannot look leaked.
        ip_keys = {kv.key: kv for kv in (await store.range(IP_PREFIX)).kvs}
        port_keys = {kv.key: kv for kv in (await store.range(PORT_PREFIX)).kvs}
        services = [decode(kv, self._services)
                    for kv in (await store.range(self._services.prefix(None))).kvs]
        ips: dict[str, _Claims] = {}
        ports: dict[str, _Claims] = {}
        for svc in services:
            for ip in cluster_ips(svc):
                await self._check_ip(svc, ip, ips)
            for port in sorted(node_ports(svc)):
                await self._check_port(svc, port, ports)
        await self._settle(ips, ip_keys, IP_REPAIR, self._ip_duplicate)
        await self._settle(ports, port_keys, PORT_REPAIR, self._port_duplicate)

    # -- per Service -------------------------------------------------------------------

    async def _check_ip(self, svc: dict[str, Any], ip: str, claims: dict[str, _Claims]) -> None:
        meta = svc["metadata"]
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            await self._warn(svc, IP_REPAIR, "ClusterIPNotValid",
                             f"Cluster IP {ip} is not a valid IP; please recreate Service")
            log.error("the ClusterIP %s for Service %s/%s is not a valid IP; please recreate "
                      "Service", ip, meta.get("namespace"), meta.get("name"))
            return
        family = f"IPv{address.version}"
        if not self.addresses.ip_in_range(address):
            cidr = self.addresses.cluster_ip_range
            await self._warn(svc, IP_REPAIR, "ClusterIPOutOfRange",
                             f"Cluster IP [{family}]:{address} is not within the service CIDR "
                             f"{cidr}; please recreate service")
            log.error("the cluster IP [%s]:%s for service %s/%s is not within the service "
                      "CIDR %s; please recreate", family, address, meta.get("name"),
                      meta.get("namespace"), cidr)
            return
        key = self.addresses.ip_key(str(address))
        claims.setdefault(key, _Claims(key)).holders.append(svc)

    async def _check_port(self, svc: dict[str, Any], port: int,
                          claims: dict[str, _Claims]) -> None:
        meta = svc["metadata"]
        if port not in self.addresses.node_port_range:
            port_range = self.addresses.node_port_range
            await self._warn(svc, PORT_REPAIR, "PortOutOfRange",
                             f"Port {port} is not within the port range {port_range}; please "
                             "recreate service")
            log.error("the port %d for service %s/%s is not within the port range %s; please "
                      "recreate", port, meta.get("name"), meta.get("namespace"), port_range)
            return
        key = self.addresses.port_key(port)
        claims.setdefault(key, _Claims(key)).holders.append(svc)

    async def _ip_duplicate(self, svc: dict[str, Any], key: str) -> None:
        meta, ip = svc["metadata"], key[len(IP_PREFIX):]
        family = f"IPv{ipaddress.ip_address(ip).version}"
        await self._warn(svc, IP_REPAIR, "ClusterIPAlreadyAllocated",
                         f"Cluster IP [{family}]:{ip} was assigned to multiple services; "
                         "please recreate service")
        log.error("the cluster IP [%s]:%s for service %s/%s was assigned to multiple "
                  "services; please recreate", family, ip, meta.get("name"),
                  meta.get("namespace"))

    async def _port_duplicate(self, svc: dict[str, Any], key: str) -> None:
        meta, port = svc["metadata"], key[len(PORT_PREFIX):]
        await self._warn(svc, PORT_REPAIR, "PortAlreadyAllocated",
                         f"Port {port} was assigned to multiple services; please recreate "
                         "service")
        log.error("the node port %s for service %s/%s was assigned to multiple services; "
                  "please recreate", port, meta.get("name"), meta.get("namespace"))

    async def _not_allocated(self, svc: dict[str, Any], key: str, component: str) -> None:
        meta, what = svc["metadata"], key.rpartition("/")[2]
        if component == IP_REPAIR:
            shown = f"[IPv{ipaddress.ip_address(what).version}]:{what}"
            await self._warn(svc, component, "ClusterIPNotAllocated",
                             f"Cluster IP {shown} is not allocated; repairing")
            log.warning("the cluster IP %s for service %s/%s is not allocated; repairing",
                        shown, meta.get("name"), meta.get("namespace"))
        else:
            await self._warn(svc, component, "PortNotAllocated",
                             f"Port {what} is not allocated; repairing")
            log.warning("the node port %s for service %s/%s is not allocated; repairing",
                        what, meta.get("name"), meta.get("namespace"))

    # -- keys --------------------------------------------------------------------------

    async def _settle(self, claims: dict[str, _Claims], keys: dict[str, KeyValue],
                      component: str, duplicate: Callable[[dict[str, Any], str], Any]) -> None:
        """Write the keys Services hold, report double holders, release settled leaks."""
        store = self.registry.store
        for key, claim in claims.items():
            self.leaks.pop(key, None)  # held, so not leaked
            kv = keys.pop(key, None)
            owner_uid = owner_of(kv).get("uid") if kv is not None else None
            holder = next((s for s in claim.holders if s["metadata"].get("uid") == owner_uid),
                          claim.holders[0])
            for other in claim.holders:
                if other is not holder:
                    await duplicate(other, key)
            if kv is None:
                await self._not_allocated(holder, key, component)
                with contextlib.suppress(KeyExists):
                    await store.create(key, owner_value(holder))
            elif owner_uid != holder["metadata"].get("uid"):
                # The key names a Service that is gone (deleted and its key not released).
                with contextlib.suppress(KeyNotFound, RevisionMismatch):
                    await store.update(key, owner_value(holder),
                                       expected_revision=kv.mod_revision)
        for key, kv in keys.items():
            left = self.leaks.get(key)
            if left is None:
                log.warning("the %s may have leaked: flagging for later clean up",
                            key.rpartition("/")[2])
                left = LEAK_RUNS - 1
            if left > 0:  # pretend it is held until its count runs out
                self.leaks[key] = left - 1
                continue
            self.leaks.pop(key, None)
            log.warning("%s appears to have leaked: cleaning up", key.rpartition("/")[2])
            with contextlib.suppress(KeyNotFound, RevisionMismatch):
                await store.delete(key, expected_revision=kv.mod_revision)
        for key in list(self.leaks):
            if key.startswith(IP_PREFIX if component == IP_REPAIR else PORT_PREFIX) and (
                    key not in keys):
                del self.leaks[key]  # gone or re-claimed since

    # -- events ------------------------------------------------------------------------

    async def _warn(self, svc: dict[str, Any], component: str, reason: str,
                    message: str) -> None:
        """A Warning Event on the Service; a repeat on a later run bumps its count."""
        meta = svc["metadata"]
        namespace = meta.get("namespace") or "default"
        identity = (meta.get("uid", ""), reason, message)
        now = rfc3339()
        seen = self._recorded.get(identity)
        if seen is not None:
            name, count = seen

            def bump(event: dict[str, Any], count: int = count) -> None:
                event["count"] = count + 1
                event["lastTimestamp"] = now

            try:
                await self.registry.mutate(self._events, namespace, name, bump)
                self._recorded[identity] = (name, count + 1)
                return
            except errors.APIError:
                pass  # expired: write a new one
        name = f"{meta.get('name')}.{secrets.token_hex(8)}"
        event = {
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {"kind": "Service", "apiVersion": "v1", "name": meta.get("name"),
                               "namespace": meta.get("namespace"), "uid": meta.get("uid"),
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": reason, "message": message, "type": "Warning",
            "source": {"component": component}, "reportingComponent": component,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        try:
            await self.registry.create(self._events, namespace, event,
                                       WriteOptions(field_manager=component))
        except errors.APIError as err:
            log.info("could not record event %s on service %s/%s: %s", reason, namespace,
                     meta.get("name"), err)
            return
        self._recorded[identity] = (name, 1)
        if len(self._recorded) > 4096:
            self._recorded.clear()
