"""The scheduler's event sink: a burst is written in full, more waits for tokens, and a
full queue drops rather than growing without bound."""

from __future__ import annotations

import asyncio
from typing import Any

from pilothouse.scheduler.events import EventSink, TokenBucket


class Recorder:
    def __init__(self) -> None:
        self.written: list[str] = []

    async def record(self, obj: Any, event_type: str, reason: str, message: str) -> None:
        self.written.append(message)


def test_token_bucket_gives_a_burst_then_paces_at_qps() -> None:
    now = [0.0]
    bucket = TokenBucket(10, 3, clock=lambda: now[0])
    assert [bucket.delay() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert abs(bucket.delay() - 0.1) < 1e-9  # the fourth waits for one refill
    now[0] += 1.0
    assert bucket.delay() == 0.0  # refilled (capped at the burst)


def test_a_small_burst_is_written_in_full_and_a_full_queue_drops() -> None:
    async def go() -> None:
        recorder = Recorder()
        sink = EventSink(recorder, qps=1000, burst=5, max_queued=4)  # type: ignore[arg-type]
        for i in range(6):
            sink.record({"metadata": {"name": f"p{i}"}}, "Normal", "Scheduled", f"m{i}")
        assert sink.dropped == 2
        task = asyncio.create_task(sink.run())
        for _ in range(50):
            if len(recorder.written) == 4:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        assert recorder.written == ["m0", "m1", "m2", "m3"]

    asyncio.run(go())
