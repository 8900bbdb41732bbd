"""TFJob: TensorFlow's distributed strategies, configured through TF_CONFIG.

A distributed job (more than one replica in all) gives the `tensorflow` container of each
replica TF_CONFIG as the real operator writes it: the cluster (each replica type present,
lowercased, to its replicas' `<name>.<namespace>.svc:<port>` endpoints), this replica's
task (type and index) and `"environment": "cloud"`; with enableDynamicWorker, the sparse
form (a worker sees the PS and itself only). The port is the container's `tfjob-port`,
2222 by default.

The job succeeds when its Chief or Master does; without one, when every Worker has (or,
unless successPolicy is AllWorkers, as soon as Worker 0 has exited 0). A failed replica
fails the job, unless the job is already restarting one or the replica is a Worker of a
job with enableDynamicWorker.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ...machinery.meta import rfc3339
from .common import (
    FAILED,
    RESTARTING,
    Event,
    Framework,
    container_ports,
    exit_code,
    get_condition,
    mark_running,
    mark_succeeded,
    meta,
    of_replica_type,
    phase,
    reason,
    replica_index,
    replica_name,
    replica_specs,
    replicas_of,
    total_replicas,
    update_job_conditions,
)
from .controller import TrainingJobController
from .crds import TENSORFLOW

CHIEF, EVALUATOR, MASTER, PS, WORKER = "Chief", "Evaluator", "Master", "PS", "Worker"
#: The order the real operator walks the replica types in.
ALL_TYPES = (CHIEF, EVALUATOR, MASTER, PS, WORKER)
ALL_WORKERS = "AllWorkers"


class TensorFlowFramework(Framework):
    kind = TENSORFLOW
    controller_name = "tfjob-controller"
    default_container = TENSORFLOW.container
    default_port_name = "tfjob-port"
    default_port = 2222

    def set_defaults(self, job: dict[str, Any]) -> None:
        super().set_defaults(job)
        job.setdefault("spec", {}).setdefault("successPolicy", "")

    def set_cluster_spec(self, job: Mapping[str, Any], pod_spec: dict[str, Any], rtype: str,
                         index: int) -> None:
        if total_replicas(replica_specs(job, self.kind)) == 1:
            return  # local training: no TF_CONFIG
        config = tf_config(job, rtype, index)
        for container in pod_spec.get("containers") or []:
            if container.get("name") == self.default_container:
                container["env"] = [*(container.get("env") or []),
                                    {"name": "TF_CONFIG", "value": config}]
                return

    def is_master_role(self, specs: Mapping[str, Any], rtype: str, index: int) -> bool:
        if CHIEF in specs or MASTER in specs:
            return rtype in (CHIEF, MASTER)
        return rtype == WORKER and index == 0

    def update_job_status(self, job: Mapping[str, Any], status: dict[str, Any],
                          pods: list[dict[str, Any]], now: datetime) -> list[Event]:
        kind, name = self.kind.kind, meta(job)["name"]
        namespace = meta(job).get("namespace")
        specs = replica_specs(job, self.kind)
        spec_of_job = job.get("spec") or {}
        restarting = get_condition(status, RESTARTING)
        has_chief = CHIEF in specs or MASTER in specs
        done = f"{kind} {namespace}/{name} successfully completed."
        events: list[Event] = []
        for rtype in ALL_TYPES:
            spec = specs.get(rtype)
            if spec is None:
                continue
            counts = (status.get("replicaStatuses") or {}).get(rtype) or {}
            expected = replicas_of(spec) - counts.get("succeeded", 0)
            running, failed = counts.get("active", 0), counts.get("failed", 0)
            if has_chief:
                if rtype in (CHIEF, MASTER):
                    if running > 0:
                        mark_running(kind, status, f"{kind} {namespace}/{name} is running.", now)
                    if expected == 0:
                        events += mark_succeeded(kind, status, done, now)
            elif rtype == WORKER:
                if expected == 0 or (worker0_completed(pods, self.default_container)
                                     and spec_of_job.get("successPolicy") != ALL_WORKERS):
                    events += mark_succeeded(kind, status, done, now)
                elif running > 0:
                    mark_running(kind, status, f"{kind} {namespace}/{name} is running.", now)
            if failed > 0:
                if restarting is not None:
                    update_job_conditions(status, RESTARTING, "True", restarting["reason"],
                                          restarting["message"], now)
                elif not (spec_of_job.get("enableDynamicWorker") and rtype == WORKER):
                    message = (f"{kind} {namespace}/{name} has failed because {failed} {rtype} "
                               f"replica(s) failed.")
                    events.append(Event("Normal", reason(kind, FAILED), message))
                    status.setdefault("completionTime", rfc3339(now))
                    update_job_conditions(status, FAILED, "True", reason(kind, FAILED), message,
                                          now)
        return events


def worker0_completed(pods: list[dict[str, Any]], container: str) -> bool:
    """Worker 0 has succeeded with its framework container exiting 0."""
    return any(replica_index(p) == 0 and phase(p) == "Succeeded" and exit_code(p, container) == 0
               for p in of_replica_type(pods, WORKER))


def cluster_spec(job: Mapping[str, Any]) -> dict[str, list[str]]:
    """Each replica type (lowercased) to its replicas' Service endpoints."""
    name, namespace = meta(job)["name"], meta(job).get("namespace")
    cluster = {}
    for rtype, spec in replica_specs(job, TENSORFLOW).items():
        port = container_ports(spec, TensorFlowFramework.default_container).get(
            TensorFlowFramework.default_port_name, TensorFlowFramework.default_port)
        cluster[rtype.lower()] = [f"{replica_name(name, rtype, i)}.{namespace}.svc:{port}"
                                  for i in range(replicas_of(spec))]
    return dict(sorted(cluster.items()))


def tf_config(job: Mapping[str, Any], rtype: str, index: int) -> str:
    """TF_CONFIG as the real operator serializes it (Go's compact JSON, keys in order)."""
    cluster = cluster_spec(job)
    task = {"type": rtype.lower(), "index": index}
    if (job.get("spec") or {}).get("enableDynamicWorker"):
        sparse: dict[str, Any] = {"worker": {}, "ps": []}
        if rtype.lower() == "ps":
            sparse["ps"] = [cluster["ps"][index]]
        elif rtype.lower() == "worker":
            sparse["ps"] = cluster.get("ps")  # null without PS, as Go writes a nil slice
            sparse["worker"] = {str(index): cluster["worker"][index]}
        return json.dumps({"cluster": sparse, "task": task}, separators=(",", ":"))
    return json.dumps({"cluster": cluster, "task": task, "environment": "cloud"},
                      separators=(",", ":"))


class TFJobController(TrainingJobController):
    name = "tfjob-controller"
    framework = TensorFlowFramework()
