"""The kubelet's resource statistics: the Summary API, node capacity and pressure.

`StatsProvider` serves what the kubelet's `/stats/summary` serves (metrics-server and our
API server's metrics.k8s.io read it for `kubectl top`): the node's CPU, memory and
filesystem, and per pod and container CPU and working-set memory. CPU usage is a
cumulative counter (`usageCoreNanoSeconds`); the rate (`usageNanoCores`) is taken
between the last two samples, which a background task takes every `interval` seconds
(10, as the kubelet's housekeeping). Until two node samples exist the first request
takes them itself, a second apart, so `kubectl top` works right after start; a
container first seen at a request gets its counter and memory at once and its rate from
the next sample (the kubelet, too, omits a rate it cannot compute yet).

Where the numbers come from, on Linux:

- node CPU: /proc/stat, busy time of all CPUs (user, nice, system, irq, softirq, steal);
- node memory: /proc/meminfo. workingSetBytes is MemTotal - MemAvailable (the kernel's
  estimate of what cannot be reclaimed; the kubelet's root-cgroup usage minus inactive
  file comes to about the same), usageBytes MemTotal - MemFree, rssBytes AnonPages,
  availableBytes MemAvailable; page faults from /proc/vmstat;
- node filesystem: statvfs of the data directory, which also holds the images (so
  `runtime.imageFs` is the same filesystem, as on a single-disk node);
- process limits: the kernel's pid_max/threads-max and its count of tasks (/proc/loadavg);
- containers: `Runtime.container_stats` (cumulative CPU and working set).

Elsewhere the node's numbers the kernel does not give are left out, never guessed, so
nothing reports pressure it did not measure.

The eviction signals the kubelet derives from the summary become its node conditions:
`memory_pressure`, `disk_pressure` and `pid_pressure` compare them with the hard
eviction thresholds (`memory.available<100Mi`, `nodefs.available<10%`,
`nodefs.inodesFree<5%`, `imagefs.available<15%`; no PID threshold unless one is set) and
return the condition's status, reason and message. `node_capacity` and
`node_allocatable` give the Node's status.capacity and status.allocatable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import struct
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..machinery.meta import parse_time, rfc3339
from ..machinery.quantity import BINARY_SI, DECIMAL_SI, format_quantity, parse_quantity, to_int
from .runtime.base import Runtime

log = logging.getLogger(__name__)

#: One running container as the kubelet knows it: (pod, container name, its runtime, id).
ContainerEntry = tuple[Mapping[str, Any], str, Runtime, str]

DEFAULT_INTERVAL = 10.0
#: Seconds between the two samples the first request takes when nothing was sampled.
WARM_UP_SECONDS = 1.0
#: The kubelet's --max-pods default.
DEFAULT_MAX_PODS = 110
#: The kubelet's default hard eviction thresholds on Linux (evictionHard).
DEFAULT_EVICTION_HARD: Mapping[str, str] = {
    "memory.available": "100Mi",
    "nodefs.available": "10%",
    "nodefs.inodesFree": "5%",
    "imagefs.available": "15%",
}

#: A node condition as the kubelet sets it: (status is True, reason, message).
Condition = tuple[bool, str, str]

PROC = Path("/proc")
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_HUGEPAGES = Path("/sys/kernel/mm/hugepages")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_NANOS = 1_000_000_000


@dataclass(frozen=True)
class CpuSample:
    #: Cumulative CPU time, in core-nanoseconds.
    usage_ns: int
    #: When it was read (epoch seconds).
    at: float


def usage_nano_cores(samples: Iterable[CpuSample]) -> int | None:
    """The CPU rate between the first and last sample, in nanocores (None: no rate)."""
    ordered = list(samples)
    if len(ordered) < 2:
        return None
    first, last = ordered[0], ordered[-1]
    elapsed = last.at - first.at
    if elapsed <= 0 or last.usage_ns < first.usage_ns:  # no time passed, or a reset counter
        return None
    return int((last.usage_ns - first.usage_ns) / elapsed)


class StatsProvider:
    """The node's and its containers' usage, sampled in the background.

    `containers` lists the running containers whenever asked (the kubelet's view).
    """

    def __init__(self, *, node_name: str, data_dir: Path,
                 containers: Callable[[], Iterable[ContainerEntry]],
                 interval: float = DEFAULT_INTERVAL) -> None:
        self.node_name = node_name
        self.data_dir = data_dir
        self._containers = containers
        self._interval = interval
        self._node_cpu: deque[CpuSample] = deque(maxlen=2)
        self._cpu: dict[str, deque[CpuSample]] = {}
        self._memory: dict[str, tuple[int, float]] = {}
        self._started: dict[str, float | None] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Sample now and every `interval` seconds until `stop`."""
        if self._task is None:
            self._task = asyncio.create_task(self._sample_forever(), name="stats sampler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def summary(self) -> dict[str, Any]:
        """The Summary API's document (`/stats/summary`)."""
        async with self._lock:
            if len(self._node_cpu) < 2:
                await self._warm_up()
            entries = list(self._containers())
            unseen = [entry for entry in entries if entry[3] not in self._cpu]
            if unseen:
                await self._sample_containers(unseen)
        return {"node": self.node_stats(), "pods": self._pod_stats(entries)}

    def node_usage(self) -> tuple[int, int]:
        """(CPU in nanocores, working-set bytes) of the whole node, as last sampled
        (the CPU rate is 0 until two samples exist)."""
        memory = read_meminfo()
        working_set = memory["MemTotal"] - memory["MemAvailable"] if memory else 0
        return usage_nano_cores(self._node_cpu) or 0, working_set

    # -- sampling ------------------------------------------------------------------------

    async def _sample_forever(self) -> None:
        while True:
            try:
                async with self._lock:
                    await self._sample()
            except Exception:
                log.exception("node %s: sampling resource usage failed", self.node_name)
            await asyncio.sleep(self._interval)

    async def _warm_up(self) -> None:
        if not self._node_cpu:
            await self._sample()
        wait = self._node_cpu[-1].at + WARM_UP_SECONDS - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        await self._sample()

    async def _sample(self) -> None:
        """Sample the node and every running container; forget containers that are gone."""
        usage = read_cpu_usage_ns()
        if usage is not None:
            self._node_cpu.append(CpuSample(usage, time.time()))
        entries = list(self._containers())
        running = {entry[3] for entry in entries}
        for gone in [cid for cid in self._cpu if cid not in running]:
            self._cpu.pop(gone, None)
            self._memory.pop(gone, None)
            self._started.pop(gone, None)
        await self._sample_containers(entries)

    async def _sample_containers(self, entries: list[ContainerEntry]) -> None:
        results = await asyncio.gather(
            *(self._sample_container(runtime, cid) for _, _, runtime, cid in entries),
            return_exceptions=True)
        for (pod, name, _, cid), result in zip(entries, results, strict=True):
            if isinstance(result, BaseException):
                meta = pod.get("metadata") or {}
                log.warning("pod %s/%s container %s (%s): no stats: %s", meta.get("namespace"),
                            meta.get("name"), name, cid, result)

    async def _sample_container(self, runtime: Runtime, container_id: str) -> None:
        stats = await runtime.container_stats(container_id)
        if stats is None:
            return
        self._cpu.setdefault(container_id, deque(maxlen=2)).append(
            CpuSample(stats.cpu_usage_core_nanoseconds, stats.timestamp))
        self._memory[container_id] = (stats.memory_working_set_bytes, stats.timestamp)
        if container_id not in self._started:
            status = await runtime.container_status(container_id)
            self._started[container_id] = status.started_at if status is not None else None

    # -- the document --------------------------------------------------------------------

    def node_stats(self) -> dict[str, Any]:
        now = _time(time.time())
        node: dict[str, Any] = {"nodeName": self.node_name}
        boot = read_boot_time()
        if boot is not None:
            node["startTime"] = _time(boot)
        if self._node_cpu:
            node["cpu"] = _cpu(self._node_cpu)
        memory = read_meminfo()
        if memory:
            node["memory"] = {
                "time": now,
                "availableBytes": memory["MemAvailable"],
                "usageBytes": memory["MemTotal"] - memory["MemFree"],
                "workingSetBytes": memory["MemTotal"] - memory["MemAvailable"],
                "rssBytes": memory.get("AnonPages", 0),
                **read_page_faults(),
            }
        fs = fs_stats(self.data_dir)
        node["fs"] = fs
        node["runtime"] = {"imageFs": fs, "containerFs": fs}
        rlimit = read_process_limits()
        if rlimit:
            node["rlimit"] = {"time": now, **rlimit}
        return node

    def _pod_stats(self, entries: list[ContainerEntry]) -> list[dict[str, Any]]:
        pods: dict[str, dict[str, Any]] = {}
        for pod, name, _, cid in entries:
            if cid not in self._cpu:
                continue
            meta = pod.get("metadata") or {}
            uid = str(meta.get("uid", ""))
            stats = pods.get(uid)
            if stats is None:
                stats = pods[uid] = {
                    "podRef": {"name": meta.get("name", ""),
                               "namespace": meta.get("namespace", ""), "uid": uid},
                    "containers": [],
                }
                started = parse_time((pod.get("status") or {}).get("startTime"))
                if started is not None:
                    stats["startTime"] = rfc3339(started)
            stats["containers"].append(self._container_stats(pod, name, cid))
        for stats in pods.values():
            containers = stats["containers"]
            starts = [c["startTime"] for c in containers if "startTime" in c]
            if "startTime" not in stats and starts:
                stats["startTime"] = min(starts)
            stats["cpu"] = _pod_cpu([c["cpu"] for c in containers])
            stats["memory"] = {
                "time": max(c["memory"]["time"] for c in containers),
                "workingSetBytes": sum(c["memory"]["workingSetBytes"] for c in containers),
            }
        return list(pods.values())

    def _container_stats(self, pod: Mapping[str, Any], name: str, cid: str) -> dict[str, Any]:
        working_set, at = self._memory[cid]
        memory: dict[str, Any] = {"time": _time(at), "workingSetBytes": working_set}
        limit = _memory_limit(pod, name)
        if limit is not None:
            memory["availableBytes"] = max(limit - working_set, 0)
        stats: dict[str, Any] = {"name": name}
        started = self._started.get(cid)
        if started is not None:
            stats["startTime"] = _time(started)
        stats["cpu"] = _cpu(self._cpu[cid])
        stats["memory"] = memory
        return stats


def _cpu(samples: deque[CpuSample]) -> dict[str, Any]:
    cpu: dict[str, Any] = {"time": _time(samples[-1].at)}
    rate = usage_nano_cores(samples)
    if rate is not None:
        cpu["usageNanoCores"] = rate
    cpu["usageCoreNanoSeconds"] = samples[-1].usage_ns
    return cpu


def _pod_cpu(containers: list[dict[str, Any]]) -> dict[str, Any]:
    cpu: dict[str, Any] = {"time": max(c["time"] for c in containers)}
    rates = [c["usageNanoCores"] for c in containers if "usageNanoCores" in c]
    if rates:
        cpu["usageNanoCores"] = sum(rates)
    cpu["usageCoreNanoSeconds"] = sum(c["usageCoreNanoSeconds"] for c in containers)
    return cpu


def _memory_limit(pod: Mapping[str, Any], name: str) -> int | None:
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") == name:
            limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
            return to_int(limit) if limit is not None else None
    return None


def _time(epoch: float) -> str:
    return rfc3339(datetime.fromtimestamp(epoch, UTC))


# -- the kernel's numbers ------------------------------------------------------------------

def read_cpu_usage_ns(proc: Path = PROC) -> int | None:
    """Busy time of all CPUs since boot, in core-nanoseconds (None: no /proc/stat)."""
    try:
        with open(proc / "stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(value) for value in fields[1:9]] + [0] * (9 - len(fields))
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
    return (user + nice + system + irq + softirq + steal) * _NANOS // _CLOCK_TICKS


def read_meminfo(proc: Path = PROC) -> dict[str, int]:
    """/proc/meminfo in bytes ({} where there is none)."""
    try:
        text = (proc / "meminfo").read_text()
    except OSError:
        return {}
    memory: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            memory[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return memory if {"MemTotal", "MemFree", "MemAvailable"} <= memory.keys() else {}


def read_page_faults(proc: Path = PROC) -> dict[str, int]:
    try:
        text = (proc / "vmstat").read_text()
    except OSError:
        return {}
    counters = dict(line.split()[:2] for line in text.splitlines() if " " in line)
    names = {"pgfault": "pageFaults", "pgmajfault": "majorPageFaults"}
    return {names[k]: int(v) for k, v in counters.items() if k in names}


def read_boot_time(proc: Path = PROC) -> float | None:
    try:
        with open(proc / "stat") as stat:
            for line in stat:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def read_process_limits(proc: Path = PROC) -> dict[str, int]:
    """{maxpid, curproc}: the kernel's limit on tasks and how many exist now, as the
    kubelet's rlimit stats (pid.available = maxpid - curproc)."""
    try:
        limits = [int((proc / "sys/kernel" / name).read_text()) for name in
                  ("pid_max", "threads-max")]
        current = int((proc / "loadavg").read_text().split()[3].split("/")[1])
    except (OSError, ValueError, IndexError):
        return {}
    return {"maxpid": min(limits), "curproc": current}


def fs_stats(path: Path) -> dict[str, Any]:
    """FsStats of the filesystem holding `path` (or its nearest existing parent)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    st = os.statvfs(path)
    return {
        "time": _time(time.time()),
        "availableBytes": st.f_bavail * st.f_frsize,
        "capacityBytes": st.f_blocks * st.f_frsize,
        "usedBytes": (st.f_blocks - st.f_bfree) * st.f_frsize,
        "inodesFree": st.f_ffree,
        "inodes": st.f_files,
        "inodesUsed": st.f_files - st.f_ffree,
    }


# -- capacity ------------------------------------------------------------------------------

def node_capacity(data_dir: Path) -> dict[str, str]:
    """The node's status.capacity, measured: CPUs (fewer if a cgroup quota caps this
    process), memory (MemTotal, or a lower cgroup limit), pods, the data directory's
    filesystem as ephemeral-storage, huge pages, and nvidia.com/gpu where
    `nvidia-smi -L` lists GPUs."""
    capacity = {
        "cpu": format_quantity(_cpu_capacity()),
        "pods": str(DEFAULT_MAX_PODS),
        "ephemeral-storage": format_quantity(
            Decimal(fs_stats(data_dir)["capacityBytes"]), BINARY_SI),
    }
    memory = _memory_capacity()
    if memory:
        capacity["memory"] = format_quantity(Decimal(memory), BINARY_SI)
    capacity.update(_hugepages())
    gpus = _nvidia_gpus()
    if gpus:
        capacity["nvidia.com/gpu"] = str(gpus)
    return dict(sorted(capacity.items()))


def node_allocatable(capacity: Mapping[str, str], *,
                     system_reserved: Mapping[str, str] | None = None,
                     kube_reserved: Mapping[str, str] | None = None,
                     eviction_hard: Mapping[str, str] | None = None) -> dict[str, str]:
    """status.allocatable as the kubelet computes it: capacity minus system-reserved,
    kube-reserved and the hard eviction thresholds of memory (`memory.available`) and
    ephemeral-storage (`nodefs.available`), never below zero."""
    hard = DEFAULT_EVICTION_HARD if eviction_hard is None else eviction_hard
    signals = {"memory": "memory.available", "ephemeral-storage": "nodefs.available"}
    allocatable: dict[str, str] = {}
    for name, value in capacity.items():
        amount = parse_quantity(value)
        reserved = sum((parse_quantity(r[name]) for r in (system_reserved, kube_reserved)
                        if r and name in r), Decimal(0))
        signal = signals.get(name)
        if signal is not None and signal in hard:
            reserved += threshold_amount(hard[signal], int(amount))
        binary = name in signals or name.startswith("hugepages-")
        allocatable[name] = format_quantity(max(amount - reserved, Decimal(0)),
                                            BINARY_SI if binary else DECIMAL_SI)
    return allocatable


def threshold_amount(threshold: str, capacity: int) -> int:
    """An eviction threshold in the signal's units: a quantity, or a percentage of
    `capacity` (a float32 fraction, as the kubelet parses it, so its rounding matches)."""
    if threshold.endswith("%"):
        fraction = struct.unpack("f", struct.pack("f", float(threshold[:-1]) / 100))[0]
        return int(capacity * fraction)
    return to_int(threshold)


def _cpu_capacity() -> Decimal:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
    quota = _cgroup_cpu_limit()
    if quota is not None and quota < cores:
        return max(Decimal(round(quota * 1000)) / 1000, Decimal("0.001"))
    return Decimal(cores)


def _memory_capacity() -> int | None:
    memory = read_meminfo().get("MemTotal")
    limit = _cgroup_memory_limit()
    if limit is not None and (memory is None or limit < memory):
        return limit
    return memory


def _hugepages() -> dict[str, str]:
    pages: dict[str, str] = {}
    try:
        sizes = list(_HUGEPAGES.iterdir())
    except OSError:
        return pages
    for size_dir in sizes:
        kib = size_dir.name.removeprefix("hugepages-").removesuffix("kB")
        try:
            count = int((size_dir / "nr_hugepages").read_text())
        except (OSError, ValueError):
            continue
        if kib.isdigit():
            size = int(kib) * 1024
            name = f"hugepages-{format_quantity(Decimal(size), BINARY_SI)}"
            pages[name] = format_quantity(Decimal(count * size), BINARY_SI)
    return pages


def _nvidia_gpus() -> int:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        listing = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10,
                                 check=True).stdout
    except (OSError, subprocess.SubprocessError):
        log.warning("nvidia-smi -L failed; advertising no GPUs", exc_info=True)
        return 0
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))


# -- cgroup limits -------------------------------------------------------------------------

def _cgroup_dirs(controller: str) -> tuple[list[Path], bool]:
    """This process's cgroup directories for `controller`, innermost first up to the
    hierarchy's root (an ancestor's limit applies too), and whether it is cgroup v2."""
    try:
        memberships = (PROC / "self/cgroup").read_text().splitlines()
        mounts = (PROC / "self/mountinfo").read_text().splitlines()
    except OSError:
        return [], False
    v1_path = v2_path = None
    for line in memberships:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            v1_path = path
        elif controllers == "":
            v2_path = path
    for line in mounts:
        left, _, right = line.partition(" - ")
        fields, super_fields = left.split(), right.split()
        if len(fields) < 5 or len(super_fields) < 3:
            continue
        root, mount_point, fstype = fields[3], Path(fields[4]), super_fields[0]
        if v1_path is not None and fstype == "cgroup" and \
                controller in super_fields[2].split(","):
            return _ancestors(mount_point, root, v1_path), False
        if v1_path is None and v2_path is not None and fstype == "cgroup2":
            return _ancestors(mount_point, root, v2_path), True
    return [], False


def _ancestors(mount_point: Path, root: str, path: str) -> list[Path]:
    relative = path[len(root):] if root != "/" and path.startswith(root) else path
    directory = mount_point / relative.lstrip("/")
    dirs = []
    while True:
        if directory.is_dir():
            dirs.append(directory)
        if directory == mount_point or directory == directory.parent:
            return dirs
        directory = directory.parent


def _cgroup_cpu_limit() -> float | None:
    """The tightest CPU quota over this process's cgroups, in cores (None: none)."""
    dirs, v2 = _cgroup_dirs("cpu")
    limits = []
    for directory in dirs:
        try:
            if v2:
                quota, period = (directory / "cpu.max").read_text().split()
            else:
                quota = (directory / "cpu.cfs_quota_us").read_text().strip()
                period = (directory / "cpu.cfs_period_us").read_text().strip()
        except (OSError, ValueError):
            continue
        if quota not in ("max", "-1") and int(period) > 0:
            limits.append(int(quota) / int(period))
    return min(limits, default=None)


def _cgroup_memory_limit() -> int | None:
    """The tightest memory limit over this process's cgroups, in bytes (None: none)."""
    dirs, v2 = _cgroup_dirs("memory")
    limits = []
    for directory in dirs:
        try:
            value = (directory / ("memory.max" if v2 else "memory.limit_in_bytes")
                     ).read_text().strip()
        except OSError:
            continue
        if value.isdigit() and int(value) < 2**62:  # v1 says "unlimited" with a huge number
            limits.append(int(value))
    return min(limits, default=None)


# -- pressure ------------------------------------------------------------------------------

def memory_pressure(node: Mapping[str, Any], *,
                    eviction_hard: Mapping[str, str] | None = None) -> Condition:
    """MemoryPressure from the summary's node stats: memory.available below its threshold."""
    hard = DEFAULT_EVICTION_HARD if eviction_hard is None else eviction_hard
    memory = node.get("memory") or {}
    available = memory.get("availableBytes")
    capacity = (available or 0) + (memory.get("workingSetBytes") or 0)
    if _below(available, capacity, hard.get("memory.available")):
        return True, "KubeletHasInsufficientMemory", "kubelet has insufficient memory available"
    return False, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"


def disk_pressure(node: Mapping[str, Any], *,
                  eviction_hard: Mapping[str, str] | None = None) -> Condition:
    """DiskPressure: space or inodes of the node's (nodefs) or the images' (imagefs)
    filesystem below their thresholds."""
    hard = DEFAULT_EVICTION_HARD if eviction_hard is None else eviction_hard
    nodefs = node.get("fs") or {}
    imagefs = (node.get("runtime") or {}).get("imageFs") or {}
    if any(_below(fs.get(free), fs.get(total), hard.get(f"{prefix}.{signal}"))
           for prefix, fs in (("nodefs", nodefs), ("imagefs", imagefs))
           for signal, free, total in (("available", "availableBytes", "capacityBytes"),
                                       ("inodesFree", "inodesFree", "inodes"))):
        return True, "KubeletHasDiskPressure", "kubelet has disk pressure"
    return False, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"


def pid_pressure(node: Mapping[str, Any], *,
                 eviction_hard: Mapping[str, str] | None = None) -> Condition:
    """PIDPressure: pid.available (maxpid - curproc) below its threshold; the kubelet
    sets none by default, so this needs `pid.available` in `eviction_hard`."""
    hard = DEFAULT_EVICTION_HARD if eviction_hard is None else eviction_hard
    rlimit = node.get("rlimit") or {}
    maxpid, curproc = rlimit.get("maxpid"), rlimit.get("curproc")
    available = maxpid - curproc if maxpid is not None and curproc is not None else None
    if _below(available, maxpid, hard.get("pid.available")):
        return True, "KubeletHasInsufficientPID", "kubelet has insufficient PID available"
    return False, "KubeletHasSufficientPID", "kubelet has sufficient PID available"


def _below(available: int | None, capacity: int | None, threshold: str | None) -> bool:
    """An eviction signal is met: what is available is under the threshold. A signal not
    measured, or without a threshold, is never met."""
    if available is None or threshold is None:
        return False
    if threshold.endswith("%") and not capacity:
        return False
    return available < threshold_amount(threshold, capacity or 0)
