"""The namespace controller: empties a Terminating namespace, then lets the server delete it.

Deleting a namespace only marks it (deletionTimestamp, phase Terminating); its
`spec.finalizers: ["kubernetes"]` holds it until this controller has removed everything
inside. As upstream's namespaced-resources deleter, each pass reads discovery afresh (so
custom resources of a CRD created a moment ago are not missed), deletes every namespaced
resource that supports `delete` -- one `deletecollection` where the resource offers it,
else object by object -- with propagation Background (resources side by side), then lists
what remains. Remaining objects that carry finalizers or a grace period are waited for
(requeue after an estimate); anything else is an error, retried with backoff. Each pass
records what it saw in the namespace's status conditions (NamespaceDeletionDiscoveryFailure,
NamespaceDeletionContentFailure, NamespaceContentRemaining, NamespaceFinalizersRemaining).
Only when the namespace is empty and discovery was complete does it remove `kubernetes`
through `PUT .../finalize`; the server then deletes the namespace.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..client import ApiError, Controller, resource_path
from ..machinery.meta import rfc3339
from ._discovery import ApiResource, DiscoverySnapshot, ResourceDiscovery

log = logging.getLogger(__name__)

FINALIZER = "kubernetes"
#: How long to expect objects held by finalizers to take (upstream's default estimate).
FINALIZER_ESTIMATE_SECONDS = 15

DISCOVERY_FAILURE = "NamespaceDeletionDiscoveryFailure"
PARSING_FAILURE = "NamespaceDeletionGroupVersionParsingFailure"
CONTENT_FAILURE = "NamespaceDeletionContentFailure"
CONTENT_REMAINING = "NamespaceContentRemaining"
FINALIZERS_REMAINING = "NamespaceFinalizersRemaining"
#: The conditions this controller owns, in the order upstream writes them, each with the
#: reason and message of its healthy (False) state.
CONDITIONS_OK: dict[str, tuple[str, str]] = {
    DISCOVERY_FAILURE: ("ResourcesDiscovered", "All resources successfully discovered"),
    PARSING_FAILURE: ("ParsedGroupVersions", "All legacy kube types successfully parsed"),
    CONTENT_FAILURE: ("ContentDeleted",
                      "All content successfully deleted, may be waiting on finalization"),
    CONTENT_REMAINING: ("ContentRemoved", "All content successfully removed"),
    FINALIZERS_REMAINING: ("ContentHasNoFinalizers", "All content-preserving finalizers finished"),
}


class DeletionIncomplete(Exception):
    """Discovery was partial, a deletion failed, or objects with nothing holding them
    survived it: the namespace is not finalized, and the pass is retried with backoff."""


@dataclass
class DeletionReport:
    """What one pass over a namespace's content found."""

    discovery_failure: str = ""
    errors: list[str] = field(default_factory=list)
    remaining: dict[str, int] = field(default_factory=dict)
    finalizers: Counter[str] = field(default_factory=Counter)
    estimate: int = 0

    def conditions(self) -> dict[str, tuple[str, str, str]]:
        """condition type -> (status, reason, message) for this pass."""
        out = {kind: ("False", *ok) for kind, ok in CONDITIONS_OK.items()}
        if self.discovery_failure:
            out[DISCOVERY_FAILURE] = ("True", "DiscoveryFailed", self.discovery_failure)
        if self.errors:
            out[CONTENT_FAILURE] = (
                "True", "ContentDeletionFailed",
                f"Failed to delete all resource types, {len(self.errors)} remaining: "
                f"{', '.join(sorted(self.errors))}")
        if self.remaining:
            listed = sorted(f"{gr} has {n} resource instances"
                            for gr, n in self.remaining.items())
            out[CONTENT_REMAINING] = ("True", "SomeResourcesRemain",
                                      f"Some resources are remaining: {', '.join(listed)}")
        if self.finalizers:
            listed = sorted(f"{f} in {n} resource instances" for f, n in self.finalizers.items())
            out[FINALIZERS_REMAINING] = ("True", "SomeFinalizersRemain",
                                         f"Some content in the namespace has finalizers "
                                         f"remaining: {', '.join(listed)}")
        return out


def merge_conditions(existing: Iterable[Mapping[str, Any]],
                     wanted: Mapping[str, tuple[str, str, str]], now: str) -> list[dict]:
    """The namespace's conditions with ours set; lastTransitionTime moves only on a change
    of status. Conditions of other types are kept as they are."""
    out = [dict(c) for c in existing]
    by_type = {c.get("type"): c for c in out}
    for kind, (status, reason, message) in wanted.items():
        current = by_type.get(kind)
        if current is None:
            out.append({"type": kind, "status": status, "lastTransitionTime": now,
                        "reason": reason, "message": message})
            continue
        if current.get("status") != status:
            current["lastTransitionTime"] = now
        current.update(status=status, reason=reason, message=message)
    return out


def remaining_estimate(items: Iterable[Mapping[str, Any]]) -> tuple[int, Counter[str]]:
    """(seconds to wait, finalizer -> count) for objects still present after deletion.

    Objects in a graceful deletion are waited for their grace period; objects held by
    finalizers for upstream's default estimate. (0, empty) means nothing explains why
    they are still there.
    """
    estimate = 0
    finalizers: Counter[str] = Counter()
    for item in items:
        meta = item.get("metadata") or {}
        grace = meta.get("deletionGracePeriodSeconds") or 0
        if meta.get("deletionTimestamp") and grace > 0:
            estimate = max(estimate, int(grace))
        for finalizer in meta.get("finalizers") or ():
            finalizers[finalizer] += 1
    if finalizers:
        estimate = max(estimate, FINALIZER_ESTIMATE_SECONDS)
    return estimate, finalizers


class NamespaceController(Controller):
    name = "namespace-controller"
    workers = 5

    def setup(self) -> None:
        self.namespaces = self.context.informers.informer("v1", "namespaces")
        self.namespaces.add_handler(self._on_namespace)
        self.discovery = ResourceDiscovery(self.client)

    def _on_namespace(self, old: dict | None, new: dict | None) -> None:
        if new is not None and (new.get("metadata") or {}).get("deletionTimestamp"):
            self.enqueue(new)

    async def reconcile(self, key: str) -> float | None:
        try:
            ns = await self.client.get("v1", "namespaces", key)
        except ApiError as err:
            if err.not_found:
                return None
            raise
        if not ns["metadata"].get("deletionTimestamp"):
            return None
        if (ns.get("status") or {}).get("phase") != "Terminating":
            ns.setdefault("status", {})["phase"] = "Terminating"
            ns = await self.client.replace("v1", "namespaces", ns, subresource="status")
        if FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or ()):
            return None
        report = await self.delete_content(key, await self.discovery.refresh())
        await self._write_conditions(ns, report)
        if report.discovery_failure or report.errors:
            raise DeletionIncomplete(
                f"namespace {key}: {report.discovery_failure or '; '.join(report.errors)}")
        if report.estimate:
            return report.estimate / 2 + 1
        ns["spec"]["finalizers"] = [f for f in ns["spec"]["finalizers"] if f != FINALIZER]
        try:
            await self.client.request("PUT", resource_path("v1", "namespaces", None, key,
                                                           "finalize"), body=ns)
        except ApiError as err:
            if not err.not_found:
                raise
        return None

    async def delete_content(self, namespace: str, snapshot: DiscoverySnapshot) -> DeletionReport:
        """Delete every namespaced object of every deletable resource; report what is left."""
        report = DeletionReport()
        if snapshot.failures:
            report.discovery_failure = snapshot.failure_message()
        resources = snapshot.select("delete", namespaced=True)
        outcomes = await asyncio.gather(*(self._delete_all(res, namespace) for res in resources),
                                        return_exceptions=True)
        for res, items in zip(resources, outcomes, strict=True):
            if isinstance(items, ApiError):
                report.errors.append(f"{res.group_resource}: {items}")
                continue
            if isinstance(items, BaseException):
                raise items
            if not items:
                continue
            report.remaining[res.group_resource] = len(items)
            estimate, finalizers = remaining_estimate(items)
            report.finalizers.update(finalizers)
            if estimate == 0:
                report.errors.append(f"unexpected items still remain in namespace: {namespace} "
                                     f"for gvr: {res.group_resource}")
            report.estimate = max(report.estimate, estimate)
        return report

    async def _delete_all(self, res: ApiResource, namespace: str) -> list[dict]:
        """Delete the resource's objects in `namespace`; return those still there after."""
        options = {"kind": "DeleteOptions", "apiVersion": "v1",
                   "propagationPolicy": "Background"}
        if res.supports("deletecollection"):
            await self._ignore_gone(self.client.request(
                "DELETE", resource_path(res.api_version, res.plural, namespace), body=options))
        elif res.supports("list"):
            items, _ = await self.client.list_all(res.api_version, res.plural, namespace)
            for item in items:
                if not item["metadata"].get("deletionTimestamp"):
                    await self._ignore_gone(self.client.delete(
                        res.api_version, res.plural, item["metadata"]["name"], namespace,
                        propagation_policy="Background"))
        if not res.supports("list"):
            return []
        items, _ = await self.client.list_all(res.api_version, res.plural, namespace)
        return items

    @staticmethod
    async def _ignore_gone(call: Any) -> None:
        """Await a delete; a resource or object that vanished meanwhile is not an error."""
        try:
            await call
        except ApiError as err:
            if not (err.not_found or err.status == 405):
                raise

    async def _write_conditions(self, ns: dict[str, Any], report: DeletionReport) -> None:
        status = ns.setdefault("status", {})
        existing = status.get("conditions") or []
        merged = merge_conditions(existing, report.conditions(), rfc3339())
        if merged == existing:
            return
        status["conditions"] = merged
        try:
            updated = await self.client.replace("v1", "namespaces", ns, subresource="status")
        except ApiError as err:
            if err.not_found:
                return
            if not err.conflict:
                raise
            log.info("namespace %s changed while writing its conditions; next pass will",
                     ns["metadata"]["name"])
            return
        ns["metadata"]["resourceVersion"] = updated["metadata"]["resourceVersion"]


CONTROLLER = NamespaceController
