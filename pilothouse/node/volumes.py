"""The kubelet's volume manager: a pod's volumes made real on this node's disk.

For each pod the pod worker syncs, `prepare` sets every volume of the pod up and answers
where it lives on the host; `mounts` turns a container's volumeMounts into the runtime's
`Mount`s (subPath and subPathExpr resolved); `cleanup` removes what the volumes left in
the pod folder once the pod is gone; `usage_exceeded` says when an emptyDir outgrew its
sizeLimit so the kubelet can evict the pod. `prepare` is idempotent and is called again
every resync (10 s) so ConfigMap, Secret, downward API and token updates reach pods.

Volumes live in the pod folder, as under /var/lib/kubelet/pods/<uid>/volumes:
`DATA/pods/<namespace>_<name>_<uid>/volumes/<plugin>/<volume name>/` with the kubelet's
plugin folder names (`kubernetes.io~configmap`, ...). The types:

- emptyDir: a directory (mode 0777). `medium: Memory` is a tmpfs mount (sized by
  sizeLimit) when we run as root and `mount` works; otherwise a directory in /dev/shm the
  volume folder links to; failing that, a plain directory. The choice is logged.
- configMap, secret, downwardAPI, projected: files written as the kubelet's AtomicWriter
  writes them -- the content goes into a fresh `..<timestamp>` directory, the `..data`
  symlink is swapped to it with one rename, and each top-level name is a symlink
  through `..data` -- so a reader never sees half an update. Modes come from the item,
  else defaultMode (0644). Secrets are written to disk, not tmpfs.
- serviceAccountToken (projected): a bound token from `serviceaccounts/<sa>/token`,
  renewed once 80% of its lifetime passed. The `kube-api-access-*` volume that
  ServiceAccount admission adds to every pod is an ordinary projected volume to the
  kubelet (token, the `kube-root-ca.crt` ConfigMap's ca.crt, the namespace).
- hostPath: the host's path, after the kubelet's type check (DirectoryOrCreate, ...).
- persistentVolumeClaim: the bound PersistentVolume's `hostPath` or `local` path.

What cannot be set up raises VolumeError with the messages the kubelet's FailedMount
events carry; the pod stays ContainerCreating and the worker retries. API reads go
through a short-lived cache so many pods naming one ConfigMap cost one read per resync.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from ..client import ApiError, Client
from ..machinery.meta import parse_time
from ..machinery.quantity import canonical, parse_quantity, to_int
from ..machinery.selectors import node_selector_term_matches
from .env import container_resource_value, expand, object_field_value
from .runtime.base import Mount

log = logging.getLogger(__name__)

EMPTY_DIR = "kubernetes.io~empty-dir"
CONFIG_MAP = "kubernetes.io~configmap"
SECRET = "kubernetes.io~secret"
DOWNWARD_API = "kubernetes.io~downward-api"
PROJECTED = "kubernetes.io~projected"

DEFAULT_MODE = 0o644
DEFAULT_TOKEN_SECONDS = 3600
#: A projected token is renewed once this fraction of its lifetime has passed.
TOKEN_REFRESH_FRACTION = 0.8
#: How long an API read (ConfigMap, Secret, claim, volume, node) is reused.
CACHE_SECONDS = 2.0
DATA_DIR_NAME = "..data"
NEW_DATA_DIR_NAME = "..data_tmp"
SHM = Path("/dev/shm")
HOSTNAME_LABEL = "kubernetes.io/hostname"
_SUPPORTED = ("emptyDir, configMap, secret, downwardAPI, projected, hostPath and "
              "persistentVolumeClaim")
_API_DATA_TYPES = ("configMap", "secret", "downwardAPI", "projected")


class VolumeError(Exception):
    """A volume (or a container's mount of one) could not be set up.

    `messages` holds one line per failed volume, each as the kubelet's FailedMount event
    says it; str(err) joins them.
    """

    def __init__(self, messages: str | Iterable[str]) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("; ".join(self.messages))


class _SetUpFailed(Exception):
    """A plugin's SetUp failed; the manager adds the volume's name to the message."""


def _aggregate(problems: list[str]) -> str:
    """utilerrors.NewAggregate(...).Error()."""
    return problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"


def _api_message(err: Exception) -> str:
    if isinstance(err, ApiError):
        return str(err.body.get("message") or err)
    return str(err) or type(err).__name__


# -- the AtomicWriter -------------------------------------------------------------------


@dataclass(frozen=True)
class FileProjection:
    data: bytes
    mode: int = DEFAULT_MODE


def _clean_path(path: str) -> str:
    """A payload path, checked as the AtomicWriter checks it; ValueError if unsafe."""
    if not path:
        raise ValueError(f'invalid path: must not be empty: "{path}"')
    if path.startswith("/"):
        raise ValueError(f"invalid path: must be relative path: {path}")
    items = path.split("/")
    if ".." in items:
        raise ValueError(f"invalid path: must not contain '..': {path}")
    if items[0].startswith("..") and len(items[0]) > 2:
        raise ValueError(f"invalid path: must not start with '..': {path}")
    return os.path.normpath(path)


def _files_under(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder, _, files in os.walk(root):
        for name in files:
            full = Path(folder) / name
            found[str(full.relative_to(root))] = full
    return found


def _same_content(payload: Mapping[str, FileProjection], folder: Path) -> bool:
    on_disk = _files_under(folder)
    if set(on_disk) != set(payload):
        return False
    try:
        for rel, projection in payload.items():
            if stat.S_IMODE(on_disk[rel].stat().st_mode) != projection.mode:
                return False
            if on_disk[rel].read_bytes() != projection.data:
                return False
    except OSError:  # e.g. mode 0 and not root: write it again
        return False
    return True


def _top_level(paths: Iterable[str]) -> set[str]:
    return {path.split("/", 1)[0] for path in paths}


def write_payload(target: Path, payload: Mapping[str, FileProjection]) -> bool:
    """Project `payload` (relative path -> content) into `target` atomically.

    The files go into a new `..<UTC timestamp>.<random>` directory; `..data` is then
    swapped to it by renaming a fresh symlink over it, so a reader that opens files
    through the user-visible names (symlinks `name -> ..data/name`) sees either the
    whole old content or the whole new one. Names no longer in the payload are removed,
    then the old directory. Returns False (and writes nothing) when the content on disk
    is already the payload. Raises ValueError for an unsafe path.
    """
    clean = {_clean_path(path): projection for path, projection in payload.items()}
    target.mkdir(parents=True, exist_ok=True)
    data_link = target / DATA_DIR_NAME
    old_name = os.readlink(data_link) if data_link.is_symlink() else ""
    old_dir = target / old_name if old_name else None
    tops = _top_level(clean)
    if old_dir is not None and old_dir.is_dir() and _same_content(clean, old_dir):
        _link_visible(target, tops)
        return False
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
    new_dir = Path(tempfile.mkdtemp(prefix=stamp, dir=target))
    try:
        os.chmod(new_dir, 0o755)
        for rel, projection in clean.items():
            path = new_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(projection.data)
            os.chmod(path, projection.mode)
        _link_visible(target, tops)
        staging = target / NEW_DATA_DIR_NAME
        if staging.is_symlink():
            staging.unlink()
        os.symlink(new_dir.name, staging)
        os.replace(staging, data_link)
    except BaseException:
        shutil.rmtree(new_dir, ignore_errors=True)
        raise
    if old_dir is not None:
        for gone in _top_level(_files_under(old_dir)) - tops:
            with_name = target / gone
            if with_name.is_symlink():
                with_name.unlink()
        shutil.rmtree(old_dir, ignore_errors=True)
    return True


def _link_visible(target: Path, tops: Iterable[str]) -> None:
    for name in tops:
        link = target / name
        if not link.is_symlink():
            os.symlink(f"{DATA_DIR_NAME}/{name}", link)


# -- payloads ---------------------------------------------------------------------------


def _mode(item: Mapping[str, Any], default_mode: int) -> int:
    mode = item.get("mode")
    return int(mode) if mode is not None else default_mode


def _key_payload(kind: str, obj: Mapping[str, Any] | None, items: list[Mapping[str, Any]],
                default_mode: int, *, optional: bool) -> dict[str, FileProjection]:
    """The files of a configMap or secret source (MakePayload): every key, or the items.

    `obj` None means an optional source that does not exist. Raises _SetUpFailed when
    an item names a key the object lacks (and the source is not optional).
    """
    values: dict[str, bytes] = {}
    if obj is not None:
        if kind == "ConfigMap":
            values = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
            values.update({k: _b64(v) for k, v in (obj.get("binaryData") or {}).items()})
        else:
            values = {k: _b64(v) for k, v in (obj.get("data") or {}).items()}
    if not items:
        return {key: FileProjection(data, default_mode) for key, data in values.items()}
    payload = {}
    for item in items:
        key = item.get("key", "")
        if key not in values:
            if optional:
                continue
            what = "config" if kind == "ConfigMap" else "secret"
            noun = "configmap" if kind == "ConfigMap" else "secret"
            raise _SetUpFailed(f"{noun} references non-existent {what} key: {key}")
        payload[item.get("path", key)] = FileProjection(values[key], _mode(item, default_mode))
    return payload


def _b64(value: str) -> bytes:
    return base64.b64decode(value or "")


def _find_container(pod: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    spec = pod.get("spec") or {}
    for container in [*(spec.get("containers") or ()), *(spec.get("initContainers") or ())]:
        if container.get("name") == name:
            return container
    raise ValueError(f"container {name} not found")


def _downward_payload(pod: Mapping[str, Any], items: list[Mapping[str, Any]],
                     default_mode: int, node_allocatable: Mapping[str, str]
                     ) -> dict[str, FileProjection]:
    """The files of a downward API source (CollectData); _SetUpFailed lists what failed."""
    payload: dict[str, FileProjection] = {}
    problems: list[str] = []
    for item in items:
        path = os.path.normpath(item.get("path", ""))
        try:
            if item.get("fieldRef"):
                value = object_field_value(pod, item["fieldRef"].get("fieldPath", ""))
            elif item.get("resourceFieldRef"):
                ref = item["resourceFieldRef"]
                value = container_resource_value(
                    ref, _find_container(pod, ref.get("containerName", "")), node_allocatable)
            else:
                value = ""
        except ValueError as err:
            problems.append(str(err))
            continue
        payload[path] = FileProjection(value.encode(), _mode(item, default_mode))
    if problems:
        raise _SetUpFailed(_aggregate(problems))
    return payload


# -- hostPath ---------------------------------------------------------------------------


_TYPE_CHECKS = {
    "Socket": (stat.S_ISSOCK, "a socket file"),
    "CharDevice": (stat.S_ISCHR, "a character device"),
    "BlockDevice": (stat.S_ISBLK, "a block device"),
}


def _check_host_path(path: str, kind: str) -> None:
    """The hostPath plugin's SetUp: refuse backsteps, then the type check (creating a
    missing directory or file for the *OrCreate types). Raises _SetUpFailed."""
    if ".." in path.split("/"):
        raise _SetUpFailed(f"invalid HostPath `{path}`: must not contain '..'")
    if not kind:
        return
    exists = os.path.exists(path)
    if kind in ("DirectoryOrCreate", "Directory"):
        if not exists and kind == "DirectoryOrCreate":
            _make(lambda: os.makedirs(path, 0o755, exist_ok=True))
            return
        if not exists:
            raise _SetUpFailed(f"path {path} does not exist")
        if not os.path.isdir(path):
            raise _SetUpFailed(f"hostPath type check failed: {path} is not a directory")
        return
    if kind in ("FileOrCreate", "File"):
        if not exists and kind == "FileOrCreate":
            _make(lambda: os.close(os.open(path, os.O_CREAT | os.O_RDONLY, 0o644)))
            return
        if not exists:
            raise _SetUpFailed(f"path {path} does not exist")
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise _SetUpFailed(f"hostPath type check failed: {path} is not a file")
        return
    if kind not in _TYPE_CHECKS:
        raise _SetUpFailed(f"{kind} is an invalid volume type")
    if not exists:
        raise _SetUpFailed(f'path "{path}" does not exist')
    test, noun = _TYPE_CHECKS[kind]
    if not test(os.stat(path).st_mode):
        raise _SetUpFailed(f"hostPath type check failed: {path} is not {noun}")


def _make(create: Callable[[], None]) -> None:
    try:
        create()
    except OSError as err:
        raise _SetUpFailed(f"{err.strerror or err}: {err.filename}") from None


# -- PersistentVolume node affinity -----------------------------------------------------


# -- the API, read through a short-lived cache ------------------------------------------


class _Reader:
    def __init__(self, client: Client, ttl: float) -> None:
        self.client = client
        self.ttl = ttl
        self._cache: dict[tuple[str, str | None, str], tuple[float, dict | None]] = {}

    async def get(self, plural: str, namespace: str | None, name: str) -> dict | None:
        """The object, or None if it does not exist; other API failures raise."""
        key = (plural, namespace, name)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        try:
            found: dict | None = await self.client.get("v1", plural, name, namespace)
        except ApiError as err:
            if not err.not_found:
                raise
            found = None
        if len(self._cache) > 4096:
            self._cache = {k: v for k, v in self._cache.items() if now - v[0] < self.ttl}
        self._cache[key] = (now, found)
        return found


@dataclass(frozen=True)
class _Token:
    token: bytes
    refresh_at: float


# -- the manager ------------------------------------------------------------------------


class VolumeManager:
    """Sets up, mounts, measures and removes the volumes of this node's pods."""

    def __init__(self, client: Client, *, pods_root: Path, node_name: str, data_dir: Path,
                 cache_seconds: float = CACHE_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.pods_root = pods_root
        self.node_name = node_name
        self.clock = clock
        self._reader = _Reader(client, cache_seconds)
        self._tokens: dict[tuple[str, str, str, int], _Token] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        #: Memory-medium emptyDirs that had to be plain directories (decided once).
        self._plain_memory_dirs: set[Path] = set()
        # One folder in /dev/shm per data dir, so two clusters on one machine never meet.
        tag = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
        self.shm_root = SHM / f"pilothouse-{tag}"

    # -- where things are -------------------------------------------------------------

    def _pod_dir(self, pod: Mapping[str, Any]) -> Path:
        meta = pod.get("metadata") or {}
        return self.pods_root / f"{meta.get('namespace')}_{meta.get('name')}_{meta.get('uid')}"

    def _volume_dir(self, pod: Mapping[str, Any], plugin: str, name: str) -> Path:
        return self._pod_dir(pod) / "volumes" / plugin / name

    # -- setting up -------------------------------------------------------------------

    async def prepare(self, pod: Mapping[str, Any]) -> dict[str, Path]:
        """Set up every volume of the pod (again: content is refreshed); name -> host path.

        Every volume is tried; if any failed, VolumeError lists them all.
        """
        uid = (pod.get("metadata") or {}).get("uid", "")
        lock = self._locks.setdefault(uid, asyncio.Lock())
        async with lock:
            paths: dict[str, Path] = {}
            failures: list[str] = []
            for volume in (pod.get("spec") or {}).get("volumes") or ():
                name = volume.get("name", "")
                try:
                    paths[name] = await self._set_up(pod, volume)
                except _SetUpFailed as err:
                    failures.append(f'MountVolume.SetUp failed for volume "{name}" : {err}')
                except VolumeError as err:
                    failures += err.messages
                except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as err:
                    failures.append(f'MountVolume.SetUp failed for volume "{name}" : '
                                    f"{_api_message(err)}")
            if failures:
                raise VolumeError(failures)
            return paths

    async def _set_up(self, pod: Mapping[str, Any], volume: Mapping[str, Any]) -> Path:
        name = volume.get("name", "")
        if "emptyDir" in volume:
            return await self._empty_dir(pod, volume)
        if "hostPath" in volume:
            source = volume["hostPath"] or {}
            path = source.get("path", "")
            await asyncio.to_thread(_check_host_path, path, source.get("type") or "")
            return Path(path)
        if "persistentVolumeClaim" in volume:
            return await self._claim(pod, volume["persistentVolumeClaim"] or {})
        for key, plugin in (("configMap", CONFIG_MAP), ("secret", SECRET),
                            ("downwardAPI", DOWNWARD_API), ("projected", PROJECTED)):
            if key in volume:
                payload = await self._payload(pod, key, volume[key] or {})
                target = self._volume_dir(pod, plugin, name)
                try:
                    await asyncio.to_thread(write_payload, target, payload)
                except ValueError as err:
                    raise _SetUpFailed(str(err)) from None
                return target
        kinds = sorted(set(volume) - {"name"})
        raise VolumeError(
            f'failed to get Plugin from volumeSpec for volume "{name}" err=no volume plugin '
            f"matched ({', '.join(kinds) or 'no source'}; this node supports {_SUPPORTED})")

    async def _payload(self, pod: Mapping[str, Any], key: str,
                       source: Mapping[str, Any]) -> dict[str, FileProjection]:
        default_mode = int(source.get("defaultMode", DEFAULT_MODE))
        if key in ("configMap", "secret"):
            return await self._key_source(pod, key, source, default_mode)
        if key == "downwardAPI":
            return _downward_payload(pod, source.get("items") or [], default_mode,
                                    await self._allocatable(source.get("items") or []))
        payload: dict[str, FileProjection] = {}
        problems: list[str] = []
        for projection in source.get("sources") or ():
            try:
                if projection.get("configMap") is not None:
                    part = await self._key_source(pod, "configMap", projection["configMap"],
                                                  default_mode)
                elif projection.get("secret") is not None:
                    part = await self._key_source(pod, "secret", projection["secret"],
                                                  default_mode)
                elif projection.get("downwardAPI") is not None:
                    items = projection["downwardAPI"].get("items") or []
                    part = _downward_payload(pod, items, default_mode,
                                            await self._allocatable(items))
                elif projection.get("serviceAccountToken") is not None:
                    token = projection["serviceAccountToken"]
                    part = {token.get("path", "token"): FileProjection(
                        await self._token(pod, token), default_mode)}
                else:
                    kinds = ", ".join(sorted(projection)) or "no source"
                    raise _SetUpFailed(f"unsupported projected volume source: {kinds}")
            except _SetUpFailed as err:
                problems.append(str(err))
                continue
            payload.update(part)
        if problems:
            raise _SetUpFailed(_aggregate(problems))
        return payload

    async def _key_source(self, pod: Mapping[str, Any], key: str, source: Mapping[str, Any],
                          default_mode: int) -> dict[str, FileProjection]:
        kind, plural, name = (("ConfigMap", "configmaps", source.get("name", ""))
                              if key == "configMap" else
                              ("Secret", "secrets", source.get("secretName")
                               or source.get("name", "")))
        optional = source.get("optional") is True
        namespace = (pod.get("metadata") or {}).get("namespace")
        try:
            obj = await self._reader.get(plural, namespace, name)
        except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as err:
            raise _SetUpFailed(_api_message(err)) from None
        if obj is None and not optional:
            raise _SetUpFailed(f'{kind.lower()} "{name}" not found')
        return _key_payload(kind, obj, source.get("items") or [], default_mode,
                           optional=optional)

    async def _allocatable(self, items: list[Mapping[str, Any]]) -> Mapping[str, str]:
        """The node's allocatable resources, read only when an item needs them."""
        if not any(item.get("resourceFieldRef") for item in items):
            return {}
        node = await self._reader.get("nodes", None, self.node_name) or {}
        return (node.get("status") or {}).get("allocatable") or {}

    async def _token(self, pod: Mapping[str, Any], source: Mapping[str, Any]) -> bytes:
        """A token bound to the pod, from the cache until 80% of its lifetime passed."""
        meta = pod.get("metadata") or {}
        account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        audience = source.get("audience") or ""
        seconds = int(source.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS)
        key = (meta.get("uid", ""), account, audience, seconds)
        cached = self._tokens.get(key)
        if cached is not None and self.clock() < cached.refresh_at:
            return cached.token
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "spec": {"audiences": [audience] if audience else [],
                            "expirationSeconds": seconds,
                            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
                                               "name": meta.get("name"),
                                               "uid": meta.get("uid")}}}
        try:
            answer = await self.client.create("v1", "serviceaccounts", request,
                                              meta.get("namespace"), subresource="token",
                                              name=account)
        except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as err:
            raise _SetUpFailed(f"failed to fetch token: {_api_message(err)}") from None
        status = answer.get("status") or {}
        lifetime = int((answer.get("spec") or {}).get("expirationSeconds") or seconds)
        expires = parse_time(status.get("expirationTimestamp"))
        expires_at = expires.timestamp() if expires else self.clock() + lifetime
        issued = expires_at - lifetime
        token = _Token(str(status.get("token", "")).encode(),
                       issued + lifetime * TOKEN_REFRESH_FRACTION)
        self._tokens[key] = token
        return token.token

    async def _claim(self, pod: Mapping[str, Any], source: Mapping[str, Any]) -> Path:
        namespace = (pod.get("metadata") or {}).get("namespace", "")
        claim_name = source.get("claimName", "")
        head = f"error processing PVC {namespace}/{claim_name}"
        claim = await self._reader.get("persistentvolumeclaims", namespace, claim_name)
        if claim is None:
            raise VolumeError(f"{head}: failed to fetch PVC from API server: "
                              f'persistentvolumeclaims "{claim_name}" not found')
        if (claim.get("metadata") or {}).get("deletionTimestamp"):
            raise VolumeError(f"{head}: PVC is being deleted")
        if (claim.get("status") or {}).get("phase") != "Bound":
            raise VolumeError(f"{head}: PVC is not bound")
        volume_name = (claim.get("spec") or {}).get("volumeName") or ""
        if not volume_name:
            raise VolumeError(f"{head}: PVC has empty pvc.Spec.VolumeName")
        volume = await self._reader.get("persistentvolumes", None, volume_name)
        if volume is None:
            raise VolumeError(f"{head}: failed to fetch PV {volume_name} from API server: "
                              f'persistentvolumes "{volume_name}" not found')
        spec = volume.get("spec") or {}
        claim_ref = spec.get("claimRef")
        claim_uid = (claim.get("metadata") or {}).get("uid")
        if not claim_ref:
            raise VolumeError(f"{head}: found PV object {volume_name} but it has a nil "
                              "pv.Spec.ClaimRef indicating it is not yet bound to the claim")
        if claim_ref.get("uid") != claim_uid:
            raise VolumeError(f"{head}: found PV object {volume_name} but its "
                              f"pv.Spec.ClaimRef.UID {claim_ref.get('uid')} does not point to "
                              f"claim.UID {claim_uid}")
        if not await self._node_admits(spec.get("nodeAffinity") or {}):
            raise VolumeError(f'MountVolume.NodeAffinity check failed for volume "{volume_name}" '
                              ": no matching NodeSelectorTerms")
        if spec.get("hostPath"):
            path = spec["hostPath"].get("path", "")
            try:
                await asyncio.to_thread(_check_host_path, path, spec["hostPath"].get("type") or "")
            except _SetUpFailed as err:
                raise VolumeError(f'MountVolume.SetUp failed for volume "{volume_name}" : '
                                  f"{err}") from None
            return Path(path)
        if spec.get("local"):
            path = spec["local"].get("path", "")
            if not os.path.exists(path):
                raise VolumeError(f"MountVolume.NewMounter initialization failed for volume "
                                  f'"{volume_name}" : path "{path}" does not exist')
            return Path(path)
        kinds = sorted(k for k in spec if k not in (
            "accessModes", "capacity", "claimRef", "persistentVolumeReclaimPolicy",
            "storageClassName", "mountOptions", "volumeMode", "nodeAffinity",
            "volumeAttributesClassName"))
        raise VolumeError(
            f'failed to get Plugin from volumeSpec for volume "{volume_name}" err=no volume '
            f"plugin matched ({', '.join(kinds) or 'no source'}; this node mounts "
            "PersistentVolumes with hostPath or local sources)")

    async def _node_admits(self, affinity: Mapping[str, Any]) -> bool:
        """CheckNodeAffinity: a PersistentVolume's required node affinity admits this node
        (a local-path volume lives on one node; elsewhere its directory would be empty)."""
        required = affinity.get("required")
        if not required:
            return True
        node = await self._reader.get("nodes", None, self.node_name) or {}
        labels = (node.get("metadata") or {}).get("labels") or {HOSTNAME_LABEL: self.node_name}
        fields = {"metadata.name": self.node_name}
        return any(node_selector_term_matches(term, labels, fields)
                   for term in required.get("nodeSelectorTerms") or ())

    # -- emptyDir ---------------------------------------------------------------------

    async def _empty_dir(self, pod: Mapping[str, Any], volume: Mapping[str, Any]) -> Path:
        source = volume.get("emptyDir") or {}
        name = volume.get("name", "")
        path = self._volume_dir(pod, EMPTY_DIR, name)
        medium = source.get("medium") or ""
        if medium == "Memory":
            return await self._memory_dir(pod, name, path, source.get("sizeLimit"))
        if medium:
            raise _SetUpFailed(f"emptyDir medium {medium} is not supported on this node "
                               "(use the default medium or Memory)")
        if not path.is_dir():
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, 0o777)
        return path

    async def _memory_dir(self, pod: Mapping[str, Any], name: str, path: Path,
                          size_limit: str | None) -> Path:
        """A tmpfs mount, else a /dev/shm directory, else a plain one (chosen once)."""
        if path.is_symlink():
            target = path.resolve()
            target.mkdir(parents=True, exist_ok=True)
            return target
        if path in self._plain_memory_dirs or os.path.ismount(path) or (
                path.is_dir() and any(path.iterdir())):
            return path
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o777)
        meta = pod.get("metadata") or {}
        where = f'emptyDir "{name}" of pod {meta.get("namespace")}/{meta.get("name")}'
        why = await self._mount_tmpfs(path, size_limit)
        if why is None:
            log.info("%s is a tmpfs mount%s", where,
                     f" of {canonical(size_limit)}" if size_limit else "")
            return path
        if SHM.is_dir() and os.access(SHM, os.W_OK):
            target = self.shm_root / meta.get("uid", "") / name
            target.mkdir(parents=True, exist_ok=True)
            os.chmod(target, 0o777)
            path.rmdir()
            path.symlink_to(target)
            log.info("%s is a directory in %s (no tmpfs mount: %s)", where, SHM, why)
            return target
        log.warning("%s is a plain directory on disk, not memory (no tmpfs mount: %s; no "
                    "writable %s)", where, why, SHM)
        self._plain_memory_dirs.add(path)
        return path

    @staticmethod
    async def _mount_tmpfs(path: Path, size_limit: str | None) -> str | None:
        """Mount a tmpfs on `path`; None on success, else why not."""
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            return "not running as root"
        options = "mode=0777" + (f",size={to_int(size_limit)}" if size_limit else "")
        try:
            proc = await asyncio.create_subprocess_exec(
                "mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        except OSError as err:
            return f"cannot run mount: {err}"
        _, err_output = await proc.communicate()
        if proc.returncode:
            return err_output.decode(errors="replace").strip() or f"mount exited {proc.returncode}"
        return None

    def usage_exceeded(self, pod: Mapping[str, Any]) -> str | None:
        """The eviction message if an emptyDir of the pod holds more than its sizeLimit."""
        for volume in (pod.get("spec") or {}).get("volumes") or ():
            source = volume.get("emptyDir")
            if not isinstance(source, Mapping) or not source.get("sizeLimit"):
                continue
            limit = parse_quantity(source["sizeLimit"])
            if limit <= 0:
                continue
            path = self._volume_dir(pod, EMPTY_DIR, volume.get("name", ""))
            if path.is_symlink():
                path = path.resolve()
            if path.is_dir() and disk_usage(path) > limit:
                return (f'Usage of EmptyDir volume "{volume.get("name")}" exceeds the limit '
                        f'"{canonical(source["sizeLimit"])}". ')
        return None

    # -- mounting into containers -----------------------------------------------------

    def mounts(self, pod: Mapping[str, Any], container: Mapping[str, Any],
               paths: Mapping[str, Path], *, env: Mapping[str, str] | None = None
               ) -> list[Mount]:
        """The container's volumeMounts as runtime mounts, in order.

        API data volumes (configMap, secret, downwardAPI, projected) are always
        read-only, as is a claim mounted `readOnly`. A subPath (or subPathExpr, expanded
        from `env`) names a file or directory inside the volume, created as a directory
        when missing; one that leaves the volume is refused. Raises VolumeError, which
        the kubelet shows as CreateContainerConfigError.
        """
        volumes = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or ()}
        container_name = container.get("name", "")
        out = []
        for mount in container.get("volumeMounts") or ():
            name = mount.get("name", "")
            if name not in paths or name not in volumes:
                raise VolumeError(f'cannot find volume "{name}" to mount into container '
                                  f'"{container_name}"')
            volume = volumes[name]
            host = paths[name]
            read_only = bool(mount.get("readOnly")) or any(
                k in volume for k in _API_DATA_TYPES) or bool(
                (volume.get("persistentVolumeClaim") or {}).get("readOnly"))
            sub_path = mount.get("subPath") or ""
            if mount.get("subPathExpr"):
                sub_path = _expand_sub_path(mount["subPathExpr"], env or {})
            if sub_path:
                host = _sub_path(host, sub_path, mount_name=name, container=container_name,
                                 api_data=any(k in volume for k in _API_DATA_TYPES))
            out.append(Mount(host, mount.get("mountPath", ""), read_only))
        return out

    # -- removing ---------------------------------------------------------------------

    async def release_memory(self, pod_dir: Path) -> None:
        """Unmount the pod's tmpfs emptyDirs (their content goes, as memory does when a node
        shuts down); `prepare` mounts them afresh when the pod runs again."""
        empty_dirs = pod_dir / "volumes" / EMPTY_DIR
        if empty_dirs.is_dir():
            for entry in empty_dirs.iterdir():
                if not entry.is_symlink() and os.path.ismount(entry):
                    await _unmount(entry)

    async def cleanup(self, pod_uid: str, pod_dir: Path) -> None:
        """Remove what the pod's volumes keep in its folder (and in /dev/shm); unmount its
        tmpfs emptyDirs. hostPath and PersistentVolume data are never touched."""
        await self.release_memory(pod_dir)
        await asyncio.to_thread(shutil.rmtree, self.shm_root / pod_uid, True)
        await asyncio.to_thread(shutil.rmtree, pod_dir / "volumes", True)
        self._locks.pop(pod_uid, None)
        self._plain_memory_dirs = {p for p in self._plain_memory_dirs
                                   if not p.is_relative_to(pod_dir)}
        for key in [k for k in self._tokens if k[0] == pod_uid]:
            del self._tokens[key]


async def _unmount(path: Path) -> None:
    try:
        proc = await asyncio.create_subprocess_exec(
            "umount", str(path), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
    except OSError as err:
        log.warning("cannot unmount %s: %s", path, err)
        return
    _, err_output = await proc.communicate()
    if proc.returncode:
        log.warning("cannot unmount %s: %s", path, err_output.decode(errors="replace").strip())


def disk_usage(path: Path) -> int:
    """Bytes the tree at `path` occupies on disk, as `du` counts them (links not followed)."""
    total = 0
    stack = [str(path)]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            total += getattr(info, "st_blocks", 0) * 512 or info.st_size
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
    return total


class _NotingMissing(dict):
    """The container's variables for subPathExpr: an absent or empty one expands to ""
    and is noted, as ExpandContainerVolumeMounts does."""

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__(env)
        self.missing: set[str] = set()

    def __contains__(self, key: object) -> bool:
        if not self.get(key):
            self.missing.add(str(key))
        return True

    def __getitem__(self, key: str) -> str:
        return self.get(key) or ""


def _expand_sub_path(expression: str, env: Mapping[str, str]) -> str:
    """subPathExpr: every $(VAR) must name a variable with a non-empty value."""
    variables = _NotingMissing(env)
    expanded = expand(expression, variables)
    if variables.missing:
        raise VolumeError(f"missing value for {', '.join(sorted(variables.missing))}")
    return expanded


def _sub_path(volume_path: Path, sub_path: str, *, mount_name: str, container: str,
              api_data: bool) -> Path:
    """The host path of a subPath inside a volume (made a directory when missing).

    The path is resolved and must stay inside the volume. For API data volumes the
    user-visible path is kept (its symlinks are ours, and they follow updates); for
    the others the resolved path, so a link the pod swaps later cannot redirect it.
    """
    if sub_path.startswith("/"):
        raise VolumeError(f"error SubPath `{sub_path}` must not be an absolute path")
    if ".." in sub_path.split("/"):
        raise VolumeError(f"unable to provision SubPath `{sub_path}`: must not contain '..'")
    wanted = volume_path / sub_path
    if not os.path.lexists(wanted):
        try:
            wanted.mkdir(parents=True, mode=stat.S_IMODE(volume_path.stat().st_mode))
        except OSError as err:
            if err.errno != errno.EEXIST:
                log.warning("creating subPath %s failed: %s", wanted, err)
                raise VolumeError(f'failed to create subPath directory for volumeMount '
                                  f'"{mount_name}" of container "{container}"') from None
    resolved = Path(os.path.realpath(wanted))
    root = Path(os.path.realpath(volume_path))
    outside = resolved != root and root not in resolved.parents
    if outside or not resolved.exists():
        log.warning("subPath %s of volume %s resolves to %s, outside the volume", sub_path,
                    volume_path, resolved)
        raise VolumeError(f'failed to prepare subPath for volumeMount "{mount_name}" of '
                          f'container "{container}"')
    return wanted if api_data else resolved
