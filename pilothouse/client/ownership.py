"""Controller references: who controls an object, and claiming the objects a selector finds.

A controller decides what it owns as client-go's ControllerRefManager does: among the
candidates it lists, it keeps its own children that still match its selector, adopts
orphans that match (after a fresh read of itself, so a stale cache never adopts into an
owner that is gone or going), releases children that no longer match, and leaves other
controllers' children alone. Adoption and release are strategic-merge patches of
`metadata.ownerReferences` with the child's uid as precondition.

Every controller that creates children uses this, the built-in workload controllers
(ReplicaSet, Deployment, DaemonSet, StatefulSet, Job) and the Kubeflow operators alike,
so it lives with the client they share rather than with any one of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..machinery.meta import owner_reference
from ..machinery.selectors import LabelSelector
from .api import ApiError, Client


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def controller_of(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ownerReference with `controller: true`, if any (metav1.GetControllerOf)."""
    for ref in _meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def controller_ref(owner: Mapping[str, Any], *, api_version: str, kind: str) -> dict[str, Any]:
    """The controller reference a child carries (metav1.NewControllerRef), for an owner
    whose body may lack apiVersion and kind (an informer's cached object)."""
    return owner_reference({"apiVersion": api_version, "kind": kind, "metadata": _meta(owner)})


@dataclass
class Claims:
    """What a controller does with the candidates for its selector."""

    owned: list[dict[str, Any]] = field(default_factory=list)
    adopt: list[dict[str, Any]] = field(default_factory=list)
    release: list[dict[str, Any]] = field(default_factory=list)


def classify_claims(owner: Mapping[str, Any], selector: LabelSelector,
                    candidates: Iterable[dict[str, Any]]) -> Claims:
    """Sort candidates as ControllerRefManager.ClaimObject does.

    Ours and matching: owned. Ours, not matching: release (unless the owner is being
    deleted). Someone else's: ignored. An orphan that matches and is not being deleted:
    adopt (unless the owner is being deleted).
    """
    uid = _meta(owner).get("uid")
    owner_deleting = bool(_meta(owner).get("deletionTimestamp"))
    claims = Claims()
    for obj in candidates:
        ref = controller_of(obj)
        matches = selector.matches(_meta(obj).get("labels") or {})
        if ref is not None:
            if ref.get("uid") != uid:
                continue
            if matches:
                claims.owned.append(obj)
            elif not owner_deleting:
                claims.release.append(obj)
            continue
        if owner_deleting or not matches or _meta(obj).get("deletionTimestamp"):
            continue
        claims.adopt.append(obj)
    return claims


async def claim(client: Client, *, api_version: str, plural: str, owner: Mapping[str, Any],
                owner_ref: Mapping[str, Any], claims: Claims,
                can_adopt: Callable[[], Awaitable[bool]]) -> list[dict[str, Any]]:
    """Adopt and release through the API; return what the owner now controls.

    Adoption first checks `can_adopt` (a fresh read of the owner: same uid, not being
    deleted), so a stale cache never adopts into an owner that is gone.
    """
    owned = list(claims.owned)
    if claims.adopt and await can_adopt():
        for obj in claims.adopt:
            patch = {"metadata": {"ownerReferences": [dict(owner_ref)],
                                  "uid": _meta(obj)["uid"]}}
            adopted = await _patch_ignoring_gone(client, api_version, plural, obj, patch)
            if adopted is not None:
                owned.append(adopted)
    for obj in claims.release:
        patch = {"metadata": {"ownerReferences": [{"$patch": "delete",
                                                   "uid": owner_ref["uid"]}],
                              "uid": _meta(obj)["uid"]}}
        await _patch_ignoring_gone(client, api_version, plural, obj, patch)
    return owned


async def _patch_ignoring_gone(client: Client, api_version: str, plural: str,
                               obj: Mapping[str, Any], patch: dict[str, Any]
                               ) -> dict[str, Any] | None:
    try:
        return await client.patch(api_version, plural, _meta(obj)["name"], patch,
                                  _meta(obj).get("namespace"), patch_type="strategic")
    except ApiError as err:
        if err.not_found:
            return None
        raise


async def fresh_owner_check(client: Client, *, api_version: str, plural: str,
                            owner: Mapping[str, Any]) -> bool:
    """True if the live owner is the one we cached (same uid) and is not being deleted."""
    try:
        live = await client.get(api_version, plural, _meta(owner)["name"],
                                _meta(owner).get("namespace"))
    except ApiError as err:
        if err.not_found:
            return False
        raise
    return _meta(live).get("uid") == _meta(owner).get("uid") and not _meta(live).get(
        "deletionTimestamp")
