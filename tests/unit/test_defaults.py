"""Defaulting: what a client reads back after creating an object, as from a real cluster."""

from __future__ import annotations

import base64
import copy

import pytest

from pilothouse.apiserver.registry.defaults import DEFAULTERS, job_prepare_for_create


def defaulted(group: str, kind: str, obj: dict) -> dict:
    DEFAULTERS[(group, kind)](obj)
    return obj


def container(**extra) -> dict:
    return {"name": "app", "image": "nginx:1.27", **extra}


def test_pod_gets_the_server_defaults() -> None:
    pod = defaulted("", "Pod", {"metadata": {"name": "p"}, "spec": {"containers": [
        container(ports=[{"containerPort": 80}])]}})
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["securityContext"] == {}
    assert spec["enableServiceLinks"] is True
    assert "priority" not in spec  # the Priority admission plugin sets it
    ctr = spec["containers"][0]
    assert ctr["imagePullPolicy"] == "IfNotPresent"
    assert ctr["terminationMessagePath"] == "/dev/termination-log"
    assert ctr["terminationMessagePolicy"] == "File"
    assert ctr["ports"][0]["protocol"] == "TCP"
    assert ctr["resources"] == {}


@pytest.mark.parametrize(("image", "policy"), [
    ("nginx", "Always"), ("nginx:latest", "Always"), ("registry:5000/team/app", "Always"),
    ("nginx:1.27", "IfNotPresent"), ("registry:5000/app:v2", "IfNotPresent"),
    ("nginx@sha256:abc", "IfNotPresent"),
])
def test_image_pull_policy_follows_the_tag(image: str, policy: str) -> None:
    pod = defaulted("", "Pod", {"spec": {"containers": [{"name": "c", "image": image}]}})
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_requests_default_to_limits_and_quantities_are_canonical() -> None:
    pod = defaulted("", "Pod", {"spec": {"containers": [container(
        resources={"limits": {"cpu": "0.5", "memory": "1024Mi"}, "requests": {"cpu": 0.25}})]}})
    resources = pod["spec"]["containers"][0]["resources"]
    assert resources["limits"] == {"cpu": "500m", "memory": "1Gi"}
    assert resources["requests"] == {"cpu": "250m", "memory": "1Gi"}


def test_sub_milli_quantities_round_up() -> None:
    pod = defaulted("", "Pod", {"spec": {"containers": [container(
        resources={"requests": {"cpu": "0.0001"}})]}})
    assert pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "1m"


def test_probes_and_volumes_are_defaulted() -> None:
    pod = defaulted("", "Pod", {"spec": {
        "containers": [container(readinessProbe={"httpGet": {"port": 80}})],
        "volumes": [{"name": "scratch"}, {"name": "conf", "configMap": {"name": "c"}}]}})
    probe = pod["spec"]["containers"][0]["readinessProbe"]
    assert probe["httpGet"] == {"port": 80, "path": "/", "scheme": "HTTP"}
    assert (probe["timeoutSeconds"], probe["periodSeconds"]) == (1, 10)
    assert (probe["successThreshold"], probe["failureThreshold"]) == (1, 3)
    assert pod["spec"]["volumes"][0]["emptyDir"] == {}
    assert pod["spec"]["volumes"][1]["configMap"]["defaultMode"] == 420


def test_defaulting_twice_changes_nothing() -> None:
    once = defaulted("apps", "Deployment", {"spec": {"template": {"spec": {
        "containers": [container(resources={"limits": {"cpu": "2"}})]}}}})
    assert defaulted("apps", "Deployment", copy.deepcopy(once)) == once


def test_deployment_defaults() -> None:
    deploy = defaulted("apps", "Deployment", {"spec": {"template": {"spec": {
        "containers": [container()]}}}})
    spec = deploy["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    template = spec["template"]["spec"]
    assert template["restartPolicy"] == "Always"
    assert "enableServiceLinks" not in template  # a Pod default, not a template one


def test_explicit_values_are_kept() -> None:
    deploy = defaulted("apps", "Deployment", {"spec": {"replicas": 0, "strategy": {
        "type": "Recreate"}, "template": {"spec": {"containers": [container()]}}}})
    assert deploy["spec"]["replicas"] == 0
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}


def test_stateful_set_and_daemon_set_defaults() -> None:
    sts = defaulted("apps", "StatefulSet", {"spec": {"template": {"spec": {
        "containers": [container()]}}}})["spec"]
    assert sts["podManagementPolicy"] == "OrderedReady"
    assert sts["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert sts["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain",
                                                           "whenScaled": "Retain"}
    assert (sts["replicas"], sts["revisionHistoryLimit"]) == (1, 10)
    ds = defaulted("apps", "DaemonSet", {"spec": {"template": {"spec": {
        "containers": [container()]}}}})["spec"]
    assert ds["updateStrategy"] == {"type": "RollingUpdate",
                                    "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert defaulted("apps", "ReplicaSet", {"spec": {}})["spec"]["replicas"] == 1


def test_job_defaults_and_generated_selector() -> None:
    job = defaulted("batch", "Job", {"metadata": {"name": "pi", "uid": "1234"}, "spec": {
        "template": {"metadata": {"labels": {"app": "pi"}},
                     "spec": {"containers": [container()]}}}})
    spec = job["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 6)
    assert spec["completionMode"] == "NonIndexed"
    assert spec["suspend"] is False
    assert spec["podReplacementPolicy"] == "TerminatingOrFailed"
    assert "manualSelector" not in spec
    assert "restartPolicy" not in spec["template"]["spec"]  # a job must choose one
    assert job["metadata"]["labels"] == {"app": "pi"}
    job_prepare_for_create(job)
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "1234"}}
    assert spec["template"]["metadata"]["labels"] == {
        "app": "pi", "job-name": "pi", "batch.kubernetes.io/job-name": "pi",
        "controller-uid": "1234", "batch.kubernetes.io/controller-uid": "1234"}


def test_parallel_job_keeps_completions_unset() -> None:
    spec = defaulted("batch", "Job", {"spec": {"parallelism": 3}})["spec"]
    assert spec["parallelism"] == 3
    assert "completions" not in spec


def test_manual_selector_is_left_alone() -> None:
    job = {"metadata": {"name": "j", "uid": "u"}, "spec": {"manualSelector": True,
                                                           "selector": {"matchLabels": {"a": "b"}}}}
    job_prepare_for_create(job)
    assert job["spec"]["selector"] == {"matchLabels": {"a": "b"}}


def test_cron_job_defaults() -> None:
    spec = defaulted("batch", "CronJob", {"spec": {"schedule": "* * * * *", "jobTemplate": {
        "spec": {"template": {"spec": {"containers": [container()]}}}}}})["spec"]
    assert spec["concurrencyPolicy"] == "Allow"
    assert spec["suspend"] is False
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (3, 1)
    assert spec["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"] == "ClusterFirst"


def test_service_defaults() -> None:
    spec = defaulted("", "Service", {"spec": {"ports": [{"port": 80}, {
        "port": 443, "targetPort": "https"}]}})["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["sessionAffinity"] == "None"
    assert spec["ports"][0] == {"port": 80, "protocol": "TCP", "targetPort": 80}
    assert spec["ports"][1]["targetPort"] == "https"
    assert spec["ipFamilyPolicy"] == "SingleStack"
    assert spec["ipFamilies"] == ["IPv4"]
    assert spec["internalTrafficPolicy"] == "Cluster"


def test_secret_type_and_string_data() -> None:
    secret = defaulted("", "Secret", {"stringData": {"password": "s3cret"}})
    assert secret["type"] == "Opaque"
    assert "stringData" not in secret
    assert base64.b64decode(secret["data"]["password"]) == b"s3cret"


def test_namespace_defaults() -> None:
    ns = defaulted("", "Namespace", {"metadata": {"name": "team-a"}})
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team-a"}
    assert ns["spec"]["finalizers"] == ["kubernetes"]
    terminating = defaulted("", "Namespace", {"metadata": {
        "name": "old", "deletionTimestamp": "2024-01-01T00:00:00Z"}, "spec": {}})
    assert "finalizers" not in terminating["spec"]


def test_volume_defaults() -> None:
    pvc = defaulted("", "PersistentVolumeClaim", {"spec": {"resources": {
        "requests": {"storage": "1024Mi"}}}})
    assert pvc["spec"]["volumeMode"] == "Filesystem"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"
    pv = defaulted("", "PersistentVolume", {"spec": {"capacity": {"storage": "5Gi"}}})
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["volumeMode"] == "Filesystem"


def test_limit_range_container_defaults() -> None:
    lr = defaulted("", "LimitRange", {"spec": {"limits": [{"type": "Container", "max": {
        "cpu": "2"}, "min": {"memory": "64Mi"}}]}})
    item = lr["spec"]["limits"][0]
    assert item["default"] == {"cpu": "2"}
    assert item["defaultRequest"] == {"cpu": "2", "memory": "64Mi"}


def test_rbac_binding_groups() -> None:
    binding = defaulted("rbac.authorization.k8s.io", "RoleBinding", {
        "roleRef": {"kind": "Role", "name": "r"},
        "subjects": [{"kind": "User", "name": "jane"},
                     {"kind": "ServiceAccount", "name": "default", "namespace": "ns"}]})
    assert binding["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
    assert binding["subjects"][0]["apiGroup"] == "rbac.authorization.k8s.io"
    assert binding["subjects"][1]["apiGroup"] == ""
