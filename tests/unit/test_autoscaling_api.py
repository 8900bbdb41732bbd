"""HorizontalPodAutoscaler, the API: autoscaling/v2 stored, v1 converted, defaults,
validation, `kubectl get hpa` columns; and the HPA controller against an in-process API
server whose fake kubelet reports the pods' CPU.

What is checked is what a client sees: a v1 object read back through v2 and the reverse
(the v1 annotations carry what v1 cannot say), 422s with the real field paths and
messages, TARGETS cells like `cpu: 12%/50%`, and a Deployment the controller scales, with
the HPA's status, conditions and events.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pilothouse.apiserver.printers import table_spec_for
from pilothouse.apiserver.protobuf import decode_protobuf
from pilothouse.apiserver.registry import ResourceTable
from pilothouse.apiserver.registry.conversion import (
    CONDITIONS_ANNOTATION,
    METRIC_SPECS_ANNOTATION,
    METRIC_STATUSES_ANNOTATION,
    hpa_v1_to_v2,
    hpa_v2_to_v1,
)
from pilothouse.apiserver.registry.defaults import DEFAULTERS
from pilothouse.apiserver.registry.validation import VALIDATORS
from pilothouse.client import Client, ControllerContext, EventRecorder, InformerFactory
from pilothouse.controllers.horizontalpodautoscaler import HorizontalPodAutoscalerController
from pilothouse.machinery.meta import rfc3339
from tests.fake_kubelet import summary
from tests.inprocess import (
    InProcessCluster,
    component_kubeconfigs,
    create,
    create_nodes,
    in_process_cluster,
    pod,
)

KEY = ("autoscaling", "HorizontalPodAutoscaler")
HPA_V2 = "autoscaling/v2"
V2_PATH = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers"
V1_PATH = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers"
CPU_50 = {"type": "Resource", "resource": {"name": "cpu", "target": {
    "type": "Utilization", "averageUtilization": 50}}}


def hpa(version: str = "v2", name: str = "web", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"autoscaling/{version}", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": "web"}, "maxReplicas": 3, **spec}}


def problems(obj: dict[str, Any]) -> list[str]:
    DEFAULTERS[KEY](obj)
    return [cause.render() for cause in VALIDATORS[KEY](obj)]


# -- conversion --------------------------------------------------------------------------


def test_v1_cpu_target_is_a_v2_utilization_metric_and_back() -> None:
    v2 = hpa_v1_to_v2(hpa("v1", targetCPUUtilizationPercentage=50, minReplicas=2))
    assert v2["apiVersion"] == "autoscaling/v2"
    assert v2["spec"]["metrics"] == [CPU_50] and v2["spec"]["minReplicas"] == 2
    back = hpa_v2_to_v1(v2)
    assert back["spec"] == hpa("v1", targetCPUUtilizationPercentage=50, minReplicas=2)["spec"]
    assert "annotations" not in back["metadata"]


def test_a_v1_object_without_a_target_implies_80_percent() -> None:
    v2 = hpa_v1_to_v2(hpa("v1"))
    assert v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 80


def test_what_v1_cannot_say_rides_in_annotations() -> None:
    memory = {"type": "Resource", "resource": {"name": "memory", "target": {
        "type": "AverageValue", "averageValue": "200Mi"}}}
    pods = {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {
        "type": "AverageValue", "averageValue": "10"}}}
    current = [{"type": "Resource", "resource": {"name": "cpu", "current": {
        "averageUtilization": 12, "averageValue": "6m"}}}]
    conditions = [{"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale",
                   "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    v2 = hpa(metrics=[CPU_50, memory, pods])
    v2["status"] = {"currentReplicas": 1, "desiredReplicas": 1, "currentMetrics": current,
                    "conditions": conditions}
    v1 = hpa_v2_to_v1(v2)
    assert v1["spec"]["targetCPUUtilizationPercentage"] == 50
    assert v1["status"] == {"currentReplicas": 1, "desiredReplicas": 1,
                            "currentCPUUtilizationPercentage": 12}
    annotations = v1["metadata"]["annotations"]
    assert json.loads(annotations[METRIC_SPECS_ANNOTATION]) == [
        {"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "200Mi"}},
        {"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "10"}}]
    assert json.loads(annotations[METRIC_STATUSES_ANNOTATION]) == [
        {"type": "Resource", "resource": {"name": "cpu", "currentAverageUtilization": 12,
                                          "currentAverageValue": "6m"}}]
    assert json.loads(annotations[CONDITIONS_ANNOTATION]) == conditions
    # Back to v2: the annotations are gone again, every metric and status is back (the
    # CPU target, which v1 holds in its own field, after the others, as upstream orders it).
    again = hpa_v1_to_v2(v1)
    assert "annotations" not in again["metadata"]
    assert again["spec"]["metrics"] == [memory, pods, CPU_50]
    assert again["status"]["currentMetrics"] == current
    assert again["status"]["conditions"] == conditions


def test_a_broken_conversion_annotation_is_a_422_cause() -> None:
    v1 = hpa("v1")
    v1["metadata"]["annotations"] = {METRIC_SPECS_ANNOTATION: "{not json"}
    assert problems(v1)[0].startswith("metadata.annotations: Invalid value: \"\": annotation "
                                      f"{METRIC_SPECS_ANNOTATION} is not valid JSON")


def test_kubectl_autoscale_protobuf_body_decodes() -> None:
    """The body kubectl 1.32's `autoscale deployment web --min 1 --max 3 --cpu-percent 50`
    sends (captured with -v=8): an autoscaling/v1 object in protobuf."""
    body = bytes.fromhex(
        "6b387300 0a290a0e 6175746f 7363616c 696e672f 76311217 486f7269 7a6f6e74"
        "616c506f 64417574 6f736361 6c657212 3f0a130a 03776562 12001a00 22002a00"
        "32003800 42001222 0a1a0a0a 4465706c 6f796d65 6e741203 7765621a 07617070"
        "732f7631 10011803 20321a04 18002000 1a002200")
    assert decode_protobuf(body) == {
        "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web",
                                    "apiVersion": "apps/v1"},
                 "minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 50},
        "status": {"currentReplicas": 0, "desiredReplicas": 0}}


# -- defaults and validation -------------------------------------------------------------


def test_v2_defaults() -> None:
    obj = hpa(behavior={"scaleDown": {"stabilizationWindowSeconds": 60}})
    DEFAULTERS[KEY](obj)
    spec = obj["spec"]
    assert spec["minReplicas"] == 1
    assert spec["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 80}}}]
    assert spec["behavior"]["scaleDown"] == {"stabilizationWindowSeconds": 60,
                                             "selectPolicy": "Max", "policies": [
                                                 {"type": "Percent", "value": 100,
                                                  "periodSeconds": 15}]}
    assert spec["behavior"]["scaleUp"]["policies"] == [
        {"type": "Pods", "value": 4, "periodSeconds": 15},
        {"type": "Percent", "value": 100, "periodSeconds": 15}]


def test_replica_bounds_and_target_reference() -> None:
    obj = hpa(minReplicas=0, maxReplicas=0, scaleTargetRef={"name": "a/b"})
    assert problems(obj) == [
        "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1",
        "spec.maxReplicas: Invalid value: 0: must be greater than 0",
        "spec.scaleTargetRef.kind: Required value",
        "spec.scaleTargetRef.name: Invalid value: \"a/b\": may not contain '/'"]
    assert problems(hpa(minReplicas=4, maxReplicas=3)) == [
        "spec.maxReplicas: Invalid value: 3: must be greater than or equal to `minReplicas`"]


def test_metric_specs() -> None:
    both = {"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 50, "averageValue": "100m"}}}
    empty = {"type": "Resource", "resource": {"name": "", "target": {"type": "Bogus"}}}
    mismatched = {"type": "Pods", "resource": CPU_50["resource"]}
    doubled = {**CPU_50, "pods": {"metric": {"name": "qps"}, "target": {
        "type": "AverageValue", "averageValue": "1"}}}
    assert problems(hpa(metrics=[both, empty, mismatched, doubled, {"type": "Foo"}])) == [
        "spec.metrics[0].resource.target.averageValue: Forbidden: may not set both a target "
        "raw value and a target utilization",
        "spec.metrics[1].resource.name: Required value: must specify a resource name",
        "spec.metrics[1].resource.target.type: Invalid value: \"Bogus\": must be either "
        "Utilization, Value, or AverageValue",
        "spec.metrics[1].resource.target.averageUtilization: Required value: must set either a "
        "target raw value or a target utilization",
        "spec.metrics[2].pods: Required value: must populate information for the given metric "
        "source",
        "spec.metrics[3].pods: Forbidden: must populate the given metric source only",
        "spec.metrics[4].type: Unsupported value: \"Foo\": supported values: "
        "\"ContainerResource\", \"External\", \"Object\", \"Pods\", \"Resource\""]


def test_behavior_rules() -> None:
    behavior = {"scaleUp": {"stabilizationWindowSeconds": 4000, "selectPolicy": "Fast",
                            "policies": [{"type": "Pods", "value": 0, "periodSeconds": 2000}]},
                "scaleDown": {"policies": []}}
    assert problems(hpa(behavior=behavior)) == [
        "spec.behavior.scaleUp.stabilizationWindowSeconds: Invalid value: 4000: must be less "
        "than or equal to 3600",
        "spec.behavior.scaleUp.selectPolicy: Unsupported value: \"Fast\": supported values: "
        "\"Disabled\", \"Max\", \"Min\"",
        "spec.behavior.scaleUp.policies[0].value: Invalid value: 0: must be greater than zero",
        "spec.behavior.scaleUp.policies[0].periodSeconds: Invalid value: 2000: must be less "
        "than or equal to 1800",
        "spec.behavior.scaleDown.policies: Required value: must specify at least one Policy"]


def test_a_v1_object_is_validated_with_v2_paths() -> None:
    assert problems(hpa("v1", targetCPUUtilizationPercentage=0)) == [
        "spec.metrics[0].resource.target.averageUtilization: Invalid value: 0: must be "
        "greater than 0"]


# -- printing ----------------------------------------------------------------------------


def test_get_hpa_columns_and_targets() -> None:
    table = ResourceTable()
    v2 = table.lookup("autoscaling", "v2", "horizontalpodautoscalers")
    v1 = table.lookup("autoscaling", "v1", "horizontalpodautoscalers")
    assert v2 is not None and v1 is not None
    spec = table_spec_for(v2)
    assert [c["name"] for c in spec.columns] == ["Name", "Reference", "Targets", "MinPods",
                                                 "MaxPods", "Replicas", "Age"]
    memory = {"type": "Resource", "resource": {"name": "memory", "target": {
        "type": "AverageValue", "averageValue": "200Mi"}}}
    pods = {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {
        "type": "AverageValue", "averageValue": "10"}}}
    obj = hpa(minReplicas=1, metrics=[CPU_50, memory, pods])
    obj["metadata"]["creationTimestamp"] = rfc3339()
    obj["status"] = {"currentReplicas": 2, "currentMetrics": [
        {"type": "Resource", "resource": {"name": "cpu", "current": {
            "averageUtilization": 12, "averageValue": "6m"}}}]}
    row = spec.row(obj, datetime.now(UTC))
    assert row[:6] == ["web", "Deployment/web",
                       "cpu: 12%/50%, memory: <unknown>/200Mi + 1 more...", "1", 3, 2]
    # A v1 object prints as its v2 form does (with the CPU target last, where converting
    # from v1 puts it, as upstream's conversion does).
    obj["spec"]["metrics"] = [memory, CPU_50]
    obj["status"]["currentMetrics"].insert(0, {"type": ""})
    assert table_spec_for(v1).row(hpa_v2_to_v1(obj), datetime.now(UTC))[2] == \
        "memory: <unknown>/200Mi, cpu: 12%/50%"


# -- over HTTP, and the controller -------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessCluster]:
    with in_process_cluster(Path(tmp_path_factory.mktemp("autoscaling"))) as running:
        yield running


def call(cluster: InProcessCluster, method: str, path: str,
         body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async def go() -> tuple[int, Any]:
        async with cluster.session() as admin, admin.request(
                method, path, json=body, headers=headers) as response:
            return response.status, await response.json()

    return cluster.run(go())


def test_one_object_through_both_versions(cluster: InProcessCluster) -> None:
    status, created = call(cluster, "POST", V1_PATH,
                           hpa("v1", "both", targetCPUUtilizationPercentage=50))
    assert status == 201, created
    assert created["apiVersion"] == "autoscaling/v1"
    assert created["spec"]["targetCPUUtilizationPercentage"] == 50
    assert created["status"] == {"currentReplicas": 0, "desiredReplicas": 0}
    status, v2 = call(cluster, "GET", f"{V2_PATH}/both")
    assert status == 200 and v2["spec"]["metrics"] == [CPU_50]
    assert v2["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    # A merge patch through v2 adds a metric v1 cannot say; v1 shows it as an annotation.
    memory = {"type": "Resource", "resource": {"name": "memory", "target": {
        "type": "Utilization", "averageUtilization": 70}}}
    status, patched = call(cluster, "PATCH", f"{V2_PATH}/both",
                           {"spec": {"metrics": [CPU_50, memory]}},
                           {"Content-Type": "application/merge-patch+json"})
    assert status == 200, patched
    status, v1 = call(cluster, "GET", f"{V1_PATH}/both")
    assert json.loads(v1["metadata"]["annotations"][METRIC_SPECS_ANNOTATION]) == [
        {"type": "Resource", "resource": {"name": "memory", "targetAverageUtilization": 70}}]
    status, listed = call(cluster, "GET", V1_PATH)
    assert status == 200 and listed["kind"] == "HorizontalPodAutoscalerList"
    assert {i["apiVersion"] for i in listed["items"]} == {"autoscaling/v1"}


def test_a_watch_through_v1_streams_v1_objects(cluster: InProcessCluster) -> None:
    """The watch cache holds v2 (the storage version); a v1 watcher sees v1, as kubectl
    get -w --output-version would through a real API server."""
    async def go() -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        async with cluster.session() as admin:
            async with admin.get(f"{V1_PATH}?watch=1&labelSelector=watched%3Dyes") as stream:
                created = hpa("v1", "watched", targetCPUUtilizationPercentage=65)
                created["metadata"]["labels"] = {"watched": "yes"}
                async with admin.post(V1_PATH, json=created) as response:
                    assert response.status == 201
                async with admin.get(f"{V1_PATH}?watch=1") as plain:  # every HPA
                    while not events or events[-1]["object"]["metadata"]["name"] != "watched":
                        events.append(json.loads(await plain.content.readline()))
                    del events[:-1]
                events.append(json.loads(await stream.content.readline()))
        return events

    for event in cluster.run(go()):
        assert event["type"] == "ADDED"
        assert event["object"]["apiVersion"] == "autoscaling/v1"
        assert event["object"]["spec"]["targetCPUUtilizationPercentage"] == 65


def test_invalid_objects_are_422_with_causes(cluster: InProcessCluster) -> None:
    status, answer = call(cluster, "POST", V2_PATH,
                          hpa(name="bad", minReplicas=0, scaleTargetRef={"kind": "Deployment"}))
    assert status == 422
    assert [(c["field"], c["reason"]) for c in answer["details"]["causes"]] == [
        ("spec.minReplicas", "FieldValueInvalid"), ("spec.scaleTargetRef.name",
                                                    "FieldValueRequired")]


def test_discovery_and_table(cluster: InProcessCluster) -> None:
    status, group = call(cluster, "GET", "/apis/autoscaling")
    assert status == 200 and group["preferredVersion"]["version"] == "v2"
    status, resources = call(cluster, "GET", "/apis/autoscaling/v2")
    entry = next(r for r in resources["resources"] if r["name"] == "horizontalpodautoscalers")
    assert entry["shortNames"] == ["hpa"] and entry["categories"] == ["all"]
    assert any(r["name"] == "horizontalpodautoscalers/status" for r in resources["resources"])


async def _set_running(admin: Any, name: str, started: str) -> None:
    path = f"/api/v1/namespaces/default/pods/{name}/status"
    async with admin.get(path) as response:
        current = await response.json()
    current["status"] = {"phase": "Running", "startTime": started, "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": started}]}
    async with admin.put(path, json=current) as response:
        assert response.status == 200, await response.text()


def test_the_controller_scales_a_busy_deployment(cluster: InProcessCluster,
                                                 tmp_path: Path) -> None:
    """No deployment controller runs: the Deployment's scale is what the HPA writes."""
    labels = {"app": "busy"}
    started = "2026-01-01T00:00:00Z"  # long ready: its CPU counts at once
    cluster.kubelet.summary = summary("n1", {("default", "busy-1"): {"app": (400_000_000, 1)}})
    kubeconfigs = component_kubeconfigs(cluster, tmp_path, "controller-manager", "manager")

    async def setup() -> None:
        async with cluster.session() as admin:
            await create_nodes(admin, cluster)
            template = pod("busy-1", None, "app", labels=labels)
            template["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "100m"}}
            await create(admin, "/apis/apps/v1/namespaces/default/deployments", {
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "busy", "namespace": "default"},
                "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                         "template": {"metadata": {"labels": labels},
                                      "spec": template["spec"]}}})
            template["spec"]["nodeName"] = "n1"
            await create(admin, "/api/v1/namespaces/default/pods", template)
            await _set_running(admin, "busy-1", started)
            body = hpa("v2", "busy", minReplicas=1, maxReplicas=5, metrics=[CPU_50])
            body["spec"]["scaleTargetRef"]["name"] = "busy"
            await create(admin, V2_PATH, body)

    cluster.run(setup())

    async def run_controller() -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        async with Client.from_kubeconfig(str(kubeconfigs["manager"])) as client:
            informers = InformerFactory(client)
            context = ControllerContext(client, informers, EventRecorder(client, "test"), {
                "horizontal_pod_autoscaler_sync_period": 1.0})
            controller = HorizontalPodAutoscalerController(context)
            await informers.start()
            task = asyncio.create_task(controller.run())
            try:
                deadline = asyncio.get_running_loop().time() + 20
                found: dict[str, Any] = {}
                # Stop after the first sync that scaled (the status is written last).
                while asyncio.get_running_loop().time() < deadline:
                    found = await client.get(HPA_V2, "horizontalpodautoscalers", "busy",
                                             "default")
                    if (found.get("status") or {}).get("lastScaleTime"):
                        break
                    await asyncio.sleep(0.05)
            finally:
                task.cancel()
                await informers.stop()
            deployment = await client.get("apps/v1", "deployments", "busy", "default")
            events = await client.list("v1", "events", "default",
                                       field_selector="involvedObject.name=busy")
            return deployment, found, events["items"]

    deployment, found, events = cluster.run(run_controller())
    # 400m used of 100m requested is 400% against 50%: 8 replicas wanted, one sync without
    # a behavior may go to max(2 x 1, 4) = 4.
    assert deployment["spec"]["replicas"] == 4
    status = found["status"]
    assert (status["currentReplicas"], status["desiredReplicas"]) == (1, 4)
    assert status["currentMetrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "current": {"averageValue": "400m", "averageUtilization": 400}}}]
    assert status["lastScaleTime"]
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions == {"AbleToScale": ("True", "SucceededRescale"),
                          "ScalingActive": ("True", "ValidMetricFound"),
                          "ScalingLimited": ("True", "ScaleUpLimit")}
    rescale = [e for e in events if e["reason"] == "SuccessfulRescale"]
    assert rescale and rescale[0]["message"] == (
        "New size: 4; reason: cpu resource utilization (percentage of request) above target")
    assert rescale[0]["source"]["component"] == "horizontal-pod-autoscaler"

