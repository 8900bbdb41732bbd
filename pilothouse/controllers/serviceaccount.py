"""The service account controller: every active namespace has a `default` ServiceAccount.

Pods that name no service account run as `default`, so it must exist wherever pods may
be created. As upstream's ServiceAccountsController, namespaces are the work items: a
namespace added or changed, or its `default` ServiceAccount deleted, queues the
namespace, and reconcile creates the account when the cache lacks it. Namespaces that
are not Active (being deleted) are left alone; the server would refuse the create.
"""

from __future__ import annotations

from ..client import ApiError, Controller

DEFAULT_ACCOUNT = "default"


class ServiceAccountController(Controller):
    name = "serviceaccount-controller"

    def setup(self) -> None:
        self.namespaces = self.context.informers.informer("v1", "namespaces")
        self.namespaces.add_handler(self.enqueue_handler)
        self.accounts = self.context.informers.informer("v1", "serviceaccounts")
        self.accounts.add_handler(self._on_account)

    def _on_account(self, old: dict | None, new: dict | None) -> None:
        if new is None and old is not None:
            meta = old.get("metadata") or {}
            if meta.get("name") == DEFAULT_ACCOUNT and meta.get("namespace"):
                self.queue.add(meta["namespace"])

    async def reconcile(self, key: str) -> float | None:
        ns = self.namespaces.get(key)
        if ns is None or ns["metadata"].get("deletionTimestamp"):
            return None
        if (ns.get("status") or {}).get("phase", "Active") != "Active":
            return None
        if self.accounts.get(f"{key}/{DEFAULT_ACCOUNT}") is not None:
            return None
        account = {"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": DEFAULT_ACCOUNT, "namespace": key}}
        try:
            await self.client.create("v1", "serviceaccounts", account, key)
        except ApiError as err:
            # Already there (the cache lags), or the namespace is gone or going.
            if err.conflict or err.not_found or _namespace_terminating(err):
                return None
            raise
        return None


def _namespace_terminating(err: ApiError) -> bool:
    """The NamespaceLifecycle refusal, told apart from an RBAC one."""
    causes = (err.body.get("details") or {}).get("causes") or []
    return err.status == 403 and (
        any(c.get("reason") == "NamespaceTerminating" for c in causes)
        or "being terminated" in str(err.body.get("message", "")))


CONTROLLER = ServiceAccountController
