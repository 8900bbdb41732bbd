"""CustomResourceDefinition validation, defaulting and status, as `kubectl apply` of a CRD
would meet them on a real cluster."""

from __future__ import annotations

import copy

from pilothouse.apiserver.crd import crd_conditions, default_crd, validate_crd, validate_crd_update
from pilothouse.machinery.errors import FORBIDDEN, NOT_SUPPORTED, REQUIRED

SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {"type": "object", "properties": {"replicas": {"type": "integer", "default": 1}}},
        "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
    },
}


def make_crd(**spec: object) -> dict:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": copy.deepcopy(SCHEMA)},
                "subresources": {
                    "status": {},
                    "scale": {"specReplicasPath": ".spec.replicas",
                              "statusReplicasPath": ".status.replicas"},
                },
                "additionalPrinterColumns": [
                    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                ],
            }],
            **spec,
        },
    }
    default_crd(crd)
    return crd


def errors(crd: dict) -> list[str]:
    return [c.render() for c in validate_crd(crd)]


def version(crd: dict, i: int = 0) -> dict:
    return crd["spec"]["versions"][i]


def test_defaults_fill_names_and_conversion() -> None:
    crd = make_crd()
    assert crd["spec"]["names"]["singular"] == "widget"
    assert crd["spec"]["names"]["listKind"] == "WidgetList"
    assert crd["spec"]["conversion"] == {"strategy": "None"}


def test_defaults_keep_given_names() -> None:
    crd = make_crd(names={"plural": "widgets", "kind": "Widget", "singular": "wdg", "listKind": "Widgets"})
    assert crd["spec"]["names"]["singular"] == "wdg"
    assert crd["spec"]["names"]["listKind"] == "Widgets"


def test_valid_crd() -> None:
    assert validate_crd(make_crd()) == []


def test_name_must_be_plural_dot_group() -> None:
    crd = make_crd()
    crd["metadata"]["name"] = "gadgets.example.com"
    assert errors(crd) == [
        'metadata.name: Invalid value: "gadgets.example.com": must be spec.names.plural+"."+spec.group'
    ]


def test_group_needs_a_dot() -> None:
    crd = make_crd(group="example")
    crd["metadata"]["name"] = "widgets.example"
    assert errors(crd) == ['spec.group: Invalid value: "example": should be a domain with at least one dot']


def test_scope_must_be_known() -> None:
    [cause] = validate_crd(make_crd(scope="Global"))
    assert cause.reason == NOT_SUPPORTED
    assert cause.render() == 'spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced"'


def test_two_storage_versions_are_invalid() -> None:
    crd = make_crd()
    second = copy.deepcopy(version(crd))
    second["name"] = "v2"
    crd["spec"]["versions"].append(second)
    [cause] = validate_crd(crd)
    assert cause.field == "spec.versions"
    assert cause.message.endswith("must have exactly one version marked as storage version")


def test_no_storage_version_and_no_versions_are_invalid() -> None:
    crd = make_crd()
    version(crd)["storage"] = False
    assert [c.field for c in validate_crd(crd)] == ["spec.versions"]
    crd["spec"]["versions"] = []
    assert [c.field for c in validate_crd(crd)] == ["spec.versions"]


def test_version_names_unique_and_dns_labels() -> None:
    crd = make_crd()
    second = copy.deepcopy(version(crd))
    second["storage"] = False
    crd["spec"]["versions"].append(second)
    assert [c.message.endswith("must contain unique version names") for c in validate_crd(crd)] == [True]
    version(crd, 1)["name"] = "V2"
    [cause] = validate_crd(crd)
    assert cause.field == "spec.versions[1].name"


def test_names_are_checked() -> None:
    crd = make_crd(names={"plural": "Widgets", "kind": "wid get", "listKind": "wid get",
                          "singular": "widget", "shortNames": ["w_d"]})
    crd["metadata"]["name"] = "Widgets.example.com"
    fields = [c.field for c in validate_crd(crd)]
    assert "spec.names.plural" in fields
    assert "spec.names.kind" in fields
    assert "spec.names.shortNames[0]" in fields
    assert "spec.names.listKind" in fields


def test_kind_is_required() -> None:
    crd = make_crd(names={"plural": "widgets"})
    assert "spec.names.kind: Required value" in errors(crd)


def test_schema_is_required_and_must_be_structural() -> None:
    crd = make_crd()
    del version(crd)["schema"]
    assert errors(crd) == ["spec.versions[0].schema.openAPIV3Schema: Required value"]
    crd = make_crd()
    version(crd)["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["extra"] = {}
    assert errors(crd) == [
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[extra].type: "
        "Required value: must not be empty for specified object fields"
    ]


def test_cel_rules_are_rejected() -> None:
    crd = make_crd()
    version(crd)["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"] = [
        {"rule": "self.replicas >= 0"}
    ]
    [cause] = validate_crd(crd)
    assert cause.reason == FORBIDDEN
    assert cause.field == "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations"
    assert "CEL validation rules are not supported by this server yet" in cause.message


def test_webhook_conversion_is_rejected_clearly() -> None:
    crd = make_crd(conversion={"strategy": "Webhook", "webhook": {"clientConfig": {"url": "https://x"}}})
    [cause] = validate_crd(crd)
    assert cause.field == "spec.conversion.strategy"
    assert "conversion webhooks are not supported by this server yet" in cause.message


def test_scale_paths() -> None:
    crd = make_crd()
    version(crd)["subresources"]["scale"] = {"specReplicasPath": "spec.replicas",
                                             "labelSelectorPath": ".metadata.labels"}
    assert errors(crd) == [
        'spec.versions[0].subresources.scale.specReplicasPath: Invalid value: "spec.replicas": '
        "must be a simple json path starting with .",
        "spec.versions[0].subresources.scale.statusReplicasPath: Required value",
        'spec.versions[0].subresources.scale.labelSelectorPath: Invalid value: ".metadata.labels": '
        "should be a json path under either .spec or .status",
    ]


def test_printer_columns() -> None:
    crd = make_crd()
    version(crd)["additionalPrinterColumns"] = [{"name": "Age", "type": "time"}]
    assert errors(crd) == [
        'spec.versions[0].additionalPrinterColumns[0].type: Invalid value: "time": '
        "must be one of boolean,date,integer,number,string",
        "spec.versions[0].additionalPrinterColumns[0].JSONPath: Required value",
    ]


def test_status_subresource_restricts_root_schema() -> None:
    crd = make_crd()
    version(crd)["schema"]["openAPIV3Schema"]["anyOf"] = [{"required": ["spec"]}]
    [cause] = validate_crd(crd)
    assert cause.field == "spec.versions[0].schema.openAPIV3Schema.anyOf"
    assert "fields are allowed at the root of the schema if the status subresource is enabled" in cause.message


def test_protected_groups_need_approval() -> None:
    crd = make_crd(group="widgets.k8s.io")
    crd["metadata"]["name"] = "widgets.widgets.k8s.io"
    [cause] = validate_crd(crd)
    assert cause.reason == REQUIRED
    assert cause.field == "metadata.annotations[api-approved.kubernetes.io]"
    crd["metadata"]["annotations"] = {"api-approved.kubernetes.io": "unapproved, testing"}
    assert validate_crd(crd) == []


# --- updates ----------------------------------------------------------------------------------


def established(crd: dict) -> dict:
    crd = copy.deepcopy(crd)
    crd["status"] = crd_conditions(crd, "2024-01-01T00:00:00Z")
    return crd


def test_group_and_plural_are_immutable() -> None:
    old = established(make_crd())
    new = copy.deepcopy(old)
    new["spec"]["group"] = "example.org"
    new["spec"]["names"]["plural"] = "gizmos"
    new["metadata"]["name"] = "gizmos.example.org"
    assert [c.render() for c in validate_crd_update(new, old)] == [
        'spec.group: Invalid value: "example.org": field is immutable',
        'spec.names.plural: Invalid value: "gizmos": field is immutable',
    ]


def test_scope_and_kind_are_immutable_once_established() -> None:
    old = make_crd()
    new = copy.deepcopy(old)
    new["spec"]["scope"] = "Cluster"
    new["spec"]["names"]["kind"] = "Gadget"
    new["spec"]["names"]["listKind"] = "GadgetList"
    assert validate_crd_update(new, old) == []
    fields = [c.field for c in validate_crd_update(new, established(old))]
    assert fields == ["spec.scope", "spec.names.kind"]


def test_stored_version_cannot_be_dropped() -> None:
    old = established(make_crd())
    new = copy.deepcopy(old)
    version(new)["name"] = "v2"
    [cause] = validate_crd_update(new, old)
    assert cause.field == "status.storedVersions[0]"
    assert "v1 was previously a storage version" in cause.message


def test_adding_a_served_version_is_fine() -> None:
    old = established(make_crd())
    new = copy.deepcopy(old)
    v2 = copy.deepcopy(version(new))
    v2["name"] = "v2"
    version(new)["storage"] = False
    new["spec"]["versions"].append(v2)
    assert validate_crd_update(new, old) == []


# --- status -----------------------------------------------------------------------------------


def condition(status: dict, kind: str) -> dict:
    return next(c for c in status["conditions"] if c["type"] == kind)


def test_status_accepts_names_and_establishes() -> None:
    crd = make_crd()
    status = crd_conditions(crd, "2024-01-01T00:00:00Z")
    assert status["acceptedNames"] == {"plural": "widgets", "singular": "widget", "shortNames": ["wd"],
                                       "kind": "Widget", "listKind": "WidgetList"}
    assert status["storedVersions"] == ["v1"]
    assert condition(status, "NamesAccepted") == {
        "type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
        "message": "no conflicts found", "lastTransitionTime": "2024-01-01T00:00:00Z",
    }
    assert condition(status, "Established") == {
        "type": "Established", "status": "True", "reason": "InitialNamesAccepted",
        "message": "the initial names have been accepted", "lastTransitionTime": "2024-01-01T00:00:00Z",
    }


def test_status_keeps_transition_time_when_unchanged() -> None:
    crd = established(make_crd())
    status = crd_conditions(crd, "2024-06-01T00:00:00Z")
    assert condition(status, "NamesAccepted")["lastTransitionTime"] == "2024-01-01T00:00:00Z"
    assert condition(status, "Established")["lastTransitionTime"] == "2024-01-01T00:00:00Z"


def test_stored_versions_accumulate() -> None:
    crd = established(make_crd())
    v2 = copy.deepcopy(version(crd))
    v2["name"] = "v2"
    version(crd)["storage"] = False
    crd["spec"]["versions"].append(v2)
    assert crd_conditions(crd, "2024-06-01T00:00:00Z")["storedVersions"] == ["v1", "v2"]


def test_names_taken_by_another_crd_are_not_accepted() -> None:
    other = established(make_crd())
    other["metadata"]["name"] = "widgets2.example.com"
    crd = make_crd(names={"plural": "gadgets", "kind": "Gadget", "shortNames": ["wd"]})
    crd["metadata"]["name"] = "gadgets.example.com"
    status = crd_conditions(crd, "2024-01-01T00:00:00Z", other_crds=[other])
    names = condition(status, "NamesAccepted")
    assert (names["status"], names["reason"], names["message"]) == (
        "False", "ShortNamesConflict", '"wd" is already in use')
    assert condition(status, "Established")["status"] == "False"
    assert "shortNames" not in status["acceptedNames"]
    assert status["acceptedNames"]["plural"] == "gadgets"


def test_other_groups_do_not_conflict() -> None:
    other = established(make_crd(group="example.org"))
    other["metadata"]["name"] = "widgets.example.org"
    status = crd_conditions(make_crd(), "2024-01-01T00:00:00Z", other_crds=[other])
    assert condition(status, "Established")["status"] == "True"
