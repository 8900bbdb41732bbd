"""The built-in resources, declared as a Kubernetes 1.32 server reports them in discovery.

Names, scope, verbs, short names, categories and subresources follow `kubectl api-resources`
on a real cluster; the per-kind field selectors follow each kind's GetAttrs in
`pkg/registry/<group>/<kind>/strategy.go`. Behaviour (defaulting, validation, printing)
lives in the modules keyed by (group, kind): defaults.py, validation.py, printers.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .resource import ALL_VERBS, Resource

NO_COLLECTION_DELETE = ("create", "delete", "get", "list", "patch", "update", "watch")
CREATE_ONLY = ("create",)


def _path(*keys: str) -> Callable[[dict], str]:
    """A field-selector getter reading a nested field, rendered as its string form."""

    def get(obj: dict[str, Any]) -> str:
        value: Any = obj
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return get


def _pod_ips(obj: dict[str, Any]) -> str:
    return ",".join(ip.get("ip", "") for ip in (obj.get("status") or {}).get("podIPs") or [])


_POD_FIELDS = {
    "spec.nodeName": _path("spec", "nodeName"),
    "spec.restartPolicy": _path("spec", "restartPolicy"),
    "spec.schedulerName": _path("spec", "schedulerName"),
    "spec.serviceAccountName": _path("spec", "serviceAccountName"),
    "spec.hostNetwork": lambda o: "true" if (o.get("spec") or {}).get("hostNetwork") else "false",
    "status.phase": _path("status", "phase"),
    "status.podIP": _path("status", "podIP"),
    "status.podIPs": _pod_ips,
    "status.nominatedNodeName": _path("status", "nominatedNodeName"),
}

_EVENT_FIELDS = {
    "involvedObject.kind": _path("involvedObject", "kind"),
    "involvedObject.namespace": _path("involvedObject", "namespace"),
    "involvedObject.name": _path("involvedObject", "name"),
    "involvedObject.uid": _path("involvedObject", "uid"),
    "involvedObject.apiVersion": _path("involvedObject", "apiVersion"),
    "involvedObject.resourceVersion": _path("involvedObject", "resourceVersion"),
    "involvedObject.fieldPath": _path("involvedObject", "fieldPath"),
    "reason": _path("reason"),
    "reportingComponent": _path("reportingComponent"),
    "source": _path("source", "component"),
    "type": _path("type"),
}

_SCALE_PATHS = ("spec.replicas", "status.replicas", "spec.selector")


def _core(plural: str, singular: str, kind: str, namespaced: bool = True, **kw: Any) -> Resource:
    return Resource("", "v1", plural, singular, kind, namespaced, **kw)


BUILTIN_RESOURCES: tuple[Resource, ...] = (
    # core/v1
    _core("namespaces", "namespace", "Namespace", False, verbs=NO_COLLECTION_DELETE,
          short_names=("ns",), subresources=("status", "finalize"),
          field_selectors={"status.phase": _path("status", "phase")}),
    _core("pods", "pod", "Pod", short_names=("po",), categories=("all",),
          subresources=("status", "binding", "log", "eviction", "exec", "attach", "portforward",
                        "proxy"),
          field_selectors=_POD_FIELDS),
    _core("services", "service", "Service", short_names=("svc",), categories=("all",),
          subresources=("status", "proxy"),
          field_selectors={"spec.clusterIP": _path("spec", "clusterIP"),
                           "spec.type": _path("spec", "type")}),
    _core("endpoints", "endpoints", "Endpoints", short_names=("ep",)),
    _core("configmaps", "configmap", "ConfigMap", short_names=("cm",)),
    _core("secrets", "secret", "Secret", field_selectors={"type": _path("type")}),
    _core("serviceaccounts", "serviceaccount", "ServiceAccount", short_names=("sa",),
          subresources=("token",)),
    _core("events", "event", "Event", short_names=("ev",), field_selectors=_EVENT_FIELDS),
    _core("nodes", "node", "Node", False, short_names=("no",), subresources=("status", "proxy"),
          field_selectors={"spec.unschedulable": lambda o: "true" if (o.get("spec") or {})
                           .get("unschedulable") else "false"}),
    _core("persistentvolumes", "persistentvolume", "PersistentVolume", False,
          short_names=("pv",), subresources=("status",),
          field_selectors={"name": _path("metadata", "name")}),
    _core("persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim",
          short_names=("pvc",), subresources=("status",),
          field_selectors={"name": _path("metadata", "name")}),
    _core("resourcequotas", "resourcequota", "ResourceQuota", short_names=("quota",),
          subresources=("status",)),
    _core("limitranges", "limitrange", "LimitRange", short_names=("limits",)),
    _core("podtemplates", "podtemplate", "PodTemplate"),
    # apps/v1
    Resource("apps", "v1", "deployments", "deployment", "Deployment", True,
             short_names=("deploy",), categories=("all",), subresources=("status", "scale"),
             scale_paths=_SCALE_PATHS),
    Resource("apps", "v1", "replicasets", "replicaset", "ReplicaSet", True,
             short_names=("rs",), categories=("all",), subresources=("status", "scale"),
             scale_paths=_SCALE_PATHS,
             field_selectors={"status.replicas": _path("status", "replicas")}),
    Resource("apps", "v1", "statefulsets", "statefulset", "StatefulSet", True,
             short_names=("sts",), categories=("all",), subresources=("status", "scale"),
             scale_paths=_SCALE_PATHS),
    Resource("apps", "v1", "daemonsets", "daemonset", "DaemonSet", True,
             short_names=("ds",), categories=("all",), subresources=("status",)),
    Resource("apps", "v1", "controllerrevisions", "controllerrevision", "ControllerRevision",
             True),
    # batch/v1
    Resource("batch", "v1", "jobs", "job", "Job", True, categories=("all",),
             subresources=("status",),
             field_selectors={"status.successful": _path("status", "succeeded")}),
    Resource("batch", "v1", "cronjobs", "cronjob", "CronJob", True, short_names=("cj",),
             categories=("all",), subresources=("status",)),
    # autoscaling/v2 (preferred, stored) and autoscaling/v1, converted (conversion.py)
    Resource("autoscaling", "v2", "horizontalpodautoscalers", "horizontalpodautoscaler",
             "HorizontalPodAutoscaler", True, short_names=("hpa",), categories=("all",),
             subresources=("status",)),
    Resource("autoscaling", "v1", "horizontalpodautoscalers", "horizontalpodautoscaler",
             "HorizontalPodAutoscaler", True, short_names=("hpa",), categories=("all",),
             subresources=("status",), storage_version="v2"),
    # small API groups
    Resource("coordination.k8s.io", "v1", "leases", "lease", "Lease", True),
    Resource("discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", True),
    Resource("events.k8s.io", "v1", "events", "event", "Event", True, short_names=("ev",),
             field_selectors={k: v for k, v in _EVENT_FIELDS.items()
                              if k.startswith("involvedObject") or k in ("reason", "type")}),
    Resource("scheduling.k8s.io", "v1", "priorityclasses", "priorityclass", "PriorityClass",
             False, short_names=("pc",)),
    Resource("node.k8s.io", "v1", "runtimeclasses", "runtimeclass", "RuntimeClass", False),
    Resource("storage.k8s.io", "v1", "storageclasses", "storageclass", "StorageClass", False,
             short_names=("sc",)),
    # stored and validated, not enforced: see validation_networking.py
    Resource("networking.k8s.io", "v1", "networkpolicies", "networkpolicy", "NetworkPolicy",
             True, short_names=("netpol",)),
    # rbac.authorization.k8s.io/v1
    Resource("rbac.authorization.k8s.io", "v1", "roles", "role", "Role", True),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding", "RoleBinding",
             True),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole", "ClusterRole",
             False),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "clusterrolebinding",
             "ClusterRoleBinding", False),
    # reviews: create-only, answered by the server, never stored
    Resource("authentication.k8s.io", "v1", "selfsubjectreviews", "selfsubjectreview",
             "SelfSubjectReview", False, verbs=CREATE_ONLY, stored=False),
    Resource("authentication.k8s.io", "v1", "tokenreviews", "tokenreview", "TokenReview", False,
             verbs=CREATE_ONLY, stored=False),
    Resource("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "selfsubjectaccessreview",
             "SelfSubjectAccessReview", False, verbs=CREATE_ONLY, stored=False),
    Resource("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "selfsubjectrulesreview",
             "SelfSubjectRulesReview", False, verbs=CREATE_ONLY, stored=False),
    Resource("authorization.k8s.io", "v1", "subjectaccessreviews", "subjectaccessreview",
             "SubjectAccessReview", False, verbs=CREATE_ONLY, stored=False),
    Resource("authorization.k8s.io", "v1", "localsubjectaccessreviews",
             "localsubjectaccessreview", "LocalSubjectAccessReview", True, verbs=CREATE_ONLY,
             stored=False),
    # metrics.k8s.io/v1beta1: what metrics-server serves, answered from the kubelets'
    # summaries (metrics.py), never stored
    Resource("metrics.k8s.io", "v1beta1", "nodes", "node", "NodeMetrics", False,
             verbs=("get", "list"), stored=False),
    Resource("metrics.k8s.io", "v1beta1", "pods", "pod", "PodMetrics", True,
             verbs=("get", "list"), stored=False),
    # admissionregistration.k8s.io/v1: the dynamic admission webhooks (webhooks.py)
    Resource("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
             "mutatingwebhookconfiguration", "MutatingWebhookConfiguration", False,
             categories=("api-extensions",)),
    Resource("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
             "validatingwebhookconfiguration", "ValidatingWebhookConfiguration", False,
             categories=("api-extensions",)),
    # apiextensions.k8s.io/v1
    Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions",
             "customresourcedefinition", "CustomResourceDefinition", False,
             short_names=("crd", "crds"), categories=("api-extensions",),
             subresources=("status",)),
)

#: The verbs of the proxy subresources: every HTTP method they relay, in RBAC terms.
PROXY_VERBS = ("create", "delete", "get", "patch", "update")

#: Discovery entries for subresources: (verbs, group, version, kind) of each, by subresource
#: name, or by "resource/subresource" where the kind differs per resource.
SUBRESOURCE_DISCOVERY: dict[str, tuple[tuple[str, ...], str, str, str | None]] = {
    "status": (("get", "patch", "update"), "", "", None),
    "scale": (("get", "patch", "update"), "autoscaling", "v1", "Scale"),
    "binding": (CREATE_ONLY, "", "v1", "Binding"),
    "eviction": (CREATE_ONLY, "policy", "v1", "Eviction"),
    "log": (("get",), "", "v1", "Pod"),
    "exec": (("create", "get"), "", "", "PodExecOptions"),
    "attach": (("create", "get"), "", "", "PodAttachOptions"),
    "portforward": (("create", "get"), "", "", "PodPortForwardOptions"),
    "finalize": (("update",), "", "v1", "Namespace"),
    "token": (CREATE_ONLY, "authentication.k8s.io", "v1", "TokenRequest"),
    "pods/proxy": (PROXY_VERBS, "", "", "PodProxyOptions"),
    "services/proxy": (PROXY_VERBS, "", "", "ServiceProxyOptions"),
    "nodes/proxy": (PROXY_VERBS, "", "", "NodeProxyOptions"),
}

#: Kinds where a PUT to a missing object creates it (AllowCreateOnUpdate in Kubernetes).
CREATE_ON_UPDATE = frozenset({("", "Endpoints"), ("coordination.k8s.io", "Lease"),
                              ("discovery.k8s.io", "EndpointSlice"), ("", "Event"),
                              ("events.k8s.io", "Event"), ("", "Node")})

#: Kinds whose delete answers with the object rather than a Status (ReturnDeletedObject).
RETURNS_DELETED_OBJECT = frozenset({("", "Pod"), ("", "Service"), ("", "Namespace")})

__all__ = ["ALL_VERBS", "BUILTIN_RESOURCES", "CREATE_ON_UPDATE", "RETURNS_DELETED_OBJECT",
           "SUBRESOURCE_DISCOVERY"]
