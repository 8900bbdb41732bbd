"""The CronJob controller: creates a Job from a CronJob's template at each scheduled time.

As kube-controller-manager's cronjob controller (v2, 1.32): each CronJob is requeued for
exactly its next run time (plus 100 ms for clock skew), never polled. A sync:

1. forgets finished Jobs from `status.active` and deletes the oldest finished ones beyond
   `successfulJobsHistoryLimit` / `failedJobsHistoryLimit`;
2. finds the most recent unmet schedule time since `status.lastScheduleTime` (or the
   CronJob's creation), within `startingDeadlineSeconds` when set; more than 100 missed
   times is reported as "too many missed start times";
3. applies `concurrencyPolicy` (Allow, Forbid: skip while a Job is active, Replace:
   delete the active Jobs) and creates `<cronjob>-<scheduled minutes since epoch>`, a
   deterministic name, so a retried run never creates a second Job.

Schedules are standard five-field cron (with @hourly, @daily, ... and @every <duration>)
evaluated with croniter in `spec.timeZone` (UTC when unset), with robfig/cron's rule that
a wall-clock time skipped by a daylight-saving change does not run.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from ..client import ApiError, Controller, Informer, controller_of, controller_ref
from ..machinery.meta import now as utc_now
from ..machinery.meta import parse_duration, parse_time, rfc3339
from ._workloads import with_kind
from .job import JOB_API_VERSION, finished_condition

log = logging.getLogger(__name__)

NEXT_SCHEDULE_DELTA = 0.1
MANY_MISSED = 100
SCHEDULED_TIMESTAMP_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"

_DESCRIPTORS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
                "@hourly": "0 * * * *"}


class ScheduleError(ValueError):
    """A schedule or time zone the controller cannot run."""


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as err:
        raise ScheduleError(str(err)) from None


def time_zone(name: str | None) -> ZoneInfo:
    """spec.timeZone as a zone; UTC when unset (the controller manager's local time)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ScheduleError(f"unknown time zone {name}") from err


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule in one time zone; `next(after)` is the first run strictly after."""

    expression: str
    zone: ZoneInfo
    every: float | None = None

    @classmethod
    def parse(cls, schedule: str, zone_name: str | None = None) -> Schedule:
        zone = time_zone(zone_name)
        spec = schedule.strip()
        if spec.startswith("@every "):
            # robfig/cron: delays round down to whole seconds, at least one.
            return cls(spec, zone, every=max(1.0, float(int(_duration(spec[7:].strip())))))
        spec = _DESCRIPTORS.get(spec, spec)
        if len(spec.split()) != 5:
            raise ScheduleError(f"expected exactly 5 fields, found {len(spec.split())}: {spec}")
        try:
            croniter(spec)
        except CroniterError as err:
            raise ScheduleError(str(err)) from err
        return cls(spec, zone)

    def next(self, after: datetime) -> datetime | None:
        """The first run time strictly after `after`, or None if the schedule never runs."""
        if self.every is not None:
            return after.replace(microsecond=0) + timedelta(seconds=self.every)
        wall = after.astimezone(self.zone).replace(tzinfo=None)
        try:
            runs = croniter(self.expression, wall)
            for _ in range(10000):
                candidate = runs.get_next(datetime)
                moment = candidate.replace(tzinfo=self.zone)
                # Skip wall-clock times that a daylight-saving jump makes nonexistent.
                if moment.astimezone(UTC).astimezone(self.zone).replace(tzinfo=None) != candidate:
                    continue
                if moment > after:
                    return moment.astimezone(UTC)
        except CroniterBadDateError:
            return None
        return None


Missed = Literal["none", "few", "many"]


def most_recent_schedule_time(cronjob: Mapping[str, Any], now: datetime, schedule: Schedule,
                              *, include_starting_deadline: bool
                              ) -> tuple[datetime, datetime | None, Missed]:
    """(earliest time considered, most recent run time due by `now` or None, how many
    were missed). Raises ScheduleError for a schedule that never fires twice."""
    meta = cronjob.get("metadata") or {}
    spec, status = cronjob.get("spec") or {}, cronjob.get("status") or {}
    earliest = (parse_time(status.get("lastScheduleTime"))
                or parse_time(meta.get("creationTimestamp")) or now)
    deadline = spec.get("startingDeadlineSeconds")
    if include_starting_deadline and deadline is not None:
        earliest = max(earliest, now - timedelta(seconds=deadline))
    t1 = schedule.next(earliest)
    t2 = schedule.next(t1) if t1 is not None else None
    if t1 is None or now < t1:
        return earliest, None, "none"
    if t2 is None or now < t2:
        return earliest, t1, "none"
    between = round((t2 - t1).total_seconds())
    if between < 1:
        raise ScheduleError("time difference between two schedules is less than 1 second")
    missed = int((now - t1).total_seconds()) // between + 1
    # Jump close to now, then let the schedule find the exact last time (irregular
    # schedules such as `30 6-16/4 * * 1-5` make the estimate approximate).
    moment = t1 + timedelta(seconds=(missed - 2) * between)
    recent = None
    while (moment := schedule.next(moment)) is not None and moment <= now:
        recent = moment
    return earliest, recent, "many" if missed > MANY_MISSED else "few"


def next_schedule_delay(cronjob: Mapping[str, Any], now: datetime, schedule: Schedule
                        ) -> float | None:
    """Seconds until the next run after the most recent one, padded by 100 ms."""
    try:
        earliest, recent, missed = most_recent_schedule_time(
            cronjob, now, schedule, include_starting_deadline=False)
    except ScheduleError:
        recent, missed, earliest = now, "none", now
    if recent is None:
        recent = earliest if missed == "none" else now
    upcoming = schedule.next(recent)
    if upcoming is None:
        return None
    return (upcoming - now).total_seconds() + NEXT_SCHEDULE_DELTA


def next_schedule_time(cronjob: Mapping[str, Any], now: datetime, schedule: Schedule
                       ) -> tuple[datetime | None, bool]:
    """(the run time to start now or None, whether too many runs were missed)."""
    _, recent, missed = most_recent_schedule_time(cronjob, now, schedule,
                                                  include_starting_deadline=True)
    if recent is None or recent > now:
        return None, False
    return recent, missed == "many"


def job_name(cronjob: Mapping[str, Any], scheduled: datetime) -> str:
    return f"{cronjob['metadata']['name']}-{int(scheduled.timestamp()) // 60}"


def too_late(cronjob: Mapping[str, Any], scheduled: datetime, now: datetime) -> bool:
    deadline = (cronjob.get("spec") or {}).get("startingDeadlineSeconds")
    return deadline is not None and scheduled + timedelta(seconds=deadline) < now


def concurrency_action(cronjob: Mapping[str, Any]) -> Literal["Run", "Skip", "Replace"]:
    """What concurrencyPolicy says to do with the Jobs in status.active at a run time."""
    policy = (cronjob.get("spec") or {}).get("concurrencyPolicy") or "Allow"
    active = (cronjob.get("status") or {}).get("active") or []
    if policy == "Forbid" and active:
        return "Skip"
    if policy == "Replace" and active:
        return "Replace"
    return "Run"


def job_from_template(cronjob: Mapping[str, Any], scheduled: datetime) -> dict[str, Any]:
    template = (cronjob.get("spec") or {}).get("jobTemplate") or {}
    tmeta = template.get("metadata") or {}
    local = scheduled.astimezone(time_zone((cronjob.get("spec") or {}).get("timeZone")))
    stamp = (local.strftime("%Y-%m-%dT%H:%M:%SZ") if local.utcoffset() == timedelta(0)
             else local.isoformat(timespec="seconds"))
    annotations = {**(tmeta.get("annotations") or {}), SCHEDULED_TIMESTAMP_ANNOTATION: stamp}
    meta: dict[str, Any] = {
        "name": job_name(cronjob, scheduled), "namespace": cronjob["metadata"].get("namespace"),
        "annotations": annotations,
        "ownerReferences": [controller_ref(cronjob, api_version=JOB_API_VERSION,
                                           kind="CronJob")]}
    if tmeta.get("labels"):
        meta["labels"] = dict(tmeta["labels"])
    return {"apiVersion": JOB_API_VERSION, "kind": "Job", "metadata": meta,
            "spec": copy.deepcopy(template.get("spec") or {})}


def _start_time(job: Mapping[str, Any]) -> tuple[bool, datetime, str]:
    started = parse_time((job.get("status") or {}).get("startTime"))
    return (started is None, started or datetime.max.replace(tzinfo=UTC),
            (job.get("metadata") or {}).get("name", ""))


def jobs_beyond_history(jobs: list[Mapping[str, Any]], successful_limit: int | None,
                        failed_limit: int | None) -> list[Mapping[str, Any]]:
    """The oldest finished Jobs (by start time, then name) beyond each history limit."""
    doomed: list[Mapping[str, Any]] = []
    for kind, limit in (("Complete", successful_limit), ("Failed", failed_limit)):
        if limit is None:
            continue
        finished = sorted((j for j in jobs if finished_condition(j) == kind), key=_start_time)
        doomed.extend(finished[:max(0, len(finished) - limit)])
    return doomed


def _status_of(cronjob: Mapping[str, Any]) -> dict[str, Any]:
    """The status as stored: an empty active list is omitted."""
    status = dict(cronjob.get("status") or {})
    if not status.get("active"):
        status.pop("active", None)
    return status


def _job_reference(job: Mapping[str, Any]) -> dict[str, Any]:
    meta = job.get("metadata") or {}
    return {"kind": "Job", "namespace": meta.get("namespace"), "name": meta.get("name"),
            "uid": meta.get("uid"), "apiVersion": JOB_API_VERSION,
            "resourceVersion": meta.get("resourceVersion")}


class CronJobController(Controller):
    name = "cronjob-controller"

    def setup(self) -> None:
        informers = self.context.informers
        self.cronjobs: Informer = informers.informer(JOB_API_VERSION, "cronjobs")
        self.jobs: Informer = informers.informer(JOB_API_VERSION, "jobs")
        self.cronjobs.add_handler(self._on_cronjob)
        self.jobs.add_handler(self._on_job)

    def _on_cronjob(self, old: dict | None, new: dict | None) -> None:
        if old is None or new is None:
            self.enqueue_handler(old, new)
            return
        old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
        if (old_spec.get("schedule"), old_spec.get("timeZone")) == (
                new_spec.get("schedule"), new_spec.get("timeZone")):
            self.enqueue(new)
            return
        try:
            schedule = Schedule.parse(new_spec.get("schedule") or "", new_spec.get("timeZone"))
        except ScheduleError:
            self.enqueue(new)
            return
        delay = next_schedule_delay(new, utc_now(), schedule)
        if delay is not None:
            self.queue.add_after(f"{new['metadata']['namespace']}/{new['metadata']['name']}",
                                 delay)

    def _on_job(self, old: dict | None, new: dict | None) -> None:
        for job in (old, new):
            ref = controller_of(job) if job is not None else None
            if job is None or ref is None or ref.get("kind") != "CronJob":
                continue
            key = f"{job['metadata'].get('namespace')}/{ref.get('name')}"
            cronjob = self.cronjobs.get(key)
            if cronjob is not None and cronjob["metadata"].get("uid") == ref.get("uid"):
                self.queue.add(key)

    async def reconcile(self, key: str) -> float | None:
        cached = self.cronjobs.get(key)
        if cached is None:
            return None
        cronjob = with_kind(copy.deepcopy(cached), api_version=JOB_API_VERSION, kind="CronJob")
        cronjob.setdefault("status", {})
        jobs = [j for j in self.jobs.by_index("owner", cronjob["metadata"]["uid"])
                if j["metadata"].get("namespace") == cronjob["metadata"].get("namespace")]
        try:
            await self._cleanup_finished_jobs(cronjob, jobs)
            return await self._sync(cronjob, jobs)
        finally:
            # What was done before a failure (Jobs created or deleted) is recorded too.
            if _status_of(cronjob) != _status_of(cached):
                cronjob["status"] = _status_of(cronjob)
                await self.client.replace(JOB_API_VERSION, "cronjobs", cronjob,
                                          subresource="status")

    async def _cleanup_finished_jobs(self, cronjob: dict[str, Any],
                                     jobs: list[dict[str, Any]]) -> None:
        spec = cronjob.get("spec") or {}
        for job in jobs_beyond_history(jobs, spec.get("successfulJobsHistoryLimit"),
                                       spec.get("failedJobsHistoryLimit")):
            await self._delete_job(cronjob, job)

    async def _delete_job(self, cronjob: dict[str, Any], job: Mapping[str, Any]) -> bool:
        meta = job.get("metadata") or {}
        try:
            await self.client.delete(JOB_API_VERSION, "jobs", meta["name"], meta.get("namespace"),
                                     propagation_policy="Background")
        except ApiError as err:
            if not err.not_found:
                await self.events.record(cronjob, "Warning", "FailedDelete",
                                         f"Deleted job: {err}")
                return False
        self._forget_active(cronjob, meta.get("uid"))
        await self.events.record(cronjob, "Normal", "SuccessfulDelete",
                                 f"Deleted job {meta['name']}")
        return True

    @staticmethod
    def _forget_active(cronjob: dict[str, Any], uid: str | None) -> None:
        status = cronjob["status"]
        status["active"] = [r for r in status.get("active") or [] if r.get("uid") != uid]

    @staticmethod
    def _in_active(cronjob: Mapping[str, Any], uid: str | None) -> bool:
        return any(r.get("uid") == uid for r in (cronjob.get("status") or {}).get("active") or [])

    async def _sync(self, cronjob: dict[str, Any], jobs: list[dict[str, Any]]
                    ) -> float | None:
        """Start the due run, if any; returns seconds until the next look."""
        now = utc_now()
        await self._sync_children(cronjob, jobs)
        spec = cronjob.get("spec") or {}
        if cronjob["metadata"].get("deletionTimestamp"):
            return None
        try:
            schedule = Schedule.parse(spec.get("schedule") or "", spec.get("timeZone"))
        except ScheduleError as err:
            if spec.get("timeZone") and "time zone" in str(err):
                await self.events.record(cronjob, "Warning", "UnknownTimeZone",
                                         f"invalid timeZone: {spec['timeZone']!r}: {err}")
            else:
                await self.events.record(cronjob, "Warning", "UnparseableSchedule",
                                         f"unparseable schedule: {spec.get('schedule')!r} : "
                                         f"{err}")
            return None
        if spec.get("suspend"):
            return None
        try:
            scheduled, many_missed = next_schedule_time(cronjob, now, schedule)
        except ScheduleError as err:
            await self.events.record(cronjob, "Warning", "InvalidSchedule",
                                     f"invalid schedule: {spec.get('schedule')} : {err}")
            return None
        delay = next_schedule_delay(cronjob, now, schedule)
        if scheduled is None:
            return delay
        if many_missed:
            await self.events.record(cronjob, "Warning", "TooManyMissedTimes",
                                     "too many missed start times. Set or decrease "
                                     ".spec.startingDeadlineSeconds or check clock skew")
        if too_late(cronjob, scheduled, now):
            await self.events.record(cronjob, "Warning", "MissSchedule",
                                     "Missed scheduled time to start a job: "
                                     f"{scheduled.strftime('%a, %d %b %Y %H:%M:%S +0000')}")
            return delay
        name = job_name(cronjob, scheduled)
        status = cronjob["status"]
        if any(r.get("name") == name for r in status.get("active") or []) or parse_time(
                status.get("lastScheduleTime")) == scheduled:
            return delay
        action = concurrency_action(cronjob)
        if action == "Skip":
            await self.events.record(cronjob, "Normal", "JobAlreadyActive",
                                     "Not starting job because prior execution is running "
                                     "and concurrency policy is Forbid")
            return delay
        if action == "Replace":
            for ref in list(status.get("active") or []):
                try:
                    job = await self.client.get(JOB_API_VERSION, "jobs", ref["name"],
                                                ref.get("namespace"))
                except ApiError as err:
                    await self.events.record(cronjob, "Warning", "FailedGet", f"Get job: {err}")
                    raise
                if not await self._delete_job(cronjob, job):
                    raise RuntimeError(f"could not replace job {ref.get('namespace')}/"
                                       f"{ref['name']}")
        created = await self._create_job(cronjob, scheduled)
        if created is None:
            return None
        status.setdefault("active", []).append(_job_reference(created))
        status["lastScheduleTime"] = rfc3339(scheduled)
        return next_schedule_delay(cronjob, now, schedule)

    async def _sync_children(self, cronjob: dict[str, Any], jobs: list[dict[str, Any]]) -> None:
        """Reconcile status.active and lastSuccessfulTime with the Jobs that exist."""
        status = cronjob["status"]
        for job in jobs:
            uid, finished = job["metadata"].get("uid"), finished_condition(job)
            if not self._in_active(cronjob, uid) and not finished:
                fresh = await self.client.get(JOB_API_VERSION, "cronjobs",
                                              cronjob["metadata"]["name"],
                                              cronjob["metadata"].get("namespace"))
                if self._in_active(fresh, uid):
                    status["active"] = (fresh.get("status") or {}).get("active")
                    continue
                await self.events.record(cronjob, "Warning", "UnexpectedJob",
                                         "Saw a job that the controller did not create or "
                                         f"forgot: {job['metadata']['name']}")
            elif finished and self._in_active(cronjob, uid):
                self._forget_active(cronjob, uid)
                await self.events.record(cronjob, "Normal", "SawCompletedJob",
                                         f"Saw completed job: {job['metadata']['name']}, "
                                         f"status: {finished}")
            if finished == "Complete":
                completed = (job.get("status") or {}).get("completionTime")
                last = parse_time(status.get("lastSuccessfulTime"))
                moment = parse_time(completed)
                if moment is not None and (last is None or moment > last):
                    status["lastSuccessfulTime"] = completed
            children = {j["metadata"].get("uid") for j in jobs}
        for ref in list(status.get("active") or []):
            if ref.get("uid") in children:
                continue
            try:
                await self.client.get(JOB_API_VERSION, "jobs", ref["name"], ref.get("namespace"))
            except ApiError as err:
                if not err.not_found:
                    raise
                await self.events.record(cronjob, "Normal", "MissingJob",
                                         f"Active job went missing: {ref['name']}")
                self._forget_active(cronjob, ref.get("uid"))

    async def _create_job(self, cronjob: dict[str, Any], scheduled: datetime
                          ) -> dict[str, Any] | None:
        """Create the run's Job; None when a Job of that name already exists and is
        accounted for (or belongs to someone else)."""
        request = job_from_template(cronjob, scheduled)
        namespace = cronjob["metadata"].get("namespace")
        try:
            created = await self.client.create(JOB_API_VERSION, "jobs", request, namespace)
        except ApiError as err:
            if err.status != 409 or err.reason != "AlreadyExists":
                await self.events.record(cronjob, "Warning", "FailedCreate",
                                         f"Error creating job: {err}")
                raise
            existing = await self.client.get(JOB_API_VERSION, "jobs",
                                             request["metadata"]["name"], namespace)
            ref = controller_of(existing)
            if ref is None or ref.get("uid") != cronjob["metadata"].get("uid"):
                return None
            if self._in_active(cronjob, existing["metadata"].get("uid")):
                return None
            log.info("cronjob %s/%s: job %s already exists", namespace,
                     cronjob["metadata"]["name"], request["metadata"]["name"])
            return existing
        await self.events.record(cronjob, "Normal", "SuccessfulCreate",
                                 f"Created job {created['metadata']['name']}")
        return created


CONTROLLER = CronJobController
