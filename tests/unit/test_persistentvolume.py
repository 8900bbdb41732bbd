"""Claims and volumes: the binder, the local-path provisioner, the default StorageClass
(controller against a fake API) and the DefaultStorageClass admission plugin."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pilothouse.apiserver.admission import default_plugins
from pilothouse.apiserver.registry.builtin import BUILTIN_RESOURCES
from pilothouse.apiserver.registry.generic import GenericRegistry, WriteOptions
from pilothouse.client import ApiError, ControllerContext, EventRecorder, InformerFactory
from pilothouse.controllers.persistentvolume import (
    ANN_BIND_COMPLETED,
    ANN_BOUND_BY_CONTROLLER,
    ANN_PROVISIONED_BY,
    ANN_SELECTED_NODE,
    PersistentVolumeController,
    find_matching_volume,
)
from pilothouse.store.sqlite import SQLiteStore
from tests.settle import settle

# -- a fake API that behaves like the server for these kinds -----------------------------


class FakeApi:
    """Objects by plural and key; resourceVersions checked on replace, status kept apart."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, dict[str, Any]]] = {}
        self.events: list[tuple[str, str, str, str]] = []
        self.deleted: list[str] = []
        self.version = 0

    @staticmethod
    def key(obj: dict[str, Any]) -> str:
        meta = obj["metadata"]
        return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]

    def add(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        self.version += 1
        meta = obj["metadata"]
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta.setdefault("creationTimestamp", f"2024-01-01T00:00:{self.version:02d}Z")
        meta["resourceVersion"] = str(self.version)
        if plural in ("persistentvolumes", "persistentvolumeclaims"):
            obj.setdefault("status", {}).setdefault(
                "phase", "Pending" if plural == "persistentvolumeclaims" else "Available")
        self.objects.setdefault(plural, {})[self.key(obj)] = obj
        return copy.deepcopy(obj)

    def find(self, plural: str, key: str) -> dict[str, Any] | None:
        return self.objects.get(plural, {}).get(key)

    def remove(self, plural: str, key: str) -> None:
        del self.objects[plural][key]
        self.version += 1

    async def list_all(self, api_version: str, plural: str, namespace: str | None = None,
                       **kwargs: Any) -> tuple[list[dict], str]:
        return copy.deepcopy(list(self.objects.get(plural, {}).values())), str(self.version)

    async def get(self, api_version: str, plural: str, name: str,
                  namespace: str | None = None) -> dict[str, Any]:
        found = self.find(plural, f"{namespace}/{name}" if namespace else name)
        if found is None:
            raise ApiError(404, {"reason": "NotFound"})
        return copy.deepcopy(found)

    async def create(self, api_version: str, plural: str, obj: dict[str, Any],
                     namespace: str | None = None, **kwargs: Any) -> dict[str, Any]:
        if plural == "events":
            self.events.append((obj["involvedObject"]["name"], obj["type"], obj["reason"],
                                obj["message"]))
            return obj
        if self.find(plural, self.key(obj)) is not None:
            raise ApiError(409, {"reason": "AlreadyExists"})
        return self.add(plural, obj)

    async def patch(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {}  # repeated events: counted, not recorded again

    async def replace(self, api_version: str, plural: str, obj: dict[str, Any], *,
                      subresource: str | None = None) -> dict[str, Any]:
        current = self.find(plural, self.key(obj))
        assert current is not None
        if obj["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise ApiError(409, {"reason": "Conflict"})
        if subresource == "status":
            updated = {**current, "status": copy.deepcopy(obj["status"])}
        else:
            updated = {**copy.deepcopy(obj), "status": current.get("status")}
        self.version += 1
        updated["metadata"] = {**updated["metadata"], "resourceVersion": str(self.version)}
        self.objects[plural][self.key(obj)] = updated
        return copy.deepcopy(updated)

    async def delete(self, api_version: str, plural: str, name: str,
                     namespace: str | None = None, **kwargs: Any) -> None:
        self.remove(plural, f"{namespace}/{name}" if namespace else name)
        self.deleted.append(name)


def controller(api: FakeApi, tmp_path: Path) -> PersistentVolumeController:
    context = ControllerContext(api, InformerFactory(api),  # type: ignore[arg-type]
                                EventRecorder(api, "test"),  # type: ignore[arg-type]
                                {"data_dir": str(tmp_path)})
    return PersistentVolumeController(context)


def volume(name: str, size: str = "10Gi", *, modes: tuple[str, ...] = ("ReadWriteOnce",),
           cls: str = "manual", labels: dict | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"capacity": {"storage": size}, "accessModes": list(modes),
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": cls,
                     "hostPath": {"path": f"/srv/{name}"}, **spec}}


def claim(name: str = "data", size: str = "5Gi", *, modes: tuple[str, ...] = ("ReadWriteOnce",),
          cls: str | None = "manual", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"accessModes": list(modes),
                            "resources": {"requests": {"storage": size}}, **spec}
    if cls is not None:
        body["storageClassName"] = cls
    return {"metadata": {"name": name, "namespace": "shop"}, "spec": body}


def pod(name: str, claim_name: str = "data", node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c"}], "volumes": [
        {"name": "v", "persistentVolumeClaim": {"claimName": claim_name}}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "namespace": "shop"}, "spec": spec}


def local_path_class(mode: str = "WaitForFirstConsumer", name: str = "local-path"
                     ) -> dict[str, Any]:
    return {"metadata": {"name": name, "annotations": {
        "storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "pilothouse.dev/local-path", "reclaimPolicy": "Delete",
        "volumeBindingMode": mode}


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


def pvc(api: FakeApi, name: str = "data") -> dict[str, Any]:
    found = api.find("persistentvolumeclaims", f"shop/{name}")
    assert found is not None
    return found


def pv(api: FakeApi, name: str) -> dict[str, Any] | None:
    return api.find("persistentvolumes", name)


def events_of(api: FakeApi, name: str) -> list[tuple[str, str, str]]:
    return [(kind, reason, message) for obj, kind, reason, message in api.events if obj == name]


# -- the default StorageClass -----------------------------------------------------------


def test_local_path_is_created_as_the_default_class(api: FakeApi, tmp_path: Path) -> None:
    settle(controller(api, tmp_path), api)
    created = api.find("storageclasses", "local-path")
    assert created is not None
    assert created["metadata"]["annotations"] == {
        "storageclass.kubernetes.io/is-default-class": "true"}
    assert (created["provisioner"], created["reclaimPolicy"], created["volumeBindingMode"]) == (
        "pilothouse.dev/local-path", "Delete", "WaitForFirstConsumer")


def test_local_path_does_not_take_the_default_from_an_existing_one(api: FakeApi,
                                                                   tmp_path: Path) -> None:
    api.add("storageclasses", local_path_class(name="fast-ssd"))
    settle(controller(api, tmp_path), api)
    created = api.find("storageclasses", "local-path")
    assert created is not None and "annotations" not in created["metadata"]


# -- binding ----------------------------------------------------------------------------


def test_a_claim_binds_the_smallest_fitting_available_volume(api: FakeApi,
                                                             tmp_path: Path) -> None:
    api.add("storageclasses", local_path_class())
    api.add("persistentvolumes", volume("big", "100Gi"))
    api.add("persistentvolumes", volume("small", "1Gi"))
    api.add("persistentvolumes", volume("right", "10Gi"))
    api.add("persistentvolumes", volume("other-class", "5Gi", cls="fast"))
    api.add("persistentvolumes", volume("read-many", "5Gi", modes=("ReadOnlyMany",)))
    api.add("persistentvolumeclaims", claim())
    settle(controller(api, tmp_path), api)
    bound = pv(api, "right")
    assert bound is not None
    assert bound["status"]["phase"] == "Bound"
    assert bound["spec"]["claimRef"] == {
        "kind": "PersistentVolumeClaim", "namespace": "shop", "name": "data",
        "uid": "uid-data", "apiVersion": "v1", "resourceVersion": bound["spec"]["claimRef"][
            "resourceVersion"]}
    assert bound["metadata"]["annotations"] == {ANN_BOUND_BY_CONTROLLER: "yes"}
    data = pvc(api)
    assert data["spec"]["volumeName"] == "right"
    assert data["metadata"]["annotations"] == {ANN_BIND_COMPLETED: "yes",
                                               ANN_BOUND_BY_CONTROLLER: "yes"}
    assert data["status"] == {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                              "capacity": {"storage": "10Gi"}}
    for name in ("big", "small", "other-class", "read-many"):
        assert pv(api, name)["status"]["phase"] == "Available"  # type: ignore[index]


def test_matching_prefers_fewer_access_modes_and_honours_the_selector() -> None:
    def available(obj: dict[str, Any]) -> dict[str, Any]:
        return {**obj, "metadata": {**obj["metadata"], "uid": obj["metadata"]["name"]},
                "status": {"phase": "Available"}}

    many = available(volume("many", "1Gi", modes=("ReadWriteOnce", "ReadWriteMany")))
    once = available(volume("once", "50Gi"))
    labelled = available(volume("fast", "20Gi", labels={"disk": "ssd"}))
    want = {**claim(size="1Gi"), "metadata": {"name": "data", "namespace": "shop", "uid": "c"}}
    assert find_matching_volume(want, [many, once]) is once
    choosy = {**want, "spec": {**want["spec"], "selector": {"matchLabels": {"disk": "ssd"}}}}
    assert find_matching_volume(choosy, [many, once, labelled]) is labelled
    assert find_matching_volume(want, [available(volume("tiny", "512Mi"))]) is None
    block = {**want, "spec": {**want["spec"], "volumeMode": "Block"}}
    assert find_matching_volume(block, [once]) is None


def test_a_volume_pre_bound_to_the_claim_wins(api: FakeApi, tmp_path: Path) -> None:
    api.add("persistentvolumes", volume("exact", "5Gi"))
    api.add("persistentvolumes", volume("reserved", "50Gi", claimRef={
        "namespace": "shop", "name": "data"}))
    api.add("persistentvolumeclaims", claim())
    settle(controller(api, tmp_path), api)
    assert pvc(api)["spec"]["volumeName"] == "reserved"
    reserved = pv(api, "reserved")
    assert reserved is not None and reserved["spec"]["claimRef"]["uid"] == "uid-data"
    assert ANN_BOUND_BY_CONTROLLER not in (reserved["metadata"].get("annotations") or {})


def test_a_claim_naming_a_volume_binds_it_or_says_why_not(api: FakeApi, tmp_path: Path) -> None:
    api.add("persistentvolumes", volume("small", "1Gi"))
    api.add("persistentvolumeclaims", claim(volumeName="small"))
    api.add("persistentvolumes", volume("mine", "5Gi"))
    api.add("persistentvolumeclaims", claim("named", volumeName="mine"))
    settle(controller(api, tmp_path), api)
    assert pvc(api, "named")["status"]["phase"] == "Bound"
    assert ANN_BOUND_BY_CONTROLLER not in pvc(api, "named")["metadata"]["annotations"]
    assert pvc(api)["status"]["phase"] == "Pending"
    assert ("Warning", "VolumeMismatch",
            'Cannot bind to requested volume "small": requested PV is too small') in events_of(
        api, "data")


def test_no_volume_and_no_class_is_a_failed_binding(api: FakeApi, tmp_path: Path) -> None:
    api.add("persistentvolumeclaims", claim(cls=""))
    settle(controller(api, tmp_path), api)
    assert pvc(api)["status"]["phase"] == "Pending"
    assert ("Normal", "FailedBinding", "no persistent volumes available for this claim and "
            "no storage class is set") in events_of(api, "data")


def test_a_deleted_claim_releases_its_volume_by_reclaim_policy(api: FakeApi,
                                                              tmp_path: Path) -> None:
    api.add("persistentvolumes", volume("kept", "5Gi"))
    api.add("persistentvolumeclaims", claim("a", cls="manual", volumeName="kept"))
    api.add("persistentvolumes", volume("doomed", "5Gi", persistentVolumeReclaimPolicy="Delete"))
    api.add("persistentvolumeclaims", claim("b", volumeName="doomed"))
    ctrl = controller(api, tmp_path)
    settle(ctrl, api)
    assert pv(api, "kept")["status"]["phase"] == "Bound"  # type: ignore[index]
    api.remove("persistentvolumeclaims", "shop/a")
    api.remove("persistentvolumeclaims", "shop/b")
    settle(ctrl, api)
    assert pv(api, "kept")["status"]["phase"] == "Released"  # type: ignore[index]
    doomed = pv(api, "doomed")
    assert doomed is not None and doomed["status"]["phase"] == "Failed"
    message = ('error getting deleter volume plugin for volume "doomed": no deletable volume '
               "plugin matched")
    assert doomed["status"]["message"] == message
    assert events_of(api, "doomed") == [("Warning", "VolumeFailedDelete", message)]


# -- provisioning -----------------------------------------------------------------------


def test_wait_for_first_consumer_provisions_on_the_pods_node_then_binds(api: FakeApi,
                                                                       tmp_path: Path) -> None:
    api.add("storageclasses", local_path_class())
    api.add("nodes", {"metadata": {"name": "node-a",
                                   "labels": {"kubernetes.io/hostname": "host-a"}}})
    api.add("persistentvolumeclaims", claim(cls="local-path"))
    ctrl = controller(api, tmp_path)
    settle(ctrl, api)
    assert api.objects.get("persistentvolumes", {}) == {}
    assert events_of(api, "data")[-1] == (
        "Normal", "WaitForFirstConsumer", "waiting for first consumer to be created before "
        "binding")

    api.add("pods", pod("trainer"))
    settle(ctrl, api)
    assert events_of(api, "data")[-1] == (
        "Normal", "WaitForPodScheduled", "waiting for pod trainer to be scheduled")
    assert api.objects.get("persistentvolumes", {}) == {}

    api.objects["pods"]["shop/trainer"]["spec"]["nodeName"] = "node-a"
    api.objects["pods"]["shop/trainer"]["metadata"]["resourceVersion"] = "99"
    api.version += 1
    settle(ctrl, api)
    made = pv(api, "pvc-uid-data")
    assert made is not None
    assert made["metadata"]["annotations"][ANN_PROVISIONED_BY] == "pilothouse.dev/local-path"
    assert made["spec"]["hostPath"] == {
        "path": str(tmp_path / "storage" / "pvc-uid-data_shop_data"), "type": "DirectoryOrCreate"}
    assert made["spec"]["nodeAffinity"] == {"required": {"nodeSelectorTerms": [{
        "matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In",
                              "values": ["host-a"]}]}]}}
    assert (made["spec"]["capacity"], made["spec"]["persistentVolumeReclaimPolicy"],
            made["spec"]["storageClassName"]) == ({"storage": "5Gi"}, "Delete", "local-path")
    assert made["status"]["phase"] == "Bound"
    data = pvc(api)
    assert data["status"]["phase"] == "Bound" and data["spec"]["volumeName"] == "pvc-uid-data"
    assert data["metadata"]["annotations"][ANN_SELECTED_NODE] == "node-a"
    assert data["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"] == (
        "pilothouse.dev/local-path")
    reasons = [(reason, message) for _, reason, message in events_of(api, "data")]
    assert ("Provisioning", 'External provisioner is provisioning volume for claim '
            '"shop/data"') in reasons
    assert ("ProvisioningSucceeded", "Successfully provisioned volume pvc-uid-data") in reasons


def test_immediate_binding_provisions_at_once_and_delete_removes_the_directory(
        api: FakeApi, tmp_path: Path) -> None:
    api.add("storageclasses", local_path_class("Immediate", name="now"))
    api.add("persistentvolumeclaims", claim(cls="now"))
    ctrl = controller(api, tmp_path)
    settle(ctrl, api)
    made = pv(api, "pvc-uid-data")
    assert made is not None and "nodeAffinity" not in made["spec"]
    assert pvc(api)["status"]["phase"] == "Bound"
    directory = Path(made["spec"]["hostPath"]["path"])
    directory.mkdir(parents=True)  # as the kubelet makes it on first mount
    (directory / "model.pt").write_text("weights")
    api.remove("persistentvolumeclaims", "shop/data")
    settle(ctrl, api)
    assert pv(api, "pvc-uid-data") is None and "pvc-uid-data" in api.deleted
    assert not directory.exists()


def test_the_provisioner_selects_the_node_from_the_annotation(api: FakeApi,
                                                              tmp_path: Path) -> None:
    api.add("storageclasses", local_path_class())
    wanted = claim(cls="local-path")
    wanted["metadata"]["annotations"] = {ANN_SELECTED_NODE: "node-b"}
    api.add("persistentvolumeclaims", wanted)
    settle(controller(api, tmp_path), api)
    made = pv(api, "pvc-uid-data")
    assert made is not None
    terms = made["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == ["node-b"]


def test_local_path_refuses_shared_access_modes(api: FakeApi, tmp_path: Path) -> None:
    api.add("storageclasses", local_path_class("Immediate"))
    api.add("persistentvolumeclaims", claim(cls="local-path", modes=("ReadWriteMany",)))
    settle(controller(api, tmp_path), api)
    assert api.objects.get("persistentvolumes", {}) == {}
    assert ("Warning", "ProvisioningFailed",
            'failed to provision volume with StorageClass "local-path": NodePath only '
            "supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes") in events_of(
        api, "data")


def test_a_class_of_another_provisioner_waits_for_it(api: FakeApi, tmp_path: Path) -> None:
    api.add("storageclasses", {"metadata": {"name": "ebs"}, "provisioner": "ebs.csi.aws.com",
                               "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"})
    api.add("persistentvolumeclaims", claim(cls="ebs"))
    settle(controller(api, tmp_path), api)
    assert api.objects.get("persistentvolumes", {}) == {}
    assert pvc(api)["metadata"]["annotations"][
        "volume.kubernetes.io/storage-provisioner"] == "ebs.csi.aws.com"
    assert events_of(api, "data")[-1][1] == "ExternalProvisioning"


# -- DefaultStorageClass admission ------------------------------------------------------

RES = {(r.group, r.plural): r for r in BUILTIN_RESOURCES}


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[GenericRegistry]:
    store = SQLiteStore.open(tmp_path / "state.db")
    registry = GenericRegistry(store, default_plugins())
    asyncio.run(registry.create(RES[("", "namespaces")], None, {"metadata": {"name": "shop"}},
                                WriteOptions()))
    yield registry
    asyncio.run(store.close())


def create_class(registry: GenericRegistry, name: str, *, default: bool) -> None:
    obj = {"metadata": {"name": name}, "provisioner": "example.com/p"}
    if default:
        obj["metadata"]["annotations"] = {"storageclass.kubernetes.io/is-default-class": "true"}
    asyncio.run(registry.create(RES[("storage.k8s.io", "storageclasses")], None, obj,
                                WriteOptions()))


def create_claim(registry: GenericRegistry, name: str, **spec: Any) -> dict[str, Any]:
    body = {"metadata": {"name": name}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, **spec}}
    return asyncio.run(registry.create(RES[("", "persistentvolumeclaims")], "shop", body,
                                       WriteOptions()))


def test_a_claim_without_a_class_gets_the_default_one(registry: GenericRegistry) -> None:
    assert "storageClassName" not in create_claim(registry, "before")["spec"]
    create_class(registry, "plain", default=False)
    create_class(registry, "standard", default=True)
    assert create_claim(registry, "a")["spec"]["storageClassName"] == "standard"
    assert create_claim(registry, "none", storageClassName="")["spec"]["storageClassName"] == ""
    assert create_claim(registry, "own", storageClassName="plain")["spec"][
        "storageClassName"] == "plain"


def test_of_several_default_classes_the_newest_wins(registry: GenericRegistry) -> None:
    create_class(registry, "a-older", default=True)
    asyncio.run(asyncio.sleep(1.1))  # creationTimestamp has second precision
    create_class(registry, "b-newer", default=True)
    assert create_claim(registry, "a")["spec"]["storageClassName"] == "b-newer"
