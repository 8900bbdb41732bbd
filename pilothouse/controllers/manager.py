"""The controller manager: every built-in control loop in one process, behind one leader.

It shares one informer per resource among all controllers (InformerFactory), waits for
the caches to fill, then runs each controller's workers. With leader election on (the
default), it first takes the `kube-system/kube-controller-manager` Lease and stops
if it loses it, so a second manager can stand by. Controllers find their settings in
the context; `root_ca` (the CA bundle pods get in `kube-root-ca.crt`) is, unless given,
the CA its kubeconfig trusts, as kube-controller-manager does without --root-ca-file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..client import Client, Controller, load_kubeconfig, run_controllers

LEASE_NAME = "kube-controller-manager"  # the name its role may update, as upstream


def discover() -> dict[str, type[Controller]]:
    """name -> class of every controller module in this package."""
    from .. import controllers

    found: dict[str, type[Controller]] = {}
    for module in pkgutil.iter_modules(controllers.__path__):
        imported = importlib.import_module(f"{controllers.__name__}.{module.name}")
        controller = getattr(imported, "CONTROLLER", None)
        if controller is not None:
            found[controller.name] = controller
    return found


def kubeconfig_root_ca(kubeconfig: str | None) -> str:
    """The PEM bundle the kubeconfig (or the in-cluster config) trusts the API server with,
    as `Client.from_kubeconfig` reads it; "" if it trusts no CA."""
    ca_file = load_kubeconfig(kubeconfig).ca_file
    return Path(ca_file).read_text() if ca_file else ""


async def run_controller_manager(kubeconfig: str | None, *, only: list[str] | None = None,
                                 leader_elect: bool = True,
                                 settings: Mapping[str, Any] | None = None) -> None:
    available = discover()
    unknown = sorted(set(only or ()) - set(available))
    if unknown:
        raise ValueError(f"unknown controllers: {', '.join(unknown)}; available: "
                         f"{', '.join(sorted(available))}")
    names = only or sorted(available)
    async with Client.from_kubeconfig(kubeconfig, user_agent="pilothouse-controller-manager",
                                      field_manager="pilothouse-controller-manager") as client:
        await client.wait_ready()
        await run_controllers(
            client, {name: available[name] for name in names}, component="controller-manager",
            lease_name=LEASE_NAME, leader_elect=leader_elect,
            settings={"root_ca": kubeconfig_root_ca(kubeconfig), **(settings or {})})
