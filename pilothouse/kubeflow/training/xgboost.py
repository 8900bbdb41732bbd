"""XGBoostJob: a Master (the rabit tracker) and Workers.

Every container learns MASTER_ADDR (`<job>-master-0`) and MASTER_PORT (its
`xgboostjob-port`, 9999 by default), WORLD_SIZE (all replicas), its RANK (the Master 0,
Worker i i + 1) and, with more than one replica, WORKER_PORT and WORKER_ADDRS (the first
WORLD_SIZE - 1 worker names, comma-separated), as the real operator writes them.

The job succeeds when the Master does. As in the real operator, any failed replica fails
the job unless its restart policy is ExitCode (then the job is Restarting).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ...machinery.meta import rfc3339
from .common import (
    FAILED,
    RESTARTING,
    Event,
    Framework,
    add_env,
    container_ports,
    mark_running,
    mark_succeeded,
    meta,
    reason,
    replica_name,
    replica_specs,
    replicas_of,
    total_replicas,
    update_job_conditions,
)
from .controller import TrainingJobController
from .crds import XGBOOST

MASTER, WORKER = "Master", "Worker"


class XGBoostFramework(Framework):
    kind = XGBOOST
    controller_name = "xgboostjob-controller"
    default_container = XGBOOST.container
    default_port_name = "xgboostjob-port"
    default_port = 9999

    def set_cluster_spec(self, job: Mapping[str, Any], pod_spec: dict[str, Any], rtype: str,
                         index: int) -> None:
        add_env(pod_spec, xgboost_env(job, rtype, index))

    def is_master_role(self, specs: Mapping[str, Any], rtype: str, index: int) -> bool:
        return rtype == MASTER

    def update_job_status(self, job: Mapping[str, Any], status: dict[str, Any],
                          pods: list[dict[str, Any]], now: datetime) -> list[Event]:
        kind, name = self.kind.kind, meta(job)["name"]
        running_message = f"{kind} {name} is running."
        events: list[Event] = []
        for rtype, spec in sorted(replica_specs(job, self.kind).items()):
            counts = (status.get("replicaStatuses") or {}).get(rtype) or {}
            failed = counts.get("failed", 0)
            if rtype == MASTER:
                if counts.get("active", 0) > 0:
                    mark_running(kind, status, running_message, now)
                if replicas_of(spec) - counts.get("succeeded", 0) == 0:
                    mark_running(kind, status, running_message, now)
                    return events + mark_succeeded(
                        kind, status, f"{kind} {name} is successfully completed.", now)
            if failed > 0:
                mark_running(kind, status, running_message, now)
                if spec.get("restartPolicy") == "ExitCode":
                    message = (f"{kind} {name} is restarting because {failed} {rtype} "
                               f"replica(s) failed.")
                    update_job_conditions(status, RESTARTING, "True", reason(kind, RESTARTING),
                                          message, now)
                    events.append(Event("Warning", reason(kind, RESTARTING), message))
                else:
                    message = f"{kind} {name} is failed because {failed} {rtype} replica(s) failed."
                    status.setdefault("completionTime", rfc3339(now))
                    update_job_conditions(status, FAILED, "True", reason(kind, FAILED), message,
                                          now)
                    events.append(Event("Normal", reason(kind, FAILED), message))
        return events


def xgboost_env(job: Mapping[str, Any], rtype: str, index: int) -> list[dict[str, str]]:
    specs = replica_specs(job, XGBOOST)
    name = meta(job)["name"]
    rank = index + (replicas_of(specs[MASTER]) if rtype.lower() == WORKER.lower() else 0)
    total = total_replicas(specs)
    env = [{"name": "MASTER_PORT", "value": str(_port(specs[MASTER]))},
           {"name": "MASTER_ADDR", "value": replica_name(name, MASTER, 0)},
           {"name": "WORLD_SIZE", "value": str(total)},
           {"name": "RANK", "value": str(rank)},
           {"name": "PYTHONUNBUFFERED", "value": "1"}]
    if total > 1:
        env += [{"name": "WORKER_PORT", "value": str(_port(specs[WORKER]))},
                {"name": "WORKER_ADDRS", "value": ",".join(
                    replica_name(name, WORKER, i) for i in range(total - 1))}]
    return env


def _port(replica: Mapping[str, Any]) -> int:
    port = container_ports(replica, XGBoostFramework.default_container).get(
        XGBoostFramework.default_port_name)
    if port is None:
        raise ValueError("failed to find the port")
    return port


class XGBoostJobController(TrainingJobController):
    name = "xgboostjob-controller"
    framework = XGBoostFramework()
