"""Validation: the rejections, field paths and messages a real cluster answers with."""

from __future__ import annotations

import copy

import pytest

from pilothouse.apiserver.registry.defaults import DEFAULTERS, job_prepare_for_create
from pilothouse.apiserver.registry.validation import (
    NAME_RULES,
    UPDATE_VALIDATORS,
    VALIDATORS,
    validate_object_meta,
    validate_object_meta_update,
)
from pilothouse.machinery.errors import Cause

RBAC = "rbac.authorization.k8s.io"


def rendered(causes: list[Cause]) -> list[str]:
    return [c.render() for c in causes]


def check(group: str, kind: str, obj: dict, *, namespaced: bool = True) -> list[str]:
    """What the API server runs on create: defaults, metadata, then the kind's rules."""
    if (group, kind) in DEFAULTERS:
        DEFAULTERS[(group, kind)](obj)
    meta = validate_object_meta(obj, namespaced=namespaced,
                                name_rule=NAME_RULES.get((group, kind), "subdomain"))
    return rendered(meta + VALIDATORS[(group, kind)](obj))


def update(group: str, kind: str, new: dict, old: dict) -> list[str]:
    return rendered(UPDATE_VALIDATORS[(group, kind)](new, old))


def pod(**spec) -> dict:
    spec.setdefault("containers", [{"name": "app", "image": "nginx:1.27"}])
    return {"metadata": {"name": "web", "namespace": "default"}, "spec": spec}


def controller(selector: dict | None, labels: dict, **spec) -> dict:
    template = {"metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}
    if selector is not None:
        spec["selector"] = selector
    return {"metadata": {"name": "web", "namespace": "default"},
            "spec": {"template": template, **spec}}


def stored(group: str, kind: str, obj: dict) -> dict:
    DEFAULTERS[(group, kind)](obj)
    return obj


# --- metadata ------------------------------------------------------------------------


def test_a_valid_pod_passes() -> None:
    assert check("", "Pod", pod()) == []


def test_bad_name_is_rejected_with_kubernetes_message() -> None:
    obj = pod()
    obj["metadata"]["name"] = "Bad_Name"
    assert check("", "Pod", obj) == [
        'metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist '
        "of lower case alphanumeric characters, '-' or '.', and must start and end with an "
        "alphanumeric character (e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]


def test_name_or_generate_name_is_required() -> None:
    assert rendered(validate_object_meta({"metadata": {"namespace": "ns"}}, namespaced=True)) == [
        "metadata.name: Required value: name or generateName is required"]
    assert validate_object_meta({"metadata": {"generateName": "web-", "namespace": "ns"}},
                                namespaced=True) == []


def test_namespace_follows_scope() -> None:
    assert rendered(validate_object_meta({"metadata": {"name": "a"}}, namespaced=True)) == [
        "metadata.namespace: Required value"]
    assert rendered(validate_object_meta({"metadata": {"name": "a", "namespace": "x"}},
                                         namespaced=False)) == [
        "metadata.namespace: Forbidden: not allowed on this type"]


@pytest.mark.parametrize(("group", "kind", "name", "fragment"), [
    ("", "Service", "1web", "a DNS-1035 label must consist"),
    ("", "Namespace", "team.a", "a lowercase RFC 1123 label must consist"),
    (RBAC, "ClusterRole", "system/admin", "may not contain '/'"),
])
def test_kinds_with_other_name_rules(group: str, kind: str, name: str, fragment: str) -> None:
    causes = rendered(validate_object_meta({"metadata": {"name": name}}, namespaced=False,
                                           name_rule=NAME_RULES[(group, kind)]))
    assert len(causes) == 1 and fragment in causes[0]
    assert validate_object_meta({"metadata": {"name": "system:admin"}}, namespaced=False,
                                name_rule=NAME_RULES[(RBAC, "ClusterRole")]) == []


def test_labels_annotations_owners_and_finalizers() -> None:
    obj = {"metadata": {
        "name": "a", "labels": {"bad key": "ok", "app": "x" * 64},
        "annotations": {"big": "x" * (256 * 1024)},
        "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1",
             "controller": True},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "b", "uid": "2",
             "controller": True},
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "c"}],
        "finalizers": ["bad finalizer"]}}
    causes = rendered(validate_object_meta(obj, namespaced=False))
    assert causes[0].startswith('metadata.labels: Invalid value: "bad key": name part must')
    assert causes[1] == ('metadata.labels: Invalid value: "' + "x" * 64
                         + '": must be no more than 63 characters')
    assert "metadata.annotations: Too long: must have at most 262144 bytes" in causes
    assert any(c.startswith("metadata.ownerReferences: Invalid value") and
               "Only one reference can have Controller set to true. Found \"true\" in "
               "references for ReplicaSet/a and ReplicaSet/b" in c for c in causes)
    assert 'metadata.ownerReferences.uid: Invalid value: "": must not be empty' in causes
    assert any(c.startswith('metadata.finalizers: Invalid value: "bad finalizer"') for c in causes)


def test_metadata_identity_is_immutable() -> None:
    old = {"metadata": {"name": "a", "uid": "1", "generation": 2,
                        "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["x/y"]}}
    new = copy.deepcopy(old)
    new["metadata"].update(name="b", generation=1, finalizers=["x/y", "x/z"])
    assert rendered(validate_object_meta_update(new, old)) == [
        'metadata.finalizers: Forbidden: no new finalizers can be added if the object is being '
        'deleted, found new finalizers ["x/z"]',
        "metadata.generation: Invalid value: 1: must not be decremented",
        'metadata.name: Invalid value: "b": field is immutable']


# --- pods ----------------------------------------------------------------------------


def test_pod_without_containers() -> None:
    assert check("", "Pod", pod(containers=[])) == ["spec.containers: Required value"]


def test_pod_container_rules() -> None:
    obj = pod(containers=[
        {"name": "App", "image": "", "ports": [{"containerPort": 70000, "protocol": "HTTP"}],
         "env": [{"name": "1BAD"}], "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
        {"name": "side", "image": "busybox", "ports": [{"containerPort": 80, "name": "web"},
                                                        {"containerPort": 81, "name": "web"}]},
        {"name": "side", "image": "busybox"}])
    causes = check("", "Pod", obj)
    assert any(c.startswith('spec.containers[0].name: Invalid value: "App": a lowercase RFC '
                            "1123 label") for c in causes)
    assert "spec.containers[0].image: Required value" in causes
    assert ("spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between "
            "1 and 65535, inclusive") in causes
    assert ('spec.containers[0].ports[0].protocol: Unsupported value: "HTTP": supported values: '
            '"SCTP", "TCP", "UDP"') in causes
    assert any(c.startswith('spec.containers[0].env[0].name: Invalid value: "1BAD": a valid '
                            "environment variable name") for c in causes)
    assert 'spec.containers[0].volumeMounts[0].name: Not found: "data"' in causes
    assert 'spec.containers[1].ports[1].name: Duplicate value: "web"' in causes
    assert 'spec.containers[2].name: Duplicate value: "side"' in causes


def test_init_and_regular_container_names_are_unique_together() -> None:
    obj = pod(initContainers=[{"name": "app", "image": "busybox"}])
    assert check("", "Pod", obj) == ['spec.containers[0].name: Duplicate value: "app"']


def test_pod_policies_and_scheduling_fields() -> None:
    obj = pod(restartPolicy="Sometimes", nodeSelector={"disk type": "ssd"}, tolerations=[
        {"key": "gpu", "operator": "Exists", "value": "yes"},
        {"key": "gpu", "operator": "Maybe"}])
    causes = check("", "Pod", obj)
    assert ('spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", '
            '"OnFailure", "Never"') in causes
    assert any(c.startswith('spec.nodeSelector: Invalid value: "disk type"') for c in causes)
    assert any(c.startswith("spec.tolerations[0].operator: Invalid value:") and
               c.endswith("value must be empty when `operator` is 'Exists'") for c in causes)
    assert ('spec.tolerations[1].operator: Unsupported value: "Maybe": supported values: '
            '"Equal", "Exists"') in causes


def test_volumes_need_unique_names_and_one_source() -> None:
    obj = pod(volumes=[{"name": "a", "emptyDir": {}, "hostPath": {"path": "/tmp"}},
                       {"name": "a", "secret": {}}])
    assert check("", "Pod", obj) == [
        "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type",
        'spec.volumes[1].name: Duplicate value: "a"',
        "spec.volumes[1].secret.secretName: Required value"]


def test_resources_parse_and_requests_stay_within_limits() -> None:
    obj = pod(containers=[{"name": "app", "image": "nginx", "resources": {
        "limits": {"cpu": "0.5", "memory": "12Qi"}, "requests": {"cpu": "1"}}}])
    causes = check("", "Pod", obj)
    assert any(c.startswith('spec.containers[0].resources.limits[memory]: Invalid value: '
                            '"12Qi": ') for c in causes)
    assert ('spec.containers[0].resources.requests: Invalid value: "1": must be less than or '
            "equal to cpu limit of 500m") in causes


def test_probes_need_one_handler() -> None:
    obj = pod(containers=[{"name": "app", "image": "nginx", "livenessProbe": {},
                           "readinessProbe": {"exec": {"command": ["true"]},
                                              "tcpSocket": {"port": 80}}}])
    assert check("", "Pod", obj) == [
        "spec.containers[0].livenessProbe: Required value: must specify a handler type",
        "spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 "
        "handler type"]


def test_pod_spec_is_immutable_but_for_images() -> None:
    old = stored("", "Pod", pod(tolerations=[{"key": "a", "operator": "Exists"}]))
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:1.28"
    new["spec"]["tolerations"].append({"key": "b", "operator": "Exists"})
    new["metadata"]["labels"] = {"changed": "yes"}
    assert update("", "Pod", new, old) == []
    new["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "protocol": "TCP"}]
    causes = update("", "Pod", new, old)
    assert causes == ["spec: Forbidden: pod updates may not change fields other than "
                      "`spec.containers[*].image`,`spec.initContainers[*].image`,"
                      "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
                      "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to "
                      "be set to 1 if it was previously negative)"]


# --- apps ----------------------------------------------------------------------------


def test_deployment_selector_must_match_template() -> None:
    obj = controller({"matchLabels": {"app": "web"}}, {"app": "api"})
    assert check("apps", "Deployment", obj) == [
        "spec.template.metadata.labels: Invalid value: {'app': 'api'}: `selector` does not "
        "match template `labels`"]


def test_deployment_selector_is_required_and_replicas_non_negative() -> None:
    obj = controller(None, {"app": "web"}, replicas=-1)
    causes = check("apps", "Deployment", obj)
    assert "spec.selector: Required value" in causes
    assert "spec.replicas: Invalid value: -1: must be greater than or equal to 0" in causes


def test_deployment_strategy_rules() -> None:
    obj = controller({"matchLabels": {"app": "web"}}, {"app": "web"}, strategy={
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}})
    assert check("apps", "Deployment", obj) == [
        "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when "
        "`maxSurge` is 0"]
    obj = controller({"matchLabels": {"app": "web"}}, {"app": "web"}, strategy={
        "type": "Recreate", "rollingUpdate": {}})
    assert check("apps", "Deployment", obj) == [
        "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is "
        "'Recreate'"]


def test_controllers_need_restart_policy_always() -> None:
    obj = controller({"matchLabels": {"app": "web"}}, {"app": "web"})
    obj["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert check("apps", "ReplicaSet", obj) == [
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: '
        '"Always"']


def test_selectors_are_immutable() -> None:
    for kind in ("Deployment", "ReplicaSet", "DaemonSet"):
        old = stored("apps", kind, controller({"matchLabels": {"app": "web"}}, {"app": "web"}))
        new = copy.deepcopy(old)
        new["spec"]["selector"] = {"matchLabels": {"app": "web", "tier": "front"}}
        assert update("apps", kind, new, old) == [
            "spec.selector: Invalid value: {'matchLabels': {'app': 'web', 'tier': 'front'}}: "
            "field is immutable"]
        new = copy.deepcopy(old)
        new["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
        assert update("apps", kind, new, old) == []


def test_stateful_set_rules() -> None:
    obj = controller({"matchLabels": {"app": "db"}}, {"app": "db"}, serviceName="db")
    assert check("apps", "StatefulSet", obj) == []
    old = copy.deepcopy(obj)
    new = copy.deepcopy(obj)
    new["spec"]["replicas"] = 5
    assert update("apps", "StatefulSet", new, old) == []
    new["spec"]["serviceName"] = "other"
    assert update("apps", "StatefulSet", new, old) == [
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', "
        "'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and "
        "'minReadySeconds' are forbidden"]


# --- batch ---------------------------------------------------------------------------


def job(**spec) -> dict:
    template = {"spec": {"restartPolicy": "Never",
                         "containers": [{"name": "pi", "image": "perl:5.34"}]}}
    obj = {"metadata": {"name": "pi", "namespace": "default", "uid": "0b7e"},
           "spec": {"template": template, **spec}}
    DEFAULTERS[("batch", "Job")](obj)
    job_prepare_for_create(obj)
    return obj


def test_a_defaulted_job_is_valid() -> None:
    assert check("batch", "Job", job()) == []


def test_job_needs_on_failure_or_never() -> None:
    obj = job()
    del obj["spec"]["template"]["spec"]["restartPolicy"]
    assert check("batch", "Job", obj) == [
        'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"']


def test_job_counts_and_modes() -> None:
    causes = check("batch", "Job", job(parallelism=-1, backoffLimit=-2, completionMode="Indexed"))
    assert "spec.parallelism: Invalid value: -1: must be greater than or equal to 0" in causes
    assert "spec.backoffLimit: Invalid value: -2: must be greater than or equal to 0" in causes
    assert "spec.completions: Required value: when completion mode is Indexed" in causes
    causes = check("batch", "Job", job(completionMode="Sometimes"))
    assert ('spec.completionMode: Unsupported value: "Sometimes": supported values: '
            '"NonIndexed", "Indexed"') in causes


def test_job_pod_failure_policy() -> None:
    causes = check("batch", "Job", job(podFailurePolicy={"rules": [
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3, 0, 1]}},
        {"action": "Explode", "onPodConditions": [{"type": "DisruptionTarget"}]}]}))
    assert "spec.podFailurePolicy.rules[0].onExitCodes.values[1]: Invalid value: 0: must not " \
           "be 0 for the In operator" in causes
    assert "spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: [3, 0, 1]: " \
           "must be ordered" in causes
    assert ('spec.podFailurePolicy.rules[1].action: Unsupported value: "Explode": supported '
            'values: "Count", "FailIndex", "FailJob", "Ignore"') in causes
    assert any(c.startswith("spec.podFailurePolicy.rules[1].onPodConditions[0].status")
               for c in causes)


def test_job_selector_and_template_are_immutable_unless_suspended() -> None:
    old = job()
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["nodeSelector"] = {"zone": "a"}
    new["spec"]["selector"] = {"matchLabels": {"other": "x"}}
    causes = update("batch", "Job", new, old)
    assert [c.split(":")[0] for c in causes] == ["spec.selector", "spec.template"]
    assert all(c.endswith("field is immutable") for c in causes)
    suspended = job(suspend=True)
    new = copy.deepcopy(suspended)
    new["spec"]["template"]["spec"]["nodeSelector"] = {"zone": "a"}
    assert update("batch", "Job", new, suspended) == []
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "perl:6"
    assert [c.split(":")[0] for c in update("batch", "Job", new, suspended)] == ["spec.template"]


def cron_job(schedule: str, **spec) -> dict:
    template = {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [
        {"name": "c", "image": "busybox"}]}}}}
    return {"metadata": {"name": "nightly", "namespace": "default"},
            "spec": {"schedule": schedule, "jobTemplate": template, **spec}}


@pytest.mark.parametrize("schedule", ["*/5 * * * *", "0 3 * * 1-5", "@hourly", "@every 90s"])
def test_cron_job_accepts_standard_schedules(schedule: str) -> None:
    assert check("batch", "CronJob", cron_job(schedule)) == []


def test_cron_job_rejections() -> None:
    assert check("batch", "CronJob", cron_job("")) == ["spec.schedule: Required value"]
    assert check("batch", "CronJob", cron_job("0 0 * * * *")) == [
        'spec.schedule: Invalid value: "0 0 * * * *": expected exactly 5 fields, found 6: '
        "[0 0 * * * *]"]
    causes = check("batch", "CronJob", cron_job("61 * * * *", timeZone="Mars/Olympus",
                                                concurrencyPolicy="Sometimes"))
    assert causes[0].startswith('spec.schedule: Invalid value: "61 * * * *": ')
    assert 'spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus' in causes
    assert ('spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", '
            '"Forbid", "Replace"') in causes
    assert check("batch", "CronJob", cron_job("TZ=UTC 0 * * * *")) == [
        'spec.schedule: Invalid value: "TZ=UTC 0 * * * *": cannot use TZ or CRON_TZ in '
        "schedule, use timeZone field instead"]
    assert check("batch", "CronJob", cron_job("0 * * * *", timeZone="Europe/Paris")) == []


# --- services and configuration ------------------------------------------------------


def service(**spec) -> dict:
    return {"metadata": {"name": "web", "namespace": "default"}, "spec": spec}


def test_service_rules() -> None:
    assert check("", "Service", service(ports=[{"port": 80}], selector={"app": "web"})) == []
    assert check("", "Service", service()) == ["spec.ports: Required value"]
    assert check("", "Service", service(clusterIP="None")) == []
    assert check("", "Service", service(type="ExternalName", externalName="db.example.com")) == []
    causes = check("", "Service", service(type="Magic", clusterIP="10.0.0.300", ports=[
        {"port": 0, "targetPort": "HTTP"}, {"name": "a", "port": 81}]))
    assert ('spec.type: Unsupported value: "Magic": supported values: "ClusterIP", '
            '"ExternalName", "LoadBalancer", "NodePort"') in causes
    assert ('spec.clusterIP: Invalid value: "10.0.0.300": must be a valid IP address, (e.g. '
            "10.9.8.7 or 2001:db8::ffff)") in causes
    assert "spec.ports[0].name: Required value" in causes
    assert "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive" in causes
    assert any(c.startswith('spec.ports[0].targetPort: Invalid value: "HTTP"') for c in causes)


def test_service_cluster_ip_is_immutable_once_set() -> None:
    old = stored("", "Service", service(ports=[{"port": 80}], clusterIP="10.96.0.10"))
    new = copy.deepcopy(old)
    new["spec"].update(clusterIP="10.96.0.11", clusterIPs=["10.96.0.11"])
    assert update("", "Service", new, old) == [
        "spec.clusterIPs[0]: Invalid value: ['10.96.0.11']: may not change once set"]
    new["spec"].pop("clusterIP"), new["spec"].pop("clusterIPs")
    assert update("", "Service", new, old) == []


def test_config_map_and_secret_keys_and_size() -> None:
    cm = {"metadata": {"name": "c", "namespace": "d"}, "data": {"bad key": "v", "ok": "x"}}
    causes = check("", "ConfigMap", cm)
    assert len(causes) == 1 and causes[0].startswith(
        'data[bad key]: Invalid value: "bad key": a valid config key must consist of')
    big = {"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "x" * (1024 * 1024 + 1)}}
    assert check("", "ConfigMap", big) == ["Too long: must have at most 1048576 bytes"]
    secret = {"metadata": {"name": "s", "namespace": "d"}, "data": {"token": "not base64!"}}
    assert check("", "Secret", secret) == [
        'data[token]: Invalid value: "<secret contents redacted>": illegal base64 data at input '
        "byte 3"]


def test_typed_secrets_need_their_keys() -> None:
    tls = {"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/tls",
           "data": {"tls.crt": "Y2VydA=="}}
    assert check("", "Secret", tls) == ["data[tls.key]: Required value"]
    token = {"metadata": {"name": "s", "namespace": "d"},
             "type": "kubernetes.io/service-account-token"}
    assert check("", "Secret", token) == [
        "metadata.annotations[kubernetes.io/service-account.name]: Required value"]


def test_immutable_config_maps_and_secrets() -> None:
    old = {"metadata": {"name": "c"}, "immutable": True, "data": {"a": "1"}}
    new = copy.deepcopy(old)
    new["data"]["a"] = "2"
    assert update("", "ConfigMap", new, old) == [
        "data: Forbidden: field is immutable when `immutable` is set"]
    old_secret = stored("", "Secret", {"metadata": {"name": "s"}, "immutable": True})
    new_secret = copy.deepcopy(old_secret)
    new_secret.update(immutable=False, type="kubernetes.io/tls")
    assert update("", "Secret", new_secret, old_secret) == [
        'type: Invalid value: "kubernetes.io/tls": field is immutable',
        "immutable: Forbidden: field is immutable when `immutable` is set"]


# --- storage -------------------------------------------------------------------------


def test_claims_need_access_modes_and_storage() -> None:
    pvc = {"metadata": {"name": "data", "namespace": "d"}, "spec": {"accessModes": ["ReadWriteSome"]}}
    assert check("", "PersistentVolumeClaim", pvc) == [
        'spec.accessModes: Unsupported value: "ReadWriteSome": supported values: "ReadOnlyMany", '
        '"ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"',
        "spec.resources[storage]: Required value"]


def test_bound_claims_may_only_grow() -> None:
    old = stored("", "PersistentVolumeClaim", {"metadata": {"name": "d"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Bound"}})
    new = copy.deepcopy(old)
    new["spec"]["resources"]["requests"]["storage"] = "2Gi"
    assert update("", "PersistentVolumeClaim", new, old) == []
    new["spec"]["accessModes"] = ["ReadWriteMany"]
    assert update("", "PersistentVolumeClaim", new, old) == [
        "spec: Forbidden: spec is immutable after creation except resources.requests and "
        "volumeAttributesClassName for bound claims"]


def test_persistent_volume_and_storage_class() -> None:
    pv = {"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "1Gi"},
                                                "accessModes": ["ReadWriteOnce"]}}
    assert check("", "PersistentVolume", pv, namespaced=False) == [
        "spec: Required value: must specify a volume type"]
    sc = {"metadata": {"name": "fast"}}
    assert check("storage.k8s.io", "StorageClass", sc, namespaced=False) == [
        "provisioner: Required value"]


# --- RBAC, scheduling and the rest ---------------------------------------------------


def test_rbac_rules_and_bindings() -> None:
    role = {"metadata": {"name": "reader", "namespace": "d"},
            "rules": [{"apiGroups": [""], "resources": ["pods"]}]}
    assert check(RBAC, "Role", role) == [
        "rules[0].verbs: Required value: verbs must contain at least one value"]
    binding = {"metadata": {"name": "b"}, "roleRef": {"kind": "Role", "name": ""},
               "subjects": [{"kind": "Robot", "name": "r2"}]}
    assert check(RBAC, "ClusterRoleBinding", binding, namespaced=False) == [
        'roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"',
        "roleRef.name: Required value",
        'subjects[0].kind: Unsupported value: "Robot": supported values: "ServiceAccount", '
        '"User", "Group"']


def test_role_ref_cannot_change() -> None:
    old = stored(RBAC, "RoleBinding", {"metadata": {"name": "b"},
                                       "roleRef": {"kind": "Role", "name": "a"}})
    new = copy.deepcopy(old)
    new["roleRef"]["name"] = "b"
    causes = update(RBAC, "RoleBinding", new, old)
    assert len(causes) == 1 and causes[0].startswith("roleRef: Invalid value:")
    assert causes[0].endswith("cannot change roleRef")


def test_priority_class_limits() -> None:
    pc = {"metadata": {"name": "urgent"}, "value": 2_000_000_000}
    assert check("scheduling.k8s.io", "PriorityClass", pc, namespaced=False) == [
        "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
    system = {"metadata": {"name": "system-cluster-critical"}, "value": 2_000_000_000}
    assert check("scheduling.k8s.io", "PriorityClass", system, namespaced=False) == []


def test_small_kinds() -> None:
    eps = {"metadata": {"name": "e", "namespace": "d"}, "addressType": "IPv5"}
    assert check("discovery.k8s.io", "EndpointSlice", eps) == [
        'addressType: Unsupported value: "IPv5": supported values: "FQDN", "IPv4", "IPv6"']
    rc = {"metadata": {"name": "gvisor"}, "handler": "Run_SC"}
    assert check("node.k8s.io", "RuntimeClass", rc, namespaced=False)[0].startswith(
        'handler: Invalid value: "Run_SC": a lowercase RFC 1123 label')
    lease = {"metadata": {"name": "l", "namespace": "d"}, "spec": {"leaseDurationSeconds": 0}}
    assert check("coordination.k8s.io", "Lease", lease) == [
        "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
    ns = {"metadata": {"name": "team"}, "spec": {"finalizers": ["custom"]}}
    assert check("", "Namespace", ns, namespaced=False) == [
        'spec.finalizers: Invalid value: "custom": name is neither a standard finalizer name '
        "nor is it fully qualified"]


def test_quota_and_limit_range() -> None:
    quota = {"metadata": {"name": "q", "namespace": "d"},
             "spec": {"hard": {"pods": "-1", "widgets": "3"}}}
    assert check("", "ResourceQuota", quota) == [
        'spec.hard[widgets]: Invalid value: "widgets": must be a standard resource for quota',
        'spec.hard[pods]: Invalid value: "-1": must be greater than or equal to 0']
    lr = {"metadata": {"name": "l", "namespace": "d"}, "spec": {"limits": [
        {"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}}]}}
    causes = check("", "LimitRange", lr)
    assert 'spec.limits[0].min[cpu]: Invalid value: "2": min value 2 is greater than max value 1' \
        in causes
