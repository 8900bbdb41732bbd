"""PyTorchJob: torch.distributed (torchrun) jobs of a Master and Workers.

The environment is the real operator's (release-1.9 `pkg/controller.v1/pytorch`), so a
training script or `torchrun` started in the container needs no flags: every container gets
PYTHONUNBUFFERED=1; with a Master, MASTER_ADDR/PET_MASTER_ADDR (`<job>-master-0`, the
master's Service), MASTER_PORT/PET_MASTER_PORT (the master's `pytorchjob-port`), WORLD_SIZE
(replicas x nprocPerNode, a non-numeric nprocPerNode counting as 1), RANK and PET_NODE_RANK
(the Master 0, Worker i i + 1); PET_NPROC_PER_NODE; PET_NNODES (the replica count, or
`min:max` with an elasticPolicy, which adds the rendezvous variables).

Workers of a job with a Master get the `init-pytorch` init container, which waits until the
master's name resolves, as the real operator's does (in the job's image: see
`add_wait_for_master`).

The job succeeds when the Master succeeds; without a Master, when every Worker has (with an
elasticPolicy, when any has).

An elastic job with `elasticPolicy.metrics` gets, as the real operator's `ReconcileHPA`
(v1.9 `hpa.go`) makes it before the pods, an autoscaling/v2 HorizontalPodAutoscaler named
after the job and controlled by it, that scales the job's Workers through the PyTorchJob
scale subresource between elasticPolicy.minReplicas and maxReplicas on those metrics: created
when missing, its spec brought back when it drifts, deleted while the job is suspended.
Like the real operator, a job whose elasticPolicy has no `metrics` is left alone (an HPA it
had stays until the job is deleted).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ...client import ApiError, Informer
from ...machinery.equality import semantically_equal
from ...machinery.meta import owner_reference
from .common import (
    KUBEFLOW_JOBS_CONTROLLER,
    Event,
    Framework,
    add_env,
    container_ports,
    mark_running,
    mark_succeeded,
    meta,
    replica_failure_events,
    replica_name,
    replica_specs,
    replicas_of,
    run_policy,
    total_replicas,
)
from .controller import TrainingJobController
from .crds import API_VERSION, PYTORCH

log = logging.getLogger(__name__)

MASTER, WORKER = "Master", "Worker"
HPA_API_VERSION = "autoscaling/v2"
HPA_PLURAL = "horizontalpodautoscalers"
DEFAULT_NPROC_PER_NODE = "auto"


def nproc_per_node_int(job: Mapping[str, Any]) -> int:
    """nprocPerNode as a count; "auto", "cpu" and "gpu" count as 1 (decided in the pod)."""
    value = (job.get("spec") or {}).get("nprocPerNode")
    try:
        return int(value)
    except (TypeError, ValueError):
        return 1


class PyTorchFramework(Framework):
    kind = PYTORCH
    controller_name = "pytorchjob-controller"
    default_container = PYTORCH.container
    default_port_name = "pytorchjob-port"
    default_port = 23456

    def set_defaults(self, job: dict[str, Any]) -> None:
        super().set_defaults(job)
        spec = job.setdefault("spec", {})
        elastic = spec.get("elasticPolicy")
        if elastic is not None:
            low, high = elastic.get("minReplicas"), elastic.get("maxReplicas")
            if low is None and high is None:
                workers = replica_specs(job, self.kind).get(WORKER)
                low = high = replicas_of(workers) if workers is not None else None
            elastic["minReplicas"] = low if low is not None else high
            elastic["maxReplicas"] = high if high is not None else low
        if (elastic is None or elastic.get("nProcPerNode") is None) and \
                spec.get("nprocPerNode") is None:
            spec["nprocPerNode"] = DEFAULT_NPROC_PER_NODE

    def set_cluster_spec(self, job: Mapping[str, Any], pod_spec: dict[str, Any], rtype: str,
                         index: int) -> None:
        add_env(pod_spec, pytorch_env(job, rtype, index))
        if rtype == WORKER and MASTER in replica_specs(job, self.kind):
            add_wait_for_master(pod_spec, replica_name(meta(job)["name"], MASTER, 0))

    def update_job_status(self, job: Mapping[str, Any], status: dict[str, Any],
                          pods: list[dict[str, Any]], now: datetime) -> list[Event]:
        kind, name = self.kind.kind, meta(job)["name"]
        namespace = meta(job).get("namespace")
        specs = replica_specs(job, self.kind)
        elastic = (job.get("spec") or {}).get("elasticPolicy") is not None
        events: list[Event] = []
        for rtype in sorted(specs):
            spec = specs[rtype]
            counts = (status.get("replicaStatuses") or {}).get(rtype) or {}
            succeeded, running = counts.get("succeeded", 0), counts.get("active", 0)
            expected = replicas_of(spec) - succeeded
            if MASTER in specs:
                if rtype == MASTER:
                    if running > 0:
                        mark_running(kind, status, f"{kind} {name} is running.", now)
                    if expected == 0:
                        return events + mark_succeeded(
                            kind, status, f"{kind} {name} is successfully completed.", now)
            elif rtype == WORKER:
                if expected == 0 or (elastic and succeeded > 0):
                    events += mark_succeeded(
                        kind, status, f"{kind} {namespace}/{name} successfully completed.", now)
                elif running > 0:
                    mark_running(kind, status, f"{kind} {namespace}/{name} is running.", now)
            events += replica_failure_events(kind, name, status, rtype, spec, now)
        return events


#: The init container's program: wait until the master's name resolves, as the real
#: operator's `nslookup` loop does (100 tries); ours is Python, which every image here has.
WAIT_FOR_MASTER = (
    "import socket, sys, time\n"
    "for _ in range(100):\n"
    "    try:\n"
    "        socket.getaddrinfo(sys.argv[1], None)\n"
    "        sys.exit(0)\n"
    "    except OSError:\n"
    "        print('waiting for master', sys.argv[1], flush=True)\n"
    "        time.sleep(2)\n"
    "sys.exit(1)\n")
INIT_CONTAINER = "init-pytorch"


def add_wait_for_master(pod_spec: dict[str, Any], master: str) -> None:
    """A Worker starts once its Master's name resolves: the real operator prepends the
    `init-pytorch` container (an alpine image running `nslookup`) for that; here it runs in
    the replica's own image, since an image is a Python environment."""
    containers = pod_spec.get("containers") or [{}]
    main = next((c for c in containers if c.get("name") == PYTORCH.container), containers[0])
    init = pod_spec.setdefault("initContainers", [])
    if any(c.get("name") == INIT_CONTAINER for c in init):
        return
    init.insert(0, {"name": INIT_CONTAINER, "image": main.get("image"),
                    "imagePullPolicy": main.get("imagePullPolicy", "IfNotPresent"),
                    "command": ["python", "-c", WAIT_FOR_MASTER, master],
                    "resources": {"limits": {"memory": "128Mi"},
                                  "requests": {"cpu": "50m", "memory": "20Mi"}}})


def pytorch_env(job: Mapping[str, Any], rtype: str, index: int) -> list[dict[str, str]]:
    """The variables the real operator gives each container of one replica."""
    spec = job.get("spec") or {}
    specs = replica_specs(job, PYTORCH)
    total = total_replicas(specs)
    env = [{"name": "PYTHONUNBUFFERED", "value": "1"}]
    if MASTER in specs:
        port = str(_port(specs[MASTER]))
        address = replica_name(meta(job)["name"], MASTER, 0)
        rank = str(index + 1 if rtype.lower() == WORKER.lower() else index)
        env += [{"name": "MASTER_PORT", "value": port},
                {"name": "PET_MASTER_PORT", "value": port},
                {"name": "MASTER_ADDR", "value": address},
                {"name": "PET_MASTER_ADDR", "value": address},
                {"name": "WORLD_SIZE", "value": str(total * nproc_per_node_int(job))},
                {"name": "RANK", "value": rank},
                {"name": "PET_NODE_RANK", "value": rank}]
    if spec.get("nprocPerNode") is not None:
        env.append({"name": "PET_NPROC_PER_NODE", "value": str(spec["nprocPerNode"])})
    elastic = spec.get("elasticPolicy")
    if elastic is None:
        env.append({"name": "PET_NNODES", "value": str(total)})
    else:
        env += elastic_env(job, elastic)
    return env


def _port(replica: Mapping[str, Any]) -> int:
    port = container_ports(replica, PyTorchFramework.default_container).get(
        PyTorchFramework.default_port_name)
    if port is None:
        raise ValueError("port not found")
    return port


def elastic_env(job: Mapping[str, Any], elastic: Mapping[str, Any]) -> list[dict[str, str]]:
    """torchrun's rendezvous settings, as PET_* variables."""
    specs = replica_specs(job, PYTORCH)
    host = elastic.get("rdzvHost") or f"{meta(job)['name']}-worker-0"
    port = elastic.get("rdzvPort")
    if port is None:
        port = _port(specs[WORKER])
    low, high = elastic.get("minReplicas"), elastic.get("maxReplicas")
    nnodes = str(replicas_of(specs[WORKER])) if low is None and high is None else f"{low}:{high}"
    env = [{"name": "PET_RDZV_ENDPOINT", "value": f"{host}:{port}"},
           {"name": "PET_RDZV_BACKEND", "value": elastic.get("rdzvBackend") or "c10d"},
           {"name": "PET_NNODES", "value": nnodes}]
    if elastic.get("maxRestarts") is not None:
        env.append({"name": "PET_MAX_RESTARTS", "value": str(elastic["maxRestarts"])})
    if elastic.get("nProcPerNode") is not None:
        env.append({"name": "PET_NPROC_PER_NODE", "value": str(elastic["nProcPerNode"])})
    if elastic.get("rdzvId") is not None:
        env.append({"name": "PET_RDZV_ID", "value": elastic["rdzvId"]})
    if elastic.get("rdzvConf"):
        env.append({"name": "PET_RDZV_CONF", "value": ",".join(
            f"{c.get('key', '')}={c.get('value', '')}" for c in elastic["rdzvConf"])})
    if elastic.get("standalone"):
        env.append({"name": "PET_STANDALONE", "value": ""})
    return env


def desired_hpa(job: Mapping[str, Any]) -> dict[str, Any]:
    """desiredHPA: the job's HorizontalPodAutoscaler, its Workers scaled between the
    elasticPolicy's bounds on its metrics (a defaulted job: both bounds are set)."""
    elastic = (job.get("spec") or {}).get("elasticPolicy") or {}
    spec: dict[str, Any] = {"scaleTargetRef": {"kind": PYTORCH.kind, "name": meta(job)["name"],
                                               "apiVersion": API_VERSION}}
    if elastic.get("minReplicas") is not None:
        spec["minReplicas"] = elastic["minReplicas"]
    spec["maxReplicas"] = elastic.get("maxReplicas")
    spec["metrics"] = copy.deepcopy(elastic.get("metrics"))
    return {"apiVersion": HPA_API_VERSION, "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": meta(job)["name"], "namespace": meta(job).get("namespace"),
                         "ownerReferences": [owner_reference(dict(job))]},
            "spec": spec}


class PyTorchJobController(TrainingJobController):
    name = "pytorchjob-controller"
    framework = PyTorchFramework()

    def setup(self) -> None:
        super().setup()
        self.hpas: Informer = self.context.informers.informer(HPA_API_VERSION, HPA_PLURAL)

    async def reconcile(self, key: str) -> float | None:
        """The job's HorizontalPodAutoscaler first, then its pods and Services, as the real
        operator's Reconcile calls ReconcileHPA before ReconcileJobs."""
        cached = self.jobs.get(key)
        elastic = ((cached or {}).get("spec") or {}).get("elasticPolicy") or {}
        if cached is not None and elastic.get("metrics") is not None and \
                not meta(cached).get("deletionTimestamp") and \
                run_policy(cached).get("managedBy") in (None, KUBEFLOW_JOBS_CONTROLLER):
            job = copy.deepcopy(cached)
            job["apiVersion"], job["kind"] = API_VERSION, PYTORCH.kind
            self.framework.set_defaults(job)
            await self.reconcile_hpa(job)
        return await super().reconcile(key)

    async def reconcile_hpa(self, job: dict[str, Any]) -> None:
        """ReconcileHPA: create, update or (while the job is suspended) delete the HPA of a
        job whose elasticPolicy has metrics. A write the cache has not seen yet meets a
        conflict, which the next sync settles."""
        elastic = (job.get("spec") or {}).get("elasticPolicy")
        if elastic is None or elastic.get("metrics") is None:
            return
        expected = desired_hpa(job)
        namespace, name = meta(job).get("namespace"), meta(job)["name"]
        current = self.hpas.get(f"{namespace}/{name}")
        suspended = bool(run_policy(job).get("suspend"))
        try:
            if current is None:
                if not suspended:
                    log.info("creating HPA %s/%s", namespace, name)
                    await self.client.create(HPA_API_VERSION, HPA_PLURAL, expected, namespace)
                return
            if suspended:
                log.info("deleting HPA %s/%s: the job is suspended", namespace, name)
                await self.client.delete(HPA_API_VERSION, HPA_PLURAL, name, namespace)
                return
            if not semantically_equal(expected["spec"], current.get("spec") or {}):
                log.info("updating HPA %s/%s", namespace, name)
                expected["metadata"]["resourceVersion"] = meta(current).get("resourceVersion")
                await self.client.replace(HPA_API_VERSION, HPA_PLURAL, expected)
        except ApiError as err:
            if not (err.conflict or err.not_found):
                raise
