"""The cloud provider interface, and the registry that finds a provider by name.

What the cloud-controller-manager asks of a cloud, modelled on k8s.io/cloud-provider's
`Interface` (cloud.go) so that a provider written against the real one maps onto it
method for method. A provider offers parts, each optional as in the real interface, where
Go's `LoadBalancer() (LoadBalancer, bool)` becomes `load_balancer()` returning the part or
None:

- `LoadBalancer`: a load balancer per Service of type LoadBalancer (GetLoadBalancer,
  GetLoadBalancerName, EnsureLoadBalancer, UpdateLoadBalancer, EnsureLoadBalancerDeleted).
  EnsureLoadBalancer returns the `status.loadBalancer` the Service controller writes.
- `InstancesV2`: what the cloud knows of the machine behind a Node (InstanceExists,
  InstanceShutdown, InstanceMetadata: providerID, instance type, addresses, zone, region).

The deprecated `Instances` and `Zones` (superseded by InstancesV2), `Clusters` and `Routes`
are not offered: no controller here would call them. Methods are coroutines; objects are
the API's plain dicts, as everywhere in Pilothouse.

Providers are found by name (`--cloud-provider`): the built-in `local` one, those
registered in-process with `register_cloud_provider` (as Go providers call
`RegisterCloudProvider` from `init`), and those of installed packages, declared in the
`pilothouse.cloud_providers` entry point group (`mycloud = "mycloud_pilothouse:create"`),
so a real cloud's provider ships as its own package and the core does not change. A
factory takes the `--cloud-config` file's text (or None) and returns the provider.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from ..client import Client

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "pilothouse.cloud_providers"
#: The finalizer that keeps a Service until its load balancer is gone (servicehelper's
#: LoadBalancerCleanupFinalizer): a Service carrying it may own a load balancer.
LOAD_BALANCER_CLEANUP_FINALIZER = "service.kubernetes.io/load-balancer-cleanup"


class CloudProviderError(Exception):
    """A provider could not do what was asked; the message says why, for the Events."""


class ImplementedElsewhere(CloudProviderError):
    """The operation is another controller's (cloudprovider.ImplementedElsewhere): the
    caller does nothing, and reports no failure."""


@dataclass(frozen=True)
class InstanceMetadata:
    """What the cloud says of a node's machine (cloudprovider.InstanceMetadata)."""

    provider_id: str = ""
    instance_type: str = ""
    #: `status.addresses` entries: {"type": "InternalIP", "address": "10.0.0.5"}, ...
    node_addresses: list[dict[str, str]] = field(default_factory=list)
    zone: str = ""
    region: str = ""
    #: Labels beyond the well-known ones; none may be in a kubernetes.io/k8s.io namespace.
    additional_labels: Mapping[str, str] = field(default_factory=dict)


def default_load_balancer_name(service: Mapping[str, Any]) -> str:
    """`a` + the Service's uid without dashes, at most 32 characters
    (cloudprovider.DefaultLoadBalancerName): stable for the Service's life, new for a
    Service deleted and created again under the same name."""
    uid = str((service.get("metadata") or {}).get("uid") or "").replace("-", "")
    return ("a" + uid)[:32]


class LoadBalancer(ABC):
    """A cloud's load balancers, one per Service (cloudprovider.LoadBalancer)."""

    @abstractmethod
    async def get_load_balancer(self, cluster_name: str, service: Mapping[str, Any]
                                ) -> tuple[dict[str, Any] | None, bool]:
        """(its `status.loadBalancer`, True) if the Service's load balancer exists, else
        (None, False)."""

    def get_load_balancer_name(self, cluster_name: str, service: Mapping[str, Any]) -> str:
        """The name the cloud knows the Service's load balancer by."""
        return default_load_balancer_name(service)

    @abstractmethod
    async def ensure_load_balancer(self, cluster_name: str, service: Mapping[str, Any],
                                   nodes: list[dict[str, Any]]) -> dict[str, Any]:
        """Create or update the load balancer so it serves the Service's ports through
        `nodes`; return the Service's new `status.loadBalancer`."""

    @abstractmethod
    async def update_load_balancer(self, cluster_name: str, service: Mapping[str, Any],
                                   nodes: list[dict[str, Any]]) -> None:
        """Point the existing load balancer at `nodes` (the node set changed)."""

    @abstractmethod
    async def ensure_load_balancer_deleted(self, cluster_name: str,
                                           service: Mapping[str, Any]) -> None:
        """Delete the load balancer if it exists; deleting a missing one succeeds."""


class InstancesV2(ABC):
    """A cloud's machines behind nodes (cloudprovider.InstancesV2)."""

    @abstractmethod
    async def instance_exists(self, node: Mapping[str, Any]) -> bool:
        """Whether the node's machine still exists; a node whose machine is gone is
        deleted from the cluster."""

    @abstractmethod
    async def instance_shutdown(self, node: Mapping[str, Any]) -> bool:
        """Whether the node's machine exists but is shut down."""

    @abstractmethod
    async def instance_metadata(self, node: Mapping[str, Any]) -> InstanceMetadata | None:
        """The machine's providerID, type, addresses and topology (None: nothing to say)."""


class CloudProvider(ABC):
    """A cloud (cloudprovider.Interface): a name and the parts it implements."""

    #: ProviderName(): the name it is registered under, and the scheme of its providerIDs.
    name: str = ""

    @abstractmethod
    async def initialize(self, client: Client) -> None:
        """Called once, as the leader, before any controller runs: the provider may read
        the cluster through `client` (Initialize(clientBuilder, stop))."""

    def load_balancer(self) -> LoadBalancer | None:
        """The load-balancer part, or None if this cloud has no load balancers."""
        return None

    def instances_v2(self) -> InstancesV2 | None:
        """The instances part, or None if this cloud knows nothing of nodes' machines."""
        return None


ProviderFactory = Callable[[str | None], CloudProvider]
_registered: dict[str, ProviderFactory] = {}


def register_cloud_provider(name: str, factory: ProviderFactory) -> None:
    """Make `factory` the provider called `name` in this process."""
    if name in _registered or name in _builtin():
        raise ValueError(f"cloud provider {name!r} was registered twice")
    _registered[name] = factory


def _builtin() -> dict[str, ProviderFactory]:
    from .local import LocalProvider

    return {LocalProvider.name: LocalProvider.from_config}


def _entry_point_factories() -> dict[str, Callable[[], ProviderFactory]]:
    """name -> loader of each installed package's provider factory."""
    return {ep.name: ep.load for ep in entry_points(group=ENTRY_POINT_GROUP)}


def cloud_provider_names() -> list[str]:
    """Every provider name this process can start, sorted."""
    return sorted({*_builtin(), *_registered, *_entry_point_factories()})


def get_cloud_provider(name: str, config: str | None = None) -> CloudProvider:
    """The provider called `name`, built from its cloud-config text (None: its defaults).

    Raises ValueError naming the providers there are when none is called `name`.
    """
    factory = _registered.get(name) or _builtin().get(name)
    if factory is None:
        loader = _entry_point_factories().get(name)
        if loader is None:
            raise ValueError(
                f"unknown cloud provider {name!r}; available: "
                f"{', '.join(cloud_provider_names())} (a provider package declares itself "
                f"in the {ENTRY_POINT_GROUP!r} entry point group)")
        factory = loader()
    provider = factory(config)
    if not isinstance(provider, CloudProvider):
        raise TypeError(f"cloud provider {name!r} is a {type(provider).__name__}, "
                        "not a pilothouse.cloud.CloudProvider")
    log.info("cloud provider %s: load balancers %s, instances %s", name,
             "yes" if provider.load_balancer() else "no",
             "yes" if provider.instances_v2() else "no")
    return provider
