"""Running components as child processes of `pilothouse up`.

`up` is one command for the user but several processes underneath, so the API server and
the control loops each get a core. A `Child` restarts its process if it dies (with a
growing pause, as a process supervisor would) and stops it with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 5.0
MAX_RESTART_DELAY = 30.0


class Child:
    def __init__(self, name: str, args: list[str]) -> None:
        self.name = name
        self.argv = [sys.executable, "-m", "pilothouse.cli", *args]
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_running(), name=f"child-{self.name}")

    async def _keep_running(self) -> None:
        delay = 0.5
        while not self._stopping:
            self._process = await asyncio.create_subprocess_exec(*self.argv)
            code = await self._process.wait()
            if self._stopping:
                return
            log.warning("%s exited with %s; restarting in %.1fs", self.name, code, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RESTART_DELAY)

    async def stop(self) -> None:
        self._stopping = True
        process = self._process
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE_SECONDS)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
