"""The Endpoints controller: one core/v1 Endpoints per selecting Service, as kube-proxy's
and DNS's legacy source of where a Service's pods are.

For each Service with a selector (headless ones too; ExternalName and selector-less
Services are left to their owners), the Endpoints of the same name lists the matching
pods that have an IP: ready ones under `addresses`, the rest under `notReadyAddresses`
(all under `addresses` with `publishNotReadyAddresses`), each with its node and a
targetRef, grouped into subsets by the ports they offer (named targetPorts resolved
against the pod's container ports, as upstream's RepackSubsets groups them). The
annotation `endpoints.kubernetes.io/last-change-trigger-time` says which change the
write reflects. A Service's deletion deletes its Endpoints.

The pod, service and trigger-time helpers here are shared with the EndpointSlice
controller (endpointslice.py), which makes the same decisions for a different shape.
"""

from __future__ import annotations

import copy
import ipaddress
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..client import ApiError, Controller, Informer, split_key
from ..machinery.meta import parse_time, rfc3339
from ._workloads import is_pod_ready, meta

HEADLESS_LABEL = "service.kubernetes.io/headless"
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
OVER_CAPACITY_ANNOTATION = "endpoints.kubernetes.io/over-capacity"
LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"
#: An Endpoints object holds at most this many addresses; the rest are dropped and the
#: object is annotated over-capacity (use EndpointSlices past it).
MAX_CAPACITY = 1000
#: How soon to look again when the cache still shows an Endpoints we already replaced.
STALE_RETRY_SECONDS = 0.1


# -- pods and services (shared with the EndpointSlice controller) -----------------------


def pod_terminal(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def pod_ips(pod: Mapping[str, Any]) -> list[str]:
    status = pod.get("status") or {}
    ips = [entry.get("ip") for entry in status.get("podIPs") or [] if entry.get("ip")]
    if not ips and status.get("podIP"):
        ips = [status["podIP"]]
    return ips


def should_pod_be_in_endpoints(pod: Mapping[str, Any], *, include_terminating: bool) -> bool:
    """Not finished, has an IP, and (unless asked) not being deleted."""
    if pod_terminal(pod) or not pod_ips(pod):
        return False
    return include_terminating or not meta(pod).get("deletionTimestamp")


def should_set_hostname(pod: Mapping[str, Any], service: Mapping[str, Any]) -> bool:
    """A pod names itself in a Service when its subdomain is that Service's name."""
    spec = pod.get("spec") or {}
    return bool(spec.get("hostname")) and spec.get("subdomain") == meta(service).get(
        "name") and meta(pod).get("namespace") == meta(service).get("namespace")


def service_ip_set(service: Mapping[str, Any]) -> bool:
    cluster_ip = (service.get("spec") or {}).get("clusterIP") or ""
    return cluster_ip not in ("", "None")


def service_selector(service: Mapping[str, Any]) -> dict[str, str] | None:
    """The Service's selector, or None when this controller should leave it alone."""
    spec = service.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return None
    return spec.get("selector") or None


def selects(selector: Mapping[str, str], labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    return all(labels.get(key) == value for key, value in selector.items())


def find_port(pod: Mapping[str, Any], service_port: Mapping[str, Any]) -> int | None:
    """The pod port a Service port targets: a number as is, a name looked up among the
    containers' (and restartable init containers') ports of the same protocol."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = service_port.get("protocol") or "TCP"
    spec = pod.get("spec") or {}
    containers = list(spec.get("containers") or []) + [
        c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    for container in containers:
        for port in container.get("ports") or []:
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return port.get("containerPort")
    return None


def is_ipv6(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 6
    except ValueError:
        return False


def pods_for_service(pods: Informer, service: Mapping[str, Any],
                     selector: Mapping[str, str]) -> list[dict[str, Any]]:
    namespace = meta(service).get("namespace") or ""
    return [pod for pod in pods.by_index("namespace", namespace)
            if selects(selector, meta(pod).get("labels"))]


def _endpoint_relevant_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[bool, bool]:
    """(the pod's endpoint changed, the set of Services it may match changed)."""
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    membership = (meta(old).get("labels") or {}) != (meta(new).get("labels") or {}) or (
        old_spec.get("hostname"), old_spec.get("subdomain")) != (
        new_spec.get("hostname"), new_spec.get("subdomain"))
    endpoint = (meta(old).get("deletionTimestamp") != meta(new).get("deletionTimestamp")
                or is_pod_ready(old) != is_pod_ready(new)
                or pod_ips(old) != pod_ips(new)
                or pod_terminal(old) != pod_terminal(new))
    return endpoint, membership


def services_to_sync(services: Informer, old: Mapping[str, Any] | None,
                     new: Mapping[str, Any] | None) -> set[str]:
    """Keys of the Services whose endpoints a pod event may change."""

    def matching(pod: Mapping[str, Any]) -> set[str]:
        namespace = meta(pod).get("namespace") or ""
        keys = set()
        for service in services.by_index("namespace", namespace):
            selector = service_selector(service)
            if selector is not None and selects(selector, meta(pod).get("labels")):
                keys.add(f"{namespace}/{meta(service)['name']}")
        return keys

    if old is None or new is None:
        pod = new if new is not None else old
        return matching(pod) if pod is not None else set()
    if meta(old).get("resourceVersion") == meta(new).get("resourceVersion"):
        return set()
    endpoint_changed, membership_changed = _endpoint_relevant_change(old, new)
    if not membership_changed:
        return matching(new) if endpoint_changed else set()
    before, after = matching(old), matching(new)
    return before | after if endpoint_changed else before ^ after


@dataclass
class _TriggerState:
    pods: dict[str, datetime] = field(default_factory=dict)
    service: datetime | None = None


class TriggerTimeTracker:
    """When the change a sync reflects happened (upstream's TriggerTimeTracker).

    A pod's trigger is its Ready condition's last transition, a Service's its creation.
    A sync reports the earliest trigger that moved since the previous sync of the same
    Service, or the Service's creation the first time it is seen; nothing moved: None.
    """

    def __init__(self) -> None:
        self._states: dict[str, _TriggerState] = {}

    def compute(self, key: str, service: Mapping[str, Any],
                pods: Iterable[Mapping[str, Any]]) -> datetime | None:
        state = self._states.get(key)
        previous = state or _TriggerState()
        changed: list[datetime] = []
        pod_times: dict[str, datetime] = {}
        for pod in pods:
            ready = next((c for c in (pod.get("status") or {}).get("conditions") or []
                          if c.get("type") == "Ready"), None)
            stamp = parse_time((ready or {}).get("lastTransitionTime"))
            if stamp is None:
                continue
            pod_times[meta(pod)["name"]] = stamp
            last = previous.pods.get(meta(pod)["name"])
            if last is None or stamp > last:
                changed.append(stamp)
        created = parse_time(meta(service).get("creationTimestamp"))
        if created is not None and (previous.service is None or created > previous.service):
            changed.append(created)
        self._states[key] = _TriggerState(pod_times, created)
        if state is None:
            return created
        return min(changed) if changed else None

    def forget(self, key: str) -> None:
        self._states.pop(key, None)


def set_trigger_annotation(annotations: dict[str, str], when: datetime | None) -> None:
    if when is None:
        annotations.pop(TRIGGER_TIME_ANNOTATION, None)
    else:
        annotations[TRIGGER_TIME_ANNOTATION] = rfc3339(when)


# -- the Endpoints shape ----------------------------------------------------------------


def endpoint_address(service: Mapping[str, Any], pod: Mapping[str, Any]) -> dict[str, Any] | None:
    """The pod's address in the Service's (first) IP family, or None if it has none."""
    spec = service.get("spec") or {}
    families = spec.get("ipFamilies") or []
    if families:
        want_v6 = families[0] == "IPv6"
    elif service_ip_set(service):
        want_v6 = is_ipv6(spec["clusterIP"])
    else:
        want_v6 = is_ipv6((pod.get("status") or {}).get("podIP") or "")
    address = next((ip for ip in pod_ips(pod) if is_ipv6(ip) == want_v6), None)
    if address is None:
        return None
    pod_meta = meta(pod)
    entry: dict[str, Any] = {"ip": address}
    if should_set_hostname(pod, service):
        entry["hostname"] = pod["spec"]["hostname"]
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        entry["nodeName"] = node
    entry["targetRef"] = {"kind": "Pod", "namespace": pod_meta.get("namespace"),
                          "name": pod_meta.get("name"), "uid": pod_meta.get("uid")}
    return entry


def endpoint_port(service_port: Mapping[str, Any], number: int) -> dict[str, Any]:
    port: dict[str, Any] = {}
    if service_port.get("name"):
        port["name"] = service_port["name"]
    port["port"] = number
    port["protocol"] = service_port.get("protocol") or "TCP"
    if service_port.get("appProtocol"):
        port["appProtocol"] = service_port["appProtocol"]
    return port


def _port_key(port: Mapping[str, Any]) -> tuple[str, int, str, str]:
    return (port.get("name") or "", int(port.get("port") or 0), port.get("protocol") or "",
            port.get("appProtocol") or "")


def _address_key(address: Mapping[str, Any]) -> tuple[str, str]:
    return address["ip"], (address.get("targetRef") or {}).get("uid") or ""


def desired_subsets(service: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]
                    ) -> list[dict[str, Any]]:
    """The subsets of the Service's Endpoints: addresses grouped by the ports they offer."""
    spec = service.get("spec") or {}
    publish_unready = bool(spec.get("publishNotReadyAddresses"))
    service_ports = spec.get("ports") or []
    headless = spec.get("clusterIP") == "None"
    # port (None: a headless Service without ports) -> address key -> (address, ready)
    by_port: dict[tuple | None, dict[tuple[str, str], tuple[dict, bool]]] = {}
    ports: dict[tuple, dict[str, Any]] = {}
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, include_terminating=publish_unready):
            continue
        address = endpoint_address(service, pod)
        if address is None:
            continue
        ready = publish_unready or is_pod_ready(pod)
        if not service_ports:
            if headless:
                by_port.setdefault(None, {})[_address_key(address)] = (address, ready)
            continue
        for service_port in service_ports:
            number = find_port(pod, service_port)
            if number is None:
                continue
            port = endpoint_port(service_port, number)
            ports[_port_key(port)] = port
            by_port.setdefault(_port_key(port), {})[_address_key(address)] = (address, ready)
    # Ports offered by exactly the same addresses (with the same readiness) share a subset.
    groups: dict[frozenset, list[tuple | None]] = {}
    for port_key, addresses in by_port.items():
        signature = frozenset((k, ready) for k, (_, ready) in addresses.items())
        groups.setdefault(signature, []).append(port_key)
    subsets = []
    for port_keys in groups.values():
        addresses = by_port[port_keys[0]]
        ordered = sorted(addresses.items())
        subset: dict[str, Any] = {}
        ready = [address for _, (address, ok) in ordered if ok]
        not_ready = [address for _, (address, ok) in ordered if not ok]
        if ready:
            subset["addresses"] = ready
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        real_ports = sorted(k for k in port_keys if k is not None)
        if real_ports:
            subset["ports"] = [ports[k] for k in real_ports]
        subsets.append(subset)
    subsets.sort(key=_subset_order)
    return subsets


def _subset_order(subset: Mapping[str, Any]) -> tuple:
    return (tuple(_port_key(p) for p in subset.get("ports") or []),
            tuple(a["ip"] for a in subset.get("addresses") or []),
            tuple(a["ip"] for a in subset.get("notReadyAddresses") or []))


def truncate(subsets: list[dict[str, Any]], capacity: int = MAX_CAPACITY) -> bool:
    """Cut the subsets down to `capacity` addresses, ready ones first and each subset in
    proportion to its share; True if anything was cut."""
    total_ready = sum(len(s.get("addresses") or []) for s in subsets)
    total_not_ready = sum(len(s.get("notReadyAddresses") or []) for s in subsets)
    if total_ready + total_not_ready <= capacity:
        return False
    cut_ready = total_ready > capacity
    limit, total = (capacity, total_ready) if cut_ready else (capacity - total_ready,
                                                              total_not_ready)
    room = limit
    field_name = "addresses" if cut_ready else "notReadyAddresses"
    for subset in subsets:
        current = subset.get(field_name) or []
        share = min(math.ceil(len(current) / total * limit) if total else 0, room)
        subset[field_name] = current[:share]
        room -= len(subset[field_name])
        if cut_ready:
            subset.pop("notReadyAddresses", None)
        for name in ("addresses", "notReadyAddresses"):
            if not subset.get(name):
                subset.pop(name, None)
    return True


def _comparable(value: Any) -> Any:
    """`value` without empty fields, as it reads back from the API (omitempty)."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()
                if v not in (None, "", [], {}) and k != "resourceVersion"}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def endpoints_up_to_date(current: Mapping[str, Any], subsets: list[dict[str, Any]],
                         service: Mapping[str, Any]) -> bool:
    labels = dict(meta(current).get("labels") or {})
    labels.pop(HEADLESS_LABEL, None)
    annotations = meta(current).get("annotations") or {}
    addresses = sum(len(s.get("addresses") or []) + len(s.get("notReadyAddresses") or [])
                    for s in current.get("subsets") or [])
    capacity_ok = addresses <= MAX_CAPACITY and OVER_CAPACITY_ANNOTATION not in annotations
    return (_comparable(current.get("subsets") or []) == _comparable(subsets)
            and labels == (meta(service).get("labels") or {}) and capacity_ok)


def build_endpoints(current: Mapping[str, Any] | None, service: Mapping[str, Any],
                    subsets: list[dict[str, Any]], trigger: datetime | None) -> dict[str, Any]:
    """The Endpoints to write: `current` (or a new object) with the desired subsets,
    the Service's labels (plus the headless marker) and the bookkeeping annotations."""
    svc_meta = meta(service)
    if current is None:
        endpoints: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": svc_meta["name"], "namespace": svc_meta.get("namespace")}}
    else:
        endpoints = {**copy.deepcopy(dict(current)), "apiVersion": "v1", "kind": "Endpoints"}
    ep_meta = endpoints["metadata"]
    endpoints["subsets"] = copy.deepcopy(subsets)
    labels = dict(svc_meta.get("labels") or {})
    if service_ip_set(service):
        labels.pop(HEADLESS_LABEL, None)
    else:
        labels[HEADLESS_LABEL] = ""
    ep_meta["labels"] = labels
    annotations = dict(ep_meta.get("annotations") or {})
    set_trigger_annotation(annotations, trigger)
    if truncate(endpoints["subsets"]):
        annotations[OVER_CAPACITY_ANNOTATION] = "truncated"
    else:
        annotations.pop(OVER_CAPACITY_ANNOTATION, None)
    ep_meta["annotations"] = annotations
    return endpoints


# -- the controller ---------------------------------------------------------------------


class EndpointsController(Controller):
    name = "endpoint-controller"
    workers = 4

    def setup(self) -> None:
        informers = self.context.informers
        self.services = informers.informer("v1", "services")
        self.pods = informers.informer("v1", "pods")
        self.endpoints = informers.informer("v1", "endpoints")
        self.services.add_handler(self.enqueue_handler)
        self.pods.add_handler(self._pod_changed)
        self.endpoints.add_handler(self._endpoints_changed)
        self.triggers = TriggerTimeTracker()
        # key -> resourceVersion of an Endpoints we replaced; seeing it again means the
        # cache has not caught up with our own write yet.
        self._replaced: dict[str, str] = {}

    def _pod_changed(self, old: dict | None, new: dict | None) -> None:
        for key in services_to_sync(self.services, old, new):
            self.queue.add(key)

    def _endpoints_changed(self, old: dict | None, new: dict | None) -> None:
        if new is None and old is not None:
            self.enqueue(old)

    async def run(self) -> None:
        # Endpoints left behind by Services deleted while no controller ran.
        for endpoints in self.endpoints.list():
            if LEADER_ANNOTATION not in (meta(endpoints).get("annotations") or {}):
                self.enqueue(endpoints)
        await super().run()

    async def reconcile(self, key: str) -> float | None:
        namespace, name = split_key(key)
        service = self.services.get(key)
        if service is None:
            try:
                await self.client.delete("v1", "endpoints", name, namespace)
            except ApiError as err:
                if not err.not_found:
                    raise
            self.triggers.forget(key)
            self._replaced.pop(key, None)
            return None
        selector = service_selector(service)
        if selector is None:
            return None
        pods = pods_for_service(self.pods, service, selector)
        trigger = self.triggers.compute(key, service, pods)
        subsets = desired_subsets(service, pods)
        current = self.endpoints.get(key)
        if current is not None and self._replaced.get(key) == meta(current).get(
                "resourceVersion"):
            return STALE_RETRY_SECONDS
        if current is not None and endpoints_up_to_date(current, subsets, service):
            return None
        desired = build_endpoints(current, service, subsets, trigger)
        try:
            if current is None:
                await self.client.create("v1", "endpoints", desired, namespace)
                return None
            written = await self.client.replace("v1", "endpoints", desired)
        except ApiError as err:
            verb = "create" if current is None else "update"
            await self.events.record(
                {**service, "apiVersion": "v1", "kind": "Service"}, "Warning",
                f"FailedTo{verb.capitalize()}Endpoint",
                f"Failed to {verb} endpoint {key}: {err}")
            raise
        if meta(written).get("resourceVersion") != meta(current).get("resourceVersion"):
            self._replaced[key] = meta(current).get("resourceVersion") or ""
        return None


CONTROLLER = EndpointsController
