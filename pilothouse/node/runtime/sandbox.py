"""The sandbox runtime: each container in its own Linux namespaces (bubblewrap) and cgroups.

Built on the process runtime (same shim, state folders, logs, events, attach), with what a
container runtime adds, using `bwrap` (Debian's bubblewrap) as the one privileged helper:

- **Namespaces**: new mount, PID, IPC and UTS namespaces; the network namespace is the
  pod's (`PodSandboxConfig.netns`, made by the kubelet's pod network, `node/podnet.py`),
  which every container of the pod joins as containers join their pause container's:
  bwrap has no option to join one, so the shim runs `nsenter --net=<pin> bwrap ...`
  (nsenter execs bwrap in the same process: ~1 ms). Without one (hostNetwork, or no pod
  network on this node) pods share the host's network and bind their loopback pod IP.
  bwrap's own init is PID 1 and reaps orphans, as `docker run --init` does; the container's
  process is PID 2, and stopping it signals every process in the namespace but that init.
- **Filesystem**: the host's root, read-only: every top-level entry of `/` bound read-only
  onto bwrap's root and the root remounted read-only (so writing to /usr fails); a
  fresh `/dev` and `/proc`; a private tmpfs `/tmp`; the image's virtual environment; the
  volumes bound at their real paths (read-only when asked; subPath mounts are files or
  folders); the pod's /etc/hosts, /etc/resolv.conf and /etc/hostname; the termination
  message file from the container's state folder at its path. A mount point that does not
  exist on the host (a volume at /etc/config) cannot be made in a read-only folder, so the
  deepest existing folder above it (/etc) becomes a tmpfs holding read-only binds of its
  host entries, then read-only too (it costs ~0.2 ms per entry: ~30 ms for /etc).
- **Capabilities**: Docker's default set (bwrap drops the rest).
- **Limits**: memory and CPU through cgroups v1 or v2 (`cgroups.py`); the kernel's OOM
  kill of a container shows as reason OOMKilled, exit code 137.

`exec` enters the container's namespaces with `nsenter` (network, root and working dir
included) with the container's environment, and joins its cgroups. Stats come from the cgroups
(CPU time, memory usage minus inactive file), or from the namespace's processes where
there are no cgroups. `check()` refuses when the agent is not root (nsenter into a pod's
namespaces and the cgroups need it; a user's laptop then gets the process runtime), when
bwrap or nsenter is missing, or when bwrap cannot make namespaces here (it tries once).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import posixpath
import shutil
import signal
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pilothouse.node.runtime.base import (
    ContainerConfig,
    Mount,
    PodSandboxConfig,
    RuntimeFailure,
    RuntimeUnavailable,
    StreamSession,
)
from pilothouse.node.runtime.cgroups import Cgroups
from pilothouse.node.runtime.process import (
    EXEC_ERROR_PREFIX,
    LOG_MAX_BYTES,
    LOG_MAX_FILES,
    SANDBOX_DIR,
    START_ERROR_PREFIX,
    ProcessRuntime,
    _alive,
    _proc_stats,
    _read_json,
    container_env,
    look_path,
    open_session,
)

log = logging.getLogger(__name__)

#: Docker's default capabilities.
CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID",
                "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL",
                "AUDIT_WRITE")
#: Top-level folders the sandbox makes afresh instead of showing the host's.
PRIVATE = ("dev", "proc", "tmp")
#: The fd bwrap writes its namespace init's pid to (the shim reads it), and the one it
#: reads its options from (so `ps` in the container shows a short command line).
INFO_FD = 3
ARGS_FD = 4


def _depth(path: str) -> int:
    return path.rstrip("/").count("/")


def _shadow_for(target: str, host_root: str) -> str | None:
    """The folder to turn into a tmpfs so that `target` can be made as a mount point: the
    deepest existing host folder above it, if the target is missing there or a symlink
    (None when the target exists, or its parent is the root or a private tmpfs)."""
    parts = target.strip("/").split("/")
    if not parts[0] or parts[0] in PRIVATE:
        return None
    path = ""
    for i, part in enumerate(parts):
        parent = path or "/"
        path = f"{path}/{part}"
        host = host_root.rstrip("/") + path
        if os.path.islink(host) or not os.path.exists(host):
            return None if parent == "/" else parent
        if i < len(parts) - 1 and not os.path.isdir(host):
            return None  # a file in the way: bwrap says so
    return None


def _resolve_parents(target: str, host_root: str) -> str:
    """`target` with symlinked folders above it resolved as the host has them (a mount at
    /var/run/secrets/x lands in /run/secrets/x where /var/run links to /run), as a
    container runtime resolves a mount point inside the root it shows."""
    head, leaf = posixpath.split(posixpath.normpath(target))
    root = host_root.rstrip("/")
    real = os.path.realpath(root + head)
    if root and real.startswith(root + "/"):
        real = real[len(root):]
    elif root and real == root:
        real = "/"
    return posixpath.join(real, leaf)


def _show(host: str, dest: str) -> list[str]:
    """Arguments that show host entry `host` read-only at `dest`."""
    if os.path.islink(host):
        return ["--symlink", os.readlink(host), dest]
    return ["--ro-bind", host, dest]


def bwrap_command(*, bwrap: str, hostname: str, argv: Sequence[str], cwd: str,
                  mounts: Sequence[Mount], files: Sequence[tuple[str, str, bool]] = (),
                  images: Sequence[str] = (), host_dirs: Sequence[str] = (),
                  host_root: str = "/",
                  info_fd: int | None = INFO_FD) -> list[str]:
    """The bwrap command line for a container. `files` are (host, container path, writable)
    files the runtime provides (/etc/hosts, the termination message file); `images` are
    host folders shown writable at their own path: the image's virtual environment, which a
    `pip install` in the pod changes (and only it, never the host's environment);
    `host_dirs` are host folders under a private top-level folder (/tmp) shown read-only
    at their own path: the Python environment Pilothouse runs in, which image
    environments point to."""
    mounts = [dataclasses.replace(m, container_path=_resolve_parents(m.container_path,
                                                                     host_root))
              for m in mounts]
    files = [(host, _resolve_parents(dest, host_root), writable)
             for host, dest, writable in files]
    command = [bwrap, "--unshare-pid", "--unshare-ipc", "--unshare-uts",
               "--hostname", hostname]
    if info_fd is not None:
        command += ["--info-fd", str(info_fd)]
    command += ["--cap-drop", "ALL"]
    for cap in CAPABILITIES:
        command += ["--cap-add", f"CAP_{cap}"]
    for entry in sorted(os.listdir(host_root)):
        if entry not in PRIVATE:
            command += _show(os.path.join(host_root, entry), f"/{entry}")
    command += ["--dev", "/dev", "--proc", "/proc"]
    if not any(m.container_path.rstrip("/") == "/tmp" for m in mounts):
        command += ["--tmpfs", "/tmp"]
    targets = [*(m.container_path for m in mounts), *(f[1] for f in files), *images]
    shadows = sorted({s for t in targets if (s := _shadow_for(t, host_root))}, key=_depth)
    exact = {posixpath.normpath(t) for t in targets}
    for folder in shadows:
        command += ["--tmpfs", folder]
        host_folder = host_root.rstrip("/") + folder
        for entry in sorted(os.listdir(host_folder)):
            dest = posixpath.join(folder, entry)
            if dest not in exact:
                command += _show(os.path.join(host_folder, entry), dest)
    for folder in host_dirs:
        command += ["--ro-bind", folder, folder]
    for folder in images:
        command += ["--bind", folder, folder]
    for mount in sorted(mounts, key=lambda m: _depth(m.container_path)):
        command += ["--ro-bind" if mount.read_only else "--bind", str(mount.host_path),
                    mount.container_path]
    for host, dest, writable in files:
        command += ["--bind" if writable else "--ro-bind", host, dest]
    for folder in shadows:
        command += ["--remount-ro", folder]
    command += ["--remount-ro", "/", "--chdir", cwd, "--", *argv]
    return command


def _hidden_python_dirs() -> tuple[str, ...]:
    """The folders of the Python environment Pilothouse runs in that a sandbox would hide
    (a virtual environment under /tmp, say): image environments link to its interpreter
    and see its packages, so the sandbox shows them read-only."""
    found: list[str] = []
    for path in (sys.prefix, sys.exec_prefix, sys.base_prefix, os.path.dirname(sys.executable)):
        top = path.strip("/").split("/", 1)[0]
        if top in PRIVATE and not any(path == f or path.startswith(f + "/") for f in found):
            found.append(path)
    return tuple(found)


HIDDEN_PYTHON_DIRS = _hidden_python_dirs()


#: Linux's <asm-generic/ioctls.h> pty requests, which the termios module does not name.
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431


def container_pty(pid: int) -> tuple[int, int]:
    """A terminal (master, slave) from the container's own devpts (bwrap's `--dev` mounts a
    fresh one), so `tty` inside names it /dev/pts/N, as in a container runtime's console."""
    master = os.open(f"/proc/{pid}/root/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY)
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
        slave = os.open(f"/proc/{pid}/root/dev/pts/{number}", os.O_RDWR | os.O_NOCTTY)
    except BaseException:
        os.close(master)
        raise
    return master, slave


class SandboxView:
    """Where a path inside a not-yet-started sandbox can be checked on the host (None: it
    will not exist): for finding the program and the working dir before starting."""

    def __init__(self, mounts: Sequence[Mount], images: Sequence[str] = ()) -> None:
        self.mounts = sorted(((m.container_path.rstrip("/") or "/", str(m.host_path))
                              for m in mounts), key=lambda p: -len(p[0]))
        self.images = list(images)

    def host(self, path: str) -> str | None:
        path = posixpath.normpath(path)
        for container, host in self.mounts:
            if path == container or path.startswith(container + "/"):
                return host + path[len(container):]
        if any(path == f or path.startswith(f + "/") for f in self.images):
            return path
        top = path.strip("/").split("/")[0]
        if top in PRIVATE:
            return path if path in ("/dev", "/proc", "/tmp") else None
        return path


def pids_in_namespace(namespace: int) -> list[int]:
    """The host pids of the processes in a PID namespace (by its inode)."""
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}/ns/pid").st_ino == namespace:
                    members.append(int(name))
            except OSError:
                continue
    return members


class SandboxRuntime(ProcessRuntime):
    """Containers in their own mount/PID/IPC/UTS namespaces (bwrap), limited by cgroups."""

    name = "sandbox"
    network_namespaces = True
    _unavailable: str | None = None

    def __init__(self, pods_root: Path, run_dir: Path, *, host_path: str | None = None,
                 log_max_bytes: int = LOG_MAX_BYTES, log_max_files: int = LOG_MAX_FILES,
                 cgroups: Cgroups | None = None) -> None:
        super().__init__(pods_root, run_dir, host_path=host_path, log_max_bytes=log_max_bytes,
                         log_max_files=log_max_files)
        self.bwrap = shutil.which("bwrap") or "bwrap"
        self.nsenter = shutil.which("nsenter") or "nsenter"
        self.cgroups = cgroups if cgroups is not None else Cgroups.detect()

    @classmethod
    def check(cls) -> None:
        ProcessRuntime.check()
        if cls._unavailable is None:
            cls._unavailable = cls._probe()
        if cls._unavailable:
            raise RuntimeUnavailable(cls._unavailable)

    @staticmethod
    def _probe() -> str:
        if os.geteuid() != 0:
            return (f"the sandbox runtime runs as root (exec joins a pod's namespaces with "
                    f"nsenter, limits need writable cgroups); this agent runs as uid "
                    f"{os.geteuid()}")
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            return ("bubblewrap (bwrap) is not installed; install it (Debian/Ubuntu: "
                    "apt-get install bubblewrap) to isolate pods")
        if shutil.which("nsenter") is None:
            return "nsenter (util-linux) is not installed; exec into pods needs it"
        command = bwrap_command(bwrap=bwrap, hostname="probe", argv=["true"], cwd="/",
                                mounts=[], info_fd=None)
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"bwrap cannot run: {e}"
        if done.returncode != 0:
            detail = done.stderr.strip() or f"exit code {done.returncode}"
            return f"bwrap cannot create namespaces here: {detail}"
        return ""

    # containers ----------------------------------------------------------------------------

    def _launch(self, sandbox: PodSandboxConfig, config: ContainerConfig, folder: Path,
                hex_id: str) -> dict[str, Any]:
        env = container_env(config, sandbox.hostname, self.host_path)
        for mount in config.mounts:
            if not os.path.exists(mount.host_path):
                raise RuntimeFailure("CreateContainerError", f"failed to mount "
                                     f"{mount.host_path} at {mount.container_path}: "
                                     "no such file or directory")
        images = [str(config.image_dir)] if config.image_dir else []
        view = SandboxView(config.mounts, images)
        cwd = config.working_dir or "/"
        host_cwd = view.host(cwd)
        if host_cwd is None or not os.path.isdir(host_cwd):
            raise RuntimeFailure("RunContainerError", f'{START_ERROR_PREFIX}chdir to cwd '
                                 f'("{cwd}") set in config.json failed: no such file or '
                                 'directory')
        if not config.argv:
            raise RuntimeFailure("CreateContainerError", "no command specified: the "
                                 f"{self.name} runtime has no image entrypoint; set command")
        look_path(config.argv[0], env.get("PATH", ""), cwd=cwd, view=view.host)
        pod = sandbox.pod_dir / SANDBOX_DIR
        files = [(str(pod / "hosts"), "/etc/hosts", False),
                 (str(pod / "resolv.conf"), "/etc/resolv.conf", False),
                 (str(pod / "hostname"), "/etc/hostname", False),
                 (str(folder / "termination-log"), config.termination_message_path, True)]
        try:
            cgroups = self.cgroups.create(sandbox.uid, hex_id,
                                          cpu_millicores=config.cpu_limit_millicores,
                                          memory_bytes=config.memory_limit_bytes)
        except OSError as e:
            raise RuntimeFailure("CreateContainerError",
                                 f"cannot set up the container's cgroups: {e}") from None
        command = bwrap_command(bwrap=self.bwrap, hostname=sandbox.hostname,
                                argv=config.argv, cwd=cwd, mounts=config.mounts, files=files,
                                images=images, host_dirs=HIDDEN_PYTHON_DIRS)
        options = command[1:command.index("--")]
        args_file = folder / "bwrap.args"
        args_file.write_bytes(b"".join(os.fsencode(o) + b"\0" for o in options))
        argv = [self.bwrap, "--args", str(ARGS_FD), "--", *config.argv]
        exe = self.bwrap
        if sandbox.netns:
            exe, argv = self.nsenter, [self.nsenter, f"--net={sandbox.netns}", "--", *argv]
        return {"exe": exe, "argv": argv, "env": env, "cwd": "/", "sandbox": True,
                "args_file": str(args_file),
                "display_cwd": cwd, "cgroups": [str(f) for f in cgroups.folders],
                "oom_files": [str(f) for f in cgroups.oom_files]}

    def _signal(self, state: dict[str, Any], sig: int) -> None:
        """SIGTERM every process in the container's PID namespace but bwrap's init (which
        ignores it); SIGKILL the init too, which ends the namespace."""
        if not _alive(state.get("pid"), state.get("pidStartTime")):
            return
        init = state.get("initPid")
        members = pids_in_namespace(state["pidNamespace"]) if state.get("pidNamespace") \
            else [state["pid"]]
        for pid in members:
            if pid != init or sig == signal.SIGKILL:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)

    def _cleanup(self, doc: dict[str, Any], hex_id: str) -> None:
        """The container's cgroups, if its shim could not remove them."""
        self.cgroups.container(doc["pod"]["uid"], hex_id).remove()

    async def remove_pod_sandbox(self, config: PodSandboxConfig) -> None:
        await super().remove_pod_sandbox(config)
        self.cgroups.remove_pod(config.uid)

    # exec, stats ---------------------------------------------------------------------------

    async def exec(self, container_id: str, argv: Sequence[str], *, tty: bool,
                   stdin: bool) -> StreamSession:
        _, _, doc, state = self._running(container_id)
        if not argv:
            raise RuntimeFailure("ExecError", "no command given")
        pid = state["pid"]
        env = doc["env"]
        look_path(argv[0], env.get("PATH", ""), cwd=doc.get("display_cwd") or "/",
                  view=lambda path: f"/proc/{pid}/root{path}", prefix=EXEC_ERROR_PREFIX)
        procs = [os.path.join(f, "cgroup.procs") for f in doc.get("cgroups") or ()]

        def join_cgroups() -> None:
            me = str(os.getpid())
            for path in procs:
                with contextlib.suppress(OSError), open(path, "w") as f:
                    f.write(me)

        command = [self.nsenter, "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w", "--",
                   *argv]
        if tty:
            # Inside the PID namespace the program must lead its own session to own the
            # terminal (a shell sets its process group on it): setsid --ctty does that.
            command[command.index("--") + 1:command.index("--") + 1] = ["setsid", "--ctty"]
        return await open_session(command, env=env, cwd="/", tty=tty, stdin=stdin,
                                  setup=join_cgroups,
                                  open_pty=lambda: container_pty(pid))

    def _usage(self, doc: dict[str, Any], hex_id: str, pid: int) -> tuple[int, int]:
        cgroups = self.cgroups.container(doc["pod"]["uid"], hex_id)
        cpu = cgroups.cpu_usage_ns()
        memory = cgroups.memory_working_set()
        if cpu is None or memory is None:
            state = self._state(hex_id)
            namespace = state.get("pidNamespace")
            fallback = _proc_stats(pids_in_namespace(namespace) if namespace else [pid])
            cpu = fallback[0] if cpu is None else cpu
            memory = fallback[1] if memory is None else memory
        return cpu, memory

    def _state(self, hex_id: str) -> dict[str, Any]:
        return _read_json(self._folders[hex_id] / "state.json") or {}
