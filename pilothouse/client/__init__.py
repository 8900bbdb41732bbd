"""The client runtime every component uses: API client, informers, work queue, controllers.

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
from .workqueue import WorkQueue

__all__ = ["ApiError", "Client", "Controller", "ControllerContext", "EventRecorder",
           "Informer", "InformerFactory", "LeaderElector", "WorkQueue", "load_kubeconfig",
           "object_key", "resource_path", "run_controllers", "split_key"]
