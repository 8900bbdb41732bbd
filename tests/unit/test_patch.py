"""JSON patch, merge patch and strategic merge patch as kubectl and the clients use them."""

from __future__ import annotations

import pytest

from pilothouse.machinery.errors import APIError
from pilothouse.machinery.patch import (
    PATCH_META,
    field_model,
    field_type,
    json_patch,
    merge_key,
    merge_patch,
    strategic_merge_patch,
)


def pod() -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}, "finalizers": ["a"]},
        "spec": {
            "containers": [
                {
                    "name": "nginx",
                    "image": "nginx:1.25",
                    "env": [{"name": "MODE", "value": "prod"}],
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                },
                {"name": "sidecar", "image": "busybox"},
            ],
            "tolerations": [{"key": "a", "operator": "Exists"}],
        },
    }


# --- JSON patch ---------------------------------------------------------------------------


def test_json_patch_applies_operations_without_touching_the_input():
    doc = pod()
    out = json_patch(
        doc,
        [
            {"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:1.26"},
            {"op": "add", "path": "/metadata/labels/env", "value": "dev"},
            {"op": "remove", "path": "/metadata/labels/tier"},
        ],
    )
    assert out["spec"]["containers"][0]["image"] == "nginx:1.26"
    assert out["metadata"]["labels"] == {"app": "web", "env": "dev"}
    assert doc["spec"]["containers"][0]["image"] == "nginx:1.25"


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "test", "path": "/metadata/name", "value": "other"}],
        [{"op": "remove", "path": "/metadata/annotations/missing"}],
        [{"op": "frobnicate", "path": "/metadata/name"}],
    ],
)
def test_json_patch_that_cannot_apply_is_422(ops):
    with pytest.raises(APIError) as err:
        json_patch(pod(), ops)
    assert (err.value.code, err.value.reason) == (422, "Invalid")
    assert err.value.message == "the server rejected our request due to an error in our request"


@pytest.mark.parametrize("ops", [{"op": "add"}, ["add"], "x"])
def test_malformed_json_patch_document_is_400(ops):
    with pytest.raises(APIError) as err:
        json_patch(pod(), ops)
    assert (err.value.code, err.value.reason) == (400, "BadRequest")
    assert "cannot unmarshal" in err.value.message


def test_json_patch_operation_limit_is_413():
    ops = [{"op": "test", "path": "/kind", "value": "Pod"}] * 10001
    with pytest.raises(APIError) as err:
        json_patch(pod(), ops)
    assert err.value.code == 413


# --- merge patch --------------------------------------------------------------------------


def test_merge_patch_null_deletes_maps_merge_lists_replace():
    out = merge_patch(
        pod(),
        {
            "metadata": {"labels": {"tier": None, "env": "dev"}},
            "spec": {"containers": [{"name": "only"}]},
        },
    )
    assert out["metadata"]["labels"] == {"app": "web", "env": "dev"}
    assert out["spec"]["containers"] == [{"name": "only"}]
    assert out["spec"]["tolerations"] == [{"key": "a", "operator": "Exists"}]


def test_merge_patch_drops_nulls_inside_new_objects():
    out = merge_patch({"a": 1}, {"b": {"c": None, "d": 2}})
    assert out == {"a": 1, "b": {"d": 2}}


@pytest.mark.parametrize("patch", [None, [1], "x", 3])
def test_merge_patch_must_be_an_object(patch):
    with pytest.raises(APIError) as err:
        merge_patch(pod(), patch)
    assert err.value.code == 400
    assert err.value.message == "Invalid JSON Patch"


# --- strategic merge patch ----------------------------------------------------------------


def names(obj: dict) -> list[str]:
    return [c["name"] for c in obj["spec"]["containers"]]


def test_smp_changes_one_container_and_keeps_the_others():
    out = strategic_merge_patch(
        pod(), {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.26"}]}}, "V1Pod"
    )
    assert names(out) == ["nginx", "sidecar"]
    assert out["spec"]["containers"][0]["image"] == "nginx:1.26"
    assert out["spec"]["containers"][0]["env"] == [{"name": "MODE", "value": "prod"}]


def test_smp_delete_directive_removes_a_container_by_name():
    out = strategic_merge_patch(
        pod(), {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}, "V1Pod"
    )
    assert names(out) == ["nginx"]


def test_smp_merges_env_by_name_and_ports_by_container_port():
    patch = {
        "spec": {
            "containers": [
                {
                    "name": "nginx",
                    "env": [{"name": "MODE", "value": "dev"}, {"name": "DEBUG", "value": "1"}],
                    "ports": [{"containerPort": 443}],
                }
            ]
        }
    }
    container = strategic_merge_patch(pod(), patch, "V1Pod")["spec"]["containers"][0]
    assert {e["name"]: e["value"] for e in container["env"]} == {"MODE": "dev", "DEBUG": "1"}
    assert sorted(p["containerPort"] for p in container["ports"]) == [80, 443]


def test_smp_set_element_order_orders_the_merged_list():
    patch = {
        "spec": {
            "$setElementOrder/containers": [
                {"name": "sidecar"},
                {"name": "nginx"},
                {"name": "new"},
            ],
            "containers": [{"name": "new", "image": "x"}],
        }
    }
    assert names(strategic_merge_patch(pod(), patch, "V1Pod")) == ["sidecar", "nginx", "new"]


def test_smp_replaces_lists_without_a_merge_strategy():
    out = strategic_merge_patch(pod(), {"spec": {"tolerations": [{"key": "b"}]}}, "V1Pod")
    assert out["spec"]["tolerations"] == [{"key": "b"}]


def test_smp_unions_and_deletes_from_primitive_merge_lists():
    out = strategic_merge_patch(pod(), {"metadata": {"finalizers": ["b", "a"]}}, "V1Pod")
    assert sorted(out["metadata"]["finalizers"]) == ["a", "b"]
    out = strategic_merge_patch(
        out, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, "V1Pod"
    )
    assert out["metadata"]["finalizers"] == ["b"]


def test_smp_null_deletes_and_replace_directive_replaces_a_map():
    out = strategic_merge_patch(pod(), {"metadata": {"labels": {"tier": None}}}, "V1Pod")
    assert out["metadata"]["labels"] == {"app": "web"}
    out = strategic_merge_patch(
        pod(), {"metadata": {"labels": {"$patch": "replace", "x": "y"}}}, "V1Pod"
    )
    assert out["metadata"]["labels"] == {"x": "y"}


def test_smp_replace_directive_in_a_list_replaces_the_list():
    patch = {"spec": {"containers": [{"$patch": "replace"}, {"name": "solo", "image": "x"}]}}
    assert names(strategic_merge_patch(pod(), patch, "V1Pod")) == ["solo"]


def test_smp_retain_keys_clears_the_other_strategy_fields():
    deployment = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    out = strategic_merge_patch(deployment, patch, "V1Deployment")
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_smp_merges_service_ports_by_port():
    svc = {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}}
    out = strategic_merge_patch(
        svc, {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}, "V1Service"
    )
    assert {p["port"]: p.get("targetPort") for p in out["spec"]["ports"]} == {80: 9090, 443: None}


def test_smp_new_subtrees_lose_their_directives_and_nulls():
    out = strategic_merge_patch(
        {"spec": {}},
        {
            "spec": {
                "containers": [
                    {"name": "a", "image": "x", "command": None},
                    {"name": "b", "$patch": "delete"},
                ]
            }
        },
        "V1Pod",
    )
    assert out["spec"]["containers"] == [{"name": "a", "image": "x"}]


def test_smp_on_unknown_models_behaves_like_merge_patch():
    doc = {"spec": {"items": [1, 2], "m": {"a": 1}}}
    out = strategic_merge_patch(doc, {"spec": {"items": [3], "m": {"b": 2}}}, "NoSuchModel")
    assert out == {"spec": {"items": [3], "m": {"a": 1, "b": 2}}}


@pytest.mark.parametrize(
    "patch",
    [
        {"spec": {"containers": [{"image": "no-name"}]}},
        {"spec": {"containers": [{"name": "nginx", "$patch": "merge"}]}},
        {"spec": {"$setElementOrder/containers": {"name": "x"}}},
        {"spec": {"containers": [{"name": "x", "$patch": "explode"}]}},
        {"metadata": {"$retainKeys": ["name"], "labels": {"a": "b"}}},
        ["not", "an", "object"],
    ],
)
def test_smp_rejects_malformed_patches_with_400(patch):
    with pytest.raises(APIError) as err:
        strategic_merge_patch(pod(), patch, "V1Pod")
    assert err.value.code == 400


# --- the type graph -----------------------------------------------------------------------


def test_patch_meta_matches_kubernetes_struct_tags():
    assert merge_key("V1PodSpec", "containers") == ("merge", "name")
    assert merge_key("V1PodSpec", "volumes") == ("merge,retainKeys", "name")
    assert merge_key("V1Container", "ports") == ("merge", "containerPort")
    assert merge_key("V1ServiceSpec", "ports") == ("merge", "port")
    assert merge_key("V1ObjectMeta", "finalizers") == ("merge", None)
    assert merge_key("V1PodSpec", "tolerations") is None  # atomic in k8s.io/api


def test_every_patch_meta_entry_names_a_real_client_field():
    for (model, json_field), (strategy, key) in PATCH_META.items():
        typ = field_type(model, json_field)
        assert typ is not None, (model, json_field)
        if key is not None:
            item = field_model(model, json_field)
            assert item and field_type(item, key) is not None, (model, json_field, key)
        assert set(strategy.split(",")) <= {"merge", "replace", "retainKeys"}


def test_field_model_unwraps_lists_and_maps():
    assert field_model("V1Pod", "spec") == "V1PodSpec"
    assert field_model("V1PodSpec", "containers") == "V1Container"
    assert field_model("V1ObjectMeta", "labels") is None
    assert field_model("V1Pod", "nonexistent") is None
