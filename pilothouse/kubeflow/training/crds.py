"""The training operator's CustomResourceDefinitions (`kubeflow.org/v1`), and installing them.

Names, printer columns and subresources are the real manifests' (release-1.9,
`manifests/base/crds/`), so `kubectl get pytorchjobs` prints STATE and AGE as on a real
cluster and the SDKs find the plurals they expect. The schemas are structural and carry
what the real operator's defaulting webhook does, as schema defaults the API server applies
on every write: replicas 1, the framework's restart policy, cleanPodPolicy None (but for
MPIJob, whose deprecated spec.cleanPodPolicy the controller reconciles with it), suspend
false. (nprocPerNode's default, "auto", depends on elasticPolicy, so the controller applies
it, with the containers' default ports.) Pod templates keep unknown fields (the API server's pod
validation applies when the pods are created), which keeps the schemas small.

Replica types map to specs with `additionalProperties`, as in the real CRDs, so an unknown
type reaches the operator's validating webhook (`webhook.py`), which refuses it by name;
MPIJob, whose types default to different replica counts, lists them as properties instead.
Beyond the real schemas, these require the replica specs and at least one type, refuse
negative replicas, and hold nprocPerNode to what torchrun accepts, so those get a 422 with a
cause even with the webhook off. What a schema cannot say (an unknown type, a Master with
more than one replica, a missing framework container) is the webhook's to refuse; the
controller also reports it as a `<Kind>FailedValidation` event and condition, for a job
stored while no webhook was registered.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ...client import ApiError, Client

log = logging.getLogger(__name__)

GROUP = "kubeflow.org"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
CRD_API_VERSION = "apiextensions.k8s.io/v1"
ESTABLISH_TIMEOUT = 30.0

_INT32 = {"type": "integer", "format": "int32"}
_INT64 = {"type": "integer", "format": "int64"}
_TIME = {"type": "string", "format": "date-time"}
_PRESERVE = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
RESTART_POLICIES = ("Always", "OnFailure", "Never", "ExitCode")
CLEAN_POD_POLICIES = ("All", "Running", "None")
RDZV_BACKENDS = ("c10d", "etcd", "etcd-v2")
#: torchrun's --nproc-per-node: a count, or one per CPU, per GPU, or whichever applies.
NPROC_PER_NODE_PATTERN = r"^(auto|cpu|gpu|[1-9][0-9]*)$"


@dataclass(frozen=True)
class JobKind:
    """What the CRD of one framework's job kind says."""

    kind: str
    plural: str
    replica_specs_field: str
    #: the container that runs the framework, which every replica must have
    container: str
    #: replica type -> the replicas default (MPI's workers default to 0, the rest to 1)
    replica_types: Mapping[str, int]
    default_restart_policy: str
    extra_spec: Mapping[str, Any] = field(default_factory=dict)
    #: The real MPIJob CRD lists AGE before STATE; the others STATE first.
    age_first: bool = False
    scale_replica_type: str | None = None
    #: runPolicy.cleanPodPolicy's schema default; None for MPIJob, whose controller takes
    #: it from the deprecated spec.cleanPodPolicy when the run policy leaves it unset.
    default_clean_pod_policy: str | None = "None"

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


def replica_spec_schema(default_restart_policy: str, default_replicas: int) -> dict[str, Any]:
    return {"type": "object", "properties": {
        "replicas": {**_INT32, "minimum": 0, "default": default_replicas},
        "restartPolicy": {"type": "string", "enum": list(RESTART_POLICIES),
                          "default": default_restart_policy},
        "template": copy.deepcopy(_PRESERVE),
    }}


def run_policy_schema(default_clean_pod_policy: str | None = "None") -> dict[str, Any]:
    clean: dict[str, Any] = {"type": "string", "enum": list(CLEAN_POD_POLICIES)}
    if default_clean_pod_policy is not None:
        clean["default"] = default_clean_pod_policy
    return {"type": "object", "default": {}, "properties": {
        "cleanPodPolicy": clean,
        "ttlSecondsAfterFinished": {**_INT32, "minimum": 0},
        "activeDeadlineSeconds": {**_INT64, "minimum": 0},
        "backoffLimit": {**_INT32, "minimum": 0},
        "suspend": {"type": "boolean", "default": False},
        "managedBy": {"type": "string"},
        "schedulingPolicy": {"type": "object", "properties": {
            "minAvailable": {**_INT32, "minimum": 0},
            "queue": {"type": "string"},
            "minResources": {"type": "object", "additionalProperties": {
                "x-kubernetes-int-or-string": True,
                "anyOf": [{"type": "integer"}, {"type": "string"}]}},
            "priorityClass": {"type": "string"},
            "scheduleTimeoutSeconds": {**_INT32, "minimum": 0},
        }},
    }}


def status_schema() -> dict[str, Any]:
    return {"type": "object", "properties": {
        "conditions": {"type": "array", "items": {"type": "object", "required": ["status", "type"],
                                                  "properties": {
            "type": {"type": "string"}, "status": {"type": "string"},
            "reason": {"type": "string"}, "message": {"type": "string"},
            "lastUpdateTime": _TIME, "lastTransitionTime": _TIME}}},
        "replicaStatuses": {"type": "object", "additionalProperties": {
            "type": "object", "properties": {
                "active": _INT32, "succeeded": _INT32, "failed": _INT32,
                "selector": {"type": "string"},
                "labelSelector": copy.deepcopy(_PRESERVE)}}},
        "startTime": _TIME, "completionTime": _TIME, "lastReconcileTime": _TIME,
    }}


def crd(job: JobKind) -> dict[str, Any]:
    """The CustomResourceDefinition of one job kind."""
    specs: dict[str, Any] = {"type": "object", "minProperties": 1}
    defaults = set(job.replica_types.values())
    if len(defaults) == 1:
        specs["additionalProperties"] = replica_spec_schema(job.default_restart_policy,
                                                            defaults.pop())
    else:
        specs["properties"] = {rtype: replica_spec_schema(job.default_restart_policy, replicas)
                               for rtype, replicas in job.replica_types.items()}
    spec = {"type": "object", "required": [job.replica_specs_field], "properties": {
        job.replica_specs_field: specs,
        "runPolicy": run_policy_schema(job.default_clean_pod_policy),
        **copy.deepcopy(dict(job.extra_spec))}}
    state = {"jsonPath": ".status.conditions[-1:].type", "name": "State", "type": "string"}
    age = {"jsonPath": ".metadata.creationTimestamp", "name": "Age", "type": "date"}
    subresources: dict[str, Any] = {"status": {}}
    if job.scale_replica_type:
        rtype = job.scale_replica_type
        subresources["scale"] = {
            "labelSelectorPath": f".status.replicaStatuses.{rtype}.selector",
            "specReplicasPath": f".spec.{job.replica_specs_field}.{rtype}.replicas",
            "statusReplicasPath": f".status.replicaStatuses.{rtype}.active"}
    return {
        "apiVersion": CRD_API_VERSION, "kind": "CustomResourceDefinition",
        "metadata": {"name": job.crd_name},
        "spec": {
            "group": GROUP, "scope": "Namespaced",
            "names": {"kind": job.kind, "listKind": f"{job.kind}List", "plural": job.plural,
                      "singular": job.singular},
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "additionalPrinterColumns": [age, state] if job.age_first else [state, age],
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                    "metadata": {"type": "object"}, "spec": spec,
                    "status": status_schema()}}},
                "subresources": subresources,
            }],
        },
    }


_ELASTIC_POLICY = {"type": "object", "properties": {
    "minReplicas": {**_INT32, "minimum": 0}, "maxReplicas": {**_INT32, "minimum": 0},
    "rdzvBackend": {"type": "string", "enum": list(RDZV_BACKENDS)},
    "rdzvPort": _INT32, "rdzvHost": {"type": "string"}, "rdzvId": {"type": "string"},
    "rdzvConf": {"type": "array", "items": {"type": "object", "properties": {
        "key": {"type": "string"}, "value": {"type": "string"}}}},
    "standalone": {"type": "boolean"},
    "nProcPerNode": {**_INT32, "minimum": 1},
    "maxRestarts": {**_INT32, "minimum": 0},
    "metrics": {"type": "array", "items": copy.deepcopy(_PRESERVE)},
}}

PYTORCH = JobKind(
    kind="PyTorchJob", plural="pytorchjobs", replica_specs_field="pytorchReplicaSpecs",
    container="pytorch",
    replica_types={"Master": 1, "Worker": 1}, default_restart_policy="OnFailure",
    extra_spec={"elasticPolicy": _ELASTIC_POLICY,
                "nprocPerNode": {"type": "string", "pattern": NPROC_PER_NODE_PATTERN}},
    scale_replica_type="Worker")
TENSORFLOW = JobKind(
    kind="TFJob", plural="tfjobs", replica_specs_field="tfReplicaSpecs", container="tensorflow",
    replica_types={"Chief": 1, "Master": 1, "PS": 1, "Worker": 1, "Evaluator": 1},
    default_restart_policy="Never",
    extra_spec={"successPolicy": {"type": "string", "enum": ["", "AllWorkers"]},
                "enableDynamicWorker": {"type": "boolean"}})
XGBOOST = JobKind(
    kind="XGBoostJob", plural="xgboostjobs", replica_specs_field="xgbReplicaSpecs",
    container="xgboost",
    replica_types={"Master": 1, "Worker": 1}, default_restart_policy="Never")
JAX = JobKind(
    kind="JAXJob", plural="jaxjobs", replica_specs_field="jaxReplicaSpecs", container="jax",
    replica_types={"Worker": 1}, default_restart_policy="Never")
MPI = JobKind(
    kind="MPIJob", plural="mpijobs", replica_specs_field="mpiReplicaSpecs", container="mpi",
    replica_types={"Launcher": 1, "Worker": 0}, default_restart_policy="Never",
    extra_spec={"slotsPerWorker": {**_INT32, "minimum": 1, "default": 1},
                "cleanPodPolicy": {"type": "string", "enum": list(CLEAN_POD_POLICIES)},
                "mainContainer": {"type": "string"}},
    age_first=True, default_clean_pod_policy=None)
#: v1.9's PaddleElasticPolicy: replica bounds, restarts and autoscaling metrics.
_PADDLE_ELASTIC_POLICY = {"type": "object", "properties": {
    "minReplicas": {**_INT32, "minimum": 0}, "maxReplicas": {**_INT32, "minimum": 0},
    "maxRestarts": {**_INT32, "minimum": 0},
    "metrics": {"type": "array", "items": copy.deepcopy(_PRESERVE)},
}}
PADDLE = JobKind(
    kind="PaddleJob", plural="paddlejobs", replica_specs_field="paddleReplicaSpecs",
    container="paddle",
    replica_types={"Master": 1, "Worker": 1}, default_restart_policy="OnFailure",
    extra_spec={"elasticPolicy": _PADDLE_ELASTIC_POLICY}, scale_replica_type="Worker")

ALL_KINDS = (PYTORCH, TENSORFLOW, XGBOOST, JAX, PADDLE, MPI)


def _established(obj: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Established" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


async def install_crds(client: Client, kinds: Iterable[JobKind] = ALL_KINDS, *,
                       timeout: float = ESTABLISH_TIMEOUT) -> None:
    """Create each CRD, or bring an existing one up to date, then wait until every one is
    Established (its kind is served)."""
    names = []
    for job in kinds:
        desired = crd(job)
        names.append(job.crd_name)
        try:
            current = await client.get(CRD_API_VERSION, "customresourcedefinitions",
                                       job.crd_name)
        except ApiError as err:
            if not err.not_found:
                raise
            await client.create(CRD_API_VERSION, "customresourcedefinitions", desired)
            log.info("installed the CRD %s", job.crd_name)
            continue
        if current.get("spec", {}).get("versions") != desired["spec"]["versions"] or \
                current.get("spec", {}).get("names", {}).get("kind") != job.kind:
            updated = {**current, "spec": {**current["spec"], **desired["spec"]}}
            await client.replace(CRD_API_VERSION, "customresourcedefinitions", updated)
            log.info("updated the CRD %s", job.crd_name)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for name in names:
        while not _established(await client.get(CRD_API_VERSION,
                                                "customresourcedefinitions", name)):
            if loop.time() > deadline:
                raise TimeoutError(f"the CRD {name} was not Established within {timeout:g}s")
            await asyncio.sleep(0.1)
