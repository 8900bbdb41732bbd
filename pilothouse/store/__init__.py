"""The datastore interface: a revisioned key-value store with etcd v3 semantics.

Every write bumps one global revision. Each key records the revision that created it
(`create_revision`) and last changed it (`mod_revision`); the API server exposes the latter
as `metadata.resourceVersion`. Updates and deletes are compare-and-swap on `mod_revision`,
reads can be served at a past revision (consistent pagination), and `watch` streams every
change after a revision. History older than the compacted revision is gone: reads and
watches that need it raise `Compacted`, which the API server turns into 410 Gone.

`SQLiteStore` (store/sqlite.py) is the embedded default; an etcd implementation fits the
same protocol, since every method maps onto one etcd v3 call (Range, Txn, Watch, Compact).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Event:
    """One change. For DELETE, `kv.value` is the last value and `kv.mod_revision` the delete's."""

    type: Literal["PUT", "DELETE"]
    kv: KeyValue
    prev: KeyValue | None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


class StoreError(Exception):
    """Base of the store's typed failures."""


class KeyExists(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key exists: {key}")
        self.key = key


class KeyNotFound(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key not found: {key}")
        self.key = key


class RevisionMismatch(StoreError):
    """The key's mod_revision is not the one the caller expected (a stale write)."""

    def __init__(self, key: str, current: KeyValue) -> None:
        super().__init__(f"revision mismatch on {key}: now {current.mod_revision}")
        self.key = key
        self.current = current


class Compacted(StoreError):
    """The requested revision is older than the compacted history."""

    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(f"required revision {requested} has been compacted (at {compacted})")
        self.requested = requested
        self.compacted = compacted


class DataDirInUse(StoreError):
    """Another process holds the datastore."""


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: list[KeyValue]
    revision: int  # the revision the range was read at
    more: bool  # True when `limit` cut the result short


class Store(Protocol):
    @property
    def revision(self) -> int:
        """The newest revision written."""

    @property
    def compacted_revision(self) -> int:
        """History at or below this revision is gone."""

    async def get(self, key: str) -> KeyValue | None: ...

    async def range(
        self, prefix: str, *, start_after: str = "", limit: int = 0, revision: int = 0
    ) -> RangeResult:
        """Keys under `prefix`, in key order, after `start_after`; at `revision` (0 = now)."""

    async def count(self, prefix: str, *, start_after: str = "") -> int:
        """How many keys are under `prefix` (after `start_after`) now."""

    async def create(self, key: str, value: bytes) -> KeyValue:
        """Write a new key; KeyExists if present."""

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> KeyValue:
        """Replace a key if its mod_revision is `expected_revision` (0 = any)."""

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        """Delete a key (CAS as for update); returns the deletion as a KeyValue."""

    def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        """Every change under `prefix` with revision > `from_revision`, then live ones."""

    async def compact(self, revision: int) -> None: ...

    async def close(self) -> None: ...
