"""The root CA certificate publisher: every active namespace has `kube-root-ca.crt`.

Pods verify the API server with the CA in that ConfigMap: the `kube-api-access-*`
volume the ServiceAccount admission plugin adds projects its `ca.crt` next to the token.
As upstream's rootcacertpublisher, namespaces are the work items: a namespace added or
turned Active, or its `kube-root-ca.crt` changed or deleted, queues the namespace, and
reconcile creates the ConfigMap, or puts back its data and description annotation. The
CA is the one the controller manager's own kubeconfig trusts (settings["root_ca"], as
kube-controller-manager uses its client config's CA when --root-ca-file is unset).
"""

from __future__ import annotations

import copy
import logging

from ..client import ApiError, Controller
from .serviceaccount import _namespace_terminating

log = logging.getLogger(__name__)

ROOT_CA_CONFIG_MAP = "kube-root-ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using "
               "internal endpoints such as the internal service IP or kubernetes.default.svc. "
               "No other usage is guaranteed across distributions of Kubernetes clusters.")


class RootCACertPublisher(Controller):
    name = "root-ca-certificate-publisher-controller"

    def setup(self) -> None:
        self.root_ca = str(self.context.settings.get("root_ca") or "")
        if not self.root_ca:
            log.warning("%s: no CA in the controller manager's kubeconfig; publishing an "
                        "empty %s", self.name, ROOT_CA_CONFIG_MAP)
        self.namespaces = self.context.informers.informer("v1", "namespaces")
        self.namespaces.add_handler(self._on_namespace)
        self.config_maps = self.context.informers.informer("v1", "configmaps")
        self.config_maps.add_handler(self._on_config_map)

    def _on_namespace(self, old: dict | None, new: dict | None) -> None:
        if new is not None and _active(new):
            self.queue.add(new["metadata"]["name"])

    def _on_config_map(self, old: dict | None, new: dict | None) -> None:
        meta = (new if new is not None else old or {}).get("metadata") or {}
        if meta.get("name") == ROOT_CA_CONFIG_MAP and meta.get("namespace"):
            self.queue.add(meta["namespace"])

    async def reconcile(self, key: str) -> float | None:
        ns = self.namespaces.get(key)
        if ns is None or not _active(ns):
            return None
        data = {"ca.crt": self.root_ca}
        current = self.config_maps.get(f"{key}/{ROOT_CA_CONFIG_MAP}")
        if current is None:
            config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": ROOT_CA_CONFIG_MAP, "namespace": key,
                                       "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}},
                          "data": data}
            try:
                await self.client.create("v1", "configmaps", config_map, key)
            except ApiError as err:
                # The namespace is gone or going: nothing to publish into. AlreadyExists
                # (the cache lags) is retried, and the cache then has it to compare.
                if err.not_found or _namespace_terminating(err):
                    return None
                raise
            return None
        annotations = (current.get("metadata") or {}).get("annotations") or {}
        if current.get("data") == data and annotations.get(DESCRIPTION_ANNOTATION):
            return None
        updated = copy.deepcopy(current)
        updated["data"] = data
        updated["metadata"]["annotations"] = {**annotations, DESCRIPTION_ANNOTATION: DESCRIPTION}
        await self.client.replace("v1", "configmaps", updated)
        return None


def _active(namespace: dict) -> bool:
    return not namespace["metadata"].get("deletionTimestamp") and (
        (namespace.get("status") or {}).get("phase", "Active") == "Active")


CONTROLLER = RootCACertPublisher
