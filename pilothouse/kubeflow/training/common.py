"""What every training framework shares (the real operator's `common` package), as pure
functions; `controller.TrainingJobController` applies them through the API.

A training job is a map of replica types (Master, Worker, PS, ...) to a count and a pod
template. For each type and index the controller keeps one pod and one headless Service,
both named `<job>-<type lowercase>-<index>`, so a replica finds another by that name through
cluster DNS; the framework (a `Framework`) writes the environment that tells each process
its peers and its rank, and says when the job has succeeded.

As the real operator (release-1.9) does, so the SDKs and dashboards read the same status:

- Labels `training.kubeflow.org/{job-name,operator-name,replica-type,replica-index}` and
  `job-role: master` on the master; a controller ownerReference, so deleting a job lets the
  garbage collector delete its pods and Services.
- Restart policies per replica type: Always and OnFailure are the pod's own (the kubelet
  restarts the container in place); Never leaves a failed pod failed, which fails the job;
  ExitCode runs the pod with `restartPolicy: Never` and, when it fails, recreates it if the
  framework container's exit code is >= 128 (killed by a signal: retryable) and fails the
  job otherwise.
- runPolicy: managedBy (a job managed by another controller, e.g. MultiKueue, is left
  alone), backoffLimit (container restarts of running pods plus pods recreated, so
  `backoffLimit: 1` allows one retry), activeDeadlineSeconds (from startTime),
  cleanPodPolicy (which pods go once the job has finished), ttlSecondsAfterFinished (the
  job itself goes), suspend (pods and Services go; condition Suspended), and gang
  scheduling: a `scheduling.x-k8s.io/v1alpha1` PodGroup (minMember = minAvailable, else
  every replica) with the pods labelled into it and handed to the gang scheduler, as for
  scheduler-plugins' Coscheduling. Unlike the real operator, which gang-schedules every job
  once started with a gang scheduler, only jobs with a runPolicy.schedulingPolicy are: a
  gang costs a wait at Permit that a job which never asked for one should not pay.
- Conditions Created, Running, Restarting, Succeeded, Failed, Suspended with reasons
  `<Kind><Reason>` and the real messages; replicaStatuses, startTime, completionTime.

Beyond the real operator, which says nothing while a pod cannot start: a replica pod whose
container waits for a reason that needs someone to act (ErrImagePull, ImagePullBackOff,
ErrImageNeverPull, InvalidImageName, CreateContainer(Config)Error, RunContainerError, a
failed sandbox) or that is Unschedulable is a `StartProblem`. The job gets a Warning event
with the pod's reason, naming the pod and the message, and the Created condition (still
True, reason `<Kind>Created`) says in its message which pod cannot start and why, until no
pod has a problem. Not a Running condition with status False: the STATE printer column
shows the last condition's type, so `kubectl get` would print Running for a job whose pods
never ran; `kubectl describe` shows every condition's message and the events.

Here: labels, names, pods, Services and PodGroups to create, conditions, restart and
failure rules, and `Framework`, what one framework adds.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ...client import controller_ref
from ...machinery.meta import parse_time, rfc3339
from .crds import API_VERSION, JobKind

JOB_NAME_LABEL = "training.kubeflow.org/job-name"
OPERATOR_NAME_LABEL = "training.kubeflow.org/operator-name"
REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"
REPLICA_INDEX_LABEL = "training.kubeflow.org/replica-index"
JOB_ROLE_LABEL = "training.kubeflow.org/job-role"
POD_GROUP_LABEL = "scheduling.x-k8s.io/pod-group"
POD_GROUP_API_VERSION = "scheduling.x-k8s.io/v1alpha1"
POD_GROUP_PLURAL = "podgroups"

CREATED, RUNNING, RESTARTING = "Created", "Running", "Restarting"
SUCCEEDED, FAILED, SUSPENDED = "Succeeded", "Failed", "Suspended"
FAILED_VALIDATION, RESUMED = "FailedValidation", "Resumed"
#: What the real operator reads as "no exit code seen".
NO_EXIT_CODE = 0xBEEF
#: How soon to look again when a pod of the same name is still being deleted.
NAME_BUSY_SECONDS = 1.0
#: How soon to try again when the job's PodGroup could not be made.
POD_GROUP_RETRY_SECONDS = 5.0
#: runPolicy.managedBy naming this operator; any other value leaves the job to that one.
KUBEFLOW_JOBS_CONTROLLER = "kubeflow.org/training-operator"


@dataclass(frozen=True)
class Event:
    """An Event to record about the job: (type, reason, message)."""

    type: str
    reason: str
    message: str


def reason(kind: str, what: str) -> str:
    """`PyTorchJob` + `Running` -> `PyTorchJobRunning` (the real NewReason)."""
    return f"{kind}{what}"


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


# -- names and labels ------------------------------------------------------------------


def replica_name(job_name: str, rtype: str, index: int | str) -> str:
    """The pod and Service name of one replica: `<job>-<type lowercase>-<index>`."""
    return f"{job_name}-{rtype.lower()}-{index}".replace("/", "-")


def job_labels(controller_name: str, job_name: str) -> dict[str, str]:
    return {OPERATOR_NAME_LABEL: controller_name,
            JOB_NAME_LABEL: job_name.replace("/", "-")}


def replica_labels(controller_name: str, job_name: str, rtype: str,
                   index: int | str) -> dict[str, str]:
    return {**job_labels(controller_name, job_name), REPLICA_TYPE_LABEL: rtype.lower(),
            REPLICA_INDEX_LABEL: str(index)}


def selector_string(labels: Mapping[str, str]) -> str:
    """metav1.FormatLabelSelector of matchLabels: `k=v` joined by commas, keys sorted."""
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


# -- reading jobs ----------------------------------------------------------------------


def replica_specs(job: Mapping[str, Any], kind: JobKind) -> dict[str, dict[str, Any]]:
    return dict((job.get("spec") or {}).get(kind.replica_specs_field) or {})


def run_policy(job: Mapping[str, Any]) -> dict[str, Any]:
    return dict((job.get("spec") or {}).get("runPolicy") or {})


def replicas_of(spec: Mapping[str, Any]) -> int:
    value = spec.get("replicas")
    return 1 if value is None else int(value)


def total_replicas(specs: Mapping[str, Mapping[str, Any]]) -> int:
    return sum(replicas_of(s) for s in specs.values())


def default_container(spec: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    for container in ((spec.get("template") or {}).get("spec") or {}).get("containers") or []:
        if container.get("name") == name:
            return container
    return None


def container_ports(spec: Mapping[str, Any], container_name: str) -> dict[str, int]:
    """The named ports of the framework's container (GetPortsFromJob)."""
    container = default_container(spec, container_name) or {}
    return {p.get("name", ""): int(p["containerPort"]) for p in container.get("ports") or []
            if "containerPort" in p}


def set_default_port(spec: dict[str, Any], container_name: str, port_name: str,
                     port: int) -> None:
    """Give the framework's container its default port unless it names one already."""
    container = default_container(spec, container_name)
    if container is None:
        return
    ports = container.setdefault("ports", [])
    if not any(p.get("name") == port_name for p in ports):
        ports.append({"name": port_name, "containerPort": port})


def set_replica_defaults(job: dict[str, Any], kind: JobKind) -> None:
    """What the schema defaults on write, for jobs stored before the CRD said so."""
    for rtype, spec in replica_specs(job, kind).items():
        if spec.get("replicas") is None:
            spec["replicas"] = kind.replica_types.get(rtype, 1)
        spec.setdefault("restartPolicy", kind.default_restart_policy)
    policy = job.setdefault("spec", {}).setdefault("runPolicy", {})
    policy.setdefault("cleanPodPolicy", "None")


# -- conditions ------------------------------------------------------------------------


def get_condition(status: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def condition_true(status: Mapping[str, Any], kind: str) -> bool:
    cond = get_condition(status, kind)
    return cond is not None and cond.get("status") == "True"


def is_succeeded(status: Mapping[str, Any]) -> bool:
    return condition_true(status, SUCCEEDED)


def is_failed(status: Mapping[str, Any]) -> bool:
    return condition_true(status, FAILED)


def is_finished(status: Mapping[str, Any]) -> bool:
    return is_succeeded(status) or is_failed(status)


def update_job_conditions(status: dict[str, Any], kind: str, value: str, why: str,
                          message: str, now: datetime | None = None) -> None:
    """Set a condition as the real operator does: nothing changes once Failed; the same
    status and reason is a no-op; the same status keeps its lastTransitionTime; Running
    and Restarting replace each other; Succeeded or Failed turn Running to False."""
    if is_failed(status):
        return
    stamp = rfc3339(now)
    condition = {"type": kind, "status": value, "reason": why, "message": message,
                 "lastUpdateTime": stamp, "lastTransitionTime": stamp}
    current = get_condition(status, kind)
    if current is not None and current.get("status") == value and current.get("reason") == why:
        return
    if current is not None and current.get("status") == value:
        condition["lastTransitionTime"] = current.get("lastTransitionTime", stamp)
    kept = []
    for cond in status.get("conditions") or []:
        ctype = cond.get("type")
        if ctype == kind or {ctype, kind} == {RUNNING, RESTARTING}:
            continue
        if kind in (SUCCEEDED, FAILED) and ctype == RUNNING:
            cond = {**cond, "status": "False"}
        kept.append(cond)
    status["conditions"] = [*kept, condition]


# -- pods ------------------------------------------------------------------------------


def phase(pod: Mapping[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase") or ""


def replica_index(obj: Mapping[str, Any]) -> int | None:
    try:
        return int((meta(obj).get("labels") or {}).get(REPLICA_INDEX_LABEL, ""))
    except ValueError:
        return None


def of_replica_type(objs: list[dict[str, Any]], rtype: str) -> list[dict[str, Any]]:
    return [o for o in objs
            if (meta(o).get("labels") or {}).get(REPLICA_TYPE_LABEL) == rtype.lower()]


def slices(objs: list[dict[str, Any]], replicas: int) -> list[list[dict[str, Any]]]:
    """Objects by replica index: one list per index up to max(replicas, highest + 1)."""
    indexed = [(replica_index(o), o) for o in objs]
    size = max([replicas, *((i + 1) for i, _ in indexed if i is not None and i >= 0)])
    out: list[list[dict[str, Any]]] = [[] for _ in range(size)]
    for index, obj in indexed:
        if index is not None and index >= 0:
            out[index].append(obj)
    return out


def exit_code(pod: Mapping[str, Any], container_name: str) -> int:
    """The framework container's exit code once it has terminated, else NO_EXIT_CODE."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if status.get("name") == container_name and terminated:
            return int(terminated.get("exitCode", 0))
    return NO_EXIT_CODE


def is_retryable_exit_code(code: int) -> bool:
    """Exit codes >= 128 mean the process was killed by a signal: worth another try."""
    return code >= 128


def pod_restart_policy(replica_restart_policy: str) -> str:
    """The pod's restartPolicy: ExitCode pods never restart in place; the operator decides."""
    return "Never" if replica_restart_policy == "ExitCode" else replica_restart_policy


def on_failed_pod(replica_restart_policy: str, code: int) -> str:
    """What a failed pod of this replica type calls for: "restart" (delete and recreate),
    "fail" (the job fails now: ExitCode with a permanent error) or "" (count it)."""
    if replica_restart_policy in ("OnFailure", "Always"):
        return "restart"
    if replica_restart_policy == "ExitCode":
        return "restart" if is_retryable_exit_code(code) else "fail"
    return ""


def count_replica_pod(status: dict[str, Any], rtype: str, pod: Mapping[str, Any]) -> None:
    counts = status.setdefault("replicaStatuses", {}).setdefault(rtype, {})
    current = phase(pod)
    if current == "Running":
        key = "failed" if meta(pod).get("deletionTimestamp") else "active"
    elif current == "Succeeded":
        key = "succeeded"
    elif current == "Failed":
        key = "failed"
    else:
        return
    counts[key] = counts.get(key, 0) + 1


#: Container waiting reasons that mean it cannot start until someone changes something (the
#: image, the pod, the node), as opposed to ContainerCreating or a crash loop.
CANNOT_START_REASONS = frozenset({
    "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError"})
#: The kubelet waits in ContainerCreating, with this message prefix, when the pod's sandbox
#: (its network) could not be made; its event says FailedCreatePodSandBox.
SANDBOX_FAILURE_PREFIX = "Failed to create pod sandbox"


@dataclass(frozen=True)
class StartProblem:
    """Why one pod cannot start: the kubelet's or the scheduler's reason and message."""

    pod: str
    reason: str
    message: str


def start_problem(pod: Mapping[str, Any]) -> StartProblem | None:
    """What keeps a pod from starting: a container waiting for a reason in
    CANNOT_START_REASONS (init containers first) or a failed sandbox, or, unscheduled,
    PodScheduled False with reason Unschedulable. None once nothing does."""
    status = pod.get("status") or {}
    name = f"{meta(pod).get('namespace')}/{meta(pod).get('name')}"
    if phase(pod) not in ("", "Pending", "Running"):
        return None
    for cs in (status.get("initContainerStatuses") or []) + (
            status.get("containerStatuses") or []):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        why, message = waiting.get("reason") or "", waiting.get("message") or ""
        if why in CANNOT_START_REASONS:
            return StartProblem(name, why, message)
        if why == "ContainerCreating" and message.startswith(SANDBOX_FAILURE_PREFIX):
            return StartProblem(name, "FailedCreatePodSandBox", message)
    if phase(pod) in ("", "Pending"):
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and \
                    cond.get("reason") == "Unschedulable":
                return StartProblem(name, "Unschedulable", cond.get("message") or "")
    return None


def created_message(kind: str, name: str, problems: list[StartProblem]) -> str:
    """The Created condition's message: the real one, and while pods cannot start, why
    the first cannot (and how many others cannot)."""
    message = f"{kind} {name} is created."
    if not problems:
        return message
    first = problems[0]
    message += f" Pod {first.pod} cannot start: {first.reason}"
    if first.message:
        message += f": {first.message}"
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more pod(s) cannot start)"
    return message


def set_condition_message(status: dict[str, Any], kind: str, message: str,
                          now: datetime | None = None) -> None:
    """Change the message of an existing condition, keeping its status and reason (which
    `update_job_conditions` treats as no change)."""
    current = get_condition(status, kind)
    if current is not None and current.get("message") != message:
        current["message"] = message
        current["lastUpdateTime"] = rfc3339(now)


def restarts_counted(specs: Mapping[str, Mapping[str, Any]],
                     pods: list[dict[str, Any]]) -> int:
    """Container restarts of running pods of replica types that restart (PastBackoffLimit)."""
    total = 0
    for rtype, spec in specs.items():
        if spec.get("restartPolicy") not in ("OnFailure", "Always", "ExitCode"):
            continue
        for pod in of_replica_type(pods, rtype):
            if phase(pod) != "Running":
                continue
            status = pod.get("status") or {}
            for cs in (status.get("initContainerStatuses") or []) + (
                    status.get("containerStatuses") or []):
                total += int(cs.get("restartCount") or 0)
    return total


def past_backoff_limit(policy: Mapping[str, Any], failures: int) -> bool:
    limit = policy.get("backoffLimit")
    if limit is None:
        return False
    return failures > 0 if limit == 0 else failures >= limit


def deadline_left(policy: Mapping[str, Any], status: Mapping[str, Any],
                  now: datetime) -> float | None:
    """Seconds until activeDeadlineSeconds passes (<= 0: passed), None without one."""
    seconds = policy.get("activeDeadlineSeconds")
    start = parse_time(status.get("startTime"))
    if seconds is None or start is None:
        return None
    return start.timestamp() + float(seconds) - now.timestamp()


def pods_to_clean(policy: Mapping[str, Any], status: Mapping[str, Any],
                  pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pods (and so Services) to delete: all while the job is unfinished (suspended or
    past a limit); once finished, per cleanPodPolicy (Running takes pending ones too)."""
    if not is_finished(status):
        return list(pods)
    clean = policy.get("cleanPodPolicy") or "None"
    if clean == "None":
        return []
    if clean == "Running":
        return [p for p in pods if phase(p) in ("Running", "Pending")]
    return list(pods)


def ttl_left(policy: Mapping[str, Any], status: Mapping[str, Any],
             now: datetime) -> float | None:
    """Seconds until a finished job is deleted (<= 0: now), None when never."""
    ttl = policy.get("ttlSecondsAfterFinished")
    finished = parse_time(status.get("completionTime"))
    if ttl is None or policy.get("suspend") or finished is None:
        return None
    return finished.timestamp() + float(ttl) - now.timestamp()


# -- what the controller creates -------------------------------------------------------


def owner_reference(job: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The controller reference a job's children carry."""
    return controller_ref(job, api_version=API_VERSION, kind=kind)


def new_service(job: Mapping[str, Any], framework: Framework, rtype: str,
                index: int) -> dict[str, Any]:
    """The headless Service of one replica, selecting exactly its pod, on the framework
    container's ports."""
    name = meta(job)["name"]
    labels = replica_labels(framework.controller_name, name, rtype, index)
    spec = replica_specs(job, framework.kind)[rtype]
    ports = [{"name": port_name, "port": port} for port_name, port in
             sorted(container_ports(spec, framework.default_container).items())]
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": framework.pod_name(name, rtype, index),
                         "namespace": meta(job).get("namespace"), "labels": labels,
                         "ownerReferences": [owner_reference(job, framework.kind.kind)]},
            "spec": {"clusterIP": "None", "selector": dict(labels), "ports": ports}}


def new_pod(job: Mapping[str, Any], framework: Framework, rtype: str, index: int, *,
            gang_scheduler: str | None) -> tuple[dict[str, Any], list[Event]]:
    """The pod of one replica, and the warnings its template earns."""
    name = meta(job)["name"]
    specs = replica_specs(job, framework.kind)
    spec = specs[rtype]
    template = copy.deepcopy(spec.get("template") or {})
    template_meta = template.get("metadata") or {}
    pod_spec = template.setdefault("spec", {})
    labels = {**(template_meta.get("labels") or {}),
              **replica_labels(framework.controller_name, name, rtype, index)}
    if framework.is_master_role(specs, rtype, index):
        labels[JOB_ROLE_LABEL] = "master"
    pod_name = framework.pod_name(name, rtype, index)
    framework.set_cluster_spec(job, pod_spec, rtype, index)
    events = []
    if pod_spec.get("restartPolicy"):
        events.append(Event("Warning", "SetPodTemplateRestartPolicy",
                            "Restart policy in pod template will be overwritten by restart "
                            "policy in replica spec"))
    pod_spec["restartPolicy"] = pod_restart_policy(spec.get("restartPolicy") or "")
    if gang_scheduler is not None:
        if any(((s.get("template") or {}).get("spec") or {}).get("schedulerName")
               not in (None, "", gang_scheduler) for s in specs.values()):
            events.append(Event("Warning", "SetPodTemplateSchedulerName",
                                "Another scheduler is specified when gang-scheduling is "
                                "enabled and it will not be overwritten"))
        pod_spec["schedulerName"] = pod_spec.get("schedulerName") or gang_scheduler
        labels[POD_GROUP_LABEL] = name
    # The pod's own name under its Service: `<pod>.<svc>` resolves too.
    pod_spec.setdefault("hostname", pod_name)
    if framework.has_service(rtype):
        pod_spec.setdefault("subdomain", pod_name)
    pod_meta: dict[str, Any] = {
        "name": pod_name, "namespace": meta(job).get("namespace"), "labels": labels,
        "ownerReferences": [owner_reference(job, framework.kind.kind)]}
    if template_meta.get("annotations"):
        pod_meta["annotations"] = dict(template_meta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": pod_spec}, events


def new_pod_group(job: Mapping[str, Any], kind: JobKind) -> dict[str, Any]:
    """The scheduler-plugins PodGroup of a job: minMember is schedulingPolicy.minAvailable,
    else every replica; scheduleTimeoutSeconds and minResources carried over."""
    policy = run_policy(job).get("schedulingPolicy") or {}
    spec: dict[str, Any] = {"minMember": policy.get("minAvailable")
                            if policy.get("minAvailable") is not None
                            else total_replicas(replica_specs(job, kind))}
    if policy.get("scheduleTimeoutSeconds") is not None:
        spec["scheduleTimeoutSeconds"] = policy["scheduleTimeoutSeconds"]
    if policy.get("minResources"):
        spec["minResources"] = dict(policy["minResources"])
    return {"apiVersion": POD_GROUP_API_VERSION, "kind": "PodGroup",
            "metadata": {"name": meta(job)["name"], "namespace": meta(job).get("namespace"),
                         "ownerReferences": [owner_reference(job, kind.kind)]},
            "spec": spec}


# -- frameworks ------------------------------------------------------------------------


class Framework(ABC):
    """What one framework adds to the common controller (the real ControllerInterface)."""

    kind: JobKind
    controller_name: str
    default_container: str
    default_port_name: str
    default_port: int

    def set_defaults(self, job: dict[str, Any]) -> None:
        """Fill in, in memory, what the schema cannot default: the container's port."""
        set_replica_defaults(job, self.kind)
        for spec in replica_specs(job, self.kind).values():
            set_default_port(spec, self.default_container, self.default_port_name,
                             self.default_port)

    @abstractmethod
    def set_cluster_spec(self, job: Mapping[str, Any], pod_spec: dict[str, Any], rtype: str,
                         index: int) -> None:
        """Write what lets this replica find its peers (env, in every container)."""

    def is_master_role(self, specs: Mapping[str, Any], rtype: str, index: int) -> bool:
        """The master: the Master replica if there is one, else Worker 0."""
        if "Master" in specs:
            return rtype == "Master"
        return rtype == "Worker" and index == 0

    def main_container(self, job: Mapping[str, Any], pod: Mapping[str, Any]) -> str:
        """The container whose exit code is the replica's (ExitCode, ExitedWithCode)."""
        return self.default_container

    def pod_name(self, job_name: str, rtype: str, index: int) -> str:
        """The name of one replica's pod (and Service)."""
        return replica_name(job_name, rtype, index)

    def has_service(self, rtype: str) -> bool:
        """Whether each replica of this type gets a headless Service of its pod's name."""
        return True

    def replica_types_in_order(self, specs: Mapping[str, Any]) -> list[str]:
        """The order in which one sync creates the replica types' pods."""
        return sorted(specs)

    @abstractmethod
    def update_job_status(self, job: Mapping[str, Any], status: dict[str, Any],
                          pods: list[dict[str, Any]], now: datetime) -> list[Event]:
        """Running, Succeeded, Restarting or Failed from the replica counts (and the pods,
        for a framework whose rule reads one)."""


def add_env(pod_spec: dict[str, Any], env: list[dict[str, Any]]) -> None:
    """Append variables to every container, as the real operator does."""
    for container in pod_spec.get("containers") or []:
        container["env"] = [*(container.get("env") or []), *copy.deepcopy(env)]


def replica_failure_events(kind: str, name: str, status: dict[str, Any], rtype: str,
                           spec: Mapping[str, Any], now: datetime) -> list[Event]:
    """Restarting or Failed once a replica type has failed pods short of its count."""
    counts = (status.get("replicaStatuses") or {}).get(rtype) or {}
    failed, succeeded, running = (counts.get(k, 0) for k in ("failed", "succeeded", "active"))
    if not (failed > 0 and replicas_of(spec) > succeeded + running):
        return []
    if spec.get("restartPolicy") != "Never":
        message = f"{kind} {name} is restarting because {failed} {rtype} replica(s) failed."
        update_job_conditions(status, RESTARTING, "True", reason(kind, RESTARTING), message, now)
        return [Event("Warning", reason(kind, RESTARTING), message)]
    message = f"{kind} {name} is failed because {failed} {rtype} replica(s) failed."
    status.setdefault("completionTime", rfc3339(now))
    update_job_conditions(status, FAILED, "True", reason(kind, FAILED), message, now)
    return [Event("Normal", reason(kind, FAILED), message)]


def mark_succeeded(kind: str, status: dict[str, Any], message: str,
                   now: datetime) -> list[Event]:
    status.setdefault("completionTime", rfc3339(now))
    update_job_conditions(status, SUCCEEDED, "True", reason(kind, SUCCEEDED), message, now)
    return [Event("Normal", reason(kind, SUCCEEDED), message)]


def mark_running(kind: str, status: dict[str, Any], message: str, now: datetime) -> None:
    update_job_conditions(status, RUNNING, "True", reason(kind, RUNNING), message, now)
