"""The kubelet's volume manager against a fake API: every volume type, atomic updates,
modes, subPath, hostPath type checks, token projection and clean-up."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pilothouse.client import ApiError
from pilothouse.machinery.meta import rfc3339
from pilothouse.node import volumes as volumes_module
from pilothouse.node.volumes import FileProjection, VolumeError, VolumeManager, write_payload

NOW = 1_700_000_000.0


class FakeApi:
    """Objects by (plural, namespace, name); answers TokenRequests with numbered tokens."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.token_requests: list[tuple[str, str, dict[str, Any]]] = []
        self.now = NOW

    def put(self, plural: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self.objects[(plural, meta.get("namespace"), meta["name"])] = obj

    async def get(self, api_version: str, plural: str, name: str,
                  namespace: str | None = None) -> dict[str, Any]:
        found = self.objects.get((plural, namespace, name))
        if found is None:
            raise ApiError(404, {"reason": "NotFound", "message": f'{plural} "{name}" not found'})
        return found

    async def create(self, api_version: str, plural: str, obj: dict[str, Any],
                     namespace: str | None = None, *, subresource: str | None = None,
                     name: str | None = None) -> dict[str, Any]:
        assert (api_version, plural, subresource) == ("v1", "serviceaccounts", "token")
        self.token_requests.append((namespace or "", name or "", obj))
        expires = datetime.fromtimestamp(self.now + obj["spec"]["expirationSeconds"], UTC)
        return {**obj, "status": {"token": f"token-{len(self.token_requests)}",
                                  "expirationTimestamp": rfc3339(expires)}}


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def manager(api: FakeApi, tmp_path: Path) -> VolumeManager:
    return VolumeManager(api, pods_root=tmp_path / "pods",  # type: ignore[arg-type]
                         node_name="node-a", data_dir=tmp_path, cache_seconds=0,
                         clock=lambda: api.now)


def pod(*volumes: dict[str, Any], containers: list[dict] | None = None,
        labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "shop", "uid": "uid-1",
                         "labels": labels or {"app": "web"}},
            "spec": {"volumes": list(volumes), "containers": containers or [
                {"name": "main", "resources": {"limits": {"memory": "64Mi"}}}], **spec}}


def prepare(manager: VolumeManager, the_pod: dict[str, Any]) -> dict[str, Path]:
    return asyncio.run(manager.prepare(the_pod))


def failure(manager: VolumeManager, the_pod: dict[str, Any]) -> str:
    with pytest.raises(VolumeError) as err:
        prepare(manager, the_pod)
    return str(err.value)


def read(path: Path) -> str:
    return path.read_text()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def config_map(name: str = "settings", **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "shop"}, "data": data}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# -- emptyDir ---------------------------------------------------------------------------


def test_empty_dir_lives_in_the_pod_folder_and_survives_resyncs(manager: VolumeManager,
                                                                tmp_path: Path) -> None:
    paths = prepare(manager, pod({"name": "scratch", "emptyDir": {}}))
    expected = tmp_path / "pods/shop_web_uid-1/volumes/kubernetes.io~empty-dir/scratch"
    assert paths == {"scratch": expected}
    assert mode(expected) == 0o777
    (expected / "work.txt").write_text("kept")
    assert prepare(manager, pod({"name": "scratch", "emptyDir": {}})) == paths
    assert read(expected / "work.txt") == "kept"


def test_memory_empty_dir_falls_back_to_dev_shm_when_tmpfs_cannot_be_mounted(
        manager: VolumeManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shm = tmp_path / "shm"
    shm.mkdir()
    monkeypatch.setattr(volumes_module, "SHM", shm)
    manager.shm_root = shm / "pilothouse-test"

    async def no_tmpfs(path: Path, size: str | None) -> str:
        return "not running as root"

    monkeypatch.setattr(manager, "_mount_tmpfs", no_tmpfs)
    the_pod = pod({"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
    path = prepare(manager, the_pod)["cache"]
    assert path == shm / "pilothouse-test/uid-1/cache"
    link = tmp_path / "pods/shop_web_uid-1/volumes/kubernetes.io~empty-dir/cache"
    assert link.is_symlink() and link.resolve() == path
    assert prepare(manager, the_pod)["cache"] == path

    assert manager.usage_exceeded(the_pod) is None
    (path / "big").write_bytes(b"x" * (2 << 20))
    assert manager.usage_exceeded(the_pod) == (
        'Usage of EmptyDir volume "cache" exceeds the limit "1Mi". ')

    asyncio.run(manager.cleanup("uid-1", tmp_path / "pods/shop_web_uid-1"))
    assert not path.exists() and not link.parent.exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_memory_empty_dir_is_a_sized_tmpfs_as_root(manager: VolumeManager,
                                                   tmp_path: Path) -> None:
    the_pod = pod({"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
    path = prepare(manager, the_pod)["cache"]
    if not os.path.ismount(path):
        asyncio.run(manager.cleanup("uid-1", tmp_path / "pods/shop_web_uid-1"))
        pytest.skip("this machine does not let us mount a tmpfs")
    size = os.statvfs(path)
    assert size.f_blocks * size.f_frsize == 1 << 20
    asyncio.run(manager.cleanup("uid-1", tmp_path / "pods/shop_web_uid-1"))
    assert not os.path.ismount(path) and not path.exists()


# -- configMap and secret -------------------------------------------------------------------


def test_config_map_keys_become_files_through_the_data_link(manager: VolumeManager,
                                                            api: FakeApi) -> None:
    api.put("configmaps", {**config_map(**{"app.yaml": "a: 1", "log.level": "info"}),
                           "binaryData": {"blob": b64("\x00bin")}})
    path = prepare(manager, pod({"name": "cfg", "configMap": {"name": "settings"}}))["cfg"]
    assert path.name == "cfg" and path.parent.name == "kubernetes.io~configmap"
    assert read(path / "app.yaml") == "a: 1" and read(path / "log.level") == "info"
    assert (path / "blob").read_bytes() == b"\x00bin"
    assert os.readlink(path / "app.yaml") == "..data/app.yaml"
    assert os.readlink(path / "..data").startswith("..")
    assert mode(path / "app.yaml") == 0o644


def test_items_choose_keys_paths_and_modes(manager: VolumeManager, api: FakeApi) -> None:
    api.put("configmaps", config_map(a="A", b="B", c="C"))
    volume = {"name": "cfg", "configMap": {"name": "settings", "defaultMode": 0o600, "items": [
        {"key": "a", "path": "conf/first.txt"}, {"key": "b", "path": "second", "mode": 0o400}]}}
    path = prepare(manager, pod(volume))["cfg"]
    assert sorted(p.name for p in path.iterdir() if not p.name.startswith("..")) == [
        "conf", "second"]
    assert read(path / "conf/first.txt") == "A" and mode(path / "conf/first.txt") == 0o600
    assert read(path / "second") == "B" and mode(path / "second") == 0o400


def test_missing_config_maps_and_keys_fail_the_mount_unless_optional(manager: VolumeManager,
                                                                     api: FakeApi) -> None:
    assert failure(manager, pod({"name": "cfg", "configMap": {"name": "nope"}})) == (
        'MountVolume.SetUp failed for volume "cfg" : configmap "nope" not found')
    assert failure(manager, pod({"name": "sec", "secret": {"secretName": "nope"}})) == (
        'MountVolume.SetUp failed for volume "sec" : secret "nope" not found')
    api.put("configmaps", config_map(a="A"))
    missing_key = {"name": "cfg", "configMap": {"name": "settings",
                                                "items": [{"key": "zz", "path": "z"}]}}
    assert failure(manager, pod(missing_key)) == (
        'MountVolume.SetUp failed for volume "cfg" : configmap references non-existent '
        "config key: zz")
    optional = {"name": "cfg", "configMap": {"name": "nope", "optional": True}}
    path = prepare(manager, pod(optional))["cfg"]
    assert [p.name for p in path.iterdir() if not p.name.startswith("..")] == []


def test_every_failed_volume_is_reported(manager: VolumeManager) -> None:
    with pytest.raises(VolumeError) as err:
        prepare(manager, pod({"name": "a", "configMap": {"name": "x"}},
                             {"name": "b", "secret": {"secretName": "y"}},
                             {"name": "ok", "emptyDir": {}}))
    assert err.value.messages == [
        'MountVolume.SetUp failed for volume "a" : configmap "x" not found',
        'MountVolume.SetUp failed for volume "b" : secret "y" not found']


def test_secret_values_are_decoded(manager: VolumeManager, api: FakeApi) -> None:
    api.put("secrets", {"metadata": {"name": "creds", "namespace": "shop"},
                        "data": {"password": b64("s3cret")}})
    path = prepare(manager, pod({"name": "sec", "secret": {"secretName": "creds",
                                                           "defaultMode": 0o440}}))["sec"]
    assert path.parent.name == "kubernetes.io~secret"
    assert read(path / "password") == "s3cret" and mode(path / "password") == 0o440


def test_an_update_swaps_the_data_link_and_drops_removed_keys(manager: VolumeManager,
                                                              api: FakeApi) -> None:
    api.put("configmaps", config_map(a="one", b="two"))
    the_pod = pod({"name": "cfg", "configMap": {"name": "settings"}})
    path = prepare(manager, the_pod)["cfg"]
    first = os.readlink(path / "..data")
    prepare(manager, the_pod)
    assert os.readlink(path / "..data") == first  # nothing changed: nothing written
    api.put("configmaps", config_map(a="uno", c="tres"))
    prepare(manager, the_pod)
    second = os.readlink(path / "..data")
    assert second != first and not (path / first).exists()
    assert read(path / "a") == "uno" and read(path / "c") == "tres"
    assert not os.path.lexists(path / "b")


def test_readers_never_see_half_an_update(tmp_path: Path) -> None:
    """Files read through one resolution of ..data always come from one version."""
    target = tmp_path / "vol"
    write_payload(target, {"a": FileProjection(b"0" * 65536), "b": FileProjection(b"0")})
    stop = threading.Event()
    seen: list[tuple[bytes, bytes]] = []
    torn: list[bytes] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                version = os.readlink(target / "..data")
                a = (target / version / "a").read_bytes()
                b = (target / version / "b").read_bytes()
                whole = (target / "a").read_bytes()
            except FileNotFoundError:
                continue  # that version was removed after the swap: read again
            seen.append((a[:1], b))
            if len(set(whole)) != 1 or len(whole) != 65536:
                torn.append(whole[:8])

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for generation in range(1, 60):
            digit = str(generation % 10).encode()
            write_payload(target, {"a": FileProjection(digit * 65536),
                                   "b": FileProjection(digit)})
    finally:
        stop.set()
        thread.join()
    assert seen and all(a == b for a, b in seen)
    assert torn == []
    assert len([p for p in target.iterdir() if p.name.startswith("..2")]) == 1


def test_unsafe_payload_paths_are_refused(tmp_path: Path) -> None:
    for path, message in [("/etc/passwd", "must be relative path"),
                          ("a/../../x", "must not contain '..'"),
                          ("..data/x", "must not start with '..'")]:
        with pytest.raises(ValueError, match=message):
            write_payload(tmp_path / "vol", {path: FileProjection(b"x")})


# -- downward API and projected ---------------------------------------------------------


def test_downward_api_files_follow_label_changes(manager: VolumeManager, api: FakeApi) -> None:
    api.put("nodes", {"metadata": {"name": "node-a"},
                      "status": {"allocatable": {"cpu": "4", "memory": "8Gi"}}})
    volume = {"name": "info", "downwardAPI": {"defaultMode": 0o644, "items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "meta/name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
        {"path": "mem", "resourceFieldRef": {"containerName": "main",
                                             "resource": "limits.memory", "divisor": "1Mi"}},
        {"path": "cpu", "resourceFieldRef": {"containerName": "main",
                                             "resource": "limits.cpu"}, "mode": 0o400}]}}
    path = prepare(manager, pod(volume))["info"]
    assert path.parent.name == "kubernetes.io~downward-api"
    assert read(path / "labels") == 'app="web"'
    assert read(path / "meta/name") == "web" and read(path / "app") == "web"
    assert read(path / "mem") == "64" and read(path / "cpu") == "4"
    assert mode(path / "cpu") == 0o400
    prepare(manager, pod(volume, labels={"app": "web", "version": "2"}))
    assert read(path / "labels") == 'app="web"\nversion="2"'


def kube_api_access() -> dict[str, Any]:
    """The projected volume the ServiceAccount admission plugin adds to pods."""
    return {"name": "kube-api-access-x1y2z", "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt",
                       "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}


def test_kube_api_access_has_a_bound_token_the_ca_and_the_namespace(manager: VolumeManager,
                                                                    api: FakeApi) -> None:
    api.put("configmaps", {"metadata": {"name": "kube-root-ca.crt", "namespace": "shop"},
                           "data": {"ca.crt": "-----BEGIN CERTIFICATE-----"}})
    the_pod = pod(kube_api_access(), serviceAccountName="builder")
    path = prepare(manager, the_pod)["kube-api-access-x1y2z"]
    assert path.parent.name == "kubernetes.io~projected"
    assert read(path / "token") == "token-1"
    assert read(path / "ca.crt") == "-----BEGIN CERTIFICATE-----"
    assert read(path / "namespace") == "shop"
    assert api.token_requests == [("shop", "builder", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": [], "expirationSeconds": 3607,
                 "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web",
                                    "uid": "uid-1"}}})]


def test_a_token_is_renewed_after_80_percent_of_its_lifetime(manager: VolumeManager,
                                                            api: FakeApi) -> None:
    volume = {"name": "tok", "projected": {"defaultMode": 0o600, "sources": [
        {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 1000,
                                 "path": "vault/token"}}]}}
    path = prepare(manager, pod(volume))["tok"]
    assert read(path / "vault/token") == "token-1" and mode(path / "vault/token") == 0o600
    assert api.token_requests[0][:2] == ("shop", "default")
    assert api.token_requests[0][2]["spec"]["audiences"] == ["vault"]
    api.now = NOW + 790
    prepare(manager, pod(volume))
    assert len(api.token_requests) == 1
    api.now = NOW + 810
    prepare(manager, pod(volume))
    assert len(api.token_requests) == 2 and read(path / "vault/token") == "token-2"


def test_projected_failures_are_aggregated(manager: VolumeManager) -> None:
    volume = {"name": "p", "projected": {"defaultMode": 0o644, "sources": [
        {"configMap": {"name": "a"}}, {"secret": {"name": "b"}}]}}
    assert failure(manager, pod(volume)) == (
        'MountVolume.SetUp failed for volume "p" : [configmap "a" not found, '
        'secret "b" not found]')


# -- hostPath ---------------------------------------------------------------------------


def host_path(path: Path | str, kind: str) -> dict[str, Any]:
    return {"name": "host", "hostPath": {"path": str(path), "type": kind}}


def test_host_path_types_are_checked_and_created(manager: VolumeManager, tmp_path: Path) -> None:
    made = tmp_path / "made/deep"
    assert prepare(manager, pod(host_path(made, "DirectoryOrCreate")))["host"] == made
    assert made.is_dir()
    new_file = tmp_path / "new.txt"
    prepare(manager, pod(host_path(new_file, "FileOrCreate")))
    assert new_file.is_file()
    prepare(manager, pod(host_path(made, "Directory")))
    prepare(manager, pod(host_path(new_file, "File")))
    prepare(manager, pod(host_path(tmp_path / "anything", "")))
    expected = {
        (new_file, "Directory"): f"hostPath type check failed: {new_file} is not a directory",
        (made, "File"): f"hostPath type check failed: {made} is not a file",
        (made, "FileOrCreate"): f"hostPath type check failed: {made} is not a file",
        (new_file, "DirectoryOrCreate"):
            f"hostPath type check failed: {new_file} is not a directory",
        (tmp_path / "gone", "Directory"): f"path {tmp_path / 'gone'} does not exist",
        (tmp_path / "gone", "File"): f"path {tmp_path / 'gone'} does not exist",
        (tmp_path / "gone", "Socket"): f'path "{tmp_path / "gone"}" does not exist',
        (made, "Socket"): f"hostPath type check failed: {made} is not a socket file",
        (made, "CharDevice"): f"hostPath type check failed: {made} is not a character device",
        (made, "BlockDevice"): f"hostPath type check failed: {made} is not a block device",
    }
    for (path, kind), message in expected.items():
        assert failure(manager, pod(host_path(path, kind))) == (
            f'MountVolume.SetUp failed for volume "host" : {message}'), kind


def test_host_path_socket_and_char_device_pass(manager: VolumeManager, tmp_path: Path) -> None:
    sock_path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(sock_path))
        prepare(manager, pod(host_path(sock_path, "Socket")))
    prepare(manager, pod(host_path("/dev/null", "CharDevice")))


# -- persistentVolumeClaim -------------------------------------------------------------------


def claim(phase: str = "Bound", volume: str = "pv-1") -> dict[str, Any]:
    return {"metadata": {"name": "data", "namespace": "shop", "uid": "claim-uid"},
            "spec": {"volumeName": volume} if volume else {}, "status": {"phase": phase}}


def persistent_volume(path: Path, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "pv-1"},
            "spec": {"hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
                     "claimRef": {"namespace": "shop", "name": "data", "uid": "claim-uid"},
                     **spec}}


def test_a_claim_mounts_its_bound_volumes_path(manager: VolumeManager, api: FakeApi,
                                               tmp_path: Path) -> None:
    volume = {"name": "data", "persistentVolumeClaim": {"claimName": "data", "readOnly": True}}
    assert failure(manager, pod(volume)) == (
        "error processing PVC shop/data: failed to fetch PVC from API server: "
        'persistentvolumeclaims "data" not found')
    api.put("persistentvolumeclaims", claim("Pending", ""))
    assert failure(manager, pod(volume)) == "error processing PVC shop/data: PVC is not bound"
    api.put("persistentvolumeclaims", claim())
    assert failure(manager, pod(volume)) == (
        "error processing PVC shop/data: failed to fetch PV pv-1 from API server: "
        'persistentvolumes "pv-1" not found')
    storage = tmp_path / "storage/pvc-1_shop_data"
    api.put("persistentvolumes", persistent_volume(storage))
    paths = prepare(manager, pod(volume, containers=[
        {"name": "main", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]))
    assert paths == {"data": storage} and storage.is_dir()
    mounts = manager.mounts(pod(volume), {"name": "main", "volumeMounts": [
        {"name": "data", "mountPath": "/data"}]}, paths)
    assert [(m.host_path, m.container_path, m.read_only) for m in mounts] == [
        (storage, "/data", True)]

    local = persistent_volume(storage)
    del local["spec"]["hostPath"]
    local["spec"]["local"] = {"path": str(tmp_path / "disk")}
    api.put("persistentvolumes", local)
    assert failure(manager, pod(volume)) == (
        'MountVolume.NewMounter initialization failed for volume "pv-1" : path '
        f'"{tmp_path / "disk"}" does not exist')


def test_a_volume_for_another_node_is_not_mounted(manager: VolumeManager, api: FakeApi,
                                                 tmp_path: Path) -> None:
    def pinned(host: str) -> dict[str, Any]:
        return {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [host]}]}]}}

    volume = {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}
    api.put("persistentvolumeclaims", claim())
    api.put("persistentvolumes", persistent_volume(tmp_path / "d", nodeAffinity=pinned("node-b")))
    assert failure(manager, pod(volume)) == (
        'MountVolume.NodeAffinity check failed for volume "pv-1" : no matching '
        "NodeSelectorTerms")
    assert not (tmp_path / "d").exists()
    api.put("persistentvolumes", persistent_volume(tmp_path / "d", nodeAffinity=pinned("node-a")))
    assert prepare(manager, pod(volume)) == {"data": tmp_path / "d"}
    api.put("nodes", {"metadata": {"name": "node-a",
                                   "labels": {"kubernetes.io/hostname": "host-a"}}})
    api.put("persistentvolumes", persistent_volume(tmp_path / "d", nodeAffinity=pinned("host-a")))
    assert prepare(manager, pod(volume)) == {"data": tmp_path / "d"}


def test_unsupported_volume_types_say_what_is_supported(manager: VolumeManager) -> None:
    message = failure(manager, pod({"name": "share", "nfs": {"server": "x", "path": "/"}}))
    assert message.startswith('failed to get Plugin from volumeSpec for volume "share" '
                              "err=no volume plugin matched (nfs; this node supports emptyDir")


# -- mounts and subPath -----------------------------------------------------------------


def test_mounts_resolve_sub_paths_and_mark_api_data_read_only(manager: VolumeManager,
                                                              api: FakeApi) -> None:
    api.put("configmaps", config_map(**{"app.yaml": "a: 1"}))
    the_pod = pod({"name": "cfg", "configMap": {"name": "settings"}},
                  {"name": "scratch", "emptyDir": {}})
    paths = prepare(manager, the_pod)
    container = {"name": "main", "volumeMounts": [
        {"name": "cfg", "mountPath": "/etc/app"},
        {"name": "cfg", "mountPath": "/etc/app.yaml", "subPath": "app.yaml"},
        {"name": "scratch", "mountPath": "/work", "subPath": "runs/one"},
        {"name": "scratch", "mountPath": "/mine", "subPathExpr": "pods/$(POD_NAME)",
         "readOnly": True}]}
    mounts = manager.mounts(the_pod, container, paths, env={"POD_NAME": "web"})
    assert [(m.container_path, m.read_only) for m in mounts] == [
        ("/etc/app", True), ("/etc/app.yaml", True), ("/work", False), ("/mine", True)]
    assert mounts[0].host_path == paths["cfg"]
    assert mounts[1].host_path == paths["cfg"] / "app.yaml"
    assert read(mounts[1].host_path) == "a: 1"
    assert mounts[2].host_path == paths["scratch"] / "runs/one" and mounts[2].host_path.is_dir()
    assert mounts[3].host_path == paths["scratch"] / "pods/web"


def test_bad_sub_paths_are_refused(manager: VolumeManager, tmp_path: Path) -> None:
    the_pod = pod({"name": "scratch", "emptyDir": {}})
    paths = prepare(manager, the_pod)
    (paths["scratch"] / "escape").symlink_to(tmp_path)

    def refused(mount: dict[str, Any], env: dict[str, str] | None = None) -> str:
        with pytest.raises(VolumeError) as err:
            manager.mounts(the_pod, {"name": "main", "volumeMounts": [mount]}, paths, env=env)
        return str(err.value)

    base = {"name": "scratch", "mountPath": "/x"}
    assert refused({**base, "subPath": "/etc"}) == (
        "error SubPath `/etc` must not be an absolute path")
    assert refused({**base, "subPath": "a/../../b"}) == (
        "unable to provision SubPath `a/../../b`: must not contain '..'")
    assert refused({**base, "subPath": "escape"}) == (
        'failed to prepare subPath for volumeMount "scratch" of container "main"')
    assert refused({**base, "subPathExpr": "$(A)/$(B)"}, {"A": ""}) == "missing value for A, B"
    assert refused({"name": "other", "mountPath": "/y"}) == (
        'cannot find volume "other" to mount into container "main"')


# -- clean-up ---------------------------------------------------------------------------


def test_cleanup_removes_volume_content_but_not_host_or_claim_data(manager: VolumeManager,
                                                                   api: FakeApi,
                                                                   tmp_path: Path) -> None:
    api.put("configmaps", config_map(a="A"))
    host = tmp_path / "host-data"
    the_pod = pod({"name": "cfg", "configMap": {"name": "settings"}},
                  {"name": "scratch", "emptyDir": {}},
                  host_path(host, "DirectoryOrCreate"))
    prepare(manager, the_pod)
    (host / "keep.txt").write_text("precious")
    pod_dir = tmp_path / "pods/shop_web_uid-1"
    asyncio.run(manager.cleanup("uid-1", pod_dir))
    assert not (pod_dir / "volumes").exists()
    assert read(host / "keep.txt") == "precious"
