"""The namespace controller's content deletion and the status conditions it writes."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from pilothouse.client import ApiError, ControllerContext, EventRecorder, InformerFactory
from pilothouse.controllers._discovery import (
    ApiResource,
    DiscoverySnapshot,
    build_snapshot,
    parse_resource_list,
)
from pilothouse.controllers.namespace import (
    CONTENT_FAILURE,
    CONTENT_REMAINING,
    DISCOVERY_FAILURE,
    FINALIZERS_REMAINING,
    DeletionIncomplete,
    DeletionReport,
    NamespaceController,
    merge_conditions,
    remaining_estimate,
)

ALL = frozenset({"create", "delete", "deletecollection", "get", "list", "patch", "update",
                 "watch"})


def test_conditions_of_a_clean_pass_are_all_false_with_upstreams_reasons() -> None:
    conditions = DeletionReport().conditions()
    assert {kind: status for kind, (status, _, _) in conditions.items()} == dict.fromkeys(
        conditions, "False")
    assert conditions[CONTENT_REMAINING][1:] == ("ContentRemoved",
                                                 "All content successfully removed")
    assert conditions[FINALIZERS_REMAINING][1] == "ContentHasNoFinalizers"


def test_conditions_say_what_remains_and_which_finalizers_hold_it() -> None:
    report = DeletionReport(remaining={"widgets.example.com": 2, "configmaps.": 1},
                            finalizers=Counter({"example.com/hold": 3}),
                            errors=["pods.: boom"], discovery_failure="metrics failed")
    conditions = report.conditions()
    assert conditions[CONTENT_REMAINING] == (
        "True", "SomeResourcesRemain",
        "Some resources are remaining: configmaps. has 1 resource instances, "
        "widgets.example.com has 2 resource instances")
    assert conditions[FINALIZERS_REMAINING] == (
        "True", "SomeFinalizersRemain",
        "Some content in the namespace has finalizers remaining: example.com/hold in 3 "
        "resource instances")
    assert conditions[CONTENT_FAILURE][:2] == ("True", "ContentDeletionFailed")
    assert conditions[DISCOVERY_FAILURE] == ("True", "DiscoveryFailed", "metrics failed")


def test_merge_moves_the_transition_time_only_when_the_status_changes() -> None:
    existing = [
        {"type": "Other", "status": "True", "lastTransitionTime": "t0"},
        {"type": CONTENT_REMAINING, "status": "True", "lastTransitionTime": "t0",
         "reason": "SomeResourcesRemain", "message": "old"},
        {"type": DISCOVERY_FAILURE, "status": "False", "lastTransitionTime": "t0",
         "reason": "ResourcesDiscovered", "message": "All resources successfully discovered"},
    ]
    wanted = {CONTENT_REMAINING: ("False", "ContentRemoved", "gone"),
              DISCOVERY_FAILURE: ("False", "ResourcesDiscovered", "changed text"),
              FINALIZERS_REMAINING: ("False", "ContentHasNoFinalizers", "done")}
    merged = {c["type"]: c for c in merge_conditions(existing, wanted, "t1")}
    assert merged["Other"]["lastTransitionTime"] == "t0"
    assert merged[CONTENT_REMAINING]["lastTransitionTime"] == "t1"
    assert merged[CONTENT_REMAINING]["message"] == "gone"
    assert merged[DISCOVERY_FAILURE]["lastTransitionTime"] == "t0"
    assert merged[DISCOVERY_FAILURE]["message"] == "changed text"
    assert merged[FINALIZERS_REMAINING]["lastTransitionTime"] == "t1"


def test_what_remains_is_waited_for_only_when_something_explains_it() -> None:
    held = {"metadata": {"finalizers": ["a/b"], "deletionTimestamp": "t"}}
    graceful = {"metadata": {"deletionTimestamp": "t", "deletionGracePeriodSeconds": 30}}
    unexplained = {"metadata": {}}
    assert remaining_estimate([held]) == (15, Counter({"a/b": 1}))
    assert remaining_estimate([graceful, held]) == (30, Counter({"a/b": 1}))
    assert remaining_estimate([unexplained]) == (0, Counter())


def test_only_top_level_resources_are_discovered() -> None:
    listed = parse_resource_list("apps/v1", {"resources": [
        {"name": "deployments", "kind": "Deployment", "namespaced": True, "verbs": ["list"]},
        {"name": "deployments/scale", "kind": "Scale", "namespaced": True, "verbs": ["get"]},
    ]})
    assert [(r.plural, r.api_version, r.group_resource) for r in listed] == [
        ("deployments", "apps/v1", "deployments.apps")]


class FakeApi:
    """Objects of a namespace by plural; records deletecollection and single deletes."""

    def __init__(self, objects: dict[str, list[dict[str, Any]]]) -> None:
        self.objects = objects
        self.calls: list[str] = []
        self.namespace = {"metadata": {"name": "doomed", "deletionTimestamp": "t",
                                       "resourceVersion": "1"},
                          "spec": {"finalizers": ["kubernetes"]},
                          "status": {"phase": "Terminating"}}

    async def get(self, api_version: str, plural: str, name: str) -> dict:
        return self.namespace

    async def replace(self, api_version: str, plural: str, obj: dict, *,
                      subresource: str) -> dict:
        self.calls.append(f"PUT {plural}/{subresource}")
        return obj

    async def request(self, method: str, path: str, *, body: Any = None) -> Any:
        if path.endswith("/finalize"):
            self.calls.append(f"PUT finalize {body['spec']['finalizers']}")
            return body
        plural = path.rsplit("/", 1)[1]
        self.calls.append(f"{method} {path} {body['propagationPolicy']}")
        self.objects[plural] = [o for o in self.objects.get(plural, [])
                                if o["metadata"].get("finalizers")]
        return {"kind": "Status", "status": "Success"}

    async def list_all(self, api_version: str, plural: str,
                       namespace: str | None = None) -> tuple[list[dict], str]:
        return list(self.objects.get(plural, [])), "1"

    async def delete(self, api_version: str, plural: str, name: str,
                     namespace: str | None = None, *, propagation_policy: str) -> None:
        self.calls.append(f"DELETE {plural}/{name} {propagation_policy}")
        if plural == "gone":
            raise ApiError(404, {"reason": "NotFound"})
        self.objects[plural] = [o for o in self.objects[plural]
                                if o["metadata"]["name"] != name]


def controller(api: FakeApi) -> NamespaceController:
    context = ControllerContext(api, InformerFactory(api),  # type: ignore[arg-type]
                                EventRecorder(api, "test"))  # type: ignore[arg-type]
    return NamespaceController(context)


def test_content_is_deleted_by_collection_or_one_by_one_and_what_remains_reported() -> None:
    single = ALL - {"deletecollection"}
    snapshot = build_snapshot([
        ("v1", True, [ApiResource("", "v1", "configmaps", "ConfigMap", True, ALL),
                      ApiResource("", "v1", "nodes", "Node", False, ALL)]),
        ("example.com/v1", True, [ApiResource("example.com", "v1", "widgets", "Widget", True,
                                              single)]),
        ("example.com/v1beta1", False, [ApiResource("example.com", "v1beta1", "widgets",
                                                    "Widget", True, single)]),
    ], {})
    api = FakeApi({
        "configmaps": [{"metadata": {"name": "a"}},
                       {"metadata": {"name": "held", "finalizers": ["x/y"],
                                     "deletionTimestamp": "t"}}],
        "widgets": [{"metadata": {"name": "w1"}}, {"metadata": {"name": "w2"}}],
    })
    report = asyncio.run(controller(api).delete_content("doomed", snapshot))
    assert api.calls == [
        "DELETE /api/v1/namespaces/doomed/configmaps Background",
        "DELETE widgets/w1 Background",
        "DELETE widgets/w2 Background",
    ]
    assert api.objects["widgets"] == []
    assert report.remaining == {"configmaps.": 1}
    assert report.finalizers == Counter({"x/y": 1})
    assert report.estimate == 15
    assert not report.errors


def reconcile(api: FakeApi, snapshot: DiscoverySnapshot) -> float | None:
    ctrl = controller(api)

    async def refresh() -> DiscoverySnapshot:
        return snapshot

    ctrl.discovery.refresh = refresh  # type: ignore[method-assign]
    return asyncio.run(ctrl.reconcile("doomed"))


def test_an_emptied_namespace_is_finalized_after_its_conditions_are_written() -> None:
    api = FakeApi({})
    assert reconcile(api, build_snapshot([], {})) is None
    assert api.calls == ["PUT namespaces/status", "PUT finalize []"]
    conditions = api.namespace["status"]["conditions"]
    assert {c["status"] for c in conditions} == {"False"}


def test_a_namespace_with_held_content_is_looked_at_again_not_finalized() -> None:
    configmaps = ApiResource("", "v1", "configmaps", "ConfigMap", True, ALL)
    api = FakeApi({"configmaps": [{"metadata": {"name": "held", "finalizers": ["x/y"]}}]})
    assert reconcile(api, build_snapshot([("v1", True, [configmaps])], {})) == 15 / 2 + 1
    assert not any("finalize" in call for call in api.calls)


def test_a_discovery_failure_is_reported_and_blocks_finalization() -> None:
    api = FakeApi({})
    with pytest.raises(DeletionIncomplete):
        reconcile(api, build_snapshot([], {"metrics.k8s.io/v1beta1": "503"}))
    assert api.calls == ["PUT namespaces/status"]
    failure = next(c for c in api.namespace["status"]["conditions"]
                   if c["type"] == DISCOVERY_FAILURE)
    assert failure["status"] == "True"
    assert failure["message"].startswith("Discovery failed for some groups, 1 failing")
