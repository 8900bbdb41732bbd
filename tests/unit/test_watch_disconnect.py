"""A watch whose client goes away is ended at once, not at its timeout: idle watches of
clients that died (or components that were stopped) must not pile up in the server."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.inprocess import in_process_cluster


def test_a_watch_ends_when_its_client_disconnects(tmp_path: Path) -> None:
    with in_process_cluster(tmp_path) as cluster:
        cache = cluster.server.watch_cache
        assert cache is not None

        async def scenario() -> tuple[int, int, int]:
            before = len(cache._watchers)
            async with cluster.session() as admin:
                response = await admin.get("/api/v1/namespaces/default/configmaps",
                                           params={"watch": "1", "resourceVersion": "1",
                                                   "timeoutSeconds": "600"})
                assert response.status == 200
                for _ in range(100):
                    if len(cache._watchers) > before:
                        break
                    await asyncio.sleep(0.01)
                during = len(cache._watchers)
                response.close()
            for _ in range(200):
                if len(cache._watchers) == before:
                    break
                await asyncio.sleep(0.01)
            return before, during, len(cache._watchers)

        before, during, after = cluster.run(scenario())
        assert during == before + 1
        assert after == before
