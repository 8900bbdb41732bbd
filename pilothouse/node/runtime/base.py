"""The interface between the kubelet and a container runtime, in the spirit of CRI.

The kubelet decides *what* should run (which containers, in which order, restarted when);
a runtime decides *how* a container runs (a process group on the host, a process in Linux
namespaces, an image in a container engine). The kubelet speaks only the calls below, so a
runtime is a module, never a branch in the kubelet.

Vocabulary, as CRI has it:

- A **pod sandbox** is what the containers of one pod share: its folder in the data dir
  (`DATA/pods/<namespace>_<name>_<uid>/`), its IP, hostname, /etc/hosts and resolv.conf.
- A **container** is one run of one container of the pod: restarting a container makes a
  new container (a new id, `attempt` one higher), as in CRI. Each container runs under its
  own supervisor process (the shim, `runtime/shim.py`) that owns the process, writes its
  output to the log file and records its exit, so the kubelet can die and come back
  without losing a container: `list_containers()` rebuilds everything from the data dir.
- An **image** is a Python virtual environment in the data dir (`images.py`), made on
  first use as a pull would be.

Everything a runtime needs arrives in the config objects; a runtime never reads the API.
Failures the user must see are raised as `RuntimeFailure(reason, message)`, whose reason
is the kubelet's waiting reason (RunContainerError, CreateContainerError, ...).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class RuntimeFailure(Exception):
    """A container or sandbox the runtime could not make or start.

    `reason` is what the kubelet shows as the container's waiting reason (the CRI error
    kinds the real kubelet maps: RunContainerError, CreateContainerError,
    ErrImagePull, ...); `message` is one line a user can act on.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class RuntimeUnavailable(Exception):
    """The runtime cannot work on this machine; the message says why (for `up` and events)."""


@dataclass(frozen=True)
class PodSandboxConfig:
    uid: str
    namespace: str
    name: str
    #: The pod's hostname (pod name, or spec.hostname) and, if set, its subdomain FQDN.
    hostname: str
    #: DATA/pods/<namespace>_<name>_<uid>; the runtime keeps its own state under it.
    pod_dir: Path
    #: The pod IP the kubelet allocated: the address in the pod's network namespace, else
    #: a loopback address on the host's network (or the node's IP with hostNetwork).
    ip: str
    #: Content of the pod's /etc/hosts and /etc/resolv.conf, written by the runtime.
    hosts: str
    resolv_conf: str
    #: Kubelet bookkeeping (pod uid, namespace, name), kept with the sandbox's state.
    labels: Mapping[str, str] = field(default_factory=dict)
    #: The pinned network namespace every container of the pod joins (`podnet.py`), as
    #: containers join their pause container's; "" for the host's network.
    netns: str = ""


@dataclass(frozen=True)
class Mount:
    #: A directory or file on the host (a volume's folder, or a file inside it for subPath).
    host_path: Path
    #: Where the container sees it.
    container_path: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerConfig:
    #: The container's name in the pod spec.
    name: str
    #: 0 for the first run of this container in this pod, +1 per restart.
    attempt: int
    image: str
    #: The resolved image (a virtual environment); its bin/ goes first on PATH.
    image_dir: Path | None
    #: command + args with $(VAR) already expanded; argv[0] may be a bare program name.
    argv: Sequence[str]
    env: Mapping[str, str]
    working_dir: str | None
    mounts: Sequence[Mount]
    #: DATA/pods/<ns>_<name>_<uid>/<container>/<attempt>.log, written in the CRI log format.
    log_path: Path
    #: Where the container may write its termination message (container path).
    termination_message_path: str = "/dev/termination-log"
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False
    #: Limits, for the runtimes that can enforce them (None: unlimited).
    cpu_limit_millicores: int | None = None
    memory_limit_bytes: int | None = None
    #: Kubelet bookkeeping, given back unchanged by `list_containers` (pod uid, names, kind).
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerStatus:
    #: "<runtime>://<hex>", as containerStatuses[].containerID shows it.
    id: str
    name: str
    attempt: int
    #: "created", "running" or "exited".
    state: str
    labels: Mapping[str, str]
    pid: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    #: For exited containers: "Completed", "Error", "OOMKilled" (and "ContainerCannotRun").
    reason: str = ""
    #: The termination message the container wrote (at most 4096 bytes), or "".
    message: str = ""
    image: str = ""
    image_id: str = ""


@dataclass(frozen=True)
class ContainerStats:
    #: Cumulative CPU time of the container's processes, in nanoseconds.
    cpu_usage_core_nanoseconds: int
    #: Working set: resident memory (cgroup usage minus inactive file where cgroups tell it).
    memory_working_set_bytes: int
    timestamp: float


class StreamSession(abc.ABC):
    """A live exec or attach: the container's standard streams, piped to a client.

    `output()` yields (stream, data) with stream 1 (stdout) or 2 (stderr), and ends when the
    process ends (exec) or the client should stop reading (attach). With a tty, everything
    arrives on stream 1.
    """

    @abc.abstractmethod
    def output(self) -> AsyncIterator[tuple[int, bytes]]: ...

    @abc.abstractmethod
    async def write_stdin(self, data: bytes) -> None: ...

    @abc.abstractmethod
    async def close_stdin(self) -> None: ...

    @abc.abstractmethod
    async def resize(self, width: int, height: int) -> None: ...

    @abc.abstractmethod
    async def wait(self) -> int:
        """The exit code of the exec'd process (attach: of the container)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """The client left: kill an exec'd process, detach from a container."""


class Runtime(abc.ABC):
    """One way to run containers. Implementations: process, sandbox, engine."""

    #: The RuntimeClass handler name and the containerID scheme ("process", "sandbox").
    name: str
    #: Whether containers can be started in the pod's network namespace
    #: (`PodSandboxConfig.netns`); a runtime without it runs pods on the host's network.
    network_namespaces: bool = False

    @classmethod
    @abc.abstractmethod
    def check(cls) -> None:
        """Raise RuntimeUnavailable with the reason if this runtime cannot work here."""

    @abc.abstractmethod
    async def run_pod_sandbox(self, config: PodSandboxConfig) -> None:
        """Make the pod's shared environment (idempotent: an existing sandbox is kept)."""

    @abc.abstractmethod
    async def remove_pod_sandbox(self, config: PodSandboxConfig) -> None:
        """Forget the sandbox once all its containers are gone (the pod folder stays for
        logs until the kubelet removes it)."""

    @abc.abstractmethod
    async def start_container(self, sandbox: PodSandboxConfig,
                              config: ContainerConfig) -> ContainerStatus:
        """Create and start one container under its shim; return once it is running or
        could not start (then raise RuntimeFailure, e.g. RunContainerError for a command
        that does not exist, with the message the real runtime gives)."""

    @abc.abstractmethod
    async def stop_container(self, container_id: str, grace_seconds: float) -> None:
        """SIGTERM the container's processes, SIGKILL them after the grace period; return
        when they are gone. Stopping a stopped container does nothing."""

    @abc.abstractmethod
    async def remove_container(self, container_id: str) -> None:
        """Forget a stopped container's state (its log file stays)."""

    @abc.abstractmethod
    async def container_status(self, container_id: str) -> ContainerStatus | None: ...

    @abc.abstractmethod
    async def list_containers(self) -> list[ContainerStatus]:
        """Every container this runtime has state for, running or exited, from the data
        dir: how a restarted kubelet finds (and adopts) what its predecessor started."""

    @abc.abstractmethod
    def container_events(self) -> AsyncIterator[str]:
        """Ids of containers whose state changed (started, exited) as it happens: the
        kubelet's pod lifecycle event generator. The kubelet also relists every few
        seconds, so a lost event only delays."""

    @abc.abstractmethod
    async def exec(self, container_id: str, argv: Sequence[str], *, tty: bool,
                   stdin: bool) -> StreamSession:
        """Run a command in a running container's context (environment, working dir, root
        and namespaces). A command that does not exist raises RuntimeFailure."""

    @abc.abstractmethod
    async def attach(self, container_id: str, *, stdin: bool) -> StreamSession: ...

    @abc.abstractmethod
    async def container_stats(self, container_id: str) -> ContainerStats | None: ...
