"""The scheduling queue's sub-queues and backoff, and Coscheduling's gang logic."""

from __future__ import annotations

import asyncio
from typing import Any

from pilothouse.scheduler.cache import SchedulerCache
from pilothouse.scheduler.framework import Code, CycleState, Handle, WaitingPod, WaitingPods
from pilothouse.scheduler.nodeinfo import PodInfo
from pilothouse.scheduler.plugins.coscheduling import Coscheduling
from pilothouse.scheduler.queue import SchedulingQueue


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def pod(name: str, priority: int = 0, group: str = "") -> PodInfo:
    labels = {"scheduling.x-k8s.io/pod-group": group} if group else {}
    return PodInfo({"metadata": {"name": name, "namespace": "ns", "labels": labels},
                    "spec": {"containers": [{"name": "c"}], "priority": priority}})


def queue(clock: Clock) -> SchedulingQueue:
    return SchedulingQueue(lambda q: (-q.info.priority, q.timestamp), clock=clock)


def test_active_queue_pops_by_priority_then_age() -> None:
    clock = Clock()
    q = queue(clock)
    for name, priority in (("old-low", 0), ("high", 10), ("new-low", 0)):
        q.add(pod(name, priority))
        clock.now += 1
    popped = [q.pop_nowait() for _ in range(3)]
    assert [p.key for p in popped if p] == ["ns/high", "ns/old-low", "ns/new-low"]
    assert q.pop_nowait() is None


def test_backoff_doubles_from_one_second_to_ten() -> None:
    q = queue(Clock())
    assert [q.backoff_seconds(n) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 8, 10, 10]


def test_unschedulable_pod_waits_for_an_event_then_backs_off() -> None:
    clock = Clock()
    q = queue(clock)
    q.add(pod("p"))
    queued = q.pop_nowait()
    assert queued is not None
    q.add_unschedulable(queued, ["NodeResourcesFit"])
    assert q.counts() == (0, 0, 1)
    clock.now += 5
    assert q.pop_nowait() is None  # no event: it stays put however long it waits
    assert q.move_all(frozenset({"TaintToleration"})) == 0  # an event its rejector ignores
    assert q.move_all(frozenset({"NodeResourcesFit"})) == 1
    assert q.pop_nowait() is queued and queued.attempts == 2


def test_event_during_the_cycle_sends_the_pod_to_backoff_not_unschedulable() -> None:
    clock = Clock()
    q = queue(clock)
    q.add(pod("p"))
    queued = q.pop_nowait()
    assert queued is not None
    q.move_all(None)  # a node was added while the pod was being scheduled
    q.add_unschedulable(queued, ["NodeResourcesFit"])
    assert q.counts() == (0, 1, 0)
    assert q.pop_nowait() is None
    clock.now += 1.0
    assert q.pop_nowait() is queued


def test_deleted_pods_leave_every_queue() -> None:
    q = queue(Clock())
    q.add(pod("p"))
    q.delete("ns/p")
    assert q.pop_nowait() is None


def handle_with_group(min_member: int, members: int) -> Handle:
    group = {"metadata": {"name": "g", "namespace": "ns"},
             "spec": {"minMember": min_member, "scheduleTimeoutSeconds": 5}}
    return Handle(SchedulerCache(), waiting=WaitingPods(),
                  pod_group=lambda ns, name: group if (ns, name) == ("ns", "g") else None,
                  group_pods=lambda ns, name: [f"ns/m{i}" for i in range(members)])


def test_gang_waits_until_min_member_are_assumed_then_releases_all() -> None:
    async def go() -> list[Any]:
        handle = handle_with_group(3, 3)
        plugin = Coscheduling(handle)
        cache = handle.cache
        results = []
        for i in range(3):
            member = pod(f"m{i}", group="g")
            assumed = cache.assume(member, "n")
            status, timeout = plugin.permit(CycleState(), assumed, "n")
            if status is not None and status.code == Code.WAIT:
                handle.waiting.add(WaitingPod(assumed, "n", {plugin.name: timeout}))
            results.append(status.code if status else None)
        outcomes = [await w.result for w in handle.waiting]
        return results + outcomes

    assert asyncio.run(go()) == [Code.WAIT, Code.WAIT, None, None, None]


def test_gang_short_of_members_is_rejected_before_filtering() -> None:
    plugin = Coscheduling(handle_with_group(3, 2))
    status = plugin.pre_filter(CycleState(), pod("m0", group="g"))
    assert status is not None and status.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert "current pods number: 2, minMember of group: 3" in status.message


def test_member_finding_no_node_rejects_its_waiting_siblings() -> None:
    async def go() -> str:
        handle = handle_with_group(3, 3)
        plugin = Coscheduling(handle)
        first = handle.cache.assume(pod("m0", group="g"), "n")
        handle.waiting.add(WaitingPod(first, "n", {plugin.name: 5}))
        _, status = await plugin.post_filter(CycleState(), pod("m2", group="g"), {})
        rejected = await handle.waiting.get("ns/m0").result  # type: ignore[union-attr]
        assert rejected is not None and rejected.code == Code.UNSCHEDULABLE
        return status.message

    assert asyncio.run(go()) == ("PodGroup ns/g gets rejected due to Pod m2 is unschedulable "
                                 "even after PostFilter")


def test_waiting_pod_times_out() -> None:
    async def go() -> str:
        waiting = WaitingPod(pod("m0", group="g"), "n", {"Coscheduling": 0.01})
        status = await waiting.result
        return status.message if status else ""

    assert asyncio.run(go()) == "rejected due to timeout after waiting 0.01s at plugin Coscheduling"


def test_pod_naming_an_unknown_group_is_rejected_at_permit() -> None:
    plugin = Coscheduling(handle_with_group(2, 2))
    status, _ = plugin.permit(CycleState(), pod("x", group="missing"), "n")
    assert status is not None and status.message == "PodGroup ns/missing not found"
