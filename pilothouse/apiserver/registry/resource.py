"""What the API server knows about one resource: its names, scope, verbs and strategy.

A `Resource` is the declaration Kubernetes spreads over `APIResource` (discovery) and a
registry strategy (`pkg/registry/.../strategy.go`): adding a kind is one `Resource(...)`
value plus, where the kind needs them, a defaulter, a validator and a printer. The generic
registry (`registry/generic.py`) does create/get/list/update/patch/delete/watch for all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
READ_ONLY_CREATE = ("create",)


@dataclass(frozen=True)
class Resource:
    """One served resource (plural), e.g. apps/v1 deployments."""

    group: str  # "" for the core group
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...] = ALL_VERBS
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    #: Subresources served under `<plural>/<name>/<sub>`: "status", "scale", "log", ...
    subresources: tuple[str, ...] = ()
    #: True for kinds stored in the datastore; False for virtual ones (reviews).
    stored: bool = True
    #: Extra field selectors beyond metadata.name / metadata.namespace: path -> getter.
    field_selectors: Mapping[str, Callable[[dict], str]] = field(default_factory=dict)
    #: Where `scale` reads and writes replicas (spec path, status path, selector path).
    scale_paths: tuple[str, str, str] | None = None
    #: For custom resources: the CRD's structural schema for this version, or None.
    schema: Mapping[str, Any] | None = None
    #: For custom resources: the CRD's additionalPrinterColumns for this version.
    printer_columns: tuple[Mapping[str, Any], ...] = ()
    #: True when served from a CustomResourceDefinition.
    custom: bool = False
    #: For a built-in kind also served in another version: the version it is stored in
    #: when this one is not it ("" when it is). Objects are converted on the way in and
    #: out (conversion.py), as autoscaling/v1 HorizontalPodAutoscalers are stored as v2.
    storage_version: str = ""

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def storage_prefix(self) -> str:
        """Datastore key prefix: `/registry/<group>/<plural>/`, as kube-apiserver lays it out."""
        return f"/registry/{self.group or 'core'}/{self.plural}/"

    def key(self, namespace: str | None, name: str) -> str:
        if self.namespaced:
            return f"{self.storage_prefix}{namespace}/{name}"
        return f"{self.storage_prefix}{name}"

    def prefix(self, namespace: str | None) -> str:
        if self.namespaced and namespace:
            return f"{self.storage_prefix}{namespace}/"
        return self.storage_prefix

    def qualified(self) -> str:
        """`deployments.apps`, `pods`: how errors name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural
