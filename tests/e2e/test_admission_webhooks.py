"""A validating admission webhook refuses a ConfigMap, and the real kubectl says so.

The webhook is an HTTPS server this test runs on 127.0.0.1 (tests/webhook_server.py),
registered by URL with its CA as caBundle, as an operator registers its own; it is scoped
to the test's namespace by namespaceSelector, so other tests never reach it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Cluster, free_port, wait_for
from tests.fake_kubelet import BackgroundLoop
from tests.webhook_server import WebhookServer


async def _decide(_path: str, request: dict[str, Any]) -> dict[str, Any]:
    if request["name"].startswith("forbidden-"):
        return {"allowed": False, "status": {"code": 403,
                                             "message": "names may not start with forbidden-"}}
    return {"allowed": True}


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    background = BackgroundLoop("admission-webhook")
    server = WebhookServer(free_port(), decide=_decide)
    background.run(server.start())
    try:
        yield server
    finally:
        background.run(server.stop())
        background.close()


def test_kubectl_shows_a_webhooks_denial(cluster: Cluster, ns: str,
                                         webhook: WebhookServer) -> None:
    name = f"deny-names-{ns}"
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "names.pilothouse.test",
            "clientConfig": {"url": webhook.url("/validate"), "caBundle": webhook.ca_bundle},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["configmaps"]}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        }],
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(config))
    try:
        listed = cluster.kubectl("get", "validatingwebhookconfigurations", name).stdout
        assert listed.split()[:4] == ["NAME", "WEBHOOKS", "AGE", name]
        assert listed.split()[4] == "1"

        def refused() -> bool:
            result = cluster.kubectl("create", "configmap", "forbidden-x", "-n", ns,
                                     check=False)
            return result.returncode != 0

        wait_for(refused, "the webhook refuses the configmap", timeout=10)
        result = cluster.kubectl("create", "configmap", "forbidden-x", "-n", ns, check=False)
        assert result.returncode == 1
        assert result.stderr.strip() == (
            'error: failed to create configmap: configmaps "forbidden-x" is forbidden: '
            'admission webhook "names.pilothouse.test" denied the request: names may not '
            "start with forbidden-")
        cluster.kubectl("create", "configmap", "allowed-x", "-n", ns)
        reviewed = [r["name"] for r in webhook.reviews["/validate"]]
        assert "allowed-x" in reviewed
    finally:
        cluster.kubectl("delete", "validatingwebhookconfiguration", name, check=False)
