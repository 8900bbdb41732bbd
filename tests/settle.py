"""Driving a controller in unit tests: relist its informers (as watches would deliver the
fake API's objects) and work its queue until the fake API stops changing."""

from __future__ import annotations

import asyncio
from typing import Any


def settle(ctrl: Any, api: Any, *, rounds: int = 30) -> None:
    """`ctrl` has `context.informers` and `queue`/`reconcile`; `api` counts its writes in
    `version`. Fails if the controller is still writing after `rounds` relists."""

    async def go() -> None:
        for _ in range(rounds):
            before = api.version
            for informer in ctrl.context.informers._informers.values():
                await informer._relist()
            while len(ctrl.queue):
                key = await ctrl.queue.get()
                assert key is not None
                try:
                    await ctrl.reconcile(key)
                finally:
                    ctrl.queue.done(key)
            if api.version == before and not len(ctrl.queue):
                return
        raise AssertionError(f"{type(ctrl).__name__} never settled")

    asyncio.run(go())
