"""Label and field selectors behave as the Kubernetes API server's do."""

import pytest

from pilothouse.machinery.errors import APIError
from pilothouse.machinery.selectors import (
    FieldSelector,
    LabelSelector,
    label_selector_from_dict,
    parse_field_selector,
    parse_label_selector,
    selector_string_from_dict,
)

POD = {"app": "web", "tier": "frontend", "gen": "3"}


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("app=web", POD, True),
        ("app==web", POD, True),
        ("app=db", POD, False),
        ("app!=db", POD, True),
        ("app!=web", POD, False),
        ("missing!=x", POD, True),
        ("app in (db,web)", POD, True),
        ("app in (db)", POD, False),
        ("app notin (db,cache)", POD, True),
        ("missing notin (x)", POD, True),
        ("app notin (web)", POD, False),
        ("tier", POD, True),
        ("missing", POD, False),
        ("!missing", POD, True),
        ("!tier", POD, False),
        ("gen>2", POD, True),
        ("gen>3", POD, False),
        ("gen<4", POD, True),
        ("app>1", POD, False),  # a non-numeric label never satisfies Gt/Lt
        ("app=web,tier=frontend", POD, True),
        ("app=web,tier=backend", POD, False),
        ("  app = web ,  tier in ( frontend , backend )  ", POD, True),
        ("", POD, True),
        ("", None, True),
        ("app=web", None, False),
        ("!app", None, True),
        ("app=", {"app": ""}, True),
        ("app=", {}, False),
    ],
)
def test_label_selector_matches(text, labels, expected):
    assert parse_label_selector(text).matches(labels) is expected


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("tier=x,app=web", "app=web,tier=x"),
        ("a==b", "a==b"),
        ("a in (c,b,a)", "a in (a,b,c)"),
        ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
        ("!a,b", "!a,b"),
        ("g>1,l<5", "g>1,l<5"),
        ("in in (in,notin)", "in in (in,notin)"),
        ("example.com/role=db", "example.com/role=db"),
    ],
)
def test_label_selector_renders_canonically(text, canonical):
    assert str(parse_label_selector(text)) == canonical


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("a=b,", "found '', expected: identifier after ','"),
        (",a", "found ',', expected: !, identifier, or 'end of string'"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ("a in b", "unable to parse requirement: found 'b' expected: '('"),
        ("a in (b c)", "unable to parse requirement: found 'c', expected: ',' or ')'"),
        (
            "a>x",
            'unable to parse requirement: values[0]: Invalid value: "x": '
            "for 'Gt', 'Lt' operators, the value must be an integer",
        ),
    ],
)
def test_label_selector_syntax_errors_are_bad_requests(text, message):
    with pytest.raises(APIError) as caught:
        parse_label_selector(text)
    assert caught.value.code == 400
    assert caught.value.reason == "BadRequest"
    assert caught.value.message == message


def test_label_selector_rejects_invalid_key_like_the_api_server():
    with pytest.raises(APIError) as caught:
        parse_label_selector("app:monolith")
    assert caught.value.message.startswith(
        'unable to parse requirement: <nil>: Invalid value: "app:monolith": name part must '
        "consist of alphanumeric characters"
    )


def test_label_selector_rejects_invalid_value():
    with pytest.raises(APIError) as caught:
        parse_label_selector("app=-web")
    assert caught.value.message.startswith(
        'unable to parse requirement: values[0][app]: Invalid value: "-web": a valid label must'
    )


def test_empty_selector_is_everything():
    selector = parse_label_selector("")
    assert selector.empty
    assert str(selector) == ""
    assert not parse_label_selector("a").empty


def test_label_selector_exact_match():
    assert parse_label_selector("app=web,tier").exact("app") == "web"
    assert parse_label_selector("app in (web)").exact("app") == "web"
    assert parse_label_selector("app in (web,db)").exact("app") is None
    assert parse_label_selector("app!=web").exact("app") is None


def test_nil_label_selector_matches_nothing_and_empty_matches_everything():
    nothing = label_selector_from_dict(None)
    assert not nothing.matches({})
    assert not nothing.matches(POD)
    assert not nothing.empty
    assert str(nothing) == ""
    for everything in (label_selector_from_dict({}), label_selector_from_dict({"matchLabels": {}})):
        assert everything.empty
        assert everything.matches(POD)
        assert everything.matches(None)


def test_label_selector_from_dict_matches_labels_and_expressions():
    selector = label_selector_from_dict({
        "matchLabels": {"tier": "frontend", "app": "web"},
        "matchExpressions": [
            {"key": "env", "operator": "NotIn", "values": ["prod", "dev"]},
            {"key": "gen", "operator": "Exists"},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "app", "operator": "In", "values": ["web", "api"]},
        ],
    })
    assert selector.matches(POD)
    assert not selector.matches({**POD, "env": "prod"})
    assert not selector.matches({**POD, "canary": "1"})
    assert not selector.matches({"app": "web", "tier": "frontend"})
    assert str(selector) == "app=web,app in (api,web),!canary,env notin (dev,prod),gen,tier=frontend"
    assert selector == label_selector_from_dict({
        "matchExpressions": [
            {"key": "app", "operator": "In", "values": ["web", "api"]},
            {"key": "env", "operator": "NotIn", "values": ["prod", "dev"]},
            {"key": "gen", "operator": "Exists"},
            {"key": "canary", "operator": "DoesNotExist"},
        ],
        "matchLabels": {"app": "web", "tier": "frontend"},
    })


def test_selector_string_for_scale_status():
    assert selector_string_from_dict({"matchLabels": {"b": "2", "a": "1"}}) == "a=1,b=2"
    assert selector_string_from_dict({}) == ""


@pytest.mark.parametrize(
    ("sel", "message"),
    [
        (
            {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]},
            '"Gt" is not a valid label selector operator',
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
            "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
            'values: Invalid value: []string{"x"}: values set must be empty for exists and does '
            "not exist",
        ),
    ],
)
def test_label_selector_from_dict_rejects_invalid(sel, message):
    with pytest.raises(ValueError) as caught:
        label_selector_from_dict(sel)
    assert str(caught.value) == message


def test_label_selector_from_dict_rejects_bad_key_and_value_together():
    with pytest.raises(ValueError) as caught:
        label_selector_from_dict({"matchLabels": {"bad key": "-"}})
    message = str(caught.value)
    assert message.startswith('[key: Invalid value: "bad key": ')
    assert 'values[0][bad key]: Invalid value: "-": ' in message


def test_label_selector_matches_any_mapping():
    class Labels(dict):
        pass

    assert parse_label_selector("app=web").matches(Labels(app="web"))
    assert isinstance(parse_label_selector("a"), LabelSelector)


# --- field selectors -----------------------------------------------------------------


def test_field_selector_matches_and_reports_fields():
    selector = parse_field_selector("status.phase!=Succeeded,status.phase!=Failed")
    assert selector.fields == {"status.phase"}
    assert selector.matches({"status.phase": "Running"})
    assert not selector.matches({"status.phase": "Failed"})
    assert selector.exact("status.phase") is None
    assert selector.requirements == [
        ("status.phase", "!=", "Failed"),
        ("status.phase", "!=", "Succeeded"),
    ]


def test_field_selector_equality_forms_and_exact():
    selector = parse_field_selector("metadata.name==web-0,spec.nodeName=node-1")
    assert selector.requirements == [
        ("metadata.name", "=", "web-0"),
        ("spec.nodeName", "=", "node-1"),
    ]
    assert selector.exact("metadata.name") == "web-0"
    assert selector.exact("metadata.namespace") is None
    assert selector.matches({"metadata.name": "web-0", "spec.nodeName": "node-1"})
    assert not selector.matches({"metadata.name": "web-1", "spec.nodeName": "node-1"})


def test_field_selector_missing_field_reads_as_empty():
    assert parse_field_selector("spec.nodeName=").matches({})
    assert not parse_field_selector("spec.nodeName!=").matches({})


def test_field_selector_escapes():
    selector = parse_field_selector(r"metadata.name=a\,b\=c\\d")
    assert selector.exact("metadata.name") == "a,b=c\\d"
    assert str(selector) == r"metadata.name=a\,b\=c\\d"


def test_empty_field_selector_is_everything():
    selector = parse_field_selector("")
    assert selector.empty
    assert selector.matches({"metadata.name": "x"})
    assert selector.fields == set()
    assert isinstance(selector, FieldSelector)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
        ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
        ("a=b=c", "invalid field selector: unescaped character in value: 61"),
        (r"a=b\x", r"invalid field selector: invalid escape sequence: \x"),
        ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
    ],
)
def test_field_selector_errors_are_bad_requests(text, message):
    with pytest.raises(APIError) as caught:
        parse_field_selector(text)
    assert caught.value.code == 400
    assert caught.value.message == message
