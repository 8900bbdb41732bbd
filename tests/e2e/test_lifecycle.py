"""Object lifecycle with the real kubectl: namespaces, default service accounts, cascading deletion.

The controller manager that `pilothouse up` runs does the work: the namespace controller
empties a deleted namespace before the server lets it go, the service account controller
gives every namespace its `default` account, and the garbage collector deletes, orphans
or waits for dependents as `kubectl delete --cascade=...` asks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest

from .conftest import Cluster

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.lifecycle.example.com
spec:
  group: lifecycle.example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"""
HOLD = "lifecycle.example.com/hold"


def eventually(check: Callable[[], bool], *, timeout: float = 15, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check.__name__}")
        time.sleep(0.2)


def get_json(cluster: Cluster, *args: str) -> dict | None:
    result = cluster.kubectl("get", *args, "-o", "json", check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    return json.loads(result.stdout)


def apply(cluster: Cluster, manifest: dict) -> dict:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    meta = manifest["metadata"]
    found = get_json(cluster, manifest["kind"].lower(), meta["name"], "-n", meta["namespace"])
    assert found is not None
    return found


def owner_ref(owner: dict, *, block: bool = False) -> dict:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"],
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
            "blockOwnerDeletion": block}


def config_map(namespace: str, name: str, *, owners: list[dict] | None = None,
               finalizers: list[str] | None = None) -> dict:
    meta: dict = {"name": name, "namespace": namespace}
    if owners:
        meta["ownerReferences"] = owners
    if finalizers:
        meta["finalizers"] = finalizers
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


def gadget(namespace: str, name: str) -> dict:
    return {"apiVersion": "lifecycle.example.com/v1", "kind": "Gadget",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"size": 1}}


@pytest.fixture(scope="module")
def crd(cluster: Cluster) -> Iterator[None]:
    cluster.kubectl("apply", "-f", "-", input=CRD)
    cluster.kubectl("wait", "--for=condition=Established",
                    "crd/gadgets.lifecycle.example.com", "--timeout=15s")
    yield
    cluster.kubectl("delete", "crd", "gadgets.lifecycle.example.com", "--wait=false",
                    check=False)


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = ("lc-" + request.node.name.removeprefix("test_").replace("_", "-"))[:40].rstrip("-")
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_a_new_namespace_gets_its_default_service_account(cluster: Cluster,
                                                          namespace: str) -> None:
    eventually(lambda: get_json(cluster, "serviceaccount", "default", "-n", namespace)
               is not None, what="the default ServiceAccount")
    cluster.kubectl("delete", "serviceaccount", "default", "-n", namespace)
    eventually(lambda: get_json(cluster, "serviceaccount", "default", "-n", namespace)
               is not None, what="the default ServiceAccount to come back")


def test_deleting_a_namespace_deletes_its_content_then_the_namespace(cluster: Cluster,
                                                                     crd: None) -> None:
    name = "lc-doomed"
    cluster.kubectl("create", "namespace", name)
    for cm in ("one", "two"):
        apply(cluster, config_map(name, cm))
    apply(cluster, gadget(name, "widget"))

    result = cluster.kubectl("delete", "namespace", name, timeout=30)
    assert f'namespace "{name}" deleted' in result.stdout
    missing = cluster.kubectl("get", "namespace", name, check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr

    # A namespace of the same name starts empty: the content was deleted, not hidden (the
    # root CA ConfigMap every namespace gets may already be back).
    cluster.kubectl("create", "namespace", name)
    try:
        listed = cluster.kubectl("get", "configmaps,gadgets", "-n", name, "-o", "name")
        assert listed.stdout.split() in ([], ["configmap/kube-root-ca.crt"])
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false")


def test_a_terminating_namespace_reports_content_held_by_finalizers(cluster: Cluster) -> None:
    name = "lc-held"
    cluster.kubectl("create", "namespace", name)
    apply(cluster, config_map(name, "held", finalizers=[HOLD]))
    cluster.kubectl("delete", "namespace", name, "--wait=false")

    def conditions() -> dict[str, dict]:
        ns = get_json(cluster, "namespace", name) or {}
        return {c["type"]: c for c in (ns.get("status") or {}).get("conditions") or []}

    eventually(lambda: conditions().get("NamespaceFinalizersRemaining", {}).get("status")
               == "True", what="the NamespaceFinalizersRemaining condition")
    seen = conditions()
    assert seen["NamespaceContentRemaining"]["reason"] == "SomeResourcesRemain"
    assert "configmaps. has 1 resource instances" in seen["NamespaceContentRemaining"]["message"]
    assert f"{HOLD} in 1 resource instances" in seen["NamespaceFinalizersRemaining"]["message"]
    assert seen["NamespaceDeletionDiscoveryFailure"]["status"] == "False"
    ns = get_json(cluster, "namespace", name)
    assert ns is not None and ns["status"]["phase"] == "Terminating"
    assert ns["spec"]["finalizers"] == ["kubernetes"]

    cluster.kubectl("patch", "configmap", "held", "-n", name, "--type=merge",
                    "-p", '{"metadata":{"finalizers":null}}')
    cluster.kubectl("wait", "--for=delete", f"namespace/{name}", "--timeout=30s", timeout=40)


def test_background_cascade_deletes_dependents_after_the_owner(cluster: Cluster,
                                                               namespace: str) -> None:
    owner = apply(cluster, config_map(namespace, "owner"))
    for name in ("dep-a", "dep-b"):
        apply(cluster, config_map(namespace, name, owners=[owner_ref(owner)]))
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace, "--cascade=background")
    eventually(lambda: get_json(cluster, "configmap", "dep-a", "-n", namespace) is None
               and get_json(cluster, "configmap", "dep-b", "-n", namespace) is None,
               what="the dependents to be collected")


def test_foreground_cascade_keeps_the_owner_until_blocking_dependents_are_gone(
        cluster: Cluster, crd: None, namespace: str) -> None:
    owner = apply(cluster, gadget(namespace, "owner"))
    apply(cluster, config_map(namespace, "blocker", owners=[owner_ref(owner, block=True)],
                              finalizers=[HOLD]))
    apply(cluster, config_map(namespace, "plain", owners=[owner_ref(owner, block=True)]))
    cluster.kubectl("delete", "gadget", "owner", "-n", namespace, "--cascade=foreground",
                    "--wait=false")

    def blocker_terminating() -> bool:
        blocker = get_json(cluster, "configmap", "blocker", "-n", namespace) or {}
        return bool(blocker.get("metadata", {}).get("deletionTimestamp"))

    eventually(blocker_terminating, what="the blocking dependent to be deleted")
    eventually(lambda: get_json(cluster, "configmap", "plain", "-n", namespace) is None,
               what="the other dependent to be deleted")
    time.sleep(1)
    waiting = get_json(cluster, "gadget", "owner", "-n", namespace)
    assert waiting is not None, "the owner went before its blocking dependent"
    assert waiting["metadata"]["deletionTimestamp"]
    assert "foregroundDeletion" in waiting["metadata"]["finalizers"]

    cluster.kubectl("patch", "configmap", "blocker", "-n", namespace, "--type=merge",
                    "-p", '{"metadata":{"finalizers":null}}')
    cluster.kubectl("wait", "--for=delete", "gadget/owner", "-n", namespace, "--timeout=15s")


def test_foreground_delete_returns_once_dependents_and_owner_are_gone(cluster: Cluster,
                                                                      namespace: str) -> None:
    owner = apply(cluster, config_map(namespace, "owner"))
    apply(cluster, config_map(namespace, "dep", owners=[owner_ref(owner, block=True)]))
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace, "--cascade=foreground",
                    "--timeout=15s", timeout=30)
    assert get_json(cluster, "configmap", "owner", "-n", namespace) is None
    assert get_json(cluster, "configmap", "dep", "-n", namespace) is None


def test_orphan_cascade_keeps_dependents_without_the_reference(cluster: Cluster,
                                                               namespace: str) -> None:
    owner = apply(cluster, config_map(namespace, "owner"))
    other = apply(cluster, config_map(namespace, "other-owner"))
    apply(cluster, config_map(namespace, "only-child", owners=[owner_ref(owner)]))
    apply(cluster, config_map(namespace, "shared-child",
                              owners=[owner_ref(owner), owner_ref(other)]))

    cluster.kubectl("delete", "configmap", "owner", "-n", namespace, "--cascade=orphan",
                    "--timeout=15s", timeout=30)
    assert get_json(cluster, "configmap", "owner", "-n", namespace) is None
    time.sleep(1)  # give a wrong collector the chance to delete them
    only = get_json(cluster, "configmap", "only-child", "-n", namespace)
    assert only is not None and not only["metadata"].get("ownerReferences")
    kept = get_json(cluster, "configmap", "shared-child", "-n", namespace)
    assert kept is not None
    assert [r["name"] for r in kept["metadata"]["ownerReferences"]] == ["other-owner"]


def test_a_dependent_whose_owner_never_existed_is_collected(cluster: Cluster,
                                                            namespace: str) -> None:
    ghost = {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "ghost", "uid": "00000000-0000-0000-0000-000000000001"}}
    stray = config_map(namespace, "stray", owners=[owner_ref(ghost)])
    cluster.kubectl("apply", "-f", "-", input=json.dumps(stray))
    eventually(lambda: get_json(cluster, "configmap", "stray", "-n", namespace) is None,
               what="the dependent of an absent owner to be collected")
