"""Server-side apply and managedFields, as `kubectl apply --server-side` users see them."""

from __future__ import annotations

import copy

import pytest

from pilothouse.machinery.apply import record_update, server_side_apply
from pilothouse.machinery.errors import APIError

T0, T1, T2 = "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z"


def deployment(replicas: int = 2, *containers: dict) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": list(containers)
                    or [{"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}]
                },
            },
        },
    }


def apply(live, config, manager="kubectl", force=False, now=T1, model="V1Deployment"):
    return server_side_apply(
        copy.deepcopy(live),
        copy.deepcopy(config),
        manager=manager,
        force=force,
        model=model,
        now=now,
    )


def entries(obj: dict) -> dict[tuple[str, str], dict]:
    return {(e["manager"], e["operation"]): e for e in obj["metadata"]["managedFields"]}


def containers(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"]


def test_create_records_ownership_as_kubernetes_serialises_it():
    obj = apply(None, deployment(), now=T0)
    assert obj["spec"]["replicas"] == 2
    assert obj["metadata"]["managedFields"] == [
        {
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": "apps/v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},  # LabelSelector is an atomic struct
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {
                            "f:containers": {
                                'k:{"name":"nginx"}': {
                                    ".": {},
                                    "f:image": {},
                                    "f:name": {},
                                    "f:ports": {
                                        'k:{"containerPort":80,"protocol":"TCP"}': {
                                            ".": {},
                                            "f:containerPort": {},
                                        }
                                    },
                                }
                            }
                        },
                    },
                },
            },
        }
    ]


def test_applying_the_same_configuration_twice_changes_nothing():
    first = apply(None, deployment(), now=T0)
    again = apply(first, deployment(), now=T1)
    assert again == first


def test_removing_a_field_from_the_configuration_deletes_it():
    first = apply(None, deployment(), now=T0)
    config = deployment()
    del config["metadata"]["labels"]
    config["spec"]["template"]["spec"]["containers"] = [{"name": "nginx", "image": "nginx:1.25"}]
    out = apply(first, config)
    assert "labels" not in out["metadata"]
    assert containers(out) == [{"name": "nginx", "image": "nginx:1.25"}]


def test_removing_a_container_from_the_configuration_deletes_it():
    both = deployment(2, {"name": "a", "image": "x"}, {"name": "b", "image": "y"})
    first = apply(None, both, now=T0)
    out = apply(first, deployment(2, {"name": "a", "image": "x"}))
    assert [c["name"] for c in containers(out)] == ["a"]


def test_a_field_another_manager_changed_conflicts_with_the_applier():
    live = apply(None, deployment(replicas=2), now=T0)
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 5
    record_update(live, scaled, manager="kubectl-client-side-apply", now=T1, model="V1Deployment")

    with pytest.raises(APIError) as err:
        apply(scaled, deployment(replicas=3), now=T2)
    status = err.value.status()
    assert (status["code"], status["reason"]) == (409, "Conflict")
    assert status["message"] == (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: '
        ".spec.replicas"
    )
    assert status["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
            "field": ".spec.replicas",
        }
    ]


def test_force_moves_ownership_to_the_applier():
    live = apply(None, deployment(replicas=2), now=T0)
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 5
    record_update(live, scaled, manager="hpa", now=T1, model="V1Deployment")
    assert "f:replicas" in entries(scaled)[("hpa", "Update")]["fieldsV1"]["f:spec"]

    out = apply(scaled, deployment(replicas=3), force=True, now=T2)
    assert out["spec"]["replicas"] == 3
    assert ("hpa", "Update") not in entries(out)  # it owned nothing else
    assert entries(out)[("kubectl", "Apply")]["time"] == T2


def test_two_appliers_share_a_field_and_dropping_it_keeps_it():
    first = apply(None, deployment(replicas=2), now=T0)
    shared = apply(
        first,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 2},
        },
        manager="ops",
        now=T1,
    )
    config = deployment()
    del config["spec"]["replicas"]
    out = apply(shared, config, now=T2)
    assert out["spec"]["replicas"] == 2  # "ops" still owns it


def test_a_second_applier_adds_a_container_without_touching_the_first():
    first = apply(None, deployment(), now=T0)
    sidecar = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy"}]}}},
    }
    out = apply(first, sidecar, manager="mesh", now=T1)
    assert [c["name"] for c in containers(out)] == ["nginx", "proxy"]
    # and re-applying the first configuration does not remove the sidecar
    again = apply(out, deployment(), now=T2)
    assert [c["name"] for c in containers(again)] == ["nginx", "proxy"]


def test_changing_a_conflicting_image_names_the_container_in_the_path():
    first = apply(None, deployment(), now=T0)
    with pytest.raises(APIError) as err:
        apply(first, deployment(2, {"name": "nginx", "image": "nginx:2"}), manager="other", now=T1)
    assert err.value.causes[0].field == '.spec.template.spec.containers[name="nginx"].image'
    assert 'conflict with "kubectl"' in err.value.message


def test_objects_without_managed_fields_are_owned_before_first_apply():
    legacy = deployment(replicas=4)
    with pytest.raises(APIError) as err:
        apply(legacy, deployment(replicas=1))
    assert 'conflict with "before-first-apply" using apps/v1: .spec.replicas' in err.value.message


def test_record_update_gives_the_writer_what_it_changed():
    created = deployment()
    record_update(None, created, manager="kubectl-create", now=T0, model="V1Deployment")
    owned = entries(created)[("kubectl-create", "Update")]
    assert owned["time"] == T0 and "f:replicas" in owned["fieldsV1"]["f:spec"]

    edited = copy.deepcopy(created)
    edited["metadata"]["labels"]["tier"] = "front"
    record_update(created, edited, manager="kubectl-edit", now=T1, model="V1Deployment")
    assert entries(edited)[("kubectl-edit", "Update")]["fieldsV1"] == {
        "f:metadata": {"f:labels": {"f:tier": {}}}
    }
    assert entries(edited)[("kubectl-create", "Update")]["time"] == T0


def test_record_update_ignores_status_and_server_set_metadata():
    old = deployment()
    record_update(None, old, manager="kubectl-create", now=T0, model="V1Deployment")
    new = copy.deepcopy(old)
    new["status"] = {"replicas": 2}
    new["metadata"]["resourceVersion"] = "7"
    record_update(old, new, manager="controller", now=T1, model="V1Deployment")
    assert list(entries(new)) == [("kubectl-create", "Update")]


def test_a_single_empty_entry_clears_managed_fields():
    old = deployment()
    record_update(None, old, manager="kubectl-create", now=T0, model="V1Deployment")
    new = copy.deepcopy(old)
    new["metadata"]["managedFields"] = [{}]
    record_update(old, new, manager="kubectl-edit", now=T1, model="V1Deployment")
    assert "managedFields" not in new["metadata"]


def test_custom_resources_own_map_fields_and_whole_lists():
    config = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "job"},
        "spec": {"runPolicy": {"cleanPodPolicy": "None"}, "args": ["a", "b"]},
    }
    obj = apply(None, config, model=None, now=T0)
    assert obj["metadata"]["managedFields"][0]["fieldsV1"] == {
        "f:spec": {"f:args": {}, "f:runPolicy": {"f:cleanPodPolicy": {}}}
    }
    config["spec"] = {"args": ["c"]}
    out = apply(obj, config, model=None, now=T1)
    assert out["spec"] == {"args": ["c"], "runPolicy": {}}


@pytest.mark.parametrize(
    "config",
    [
        deployment(2, {"image": "no-name"}),
        {**deployment(), "metadata": {"name": "web", "managedFields": [{"manager": "x"}]}},
    ],
)
def test_invalid_apply_configurations_are_400(config):
    with pytest.raises(APIError) as err:
        apply(None, config)
    assert err.value.code == 400
