"""Every resource the API server serves, read from discovery, for controllers of all kinds.

The namespace controller deletes every namespaced kind and the garbage collector watches
every kind that can own or be owned; neither knows the kinds in advance, because custom
resources come and go with their CRDs. This module reads `/api`, `/apis` and each group
version's resource list (as client-go's discovery client does) into a `DiscoverySnapshot`,
and `ResourceDiscovery` holds the latest. The garbage collector lets it run: refreshed on
a period and soon after any CustomResourceDefinition changes (a CRD informer handler marks
the snapshot stale). The namespace controller refreshes it at the start of every pass, as
upstream's does, so a CRD created a moment before cannot leave its objects behind.

A group version that fails to answer is recorded in `failures` rather than failing the
whole read, as upstream's `ErrGroupDiscoveryFailed`: callers act on what they could see
and say what they could not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..client import ApiError, Client, Informer

log = logging.getLogger(__name__)

REFRESH_SECONDS = 30.0
RETRY_SECONDS = 1.0
#: After a CRD changes, wait this long for the server to register or drop its resources.
CRD_SETTLE_SECONDS = 0.2
CRD_API_VERSION = "apiextensions.k8s.io/v1"
CRD_PLURAL = "customresourcedefinitions"


@dataclass(frozen=True)
class ApiResource:
    """One top-level resource of one group version, as an APIResourceList entry names it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    verbs: frozenset[str]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """`plural.group` (`configmaps.` for the core group), as upstream's messages print it."""
        return f"{self.plural}.{self.group}"

    def supports(self, *verbs: str) -> bool:
        return all(verb in self.verbs for verb in verbs)


@dataclass(frozen=True)
class DiscoverySnapshot:
    """What discovery said at one moment.

    `preferred` holds each group's preferred version of every resource (one entry per
    group and resource, as `ServerPreferredResources`); `lookup` resolves any served
    apiVersion and kind, preferred or not, since ownerReferences may name either.
    """

    preferred: tuple[ApiResource, ...] = ()
    by_kind: Mapping[tuple[str, str], ApiResource] = field(default_factory=dict)
    failures: Mapping[str, str] = field(default_factory=dict)

    def lookup(self, api_version: str, kind: str) -> ApiResource | None:
        return self.by_kind.get((api_version, kind))

    def select(self, *verbs: str, namespaced: bool | None = None) -> list[ApiResource]:
        """Preferred resources that support every verb in `verbs` (and match the scope)."""
        return [r for r in self.preferred if r.supports(*verbs)
                and (namespaced is None or r.namespaced == namespaced)]

    def failed_groups(self) -> set[str]:
        """API groups with at least one group version that failed to answer."""
        return {gv.rpartition("/")[0] for gv in self.failures}

    def failure_message(self) -> str:
        """What failed, in the words of upstream's discovery error."""
        parts = ", ".join(f"{gv}: {err}" for gv, err in sorted(self.failures.items()))
        return f"Discovery failed for some groups, {len(self.failures)} failing: {parts}"


def parse_resource_list(group_version: str, document: Mapping[str, Any]) -> list[ApiResource]:
    """The top-level resources of an APIResourceList (subresources like `pods/log` skipped)."""
    group, _, version = group_version.rpartition("/")
    out = []
    for entry in document.get("resources") or []:
        name = entry.get("name") or ""
        if not name or "/" in name:
            continue
        out.append(ApiResource(group=group, version=version, plural=name,
                               kind=entry.get("kind") or "",
                               namespaced=bool(entry.get("namespaced")),
                               verbs=frozenset(entry.get("verbs") or ())))
    return out


def build_snapshot(lists: Iterable[tuple[str, bool, list[ApiResource]]],
                   failures: Mapping[str, str]) -> DiscoverySnapshot:
    """From (groupVersion, is the group's preferred version, resources) triples."""
    preferred: list[ApiResource] = []
    by_kind: dict[tuple[str, str], ApiResource] = {}
    for _group_version, is_preferred, resources in lists:
        for res in resources:
            by_kind.setdefault((res.api_version, res.kind), res)
            if is_preferred:
                preferred.append(res)
    return DiscoverySnapshot(tuple(preferred), by_kind, dict(failures))


async def discover(client: Client) -> DiscoverySnapshot:
    """Read the whole of discovery; group versions that fail are listed in `failures`."""
    core = await client.request("GET", "/api")
    groups = await client.request("GET", "/apis")
    wanted: list[tuple[str, str, bool]] = [
        (f"/api/{v}", v, i == 0) for i, v in enumerate(core.get("versions") or [])]
    for group in groups.get("groups") or []:
        preferred = (group.get("preferredVersion") or {}).get("groupVersion")
        for version in group.get("versions") or []:
            gv = version["groupVersion"]
            wanted.append((f"/apis/{gv}", gv, gv == preferred))

    async def fetch(path: str) -> Any:
        return await client.request("GET", path)

    answers = await asyncio.gather(*(fetch(path) for path, _, _ in wanted),
                                   return_exceptions=True)
    lists = []
    failures: dict[str, str] = {}
    for (_, gv, is_preferred), answer in zip(wanted, answers, strict=True):
        if isinstance(answer, BaseException):
            if not isinstance(answer, ApiError | aiohttp.ClientError | TimeoutError | OSError):
                raise answer
            failures[gv] = str(answer)
            continue
        lists.append((gv, is_preferred, parse_resource_list(gv, answer)))
    return build_snapshot(lists, failures)


class ResourceDiscovery:
    """Keeps a `DiscoverySnapshot` current: on a period, and soon after a CRD changes."""

    def __init__(self, client: Client, *, period: float = REFRESH_SECONDS) -> None:
        self.client = client
        self.period = period
        self.snapshot = DiscoverySnapshot()
        self._stale = asyncio.Event()

    def follow_crds(self, informer: Informer) -> None:
        """Mark the snapshot stale whenever a CustomResourceDefinition changes."""
        informer.add_handler(lambda old, new: self.invalidate())

    def invalidate(self) -> None:
        """Have `run` refresh soon (a CRD changed, or a caller met a kind it lacks)."""
        self._stale.set()

    async def refresh(self) -> DiscoverySnapshot:
        self._stale.clear()
        self.snapshot = await discover(self.client)
        return self.snapshot

    async def run(self, on_change: Callable[[DiscoverySnapshot], Awaitable[None]]) -> None:
        """Refresh forever after the first (the caller's) read: every `period` seconds, and
        soon after a CRD changes, calling `on_change` with each new snapshot (cancel to stop)."""
        while True:
            try:
                await asyncio.wait_for(self._stale.wait(), self.period)
                await asyncio.sleep(CRD_SETTLE_SECONDS)
            except TimeoutError:
                pass
            try:
                await on_change(await self.refresh())
            except (ApiError, aiohttp.ClientError, TimeoutError, OSError) as err:
                log.warning("discovery failed: %s; retrying", err)
                await asyncio.sleep(RETRY_SECONDS)
                self._stale.set()
