"""Which webhooks a write is sent to: rules, scopes, selectors, the index, and the words of
refusals and of unusable answers (pilothouse/apiserver/webhooks.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pilothouse.apiserver.admission import AdmissionRequest
from pilothouse.apiserver.registry import Resource, ResourceTable
from pilothouse.apiserver.registry.defaults import DEFAULTERS
from pilothouse.apiserver.registry.generic import WriteOptions
from pilothouse.apiserver.registry.validation import VALIDATORS
from pilothouse.apiserver.webhooks import (
    Rule,
    Webhook,
    WebhookDispatcher,
    _denied,
    _Invocation,
    _review_problem,
    compile_configuration,
    object_selector_matches,
)
from pilothouse.machinery.errors import APIError
from pilothouse.machinery.selectors import label_selector_from_dict

TABLE = ResourceTable()
PODS = TABLE.lookup("", "v1", "pods")
NAMESPACES = TABLE.lookup("", "v1", "namespaces")
NODES = TABLE.lookup("", "v1", "nodes")
DEPLOYMENTS = TABLE.lookup("apps", "v1", "deployments")
VALIDATING = TABLE.lookup("admissionregistration.k8s.io", "v1",
                          "validatingwebhookconfigurations")
assert PODS and NAMESPACES and NODES and DEPLOYMENTS and VALIDATING


def request(res: Resource, operation: str = "CREATE", *, namespace: str = "default",
            subresource: str = "", obj: dict[str, Any] | None = None,
            old: dict[str, Any] | None = None) -> AdmissionRequest:
    return AdmissionRequest(resource=res, operation=operation, namespace=namespace, name="x",
                            obj=obj, old=old, subresource=subresource)


def rule(resources: list[str], *, operations: tuple[str, ...] = ("*",),
         groups: tuple[str, ...] = ("*",), versions: tuple[str, ...] = ("*",),
         scope: str = "*") -> Rule:
    return Rule.from_dict({"operations": list(operations), "apiGroups": list(groups),
                           "apiVersions": list(versions), "resources": resources,
                           "scope": scope})


@pytest.mark.parametrize(("resources", "subresource", "expected"), [
    (["pods"], "", True),
    (["pods"], "status", False),
    (["pods/status"], "status", True),
    (["pods/status"], "", False),
    (["pods/*"], "", True),
    (["pods/*"], "status", True),
    (["*/status"], "status", True),
    (["*/status"], "", False),
    (["*"], "", True),
    (["*"], "status", False),
    (["*/*"], "status", True),
    (["deployments"], "", False),
])
def test_resources_and_subresources(resources: list[str], subresource: str,
                                    expected: bool) -> None:
    assert rule(resources).matches(request(PODS, subresource=subresource), "v1") is expected


def test_operations_groups_and_versions() -> None:
    creates = rule(["pods"], operations=("CREATE",), groups=("",), versions=("v1",))
    assert creates.matches(request(PODS), "v1")
    assert not creates.matches(request(PODS, "UPDATE"), "v1")
    assert not creates.matches(request(PODS), "v2")
    assert not rule(["deployments"], groups=("",)).matches(request(DEPLOYMENTS), "v1")
    assert rule(["deployments"], groups=("apps",)).matches(request(DEPLOYMENTS), "v1")


@pytest.mark.parametrize(("scope", "res", "namespace", "expected"), [
    ("Namespaced", PODS, "default", True),
    ("Namespaced", NODES, "", False),
    ("Namespaced", NAMESPACES, "default", False),  # a Namespace is cluster-scoped
    ("Cluster", NODES, "", True),
    ("Cluster", NAMESPACES, "default", True),
    ("Cluster", PODS, "default", False),
    ("*", PODS, "default", True),
    ("*", NODES, "", True),
])
def test_scopes(scope: str, res: Resource, namespace: str, expected: bool) -> None:
    assert rule(["*"], scope=scope).matches(request(res, namespace=namespace), "v1") is expected


def test_the_object_selector_reads_the_new_or_the_old_object() -> None:
    selector = label_selector_from_dict({"matchLabels": {"team": "a"}})
    labelled = {"metadata": {"labels": {"team": "a"}}}
    other = {"metadata": {"labels": {"team": "b"}}}
    assert object_selector_matches(selector, request(PODS, obj=labelled))
    assert object_selector_matches(selector, request(PODS, "UPDATE", obj=other, old=labelled))
    assert object_selector_matches(selector, request(PODS, "DELETE", old=labelled))
    assert not object_selector_matches(selector, request(PODS, obj=other))
    assert object_selector_matches(label_selector_from_dict({}), request(PODS, obj=other))


def configuration(name: str, *hooks: dict[str, Any], mutating: bool = False) -> dict[str, Any]:
    kind = "MutatingWebhookConfiguration" if mutating else "ValidatingWebhookConfiguration"
    config = {"kind": kind, "metadata": {"name": name}, "webhooks": [
        {"name": f"{h['name']}.example.com", "clientConfig": {"url": "https://h.example/x"},
         "rules": h.get("rules") or [{"operations": ["CREATE"], "apiGroups": ["*"],
                                      "apiVersions": ["*"], "resources": h["resources"]}],
         "sideEffects": "None", "admissionReviewVersions": ["v1"],
         **{k: v for k, v in h.items() if k not in ("name", "resources", "rules")}}
        for h in hooks]}
    DEFAULTERS[("admissionregistration.k8s.io", kind)](config)
    return config


def dispatcher(table: ResourceTable = TABLE) -> WebhookDispatcher:
    return WebhookDispatcher(None, table)  # type: ignore[arg-type]  # no calls made here


def test_compiling_a_configuration_applies_its_defaults() -> None:
    [hook] = compile_configuration(configuration("c", {"name": "a", "resources": ["pods"]}),
                                   mutating=False)
    assert (hook.name, hook.failure_policy, hook.match_policy, hook.timeout) == (
        "a.example.com", "Fail", "Equivalent", 10)
    assert hook.namespace_selector.empty and hook.object_selector.empty
    assert hook.rules[0].scope == "*"


def test_the_index_names_the_webhooks_of_a_resource_in_call_order() -> None:
    hooks = dispatcher()
    assert hooks.candidates(False, "", "pods") == ()
    hooks.upsert("validatingwebhookconfigurations",
                 configuration("b", {"name": "b1", "resources": ["pods"]},
                               {"name": "b2", "resources": ["*"]}))
    hooks.upsert("validatingwebhookconfigurations",
                 configuration("a", {"name": "a1", "resources": ["pods/status"]}))
    hooks.upsert("mutatingwebhookconfigurations",
                 configuration("m", {"name": "m1", "resources": ["pods"]}, mutating=True))
    assert [h.name for h in hooks.candidates(False, "", "pods")] == [
        "a1.example.com", "b1.example.com", "b2.example.com"]
    assert [h.name for h in hooks.candidates(False, "", "configmaps")] == ["b2.example.com"]
    assert [h.name for h in hooks.candidates(True, "", "pods")] == ["m1.example.com"]
    # The configuration kinds are never sent to webhooks, even those matching `*`.
    assert hooks.candidates(False, "admissionregistration.k8s.io",
                            "validatingwebhookconfigurations") == ()
    hooks.remove("validatingwebhookconfigurations", "b")
    assert [h.name for h in hooks.candidates(False, "", "pods")] == ["a1.example.com"]
    assert hooks.candidates(False, "", "configmaps") == ()


def _custom(version: str) -> Resource:
    return Resource("kubeflow.org", version, "pytorchjobs", "pytorchjob", "PyTorchJob", True,
                    custom=True)


def test_equivalent_matching_accepts_another_served_version() -> None:
    table = ResourceTable()
    table.set_custom("pytorchjobs.kubeflow.org", (_custom("v1"), _custom("v2")))
    hooks = dispatcher(table)
    v2_only = [{"operations": ["CREATE"], "apiGroups": ["kubeflow.org"],
                "apiVersions": ["v2"], "resources": ["pytorchjobs"]}]
    hooks.upsert("validatingwebhookconfigurations", configuration(
        "c", {"name": "equivalent", "rules": v2_only},
        {"name": "exact", "rules": v2_only, "matchPolicy": "Exact"}))
    candidates = hooks.candidates(False, "kubeflow.org", "pytorchjobs")
    write = request(_custom("v1"), obj={"apiVersion": "kubeflow.org/v1", "metadata": {}})
    matched = asyncio.run(hooks._matching(candidates, write))
    assert [(m.hook.name, m.version) for m in matched] == [("equivalent.example.com", "v2")]


def test_a_denial_reads_as_upstreams() -> None:
    hook = Webhook("c", "deny.example.com", mutating=False, rules=())
    err = _denied(hook, request(PODS), {"code": 400, "message": "no"})
    assert (err.code, err.reason, err.message) == (
        400, "Forbidden", 'pods "x" is forbidden: admission webhook "deny.example.com" denied '
        "the request: no")
    err = _denied(hook, request(PODS), {"reason": "NotAllowed"})
    assert (err.code, err.reason) == (403, "NotAllowed")
    assert err.message.endswith("denied the request: NotAllowed")
    err = _denied(hook, request(PODS), {"code": 500})
    assert (err.code, err.message) == (500, 'Internal error occurred: admission webhook '
                                       '"deny.example.com" denied the request without '
                                       "explanation")
    err = _denied(hook, request(PODS), {
        "code": 422, "reason": "Invalid", "message": "bad", "details": {
            "name": "x", "group": "kubeflow.org", "kind": "PyTorchJob",
            "causes": [{"field": "spec.a", "message": "Required value", "reason": "x"}]}})
    body = err.status()
    assert (err.code, body["details"]["kind"]) == (422, "PyTorchJob")  # the webhook's own
    assert body["details"]["causes"] == [
        {"field": "spec.a", "message": "Required value", "reason": "x"}]


@pytest.mark.parametrize(("review", "mutating", "problem"), [
    ({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}, False,
     "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got "
     "admission.k8s.io/v1beta1, Kind=AdmissionReview"),
    ({"response": None}, False, "webhook response was absent"),
    ({"response": {"uid": "other"}}, False, 'expected response.uid="u", got "other"'),
    ({"response": {"uid": "u", "patch": "e30="}}, True,
     "webhook returned response.patch but not response.patchType"),
    ({"response": {"uid": "u", "patch": "e30=", "patchType": "JSONPatch"}}, False,
     "validating webhooks may not return patches"),
    ({"response": {"uid": "u", "allowed": True}}, False, ""),
])
def test_unusable_answers_are_named(review: dict[str, Any], mutating: bool,
                                    problem: str) -> None:
    full = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", **review}
    assert _review_problem(full, "u", mutating=mutating) == problem


def test_a_dry_run_is_refused_by_a_webhook_with_side_effects() -> None:
    """Validation admits only None and NoneOnDryRun, but a webhook stored otherwise (by an
    older server) must not be called for a dry run."""
    hook = Webhook("c", "effects.example.com", mutating=False, rules=(rule(["*"]),),
                   side_effects="Some")
    hooks = dispatcher()
    write = request(PODS, obj={"metadata": {}})
    write.dry_run = True
    with pytest.raises(APIError) as raised:
        asyncio.run(hooks._call(_Invocation(hook, "v1"), write, WriteOptions(dry_run=True)))
    assert (raised.value.code, raised.value.message) == (
        400, 'admission webhook "effects.example.com" does not support dry run')


def test_configuration_validation_names_each_field() -> None:
    validate = VALIDATORS[("admissionregistration.k8s.io", "ValidatingWebhookConfiguration")]
    config = configuration("c", {"name": "a", "resources": ["*", "pods"]})
    hook = config["webhooks"][0]
    hook["clientConfig"] = {"service": {"namespace": "", "name": "svc", "port": 0,
                                        "path": "no-slash"}}
    hook["rules"][0]["scope"] = "Somewhere"
    hook["rules"][0]["operations"] = ["CREATE", "*"]
    messages = [c.render() for c in validate(config)]
    assert messages == [
        "webhooks[0].rules[0].operations: Invalid value: ['CREATE', '*']: if '*' is present, "
        "must not specify other operations",
        "webhooks[0].rules[0].resources: Invalid value: ['*', 'pods']: if '*' is present, "
        "must not specify other resources without subresources",
        'webhooks[0].rules[0].scope: Unsupported value: "Somewhere": supported values: "*", '
        '"Cluster", "Namespaced"',
        "webhooks[0].clientConfig.service.namespace: Required value: service namespace is "
        "required",
        "webhooks[0].clientConfig.service.port: Invalid value: 0: port is not valid: must be "
        "between 1 and 65535, inclusive",
        "webhooks[0].clientConfig.service.path: Invalid value: \"no-slash\": must start with "
        "a '/'",
    ]
