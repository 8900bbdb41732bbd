"""The embedded datastore: etcd v3 semantics on one SQLite file in WAL mode.

Layout (in the spirit of k3s' kine): `log` holds every revision -- one row per write,
its `rev` the global revision (AUTOINCREMENT, so revisions never repeat even after
compaction) -- and `current` holds the newest live value of each key, so reads at the
head revision are one indexed lookup. A write is one transaction touching both tables.

Durability: WAL with synchronous=NORMAL. A committed transaction is in the WAL file
before the API server answers, so it survives the death of the process (kill -9) at any
moment; only a power cut can lose the last transactions, as with kine's default.

Concurrency: one process owns the data dir (an exclusive `flock` on `state.db.lock`;
a second owner fails with DataDirInUse). All SQLite calls run on the event loop's thread:
they take microseconds, and running them in one thread serialises writes for free, which
is what makes compare-and-swap and the watch hand-off below race-free.

Watch: subscribers register an in-memory queue; a write pushes its Event to every
subscriber whose prefix matches, after commit. A watch from an old revision first
replays `log` rows after it. Registration and replay happen without yielding to the
event loop, so no event is missed or delivered twice.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

from . import (
    Compacted,
    DataDirInUse,
    Event,
    KeyExists,
    KeyNotFound,
    KeyValue,
    RangeResult,
    RevisionMismatch,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    rev INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    create_rev INTEGER NOT NULL,
    prev_rev INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_rev ON log(key, rev);
CREATE TABLE IF NOT EXISTS current (
    key TEXT PRIMARY KEY,
    create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL,
    value BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def _prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with `prefix`."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else "\U0010ffff"


class SQLiteStore:
    """Store protocol on SQLite. Open with `SQLiteStore.open(path)`."""

    def __init__(self, db: sqlite3.Connection, lock_fd: int) -> None:
        self._db = db
        self._lock_fd = lock_fd
        self._subscribers: list[tuple[str, asyncio.Queue[Event]]] = []
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'log'").fetchone()
        self._revision = row[0] if row else 0
        row = db.execute("SELECT value FROM meta WHERE name = 'compacted'").fetchone()
        self._compacted = row[0] if row else 0

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> SQLiteStore:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise DataDirInUse(
                f"the datastore {path} is in use by another Pilothouse process; stop it first "
                "or choose another --data-dir"
            ) from None
        db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        return cls(db, lock_fd)

    # -- reads -------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def compacted_revision(self) -> int:
        return self._compacted

    def get_now(self, key: str) -> KeyValue | None:
        row = self._db.execute(
            "SELECT create_rev, mod_rev, value FROM current WHERE key = ?", (key,)
        ).fetchone()
        return KeyValue(key, row[2], row[0], row[1]) if row else None

    async def get(self, key: str) -> KeyValue | None:
        return self.get_now(key)

    async def range(
        self, prefix: str, *, start_after: str = "", limit: int = 0, revision: int = 0
    ) -> RangeResult:
        after = start_after if start_after >= prefix else ""
        low, op = (after, ">") if after else (prefix, ">=")
        high = _prefix_end(prefix)
        lim = limit + 1 if limit > 0 else -1
        if revision <= 0 or revision >= self._revision:
            rows = self._db.execute(
                "SELECT key, create_rev, mod_rev, value FROM current "
                f"WHERE key {op} ? AND key < ? ORDER BY key LIMIT ?",
                (low, high, lim),
            ).fetchall()
            at = self._revision
        else:
            if revision < self._compacted:
                raise Compacted(revision, self._compacted)
            rows = self._db.execute(
                "SELECT l.key, l.create_rev, l.rev, l.value FROM log l "
                f"WHERE l.key {op} ? AND l.key < ? AND l.deleted = 0 AND l.rev = "
                "(SELECT MAX(rev) FROM log WHERE key = l.key AND rev <= ?) "
                "ORDER BY l.key LIMIT ?",
                (low, high, revision, lim),
            ).fetchall()
            at = revision
        more = limit > 0 and len(rows) > limit
        if more:
            rows = rows[:limit]
        return RangeResult([KeyValue(r[0], r[3], r[1], r[2]) for r in rows], at, more)

    async def count(self, prefix: str, *, start_after: str = "") -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM current WHERE key >= ? AND key > ? AND key < ?",
            (prefix, start_after, _prefix_end(prefix)),
        ).fetchone()
        return row[0]

    # -- writes ------------------------------------------------------------------------

    def _write(
        self, key: str, value: bytes, create_rev: int, prev: KeyValue | None, deleted: bool
    ) -> KeyValue:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            cur = db.execute(
                "INSERT INTO log (key, create_rev, prev_rev, deleted, value) VALUES (?,?,?,?,?)",
                (key, create_rev, prev.mod_revision if prev else 0, int(deleted), value),
            )
            rev = cur.lastrowid
            assert rev is not None
            if deleted:
                db.execute("DELETE FROM current WHERE key = ?", (key,))
            else:
                db.execute(
                    "INSERT OR REPLACE INTO current (key, create_rev, mod_rev, value) "
                    "VALUES (?,?,?,?)",
                    (key, create_rev or rev, rev, value),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._revision = rev
        kv = KeyValue(key, value, create_rev or rev, rev)
        self._publish(Event("DELETE" if deleted else "PUT", kv, prev))
        return kv

    async def create(self, key: str, value: bytes) -> KeyValue:
        if self.get_now(key) is not None:
            raise KeyExists(key)
        return self._write(key, value, 0, None, False)

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> KeyValue:
        prev = self.get_now(key)
        if prev is None:
            raise KeyNotFound(key)
        if expected_revision and prev.mod_revision != expected_revision:
            raise RevisionMismatch(key, prev)
        return self._write(key, value, prev.create_revision, prev, False)

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        prev = self.get_now(key)
        if prev is None:
            raise KeyNotFound(key)
        if expected_revision and prev.mod_revision != expected_revision:
            raise RevisionMismatch(key, prev)
        return self._write(key, prev.value, prev.create_revision, prev, True)

    # -- watch -------------------------------------------------------------------------

    def _publish(self, event: Event) -> None:
        key = event.kv.key
        for prefix, queue in self._subscribers:
            if key.startswith(prefix):
                queue.put_nowait(event)

    def _history(self, prefix: str, after: int) -> list[Event]:
        rows = self._db.execute(
            "SELECT l.key, l.create_rev, l.rev, l.deleted, l.value, p.rev, p.create_rev, p.value "
            "FROM log l LEFT JOIN log p ON p.rev = l.prev_rev "
            "WHERE l.rev > ? AND l.key >= ? AND l.key < ? ORDER BY l.rev",
            (after, prefix, _prefix_end(prefix)),
        ).fetchall()
        events = []
        for key, create_rev, rev, deleted, value, prev_rev, prev_create, prev_value in rows:
            prev = KeyValue(key, prev_value, prev_create, prev_rev) if prev_rev else None
            events.append(
                Event("DELETE" if deleted else "PUT", KeyValue(key, value, create_rev, rev), prev)
            )
        return events

    async def watch(self, prefix: str, from_revision: int) -> AsyncIterator[Event]:
        if from_revision < self._compacted:
            raise Compacted(from_revision, self._compacted)
        queue: asyncio.Queue[Event] = asyncio.Queue()
        entry = (prefix, queue)
        self._subscribers.append(entry)
        try:
            last = from_revision
            if from_revision < self._revision:
                for event in self._history(prefix, from_revision):
                    last = event.revision
                    yield event
            while True:
                event = await queue.get()
                if event.revision > last:
                    last = event.revision
                    yield event
        finally:
            self._subscribers.remove(entry)

    # -- maintenance -------------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        """Drop history at or below `revision`, keeping each key's newest row as of it."""
        revision = min(revision, self._revision)
        if revision <= self._compacted:
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "DELETE FROM log WHERE rev <= :c AND (deleted = 1 OR EXISTS ("
                "SELECT 1 FROM log n WHERE n.key = log.key AND n.rev > log.rev AND n.rev <= :c))",
                {"c": revision},
            )
            db.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES ('compacted', ?)", (revision,)
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._compacted = revision

    async def close(self) -> None:
        self._db.close()
        os.close(self._lock_fd)

