"""The EndpointSlice controller: a selecting Service's pods as discovery.k8s.io/v1 slices.

Where the Endpoints controller writes one object per Service, this one spreads the
endpoints over slices of at most 100 (`<svc>-<random>`, labelled with the Service name
and `endpointslice.kubernetes.io/managed-by`, owned by the Service), one group of slices
per address type and per distinct port set. Each endpoint carries conditions ready /
serving / terminating, its node (and zone), hostname and a targetRef; terminating pods
stay in, marked terminating, so proxies can drain them.

The reconciler follows upstream's to keep churn low: endpoints stay in the slice they are
in; changed endpoints update their slice in place; new endpoints fill slices being
updated anyway, then the unchanged slice they fit best, then new slices; emptied slices
are deleted (or reused instead of creating a new one). A Service with no endpoints keeps
one empty placeholder slice. A tracker of the generations we wrote keeps a cache that
has not caught up with our own writes from making us write twice.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..client import ApiError, Controller, split_key
from ._workloads import is_pod_ready, meta
from .endpoints import (
    HEADLESS_LABEL,
    TriggerTimeTracker,
    endpoint_port,
    find_port,
    is_ipv6,
    pod_ips,
    pods_for_service,
    service_ip_set,
    service_selector,
    services_to_sync,
    set_trigger_annotation,
    should_pod_be_in_endpoints,
    should_set_hostname,
)

API_VERSION = "discovery.k8s.io/v1"
PLURAL = "endpointslices"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
ZONE_LABEL = "topology.kubernetes.io/zone"
MAX_ENDPOINTS_PER_SLICE = 100
#: How soon to look again when the cache lags our writes, or a pod's node is unknown.
RETRY_SECONDS = 0.2
_RESERVED_LABELS = (SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL)


# -- desired state ----------------------------------------------------------------------


def address_types(service: Mapping[str, Any]) -> list[str]:
    """The slice address types a Service gets, from its IP families."""
    spec = service.get("spec") or {}
    families = [f for f in spec.get("ipFamilies") or [] if f in ("IPv4", "IPv6")]
    if families:
        return families
    if service_ip_set(service):
        return ["IPv6" if is_ipv6(spec["clusterIP"]) else "IPv4"]
    return ["IPv4", "IPv6"]


def endpoint_for_pod(pod: Mapping[str, Any], node: Mapping[str, Any] | None,
                     service: Mapping[str, Any], address_type: str) -> dict[str, Any]:
    serving = is_pod_ready(pod)
    terminating = bool(meta(pod).get("deletionTimestamp"))
    publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    endpoint: dict[str, Any] = {
        "addresses": [ip for ip in pod_ips(pod) if is_ipv6(ip) == (address_type == "IPv6")],
        "conditions": {"ready": publish or (serving and not terminating),
                       "serving": serving, "terminating": terminating},
    }
    if should_set_hostname(pod, service):
        endpoint["hostname"] = pod["spec"]["hostname"]
    node_name = (pod.get("spec") or {}).get("nodeName")
    if node_name:
        endpoint["nodeName"] = node_name
    zone = (meta(node).get("labels") or {}).get(ZONE_LABEL) if node else None
    if zone:
        endpoint["zone"] = zone
    endpoint["targetRef"] = {"kind": "Pod", "namespace": meta(pod).get("namespace"),
                             "name": meta(pod).get("name"), "uid": meta(pod).get("uid")}
    return endpoint


def slice_ports(service: Mapping[str, Any], pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = service.get("spec") or {}
    ports = []
    for service_port in spec.get("ports") or []:
        number = find_port(pod, service_port)
        if number is not None:
            port = endpoint_port(service_port, number)
            port.setdefault("name", "")
            ports.append(port)
    return ports


def port_map_key(ports: Iterable[Mapping[str, Any]] | None) -> tuple:
    return tuple(sorted((p.get("name") or "", p.get("port") or 0, p.get("protocol") or "",
                         p.get("appProtocol") or "") for p in ports or []))


def endpoint_key(endpoint: Mapping[str, Any]) -> tuple:
    """What identifies an endpoint within a slice (upstream hashes the same fields)."""
    ref = endpoint.get("targetRef") or {}
    return (tuple(endpoint.get("addresses") or []), endpoint.get("hostname") or "",
            ref.get("namespace") or "", ref.get("name") or "")


def endpoints_equal(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal beyond the key: node, zone, conditions and targetRef (but its resourceVersion)."""
    def ref(ep: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in (ep.get("targetRef") or {}).items()
                if k != "resourceVersion" and v not in (None, "")}

    def conditions(ep: Mapping[str, Any]) -> tuple:
        cond = ep.get("conditions") or {}
        return cond.get("ready"), cond.get("serving"), cond.get("terminating")

    return (a.get("nodeName") == b.get("nodeName") and a.get("zone") == b.get("zone")
            and conditions(a) == conditions(b) and ref(a) == ref(b))


def slice_labels(service: Mapping[str, Any]) -> dict[str, str]:
    labels = {k: v for k, v in (meta(service).get("labels") or {}).items()
              if k not in _RESERVED_LABELS}
    if not service_ip_set(service):
        labels[HEADLESS_LABEL] = ""
    labels[SERVICE_NAME_LABEL] = meta(service)["name"]
    labels[MANAGED_BY_LABEL] = MANAGED_BY
    return labels


def _labels_differ(slice_: Mapping[str, Any], service: Mapping[str, Any]) -> bool:
    ours = {k: v for k, v in (meta(slice_).get("labels") or {}).items()
            if k not in _RESERVED_LABELS}
    theirs = {k: v for k, v in (meta(service).get("labels") or {}).items()
              if k not in _RESERVED_LABELS}
    return ours != theirs


def new_slice(service: Mapping[str, Any], address_type: str,
              ports: list[dict[str, Any]]) -> dict[str, Any]:
    svc_meta = meta(service)
    return {
        "apiVersion": API_VERSION, "kind": "EndpointSlice",
        "metadata": {
            "generateName": f"{svc_meta['name']}-", "namespace": svc_meta.get("namespace"),
            "labels": slice_labels(service),
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service",
                                 "name": svc_meta["name"], "uid": svc_meta.get("uid"),
                                 "controller": True, "blockOwnerDeletion": True}]},
        "addressType": address_type,
        "endpoints": [],
        "ports": copy.deepcopy(ports),
    }


def owned_by(slice_: Mapping[str, Any], service: Mapping[str, Any]) -> bool:
    uid = meta(service).get("uid")
    return any(ref.get("uid") == uid and ref.get("kind") == "Service"
               and ref.get("apiVersion") == "v1"
               for ref in meta(slice_).get("ownerReferences") or [])


@dataclass
class SlicePlan:
    """What one sync writes: new slices (no name yet), replaced slices, deleted slices."""

    create: list[dict[str, Any]] = field(default_factory=list)
    update: list[dict[str, Any]] = field(default_factory=list)
    delete: list[dict[str, Any]] = field(default_factory=list)


def plan_port_mapping(service: Mapping[str, Any], existing: list[dict[str, Any]],
                      desired: dict[tuple, dict[str, Any]], address_type: str,
                      ports: list[dict[str, Any]], max_endpoints: int) -> SlicePlan:
    """Slices of one port set: keep endpoints where they are, fill, then add slices."""
    desired = dict(desired)
    plan = SlicePlan()
    to_update: dict[str, dict[str, Any]] = {}
    unchanged: dict[str, dict[str, Any]] = {}
    for current in existing:
        kept, changed = [], False
        for endpoint in current.get("endpoints") or []:
            want = desired.pop(endpoint_key(endpoint), None)
            if want is not None:
                kept.append(want)
                changed = changed or not endpoints_equal(want, endpoint)
        labels_changed = _labels_differ(current, service)
        if changed or len(kept) != len(current.get("endpoints") or []):
            if not kept:
                plan.delete.append(current)
                continue
            updated = copy.deepcopy(current)
            updated["endpoints"] = kept
            updated["metadata"]["labels"] = slice_labels(service)
            to_update[meta(current)["name"]] = updated
        elif labels_changed:
            updated = copy.deepcopy(current)
            updated["metadata"]["labels"] = slice_labels(service)
            to_update[meta(current)["name"]] = updated
        else:
            unchanged[meta(current)["name"]] = current
    remaining = list(desired.values())
    # Fill the slices being written anyway, fullest first.
    for updated in sorted(to_update.values(), key=lambda s: -len(s["endpoints"])):
        while remaining and len(updated["endpoints"]) < max_endpoints:
            updated["endpoints"].append(remaining.pop(0))
    while remaining:
        target = None
        if len(remaining) < max_endpoints and unchanged:
            target = _slice_to_fill(list(unchanged.values()), len(remaining), max_endpoints)
        if target is None:
            target = new_slice(service, address_type, ports)
        else:
            target = copy.deepcopy(target)
            del unchanged[meta(target)["name"]]
        while remaining and len(target["endpoints"]) < max_endpoints:
            target["endpoints"].append(remaining.pop(0))
        if meta(target).get("name"):
            to_update[meta(target)["name"]] = target
        else:
            plan.create.append(target)
    plan.update = list(to_update.values())
    return plan


def _slice_to_fill(slices: list[dict[str, Any]], count: int, max_endpoints: int
                   ) -> dict[str, Any] | None:
    """The unchanged slice that `count` more endpoints would leave closest to full."""
    best, best_gap = None, max_endpoints
    for candidate in slices:
        gap = max_endpoints - (count + len(candidate.get("endpoints") or []))
        if 0 <= gap < best_gap:
            best, best_gap = candidate, gap
    return best


def plan_slices(service: Mapping[str, Any], pods: Iterable[Mapping[str, Any]],
                nodes: Mapping[str, Mapping[str, Any]], existing: list[dict[str, Any]], *,
                max_endpoints: int = MAX_ENDPOINTS_PER_SLICE) -> tuple[SlicePlan, bool]:
    """Every write that brings the Service's slices to the desired state, and whether a
    pod was left out because its node is not known yet (so the caller retries)."""
    plan = SlicePlan()
    types = address_types(service)
    by_type: dict[str, list[dict[str, Any]]] = {t: [] for t in types}
    for current in existing:
        if current.get("addressType") in by_type:
            by_type[current["addressType"]].append(current)
        else:
            plan.delete.append(current)
    pods = list(pods)
    publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    missing_node = False
    for address_type in types:
        current = by_type[address_type]
        owned: dict[tuple, list[dict[str, Any]]] = {}
        type_plan = SlicePlan()
        for slice_ in current:
            if owned_by(slice_, service):
                owned.setdefault(port_map_key(slice_.get("ports")), []).append(slice_)
            else:
                type_plan.delete.append(slice_)
        desired: dict[tuple, dict[tuple, dict[str, Any]]] = {}
        desired_ports: dict[tuple, list[dict[str, Any]]] = {}
        for pod in pods:
            if not should_pod_be_in_endpoints(pod, include_terminating=True):
                continue
            ports = slice_ports(service, pod)
            key = port_map_key(ports)
            desired.setdefault(key, {})
            desired_ports.setdefault(key, ports)
            node = nodes.get((pod.get("spec") or {}).get("nodeName") or "")
            if node is None and not publish:
                missing_node = True
                continue
            endpoint = endpoint_for_pod(pod, node, service, address_type)
            if endpoint["addresses"]:
                desired[key][endpoint_key(endpoint)] = endpoint
        for key, endpoints in desired.items():
            part = plan_port_mapping(service, owned.get(key, []), endpoints, address_type,
                                     desired_ports[key], max_endpoints)
            type_plan.create += part.create
            type_plan.update += part.update
            type_plan.delete += part.delete
        for key, slices in owned.items():
            if key not in desired:
                type_plan.delete += slices
        if len(current) == len(type_plan.delete) and not type_plan.create:
            placeholder = new_slice(service, address_type, [])
            if len(type_plan.delete) == 1 and _is_placeholder(type_plan.delete[0], placeholder):
                type_plan.delete = []
            else:
                type_plan.create.append(placeholder)
        _reuse_deleted(service, type_plan)
        plan.create += type_plan.create
        plan.update += type_plan.update
        plan.delete += type_plan.delete
    return plan, missing_node


def _is_placeholder(slice_: Mapping[str, Any], placeholder: Mapping[str, Any]) -> bool:
    return (not slice_.get("endpoints") and not slice_.get("ports")
            and slice_.get("addressType") == placeholder["addressType"]
            and (meta(slice_).get("labels") or {}) == meta(placeholder)["labels"]
            and (meta(slice_).get("ownerReferences") or []) == meta(placeholder)[
                "ownerReferences"])


def _reuse_deleted(service: Mapping[str, Any], plan: SlicePlan) -> None:
    """Turn a create plus a delete into one update of the slice we would delete."""
    index = 0
    while plan.create and index < len(plan.delete):
        doomed = plan.delete[index]
        fresh = plan.create[-1]
        if doomed.get("addressType") == fresh["addressType"] and owned_by(doomed, service):
            plan.create.pop()
            reused = copy.deepcopy(fresh)
            reused["metadata"] = {**copy.deepcopy(meta(doomed)),
                                  "labels": fresh["metadata"]["labels"],
                                  "ownerReferences": fresh["metadata"]["ownerReferences"]}
            plan.update.append(reused)
            plan.delete.pop(index)
        else:
            index += 1


# -- our own writes, for a cache that lags them -----------------------------------------

_DELETED = -1


class SliceTracker:
    """The generation of every slice we wrote, per Service (upstream's EndpointSliceTracker).

    The cache is stale for a Service while it shows one of our slices at an older
    generation, still shows one we deleted, or does not show one we created.
    """

    def __init__(self) -> None:
        self._written: dict[str, dict[str, int]] = {}

    def wrote(self, service_key: str, slice_: Mapping[str, Any]) -> None:
        self._written.setdefault(service_key, {})[meta(slice_)["uid"]] = int(
            meta(slice_).get("generation") or 0)

    def deleted(self, service_key: str, slice_: Mapping[str, Any]) -> None:
        self._written.setdefault(service_key, {})[meta(slice_)["uid"]] = _DELETED

    def observed_deletion(self, service_key: str, slice_: Mapping[str, Any]) -> None:
        self._written.get(service_key, {}).pop(meta(slice_).get("uid"), None)

    def newer_than_cache(self, service_key: str, slice_: Mapping[str, Any]) -> bool:
        """False when an event only shows a write of ours we already know about."""
        expected = self._written.get(service_key, {}).get(meta(slice_).get("uid"))
        return expected is None or int(meta(slice_).get("generation") or 0) > expected

    def stale(self, service_key: str, cached: Iterable[Mapping[str, Any]]) -> bool:
        written = self._written.get(service_key)
        if not written:
            return False
        seen = set()
        for slice_ in cached:
            uid = meta(slice_).get("uid")
            seen.add(uid)
            expected = written.get(uid)
            if expected is not None and (
                    expected == _DELETED or expected > int(meta(slice_).get("generation") or 0)):
                return True
        return any(uid not in seen for uid, gen in written.items() if gen != _DELETED)

    def forget(self, service_key: str) -> None:
        self._written.pop(service_key, None)


# -- the controller ---------------------------------------------------------------------


class EndpointSliceController(Controller):
    name = "endpointslice-controller"
    workers = 4

    def setup(self) -> None:
        informers = self.context.informers
        self.services = informers.informer("v1", "services")
        self.pods = informers.informer("v1", "pods")
        self.nodes = informers.informer("v1", "nodes")
        self.slices = informers.informer(API_VERSION, PLURAL, indexers={
            "service-name": _slice_service_key})
        self.services.add_handler(self.enqueue_handler)
        self.pods.add_handler(self._pod_changed)
        self.slices.add_handler(self._slice_changed)
        self.triggers = TriggerTimeTracker()
        self.tracker = SliceTracker()

    def _pod_changed(self, old: dict | None, new: dict | None) -> None:
        for key in services_to_sync(self.services, old, new):
            self.queue.add(key)

    def _slice_changed(self, old: dict | None, new: dict | None) -> None:
        current = new if new is not None else old
        if current is None:
            return
        keys = list(_slice_service_key(current))
        managed = (meta(current).get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY
        was_managed = old is not None and (meta(old).get("labels") or {}).get(
            MANAGED_BY_LABEL) == MANAGED_BY
        if not keys or not (managed or was_managed):
            return
        if new is None:
            self.tracker.observed_deletion(keys[0], current)
            self.queue.add(keys[0])
        elif was_managed != managed or self.tracker.newer_than_cache(keys[0], new):
            self.queue.add(keys[0])

    async def reconcile(self, key: str) -> float | None:
        namespace, name = split_key(key)
        service = self.services.get(key)
        cached = [s for s in self.slices.by_index("service-name", key)
                  if (meta(s).get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY]
        if service is None:
            # The garbage collector removes slices through their owner reference; removing
            # them here too spares a cluster without one from stale slices.
            for slice_ in cached:
                await self._delete(key, namespace, slice_)
            self.triggers.forget(key)
            self.tracker.forget(key)
            return None
        selector = service_selector(service)
        if selector is None:
            return None
        if self.tracker.stale(key, cached):
            return RETRY_SECONDS
        pods = pods_for_service(self.pods, service, selector)
        trigger = self.triggers.compute(key, service, pods)
        nodes = {meta(n)["name"]: n for n in self.nodes.list()}
        plan, missing_node = plan_slices(service, pods, nodes, cached)
        await self._apply(key, namespace, service, plan, trigger)
        return RETRY_SECONDS * 5 if missing_node else None

    async def _apply(self, key: str, namespace: str | None, service: Mapping[str, Any],
                     plan: SlicePlan, trigger: datetime | None) -> None:
        if not meta(service).get("deletionTimestamp"):
            for slice_ in plan.create:
                _annotate(slice_, trigger)
                created = await self.client.create(API_VERSION, PLURAL, slice_, namespace)
                self.tracker.wrote(key, created)
        for slice_ in plan.update:
            _annotate(slice_, trigger)
            updated = await self.client.replace(API_VERSION, PLURAL, slice_)
            self.tracker.wrote(key, updated)
        for slice_ in plan.delete:
            await self._delete(key, namespace, slice_)

    async def _delete(self, key: str, namespace: str | None, slice_: Mapping[str, Any]) -> None:
        try:
            await self.client.delete(API_VERSION, PLURAL, meta(slice_)["name"], namespace)
        except ApiError as err:
            if not err.not_found:
                raise
            return
        self.tracker.deleted(key, slice_)


def _slice_service_key(slice_: Mapping[str, Any]) -> list[str]:
    service = (meta(slice_).get("labels") or {}).get(SERVICE_NAME_LABEL)
    namespace = meta(slice_).get("namespace")
    return [f"{namespace}/{service}"] if service and namespace else []


def _annotate(slice_: dict[str, Any], trigger: datetime | None) -> None:
    annotations = dict(meta(slice_).get("annotations") or {})
    set_trigger_annotation(annotations, trigger)
    if annotations:
        slice_["metadata"]["annotations"] = annotations
    else:
        slice_["metadata"].pop("annotations", None)


CONTROLLER = EndpointSliceController
