"""What a pod asks for (`PodInfo`) and what a node has and has given away (`NodeInfo`).

Both are computed once from the API object and then read many times per scheduling
cycle, so quantities are parsed to integers up front (millicores, bytes, counts) and
affinity terms are compiled to selectors. A pod's request follows Kubernetes'
`resource.PodRequests`: the larger of the containers' sum and each init container's
request (sidecars, init containers with `restartPolicy: Always`, run alongside and add
up), plus `spec.overhead`. Scoring uses the "non-zero" request, in which a container
that asks for no CPU or memory counts as 100m and 200Mi, so empty pods still spread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from ..machinery.quantity import milli, to_int
from ..machinery.selectors import LabelSelector, label_selector_from_dict

CPU = "cpu"
MEMORY = "memory"
EPHEMERAL_STORAGE = "ephemeral-storage"
PODS = "pods"
_NOT_SCALAR = frozenset((CPU, MEMORY, EPHEMERAL_STORAGE, PODS, "storage"))
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024
POD_GROUP_LABEL = "scheduling.x-k8s.io/pod-group"

NamespaceLabels = Callable[[str], Mapping[str, str] | None]


@lru_cache(maxsize=8192)
def amount(resource: str, value: str | int | float) -> int:
    """A quantity as the scheduler counts it: millicores for CPU, whole units otherwise."""
    try:
        return milli(value) if resource == CPU else to_int(value)
    except ValueError:
        return 0


def selector(spec: Mapping[str, Any] | None) -> LabelSelector:
    """A compiled metav1.LabelSelector; one the API server let through but we cannot read
    selects nothing rather than everything."""
    try:
        return label_selector_from_dict(spec)
    except ValueError:
        return LabelSelector.nothing()


def _requests(container: Mapping[str, Any]) -> Mapping[str, Any]:
    return ((container.get("resources") or {}).get("requests")) or {}


def pod_requests(spec: Mapping[str, Any]) -> dict[str, int]:
    """resource.PodRequests: what the pod holds on its node, resource by resource."""
    total: dict[str, int] = {}
    for container in spec.get("containers") or ():
        for name, value in _requests(container).items():
            total[name] = total.get(name, 0) + amount(name, value)
    sidecars: dict[str, int] = {}
    init_peak: dict[str, int] = {}
    for container in spec.get("initContainers") or ():
        requests = {name: amount(name, value) for name, value in _requests(container).items()}
        if container.get("restartPolicy") == "Always":
            for name, value in requests.items():
                total[name] = total.get(name, 0) + value
                sidecars[name] = sidecars.get(name, 0) + value
            during = dict(sidecars)
        else:
            during = dict(sidecars)
            for name, value in requests.items():
                during[name] = during.get(name, 0) + value
        for name, value in during.items():
            init_peak[name] = max(init_peak.get(name, 0), value)
    for name, value in init_peak.items():
        total[name] = max(total.get(name, 0), value)
    for name, value in (spec.get("overhead") or {}).items():
        total[name] = total.get(name, 0) + amount(name, value)
    return total


def _non_zero(spec: Mapping[str, Any], requests: Mapping[str, int]) -> tuple[int, int]:
    cpu = memory = 0
    for container in spec.get("containers") or ():
        own = _requests(container)
        cpu += amount(CPU, own[CPU]) if CPU in own else DEFAULT_MILLI_CPU_REQUEST
        memory += amount(MEMORY, own[MEMORY]) if MEMORY in own else DEFAULT_MEMORY_REQUEST
    return max(cpu, requests.get(CPU, 0)), max(memory, requests.get(MEMORY, 0))


class AffinityTerm:
    """One compiled pod (anti-)affinity term: which pods, in which namespaces, where."""

    __slots__ = ("selector", "namespaces", "namespace_selector", "topology_key", "weight")

    def __init__(self, term: Mapping[str, Any], own_namespace: str, weight: int = 0) -> None:
        self.selector = selector(term.get("labelSelector"))
        self.namespaces = frozenset(term.get("namespaces") or ())
        ns_selector = term.get("namespaceSelector")
        self.namespace_selector = None if ns_selector is None else selector(ns_selector)
        if not self.namespaces and self.namespace_selector is None:
            self.namespaces = frozenset((own_namespace,))
        self.topology_key: str = term.get("topologyKey") or ""
        self.weight = weight

    def matches(self, pod: PodInfo, namespace_labels: NamespaceLabels) -> bool:
        """Whether `pod` is one of the pods this term is about."""
        if pod.namespace not in self.namespaces:
            if self.namespace_selector is None:
                return False
            if not self.namespace_selector.empty and not self.namespace_selector.matches(
                    namespace_labels(pod.namespace)):
                return False
        return self.selector.matches(pod.labels)


def _terms(affinity: Mapping[str, Any], kind: str, namespace: str
           ) -> tuple[list[AffinityTerm], list[AffinityTerm]]:
    spec = affinity.get(kind) or {}
    required = [AffinityTerm(t, namespace) for t in
                spec.get("requiredDuringSchedulingIgnoredDuringExecution") or ()]
    preferred = [AffinityTerm(w.get("podAffinityTerm") or {}, namespace, int(w.get("weight", 0)))
                 for w in spec.get("preferredDuringSchedulingIgnoredDuringExecution") or ()]
    return required, preferred


class PodInfo:
    """A pod with its scheduling inputs parsed once."""

    __slots__ = ("pod", "key", "uid", "namespace", "name", "labels", "priority", "node_name",
                 "requests", "cpu", "memory", "ephemeral_storage", "scalars", "non_zero_cpu",
                 "non_zero_memory", "tolerations", "affinity", "required_affinity",
                 "preferred_affinity", "required_anti_affinity", "preferred_anti_affinity",
                 "spread_constraints", "pod_group", "terminating")

    def __init__(self, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        self.pod = pod
        self.namespace: str = meta.get("namespace") or ""
        self.name: str = meta.get("name") or ""
        self.key = f"{self.namespace}/{self.name}"
        self.uid: str = meta.get("uid") or ""
        self.labels: dict[str, str] = meta.get("labels") or {}
        self.priority: int = int(spec.get("priority") or 0)
        self.node_name: str = spec.get("nodeName") or ""
        self.terminating = bool(meta.get("deletionTimestamp"))
        self.requests = pod_requests(spec)
        self.cpu = self.requests.get(CPU, 0)
        self.memory = self.requests.get(MEMORY, 0)
        self.ephemeral_storage = self.requests.get(EPHEMERAL_STORAGE, 0)
        self.scalars = {k: v for k, v in self.requests.items() if k not in _NOT_SCALAR and v}
        self.non_zero_cpu, self.non_zero_memory = _non_zero(spec, self.requests)
        self.tolerations: list[dict[str, Any]] = spec.get("tolerations") or []
        self.affinity: dict[str, Any] = spec.get("affinity") or {}
        self.required_affinity, self.preferred_affinity = _terms(
            self.affinity, "podAffinity", self.namespace)
        self.required_anti_affinity, self.preferred_anti_affinity = _terms(
            self.affinity, "podAntiAffinity", self.namespace)
        self.spread_constraints: list[dict[str, Any]] = spec.get("topologySpreadConstraints") or []
        self.pod_group: str = self.labels.get(POD_GROUP_LABEL, "")

    @property
    def nominated_node_name(self) -> str:
        return (self.pod.get("status") or {}).get("nominatedNodeName") or ""

    def with_node(self, node_name: str) -> PodInfo:
        """This pod as assumed onto `node_name` (the API object gets `spec.nodeName`)."""
        pod = {**self.pod, "spec": {**(self.pod.get("spec") or {}), "nodeName": node_name}}
        clone = object.__new__(PodInfo)
        for slot in PodInfo.__slots__:
            setattr(clone, slot, getattr(self, slot))
        clone.pod = pod
        clone.node_name = node_name
        return clone


class NodeInfo:
    """A node, its allocatable resources and the pods that hold some of them."""

    __slots__ = ("node", "name", "labels", "taints", "unschedulable", "allocatable_cpu",
                 "allocatable_memory", "allocatable_ephemeral_storage", "allowed_pods",
                 "allocatable_scalars", "requested_cpu", "requested_memory",
                 "requested_ephemeral_storage", "requested_scalars", "non_zero_cpu",
                 "non_zero_memory", "pods")

    def __init__(self, node: dict[str, Any] | None, name: str = "") -> None:
        self.pods: dict[str, PodInfo] = {}
        self.requested_cpu = self.requested_memory = self.requested_ephemeral_storage = 0
        self.requested_scalars: dict[str, int] = {}
        self.non_zero_cpu = self.non_zero_memory = 0
        self.name = name
        self.set_node(node)

    def set_node(self, node: dict[str, Any] | None) -> None:
        self.node = node
        if node is None:
            self.labels: dict[str, str] = {}
            self.taints: list[dict[str, Any]] = []
            self.unschedulable = False
            self.allocatable_cpu = self.allocatable_memory = 0
            self.allocatable_ephemeral_storage = self.allowed_pods = 0
            self.allocatable_scalars: dict[str, int] = {}
            return
        meta = node.get("metadata") or {}
        spec = node.get("spec") or {}
        status = node.get("status") or {}
        self.name = meta.get("name") or self.name
        self.labels = meta.get("labels") or {}
        self.taints = spec.get("taints") or []
        self.unschedulable = bool(spec.get("unschedulable"))
        allocatable = status.get("allocatable") or status.get("capacity") or {}
        parsed = {name: amount(name, value) for name, value in allocatable.items()}
        self.allocatable_cpu = parsed.get(CPU, 0)
        self.allocatable_memory = parsed.get(MEMORY, 0)
        self.allocatable_ephemeral_storage = parsed.get(EPHEMERAL_STORAGE, 0)
        self.allowed_pods = parsed.get(PODS, 0)
        self.allocatable_scalars = {k: v for k, v in parsed.items() if k not in _NOT_SCALAR}

    def add_pod(self, pod: PodInfo) -> None:
        self.pods[pod.key] = pod
        self._account(pod, 1)

    def remove_pod(self, key: str) -> PodInfo | None:
        pod = self.pods.pop(key, None)
        if pod is not None:
            self._account(pod, -1)
        return pod

    def _account(self, pod: PodInfo, sign: int) -> None:
        self.requested_cpu += sign * pod.cpu
        self.requested_memory += sign * pod.memory
        self.requested_ephemeral_storage += sign * pod.ephemeral_storage
        self.non_zero_cpu += sign * pod.non_zero_cpu
        self.non_zero_memory += sign * pod.non_zero_memory
        for name, value in pod.scalars.items():
            self.requested_scalars[name] = self.requested_scalars.get(name, 0) + sign * value

    def clone(self) -> NodeInfo:
        """A copy whose pods can be added and removed (preemption's what-if)."""
        copy = object.__new__(NodeInfo)
        for slot in NodeInfo.__slots__:
            setattr(copy, slot, getattr(self, slot))
        copy.pods = dict(self.pods)
        copy.requested_scalars = dict(self.requested_scalars)
        return copy
