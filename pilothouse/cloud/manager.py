"""The cloud-controller-manager: the control loops that need a cloud, behind one leader.

As kube's cloud-controller-manager, it runs the `service` (load balancers),
`cloud-node` (initializing nodes) and `cloud-node-lifecycle` (nodes whose machines are
gone) controllers against one provider, chosen by name (`--cloud-provider`, see
provider.py for how providers are found), with the provider's own config file
(`--cloud-config`). A controller whose part the provider lacks (no load balancers, no
instances) is not started, as upstream skips it. With leader election on, it first takes
the `kube-system/cloud-controller-manager` Lease, so a second manager can stand by; the
provider is initialized after that, so it reads the cluster as the previous leader left it.

Like every component, it only talks to the API server, with the in-tree client.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..client import Client, Controller, run_controllers
from .node import CloudNodeController
from .nodelifecycle import CloudNodeLifecycleController
from .provider import CloudProvider, get_cloud_provider
from .service import ServiceController

log = logging.getLogger(__name__)

LEASE_NAME = "cloud-controller-manager"
USER_AGENT = "pilothouse-cloud-controller-manager"
DEFAULT_CLUSTER_NAME = "kubernetes"
#: --controllers names, as the real manager's, and what each needs of the provider.
CONTROLLERS: Mapping[str, type[Controller]] = {
    "service": ServiceController,
    "cloud-node": CloudNodeController,
    "cloud-node-lifecycle": CloudNodeLifecycleController,
}


def supported(name: str, provider: CloudProvider) -> bool:
    if name == "service":
        return provider.load_balancer() is not None
    return provider.instances_v2() is not None


async def run_cloud_controller_manager(
        kubeconfig: str | None, *, cloud_provider: str = "local",
        cloud_config: str | None = None, cluster_name: str = DEFAULT_CLUSTER_NAME,
        leader_elect: bool = True, controllers: list[str] | None = None,
        settings: Mapping[str, Any] | None = None) -> None:
    """Run until cancelled or until leadership is lost.

    `cloud_config` is the path of the provider's config file; `controllers` a subset of
    CONTROLLERS' names (all by default); `settings` tunes the controllers
    (`node_monitor_period`, `node_status_update_frequency`, in seconds). Raises ValueError,
    before connecting, for an unknown provider or controller name, or when the provider
    supports none of the controllers asked for.
    """
    unknown = sorted(set(controllers or ()) - set(CONTROLLERS))
    if unknown:
        raise ValueError(f"unknown controllers: {', '.join(unknown)}; available: "
                         f"{', '.join(CONTROLLERS)}")
    try:
        config = Path(cloud_config).read_text() if cloud_config else None
    except OSError as err:
        raise ValueError(f"cannot read --cloud-config {cloud_config}: {err.strerror}") from None
    provider = get_cloud_provider(cloud_provider, config)
    names = []
    for name in controllers or list(CONTROLLERS):
        if supported(name, provider):
            names.append(name)
        else:
            log.warning("not starting the %s controller: the %s cloud provider does not "
                        "support it", name, cloud_provider)
    if not names:
        raise ValueError(f"nothing to run: the {cloud_provider} cloud provider supports none "
                         f"of the controllers {', '.join(controllers or CONTROLLERS)}")
    async with Client.from_kubeconfig(kubeconfig, user_agent=USER_AGENT,
                                      field_manager=USER_AGENT) as client:
        await client.wait_ready()
        await run_controllers(
            client, {name: CONTROLLERS[name] for name in names},
            component="cloud-controller-manager", lease_name=LEASE_NAME,
            leader_elect=leader_elect, on_leading=provider.initialize,
            settings={**(settings or {}), "cloud": provider, "cluster_name": cluster_name})
