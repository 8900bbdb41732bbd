"""The PodGroup API (scheduling.x-k8s.io/v1alpha1) that gang scheduling reads.

The scheduler installs the CustomResourceDefinition if it is absent, as scheduler-plugins'
manifests would, using its own identity; when RBAC does not allow that (the stock
`system:kube-scheduler` role does not), it says so once and keeps checking, so gang
scheduling starts by itself as soon as an administrator installs the CRD and grants read
access. Until then, pods that name a pod group wait (Coscheduling rejects them at Permit).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ..client import ApiError, Client, Informer

log = logging.getLogger(__name__)

GROUP = "scheduling.x-k8s.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
PLURAL = "podgroups"
CRD_NAME = f"{PLURAL}.{GROUP}"
RETRY_SECONDS = 3.0

_INT = {"type": "integer", "format": "int32"}
_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": {"type": "object", "properties": {
            "minMember": {**_INT, "minimum": 1},
            "minResources": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "scheduleTimeoutSeconds": _INT,
        }},
        "status": {"type": "object", "properties": {
            "phase": {"type": "string"},
            "occupiedBy": {"type": "string"},
            "running": _INT,
            "succeeded": _INT,
            "failed": _INT,
            "scheduled": _INT,
            "scheduleStartTime": {"type": "string", "format": "date-time"},
        }},
    },
}

CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": CRD_NAME},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "podgroup", "kind": "PodGroup",
                  "listKind": "PodGroupList", "shortNames": ["pg", "pgs"]},
        "versions": [{
            "name": VERSION, "served": True, "storage": True,
            "schema": {"openAPIV3Schema": _SCHEMA},
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                {"name": "MinMember", "type": "integer", "jsonPath": ".spec.minMember"},
                {"name": "Running", "type": "integer", "jsonPath": ".status.running"},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            ],
        }],
    },
}


async def ensure_crd(client: Client) -> str:
    """Install the PodGroup CRD if absent; returns "" on success, else why not."""
    try:
        await client.get("apiextensions.k8s.io/v1", "customresourcedefinitions", CRD_NAME)
        return ""
    except ApiError as err:
        if not err.not_found:
            return str(err)
    try:
        await client.create("apiextensions.k8s.io/v1", "customresourcedefinitions", CRD)
        log.info("installed the PodGroup CRD %s", CRD_NAME)
        return ""
    except ApiError as err:
        return "" if err.conflict else str(err)


async def watch_pod_groups(client: Client, on_ready: Callable[[Informer], None]) -> None:
    """Install the CRD if allowed, wait until PodGroups can be listed, then keep an
    informer on them (handed to `on_ready` before it starts)."""
    warned = False
    while True:
        problem = await ensure_crd(client)
        try:
            await client.list(API_VERSION, PLURAL, limit=1)
            break
        except ApiError as err:
            if not warned:
                log.warning(
                    "gang scheduling is off until PodGroups can be read: %s%s. Install the "
                    "CRD %s and let this scheduler's identity get, list and watch %s "
                    "(and create customresourcedefinitions to have it installed for you).",
                    err, f"; installing the CRD failed: {problem}" if problem else "",
                    CRD_NAME, PLURAL)
                warned = True
        await asyncio.sleep(RETRY_SECONDS)
    if warned:
        log.warning("PodGroups are readable now: gang scheduling is on")
    informer = Informer(client, API_VERSION, PLURAL)
    on_ready(informer)
    await informer.run()
