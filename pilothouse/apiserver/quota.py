"""ResourceQuota admission: refuse a write that would exceed a quota, and charge the quota.

As kube-apiserver's ResourceQuota plugin (k8s.io/apiserver/pkg/admission/plugin/resourcequota):
every quota in the namespace that governs the object (a resource in common, every scope
matched) must already report its usage; the object's usage (or, on update, the growth of
it) is added to `status.used` and compared with `status.hard`. A refusal is 403 Forbidden,
worded as the real server words it. An accepted write is charged by writing the new
`status.used` before the object is stored, each quota under compare-and-swap and checked
again against the fresh quota, so two concurrent creates cannot both take the last unit.
The resource quota controller later recounts `status.used` from the objects that exist,
which is what releases quota when objects are deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..machinery import errors
from ..machinery import quota as q
from .registry.builtin import BUILTIN_RESOURCES

if TYPE_CHECKING:
    from .registry import Resource
    from .registry.generic import GenericRegistry

RESOURCE_QUOTAS = next(r for r in BUILTIN_RESOURCES if (r.group, r.plural) == ("", "resourcequotas"))

#: Kinds quota never counts (as the real plugin's default ignored resources).
IGNORED: frozenset[q.Kind] = frozenset({
    ("", "events"), ("events.k8s.io", "events"), ("", "bindings"), ("", "componentstatuses"),
})
#: Kinds whose usage an update can change (a Service's type, a claim's size).
_CHARGED_ON_UPDATE = frozenset({q.SERVICES, q.PERSISTENT_VOLUME_CLAIMS})


@dataclass(frozen=True)
class Charge:
    """What one admitted write adds to one quota's `status.used`."""

    quota: str
    requested: q.ResourceList


def forbidden(res: Resource, obj: Mapping[str, Any], message: str) -> errors.APIError:
    """admission.NewForbidden: `pods "x" is forbidden: <why>`."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") or meta.get("generateName") or "Unknown"
    return errors.APIError(403, "Forbidden", f'{res.qualified()} "{name}" is forbidden: {message}',
                           name=name, group=res.group, kind=res.plural)


def handles(res: Resource, old: Mapping[str, Any] | None) -> bool:
    """Whether quota looks at this write: creates, and updates of kinds an update re-sizes."""
    kind = (res.group, res.plural)
    if not res.namespaced or not res.stored or kind in IGNORED:
        return False
    return old is None or kind in _CHARGED_ON_UPDATE


def _exceeded_message(name: str, requested: q.ResourceList, used: q.ResourceList,
                      hard: q.ResourceList, over: list[str]) -> str:
    return (f"exceeded quota: {name}, requested: {q.pretty(q.mask(requested, over))}, "
            f"used: {q.pretty(q.mask(used, over))}, limited: {q.pretty(q.mask(hard, over))}")


def check_request(quotas: list[dict[str, Any]], res: Resource, obj: dict[str, Any],
                  old: dict[str, Any] | None, now: datetime) -> list[Charge]:
    """What admitting `obj` costs each governing quota; raises 403 if any would be exceeded."""
    kind = (res.group, res.plural)
    governing: list[dict[str, Any]] = []
    for quota in quotas:
        status = quota.get("status") or {}
        hard = status.get("hard") or {}
        if not q.matches(quota, hard, kind, obj):
            continue
        restricted = q.matching_resources(kind, hard)
        if kind == q.PODS:
            missing = q.pod_constraints(restricted, obj)
            if missing:
                raise forbidden(res, obj, f"failed quota: {quota['metadata']['name']}: {missing}")
        used = status.get("used") or {}
        unknown = [name for name in restricted if name not in used]
        if unknown:
            raise forbidden(res, obj, f"status unknown for quota: {quota['metadata']['name']}, "
                                      f"resources: {','.join(sorted(restricted))}")
        governing.append(quota)
    if not governing:
        return []
    wanted = q.usage(kind, obj, now)
    negative = q.negative(wanted)
    if negative:
        raise forbidden(res, obj, f"quota usage is negative for resource(s): {','.join(negative)}")
    previous = q.usage(kind, old, now) if old is not None else None
    charges = []
    for quota in governing:
        status = quota["status"]
        hard, used = status["hard"], status["used"]
        delta = wanted
        if previous is not None and q.matches(quota, hard, kind, old or {}):
            delta = q.subtract_non_negative(wanted, previous)
        requested = q.remove_zeros(q.mask(delta, hard))
        if not requested:
            continue
        over = q.exceeded(q.mask(q.add(used, requested), requested), hard)
        if over:
            raise forbidden(res, obj, _exceeded_message(quota["metadata"]["name"], requested,
                                                        used, hard, over))
        charges.append(Charge(quota["metadata"]["name"], requested))
    return charges


async def charge(registry: GenericRegistry, res: Resource, obj: dict[str, Any],
                 namespace: str, charges: list[Charge]) -> None:
    """Add each charge to its quota's `status.used`, re-checked against the stored quota.

    If a later quota refuses (another write took the room meanwhile), the charges already
    made are handed back before the refusal is raised.
    """
    done: list[Charge] = []

    def add_to(entry: Charge) -> Any:
        def change(quota: dict[str, Any]) -> None:
            status = quota.setdefault("status", {})
            hard, used = status.get("hard") or {}, status.get("used") or {}
            over = q.exceeded(q.mask(q.add(used, entry.requested), entry.requested), hard)
            if over:
                raise forbidden(res, obj, _exceeded_message(entry.quota, entry.requested, used,
                                                            hard, over))
            status["used"] = q.add(used, entry.requested)
        return change

    def take_back(entry: Charge) -> Any:
        def change(quota: dict[str, Any]) -> None:
            status = quota.setdefault("status", {})
            used = status.get("used") or {}
            status["used"] = q.mask(q.subtract_non_negative(used, entry.requested), used)
        return change

    try:
        for entry in charges:
            try:
                await registry.mutate(RESOURCE_QUOTAS, namespace, entry.quota, add_to(entry))
            except errors.APIError as err:
                if err.code != 404:  # a quota deleted meanwhile charges nothing
                    raise
            done.append(entry)
    except errors.APIError:
        for entry in done:
            try:
                await registry.mutate(RESOURCE_QUOTAS, namespace, entry.quota, take_back(entry))
            except errors.APIError:
                continue  # the controller's recount settles it
        raise
