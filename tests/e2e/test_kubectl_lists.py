"""`kubectl apply -f` of a `kind: List`, what `kubectl get -o yaml` prints for several objects.

A List has no endpoint of its own, so kubectl cannot ask the server to validate it
(fieldValidation): it checks every item itself against the /openapi/v2 document, which
client-go fetches in gnostic's protobuf encoding. These tests drive the real kubectl through
that path: a List of built-in and custom kinds applies, an item with an unknown field is
refused by kubectl with its own message, and a backup taken with `get -o yaml` restores.
"""

from __future__ import annotations

import json

import pytest
import yaml

from .conftest import Cluster

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: sprockets.lists.example.com
spec:
  group: lists.example.com
  scope: Namespaced
  names: {plural: sprockets, singular: sprocket, kind: Sprocket}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [teeth]
            properties:
              teeth: {type: integer, minimum: 3}
              finish: {type: string, enum: [matte, gloss], default: matte}
"""

CONFIG_MAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
              "data": {"mode": "fast"}}
DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
    "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "web", "image": "python:3.11"}]}}},
}
SPROCKET = {"apiVersion": "lists.example.com/v1", "kind": "Sprocket",
            "metadata": {"name": "big"}, "spec": {"teeth": 40}}


def as_list(*items: dict) -> str:
    """A List manifest as a user would keep it in a file."""
    return yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": list(items)})


@pytest.fixture(scope="module")
def sprockets(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=CRD)
    cluster.kubectl("wait", "--for=condition=Established",
                    "crd/sprockets.lists.example.com", "--timeout=20s")


def test_a_list_of_built_in_and_custom_kinds_applies(cluster: Cluster, ns: str,
                                                     sprockets: None) -> None:
    k = cluster.kubectl
    manifest = as_list(CONFIG_MAP, DEPLOYMENT, SPROCKET)
    out = k("apply", "-n", ns, "-f", "-", input=manifest).stdout.splitlines()
    assert out == ["configmap/settings created", "deployment.apps/web created",
                   "sprocket.lists.example.com/big created"]
    assert k("get", "cm", "settings", "-n", ns, "-o", "jsonpath={.data.mode}").stdout == "fast"
    assert k("get", "deploy", "web", "-n", ns, "-o",
             "jsonpath={.spec.template.spec.containers[0].image}").stdout == "python:3.11"
    sprocket = json.loads(k("get", "sprocket", "big", "-n", ns, "-o", "json").stdout)
    assert sprocket["spec"] == {"teeth": 40, "finish": "matte"}  # the schema's default

    again = k("apply", "-n", ns, "-f", "-", input=manifest).stdout.splitlines()
    assert again == ["configmap/settings unchanged", "deployment.apps/web unchanged",
                     "sprocket.lists.example.com/big unchanged"]


def test_an_unknown_field_in_a_list_item_is_refused_by_kubectl(cluster: Cluster, ns: str,
                                                               sprockets: None) -> None:
    k = cluster.kubectl
    bogus = {**CONFIG_MAP, "metadata": {"name": "bogus"}, "bogus": 1}
    refused = k("apply", "-n", ns, "-f", "-", check=False, input=as_list(CONFIG_MAP, bogus))
    assert refused.returncode == 1
    assert ('error validating data: ValidationError(ConfigMap): unknown field "bogus" in '
            'io.k8s.api.core.v1.ConfigMap') in refused.stderr, refused.stderr
    assert "turn validation off with --validate=false" in refused.stderr
    nothing = k("get", "cm", "settings", "bogus", "-n", ns, "--ignore-not-found", "-o", "name")
    assert nothing.stdout == ""  # no item of the List was sent

    shiny = {**SPROCKET, "spec": {"teeth": 12, "colour": "red"}}
    refused = k("apply", "-n", ns, "-f", "-", check=False, input=as_list(shiny))
    assert refused.returncode == 1
    assert ('ValidationError(Sprocket.spec): unknown field "colour" in '
            'com.example.lists.v1.Sprocket.spec') in refused.stderr, refused.stderr

    missing = {**SPROCKET, "spec": {"finish": "gloss"}}
    refused = k("create", "--validate=true", "-n", ns, "-f", "-", check=False,
                input=as_list(missing))
    assert refused.returncode == 1
    assert ('ValidationError(Sprocket.spec): missing required field "teeth" in '
            'com.example.lists.v1.Sprocket.spec') in refused.stderr, refused.stderr
    created = k("create", "--validate=true", "-n", ns, "-f", "-", input=as_list(CONFIG_MAP))
    assert created.stdout.splitlines() == ["configmap/settings created"]


def test_a_backup_from_get_o_yaml_restores_with_apply(cluster: Cluster, ns: str) -> None:
    k = cluster.kubectl
    for name, value in (("first", "1"), ("second", "2")):
        k("create", "configmap", name, "-n", ns, f"--from-literal=value={value}")
        k("label", "configmap", name, "-n", ns, "backup=yes")
    backup = k("get", "cm", "-n", ns, "-l", "backup=yes", "-o", "yaml").stdout
    assert yaml.safe_load(backup)["kind"] == "List"
    k("delete", "cm", "first", "second", "-n", ns)
    restored = k("apply", "-n", ns, "-f", "-", input=backup).stdout.splitlines()
    assert restored == ["configmap/first created", "configmap/second created"]
    got = json.loads(k("get", "cm", "-n", ns, "-l", "backup=yes", "-o", "json").stdout)
    assert {i["metadata"]["name"]: i["data"] for i in got["items"]} == {
        "first": {"value": "1"}, "second": {"value": "2"}}


def test_explain_still_reads_the_schemas(cluster: Cluster, sprockets: None) -> None:
    k = cluster.kubectl
    out = k("explain", "configmap.data").stdout
    assert "FIELD: data <map[string]string>" in out
    out = k("explain", "sprockets.spec.teeth").stdout
    assert "FIELD: teeth <integer>" in out
