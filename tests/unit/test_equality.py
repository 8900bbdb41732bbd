"""equality.Semantic for JSON values: nil and empty alike, quantities by value."""

from __future__ import annotations

from pilothouse.machinery.equality import semantic, semantically_equal


def test_quantities_compare_by_value() -> None:
    ours = {"target": {"type": "AverageValue", "averageValue": "0.5"}}
    stored = {"target": {"type": "AverageValue", "averageValue": "500m"}}
    assert semantically_equal(ours, stored)
    assert semantically_equal({"cpu": 2}, {"cpu": "2000m"})
    assert not semantically_equal(ours, {"target": {"type": "AverageValue",
                                                    "averageValue": "501m"}})
    assert not semantically_equal({"type": "Pods"}, {"type": "Percent"})
    assert not semantically_equal({"a": 1}, {"a": 1, "b": 2})
    assert not semantically_equal({"on": True}, {"on": 1})


def test_nil_and_empty_are_the_same_field() -> None:
    assert semantically_equal({"spec": {"metrics": [], "behavior": None}}, {"spec": {}})
    assert semantically_equal({"labels": {}}, {})
    assert semantic({"a": {"b": None, "c": []}, "d": [None, {}]}) == {"d": [None, {}]}
    assert not semantically_equal({"spec": {"metrics": [{}]}}, {"spec": {}})
