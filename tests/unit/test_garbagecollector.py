"""The garbage collector's graph and verdicts: who is deleted, orphaned, or waited for."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from pilothouse.client import ApiError, ControllerContext, EventRecorder, InformerFactory
from pilothouse.client.api import Connection
from pilothouse.controllers._discovery import ApiResource, build_snapshot
from pilothouse.controllers.garbagecollector import (
    FOREGROUND,
    KEEP,
    ORPHAN,
    Decision,
    DependencyGraph,
    GarbageCollector,
    OwnerStates,
    decide,
    node_for,
)

VERBS = frozenset({"get", "list", "watch", "delete", "patch"})
CONFIGMAPS = ApiResource("", "v1", "configmaps", "ConfigMap", True, VERBS)
WIDGETS = ApiResource("example.com", "v1", "widgets", "Widget", True, VERBS)
CLUSTER_ROLES = ApiResource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole",
                            False, VERBS)


def obj(name: str, uid: str, *, namespace: str = "ns", owners: list[dict] | None = None,
        finalizers: list[str] | None = None, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": uid, "resourceVersion": "1"}
    if namespace:
        meta["namespace"] = namespace
    if owners:
        meta["ownerReferences"] = owners
    if finalizers:
        meta["finalizers"] = finalizers
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta}


def ref(name: str, uid: str, *, kind: str = "ConfigMap", api_version: str = "v1",
        block: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid}
    if block:
        out["blockOwnerDeletion"] = True
    return out


# -- the graph ---------------------------------------------------------------------------


def test_a_dependent_whose_owner_the_graph_has_not_seen_is_checked() -> None:
    graph = DependencyGraph()
    work = graph.observe(node_for(obj("child", "c", owners=[ref("parent", "p")]), CONFIGMAPS))
    assert work == [("delete", "c")]


def test_a_dependent_of_a_known_owner_needs_no_look_until_the_owner_goes() -> None:
    graph = DependencyGraph()
    assert graph.observe(node_for(obj("parent", "p"), CONFIGMAPS)) == []
    assert graph.observe(node_for(obj("child", "c", owners=[ref("parent", "p")]),
                                  CONFIGMAPS)) == []
    assert graph.forget("p") == [("delete", "c")]


def test_an_owner_in_another_namespace_does_not_count() -> None:
    graph = DependencyGraph()
    graph.observe(node_for(obj("parent", "p", namespace="a"), CONFIGMAPS))
    work = graph.observe(node_for(obj("child", "c", namespace="b",
                                      owners=[ref("parent", "p")]), CONFIGMAPS))
    assert work == [("delete", "c")]


def test_a_cluster_scoped_owner_counts_for_a_namespaced_dependent_but_not_the_reverse() -> None:
    graph = DependencyGraph()
    graph.observe(node_for(obj("role", "r", namespace=""), CLUSTER_ROLES))
    role_ref = ref("role", "r", kind="ClusterRole", api_version="rbac.authorization.k8s.io/v1")
    assert graph.observe(node_for(obj("child", "c", owners=[role_ref]), CONFIGMAPS)) == []
    graph.observe(node_for(obj("cm", "m"), CONFIGMAPS))
    bad = node_for(obj("bad", "b", namespace="", owners=[ref("cm", "m")]), CLUSTER_ROLES)
    assert graph.observe(bad) == [("delete", "b")]


def test_a_reference_whose_name_or_kind_differs_from_the_uid_owner_does_not_count() -> None:
    graph = DependencyGraph()
    graph.observe(node_for(obj("parent", "p"), CONFIGMAPS))
    wrong_kind = ref("parent", "p", kind="Widget", api_version="example.com/v1")
    assert graph.observe(node_for(obj("c1", "c1", owners=[wrong_kind]), CONFIGMAPS)) == [
        ("delete", "c1")]
    assert graph.observe(node_for(obj("c2", "c2", owners=[ref("other", "p")]), CONFIGMAPS)) == [
        ("delete", "c2")]


def test_foreground_deletion_of_an_owner_puts_its_dependents_and_itself_to_work() -> None:
    graph = DependencyGraph()
    graph.observe(node_for(obj("parent", "p"), CONFIGMAPS))
    graph.observe(node_for(obj("a", "a", owners=[ref("parent", "p", block=True)]), CONFIGMAPS))
    graph.observe(node_for(obj("b", "b", owners=[ref("parent", "p")]), CONFIGMAPS))
    work = graph.observe(node_for(obj("parent", "p", finalizers=[FOREGROUND], deleting=True),
                                  CONFIGMAPS))
    assert sorted(work) == [("delete", "a"), ("delete", "b"), ("delete", "p")]
    assert [d.identity.uid for d in graph.blocking_dependents("p")] == ["a"]
    # The same state seen again is no new transition.
    assert graph.observe(node_for(obj("parent", "p", finalizers=[FOREGROUND], deleting=True),
                                  CONFIGMAPS)) == []


def test_a_waiting_owner_is_looked_at_when_a_blocking_dependent_goes_or_stops_blocking() -> None:
    graph = DependencyGraph()
    graph.observe(node_for(obj("parent", "p", finalizers=[FOREGROUND], deleting=True),
                           CONFIGMAPS))
    graph.observe(node_for(obj("a", "a", owners=[ref("parent", "p", block=True)]), CONFIGMAPS))
    graph.observe(node_for(obj("b", "b", owners=[ref("parent", "p", block=True)]), CONFIGMAPS))
    assert graph.forget("a") == [("delete", "p")]
    assert graph.observe(node_for(obj("b", "b", owners=[ref("parent", "p")]), CONFIGMAPS)) == [
        ("delete", "p")]
    assert graph.blocking_dependents("p") == []


def test_an_owner_marked_for_orphaning_is_queued_to_orphan_once() -> None:
    graph = DependencyGraph()
    graph.observe(node_for(obj("parent", "p"), CONFIGMAPS))
    graph.observe(node_for(obj("a", "a", owners=[ref("parent", "p")]), CONFIGMAPS))
    orphaning = node_for(obj("parent", "p", finalizers=[ORPHAN], deleting=True), CONFIGMAPS)
    assert graph.observe(orphaning) == [("orphan", "p")]
    assert graph.observe(copy.deepcopy(orphaning)) == []
    assert [d.identity.uid for d in graph.dependents_of("p")] == ["a"]


def test_dropping_a_reference_unlinks_the_dependent() -> None:
    graph = DependencyGraph()
    graph.observe(node_for(obj("parent", "p"), CONFIGMAPS))
    graph.observe(node_for(obj("a", "a", owners=[ref("parent", "p")]), CONFIGMAPS))
    graph.observe(node_for(obj("a", "a"), CONFIGMAPS))
    assert graph.dependents_of("p") == []
    assert graph.forget("p") == []


# -- verdicts ----------------------------------------------------------------------------


def test_verdicts() -> None:
    live, gone, waiting = ref("o1", "1"), ref("o2", "2"), ref("o3", "3")
    cases = [
        (OwnerStates(solid=[live]), [], False, False, KEEP),
        (OwnerStates(solid=[live], dangling=[gone], waiting=[waiting]), [], False, False,
         Decision(remove_owner_uids=("2", "3"))),
        (OwnerStates(dangling=[gone]), [], False, False, Decision(delete_policy="Background")),
        (OwnerStates(dangling=[gone]), [ORPHAN], False, False, Decision(delete_policy="Orphan")),
        (OwnerStates(dangling=[gone]), [FOREGROUND], False, False,
         Decision(delete_policy="Foreground")),
        (OwnerStates(waiting=[waiting]), [], True, False, Decision(delete_policy="Foreground")),
        (OwnerStates(waiting=[waiting]), [], True, True,
         Decision(delete_policy="Foreground", unblock_first=True)),
        (OwnerStates(waiting=[waiting]), [], False, False, Decision(delete_policy="Background")),
    ]
    for owners, finalizers, has_dependents, cycle, expected in cases:
        assert decide(finalizers, owners, has_dependents=has_dependents,
                      dependent_deleting_dependents=cycle) == expected, (owners, finalizers)


# -- the workers against a fake API ------------------------------------------------------


class FakeApi:
    """Just enough of `Client` for the workers: objects by (plural, namespace, name)."""

    def __init__(self, *objects: tuple[ApiResource, dict[str, Any]]) -> None:
        self.connection = Connection("https://127.0.0.1:1", False, {})
        self.field_manager = "test"
        self.objects = {(r.plural, o["metadata"].get("namespace"), o["metadata"]["name"]):
                        copy.deepcopy(o) for r, o in objects}
        self.deleted: list[tuple[str, str]] = []

    async def get(self, api_version: str, plural: str, name: str,
                  namespace: str | None = None) -> dict:
        found = self.objects.get((plural, namespace, name))
        if found is None:
            raise ApiError(404, {"reason": "NotFound"})
        return copy.deepcopy(found)

    async def patch(self, api_version: str, plural: str, name: str, patch: dict,
                    namespace: str | None = None) -> dict:
        meta = self.objects[(plural, namespace, name)]["metadata"]
        for key, value in patch["metadata"].items():
            if key not in ("uid", "resourceVersion"):
                if value is None:
                    meta.pop(key, None)
                else:
                    meta[key] = value
        return copy.deepcopy(self.objects[(plural, namespace, name)])

    async def delete(self, api_version: str, plural: str, name: str,
                     namespace: str | None = None, *, propagation_policy: str,
                     preconditions: dict) -> None:
        self.deleted.append((name, propagation_policy))


def collector(api: FakeApi) -> GarbageCollector:
    context = ControllerContext(api, InformerFactory(api),  # type: ignore[arg-type]
                                EventRecorder(api, "test"))  # type: ignore[arg-type]
    gc = GarbageCollector(context)
    gc.discovery.snapshot = build_snapshot(
        [("v1", True, [CONFIGMAPS]), ("example.com/v1", True, [WIDGETS])], {})
    kinds = {"configmaps": CONFIGMAPS, "widgets": WIDGETS}
    for (plural, _, _), item in api.objects.items():
        gc.graph.observe(node_for(item, kinds[plural]))
    return gc


def run(gc: GarbageCollector, *keys: str) -> None:
    async def go() -> None:
        for key in keys:
            await gc.reconcile(key)
    asyncio.run(go())


def test_a_dependent_of_an_absent_owner_is_deleted_in_the_background() -> None:
    api = FakeApi((CONFIGMAPS, obj("child", "c", owners=[ref("parent", "p")])))
    run(collector(api), "delete/c")
    assert api.deleted == [("child", "Background")]


def test_a_dependent_whose_owner_was_recreated_under_another_uid_is_deleted() -> None:
    api = FakeApi((CONFIGMAPS, obj("parent", "new-uid")),
                  (CONFIGMAPS, obj("child", "c", owners=[ref("parent", "old-uid")])))
    run(collector(api), "delete/c")
    assert api.deleted == [("child", "Background")]


def test_a_dependent_with_a_live_custom_resource_owner_stays() -> None:
    widget = ref("w", "w", kind="Widget", api_version="example.com/v1")
    api = FakeApi((WIDGETS, obj("w", "w")), (CONFIGMAPS, obj("child", "c", owners=[widget])))
    run(collector(api), "delete/c")
    assert api.deleted == []


def test_foreground_owner_waits_for_blocking_dependents_then_loses_its_finalizer() -> None:
    owner = obj("parent", "p", finalizers=[FOREGROUND], deleting=True)
    held = obj("child", "c", owners=[ref("parent", "p", block=True)], finalizers=["x/hold"],
               deleting=True)
    api = FakeApi((CONFIGMAPS, owner), (CONFIGMAPS, held))
    gc = collector(api)
    run(gc, "delete/p")
    assert "finalizers" in api.objects[("configmaps", "ns", "parent")]["metadata"]
    del api.objects[("configmaps", "ns", "child")]
    gc.graph.forget("c")
    run(gc, "delete/p")
    assert "finalizers" not in api.objects[("configmaps", "ns", "parent")]["metadata"]


def test_orphaning_strips_the_owner_from_its_dependents_then_its_finalizer() -> None:
    owner = obj("parent", "p", finalizers=[ORPHAN], deleting=True)
    other = ref("keeper", "k")
    api = FakeApi((CONFIGMAPS, owner),
                  (CONFIGMAPS, obj("a", "a", owners=[ref("parent", "p")])),
                  (CONFIGMAPS, obj("b", "b", owners=[ref("parent", "p"), other])))
    run(collector(api), "orphan/p")
    metas = {name: o["metadata"] for (_, _, name), o in api.objects.items()}
    assert "ownerReferences" not in metas["a"]
    assert metas["b"]["ownerReferences"] == [other]
    assert "finalizers" not in metas["parent"]
    assert api.deleted == []
