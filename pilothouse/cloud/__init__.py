"""Cloud integration: the provider interface and the cloud-controller-manager's loops.

`provider.py` is the contract a cloud implements (k8s.io/cloud-provider's, in Python) and
the registry that finds one by name; `local.py` is the built-in provider whose load
balancers and machines are this machine's; `service.py`, `node.py` and `nodelifecycle.py`
are the controllers `manager.py` runs. Like every component this package talks only to the
API server (it imports client/ and machinery/), so it runs against any cluster.
"""

from .provider import (
    ENTRY_POINT_GROUP,
    CloudProvider,
    CloudProviderError,
    ImplementedElsewhere,
    InstanceMetadata,
    InstancesV2,
    LoadBalancer,
    cloud_provider_names,
    get_cloud_provider,
    register_cloud_provider,
)

__all__ = ["ENTRY_POINT_GROUP", "CloudProvider", "CloudProviderError", "ImplementedElsewhere",
           "InstanceMetadata", "InstancesV2", "LoadBalancer", "cloud_provider_names",
           "get_cloud_provider", "register_cloud_provider"]
