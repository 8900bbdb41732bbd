"""The root CA publisher against a fake API: `kube-root-ca.crt` in every active namespace,
put back when deleted or changed; and the CA the controller manager finds in its kubeconfig."""

from __future__ import annotations

import asyncio
import base64
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilothouse.client import ApiError, ControllerContext, EventRecorder, InformerFactory
from pilothouse.controllers.manager import kubeconfig_root_ca
from pilothouse.controllers.rootcacertpublisher import DESCRIPTION, RootCACertPublisher
from pilothouse.machinery.certs import serving_chain
from tests.settle import settle

#: A real CA: the kubeconfig test's loader builds a TLS context that trusts it.
CA = serving_chain("root-ca-test")[0].decode()
DESCRIPTION_KEY = "kubernetes.io/description"


class FakeApi:
    """Namespaces and ConfigMaps as the server keeps them: creates refused in namespaces
    that are missing or terminating, replaces checked against resourceVersion."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, dict[str, Any]]] = {"namespaces": {},
                                                              "configmaps": {}}
        self.version = 0
        self.writes = 0

    def put(self, plural: str, obj: dict[str, Any]) -> None:
        self.version += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.version)
        meta = obj["metadata"]
        key = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
        self.objects[plural][key] = obj

    def config_map(self, namespace: str) -> dict[str, Any] | None:
        return self.objects["configmaps"].get(f"{namespace}/kube-root-ca.crt")

    async def list_all(self, api_version: str, plural: str, namespace: str | None = None,
                       **kwargs: Any) -> tuple[list[dict], str]:
        return copy.deepcopy(list(self.objects[plural].values())), str(self.version)

    async def create(self, api_version: str, plural: str, obj: dict[str, Any],
                     namespace: str | None = None, **kwargs: Any) -> dict[str, Any]:
        if plural == "events":
            return obj
        ns = self.objects["namespaces"].get(namespace or "")
        if ns is None:
            raise ApiError(404, {"reason": "NotFound"})
        if ns["status"]["phase"] == "Terminating":
            raise ApiError(403, {"reason": "Forbidden", "details": {"causes": [
                {"reason": "NamespaceTerminating"}]}, "message": "being terminated"})
        key = f"{namespace}/{obj['metadata']['name']}"
        if key in self.objects[plural]:
            raise ApiError(409, {"reason": "AlreadyExists"})
        self.writes += 1
        self.put(plural, {**obj, "metadata": {**obj["metadata"], "namespace": namespace}})
        return copy.deepcopy(self.objects[plural][key])

    async def replace(self, api_version: str, plural: str, obj: dict[str, Any],
                      **kwargs: Any) -> dict[str, Any]:
        meta = obj["metadata"]
        current = self.objects[plural][f"{meta['namespace']}/{meta['name']}"]
        if meta["resourceVersion"] != current["metadata"]["resourceVersion"]:
            raise ApiError(409, {"reason": "Conflict"})
        self.writes += 1
        self.put(plural, obj)
        return obj

    async def patch(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {}


def namespace(name: str, phase: str = "Active") -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"phase": phase}}


@pytest.fixture
def api() -> FakeApi:
    fake = FakeApi()
    fake.put("namespaces", namespace("default"))
    fake.put("namespaces", namespace("shop"))
    return fake


def publisher(api: FakeApi, root_ca: str = CA) -> RootCACertPublisher:
    context = ControllerContext(api, InformerFactory(api),  # type: ignore[arg-type]
                                EventRecorder(api, "test"),  # type: ignore[arg-type]
                                {"root_ca": root_ca})
    return RootCACertPublisher(context)


def test_every_active_namespace_gets_the_ca_with_its_description(api: FakeApi) -> None:
    api.put("namespaces", namespace("leaving", "Terminating"))
    settle(ctrl := publisher(api), api)
    for ns in ("default", "shop"):
        published = api.config_map(ns)
        assert published is not None
        assert published["data"] == {"ca.crt": CA}
        assert published["metadata"]["annotations"] == {DESCRIPTION_KEY: DESCRIPTION}
    assert api.config_map("leaving") is None
    writes = api.writes
    settle(ctrl, api)
    assert api.writes == writes  # nothing to do twice


def test_a_deleted_or_changed_config_map_is_put_back(api: FakeApi) -> None:
    settle(ctrl := publisher(api), api)
    del api.objects["configmaps"]["shop/kube-root-ca.crt"]
    api.version += 1
    edited = copy.deepcopy(api.config_map("default"))
    assert edited is not None
    edited["data"] = {"ca.crt": "forged", "extra": "x"}
    edited["metadata"]["annotations"] = {"team": "web"}
    edited["metadata"]["labels"] = {"keep": "me"}
    api.put("configmaps", edited)
    settle(ctrl, api)
    assert (api.config_map("shop") or {})["data"] == {"ca.crt": CA}
    restored = api.config_map("default") or {}
    assert restored["data"] == {"ca.crt": CA}
    assert restored["metadata"]["annotations"] == {"team": "web", DESCRIPTION_KEY: DESCRIPTION}
    assert restored["metadata"]["labels"] == {"keep": "me"}


def test_a_namespace_that_turns_active_is_published_and_a_terminating_one_is_not_retried(
        api: FakeApi) -> None:
    api.put("namespaces", namespace("later", "Terminating"))
    settle(ctrl := publisher(api), api)
    assert api.config_map("later") is None
    api.put("namespaces", namespace("later"))
    settle(ctrl, api)
    assert (api.config_map("later") or {})["data"] == {"ca.crt": CA}
    # The cache still says Active while the server already refuses: no error, no retry.
    api.objects["namespaces"]["shop"]["status"]["phase"] = "Terminating"
    del api.objects["configmaps"]["shop/kube-root-ca.crt"]
    assert asyncio.run(ctrl.reconcile("shop")) is None
    assert api.config_map("shop") is None


def test_the_ca_is_read_from_the_controller_managers_kubeconfig(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {
            "server": "https://127.0.0.1:6443",
            "certificate-authority-data": base64.b64encode(CA.encode()).decode()}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}))
    assert kubeconfig_root_ca(str(kubeconfig)) == CA
