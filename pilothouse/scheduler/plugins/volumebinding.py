"""VolumeBinding: the pod's PersistentVolumeClaims decide which nodes can take it.

As kube-scheduler's `volumebinding` plugin, without the binding itself: the
persistentvolume controller binds claims and provisions volumes once a pod that uses the
claim has a node, so this plugin only keeps the pod off nodes its volumes cannot reach.

- **PreFilter** reads the pod's `persistentVolumeClaim` volumes (a pod with none skips
  the plugin). A claim that is missing, Lost or being deleted rejects the pod on every
  node; so does an unbound claim that binds at once (its class's volumeBindingMode is
  Immediate, or it names no class or one that does not exist, or it names a volume not
  yet bound to it): the controller binds those, and the claim's update brings the pod back.
- **Filter**: a bound claim's volume must admit the node through its
  `spec.nodeAffinity.required`. An unbound claim whose class waits for its first consumer
  fits any node its class's `allowedTopologies` admit -- only the node it names in
  `volume.kubernetes.io/selected-node`, once it names one -- and the provisioner follows
  the pod there.

- **PreBind** writes `volume.kubernetes.io/selected-node` on each unbound claim that
  waits for its first consumer, as upstream does, so the provisioner knows where the
  volume must be before the pod is even bound.

Rejections are UnschedulableAndUnresolvable, as upstream: evicting pods frees no volume.
Upstream's Reserve (assume the binding) and the wait in PreBind for the controller are
left to the controller, and so is matching an unbound claim to an existing Available
volume: such a claim is judged by its class alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...client import ApiError
from ..framework import (
    NODE_EVENTS,
    PERSISTENT_VOLUME_CHANGE,
    PERSISTENT_VOLUME_CLAIM_CHANGE,
    SKIP,
    STORAGE_CLASS_CHANGE,
    CycleState,
    FilterPlugin,
    PreBindPlugin,
    PreFilterPlugin,
    Status,
)
from ..nodeinfo import NodeInfo, PodInfo
from .nodeaffinity import NodeTest, compile_node_selector

UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
NODE_CONFLICT = "node(s) had volume node affinity conflict"
BIND_CONFLICT = "node(s) didn't find available persistent volumes to bind"
VOLUME_MISSING = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"

ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"


def claim_names(pod: PodInfo) -> list[str]:
    """The claims the pod's `persistentVolumeClaim` volumes name, in volume order."""
    return [volume["persistentVolumeClaim"].get("claimName") or ""
            for volume in (pod.pod.get("spec") or {}).get("volumes") or ()
            if isinstance(volume.get("persistentVolumeClaim"), Mapping)]


def claim_class(claim: Mapping[str, Any]) -> str:
    """GetPersistentVolumeClaimClass: the beta annotation wins over spec.storageClassName."""
    annotations = (claim.get("metadata") or {}).get("annotations") or {}
    if ANN_BETA_STORAGE_CLASS in annotations:
        return annotations[ANN_BETA_STORAGE_CLASS]
    return (claim.get("spec") or {}).get("storageClassName") or ""


def is_fully_bound(claim: Mapping[str, Any]) -> bool:
    return bool((claim.get("spec") or {}).get("volumeName")) and ANN_BIND_COMPLETED in (
        (claim.get("metadata") or {}).get("annotations") or {})


def topology_test(allowed_topologies: list[Mapping[str, Any]] | None) -> NodeTest | None:
    """MatchTopologySelectorTerms as a node test; None when the class allows every node.

    A topology term's `matchLabelExpressions` are `key In values` node selector
    requirements, so the terms compile as a node selector would.
    """
    if not allowed_topologies:
        return None
    return compile_node_selector({"nodeSelectorTerms": [
        {"matchExpressions": [{"key": e.get("key"), "operator": "In",
                               "values": e.get("values") or []}
                              for e in term.get("matchLabelExpressions") or ()]}
        for term in allowed_topologies]})


@dataclass(slots=True)
class DelayedClaim:
    """An unbound claim whose binding waits for this pod: where it may be provisioned."""

    selected_node: str = ""
    topology: NodeTest | None = None

    def fits(self, node: NodeInfo) -> bool:
        if self.selected_node and self.selected_node != node.name:
            return False
        return self.topology is None or self.topology(node)


@dataclass(slots=True)
class PodVolumes:
    # One entry per bound claim, in volume order: its volume's node affinity as a test
    # (None: the volume does not exist); volumes without node affinity are left out.
    bound: list[NodeTest | None] = field(default_factory=list)
    delayed: list[DelayedClaim] = field(default_factory=list)


class VolumeBinding(PreFilterPlugin, FilterPlugin, PreBindPlugin):
    name = "VolumeBinding"
    events = NODE_EVENTS | {PERSISTENT_VOLUME_CLAIM_CHANGE, PERSISTENT_VOLUME_CHANGE,
                            STORAGE_CLASS_CHANGE}

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        names = claim_names(pod)
        if not names:
            return SKIP
        claims = []
        for name in names:
            claim = self.handle.persistent_volume_claim(pod.namespace, name)
            if claim is None:
                return Status.unresolvable(f'persistentvolumeclaim "{name}" not found')
            if (claim.get("status") or {}).get("phase") == "Lost":
                volume = (claim.get("spec") or {}).get("volumeName") or ""
                return Status.unresolvable(f'persistentvolumeclaim "{name}" bound to '
                                           f'non-existent persistentvolume "{volume}"')
            if (claim.get("metadata") or {}).get("deletionTimestamp"):
                return Status.unresolvable(f'persistentvolumeclaim "{name}" is being deleted')
            claims.append(claim)
        volumes = PodVolumes()
        for claim in claims:
            if is_fully_bound(claim):
                volume = self.handle.persistent_volume(claim["spec"]["volumeName"])
                required = (((volume or {}).get("spec") or {}).get("nodeAffinity") or {}
                            ).get("required")
                if volume is None:
                    volumes.bound.append(None)
                elif required:
                    volumes.bound.append(compile_node_selector(required))
                continue
            class_name = claim_class(claim)
            storage_class = self.handle.storage_class(class_name) if class_name else None
            if (storage_class is None
                    or storage_class.get("volumeBindingMode") != WAIT_FOR_FIRST_CONSUMER
                    or (claim.get("spec") or {}).get("volumeName")):
                return Status.unresolvable(UNBOUND_IMMEDIATE)
            annotations = (claim.get("metadata") or {}).get("annotations") or {}
            volumes.delayed.append(DelayedClaim(
                annotations.get(ANN_SELECTED_NODE) or "",
                topology_test(storage_class.get("allowedTopologies"))))
        if not volumes.bound and not any(c.selected_node or c.topology for c in volumes.delayed):
            return SKIP  # every node passes Filter
        state.data[self.name] = volumes
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        volumes: PodVolumes = state.data[self.name]
        affinity_ok = volumes_found = True
        for admits in volumes.bound:  # the first missing or conflicting volume decides
            if admits is None:
                volumes_found = False
                break
            if not admits(node):
                affinity_ok = False
                break
        reasons = []
        if not affinity_ok:
            reasons.append(NODE_CONFLICT)
        if not all(claim.fits(node) for claim in volumes.delayed):
            reasons.append(BIND_CONFLICT)
        if not volumes_found:
            reasons.append(VOLUME_MISSING)
        return Status.unresolvable(*reasons) if reasons else None

    async def pre_bind(self, state: CycleState, pod: PodInfo, node: str) -> Status | None:
        client = self.handle.client
        if client is None or not claim_names(pod):
            return None
        for name in claim_names(pod):
            claim = self.handle.persistent_volume_claim(pod.namespace, name)
            if claim is None or is_fully_bound(claim):
                continue
            annotations = (claim.get("metadata") or {}).get("annotations") or {}
            class_name = claim_class(claim)
            storage_class = self.handle.storage_class(class_name) if class_name else None
            if annotations.get(ANN_SELECTED_NODE) == node or storage_class is None or \
                    storage_class.get("volumeBindingMode") != WAIT_FOR_FIRST_CONSUMER:
                continue
            try:
                await client.patch("v1", "persistentvolumeclaims", name,
                                   {"metadata": {"annotations": {ANN_SELECTED_NODE: node}}},
                                   pod.namespace)
            except ApiError as err:
                return Status.error(f"error selecting node {node} for persistentvolumeclaim "
                                    f'"{pod.namespace}/{name}": {err}')
        return None
