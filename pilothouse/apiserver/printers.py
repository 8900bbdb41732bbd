"""Server-side printing: the `meta.k8s.io/v1 Table` that `kubectl get` renders.

kubectl asks for `application/json;as=Table;v=v1;g=meta.k8s.io` and prints whatever
columns the server sends, so the columns a user sees are decided here, not in kubectl.
This module owns those decisions, kind by kind, as kube-apiserver makes them in
`pkg/printers/internalversion/printers.go` (built-in kinds), `customresource/tableconvertor`
(custom resources with `additionalPrinterColumns`) and `rest.DefaultTableConvertor`
(kinds with no printer of their own):

- a `TableSpec` per kind: column definitions plus a row function turning one object into
  its cells (AGE and the like already formatted, as the real server sends them);
- `table_spec_for(resource)` picks the spec for a served resource;
- `build_table(...)` wraps rows, list metadata and the per-row object into the Table.

Row functions take `now` so ages are deterministic; they read plain JSON dicts and treat
absent fields as the defaulted values a real cluster would have stored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from pilothouse.apiserver.registry.conversion import as_v2
from pilothouse.apiserver.registry.resource import Resource
from pilothouse.machinery.jsonpath import JSONPath, compile_jsonpath
from pilothouse.machinery.meta import parse_time, rfc3339
from pilothouse.machinery.quantity import canonical
from pilothouse.machinery.selectors import selector_string_from_dict

Row = Callable[[dict, datetime], list]
INCLUDE_OBJECT_POLICIES = ("None", "Metadata", "Object")


@dataclass(frozen=True)
class TableSpec:
    """How one kind prints: `columnDefinitions` and the cells of one object's row."""

    columns: tuple[dict, ...]
    row: Row


# -- durations and timestamps ---------------------------------------------------------


def human_duration(delta: timedelta) -> str:
    """A duration to ~2-3 significant figures, as apimachinery's `duration.HumanDuration`."""
    seconds = int(delta.total_seconds())
    if seconds < -1:
        return "<invalid>"  # clock skew beyond tolerance
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    years, rest = divmod(days, 365)
    if hours < 24 * 365 * 8 and rest:
        return f"{years}y{rest}d"
    return f"{years}y"


def age(timestamp: str | None, now: datetime) -> str:
    """Time since an RFC 3339 timestamp ("5s", "3m20s", "2d3h"); "<unknown>" if unset."""
    moment = parse_time(timestamp)
    if moment is None:
        return "<invalid>" if timestamp else "<unknown>"
    return human_duration(now - moment)


def _created_at(obj: dict) -> str:
    """The CREATED AT cell of the default convertor: creationTimestamp in UTC, RFC 3339."""
    moment = parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    return rfc3339(moment) if moment else "0001-01-01T00:00:00Z"


def _finished_at(container_status: Mapping[str, Any]) -> str | None:
    """When the container's previous run terminated, if it did."""
    return ((container_status.get("lastState") or {}).get("terminated") or {}).get("finishedAt")


def _later(current: datetime | None, timestamp: str | None) -> datetime | None:
    moment = parse_time(timestamp)
    if moment is None or (current is not None and current >= moment):
        return current
    return moment


# -- shared cell formatting -------------------------------------------------------------


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def _name(obj: dict) -> str:
    return _meta(obj).get("name", "")


def _age(obj: dict, now: datetime) -> str:
    return age(_meta(obj).get("creationTimestamp"), now)


def _format_labels(labels: Mapping[str, str] | None) -> str:
    """`labels.FormatLabels`: sorted `k=v` pairs, or <none>."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def _selector_string(selector: Mapping[str, Any] | None) -> str:
    """A Deployment's SELECTOR: the selector's canonical string ("" selects everything)."""
    try:
        return selector_string_from_dict(selector)
    except ValueError:
        return "<invalid>"


def _format_selector(selector: Mapping[str, Any] | None) -> str:
    """`metav1.FormatLabelSelector`: the canonical string, or <none> when it is empty."""
    try:
        return selector_string_from_dict(selector) or "<none>"
    except ValueError:
        return "<error>"


def _containers(pod_spec: Mapping[str, Any] | None) -> tuple[str, str]:
    """CONTAINERS and IMAGES of a pod template: names and images, comma-joined."""
    containers = (pod_spec or {}).get("containers") or ()
    return (
        ",".join(c.get("name", "") for c in containers),
        ",".join(c.get("image", "") for c in containers),
    )


def _template_spec(obj: dict) -> dict:
    return ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}


def _condition_true(conditions: Iterable[Mapping[str, Any]] | None, kind: str) -> bool:
    """Whether the first condition of this type has status True."""
    for condition in conditions or ():
        if condition.get("type") == kind:
            return condition.get("status") == "True"
    return False


def _more(items: list[str], total: int, limit: int = 3) -> str:
    """Up to `limit` items, then " + N more..." as kubectl abbreviates long lists."""
    text = ",".join(items[:limit])
    return f"{text} + {total - limit} more..." if total > limit else text


_ACCESS_MODES = (
    ("ReadWriteOnce", "RWO"),
    ("ReadOnlyMany", "ROX"),
    ("ReadWriteMany", "RWX"),
    ("ReadWriteOncePod", "RWOP"),
)


def _access_modes(modes: Iterable[str] | None) -> str:
    present = set(modes or ())
    return ",".join(short for mode, short in _ACCESS_MODES if mode in present)


def _storage_class(obj: dict) -> str:
    """The beta annotation wins over spec.storageClassName, as for PVs and PVCs upstream."""
    annotated = (_meta(obj).get("annotations") or {}).get("volume.beta.kubernetes.io/storage-class")
    if annotated is not None:
        return annotated
    return (obj.get("spec") or {}).get("storageClassName") or ""


def _lb_ingress(status: Mapping[str, Any] | None) -> list[str]:
    """Load-balancer ingress points (IP, else hostname), each once."""
    points = ((status or {}).get("loadBalancer") or {}).get("ingress") or ()
    return list(
        dict.fromkeys(
            p.get("ip") or p.get("hostname") for p in points if p.get("ip") or p.get("hostname")
        )
    )


# -- column definitions ---------------------------------------------------------------


def _col(
    name: str, description: str, type_: str = "string", *, fmt: str = "", priority: int = 0
) -> dict:
    return {
        "name": name,
        "type": type_,
        "format": fmt,
        "description": description,
        "priority": priority,
    }


NAME = _col("Name", "Name of the object, unique within its namespace.", fmt="name")
AGE = _col("Age", "Time since the object was created (metadata.creationTimestamp).")
CREATED_AT = _col("Created At", "When the object was created (metadata.creationTimestamp).", "date")
CONTAINERS = _col("Containers", "Names of the containers in the pod template.", priority=1)
IMAGES = _col("Images", "Images of the containers in the pod template.", priority=1)
SELECTOR = _col("Selector", "Label selector for the pods this object manages.", priority=1)


def _spec(row: Row, *columns: dict) -> TableSpec:
    return TableSpec(columns=columns, row=row)


# -- core ------------------------------------------------------------------------------


def _pod_row(pod: dict, now: datetime) -> list:
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    conditions = status.get("conditions") or ()
    init_specs = spec.get("initContainers") or ()
    sidecars = {c.get("name") for c in init_specs if c.get("restartPolicy") == "Always"}
    total = len(spec.get("containers") or ()) + len(sidecars)
    ready = restarts = sidecar_restarts = 0
    last_restart: datetime | None = None
    sidecar_last_restart: datetime | None = None

    phase = status.get("phase", "")
    reason = status.get("reason") or phase
    for condition in conditions:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    initializing = False
    for index, cs in enumerate(status.get("initContainerStatuses") or ()):
        finished = _finished_at(cs)
        restarts += cs.get("restartCount", 0)
        last_restart = _later(last_restart, finished)
        is_sidecar = cs.get("name") in sidecars
        if is_sidecar:
            sidecar_restarts += cs.get("restartCount", 0)
            sidecar_last_restart = _later(sidecar_last_restart, finished)
        state = cs.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting") or {}
        if terminated is not None and terminated.get("exitCode", 0) == 0:
            continue
        if is_sidecar and cs.get("started"):
            ready += 1 if cs.get("ready") else 0
            continue
        if terminated is not None:
            if terminated.get("reason"):
                reason = "Init:" + terminated["reason"]
            elif terminated.get("signal"):
                reason = f"Init:Signal:{terminated['signal']}"
            else:
                reason = f"Init:ExitCode:{terminated.get('exitCode', 0)}"
        elif waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{index}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _condition_true(conditions, "Initialized"):
        restarts, last_restart = sidecar_restarts, sidecar_last_restart
        has_running = False
        for cs in reversed(status.get("containerStatuses") or ()):
            restarts += cs.get("restartCount", 0)
            last_restart = _later(last_restart, _finished_at(cs))
            state = cs.get("state") or {}
            terminated, waiting = state.get("terminated"), state.get("waiting") or {}
            if waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None:
                if terminated.get("reason"):
                    reason = terminated["reason"]
                elif terminated.get("signal"):
                    reason = f"Signal:{terminated['signal']}"
                else:
                    reason = f"ExitCode:{terminated.get('exitCode', 0)}"
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        # A container still running keeps a pod whose others completed out of "Completed".
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(conditions, "Ready") else "NotReady"

    if _meta(pod).get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"

    restarts_cell = str(restarts)
    if restarts and last_restart is not None:
        restarts_cell = f"{restarts} ({human_duration(now - last_restart)} ago)"

    pod_ips = status.get("podIPs") or ()
    pod_ip = (pod_ips[0].get("ip") if pod_ips else status.get("podIP")) or "<none>"
    gates = spec.get("readinessGates") or ()
    readiness_gates = "<none>"
    if gates:
        passed = sum(1 for g in gates if _condition_true(conditions, g.get("conditionType")))
        readiness_gates = f"{passed}/{len(gates)}"
    return [
        _name(pod),
        f"{ready}/{total}",
        reason,
        restarts_cell,
        _age(pod, now),
        pod_ip,
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        readiness_gates,
    ]


POD = _spec(
    _pod_row,
    NAME,
    _col("Ready", "Ready containers out of all containers (sidecars included)."),
    _col("Status", "Summary of the pod's phase and container states."),
    _col("Restarts", "Container restarts, and how long ago the latest was."),
    AGE,
    _col("IP", "The pod's first IP address.", priority=1),
    _col("Node", "The node the pod is bound to.", priority=1),
    _col("Nominated Node", "The node preemption nominated for this pod.", priority=1),
    _col("Readiness Gates", "Readiness gates whose condition is True, out of all.", priority=1),
)


def _namespace_row(ns: dict, now: datetime) -> list:
    return [_name(ns), (ns.get("status") or {}).get("phase", ""), _age(ns, now)]


NAMESPACE = _spec(_namespace_row, NAME, _col("Status", "The namespace phase."), AGE)


def _node_address(status: Mapping[str, Any], kind: str) -> str:
    for address in status.get("addresses") or ():
        if address.get("type") == kind:
            return address.get("address", "")
    return "<none>"


def _node_row(node: dict, now: datetime) -> list:
    status = node.get("status") or {}
    ready = next((c for c in status.get("conditions") or () if c.get("type") == "Ready"), None)
    states = [
        "Unknown" if ready is None else "Ready" if ready.get("status") == "True" else "NotReady"
    ]
    if (node.get("spec") or {}).get("unschedulable"):
        states.append("SchedulingDisabled")
    roles = set()
    for key, value in (_meta(node).get("labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/") and len(key) > len(
            "node-role.kubernetes.io/"
        ):
            roles.add(key.removeprefix("node-role.kubernetes.io/"))
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    info = status.get("nodeInfo") or {}
    return [
        _name(node),
        ",".join(states),
        ",".join(sorted(roles)) or "<none>",
        _age(node, now),
        info.get("kubeletVersion", ""),
        _node_address(status, "InternalIP"),
        _node_address(status, "ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


NODE = _spec(
    _node_row,
    NAME,
    _col("Status", "Readiness of the node, and whether scheduling is disabled."),
    _col("Roles", "Roles from node-role.kubernetes.io/<role> labels."),
    AGE,
    _col("Version", "Version of the node's kubelet."),
    _col("Internal-IP", "The node's InternalIP address.", priority=1),
    _col("External-IP", "The node's ExternalIP address.", priority=1),
    _col("OS-Image", "Operating system reported by the node.", priority=1),
    _col("Kernel-Version", "Kernel version reported by the node.", priority=1),
    _col("Container-Runtime", "Container runtime and version reported by the node.", priority=1),
)


def _service_external_ip(spec: Mapping[str, Any], status: Mapping[str, Any] | None) -> str:
    kind = spec.get("type") or "ClusterIP"
    external = list(spec.get("externalIPs") or ())
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if kind == "LoadBalancer":
        return ",".join(_lb_ingress(status) + external) or "<pending>"
    if kind == "ExternalName":
        return spec.get("externalName", "")
    return "<unknown>"


def _service_ports(ports: Iterable[Mapping[str, Any]]) -> str:
    pieces = []
    for port in ports:
        protocol = port.get("protocol") or "TCP"
        node_port = port.get("nodePort")
        if node_port:
            pieces.append(f"{port.get('port')}:{node_port}/{protocol}")
        else:
            pieces.append(f"{port.get('port')}/{protocol}")
    return ",".join(pieces) or "<none>"


def _service_row(svc: dict, now: datetime) -> list:
    spec = svc.get("spec") or {}
    cluster_ips = spec.get("clusterIPs") or ()
    return [
        _name(svc),
        spec.get("type") or "ClusterIP",
        (cluster_ips[0] if cluster_ips else spec.get("clusterIP")) or "<none>",
        _service_external_ip(spec, svc.get("status")),
        _service_ports(spec.get("ports") or ()),
        _age(svc, now),
        _format_labels(spec.get("selector")),
    ]


SERVICE = _spec(
    _service_row,
    NAME,
    _col("Type", "How the service is exposed."),
    _col("Cluster-IP", "The service's cluster IP."),
    _col("External-IP", "Addresses the service is reachable at from outside the cluster."),
    _col("Port(s)", "Service ports, with node ports where allocated."),
    AGE,
    _col("Selector", "Labels of the pods the service routes to.", priority=1),
)


def _join_host_port(host: str, port: Any) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _endpoints_row(ep: dict, now: datetime) -> list:
    subsets = ep.get("subsets") or ()
    if not subsets:
        return [_name(ep), "<none>", _age(ep, now)]
    shown: list[str] = []
    total = 0
    for subset in subsets:
        addresses = [a.get("ip", "") for a in subset.get("addresses") or ()]
        ports = subset.get("ports") or ()
        if not ports:  # a headless service may have no ports
            total += len(addresses)
            shown.extend(addresses[: max(0, 3 - len(shown))])
        for port in ports:
            total += len(addresses)
            shown.extend(
                _join_host_port(ip, port.get("port")) for ip in addresses[: max(0, 3 - len(shown))]
            )
    return [_name(ep), _more(shown, total), _age(ep, now)]


ENDPOINTS = _spec(_endpoints_row, NAME, _col("Endpoints", "Ready addresses and ports."), AGE)


def _config_map_row(cm: dict, now: datetime) -> list:
    return [_name(cm), len(cm.get("data") or {}) + len(cm.get("binaryData") or {}), _age(cm, now)]


CONFIG_MAP = _spec(_config_map_row, NAME, _col("Data", "Number of keys."), AGE)


def _secret_row(secret: dict, now: datetime) -> list:
    return [
        _name(secret),
        secret.get("type") or "Opaque",
        len(secret.get("data") or {}),
        _age(secret, now),
    ]


SECRET = _spec(
    _secret_row, NAME, _col("Type", "The secret type."), _col("Data", "Number of keys."), AGE
)


def _service_account_row(sa: dict, now: datetime) -> list:
    return [_name(sa), len(sa.get("secrets") or ()), _age(sa, now)]


SERVICE_ACCOUNT = _spec(
    _service_account_row, NAME, _col("Secrets", "Number of secrets listed."), AGE
)


def _event_row(
    ev: dict,
    now: datetime,
    *,
    regarding: Mapping[str, Any],
    message: str,
    first_seen: str | None,
    last_seen: str | None,
    count: int,
    component: str,
    host: str,
) -> list:
    first = age(first_seen, now) if first_seen else age(ev.get("eventTime"), now)
    last = age(last_seen, now) if last_seen else first
    series = ev.get("series")
    if series:
        last = age(series.get("lastObservedTime"), now)
        count = series.get("count", 0)
    elif not count:
        count = 1  # a singleton event of the new API carries no count
    kind, name = (regarding.get("kind") or "").lower(), regarding.get("name")
    return [
        last,
        ev.get("type", ""),
        ev.get("reason", ""),
        f"{kind}/{name}" if name else kind,
        regarding.get("fieldPath", ""),
        f"{component}, {host}" if host else component,
        (message or "").strip(),
        first,
        count,
        _name(ev),
    ]


def _core_event_row(ev: dict, now: datetime) -> list:
    source = ev.get("source") or {}
    return _event_row(
        ev,
        now,
        regarding=ev.get("involvedObject") or {},
        message=ev.get("message", ""),
        first_seen=ev.get("firstTimestamp"),
        last_seen=ev.get("lastTimestamp"),
        count=ev.get("count", 0),
        component=source.get("component") or ev.get("reportingComponent", ""),
        host=source.get("host") or ev.get("reportingInstance", ""),
    )


def _events_v1_row(ev: dict, now: datetime) -> list:
    source = ev.get("deprecatedSource") or {}
    return _event_row(
        ev,
        now,
        regarding=ev.get("regarding") or {},
        message=ev.get("note", ""),
        first_seen=ev.get("deprecatedFirstTimestamp"),
        last_seen=ev.get("deprecatedLastTimestamp"),
        count=ev.get("deprecatedCount", 0),
        component=source.get("component") or ev.get("reportingController", ""),
        host=source.get("host") or ev.get("reportingInstance", ""),
    )


_EVENT_COLUMNS = (
    _col("Last Seen", "Time since the event was last observed."),
    _col("Type", "Normal or Warning."),
    _col("Reason", "Short machine-readable reason."),
    _col("Object", "The object the event is about."),
    _col("Subobject", "Field path within the object.", priority=1),
    _col("Source", "Component (and host) that reported the event.", priority=1),
    _col("Message", "Human-readable description."),
    _col("First Seen", "Time since the event was first observed.", priority=1),
    _col("Count", "How many times the event occurred.", priority=1),
    _col("Name", "Name of the event object.", fmt="name", priority=1),
)
EVENT = _spec(_core_event_row, *_EVENT_COLUMNS)
EVENT_V1 = _spec(_events_v1_row, *_EVENT_COLUMNS)


def _pv_row(pv: dict, now: datetime) -> list:
    spec = pv.get("spec") or {}
    claim = spec.get("claimRef")
    phase = (pv.get("status") or {}).get("phase", "")
    return [
        _name(pv),
        str((spec.get("capacity") or {}).get("storage", "0")),
        _access_modes(spec.get("accessModes")),
        spec.get("persistentVolumeReclaimPolicy", ""),
        "Terminating" if _meta(pv).get("deletionTimestamp") else phase,
        f"{claim.get('namespace', '')}/{claim.get('name', '')}" if claim else "",
        _storage_class(pv),
        spec.get("volumeAttributesClassName") or "<unset>",
        (pv.get("status") or {}).get("reason", ""),
        _age(pv, now),
        spec.get("volumeMode") or "<unset>",
    ]


PERSISTENT_VOLUME = _spec(
    _pv_row,
    NAME,
    _col("Capacity", "Storage capacity."),
    _col("Access Modes", "How the volume can be mounted."),
    _col("Reclaim Policy", "What happens to the volume when its claim is released."),
    _col("Status", "The volume phase."),
    _col("Claim", "The claim bound to the volume."),
    _col("StorageClass", "Storage class of the volume."),
    _col("VolumeAttributesClass", "Volume attributes class of the volume."),
    _col("Reason", "Why the volume is in its phase."),
    AGE,
    _col("VolumeMode", "Filesystem or Block.", priority=1),
)


def _pvc_row(pvc: dict, now: datetime) -> list:
    spec = pvc.get("spec") or {}
    status = pvc.get("status") or {}
    volume = spec.get("volumeName", "")
    capacity = str((status.get("capacity") or {}).get("storage", "0")) if volume else ""
    return [
        _name(pvc),
        "Terminating" if _meta(pvc).get("deletionTimestamp") else status.get("phase", ""),
        volume,
        capacity,
        _access_modes(status.get("accessModes")) if volume else "",
        _storage_class(pvc),
        spec.get("volumeAttributesClassName") or "<unset>",
        _age(pvc, now),
        spec.get("volumeMode") or "<unset>",
    ]


PERSISTENT_VOLUME_CLAIM = _spec(
    _pvc_row,
    NAME,
    _col("Status", "The claim phase."),
    _col("Volume", "The volume bound to the claim."),
    _col("Capacity", "Capacity of the bound volume."),
    _col("Access Modes", "Access modes of the bound volume."),
    _col("StorageClass", "Storage class of the claim."),
    _col("VolumeAttributesClass", "Volume attributes class of the claim."),
    AGE,
    _col("VolumeMode", "Filesystem or Block.", priority=1),
)


def _resource_quota_row(quota: dict, now: datetime) -> list:
    status = quota.get("status") or {}
    hard, used = status.get("hard") or {}, status.get("used") or {}
    requests, limits = [], []
    for resource in sorted(hard):
        column = limits if resource.startswith("limits.") else requests
        column.append(f"{resource}: {used.get(resource, '0')}/{hard[resource]}")
    return [_name(quota), _age(quota, now), ", ".join(requests), ", ".join(limits)]


RESOURCE_QUOTA = _spec(
    _resource_quota_row,
    NAME,
    AGE,
    _col("Request", "Used/hard for each quota that is not a limits.* quota."),
    _col("Limit", "Used/hard for each limits.* quota."),
)


def _replication_controller_row(rc: dict, now: datetime) -> list:
    spec, status = rc.get("spec") or {}, rc.get("status") or {}
    names, images = _containers(_template_spec(rc))
    return [
        _name(rc),
        spec.get("replicas", 1),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        _age(rc, now),
        names,
        images,
        _format_labels(spec.get("selector")),
    ]


_REPLICA_COLUMNS = (
    NAME,
    _col("Desired", "Replicas wanted.", "integer"),
    _col("Current", "Replicas created.", "integer"),
    _col("Ready", "Replicas ready.", "integer"),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
)
REPLICATION_CONTROLLER = _spec(_replication_controller_row, *_REPLICA_COLUMNS)


def _pod_template_row(template: dict, now: datetime) -> list:
    inner = template.get("template") or {}
    names, images = _containers(inner.get("spec"))
    return [
        _name(template),
        names,
        images,
        _format_labels((inner.get("metadata") or {}).get("labels")),
    ]


POD_TEMPLATE = _spec(
    _pod_template_row,
    NAME,
    _col("Containers", "Names of the containers in the template."),
    _col("Images", "Images of the containers in the template."),
    _col("Pod Labels", "Labels of the pod template."),
)


# -- apps ------------------------------------------------------------------------------


def _deployment_row(deploy: dict, now: datetime) -> list:
    spec, status = deploy.get("spec") or {}, deploy.get("status") or {}
    names, images = _containers(_template_spec(deploy))
    return [
        _name(deploy),
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        _age(deploy, now),
        names,
        images,
        _selector_string(spec.get("selector")),
    ]


DEPLOYMENT = _spec(
    _deployment_row,
    NAME,
    _col("Ready", "Ready pods out of desired replicas."),
    _col("Up-to-date", "Pods running the latest template."),
    _col("Available", "Pods available to serve."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
)


def _replica_set_row(rs: dict, now: datetime) -> list:
    spec, status = rs.get("spec") or {}, rs.get("status") or {}
    names, images = _containers(_template_spec(rs))
    return [
        _name(rs),
        spec.get("replicas", 1),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        _age(rs, now),
        names,
        images,
        _format_selector(spec.get("selector")),
    ]


REPLICA_SET = _spec(_replica_set_row, *_REPLICA_COLUMNS)


def _stateful_set_row(sts: dict, now: datetime) -> list:
    spec, status = sts.get("spec") or {}, sts.get("status") or {}
    names, images = _containers(_template_spec(sts))
    return [
        _name(sts),
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        _age(sts, now),
        names,
        images,
    ]


STATEFUL_SET = _spec(
    _stateful_set_row,
    NAME,
    _col("Ready", "Ready pods out of desired replicas."),
    AGE,
    CONTAINERS,
    IMAGES,
)


def _daemon_set_row(ds: dict, now: datetime) -> list:
    status = ds.get("status") or {}
    pod_spec = _template_spec(ds)
    names, images = _containers(pod_spec)
    return [
        _name(ds),
        status.get("desiredNumberScheduled", 0),
        status.get("currentNumberScheduled", 0),
        status.get("numberReady", 0),
        status.get("updatedNumberScheduled", 0),
        status.get("numberAvailable", 0),
        _format_labels(pod_spec.get("nodeSelector")),
        _age(ds, now),
        names,
        images,
        _format_selector((ds.get("spec") or {}).get("selector")),
    ]


DAEMON_SET = _spec(
    _daemon_set_row,
    NAME,
    _col("Desired", "Nodes that should run the daemon pod.", "integer"),
    _col("Current", "Nodes running the daemon pod.", "integer"),
    _col("Ready", "Nodes with a ready daemon pod.", "integer"),
    _col("Up-to-date", "Nodes running the latest template.", "integer"),
    _col("Available", "Nodes with an available daemon pod.", "integer"),
    _col("Node Selector", "Node selector of the pod template."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
)


def _controller_revision_row(rev: dict, now: datetime) -> list:
    owner = next((o for o in _meta(rev).get("ownerReferences") or () if o.get("controller")), None)
    controller = "<none>"
    if owner is not None:
        api_version = owner.get("apiVersion", "")
        group = api_version.rpartition("/")[0]
        kind = owner.get("kind", "")
        controller = f"{(f'{kind}.{group}' if group else kind).lower()}/{owner.get('name', '')}"
    return [_name(rev), controller, rev.get("revision", 0), _age(rev, now)]


CONTROLLER_REVISION = _spec(
    _controller_revision_row,
    NAME,
    _col("Controller", "The object that owns this revision."),
    _col("Revision", "The revision number."),
    AGE,
)


# -- batch -----------------------------------------------------------------------------


def _job_row(job: dict, now: datetime) -> list:
    spec, status = job.get("spec") or {}, job.get("status") or {}
    succeeded = status.get("succeeded", 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif (spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    started, finished = (
        parse_time(status.get("startTime")),
        parse_time(status.get("completionTime")),
    )
    duration = ""
    if started is not None:
        duration = human_duration((finished or now) - started)
    conditions = status.get("conditions")
    if _condition_true(conditions, "Complete"):
        state = "Complete"
    elif _condition_true(conditions, "Failed"):
        state = "Failed"
    elif _meta(job).get("deletionTimestamp"):
        state = "Terminating"
    elif _condition_true(conditions, "Suspended"):
        state = "Suspended"
    elif _condition_true(conditions, "FailureTarget"):
        state = "FailureTarget"
    elif _condition_true(conditions, "SuccessCriteriaMet"):
        state = "SuccessCriteriaMet"
    else:
        state = "Running"
    names, images = _containers(_template_spec(job))
    return [
        _name(job),
        state,
        completions,
        duration,
        _age(job, now),
        names,
        images,
        _format_selector(spec.get("selector")),
    ]


JOB = _spec(
    _job_row,
    NAME,
    _col("Status", "Complete, Failed, Suspended, Terminating or Running."),
    _col("Completions", "Succeeded pods out of the completions wanted."),
    _col("Duration", "Time the job ran, or has been running."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
)


def _cron_job_row(cj: dict, now: datetime) -> list:
    spec, status = cj.get("spec") or {}, cj.get("status") or {}
    job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    names, images = _containers((job_spec.get("template") or {}).get("spec"))
    last = status.get("lastScheduleTime")
    return [
        _name(cj),
        spec.get("schedule", ""),
        spec.get("timeZone") or "<none>",
        "True" if spec.get("suspend") else "False",
        len(status.get("active") or ()),
        age(last, now) if last else "<none>",
        _age(cj, now),
        names,
        images,
        _format_selector(job_spec.get("selector")),
    ]


CRON_JOB = _spec(
    _cron_job_row,
    NAME,
    _col("Schedule", "Cron schedule of the job."),
    _col("Timezone", "Time zone the schedule is read in."),
    _col("Suspend", "Whether new runs are suspended.", "boolean"),
    _col("Active", "Jobs running now.", "integer"),
    _col("Last Schedule", "Time since a job was last scheduled."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
)


# -- autoscaling -----------------------------------------------------------------------


def _quantity_cell(value: Any) -> str:
    """A quantity as Quantity.String() prints it ("0" when unset, the zero Quantity)."""
    if value is None:
        return "0"
    try:
        return canonical(value)
    except ValueError:
        return str(value)


def _hpa_metric(spec: Mapping[str, Any], status: Mapping[str, Any] | None) -> str:
    """One metric of the TARGETS cell: `current/target`, `<unknown>` until measured."""
    kind = spec.get("type")
    status = status or {}
    if kind in ("External", "Object"):
        field = kind.lower()
        target = (spec.get(field) or {}).get("target") or {}
        current = (status.get(field) or {}).get("current") if status.get(field) else None
        if target.get("averageValue") is not None:
            shown = "<unknown>"
            if current is not None and current.get("averageValue") is not None:
                shown = _quantity_cell(current["averageValue"])
            return f"{shown}/{_quantity_cell(target['averageValue'])} (avg)"
        shown = _quantity_cell(current.get("value")) if current is not None else "<unknown>"
        return f"{shown}/{_quantity_cell(target.get('value'))}"
    if kind == "Pods":
        target = (spec.get("pods") or {}).get("target") or {}
        current = (status.get("pods") or {}).get("current") if status.get("pods") else None
        shown = _quantity_cell(current.get("averageValue")) if current is not None else \
            "<unknown>"
        return f"{shown}/{_quantity_cell(target.get('averageValue'))}"
    if kind in ("Resource", "ContainerResource"):
        field = "resource" if kind == "Resource" else "containerResource"
        source = spec.get(field) or {}
        target = source.get("target") or {}
        measured = status.get(field)
        current = (measured or {}).get("current") or {}
        name = source.get("name", "")
        if target.get("averageValue") is not None:
            shown = _quantity_cell(current.get("averageValue")) if measured else "<unknown>"
            return f"{name}: {shown}/{_quantity_cell(target['averageValue'])}"
        shown = "<unknown>"
        if measured and current.get("averageUtilization") is not None:
            shown = f"{current['averageUtilization']}%"
        goal = "<auto>"
        if target.get("averageUtilization") is not None:
            goal = f"{target['averageUtilization']}%"
        return f"{name}: {shown}/{goal}"
    return "<unknown type>"


def _hpa_metrics(specs: list[Mapping[str, Any]], statuses: list[Mapping[str, Any]]) -> str:
    """formatHPAMetrics: the first two metrics, then `+ N more...`."""
    if not specs:
        return "<none>"
    cells = [_hpa_metric(spec, statuses[i] if i < len(statuses) else None)
             for i, spec in enumerate(specs)]
    if len(cells) > 2:
        return f"{', '.join(cells[:2])} + {len(cells) - 2} more..."
    return ", ".join(cells)


def _hpa_row(hpa: dict, now: datetime) -> list:
    hpa = as_v2(hpa)  # an autoscaling/v1 object prints as its stored v2 form does
    spec, status = hpa.get("spec") or {}, hpa.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    min_pods = spec.get("minReplicas")
    return [
        _name(hpa),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        _hpa_metrics(spec.get("metrics") or [], status.get("currentMetrics") or []),
        "<unset>" if min_pods is None else str(min_pods),
        spec.get("maxReplicas", 0),
        status.get("currentReplicas", 0),
        _age(hpa, now),
    ]


HORIZONTAL_POD_AUTOSCALER = _spec(
    _hpa_row,
    NAME,
    _col("Reference", "The scale target the autoscaler scales (kind/name)."),
    _col("Targets", "Current/target value of each metric (the first two)."),
    _col("MinPods", "The lower limit of replicas the autoscaler may set."),
    _col("MaxPods", "The upper limit of replicas the autoscaler may set.", "integer"),
    _col("Replicas", "Current number of replicas of the scale target.", "string"),
    AGE,
)


# -- other groups ----------------------------------------------------------------------


def _lease_row(lease: dict, now: datetime) -> list:
    return [_name(lease), (lease.get("spec") or {}).get("holderIdentity") or "", _age(lease, now)]


LEASE = _spec(_lease_row, NAME, _col("Holder", "Identity holding the lease."), AGE)


def _endpoint_slice_row(eps: dict, now: datetime) -> list:
    ports = eps.get("ports") or ()
    port_items = [
        str(p["port"]) if p.get("port") is not None else p.get("name") or "*" for p in ports[:3]
    ]
    addresses = [a for e in eps.get("endpoints") or () for a in e.get("addresses") or ()]
    return [
        _name(eps),
        eps.get("addressType", ""),
        _more(port_items, len(ports)) or "<unset>",
        _more(addresses, len(addresses)) or "<unset>",
        _age(eps, now),
    ]


ENDPOINT_SLICE = _spec(
    _endpoint_slice_row,
    NAME,
    _col("AddressType", "IPv4, IPv6 or FQDN."),
    _col("Ports", "Ports of the endpoints."),
    _col("Endpoints", "Addresses of the endpoints."),
    AGE,
)


def _priority_class_row(pc: dict, now: datetime) -> list:
    return [
        _name(pc),
        pc.get("value", 0),
        bool(pc.get("globalDefault")),
        _age(pc, now),
        pc.get("preemptionPolicy", ""),
    ]


PRIORITY_CLASS = _spec(
    _priority_class_row,
    NAME,
    _col("Value", "Priority of pods using this class.", "integer"),
    _col("Global-Default", "Whether pods without a class get this one.", "boolean"),
    AGE,
    _col("PreemptionPolicy", "Whether pods of this class preempt lower ones."),
)


def _runtime_class_row(rc: dict, now: datetime) -> list:
    return [_name(rc), rc.get("handler", ""), _age(rc, now)]


RUNTIME_CLASS = _spec(_runtime_class_row, NAME, _col("Handler", "The runtime handler."), AGE)


def _storage_class_row(sc: dict, now: datetime) -> list:
    annotations = _meta(sc).get("annotations") or {}
    default = "true" in (
        annotations.get("storageclass.kubernetes.io/is-default-class"),
        annotations.get("storageclass.beta.kubernetes.io/is-default-class"),
    )
    return [
        _name(sc) + (" (default)" if default else ""),
        sc.get("provisioner", ""),
        sc.get("reclaimPolicy") or "Delete",
        sc.get("volumeBindingMode") or "Immediate",
        bool(sc.get("allowVolumeExpansion")),
        _age(sc, now),
    ]


STORAGE_CLASS = _spec(
    _storage_class_row,
    NAME,
    _col("Provisioner", "The volume provisioner."),
    _col("ReclaimPolicy", "Reclaim policy of provisioned volumes."),
    _col("VolumeBindingMode", "When volumes are bound and provisioned."),
    _col("AllowVolumeExpansion", "Whether claims may grow."),
    AGE,
)


def _role_binding_row(binding: dict, now: datetime) -> list:
    ref = binding.get("roleRef") or {}
    users, groups, accounts = [], [], []
    for subject in binding.get("subjects") or ():
        kind = subject.get("kind")
        if kind == "User":
            users.append(subject.get("name", ""))
        elif kind == "Group":
            groups.append(subject.get("name", ""))
        elif kind == "ServiceAccount":
            accounts.append(f"{subject.get('namespace', '')}:{subject.get('name', '')}")
    return [
        _name(binding),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        _age(binding, now),
        ", ".join(users),
        ", ".join(groups),
        ", ".join(accounts),
    ]


ROLE_BINDING = _spec(
    _role_binding_row,
    NAME,
    _col("Role", "The role granted, as Kind/name."),
    AGE,
    _col("Users", "Users bound.", priority=1),
    _col("Groups", "Groups bound.", priority=1),
    _col("ServiceAccounts", "Service accounts bound, as namespace:name.", priority=1),
)


def _pdb_row(pdb: dict, now: datetime) -> list:
    spec = pdb.get("spec") or {}
    min_available, max_unavailable = spec.get("minAvailable"), spec.get("maxUnavailable")
    return [
        _name(pdb),
        "N/A" if min_available is None else str(min_available),
        "N/A" if max_unavailable is None else str(max_unavailable),
        (pdb.get("status") or {}).get("disruptionsAllowed", 0),
        _age(pdb, now),
    ]


POD_DISRUPTION_BUDGET = _spec(
    _pdb_row,
    NAME,
    _col("Min Available", "Pods that must stay available."),
    _col("Max Unavailable", "Pods that may be unavailable."),
    _col("Allowed Disruptions", "Pods that may be disrupted now.", "integer"),
    AGE,
)


def _ingress_hosts(rules: list[Mapping[str, Any]]) -> str:
    """Up to three rule hosts ("*" when none name one), then how many more rules there are."""
    hosts: list[str] = []
    more = False
    for rule in rules:
        more = more or len(hosts) == 3
        if not more and rule.get("host"):
            hosts.append(rule["host"])
    if not hosts:
        return "*"
    return f"{','.join(hosts)} + {len(rules) - 3} more..." if more else ",".join(hosts)


def _ingress_row(ing: dict, now: datetime) -> list:
    spec = ing.get("spec") or {}
    return [
        _name(ing),
        spec.get("ingressClassName") or "<none>",
        _ingress_hosts(spec.get("rules") or ()),
        ",".join(_lb_ingress(ing.get("status"))),
        "80, 443" if spec.get("tls") else "80",
        _age(ing, now),
    ]


INGRESS = _spec(
    _ingress_row,
    NAME,
    _col("Class", "The ingress class."),
    _col("Hosts", "Hosts the rules match."),
    _col("Address", "Load-balancer addresses."),
    _col("Ports", "Ports served."),
    AGE,
)


def _ingress_class_row(ic: dict, now: datetime) -> list:
    spec = ic.get("spec") or {}
    params = spec.get("parameters")
    parameters = "<none>"
    if params:
        kind = params.get("kind", "")
        if params.get("apiGroup") is not None:
            kind = f"{kind}.{params['apiGroup']}"
        parameters = f"{kind}/{params.get('name', '')}"
    return [_name(ic), spec.get("controller", ""), parameters, _age(ic, now)]


INGRESS_CLASS = _spec(
    _ingress_class_row,
    NAME,
    _col("Controller", "Controller that implements the class."),
    _col("Parameters", "Object holding the class parameters."),
    AGE,
)


def _network_policy_row(np: dict, now: datetime) -> list:
    return [_name(np), _format_selector((np.get("spec") or {}).get("podSelector")), _age(np, now)]


NETWORK_POLICY = _spec(
    _network_policy_row, NAME, _col("Pod-Selector", "Pods the policy applies to."), AGE
)


def _webhook_configuration_row(config: dict, now: datetime) -> list:
    return [_name(config), len(config.get("webhooks") or ()), _age(config, now)]


WEBHOOK_CONFIGURATION = _spec(
    _webhook_configuration_row, NAME, _col("Webhooks", "Number of webhooks.", "integer"), AGE
)


def _default_row(obj: dict, now: datetime) -> list:
    return [_name(obj), _created_at(obj)]


#: `rest.DefaultTableConvertor`: what kube-apiserver serves for kinds without a printer
#: (Role, ClusterRole, LimitRange, CustomResourceDefinition).
DEFAULT = _spec(_default_row, NAME, CREATED_AT)


def _name_age_row(obj: dict, now: datetime) -> list:
    return [_name(obj), _age(obj, now)]


NAME_AGE = _spec(_name_age_row, NAME, AGE)

BUILTIN: Mapping[tuple[str, str], TableSpec] = {
    ("", "Pod"): POD,
    ("", "PodTemplate"): POD_TEMPLATE,
    ("", "Namespace"): NAMESPACE,
    ("", "Node"): NODE,
    ("", "Service"): SERVICE,
    ("", "Endpoints"): ENDPOINTS,
    ("", "ConfigMap"): CONFIG_MAP,
    ("", "Secret"): SECRET,
    ("", "ServiceAccount"): SERVICE_ACCOUNT,
    ("", "Event"): EVENT,
    ("", "PersistentVolume"): PERSISTENT_VOLUME,
    ("", "PersistentVolumeClaim"): PERSISTENT_VOLUME_CLAIM,
    ("", "ResourceQuota"): RESOURCE_QUOTA,
    ("", "LimitRange"): DEFAULT,
    ("", "ReplicationController"): REPLICATION_CONTROLLER,
    ("apps", "Deployment"): DEPLOYMENT,
    ("apps", "ReplicaSet"): REPLICA_SET,
    ("apps", "StatefulSet"): STATEFUL_SET,
    ("apps", "DaemonSet"): DAEMON_SET,
    ("apps", "ControllerRevision"): CONTROLLER_REVISION,
    ("batch", "Job"): JOB,
    ("batch", "CronJob"): CRON_JOB,
    ("autoscaling", "HorizontalPodAutoscaler"): HORIZONTAL_POD_AUTOSCALER,
    ("coordination.k8s.io", "Lease"): LEASE,
    ("discovery.k8s.io", "EndpointSlice"): ENDPOINT_SLICE,
    ("events.k8s.io", "Event"): EVENT_V1,
    ("scheduling.k8s.io", "PriorityClass"): PRIORITY_CLASS,
    ("node.k8s.io", "RuntimeClass"): RUNTIME_CLASS,
    ("storage.k8s.io", "StorageClass"): STORAGE_CLASS,
    ("rbac.authorization.k8s.io", "Role"): DEFAULT,
    ("rbac.authorization.k8s.io", "ClusterRole"): DEFAULT,
    ("rbac.authorization.k8s.io", "RoleBinding"): ROLE_BINDING,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): ROLE_BINDING,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): DEFAULT,
    ("policy", "PodDisruptionBudget"): POD_DISRUPTION_BUDGET,
    ("networking.k8s.io", "Ingress"): INGRESS,
    ("networking.k8s.io", "IngressClass"): INGRESS_CLASS,
    ("networking.k8s.io", "NetworkPolicy"): NETWORK_POLICY,
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"): WEBHOOK_CONFIGURATION,
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"): WEBHOOK_CONFIGURATION,
}


# -- custom resources ------------------------------------------------------------------

#: What a CRD version without additionalPrinterColumns is served with.
_DEFAULT_PRINTER_COLUMNS = (
    {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
        "description": AGE["description"],
    },
)


@lru_cache(maxsize=1024)
def _compiled(expr: str) -> JSONPath:
    return compile_jsonpath(expr)


def _go_float(value: float) -> str:
    """A float as Go's `%v` prints it: shortest digits, exponent form below 1e-4 or from 1e6."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    number = Decimal(repr(value)).normalize()
    exponent = number.adjusted()
    if -4 <= exponent < 6:
        return format(number, "f")
    sign, digits, _ = number.as_tuple()
    mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"


def _string_cell(value: Any) -> str:
    """A value in a string column, as client-go jsonpath prints it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, dict | list):
        text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return str(value)


def _custom_cell(kind: str, value: Any, now: datetime) -> Any:
    """A found value as the CRD tableconvertor types it; None (kubectl: <none>) if mistyped."""
    if value is None:
        return None
    if kind == "string":
        return _string_cell(value)
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return int(value)
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    if kind == "date" and isinstance(value, str):
        return age(value, now)
    return None


def _custom_spec(printer_columns: Iterable[Mapping[str, Any]]) -> TableSpec:
    """NAME plus the CRD's printer columns (or AGE when it declares none).

    As kube-apiserver, a column whose jsonPath does not parse ends the list: the columns
    before it are still served.
    """
    columns = [NAME]
    paths: list[tuple[JSONPath, str]] = []
    for column in printer_columns:
        expr = column.get("jsonPath", "")
        try:
            path = _compiled(expr)
        except ValueError:
            break
        columns.append(
            _col(
                column.get("name", ""),
                column.get("description") or f"Custom resource column (JSONPath {expr}).",
                column.get("type", "string"),
                fmt=column.get("format", ""),
                priority=column.get("priority", 0),
            )
        )
        paths.append((path, column.get("type", "string")))

    def row(obj: dict, now: datetime) -> list:
        cells: list[Any] = [_name(obj)]
        for path, kind in paths:
            found = path.find(obj)
            cells.append(_custom_cell(kind, found[0], now) if found else None)
        return cells

    return TableSpec(columns=tuple(columns), row=row)


# -- public entry points ---------------------------------------------------------------


def table_spec_for(resource: Resource) -> TableSpec:
    """The printer for a served `Resource`: built-in by (group, kind), custom from its CRD."""
    if resource.custom:
        return _custom_spec(resource.printer_columns or _DEFAULT_PRINTER_COLUMNS)
    return BUILTIN.get((resource.group, resource.kind), NAME_AGE)


def build_table(
    spec: TableSpec,
    objects: list[dict],
    *,
    now: datetime,
    include_object: str = "Metadata",
    resource_version: str = "",
    continue_token: str = "",
    remaining: int | None = None,
) -> dict:
    """A `meta.k8s.io/v1 Table` of `objects`, one row each.

    `include_object` is the request's `includeObject`: "Metadata" (the default) embeds
    PartialObjectMetadata, "Object" the whole object, "None" null. Anything else raises
    ValueError, which the caller reports as a 400. Empty list-metadata fields are omitted,
    as Go's `omitempty` does.
    """
    if include_object not in INCLUDE_OBJECT_POLICIES:
        raise ValueError(
            f'includeObject: Unsupported value: "{include_object}": supported values: '
            '"Metadata", "None", "Object"'
        )
    rows = []
    for obj in objects:
        if include_object == "Metadata":
            embedded: dict | None = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata") or {},
            }
        else:
            embedded = obj if include_object == "Object" else None
        rows.append({"cells": spec.row(obj, now), "object": embedded})
    metadata: dict[str, Any] = {}
    if resource_version:
        metadata["resourceVersion"] = resource_version
    if continue_token:
        metadata["continue"] = continue_token
    if remaining is not None:
        metadata["remainingItemCount"] = remaining
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": list(spec.columns),
        "rows": rows,
    }
