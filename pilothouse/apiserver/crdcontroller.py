"""Serving CustomResourceDefinitions: the server-side loop of apiextensions-apiserver.

It watches CRDs through the watch cache and, for each one, (1) registers a `Resource` per
served version in the ResourceTable -- discovery, OpenAPI and routing follow at once --
(2) writes the status conditions `NamesAccepted` and `Established`, so `kubectl wait
--for=condition=Established` works, and (3) on deletion removes every custom resource
of the CRD, then the `customresourcecleanup` finalizer, then the served resources.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

from ..machinery.meta import rfc3339
from .crd import crd_conditions
from .openapi import OpenAPIDocuments
from .registry import Resource, ResourceTable
from .registry.generic import CRD_CLEANUP_FINALIZER, GenericRegistry
from .registry.resource import ALL_VERBS
from .watchcache import WatchCache

log = logging.getLogger(__name__)

CRD_PREFIX = "/registry/apiextensions.k8s.io/customresourcedefinitions/"
_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key putting versions in Kubernetes' preference order (v2, v1, v1beta2, ...)."""
    match = _VERSION.match(version)
    if not match:
        return (3, 0, 0, version)
    major, level, minor = match.groups()
    rank = {None: 0, "beta": 1, "alpha": 2}[level]
    return (rank, -int(major), -int(minor or 0), version)


def resources_for(crd: dict[str, Any]) -> tuple[Resource, ...]:
    """The resources a CRD serves, one per served version, preferred first."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out = []
    versions = sorted(spec.get("versions") or [], key=lambda v: version_priority(v["name"]))
    for version in versions:
        if not version.get("served"):
            continue
        subresources = version.get("subresources") or {}
        subs: tuple[str, ...] = ()
        scale_paths = None
        if "status" in subresources:
            subs += ("status",)
        scale = subresources.get("scale")
        if scale:
            subs += ("scale",)
            scale_paths = (scale.get("specReplicasPath", ".spec.replicas"),
                           scale.get("statusReplicasPath", ".status.replicas"),
                           scale.get("labelSelectorPath") or "")
        out.append(Resource(
            group=spec["group"],
            version=version["name"],
            plural=names["plural"],
            singular=names.get("singular") or names["kind"].lower(),
            kind=names["kind"],
            namespaced=spec.get("scope") == "Namespaced",
            verbs=ALL_VERBS,
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            subresources=subs,
            scale_paths=scale_paths,
            schema=(version.get("schema") or {}).get("openAPIV3Schema"),
            printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
            custom=True,
        ))
    return tuple(out)


class CRDController:
    def __init__(
        self,
        *,
        table: ResourceTable,
        registry: GenericRegistry,
        watch_cache: WatchCache,
        openapi: OpenAPIDocuments,
    ) -> None:
        self.table = table
        self.registry = registry
        self.watch_cache = watch_cache
        self.openapi = openapi
        self._crd_resource = table.lookup("apiextensions.k8s.io", "v1",
                                          "customresourcedefinitions")
        self._task: asyncio.Task[None] | None = None
        self._cleanups: dict[str, asyncio.Task[None]] = {}

    async def start(self) -> None:
        """Serve every stored CRD, then follow changes."""
        assert self._crd_resource is not None
        listed = await self.registry.list(self._crd_resource, None)
        for crd in listed.items:
            await self.sync(crd)
        watcher = self.watch_cache.watch(CRD_PREFIX, int(listed.resource_version))
        self._task = asyncio.create_task(self._run(watcher), name="crd-controller")

    async def stop(self) -> None:
        for task in [self._task, *self._cleanups.values()]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run(self, watcher: Any) -> None:
        while True:
            event = await watcher.next(3600)
            if event is None:
                if watcher.closed:
                    return
                continue
            name = event.key[len(CRD_PREFIX):]
            try:
                if event.deleted:
                    self.table.remove_custom(name)
                    self.openapi.invalidate()
                else:
                    await self.sync(event.obj())
            except Exception:
                log.exception("syncing CustomResourceDefinition %s", name)

    async def sync(self, crd: dict[str, Any]) -> None:
        name = crd["metadata"]["name"]
        if crd["metadata"].get("deletionTimestamp"):
            if name not in self._cleanups:
                self._cleanups[name] = asyncio.create_task(self._cleanup(crd))
            return
        resources = resources_for(crd)
        if resources:
            self.table.set_custom(name, resources)
        else:
            self.table.remove_custom(name)
        self.openapi.invalidate()
        status = crd_conditions(crd, rfc3339())
        if status != crd.get("status"):
            assert self._crd_resource is not None

            def set_status(obj: dict[str, Any]) -> None:
                obj["status"] = crd_conditions(obj, rfc3339())

            await self.registry.mutate(self._crd_resource, None, name, set_status)

    async def _cleanup(self, crd: dict[str, Any]) -> None:
        """Delete the CRD's custom resources, then let the CRD go."""
        name = crd["metadata"]["name"]
        try:
            resources = self.table.custom(name) or resources_for(crd)
            if resources:
                res = resources[0]
                while True:
                    listed = await self.registry.list(res, None, limit=500)
                    for obj in listed.items:
                        meta = obj["metadata"]
                        await self.registry.purge(res, meta.get("namespace"), meta["name"])
                    if not listed.continue_token:
                        break
            self.table.remove_custom(name)
            self.openapi.invalidate()
            assert self._crd_resource is not None

            def release(obj: dict[str, Any]) -> None:
                obj["metadata"]["finalizers"] = [
                    f for f in obj["metadata"].get("finalizers") or []
                    if f != CRD_CLEANUP_FINALIZER]

            await self.registry.mutate(self._crd_resource, None, name, release)
        except Exception:
            log.exception("cleaning up CustomResourceDefinition %s", name)
        finally:
            self._cleanups.pop(name, None)
