"""PaddleJob: PaddlePaddle's `paddle.distributed.launch`, collective or parameter-server.

The environment is the real operator's (release-1.9 `pkg/controller.v1/paddlepaddle`),
appended to every container: PYTHONUNBUFFERED=1, PADDLE_JOB_ID (the job's name),
PADDLE_NNODES (all replicas) and PADDLE_MASTER, the rendezvous endpoint `host:port`. Without
a Master the job is collective and Worker 0 is the rendezvous; with one it is
parameter-server mode, Master 0 is, and each Master gets PADDLE_SERVER_NUM=1, each Worker
PADDLE_TRAINER_NUM=1. The rendezvous replica itself gets POD_IP_DUMMY (its `status.podIP`,
from the downward API) and PADDLE_MASTER `$(POD_IP_DUMMY):<port>`, which the kubelet
expands; the others get `<job>-<type>-0:<port>` (its headless Service). The port is the
`paddle` container's `master` port of the rendezvous replica type, 36543 by default.

As in the real operator, only a Master carries the `job-role: master` label, restart
policies default to OnFailure, and the job succeeds when its Master does, or, without
one, when every Worker has.

`spec.elasticPolicy` (min/max replicas, maxRestarts, metrics) is stored as v1.9's CRD has
it; v1.9 defaults its bounds in memory but nothing reads them (there is no autoscaler for
PaddleJob), so this controller does not act on it either.
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
from .crds import PADDLE

MASTER, WORKER = "Master", "Worker"
#: The variable the rendezvous replica reads its own pod IP from.
POD_IP_DUMMY = "POD_IP_DUMMY"


class PaddleFramework(Framework):
    kind = PADDLE
    controller_name = "paddlejob-controller"
    default_container = PADDLE.container
    default_port_name = "master"
    default_port = 36543

    def set_cluster_spec(self, job: Mapping[str, Any], pod_spec: dict[str, Any], rtype: str,
                         index: int) -> None:
        add_env(pod_spec, paddle_env(job, rtype, index))

    def is_master_role(self, specs: Mapping[str, Any], rtype: str, index: int) -> bool:
        return rtype == MASTER

    def update_job_status(self, job: Mapping[str, Any], status: dict[str, Any],
                          pods: list[dict[str, Any]], now: datetime) -> list[Event]:
        kind, name = self.kind.kind, meta(job)["name"]
        namespace = meta(job).get("namespace")
        specs = replica_specs(job, self.kind)
        events: list[Event] = []
        for rtype in sorted(specs):
            spec = specs[rtype]
            counts = (status.get("replicaStatuses") or {}).get(rtype) or {}
            expected = replicas_of(spec) - counts.get("succeeded", 0)
            running = counts.get("active", 0)
            if MASTER in specs:
                if rtype == MASTER:
                    if running > 0:
                        mark_running(kind, status, f"{kind} {name} is running.", now)
                    if expected == 0:
                        return events + mark_succeeded(
                            kind, status, f"{kind} {name} is successfully completed.", now)
            elif rtype == WORKER:
                if expected == 0:
                    events += mark_succeeded(
                        kind, status, f"{kind} {namespace}/{name} successfully completed.", now)
                elif running > 0:
                    mark_running(kind, status, f"{kind} {namespace}/{name} is running.", now)
            events += replica_failure_events(kind, name, status, rtype, spec, now)
        return events


def paddle_env(job: Mapping[str, Any], rtype: str, index: int) -> list[dict[str, Any]]:
    """The variables the real operator gives each container of one replica, in its order."""
    specs = replica_specs(job, PADDLE)
    name = meta(job)["name"]
    env: list[dict[str, Any]] = [
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "PADDLE_JOB_ID", "value": name},
        {"name": "PADDLE_NNODES", "value": str(total_replicas(specs))}]
    is_master = rtype.lower() == MASTER.lower()
    rendezvous = MASTER if MASTER in specs else WORKER
    port = _port(specs.get(rendezvous) or {})
    if index == 0 and (rendezvous == WORKER or is_master):
        env += [{"name": POD_IP_DUMMY,
                 "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "PADDLE_MASTER", "value": f"$({POD_IP_DUMMY}):{port}"}]
    else:
        env.append({"name": "PADDLE_MASTER",
                    "value": f"{replica_name(name, rendezvous, 0)}:{port}"})
    if rendezvous == MASTER:
        env.append({"name": "PADDLE_SERVER_NUM" if is_master else "PADDLE_TRAINER_NUM",
                    "value": "1"})
    return env


def _port(replica: Mapping[str, Any]) -> int:
    """The `paddle` container's `master` port, else the default (getPortFromPaddleJob)."""
    return container_ports(replica, PaddleFramework.default_container).get(
        PaddleFramework.default_port_name, PaddleFramework.default_port)


class PaddleJobController(TrainingJobController):
    name = "paddlejob-controller"
    framework = PaddleFramework()
