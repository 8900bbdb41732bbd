"""The work queue de-duplicates, never hands one key to two workers, and backs off."""

from __future__ import annotations

import asyncio

from pilothouse.client.workqueue import WorkQueue


def test_dedup_and_one_worker_per_key() -> None:
    async def go() -> None:
        queue = WorkQueue()
        queue.add("a")
        queue.add("a")
        queue.add("b")
        await asyncio.sleep(0)
        assert len(queue) == 2
        first = await queue.get()
        assert first == "a"
        queue.add("a")  # while "a" is being processed: marked dirty, not handed out
        second = await queue.get()
        assert second == "b"
        assert len(queue) == 0
        queue.done("a")  # now it comes back
        assert await asyncio.wait_for(queue.get(), 1) == "a"

    asyncio.run(go())


def test_rate_limited_retries_back_off_and_forget_resets() -> None:
    async def go() -> None:
        queue = WorkQueue(base_delay=0.02)
        loop = asyncio.get_running_loop()
        delays = []
        for _ in range(3):
            start = loop.time()
            queue.add_rate_limited("k")
            key = await asyncio.wait_for(queue.get(), 2)
            delays.append(loop.time() - start)
            queue.done(key)
        assert delays[0] >= 0.015 and delays[1] >= 0.035 and delays[2] >= 0.075
        assert queue.retries("k") == 3
        queue.forget("k")
        assert queue.retries("k") == 0

    asyncio.run(go())


def test_add_after_keeps_the_earliest_and_shutdown_releases_workers() -> None:
    async def go() -> None:
        queue = WorkQueue()
        queue.add_after("x", 5)
        queue.add_after("x", 0.01)
        assert await asyncio.wait_for(queue.get(), 1) == "x"
        waiter = asyncio.create_task(queue.get())
        await asyncio.sleep(0.01)
        await queue.shutdown()
        assert await asyncio.wait_for(waiter, 1) is None

    asyncio.run(go())
