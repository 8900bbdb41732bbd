"""`/openapi/v2` in gnostic's protobuf encoding, read back the way client-go reads it.

The bytes are decoded against the message definitions below, written by hand from gnostic's
`openapiv2/OpenAPIv2.proto` (the subset the served document uses), and turned back into the
Swagger JSON by gnostic's own mapping (camelCase keys, `Named*` lists as objects, vendor
extensions and `Any` as YAML, oneofs unwrapped). Every document the server can serve must come
back equal to its JSON form, less the proto3 zero values that the wire cannot carry. Over HTTP,
the encoding follows the Accept header as kube-openapi's handler does, with the JSON's ETag.
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilothouse.apiserver import openapi
from pilothouse.apiserver.openapi import OpenAPIDocuments
from pilothouse.apiserver.openapi_protobuf import JSON, PROTOBUF, encode_document, negotiate_v2
from pilothouse.apiserver.registry.resource import Resource
from pilothouse.machinery.protowire import iter_fields
from tests.inprocess import InProcessCluster, in_process_cluster

# The messages of openapi.v2 that the served document uses. A `oneof` block marks a message
# whose JSON form is its single set member.
OPENAPI_V2_PROTO = """
message Document { string swagger = 1; Info info = 2; Paths paths = 8;
  Definitions definitions = 9; repeated SecurityRequirement security = 12;
  SecurityDefinitions security_definitions = 13; repeated NamedAny vendor_extension = 16; }
message Info { string title = 1; string version = 2; string description = 3;
  repeated NamedAny vendor_extension = 7; }
message Paths { repeated NamedAny vendor_extension = 1; repeated NamedPathItem path = 2; }
message NamedPathItem { string name = 1; PathItem value = 2; }
message PathItem { string _ref = 1; Operation get = 2; Operation put = 3; Operation post = 4;
  Operation delete = 5; Operation options = 6; Operation head = 7; Operation patch = 8;
  repeated ParametersItem parameters = 9; repeated NamedAny vendor_extension = 10; }
message Operation { repeated string tags = 1; string summary = 2; string description = 3;
  ExternalDocs external_docs = 4; string operation_id = 5; repeated string produces = 6;
  repeated string consumes = 7; repeated ParametersItem parameters = 8;
  Responses responses = 9; repeated string schemes = 10; bool deprecated = 11;
  repeated NamedAny vendor_extension = 13; }
message ParametersItem { oneof oneof { Parameter parameter = 1;
  JsonReference json_reference = 2; } }
message Parameter { oneof oneof { BodyParameter body_parameter = 1;
  NonBodyParameter non_body_parameter = 2; } }
message NonBodyParameter { oneof oneof {
  HeaderParameterSubSchema header_parameter_sub_schema = 1;
  FormDataParameterSubSchema form_data_parameter_sub_schema = 2;
  QueryParameterSubSchema query_parameter_sub_schema = 3;
  PathParameterSubSchema path_parameter_sub_schema = 4; } }
message BodyParameter { string description = 1; string name = 2; string in = 3;
  bool required = 4; Schema schema = 5; repeated NamedAny vendor_extension = 6; }
message QueryParameterSubSchema { bool required = 1; string in = 2; string description = 3;
  string name = 4; bool allow_empty_value = 5; string type = 6; string format = 7;
  string collection_format = 9; Any default = 10; double maximum = 11;
  double minimum = 13; int64 max_length = 15; string pattern = 17; repeated Any enum = 21;
  repeated NamedAny vendor_extension = 23; }
message PathParameterSubSchema { bool required = 1; string in = 2; string description = 3;
  string name = 4; string type = 5; string format = 6; Any default = 9; double maximum = 10;
  double minimum = 12; int64 max_length = 14; string pattern = 16; repeated Any enum = 20;
  repeated NamedAny vendor_extension = 22; }
message JsonReference { string _ref = 1; string description = 2; }
message Responses { repeated NamedResponseValue response_code = 1;
  repeated NamedAny vendor_extension = 2; }
message NamedResponseValue { string name = 1; ResponseValue value = 2; }
message ResponseValue { oneof oneof { Response response = 1;
  JsonReference json_reference = 2; } }
message Response { string description = 1; SchemaItem schema = 2;
  repeated NamedAny vendor_extension = 5; }
message SchemaItem { oneof oneof { Schema schema = 1; FileSchema file_schema = 2; } }
message FileSchema { string format = 1; string title = 2; string description = 3;
  string type = 6; repeated NamedAny vendor_extension = 10; }
message Definitions { repeated NamedSchema additional_properties = 1; }
message Properties { repeated NamedSchema additional_properties = 1; }
message NamedSchema { string name = 1; Schema value = 2; }
message Schema { string _ref = 1; string format = 2; string title = 3; string description = 4;
  Any default = 5; double multiple_of = 6; double maximum = 7; bool exclusive_maximum = 8;
  double minimum = 9; bool exclusive_minimum = 10; int64 max_length = 11;
  int64 min_length = 12; string pattern = 13; int64 max_items = 14; int64 min_items = 15;
  bool unique_items = 16; int64 max_properties = 17; int64 min_properties = 18;
  repeated string required = 19; repeated Any enum = 20;
  AdditionalPropertiesItem additional_properties = 21; TypeItem type = 22;
  ItemsItem items = 23; repeated Schema all_of = 24; Properties properties = 25;
  string discriminator = 26; bool read_only = 27; ExternalDocs external_docs = 29;
  Any example = 30; repeated NamedAny vendor_extension = 31; }
message AdditionalPropertiesItem { oneof oneof { Schema schema = 1; bool boolean = 2; } }
message TypeItem { repeated string value = 1; }
message ItemsItem { repeated Schema schema = 1; }
message ExternalDocs { string description = 1; string url = 2;
  repeated NamedAny vendor_extension = 3; }
message NamedAny { string name = 1; Any value = 2; }
message Any { string yaml = 2; }
message SecurityRequirement { repeated NamedStringArray additional_properties = 1; }
message NamedStringArray { string name = 1; StringArray value = 2; }
message StringArray { repeated string value = 1; }
message SecurityDefinitions { repeated NamedSecurityDefinitionsItem additional_properties = 1; }
message NamedSecurityDefinitionsItem { string name = 1; SecurityDefinitionsItem value = 2; }
message SecurityDefinitionsItem { oneof oneof { ApiKeySecurity api_key_security = 2; } }
message ApiKeySecurity { string type = 1; string name = 2; string in = 3;
  string description = 4; repeated NamedAny vendor_extension = 5; }
"""

SCALARS = {"string", "bool", "int64", "double"}


def parse_proto(text: str) -> dict[str, tuple[bool, dict[int, tuple[str, str, bool]]]]:
    """message -> (is a oneof, {number: (field name, type, repeated)})."""
    messages = {}
    for name, body in re.findall(r"message (\w+) \{(.*?)\}\s*(?=message|\Z)", text, re.S):
        fields = {int(number): (field, type_, bool(repeated)) for repeated, type_, field, number
                  in re.findall(r"(repeated )?(\w+) (\w+) = (\d+);", body)}
        messages[name] = ("oneof oneof" in body, fields)
    return messages


MESSAGES = parse_proto(OPENAPI_V2_PROTO)


def decode(message: str, data: bytes) -> dict[str, Any]:
    """The fields of one message: {field name: value, or list of values if repeated}."""
    _, fields = MESSAGES[message]
    out: dict[str, Any] = {}
    for number, wire, value in iter_fields(data):
        name, type_, repeated = fields[number]  # an unknown field number fails here
        if type_ == "string":
            decoded: Any = value.decode()
        elif type_ == "bool":
            assert wire == 0
            decoded = bool(value)
        elif type_ == "int64":
            assert wire == 0
            decoded = value - (1 << 64) if value >= 1 << 63 else value
        elif type_ == "double":
            assert wire == 1
            decoded = struct.unpack("<d", value)[0]
        else:
            assert wire == 2, (message, name)
            decoded = decode(type_, value)
        if repeated:
            out.setdefault(name, []).append(decoded)
        else:
            assert name not in out, f"{message}.{name} written twice"
            out[name] = decoded
    return out


def json_name(field: str) -> str:
    if field == "_ref":
        return "$ref"
    head, *rest = field.split("_")
    return head + "".join(part.title() for part in rest)


def to_json(message: str, value: dict[str, Any]) -> Any:
    """gnostic's JSON form of a decoded message."""
    if message == "Any":
        return yaml.safe_load(value["yaml"])
    if message in ("TypeItem", "ItemsItem"):
        items = [to_json("Schema", v) if message == "ItemsItem" else v
                 for v in value.get("schema" if message == "ItemsItem" else "value", [])]
        return items[0] if len(items) == 1 else items
    if message == "StringArray":
        return value.get("value", [])
    oneof, fields = MESSAGES[message]
    types = {name: type_ for name, type_, _ in fields.values()}
    if oneof:
        (member, inner), = value.items()
        return inner if types[member] in SCALARS else to_json(types[member], inner)
    out: dict[str, Any] = {}
    for name, type_, repeated in fields.values():
        if name not in value:
            continue
        if repeated and type_.startswith("Named"):  # pairs: entries of this JSON object
            value_type = MESSAGES[type_][1][2][1]
            for pair in value[name]:
                out[pair.get("name", "")] = to_json(value_type, pair.get("value", {}))
        elif type_ in SCALARS:
            out[json_name(name)] = value[name]
        elif repeated:
            out[json_name(name)] = [to_json(type_, v) for v in value[name]]
        else:
            out[json_name(name)] = to_json(type_, value[name])
    return out


def read_back(data: bytes) -> dict[str, Any]:
    return to_json("Document", decode("Document", data))


#: Keys whose value is an object of named entries, not of keywords.
NAMED_OBJECTS = {"properties", "definitions", "paths", "responses", "securityDefinitions"}
#: Keys whose value travels as YAML (or as string lists), untouched.
RAW = {"default", "example", "security"}


def proto3_view(node: Any) -> Any:
    """A JSON document as proto3 carries it: scalars at their zero value are not written."""
    if isinstance(node, list):
        return [proto3_view(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in RAW or key.startswith("x-"):
            out[key] = value
        elif key == "additionalProperties" and isinstance(value, bool):
            out[key] = value  # a oneof member is written even when false
        elif key == "enum":
            if value:
                out[key] = value
        elif key in NAMED_OBJECTS:
            out[key] = {name: proto3_view(child) for name, child in value.items()}
        elif isinstance(value, dict) or value not in (False, 0, "", []):
            out[key] = proto3_view(value)
    return out


# --- what the server serves ---------------------------------------------------------------

WIDGET_SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "integer", "minimum": -3, "maximum": 10.5, "default": 1,
                         "multipleOf": 0.5},
                "color": {"type": "string", "enum": ["red", "no", "on"], "default": "red",
                          "maxLength": 16, "pattern": "^[a-z]+$"},
                "port": {"x-kubernetes-int-or-string": True,
                         "anyOf": [{"type": "integer"}, {"type": "string"}]},
                "labels": {"type": "object", "additionalProperties": {"type": "string"},
                           "maxProperties": 4},
                "ports": {"type": "array", "x-kubernetes-list-type": "map",
                          "x-kubernetes-list-map-keys": ["name"], "minItems": 0,
                          "items": {"type": "object", "required": ["name"],
                                    "properties": {"name": {"type": "string"}}}},
                "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                           "example": {"a": [1, "b", None, 2.5]}},
                "ratio": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
                "default": {"type": "string", "description": "a property named like a keyword"},
            },
            "x-kubernetes-validations": [{"rule": "self.size >= 0", "message": "é ✓"}],
        },
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}

SERVED = [
    Resource(group="", version="v1", plural="pods", singular="pod", kind="Pod",
             namespaced=True, subresources=("status", "log")),
    Resource(group="", version="v1", plural="configmaps", singular="configmap",
             kind="ConfigMap", namespaced=True),
    Resource(group="apps", version="v1", plural="deployments", singular="deployment",
             kind="Deployment", namespaced=True, subresources=("status", "scale")),
    Resource(group="authentication.k8s.io", version="v1", plural="tokenreviews",
             singular="tokenreview", kind="TokenReview", namespaced=False, verbs=("create",),
             stored=False),
    Resource(group="example.com", version="v1", plural="widgets", singular="widget",
             kind="Widget", namespaced=True, subresources=("status",), schema=WIDGET_SCHEMA,
             custom=True),
]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return OpenAPIDocuments(lambda: SERVED).v2()


def test_the_served_document_reads_back_as_its_json(document: dict[str, Any]) -> None:
    decoded = read_back(encode_document(document))
    assert decoded == proto3_view(document)
    assert list(decoded["definitions"]) == list(document["definitions"])  # order kept
    assert list(decoded["paths"]) == list(document["paths"])


def test_what_kubectl_reads_for_client_side_validation(document: dict[str, Any]) -> None:
    """kubectl finds a kind's model by its x-kubernetes-group-version-kind extension and
    walks its properties; a custom kind's schema keeps its keywords and extensions."""
    raw = decode("Document", encode_document(document))
    definitions = {pair["name"]: pair["value"]
                   for pair in raw["definitions"]["additional_properties"]}
    config_map = definitions["io.k8s.api.core.v1.ConfigMap"]
    gvk = {e["name"]: e["value"]["yaml"] for e in config_map["vendor_extension"]}
    assert yaml.safe_load(gvk["x-kubernetes-group-version-kind"]) == [
        {"group": "", "kind": "ConfigMap", "version": "v1"}]
    assert config_map["type"] == {"value": ["object"]}
    names = [p["name"] for p in config_map["properties"]["additional_properties"]]
    assert {"apiVersion", "kind", "metadata", "data", "binaryData", "immutable"} <= set(names)

    widget = to_json("Schema", definitions["com.example.v1.Widget"])
    spec = widget["properties"]["spec"]
    assert spec["properties"]["size"] == {"type": "integer", "minimum": -3, "maximum": 10.5,
                                          "default": 1, "multipleOf": 0.5}
    assert spec["properties"]["color"]["enum"] == ["red", "no", "on"]  # strings, not booleans
    assert spec["x-kubernetes-validations"] == [{"rule": "self.size >= 0", "message": "é ✓"}]
    assert widget["properties"]["metadata"] == {
        "$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "description": "Standard object's metadata."}


def test_parameters_and_responses_take_gnostics_oneof_members(
        document: dict[str, Any]) -> None:
    raw = decode("Document", encode_document(document))
    paths = {p["name"]: p["value"] for p in raw["paths"]["path"]}
    item = paths["/api/v1/namespaces/{namespace}/configmaps/{name}"]
    kinds = [next(iter(p["parameter"]["non_body_parameter"])) for p in item["parameters"]]
    assert kinds == ["path_parameter_sub_schema", "path_parameter_sub_schema",
                     "query_parameter_sub_schema"]  # name, namespace, pretty
    assert item["parameters"][0]["parameter"]["non_body_parameter"][
        "path_parameter_sub_schema"]["required"] is True
    body = item["put"]["parameters"][0]["parameter"]["body_parameter"]
    assert body["in"] == "body" and body["required"] is True
    assert body["schema"]["_ref"] == "#/definitions/io.k8s.api.core.v1.ConfigMap"
    delete_body = item["delete"]["parameters"][0]["parameter"]["body_parameter"]
    assert "required" not in delete_body  # false: a proto3 zero is not written
    ok = {r["name"]: r["value"] for r in item["get"]["responses"]["response_code"]}
    assert ok["200"]["response"]["schema"]["schema"]["_ref"].endswith("v1.ConfigMap")
    assert ok["401"] == {"response": {"description": "Unauthorized"}}


def test_oneof_members_zero_values_and_references_on_the_wire() -> None:
    doc = {
        "swagger": "2.0",
        "paths": {
            "x-note": {"by": "hand"},
            "/x": {"parameters": [{"$ref": "#/parameters/p"}], "get": {"responses": {
                "200": {"$ref": "#/responses/ok"},
                "default": {"description": "file", "schema": {"type": "file"}},
            }}},
        },
        "definitions": {"Closed": {"type": "object", "additionalProperties": False,
                                   "minimum": 0, "description": "", "required": [],
                                   "properties": {}},
                        "Tuple": {"type": ["array", "null"], "items": [{"type": "string"},
                                                                        {"type": "integer"}]},
                        # int64 is ten bytes of two's complement; gnostic takes any integer.
                        "Negative": {"type": "string", "minLength": -1}},
    }
    raw = decode("Document", encode_document(doc))
    closed = raw["definitions"]["additional_properties"][0]["value"]
    assert closed["additional_properties"] == {"boolean": False}  # a oneof member is written
    assert closed["properties"] == {}  # an empty message is written, zero scalars are not
    assert set(closed) == {"type", "additional_properties", "properties"}
    assert raw["paths"]["vendor_extension"] == [{"name": "x-note", "value": {"yaml": "by: hand\n"}}]
    item = raw["paths"]["path"][0]["value"]
    assert item["parameters"] == [{"json_reference": {"_ref": "#/parameters/p"}}]
    responses = {r["name"]: r["value"] for r in item["get"]["responses"]["response_code"]}
    assert responses["200"] == {"json_reference": {"_ref": "#/responses/ok"}}
    assert responses["default"]["response"]["schema"] == {"file_schema": {"type": "file"}}
    assert read_back(encode_document(doc)) == proto3_view(doc)
    assert encode_document({"swagger": "2.0"}) == b"\x0a\x032.0"  # field 1, length 3


def test_every_schema_keyword_the_v2_generator_keeps_reads_back() -> None:
    every = {
        "$ref": "#/definitions/B", "format": "int32", "title": "A", "description": "an A",
        "default": {"n": 1}, "multipleOf": 2, "maximum": 9, "exclusiveMaximum": True,
        "minimum": 1, "exclusiveMinimum": True, "maxLength": 5, "minLength": 1,
        "pattern": "^a", "maxItems": 3, "minItems": 1, "uniqueItems": True,
        "maxProperties": 4, "minProperties": 1, "required": ["n"], "enum": [1, "two"],
        "additionalProperties": {"type": "integer"}, "type": "object",
        "items": {"type": "string"}, "allOf": [{"$ref": "#/definitions/B"}],
        "properties": {"n": {"type": "integer"}}, "readOnly": True,
        "externalDocs": {"description": "more", "url": "https://example.com"},
        "example": [{"n": 2}], "x-kubernetes-map-type": "atomic",
    }
    assert set(every) - {"x-kubernetes-map-type"} == openapi._SWAGGER2_KEYS
    doc = {"swagger": "2.0", "definitions": {"A": every, "B": {"type": "object"}}}
    assert read_back(encode_document(doc)) == doc


def test_a_key_without_an_encoding_is_refused() -> None:
    with pytest.raises(ValueError, match="'tags'"):
        encode_document({"swagger": "2.0", "tags": [{"name": "core"}]})
    with pytest.raises(ValueError, match="'nullable'"):
        encode_document({"definitions": {"A": {"type": "string", "nullable": True}}})


@pytest.mark.parametrize(("accept", "served"), [
    ("", JSON),
    ("*/*", JSON),
    ("application/*", JSON),
    ("application/json", JSON),
    ("application/json, */*", JSON),
    ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", PROTOBUF),  # client-go
    ("application/com.github.proto-openapi.spec.v2.v1.0+protobuf", PROTOBUF),
    ("application/json;q=0.5, application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
     PROTOBUF),
    ("*/*;q=0.8, application/com.github.proto-openapi.spec.v2.v1.0+protobuf", PROTOBUF),
    ("text/html, application/json;q=0.1", JSON),
    ("text/html", None),
    ("application/yaml", None),
    ("application/vnd.kubernetes.protobuf", None),
])
def test_negotiation_follows_kube_openapi(accept: str, served: str | None) -> None:
    assert negotiate_v2(accept) == served


# --- over HTTP ----------------------------------------------------------------------------

CLIENT_GO = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"

GADGETS_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                 "openAPIV3Schema": {"type": "object", "properties": {"spec": {
                     "type": "object", "properties": {"size": {"type": "integer"}}}}}}}]},
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessCluster]:
    with in_process_cluster(Path(tmp_path_factory.mktemp("openapi-v2"))) as running:
        yield running


async def fetch(cluster: InProcessCluster,
                **headers: str) -> tuple[int, Mapping[str, str], bytes]:
    """GET /openapi/v2 with these headers (`If_None_Match` for If-None-Match): the status,
    the response's headers (by any case) and its body."""
    async with cluster.session() as session, session.get(
            "/openapi/v2", headers={k.replace("_", "-"): v for k, v in headers.items()}
    ) as response:
        return response.status, response.headers.copy(), await response.read()


def test_client_go_gets_protobuf_and_others_json_with_one_etag(
        cluster: InProcessCluster) -> None:
    status, headers, body = cluster.run(fetch(cluster, Accept=CLIENT_GO))
    assert status == 200
    assert headers["Content-Type"] == PROTOBUF
    assert headers["Vary"] == "Accept"
    decoded = read_back(body)
    assert "io.k8s.api.apps.v1.Deployment" in decoded["definitions"]

    status, json_headers, json_body = cluster.run(fetch(cluster))
    assert status == 200 and json_headers["Content-Type"] == JSON
    assert decoded == proto3_view(yaml.safe_load(json_body))
    assert headers["ETag"] == json_headers["ETag"]
    assert re.fullmatch(r'"[0-9A-F]{128}"', headers["ETag"])  # SHA-512 of the JSON


def test_a_cached_copy_is_revalidated_and_an_unservable_accept_refused(
        cluster: InProcessCluster) -> None:
    _, headers, _ = cluster.run(fetch(cluster, Accept=CLIENT_GO))
    status, again, body = cluster.run(fetch(cluster, Accept=CLIENT_GO,
                                            If_None_Match=headers["ETag"]))
    assert (status, body, again["ETag"]) == (304, b"", headers["ETag"])
    status, _, _ = cluster.run(fetch(cluster, Accept=CLIENT_GO, If_None_Match='"stale"'))
    assert status == 200
    status, refused, body = cluster.run(fetch(cluster, Accept="text/html"))
    assert (status, body, refused["Vary"]) == (406, b"", "Accept")


def test_a_new_crd_changes_the_document_and_its_etag(cluster: InProcessCluster) -> None:
    _, before, _ = cluster.run(fetch(cluster, Accept=CLIENT_GO))

    async def create_crd() -> None:
        async with cluster.session() as session, session.post(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                json=GADGETS_CRD) as response:
            assert response.status == 201, await response.text()

    cluster.run(create_crd())
    deadline = time.monotonic() + 10
    while True:
        _, headers, body = cluster.run(fetch(cluster, Accept=CLIENT_GO))
        if headers["ETag"] != before["ETag"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert headers["ETag"] != before["ETag"]
    gadget = read_back(body)["definitions"]["com.example.v1.Gadget"]
    assert gadget["x-kubernetes-group-version-kind"] == [
        {"group": "example.com", "kind": "Gadget", "version": "v1"}]
    assert gadget["properties"]["spec"]["properties"]["size"] == {"type": "integer"}
