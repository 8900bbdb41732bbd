"""The training job controller: applies what `common` decides through the API.

One `TrainingJobController` subclass per framework (its `framework` says what differs)
reconciles that framework's jobs from shared informers of jobs, pods and Services, as the
real operator's `JobController.ReconcileJobs` does: validate, clean up a finished or
suspended job, fail one past its backoffLimit or deadline, keep its PodGroup, then keep
one pod and one headless Service per replica and write the status.

A framework may keep more objects before the pods (`reconcile_dependents`: MPIJob's
ConfigMap and launcher RBAC), name its pods, say which replica types get Services and in
which order types are created (its `Framework`).

A job's pods and Services are those it claims, as the common GetPodsForJob and
GetServicesForJob do through a ControllerRefManager (`client.ownership`): of the objects
labelled with its job-name and operator-name (GenLabels) and those it controls, it keeps
its own, adopts orphans (after a fresh read of the job: same uid, not being deleted),
releases children whose labels no longer match and ignores other owners' children. So a
job deleted with `--cascade=orphan` and applied again carries on with the pods and Services
left behind. (The release-1.9 framework reconcilers keep only the pods a job already
controls, so there an orphan's name blocks the new job's pod.) A released pod still holds
its replica's name: the job makes the replacement once it is gone. An orphan's events wake
the job its labels name; a job being deleted is not reconciled, as real, so it makes
nothing while the garbage collector orphans or deletes its children. The PodGroup and
MPIJob's ConfigMap and RBAC are found by name and never adopted, as real.

Pods are recreated at most once per failure: a pod the controller asked to delete is
remembered by uid until the cache shows it gone. The count of pods recreated, kept for
backoffLimit, lives in memory, as the real operator's requeue count does; so does which
start problem of a pod has had its Warning event (one per distinct reason), so a restarted
operator reports a still-stuck pod once more.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ...client import (
    ApiError,
    Controller,
    Informer,
    claim,
    classify_claims,
    controller_of,
    fresh_owner_check,
)
from ...machinery.meta import now as utc_now
from ...machinery.meta import rfc3339
from ...machinery.selectors import label_selector_from_dict
from .common import (
    CREATED,
    FAILED,
    FAILED_VALIDATION,
    JOB_NAME_LABEL,
    KUBEFLOW_JOBS_CONTROLLER,
    NAME_BUSY_SECONDS,
    NO_EXIT_CODE,
    OPERATOR_NAME_LABEL,
    POD_GROUP_API_VERSION,
    POD_GROUP_PLURAL,
    POD_GROUP_RETRY_SECONDS,
    REPLICA_TYPE_LABEL,
    RESTARTING,
    RESUMED,
    RUNNING,
    SUSPENDED,
    Event,
    Framework,
    StartProblem,
    condition_true,
    count_replica_pod,
    created_message,
    deadline_left,
    exit_code,
    get_condition,
    is_failed,
    is_finished,
    is_succeeded,
    job_labels,
    meta,
    new_pod,
    new_pod_group,
    new_service,
    of_replica_type,
    on_failed_pod,
    owner_reference,
    past_backoff_limit,
    phase,
    pods_to_clean,
    reason,
    replica_specs,
    replicas_of,
    restarts_counted,
    run_policy,
    selector_string,
    set_condition_message,
    slices,
    start_problem,
    ttl_left,
    update_job_conditions,
)
from .crds import API_VERSION
from .validation import validate_job

log = logging.getLogger(__name__)


class TrainingJobController(Controller):
    """Reconciles one framework's jobs; subclasses set `framework` (and `name`)."""

    framework: Framework

    def setup(self) -> None:
        informers = self.context.informers
        kind = self.framework.kind
        self.kind_name = kind.kind
        self.jobs: Informer = informers.informer(API_VERSION, kind.plural)
        self.pods: Informer = informers.informer("v1", "pods")
        self.services: Informer = informers.informer("v1", "services")
        self.gang_scheduler: str | None = self.context.settings.get("gang_scheduler_name")
        self.jobs.add_handler(self._on_job)
        self.pods.add_handler(self._on_child)
        self.services.add_handler(self._on_child)
        #: job uid -> uids of pods this controller deleted and the cache may still show
        self._deleting: dict[str, set[str]] = {}
        #: job uid -> pods recreated after failures (counted towards backoffLimit)
        self._recreated: dict[str, int] = {}
        #: pod uids whose exit has been reported with an ExitedWithCode event
        self._exits_reported: set[str] = set()
        #: pod uid -> the reasons it could not start, each reported once with a Warning event
        self._start_problems: dict[str, set[str]] = {}

    def _gang_scheduler(self, job: Mapping[str, Any]) -> str | None:
        """The gang scheduler's name if this job is gang scheduled: it asks to be (a
        runPolicy.schedulingPolicy) and the operator runs with one."""
        if run_policy(job).get("schedulingPolicy") is None:
            return None
        return self.gang_scheduler

    def _on_job(self, old: dict | None, new: dict | None) -> None:
        if new is None and old is not None:
            uid = meta(old).get("uid", "")
            self._deleting.pop(uid, None)
            self._recreated.pop(uid, None)
        self.enqueue_handler(old, new)

    def _on_child(self, old: dict | None, new: dict | None) -> None:
        for obj in (old, new):  # before and after: a changed controller or label wakes both
            key = self._claimant(obj) if obj is not None else None
            if key is not None:
                self.queue.add(key)
        if new is None and old is not None:
            for pending in self._deleting.values():
                pending.discard(meta(old).get("uid", ""))
            self._start_problems.pop(meta(old).get("uid", ""), None)

    def _claimant(self, obj: Mapping[str, Any]) -> str | None:
        """The key of the job that may claim `obj`: its controller, if one of this kind;
        for an orphan, the job its labels name, if they name this operator."""
        ref = controller_of(obj)
        if ref is not None:
            ours = ref.get("kind") == self.kind_name and ref.get("apiVersion") == API_VERSION
            name = ref.get("name") if ours else None
        else:
            labels = meta(obj).get("labels") or {}
            name = labels.get(JOB_NAME_LABEL) if labels.get(
                OPERATOR_NAME_LABEL) == self.framework.controller_name else None
        return f"{meta(obj).get('namespace')}/{name}" if name else None

    async def _claim(self, informer: Informer, plural: str,
                     job: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The job's pods or Services: of those labelled as its own and those it controls,
        what it keeps and adopts, having released its children that are labelled otherwise
        (the real ClaimPods and ClaimServices)."""
        namespace, uid = meta(job).get("namespace"), meta(job)["uid"]
        labels = job_labels(self.framework.controller_name, meta(job)["name"])
        candidates = {meta(o).get("uid"): o for o in (
            *informer.by_index("label", f"{JOB_NAME_LABEL}={labels[JOB_NAME_LABEL]}"),
            *informer.by_index("owner", uid)) if meta(o).get("namespace") == namespace}
        claims = classify_claims(job, label_selector_from_dict({"matchLabels": labels}),
                                 candidates.values())
        return await claim(
            self.client, api_version="v1", plural=plural, owner=job,
            owner_ref=owner_reference(job, self.kind_name), claims=claims,
            can_adopt=lambda: fresh_owner_check(self.client, api_version=API_VERSION,
                                                plural=self.framework.kind.plural, owner=job))

    async def reconcile(self, key: str) -> float | None:
        cached = self.jobs.get(key)
        if cached is None or meta(cached).get("deletionTimestamp") or run_policy(cached).get(
                "managedBy") not in (None, KUBEFLOW_JOBS_CONTROLLER):
            return None
        job = copy.deepcopy(cached)
        job["apiVersion"], job["kind"] = API_VERSION, self.kind_name
        uid = meta(job)["uid"]
        self.framework.set_defaults(job)
        now = utc_now()
        status = copy.deepcopy(job.get("status") or {})
        before = copy.deepcopy(status)
        events: list[Event] = []
        name = meta(job)["name"]
        kind = self.kind_name
        if not status.get("conditions"):
            update_job_conditions(status, CREATED, "True", reason(kind, CREATED),
                                  f"{kind} {name} is created.", now)
        try:
            return await self._sync(job, status, events, now)
        finally:
            await self._record(job, events)
            if status != before:
                await self._write_status(job, status)
            if is_finished(status):
                self._recreated.pop(uid, None)

    async def _sync(self, job: dict[str, Any], status: dict[str, Any], events: list[Event],
                    now: datetime) -> float | None:
        kind, name, uid = self.kind_name, meta(job)["name"], meta(job)["uid"]
        policy = run_policy(job)
        specs = replica_specs(job, self.framework.kind)
        pods = await self._claim(self.pods, "pods", job)
        services = await self._claim(self.services, "services", job)
        if is_failed(status) and (get_condition(status, FAILED) or {}).get("reason") == reason(
                kind, FAILED_VALIDATION):
            return None
        problems = [cause.render() for cause in validate_job(self.framework.kind, job).causes]
        if problems:
            message = f"{kind} {name} failed validation because {'; '.join(problems)}"
            events.append(Event("Warning", reason(kind, FAILED_VALIDATION), message))
            update_job_conditions(status, FAILED, "True", reason(kind, FAILED_VALIDATION),
                                  message, now)
            return None

        if is_finished(status):
            await self._clean_up(job, policy, status, pods, services, events)
            if is_succeeded(status):
                for counts in (status.get("replicaStatuses") or {}).values():
                    counts["succeeded"] = counts.get("succeeded", 0) + counts.pop("active", 0)
            return await self._expire(job, policy, status, now, events)

        if policy.get("suspend"):
            await self._clean_up(job, policy, status, pods, services, events)
            for counts in (status.get("replicaStatuses") or {}).values():
                counts.pop("active", None)
            message = f"{kind} {name} is suspended."
            if condition_true(status, RUNNING):
                update_job_conditions(status, RUNNING, "False", reason(kind, SUSPENDED),
                                      message, now)
            if not condition_true(status, SUSPENDED):
                update_job_conditions(status, SUSPENDED, "True", reason(kind, SUSPENDED),
                                      message, now)
                events.append(Event("Normal", reason(kind, SUSPENDED), message))
            return None
        if condition_true(status, SUSPENDED):
            message = f"{kind} {name} is resumed."
            update_job_conditions(status, SUSPENDED, "False", reason(kind, RESUMED), message, now)
            status["startTime"] = rfc3339(now)
            events.append(Event("Normal", reason(kind, RESUMED), message))

        failures = restarts_counted(specs, pods) + self._recreated.get(uid, 0)
        left = deadline_left(policy, status, now)
        failure = None
        if past_backoff_limit(policy, failures):
            failure = f"Job {name} has failed because it has reached the specified backoff limit"
        elif left is not None and left <= 0:
            failure = (f"Job {name} has failed because it was active longer than specified "
                       f"deadline")
        if failure is not None:
            status.setdefault("completionTime", rfc3339(now))
            await self._clean_up(job, policy, status, pods, services, events)
            events.append(Event("Normal", reason(kind, FAILED), failure))
            update_job_conditions(status, FAILED, "True", reason(kind, FAILED), failure, now)
            return await self._expire(job, policy, status, now, events)

        if self._gang_scheduler(job) is not None and not await self._sync_pod_group(job):
            status["lastReconcileTime"] = rfc3339(now)
            return POD_GROUP_RETRY_SECONDS
        again = await self.reconcile_dependents(job, pods, events)
        if again is not None:
            status["lastReconcileTime"] = rfc3339(now)
            return again
        problems: list[StartProblem] = []
        for rtype in self.framework.replica_types_in_order(specs):
            busy = await self._reconcile_pods(job, status, pods, rtype, events, problems, now)
            if self.framework.has_service(rtype):
                await self._reconcile_services(job, services, rtype, events)
            if busy:
                again = NAME_BUSY_SECONDS
        set_condition_message(status, CREATED, created_message(kind, name, problems), now)
        status.setdefault("startTime", rfc3339(now))
        for rtype in specs:
            counts = status.setdefault("replicaStatuses", {}).setdefault(rtype, {})
            labels = {**job_labels(self.framework.controller_name, name),
                      REPLICA_TYPE_LABEL: rtype.lower()}
            counts["selector"] = selector_string(labels)
            counts["labelSelector"] = {"matchLabels": labels}
        if not is_finished(status):
            events += self.framework.update_job_status(job, status, pods, now)
        if is_finished(status):
            return await self._expire(job, policy, status, now, events)
        left = deadline_left(policy, status, now)
        if left is not None:
            again = min(again, left) if again is not None else left
        return again

    async def reconcile_dependents(self, job: dict[str, Any], pods: list[dict[str, Any]],
                                   events: list[Event]) -> float | None:
        """Keep what a framework needs beside its pods and Services (MPI: a ConfigMap and
        the launcher's RBAC) before they are made; seconds to wait when that failed."""
        return None

    async def _reconcile_pods(self, job: dict[str, Any], status: dict[str, Any],
                              pods: list[dict[str, Any]], rtype: str, events: list[Event],
                              problems: list[StartProblem], now: datetime) -> bool:
        """Create missing pods, delete surplus and failed-to-restart ones, count the rest,
        and note (in `problems`, with one Warning event per reason) pods that cannot start.
        True if a pod could not be created because its predecessor is still going."""
        kind, name, uid = self.kind_name, meta(job)["name"], meta(job)["uid"]
        spec = replica_specs(job, self.framework.kind)[rtype]
        count = replicas_of(spec)
        status.setdefault("replicaStatuses", {})[rtype] = {}
        deleting = self._deleting.setdefault(uid, set())
        busy = False
        for index, slot in enumerate(slices(of_replica_type(pods, rtype), count)):
            if len(slot) > 1:
                log.warning("%s/%s: %d pods for %s index %d", meta(job).get("namespace"),
                            name, len(slot), rtype, index)
                continue
            if not slot:
                if index < count:
                    busy |= not await self._create_pod(job, rtype, index, events)
                continue
            pod = slot[0]
            pod_uid = meta(pod).get("uid", "")
            if index >= count:
                if pod_uid not in deleting:
                    await self._delete(job, "pods", pod, events)
                    deleting.add(pod_uid)
                continue
            self._note_start_problem(pod, problems, events)
            code = exit_code(pod, self.framework.main_container(job, pod))
            if phase(pod) in ("Succeeded", "Failed") and code != NO_EXIT_CODE and \
                    pod_uid not in self._exits_reported:
                self._exits_reported.add(pod_uid)
                if len(self._exits_reported) > 65536:
                    self._exits_reported.clear()
                events.append(Event("Normal", "ExitedWithCode",
                                    f"Pod: {meta(pod).get('namespace')}.{meta(pod)['name']} "
                                    f"exited with code {code}"))
            if phase(pod) == "Failed" and pod_uid not in deleting:
                action = on_failed_pod(spec.get("restartPolicy") or "", code)
                if action == "restart":
                    await self._delete(job, "pods", pod, events)
                    deleting.add(pod_uid)
                    self._recreated[uid] = self._recreated.get(uid, 0) + 1
                    message = f"job {name} is restarting because {rtype} replica(s) failed."
                    events.append(Event("Warning", reason(kind, RESTARTING), message))
                    update_job_conditions(status, RESTARTING, "True", reason(kind, RESTARTING),
                                          message, now)
                elif action == "fail":
                    message = f'job "{name}" is failing because "{rtype}" replica(s) failed.'
                    events.append(Event("Warning", reason(kind, FAILED), message))
                    status.setdefault("completionTime", rfc3339(now))
                    update_job_conditions(status, FAILED, "True", reason(kind, FAILED), message,
                                          now)
            count_replica_pod(status, rtype, pod)
        return busy

    def _note_start_problem(self, pod: Mapping[str, Any], problems: list[StartProblem],
                            events: list[Event]) -> None:
        pod_uid = meta(pod).get("uid", "")
        problem = None if meta(pod).get("deletionTimestamp") else start_problem(pod)
        if problem is None:
            if phase(pod) != "Pending":  # it ran: a later problem is news again
                self._start_problems.pop(pod_uid, None)
            return
        problems.append(problem)
        reported = self._start_problems.setdefault(pod_uid, set())
        if problem.reason not in reported:  # ErrImagePull and ImagePullBackOff alternate
            reported.add(problem.reason)
            text = f"Pod: {problem.pod.replace('/', '.')} cannot start: {problem.reason}"
            events.append(Event("Warning", problem.reason,
                                f"{text}: {problem.message}" if problem.message else text))

    async def _create_pod(self, job: dict[str, Any], rtype: str, index: int,
                          events: list[Event]) -> bool:
        pod, warnings = new_pod(job, self.framework, rtype, index,
                                gang_scheduler=self._gang_scheduler(job))
        events += warnings
        try:
            await self.client.create("v1", "pods", pod)
        except ApiError as err:
            if err.conflict:  # the name is still taken by the pod being replaced
                return False
            events.append(Event("Warning", "FailedCreatePod", f"Error creating: {err}"))
            raise
        events.append(Event("Normal", "SuccessfulCreatePod",
                            f"Created pod: {pod['metadata']['name']}"))
        return True

    async def _reconcile_services(self, job: dict[str, Any], services: list[dict[str, Any]],
                                  rtype: str, events: list[Event]) -> None:
        count = replicas_of(replica_specs(job, self.framework.kind)[rtype])
        for index, slot in enumerate(slices(of_replica_type(services, rtype), count)):
            if not slot and index < count:
                service = new_service(job, self.framework, rtype, index)
                try:
                    await self.client.create("v1", "services", service)
                except ApiError as err:
                    if err.conflict:
                        continue
                    events.append(Event("Warning", "FailedCreateService",
                                        f"Error creating: {err}"))
                    raise
                events.append(Event("Normal", "SuccessfulCreateService",
                                    f"Created service: {service['metadata']['name']}"))
            elif index >= count:
                for service in slot:
                    await self._delete(job, "services", service, events)

    async def _delete(self, job: Mapping[str, Any], plural: str, obj: Mapping[str, Any],
                      events: list[Event]) -> bool:
        """Delete a pod or Service; False if it was gone already."""
        what = "Pod" if plural == "pods" else "Service"
        try:
            await self.client.delete("v1", plural, meta(obj)["name"], meta(obj).get("namespace"),
                                     preconditions={"uid": meta(obj)["uid"]})
        except ApiError as err:
            if err.not_found or err.conflict:
                return False
            events.append(Event("Warning", f"FailedDelete{what}", f"Error deleting: {err}"))
            raise
        events.append(Event("Normal", f"SuccessfulDelete{what}",
                            f"Deleted {what.lower()}: {meta(obj)['name']}"))
        return True

    async def _clean_up(self, job: dict[str, Any], policy: Mapping[str, Any],
                        status: Mapping[str, Any], pods: list[dict[str, Any]],
                        services: list[dict[str, Any]], events: list[Event]) -> None:
        """Delete the pods cleanPodPolicy (or suspension, or failure) calls for, each with its
        Service, and the PodGroup."""
        deleting = self._deleting.setdefault(meta(job)["uid"], set())
        by_name = {meta(s)["name"]: s for s in services}
        for pod in pods_to_clean(policy, status, pods):
            if meta(pod).get("uid") in deleting or meta(pod).get("deletionTimestamp"):
                continue
            await self._delete(job, "pods", pod, events)
            deleting.add(meta(pod).get("uid", ""))
            service = by_name.pop(meta(pod)["name"], None)
            if service is not None:
                await self._delete(job, "services", service, events)
        if not is_finished(status):  # suspended or failing: Services of missing pods go too
            for service in by_name.values():
                await self._delete(job, "services", service, events)
        if self._gang_scheduler(job) is not None:
            await self._delete_pod_group(job, events)

    async def _expire(self, job: dict[str, Any], policy: Mapping[str, Any],
                      status: Mapping[str, Any], now: datetime,
                      events: list[Event]) -> float | None:
        """Delete a finished job whose ttlSecondsAfterFinished has passed; else say when."""
        left = ttl_left(policy, status, now)
        if left is None:
            return None
        if left > 0:
            return left
        try:
            await self.client.delete(API_VERSION, self.framework.kind.plural, meta(job)["name"],
                                     meta(job).get("namespace"),
                                     preconditions={"uid": meta(job)["uid"]})
        except ApiError as err:
            if not (err.not_found or err.conflict):
                raise
            return None
        events.append(Event("Normal", "SuccessfulDeletePod",
                            f"Deleted job: {meta(job)['name']}"))
        return None

    async def _sync_pod_group(self, job: dict[str, Any]) -> bool:
        """Create the job's PodGroup or bring its spec up to date; False if that failed."""
        desired = new_pod_group(job, self.framework.kind)
        namespace, name = meta(job).get("namespace"), meta(job)["name"]
        try:
            try:
                current = await self.client.get(POD_GROUP_API_VERSION, POD_GROUP_PLURAL, name,
                                                namespace)
            except ApiError as err:
                if not err.not_found:
                    raise
                await self.client.create(POD_GROUP_API_VERSION, POD_GROUP_PLURAL, desired)
                return True
            if {k: (current.get("spec") or {}).get(k) for k in desired["spec"]} != \
                    desired["spec"]:
                await self.client.patch(POD_GROUP_API_VERSION, POD_GROUP_PLURAL, name,
                                        {"spec": desired["spec"]}, namespace)
        except ApiError as err:
            log.warning("sync PodGroup %s/%s: %s", namespace, name, err)
            return False
        return True

    async def _delete_pod_group(self, job: dict[str, Any], events: list[Event]) -> None:
        namespace, name = meta(job).get("namespace"), meta(job)["name"]
        try:
            await self.client.delete(POD_GROUP_API_VERSION, POD_GROUP_PLURAL, name, namespace)
        except ApiError as err:
            if err.not_found:
                return
            events.append(Event("Warning", "FailedDeletePodGroup", f"Error deleting: {err}"))
            raise
        events.append(Event("Normal", "JobTerminated",
                            "Job has been terminated. Deleting PodGroup"))
        events.append(Event("Normal", "SuccessfulDeletePodGroup", f"Deleted PodGroup: {name}"))

    async def _record(self, job: Mapping[str, Any], events: list[Event]) -> None:
        for event in events:
            await self.events.record(job, event.type, event.reason, event.message)

    async def _write_status(self, job: dict[str, Any], status: dict[str, Any]) -> None:
        """Replace the status (as the real Status().Update): keys that went away go, and a
        stale cache meets a conflict and is retried."""
        cached = self.jobs.get(f"{meta(job).get('namespace')}/{meta(job)['name']}")
        if cached is None or meta(cached).get("uid") != meta(job)["uid"]:
            return
        body = {**cached, "apiVersion": API_VERSION, "kind": self.kind_name,
                "metadata": {**meta(cached), "resourceVersion": meta(job).get("resourceVersion")},
                "status": status}
        try:
            await self.client.replace(API_VERSION, self.framework.kind.plural, body,
                                      subresource="status")
        except ApiError as err:
            if not err.not_found:
                raise
