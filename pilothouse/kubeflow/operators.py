"""Entry points of the Kubeflow operators, for `pilothouse operators` and `up` to call.

Each operator is a set of controllers run by `run_controllers` under one leader lease:
the operator installs (or updates) its CRDs once it leads, then reconciles. The training
operator also serves its validating webhooks, registered once it leads (`training/webhook`).
Nothing here reads flags or the environment: the caller passes what it parsed.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..client import Client, run_controllers
from ..machinery.names import is_dns1123_subdomain
from .training.controller import TrainingJobController
from .training.crds import ALL_KINDS, install_crds
from .training.jax import JAXJobController
from .training.mpi import MPIJobController
from .training.paddle import PaddleJobController
from .training.pytorch import PyTorchJobController
from .training.tensorflow import TFJobController
from .training.validation import VALIDATED_KINDS
from .training.webhook import (
    DEFAULT_SECRET_NAME,
    ServiceReference,
    WebhookServer,
    register,
    shared_chain,
    unregister,
)
from .training.xgboost import XGBoostJobController

#: The training operator's controllers by name (as the real operator names them).
TRAINING_CONTROLLERS: dict[str, type[TrainingJobController]] = {
    controller.name: controller for controller in (
        PyTorchJobController, TFJobController, XGBoostJobController, JAXJobController,
        PaddleJobController, MPIJobController)}
#: The scheduler that gang-schedules PodGroups: this platform's default scheduler runs
#: the Coscheduling plugin. Against a cluster with scheduler-plugins, pass its name.
DEFAULT_GANG_SCHEDULER = "default-scheduler"
TRAINING_LEASE = "training-operator"


async def run_training_operator(kubeconfig: str | None, *, leader_elect: bool = True,
                                gang_scheduler_name: str | None = DEFAULT_GANG_SCHEDULER,
                                controllers: Iterable[str] | None = None,
                                webhook: bool = True, webhook_host: str = "127.0.0.1",
                                webhook_port: int = 0,
                                webhook_service: str | None = None,
                                webhook_secret: str = DEFAULT_SECRET_NAME) -> None:
    """Run the training operator until cancelled.

    `kubeconfig` None means in-cluster config. `gang_scheduler_name` None turns gang
    scheduling off (no PodGroups). `controllers` picks a subset of TRAINING_CONTROLLERS by
    name (all by default); an unknown name is a ValueError.

    With `webhook`, the operator serves its validating webhooks for the chosen controllers'
    kinds that have one (not MPIJob, as real v1) on `webhook_host`:`webhook_port` (0: a
    free port) and, once leading, registers them: at that URL, or through `webhook_service`
    (`<namespace>/<name>[:<port>]`, the Service fronting the operator in a cluster; its
    targetPort must then be a fixed `webhook_port`; the replicas behind it share the serving
    certificate in the Secret `webhook_secret` beside it). Without it, the leader removes a
    registration left by an earlier run. A bad `webhook_service` or `webhook_secret`, or an
    address the server cannot bind, is a ValueError.
    """
    chosen = list(TRAINING_CONTROLLERS) if controllers is None else list(controllers)
    unknown = [name for name in chosen if name not in TRAINING_CONTROLLERS]
    if unknown:
        raise ValueError(f"unknown training controllers {unknown}; choose from "
                         f"{sorted(TRAINING_CONTROLLERS)}")
    service = ServiceReference.parse(webhook_service) if webhook_service else None
    if service is not None and not webhook_port:
        raise ValueError("a webhook Service needs a fixed webhook port for its targetPort")
    bad_secret = is_dns1123_subdomain(webhook_secret)
    if bad_secret:
        raise ValueError(f"webhook secret name {webhook_secret!r} is not a valid Secret name: "
                         f"{bad_secret[0]}")
    kinds = [kind for kind in (TRAINING_CONTROLLERS[name].framework.kind for name in chosen)
             if kind in VALIDATED_KINDS]
    server: WebhookServer | None = None

    async def install(client: Client) -> None:
        await install_crds(client, ALL_KINDS)
        if server is not None:
            await register(client, server.configuration())
        else:
            await unregister(client)

    try:
        async with Client.from_kubeconfig(kubeconfig, user_agent="pilothouse-training-operator",
                                          field_manager="training-operator") as client:
            await client.wait_ready(timeout=60)
            if webhook:
                chain = await shared_chain(client, service, host=webhook_host,
                                           secret_name=webhook_secret) if service else None
                server = WebhookServer(host=webhook_host, port=webhook_port, service=service,
                                       kinds=kinds, chain=chain)
                await server.start()
            await run_controllers(
                client, {name: TRAINING_CONTROLLERS[name] for name in chosen},
                component="training-operator", lease_name=TRAINING_LEASE,
                leader_elect=leader_elect,
                settings={"gang_scheduler_name": gang_scheduler_name}, on_leading=install)
    finally:
        if server is not None:
            await server.stop()
