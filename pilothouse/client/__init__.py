"""The client runtime every component uses: API client, informers, work queue, controllers,
and controller references (claiming children: adopt orphans, release strays).

Nothing here imports the API server: components built on it run unchanged against a
real Kubernetes cluster, given a kubeconfig.
"""

from .api import ApiError, Client, load_kubeconfig, resource_path
from .controller import (
    Controller,
    ControllerContext,
    EventRecorder,
    LeaderElector,
    run_controllers,
)
from .informer import Informer, InformerFactory, object_key, split_key
from .ownership import (
    Claims,
    claim,
    classify_claims,
    controller_of,
    controller_ref,
    fresh_owner_check,
)
from .workqueue import WorkQueue

__all__ = ["ApiError", "Claims", "Client", "Controller", "ControllerContext", "EventRecorder",
           "Informer", "InformerFactory", "LeaderElector", "WorkQueue", "claim",
           "classify_claims", "controller_of", "controller_ref", "fresh_owner_check",
           "load_kubeconfig", "object_key", "resource_path", "run_controllers", "split_key"]
