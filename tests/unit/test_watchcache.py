"""The watch cache fans one store watch out to many watchers, and refuses too-old revisions."""

from __future__ import annotations

import asyncio

import pytest

from pilothouse.apiserver.watchcache import WatchCache
from pilothouse.machinery.errors import APIError
from pilothouse.store.sqlite import SQLiteStore


def obj(name: str, value: int) -> bytes:
    return f'{{"metadata": {{"name": "{name}"}}, "v": {value}}}'.encode()


def test_fan_out_replay_and_gone(tmp_path) -> None:
    async def go() -> None:
        store = SQLiteStore.open(tmp_path / "state.db")
        cache = WatchCache(store, capacity=4)
        await cache.start()
        watchers = [cache.watch("/registry/core/configmaps/a/", store.revision)
                    for _ in range(50)]
        other = cache.watch("/registry/core/configmaps/b/", store.revision)
        kv = await store.create("/registry/core/configmaps/a/x", obj("x", 1))
        await store.update("/registry/core/configmaps/a/x", obj("x", 2),
                           expected_revision=kv.mod_revision)
        received = []
        for watcher in watchers:
            first, second = await watcher.next(1), await watcher.next(1)
            assert first is not None and second is not None
            assert first.obj()["v"] == 1 and second.obj()["v"] == 2
            assert second.line("MODIFIED").startswith(b'{"type":"MODIFIED","object":')
            received.append(second)
        # one event object (decoded once, its line encoded once) is shared by every watcher
        assert all(event is received[0] for event in received)
        assert await other.next(0.05) is None  # another namespace's prefix sees nothing
        late = cache.watch("/registry/core/configmaps/a/", kv.mod_revision)
        replayed = await late.next(1)
        assert replayed is not None and replayed.obj()["v"] == 2
        for i in range(6):  # roll the 4-event buffer past the start
            await store.create(f"/registry/core/configmaps/a/y{i}", obj(f"y{i}", i))
        await asyncio.sleep(0.05)
        with pytest.raises(APIError) as gone:
            cache.watch("/registry/core/configmaps/a/", kv.mod_revision)
        assert gone.value.code == 410
        await cache.stop()
        await store.close()

    asyncio.run(go())


def test_previous_objects_are_reused_not_decoded_again(tmp_path) -> None:
    async def go() -> None:
        store = SQLiteStore.open(tmp_path / "state.db")
        cache = WatchCache(store)
        await cache.start()
        watcher = cache.watch("/registry/core/configmaps/", store.revision)
        kv = await store.create("/registry/core/configmaps/a/x", obj("x", 1))
        kv = await store.update("/registry/core/configmaps/a/x", obj("x", 2),
                                expected_revision=kv.mod_revision)
        await store.delete("/registry/core/configmaps/a/x")
        created, updated, deleted = [await watcher.next(1) for _ in range(3)]
        assert created is not None and updated is not None and deleted is not None
        assert updated.prev() is created.obj()  # the same decoded dict, not a second decode
        assert deleted.prev() is updated.obj()
        assert deleted.obj()["v"] == 2
        assert deleted.obj()["metadata"]["resourceVersion"] == str(deleted.revision)
        assert updated.obj()["metadata"]["resourceVersion"] != deleted.obj()[
            "metadata"]["resourceVersion"]  # the reused object itself was not changed
        await cache.stop()
        await store.close()

    asyncio.run(go())
