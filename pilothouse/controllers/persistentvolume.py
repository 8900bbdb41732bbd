"""The PersistentVolume controller: claims bound to volumes, and volumes made for claims.

Three jobs, as a cluster's persistentvolume-binder plus k3s's local-path provisioner do
them, through the API only:

- **The default StorageClass.** At start, `local-path` (provisioner
  `pilothouse.dev/local-path`, reclaimPolicy Delete, volumeBindingMode
  WaitForFirstConsumer) is created if absent, annotated as the default class unless
  another class already is. The DefaultStorageClass admission plugin gives it to claims
  that name no class.
- **Binding** (upstream's syncClaim / syncVolume). A Pending claim binds to the smallest
  Available volume that fits -- same class, every requested access mode, at least the
  requested storage, the claim's selector and volumeMode, a volume pre-bound to it or
  one it names in `volumeName` first. The volume gets `spec.claimRef` and phase Bound;
  the claim gets `spec.volumeName`, `pv.kubernetes.io/bind-completed` (and
  `pv.kubernetes.io/bound-by-controller` where this controller chose) and status
  Bound with the volume's capacity and access modes. A deleted claim releases its volume,
  which its reclaim policy then keeps (Retain), deletes (Delete, for volumes this
  provisioner made) or fails, with the upstream controller's events.
- **Provisioning** for classes of provisioner `pilothouse.dev/local-path`. With
  WaitForFirstConsumer a volume is made once the claim's node is known: the
  `volume.kubernetes.io/selected-node` annotation a scheduler sets, or -- since our
  scheduler does not -- the node of a scheduled pod that uses the claim (the controller
  then also binds existing volumes whose node affinity admits that node, the scheduler's
  part upstream). Immediate classes provision at once. The volume is the directory
  `<storage root>/pvc-<uid>_<namespace>_<name>` as a hostPath of type DirectoryOrCreate
  (the kubelet creates it on first mount), with node affinity to the selected node.

The storage root is `<data dir>/storage`, the data dir coming from the controller
manager's `data_dir` setting (default `~/.pilothouse`, as `pilothouse up`'s). The
controller manager may run on another machine than the node; so reclaiming a deleted
volume removes its directory only when this machine can see it under the storage root
(one-machine clusters, `pilothouse up`), and otherwise leaves it on the node and says so
in the log -- the PersistentVolume object is deleted either way.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..client import ApiError, Controller, object_key
from ..machinery.meta import rfc3339
from ..machinery.quantity import parse_quantity
from ..machinery.selectors import label_selector_from_dict
from ._workloads import error_message, meta, with_kind
from .daemonset import node_matches_term

log = logging.getLogger(__name__)

PROVISIONER = "pilothouse.dev/local-path"
DEFAULT_CLASS = "local-path"
STORAGE_DIR = "storage"

ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"
ANN_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
ANN_BETA_DEFAULT_CLASS = "storageclass.beta.kubernetes.io/is-default-class"
HOSTNAME_LABEL = "kubernetes.io/hostname"

#: Pending claims and unfinished volumes are looked at again this often (the upstream
#: controller's periodic resync), so a volume created by hand is found.
RESYNC_SECONDS = 15.0
CLAIM_INDEX = "claims"
ENSURE_CLASS_KEY = "storageclass:ensure-default"
_LOCAL_PATH_MODES = ("ReadWriteOnce", "ReadWriteOncePod")


# -- helpers shared by the binder and its tests -----------------------------------------


def claim_class(claim: Mapping[str, Any]) -> str:
    """GetPersistentVolumeClaimClass: the beta annotation wins over spec.storageClassName."""
    annotations = meta(claim).get("annotations") or {}
    if ANN_BETA_STORAGE_CLASS in annotations:
        return annotations[ANN_BETA_STORAGE_CLASS]
    return (claim.get("spec") or {}).get("storageClassName") or ""


def volume_class(volume: Mapping[str, Any]) -> str:
    return claim_class(volume)


def is_default_class(storage_class: Mapping[str, Any]) -> bool:
    annotations = meta(storage_class).get("annotations") or {}
    return "true" in (annotations.get(ANN_DEFAULT_CLASS), annotations.get(ANN_BETA_DEFAULT_CLASS))


def pod_claim_keys(pod: Mapping[str, Any]) -> list[str]:
    """`namespace/claim` of every claim the pod's volumes name."""
    namespace = meta(pod).get("namespace") or ""
    return [f"{namespace}/{volume['persistentVolumeClaim'].get('claimName', '')}"
            for volume in (pod.get("spec") or {}).get("volumes") or ()
            if isinstance(volume.get("persistentVolumeClaim"), Mapping)]


def is_bound_to(volume: Mapping[str, Any], claim: Mapping[str, Any]) -> bool:
    """IsVolumeBoundToClaim: claimRef names the claim (its uid, when claimRef has one)."""
    ref = (volume.get("spec") or {}).get("claimRef")
    if not ref:
        return False
    return (ref.get("name") == meta(claim).get("name")
            and ref.get("namespace") == meta(claim).get("namespace")
            and (not ref.get("uid") or ref.get("uid") == meta(claim).get("uid")))


def _modes(obj: Mapping[str, Any]) -> frozenset[str]:
    return frozenset((obj.get("spec") or {}).get("accessModes") or ())


def _volume_mode(obj: Mapping[str, Any]) -> str:
    return (obj.get("spec") or {}).get("volumeMode") or "Filesystem"


def _requested(claim: Mapping[str, Any]) -> Decimal:
    requests = ((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}
    return parse_quantity(requests.get("storage") or "0")


def _capacity(volume: Mapping[str, Any]) -> Decimal:
    return parse_quantity(((volume.get("spec") or {}).get("capacity") or {}).get("storage")
                          or "0")


def node_admits(volume: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """CheckNodeAffinity: the volume's required node affinity admits the node."""
    required = ((volume.get("spec") or {}).get("nodeAffinity") or {}).get("required")
    if not required:
        return True
    return any(node_matches_term(t, node) for t in required.get("nodeSelectorTerms") or ())


def find_matching_volume(claim: Mapping[str, Any], volumes: Iterable[Mapping[str, Any]], *,
                         node: Mapping[str, Any] | None = None,
                         delay_binding: bool = False) -> Mapping[str, Any] | None:
    """findBestMatchForClaim: a volume pre-bound to the claim, else the smallest fitting one.

    Volumes are tried by access-mode set, the sets with fewest modes first, as upstream's
    access-mode index does. Without a node, a claim whose binding waits for its first
    consumer only takes a volume pre-bound to it.
    """
    wanted = _modes(claim)
    groups: dict[frozenset[str], list[Mapping[str, Any]]] = {}
    for volume in volumes:
        modes = _modes(volume)
        if wanted <= modes:
            groups.setdefault(modes, []).append(volume)
    for modes in sorted(groups, key=lambda m: (len(m), sorted(m))):
        found = _match_in(claim, groups[modes], node=node, delay_binding=delay_binding)
        if found is not None:
            return found
    return None


def _match_in(claim: Mapping[str, Any], volumes: list[Mapping[str, Any]], *,
              node: Mapping[str, Any] | None,
              delay_binding: bool) -> Mapping[str, Any] | None:
    requested = _requested(claim)
    spec = claim.get("spec") or {}
    selector = (label_selector_from_dict(spec["selector"]) if spec.get("selector") is not None
                else None)
    smallest: Mapping[str, Any] | None = None
    for volume in sorted(volumes, key=lambda v: meta(v).get("name", "")):
        if (volume.get("spec") or {}).get("claimRef") and not is_bound_to(volume, claim):
            continue
        if _capacity(volume) < requested or _volume_mode(volume) != _volume_mode(claim):
            continue
        if meta(volume).get("deletionTimestamp"):
            continue
        node_ok = node is None or node_admits(volume, node)
        if is_bound_to(volume, claim):
            return volume if node_ok else None
        if node is None and delay_binding:
            continue
        if (volume.get("status") or {}).get("phase") != "Available":
            continue
        if selector is not None and not selector.matches(meta(volume).get("labels")):
            continue
        if volume_class(volume) != claim_class(claim) or not node_ok:
            continue
        if smallest is None or _capacity(smallest) > _capacity(volume):
            smallest = volume
    return smallest


def volume_mismatch(volume: Mapping[str, Any], claim: Mapping[str, Any]) -> str | None:
    """checkVolumeSatisfyClaim: why a volume the claim names cannot serve it, or None."""
    if meta(volume).get("deletionTimestamp"):
        return f'the volume is marked for deletion "{meta(volume).get("name")}"'
    if _capacity(volume) < _requested(claim):
        return "requested PV is too small"
    if volume_class(volume) != claim_class(claim):
        return "storageClassName does not match"
    if _volume_mode(volume) != _volume_mode(claim):
        return "incompatible volumeMode"
    if not _modes(claim) <= _modes(volume):
        return "incompatible accessMode"
    return None


def local_path_volume(claim: Mapping[str, Any], storage_class: Mapping[str, Any], *,
                      root: Path, node: Mapping[str, Any] | None) -> dict[str, Any]:
    """The PersistentVolume the local-path provisioner makes for a claim."""
    claim_meta = meta(claim)
    name = f"pvc-{claim_meta['uid']}"
    spec = claim.get("spec") or {}
    volume_spec: dict[str, Any] = {
        "capacity": {"storage": ((spec.get("resources") or {}).get("requests") or {})
                     .get("storage", "0")},
        "accessModes": list(spec.get("accessModes") or ()),
        "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
        "storageClassName": meta(storage_class)["name"],
        "volumeMode": _volume_mode(claim),
        "claimRef": _claim_ref(claim),
        "hostPath": {"path": str(root / f"{name}_{claim_meta['namespace']}_{claim_meta['name']}"),
                     "type": "DirectoryOrCreate"},
    }
    if storage_class.get("mountOptions"):
        volume_spec["mountOptions"] = list(storage_class["mountOptions"])
    if node is not None:
        hostname = (meta(node).get("labels") or {}).get(HOSTNAME_LABEL) or meta(node)["name"]
        volume_spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": HOSTNAME_LABEL, "operator": "In", "values": [hostname]}]}]}}
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {ANN_PROVISIONED_BY: PROVISIONER}},
            "spec": volume_spec}


def _claim_ref(claim: Mapping[str, Any]) -> dict[str, Any]:
    claim_meta = meta(claim)
    return {"kind": "PersistentVolumeClaim", "namespace": claim_meta.get("namespace"),
            "name": claim_meta.get("name"), "uid": claim_meta.get("uid"), "apiVersion": "v1",
            "resourceVersion": claim_meta.get("resourceVersion")}


def _claim_obj(claim: Mapping[str, Any]) -> dict[str, Any]:
    return with_kind(claim, api_version="v1", kind="PersistentVolumeClaim")


def _volume_obj(volume: Mapping[str, Any]) -> dict[str, Any]:
    return with_kind(volume, api_version="v1", kind="PersistentVolume")


class PersistentVolumeController(Controller):
    name = "persistentvolume-binder"

    def setup(self) -> None:
        informers = self.context.informers
        self.volumes = informers.informer("v1", "persistentvolumes")
        self.claims = informers.informer("v1", "persistentvolumeclaims")
        self.classes = informers.informer("storage.k8s.io/v1", "storageclasses")
        self.nodes = informers.informer("v1", "nodes")
        self.pods = informers.informer("v1", "pods", indexers={CLAIM_INDEX: pod_claim_keys})
        self.volumes.add_handler(self._on_volume)
        self.claims.add_handler(self._on_claim)
        self.pods.add_handler(self._on_pod)
        self.classes.add_handler(self._on_class)
        data_dir = Path(self.context.settings.get("data_dir") or Path.home() / ".pilothouse")
        self.storage_root = data_dir.expanduser() / STORAGE_DIR
        self.queue.add(ENSURE_CLASS_KEY)

    # -- events to keys ---------------------------------------------------------------

    def _on_claim(self, old: dict | None, new: dict | None) -> None:
        claim = new if new is not None else old
        if claim is None:
            return
        self.queue.add(f"pvc:{object_key(claim)}")
        volume_name = (claim.get("spec") or {}).get("volumeName")
        if new is None and volume_name:
            self.queue.add(f"pv:{volume_name}")

    def _on_volume(self, old: dict | None, new: dict | None) -> None:
        volume = new if new is not None else old
        if volume is None:
            return
        self.queue.add(f"pv:{meta(volume)['name']}")
        ref = (volume.get("spec") or {}).get("claimRef")
        if ref:
            self.queue.add(f"pvc:{ref.get('namespace')}/{ref.get('name')}")
        elif new is not None and (new.get("status") or {}).get("phase") == "Available":
            self._enqueue_pending(volume_class(new))

    def _on_class(self, old: dict | None, new: dict | None) -> None:
        if new is not None:
            self._enqueue_pending(meta(new).get("name", ""))

    def _on_pod(self, old: dict | None, new: dict | None) -> None:
        if new is None:
            return
        node = (new.get("spec") or {}).get("nodeName")
        if old is not None and (old.get("spec") or {}).get("nodeName") == node:
            return
        for key in pod_claim_keys(new):
            self.queue.add(f"pvc:{key}")

    def _enqueue_pending(self, class_name: str) -> None:
        for claim in self.claims.list():
            if (not (claim.get("spec") or {}).get("volumeName")
                    and claim_class(claim) == class_name):
                self.queue.add(f"pvc:{object_key(claim)}")

    # -- reconcile --------------------------------------------------------------------

    async def reconcile(self, key: str) -> float | None:
        if key == ENSURE_CLASS_KEY:
            await self._ensure_default_class()
            return None
        kind, _, rest = key.partition(":")
        if kind == "pvc":
            claim = self.claims.get(rest)
            if claim is None:
                return None
            if ANN_BIND_COMPLETED in (meta(claim).get("annotations") or {}):
                return await self._sync_bound_claim(claim)
            return await self._sync_unbound_claim(claim)
        volume = self.volumes.get(rest)
        return None if volume is None else await self._sync_volume(volume)

    async def _ensure_default_class(self) -> None:
        if self.classes.get(DEFAULT_CLASS) is not None:
            return
        others = [meta(c)["name"] for c in self.classes.list() if is_default_class(c)]
        storage_class: dict[str, Any] = {
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": DEFAULT_CLASS},
            "provisioner": PROVISIONER, "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer"}
        if others:
            log.info("StorageClass %s is created without the default annotation: %s is "
                     "already the default", DEFAULT_CLASS, ", ".join(others))
        else:
            storage_class["metadata"]["annotations"] = {ANN_DEFAULT_CLASS: "true"}
        try:
            await self.client.create("storage.k8s.io/v1", "storageclasses", storage_class)
        except ApiError as err:
            if not err.conflict:
                raise

    # -- claims -----------------------------------------------------------------------

    async def _sync_unbound_claim(self, claim: dict[str, Any]) -> float | None:
        spec = claim.get("spec") or {}
        if spec.get("volumeName"):
            return await self._sync_claim_naming_volume(claim, spec["volumeName"])
        storage_class = self.classes.get(claim_class(claim)) if claim_class(claim) else None
        delay = (storage_class or {}).get("volumeBindingMode") == "WaitForFirstConsumer"
        node = self._selected_node(claim) if delay else None
        volume = find_matching_volume(claim, self.volumes.list(), node=node,
                                      delay_binding=delay)
        if volume is not None:
            await self._bind(volume, claim)
            return None
        if delay and node is None:
            await self._wait_for_consumer(claim)
        elif claim_class(claim):
            claim = await self._provision(claim, storage_class, node)
        else:
            await self.events.record(_claim_obj(claim), "Normal", "FailedBinding",
                                     "no persistent volumes available for this claim and no "
                                     "storage class is set")
        await self._set_claim_status(claim, "Pending", None)
        return RESYNC_SECONDS

    async def _sync_claim_naming_volume(self, claim: dict[str, Any],
                                        volume_name: str) -> float | None:
        volume = self.volumes.get(volume_name)
        if volume is None:
            await self._set_claim_status(claim, "Pending", None)
            return RESYNC_SECONDS
        if not (volume.get("spec") or {}).get("claimRef"):
            problem = volume_mismatch(volume, claim)
            if problem is not None:
                await self.events.record(_claim_obj(claim), "Warning", "VolumeMismatch",
                                         f'Cannot bind to requested volume "{volume_name}": '
                                         f"{problem}")
                await self._set_claim_status(claim, "Pending", None)
                return RESYNC_SECONDS
            await self._bind(volume, claim)
            return None
        if is_bound_to(volume, claim):
            await self._bind(volume, claim)
            return None
        await self.events.record(_claim_obj(claim), "Warning", "FailedBinding",
                                 f'volume "{volume_name}" already bound to a different claim.')
        await self._set_claim_status(claim, "Pending", None)
        return RESYNC_SECONDS

    async def _sync_bound_claim(self, claim: dict[str, Any]) -> float | None:
        volume_name = (claim.get("spec") or {}).get("volumeName")
        if not volume_name:
            await self._lose(claim, "ClaimLost", "Bound claim has lost reference to "
                             "PersistentVolume. Data on the volume is lost!")
            return None
        volume = self.volumes.get(volume_name)
        if volume is None:
            await self._lose(claim, "ClaimLost", "Bound claim has lost its PersistentVolume. "
                             "Data on the volume is lost!")
            return None
        ref = (volume.get("spec") or {}).get("claimRef")
        if not ref or ref.get("uid") == meta(claim).get("uid"):
            await self._bind(volume, claim)
            return None
        await self._lose(claim, "ClaimMisbound", "Two claims are bound to the same volume, "
                         "this one is bound incorrectly")
        return None

    async def _lose(self, claim: dict[str, Any], reason: str, message: str) -> None:
        if (claim.get("status") or {}).get("phase") != "Lost":
            await self._set_claim_status(claim, "Lost", None)
            await self.events.record(_claim_obj(claim), "Warning", reason, message)

    def _selected_node(self, claim: Mapping[str, Any]) -> dict[str, Any] | None:
        """The node the claim's first consumer is on: the scheduler's annotation, else the
        node of a scheduled pod that uses the claim."""
        name = (meta(claim).get("annotations") or {}).get(ANN_SELECTED_NODE)
        if not name:
            scheduled = sorted((pod for pod in self.pods.by_index(CLAIM_INDEX, object_key(
                dict(claim))) if (pod.get("spec") or {}).get("nodeName")),
                key=lambda pod: meta(pod).get("creationTimestamp") or "")
            if not scheduled:
                return None
            name = scheduled[0]["spec"]["nodeName"]
        return self.nodes.get(name) or {"metadata": {"name": name,
                                                     "labels": {HOSTNAME_LABEL: name}}}

    async def _wait_for_consumer(self, claim: dict[str, Any]) -> None:
        waiting = sorted(meta(pod)["name"] for pod in self.pods.by_index(
            CLAIM_INDEX, object_key(claim)) if not (pod.get("spec") or {}).get("nodeName"))
        if not waiting:
            reason, message = ("WaitForFirstConsumer",
                               "waiting for first consumer to be created before binding")
        elif len(waiting) == 1:
            reason, message = "WaitForPodScheduled", f"waiting for pod {waiting[0]} to be scheduled"
        else:
            reason, message = ("WaitForPodScheduled",
                               f"waiting for pods {','.join(waiting)} to be scheduled")
        await self.events.record(_claim_obj(claim), "Normal", reason, message)

    async def _provision(self, claim: dict[str, Any], storage_class: Mapping[str, Any] | None,
                         node: Mapping[str, Any] | None) -> dict[str, Any]:
        """Provision for the claim (or say who should); returns the claim as last written."""
        class_name = claim_class(claim)
        if storage_class is None:
            await self.events.record(_claim_obj(claim), "Warning", "ProvisioningFailed",
                                     f'storageclass.storage.k8s.io "{class_name}" not found')
            return claim
        provisioner = storage_class.get("provisioner") or ""
        claim = await self._mark_provisioner(claim, provisioner, node)
        if provisioner != PROVISIONER:
            await self.events.record(
                _claim_obj(claim), "Normal", "ExternalProvisioning",
                f"Waiting for a volume to be created either by the external provisioner "
                f"'{provisioner}' or manually by the system administrator. If volume creation "
                "is delayed, please verify that the provisioner is running and correctly "
                "registered.")
            return claim
        name = f"pvc-{meta(claim)['uid']}"
        if self.volumes.get(name) is not None:
            return claim
        problem = self._local_path_problem(claim)
        if problem is not None:
            await self.events.record(_claim_obj(claim), "Warning", "ProvisioningFailed",
                                     f'failed to provision volume with StorageClass '
                                     f'"{class_name}": {problem}')
            return claim
        await self.events.record(_claim_obj(claim), "Normal", "Provisioning",
                                 f'External provisioner is provisioning volume for claim '
                                 f'"{object_key(claim)}"')
        volume = local_path_volume(claim, storage_class, root=self.storage_root, node=node)
        try:
            await self.client.create("v1", "persistentvolumes", volume)
        except ApiError as err:
            if not err.conflict:
                await self.events.record(_claim_obj(claim), "Warning", "ProvisioningFailed",
                                         f'failed to provision volume with StorageClass '
                                         f'"{class_name}": {error_message(err)}')
                raise
        await self.events.record(_claim_obj(claim), "Normal", "ProvisioningSucceeded",
                                 f"Successfully provisioned volume {name}")
        return claim

    @staticmethod
    def _local_path_problem(claim: Mapping[str, Any]) -> str | None:
        spec = claim.get("spec") or {}
        if spec.get("selector") is not None:
            return "claim.Spec.Selector is not supported"
        if any(mode not in _LOCAL_PATH_MODES for mode in spec.get("accessModes") or ()):
            return ("NodePath only supports ReadWriteOnce and ReadWriteOncePod (1.22+) "
                    "access modes")
        return None

    async def _mark_provisioner(self, claim: dict[str, Any], provisioner: str,
                                node: Mapping[str, Any] | None) -> dict[str, Any]:
        """The claim's storage-provisioner annotations (and the node chosen for it)."""
        annotations = dict(meta(claim).get("annotations") or {})
        wanted = {ANN_STORAGE_PROVISIONER: provisioner, ANN_BETA_STORAGE_PROVISIONER: provisioner}
        if node is not None:
            wanted[ANN_SELECTED_NODE] = meta(node)["name"]
        if all(annotations.get(k) == v for k, v in wanted.items()):
            return claim
        annotations.update(wanted)
        updated = {**claim, "metadata": {**claim["metadata"], "annotations": annotations}}
        return await self.client.replace("v1", "persistentvolumeclaims", updated)

    # -- binding ----------------------------------------------------------------------

    async def _bind(self, volume: Mapping[str, Any], claim: dict[str, Any]) -> None:
        """Bind both ways and set both statuses; each write only if something differs."""
        volume = await self._bind_volume(volume, claim)
        volume = await self._set_volume_phase(volume, "Bound")
        claim = await self._bind_claim(claim, volume)
        await self._set_claim_status(claim, "Bound", volume)

    async def _bind_volume(self, volume: Mapping[str, Any],
                           claim: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = (volume.get("spec") or {}).get("claimRef") or {}
        annotations = dict(meta(volume).get("annotations") or {})
        dirty = False
        if not is_bound_to(volume, claim) and ANN_BOUND_BY_CONTROLLER not in annotations:
            annotations[ANN_BOUND_BY_CONTROLLER] = "yes"
            dirty = True
        claim_meta = meta(claim)
        if (ref.get("name"), ref.get("namespace"), ref.get("uid")) != (
                claim_meta.get("name"), claim_meta.get("namespace"), claim_meta.get("uid")):
            ref = _claim_ref(claim)
            dirty = True
        if not dirty:
            return volume
        updated = {**volume, "metadata": {**volume["metadata"], "annotations": annotations},
                   "spec": {**volume["spec"], "claimRef": ref}}
        return await self.client.replace("v1", "persistentvolumes", updated)

    async def _bind_claim(self, claim: dict[str, Any],
                          volume: Mapping[str, Any]) -> dict[str, Any]:
        annotations = dict(meta(claim).get("annotations") or {})
        spec = dict(claim.get("spec") or {})
        dirty = False
        if spec.get("volumeName") != meta(volume)["name"]:
            spec["volumeName"] = meta(volume)["name"]
            annotations.setdefault(ANN_BOUND_BY_CONTROLLER, "yes")
            dirty = True
        if ANN_BIND_COMPLETED not in annotations:
            annotations[ANN_BIND_COMPLETED] = "yes"
            dirty = True
        if not dirty:
            return claim
        updated = {**claim, "metadata": {**claim["metadata"], "annotations": annotations},
                   "spec": spec}
        return await self.client.replace("v1", "persistentvolumeclaims", updated)

    async def _set_claim_status(self, claim: dict[str, Any], phase: str,
                                volume: Mapping[str, Any] | None) -> dict[str, Any]:
        status = dict(claim.get("status") or {})
        wanted = dict(status, phase=phase)
        if volume is not None:
            wanted["accessModes"] = list((volume.get("spec") or {}).get("accessModes") or ())
            wanted["capacity"] = dict((volume.get("spec") or {}).get("capacity") or {})
        else:
            wanted.pop("accessModes", None)
            wanted.pop("capacity", None)
        if wanted == status:
            return claim
        return await self.client.replace("v1", "persistentvolumeclaims",
                                         {**claim, "status": wanted}, subresource="status")

    async def _set_volume_phase(self, volume: Mapping[str, Any], phase: str,
                                message: str = "") -> Mapping[str, Any]:
        status = volume.get("status") or {}
        if status.get("phase") == phase and (status.get("message") or "") == message:
            return volume
        wanted = {k: v for k, v in status.items() if k != "message"}
        if status.get("phase") != phase:
            wanted["lastPhaseTransitionTime"] = rfc3339()
        wanted["phase"] = phase
        if message:
            wanted["message"] = message
        return await self.client.replace("v1", "persistentvolumes",
                                         {**volume, "status": wanted}, subresource="status")

    async def _set_volume_phase_with_event(self, volume: Mapping[str, Any], phase: str,
                                           reason: str, message: str) -> None:
        if (volume.get("status") or {}).get("phase") == phase:
            return
        await self._set_volume_phase(volume, phase, message)
        await self.events.record(_volume_obj(volume), "Warning", reason, message)

    # -- volumes ----------------------------------------------------------------------

    async def _sync_volume(self, volume: Mapping[str, Any]) -> float | None:
        ref = (volume.get("spec") or {}).get("claimRef")
        if not ref or not ref.get("uid"):
            await self._set_volume_phase(volume, "Available")
            return None
        claim = await self._claim_of(volume, ref)
        if claim is None:
            phase = (volume.get("status") or {}).get("phase")
            if phase not in ("Released", "Failed"):
                volume = await self._set_volume_phase(volume, "Released")
            await self._reclaim(volume)
            return None
        claimed = (claim.get("spec") or {}).get("volumeName") or ""
        if not claimed:
            if _volume_mode(claim) != _volume_mode(volume):
                await self.events.record(
                    _volume_obj(volume), "Warning", "VolumeMismatch",
                    f"Cannot bind PersistentVolume to requested PersistentVolumeClaim "
                    f'"{meta(claim)["name"]}" due to incompatible volumeMode.')
                return None
            self.queue.add(f"pvc:{object_key(claim)}")
            return None
        if claimed == meta(volume)["name"]:
            await self._set_volume_phase(volume, "Bound")
            return None
        annotations = meta(volume).get("annotations") or {}
        if (ANN_PROVISIONED_BY in annotations
                and (volume.get("spec") or {}).get("persistentVolumeReclaimPolicy") == "Delete"):
            if (volume.get("status") or {}).get("phase") not in ("Released", "Failed"):
                volume = await self._set_volume_phase(volume, "Released")
            await self._reclaim(volume)
            return None
        await self._unbind(volume)
        return None

    async def _claim_of(self, volume: Mapping[str, Any],
                        ref: Mapping[str, Any]) -> dict[str, Any] | None:
        """The claim the volume is bound to: the cache, else (a claim the cache may not have
        yet) the API; None if gone or replaced by another claim of the same name."""
        claim = self.claims.get(f"{ref.get('namespace')}/{ref.get('name')}")
        phase = (volume.get("status") or {}).get("phase")
        if claim is None and phase not in ("Released", "Failed"):
            try:
                claim = await self.client.get("v1", "persistentvolumeclaims", ref.get("name", ""),
                                              ref.get("namespace"))
            except ApiError as err:
                if not err.not_found:
                    raise
        if claim is not None and meta(claim).get("uid") != ref.get("uid"):
            return None
        return claim

    async def _unbind(self, volume: Mapping[str, Any]) -> None:
        """The claim went to another volume: free this one (or just its uid, if a user
        pre-bound it)."""
        annotations = dict(meta(volume).get("annotations") or {})
        spec = dict(volume.get("spec") or {})
        if ANN_BOUND_BY_CONTROLLER in annotations:
            spec.pop("claimRef", None)
            del annotations[ANN_BOUND_BY_CONTROLLER]
        else:
            spec["claimRef"] = {k: v for k, v in spec["claimRef"].items() if k != "uid"}
        updated = await self.client.replace("v1", "persistentvolumes", {
            **volume, "metadata": {**volume["metadata"], "annotations": annotations},
            "spec": spec})
        await self._set_volume_phase(updated, "Available")

    async def _reclaim(self, volume: Mapping[str, Any]) -> None:
        policy = (volume.get("spec") or {}).get("persistentVolumeReclaimPolicy")
        name = meta(volume)["name"]
        if policy == "Retain":
            return
        if policy == "Recycle":
            await self._set_volume_phase_with_event(volume, "Failed", "VolumeFailedRecycle",
                                                    "No recycler plugin found for the volume!")
            return
        if policy != "Delete":
            await self._set_volume_phase_with_event(
                volume, "Failed", "VolumeUnknownReclaimPolicy",
                "Volume has unrecognized PersistentVolumeReclaimPolicy")
            return
        provisioner = (meta(volume).get("annotations") or {}).get(ANN_PROVISIONED_BY)
        if provisioner is None:
            await self._set_volume_phase_with_event(
                volume, "Failed", "VolumeFailedDelete",
                f'error getting deleter volume plugin for volume "{name}": no deletable '
                "volume plugin matched")
            return
        if provisioner != PROVISIONER:
            return  # its own provisioner deletes it
        await self._remove_directory(volume)
        try:
            await self.client.delete("v1", "persistentvolumes", name,
                                     preconditions={"uid": meta(volume).get("uid", "")})
        except ApiError as err:
            if not (err.not_found or err.conflict):
                await self.events.record(_volume_obj(volume), "Warning", "VolumeFailedDelete",
                                         error_message(err))
                raise

    async def _remove_directory(self, volume: Mapping[str, Any]) -> None:
        """Remove a local-path volume's directory, if it is one of ours and visible here."""
        path = Path(((volume.get("spec") or {}).get("hostPath") or {}).get("path") or "")
        name = meta(volume)["name"]
        if path.parent != self.storage_root or not path.name.startswith(f"{name}_"):
            log.warning("volume %s: %s is not under the storage root %s; left in place",
                        name, path, self.storage_root)
            return
        if not path.exists():
            log.info("volume %s: no %s here to remove (removed already, or it lives on "
                     "another machine, whose node keeps it)", name, path)
            return
        await asyncio.to_thread(shutil.rmtree, path)
        log.info("volume %s: removed %s", name, path)


CONTROLLER = PersistentVolumeController
