"""Defaulting: the values a Kubernetes 1.32 API server fills in before it validates.

The API server calls `DEFAULTERS[(group, kind)]` on every create and update of a built-in
kind, before validation, and `job_prepare_for_create` on a new Job once its uid is set.
Each defaulter changes the object in place and only fills what is absent, so running it
again (on an update of an object read back from the server) changes nothing. The values
are those of `pkg/apis/<group>/v1/defaults.go` and the generated declarative defaults,
plus the few a real server sets elsewhere that clients see on every object (the pod's
priority from its admission plugin, a Service's IP families, a Secret's `stringData`
folded into `data`). Resource quantities are rounded up to milli units and stored in
canonical form, as `SetDefaults_ResourceList` and Quantity's serialisation do.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from decimal import ROUND_CEILING, Decimal
from typing import Any

from pilothouse.machinery.quantity import DECIMAL_SI, canonical, format_quantity, parse_quantity

Defaulter = Callable[[dict], None]

MAX_INT32 = 2**31 - 1
_FILE_MODE = 0o644  # 420: the default mode of secret, configMap, downwardAPI, projected files
_RBAC = "rbac.authorization.k8s.io"


def _sub(obj: dict, key: str) -> dict:
    """obj[key] as a dict, created (or replaced, if not a dict) when needed."""
    value = obj.get(key)
    if not isinstance(value, dict):
        value = obj[key] = {}
    return value


def _default(obj: dict, key: str, value: Any) -> None:
    """Set obj[key] when absent, null or "" (what Go decodes as unset)."""
    if obj.get(key) in (None, ""):
        obj[key] = value


def _items(obj: dict, key: str) -> list[dict]:
    """The dict entries of the list obj[key] (none when absent or malformed)."""
    value = obj.get(key)
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def canonical_quantity(value: Any) -> Any:
    """A quantity rounded up to milli units and spelled canonically; bad input unchanged."""
    try:
        amount = parse_quantity(value)
        if amount != amount.quantize(Decimal("0.001"), rounding=ROUND_CEILING):
            return format_quantity(amount.quantize(Decimal("0.001"), rounding=ROUND_CEILING),
                                   DECIMAL_SI)
        return canonical(value)
    except (ValueError, TypeError, ArithmeticError):
        return value  # validation reports it


def _resource_list(obj: dict, key: str) -> None:
    resources = obj.get(key)
    if isinstance(resources, dict):
        for name, value in resources.items():
            resources[name] = canonical_quantity(value)


# ---------------------------------------------------------------------------------------
# Pod specs, in pods and in every template.


def _pull_policy(image: str) -> str:
    """Always for `:latest` or an untagged image without a digest, else IfNotPresent."""
    reference, _, digest = image.partition("@")
    last = reference.rsplit("/", 1)[-1]
    tag = last.partition(":")[2] if ":" in last else ("" if digest else "latest")
    return "Always" if tag == "latest" else "IfNotPresent"


def _probe(probe: dict) -> None:
    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                       ("failureThreshold", 3)):
        if not probe.get(key):
            probe[key] = value
    _http_get(probe)


def _http_get(handler: dict) -> None:
    get = handler.get("httpGet")
    if isinstance(get, dict):
        _default(get, "path", "/")
        _default(get, "scheme", "HTTP")


def _field_ref(holder: dict) -> None:
    ref = holder.get("fieldRef")
    if isinstance(ref, dict):
        _default(ref, "apiVersion", "v1")


def _container(ctr: dict, *, host_network: bool) -> None:
    if not ctr.get("imagePullPolicy"):
        ctr["imagePullPolicy"] = _pull_policy(str(ctr.get("image") or ""))
    _default(ctr, "terminationMessagePath", "/dev/termination-log")
    _default(ctr, "terminationMessagePolicy", "File")
    resources = _sub(ctr, "resources")
    _resource_list(resources, "limits")
    _resource_list(resources, "requests")
    for port in _items(ctr, "ports"):
        _default(port, "protocol", "TCP")
        if host_network and not port.get("hostPort"):
            port["hostPort"] = port.get("containerPort")
    for var in _items(ctr, "env"):
        if isinstance(var.get("valueFrom"), dict):
            _field_ref(var["valueFrom"])
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        if isinstance(ctr.get(key), dict):
            _probe(ctr[key])
    lifecycle = ctr.get("lifecycle")
    if isinstance(lifecycle, dict):
        for hook in ("postStart", "preStop"):
            if isinstance(lifecycle.get(hook), dict):
                _http_get(lifecycle[hook])


def _volume(volume: dict) -> None:
    if not any(key != "name" and value is not None for key, value in volume.items()):
        volume["emptyDir"] = {}
    for source in ("secret", "configMap", "downwardAPI", "projected"):
        if isinstance(volume.get(source), dict):
            _default(volume[source], "defaultMode", _FILE_MODE)
    if isinstance(volume.get("downwardAPI"), dict):
        for item in _items(volume["downwardAPI"], "items"):
            _field_ref(item)
    if isinstance(volume.get("hostPath"), dict):
        _default(volume["hostPath"], "type", "")
    if isinstance(volume.get("emptyDir"), dict) and "sizeLimit" in volume["emptyDir"]:
        volume["emptyDir"]["sizeLimit"] = canonical_quantity(volume["emptyDir"]["sizeLimit"])
    if isinstance(volume.get("projected"), dict):
        for source in _items(volume["projected"], "sources"):
            token = source.get("serviceAccountToken")
            if isinstance(token, dict):
                _default(token, "expirationSeconds", 3600)


def default_pod_spec(spec: dict, *, restart_policy: str | None = "Always") -> None:
    """SetDefaults_PodSpec and what it reaches: containers, volumes, probes, ports.

    `restart_policy` is None for job templates, where upstream's default (Always) is
    only ever rejected; leaving it unset lets validation name the values a job accepts.
    """
    _default(spec, "dnsPolicy", "ClusterFirst")
    if restart_policy and not spec.get("restartPolicy"):
        spec["restartPolicy"] = restart_policy
    if not isinstance(spec.get("securityContext"), dict):
        spec["securityContext"] = {}
    _default(spec, "terminationGracePeriodSeconds", 30)
    _default(spec, "schedulerName", "default-scheduler")
    host_network = spec.get("hostNetwork") is True
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for ctr in _items(spec, key):
            _container(ctr, host_network=host_network)
    for volume in _items(spec, "volumes"):
        _volume(volume)
    _resource_list(spec, "overhead")
    if isinstance(spec.get("resources"), dict):
        _resource_list(spec["resources"], "limits")
        _resource_list(spec["resources"], "requests")


def default_pod(pod: dict) -> None:
    """SetDefaults_Pod: requests from limits, service links (priority and preemptionPolicy
    are the Priority admission plugin's, as on a real cluster)."""
    spec = _sub(pod, "spec")
    default_pod_spec(spec)
    for key in ("initContainers", "containers"):
        for ctr in _items(spec, key):
            resources = _sub(ctr, "resources")
            limits = resources.get("limits")
            if isinstance(limits, dict) and limits:
                requests = _sub(resources, "requests")
                for name, value in limits.items():
                    _default(requests, name, value)
    _default(spec, "enableServiceLinks", True)


def _template(spec: dict, *, restart_policy: str | None = "Always") -> None:
    default_pod_spec(_sub(_sub(spec, "template"), "spec"), restart_policy=restart_policy)


def default_pod_template(obj: dict) -> None:
    _template(obj)


# ---------------------------------------------------------------------------------------
# apps/v1


def default_deployment(deploy: dict) -> None:
    spec = _sub(deploy, "spec")
    _default(spec, "replicas", 1)
    strategy = _sub(spec, "strategy")
    _default(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _sub(strategy, "rollingUpdate")
        _default(rolling, "maxUnavailable", "25%")
        _default(rolling, "maxSurge", "25%")
    _default(spec, "revisionHistoryLimit", 10)
    _default(spec, "progressDeadlineSeconds", 600)
    _template(spec)


def default_replica_set(rs: dict) -> None:
    spec = _sub(rs, "spec")
    _default(spec, "replicas", 1)
    _template(spec)


def default_stateful_set(sts: dict) -> None:
    spec = _sub(sts, "spec")
    _default(spec, "podManagementPolicy", "OrderedReady")
    strategy = _sub(spec, "updateStrategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
        _default(strategy, "rollingUpdate", {})
    if strategy["type"] == "RollingUpdate" and isinstance(strategy.get("rollingUpdate"), dict):
        _default(strategy["rollingUpdate"], "partition", 0)
    retention = _sub(spec, "persistentVolumeClaimRetentionPolicy")
    _default(retention, "whenDeleted", "Retain")
    _default(retention, "whenScaled", "Retain")
    _default(spec, "replicas", 1)
    _default(spec, "revisionHistoryLimit", 10)
    _template(spec)
    for claim in _items(spec, "volumeClaimTemplates"):
        default_persistent_volume_claim(claim)


def default_daemon_set(ds: dict) -> None:
    spec = _sub(ds, "spec")
    strategy = _sub(spec, "updateStrategy")
    _default(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _sub(strategy, "rollingUpdate")
        _default(rolling, "maxUnavailable", 1)
        _default(rolling, "maxSurge", 0)
    _default(spec, "revisionHistoryLimit", 10)
    _template(spec)


# ---------------------------------------------------------------------------------------
# batch/v1


def default_job(job: dict) -> None:
    """SetDefaults_Job; the selector and its labels come at create (job_prepare_for_create)."""
    spec = _sub(job, "spec")
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    _default(spec, "parallelism", 1)
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = MAX_INT32 if spec.get("backoffLimitPerIndex") is not None else 6
    template_labels = _sub(_sub(spec, "template"), "metadata").get("labels")
    meta = _sub(job, "metadata")
    if isinstance(template_labels, dict) and template_labels and not meta.get("labels"):
        meta["labels"] = dict(template_labels)
    _default(spec, "completionMode", "NonIndexed")
    _default(spec, "suspend", False)
    if spec.get("podReplacementPolicy") is None:
        failure_policy = spec.get("podFailurePolicy") is not None
        spec["podReplacementPolicy"] = "Failed" if failure_policy else "TerminatingOrFailed"
    _template(spec, restart_policy=None)


def job_prepare_for_create(job: dict) -> None:
    """The selector a new Job gets from its uid, and the labels that make its pods match.

    Call after the uid is assigned and before validation, unless `spec.manualSelector` is
    true. Labels the user already set are kept (validation rejects wrong ones).
    """
    spec = _sub(job, "spec")
    if spec.get("manualSelector") is True:
        return
    meta = _sub(job, "metadata")
    uid, name = str(meta.get("uid") or ""), str(meta.get("name") or "")
    labels = _sub(_sub(_sub(spec, "template"), "metadata"), "labels")
    for key, value in (("job-name", name), ("batch.kubernetes.io/job-name", name),
                       ("controller-uid", uid), ("batch.kubernetes.io/controller-uid", uid)):
        labels.setdefault(key, value)
    match_labels = _sub(_sub(spec, "selector"), "matchLabels")
    match_labels.setdefault("batch.kubernetes.io/controller-uid", uid)


def default_cron_job(cj: dict) -> None:
    spec = _sub(cj, "spec")
    _default(spec, "concurrencyPolicy", "Allow")
    _default(spec, "suspend", False)
    _default(spec, "successfulJobsHistoryLimit", 3)
    _default(spec, "failedJobsHistoryLimit", 1)
    _template(_sub(_sub(spec, "jobTemplate"), "spec"), restart_policy=None)


# ---------------------------------------------------------------------------------------
# autoscaling


#: SetDefaults_HorizontalPodAutoscalerBehavior's rules for a behavior that leaves one out:
#: scale up by 4 pods or 100% (the larger) each 15 s, no stabilization; scale down by 100%
#: each 15 s, stabilized over the controller's --horizontal-pod-autoscaler-downscale-
#: stabilization (left unset here, as upstream leaves it).
HPA_SCALE_UP_RULES = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
    {"type": "Pods", "value": 4, "periodSeconds": 15},
    {"type": "Percent", "value": 100, "periodSeconds": 15}]}
HPA_SCALE_DOWN_RULES = {"selectPolicy": "Max", "policies": [
    {"type": "Percent", "value": 100, "periodSeconds": 15}]}


def _scaling_rules(given: Any, defaults: dict) -> dict:
    """copyHPAScalingRules: the defaults with every field `given` sets (non-null) kept.
    1.32's rules have no `tolerance` (1.33's alpha HPAConfigurableTolerance): not kept."""
    rules = copy.deepcopy(defaults)
    if isinstance(given, dict):
        for key in ("selectPolicy", "stabilizationWindowSeconds", "policies"):
            if given.get(key) is not None:
                rules[key] = given[key]
    return rules


def _metric_quantities(holder: Any, key: str, fields: tuple[str, ...]) -> None:
    value = holder.get(key) if isinstance(holder, dict) else None
    if isinstance(value, dict):
        for name in fields:
            if name in value:
                value[name] = canonical_quantity(value[name])


def default_horizontal_pod_autoscaler(hpa: dict) -> None:
    """autoscaling/v2's SetDefaults_HorizontalPodAutoscaler: minReplicas 1, a CPU target of
    80% when there is no metric, a behavior's missing rules filled in. Through
    autoscaling/v1 only minReplicas is defaulted (the 80% is implied by conversion).
    Quantities are stored canonical, as Quantity serializes."""
    spec = _sub(hpa, "spec")
    if spec.get("minReplicas") is None:
        spec["minReplicas"] = 1
    if hpa.get("apiVersion") == "autoscaling/v1":
        return
    if not spec.get("metrics"):
        spec["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": 80}}}]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        behavior["scaleUp"] = _scaling_rules(behavior.get("scaleUp"), HPA_SCALE_UP_RULES)
        behavior["scaleDown"] = _scaling_rules(behavior.get("scaleDown"), HPA_SCALE_DOWN_RULES)
    for metric in _items(spec, "metrics"):
        for source in ("object", "pods", "resource", "containerResource", "external"):
            _metric_quantities(metric.get(source), "target", ("value", "averageValue"))
    status = hpa.get("status")
    for metric in _items(status if isinstance(status, dict) else {}, "currentMetrics"):
        for source in ("object", "pods", "resource", "containerResource", "external"):
            _metric_quantities(metric.get(source), "current", ("value", "averageValue"))


# ---------------------------------------------------------------------------------------
# core/v1 kinds other than pods.


def default_service(svc: dict) -> None:
    spec = _sub(svc, "spec")
    _default(spec, "type", "ClusterIP")
    _default(spec, "sessionAffinity", "None")
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        client_ip = _sub(_sub(spec, "sessionAffinityConfig"), "clientIP")
        _default(client_ip, "timeoutSeconds", 10800)
    for port in _items(spec, "ports"):
        _default(port, "protocol", "TCP")
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port")
    kind = spec["type"]
    if kind in ("NodePort", "LoadBalancer"):
        _default(spec, "externalTrafficPolicy", "Cluster")
    if kind in ("ClusterIP", "NodePort", "LoadBalancer"):
        _default(spec, "internalTrafficPolicy", "Cluster")
    if kind == "LoadBalancer":
        _default(spec, "allocateLoadBalancerNodePorts", True)
    if kind == "ExternalName":
        return
    if spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]
    elif spec.get("clusterIPs") and not spec.get("clusterIP"):
        spec["clusterIP"] = spec["clusterIPs"][0]
    _default(spec, "ipFamilyPolicy", "SingleStack")
    if not spec.get("ipFamilies"):
        ip = str(spec.get("clusterIP") or "")
        spec["ipFamilies"] = ["IPv6" if ":" in ip else "IPv4"]


def default_secret(secret: dict) -> None:
    """Type Opaque; `stringData` is written into `data`, base64-encoded, and dropped."""
    _default(secret, "type", "Opaque")
    string_data = secret.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        data = _sub(secret, "data")
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def default_namespace(ns: dict) -> None:
    """The name label always; the `kubernetes` finalizer when none are given (not while
    deleting, when the namespace controller empties the list)."""
    meta = _sub(ns, "metadata")
    if meta.get("name"):
        _sub(meta, "labels")["kubernetes.io/metadata.name"] = meta["name"]
    spec = _sub(ns, "spec")
    if "finalizers" not in spec and not meta.get("deletionTimestamp"):
        spec["finalizers"] = ["kubernetes"]
    _default(_sub(ns, "status"), "phase", "Active")


def default_node(node: dict) -> None:
    status = _sub(node, "status")
    _resource_list(status, "capacity")
    _resource_list(status, "allocatable")
    if isinstance(status.get("capacity"), dict) and "allocatable" not in status:
        status["allocatable"] = dict(status["capacity"])


def default_persistent_volume(pv: dict) -> None:
    spec = _sub(pv, "spec")
    _default(spec, "persistentVolumeReclaimPolicy", "Retain")
    _default(spec, "volumeMode", "Filesystem")
    _resource_list(spec, "capacity")
    _default(_sub(pv, "status"), "phase", "Pending")


def default_persistent_volume_claim(pvc: dict) -> None:
    spec = _sub(pvc, "spec")
    _default(spec, "volumeMode", "Filesystem")
    resources = spec.get("resources")
    if isinstance(resources, dict):
        _resource_list(resources, "requests")
        _resource_list(resources, "limits")
    _default(_sub(pvc, "status"), "phase", "Pending")


def default_resource_quota(quota: dict) -> None:
    _resource_list(_sub(quota, "spec"), "hard")
    status = quota.get("status")
    if isinstance(status, dict):
        _resource_list(status, "hard")
        _resource_list(status, "used")


def default_limit_range(limit_range: dict) -> None:
    """SetDefaults_LimitRangeItem: container defaults from max, requests from default or min."""
    for item in _items(_sub(limit_range, "spec"), "limits"):
        for key in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            _resource_list(item, key)
        if item.get("type") != "Container":
            continue
        default, default_request = _sub(item, "default"), _sub(item, "defaultRequest")
        for name, value in (item.get("max") or {}).items():
            _default(default, name, value)
        for name, value in default.items():
            _default(default_request, name, value)
        for name, value in (item.get("min") or {}).items():
            _default(default_request, name, value)


def default_endpoints(endpoints: dict) -> None:
    for subset in _items(endpoints, "subsets"):
        for port in _items(subset, "ports"):
            _default(port, "protocol", "TCP")


# ---------------------------------------------------------------------------------------
# Small API groups.


def default_endpoint_slice(eps: dict) -> None:
    for port in _items(eps, "ports"):
        _default(port, "name", "")
        _default(port, "protocol", "TCP")


def default_storage_class(sc: dict) -> None:
    _default(sc, "reclaimPolicy", "Delete")
    _default(sc, "volumeBindingMode", "Immediate")


def default_priority_class(pc: dict) -> None:
    _default(pc, "preemptionPolicy", "PreemptLowerPriority")


def default_runtime_class(rc: dict) -> None:
    overhead = rc.get("overhead")
    if isinstance(overhead, dict):
        _resource_list(overhead, "podFixed")


def default_binding(binding: dict) -> None:
    """RoleRef in the RBAC group; users and groups too, service accounts in the core group."""
    _default(_sub(binding, "roleRef"), "apiGroup", _RBAC)
    for subject in _items(binding, "subjects"):
        if subject.get("apiGroup") is None:
            subject["apiGroup"] = "" if subject.get("kind") == "ServiceAccount" else _RBAC


def default_network_policy(policy: dict) -> None:
    """SetDefaults_NetworkPolicy(Port): ports are TCP; policyTypes is Ingress, plus Egress
    when there are egress rules. The pod selector, a struct in Go, is always there (empty:
    every pod in the namespace)."""
    spec = _sub(policy, "spec")
    if spec.get("podSelector") is None:
        spec["podSelector"] = {}
    for direction in ("ingress", "egress"):
        for rule in _items(spec, direction):
            for port in _items(rule, "ports"):
                if port.get("protocol") is None:
                    port["protocol"] = "TCP"
    if not spec.get("policyTypes"):
        egress = spec.get("egress")
        has_egress = isinstance(egress, list) and len(egress) > 0
        spec["policyTypes"] = ["Ingress", "Egress"] if has_egress else ["Ingress"]


def _default_webhooks(config: dict, *, mutating: bool) -> None:
    """admissionregistration/v1 SetDefaults_ValidatingWebhook / _MutatingWebhook, _Rule and
    _ServiceReference."""
    for hook in _items(config, "webhooks"):
        _default(hook, "failurePolicy", "Fail")
        _default(hook, "matchPolicy", "Equivalent")
        for selector in ("namespaceSelector", "objectSelector"):
            if hook.get(selector) is None:
                hook[selector] = {}
        _default(hook, "timeoutSeconds", 10)
        if mutating:
            _default(hook, "reinvocationPolicy", "Never")
        for rule in _items(hook, "rules"):
            _default(rule, "scope", "*")
        service = (hook.get("clientConfig") or {}).get("service")
        if isinstance(service, dict):
            _default(service, "port", 443)


def default_validating_webhook_configuration(config: dict) -> None:
    _default_webhooks(config, mutating=False)


def default_mutating_webhook_configuration(config: dict) -> None:
    _default_webhooks(config, mutating=True)


DEFAULTERS: dict[tuple[str, str], Defaulter] = {
    ("", "Pod"): default_pod,
    ("", "PodTemplate"): default_pod_template,
    ("", "Service"): default_service,
    ("", "Secret"): default_secret,
    ("", "Namespace"): default_namespace,
    ("", "Node"): default_node,
    ("", "PersistentVolume"): default_persistent_volume,
    ("", "PersistentVolumeClaim"): default_persistent_volume_claim,
    ("", "ResourceQuota"): default_resource_quota,
    ("", "LimitRange"): default_limit_range,
    ("", "Endpoints"): default_endpoints,
    ("apps", "Deployment"): default_deployment,
    ("apps", "ReplicaSet"): default_replica_set,
    ("apps", "StatefulSet"): default_stateful_set,
    ("apps", "DaemonSet"): default_daemon_set,
    ("batch", "Job"): default_job,
    ("batch", "CronJob"): default_cron_job,
    ("autoscaling", "HorizontalPodAutoscaler"): default_horizontal_pod_autoscaler,
    ("discovery.k8s.io", "EndpointSlice"): default_endpoint_slice,
    ("storage.k8s.io", "StorageClass"): default_storage_class,
    ("scheduling.k8s.io", "PriorityClass"): default_priority_class,
    ("node.k8s.io", "RuntimeClass"): default_runtime_class,
    (_RBAC, "RoleBinding"): default_binding,
    (_RBAC, "ClusterRoleBinding"): default_binding,
    ("networking.k8s.io", "NetworkPolicy"): default_network_policy,
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"):
        default_validating_webhook_configuration,
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"):
        default_mutating_webhook_configuration,
}

__all__ = ["DEFAULTERS", "canonical_quantity", "default_pod_spec", "job_prepare_for_create"]
