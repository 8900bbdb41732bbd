"""MPIJob (`kubeflow.org/v1`): an `mpirun` launcher and the workers it starts ranks on.

As the real v1 controller (release-1.9 `pkg/controller.v1/mpi`) does, the launcher does not
reach its workers over ssh: Open MPI's rsh agent (and Intel MPI's hydra bootstrap) is
`/etc/mpi/kubexec.sh <pod> <command>`, which runs `kubectl exec <pod> -- /bin/sh -c
"<command>"`. So for a job `<job>` the controller keeps, owned by the job:

- the ConfigMap `<job>-config`: `hostfile` (`<job>-worker-<i> slots=<slotsPerWorker>` per
  worker, the launcher first when it asks for a GPU), `kubexec.sh` (with `--container
  <mainContainer>` when set) and `discover_hosts.sh` (an `echo <pod>:<slots>` per Running
  worker, for Horovod's elastic mode), mounted at /etc/mpi (workers get only kubexec.sh);
- the launcher's ServiceAccount (or the template's serviceAccountName), a Role
  `<job>-launcher` that may get/list/watch pods and exec into the workers by name, and a
  RoleBinding `<job>-launcher` granting it;
- the worker pods `<job>-worker-<i>` (first container `sleep 365d` unless it has a
  command), then the launcher pod `<job>-launcher`, which starts once they run (its
  `kubectl-delivery` init container) and whose first container gets
  OMPI_MCA_plm_rsh_agent and OMPI_MCA_orte_default_hostfile, Intel MPI's
  I_MPI_HYDRA_BOOTSTRAP(=rsh) and I_MPI_HYDRA_BOOTSTRAP_EXEC unless the user set them (v1
  has no mpiImplementation field: it sets both families), and empty NVIDIA_* variables
  unless the launcher asks for a GPU.

The launcher decides: the job succeeds when the launcher succeeds, fails when it fails
(reason the pod's, e.g. Evicted as MPIJobEvicted), or when a worker fails under restart
policy Never. cleanPodPolicy defaults to None; the deprecated spec.cleanPodPolicy counts
when runPolicy leaves it unset. Restart policies, backoffLimit, deadlines, suspension,
gang scheduling and status are the common controller's. There is no webhook (as real v1):
the controller applies ValidateV1MpiJobSpec's rules (`validation.py`).

Departures, each so the job works here and says so:

- The launcher's `kubectl-delivery` init container runs in the launcher's own image, not
  the mpioperator/kubectl-delivery image. Like the real one it waits until every worker
  in the hostfile is Running (`kubectl wait` on their phase; mpirun's first `kubectl exec`
  into a worker whose container has not started fails, and with it the job), with the
  real one's NAMESPACE, /etc/mpi mount and CPU and memory (not its 5Gi ephemeral-storage,
  which a laptop's node may not have to spare). It copies no kubectl binary into
  /opt/kube: kubexec.sh calls `kubectl` from the container's PATH. Under the process and
  sandbox runtimes that is the node's /usr/bin/kubectl (the sandbox binds the host's root
  read-only), which uses the pod's service-account token in-cluster; an image run by a
  container engine must bring its own kubectl, as for any image without one.
- Each worker gets the common controller's headless Service `<job>-worker-<i>` (hostname
  and subdomain set on its pod), which real v1 does not make: the hostfile's names then
  resolve through cluster DNS, as tools that look the hosts up (Intel MPI's hydra, Open
  MPI's checks, a user's script) expect. The launcher has none.
- The Role grants `get` as well as `create` on `pods/exec` (real v1: `create`). kubectl
  1.30+ execs over a WebSocket, a GET, which this API server authorizes as Kubernetes 1.35
  does (AuthorizePodWebsocketUpgradeCreatePermission: `get` and `create`); a real cluster
  lets a `create`-only role through kubectl's fallback to SPDY, which this server does
  not serve. With no workers the Role grants no `pods/exec` (real v1 would grant it on
  every pod of the namespace, its resourceNames being empty).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ...client import ApiError, Informer
from ...machinery.meta import rfc3339
from .common import (
    FAILED,
    RUNNING,
    Event,
    Framework,
    condition_true,
    mark_running,
    mark_succeeded,
    meta,
    of_replica_type,
    on_failed_pod,
    owner_reference,
    phase,
    reason,
    replica_failure_events,
    replica_name,
    replica_specs,
    replicas_of,
    set_replica_defaults,
    update_job_conditions,
)
from .controller import TrainingJobController
from .crds import MPI

LAUNCHER, WORKER = "Launcher", "Worker"
CONFIG_VOLUME = "mpi-job-config"
CONFIG_MOUNT_PATH = "/etc/mpi"
KUBEXEC, HOSTFILE, DISCOVER_HOSTS = "kubexec.sh", "hostfile", "discover_hosts.sh"
SCRIPT_MODE, HOSTFILE_MODE = 0o555, 0o444
KUBECTL_DELIVERY = "kubectl-delivery"
#: The real init container's CPU and memory (requests equal limits).
KUBECTL_DELIVERY_RESOURCES = {"cpu": "100m", "memory": "512Mi"}
INTEL_MPI_DEFAULT_BOOTSTRAP = "rsh"
EVICTED_REASON = "MPIJobEvicted"
#: How soon to try again when a ConfigMap, Role or RoleBinding of the job's name is
#: someone else's.
DEPENDENT_RETRY_SECONDS = 10.0


def launcher_name(job_name: str) -> str:
    return f"{job_name}-launcher"


def config_map_name(job_name: str) -> str:
    return f"{job_name}-config"


def slots_per_worker(job: Mapping[str, Any]) -> int:
    value = (job.get("spec") or {}).get("slotsPerWorker")
    return 1 if value is None else int(value)


def worker_count(job: Mapping[str, Any]) -> int:
    spec = replica_specs(job, MPI).get(WORKER)
    return 0 if spec is None else replicas_of(spec)


def _first_container(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    containers = (((spec or {}).get("template") or {}).get("spec") or {}).get("containers")
    return containers[0] if containers else {}


def is_gpu_launcher(job: Mapping[str, Any]) -> bool:
    """The launcher asks for a GPU (a limit named `*.com/gpu` or containing `gpu`): it then
    runs ranks too, so it heads the hostfile and keeps the NVIDIA variables."""
    launcher = replica_specs(job, MPI).get(LAUNCHER) or {}
    for container in ((launcher.get("template") or {}).get("spec") or {}).get(
            "containers") or []:
        for key in ((container.get("resources") or {}).get("limits") or {}):
            if key.endswith(".com/gpu") or "gpu" in key:
                return True
    return False


def hostfile(job: Mapping[str, Any]) -> str:
    name, slots = meta(job)["name"], slots_per_worker(job)
    lines = [f"{launcher_name(name)} slots={slots}"] if is_gpu_launcher(job) else []
    lines += [f"{replica_name(name, WORKER, i)} slots={slots}"
              for i in range(worker_count(job))]
    return "".join(f"{line}\n" for line in lines)


def kubexec_script(job: Mapping[str, Any]) -> str:
    """The rsh agent: run the command in the named pod (its main container if set)."""
    main = (job.get("spec") or {}).get("mainContainer")
    container = f" --container {main}" if main else ""
    return ("#!/bin/sh\nset -x\nPOD_NAME=$1\nshift\n"
            f'kubectl exec ${{POD_NAME}}{container} -- /bin/sh -c "$*"')


def discover_hosts_script(job: Mapping[str, Any], running_workers: list[str]) -> str:
    """Horovod's host discovery: each Running worker (and a GPU launcher) with its slots."""
    slots = slots_per_worker(job)
    lines = ["#!/bin/sh"]
    if is_gpu_launcher(job):
        lines.append(f"echo {launcher_name(meta(job)['name'])}:{slots}")
    lines += [f"echo {pod}:{slots}" for pod in sorted(running_workers)]
    return "\n".join(lines)


def _owned_meta(job: Mapping[str, Any], name: str) -> dict[str, Any]:
    return {"name": name, "namespace": meta(job).get("namespace"),
            "labels": {"app": meta(job)["name"]},
            "ownerReferences": [owner_reference(job, MPI.kind)]}


def new_config_map(job: Mapping[str, Any], running_workers: list[str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _owned_meta(job, config_map_name(meta(job)["name"])),
            "data": {HOSTFILE: hostfile(job), KUBEXEC: kubexec_script(job),
                     DISCOVER_HOSTS: discover_hosts_script(job, running_workers)}}


def launcher_service_account(job: Mapping[str, Any]) -> str:
    """The launcher's ServiceAccount: the template's, else `<job>-launcher`."""
    template = (replica_specs(job, MPI).get(LAUNCHER) or {}).get("template") or {}
    return (template.get("spec") or {}).get("serviceAccountName") or \
        launcher_name(meta(job)["name"])


def new_service_account(job: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": _owned_meta(job, launcher_service_account(job))}


def new_launcher_role(job: Mapping[str, Any]) -> dict[str, Any]:
    """Read pods, and exec into this job's workers by name."""
    name = meta(job)["name"]
    rules: list[dict[str, Any]] = [
        {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods"]}]
    workers = [replica_name(name, WORKER, i) for i in range(worker_count(job))]
    if workers:
        rules.append({"verbs": ["create", "get"], "apiGroups": [""], "resources": ["pods/exec"],
                      "resourceNames": workers})
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": _owned_meta(job, launcher_name(name)), "rules": rules}


def new_launcher_role_binding(job: Mapping[str, Any]) -> dict[str, Any]:
    name = meta(job)["name"]
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": _owned_meta(job, launcher_name(name)),
            "subjects": [{"kind": "ServiceAccount", "name": launcher_service_account(job),
                          "namespace": meta(job).get("namespace")}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": launcher_name(name)}}


def _config_volume(job_name: str, items: list[tuple[str, int]]) -> dict[str, Any]:
    return {"name": CONFIG_VOLUME, "configMap": {
        "name": config_map_name(job_name),
        "items": [{"key": key, "path": key, "mode": mode} for key, mode in items]}}


def _mount_config(pod_spec: dict[str, Any], job_name: str, items: list[tuple[str, int]]
                  ) -> dict[str, Any]:
    """Mount the job's ConfigMap at /etc/mpi in the first container; return that container."""
    container = pod_spec["containers"][0]
    container["volumeMounts"] = [*(container.get("volumeMounts") or []),
                                 {"name": CONFIG_VOLUME, "mountPath": CONFIG_MOUNT_PATH}]
    pod_spec["volumes"] = [*(pod_spec.get("volumes") or []), _config_volume(job_name, items)]
    return container


def add_kubectl_delivery(pod_spec: dict[str, Any], job: Mapping[str, Any]) -> None:
    """Append the launcher's `kubectl-delivery` init container, which ends once every
    worker pod is Running (see the module docstring for how it differs from the real one).
    Call before the ConfigMap volume is added to the pod."""
    main = pod_spec["containers"][0]
    workers = [f"pod/{replica_name(meta(job)['name'], WORKER, i)}"
               for i in range(worker_count(job))]
    command = ["kubectl", "wait", "--for=jsonpath={.status.phase}=Running",
               "--timeout=-1s", *workers] if workers else ["true"]
    pod_spec["initContainers"] = [*(pod_spec.get("initContainers") or []), {
        "name": KUBECTL_DELIVERY, "image": main.get("image"),
        "imagePullPolicy": main.get("imagePullPolicy", "IfNotPresent"),
        "command": command,
        "env": [{"name": "NAMESPACE", "value": meta(job).get("namespace", "")}],
        "volumeMounts": [{"name": CONFIG_VOLUME, "mountPath": CONFIG_MOUNT_PATH}],
        "resources": {"limits": dict(KUBECTL_DELIVERY_RESOURCES),
                      "requests": dict(KUBECTL_DELIVERY_RESOURCES)}}]


def launcher_env(job: Mapping[str, Any], existing: list[Mapping[str, Any]]
                 ) -> list[dict[str, str]]:
    """What the launcher's first container gets beside its own `existing` variables."""
    kubexec = f"{CONFIG_MOUNT_PATH}/{KUBEXEC}"
    env = [{"name": "OMPI_MCA_plm_rsh_agent", "value": kubexec},
           {"name": "OMPI_MCA_orte_default_hostfile",
            "value": f"{CONFIG_MOUNT_PATH}/{HOSTFILE}"}]
    if not is_gpu_launcher(job):
        env += [{"name": "NVIDIA_VISIBLE_DEVICES", "value": ""},
                {"name": "NVIDIA_DRIVER_CAPABILITIES", "value": ""}]
    names = {e.get("name") for e in existing}
    if "I_MPI_HYDRA_BOOTSTRAP" not in names:
        env.append({"name": "I_MPI_HYDRA_BOOTSTRAP", "value": INTEL_MPI_DEFAULT_BOOTSTRAP})
    if "I_MPI_HYDRA_BOOTSTRAP_EXEC" not in names:
        env.append({"name": "I_MPI_HYDRA_BOOTSTRAP_EXEC", "value": kubexec})
    return env


class MPIFramework(Framework):
    kind = MPI
    controller_name = "mpijob-controller"
    default_container = MPI.container
    default_port_name = "mpi-port"
    default_port = 9999

    def set_defaults(self, job: dict[str, Any]) -> None:
        """SetDefaults_MPIJob: cleanPodPolicy from runPolicy, else spec, else None (both
        fields then agree); Launcher 1 and Worker 0 replicas, restart policy Never; one slot
        per worker. No default port: MPI's ranks find each other through mpirun."""
        spec = job.setdefault("spec", {})
        policy = spec.setdefault("runPolicy", {})
        clean = policy.get("cleanPodPolicy") or spec.get("cleanPodPolicy") or "None"
        policy["cleanPodPolicy"] = spec["cleanPodPolicy"] = clean
        if spec.get("slotsPerWorker") is None:
            spec["slotsPerWorker"] = 1
        set_replica_defaults(job, self.kind)

    def main_container(self, job: Mapping[str, Any], pod: Mapping[str, Any]) -> str:
        main = (job.get("spec") or {}).get("mainContainer")
        if main:
            return main
        containers = (pod.get("spec") or {}).get("containers") or [{}]
        return containers[0].get("name") or self.default_container

    def pod_name(self, job_name: str, rtype: str, index: int) -> str:
        return launcher_name(job_name) if rtype == LAUNCHER else \
            replica_name(job_name, rtype, index)

    def has_service(self, rtype: str) -> bool:
        return rtype == WORKER

    def replica_types_in_order(self, specs: Mapping[str, Any]) -> list[str]:
        """Workers first: the launcher starts mpirun on them."""
        return sorted(specs, key=lambda rtype: (rtype == LAUNCHER, rtype))

    def is_master_role(self, specs: Mapping[str, Any], rtype: str, index: int) -> bool:
        return rtype == LAUNCHER

    def set_cluster_spec(self, job: Mapping[str, Any], pod_spec: dict[str, Any], rtype: str,
                         index: int) -> None:
        if not pod_spec.get("containers"):
            return
        name = meta(job)["name"]
        if rtype != LAUNCHER:
            # Open MPI checks for the rsh agent's path on every rank.
            container = _mount_config(pod_spec, name, [(KUBEXEC, SCRIPT_MODE)])
            if not container.get("command"):
                container["command"], container["args"] = ["sleep"], ["365d"]
            return
        pod_spec["serviceAccountName"] = launcher_service_account(job)
        add_kubectl_delivery(pod_spec, job)
        container = _mount_config(pod_spec, name, [(KUBEXEC, SCRIPT_MODE),
                                                   (HOSTFILE, HOSTFILE_MODE),
                                                   (DISCOVER_HOSTS, SCRIPT_MODE)])
        existing = container.get("env") or []
        container["env"] = [*existing, *launcher_env(job, existing)]

    def update_job_status(self, job: Mapping[str, Any], status: dict[str, Any],
                          pods: list[dict[str, Any]], now: datetime) -> list[Event]:
        kind, name = self.kind.kind, meta(job)["name"]
        namespace = meta(job).get("namespace")
        specs = replica_specs(job, self.kind)
        counts = (status.get("replicaStatuses") or {}).get(LAUNCHER) or {}
        if counts.get("succeeded", 0) > 0:
            return mark_succeeded(kind, status, f"{kind} {namespace}/{name} successfully "
                                                f"completed.", now)
        launcher = next((p for p in of_replica_type(pods, LAUNCHER)
                         if not meta(p).get("deletionTimestamp")), None)
        if launcher is not None and phase(launcher) == "Failed" and on_failed_pod(
                (specs.get(LAUNCHER) or {}).get("restartPolicy") or "", 0) == "":
            return self._launcher_failed(status, launcher, f"{kind} {namespace}/{name} has "
                                                           f"failed", now)
        workers = [p for p in of_replica_type(pods, WORKER)
                   if not meta(p).get("deletionTimestamp")]
        evicted = sum(phase(p) == "Failed" and (p.get("status") or {}).get("reason") ==
                      "Evicted" for p in workers)
        if evicted:
            message = f"{evicted}/{len(workers)} workers are evicted"
            update_job_conditions(status, FAILED, "True", EVICTED_REASON, message, now)
            return [Event("Warning", EVICTED_REASON, message)]
        events: list[Event] = []
        if counts.get("active", 0) > 0 and not condition_true(status, RUNNING):
            message = f"{kind} {namespace}/{name} is running."
            mark_running(kind, status, message, now)
            events.append(Event("Normal", reason(kind, RUNNING), message))
        if WORKER in specs:
            events += replica_failure_events(kind, name, status, WORKER, specs[WORKER], now)
        return events

    def _launcher_failed(self, status: dict[str, Any], launcher: Mapping[str, Any],
                         message: str, now: datetime) -> list[Event]:
        """Failed, with the launcher pod's reason (Evicted as MPIJobEvicted, which leaves
        completionTime unset, as real)."""
        why = (launcher.get("status") or {}).get("reason") or reason(self.kind.kind, FAILED)
        events = [Event("Warning", why, message)]
        if why == "Evicted":
            why = EVICTED_REASON
        else:
            status.setdefault("completionTime", rfc3339(now))
        update_job_conditions(status, FAILED, "True", why, message, now)
        return events


class MPIJobController(TrainingJobController):
    """The common controller, plus the job's ConfigMap and its launcher's RBAC."""

    name = "mpijob-controller"
    framework = MPIFramework()

    def setup(self) -> None:
        super().setup()
        informers = self.context.informers
        self.config_maps: Informer = informers.informer("v1", "configmaps")
        self.service_accounts: Informer = informers.informer("v1", "serviceaccounts")
        self.roles: Informer = informers.informer("rbac.authorization.k8s.io/v1", "roles")
        self.role_bindings: Informer = informers.informer("rbac.authorization.k8s.io/v1",
                                                          "rolebindings")
        for informer in (self.config_maps, self.roles, self.role_bindings):
            informer.add_handler(self._on_child)

    async def reconcile_dependents(self, job: dict[str, Any], pods: list[dict[str, Any]],
                                   events: list[Event]) -> float | None:
        """ServiceAccount, ConfigMap (its hostfile and discover_hosts.sh kept current),
        Role (its worker names kept current) and RoleBinding, as real: each created when
        missing; one of the same name the job does not control stops the sync with an
        ErrResourceExists warning (the ServiceAccount may be the user's own)."""
        running = [meta(p)["name"] for p in of_replica_type(pods, WORKER)
                   if phase(p) == "Running" and not meta(p).get("deletionTimestamp")]
        wanted = [
            (self.service_accounts, "v1", "serviceaccounts", new_service_account(job), ()),
            (self.config_maps, "v1", "configmaps", new_config_map(job, running), ("data",)),
            (self.roles, "rbac.authorization.k8s.io/v1", "roles", new_launcher_role(job),
             ("rules",)),
            (self.role_bindings, "rbac.authorization.k8s.io/v1", "rolebindings",
             new_launcher_role_binding(job), ()),
        ]
        for informer, api_version, plural, desired, kept in wanted:
            namespace, name = meta(desired)["namespace"], meta(desired)["name"]
            current = informer.get(f"{namespace}/{name}")
            if current is None:
                await self._create_dependent(api_version, plural, desired, events)
                continue
            if plural == "serviceaccounts":
                continue
            if not any(ref.get("controller") and ref.get("uid") == meta(job)["uid"]
                       for ref in meta(current).get("ownerReferences") or []):
                events.append(Event("Warning", "ErrResourceExists",
                                    f'Resource "{name}" of MPIJobKind "{desired["kind"]}" '
                                    f"already exists and is not managed by MPIJob"))
                return DEPENDENT_RETRY_SECONDS
            if any(current.get(key) != desired[key] for key in kept):
                body = copy.deepcopy(desired)
                body["metadata"]["resourceVersion"] = meta(current).get("resourceVersion")
                try:
                    await self.client.replace(api_version, plural, body)
                except ApiError as err:
                    if not (err.conflict or err.not_found):  # the cache catches up
                        raise
        return None

    async def _create_dependent(self, api_version: str, plural: str, desired: dict[str, Any],
                                events: list[Event]) -> None:
        try:
            await self.client.create(api_version, plural, desired)
        except ApiError as err:
            if err.conflict:  # made by an earlier sync the cache has not shown yet
                return
            events.append(Event("Warning", f"FailedCreate{desired['kind']}",
                                f"Error creating: {err}"))
            raise
        events.append(Event("Normal", f"SuccessfulCreate{desired['kind']}",
                            f"Created {desired['kind']}: {meta(desired)['name']}"))
