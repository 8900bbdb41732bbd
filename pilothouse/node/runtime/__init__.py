"""Container runtimes of the node agent, by RuntimeClass handler name.

- `process`: containers as host process groups (always works on Linux; no isolation).
- `sandbox`: Linux namespaces through bubblewrap, limits through cgroups.
- `docker`, `podman`: a container engine through its CLI, where one answers.

Every runtime takes `(pods_root, run_dir)`; `default_runtime()` picks the one `pilothouse
up` uses and says why, and a pod picks another through its RuntimeClass handler.
"""

from __future__ import annotations

from pilothouse.node.runtime.base import Runtime, RuntimeUnavailable
from pilothouse.node.runtime.engine import DockerRuntime, PodmanRuntime
from pilothouse.node.runtime.process import ProcessRuntime
from pilothouse.node.runtime.sandbox import SandboxRuntime

RUNTIMES: dict[str, type[Runtime]] = {
    "process": ProcessRuntime,
    "sandbox": SandboxRuntime,
    "docker": DockerRuntime,
    "podman": PodmanRuntime,
}


def default_runtime() -> tuple[str, str]:
    """The runtime for pods that name none, and one line saying why (for the node's log):
    the sandbox where bubblewrap can make namespaces, else the process runtime; and whether
    sandboxed pods get network namespaces (`node/podnet.py`)."""
    try:
        SandboxRuntime.check()
    except RuntimeUnavailable as e:
        return "process", f"process: the sandbox runtime is unavailable: {e}"
    from pilothouse.node.podnet import unavailable  # podnet uses the process runtime's helpers

    network = unavailable()
    if network:
        return "sandbox", (f"sandbox: bubblewrap namespaces work here, but pods share the "
                           f"host's network: {network}")
    return "sandbox", ("sandbox: bubblewrap namespaces work here; each pod gets its own "
                       "network namespace on the node's bridge")


__all__ = ["RUNTIMES", "default_runtime"]
