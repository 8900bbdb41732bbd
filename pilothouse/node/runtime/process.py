"""The process runtime: each container is a process group on the host, supervised by a shim.

A container here is the host's own programs run as a new session (so its process group can
be signalled as one), with the environment the pod spec gives (exactly `env`, plus PATH
with the image's virtual environment first, HOSTNAME, and TERM under a tty), under its
shim (`shim.py`), which owns the process, writes the CRI log and records the exit. All
state is on disk, under the pod's folder:

    <pod dir>/.sandbox/                 hosts, resolv.conf, hostname, sandbox.json
    <pod dir>/.containers/<64 hex>/     config.json (what to run, the full ContainerConfig
                                        with labels), state.json (written by the shim),
                                        attach.sock, termination-log, shim.log, root/

so `list_containers()` in a fresh process (a kubelet that was killed and came back) finds
every container, running or exited, and its exit code. A container id is
`process://<64 hex>`. Pods share the host's network and bind the loopback address the
kubelet gave them.

What this runtime cannot do, and does instead:

- **Volumes are not mounted.** Nothing can be mounted without namespaces, so each
  container gets `root/` in its state folder where every mount's container path is a
  symlink to the volume's host folder (a view for people and tools), and the paths it is
  given are rewritten: argv elements, env values and workingDir that name a mount's
  container path (the longest match, at a path boundary, e.g. `cat /etc/config/key` or
  `--data=/data/x`) become the host path. A path the program builds at run time, or reads
  from a file, is not rewritten. The termination message path maps to
  `termination-log` in the state folder the same way.
- **Limits are not enforced**, and the pod sees the host's hostname, PIDs and files
  (HOSTNAME is set), except that as root each container runs in a mount namespace of its
  own where /etc/hosts and /etc/resolv.conf are the pod's (`POD_FILES`, bound by the
  shim; exec joins it), so cluster names resolve through the node's DNS as they do in
  the sandbox. Without root they are the host's, and only addresses reach other pods.
  A process that leaves the container's session (setsid, a daemon that detaches) is not
  stopped with it. The sandbox runtime (`sandbox.py`) does these with namespaces and
  cgroups, built on this one.
- A container whose workingDir is unset starts in its `root/` folder rather than the
  host's `/`, so a program writing relative paths writes into the pod, not the host.

Exit and adoption: the shim records the exit; a container whose shim died without
recording it (killed, OOM) is reported exited with code 137 and reason Error (the code a
SIGKILL gives, the most likely end; the message says the code is unknown), once its
process is gone, and that verdict is written to state.json so it never changes. A start
that fails (a command that does not exist, a working dir that does not) raises
RunContainerError and stays listed as exited with code 128, reason ContainerCannotRun,
as containerd keeps such a container until it is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import posixpath
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pilothouse.node.runtime import shim
from pilothouse.node.runtime.base import (
    ContainerConfig,
    ContainerStats,
    ContainerStatus,
    PodSandboxConfig,
    Runtime,
    RuntimeFailure,
    RuntimeUnavailable,
    StreamSession,
)

log = logging.getLogger(__name__)

SHIM_PATH = Path(shim.__file__)
SANDBOX_DIR = ".sandbox"
CONTAINERS_DIR = ".containers"
#: The pod's files (in SANDBOX_DIR) a container sees at the host's paths, when it can.
POD_FILES = {"hosts": "/etc/hosts", "resolv.conf": "/etc/resolv.conf"}
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_MAX_FILES = 5
#: How long the shim may take to start a container and say so.
START_TIMEOUT = 30.0
#: A container with config.json and no state.json this long after is one whose shim died.
LOST_START_SECONDS = START_TIMEOUT + 5
LOST_EXIT_CODE = 137
#: How long `attach` waits for a just-started container's shim to open its socket.
ATTACH_WAIT = 2.0
START_ERROR_PREFIX = "unable to start container process: "
EXEC_ERROR_PREFIX = "OCI runtime exec failed: exec failed: unable to start container process: "


# -- what a container is given ------------------------------------------------------------

def container_env(config: ContainerConfig, hostname: str, host_path: str) -> dict[str, str]:
    """The container's environment: exactly the spec's env, plus PATH (the image's bin
    first, then the host's), HOSTNAME, and TERM with a tty, unless the spec sets them."""
    env = dict(config.env)
    if "PATH" not in env:
        image_bin = [str(config.image_dir / "bin")] if config.image_dir else []
        env["PATH"] = ":".join([*image_bin, host_path])
    env.setdefault("HOSTNAME", hostname)
    if config.tty:
        env.setdefault("TERM", "xterm")
    return env


def look_path(name: str, env_path: str, *, cwd: str = "/",
              view: Callable[[str], str | None] = lambda path: path,
              prefix: str = START_ERROR_PREFIX) -> str:
    """Find the program exec would run, as the container sees it: a name with a slash is a
    path, any other is looked for along PATH. `view` maps a container path to where it can
    be checked on the host (None: it does not exist there). Raises RunContainerError with
    the message runc gives."""
    def fail(detail: str) -> RuntimeFailure:
        return RuntimeFailure("RunContainerError", f'{prefix}exec: "{name}": {detail}')

    if "/" in name:
        candidate = posixpath.normpath(posixpath.join(cwd, name))
        host = view(candidate)
        if host is None or not os.path.exists(host):
            raise fail(f"stat {name}: no such file or directory")
        if os.path.isdir(host) or not os.access(host, os.X_OK):
            raise fail("permission denied")
        return candidate
    for folder in env_path.split(":"):
        candidate = posixpath.join(posixpath.join(cwd, folder or "."), name)
        host = view(candidate)
        if host is not None and os.path.isfile(host) and os.access(host, os.X_OK):
            return candidate
    raise fail("executable file not found in $PATH")


_BOUNDARY = r"\s'\"=:;,(|&<>"


class PathMap:
    """Container paths of mounts -> the host paths they stand for, for a runtime that cannot
    mount: maps a path, or every path at a boundary inside a text (an argv element, an env
    value)."""

    def __init__(self, pairs: Mapping[str, str]) -> None:
        self.pairs = dict(sorted(((k.rstrip("/"), v) for k, v in pairs.items()
                                  if k.strip("/")), key=lambda kv: -len(kv[0])))
        self._pattern = None
        if self.pairs:
            names = "|".join(re.escape(k) for k in self.pairs)
            self._pattern = re.compile(rf"(?<![^{_BOUNDARY}])({names})(?=$|[/){_BOUNDARY}])")

    def host(self, path: str) -> str:
        for container, host in self.pairs.items():
            if path == container or path.startswith(container + "/"):
                return host + path[len(container):]
        return path

    def rewrite(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self.pairs[m.group(1)], text)


def _config_doc(config: ContainerConfig) -> dict[str, Any]:
    return {
        "name": config.name, "attempt": config.attempt, "image": config.image,
        "image_dir": str(config.image_dir) if config.image_dir else None,
        "argv": list(config.argv), "env": dict(config.env), "working_dir": config.working_dir,
        "mounts": [{"host_path": str(m.host_path), "container_path": m.container_path,
                    "read_only": m.read_only} for m in config.mounts],
        "log_path": str(config.log_path),
        "termination_message_path": config.termination_message_path,
        "tty": config.tty, "stdin": config.stdin, "stdin_once": config.stdin_once,
        "cpu_limit_millicores": config.cpu_limit_millicores,
        "memory_limit_bytes": config.memory_limit_bytes, "labels": dict(config.labels),
    }


def _image_id(image_dir: Path | None) -> str:
    if image_dir is None:
        return ""
    try:
        return json.loads((image_dir / "pilothouse-image.json").read_text()).get("id", "")
    except (OSError, ValueError):
        return ""


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _alive(pid: int | None, start_time: int | None) -> bool:
    """Whether `pid` is still the process that had `start_time` (not gone, not reused)."""
    return bool(pid) and start_time is not None and shim.proc_start_time(pid) == start_time


def _hex(container_id: str, scheme: str) -> str | None:
    prefix = f"{scheme}://"
    if not container_id.startswith(prefix):
        return None
    hex_id = container_id[len(prefix):]
    return hex_id if re.fullmatch(r"[0-9a-f]{64}", hex_id) else None


def _proc_stats(pids: Sequence[int]) -> tuple[int, int]:
    """CPU time (ns, with reaped children) and resident memory (bytes) of processes."""
    ticks = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    cpu = rss = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is None:
            continue
        cpu += sum(int(fields[i]) for i in (11, 12, 13, 14))
        rss += int(fields[21])
    return cpu * 1_000_000_000 // ticks, rss * page


def _stat_fields(pid: int | str) -> list[bytes] | None:
    """/proc/<pid>/stat after the command name: [state, ppid, pgrp, session, ...]."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()
    except OSError:
        return None


def session_members(sid: int) -> list[int]:
    """The processes of a session: a process-runtime container's processes."""
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat_fields(name)
            if fields is not None and int(fields[3]) == sid:
                members.append(int(name))
    return members


async def _read_to_eof(fd: int) -> bytes:
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    done = loop.create_future()

    def readable() -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            chunks.append(data)
        elif not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
    return b"".join(chunks)


@contextlib.contextmanager
def _unix_address(path: Path):
    address, fd = shim.unix_address(str(path))
    try:
        yield address
    finally:
        if fd >= 0:
            os.close(fd)


# -- exec and attach sessions ---------------------------------------------------------------

def _mount_namespace_of(pid: int, cwd: str) -> Callable[[], None]:
    """An exec child's setup: join the mount namespace of the container's process `pid`
    (its own /etc/hosts and /etc/resolv.conf) and go back to `cwd`, which joining resets."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    path = f"/proc/{pid}/ns/mnt"

    def join() -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        if libc.setns(fd, shim.CLONE_NEWNS) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
        os.close(fd)
        os.chdir(cwd)

    return join


def _exit_code(returncode: int) -> int:
    return shim.SIGNAL_EXIT_BASE - returncode if returncode < 0 else returncode


class PipeSession(StreamSession):
    """A process started for exec, its stdio on pipes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        streams = {1: self.process.stdout, 2: self.process.stderr}
        reads = {asyncio.ensure_future(s.read(65536)): n for n, s in streams.items() if s}
        try:
            while reads:
                done, _ = await asyncio.wait(reads, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    n = reads.pop(task)
                    data = task.result()
                    if data:
                        yield n, data
                        reads[asyncio.ensure_future(streams[n].read(65536))] = n
        finally:
            for task in reads:
                task.cancel()

    async def write_stdin(self, data: bytes) -> None:
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.write(data)
            with contextlib.suppress(ConnectionError):
                await self.process.stdin.drain()

    async def close_stdin(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()

    async def resize(self, width: int, height: int) -> None:
        return None  # no terminal

    async def wait(self) -> int:
        return _exit_code(await self.process.wait())

    async def close(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        await self.process.wait()


class PtySession(StreamSession):
    """A process started for exec with a terminal: everything comes out on stream 1."""

    QUEUE_MAX = 64

    def __init__(self, process: asyncio.subprocess.Process, master: int) -> None:
        self.process = process
        self.master = master
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.reading = True
        os.set_blocking(master, False)
        self.loop.add_reader(master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # EIO: nothing holds the terminal any more
        if not data:
            self._stop_reading()
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(data)
        if self.queue.qsize() >= self.QUEUE_MAX:
            self._stop_reading()  # the client is slower than the process: wait for it

    def _stop_reading(self) -> None:
        if self.reading:
            self.loop.remove_reader(self.master)
            self.reading = False

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        while True:
            data = await self.queue.get()
            if data is None:
                return
            if not self.reading and self.queue.qsize() < self.QUEUE_MAX // 2 \
                    and self.master >= 0:
                self.reading = True
                self.loop.add_reader(self.master, self._readable)
            yield 1, data

    async def write_stdin(self, data: bytes) -> None:
        while data and self.master >= 0:
            try:
                data = data[os.write(self.master, data):]
            except BlockingIOError:
                await asyncio.sleep(0.01)
            except OSError:
                return

    async def close_stdin(self) -> None:
        await self.write_stdin(b"\x04")

    async def resize(self, width: int, height: int) -> None:
        if self.master >= 0:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ,
                        struct.pack("HHHH", height, width, 0, 0))

    async def wait(self) -> int:
        return _exit_code(await self.process.wait())

    async def close(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        await self.process.wait()
        if self.master >= 0:
            self._stop_reading()
            os.close(self.master)
            self.master = -1
            self.queue.put_nowait(None)


async def open_session(argv: Sequence[str], *, env: Mapping[str, str], cwd: str, tty: bool,
                       stdin: bool, executable: str | None = None,
                       setup: Callable[[], None] | None = None,
                       open_pty: Callable[[], tuple[int, int]] = os.openpty) -> StreamSession:
    """Start a process for exec in its own session, on pipes or on a new terminal (which
    becomes its controlling terminal). `setup` runs in the child before exec; `open_pty`
    makes the terminal (master, slave): a sandbox makes it in its own /dev/pts, so the
    program inside can name it."""
    if not tty:
        process = await asyncio.create_subprocess_exec(
            *argv, executable=executable, env=dict(env), cwd=cwd,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            preexec_fn=setup)
        return PipeSession(process)
    master, slave = open_pty()

    def controlling_terminal() -> None:
        # Our own setsid, and the terminal by its own descriptor: uvloop runs preexec_fn
        # before it makes the new session and before it moves the terminal onto fd 0, and
        # only a session leader can take a terminal.
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        if setup is not None:
            setup()

    try:
        process = await asyncio.create_subprocess_exec(
            *argv, executable=executable, env=dict(env), cwd=cwd, stdin=slave, stdout=slave,
            stderr=slave, preexec_fn=controlling_terminal)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return PtySession(process, master)


class AttachSession(StreamSession):
    """A connection to a container's shim (`attach.sock`): its output as it comes, input to
    its stdin."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 stdin: bool, exit_code: Callable[[], int | None]) -> None:
        self.reader = reader
        self.writer = writer
        self._exit_code = exit_code
        self.code: int | None = None
        self.ended = asyncio.Event()
        self._send(shim.HELLO, b"1" if stdin else b"0")

    def _send(self, kind: int, payload: bytes = b"") -> None:
        if not self.writer.is_closing():
            self.writer.write(shim.HEADER.pack(kind, len(payload)) + payload)

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        try:
            while True:
                try:
                    header = await self.reader.readexactly(shim.HEADER.size)
                    kind, size = shim.HEADER.unpack(header)
                    payload = await self.reader.readexactly(size)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                if kind == shim.EXIT:
                    self.code = struct.unpack(">i", payload)[0]
                    return
                yield (1 if kind == shim.STDOUT else 2), payload
        finally:
            self.ended.set()

    async def write_stdin(self, data: bytes) -> None:
        self._send(shim.STDIN, data)
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    async def close_stdin(self) -> None:
        self._send(shim.CLOSE_STDIN)

    async def resize(self, width: int, height: int) -> None:
        self._send(shim.RESIZE, struct.pack(">HH", width, height))

    async def wait(self) -> int:
        """The container's exit code: from the shim's EXIT frame when `output()` read it,
        else from the container's recorded state."""
        while self.code is None:
            code = self._exit_code()
            if code is not None:
                return code
            if self.ended.is_set():
                await asyncio.sleep(0.1)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ended.wait(), 0.2)
        return self.code

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


# -- the runtime ----------------------------------------------------------------------------

class ProcessRuntime(Runtime):
    """Containers as host process groups under shims; state in each pod's folder."""

    name = "process"

    def __init__(self, pods_root: Path, run_dir: Path, *, host_path: str | None = None,
                 log_max_bytes: int = LOG_MAX_BYTES, log_max_files: int = LOG_MAX_FILES) -> None:
        self.pods_root = Path(pods_root)
        self.run_dir = Path(run_dir)
        #: The host's PATH, after the image's bin in a container's PATH.
        self.host_path = host_path if host_path is not None else os.environ.get("PATH",
                                                                                 os.defpath)
        self.log_max_bytes = log_max_bytes
        self.log_max_files = log_max_files
        self.notify_path = self.run_dir / f"{self.name}-events.sock"
        self._folders: dict[str, Path] = {}
        self._configs: dict[str, dict[str, Any]] = {}
        self._exited: dict[str, ContainerStatus] = {}
        #: Whether containers get the pod's /etc/hosts and /etc/resolv.conf in a mount
        #: namespace of their own: binding them takes CAP_SYS_ADMIN.
        self.binds_pod_files = os.geteuid() == 0

    @classmethod
    def check(cls) -> None:
        if not sys.platform.startswith("linux"):
            raise RuntimeUnavailable(f"{cls.name}: needs Linux (/proc and pidfd)")
        try:
            os.close(os.pidfd_open(os.getpid()))
        except (AttributeError, OSError) as e:
            raise RuntimeUnavailable(f"{cls.name}: needs Linux 5.3 or later (pidfd): {e}") \
                from None

    # sandboxes -----------------------------------------------------------------------------

    async def run_pod_sandbox(self, config: PodSandboxConfig) -> None:
        folder = config.pod_dir / SANDBOX_DIR
        folder.mkdir(parents=True, exist_ok=True)
        files = {"hosts": config.hosts, "resolv.conf": config.resolv_conf,
                 "hostname": config.hostname + "\n",
                 "sandbox.json": json.dumps({"uid": config.uid, "namespace": config.namespace,
                                             "name": config.name, "ip": config.ip,
                                             "hostname": config.hostname,
                                             "labels": dict(config.labels),
                                             "runtime": self.name}, indent=1)}
        for name, text in files.items():
            path = folder / name
            with contextlib.suppress(OSError):
                if path.read_text() == text:
                    continue
            tmp = path.with_name(name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)

    async def remove_pod_sandbox(self, config: PodSandboxConfig) -> None:
        shutil.rmtree(config.pod_dir / SANDBOX_DIR, ignore_errors=True)
        with contextlib.suppress(OSError):
            (config.pod_dir / CONTAINERS_DIR).rmdir()

    # containers ----------------------------------------------------------------------------

    async def start_container(self, sandbox: PodSandboxConfig,
                              config: ContainerConfig) -> ContainerStatus:
        hex_id = secrets.token_hex(32)
        folder = sandbox.pod_dir / CONTAINERS_DIR / hex_id
        folder.mkdir(parents=True)
        config.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        termination = folder / "termination-log"
        termination.touch()
        doc: dict[str, Any] = {
            "id": f"{self.name}://{hex_id}", "runtime": self.name,
            "pod": {"uid": sandbox.uid, "namespace": sandbox.namespace, "name": sandbox.name,
                    "hostname": sandbox.hostname, "ip": sandbox.ip},
            "container": _config_doc(config), "imageId": _image_id(config.image_dir),
            "log_path": str(config.log_path), "log_max_bytes": self.log_max_bytes,
            "log_max_files": self.log_max_files, "notify": str(self.notify_path),
            "tty": config.tty, "stdin": config.stdin, "stdin_once": config.stdin_once,
            "termination_file": str(termination), "cgroups": [], "oom_files": [],
        }
        self._folders[hex_id] = folder
        self._configs[hex_id] = doc
        try:
            doc.update(self._launch(sandbox, config, folder, hex_id))
        except RuntimeFailure as failure:
            self._write_config(folder, doc)
            shim.write_json(str(folder / "state.json"), {
                "status": "exited", "exitCode": shim.CANNOT_RUN_EXIT_CODE,
                "reason": "ContainerCannotRun", "message": failure.message,
                "finishedAt": time.time()})
            raise
        self._write_config(folder, doc)
        report = await self._spawn_shim(folder)
        if "error" in report:
            raise RuntimeFailure("RunContainerError", report["error"])
        status = self._status(hex_id)
        assert status is not None
        return status

    @staticmethod
    def _write_config(folder: Path, doc: dict[str, Any]) -> None:
        with open(folder / "config.json", "w") as f:
            json.dump(doc, f, indent=1)

    def _launch(self, sandbox: PodSandboxConfig, config: ContainerConfig, folder: Path,
                hex_id: str) -> dict[str, Any]:
        """What the shim runs: the program, argv, env, cwd (paths rewritten to the host)."""
        termination = str(folder / "termination-log")
        pairs = {m.container_path: str(m.host_path) for m in config.mounts}
        pairs[config.termination_message_path] = termination
        paths = PathMap(pairs)
        root = folder / "root"
        root.mkdir()
        for container, host in sorted(paths.pairs.items(), key=lambda kv: len(kv[0])):
            link = root / container.lstrip("/")
            if link.exists() or any(p.is_symlink() for p in link.parents if root in p.parents):
                continue  # inside another mount: the host folder already shows it
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(host)
        env = {k: paths.rewrite(v) for k, v in
               container_env(config, sandbox.hostname, self.host_path).items()}
        cwd = paths.host(config.working_dir) if config.working_dir else str(root)
        if not os.path.isdir(cwd):
            raise RuntimeFailure("RunContainerError", f'{START_ERROR_PREFIX}chdir to cwd '
                                 f'("{config.working_dir}") set in config.json failed: '
                                 'no such file or directory')
        if not config.argv:
            raise RuntimeFailure("CreateContainerError", "no command specified: the "
                                 f"{self.name} runtime has no image entrypoint; set command")
        argv = [paths.rewrite(a) for a in config.argv]
        program = look_path(argv[0], env.get("PATH", ""), cwd=cwd)
        pod = sandbox.pod_dir / SANDBOX_DIR
        pod_files = [[str(pod / name), target] for name, target in POD_FILES.items()
                     if os.path.exists(target)] if self.binds_pod_files else []
        return {"exe": program, "argv": argv, "env": env, "cwd": cwd,
                "display_cwd": config.working_dir or "/", "paths": paths.pairs,
                "pod_files": pod_files}

    async def _spawn_shim(self, folder: Path) -> dict[str, Any]:
        """Start the shim for the container in `folder`; its one-line report: pid or error."""
        read_fd, write_fd = os.pipe()
        try:
            with open(folder / "shim.log", "ab") as errors:
                process = subprocess.Popen(
                    [sys.executable, "-I", "-S", str(SHIM_PATH), str(folder)],
                    stdin=subprocess.DEVNULL, stdout=write_fd, stderr=errors)
        finally:
            os.close(write_fd)
        try:
            data = await asyncio.wait_for(_read_to_eof(read_fd), START_TIMEOUT)
        except TimeoutError:
            data = b""
        finally:
            os.close(read_fd)
        process.wait()  # the first shim process exits as soon as it has forked
        try:
            return json.loads(data)
        except ValueError:
            return {"error": f"{START_ERROR_PREFIX}the shim did not report a start "
                             f"(see {folder / 'shim.log'})"}

    # state ---------------------------------------------------------------------------------

    def _folder(self, hex_id: str) -> Path | None:
        folder = self._folders.get(hex_id)
        if folder is not None and folder.exists():
            return folder
        for pod in self._pod_dirs():
            candidate = pod / CONTAINERS_DIR / hex_id
            if (candidate / "config.json").exists():
                self._folders[hex_id] = candidate
                return candidate
        return None

    def _pod_dirs(self) -> list[Path]:
        try:
            return [Path(e.path) for e in os.scandir(self.pods_root) if e.is_dir()]
        except OSError:
            return []

    def _config(self, hex_id: str, folder: Path) -> dict[str, Any] | None:
        doc = self._configs.get(hex_id)
        if doc is None:
            doc = _read_json(folder / "config.json")
            if doc is None or doc.get("runtime") != self.name:
                return None
            self._configs[hex_id] = doc
        return doc

    def _status(self, hex_id: str) -> ContainerStatus | None:
        if hex_id in self._exited:
            return self._exited[hex_id]
        folder = self._folder(hex_id)
        if folder is None:
            return None
        doc = self._config(hex_id, folder)
        if doc is None:
            return None
        state = _read_json(folder / "state.json")
        if state is None:
            try:
                age = time.time() - (folder / "config.json").stat().st_mtime
            except OSError:
                return None
            if age < LOST_START_SECONDS:
                return self._make_status(doc, {}, "created")
            state = self._record_lost(folder, {}, shim.CANNOT_RUN_EXIT_CODE,
                                      "ContainerCannotRun", "the shim never started it")
        elif state.get("status") == "running":
            if _alive(state.get("pid"), state.get("pidStartTime")) or \
                    _alive(state.get("shimPid"), state.get("shimStartTime")):
                return self._make_status(doc, state, "running")
            # The shim is gone: what it recorded before it went is on disk now.
            state = _read_json(folder / "state.json") or state
            if state.get("status") != "exited":
                state = self._record_lost(
                    folder, state, LOST_EXIT_CODE, "Error",
                    "the container's shim ended without recording its exit; the exit code "
                    "is unknown")
        status = self._make_status(doc, state, "exited")
        self._exited[hex_id] = status
        return status

    def _record_lost(self, folder: Path, state: dict[str, Any], code: int, reason: str,
                     message: str) -> dict[str, Any]:
        state = {**state, "status": "exited", "exitCode": code, "reason": reason,
                 "message": message, "finishedAt": time.time(), "lost": True}
        shim.write_json(str(folder / "state.json"), state)
        log.warning("container %s: %s", folder.name, message)
        return state

    def _make_status(self, doc: dict[str, Any], state: dict[str, Any],
                     status: str) -> ContainerStatus:
        c = doc["container"]
        return ContainerStatus(
            id=doc["id"], name=c["name"], attempt=c["attempt"], state=status,
            labels=c["labels"], pid=state.get("pid"), started_at=state.get("startedAt"),
            finished_at=state.get("finishedAt") if status == "exited" else None,
            exit_code=state.get("exitCode") if status == "exited" else None,
            reason=state.get("reason", "") if status == "exited" else "",
            message=state.get("message", "") if status == "exited" else "",
            image=c["image"], image_id=doc.get("imageId", ""))

    def _running(self, container_id: str) -> tuple[str, Path, dict[str, Any], dict[str, Any]]:
        """(hex, folder, config, state) of a running container, else RuntimeFailure."""
        hex_id = _hex(container_id, self.name)
        status = self._status(hex_id) if hex_id else None
        if status is None:
            raise RuntimeFailure("ContainerNotFound", f"container {container_id} not found")
        if status.state != "running":
            raise RuntimeFailure("ContainerNotRunning",
                                 f"container {container_id} is not running ({status.state})")
        folder = self._folders[hex_id]
        return hex_id, folder, self._configs[hex_id], _read_json(folder / "state.json") or {}

    async def container_status(self, container_id: str) -> ContainerStatus | None:
        hex_id = _hex(container_id, self.name)
        return self._status(hex_id) if hex_id else None

    async def list_containers(self) -> list[ContainerStatus]:
        statuses = []
        for pod in self._pod_dirs():
            try:
                entries = os.listdir(pod / CONTAINERS_DIR)
            except OSError:
                continue
            for hex_id in entries:
                self._folders.setdefault(hex_id, pod / CONTAINERS_DIR / hex_id)
                status = self._status(hex_id)
                if status is not None:
                    statuses.append(status)
        return statuses

    async def container_events(self) -> AsyncIterator[str]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.notify_path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            with _unix_address(self.notify_path) as address:
                sock.bind(address)
            loop = asyncio.get_running_loop()
            while True:
                data = await loop.sock_recv(sock, 512)
                container_id = data.decode(errors="replace")
                hex_id = _hex(container_id, self.name)
                if hex_id:
                    yield container_id
        finally:
            sock.close()

    # stopping ------------------------------------------------------------------------------

    async def stop_container(self, container_id: str, grace_seconds: float) -> None:
        hex_id = _hex(container_id, self.name)
        status = self._status(hex_id) if hex_id else None
        if hex_id is None or status is None or status.state == "exited":
            return
        if status.state == "created" and not await self._wait_state(hex_id, "created", 5.0):
            return
        folder = self._folders[hex_id]
        state = _read_json(folder / "state.json") or {}
        if grace_seconds > 0:
            self._signal(state, signal.SIGTERM)
            if await self._wait_state(hex_id, "running", grace_seconds):
                return
        self._signal(state, signal.SIGKILL)
        if not await self._wait_state(hex_id, "running", 10.0):
            log.warning("container %s: still running 10 s after SIGKILL", container_id)

    async def _wait_state(self, hex_id: str, leave: str, timeout: float) -> bool:
        """Wait until the container's state is no longer `leave`; False on timeout."""
        deadline = time.monotonic() + timeout
        delay = 0.002
        while True:
            status = self._status(hex_id)
            if status is None or status.state != leave:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 0.05)

    def _signal(self, state: dict[str, Any], sig: int) -> None:
        """Signal the container's process group (its pid leads it: a new session)."""
        pid = state.get("pid")
        if _alive(pid, state.get("pidStartTime")):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)

    async def remove_container(self, container_id: str) -> None:
        hex_id = _hex(container_id, self.name)
        status = self._status(hex_id) if hex_id else None
        if hex_id is None or status is None:
            return
        if status.state != "exited":
            await self.stop_container(container_id, 0)
        folder = self._folders.pop(hex_id)
        doc = self._configs.pop(hex_id, None)
        self._exited.pop(hex_id, None)
        if doc is not None:
            self._cleanup(doc, hex_id)
        shutil.rmtree(folder, ignore_errors=True)

    def _cleanup(self, doc: dict[str, Any], hex_id: str) -> None:
        """Whatever a removed container leaves outside its folder (none here)."""

    # exec, attach, stats -------------------------------------------------------------------

    async def exec(self, container_id: str, argv: Sequence[str], *, tty: bool,
                   stdin: bool) -> StreamSession:
        _, _, doc, state = self._running(container_id)
        if not argv:
            raise RuntimeFailure("ExecError", "no command given")
        paths = PathMap(doc.get("paths") or {})
        argv = [paths.rewrite(a) for a in argv]
        env = doc["env"]
        program = look_path(argv[0], env.get("PATH", ""), cwd=doc["cwd"],
                            prefix=EXEC_ERROR_PREFIX)
        setup = _mount_namespace_of(state["pid"], doc["cwd"]) if doc.get("pod_files") \
            else None
        return await open_session(argv, env=env, cwd=doc["cwd"], tty=tty, stdin=stdin,
                                  executable=program, setup=setup)

    async def attach(self, container_id: str, *, stdin: bool) -> StreamSession:
        hex_id, folder, _, _ = self._running(container_id)
        deadline = time.monotonic() + ATTACH_WAIT
        while True:
            try:
                with _unix_address(folder / "attach.sock") as address:
                    reader, writer = await asyncio.open_unix_connection(address)
                break
            except OSError as e:
                # the shim opens the socket just after it reports the start
                status = self._status(hex_id)
                if time.monotonic() > deadline or status is None or status.state != "running":
                    raise RuntimeFailure("ContainerNotRunning",
                                         f"cannot attach to {container_id}: {e}") from None
                await asyncio.sleep(0.005)

        def exit_code() -> int | None:
            status = self._status(hex_id)
            return status.exit_code if status is not None else LOST_EXIT_CODE

        return AttachSession(reader, writer, stdin=stdin, exit_code=exit_code)

    async def container_stats(self, container_id: str) -> ContainerStats | None:
        hex_id = _hex(container_id, self.name)
        status = self._status(hex_id) if hex_id else None
        if status is None or status.state != "running" or not status.pid:
            return None
        cpu, memory = self._usage(self._configs[hex_id], hex_id, status.pid)
        return ContainerStats(cpu_usage_core_nanoseconds=cpu,
                              memory_working_set_bytes=memory, timestamp=time.time())

    def _usage(self, doc: dict[str, Any], hex_id: str, pid: int) -> tuple[int, int]:
        """CPU time and resident memory of the session the container's process leads."""
        return _proc_stats(session_members(pid))
