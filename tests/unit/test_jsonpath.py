"""JSONPath finds what kubectl's and the Table printer's JSONPath find."""

import pytest

from pilothouse.machinery.jsonpath import compile_jsonpath

JOB = {
    "metadata": {
        "name": "train",
        "labels": {"app": "mnist", "app.kubernetes.io/name": "trainer"},
    },
    "spec": {
        "replicas": 3,
        "items": [
            {"name": "a", "gpus": 1},
            {"name": "b", "gpus": 2.5},
            {"name": "c"},
        ],
    },
    "status": {
        "conditions": [
            {"type": "Created", "status": "True"},
            {"type": "Ready", "status": "False"},
        ],
    },
}


@pytest.mark.parametrize(
    ("expr", "found"),
    [
        (".spec.replicas", [3]),
        ("{.spec.replicas}", [3]),
        ("$.spec.replicas", [3]),
        (".metadata.labels.app", ["mnist"]),
        (r".metadata.labels.app\.kubernetes\.io/name", ["trainer"]),
        (r".metadata.labels['app\.kubernetes\.io/name']", ["trainer"]),
        ("['metadata']['name']", ["train"]),
        ('.status.conditions[?(@.type=="Ready")].status', ["False"]),
        (".status.conditions[?(@.type=='Created')].status", ["True"]),
        ('.status.conditions[?(@.status!="True")].type', ["Ready"]),
        (".spec.items[0].name", ["a"]),
        (".spec.items[-1].name", ["c"]),
        (".spec.items[*].name", ["a", "b", "c"]),
        (".spec.items[1:].name", ["b", "c"]),
        (".spec.items[0:2].name", ["a", "b"]),
        (".spec.items[::2].name", ["a", "c"]),
        (".spec.items[0,2].name", ["a", "c"]),
        (".spec.items[?(@.gpus)].name", ["a", "b"]),
        (".spec.items[?(@.gpus > 1)].name", ["b"]),
        (".spec.items[?(@.gpus>=1)].name", ["a", "b"]),
        (".spec.items[?(@.gpus<2)].name", ["a"]),
        (".spec.items[?(@.gpus<=2.5)].name", ["a", "b"]),
        (".spec.items[?(@.name==1)].name", []),  # a string never equals a number
        ("..name", ["train", "a", "b", "c"]),
        (".missing.field", []),
        (".spec.items.name", []),  # a field of a list is nothing, not a flattening
        (".spec.items[7].name", []),  # out of bounds: the printer shows an empty cell
        (".spec.replicas[0]", []),
    ],
)
def test_find(expr, found):
    assert compile_jsonpath(expr).find(JOB) == found


def test_bracketed_keys_are_paths_as_in_kubernetes():
    # client-go reads ['a.b'] as .a.b, so dotted keys need escaping even in brackets.
    assert compile_jsonpath(".metadata.labels['app.kubernetes.io/name']").find(JOB) == []


def test_wildcard_and_root():
    assert compile_jsonpath(".metadata.labels.*").find(JOB) == ["mnist", "trainer"]
    assert compile_jsonpath(".").find(JOB) == [JOB]


def test_field_names_run_to_the_next_terminator():
    assert compile_jsonpath(".a|b!c").find({"a|b!c": 1}) == [1]


def test_compiled_path_is_reusable():
    path = compile_jsonpath(".spec.replicas")
    assert path.find({"spec": {"replicas": 1}}) == [1]
    assert path.find({"spec": {}}) == []
    assert path.find(None) == []


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("", "empty JSONPath expression"),
        (".a[", "unterminated array"),
        (".a[x]", "invalid array index x"),
        (".a[1:-]", "array index - is not a number"),
        (".a[?(@.x==1)", "unclosed array expect ]"),
        (".a[?(@.x=='y)]", "unterminated filter"),
        (".a[?(@.x=1)]", "unrecognized filter operator ="),
        ("{.a", "unclosed action"),
        (".a..b....c", "invalid multiple recursive descent"),
        (".a[?(@.x=='y\")]", "unterminated filter"),
        ("#", "unrecognized character in action: U+0023 '#'"),
        ("range", "unrecognized identifier range"),
    ],
)
def test_compile_errors(expr, message):
    with pytest.raises(ValueError) as caught:
        compile_jsonpath(expr)
    assert str(caught.value) == message
