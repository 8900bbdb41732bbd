"""The Job controller: runs pods from a Job's template until enough of them succeed.

As kube-controller-manager's job controller (1.32), so kubectl and client libraries see
the same status and conditions:

- Every pod it creates carries the `batch.kubernetes.io/job-tracking` finalizer. A
  finished pod is first written into `status.uncountedTerminatedPods`, then its
  finalizer is removed, then it moves into `succeeded`/`failed`. A restart, a stale
  cache or a deleted pod can therefore neither lose nor double-count a completion.
- Failures count towards `backoffLimit` unless `podFailurePolicy` ignores them; pods
  are re-created after an exponential back-off (10 s doubling to 10 min) after
  consecutive failures.
- Terminal states go through the interim conditions a 1.32 cluster writes:
  `FailureTarget` then `Failed`, `SuccessCriteriaMet` then `Complete`; the terminal
  condition waits for the pods being deleted to finish terminating.
- Indexed Jobs give each pod a completion index (annotation, label, hostname and the
  `JOB_COMPLETION_INDEX` variable) and track `completedIndexes` as intervals.

The decisions (failure policy, intervals, back-off, which pods to remove) are pure
functions at the top of the module; `JobController` applies them through the API.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..client import ApiError, Controller, Informer, controller_of, controller_ref, split_key
from ..machinery.meta import now as utc_now
from ..machinery.meta import parse_time, rfc3339
from ._workloads import (
    Expectations,
    is_pod_active,
    is_pod_ready,
    meta,
    pod_from_template,
    slow_start_batch,
    with_kind,
)

log = logging.getLogger(__name__)

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"
JOB_API_VERSION = "batch/v1"

SYNC_BATCH_SECONDS = 1.0
POD_FAILURE_BACKOFF = 10.0
MAX_POD_FAILURE_BACKOFF = 600.0
MAX_UNCOUNTED_PODS = 500
MAX_POD_CREATE_DELETE_PER_SYNC = 500
MAX_GENERATED_NAME_LENGTH = 58
ORPHAN_POD_KEY = "pod:"

SUCCEEDED, FAILED, RUNNING, PENDING = "Succeeded", "Failed", "Running", "Pending"
COMPLETE, FAILED_CONDITION = "Complete", "Failed"
SUCCESS_CRITERIA_MET, FAILURE_TARGET, SUSPENDED = "SuccessCriteriaMet", "FailureTarget", "Suspended"

Intervals = list[tuple[int, int]]


# -- reading Jobs and pods -------------------------------------------------------------


def find_condition(obj: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def finished_condition(job: Mapping[str, Any]) -> str | None:
    """`Complete` or `Failed` once the Job has that condition True, else None."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in (COMPLETE, FAILED_CONDITION) and cond.get("status") == "True":
            return cond["type"]
    return None


def _pod_key(pod: Mapping[str, Any]) -> str:
    return f"{meta(pod).get('namespace')}/{meta(pod).get('name')}"


def _uid(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("uid", ""))


def _phase(pod: Mapping[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase") or ""


def has_tracking_finalizer(pod: Mapping[str, Any]) -> bool:
    return TRACKING_FINALIZER in (meta(pod).get("finalizers") or [])


def is_pod_terminating(pod: Mapping[str, Any]) -> bool:
    return _phase(pod) not in (SUCCEEDED, FAILED) and bool(meta(pod).get("deletionTimestamp"))


def is_indexed(job: Mapping[str, Any]) -> bool:
    return (job.get("spec") or {}).get("completionMode") == "Indexed"


def is_suspended(job: Mapping[str, Any]) -> bool:
    return bool((job.get("spec") or {}).get("suspend"))


def only_replace_failed_pods(job: Mapping[str, Any]) -> bool:
    """podReplacementPolicy Failed (implied by a podFailurePolicy): wait for terminal pods."""
    spec = job.get("spec") or {}
    return spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy") is not None


def is_pod_failed(pod: Mapping[str, Any], job: Mapping[str, Any]) -> bool:
    """Failed phase; or, unless only failed pods are replaced, deleted before finishing."""
    if _phase(pod) == FAILED:
        return True
    if only_replace_failed_pods(job):
        return False
    return bool(meta(pod).get("deletionTimestamp")) and _phase(pod) != SUCCEEDED


def completion_index(pod: Mapping[str, Any]) -> int:
    """The pod's completion index annotation, or -1 when absent or malformed."""
    value = (meta(pod).get("annotations") or {}).get(COMPLETION_INDEX)
    try:
        index = int(value)
    except (TypeError, ValueError):
        return -1
    return index if index >= 0 else -1


# -- pod failure policy ------------------------------------------------------------------


def _matching_exit(statuses: Iterable[Mapping[str, Any]],
                   rule: Mapping[str, Any]) -> Mapping[str, Any] | None:
    values = set(rule.get("values") or [])
    for status in statuses:
        terminated = (status.get("state") or {}).get("terminated")
        if not terminated:
            continue
        if rule.get("containerName") not in (None, status.get("name")):
            continue
        code = terminated.get("exitCode", 0)
        if code == 0:
            continue
        if (rule.get("operator") == "In") == (code in values) and rule.get("operator") in (
                "In", "NotIn"):
            return status
    return None


def match_pod_failure_policy(policy: Mapping[str, Any] | None, pod: Mapping[str, Any]
                             ) -> tuple[str | None, bool, str | None]:
    """(FailJob message or None, whether the failure counts, matched action or None)."""
    if not policy:
        return None, True, None
    status = pod.get("status") or {}
    pod_meta = meta(pod)
    for index, rule in enumerate(policy.get("rules") or []):
        action = rule.get("action")
        if rule.get("onExitCodes") is not None:
            matched = (_matching_exit(status.get("containerStatuses") or [], rule["onExitCodes"])
                       or _matching_exit(status.get("initContainerStatuses") or [],
                                         rule["onExitCodes"]))
            if matched is None:
                continue
            message = (f"Container {matched.get('name')} for pod {pod_meta.get('namespace')}/"
                       f"{pod_meta.get('name')} failed with exit code "
                       f"{matched['state']['terminated'].get('exitCode')} matching {action} "
                       f"rule at index {index}")
        elif rule.get("onPodConditions") is not None:
            patterns = rule["onPodConditions"]
            condition = next((c for c in status.get("conditions") or [] for p in patterns
                              if c.get("type") == p.get("type")
                              and c.get("status") == p.get("status", "True")), None)
            if condition is None:
                continue
            message = (f"Pod {pod_meta.get('namespace')}/{pod_meta.get('name')} has condition "
                       f"{condition.get('type')} matching {action} rule at index {index}")
        else:
            continue
        if action == "Ignore":
            return None, False, action
        if action == "FailJob":
            return message, True, action
        if action in ("Count", "FailIndex"):
            return None, True, action
    return None, True, None


def fail_job_message(job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> str | None:
    """The message of the first failed pod matching a FailJob rule, if any."""
    policy = (job.get("spec") or {}).get("podFailurePolicy")
    if not policy:
        return None
    for pod in pods:
        if is_pod_failed(pod, job):
            message, _, _ = match_pod_failure_policy(policy, pod)
            if message is not None:
                return message
    return None


def counted_failures(job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> int:
    """How many of these failed pods count towards backoffLimit (Ignore rules excluded)."""
    policy = (job.get("spec") or {}).get("podFailurePolicy")
    return sum(1 for pod in pods if match_pod_failure_policy(policy, pod)[1])


def past_backoff_limit_on_failure(job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]
                                  ) -> bool:
    """restartPolicy OnFailure: container restarts of live pods count as failures."""
    spec = job.get("spec") or {}
    if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") != "OnFailure":
        return False
    restarts = 0
    for pod in pods:
        if _phase(pod) in (RUNNING, PENDING):
            status = pod.get("status") or {}
            for container in [*(status.get("initContainerStatuses") or []),
                              *(status.get("containerStatuses") or [])]:
                restarts += container.get("restartCount") or 0
    limit = spec.get("backoffLimit", 6)
    return restarts > 0 if limit == 0 else restarts >= limit


# -- completion indexes as ordered intervals ---------------------------------------------


def parse_indexes(text: str | None, completions: int) -> Intervals:
    """`"1,3-5,7"` as [(1, 1), (3, 5), (7, 7)], dropping indexes >= completions."""
    result: Intervals = []
    for part in (text or "").split(","):
        if not part:
            continue
        first_text, _, last_text = part.partition("-")
        try:
            first = int(first_text)
            last = int(last_text) if last_text else first
        except ValueError:
            continue
        if first >= completions:
            break
        last = min(last, completions - 1)
        if result and result[-1][1] == first - 1:
            result[-1] = (result[-1][0], last)
        else:
            result.append((first, last))
    return result


def format_indexes(intervals: Intervals) -> str:
    """The compressed form a real cluster writes: `0-2,4,6,7` (pairs are listed)."""
    parts = []
    for first, last in intervals:
        if last == first:
            parts.append(str(first))
        elif last == first + 1:
            parts.append(f"{first},{last}")
        else:
            parts.append(f"{first}-{last}")
    return ",".join(parts)


def merge_intervals(a: Intervals, b: Intervals) -> Intervals:
    result: Intervals = []
    for first, last in sorted([*a, *b]):
        if result and first <= result[-1][1] + 1:
            if last > result[-1][1]:
                result[-1] = (result[-1][0], last)
        else:
            result.append((first, last))
    return result


def with_indexes(intervals: Intervals, indexes: Iterable[int]) -> Intervals:
    return merge_intervals(intervals, [(i, i) for i in sorted(set(indexes))])


def total(intervals: Intervals) -> int:
    return sum(last - first + 1 for first, last in intervals)


def contains(intervals: Intervals, index: int) -> bool:
    return any(first <= index <= last for first, last in intervals)


def succeeded_indexes(job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]
                      ) -> tuple[Intervals, Intervals]:
    """(indexes in status.completedIndexes, those plus newly succeeded tracked pods)."""
    completions = (job.get("spec") or {}).get("completions") or 0
    previous = parse_indexes((job.get("status") or {}).get("completedIndexes"), completions)
    new = [completion_index(p) for p in pods
           if _phase(p) == SUCCEEDED and 0 <= completion_index(p) < completions
           and has_tracking_finalizer(p)]
    return previous, with_indexes(previous, new)


def first_pending_indexes(succeeded: Intervals, busy: Iterable[int], count: int,
                          completions: int) -> list[int]:
    """The lowest `count` indexes below `completions` neither succeeded nor busy."""
    taken = with_indexes(succeeded, busy)
    result: list[int] = []
    candidate = 0
    for first, last in taken:
        while candidate < min(first, completions) and len(result) < count:
            result.append(candidate)
            candidate += 1
        candidate = max(candidate, last + 1)
    while candidate < completions and len(result) < count:
        result.append(candidate)
        candidate += 1
    return result


def match_success_policy(policy: Mapping[str, Any] | None, completions: int,
                         succeeded: Intervals) -> str | None:
    """`Matched rules at index N` for the first successPolicy rule met, else None."""
    if not policy or not succeeded:
        return None
    for index, rule in enumerate(policy.get("rules") or []):
        count = rule.get("succeededCount")
        if rule.get("succeededIndexes") is not None:
            required = parse_indexes(rule["succeededIndexes"], completions)
            if not required:
                continue
            overlap = sum(max(0, min(l1, l2) - max(f1, f2) + 1)
                          for f1, l1 in required for f2, l2 in succeeded)
            if overlap == total(required) or (count is not None and overlap >= count):
                return f"Matched rules at index {index}"
        elif count is not None and total(succeeded) >= count:
            return f"Matched rules at index {index}"
    return None


# -- pod re-creation back-off ------------------------------------------------------------


def finished_time(pod: Mapping[str, Any]) -> datetime:
    """When a pod finished: its last container exit, else Ready=False, else deletion."""
    status = pod.get("status") or {}
    finishes = []
    containers = status.get("containerStatuses") or []
    for container in containers:
        finished = parse_time(((container.get("state") or {}).get("terminated") or {}).get(
            "finishedAt"))
        if finished is None:
            finishes = []
            break
        finishes.append(finished)
    if containers and finishes:
        return max(finishes)
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") == "False":
            moment = parse_time(cond.get("lastTransitionTime"))
            if moment is not None:
                return moment
    pod_meta = meta(pod)
    deleted = parse_time(pod_meta.get("deletionTimestamp"))
    if deleted is not None:
        return deleted - timedelta(seconds=pod_meta.get("deletionGracePeriodSeconds") or 0)
    return parse_time(pod_meta.get("creationTimestamp")) or utc_now()


@dataclass(frozen=True)
class BackoffRecord:
    """Consecutive pod failures since the last success, and when the last one happened."""

    failures_after_last_success: int = 0
    last_failure_time: datetime | None = None

    def remaining(self, now: datetime, *, base: float = POD_FAILURE_BACKOFF,
                  cap: float = MAX_POD_FAILURE_BACKOFF) -> float:
        """Seconds until a replacement pod may be created (0 when it may be now)."""
        if self.failures_after_last_success == 0 or self.last_failure_time is None:
            return 0.0
        delay = min(base * 2 ** (self.failures_after_last_success - 1), cap)
        elapsed = (now - self.last_failure_time).total_seconds()
        return max(0.0, delay - elapsed)


def next_backoff_record(old: BackoffRecord, new_succeeded: list[Mapping[str, Any]],
                        new_failed: list[Mapping[str, Any]]) -> BackoffRecord:
    """Fold newly finished pods into the record: a success resets the failure streak."""
    if not new_failed:
        return BackoffRecord() if new_succeeded else old
    failed_times = sorted(finished_time(p) for p in new_failed)
    if not new_succeeded:
        return BackoffRecord(old.failures_after_last_success + len(failed_times),
                             failed_times[-1])
    last_success = max(finished_time(p) for p in new_succeeded)
    after = [t for t in failed_times if t > last_success]
    return BackoffRecord(len(after), after[-1] if after else None)


# -- which pods to delete ----------------------------------------------------------------


def _removal_order(pod: Mapping[str, Any]) -> tuple:
    """controller.ActivePods: unscheduled, pending, not ready, short-ready, restarting and
    young pods go first."""
    status = pod.get("status") or {}
    phase_rank = {PENDING: 0, "Unknown": 1, RUNNING: 2}.get(_phase(pod), 0)
    ready = is_pod_ready(pod)
    ready_since = next((parse_time(c.get("lastTransitionTime"))
                        for c in status.get("conditions") or [] if c.get("type") == "Ready"),
                       None)
    restarts = sum(c.get("restartCount") or 0 for c in status.get("containerStatuses") or [])
    created = parse_time(meta(pod).get("creationTimestamp"))
    return (bool((pod.get("spec") or {}).get("nodeName")), phase_rank, ready,
            -(ready_since.timestamp()) if ready and ready_since else 0.0, -restarts,
            -(created.timestamp()) if created else 0.0)


def active_pods_for_removal(job: Mapping[str, Any], pods: list[dict[str, Any]],
                            at_least: int) -> list[dict[str, Any]]:
    """Pods to delete: for Indexed Jobs those without a valid index and all but one pod of
    a repeated index, then the least advanced pods until `at_least` are chosen."""
    remove: list[dict[str, Any]] = []
    keep = pods
    if is_indexed(job):
        completions = (job.get("spec") or {}).get("completions") or 0
        by_index: dict[int, list[dict[str, Any]]] = {}
        keep = []
        for pod in pods:
            index = completion_index(pod)
            if index < 0 or index >= completions:
                remove.append(pod)
            else:
                by_index.setdefault(index, []).append(pod)
        for group in by_index.values():
            group.sort(key=_removal_order)
            remove.extend(group[:-1])
            keep.append(group[-1])
    if len(remove) < at_least:
        remove.extend(sorted(keep, key=_removal_order)[:at_least - len(remove)])
    return remove


def wanted_active(job: Mapping[str, Any], succeeded: int, active: int) -> int:
    spec = job.get("spec") or {}
    parallelism = spec.get("parallelism", 1)
    completions = spec.get("completions")
    if completions is None:
        return active if succeeded > 0 else parallelism
    return max(0, min(completions - succeeded, parallelism))


def new_condition(kind: str, status: str, reason: str, message: str,
                  moment: datetime | None = None) -> dict[str, Any]:
    stamp = rfc3339(moment)
    return {"type": kind, "status": status, "lastProbeTime": stamp,
            "lastTransitionTime": stamp, "reason": reason, "message": message}


def ensure_condition(status: dict[str, Any], kind: str, value: str, reason: str,
                     message: str) -> bool:
    """Set a condition (never adding one that is False); True when anything changed."""
    conditions = status.setdefault("conditions", [])
    for i, cond in enumerate(conditions):
        if cond.get("type") == kind:
            if (cond.get("status"), cond.get("reason", ""), cond.get("message", "")) == (
                    value, reason, message):
                return False
            conditions[i] = new_condition(kind, value, reason, message)
            return True
    if value == "False":
        return False
    conditions.append(new_condition(kind, value, reason, message))
    return True


def job_pod(job: Mapping[str, Any], index: int | None) -> dict[str, Any]:
    """A pod for `job`: its template, owner reference and tracking finalizer and, for an
    Indexed Job, the completion index (annotation, label, hostname, environment)."""
    name = meta(job)["name"]
    pod = pod_from_template((job.get("spec") or {}).get("template") or {}, job,
                            owner_ref=controller_ref(job, api_version=JOB_API_VERSION,
                                                     kind="Job"))
    pod_meta, spec = pod["metadata"], pod["spec"]
    finalizers = pod_meta.setdefault("finalizers", [])
    if TRACKING_FINALIZER not in finalizers:
        finalizers.append(TRACKING_FINALIZER)
    if index is None:
        return pod
    pod_meta.setdefault("annotations", {})[COMPLETION_INDEX] = str(index)
    pod_meta["labels"][COMPLETION_INDEX] = str(index)
    spec["hostname"] = f"{name}-{index}"
    suffix = f"-{index}-"
    pod_meta["generateName"] = (f"{name}{suffix}" if len(name + suffix) <= MAX_GENERATED_NAME_LENGTH
                                else name[:MAX_GENERATED_NAME_LENGTH - len(suffix)] + suffix)
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        env = container.setdefault("env", [])
        if not any(v.get("name") == COMPLETION_INDEX_ENV for v in env):
            env.append({"name": COMPLETION_INDEX_ENV, "valueFrom": {"fieldRef": {
                "fieldPath": f"metadata.labels['{COMPLETION_INDEX}']"}}})
    return pod


# -- the controller ----------------------------------------------------------------------


class _FinalizerExpectations:
    """Pod uids whose tracking-finalizer removal a Job has asked for but not yet seen in
    the cache; until then the cached pod must not be counted a second time."""

    def __init__(self) -> None:
        self._pending: dict[str, set[str]] = {}

    def expect(self, key: str, uids: Iterable[str]) -> None:
        self._pending.setdefault(key, set()).update(uids)

    def observed(self, key: str, uid: str) -> None:
        self._pending.get(key, set()).discard(uid)

    def pending(self, key: str) -> set[str]:
        return set(self._pending.get(key, ()))

    def forget(self, key: str) -> None:
        self._pending.pop(key, None)


@dataclass
class _Sync:
    """What one sync of one Job has found and decided so far."""

    key: str
    job: dict[str, Any]
    pods: list[dict[str, Any]]
    active_pods: list[dict[str, Any]]
    expected_rm: set[str]
    uncounted_succeeded: set[str]
    uncounted_failed: set[str]
    terminating: int = 0
    ready: int = 0
    succeeded: int = 0
    finished: dict[str, Any] | None = None
    backoff: BackoffRecord = field(default_factory=BackoffRecord)
    prev_indexes: Intervals = field(default_factory=list)
    indexes: Intervals = field(default_factory=list)
    requeue: list[float] = field(default_factory=list)


def _uncounted(status: dict[str, Any]) -> dict[str, list[str]]:
    uncounted = status.get("uncountedTerminatedPods") or {}
    uncounted = {"succeeded": list(uncounted.get("succeeded") or []),
                 "failed": list(uncounted.get("failed") or [])}
    status["uncountedTerminatedPods"] = uncounted
    return uncounted


def _count_uncounted_without_finalizers(status: dict[str, Any], with_finalizer: set[str]
                                        ) -> bool:
    """Move uncounted pods whose finalizer is gone into the counters; True if any moved."""
    uncounted = _uncounted(status)
    changed = False
    for kind in ("succeeded", "failed"):
        keep = [uid for uid in uncounted[kind] if uid in with_finalizer]
        if len(keep) != len(uncounted[kind]):
            status[kind] = (status.get(kind) or 0) + len(uncounted[kind]) - len(keep)
            uncounted[kind] = keep
            changed = True
    return changed


class JobController(Controller):
    name = "job-controller"
    workers = 4

    def setup(self) -> None:
        informers = self.context.informers
        self.jobs: Informer = informers.informer(JOB_API_VERSION, "jobs")
        self.pods: Informer = informers.informer("v1", "pods")
        self.jobs.add_handler(self._on_job)
        self.pods.add_handler(self._on_pod)
        self.expectations = Expectations()
        self.finalizers = _FinalizerExpectations()
        self.backoffs: dict[str, BackoffRecord] = {}

    # -- event handlers ---------------------------------------------------------------

    def _on_job(self, old: dict | None, new: dict | None) -> None:
        job = new if new is not None else old
        assert job is not None
        key = f"{meta(job).get('namespace')}/{meta(job).get('name')}"
        if new is None or old is None or meta(old).get("generation") != meta(new).get(
                "generation"):
            self.queue.add(key)
        else:
            self.queue.add_after(key, SYNC_BATCH_SECONDS)
        if new is None or finished_condition(new):
            for pod in self.pods.by_index("owner", _uid(job)):
                if has_tracking_finalizer(pod):
                    self._enqueue_orphan(pod)

    def _job_of(self, pod: Mapping[str, Any]) -> dict[str, Any] | None:
        ref = controller_of(pod)
        if ref is None or ref.get("kind") != "Job":
            return None
        job = self.jobs.get(f"{meta(pod).get('namespace')}/{ref.get('name')}")
        return job if job is not None and _uid(job) == ref.get("uid") else None

    def _enqueue_orphan(self, pod: Mapping[str, Any]) -> None:
        self.queue.add(ORPHAN_POD_KEY + _pod_key(pod))

    def _on_pod(self, old: dict | None, new: dict | None) -> None:
        pod = new if new is not None else old
        assert pod is not None
        if old is not None and new is not None and meta(old).get(
                "resourceVersion") == meta(new).get("resourceVersion"):
            return
        job = self._job_of(pod)
        if job is None or finished_condition(job):
            if new is not None and has_tracking_finalizer(new):
                self._enqueue_orphan(new)
            return
        key = f"{meta(job).get('namespace')}/{meta(job).get('name')}"
        deleting = new is not None and bool(meta(new).get("deletionTimestamp"))
        if old is None and new is not None and not deleting:
            self.expectations.creation_observed(key)
        if new is None or deleting:
            self.expectations.deletion_observed(key, _pod_key(pod))
        if new is None or not has_tracking_finalizer(new):
            self.finalizers.observed(key, _uid(pod))
        self.queue.add_after(key, SYNC_BATCH_SECONDS)

    # -- reconcile --------------------------------------------------------------------

    async def reconcile(self, key: str) -> float | None:
        if key.startswith(ORPHAN_POD_KEY):
            await self._release_orphan_pod(key[len(ORPHAN_POD_KEY):])
            return None
        cached = self.jobs.get(key)
        if cached is None:
            self.expectations.forget(key)
            self.finalizers.forget(key)
            self.backoffs.pop(key, None)
            return None
        if finished_condition(cached):
            self.backoffs.pop(key, None)
            return None
        job = copy.deepcopy(cached)
        job = with_kind(job, api_version=JOB_API_VERSION, kind="Job")
        if (job.get("spec") or {}).get("completionMode", "NonIndexed") not in (
                "NonIndexed", "Indexed"):
            await self.events.record(job, "Warning", "UnknownCompletionMode",
                                     "Skipped Job sync because completion mode is unknown")
            return None
        return await self._sync(key, job)

    async def _release_orphan_pod(self, pod_key: str) -> None:
        """Drop the tracking finalizer of a pod whose Job is gone or finished."""
        pod = self.pods.get(pod_key)
        if pod is None or not has_tracking_finalizer(pod):
            return
        ref = controller_of(pod)
        if ref is not None:
            if ref.get("kind") != "Job" or ref.get("apiVersion") != JOB_API_VERSION:
                return
            job = self._job_of(pod)
            if job is not None and not finished_condition(job):
                return
        namespace, name = split_key(pod_key)
        await self._remove_finalizer(namespace or "", name)

    async def _remove_finalizer(self, namespace: str, name: str) -> None:
        try:
            await self.client.patch(
                "v1", "pods", name,
                {"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}},
                namespace, patch_type="strategic")
        except ApiError as err:
            if not err.not_found:
                raise

    async def _sync(self, key: str, job: dict[str, Any]) -> float | None:
        spec = job.get("spec") or {}
        status = job.setdefault("status", {})
        uncounted = _uncounted(status)
        satisfied = self.expectations.satisfied(key)
        pods = [p for p in self.pods.by_index("owner", _uid(job))
                if meta(p).get("namespace") == meta(job).get("namespace")]
        active_pods = [p for p in pods if is_pod_active(p)]
        ctx = _Sync(key=key, job=job, pods=pods, active_pods=active_pods,
                    expected_rm=self.finalizers.pending(key),
                    uncounted_succeeded=set(uncounted["succeeded"]),
                    uncounted_failed=set(uncounted["failed"]),
                    terminating=sum(1 for p in pods if is_pod_terminating(p)),
                    ready=sum(1 for p in active_pods if is_pod_ready(p)))
        active = len(active_pods)
        new_succeeded, new_failed = self._new_finished_pods(ctx)
        ctx.succeeded = (status.get("succeeded") or 0) + len(new_succeeded) + len(
            ctx.uncounted_succeeded)
        failed = (status.get("failed") or 0) + counted_failures(job, new_failed) + len(
            ctx.uncounted_failed)
        now = utc_now()
        if not status.get("startTime") and not is_suspended(job):
            status["startTime"] = rfc3339(now)
        ctx.backoff = next_backoff_record(self.backoffs.get(key, BackoffRecord()),
                                          new_succeeded, new_failed)

        success_met = find_condition(job, SUCCESS_CRITERIA_MET)
        if success_met is not None and success_met.get("status") == "True":
            ctx.finished = success_met
        else:
            target = find_condition(job, FAILURE_TARGET)
            if target is not None and target.get("status") == "True":
                ctx.finished = new_condition(FAILED_CONDITION, "True", target.get("reason", ""),
                                             target.get("message", ""))
            elif (message := fail_job_message(job, pods)) is not None:
                ctx.finished = new_condition(FAILURE_TARGET, "True", "PodFailurePolicy", message)
        if ctx.finished is None:
            if failed > spec.get("backoffLimit", 6) or past_backoff_limit_on_failure(job, pods):
                ctx.finished = new_condition(FAILURE_TARGET, "True", "BackoffLimitExceeded",
                                             "Job has reached the specified backoff limit")
            elif (deadline := self._deadline_left(job, now)) is not None:
                if deadline <= 0:
                    ctx.finished = new_condition(
                        FAILURE_TARGET, "True", "DeadlineExceeded",
                        "Job was active longer than specified deadline")
                else:
                    ctx.requeue.append(deadline)
        if is_indexed(job):
            ctx.prev_indexes, ctx.indexes = succeeded_indexes(job, pods)
            ctx.succeeded = total(ctx.indexes)
            if ctx.finished is None and (message := match_success_policy(
                    spec.get("successPolicy"), spec.get("completions") or 0, ctx.indexes)):
                ctx.finished = new_condition(SUCCESS_CRITERIA_MET, "True", "SuccessPolicy",
                                             message)

        suspend_changed = False
        if ctx.finished is not None:
            deleted, deleted_ready = await self._delete_pods(job, ctx.active_pods,
                                                             keep_finalizers=True)
            if deleted != active or not satisfied:
                ctx.finished = None
            active -= deleted
            ctx.terminating += deleted
            ctx.ready -= deleted_ready
        else:
            managed = False
            if satisfied and not meta(job).get("deletionTimestamp"):
                active = await self._manage(ctx, now)
                managed = True
            completions = spec.get("completions")
            complete = active == 0 and (ctx.succeeded > 0 if completions is None
                                        else ctx.succeeded >= completions)
            if complete:
                ctx.finished = new_condition(SUCCESS_CRITERIA_MET, "True", "CompletionsReached",
                                             "Reached expected number of succeeded pods")
            elif managed:
                suspend_changed = await self._sync_suspended(job, status)

        needs_update = (suspend_changed or active != (status.get("active") or 0)
                        or status.get("ready") != ctx.ready
                        or status.get("terminating") != ctx.terminating)
        status.update(active=active, ready=ctx.ready, terminating=ctx.terminating)
        await self._track_status(ctx, needs_update)
        return min(ctx.requeue) if ctx.requeue else None

    @staticmethod
    def _deadline_left(job: Mapping[str, Any], now: datetime) -> float | None:
        seconds = (job.get("spec") or {}).get("activeDeadlineSeconds")
        started = parse_time((job.get("status") or {}).get("startTime"))
        if seconds is None or started is None or is_suspended(job):
            return None
        return seconds - (now - started).total_seconds()

    def _new_finished_pods(self, ctx: _Sync) -> tuple[list[dict], list[dict]]:
        """Finished pods not yet in the counters or the uncounted lists."""
        job = ctx.job
        completions = (job.get("spec") or {}).get("completions") or 0
        succeeded, failed = [], []
        for pod in ctx.pods:
            uid = _uid(pod)
            if not has_tracking_finalizer(pod) or uid in ctx.expected_rm:
                continue
            if is_indexed(job) and not 0 <= completion_index(pod) < completions:
                continue
            if _phase(pod) == SUCCEEDED and uid not in ctx.uncounted_succeeded:
                succeeded.append(pod)
            elif is_pod_failed(pod, job) and uid not in ctx.uncounted_failed:
                failed.append(pod)
        return succeeded, failed

    async def _sync_suspended(self, job: dict[str, Any], status: dict[str, Any]) -> bool:
        if is_suspended(job):
            if ensure_condition(status, SUSPENDED, "True", "JobSuspended", "Job suspended"):
                await self.events.record(job, "Normal", "Suspended", "Job suspended")
                return True
            return False
        if ensure_condition(status, SUSPENDED, "False", "JobResumed", "Job resumed"):
            await self.events.record(job, "Normal", "Resumed", "Job resumed")
            # activeDeadlineSeconds counts time continuously active: restart the clock.
            status["startTime"] = rfc3339()
            return True
        return False

    async def _manage(self, ctx: _Sync, now: datetime) -> int:
        """Create or delete pods towards the wanted number of active pods."""
        job, key = ctx.job, ctx.key
        active = len(ctx.active_pods)
        if is_suspended(job):
            removed, removed_ready = await self._delete_pods(job, ctx.active_pods)
            ctx.terminating += removed
            ctx.ready -= removed_ready
            return active - removed
        want = wanted_active(job, ctx.succeeded, active)
        to_delete = active_pods_for_removal(job, ctx.active_pods, max(0, active - want))
        if to_delete:
            to_delete = to_delete[:MAX_POD_CREATE_DELETE_PER_SYNC]
            removed, removed_ready = await self._delete_pods(job, to_delete)
            ctx.terminating += removed
            ctx.ready -= removed_ready
            return active - removed
        replacing = ctx.terminating if only_replace_failed_pods(job) else 0
        diff = want - replacing - active
        if diff <= 0:
            return active
        wait = ctx.backoff.remaining(now)
        if wait > 0:
            ctx.requeue.append(max(wait, SYNC_BATCH_SECONDS))
            return active
        diff = min(diff, MAX_POD_CREATE_DELETE_PER_SYNC)
        indexes: list[int | None] = [None] * diff
        if is_indexed(job):
            busy = [completion_index(p) for p in ctx.active_pods]
            if only_replace_failed_pods(job):
                busy += [completion_index(p) for p in ctx.pods if is_pod_terminating(p)]
            indexes = list(first_pending_indexes(ctx.indexes, (i for i in busy if i >= 0),
                                                 diff, (job.get("spec") or {}).get(
                                                     "completions") or 0))
        return active + await self._create_pods(key, job, indexes)

    async def _create_pods(self, key: str, job: dict[str, Any], indexes: list[int | None]
                           ) -> int:
        """Create one pod per entry in slow-start batches; returns how many were made."""
        self.expectations.expect_creations(key, len(indexes))
        pending = iter(indexes)
        created, _ = await slow_start_batch(len(indexes),
                                            lambda: self._create_pod(job, next(pending)))
        for _ in range(len(indexes) - created):
            self.expectations.creation_observed(key)
        return created

    async def _create_pod(self, job: dict[str, Any], index: int | None) -> None:
        try:
            made = await self.client.create("v1", "pods", job_pod(job, index),
                                            meta(job).get("namespace"))
        except ApiError as err:
            await self.events.record(job, "Warning", "FailedCreate", f"Error creating: {err}")
            raise
        await self.events.record(job, "Normal", "SuccessfulCreate",
                                 f"Created pod: {meta(made).get('name')}")

    async def _delete_pods(self, job: dict[str, Any], pods: list[dict[str, Any]], *,
                           keep_finalizers: bool = False) -> tuple[int, int]:
        """Delete pods (first dropping their tracking finalizer unless the Job is finishing,
        when the sync counts them). Returns (deleted, of which ready)."""
        key = f"{meta(job).get('namespace')}/{meta(job).get('name')}"
        if not keep_finalizers and pods:
            self.expectations.expect_deletions(key, (_pod_key(p) for p in pods))

        async def delete(pod: dict[str, Any]) -> bool:
            namespace, name = meta(pod).get("namespace"), meta(pod).get("name")
            try:
                if not keep_finalizers and has_tracking_finalizer(pod):
                    await self._remove_finalizer(namespace, name)
                await self.client.delete("v1", "pods", name, namespace)
            except ApiError as err:
                if err.not_found:
                    return True
                if not keep_finalizers:
                    self.expectations.deletion_observed(key, _pod_key(pod))
                await self.events.record(job, "Warning", "FailedDelete",
                                         f"Error deleting: {err}")
                return False
            await self.events.record(job, "Normal", "SuccessfulDelete",
                                     f"Deleted pod: {name}")
            return True

        results = await asyncio.gather(*(delete(p) for p in pods))
        deleted = sum(results)
        ready = sum(1 for pod, ok in zip(pods, results, strict=True) if ok and is_pod_ready(pod))
        return deleted, ready

    # -- status with finalizer-based tracking -------------------------------------------

    async def _track_status(self, ctx: _Sync, needs_flush: bool) -> None:
        """Record finished pods as uncounted, drop their finalizers, count them, and write
        the terminal condition once nothing is left uncounted or terminating."""
        job = ctx.job
        spec, status = job.get("spec") or {}, job["status"]
        indexed = is_indexed(job)
        completions = spec.get("completions") or 0
        policy = spec.get("podFailurePolicy")
        pods = sorted(ctx.pods, key=completion_index) if indexed else ctx.pods
        with_finalizer = {_uid(p) for p in pods
                          if has_tracking_finalizer(p) and _uid(p) not in ctx.expected_rm}
        if _count_uncounted_without_finalizers(status, with_finalizer):
            needs_flush = True
        uncounted = _uncounted(status)
        to_release: list[dict[str, Any]] = []
        new_indexes: list[int] = []
        reached_max = False
        for pod in pods:
            uid = _uid(pod)
            if not has_tracking_finalizer(pod) or uid in ctx.expected_rm:
                continue
            failed = is_pod_failed(pod, job)
            if not (meta(job).get("deletionTimestamp") or ctx.finished is not None
                    or _phase(pod) == SUCCEEDED or failed):
                continue
            to_release.append(pod)
            index = completion_index(pod)
            if _phase(pod) == SUCCEEDED and uid not in ctx.uncounted_failed:
                if indexed:
                    if 0 <= index < completions and not contains(ctx.prev_indexes, index):
                        new_indexes.append(index)
                        needs_flush = True
                elif uid not in ctx.uncounted_succeeded:
                    uncounted["succeeded"].append(uid)
                    needs_flush = True
            elif failed or (ctx.finished is not None
                            and ctx.finished["type"] != SUCCESS_CRITERIA_MET):
                # Once the Job is finishing, every pod still running counts as failed.
                if uid not in ctx.uncounted_failed and (
                        not indexed or 0 <= index < completions) and (
                        match_pod_failure_policy(policy, pod)[1]):
                    uncounted["failed"].append(uid)
                    needs_flush = True
            if len(new_indexes) + len(uncounted["succeeded"]) + len(
                    uncounted["failed"]) >= MAX_UNCOUNTED_PODS:
                reached_max = True
                break
        if indexed:
            ctx.indexes = with_indexes(ctx.indexes, new_indexes)
            text = format_indexes(ctx.indexes)
            if text != (status.get("completedIndexes") or ""):
                needs_flush = True
            status["succeeded"] = total(ctx.indexes)
            status["completedIndexes"] = text
        if ctx.finished is not None and ctx.finished["type"] == FAILURE_TARGET:
            status.setdefault("conditions", []).append(ctx.finished)
            needs_flush = True
            ctx.finished = new_condition(FAILED_CONDITION, "True", ctx.finished["reason"],
                                         ctx.finished["message"])
        if ctx.finished is not None and ctx.finished["type"] == SUCCESS_CRITERIA_MET:
            if find_condition(job, SUCCESS_CRITERIA_MET) is None:
                status.setdefault("conditions", []).append(ctx.finished)
                needs_flush = True
            ctx.finished = new_condition(COMPLETE, "True", ctx.finished["reason"],
                                         ctx.finished["message"])
        needs_flush = await self._flush_and_release(ctx, to_release, with_finalizer, needs_flush)
        finished = not reached_max and self._enact_finished(ctx)
        if finished or needs_flush:
            ctx.job = await self._write_status(ctx.job)
        if finished:
            await self._record_finished(ctx)

    async def _flush_and_release(self, ctx: _Sync, pods: list[dict[str, Any]],
                                 with_finalizer: set[str], needs_flush: bool) -> bool:
        if needs_flush:
            ctx.job = await self._write_status(ctx.job)
            self.backoffs[ctx.key] = ctx.backoff
            needs_flush = False
        failure: ApiError | None = None
        if pods:
            self.finalizers.expect(ctx.key, (_uid(p) for p in pods))

            async def release(pod: dict[str, Any]) -> bool:
                nonlocal failure
                try:
                    await self._remove_finalizer(meta(pod).get("namespace"), meta(pod).get("name"))
                except ApiError as err:
                    self.finalizers.observed(ctx.key, _uid(pod))
                    failure = err
                    return False
                return True

            results = await asyncio.gather(*(release(p) for p in pods))
            for pod, ok in zip(pods, results, strict=True):
                if ok:
                    with_finalizer.discard(_uid(pod))
        if _count_uncounted_without_finalizers(ctx.job["status"], with_finalizer):
            needs_flush = True
        if failure is not None:
            if needs_flush:
                ctx.job = await self._write_status(ctx.job)
            raise failure
        return needs_flush

    def _enact_finished(self, ctx: _Sync) -> bool:
        if ctx.finished is None:
            return False
        status = ctx.job["status"]
        uncounted = _uncounted(status)
        if uncounted["succeeded"] or uncounted["failed"] or ctx.terminating > 0:
            return False
        cond = ctx.finished
        ensure_condition(status, cond["type"], cond["status"], cond["reason"], cond["message"])
        if cond["type"] == COMPLETE:
            status["completionTime"] = find_condition(ctx.job, COMPLETE)["lastTransitionTime"]
        return True

    async def _record_finished(self, ctx: _Sync) -> None:
        job, cond = ctx.job, ctx.finished
        assert cond is not None
        if cond["type"] == COMPLETE:
            completions = (job.get("spec") or {}).get("completions")
            if completions is not None and (job["status"].get("succeeded") or 0) > completions:
                await self.events.record(job, "Warning", "TooManySucceededPods",
                                         "Too many succeeded pods running after completion "
                                         "count reached")
            await self.events.record(job, "Normal", "Completed", "Job completed")
        else:
            await self.events.record(job, "Warning", cond["reason"], cond["message"])

    async def _write_status(self, job: dict[str, Any]) -> dict[str, Any]:
        """PUT the status as a real cluster stores it (zero counters and empty lists
        omitted); a stale resourceVersion fails with a conflict and the key is retried."""
        body = with_kind(copy.deepcopy(job), api_version=JOB_API_VERSION, kind="Job")
        status = body["status"]
        for counter in ("active", "succeeded", "failed"):
            if not status.get(counter):
                status.pop(counter, None)
        status["uncountedTerminatedPods"] = {
            k: v for k, v in _uncounted(status).items() if v}
        if not status.get("completedIndexes"):
            status.pop("completedIndexes", None)
        written = await self.client.replace(JOB_API_VERSION, "jobs", body, subresource="status")
        written = with_kind(written, api_version=JOB_API_VERSION, kind="Job")
        written.setdefault("status", {})
        _uncounted(written["status"])
        return written


CONTROLLER = JobController
