"""Quota arithmetic and usage: what objects cost, and how admission checks a request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pilothouse.apiserver.quota import check_request, handles
from pilothouse.apiserver.registry.builtin import BUILTIN_RESOURCES
from pilothouse.machinery import errors
from pilothouse.machinery import quota as q
from pilothouse.machinery.meta import rfc3339

NOW = datetime(2025, 1, 1, tzinfo=UTC)
RES = {(r.group, r.plural): r for r in BUILTIN_RESOURCES}


def pod(name: str = "p", *containers: dict, **spec: object) -> dict:
    return {"metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": list(containers) or [container("c")], **spec},
            "status": {"phase": "Pending"}}


def container(name: str, requests: dict | None = None, limits: dict | None = None) -> dict:
    resources = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return {"name": name, "image": "x", "resources": resources}


def quota(hard: dict, used: dict | None = None, name: str = "compute", **spec: object) -> dict:
    status = {"hard": hard} if used is None else {"hard": hard, "used": used}
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"hard": hard, **spec},
            "status": status}


# -- arithmetic ----------------------------------------------------------------------------


def test_sums_keep_the_left_format_and_zero_takes_the_right():
    assert q.add({"memory": "1Gi", "cpu": "500m"}, {"memory": "1Gi", "cpu": "500m"}) == {
        "memory": "2Gi", "cpu": "1"}
    assert q.add({"memory": "0"}, {"memory": "512Mi"}) == {"memory": "512Mi"}
    assert q.add({"pods": "1"}, {"services": "2"}) == {"pods": "1", "services": "2"}


def test_subtract_never_goes_below_zero():
    assert q.subtract_non_negative({"pods": "1", "cpu": "1"}, {"cpu": "2", "memory": "1Gi"}) == {
        "pods": "1", "cpu": "0", "memory": "0"}


def test_compare_mask_and_print_lists():
    assert q.exceeded({"pods": "3", "cpu": "1500m", "memory": "1"}, {"pods": "2", "cpu": "2"}) == [
        "pods"]
    assert q.equals({"cpu": "1"}, {"cpu": "1000m"})
    assert not q.equals({"cpu": "1"}, {"cpu": "1", "pods": "0"})
    assert q.pretty({"requests.cpu": "2", "pods": "1"}) == "pods=1,requests.cpu=2"
    assert q.remove_zeros({"a": "0", "b": "1m"}) == {"b": "1m"}
    assert q.negative({"a": "-1", "b": "1"}) == ["a"]


# -- usage ---------------------------------------------------------------------------------


def test_pod_usage_sums_containers_and_takes_init_peak():
    p = pod("p", container("a", {"cpu": "250m", "memory": "64Mi"}, {"cpu": "1"}),
            container("b", {"cpu": "250m"}),
            initContainers=[container("init", {"cpu": "2"})])
    assert q.usage(q.PODS, p, NOW) == {
        "count/pods": "1", "pods": "1", "cpu": "2", "requests.cpu": "2", "limits.cpu": "1",
        "memory": "64Mi", "requests.memory": "64Mi"}


def test_sidecars_run_alongside_and_extended_resources_count_as_requests():
    sidecar = {**container("mesh", {"cpu": "100m"}), "restartPolicy": "Always"}
    p = pod("p", container("a", {"cpu": "1", "example.com/gpu": "2"}),
            initContainers=[sidecar, container("init", {"cpu": "1"})])
    usage = q.usage(q.PODS, p, NOW)
    assert usage["requests.cpu"] == "1100m"
    assert usage["requests.example.com/gpu"] == "2"


def test_finished_or_long_deleted_pods_only_count_as_objects():
    done = pod("p", container("a", {"cpu": "1"}))
    done["status"]["phase"] = "Succeeded"
    assert q.usage(q.PODS, done, NOW) == {"count/pods": "1"}
    gone = pod("p", container("a", {"cpu": "1"}))
    gone["metadata"].update(deletionTimestamp=rfc3339(NOW - timedelta(seconds=60)),
                            deletionGracePeriodSeconds=30)
    assert q.usage(q.PODS, gone, NOW) == {"count/pods": "1"}
    gone["metadata"]["deletionTimestamp"] = rfc3339(NOW)
    assert q.usage(q.PODS, gone, NOW)["requests.cpu"] == "1"


def test_service_and_claim_usage():
    svc = {"spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]}}
    assert q.usage(q.SERVICES, svc, NOW) == {
        "count/services": "1", "services": "1", "services.loadbalancers": "1",
        "services.nodeports": "2"}
    pvc = {"metadata": {}, "spec": {"storageClassName": "gold",
                                    "resources": {"requests": {"storage": "1.5"}}}}
    assert q.usage(q.PERSISTENT_VOLUME_CLAIMS, pvc, NOW) == {
        "persistentvolumeclaims": "1", "count/persistentvolumeclaims": "1",
        "gold.storageclass.storage.k8s.io/persistentvolumeclaims": "1",
        "requests.storage": "2", "gold.storageclass.storage.k8s.io/requests.storage": "2"}


def test_object_counts_and_legacy_names():
    assert q.usage(("", "secrets"), {}, NOW) == {"count/secrets": "1", "secrets": "1"}
    assert q.usage(("apps", "deployments"), {}, NOW) == {"count/deployments.apps": "1"}
    assert q.kind_of_count_name("count/deployments.apps") == ("apps", "deployments")
    assert q.tracked_kinds(["pods", "count/jobs.batch", "secrets", "bogus"]) == {
        q.PODS, ("batch", "jobs"), ("", "secrets")}


# -- scopes and constraints ----------------------------------------------------------------


@pytest.mark.parametrize(("scope", "spec", "expected"), [
    ("Terminating", {"activeDeadlineSeconds": 10}, True),
    ("Terminating", {}, False),
    ("NotTerminating", {}, True),
    ("BestEffort", {}, True),
    ("NotBestEffort", {}, False),
])
def test_pod_scopes(scope, spec, expected):
    assert q.scope_matches(q.PODS, {"scopeName": scope, "operator": "Exists"},
                           pod("p", **spec)) is expected


def test_priority_class_scope_selector():
    high = pod("p", priorityClassName="high")
    selector = {"scopeName": "PriorityClass", "operator": "In", "values": ["high", "mid"]}
    assert q.scope_matches(q.PODS, selector, high)
    assert not q.scope_matches(q.PODS, selector, pod("p"))
    assert q.scope_matches(q.PODS, {"scopeName": "PriorityClass", "operator": "Exists"}, high)
    assert not q.scope_matches(q.SERVICES, selector, high)


def test_qos_class():
    assert q.pod_qos_class(pod("p")) == "BestEffort"
    same = {"cpu": "1", "memory": "1Gi"}
    assert q.pod_qos_class(pod("p", container("a", same, same))) == "Guaranteed"
    assert q.pod_qos_class(pod("p", container("a", {"cpu": "1"}))) == "Burstable"


def test_constraints_name_each_missing_resource_and_container():
    p = pod("p", container("a", {"cpu": "1"}), container("b"))
    assert q.pod_constraints(["requests.cpu", "limits.memory", "pods"], p) == (
        "must specify limits.memory for: a,b; requests.cpu for: b")
    assert q.pod_constraints(["pods", "requests.storage"], p) is None


def test_calculate_usage_counts_matching_objects_only():
    terminating = pod("t", container("a", {"cpu": "1"}), activeDeadlineSeconds=5)
    long_running = pod("l", container("a", {"cpu": "2"}))
    scoped = quota({"pods": "5", "requests.cpu": "4"}, scopes=["Terminating"])
    assert q.calculate_usage(scoped, {q.PODS: [terminating, long_running]}, NOW) == {
        "pods": "1", "requests.cpu": "1"}
    plain = quota({"pods": "5", "services": "1", "count/jobs.batch": "2"})
    assert q.calculate_usage(plain, {q.PODS: [], q.SERVICES: [{"spec": {}}],
                                     ("batch", "jobs"): []}, NOW) == {
        "pods": "0", "services": "1", "count/jobs.batch": "0"}


# -- admission's check ---------------------------------------------------------------------


def test_exceeding_a_quota_is_forbidden_with_the_real_message():
    compute = quota({"requests.cpu": "2"}, {"requests.cpu": "1"})
    with pytest.raises(errors.APIError) as err:
        check_request([compute], RES[q.PODS], pod("p", container("c", {"cpu": "2"})), None, NOW)
    assert err.value.code == 403
    assert err.value.message == (
        'pods "p" is forbidden: exceeded quota: compute, requested: requests.cpu=2, '
        "used: requests.cpu=1, limited: requests.cpu=2")


def test_a_quota_without_usage_or_unmet_constraints_refuses():
    with pytest.raises(errors.APIError, match="status unknown for quota: compute, resources: "
                                              "pods,requests.cpu"):
        check_request([quota({"pods": "2", "requests.cpu": "1"})], RES[q.PODS],
                      pod("p", container("c", {"cpu": "1"})), None, NOW)
    with pytest.raises(errors.APIError, match="failed quota: compute: must specify "
                                              "requests.cpu for: c"):
        check_request([quota({"requests.cpu": "1"}, {"requests.cpu": "0"})], RES[q.PODS],
                      pod("p"), None, NOW)


def test_charges_only_governing_quotas_and_update_growth():
    scoped = quota({"pods": "1"}, {"pods": "0"}, name="terminating", scopes=["Terminating"])
    plain = quota({"pods": "3", "services": "2"}, {"pods": "1", "services": "0"}, name="all")
    charges = check_request([scoped, plain], RES[q.PODS], pod("p"), None, NOW)
    assert [(c.quota, c.requested) for c in charges] == [("all", {"pods": "1"})]

    nodeports = quota({"services.nodeports": "1"}, {"services.nodeports": "0"})
    old = {"metadata": {"name": "s", "resourceVersion": "3"},
           "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}}
    new = {**old, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}
    assert check_request([nodeports], RES[q.SERVICES], old, old, NOW) == []
    assert [c.requested for c in check_request([nodeports], RES[q.SERVICES], new, old, NOW)] == [
        {"services.nodeports": "1"}]


def test_which_writes_quota_looks_at():
    assert handles(RES[q.PODS], None)
    assert not handles(RES[q.PODS], {"metadata": {}})
    assert handles(RES[q.SERVICES], {"metadata": {}})
    assert not handles(RES[("", "events")], None)
    assert not handles(RES[("", "namespaces")], None)
