"""What the training operator refuses in a job: the rules of its validating webhooks.

The rules, field paths and messages are the real operator's (release-1.9,
`pkg/webhooks/<framework>/`), so a refusal reads as it does on a real cluster. They are
pure functions of the job (and the stored job, on update), used twice: by the admission
webhook (`webhook.py`), which refuses a bad write, and by the controller, which marks a
job stored while no webhook was registered as Failed with the same causes.

For every kind: the name is a DNS-1035 label (it names Services); the replica specs are
present; every replica type is one of the kind's; every replica has containers, each with
an image, and one named as the framework's container. PyTorchJob: a Master has exactly 1
replica and other types at least 1 if set; an elasticPolicy needs Workers, and its
deprecated nProcPerNode draws a warning (and is refused beside spec.nprocPerNode).
XGBoostJob: a Master is required and has 1 replica. TFJob: at most one Chief or Master.
PaddleJob: the rules for every kind only (its message quotes the container's name, as the
real one does).
runPolicy.managedBy (not for JAXJob, as real) names a known controller and cannot change.
MPIJob has no webhook (as real v1); the controller applies ValidateV1MpiJobSpec's rules: a
Launcher of 1 replica, only Launcher and Worker, containers named and with an image.

Two departures from release-1.9, both stricter: TFJob's replica types are checked as the
other kinds' are (the real TFJob webhook lets any type through), and nprocPerNode's form is
the CRD schema's to check (see `crds.py`), not a rule here, as in the real webhook.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...machinery.errors import Cause, forbidden, invalid_value, not_supported, required
from ...machinery.names import is_dns1035_label
from .common import KUBEFLOW_JOBS_CONTROLLER
from .crds import JAX, MPI, PADDLE, PYTORCH, TENSORFLOW, XGBOOST, JobKind

MASTER, CHIEF, WORKER, LAUNCHER = "Master", "Chief", "Worker", "Launcher"
MULTIKUEUE_CONTROLLER = "kueue.x-k8s.io/multikueue"
#: runPolicy.managedBy values the operator knows: itself, and Kueue's MultiKueue.
SUPPORTED_MANAGERS = (KUBEFLOW_JOBS_CONTROLLER, MULTIKUEUE_CONTROLLER)
#: The kinds with a validating webhook; the real MPIJob (v1) has none.
VALIDATED_KINDS = (PYTORCH, TENSORFLOW, XGBOOST, JAX, PADDLE)


@dataclass
class Verdict:
    """The field errors that refuse a job (none: allowed) and warnings sent either way."""

    causes: list[Cause] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def validate_job(kind: JobKind, job: Mapping[str, Any],
                 old: Mapping[str, Any] | None = None) -> Verdict:
    """The verdict on a job of `kind` being created (`old` None) or updated from `old`."""
    verdict = Verdict()
    name = (job.get("metadata") or {}).get("name") or ""
    problems = is_dns1035_label(name)
    if problems:
        verdict.causes.append(invalid_value("metadata.name", name,
                                            f"should match: {','.join(problems)}"))
    spec = job.get("spec") or {}
    if kind is not JAX:
        verdict.causes += _run_policy(spec, None if old is None else old.get("spec") or {})
    if kind is PYTORCH:
        _elastic_policy(spec, verdict)
    if kind is MPI:
        verdict.causes += _mpi_replica_specs(spec.get(MPI.replica_specs_field))
    else:
        verdict.causes += _replica_specs(kind, spec.get(kind.replica_specs_field))
    return verdict


def _run_policy(spec: Mapping[str, Any], old_spec: Mapping[str, Any] | None) -> list[Cause]:
    path = "spec.runPolicy.managedBy"
    manager = (spec.get("runPolicy") or {}).get("managedBy")
    causes = []
    if old_spec is not None:
        before = (old_spec.get("runPolicy") or {}).get("managedBy")
        if manager != before:
            causes.append(invalid_value(path, "null" if manager is None else manager,
                                        "field is immutable"))
    if manager is not None and manager not in SUPPORTED_MANAGERS:
        causes.append(not_supported(path, manager, SUPPORTED_MANAGERS))
    return causes


def _elastic_policy(spec: Mapping[str, Any], verdict: Verdict) -> None:
    elastic = spec.get("elasticPolicy")
    if elastic is None:
        return
    field_path = f"spec.{PYTORCH.replica_specs_field}"
    if WORKER not in (spec.get(PYTORCH.replica_specs_field) or {}):
        verdict.causes.append(required(f"{field_path}[{WORKER}]",
                                       "must be configured if elastic policy is used"))
    if elastic.get("nProcPerNode") is not None:
        deprecated = "spec.elasticPolicy.nProcPerNode"
        verdict.warnings.append(f"{deprecated} is deprecated, use spec.nprocPerNode instead")
        if spec.get("nprocPerNode") is not None:
            verdict.causes.append(forbidden(deprecated, "must not be used with "
                                                        "spec.nprocPerNode"))


def _replica_specs(kind: JobKind, specs: Any) -> list[Cause]:
    field_path = f"spec.{kind.replica_specs_field}"
    if specs is None:
        return [required(field_path, "must be required")]
    causes: list[Cause] = []
    for rtype in sorted(specs):
        replica = specs[rtype] or {}
        role = f"{field_path}[{rtype}]"
        if rtype not in kind.replica_types:
            causes.append(not_supported(role, rtype, tuple(kind.replica_types)))
        causes += _containers(kind, role, replica)
        replicas = replica.get("replicas")
        if kind in (PYTORCH, XGBOOST) and rtype == MASTER:
            if replicas != 1:
                causes.append(forbidden(f"{role}.replicas", "must be 1"))
        elif kind is PYTORCH and replicas is not None and replicas < 1:
            causes.append(forbidden(f"{role}.replicas", "must be at least 1"))
    if kind is XGBOOST and MASTER not in specs:
        causes.append(required(f"{field_path}[{MASTER}]", "must be present"))
    if kind is TENSORFLOW and sum(rtype in (CHIEF, MASTER) for rtype in specs) > 1:
        causes.append(forbidden(field_path, "must not have more than 1 Chief or Master role"))
    return causes


def _mpi_replica_specs(specs: Any) -> list[Cause]:
    """ValidateV1MpiJobSpec: Launcher and Worker only, a Launcher of 1 replica, containers
    with a name and an image (any name: the first container is the one MPI runs in)."""
    field_path = f"spec.{MPI.replica_specs_field}"
    if specs is None:
        return [required(field_path, "must be required")]
    causes: list[Cause] = []
    for rtype in sorted(specs):
        replica = specs[rtype] or {}
        role = f"{field_path}[{rtype}]"
        if rtype not in MPI.replica_types:
            causes.append(not_supported(role, rtype, tuple(MPI.replica_types)))
        path = f"{role}.template.spec.containers"
        containers = ((replica.get("template") or {}).get("spec") or {}).get("containers") or []
        if not containers:
            causes.append(required(path, "must be specified"))
        for index, container in enumerate(containers):
            for key in ("image", "name"):
                if not container.get(key):
                    causes.append(required(f"{path}[{index}].{key}", "must be required"))
        if rtype == LAUNCHER and replica.get("replicas") not in (None, 1):
            causes.append(forbidden(f"{role}.replicas", "must be 1"))
    if LAUNCHER not in specs:
        causes.append(required(f"{field_path}[{LAUNCHER}]", "must be present"))
    return causes


def _containers(kind: JobKind, role: str, replica: Mapping[str, Any]) -> list[Cause]:
    path = f"{role}.template.spec.containers"
    containers = ((replica.get("template") or {}).get("spec") or {}).get("containers") or []
    causes = [] if containers else [required(path, "must be specified")]
    for index, container in enumerate(containers):
        if not container.get("image"):
            causes.append(required(f"{path}[{index}].image", "must be required"))
    if not any(container.get("name") == kind.container for container in containers):
        container_name = f'"{kind.container}"' if kind is PADDLE else kind.container
        causes.append(required(path, f"must have at least one container with name "
                                     f"{container_name}"))
    return causes
