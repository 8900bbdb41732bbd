"""Structural schemas applied to custom resources: validate, prune, default, and CRD schema
checks, asserting what a client sees in the Status causes and in the stored object."""

from __future__ import annotations

import copy

import pytest

from pilothouse.apiserver.schema import apply_defaults, is_structural, prune, validate
from pilothouse.machinery.errors import (
    DUPLICATE,
    FORBIDDEN,
    INVALID,
    NOT_SUPPORTED,
    REQUIRED,
    TOO_LONG,
    TOO_MANY,
    TYPE_INVALID,
)

WIDGET = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8},
                "replicas": {"type": "integer", "minimum": 1, "default": 1},
                "ratio": {"type": "number", "exclusiveMaximum": True, "maximum": 1.5},
                "mode": {"type": "string", "enum": ["fast", "slow"]},
                "port": {"x-kubernetes-int-or-string": True},
                "started": {"type": "string", "format": "date-time"},
                "uid": {"type": "string", "format": "uuid"},
                "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"},
                         "x-kubernetes-list-type": "set"},
                "workers": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "gpus": {"type": "integer", "default": 0},
                        },
                    },
                },
                "env": {"type": "object", "additionalProperties": {"type": "string"}},
                "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": True,
                    "x-kubernetes-preserve-unknown-fields": True,
                },
                "note": {"type": "string", "nullable": True},
            },
        },
        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    },
}


def widget(**spec: object) -> dict:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"name": "w", **spec},
    }


def rendered(causes: list) -> list[str]:
    return [c.render() for c in causes]


# --- validate ---------------------------------------------------------------------------------


def test_valid_object_has_no_causes() -> None:
    obj = widget(replicas=2, ratio=1, mode="fast", port="http", started="2024-05-01T10:00:00Z",
                 uid="0b9f5c1e-8d1a-4b7e-9a57-3d0b1f9a2c11", tags=["a", "b"],
                 workers=[{"name": "a"}, {"name": "b"}], env={"A": "1"},
                 config={"anything": {"goes": [1]}}, note=None,
                 template={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})
    assert validate(obj, WIDGET) == []


def test_wrong_type_names_field_and_actual_type() -> None:
    [cause] = validate(widget(replicas="abc"), WIDGET)
    assert cause.field == "spec.replicas"
    assert cause.reason == TYPE_INVALID
    assert cause.render() == (
        'spec.replicas: Invalid value: "string": spec.replicas in body must be of type '
        'integer: "string"'
    )


@pytest.mark.parametrize("value", [True, 1.5, None, [1], {"a": 1}])
def test_integer_rejects_bools_fractions_nulls_and_containers(value: object) -> None:
    assert [c.field for c in validate(widget(replicas=value), WIDGET)] == ["spec.replicas"]


def test_integral_float_counts_as_integer_and_number_accepts_int() -> None:
    assert validate(widget(replicas=3.0, ratio=1), WIDGET) == []


def test_required_field_missing() -> None:
    obj = widget()
    del obj["spec"]["name"]
    [cause] = validate(obj, WIDGET)
    assert (cause.field, cause.message, cause.reason) == ("spec.name", "Required value", REQUIRED)


def test_enum_lists_supported_values() -> None:
    [cause] = validate(widget(mode="medium"), WIDGET)
    assert cause.reason == NOT_SUPPORTED
    assert cause.render() == (
        'spec.mode: Unsupported value: "medium": supported values: "fast", "slow"'
    )


def test_numeric_bounds() -> None:
    assert rendered(validate(widget(replicas=0, ratio=1.5), WIDGET)) == [
        "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
        "spec.ratio: Invalid value: 1.5: spec.ratio in body should be less than 1.5",
    ]


def test_multiple_of() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 4},
                                               "f": {"type": "number", "multipleOf": 0.1}}}
    assert validate({"n": 8, "f": 0.3}, schema) == []
    assert rendered(validate({"n": 6}, schema)) == [
        "n: Invalid value: 6: n in body should be a multiple of 4"
    ]


def test_pattern_and_length() -> None:
    assert rendered(validate(widget(name="Abc"), WIDGET)) == [
        "spec.name: Invalid value: \"Abc\": spec.name in body should match '^[a-z]+$'"
    ]
    [too_long] = validate(widget(name="abcdefghij"), WIDGET)
    assert too_long.reason == TOO_LONG
    assert too_long.render() == "spec.name: Too long: may not be more than 8 bytes"


def test_min_length_counts_characters() -> None:
    schema = {"type": "object", "properties": {"s": {"type": "string", "minLength": 2}}}
    assert validate({"s": "éé"}, schema) == []
    assert rendered(validate({"s": "é"}, schema)) == [
        's: Invalid value: "é": s in body should be at least 2 chars long'
    ]


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        ("date-time", "2024-05-01T10:00:00.5+02:00", "2024-05-01 10:00"),
        ("date", "2024-02-29", "2023-02-29"),
        ("uuid", "0B9F5C1E-8D1A-4B7E-9A57-3D0B1F9A2C11", "not-a-uuid"),
        ("byte", "aGVsbG8=", "hello!"),
        ("ipv4", "10.0.0.1", "10.0.0.256"),
        ("cidr", "10.0.0.0/8", "10.0.0.0"),
        ("hostname", "example.com", "-bad-.com"),
        ("email", "a@example.com", "nobody"),
    ],
)
def test_string_formats(fmt: str, good: str, bad: str) -> None:
    schema = {"type": "object", "properties": {"v": {"type": "string", "format": fmt}}}
    assert validate({"v": good}, schema) == []
    [cause] = validate({"v": bad}, schema)
    assert cause.message.endswith(f'v in body must be of type {fmt}: "{bad}"')


def test_unknown_format_is_ignored() -> None:
    schema = {"type": "object", "properties": {"v": {"type": "string", "format": "k8s-weird"}}}
    assert validate({"v": "anything"}, schema) == []


def test_int_or_string() -> None:
    assert validate(widget(port=8080), WIDGET) == []
    assert validate(widget(port="http"), WIDGET) == []
    [cause] = validate(widget(port=True), WIDGET)
    assert "must be of type integer,string" in cause.message


def test_nullable_accepts_null_and_non_nullable_rejects_it() -> None:
    assert validate(widget(note=None), WIDGET) == []
    [cause] = validate(widget(mode=None), WIDGET)
    assert cause.message.endswith('must be of type string: "null"')


def test_array_limits_and_set_uniqueness() -> None:
    [too_many] = validate(widget(tags=["a", "b", "c"]), WIDGET)
    assert too_many.reason == TOO_MANY
    assert too_many.render() == "spec.tags: Too many: 3: must have at most 2 items"
    [dup] = validate(widget(tags=["a", "a"]), WIDGET)
    assert (dup.field, dup.reason, dup.message) == ("spec.tags[1]", DUPLICATE, 'Duplicate value: "a"')


def test_list_map_keys_must_be_unique_and_items_validated_with_index() -> None:
    causes = validate(widget(workers=[{"name": "a"}, {"name": "a", "gpus": "x"}, {}]), WIDGET)
    assert rendered(causes) == [
        'spec.workers[1].gpus: Invalid value: "string": spec.workers[1].gpus in body must be of '
        'type integer: "string"',
        "spec.workers[2].name: Required value",
        'spec.workers[1]: Duplicate value: {"name":"a"}',
    ]


def test_additional_properties_schema_and_false() -> None:
    [cause] = validate(widget(env={"A": 1}), WIDGET)
    assert cause.field == "spec.env.A"
    closed = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}
    [cause] = validate({"a": "x", "b": "y"}, closed)
    assert cause.message == 'Invalid value: "b": b in body is a forbidden property'


def test_object_property_counts() -> None:
    schema = {"type": "object", "properties": {"m": {"type": "object", "minProperties": 1, "maxProperties": 2,
                                                     "additionalProperties": {"type": "string"}}}}
    assert rendered(validate({"m": {}}, schema)) == [
        "m: Invalid value: 0: m in body should have at least 1 properties"
    ]
    assert rendered(validate({"m": {"a": "", "b": "", "c": ""}}, schema)) == [
        "m: Too many: 3: must have at most 2 items"
    ]


def test_embedded_resource_requires_type_meta_and_valid_metadata() -> None:
    causes = validate(widget(template={"metadata": {"name": "a/b", "labels": {"bad key!": "v"}}}), WIDGET)
    fields = [c.field for c in causes]
    assert fields == [
        "spec.template.apiVersion",
        "spec.template.kind",
        "spec.template.metadata.name",
        "spec.template.metadata.labels",
    ]
    assert causes[2].message == "Invalid value: \"a/b\": may not contain '/'"


def test_embedded_resource_metadata_of_wrong_shape() -> None:
    [cause] = validate(widget(template={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": 3}}), WIDGET)
    assert cause.field == "spec.template.metadata"
    assert "cannot unmarshal number into Go struct field ObjectMeta.name of type string" in cause.message


def test_composition_keywords() -> None:
    schema = {"type": "object", "properties": {"v": {
        "type": "integer",
        "anyOf": [{"minimum": 10}, {"maximum": 0}],
        "not": {"enum": [-1]},
    }}}
    assert validate({"v": 11}, schema) == []
    causes = rendered(validate({"v": 5}, schema))
    assert causes[0] == 'v: Invalid value: "": "v" must validate at least one schema (anyOf)'
    assert rendered(validate({"v": -1}, schema)) == [
        'v: Invalid value: "": "v" must not validate the schema (not)'
    ]
    one_of = {"type": "object", "properties": {"v": {"oneOf": [{"type": "integer"}, {"minimum": 0}]}}}
    assert rendered(validate({"v": 3}, one_of)) == [
        'v: Invalid value: "": "v" must validate one and only one schema (oneOf). Found 2 valid alternatives'
    ]


def test_same_problem_is_reported_once() -> None:
    schema = {"type": "object", "properties": {"v": {
        "allOf": [{"required": ["a"]}, {"required": ["a"]}], "type": "object"}}}
    causes = validate({"v": {}}, schema)
    assert len(causes) == len(set(causes))
    assert [c.field for c in causes].count("v.a") == 1


def test_path_prefix() -> None:
    [cause] = validate("x", {"type": "integer"}, path="spec.versions[0].default")
    assert cause.field == "spec.versions[0].default"


# --- prune ------------------------------------------------------------------------------------


def test_prune_removes_and_reports_unknown_fields() -> None:
    obj = widget(extra=1, workers=[{"name": "a", "shoe": 9}])
    obj["top"] = True
    obj["status"] = {"ready": True, "phase": "x"}
    removed = prune(obj, WIDGET)
    assert removed == ["spec.extra", "spec.workers[0].shoe", "status.phase", "top"]
    assert obj == {
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"name": "w", "workers": [{"name": "a"}]}, "status": {"ready": True},
    }


def test_prune_keeps_preserved_and_additional_properties() -> None:
    obj = widget(config={"deep": {"er": [1, {"x": 2}]}}, env={"ANY": "v"})
    assert prune(obj, WIDGET) == []
    assert obj["spec"]["config"] == {"deep": {"er": [1, {"x": 2}]}}
    assert obj["spec"]["env"] == {"ANY": "v"}


def test_prune_limits_metadata_to_object_meta() -> None:
    obj = widget(template={"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": "p", "color": "red"}, "spec": {"x": 1}})
    obj["metadata"].update({"labels": {"a": "b"}, "colour": "blue", "creationTimestamp": None,
                            "ownerReferences": [{"name": "o", "kind": "K", "extra": 1}]})
    removed = prune(obj, WIDGET)
    assert removed == [
        "metadata.colour",
        "metadata.ownerReferences[0].extra",
        "spec.template.metadata.color",
    ]
    assert obj["metadata"] == {"name": "w", "labels": {"a": "b"},
                               "ownerReferences": [{"name": "o", "kind": "K"}]}
    assert obj["spec"]["template"] == {"apiVersion": "v1", "kind": "Pod",
                                       "metadata": {"name": "p"}, "spec": {"x": 1}}


def test_prune_without_root_treats_type_meta_as_ordinary_fields() -> None:
    obj = {"kind": "X", "a": 1}
    assert prune(obj, {"type": "object", "properties": {"a": {"type": "integer"}}}, root=False) == []
    assert obj == {"a": 1}


def test_prune_drops_non_nullable_nulls_without_defaults() -> None:
    obj = widget(mode=None, note=None, replicas=None)
    assert prune(obj, WIDGET) == []
    assert "mode" not in obj["spec"]
    assert obj["spec"]["note"] is None
    assert obj["spec"]["replicas"] is None  # left for defaulting


# --- defaults ---------------------------------------------------------------------------------


def test_defaults_fill_absent_fields_recursively() -> None:
    obj = widget(workers=[{"name": "a"}, {"name": "b", "gpus": 2}], replicas=None)
    apply_defaults(obj, WIDGET)
    assert obj["spec"]["replicas"] == 1
    assert obj["spec"]["workers"] == [{"name": "a", "gpus": 0}, {"name": "b", "gpus": 2}]


def test_defaults_do_not_create_absent_parents_but_fill_defaulted_ones() -> None:
    schema = {"type": "object", "properties": {
        "a": {"type": "object", "properties": {"x": {"type": "integer", "default": 1}}},
        "b": {"type": "object", "default": {}, "properties": {"y": {"type": "integer", "default": 2}}},
        "m": {"type": "object", "additionalProperties": {
            "type": "object", "properties": {"z": {"type": "string", "default": "z"}}}},
    }}
    obj: dict = {"m": {"k": {}}}
    apply_defaults(obj, schema)
    assert obj == {"b": {"y": 2}, "m": {"k": {"z": "z"}}}


def test_default_values_are_copied() -> None:
    schema = {"type": "object", "properties": {"l": {"type": "array", "items": {"type": "string"}, "default": ["a"]}}}
    first: dict = {}
    second: dict = {}
    apply_defaults(first, schema)
    apply_defaults(second, schema)
    first["l"].append("b")
    assert second["l"] == ["a"] and schema["properties"]["l"]["default"] == ["a"]


# --- is_structural ----------------------------------------------------------------------------

PATH = "spec.versions[0].schema.openAPIV3Schema"


def structural_errors(schema: dict) -> list[str]:
    return rendered(is_structural(schema, path=PATH))


def test_widget_schema_is_structural() -> None:
    assert is_structural(WIDGET, path=PATH) == []


def test_fields_need_types() -> None:
    assert structural_errors({"type": "object", "properties": {"spec": {"properties": {}}}}) == [
        f"{PATH}.properties[spec].type: Required value: must not be empty for specified object fields"
    ]
    assert structural_errors({"properties": {}}) == [
        f"{PATH}.type: Required value: must not be empty at the root"
    ]


def test_array_needs_items_and_root_must_be_object() -> None:
    assert structural_errors({"type": "object", "properties": {"l": {"type": "array"}}}) == [
        f"{PATH}.properties[l].items: Required value: must be specified"
    ]
    assert structural_errors({"type": "string"}) == [
        f'{PATH}.type: Invalid value: "string": must be object at the root'
    ]


def test_properties_and_additional_properties_are_exclusive() -> None:
    schema = {"type": "object", "properties": {"m": {
        "type": "object", "properties": {"a": {"type": "string"}},
        "additionalProperties": {"type": "string"}}}}
    assert structural_errors(schema) == [
        f"{PATH}.properties[m].additionalProperties: Forbidden: additionalProperties and "
        "properties are mutual exclusive"
    ]


def test_value_validations_may_not_extend_the_structure() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}},
              "anyOf": [{"properties": {"b": {"type": "string"}}}]}
    errors = structural_errors(schema)
    assert f"{PATH}.anyOf[0].properties[b].type: Forbidden: must be empty to be structural" in errors
    assert (f"{PATH}.properties[b]: Required value: because it is defined in "
            f"{PATH}.anyOf[0].properties[b]") in errors


def test_int_or_string_any_of_pattern_is_allowed() -> None:
    schema = {"type": "object", "properties": {"p": {
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}]}}}
    assert is_structural(schema, path=PATH) == []


def test_root_metadata_may_only_restrict_name() -> None:
    ok = {"type": "object", "properties": {"metadata": {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 20}}}}}
    assert is_structural(ok, path=PATH) == []
    bad = {"type": "object", "properties": {"metadata": {"type": "object", "properties": {
        "labels": {"type": "object"}}}}}
    assert structural_errors(bad) == [
        f"{PATH}.properties[metadata]: Forbidden: must not specify anything other than name "
        "and generateName, but metadata is implicitly specified"
    ]


def test_defaults_must_validate_and_be_pruned() -> None:
    schema = {"type": "object", "properties": {
        "n": {"type": "integer", "default": "one"},
        "o": {"type": "object", "default": {"x": 1}, "properties": {"y": {"type": "integer"}}},
    }}
    assert structural_errors(schema) == [
        f'{PATH}.properties[n].default: Invalid value: "string": body must be of type integer: "string"',
        f'{PATH}.properties[o].default: Invalid value: {{"x":1}}: must not have unknown fields',
    ]


def test_cel_rules_are_rejected_with_a_clear_message() -> None:
    schema = {"type": "object", "x-kubernetes-validations": [{"rule": "self.a > 0"}]}
    [cause] = is_structural(schema, path=PATH)
    assert cause.field == f"{PATH}.x-kubernetes-validations"
    assert cause.reason == FORBIDDEN
    assert "CEL validation rules are not supported by this server yet" in cause.message


def test_unsupported_keywords() -> None:
    schema = {"type": "object", "properties": {
        "r": {"$ref": "#/definitions/x"},
        "u": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "p": {"type": "string", "pattern": "([a-z"},
        "t": {"type": "thing"},
    }}
    errors = structural_errors(schema)
    assert f"{PATH}.properties[r].$ref: Forbidden: $ref is not supported" in errors
    assert (f"{PATH}.properties[u].uniqueItems: Forbidden: uniqueItems cannot be set to true "
            "since the runtime complexity becomes quadratic") in errors
    assert any(e.startswith(f'{PATH}.properties[p].pattern: Invalid value: "([a-z": must be a valid regular expression') for e in errors)
    assert (f'{PATH}.properties[t].type: Unsupported value: "thing": supported values: "array", '
            '"boolean", "integer", "number", "object", "string"') in errors


def test_list_map_keys_must_be_required_or_defaulted() -> None:
    schema = {"type": "object", "properties": {"l": {
        "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
        "items": {"type": "object", "properties": {"name": {"type": "string"}}}}}}
    assert structural_errors(schema) == [
        f"{PATH}.properties[l].items.properties[name].default: Required value: this property is "
        "in x-kubernetes-list-map-keys, so it must have a default or be a required property"
    ]


def test_reason_constants_are_used() -> None:
    reasons = {c.reason for c in validate(widget(replicas=0, mode="x"), WIDGET)}
    assert reasons == {INVALID, NOT_SUPPORTED}


def test_validate_does_not_modify_input() -> None:
    obj = widget(workers=[{"name": "a"}])
    before = copy.deepcopy(obj)
    validate(obj, WIDGET)
    assert obj == before
