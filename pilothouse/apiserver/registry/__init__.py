"""Resources and their storage: the table of served resources and the generic registry.

`ResourceTable` is what the server serves right now: the built-in resources plus those
CustomResourceDefinitions add at run time. Its `generation` moves on every change, so
discovery and OpenAPI documents know when to rebuild.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .builtin import BUILTIN_RESOURCES
from .resource import Resource


class ResourceTable:
    def __init__(self, builtins: Iterable[Resource] = BUILTIN_RESOURCES) -> None:
        self._builtin = tuple(builtins)
        self._custom: dict[str, tuple[Resource, ...]] = {}  # CRD name -> its served versions
        self.generation = 0
        self._index: dict[tuple[str, str, str], Resource] = {}
        self._rebuild()

    def _rebuild(self) -> None:
        self._index = {(r.group, r.version, r.plural): r for r in self}
        self.generation += 1

    def __iter__(self) -> Iterator[Resource]:
        yield from self._builtin
        for resources in self._custom.values():
            yield from resources

    def lookup(self, group: str, version: str, plural: str) -> Resource | None:
        return self._index.get((group, version, plural))

    def builtin_kinds(self) -> frozenset[tuple[str, str]]:
        return frozenset((r.group, r.plural) for r in self._builtin)

    def set_custom(self, crd_name: str, resources: tuple[Resource, ...]) -> None:
        if self._custom.get(crd_name) != resources:
            self._custom[crd_name] = resources
            self._rebuild()

    def custom(self, crd_name: str) -> tuple[Resource, ...]:
        return self._custom.get(crd_name, ())

    def remove_custom(self, crd_name: str) -> None:
        if self._custom.pop(crd_name, None) is not None:
            self._rebuild()

    def group_versions(self) -> dict[str, list[str]]:
        """group -> its served versions in order, the first preferred (core is "")."""
        out: dict[str, list[str]] = {}
        for res in self:
            versions = out.setdefault(res.group, [])
            if res.version not in versions:
                versions.append(res.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[Resource]:
        return [r for r in self if r.group == group and r.version == version]


__all__ = ["Resource", "ResourceTable"]
