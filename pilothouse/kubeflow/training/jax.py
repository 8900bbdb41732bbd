"""JAXJob: `jax.distributed` jobs of Workers, Worker 0 the coordinator.

Every container learns the coordinator (COORDINATOR_ADDRESS `<job>-worker-0`,
COORDINATOR_PORT its `jaxjob-port`, 6666 by default), NUM_PROCESSES (all replicas) and its
PROCESS_ID (its index), which `jax.distributed.initialize()` reads. The job succeeds when
every Worker has.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .common import (
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
    total_replicas,
)
from .controller import TrainingJobController
from .crds import JAX

WORKER = "Worker"


class JAXFramework(Framework):
    kind = JAX
    controller_name = "jaxjob-controller"
    default_container = JAX.container
    default_port_name = "jaxjob-port"
    default_port = 6666

    def set_cluster_spec(self, job: Mapping[str, Any], pod_spec: dict[str, Any], rtype: str,
                         index: int) -> None:
        add_env(pod_spec, jax_env(job, index))

    def is_master_role(self, specs: Mapping[str, Any], rtype: str, index: int) -> bool:
        return index == 0

    def update_job_status(self, job: Mapping[str, Any], status: dict[str, Any],
                          pods: list[dict[str, Any]], now: datetime) -> list[Event]:
        kind, name = self.kind.kind, meta(job)["name"]
        namespace = meta(job).get("namespace")
        events: list[Event] = []
        for rtype, spec in sorted(replica_specs(job, self.kind).items()):
            counts = (status.get("replicaStatuses") or {}).get(rtype) or {}
            if rtype == WORKER:
                if replicas_of(spec) - counts.get("succeeded", 0) == 0:
                    events += mark_succeeded(
                        kind, status, f"{kind} {namespace}/{name} successfully completed.", now)
                elif counts.get("active", 0) > 0:
                    mark_running(kind, status, f"{kind} {namespace}/{name} is running.", now)
            events += replica_failure_events(kind, name, status, rtype, spec, now)
        return events


def jax_env(job: Mapping[str, Any], index: int) -> list[dict[str, str]]:
    specs = replica_specs(job, JAX)
    port = container_ports(specs[WORKER], JAXFramework.default_container).get(
        JAXFramework.default_port_name)
    if port is None:
        raise ValueError("default container port is not exposed")
    return [{"name": "PYTHONUNBUFFERED", "value": "1"},
            {"name": "COORDINATOR_PORT", "value": str(port)},
            {"name": "COORDINATOR_ADDRESS", "value": replica_name(meta(job)["name"], WORKER, 0)},
            {"name": "NUM_PROCESSES", "value": str(total_replicas(specs))},
            {"name": "PROCESS_ID", "value": str(index)}]


class JAXJobController(TrainingJobController):
    name = "jaxjob-controller"
    framework = JAXFramework()
