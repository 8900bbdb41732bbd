"""An elastic PyTorchJob's HorizontalPodAutoscaler, as the real operator's `ReconcileHPA`
keeps it: the desired object, and the operator (with its own identity and RBAC) creating,
updating and, while the job is suspended, deleting it on an in-process API server."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pilothouse.client import Client, ControllerContext, EventRecorder, InformerFactory
from pilothouse.kubeflow.training.crds import PYTORCH, install_crds
from pilothouse.kubeflow.training.pytorch import (
    PyTorchFramework,
    PyTorchJobController,
    desired_hpa,
)
from tests.inprocess import InProcessCluster, component_kubeconfigs, in_process_cluster

CPU_80 = {"type": "Resource", "resource": {"name": "cpu", "target": {
    "type": "Utilization", "averageUtilization": 80}}}


def elastic_job(name: str = "elastic", **policy: Any) -> dict[str, Any]:
    job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
           "metadata": {"name": name, "namespace": "default", "uid": "u1"},
           "spec": {"elasticPolicy": {"minReplicas": 1, "maxReplicas": 4, "metrics": [CPU_80],
                                      **policy},
                    "pytorchReplicaSpecs": {"Worker": {"replicas": 2, "template": {"spec": {
                        "containers": [{"name": "pytorch", "image": "python:3.11"}]}}}}}}
    PyTorchFramework().set_defaults(job)
    return job


def test_the_desired_hpa_scales_the_jobs_workers() -> None:
    hpa = desired_hpa(elastic_job())
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["metadata"]["name"] == "elastic"
    assert hpa["metadata"]["ownerReferences"] == [{
        "apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "name": "elastic", "uid": "u1",
        "controller": True, "blockOwnerDeletion": True}]
    assert hpa["spec"] == {"scaleTargetRef": {"kind": "PyTorchJob", "name": "elastic",
                                              "apiVersion": "kubeflow.org/v1"},
                           "minReplicas": 1, "maxReplicas": 4, "metrics": [CPU_80]}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessCluster]:
    with in_process_cluster(Path(tmp_path_factory.mktemp("pytorch-hpa"))) as running:
        yield running


def test_the_operator_keeps_the_hpa(cluster: InProcessCluster, tmp_path: Path) -> None:
    kubeconfigs = component_kubeconfigs(cluster, tmp_path, "kubeflow-operators", "operator")

    async def scenario() -> list[Any]:
        seen: list[Any] = []
        async with Client.from_kubeconfig(str(kubeconfigs["admin"])) as admin:
            await install_crds(admin, [PYTORCH])
            stored = await admin.create("kubeflow.org/v1", "pytorchjobs",
                                        {k: v for k, v in elastic_job().items()
                                         if k != "status"}, "default")
        async with Client.from_kubeconfig(str(kubeconfigs["operator"])) as client:
            informers = InformerFactory(client)
            controller = PyTorchJobController(ControllerContext(
                client, informers, EventRecorder(client, "test")))
            await informers.start()
            try:
                job = copy.deepcopy(stored)
                PyTorchFramework().set_defaults(job)

                async def hpa_after(step: Any) -> dict[str, Any] | None:
                    await step
                    for _ in range(100):
                        await asyncio.sleep(0.05)
                        current = controller.hpas.get("default/elastic")
                        wanted = (job["spec"]["elasticPolicy"]["maxReplicas"],
                                  job["spec"]["runPolicy"].get("suspend", False))
                        if wanted[1] and current is None:
                            return None
                        if current is not None and not wanted[1] and \
                                current["spec"]["maxReplicas"] == wanted[0]:
                            return current
                    raise AssertionError("the informer never showed the HPA as wanted")

                seen.append(await hpa_after(controller.reconcile_hpa(job)))
                job["spec"]["elasticPolicy"]["maxReplicas"] = 6
                seen.append(await hpa_after(controller.reconcile_hpa(job)))
                job["spec"]["runPolicy"]["suspend"] = True
                seen.append(await hpa_after(controller.reconcile_hpa(job)))
                # No metrics: the operator leaves HPAs alone, as the real one does.
                job["spec"]["runPolicy"]["suspend"] = False
                del job["spec"]["elasticPolicy"]["metrics"]
                await controller.reconcile_hpa(job)
                await asyncio.sleep(0.3)
                seen.append(controller.hpas.get("default/elastic"))
            finally:
                await informers.stop()
        return seen

    created, updated, suspended, without_metrics = cluster.run(scenario())
    assert created["spec"]["scaleTargetRef"] == {"apiVersion": "kubeflow.org/v1",
                                                 "kind": "PyTorchJob", "name": "elastic"}
    assert (created["spec"]["minReplicas"], created["spec"]["maxReplicas"]) == (1, 4)
    owner = created["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("PyTorchJob", "elastic", True)
    assert updated["spec"]["maxReplicas"] == 6
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    assert suspended is None
    assert without_metrics is None
