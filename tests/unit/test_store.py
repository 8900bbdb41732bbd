"""The SQLite datastore keeps etcd v3 semantics: revisions, CAS, history, watch, compaction."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap

import pytest

from pilothouse.store import (
    Compacted,
    DataDirInUse,
    KeyExists,
    KeyNotFound,
    RevisionMismatch,
)
from pilothouse.store.sqlite import SQLiteStore


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore.open(tmp_path / "state.db")
    yield s
    asyncio.run(s.close())


def run(coro):
    return asyncio.run(coro)


def test_revisions_are_global_and_per_key(store):
    async def go():
        a = await store.create("/r/a", b"1")
        b = await store.create("/r/b", b"2")
        a2 = await store.update("/r/a", b"3", expected_revision=a.mod_revision)
        return a, b, a2

    a, b, a2 = run(go())
    assert (a.mod_revision, b.mod_revision, a2.mod_revision) == (1, 2, 3)
    assert a2.create_revision == 1
    assert store.revision == 3


def test_create_twice_and_stale_update_fail(store):
    async def go():
        a = await store.create("/r/a", b"1")
        with pytest.raises(KeyExists):
            await store.create("/r/a", b"again")
        await store.update("/r/a", b"2", expected_revision=a.mod_revision)
        with pytest.raises(RevisionMismatch) as stale:
            await store.update("/r/a", b"3", expected_revision=a.mod_revision)
        with pytest.raises(KeyNotFound):
            await store.update("/r/missing", b"x", expected_revision=0)
        return stale.value, await store.get("/r/a")

    stale, current = run(go())
    assert stale.current.value == b"2"
    assert current.value == b"2"


def test_range_is_prefix_bounded_paginated_and_readable_in_the_past(store):
    async def go():
        for name in ("a", "b", "c"):
            await store.create(f"/r/ns/{name}", name.encode())
        await store.create("/r/nsx/z", b"z")  # shares a string prefix, not the key prefix
        first = await store.range("/r/ns/", limit=2)
        rest = await store.range("/r/ns/", start_after=first.kvs[-1].key, limit=2,
                                 revision=first.revision)
        await store.delete("/r/ns/a")
        past = await store.range("/r/ns/", revision=first.revision)
        now = await store.range("/r/ns/")
        return first, rest, past, now

    first, rest, past, now = run(go())
    assert [kv.value for kv in first.kvs] == [b"a", b"b"] and first.more
    assert [kv.value for kv in rest.kvs] == [b"c"] and not rest.more
    assert [kv.value for kv in past.kvs] == [b"a", b"b", b"c"]
    assert [kv.value for kv in now.kvs] == [b"b", b"c"]


def test_watch_replays_history_then_streams_live_events(store):
    async def go():
        await store.create("/r/a", b"1")
        start = store.revision
        await store.update("/r/a", b"2", expected_revision=0)
        events = []

        async def consume():
            async for event in store.watch("/r/", start):
                events.append(event)
                if len(events) == 3:
                    return

        task = asyncio.create_task(consume())
        await asyncio.sleep(0)
        await store.create("/other/x", b"ignored")
        await store.create("/r/b", b"3")
        await store.delete("/r/a")
        await asyncio.wait_for(task, 2)
        return events

    events = run(go())
    assert [(e.type, e.kv.key, e.kv.value) for e in events] == [
        ("PUT", "/r/a", b"2"), ("PUT", "/r/b", b"3"), ("DELETE", "/r/a", b"2")]
    assert events[0].prev.value == b"1"
    assert [e.revision for e in events] == sorted(e.revision for e in events)


def test_compaction_keeps_latest_and_refuses_older_reads(store):
    async def go():
        a = await store.create("/r/a", b"1")
        await store.update("/r/a", b"2", expected_revision=a.mod_revision)
        await store.create("/r/b", b"x")
        await store.compact(store.revision)
        with pytest.raises(Compacted):
            await store.range("/r/", revision=1)
        with pytest.raises(Compacted):
            async for _ in store.watch("/r/", 1):
                pass
        return await store.range("/r/")

    result = run(go())
    assert [kv.value for kv in result.kvs] == [b"2", b"x"]


def test_second_owner_of_a_data_dir_is_refused(store, tmp_path):
    with pytest.raises(DataDirInUse, match="in use by another Pilothouse process"):
        SQLiteStore.open(tmp_path / "state.db")


def test_acknowledged_writes_survive_kill_9(tmp_path):
    """A child acknowledges each write on stdout, then is killed mid-stream with SIGKILL."""
    db = tmp_path / "state.db"
    child = textwrap.dedent(f"""
        import asyncio, sys
        from pilothouse.store.sqlite import SQLiteStore
        async def main():
            s = SQLiteStore.open({str(db)!r})
            i = 0
            while True:
                await s.create(f"/r/k{{i:08d}}", b"v" * 200)
                print(i, flush=True)
                i += 1
        asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    acknowledged = -1
    assert proc.stdout is not None
    for line in proc.stdout:
        acknowledged = int(line)
        if acknowledged >= 300:
            break
    os.kill(proc.pid, 9)
    proc.wait()
    store = SQLiteStore.open(db)
    try:
        keys = {kv.key for kv in run(store.range("/r/")).kvs}
    finally:
        run(store.close())
    assert all(f"/r/k{i:08d}" in keys for i in range(acknowledged + 1))
