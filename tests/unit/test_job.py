"""The Job controller's decisions: failure counting and policy, back-off, indexes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pilothouse.controllers.job import (
    COMPLETION_INDEX,
    TRACKING_FINALIZER,
    BackoffRecord,
    active_pods_for_removal,
    counted_failures,
    fail_job_message,
    first_pending_indexes,
    format_indexes,
    is_pod_failed,
    job_pod,
    match_pod_failure_policy,
    match_success_policy,
    next_backoff_record,
    parse_indexes,
    past_backoff_limit_on_failure,
    succeeded_indexes,
    wanted_active,
    with_indexes,
)

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name: str, phase: str = "Running", *, exit_code: int | None = None,
        finished: datetime | None = None, index: int | None = None, deleting: bool = False,
        tracked: bool = True, conditions: list[dict] | None = None, node: str = "n1",
        ready: bool = False) -> dict:
    meta: dict = {"name": name, "namespace": "default", "uid": f"uid-{name}",
                  "creationTimestamp": stamp(T0)}
    if tracked:
        meta["finalizers"] = [TRACKING_FINALIZER]
    if index is not None:
        meta["annotations"] = {COMPLETION_INDEX: str(index)}
    if deleting:
        meta["deletionTimestamp"] = stamp(T0)
    status: dict = {"phase": phase, "conditions": list(conditions or [])}
    if ready:
        status["conditions"].append({"type": "Ready", "status": "True",
                                     "lastTransitionTime": stamp(T0)})
    if exit_code is not None:
        status["containerStatuses"] = [{"name": "main", "state": {"terminated": {
            "exitCode": exit_code, "finishedAt": stamp(finished or T0)}}}]
    return {"metadata": meta, "spec": {"nodeName": node}, "status": status}


def job(**spec: object) -> dict:
    return {"metadata": {"name": "pi", "namespace": "default", "uid": "job-uid"},
            "spec": {"parallelism": 1, "completions": 1, "backoffLimit": 6,
                     "template": {"metadata": {"labels": {"app": "pi"}},
                                  "spec": {"containers": [{"name": "main", "image": "x"}]}},
                     **spec},
            "status": {}}


EXIT_42_FAILS_JOB = {"rules": [
    {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    {"action": "Count", "onExitCodes": {"containerName": "main", "operator": "NotIn",
                                        "values": [0, 42]}},
]}


# -- counting failures -------------------------------------------------------------------


def test_a_pod_deleted_before_finishing_counts_as_failed_unless_only_failed_are_replaced():
    deleted = pod("a", deleting=True)
    assert is_pod_failed(deleted, job())
    assert not is_pod_failed(deleted, job(podReplacementPolicy="Failed"))
    assert not is_pod_failed(pod("b", "Succeeded", deleting=True), job())
    assert is_pod_failed(pod("c", "Failed", exit_code=1), job(podReplacementPolicy="Failed"))


def test_fail_job_rule_names_the_container_exit_code_and_rule():
    failed = pod("pi-x", "Failed", exit_code=42)
    message, counts, action = match_pod_failure_policy(EXIT_42_FAILS_JOB, failed)
    assert (counts, action) == (True, "FailJob")
    assert message == ("Container main for pod default/pi-x failed with exit code 42 "
                       "matching FailJob rule at index 0")
    assert fail_job_message(job(podFailurePolicy=EXIT_42_FAILS_JOB), [failed]) == message


def test_ignored_failures_do_not_count_towards_the_backoff_limit():
    disrupted = pod("a", "Failed", exit_code=137,
                    conditions=[{"type": "DisruptionTarget", "status": "True"}])
    assert match_pod_failure_policy(EXIT_42_FAILS_JOB, disrupted) == (None, False, "Ignore")
    plain = pod("b", "Failed", exit_code=3)
    assert match_pod_failure_policy(EXIT_42_FAILS_JOB, plain) == (None, True, "Count")
    assert counted_failures(job(podFailurePolicy=EXIT_42_FAILS_JOB), [disrupted, plain]) == 1
    count_first = {"rules": EXIT_42_FAILS_JOB["rules"][2:] + EXIT_42_FAILS_JOB["rules"][1:2]}
    assert match_pod_failure_policy(count_first, disrupted) == (None, True, "Count")
    assert counted_failures(job(), [disrupted, plain]) == 2


def test_no_rule_matches_a_zero_exit_and_unmatched_failures_count():
    assert match_pod_failure_policy(EXIT_42_FAILS_JOB, pod("a", "Failed", exit_code=0)) == (
        None, True, None)
    assert match_pod_failure_policy(None, pod("b", "Failed", exit_code=42)) == (None, True, None)


def test_restarts_count_against_the_backoff_limit_with_restart_policy_on_failure():
    on_failure = job(backoffLimit=2)
    on_failure["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    restarting = pod("a")
    restarting["status"]["containerStatuses"] = [{"name": "main", "restartCount": 1}]
    assert not past_backoff_limit_on_failure(on_failure, [restarting])
    restarting["status"]["containerStatuses"][0]["restartCount"] = 2
    assert past_backoff_limit_on_failure(on_failure, [restarting])
    on_failure["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert not past_backoff_limit_on_failure(on_failure, [restarting])


# -- re-creation back-off ----------------------------------------------------------------


def test_backoff_doubles_from_ten_seconds_and_is_capped():
    first = next_backoff_record(BackoffRecord(), [], [pod("a", "Failed", exit_code=1)])
    assert first.failures_after_last_success == 1
    assert first.remaining(T0 + timedelta(seconds=4)) == 6.0
    assert first.remaining(T0 + timedelta(seconds=11)) == 0.0
    third = BackoffRecord(3, T0)
    assert third.remaining(T0) == 40.0
    assert BackoffRecord(20, T0).remaining(T0) == 600.0


def test_a_success_resets_the_failure_streak_to_failures_after_it():
    old = BackoffRecord(4, T0)
    later = T0 + timedelta(seconds=30)
    record = next_backoff_record(
        old, [pod("ok", "Succeeded", exit_code=0, finished=T0 + timedelta(seconds=10))],
        [pod("early", "Failed", exit_code=1, finished=T0 + timedelta(seconds=5)),
         pod("late", "Failed", exit_code=1, finished=later)])
    assert record == BackoffRecord(1, later)
    assert next_backoff_record(old, [pod("ok", "Succeeded", exit_code=0)], []) == BackoffRecord()
    assert next_backoff_record(old, [], []) is old


# -- indexes -----------------------------------------------------------------------------


def test_completed_indexes_round_trip_in_the_clusters_compressed_form():
    assert parse_indexes("0-2,4,6,7", 10) == [(0, 2), (4, 4), (6, 7)]
    assert format_indexes([(0, 2), (4, 4), (6, 7)]) == "0-2,4,6,7"
    assert parse_indexes("1,2,3,8-12", 10) == [(1, 3), (8, 9)]
    assert format_indexes(with_indexes([(0, 1)], [3, 2, 7])) == "0-3,7"
    assert parse_indexes("", 5) == []


def test_succeeded_indexes_add_only_tracked_pods_with_a_valid_index():
    indexed = job(completionMode="Indexed", completions=5, parallelism=2)
    indexed["status"]["completedIndexes"] = "0"
    pods = [pod("a", "Succeeded", index=2), pod("b", "Succeeded", index=9),
            pod("c", "Succeeded", index=3, tracked=False), pod("d", "Failed", index=1),
            pod("e", "Succeeded")]
    previous, now = succeeded_indexes(indexed, pods)
    assert (previous, now) == ([(0, 0)], [(0, 0), (2, 2)])


def test_pending_indexes_skip_succeeded_and_running_ones():
    assert first_pending_indexes([(0, 1), (4, 4)], [2], 3, 7) == [3, 5, 6]
    assert first_pending_indexes([], [], 2, 5) == [0, 1]
    assert first_pending_indexes([(0, 4)], [], 2, 5) == []


def test_duplicate_and_out_of_range_indexes_are_removed_first():
    indexed = job(completionMode="Indexed", completions=3, parallelism=3)
    ready_dup = pod("dup-ready", index=1, ready=True)
    unready_dup = pod("dup-new", index=1)
    stray = pod("stray", index=7, ready=True)
    keep = pod("keep", index=0, ready=True)
    removed = active_pods_for_removal(indexed, [keep, ready_dup, unready_dup, stray], 0)
    assert {p["metadata"]["name"] for p in removed} == {"stray", "dup-new"}


def test_scale_down_removes_unscheduled_and_unready_pods_first():
    pods = [pod("ready", ready=True), pod("pending", "Pending"), pod("unscheduled", node="")]
    removed = active_pods_for_removal(job(), pods, 2)
    assert [p["metadata"]["name"] for p in removed] == ["unscheduled", "pending"]


def test_success_policy_rules():
    policy = {"rules": [{"succeededIndexes": "0-1"}, {"succeededCount": 3}]}
    assert match_success_policy(policy, 5, [(0, 0)]) is None
    assert match_success_policy(policy, 5, [(0, 1)]) == "Matched rules at index 0"
    assert match_success_policy(policy, 5, [(2, 4)]) == "Matched rules at index 1"
    partial = {"rules": [{"succeededIndexes": "0-3", "succeededCount": 2}]}
    assert match_success_policy(partial, 5, [(1, 2)]) == "Matched rules at index 0"


# -- pods to run -------------------------------------------------------------------------


def test_active_pods_wanted():
    assert wanted_active(job(completions=3, parallelism=2), 0, 0) == 2
    assert wanted_active(job(completions=3, parallelism=2), 2, 1) == 1
    assert wanted_active(job(completions=3, parallelism=2), 5, 0) == 0
    work_queue = job(completions=None, parallelism=3)
    assert wanted_active(work_queue, 0, 1) == 3
    assert wanted_active(work_queue, 1, 2) == 2


def test_indexed_pods_carry_their_index_everywhere_a_real_cluster_puts_it():
    indexed = job(completionMode="Indexed", completions=3)
    made = job_pod(indexed, 2)
    meta = made["metadata"]
    assert meta["generateName"] == "pi-2-"
    assert meta["annotations"][COMPLETION_INDEX] == meta["labels"][COMPLETION_INDEX] == "2"
    assert meta["labels"]["app"] == "pi"
    assert meta["finalizers"] == [TRACKING_FINALIZER]
    assert meta["ownerReferences"][0] | {"uid": "job-uid", "kind": "Job", "controller": True}
    assert made["spec"]["hostname"] == "pi-2"
    env = made["spec"]["containers"][0]["env"]
    assert env == [{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
        "fieldPath": f"metadata.labels['{COMPLETION_INDEX}']"}}}]
    plain = job_pod(job(), None)
    assert plain["metadata"]["generateName"] == "pi-"
    assert "hostname" not in plain["spec"]
    assert "env" not in plain["spec"]["containers"][0]
