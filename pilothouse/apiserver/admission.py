"""Admission: the plugins that see every write after defaulting, before it is stored.

As in kube-apiserver, a write passes every plugin's `mutate` (which may change the object:
LimitRange defaults, default tolerations) after the kind's own defaulting, and every
plugin's `validate` (which may only refuse: ResourceQuota) after the kind's validation.
A refusal is an APIError (403 Forbidden for quota, as a real cluster answers) and the
write changes nothing. Plugins read other objects through the registry they are given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .registry import Resource
    from .registry.generic import GenericRegistry


class AdmissionPlugin:
    """Override either phase; `old` is None on create."""

    async def mutate(self, registry: GenericRegistry, res: Resource, obj: dict[str, Any],
                     old: dict[str, Any] | None) -> None:
        return None

    async def validate(self, registry: GenericRegistry, res: Resource, obj: dict[str, Any],
                       old: dict[str, Any] | None, *, dry_run: bool) -> None:
        return None


def default_plugins() -> list[AdmissionPlugin]:
    """The admission chain the server runs, in order."""
    return []
