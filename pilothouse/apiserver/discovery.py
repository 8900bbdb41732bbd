"""Discovery documents: /api, /apis, /apis/<group>, and each group version's resources.

Built from the ResourceTable and cached per table generation, so a new CRD shows up in
discovery as soon as it is registered, and steady-state discovery costs a dict lookup.
"""

from __future__ import annotations

from typing import Any

import orjson

from .. import KUBERNETES_VERSION
from .registry import Resource, ResourceTable
from .registry.builtin import SUBRESOURCE_DISCOVERY

_SERVER_ADDRESS = [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]


def version_info() -> dict[str, str]:
    major, minor = KUBERNETES_VERSION.split(".")
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"v{KUBERNETES_VERSION}.0-pilothouse",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "2026-11-27T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def _resource_entries(res: Resource) -> list[dict[str, Any]]:
    entry: dict[str, Any] = {
        "name": res.plural,
        "singularName": res.singular,
        "namespaced": res.namespaced,
        "kind": res.kind,
        "verbs": list(res.verbs),
    }
    if res.short_names:
        entry["shortNames"] = list(res.short_names)
    if res.categories:
        entry["categories"] = list(res.categories)
    entries = [entry]
    for sub in res.subresources:
        verbs, group, version, kind = (SUBRESOURCE_DISCOVERY.get(f"{res.plural}/{sub}")
                                       or SUBRESOURCE_DISCOVERY[sub])
        sub_entry: dict[str, Any] = {
            "name": f"{res.plural}/{sub}",
            "singularName": "",
            "namespaced": res.namespaced,
            "kind": kind or res.kind,
            "verbs": list(verbs),
        }
        if group:
            sub_entry["group"] = group
        if version:
            sub_entry["version"] = version
        entries.append(sub_entry)
    return entries


class Discovery:
    def __init__(self, table: ResourceTable) -> None:
        self._table = table
        self._generation = -1
        self._docs: dict[str, bytes] = {}

    def _refresh(self) -> None:
        if self._generation == self._table.generation:
            return
        docs: dict[str, bytes] = {}
        groups = self._table.group_versions()
        docs["/api"] = orjson.dumps({
            "kind": "APIVersions",
            "versions": groups.get("", ["v1"]),
            "serverAddressByClientCIDRs": _SERVER_ADDRESS,
        })
        group_docs = []
        for group, versions in groups.items():
            for version in versions:
                resources = []
                for res in self._table.in_group_version(group, version):
                    resources.extend(_resource_entries(res))
                gv = f"{group}/{version}" if group else version
                path = f"/apis/{group}/{version}" if group else f"/api/{version}"
                docs[path] = orjson.dumps({
                    "kind": "APIResourceList",
                    "apiVersion": "v1",
                    "groupVersion": gv,
                    "resources": resources,
                })
            if not group:
                continue
            doc = {
                "name": group,
                "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
                "preferredVersion": {"groupVersion": f"{group}/{versions[0]}",
                                     "version": versions[0]},
            }
            group_docs.append(doc)
            docs[f"/apis/{group}"] = orjson.dumps({"kind": "APIGroup", "apiVersion": "v1", **doc})
        docs["/apis"] = orjson.dumps(
            {"kind": "APIGroupList", "apiVersion": "v1", "groups": group_docs}
        )
        self._docs = docs
        self._generation = self._table.generation

    def document(self, path: str) -> bytes | None:
        """The discovery document at `path` (without a trailing slash), or None."""
        self._refresh()
        return self._docs.get(path.rstrip("/") or "/")
