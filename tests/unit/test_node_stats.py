"""The kubelet's Summary API, capacity and pressure conditions."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Any

from pilothouse.machinery.quantity import parse_quantity
from pilothouse.node.runtime.base import ContainerStats, ContainerStatus
from pilothouse.node.stats import (
    CpuSample,
    StatsProvider,
    disk_pressure,
    memory_pressure,
    node_allocatable,
    node_capacity,
    pid_pressure,
    read_meminfo,
    usage_nano_cores,
)

Mi = 1024 * 1024


class FakeRuntime:
    """Scripted container stats: the k-th read of a container reports `rate` cores used
    over 10 s per read, so any two consecutive reads give that rate exactly."""

    def __init__(self) -> None:
        self.rates: dict[str, float] = {}
        self.memory: dict[str, int] = {}
        self.reads: dict[str, int] = {}

    def add(self, container_id: str, *, cores: float, memory: int) -> None:
        self.rates[container_id] = cores
        self.memory[container_id] = memory

    async def container_stats(self, container_id: str) -> ContainerStats | None:
        if container_id not in self.rates:
            return None
        k = self.reads[container_id] = self.reads.get(container_id, 0) + 1
        return ContainerStats(cpu_usage_core_nanoseconds=int(k * 10 * self.rates[container_id]
                                                             * 1e9),
                              memory_working_set_bytes=self.memory[container_id],
                              timestamp=1_700_000_000.0 + 10 * k)

    async def container_status(self, container_id: str) -> ContainerStatus | None:
        return ContainerStatus(id=container_id, name="", attempt=0, state="running",
                               labels={}, started_at=1_699_999_000.0)


def pod(name: str, uid: str, *, limits: dict[str, str] | None = None) -> dict[str, Any]:
    containers = [{"name": "main", "resources": {"limits": limits or {}}}, {"name": "side"}]
    return {"metadata": {"name": name, "namespace": "team", "uid": uid},
            "spec": {"containers": containers},
            "status": {"startTime": "2023-11-14T22:00:00Z"}}


async def sampled(provider: StatsProvider, runtime: FakeRuntime, container_id: str,
                  reads: int) -> None:
    await provider.start()
    deadline = time.monotonic() + 3
    while runtime.reads.get(container_id, 0) < reads:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)
    await provider.stop()


def test_container_cpu_rates_come_from_the_last_two_samples(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    runtime.add("c-main", cores=0.5, memory=64 * Mi)
    runtime.add("c-side", cores=0.25, memory=16 * Mi)
    web = pod("web", "u1", limits={"memory": "128Mi"})
    running = [(web, "main", runtime, "c-main"), (web, "side", runtime, "c-side")]
    provider = StatsProvider(node_name="n1", data_dir=tmp_path, containers=lambda: running,
                             interval=0.01)

    async def go() -> dict[str, Any]:
        await sampled(provider, runtime, "c-side", 3)
        return await provider.summary()

    summary = asyncio.run(go())
    [stats] = summary["pods"]
    assert stats["podRef"] == {"name": "web", "namespace": "team", "uid": "u1"}
    assert stats["startTime"] == "2023-11-14T22:00:00Z"
    main, side = stats["containers"]
    assert main["name"] == "main" and main["startTime"] == "2023-11-14T21:56:40Z"
    assert main["cpu"]["usageNanoCores"] == 500_000_000
    assert main["cpu"]["usageCoreNanoSeconds"] == runtime.reads["c-main"] * 5 * 10**9
    assert main["memory"]["workingSetBytes"] == 64 * Mi
    assert main["memory"]["availableBytes"] == 64 * Mi  # a 128Mi limit
    assert "availableBytes" not in side["memory"]
    assert side["cpu"]["usageNanoCores"] == 250_000_000
    assert stats["cpu"]["usageNanoCores"] == 750_000_000
    assert stats["cpu"]["usageCoreNanoSeconds"] == (main["cpu"]["usageCoreNanoSeconds"]
                                                    + side["cpu"]["usageCoreNanoSeconds"])
    assert stats["memory"]["workingSetBytes"] == 80 * Mi


def test_new_containers_show_at_once_and_gone_ones_are_forgotten(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    runtime.add("c-old", cores=1, memory=Mi)
    running = [(pod("old", "u1"), "main", runtime, "c-old")]
    provider = StatsProvider(node_name="n1", data_dir=tmp_path, containers=lambda: running,
                             interval=0.01)

    async def go() -> dict[str, Any]:
        await sampled(provider, runtime, "c-old", 2)
        runtime.add("c-new", cores=2, memory=2 * Mi)
        running[:] = [(pod("new", "u2"), "main", runtime, "c-new")]
        return await provider.summary()

    summary = asyncio.run(go())
    [stats] = summary["pods"]
    assert stats["podRef"]["name"] == "new"
    [container] = stats["containers"]
    # One sample so far: the counter and memory, but no rate yet.
    assert container["cpu"]["usageCoreNanoSeconds"] == 20 * 10**9
    assert "usageNanoCores" not in container["cpu"]
    assert container["memory"]["workingSetBytes"] == 2 * Mi


def test_the_first_summary_samples_the_real_node_twice_a_second_apart(tmp_path: Path) -> None:
    provider = StatsProvider(node_name="n1", data_dir=tmp_path, containers=lambda: [])

    async def go() -> tuple[dict[str, Any], float]:
        started = time.monotonic()
        summary = await provider.summary()
        return summary, time.monotonic() - started

    summary, took = asyncio.run(go())
    assert 0.9 < took < 3
    node = summary["node"]
    assert node["nodeName"] == "n1" and summary["pods"] == []
    assert 0 <= node["cpu"]["usageNanoCores"] <= (os.cpu_count() or 1) * 1.05e9
    assert node["cpu"]["usageCoreNanoSeconds"] > 0
    memory, meminfo = node["memory"], read_meminfo()
    assert 0 < memory["workingSetBytes"] <= memory["usageBytes"] <= meminfo["MemTotal"]
    assert memory["availableBytes"] + memory["workingSetBytes"] <= meminfo["MemTotal"] * 1.01
    disk = shutil.disk_usage(tmp_path)
    assert node["fs"]["capacityBytes"] == disk.total
    assert abs(node["fs"]["availableBytes"] - disk.free) < 512 * Mi
    assert node["fs"]["inodes"] >= node["fs"]["inodesFree"] > 0
    assert node["runtime"]["imageFs"]["capacityBytes"] == disk.total
    assert node["rlimit"]["maxpid"] > node["rlimit"]["curproc"] > 0
    assert node["startTime"] < node["cpu"]["time"]
    nanocores, working_set = provider.node_usage()
    assert nanocores == node["cpu"]["usageNanoCores"]
    assert 0 < working_set <= meminfo["MemTotal"]


def test_a_rate_needs_two_samples_and_a_counter_that_went_forward() -> None:
    assert usage_nano_cores([CpuSample(10, 1.0)]) is None
    assert usage_nano_cores([CpuSample(10, 1.0), CpuSample(5, 2.0)]) is None
    assert usage_nano_cores([CpuSample(10, 1.0), CpuSample(10, 1.0)]) is None
    assert usage_nano_cores([CpuSample(0, 1.0), CpuSample(3 * 10**9, 3.0)]) == 1_500_000_000


def test_capacity_is_measured_from_this_machine(tmp_path: Path) -> None:
    capacity = node_capacity(tmp_path / "not-yet-made")
    assert {"cpu", "memory", "pods", "ephemeral-storage"} <= capacity.keys()
    assert capacity["pods"] == "110"
    assert 0 < parse_quantity(capacity["cpu"]) <= len(os.sched_getaffinity(0))
    assert 0 < parse_quantity(capacity["memory"]) <= read_meminfo()["MemTotal"]
    assert parse_quantity(capacity["ephemeral-storage"]) == shutil.disk_usage(tmp_path).total
    if Path("/sys/kernel/mm/hugepages/hugepages-2048kB").exists():
        assert "hugepages-2Mi" in capacity
    if shutil.which("nvidia-smi") is None:
        assert "nvidia.com/gpu" not in capacity
    assert list(capacity) == sorted(capacity)


def test_allocatable_subtracts_reservations_and_hard_eviction_thresholds() -> None:
    capacity = {"cpu": "4", "ephemeral-storage": "101430960Ki", "hugepages-2Mi": "0",
                "memory": "32857284Ki", "pods": "110"}
    # The figures a real kubelet reports for this capacity with its defaults.
    assert node_allocatable(capacity) == {
        "cpu": "4", "ephemeral-storage": "93478772582", "hugepages-2Mi": "0",
        "memory": "32754884Ki", "pods": "110"}
    reserved = node_allocatable(capacity, system_reserved={"cpu": "500m", "memory": "1Gi"},
                                kube_reserved={"cpu": "250m"},
                                eviction_hard={"memory.available": "500Mi"})
    assert reserved["cpu"] == "3250m"
    assert reserved["memory"] == "31296708Ki"  # 32857284Ki - 1Gi - 500Mi
    assert reserved["ephemeral-storage"] == "101430960Ki"
    assert node_allocatable({"memory": "64Mi"})["memory"] == "0"


def node_stats(*, memory_available: int = 8 * 1024 * Mi, disk_free: float = 0.5,
               inodes_free: float = 0.5, image_free: float | None = None,
               curproc: int = 300) -> dict[str, Any]:
    capacity, inodes = 100 * 1024 * Mi, 1_000_000
    fs = {"availableBytes": int(capacity * disk_free), "capacityBytes": capacity,
          "inodesFree": int(inodes * inodes_free), "inodes": inodes}
    image = fs if image_free is None else {**fs, "availableBytes": int(capacity * image_free)}
    return {"memory": {"availableBytes": memory_available, "workingSetBytes": 8 * 1024 * Mi},
            "fs": fs, "runtime": {"imageFs": image},
            "rlimit": {"maxpid": 4096, "curproc": curproc}}


def test_memory_pressure_below_100Mi_available() -> None:
    assert memory_pressure(node_stats()) == (
        False, "KubeletHasSufficientMemory", "kubelet has sufficient memory available")
    assert memory_pressure(node_stats(memory_available=99 * Mi)) == (
        True, "KubeletHasInsufficientMemory", "kubelet has insufficient memory available")
    assert not memory_pressure(node_stats(memory_available=101 * Mi))[0]
    assert memory_pressure(node_stats(memory_available=1024 * Mi),
                           eviction_hard={"memory.available": "20%"})[0]
    assert not memory_pressure({})[0]


def test_disk_pressure_on_space_inodes_or_the_image_filesystem() -> None:
    assert disk_pressure(node_stats()) == (
        False, "KubeletHasNoDiskPressure", "kubelet has no disk pressure")
    assert disk_pressure(node_stats(disk_free=0.09)) == (
        True, "KubeletHasDiskPressure", "kubelet has disk pressure")
    assert disk_pressure(node_stats(disk_free=0.5, inodes_free=0.04))[0]
    assert not disk_pressure(node_stats(disk_free=0.5, inodes_free=0.06))[0]
    # Images share the data directory's disk: imagefs.available<15% counts there too.
    assert disk_pressure(node_stats(image_free=0.14))[0]
    assert not disk_pressure({})[0]


def test_pid_pressure_only_with_a_threshold() -> None:
    assert pid_pressure(node_stats(curproc=4095)) == (
        False, "KubeletHasSufficientPID", "kubelet has sufficient PID available")
    assert pid_pressure(node_stats(curproc=4000), eviction_hard={"pid.available": "200"}) == (
        True, "KubeletHasInsufficientPID", "kubelet has insufficient PID available")
    assert not pid_pressure(node_stats(curproc=300), eviction_hard={"pid.available": "10%"})[0]
