"""The Endpoints and EndpointSlice controllers' decisions: which pods, which ports, which
slices, and when a write is needed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pilothouse.controllers.endpoints import (
    TriggerTimeTracker,
    desired_subsets,
    endpoints_up_to_date,
    find_port,
    truncate,
)
from pilothouse.controllers.endpointslice import (
    MANAGED_BY,
    SliceTracker,
    plan_slices,
)

NOW = "2024-05-01T10:00:00Z"


def service(name: str = "web", *, ports: list[dict] | None = None, cluster_ip: str = "10.0.0.1",
            **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                         "creationTimestamp": "2024-05-01T09:00:00Z", "labels": {"a": "b"}},
            "spec": {"selector": {"app": name}, "clusterIP": cluster_ip, "ipFamilies": ["IPv4"],
                     "ports": [{"name": "http", "port": 80, "targetPort": "http",
                                "protocol": "TCP"}] if ports is None else ports, **spec}}


def pod(name: str, ip: str | None = "10.1.0.1", *, ready: bool = True, node: str = "n1",
        port_name: str = "http", phase: str = "Running", deleting: bool = False,
        ready_at: str = NOW, **spec: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False",
         "lastTransitionTime": ready_at}]}
    if ip:
        status.update(podIP=ip, podIPs=[{"ip": ip}])
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                            "labels": {"app": "web"}, "resourceVersion": "1"}
    if deleting:
        meta["deletionTimestamp"] = NOW
    return {"metadata": meta, "status": status,
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [
                {"name": port_name, "containerPort": 8080, "protocol": "TCP"}]}], **spec}}


def addresses(subsets: list[dict], field: str = "addresses") -> list[str]:
    return [a["targetRef"]["name"] for s in subsets for a in s.get(field) or []]


def test_ready_and_not_ready_pods_split_and_named_port_resolves() -> None:
    subsets = desired_subsets(service(), [pod("a", "10.1.0.1"), pod("b", "10.1.0.2", ready=False),
                                          pod("c", None), pod("d", "10.1.0.4", phase="Failed"),
                                          pod("e", "10.1.0.5", deleting=True)])
    assert subsets == [{
        "addresses": [{"ip": "10.1.0.1", "nodeName": "n1", "targetRef": {
            "kind": "Pod", "namespace": "ns", "name": "a", "uid": "uid-a"}}],
        "notReadyAddresses": [{"ip": "10.1.0.2", "nodeName": "n1", "targetRef": {
            "kind": "Pod", "namespace": "ns", "name": "b", "uid": "uid-b"}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]


def test_pods_offering_different_ports_land_in_different_subsets() -> None:
    subsets = desired_subsets(service(), [pod("a", "10.1.0.1"),
                                          pod("b", "10.1.0.2", port_name="other")])
    assert addresses(subsets) == ["a"]  # b has no port named http: not an endpoint
    numeric = service(ports=[{"port": 80, "targetPort": 9090, "protocol": "TCP"}])
    assert desired_subsets(numeric, [pod("a")])[0]["ports"] == [{"port": 9090,
                                                                 "protocol": "TCP"}]


def test_publish_not_ready_and_headless_without_ports() -> None:
    publish = service(publishNotReadyAddresses=True)
    assert addresses(desired_subsets(publish, [pod("a", ready=False)])) == ["a"]
    headless = service(cluster_ip="None", ports=[])
    subsets = desired_subsets(headless, [pod("a", hostname="a", subdomain="web")])
    assert subsets == [{"addresses": [{"ip": "10.1.0.1", "hostname": "a", "nodeName": "n1",
                                       "targetRef": {"kind": "Pod", "namespace": "ns",
                                                     "name": "a", "uid": "uid-a"}}]}]
    assert desired_subsets(service(ports=[]), [pod("a")]) == []


def test_find_port_by_name_protocol_and_number() -> None:
    assert find_port(pod("a"), {"port": 80, "targetPort": "http", "protocol": "TCP"}) == 8080
    assert find_port(pod("a"), {"port": 80, "targetPort": "http", "protocol": "UDP"}) is None
    assert find_port(pod("a"), {"port": 80}) == 80


def test_up_to_date_ignores_the_headless_label_and_empty_fields() -> None:
    svc = service()
    subsets = desired_subsets(svc, [pod("a")])
    current = {"metadata": {"labels": {"a": "b"}, "annotations": {}},
               "subsets": [{**subsets[0], "notReadyAddresses": []}]}
    assert endpoints_up_to_date(current, subsets, svc)
    assert not endpoints_up_to_date({**current, "subsets": []}, subsets, svc)
    relabelled = {**current, "metadata": {"labels": {"a": "c"}}}
    assert not endpoints_up_to_date(relabelled, subsets, svc)


def test_truncate_keeps_ready_addresses_first() -> None:
    subsets = [{"addresses": [{"ip": f"10.0.0.{i}"} for i in range(6)],
                "notReadyAddresses": [{"ip": "10.0.1.1"}]}]
    assert truncate(subsets, capacity=4)
    assert len(subsets[0]["addresses"]) == 4 and "notReadyAddresses" not in subsets[0]
    assert not truncate([{"addresses": [{"ip": "10.0.0.1"}]}], capacity=4)


def test_trigger_time_is_creation_first_then_the_earliest_new_change() -> None:
    tracker = TriggerTimeTracker()
    svc = service()
    first = tracker.compute("ns/web", svc, [pod("a", ready_at="2024-05-01T10:00:00Z")])
    assert first == datetime(2024, 5, 1, 9, tzinfo=UTC)
    assert tracker.compute("ns/web", svc, [pod("a", ready_at="2024-05-01T10:00:00Z")]) is None
    later = tracker.compute("ns/web", svc, [pod("a", ready_at="2024-05-01T10:00:00Z"),
                                            pod("b", ready_at="2024-05-01T10:05:00Z"),
                                            pod("c", ready_at="2024-05-01T10:03:00Z")])
    assert later == datetime(2024, 5, 1, 10, 3, tzinfo=UTC)


# -- EndpointSlices ---------------------------------------------------------------------

NODES = {"n1": {"metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "z1"}}}}


def many_pods(count: int) -> list[dict[str, Any]]:
    return [pod(f"p{i}", f"10.2.{i // 250}.{i % 250}") for i in range(count)]


def written(plan_create: list[dict], start: int = 0) -> list[dict]:
    """Give planned new slices names, uids and generations, as the API server would."""
    return [{**s, "metadata": {**s["metadata"], "name": f"web-{start + i}",
                               "uid": f"s{start + i}", "generation": 1}}
            for i, s in enumerate(plan_create)]


def test_slices_hold_at_most_100_endpoints_with_conditions() -> None:
    plan, missing = plan_slices(service(), many_pods(250), NODES, [])
    assert not missing and not plan.update and not plan.delete
    assert sorted(len(s["endpoints"]) for s in plan.create) == [50, 100, 100]
    first = plan.create[0]
    assert first["metadata"]["generateName"] == "web-"
    assert first["metadata"]["labels"] == {
        "a": "b", "kubernetes.io/service-name": "web",
        "endpointslice.kubernetes.io/managed-by": MANAGED_BY}
    assert first["metadata"]["ownerReferences"][0]["uid"] == "uid-web"
    assert first["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    endpoint = first["endpoints"][0]
    assert endpoint["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert endpoint["nodeName"] == "n1" and endpoint["zone"] == "z1"


def test_existing_slices_keep_their_endpoints_and_only_changes_are_written() -> None:
    svc = service()
    plan, _ = plan_slices(svc, many_pods(150), NODES, [])
    existing = written(plan.create)
    again, _ = plan_slices(svc, many_pods(150), NODES, existing)
    assert (again.create, again.update, again.delete) == ([], [], [])
    terminating = many_pods(150)
    terminating[0]["metadata"]["deletionTimestamp"] = NOW
    changed, _ = plan_slices(svc, terminating, NODES, existing)
    assert [s["metadata"]["name"] for s in changed.update] == [
        s["metadata"]["name"] for s in existing if any(
            e["targetRef"]["name"] == "p0" for e in s["endpoints"])]
    updated = next(e for e in changed.update[0]["endpoints"] if e["targetRef"]["name"] == "p0")
    assert updated["conditions"] == {"ready": False, "serving": True, "terminating": True}


def test_new_endpoints_fill_the_best_fitting_slice_and_emptied_slices_go() -> None:
    svc = service()
    existing = written(plan_slices(svc, many_pods(150), NODES, [])[0].create)
    grown, _ = plan_slices(svc, many_pods(160), NODES, existing)
    assert not grown.create
    assert [len(s["endpoints"]) for s in grown.update] == [60]
    small = [s for s in existing if len(s["endpoints"]) == 50][0]
    survivors = [p for p in many_pods(150)
                 if p["metadata"]["name"] not in {e["targetRef"]["name"]
                                                  for e in small["endpoints"]}]
    shrunk, _ = plan_slices(svc, survivors, NODES, existing)
    assert [s["metadata"]["name"] for s in shrunk.delete] == [small["metadata"]["name"]]


def test_no_endpoints_means_one_placeholder_slice() -> None:
    svc = service()
    plan, _ = plan_slices(svc, [], NODES, [])
    assert len(plan.create) == 1 and plan.create[0]["endpoints"] == []
    assert plan.create[0]["ports"] == []
    placeholder = written(plan.create)
    again, _ = plan_slices(svc, [], NODES, placeholder)
    assert (again.create, again.update, again.delete) == ([], [], [])
    # Pods appear: the placeholder is reused instead of deleted and recreated.
    filled, _ = plan_slices(svc, many_pods(3), NODES, placeholder)
    assert not filled.create and not filled.delete
    assert filled.update[0]["metadata"]["name"] == "web-0"
    assert len(filled.update[0]["endpoints"]) == 3


def test_pods_on_unknown_nodes_are_left_out_and_reported() -> None:
    plan, missing = plan_slices(service(), [pod("a", node="ghost")], NODES, [])
    assert missing and plan.create[0]["endpoints"] == []


def test_tracker_sees_a_cache_behind_our_writes() -> None:
    tracker = SliceTracker()
    slice_ = {"metadata": {"uid": "s1", "generation": 2}}
    tracker.wrote("ns/web", slice_)
    assert tracker.stale("ns/web", [])
    assert tracker.stale("ns/web", [{"metadata": {"uid": "s1", "generation": 1}}])
    assert not tracker.stale("ns/web", [slice_])
    tracker.deleted("ns/web", slice_)
    assert tracker.stale("ns/web", [slice_])
    tracker.observed_deletion("ns/web", slice_)
    assert not tracker.stale("ns/web", [])
