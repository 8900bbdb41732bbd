"""The service controller: a cloud load balancer for each Service of type LoadBalancer.

As the cloud-controller-manager's (k8s.io/cloud-provider controllers/service), keyed by
Service:

- A Service wants a load balancer when its type is LoadBalancer and it names no
  `spec.loadBalancerClass` (a Service naming a class is another implementation's).
  Before asking the cloud for one, the controller adds the finalizer
  `service.kubernetes.io/load-balancer-cleanup`, so the Service cannot go before its load
  balancer does; then EnsureLoadBalancer, and the status it returns is patched into
  `status.loadBalancer` (what `kubectl get svc` shows as EXTERNAL-IP, and what the node
  proxies forward). Events: EnsuringLoadBalancer, EnsuredLoadBalancer, or
  SyncLoadBalancerFailed with the cloud's error (retried with backoff from 5 s to 300 s).
- A Service being deleted, or no longer of type LoadBalancer, while it carries the
  finalizer: the load balancer is deleted (DeletingLoadBalancer, DeletedLoadBalancer),
  the finalizer removed and the status cleared.
- Only changes that matter to a load balancer trigger a sync (type, ports, source ranges,
  session affinity, loadBalancerIP, external IPs, annotations, traffic policy, IP
  families), with the Events real clusters show for some of them ("Type", ...).
- Nodes: when the set of nodes a load balancer may use changes (a node added or removed,
  labelled `node.kubernetes.io/exclude-from-external-load-balancers`, or given its
  providerID), every load balancer is updated (UpdatedLoadBalancer, or
  UpdateLoadBalancerFailed and a retry of that Service). Nodes count when they have a
  providerID, are not excluded, not being deleted, and not tainted for deletion by the
  cluster autoscaler (the stable node set of Kubernetes 1.30+, where readiness does not
  move load balancers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from ..client import ApiError, Controller, EventRecorder, WorkQueue, object_key
from ..client.controller import process_queue
from .provider import LOAD_BALANCER_CLEANUP_FINALIZER, CloudProvider, ImplementedElsewhere

COMPONENT = "service-controller"
EXCLUDE_FROM_LOAD_BALANCERS = "node.kubernetes.io/exclude-from-external-load-balancers"
TO_BE_DELETED_TAINT = "ToBeDeletedByClusterAutoscaler"
MIN_RETRY_DELAY = 5.0
MAX_RETRY_DELAY = 300.0
_NODES_KEY = "nodes"


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def wants_load_balancer(service: Mapping[str, Any]) -> bool:
    """Type LoadBalancer, and no class naming another implementation."""
    spec = _spec(service)
    return spec.get("type") == "LoadBalancer" and spec.get("loadBalancerClass") is None


def has_finalizer(service: Mapping[str, Any]) -> bool:
    return LOAD_BALANCER_CLEANUP_FINALIZER in (_meta(service).get("finalizers") or ())


def needs_cleanup(service: Mapping[str, Any]) -> bool:
    """Carries the finalizer, and is being deleted or is no longer a LoadBalancer."""
    return has_finalizer(service) and (
        bool(_meta(service).get("deletionTimestamp"))
        or _spec(service).get("type") != "LoadBalancer")


def _ports_for_load_balancer(service: Mapping[str, Any]) -> list[tuple]:
    return [(p.get("name"), p.get("protocol"), p.get("port"), p.get("nodePort"),
             p.get("targetPort"), p.get("appProtocol")) for p in _spec(service).get("ports") or ()]


def load_balancer_changes(old: Mapping[str, Any], new: Mapping[str, Any]
                          ) -> tuple[bool, list[tuple[str, str]]]:
    """Whether the update matters to the load balancer, and the Events that say how."""
    if not wants_load_balancer(old) and not wants_load_balancer(new):
        return False, []
    before, after = _spec(old), _spec(new)
    if wants_load_balancer(old) != wants_load_balancer(new):
        return True, [("Type", f"{before.get('type')} -> {after.get('type')}")]
    ranges = (before.get("loadBalancerSourceRanges"), after.get("loadBalancerSourceRanges"))
    if wants_load_balancer(new) and ranges[0] != ranges[1]:
        return True, [("LoadBalancerSourceRanges", f"{ranges[0]} -> {ranges[1]}")]
    if (_ports_for_load_balancer(old) != _ports_for_load_balancer(new)
            or before.get("sessionAffinity") != after.get("sessionAffinity")
            or before.get("sessionAffinityConfig") != after.get("sessionAffinityConfig")):
        return True, []
    if before.get("loadBalancerIP") != after.get("loadBalancerIP"):
        return True, [("LoadbalancerIP",
                       f"{before.get('loadBalancerIP', '')} -> {after.get('loadBalancerIP', '')}")]
    external_before = list(before.get("externalIPs") or ())
    external_after = list(after.get("externalIPs") or ())
    if len(external_before) != len(external_after):
        return True, [("ExternalIP", f"Count: {len(external_before)} -> {len(external_after)}")]
    for was, now in zip(external_before, external_after, strict=True):
        if was != now:
            return True, [("ExternalIP", f"Added: {now}")]
    if _meta(old).get("annotations") != _meta(new).get("annotations"):
        return True, []
    if _meta(old).get("uid") != _meta(new).get("uid"):
        return True, [("UID", f"{_meta(old).get('uid')} -> {_meta(new).get('uid')}")]
    for field, reason in (("externalTrafficPolicy", "ExternalTrafficPolicy"),
                          ("healthCheckNodePort", "HealthCheckNodePort")):
        if before.get(field) != after.get(field):
            return True, [(reason, f"{before.get(field)} -> {after.get(field)}")]
    families = (len(before.get("ipFamilies") or ()), len(after.get("ipFamilies") or ()))
    if families[0] != families[1]:
        return True, [("IPFamilies", f"Count: {families[0]} -> {families[1]}")]
    return False, []


def node_included(node: Mapping[str, Any]) -> bool:
    return EXCLUDE_FROM_LOAD_BALANCERS not in (_meta(node).get("labels") or {})


def node_has_provider_id(node: Mapping[str, Any]) -> bool:
    return bool(_spec(node).get("providerID"))


def load_balancer_node(node: Mapping[str, Any]) -> bool:
    """Whether a load balancer may send traffic through this node."""
    return (not _meta(node).get("deletionTimestamp") and node_included(node)
            and node_has_provider_id(node)
            and not any(t.get("key") == TO_BE_DELETED_TAINT
                        for t in _spec(node).get("taints") or ()))


def should_sync_updated_node(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return (node_included(old) != node_included(new)
            or node_has_provider_id(old) != node_has_provider_id(new))


def _service(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object as Events name it (list items carry no kind)."""
    return {**obj, "apiVersion": "v1", "kind": "Service"}


class ServiceController(Controller):
    name = "service-controller"
    workers = 2

    def setup(self) -> None:
        cloud: CloudProvider = self.context.settings["cloud"]
        balancer = cloud.load_balancer()
        if balancer is None:
            raise ValueError(f"the cloud provider {cloud.name!r} does not support external "
                             "load balancers")
        self.balancer = balancer
        self.cluster_name: str = self.context.settings["cluster_name"]
        self.events = EventRecorder(self.client, COMPONENT)
        self.queue = WorkQueue(base_delay=MIN_RETRY_DELAY, max_delay=MAX_RETRY_DELAY)
        self.node_queue = WorkQueue(base_delay=MIN_RETRY_DELAY, max_delay=MAX_RETRY_DELAY)
        self.services = self.context.informers.informer("v1", "services")
        self.nodes = self.context.informers.informer("v1", "nodes")
        self.services.add_handler(self._service_changed)
        self.nodes.add_handler(self._node_changed)
        #: Events about a Service's spec change, recorded when it is next synced.
        self._pending_events: dict[str, list[tuple[str, str]]] = {}
        #: The nodes the last node sync handed the load balancers.
        self._synced_nodes: list[dict[str, Any]] = []

    def _service_changed(self, old: dict | None, new: dict | None) -> None:
        if new is None:  # its load balancer, if any, went when its finalizer did
            return
        if old is None:
            if wants_load_balancer(new) or needs_cleanup(new):
                self.enqueue(new)
            return
        changed, events = load_balancer_changes(old, new)
        if changed or needs_cleanup(new):
            key = object_key(new)
            self._pending_events.setdefault(key, []).extend(events)
            self.queue.add(key)

    def _node_changed(self, old: dict | None, new: dict | None) -> None:
        if old is None or new is None or should_sync_updated_node(old, new):
            self.node_queue.add(_NODES_KEY)

    async def run(self) -> None:
        node_worker = asyncio.create_task(
            process_queue(self.node_queue, self._sync_nodes, name=f"{self.name}-nodes"))
        try:
            await super().run()
        finally:
            node_worker.cancel()

    # -- one Service -----------------------------------------------------------------

    async def reconcile(self, key: str) -> float | None:
        cached = self.services.get(key)
        events = self._pending_events.pop(key, [])
        if cached is None:
            return None
        service = _service(cached)
        for reason, message in events:
            await self.events.record(service, "Normal", reason, message)
        try:
            await self._sync(service)
        except Exception as err:
            await self.events.record(service, "Warning", "SyncLoadBalancerFailed",
                                     f"Error syncing load balancer: {err}")
            raise
        return None

    async def _sync(self, service: dict[str, Any]) -> None:
        previous = (service.get("status") or {}).get("loadBalancer") or {}
        if not wants_load_balancer(service) or needs_cleanup(service):
            _, exists = await self.balancer.get_load_balancer(self.cluster_name, service)
            if exists:
                await self.events.record(service, "Normal", "DeletingLoadBalancer",
                                         "Deleting load balancer")
                try:
                    await self.balancer.ensure_load_balancer_deleted(self.cluster_name, service)
                except ImplementedElsewhere:
                    pass
            await self._remove_finalizer(service)
            await self.events.record(service, "Normal", "DeletedLoadBalancer",
                                     "Deleted load balancer")
            status: dict[str, Any] = {}
        else:
            await self.events.record(service, "Normal", "EnsuringLoadBalancer",
                                     "Ensuring load balancer")
            await self._add_finalizer(service)
            nodes = [n for n in self.nodes.list() if load_balancer_node(n)]
            if not nodes:
                await self.events.record(service, "Warning", "UnAvailableLoadBalancer",
                                         "There are no available nodes for LoadBalancer")
            try:
                status = await self.balancer.ensure_load_balancer(self.cluster_name, service,
                                                                  nodes)
            except ImplementedElsewhere:
                return
            await self.events.record(service, "Normal", "EnsuredLoadBalancer",
                                     "Ensured load balancer")
        await self._patch_status(service, previous, status)

    async def _add_finalizer(self, service: Mapping[str, Any]) -> None:
        if has_finalizer(service):
            return
        await self.client.patch(
            "v1", "services", _meta(service)["name"],
            {"metadata": {"finalizers": [LOAD_BALANCER_CLEANUP_FINALIZER]}},
            _meta(service).get("namespace"), patch_type="strategic")

    async def _remove_finalizer(self, service: Mapping[str, Any]) -> None:
        if not has_finalizer(service):
            return
        try:
            await self.client.patch(
                "v1", "services", _meta(service)["name"],
                {"metadata": {"$deleteFromPrimitiveList/finalizers": [
                    LOAD_BALANCER_CLEANUP_FINALIZER]}},
                _meta(service).get("namespace"), patch_type="strategic")
        except ApiError as err:
            if not err.not_found:
                raise

    async def _patch_status(self, service: Mapping[str, Any], previous: Mapping[str, Any],
                            status: Mapping[str, Any]) -> None:
        if (previous.get("ingress") or []) == (status.get("ingress") or []):
            return
        # A merge patch replaces the ingress list whole, and null removes what went.
        load_balancer = {key: status.get(key) for key in {*previous, *status}}
        try:
            await self.client.patch("v1", "services", _meta(service)["name"],
                                    {"status": {"loadBalancer": load_balancer}},
                                    _meta(service).get("namespace"), subresource="status")
        except ApiError as err:
            if not err.not_found:  # gone right after its finalizer was removed
                raise

    # -- the node set ----------------------------------------------------------------

    async def _sync_nodes(self, _key: str) -> None:
        """Hand every load balancer the current node set, if its share of it changed."""
        nodes = self.nodes.list()
        current = [n for n in nodes if load_balancer_node(n)]
        names = {_meta(n)["name"] for n in current}
        synced = {_meta(n)["name"] for n in self._synced_nodes if load_balancer_node(n)}
        if names != synced:
            for cached in self.services.list():
                if wants_load_balancer(cached) and has_finalizer(cached):
                    await self._update_hosts(_service(cached), current)
        self._synced_nodes = nodes

    async def _update_hosts(self, service: dict[str, Any], nodes: list[dict[str, Any]]
                            ) -> None:
        try:
            await self.balancer.update_load_balancer(self.cluster_name, service, nodes)
        except ImplementedElsewhere:
            return
        except Exception as err:
            _, exists = await self.balancer.get_load_balancer(self.cluster_name, service)
            if not exists:  # it is only a failure if the load balancer is still there
                return
            names = sorted(_meta(n)["name"] for n in nodes)
            await self.events.record(service, "Warning", "UpdateLoadBalancerFailed",
                                     f"Error updating load balancer with new hosts {names}: "
                                     f"{err}")
            self.queue.add(object_key(service))
            return
        if nodes:
            await self.events.record(service, "Normal", "UpdatedLoadBalancer",
                                     "Updated load balancer with new hosts")
        else:
            await self.events.record(service, "Warning", "UnAvailableLoadBalancer",
                                     "There are no available nodes for LoadBalancer")

