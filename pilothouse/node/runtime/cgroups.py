"""Linux control groups for the sandbox runtime: where a container's cgroups are, its limits,
and what it used.

Each container gets a cgroup in every hierarchy that has a controller it needs (memory,
cpu, cpuacct, pids), at

    <hierarchy mount>/<the node agent's own cgroup>/<parent>/<pod uid>/<container hex>

nested under the agent's own cgroup so that whatever accounts for the agent (a systemd
unit, a container, a CI job) still accounts for its pods. The shim moves the container's
process in before exec; the shim removes the cgroup when the container has exited, and the
runtime removes the pod's when the sandbox goes.

cgroup v1 (one hierarchy per controller, or co-mounted ones like `cpu,cpuacct`), v2 (one
unified hierarchy) and hybrid machines (controllers on v1 plus a v2 mount) all work: each
controller is taken from the hierarchy that has it, v1 first. The files:

| what           | v1                                  | v2                                |
|----------------|-------------------------------------|-----------------------------------|
| memory limit   | memory.limit_in_bytes               | memory.max (and memory.swap.max 0)|
| CPU limit      | cpu.cfs_quota_us / cpu.cfs_period_us| cpu.max "<quota> <period>"        |
| OOM kills      | memory.oom_control `oom_kill`       | memory.events `oom_kill`          |
| CPU used       | cpuacct.usage (ns)                  | cpu.stat `usage_usec`             |
| working set    | memory.usage_in_bytes - total_inactive_file | memory.current - inactive_file |

A hierarchy that cannot be written (read-only /sys/fs/cgroup, no permission, a v2 parent
that cannot delegate) is skipped with a warning, and `enforced` says which controllers
hold; a container then runs without that limit rather than not at all.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")
CFS_PERIOD_US = 100_000
#: The kernel refuses CFS quotas below 1 ms.
CFS_MIN_QUOTA_US = 1_000


@dataclass(frozen=True)
class Hierarchy:
    version: int
    mount: Path
    #: The controllers of ours it has (v2: those enabled for our cgroup, plus cpuacct, since
    #: cpu.stat's usage is always there).
    controllers: frozenset[str]
    #: This process's cgroup in it ("/" at the top).
    own: str


def _unescape(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def parse_self_cgroup(text: str) -> dict[frozenset[str], str]:
    """/proc/<pid>/cgroup: the cgroup path per hierarchy, keyed by its controllers (v2's
    key is the empty set)."""
    paths = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            paths[frozenset(c for c in parts[1].split(",") if c and "=" not in c)] = parts[2]
    return paths


def parse_hierarchies(mounts: str, self_cgroup: str) -> list[Hierarchy]:
    """The cgroup hierarchies in /proc/self/mounts, with our cgroup in each. A v2 hierarchy's
    controllers are read from its `cgroup.controllers` file."""
    own = parse_self_cgroup(self_cgroup)
    found: list[Hierarchy] = []
    seen: set[str] = set()
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[2] not in ("cgroup", "cgroup2") or fields[1] in seen:
            continue
        mount = Path(_unescape(fields[1]))
        if fields[2] == "cgroup":
            options = set(fields[3].split(","))
            controllers = frozenset(c for c in CONTROLLERS if c in options)
            path = next((p for key, p in own.items() if key and key <= options), None)
            if not controllers or path is None:
                continue
            found.append(Hierarchy(1, mount, controllers, path))
        else:
            path = own.get(frozenset(), "/")
            try:
                enabled = set((mount / path.lstrip("/") / "cgroup.controllers").read_text()
                              .split())
            except OSError:
                continue
            found.append(Hierarchy(2, mount, frozenset(enabled & {"memory", "cpu", "pids"})
                                   | {"cpuacct"}, path))
        seen.add(fields[1])
    return found


def _read_key(path: Path, key: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return None


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class ContainerCgroups:
    """One container's cgroups: controller -> (cgroup version, folder)."""

    dirs: Mapping[str, tuple[int, Path]] = field(default_factory=dict)

    @property
    def folders(self) -> list[Path]:
        """Each distinct folder once, the order kept: where the shim writes the pid."""
        return list(dict.fromkeys(folder for _, folder in self.dirs.values()))

    @property
    def oom_files(self) -> list[Path]:
        if "memory" not in self.dirs:
            return []
        version, folder = self.dirs["memory"]
        return [folder / ("memory.oom_control" if version == 1 else "memory.events")]

    def set_limits(self, *, cpu_millicores: int | None, memory_bytes: int | None) -> None:
        """Write the limits (OSError if the kernel refuses one)."""
        if memory_bytes is not None and "memory" in self.dirs:
            version, folder = self.dirs["memory"]
            if version == 1:
                (folder / "memory.limit_in_bytes").write_text(str(memory_bytes))
                swap = folder / "memory.memsw.limit_in_bytes"
                if swap.exists():
                    swap.write_text(str(memory_bytes))  # no swap beyond the limit
            else:
                (folder / "memory.max").write_text(str(memory_bytes))
                if (folder / "memory.swap.max").exists():
                    (folder / "memory.swap.max").write_text("0")
        if cpu_millicores is not None and "cpu" in self.dirs:
            version, folder = self.dirs["cpu"]
            quota = max(CFS_MIN_QUOTA_US, cpu_millicores * CFS_PERIOD_US // 1000)
            if version == 1:
                (folder / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
                (folder / "cpu.cfs_quota_us").write_text(str(quota))
            else:
                (folder / "cpu.max").write_text(f"{quota} {CFS_PERIOD_US}")

    def oom_kills(self) -> int:
        return sum(_read_key(path, "oom_kill") or 0 for path in self.oom_files)

    def cpu_usage_ns(self) -> int | None:
        if "cpuacct" not in self.dirs:
            return None
        version, folder = self.dirs["cpuacct"]
        if version == 1:
            return _read_int(folder / "cpuacct.usage")
        usec = _read_key(folder / "cpu.stat", "usage_usec")
        return None if usec is None else usec * 1000

    def memory_working_set(self) -> int | None:
        if "memory" not in self.dirs:
            return None
        version, folder = self.dirs["memory"]
        if version == 1:
            usage = _read_int(folder / "memory.usage_in_bytes")
            inactive = _read_key(folder / "memory.stat", "total_inactive_file")
        else:
            usage = _read_int(folder / "memory.current")
            inactive = _read_key(folder / "memory.stat", "inactive_file")
        if usage is None:
            return None
        return max(0, usage - (inactive or 0))

    def pids(self) -> list[int]:
        for folder in self.folders:
            try:
                return [int(p) for p in (folder / "cgroup.procs").read_text().split()]
            except (OSError, ValueError):
                continue
        return []

    def remove(self, timeout: float = 1.0) -> bool:
        """rmdir the folders (retrying while the kernel finishes killing what was in
        them); True when none is left."""
        deadline = time.monotonic() + timeout
        left = self.folders
        while True:
            for folder in list(left):
                try:
                    folder.rmdir()
                except FileNotFoundError:
                    pass
                except OSError:
                    continue
                left.remove(folder)
            if not left or time.monotonic() > deadline:
                return not left
            time.sleep(0.01)


class Cgroups:
    """The cgroup hierarchies this node writes, and where its pods' cgroups go in them."""

    def __init__(self, hierarchies: list[Hierarchy], parent: str = "pilothouse") -> None:
        self.parent = parent
        self.hierarchies = hierarchies
        self._by_controller: dict[str, Hierarchy] = {}
        for controller in CONTROLLERS:
            h = next((h for h in sorted(hierarchies, key=lambda h: h.version)
                      if controller in h.controllers), None)
            if h is not None:
                self._by_controller[controller] = h
        self._bases: dict[Path, Path | None] = {}

    @classmethod
    def detect(cls, parent: str = "pilothouse") -> Cgroups:
        """The hierarchies of this machine, as /proc/self/mounts and /proc/self/cgroup say."""
        try:
            mounts = Path("/proc/self/mounts").read_text()
            own = Path("/proc/self/cgroup").read_text()
        except OSError:
            return cls([], parent)
        return cls(parse_hierarchies(mounts, own), parent)

    @property
    def enforced(self) -> set[str]:
        """The controllers whose limits hold (those whose hierarchy we could write)."""
        return {c for c, h in self._by_controller.items() if self._base(h) is not None}

    def describe(self) -> str:
        """One line for the node's log: which limits this machine enforces, and how."""
        enforced = self.enforced
        if not enforced:
            return "no writable cgroups: CPU and memory limits are not enforced"
        versions = sorted({f"v{h.version}" for c, h in self._by_controller.items()
                           if c in enforced})
        return f"cgroup {'+'.join(versions)}: {', '.join(sorted(enforced))}"

    def _base(self, h: Hierarchy) -> Path | None:
        """`<mount>/<own>/<parent>` made and, on v2, delegated the controllers; v2 falls back
        to the top of the hierarchy when our own cgroup holds processes and cannot delegate."""
        if h.mount in self._bases:
            return self._bases[h.mount]
        candidates = [h.mount / h.own.lstrip("/")]
        if h.version == 2 and h.own != "/":
            candidates.append(h.mount)
        base = None
        for top in candidates:
            try:
                if h.version == 2:
                    self._delegate(h, top)
                (top / self.parent).mkdir(exist_ok=True)
                if h.version == 2:
                    self._delegate(h, top / self.parent)
            except OSError as e:
                log.warning("cgroup %s: cannot use %s: %s", h.mount, top, e)
                continue
            base = top / self.parent
            break
        self._bases[h.mount] = base
        return base

    @staticmethod
    def _delegate(h: Hierarchy, folder: Path) -> None:
        wanted = sorted(h.controllers & {"memory", "cpu", "pids"})
        if wanted:
            (folder / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))

    def container(self, pod_uid: str, name: str) -> ContainerCgroups:
        """Where a container's cgroups are (whether or not they exist)."""
        dirs = {}
        for controller, h in self._by_controller.items():
            base = self._base(h)
            if base is not None:
                dirs[controller] = (h.version, base / pod_uid / name)
        return ContainerCgroups(dirs)

    def create(self, pod_uid: str, name: str, *, cpu_millicores: int | None = None,
               memory_bytes: int | None = None) -> ContainerCgroups:
        """Make a container's cgroups and write its limits (OSError if the kernel refuses)."""
        cgroups = self.container(pod_uid, name)
        for version, folder in cgroups.dirs.values():
            if not folder.exists():
                folder.parent.mkdir(exist_ok=True)
                if version == 2:
                    h = next(h for h in self.hierarchies if h.version == 2)
                    self._delegate(h, folder.parent)
                folder.mkdir(exist_ok=True)
        cgroups.set_limits(cpu_millicores=cpu_millicores, memory_bytes=memory_bytes)
        return cgroups

    def remove_pod(self, pod_uid: str) -> None:
        """rmdir the pod's folders (left alone while a container's cgroup is still in one)."""
        for h in self._by_controller.values():
            base = self._base(h)
            if base is not None:
                try:
                    (base / pod_uid).rmdir()
                except OSError:
                    pass

    def remove_parent(self) -> None:
        """rmdir `<parent>` in every hierarchy if no pod is left in it."""
        for base in {self._base(h) for h in self._by_controller.values()}:
            if base is not None:
                try:
                    base.rmdir()
                except OSError:
                    pass
        self._bases.clear()

    def of_process(self, pid: int) -> ContainerCgroups:
        """The cgroups a process is in, for the hierarchies we know (a container engine's
        containers are found this way)."""
        try:
            paths = parse_self_cgroup(Path(f"/proc/{pid}/cgroup").read_text())
        except OSError:
            return ContainerCgroups()
        dirs = {}
        for controller, h in self._by_controller.items():
            key = frozenset() if h.version == 2 else next(
                (k for k in paths if controller in k), None)
            if key is not None and key in paths:
                dirs[controller] = (h.version, h.mount / paths[key].lstrip("/"))
        return ContainerCgroups(dirs)

