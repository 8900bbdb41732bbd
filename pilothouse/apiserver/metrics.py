"""The resource metrics API, `metrics.k8s.io/v1beta1`, served inside the API server.

On a real cluster metrics-server scrapes every kubelet and serves NodeMetrics and PodMetrics
through API aggregation; `kubectl top` (and the HorizontalPodAutoscaler) read them. Here the
API server serves the group itself: the two resources sit in the ResourceTable unstored, so
discovery lists them and RBAC authorizes them like any resource (nodes and pods in group
metrics.k8s.io), and this module answers get and list.

The numbers come from each node's kubelet Summary API (`/stats/summary`): CPU
`usageNanoCores` and memory `workingSetBytes` of the node and of every container, as
metrics-server reports them (CPU in nanocores, `"137435569n"`; memory in bytes, `"1489636Ki"`).
All kubelets are asked at once with a short timeout, and the result is kept for a few
seconds, so a burst of `kubectl top` costs one round. Nodes without a kubelet (hollow
nodes) and kubelets that do not answer in time are left out, as metrics-server leaves out
nodes it cannot scrape; a pod appears once its kubelet reports a container of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from ..machinery import errors
from ..machinery.meta import parse_time, rfc3339
from ..machinery.quantity import BINARY_SI, DECIMAL_SI, format_quantity
from ..machinery.selectors import parse_field_selector, parse_label_selector
from .http import Handler, Request, Response
from .nodeproxy import KubeletClient, KubeletEndpoint, kubelet_endpoint
from .registry import Resource, ResourceTable
from .registry.generic import GenericRegistry
from .requestinfo import RequestInfo

log = logging.getLogger(__name__)

GROUP_VERSION = "metrics.k8s.io/v1beta1"
#: How long one round of summaries answers requests.
CACHE_SECONDS = 5.0
#: How long a kubelet may take to answer /stats/summary before its node is left out.
SCRAPE_TIMEOUT = 3.0
#: The interval a kubelet's usageNanoCores averages over (its housekeeping period).
WINDOW = "10s"


@dataclass(frozen=True)
class Usage:
    """One measurement: when, CPU in nanocores, memory working set in bytes."""

    timestamp: str
    cpu_nanocores: int
    memory_bytes: int

    def quantities(self) -> dict[str, str]:
        return {"cpu": format_quantity(Decimal(self.cpu_nanocores).scaleb(-9), DECIMAL_SI),
                "memory": format_quantity(Decimal(self.memory_bytes), BINARY_SI)}


@dataclass(frozen=True)
class PodUsage:
    timestamp: str
    containers: tuple[tuple[str, Usage], ...]


@dataclass(frozen=True)
class Scrape:
    """What one round of summaries found: node name -> usage, (namespace, pod) -> usage."""

    nodes: dict[str, Usage] = field(default_factory=dict)
    pods: dict[tuple[str, str], PodUsage] = field(default_factory=dict)


def _usage(stats: Mapping[str, Any]) -> Usage | None:
    cpu = stats.get("cpu") or {}
    memory = stats.get("memory") or {}
    cores, working_set = cpu.get("usageNanoCores"), memory.get("workingSetBytes")
    if not isinstance(cores, int) or not isinstance(working_set, int):
        return None
    when = parse_time(cpu.get("time") or memory.get("time"))
    return Usage(rfc3339(when), cores, working_set)


def parse_summary(
    summary: Mapping[str, Any],
) -> tuple[Usage | None, dict[tuple[str, str], PodUsage]]:
    """The node's usage and each pod's container usages from a kubelet Summary.

    Containers without both CPU and memory figures are left out, and so is a pod left
    with no container.
    """
    node = _usage(summary.get("node") or {})
    pods: dict[tuple[str, str], PodUsage] = {}
    for pod in summary.get("pods") or ():
        ref = pod.get("podRef") or {}
        containers = []
        for container in pod.get("containers") or ():
            usage = _usage(container)
            if usage is not None and container.get("name"):
                containers.append((str(container["name"]), usage))
        if containers and ref.get("name") and ref.get("namespace"):
            latest = max(u.timestamp for _, u in containers)
            pods[(ref["namespace"], ref["name"])] = PodUsage(latest, tuple(containers))
    return node, pods


def _metadata(obj: Mapping[str, Any], created: str) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    out: dict[str, Any] = {"name": meta.get("name", "")}
    if meta.get("namespace"):
        out["namespace"] = meta["namespace"]
    out["creationTimestamp"] = created
    if meta.get("labels"):
        out["labels"] = dict(meta["labels"])
    return out


def node_metrics(node: Mapping[str, Any], usage: Usage, created: str) -> dict[str, Any]:
    return {"kind": "NodeMetrics", "apiVersion": GROUP_VERSION,
            "metadata": _metadata(node, created), "timestamp": usage.timestamp,
            "window": WINDOW, "usage": usage.quantities()}


def pod_metrics(pod: Mapping[str, Any], usage: PodUsage, created: str) -> dict[str, Any]:
    return {"kind": "PodMetrics", "apiVersion": GROUP_VERSION,
            "metadata": _metadata(pod, created), "timestamp": usage.timestamp,
            "window": WINDOW,
            "containers": [{"name": name, "usage": u.quantities()}
                           for name, u in usage.containers]}


class ResourceMetrics:
    """Answers get and list of metrics.k8s.io nodes and pods from the kubelets' summaries."""

    def __init__(self, *, table: ResourceTable, registry: GenericRegistry,
                 kubelets: KubeletClient, cache_seconds: float = CACHE_SECONDS,
                 scrape_timeout: float = SCRAPE_TIMEOUT) -> None:
        self.registry = registry
        self.kubelets = kubelets
        self.cache_seconds = cache_seconds
        self.scrape_timeout = scrape_timeout
        nodes, pods = table.lookup("", "v1", "nodes"), table.lookup("", "v1", "pods")
        assert nodes is not None and pods is not None
        self._nodes, self._pods = nodes, pods
        self._lock = asyncio.Lock()
        self._last: tuple[float, Scrape] | None = None

    def handlers(self) -> dict[tuple[str, str], Handler]:
        return {("nodes.metrics.k8s.io", ""): self.serve, ("pods.metrics.k8s.io", ""): self.serve}

    async def serve(self, request: Request, info: RequestInfo, res: Resource) -> Response:
        if request.method not in ("GET", "HEAD") or info.verb not in ("get", "list"):
            raise errors.method_not_allowed()
        source = self._nodes if res.plural == "nodes" else self._pods
        kind = "nodemetrics" if res.plural == "nodes" else "podmetrics"
        namespace = (info.namespace or None) if res.namespaced else None
        created = rfc3339()
        if info.verb == "get":
            if res.namespaced and not namespace:
                raise errors.path_not_found(info.path)
            try:
                obj = await self.registry.get(source, namespace, info.name)
            except errors.APIError as err:
                if err.code != 404:
                    raise
                raise errors.not_found(kind, info.name, "metrics.k8s.io") from None
            item = self._metrics(res, obj, await self.scrape(), created)
            if item is None:
                raise errors.not_found(kind, info.name, "metrics.k8s.io")
            return Response(200, orjson.dumps(item))
        label_text, field_text = request.param("labelSelector"), request.param("fieldSelector")
        labels = parse_label_selector(label_text) if label_text else None
        fields = parse_field_selector(field_text) if field_text else None
        if fields is not None:
            self.registry.check_field_selector(source, fields)
        listed = await self.registry.list(source, namespace, labels=labels, fields=fields)
        scrape = await self.scrape()
        items = [m for m in (self._metrics(res, o, scrape, created) for o in listed.items) if m]
        return Response(200, orjson.dumps({"kind": f"{res.kind}List", "apiVersion": GROUP_VERSION,
                                           "metadata": {}, "items": items}))

    @staticmethod
    def _metrics(res: Resource, obj: Mapping[str, Any], scrape: Scrape,
                 created: str) -> dict[str, Any] | None:
        meta = obj.get("metadata") or {}
        if res.plural == "nodes":
            usage = scrape.nodes.get(meta.get("name", ""))
            return node_metrics(obj, usage, created) if usage else None
        pod_usage = scrape.pods.get((meta.get("namespace", ""), meta.get("name", "")))
        return pod_metrics(obj, pod_usage, created) if pod_usage else None

    async def scrape(self) -> Scrape:
        """The latest round of summaries, fetched again once older than `cache_seconds`."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            if self._last is not None and loop.time() - self._last[0] < self.cache_seconds:
                return self._last[1]
            listed = await self.registry.list(self._nodes, None)
            endpoints = []
            for node in listed.items:
                try:
                    endpoints.append(kubelet_endpoint(node))
                except errors.APIError:
                    continue  # hollow, or no kubelet yet: nothing to scrape
            summaries = await asyncio.gather(*(self._summary(e) for e in endpoints))
            scrape = Scrape()
            for endpoint, summary in zip(endpoints, summaries, strict=True):
                if summary is None:
                    continue
                node, pods = parse_summary(summary)
                if node is not None:
                    scrape.nodes[endpoint.node] = node
                scrape.pods.update(pods)
            self._last = (loop.time(), scrape)
            return scrape

    async def _summary(self, endpoint: KubeletEndpoint) -> Mapping[str, Any] | None:
        try:
            summary = await self.kubelets.get_json(
                endpoint, "/stats/summary", timeout=self.scrape_timeout)
        except (errors.APIError, TimeoutError, ValueError) as exc:
            log.info("metrics: the kubelet of node %s gave no summary: %s", endpoint.node,
                     getattr(exc, "message", None) or str(exc) or type(exc).__name__)
            return None
        return summary if isinstance(summary, dict) else None


__all__ = ["ResourceMetrics", "Scrape", "Usage", "node_metrics", "parse_summary", "pod_metrics"]
