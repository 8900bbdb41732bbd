"""Admission: the plugins that see every write after defaulting, before it is stored.

As in kube-apiserver, a write passes every plugin's `mutate` (which may change the object:
LimitRange defaults, default tolerations) after the kind's own defaulting, and every
plugin's `validate` (which may only refuse: ResourceQuota) after the kind's validation.
A refusal is an APIError (403 Forbidden for quota, as a real cluster answers) and the
write changes nothing. Plugins read other objects through the registry they are given.

Dynamic admission (the webhooks of webhooks.py) runs after this chain's `mutate` and before
its `validate`, and is asked with an `AdmissionRequest`, the attributes of the write.

The chain, in kube-apiserver's order: LimitRanger (defaults a new pod's container
resources from the namespace's LimitRanges, then enforces their min/max/ratio on pods and
claims), ServiceAccount (a new pod runs as an existing service account, `default` unless
it names one, and gets the `kube-api-access-*` volume with its token, the cluster CA and
its namespace), Priority (spec.priority from the PriorityClass), DefaultTolerationSeconds
(pods tolerate a not-ready or unreachable node for five minutes), DefaultStorageClass (a
new claim that names no class gets the default one), ResourceQuota (refuses and charges
usage; see quota.py).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

from ..machinery import errors
from ..machinery import quota as q
from ..machinery.meta import generate_name, now
from ..machinery.quantity import parse_quantity
from . import quota
from .registry.builtin import BUILTIN_RESOURCES

if TYPE_CHECKING:
    from .rbac import UserInfo
    from .registry import Resource
    from .registry.generic import GenericRegistry

LIMIT_RANGES = next(r for r in BUILTIN_RESOURCES if (r.group, r.plural) == ("", "limitranges"))
PRIORITY_CLASSES = next(r for r in BUILTIN_RESOURCES
                        if (r.group, r.plural) == ("scheduling.k8s.io", "priorityclasses"))
STORAGE_CLASSES = next(r for r in BUILTIN_RESOURCES
                       if (r.group, r.plural) == ("storage.k8s.io", "storageclasses"))
SERVICE_ACCOUNTS = next(r for r in BUILTIN_RESOURCES if (r.group, r.plural) == (
    "", "serviceaccounts"))
DEFAULT_PREEMPTION_POLICY = "PreemptLowerPriority"
LIMIT_RANGER_ANNOTATION = "kubernetes.io/limit-ranger"
DEFAULT_TOLERATION_SECONDS = 300
NODE_NOT_READY = "node.kubernetes.io/not-ready"
NODE_UNREACHABLE = "node.kubernetes.io/unreachable"
DEFAULT_CLASS_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class",
                             "storageclass.beta.kubernetes.io/is-default-class")
BETA_STORAGE_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"
DEFAULT_SERVICE_ACCOUNT = "default"
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
SERVICE_ACCOUNT_VOLUME_PREFIX = "kube-api-access-"
DEFAULT_API_TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
ROOT_CA_CONFIG_MAP = "kube-root-ca.crt"
#: An hour and 7 s: the odd figure marks the tokens this volume asks for, as upstream's
#: WarnOnlyBoundTokenExpirationSeconds does.
TOKEN_EXPIRATION_SECONDS = 3607
#: Looking up `default`, which its controller creates just after the namespace, is tried
#: this often, 100-200 ms apart, before the pod is refused (as upstream's getServiceAccount).
DEFAULT_ACCOUNT_LOOKUPS = 10


@dataclass
class AdmissionRequest:
    """What one write asks of admission (admission.Attributes)."""

    resource: Resource
    operation: str  # CREATE | UPDATE | DELETE
    namespace: str
    name: str
    obj: dict[str, Any] | None
    old: dict[str, Any] | None
    subresource: str = ""
    dry_run: bool = False
    options: dict[str, Any] | None = None
    user: UserInfo | None = None
    #: The kind the objects are (autoscaling/v1 Scale for `scale`); the resource's own if None.
    kind: tuple[str, str, str] | None = None

    def gvk(self) -> tuple[str, str, str]:
        res = self.resource
        return self.kind or (res.group, res.version, res.kind)


class AdmissionPlugin:
    """Override either phase; `old` is None on create."""

    async def mutate(self, registry: GenericRegistry, res: Resource, obj: dict[str, Any],
                     old: dict[str, Any] | None) -> None:
        return None

    async def validate(self, registry: GenericRegistry, res: Resource, obj: dict[str, Any],
                       old: dict[str, Any] | None, *, dry_run: bool) -> None:
        return None


def _is_pod(res: Resource) -> bool:
    return (res.group, res.plural) == q.PODS


# -- LimitRanger -------------------------------------------------------------------------


def _aggregate(problems: list[str]) -> str:
    """utilerrors.NewAggregate(...).Error(): one message, or `[a, b]` without repeats."""
    unique = list(dict.fromkeys(problems))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


def _min_problem(kind: str, name: str, enforced: str, requests: dict, limits: dict) -> str | None:
    if name not in requests:
        return f"minimum {name} usage per {kind} is {enforced}.  No request is specified"
    if parse_quantity(enforced) > parse_quantity(requests[name]):
        return f"minimum {name} usage per {kind} is {enforced}, but request is {requests[name]}"
    if name in limits and parse_quantity(enforced) > parse_quantity(limits[name]):
        return f"minimum {name} usage per {kind} is {enforced}, but limit is {limits[name]}"
    return None


def _max_problem(kind: str, name: str, enforced: str, requests: dict, limits: dict) -> str | None:
    if name not in limits:
        return f"maximum {name} usage per {kind} is {enforced}.  No limit is specified"
    if parse_quantity(limits[name]) > parse_quantity(enforced):
        return f"maximum {name} usage per {kind} is {enforced}, but limit is {limits[name]}"
    if name in requests and parse_quantity(requests[name]) > parse_quantity(enforced):
        return f"maximum {name} usage per {kind} is {enforced}, but request is {requests[name]}"
    return None


def _max_request_problem(kind: str, name: str, enforced: str, requests: dict) -> str | None:
    """The max of a kind without limits (claims): checked against the request."""
    if name not in requests:
        return f"maximum {name} usage per {kind} is {enforced}.  No request is specified"
    if parse_quantity(requests[name]) > parse_quantity(enforced):
        return f"maximum {name} usage per {kind} is {enforced}, but request is {requests[name]}"
    return None


def _ratio_problem(kind: str, name: str, enforced: str, requests: dict,
                   limits: dict) -> str | None:
    request = abs(parse_quantity(requests[name])) if name in requests else Decimal(0)
    limit = abs(parse_quantity(limits[name])) if name in limits else Decimal(0)
    head = f"{name} max limit to request ratio per {kind} is {enforced}"
    if not request:
        return f"{head}, but no request is specified or request is 0"
    if not limit:
        return f"{head}, but no limit is specified or limit is 0"
    if limit > request * parse_quantity(enforced):
        ratio = (limit / request).quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN)
        return f"{head}, but provided ratio is {ratio}"
    return None


def _check_item(item: dict[str, Any], requests: dict, limits: dict) -> list[str]:
    """The min, max and maxLimitRequestRatio problems of one Container or Pod item."""
    kind = item["type"]
    problems = [
        *(_min_problem(kind, n, v, requests, limits) for n, v in sorted(
            (item.get("min") or {}).items())),
        *(_max_problem(kind, n, v, requests, limits) for n, v in sorted(
            (item.get("max") or {}).items())),
        *(_ratio_problem(kind, n, v, requests, limits) for n, v in sorted(
            (item.get("maxLimitRequestRatio") or {}).items())),
    ]
    return [p for p in problems if p]


def _default_container_resources(limit_range: dict[str, Any]) -> tuple[dict, dict]:
    """(requests, limits) a LimitRange's Container items give containers that lack them."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    for item in (limit_range.get("spec") or {}).get("limits") or []:
        if item.get("type") == "Container":
            requests.update(item.get("defaultRequest") or {})
            limits.update(item.get("default") or {})
    return requests, limits


def _merge_defaults(pod: dict[str, Any], requests: dict, limits: dict) -> None:
    """Fill containers' missing requests and limits; say what was set in the annotation."""
    if not requests and not limits:
        return
    notes: list[str] = []
    spec = pod.get("spec") or {}
    for key, label in (("containers", "container"), ("initContainers", "init container")):
        for container in spec.get(key) or []:
            resources = container.setdefault("resources", {})
            own_requests = resources.setdefault("requests", {})
            own_limits = resources.setdefault("limits", {})
            set_requests = sorted(n for n in requests if n not in own_requests)
            set_limits = sorted(n for n in limits if n not in own_limits)
            own_requests.update({n: requests[n] for n in set_requests})
            own_limits.update({n: limits[n] for n in set_limits})
            for name in ("requests", "limits"):
                if not resources[name]:
                    del resources[name]
            name = container.get("name", "")
            if set_requests:
                notes.append(f"{', '.join(set_requests)} request for {label} {name}")
            if set_limits:
                notes.append(f"{', '.join(set_limits)} limit for {label} {name}")
    if notes:
        annotations = pod.setdefault("metadata", {}).setdefault("annotations", {})
        annotations[LIMIT_RANGER_ANNOTATION] = "LimitRanger plugin set: " + "; ".join(notes)


def _pod_problems(limit_range: dict[str, Any], pod: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    spec = pod.get("spec") or {}
    containers = [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
    for item in (limit_range.get("spec") or {}).get("limits") or []:
        if item.get("type") == "Container":
            for container in containers:
                resources = container.get("resources") or {}
                problems += _check_item(item, resources.get("requests") or {},
                                        resources.get("limits") or {})
        elif item.get("type") == "Pod":
            problems += _check_item(item, q.pod_requests(pod, overhead=False),
                                    q.pod_limits(pod, overhead=False))
    return problems


def _claim_problems(limit_range: dict[str, Any], claim: dict[str, Any],
                    old: dict[str, Any] | None) -> list[str]:
    """Storage min/max on a claim's requests; a request an update leaves alone passes."""
    def requests_of(pvc: dict[str, Any] | None) -> dict[str, str]:
        return (((pvc or {}).get("spec") or {}).get("resources") or {}).get("requests") or {}

    requests, old_requests = requests_of(claim), requests_of(old)

    def unchanged(name: str) -> bool:
        return name in requests and name in old_requests and parse_quantity(
            requests[name]) == parse_quantity(old_requests[name])

    problems: list[str | None] = []
    for item in (limit_range.get("spec") or {}).get("limits") or []:
        if item.get("type") != "PersistentVolumeClaim":
            continue
        kind = item["type"]
        problems += [_min_problem(kind, n, v, requests, {})
                     for n, v in sorted((item.get("min") or {}).items()) if not unchanged(n)]
        problems += [_max_request_problem(kind, n, v, requests)
                     for n, v in sorted((item.get("max") or {}).items()) if not unchanged(n)]
    return [p for p in problems if p]


class LimitRanger(AdmissionPlugin):
    """LimitRange defaults (new pods) and limits (new pods, claims created or resized)."""

    @staticmethod
    def _applies(res: Resource, old: dict[str, Any] | None) -> bool:
        if (old or {}).get("metadata", {}).get("deletionTimestamp"):
            return False
        if _is_pod(res):
            return old is None  # a pod's containers cannot change after create
        return (res.group, res.plural) == q.PERSISTENT_VOLUME_CLAIMS

    @staticmethod
    async def _limit_ranges(registry: GenericRegistry, obj: dict[str, Any]) -> list[dict]:
        namespace = (obj.get("metadata") or {}).get("namespace")
        return (await registry.list(LIMIT_RANGES, namespace)).items if namespace else []

    async def mutate(self, registry: GenericRegistry, res: Resource, obj: dict[str, Any],
                     old: dict[str, Any] | None) -> None:
        if not _is_pod(res) or not self._applies(res, old):
            return
        limit_ranges = await self._limit_ranges(registry, obj)
        for limit_range in limit_ranges:
            _merge_defaults(obj, *_default_container_resources(limit_range))

    async def validate(self, registry: GenericRegistry, res: Resource, obj: dict[str, Any],
                       old: dict[str, Any] | None, *, dry_run: bool) -> None:
        if not self._applies(res, old):
            return
        for limit_range in await self._limit_ranges(registry, obj):
            if _is_pod(res):
                problems = _pod_problems(limit_range, obj)
            else:
                problems = _claim_problems(limit_range, obj, old)
            if problems:
                raise quota.forbidden(res, obj, _aggregate(problems))


# -- ServiceAccount ----------------------------------------------------------------------


def token_volume_source() -> dict[str, Any]:
    """The projected source of `kube-api-access-*`: a bound token, the CA, the namespace."""
    return {"sources": [
        {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                                 "path": "token"}},
        {"configMap": {"name": ROOT_CA_CONFIG_MAP,
                       "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ], "defaultMode": 0o644}


def _should_automount(account: dict[str, Any], spec: dict[str, Any]) -> bool:
    """The pod's automountServiceAccountToken wins, then the account's; else true."""
    for source in (spec, account):
        if isinstance(source.get("automountServiceAccountToken"), bool):
            return source["automountServiceAccountToken"]
    return True


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The dict items of a list field; validation, later, refuses anything else."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _projections(volume: dict[str, Any]) -> list[dict[str, Any]]:
    projected = volume.get("projected")
    return _dicts(projected.get("sources")) if isinstance(projected, dict) else []


def mount_service_account_token(spec: dict[str, Any]) -> None:
    """Every container and init container not already mounting the token path mounts
    the `kube-api-access-*` volume there; the volume is added if someone mounts it."""
    volumes = _dicts(spec.get("volumes"))
    existing = next((v["name"] for v in volumes if str(v.get("name", "")).startswith(
        SERVICE_ACCOUNT_VOLUME_PREFIX)), None)
    name = existing or generate_name(SERVICE_ACCOUNT_VOLUME_PREFIX)
    mounted = False
    for key in ("initContainers", "containers"):
        for container in _dicts(spec.get(key)):
            mounts = _dicts(container.get("volumeMounts"))
            if any(m.get("mountPath") == DEFAULT_API_TOKEN_MOUNT_PATH for m in mounts):
                continue
            own = container.get("volumeMounts")
            container["volumeMounts"] = [*(own if isinstance(own, list) else []), {
                "name": name, "readOnly": True, "mountPath": DEFAULT_API_TOKEN_MOUNT_PATH}]
            mounted = True
    if mounted and existing is None:
        own = spec.get("volumes")
        spec["volumes"] = [*(own if isinstance(own, list) else []),
                           {"name": name, "projected": token_volume_source()}]


def _references_secrets(spec: dict[str, Any]) -> bool:
    """Whether a pod names any Secret: pull secrets, env, secret or projected volumes."""
    if spec.get("imagePullSecrets"):
        return True
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in _dicts(spec.get(key)):
            if any((e.get("valueFrom") or {}).get("secretKeyRef")
                   for e in _dicts(container.get("env"))):
                return True
            if any(e.get("secretRef") for e in _dicts(container.get("envFrom"))):
                return True
    for volume in _dicts(spec.get("volumes")):
        if volume.get("secret") is not None or any(
                s.get("secret") is not None for s in _projections(volume)):
            return True
        if any(isinstance(source, dict) and (source.get("secretRef")
                                             or source.get("nodePublishSecretRef"))
               for source in volume.values()) or (volume.get("azureFile") or {}).get(
                   "secretName"):
            return True
    return False


def _mirror_pod_problem(spec: dict[str, Any]) -> str | None:
    """What a mirror pod may not reference, as upstream's Validate refuses it."""
    if spec.get("serviceAccountName") or spec.get("serviceAccount"):
        return "a mirror pod may not reference service accounts"
    if _references_secrets(spec):
        return "a mirror pod may not reference secrets"
    if any(s.get("serviceAccountToken") is not None for v in _dicts(spec.get("volumes"))
           for s in _projections(v)):
        return "a mirror pod may not use ServiceAccountToken volume projections"
    return None


class ServiceAccount(AdmissionPlugin):
    """A new pod runs as a service account that exists: `default` unless it names one
    (spec.serviceAccountName, else the deprecated spec.serviceAccount, which is kept
    equal to it). Unless the pod (or, if the pod is silent, the account) sets
    automountServiceAccountToken false, the pod gets the projected `kube-api-access-*`
    volume, mounted read-only at the token path in every container that does not mount
    something there itself. A pod without pull secrets gets the account's. Mirror pods
    are left as they are, and may not reference accounts, secrets or tokens."""

    async def mutate(self, registry: GenericRegistry, res: Resource, obj: dict[str, Any],
                     old: dict[str, Any] | None) -> None:
        spec = obj.get("spec")
        if not _is_pod(res) or old is not None or not isinstance(spec, dict):
            return
        meta = obj.get("metadata") or {}
        if MIRROR_POD_ANNOTATION in (meta.get("annotations") or {}):
            problem = _mirror_pod_problem(spec)
            if problem:
                raise quota.forbidden(res, obj, problem)
            return
        name = spec.get("serviceAccountName") or spec.get("serviceAccount") or (
            DEFAULT_SERVICE_ACCOUNT)
        if not isinstance(name, str):
            return  # validation refuses it
        spec["serviceAccountName"] = spec["serviceAccount"] = name
        namespace = meta.get("namespace", "")
        try:
            account = await self._service_account(registry, namespace, name)
        except errors.APIError as err:
            raise quota.forbidden(res, obj, f"error looking up service account "
                                  f"{namespace}/{name}: {err.message}") from None
        if _should_automount(account, spec):
            mount_service_account_token(spec)
        if not spec.get("imagePullSecrets") and account.get("imagePullSecrets"):
            spec["imagePullSecrets"] = [{"name": s.get("name", "")}
                                        for s in account["imagePullSecrets"]]

    @staticmethod
    async def _service_account(registry: GenericRegistry, namespace: str,
                               name: str) -> dict[str, Any]:
        """The account; `default` is waited for a little, as its controller may not have
        created it yet in a namespace just made. NotFound names it as upstream does."""
        attempts = DEFAULT_ACCOUNT_LOOKUPS if name == DEFAULT_SERVICE_ACCOUNT else 1
        interval = random.uniform(0.1, 0.2)
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(interval)
            try:
                return await registry.get(SERVICE_ACCOUNTS, namespace, name)
            except errors.APIError as err:
                if err.code != 404:
                    raise
        raise errors.APIError(404, "NotFound", f'serviceaccount "{name}" not found',
                              name=name, kind="serviceaccount")


# -- DefaultTolerationSeconds ------------------------------------------------------------


def _tolerates(tolerations: list[dict[str, Any]], key: str) -> bool:
    return any(t.get("key") in (key, "", None) and t.get("effect") in ("NoExecute", "", None)
               for t in tolerations)


class Priority(AdmissionPlugin):
    """A new pod's spec.priority and preemptionPolicy come from its PriorityClass (or the
    globalDefault one, else 0), as the Priority admission plugin sets them; a pod may not
    state its own values, and naming a missing class is refused."""

    async def mutate(self, registry: GenericRegistry, res: Resource, obj: dict[str, Any],
                     old: dict[str, Any] | None) -> None:
        spec = obj.get("spec")
        if not _is_pod(res) or old is not None or not isinstance(spec, dict):
            return
        name = spec.get("priorityClassName")
        pod_name = (obj.get("metadata") or {}).get("name", "")
        if name:
            try:
                chosen: dict[str, Any] | None = await registry.get(PRIORITY_CLASSES, None, name)
            except errors.APIError as err:
                if err.code != 404:
                    raise
                raise errors.APIError(
                    403, "Forbidden", f'pods "{pod_name}" is forbidden: no PriorityClass with '
                    f"name {name} was found", name=pod_name, kind="pods") from None
        else:
            classes = (await registry.list(PRIORITY_CLASSES, None)).items
            defaults = [c for c in classes if c.get("globalDefault")]
            chosen = min(defaults, key=lambda c: c.get("value", 0)) if defaults else None
            if chosen is not None:
                spec["priorityClassName"] = chosen["metadata"]["name"]
        value = chosen.get("value", 0) if chosen else 0
        policy = (chosen or {}).get("preemptionPolicy") or DEFAULT_PREEMPTION_POLICY
        if spec.get("priority") is not None and spec["priority"] != value:
            raise errors.APIError(
                403, "Forbidden", f'pods "{pod_name}" is forbidden: the integer value of '
                f"priority ({spec['priority']}) must not be provided in pod spec; priority "
                f"admission controller computed {value} from the given PriorityClass name",
                name=pod_name, kind="pods")
        if spec.get("preemptionPolicy") and spec["preemptionPolicy"] != policy:
            raise errors.APIError(
                403, "Forbidden", f'pods "{pod_name}" is forbidden: the string value of '
                f"PreemptionPolicy ({spec['preemptionPolicy']}) must not be provided in pod "
                f"spec; priority admission controller computed {policy} from the given "
                "PriorityClass name", name=pod_name, kind="pods")
        spec["priority"] = value
        spec["preemptionPolicy"] = policy


class DefaultTolerationSeconds(AdmissionPlugin):
    """Pods tolerate a not-ready or unreachable node for 300 s (the API server's
    --default-not-ready/unreachable-toleration-seconds) unless they say otherwise."""

    def __init__(self, *, not_ready_seconds: int = DEFAULT_TOLERATION_SECONDS,
                 unreachable_seconds: int = DEFAULT_TOLERATION_SECONDS) -> None:
        self.seconds = {NODE_NOT_READY: not_ready_seconds,
                        NODE_UNREACHABLE: unreachable_seconds}

    async def mutate(self, registry: GenericRegistry, res: Resource, obj: dict[str, Any],
                     old: dict[str, Any] | None) -> None:
        if not _is_pod(res):
            return
        spec = obj.get("spec")
        if not isinstance(spec, dict) or (old is not None and spec == old.get("spec")):
            return  # a status write leaves the pod proper alone
        tolerations = spec.get("tolerations")
        if not isinstance(tolerations, list):
            tolerations = []
        for key in (NODE_NOT_READY, NODE_UNREACHABLE):
            if not _tolerates(tolerations, key):
                tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                    "tolerationSeconds": self.seconds[key]})
        if tolerations:
            spec["tolerations"] = tolerations


# -- DefaultStorageClass ----------------------------------------------------------------


def default_storage_class(classes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The class annotated as the default; of several, the newest (then the first by name),
    as upstream's GetDefaultClass picks."""
    defaults = [c for c in classes
                if any(((c.get("metadata") or {}).get("annotations") or {}).get(key) == "true"
                       for key in DEFAULT_CLASS_ANNOTATIONS)]
    if not defaults:
        return None
    defaults.sort(key=lambda c: c["metadata"].get("name", ""))
    defaults.sort(key=lambda c: c["metadata"].get("creationTimestamp") or "", reverse=True)
    return defaults[0]


class DefaultStorageClass(AdmissionPlugin):
    """A claim created without a class (no spec.storageClassName at all, nor the beta
    annotation) gets the default StorageClass; `storageClassName: ""` asks for none and is
    left alone. No default class: the claim stays without one."""

    async def mutate(self, registry: GenericRegistry, res: Resource, obj: dict[str, Any],
                     old: dict[str, Any] | None) -> None:
        if (res.group, res.plural) != q.PERSISTENT_VOLUME_CLAIMS or old is not None:
            return
        spec = obj.get("spec")
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if not isinstance(spec, dict) or spec.get("storageClassName") is not None or (
                BETA_STORAGE_CLASS_ANNOTATION in annotations):
            return
        chosen = default_storage_class((await registry.list(STORAGE_CLASSES, None)).items)
        if chosen is not None:
            spec["storageClassName"] = chosen["metadata"]["name"]


# -- ResourceQuota -----------------------------------------------------------------------


class ResourceQuota(AdmissionPlugin):
    """Refuse writes that would exceed a quota in the namespace; charge those admitted."""

    async def validate(self, registry: GenericRegistry, res: Resource, obj: dict[str, Any],
                       old: dict[str, Any] | None, *, dry_run: bool) -> None:
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace")
        if not namespace or not quota.handles(res, old):
            return
        quotas = (await registry.list(quota.RESOURCE_QUOTAS, namespace)).items
        if not quotas:
            return
        charges = quota.check_request(quotas, res, obj, old, now())
        if dry_run or not charges:
            return
        if old is None and await registry.store.get(res.key(namespace, meta["name"])):
            return  # the create fails as AlreadyExists: nothing to charge
        await quota.charge(registry, res, obj, namespace, charges)


def default_plugins(*, not_ready_toleration_seconds: int = DEFAULT_TOLERATION_SECONDS,
                    unreachable_toleration_seconds: int = DEFAULT_TOLERATION_SECONDS
                    ) -> list[AdmissionPlugin]:
    """The admission chain the server runs, in order."""
    return [LimitRanger(),
            ServiceAccount(),
            Priority(),
            DefaultTolerationSeconds(not_ready_seconds=not_ready_toleration_seconds,
                                     unreachable_seconds=unreachable_toleration_seconds),
            DefaultStorageClass(),
            ResourceQuota()]

