"""The cloud node controller: a new node's cloud facts, filled in before pods land on it.

As the cloud-controller-manager's (k8s.io/cloud-provider controllers/node): a kubelet
started with an external cloud provider registers its node tainted
`node.cloudprovider.kubernetes.io/uninitialized` (NoSchedule), since it cannot know what
the cloud knows. This controller, keyed by node name, asks the provider's InstancesV2 for
the machine's metadata and, in one update, sets `spec.providerID` (if unset), the labels
`node.kubernetes.io/instance-type`, `topology.kubernetes.io/zone` and
`topology.kubernetes.io/region` with their deprecated beta twins, the provider's additional
labels (never in a kubernetes.io or k8s.io namespace, never overriding one the node has),
and removes the taint; then it writes the provider's addresses into `status.addresses`
(keeping the kubelet's Hostname when the provider gives none) and records a Synced Event.

An initialized node only has its beta labels' GA twins kept in step. Every
`node_status_update_frequency` seconds (5 minutes by default) the addresses of every
initialized node are refreshed from the provider, as machines can change addresses.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import re
from collections.abc import Mapping
from typing import Any

from ..client import Controller, EventRecorder
from .provider import CloudProvider, CloudProviderError, InstanceMetadata

log = logging.getLogger(__name__)

COMPONENT = "cloud-node-controller"
UNINITIALIZED_TAINT = "node.cloudprovider.kubernetes.io/uninitialized"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
ZONE = "topology.kubernetes.io/zone"
REGION = "topology.kubernetes.io/region"
BETA_INSTANCE_TYPE = "beta.kubernetes.io/instance-type"
BETA_ZONE = "failure-domain.beta.kubernetes.io/zone"
BETA_REGION = "failure-domain.beta.kubernetes.io/region"
#: (deprecated beta label, its GA twin): the beta one is the source of truth, as upstream.
LABEL_TWINS = ((BETA_ZONE, ZONE), (BETA_REGION, REGION), (BETA_INSTANCE_TYPE, INSTANCE_TYPE))
DEFAULT_STATUS_UPDATE_FREQUENCY = 300.0
_KUBERNETES_NAMESPACE = re.compile(r"(^|\.)(kubernetes|k8s)\.io/")


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def is_uninitialized(node: Mapping[str, Any]) -> bool:
    return any(t.get("key") == UNINITIALIZED_TAINT
               for t in (node.get("spec") or {}).get("taints") or ())


def initialized_node(node: Mapping[str, Any], metadata: InstanceMetadata) -> dict[str, Any]:
    """The node with the cloud's providerID and labels, and without the taint."""
    updated = copy.deepcopy(dict(node))
    spec = updated.setdefault("spec", {})
    labels = updated["metadata"].setdefault("labels", {})
    if not spec.get("providerID") and metadata.provider_id:
        spec["providerID"] = metadata.provider_id
    for value, keys in ((metadata.instance_type, (BETA_INSTANCE_TYPE, INSTANCE_TYPE)),
                        (metadata.zone, (BETA_ZONE, ZONE)),
                        (metadata.region, (BETA_REGION, REGION))):
        if value:
            labels.update(dict.fromkeys(keys, value))
    for key, value in metadata.additional_labels.items():
        if _KUBERNETES_NAMESPACE.search(key):
            log.warning("discarding node label %s of the cloud provider: it is in a "
                        "kubernetes namespace", key)
        elif key not in labels:
            labels[key] = value
    spec["taints"] = [t for t in spec.get("taints") or () if t.get("key") != UNINITIALIZED_TAINT]
    return updated


def twin_labels_to_update(node: Mapping[str, Any]) -> dict[str, str]:
    """GA labels missing or differing from their beta twin's value."""
    labels = _meta(node).get("labels") or {}
    return {ga: labels[beta] for beta, ga in LABEL_TWINS
            if beta in labels and labels.get(ga) != labels[beta]}


def node_addresses(node: Mapping[str, Any], metadata: InstanceMetadata
                   ) -> list[dict[str, str]] | None:
    """The node's new `status.addresses`, or None when they need no write."""
    addresses = [dict(a) for a in metadata.node_addresses]
    if not addresses:
        return None
    current = (node.get("status") or {}).get("addresses") or []
    if not any(a.get("type") == "Hostname" for a in addresses):
        addresses += [dict(a) for a in current if a.get("type") == "Hostname"]
    by_type = {a.get("type"): a.get("address") for a in current}
    if len(current) == len(addresses) and all(
            by_type.get(a.get("type")) == a.get("address") for a in addresses):
        return None
    return addresses


class CloudNodeController(Controller):
    name = "cloud-node-controller"

    def setup(self) -> None:
        cloud: CloudProvider = self.context.settings["cloud"]
        instances = cloud.instances_v2()
        if instances is None:
            raise ValueError(f"the cloud provider {cloud.name!r} does not support instances")
        self.instances = instances
        self.status_update_frequency = float(self.context.settings.get(
            "node_status_update_frequency", DEFAULT_STATUS_UPDATE_FREQUENCY))
        self.events = EventRecorder(self.client, COMPONENT)
        self.nodes = self.context.informers.informer("v1", "nodes")
        self.nodes.add_handler(self._node_changed)

    def _node_changed(self, old: dict | None, new: dict | None) -> None:
        self.enqueue(new)

    async def run(self) -> None:
        refresher = asyncio.create_task(self._refresh_addresses(),
                                        name=f"{self.name}-addresses")
        try:
            await super().run()
        finally:
            refresher.cancel()

    async def reconcile(self, key: str) -> float | None:
        node = self.nodes.get(key)
        if node is None:
            return None
        if not is_uninitialized(node):
            labels = twin_labels_to_update(node)
            if labels:
                await self.client.patch("v1", "nodes", key, {"metadata": {"labels": labels}})
            return None
        log.info("initializing node %s with cloud provider", key)
        metadata = await self.instances.instance_metadata(node)
        if metadata is None:
            log.info("skipping node %s: the cloud provider has no metadata for it", key)
            return None
        if not metadata.provider_id:
            existing = (node.get("spec") or {}).get("providerID")
            if not existing:
                raise CloudProviderError(
                    f"cloud provider does not set node provider ID for node {key}")
            metadata = dataclasses.replace(metadata, provider_id=existing)
        updated = await self.client.replace("v1", "nodes", initialized_node(node, metadata))
        await self._update_addresses(updated, metadata)
        log.info("successfully initialized node %s with cloud provider", key)
        await self.events.record({**updated, "apiVersion": "v1", "kind": "Node"}, "Normal",
                                 "Synced", "Node synced successfully")
        return None

    async def _update_addresses(self, node: Mapping[str, Any], metadata: InstanceMetadata
                                ) -> None:
        addresses = node_addresses(node, metadata)
        if addresses is None:
            return
        # A merge patch replaces the list: addresses the cloud no longer reports go.
        await self.client.patch("v1", "nodes", _meta(node)["name"],
                                {"status": {"addresses": addresses}}, subresource="status")

    async def _refresh_addresses(self) -> None:
        while True:
            await asyncio.sleep(self.status_update_frequency)
            for node in self.nodes.list():
                if is_uninitialized(node):
                    continue  # initialization writes its addresses
                try:
                    metadata = await self.instances.instance_metadata(node)
                    if metadata is not None:
                        await self._update_addresses(node, metadata)
                except Exception as err:
                    log.warning("updating the addresses of node %s failed: %s",
                                _meta(node).get("name"), err)
