"""The built-in `local` cloud: load-balancer addresses that stay on this machine.

In the spirit of k3s's service load balancer, for a cluster with no cloud around it:

- Load balancers. Each LoadBalancer Service gets its own address from the pool
  (`LOAD_BALANCER_RANGE`, 127.97.0.0/16 by default: loopback, so it reaches this machine
  and nothing else) and reports it as `status.loadBalancer.ingress: [{ip, ipMode: VIP}]`.
  The provider moves no packets itself: each node's service proxy forwards traffic for a
  VIP-mode ingress address to the Service, exactly as kube-proxy does for a cloud's load
  balancer, so the node set changes nothing here. `spec.loadBalancerIP` picks a
  particular free address of the pool.
- Addresses are unique and survive restarts: the pool is one table in this process (the
  Service controller runs under a leader lease, so one process allocates), filled on
  `initialize` from the Services that carry the load-balancer finalizer -- the ones whose
  load balancers this provider made -- and their reported addresses. A Service keeps its
  address until its load balancer is deleted.
- Instances. A node's machine is this one (or one like it, joined to the cluster): its
  providerID is `local://<node name>`, its type `local`, its addresses the InternalIP and
  Hostname its kubelet reported, and its zone and region `local` unless the cloud config
  says otherwise. A local machine cannot be seen from outside, so every instance exists
  and none is shut down (as k3s's provider answers); the kubelet's lease, watched by the
  node lifecycle controller, tells whether a node is alive.

The cloud config (`--cloud-config`, YAML, every key optional):
`{loadBalancerRange: 127.97.0.0/16, zone: local, region: local}`.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from ..client import Client
from ..machinery.addresses import LOAD_BALANCER_RANGE
from .provider import (
    LOAD_BALANCER_CLEANUP_FINALIZER,
    CloudProvider,
    CloudProviderError,
    InstanceMetadata,
    InstancesV2,
    LoadBalancer,
)

log = logging.getLogger(__name__)

INSTANCE_TYPE = "local"
DEFAULT_TOPOLOGY = "local"
#: The node addresses the kubelet reports that this provider vouches for.
KEPT_ADDRESS_TYPES = ("InternalIP", "Hostname")
_CONFIG_KEYS = frozenset({"loadBalancerRange", "zone", "region"})

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def ingress_addresses(service: Mapping[str, Any]) -> list[str]:
    """The IPs in a Service's `status.loadBalancer.ingress`."""
    ingress = (((service.get("status") or {}).get("loadBalancer") or {}).get("ingress")) or ()
    return [point["ip"] for point in ingress if point.get("ip")]


class LocalLoadBalancers(LoadBalancer):
    """One address of the pool per Service; forwarding is the node proxies' work."""

    def __init__(self, pool: Network) -> None:
        self.pool = pool
        self._address: dict[str, Address] = {}  # load-balancer name -> address
        self._owner: dict[Address, str] = {}  # address -> load-balancer name

    def restore(self, services: Iterable[Mapping[str, Any]]) -> None:
        """Take back the addresses the load balancers of `services` report (on start)."""
        for service in services:
            if LOAD_BALANCER_CLEANUP_FINALIZER not in (_meta(service).get("finalizers") or ()):
                continue
            name = self.get_load_balancer_name("", service)
            for text in ingress_addresses(service):
                address = ipaddress.ip_address(text)
                if address not in self.pool or name in self._address:
                    continue
                if address in self._owner:
                    log.warning("load balancers %s and %s both report %s; %s gets a new one",
                                self._owner[address], name, address, name)
                    continue
                self._take(name, address)
        log.info("local load balancers: %d addresses of %s in use", len(self._owner), self.pool)

    def _take(self, name: str, address: Address) -> None:
        self._release(name)
        self._address[name] = address
        self._owner[address] = name

    def _release(self, name: str) -> None:
        address = self._address.pop(name, None)
        if address is not None:
            del self._owner[address]

    def _allocate(self, name: str, requested: str) -> Address:
        """The load balancer's address: the requested one if free, else the one it has,
        else the lowest free one. Nothing awaits between looking and taking, so two
        Services synced at once never get the same address."""
        if requested:
            try:
                address = ipaddress.ip_address(requested)
            except ValueError as err:
                raise CloudProviderError(f"spec.loadBalancerIP: {err}") from None
            if address not in self.pool:
                raise CloudProviderError(
                    f"spec.loadBalancerIP {requested} is outside the local load-balancer "
                    f"range {self.pool}")
            if self._owner.get(address, name) != name:
                raise CloudProviderError(
                    f"spec.loadBalancerIP {requested} is already another load balancer's")
            self._take(name, address)
            return address
        current = self._address.get(name)
        if current is not None:
            return current
        for address in self.pool.hosts():
            if address not in self._owner:
                self._take(name, address)
                return address
        raise CloudProviderError(f"no free address left in the local load-balancer range "
                                 f"{self.pool}")

    def _status(self, address: Address) -> dict[str, Any]:
        return {"ingress": [{"ip": str(address), "ipMode": "VIP"}]}

    async def get_load_balancer(self, cluster_name: str, service: Mapping[str, Any]
                                ) -> tuple[dict[str, Any] | None, bool]:
        address = self._address.get(self.get_load_balancer_name(cluster_name, service))
        return (None, False) if address is None else (self._status(address), True)

    async def ensure_load_balancer(self, cluster_name: str, service: Mapping[str, Any],
                                   nodes: list[dict[str, Any]]) -> dict[str, Any]:
        requested = (service.get("spec") or {}).get("loadBalancerIP") or ""
        address = self._allocate(self.get_load_balancer_name(cluster_name, service), requested)
        return self._status(address)

    async def update_load_balancer(self, cluster_name: str, service: Mapping[str, Any],
                                   nodes: list[dict[str, Any]]) -> None:
        # Each node's proxy forwards the address, whichever nodes there are: only a load
        # balancer that does not exist cannot be updated.
        name = self.get_load_balancer_name(cluster_name, service)
        if name not in self._address:
            raise CloudProviderError(f"load balancer {name} does not exist")

    async def ensure_load_balancer_deleted(self, cluster_name: str,
                                           service: Mapping[str, Any]) -> None:
        self._release(self.get_load_balancer_name(cluster_name, service))


class LocalInstances(InstancesV2):
    """Nodes' machines as this machine: always there, described by their kubelets."""

    def __init__(self, *, zone: str, region: str) -> None:
        self.zone = zone
        self.region = region

    async def instance_exists(self, node: Mapping[str, Any]) -> bool:
        return True

    async def instance_shutdown(self, node: Mapping[str, Any]) -> bool:
        return False

    async def instance_metadata(self, node: Mapping[str, Any]) -> InstanceMetadata:
        addresses = [dict(a) for a in (node.get("status") or {}).get("addresses") or ()
                     if a.get("type") in KEPT_ADDRESS_TYPES]
        return InstanceMetadata(
            provider_id=f"{LocalProvider.name}://{_meta(node)['name']}",
            instance_type=INSTANCE_TYPE, node_addresses=addresses, zone=self.zone,
            region=self.region)


class LocalProvider(CloudProvider):
    name = "local"

    def __init__(self, *, load_balancer_range: Network = LOAD_BALANCER_RANGE,
                 zone: str = DEFAULT_TOPOLOGY, region: str = DEFAULT_TOPOLOGY) -> None:
        self._load_balancers = LocalLoadBalancers(load_balancer_range)
        self._instances = LocalInstances(zone=zone, region=region)

    @classmethod
    def from_config(cls, config: str | None) -> LocalProvider:
        """The provider a cloud-config text describes (None or empty: the defaults)."""
        try:
            settings = yaml.safe_load(config) if config else None
        except yaml.YAMLError as err:
            raise ValueError(f"the local cloud config is not YAML: "
                             f"{' '.join(str(err).split())}") from None
        if settings is None:
            return cls()
        if not isinstance(settings, dict) or set(settings) - _CONFIG_KEYS:
            raise ValueError(f"the local cloud config is a mapping of "
                             f"{', '.join(sorted(_CONFIG_KEYS))}; got {settings!r}")
        kwargs: dict[str, Any] = {k: str(settings[k]) for k in ("zone", "region")
                                  if k in settings}
        if "loadBalancerRange" in settings:
            kwargs["load_balancer_range"] = ipaddress.ip_network(settings["loadBalancerRange"])
        return cls(**kwargs)

    async def initialize(self, client: Client) -> None:
        services, _ = await client.list_all("v1", "services")
        self._load_balancers.restore(services)

    def load_balancer(self) -> LocalLoadBalancers:
        return self._load_balancers

    def instances_v2(self) -> LocalInstances:
        return self._instances
