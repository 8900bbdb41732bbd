"""The training operator's webhook registration against a real in-process API server.

What a user of `pilothouse up` and `pilothouse operators` relies on: the leader registers
`validator.training-operator.kubeflow.org` pointing at its own server on 127.0.0.1 (a port of
its own choosing); a standby leaves the leader's registration alone; an operator started
again replaces the address and caBundle so jobs are validated by the live server; and one
run without the webhook removes the registration instead of leaving every job write to fail.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
from pathlib import Path
from typing import Any

import pytest

from pilothouse.client import ApiError, Client
from pilothouse.kubeflow.operators import TRAINING_LEASE, run_training_operator
from pilothouse.kubeflow.training.webhook import ADMISSION_API, CONFIGURATION_NAME, CONFIGURATIONS
from pilothouse.machinery.meta import rfc3339_micro
from tests.inprocess import InProcessCluster

# This module's own cluster (module-scoped fixtures), made as the operator's tests make theirs.
from tests.unit.test_training_operator import cluster, eventually, kubeconfigs  # noqa: F401

V1 = "kubeflow.org/v1"


async def configuration(admin: Client) -> dict[str, Any] | None:
    try:
        return await admin.get(ADMISSION_API, CONFIGURATIONS, CONFIGURATION_NAME)
    except ApiError as err:
        if err.not_found:
            return None
        raise


def url_of(config: dict[str, Any]) -> str:
    return config["webhooks"][0]["clientConfig"]["url"]


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def bad_job(name: str) -> dict[str, Any]:
    template = {"spec": {"containers": [{"name": "pytorch", "image": "python:3.11"}]}}
    return {"apiVersion": V1, "kind": "PyTorchJob",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 3, "template": template}}}}


async def refusal(admin: Client, name: str) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await admin.create(V1, "pytorchjobs", bad_job(name), "default")
    return caught.value


def test_a_standby_leaves_it_and_a_new_leader_replaces_it(
        cluster: InProcessCluster, kubeconfigs: dict[str, Path]) -> None:  # noqa: F811
    operator = str(kubeconfigs["operator"])

    async def scenario() -> None:
        async with Client.from_kubeconfig(str(kubeconfigs["admin"])) as admin:
            # Someone else leads for two more seconds: this operator waits as a standby.
            now = datetime.datetime.now(datetime.UTC)
            await admin.create("coordination.k8s.io/v1", "leases", {
                "metadata": {"name": TRAINING_LEASE, "namespace": "kube-system"},
                "spec": {"holderIdentity": "elsewhere", "leaseDurationSeconds": 2,
                         "acquireTime": rfc3339_micro(now), "renewTime": rfc3339_micro(now)}},
                "kube-system")
            first = asyncio.create_task(run_training_operator(operator))
            await asyncio.sleep(1)
            assert await configuration(admin) is None
            registered = await eventually(lambda: configuration(admin))
            assert url_of(registered).startswith("https://127.0.0.1:")
            err = await eventually(lambda: _refused_by_webhook(admin, "first"))
            assert err.status == 422
            await stop(first)
            # Shutting down leaves the registration, as the real operator does.
            assert url_of(await configuration(admin) or {}) == url_of(registered)

            second = asyncio.create_task(run_training_operator(
                operator, leader_elect=False))
            try:
                async def replaced() -> dict[str, Any] | None:
                    config = await configuration(admin)
                    return config if config and url_of(config) != url_of(registered) else None
                config = await eventually(replaced)
                assert config["webhooks"][0]["clientConfig"]["caBundle"] != \
                    registered["webhooks"][0]["clientConfig"]["caBundle"]
                assert base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"])
                err = await refusal(admin, "second")
                assert (err.status, err.body["details"]["kind"]) == (422, "PyTorchJob")
            finally:
                await stop(second)

            third = asyncio.create_task(run_training_operator(
                operator, leader_elect=False, webhook=False))
            try:
                await eventually(lambda: _absent(admin))
                # Nothing refuses the job now; the controller fails it with the same cause.
                await admin.create(V1, "pytorchjobs", bad_job("third"), "default")

                async def failed() -> str | None:
                    job = await admin.get(V1, "pytorchjobs", "third", "default")
                    return next((c["message"] for c in (job.get("status") or {}).get(
                        "conditions") or [] if c["reason"] == "PyTorchJobFailedValidation"),
                        None)
                assert "spec.pytorchReplicaSpecs[Master].replicas: Forbidden: must be 1" in \
                    await eventually(failed)
            finally:
                await stop(third)

    cluster.run(scenario(), timeout=90)


async def _refused_by_webhook(admin: Client, name: str) -> ApiError | None:
    try:
        await admin.create(V1, "pytorchjobs", bad_job(name), "default")
    except ApiError as err:
        return err if err.status == 422 else None
    await admin.delete(V1, "pytorchjobs", name, "default")
    return None


async def _absent(admin: Client) -> bool:
    return await configuration(admin) is None
