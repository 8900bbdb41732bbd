"""The cloud node lifecycle controller: nodes whose machines are gone or shut down.

As the cloud-controller-manager's (k8s.io/cloud-provider controllers/nodelifecycle): a
node that is not Ready may be so because its machine no longer exists -- then the node is
deleted (a DeletingNode Event), so its pods are rescheduled rather than waited for -- or
because its machine is shut down -- then it gets the `node.cloudprovider.kubernetes.io/
shutdown` NoSchedule taint, removed once the node is Ready again. Nodes labelled
`node.kubernetes.io/exclude-from-lifecycle-management` are left alone.

The cloud is asked about every node every `node_monitor_period` seconds (5 by default):
a machine's end reaches the cluster through no watch. Node changes are looked at at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from ..client import ApiError, Controller, EventRecorder
from .provider import CloudProvider

COMPONENT = "cloud-node-lifecycle-controller"
SHUTDOWN_TAINT = "node.cloudprovider.kubernetes.io/shutdown"
EXCLUDE_FROM_LIFECYCLE = "node.kubernetes.io/exclude-from-lifecycle-management"
DEFAULT_MONITOR_PERIOD = 5.0


def _ready(node: Mapping[str, Any]) -> str:
    for condition in (node.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "Ready":
            return condition.get("status") or "Unknown"
    return "Unknown"


def _with_shutdown_taint(node: Mapping[str, Any], tainted: bool) -> dict[str, Any] | None:
    """The node with the shutdown taint added or removed, or None if it already is so."""
    taints = [t for t in (node.get("spec") or {}).get("taints") or ()
              if t.get("key") != SHUTDOWN_TAINT]
    if tainted:
        taints.append({"key": SHUTDOWN_TAINT, "effect": "NoSchedule"})
    if taints == ((node.get("spec") or {}).get("taints") or []):
        return None
    return {**node, "spec": {**(node.get("spec") or {}), "taints": taints}}


class CloudNodeLifecycleController(Controller):
    name = "cloud-node-lifecycle-controller"
    workers = 1

    def setup(self) -> None:
        cloud: CloudProvider = self.context.settings["cloud"]
        instances = cloud.instances_v2()
        if instances is None:
            raise ValueError(f"the cloud provider {cloud.name!r} does not support instances")
        self.instances = instances
        self.monitor_period = float(self.context.settings.get("node_monitor_period",
                                                              DEFAULT_MONITOR_PERIOD))
        self.events = EventRecorder(self.client, COMPONENT)
        self.nodes = self.context.informers.informer("v1", "nodes")
        self.nodes.add_handler(self.enqueue_handler)

    async def run(self) -> None:
        monitor = asyncio.create_task(self._monitor(), name=f"{self.name}-monitor")
        try:
            await super().run()
        finally:
            monitor.cancel()

    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(self.monitor_period)
            for key in self.nodes.keys():
                self.queue.add(key)

    async def reconcile(self, key: str) -> float | None:
        node = self.nodes.get(key)
        if node is None or EXCLUDE_FROM_LIFECYCLE in ((node.get("metadata") or {}).get(
                "labels") or {}):
            return None
        if _ready(node) == "True":
            untainted = _with_shutdown_taint(node, False)
            if untainted is not None:
                await self.client.replace("v1", "nodes", untainted)
            return None
        event_object = {**node, "apiVersion": "v1", "kind": "Node"}
        if not await self.instances.instance_exists(node):
            await self.events.record(event_object, "Normal", "DeletingNode",
                                     f"Deleting node {key} because it does not exist in the "
                                     "cloud provider")
            try:
                await self.client.delete("v1", "nodes", key)
            except ApiError as err:
                if err.not_found:
                    return None
                await self.events.record(event_object, "Warning", "DeletingNodeFailed",
                                         f"Failed deleting node {key}: {err}")
                raise
            return None
        if await self.instances.instance_shutdown(node):
            tainted = _with_shutdown_taint(node, True)
            if tainted is not None:
                await self.client.replace("v1", "nodes", tainted)
        return None
