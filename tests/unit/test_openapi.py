"""OpenAPI: structural schemas of built-in kinds and the documents kubectl reads, checked the
way kubectl reads them (fieldValidation detection, explain, strategic-merge-patch metadata)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from pilothouse.apiserver import openapi
from pilothouse.apiserver.openapi import OpenAPIDocuments, builtin_schema, model_for
from pilothouse.apiserver.registry.resource import Resource
from pilothouse.machinery import k8s_models

WIDGET_SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "description": "What the widget should be.",
            "properties": {
                "size": {"type": "integer"},
                "port": {"x-kubernetes-int-or-string": True,
                         "anyOf": [{"type": "integer"}, {"type": "string"}]},
            },
        },
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}

PODS = Resource(group="", version="v1", plural="pods", singular="pod", kind="Pod",
                namespaced=True, subresources=("status", "log"))
NAMESPACES = Resource(group="", version="v1", plural="namespaces", singular="namespace",
                      kind="Namespace", namespaced=False, subresources=("status",))
DEPLOYMENTS = Resource(group="apps", version="v1", plural="deployments", singular="deployment",
                       kind="Deployment", namespaced=True, short_names=("deploy",),
                       subresources=("status", "scale"))
TOKEN_REVIEWS = Resource(group="authentication.k8s.io", version="v1", plural="tokenreviews",
                         singular="tokenreview", kind="TokenReview", namespaced=False,
                         verbs=("create",), stored=False)
WIDGETS = Resource(group="example.com", version="v1", plural="widgets", singular="widget",
                   kind="Widget", namespaced=True, subresources=("status",),
                   schema=WIDGET_SCHEMA, custom=True)


@pytest.fixture
def served() -> list[Resource]:
    return [PODS, NAMESPACES, DEPLOYMENTS, TOKEN_REVIEWS, WIDGETS]


@pytest.fixture
def docs(served: list[Resource]) -> OpenAPIDocuments:
    return OpenAPIDocuments(lambda: served)


def supports_field_validation(doc: dict[str, Any], group: str, version: str, kind: str) -> bool:
    """kubectl's test (cli-runtime supportsQueryParamV3): the first PATCH operation tagged
    with the kind decides whether fieldValidation is listed."""
    gvk = {"group": group, "version": version, "kind": kind}
    for item in doc["paths"].values():
        patch = item.get("patch")
        if patch is None or patch.get("x-kubernetes-group-version-kind") != gvk:
            continue
        return any(p["name"] == "fieldValidation" for p in patch.get("parameters", []))
    return False


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


# --- model_for and builtin_schema ---------------------------------------------------------


@pytest.mark.parametrize(("gvk", "model"), [
    (("", "v1", "Pod"), "V1Pod"),
    (("", "v1", "Event"), "CoreV1Event"),
    (("events.k8s.io", "v1", "Event"), "EventsV1Event"),
    (("apps", "v1", "Deployment"), "V1Deployment"),
    (("autoscaling", "v2", "HorizontalPodAutoscaler"), "V2HorizontalPodAutoscaler"),
    (("rbac.authorization.k8s.io", "v1", "ClusterRole"), "V1ClusterRole"),
    (("apiextensions.k8s.io", "v1", "CustomResourceDefinition"), "V1CustomResourceDefinition"),
    (("example.com", "v1", "Widget"), None),
    (("example.com", "v1", "Deployment"), None),  # a CRD that reuses a built-in kind name
    (("", "v1", "PodSpec"), None),  # a model, but not a kind
])
def test_model_for(gvk: tuple[str, str, str], model: str | None) -> None:
    assert model_for(*gvk) == model


def test_pod_schema_is_inlined_with_containers_and_int_or_string_ports() -> None:
    pod = builtin_schema("", "v1", "Pod")
    containers = pod["properties"]["spec"]["properties"]["containers"]
    assert containers["type"] == "array"
    container = containers["items"]["properties"]
    assert container["name"] == {"type": "string"}
    assert container["image"] == {"type": "string"}
    probe_port = container["livenessProbe"]["properties"]["httpGet"]["properties"]["port"]
    assert probe_port == {"x-kubernetes-int-or-string": True}
    assert "$ref" not in orjson.dumps(pod).decode()


def test_int_or_string_and_quantity_fields_accept_numbers() -> None:
    service = builtin_schema("", "v1", "Service")
    port = service["properties"]["spec"]["properties"]["ports"]["items"]["properties"]
    assert port["targetPort"] == {"x-kubernetes-int-or-string": True}
    assert port["port"] == {"type": "integer"}

    deployment = builtin_schema("apps", "v1", "Deployment")
    rolling = (deployment["properties"]["spec"]["properties"]["strategy"]["properties"]
               ["rollingUpdate"]["properties"])
    assert rolling["maxSurge"]["x-kubernetes-int-or-string"] is True

    pod = builtin_schema("", "v1", "Pod")
    resources = (pod["properties"]["spec"]["properties"]["containers"]["items"]["properties"]
                 ["resources"]["properties"])
    limit = resources["limits"]["additionalProperties"]
    assert limit == {"x-kubernetes-int-or-string": True, "format": "quantity"}


def test_quantity_table_names_real_fields() -> None:
    for model, field in openapi.QUANTITY_FIELDS:
        described = k8s_models.model(model)
        assert described is not None, model
        assert field in {f.name for f in described.fields}, (model, field)


def test_deployment_metadata_is_an_object_and_free_form_fields_are_preserved() -> None:
    deployment = builtin_schema("apps", "v1", "Deployment")
    metadata = deployment["properties"]["metadata"]
    assert metadata["type"] == "object"
    assert metadata["properties"]["labels"] == {
        "type": "object", "additionalProperties": {"type": "string"}}
    assert metadata["properties"]["creationTimestamp"]["format"] == "date-time"
    fields_v1 = metadata["properties"]["managedFields"]["items"]["properties"]["fieldsV1"]
    assert fields_v1["x-kubernetes-preserve-unknown-fields"] is True
    secret = builtin_schema("", "v1", "Secret")
    assert secret["properties"]["data"]["additionalProperties"]["format"] == "byte"


def test_crd_schema_cuts_json_schema_recursion() -> None:
    crd = builtin_schema("apiextensions.k8s.io", "v1", "CustomResourceDefinition")
    version = crd["properties"]["spec"]["properties"]["versions"]["items"]["properties"]
    props = version["schema"]["properties"]["openAPIV3Schema"]["properties"]
    assert props["type"] == {"type": "string"}
    assert props["x-kubernetes-preserve-unknown-fields"] == {"type": "boolean"}
    assert props["properties"]["additionalProperties"]["x-kubernetes-preserve-unknown-fields"]


def test_unknown_kind_has_no_builtin_schema() -> None:
    assert builtin_schema("example.com", "v1", "Widget") is None


# --- /openapi/v3 --------------------------------------------------------------------------


def test_v3_root_lists_served_group_versions_with_hashes(docs: OpenAPIDocuments) -> None:
    paths = docs.v3_root()["paths"]
    assert set(paths) == {"api/v1", "apis/apps/v1", "apis/authentication.k8s.io/v1",
                          "apis/example.com/v1"}
    url = paths["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/apps/v1?hash=")
    body, etag = docs.v3_group_version_bytes("apis/apps/v1")
    assert url.endswith(f"?hash={etag}")
    assert orjson.loads(body) == docs.v3_group_version("apis/apps/v1")


def test_hash_changes_when_served_resources_change(docs: OpenAPIDocuments,
                                                   served: list[Resource]) -> None:
    before = docs.v3_root()["paths"]["apis/example.com/v1"]["serverRelativeURL"]
    served.append(Resource(group="example.com", version="v1", plural="gadgets",
                           singular="gadget", kind="Gadget", namespaced=True, custom=True))
    assert docs.v3_root()["paths"]["apis/example.com/v1"]["serverRelativeURL"] == before
    docs.invalidate()
    assert docs.v3_root()["paths"]["apis/example.com/v1"]["serverRelativeURL"] != before
    assert "/apis/example.com/v1/namespaces/{namespace}/gadgets" in (
        docs.v3_group_version("apis/example.com/v1")["paths"])


def test_unserved_group_version_has_no_document(docs: OpenAPIDocuments) -> None:
    assert docs.v3_group_version("apis/batch/v1") is None
    assert docs.v3_group_version_bytes("apis/batch/v1") is None


def test_apps_document_advertises_field_validation_on_patch(docs: OpenAPIDocuments) -> None:
    doc = docs.v3_group_version("apis/apps/v1")
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "apps", "version": "v1", "kind": "Deployment"}
    assert patch["x-kubernetes-action"] == "patch"
    names = [p["name"] for p in patch["parameters"]]
    assert {"dryRun", "fieldManager", "fieldValidation", "force"} <= set(names)
    assert set(patch["requestBody"]["content"]) == {
        "application/json-patch+json", "application/merge-patch+json",
        "application/strategic-merge-patch+json", "application/apply-patch+yaml"}
    assert supports_field_validation(doc, "apps", "v1", "Deployment")
    assert supports_field_validation(doc, "autoscaling", "v1", "Scale")


def test_paths_follow_verbs_and_scope(docs: OpenAPIDocuments) -> None:
    core = docs.v3_group_version("api/v1")["paths"]
    assert core["/api/v1/pods"]["get"]["x-kubernetes-action"] == "list"
    collection = core["/api/v1/namespaces/{namespace}/pods"]
    assert {"get", "post", "delete"} <= set(collection)
    assert collection["delete"]["x-kubernetes-action"] == "deletecollection"
    assert "/api/v1/namespaces/{namespace}/pods/{name}/status" in core
    assert "/api/v1/namespaces/{name}" in core  # cluster-scoped
    reviews = docs.v3_group_version("apis/authentication.k8s.io/v1")["paths"]
    assert list(reviews) == ["/apis/authentication.k8s.io/v1/tokenreviews"]
    assert list(reviews["/apis/authentication.k8s.io/v1/tokenreviews"]) == ["post", "parameters"]


def test_components_carry_kubernetes_names_gvk_and_patch_metadata(
        docs: OpenAPIDocuments) -> None:
    schemas = docs.v3_group_version("apis/apps/v1")["components"]["schemas"]
    deployment = schemas["io.k8s.api.apps.v1.Deployment"]
    assert deployment["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "version": "v1", "kind": "Deployment"}]
    assert deployment["properties"]["metadata"]["$ref"] == (
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
    assert "io.k8s.api.apps.v1.DeploymentList" in schemas
    assert "io.k8s.api.autoscaling.v1.Scale" in schemas
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["items"] == {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}
    image = schemas["io.k8s.api.core.v1.Container"]["properties"]["image"]
    assert image["type"] == "string" and image["description"].startswith("Container image")
    assert "io.k8s.apimachinery.pkg.util.intstr.IntOrString" in schemas
    for ref in refs(docs.v3_group_version("apis/apps/v1")):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_core_event_and_events_api_event_are_distinct_definitions() -> None:
    served = [
        Resource(group="", version="v1", plural="events", singular="event", kind="Event",
                 namespaced=True),
        Resource(group="events.k8s.io", version="v1", plural="events", singular="event",
                 kind="Event", namespaced=True),
    ]
    docs = OpenAPIDocuments(lambda: served)
    assert "io.k8s.api.core.v1.Event" in docs.v3_group_version("api/v1")["components"]["schemas"]
    events = docs.v3_group_version("apis/events.k8s.io/v1")["components"]["schemas"]
    assert events["io.k8s.api.events.v1.Event"]["x-kubernetes-group-version-kind"] == [
        {"group": "events.k8s.io", "version": "v1", "kind": "Event"}]


def test_custom_resource_appears_in_its_group_document(docs: OpenAPIDocuments) -> None:
    doc = docs.v3_group_version("apis/example.com/v1")
    widget = doc["components"]["schemas"]["com.example.v1.Widget"]
    assert widget["x-kubernetes-group-version-kind"] == [
        {"group": "example.com", "version": "v1", "kind": "Widget"}]
    assert widget["properties"]["spec"]["properties"]["size"] == {"type": "integer"}
    assert widget["properties"]["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in doc["components"]["schemas"]
    assert supports_field_validation(doc, "example.com", "v1", "Widget")
    patch = doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"]
    assert "application/strategic-merge-patch+json" not in patch["requestBody"]["content"]
    assert "application/merge-patch+json" in patch["requestBody"]["content"]
    assert "x-kubernetes-group-version-kind" not in WIDGET_SCHEMA  # the CRD's schema is copied
    assert "metadata" not in WIDGET_SCHEMA["properties"]


# --- /openapi/v2 --------------------------------------------------------------------------


def test_v2_has_the_same_definitions_and_only_swagger2_constructs(
        docs: OpenAPIDocuments) -> None:
    doc = docs.v2()
    assert doc["swagger"] == "2.0"
    definitions = doc["definitions"]
    assert definitions["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"]
    assert definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["type"] == "string"
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert "application/strategic-merge-patch+json" in patch["consumes"]
    assert any(p["name"] == "fieldValidation" and p["in"] == "query" and p["type"] == "string"
               for p in patch["parameters"])
    for ref in refs(doc):
        assert ref.startswith("#/definitions/") and ref[len("#/definitions/"):] in definitions
    text = orjson.dumps(definitions).decode()
    for v3_only in ('"anyOf"', '"oneOf"', '"nullable"', "#/components/"):
        assert v3_only not in text
