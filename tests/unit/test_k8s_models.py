"""The built-in kinds' models as shipped data (`machinery/k8s_models.json.gz`): current with the
client the tests install, enough for the API server without that client, and giving the same
schemas and documents the client's model classes gave when the server read them directly."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from pilothouse.machinery import k8s_models

REPO = Path(__file__).resolve().parents[2]

#: SHA-256 of the model-derived parts of the documents and of `builtin_schema`, for the
#: resources and kinds in `_WITHOUT_CLIENT`, as the API server produced them when it read the
#: `kubernetes` 37.0.2 client's model classes at run time (captured before the move to shipped
#: data). The data must reproduce them byte for byte; a deliberate change to how openapi.py
#: renders schemas updates them.
GOLDEN = {
    "v2 definitions": "63ad3d0d26ef5715644cdcf473284935dbca979fefaf325239ce84479775148b",
    "v3 api/v1": "1199eac1bca7e698a5ca3ab47fdfc7022bbfb5901916d644aacb01184464b95f",
    "v3 apis/apps/v1": "caac23ea9ea6e528abcb78b4a4cfd71855600b75b8bfe8e0b931b979f28a6d3c",
    "v3 apis/autoscaling/v2": "e4cfaed3e8e944e057c711e403681b5c4188bd193e1405ced6f592eb8db9e3dd",
    "v3 apis/apiextensions.k8s.io/v1":
        "d9b8a065751bc4a72fc806fc69619e0861b8337f741ef933289ec32b836e0341",
    "v3 apis/resource.k8s.io/v1":
        "11da2dc10847dceba50df0c9821a930615e71f26643ad84820caf82e2a07ad49",
    "schema /v1/Pod": "b35cf31572a052ec149a97319716bd3a135af044c9e93da3f513573103293785",
    "schema /v1/Service": "ba3fd8f0990ae5cf1833d99462480b6406541af6c52c021a32f790fbeae4aa40",
    "schema apps/v1/Deployment":
        "d46c4afff0b64d6add0e2392982c3b8578ef0794ab9c134fdddb0bb3a1af97a5",
    "schema autoscaling/v2/HorizontalPodAutoscaler":
        "0de53c155d4d33d2346326c4281b61888c6148e1381271ae0a1b8076d7ae5dd9",
    "schema apiextensions.k8s.io/v1/CustomResourceDefinition":
        "ac7645218b42a159b296cad52d04fe147f87ccf2b996609c53562574158c6def",
    "schema resource.k8s.io/v1/ResourceClaim":
        "994994c80ea9ce714a24619d8180c9a257c78ec8e5c3bc5e532fa3569a8325a5",
}

# Run in a fresh interpreter: `builtin_schema` caches inlined models in the order they are
# first met, so the order of calls is part of the result.
_WITHOUT_CLIENT = '''
import sys
sys.modules["kubernetes"] = None  # `import kubernetes` and `import kubernetes.x` now fail

import hashlib
import orjson
from pilothouse.apiserver.openapi import OpenAPIDocuments, builtin_schema
from pilothouse.apiserver.registry.resource import Resource
from pilothouse.machinery.patch import strategic_merge_patch

def resource(group, version, plural, kind, namespaced=True, subresources=("status",)):
    return Resource(group=group, version=version, plural=plural, singular=plural[:-1],
                    kind=kind, namespaced=namespaced, subresources=subresources)

served = [
    resource("", "v1", "pods", "Pod", subresources=("status", "log")),
    resource("", "v1", "services", "Service"),
    resource("", "v1", "nodes", "Node", namespaced=False),
    resource("", "v1", "events", "Event", subresources=()),
    resource("apps", "v1", "deployments", "Deployment", subresources=("status", "scale")),
    resource("batch", "v1", "cronjobs", "CronJob"),
    resource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    resource("events.k8s.io", "v1", "events", "Event", subresources=()),
    resource("apiextensions.k8s.io", "v1", "customresourcedefinitions",
             "CustomResourceDefinition", namespaced=False),
    resource("resource.k8s.io", "v1", "resourceclaims", "ResourceClaim"),
]

def sha(value):
    return hashlib.sha256(orjson.dumps(value)).hexdigest()

docs = OpenAPIDocuments(lambda: served)
hashes = {"v2 definitions": sha(docs.v2()["definitions"])}
for path in ("api/v1", "apis/apps/v1", "apis/autoscaling/v2", "apis/apiextensions.k8s.io/v1",
             "apis/resource.k8s.io/v1"):
    hashes[f"v3 {path}"] = sha(docs.v3_group_version(path)["components"]["schemas"])
for group, version, kind in (("", "v1", "Pod"), ("", "v1", "Service"),
                             ("apps", "v1", "Deployment"),
                             ("autoscaling", "v2", "HorizontalPodAutoscaler"),
                             ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
                             ("resource.k8s.io", "v1", "ResourceClaim")):
    hashes[f"schema {group}/{version}/{kind}"] = sha(builtin_schema(group, version, kind))

pod = builtin_schema("", "v1", "Pod")
patched = strategic_merge_patch(
    {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}},
    {"spec": {"containers": [{"name": "b", "image": "z"}]}}, "V1Pod")
print(orjson.dumps({
    "hashes": hashes,
    "pod_container": sorted(pod["properties"]["spec"]["properties"]["containers"]["items"]
                            ["properties"]),
    "patched": patched,
    "client_modules": sorted(name for name, module in sys.modules.items()
                             if name.startswith("kubernetes") and module is not None),
}).decode())
'''


@pytest.fixture(scope="module")
def without_client() -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", _WITHOUT_CLIENT], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout)


def test_the_shipped_data_is_what_the_installed_client_generates(tmp_path: Path) -> None:
    written = tmp_path / "k8s_models.json.gz"
    assert k8s_models.main(["--generate", "--output", str(written)]) == 0
    generated = gzip.decompress(written.read_bytes())
    shipped = gzip.decompress(k8s_models.DATA.read_bytes())
    if generated != shipped:
        new, old = orjson.loads(generated), orjson.loads(shipped)
        changed = sorted(name for name in new["models"].keys() | old["models"].keys()
                         if new["models"].get(name) != old["models"].get(name))
        pytest.fail(f"{k8s_models.DATA.name} (kubernetes {old['client']}) differs from what the "
                    f"installed kubernetes {new['client']} generates ({len(changed)} models, "
                    f"e.g. {changed[:5]}; group versions equal: "
                    f"{new['groupVersions'] == old['groupVersions']}); run "
                    "python -m pilothouse.machinery.k8s_models --generate")


def test_models_describe_what_the_schemas_need() -> None:
    pod = k8s_models.model("V1Pod")
    assert pod is not None and pod.has_kind
    assert [field.name for field in pod.fields] == [
        "apiVersion", "kind", "metadata", "spec", "status"]
    assert pod.description.startswith("Pod is a collection of containers")
    port = {field.name: field for field in k8s_models.model("V1ServicePort").fields}
    assert port["targetPort"].type == "object"
    assert port["targetPort"].admits == k8s_models.INT_OR_STRING
    assert port["port"].required and port["port"].admits is None
    entry = {field.name: field for field in k8s_models.model("V1ManagedFieldsEntry").fields}
    assert entry["fieldsV1"].admits == k8s_models.OBJECT
    props = {field.name: field for field in k8s_models.model("V1JSONSchemaProps").fields}
    assert props["default"].admits == k8s_models.ANY
    assert not k8s_models.model("V1PodSpec").has_kind
    assert k8s_models.model("V1NoSuchThing") is None
    assert {"core_v1", "apps_v1", "rbac_authorization_v1"} <= k8s_models.group_versions()
    assert int(k8s_models.client_version().split(".")[0]) >= k8s_models.MIN_CLIENT_MAJOR


def test_the_server_builds_schemas_and_patches_without_the_client(
        without_client: dict[str, Any]) -> None:
    assert without_client["client_modules"] == []
    assert {"name", "image", "ports", "resources"} <= set(without_client["pod_container"])
    assert without_client["patched"] == {"spec": {"containers": [
        {"name": "a", "image": "x"}, {"name": "b", "image": "z"}]}}


def test_schemas_and_documents_are_those_the_client_classes_gave(
        without_client: dict[str, Any]) -> None:
    assert without_client["hashes"] == GOLDEN
