"""The CronJob controller's decisions: run times, missed runs, time zones, concurrency,
history; and the TTL-after-finished controller's expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pilothouse.controllers.cronjob import (
    SCHEDULED_TIMESTAMP_ANNOTATION,
    Schedule,
    ScheduleError,
    concurrency_action,
    job_from_template,
    job_name,
    jobs_beyond_history,
    next_schedule_delay,
    next_schedule_time,
    too_late,
)
from pilothouse.controllers.ttlafterfinished import expire_time, needs_cleanup
from pilothouse.machinery.meta import parse_duration


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cronjob(schedule: str = "* * * * *", *, created: str = "2025-01-01T10:00:30+00:00",
            last: str | None = None, deadline: int | None = None, zone: str | None = None,
            policy: str = "Allow", active: int = 0) -> dict:
    spec: dict = {"schedule": schedule, "concurrencyPolicy": policy,
                  "jobTemplate": {"metadata": {"labels": {"team": "a"}},
                                  "spec": {"template": {"spec": {"containers": []}}}}}
    if deadline is not None:
        spec["startingDeadlineSeconds"] = deadline
    if zone is not None:
        spec["timeZone"] = zone
    status: dict = {}
    if last is not None:
        status["lastScheduleTime"] = stamp(at(last))
    if active:
        status["active"] = [{"name": f"j{i}", "uid": f"u{i}"} for i in range(active)]
    return {"metadata": {"name": "report", "namespace": "default", "uid": "cj-uid",
                         "creationTimestamp": stamp(at(created))},
            "spec": spec, "status": status}


# -- schedules ---------------------------------------------------------------------------


def test_next_run_is_strictly_after_and_descriptors_are_standard_cron():
    every_minute = Schedule.parse("* * * * *")
    assert every_minute.next(at("2025-01-01T10:00:00+00:00")) == at("2025-01-01T10:01:00+00:00")
    assert every_minute.next(at("2025-01-01T10:00:00.5+00:00")) == at(
        "2025-01-01T10:01:00+00:00")
    hourly = Schedule.parse("@hourly")
    assert hourly.next(at("2025-01-01T10:00:30+00:00")) == at("2025-01-01T11:00:00+00:00")
    weekdays = Schedule.parse("0 9 * * 1-5")
    assert weekdays.next(at("2025-01-03T10:00:00+00:00")) == at("2025-01-06T09:00:00+00:00")


def test_time_zone_sets_the_wall_clock_of_a_schedule():
    nine_in_tokyo = Schedule.parse("0 9 * * *", "Asia/Tokyo")
    assert nine_in_tokyo.next(at("2025-01-01T00:30:00+00:00")) == at("2025-01-02T00:00:00+00:00")
    with pytest.raises(ScheduleError, match="unknown time zone"):
        Schedule.parse("* * * * *", "Mars/Olympus")


def test_a_wall_clock_time_skipped_by_daylight_saving_does_not_run():
    half_past_two = Schedule.parse("30 2 * * *", "America/New_York")
    # 2025-03-09 02:30 does not exist in New York: the next run is the day after.
    assert half_past_two.next(at("2025-03-08T12:00:00-05:00")) == at(
        "2025-03-10T02:30:00-04:00")
    one_am = Schedule.parse("0 1 * * *", "America/New_York")
    assert one_am.next(at("2025-11-01T12:00:00-04:00")) == at("2025-11-02T01:00:00-04:00")


def test_every_durations():
    assert parse_duration("1h30m") == 5400
    assert parse_duration("1.5s") == 1.5
    with pytest.raises(ValueError, match='time: invalid duration "5 minutes"'):
        parse_duration("5 minutes")
    with pytest.raises(ScheduleError, match="invalid duration"):
        Schedule.parse("@every 5 minutes")
    every = Schedule.parse("@every 90s")
    assert every.next(at("2025-01-01T10:00:00.7+00:00")) == at("2025-01-01T10:01:30+00:00")


def test_a_schedule_that_never_fires_has_no_next_run():
    assert Schedule.parse("0 0 30 2 *").next(at("2025-01-01T00:00:00+00:00")) is None


# -- missed runs -------------------------------------------------------------------------


def test_the_first_run_after_creation_is_started_when_due():
    cj = cronjob()
    schedule = Schedule.parse("* * * * *")
    assert next_schedule_time(cj, at("2025-01-01T10:00:50+00:00"), schedule) == (None, False)
    assert next_schedule_time(cj, at("2025-01-01T10:01:05+00:00"), schedule) == (
        at("2025-01-01T10:01:00+00:00"), False)


def test_after_missed_runs_only_the_most_recent_is_started():
    cj = cronjob(last="2025-01-01T10:05:00+00:00")
    scheduled, many = next_schedule_time(cj, at("2025-01-01T10:09:10+00:00"),
                                         Schedule.parse("* * * * *"))
    assert (scheduled, many) == (at("2025-01-01T10:09:00+00:00"), False)


def test_more_than_a_hundred_missed_runs_is_too_many_unless_a_deadline_bounds_them():
    cj = cronjob(last="2025-01-01T10:00:00+00:00")
    now = at("2025-01-01T13:00:30+00:00")
    schedule = Schedule.parse("* * * * *")
    assert next_schedule_time(cj, now, schedule) == (at("2025-01-01T13:00:00+00:00"), True)
    bounded = cronjob(last="2025-01-01T10:00:00+00:00", deadline=200)
    assert next_schedule_time(bounded, now, schedule) == (at("2025-01-01T13:00:00+00:00"), False)


def test_starting_deadline_skips_runs_that_are_too_late():
    cj = cronjob("0 * * * *", last="2025-01-01T09:00:00+00:00", deadline=60)
    now = at("2025-01-01T10:02:00+00:00")
    schedule = Schedule.parse("0 * * * *")
    assert next_schedule_time(cj, now, schedule) == (None, False)
    assert too_late(cj, at("2025-01-01T10:00:00+00:00"), now)
    assert not too_late(cj, at("2025-01-01T10:00:00+00:00"), at("2025-01-01T10:00:30+00:00"))


def test_requeue_is_for_the_next_run_plus_a_small_pad():
    schedule = Schedule.parse("* * * * *")
    fresh = cronjob()
    assert next_schedule_delay(fresh, at("2025-01-01T10:00:40+00:00"), schedule) == \
        pytest.approx(20.1)
    ran = cronjob(last="2025-01-01T10:01:00+00:00")
    assert next_schedule_delay(ran, at("2025-01-01T10:01:00.5+00:00"), schedule) == \
        pytest.approx(59.6)
    in_zone = cronjob("0 9 * * *", zone="Europe/Berlin")
    assert next_schedule_delay(in_zone, at("2025-01-01T10:00:30+00:00"),
                               Schedule.parse("0 9 * * *", "Europe/Berlin")) == \
        pytest.approx(timedelta(hours=21, minutes=59, seconds=30).total_seconds() + 0.1)


# -- jobs --------------------------------------------------------------------------------


def test_job_names_are_the_scheduled_minute_so_a_run_is_created_once():
    scheduled = at("2025-01-01T10:01:00+00:00")
    assert job_name(cronjob(), scheduled) == f"report-{int(scheduled.timestamp()) // 60}"
    job = job_from_template(cronjob(zone="Asia/Kolkata"), scheduled)
    assert job["metadata"]["name"] == job_name(cronjob(), scheduled)
    assert job["metadata"]["labels"] == {"team": "a"}
    assert job["metadata"]["annotations"][SCHEDULED_TIMESTAMP_ANNOTATION] == \
        "2025-01-01T15:31:00+05:30"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    utc_job = job_from_template(cronjob(), scheduled)
    assert utc_job["metadata"]["annotations"][SCHEDULED_TIMESTAMP_ANNOTATION] == \
        "2025-01-01T10:01:00Z"


def test_concurrency_policies():
    assert concurrency_action(cronjob(policy="Allow", active=2)) == "Run"
    assert concurrency_action(cronjob(policy="Forbid", active=1)) == "Skip"
    assert concurrency_action(cronjob(policy="Forbid")) == "Run"
    assert concurrency_action(cronjob(policy="Replace", active=1)) == "Replace"
    assert concurrency_action(cronjob(policy="Replace")) == "Run"


def finished_job(name: str, kind: str, started: str | None) -> dict:
    status: dict = {"conditions": [{"type": kind, "status": "True",
                                    "lastTransitionTime": "2025-01-01T10:00:00Z"}]}
    if started:
        status["startTime"] = started
    return {"metadata": {"name": name}, "spec": {}, "status": status}


def test_history_limits_delete_the_oldest_finished_jobs():
    jobs = [finished_job("c", "Complete", "2025-01-01T10:03:00Z"),
            finished_job("a", "Complete", "2025-01-01T10:01:00Z"),
            finished_job("b", "Complete", "2025-01-01T10:02:00Z"),
            finished_job("f1", "Failed", "2025-01-01T10:01:00Z"),
            finished_job("f2", "Failed", None),
            {"metadata": {"name": "running"}, "status": {}}]
    doomed = jobs_beyond_history(jobs, 1, 1)
    assert [j["metadata"]["name"] for j in doomed] == ["a", "b", "f1"]
    assert jobs_beyond_history(jobs, None, None) == []


def test_ttl_runs_from_the_finished_condition():
    job = finished_job("done", "Complete", None)
    assert not needs_cleanup(job)
    job["spec"]["ttlSecondsAfterFinished"] = 30
    assert needs_cleanup(job)
    assert expire_time(job) == at("2025-01-01T10:00:30+00:00")
    assert expire_time({"spec": {"ttlSecondsAfterFinished": 5}, "status": {}}) is None
