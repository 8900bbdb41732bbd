"""Running components as child processes of `pilothouse up`.

`up` is one command for the user but several processes underneath, so the API server and
the control loops each get a core. A `Child` restarts its process if it dies (with a
growing pause, as a process supervisor would) and stops it with SIGTERM, then SIGKILL;
if `up` itself is killed, the kernel sends each child SIGTERM (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import sys

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 5.0
PR_SET_PDEATHSIG = 1
MAX_RESTART_DELAY = 30.0


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it when `up` dies, even by kill -9,
    so no component outlives the cluster it belongs to."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    def __init__(self, name: str, args: list[str], *,
                 stop_grace: float = STOP_GRACE_SECONDS) -> None:
        self.name = name
        self.argv = [sys.executable, "-m", "pilothouse.cli", *args]
        #: How long a SIGTERM may take before SIGKILL (the node agent stops its pods first).
        self.stop_grace = stop_grace
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_running(), name=f"child-{self.name}")

    async def _keep_running(self) -> None:
        delay = 0.5
        while not self._stopping:
            self._process = await asyncio.create_subprocess_exec(
                *self.argv, preexec_fn=_die_with_parent)
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
                await asyncio.wait_for(process.wait(), self.stop_grace)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
