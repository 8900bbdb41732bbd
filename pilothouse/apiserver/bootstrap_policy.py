"""The RBAC objects a fresh cluster starts with, and the platform's own identities.

A real kube-apiserver reconciles a fixed set of ClusterRoles and ClusterRoleBindings at
every start (plugin/pkg/auth/authorizer/rbac/bootstrappolicy): the user-facing roles
(cluster-admin, admin, edit, view and their aggregate-to-* parts), the discovery and
self-review roles every client needs, and least-privilege roles for each control-plane
component and each controller. `bootstrap_policy()` returns the same objects, as the API
server stores them, so `kubectl get clusterrole edit -o yaml` reads as it does on 1.32
and an admin's RoleBinding to `edit` grants what it grants there.

Two places differ from a stock cluster, both because Pilothouse runs its components
with one credential each (`PLATFORM_COMPONENTS`) rather than a token per controller:

- `system:node` is bound to group `system:nodes` (a real cluster leaves that binding
  empty and authorizes kubelets with the Node authorizer, which Pilothouse lacks);
- each `system:controller:<name>` role, bound as upstream to its kube-system service
  account, is also bound to the controller manager's user, which runs every controller.

Some objects come from what a real cluster's installers add, because Pilothouse does their
part: kubeadm's `kubeadm:apiserver-kubelet-client` binding (the API server's kubelet client
certificate to `system:kubelet-api-admin`, which kubelets check through a
SubjectAccessReview), metrics-server's `system:aggregated-metrics-reader`, which lets
view, edit and admin read `metrics.k8s.io` (`kubectl top`), and the
`system:cloud-controller-manager` role and binding a cloud provider's manifests install
for its cloud-controller-manager.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .pki import KUBELET_CLIENT_USER

RBAC_API_VERSION = "rbac.authorization.k8s.io/v1"
RBAC_GROUP = "rbac.authorization.k8s.io"
AUTOUPDATE_ANNOTATION = "rbac.authorization.kubernetes.io/autoupdate"
BOOTSTRAP_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
AGGREGATE_TO_ADMIN = "rbac.authorization.k8s.io/aggregate-to-admin"
AGGREGATE_TO_EDIT = "rbac.authorization.k8s.io/aggregate-to-edit"
AGGREGATE_TO_VIEW = "rbac.authorization.k8s.io/aggregate-to-view"

CONTROLLER_ROLE_PREFIX = "system:controller:"
KUBEFLOW_OPERATORS_ROLE = "pilothouse:kubeflow-operators"

#: Who each platform component authenticates as: component -> (username, groups).
#: The node agent's username carries its node name: format it with `node=<name>`.
PLATFORM_COMPONENTS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "controller-manager": ("system:kube-controller-manager", ()),
    "scheduler": ("system:kube-scheduler", ()),
    "node": ("system:node:{node}", ("system:nodes",)),
    "proxy": ("system:kube-proxy", ()),
    "cloud-controller-manager": ("system:cloud-controller-manager", ()),
    "kubeflow-operators": ("pilothouse:kubeflow-operators", ()),
}

_READ = ("get", "list", "watch")
_WRITE = ("create", "delete", "deletecollection", "patch", "update")
_READ_WRITE = _READ + _WRITE


def _rule(
    verbs: Iterable[str],
    groups: Iterable[str] = (),
    resources: Iterable[str] = (),
    *,
    names: Iterable[str] = (),
    urls: Iterable[str] = (),
) -> dict[str, list[str]]:
    """A PolicyRule, its lists sorted as the upstream rule builder sorts them."""
    rule = {"verbs": sorted(set(verbs))}
    for key, values in (
        ("apiGroups", groups),
        ("resources", resources),
        ("resourceNames", names),
        ("nonResourceURLs", urls),
    ):
        if values:
            rule[key] = sorted(set(values))
    return rule


def _events_rule() -> dict[str, list[str]]:
    return _rule(("create", "patch", "update"), ("", "events.k8s.io"), ("events",))


def _cluster_role(
    name: str,
    rules: list[dict[str, list[str]]],
    *,
    labels: Mapping[str, str] | None = None,
    aggregate_from: str | None = None,
) -> dict[str, Any]:
    role: dict[str, Any] = {
        "apiVersion": RBAC_API_VERSION,
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": {**BOOTSTRAP_LABELS, **(labels or {})},
            "annotations": {AUTOUPDATE_ANNOTATION: "true"},
        },
        "rules": rules,
    }
    if aggregate_from is not None:
        role["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {aggregate_from: "true"}}]}
    return role


def _binding(name: str, role: str, subjects: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "apiVersion": RBAC_API_VERSION,
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": name,
            "labels": dict(BOOTSTRAP_LABELS),
            "annotations": {AUTOUPDATE_ANNOTATION: "true"},
        },
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    }


def _user(name: str) -> dict[str, str]:
    return {"apiGroup": RBAC_GROUP, "kind": "User", "name": name}


def _group(name: str) -> dict[str, str]:
    return {"apiGroup": RBAC_GROUP, "kind": "Group", "name": name}


def _service_account(namespace: str, name: str) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def _aggregate_to_edit_rules() -> list[dict[str, list[str]]]:
    pod_access = ("pods/attach", "pods/exec", "pods/portforward", "pods/proxy")
    return [
        # Reading these escalates (secrets, exec into pods), so view does not get them.
        _rule(_READ, [""], [*pod_access, "secrets", "services/proxy"]),
        _rule(["impersonate"], [""], ["serviceaccounts"]),
        _rule(_WRITE, [""], ["pods", *pod_access]),
        _rule(["create"], [""], ["pods/eviction"]),
        _rule(
            _WRITE,
            [""],
            [
                "configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
                "replicationcontrollers/scale", "secrets", "serviceaccounts", "services",
                "services/proxy",
            ],
        ),
        _rule(["create"], [""], ["serviceaccounts/token"]),
        _rule(
            _WRITE,
            ["apps"],
            [
                "daemonsets", "deployments", "deployments/rollback", "deployments/scale",
                "replicasets", "replicasets/scale", "statefulsets", "statefulsets/scale",
            ],
        ),
        _rule(_WRITE, ["autoscaling"], ["horizontalpodautoscalers"]),
        _rule(_WRITE, ["batch"], ["cronjobs", "jobs"]),
        _rule(
            _WRITE,
            ["extensions"],
            [
                "daemonsets", "deployments", "deployments/rollback", "deployments/scale",
                "ingresses", "networkpolicies", "replicasets", "replicasets/scale",
                "replicationcontrollers/scale",
            ],
        ),
        _rule(_WRITE, ["policy"], ["poddisruptionbudgets"]),
        _rule(_WRITE, ["networking.k8s.io"], ["ingresses", "networkpolicies"]),
    ]


def _aggregate_to_view_rules() -> list[dict[str, list[str]]]:
    return [
        _rule(
            _READ,
            [""],
            [
                "configmaps", "endpoints", "persistentvolumeclaims",
                "persistentvolumeclaims/status", "pods", "replicationcontrollers",
                "replicationcontrollers/scale", "serviceaccounts", "services", "services/status",
            ],
        ),
        _rule(
            _READ,
            [""],
            [
                "bindings", "events", "limitranges", "namespaces/status", "pods/log",
                "pods/status", "replicationcontrollers/status", "resourcequotas",
                "resourcequotas/status",
            ],
        ),
        # Read on namespaces, bound in a namespace, means reading *that* namespace.
        _rule(_READ, [""], ["namespaces"]),
        _rule(_READ, ["discovery.k8s.io"], ["endpointslices"]),
        _rule(
            _READ,
            ["apps"],
            [
                "controllerrevisions", "daemonsets", "daemonsets/status", "deployments",
                "deployments/scale", "deployments/status", "replicasets", "replicasets/scale",
                "replicasets/status", "statefulsets", "statefulsets/scale", "statefulsets/status",
            ],
        ),
        _rule(_READ, ["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
        _rule(_READ, ["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
        _rule(
            _READ,
            ["extensions"],
            [
                "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                "deployments/status", "ingresses", "ingresses/status", "networkpolicies",
                "replicasets", "replicasets/scale", "replicasets/status",
                "replicationcontrollers/scale",
            ],
        ),
        _rule(_READ, ["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
        _rule(_READ, ["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"]),
    ]


def _leader_election_rules(lease: str) -> list[dict[str, list[str]]]:
    return [
        _rule(["create"], ["coordination.k8s.io"], ["leases"]),
        _rule(["get", "update"], ["coordination.k8s.io"], ["leases"], names=[lease]),
    ]


def _component_roles() -> list[dict[str, Any]]:
    review_rules = [
        _rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
        _rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"]),
    ]
    return [
        _cluster_role(
            "system:kube-controller-manager",
            [
                _events_rule(),
                *_leader_election_rules("kube-controller-manager"),
                _rule(["create"], [""], ["secrets", "serviceaccounts"]),
                _rule(["delete"], [""], ["secrets"]),
                _rule(["get"], [""], ["configmaps", "namespaces", "secrets", "serviceaccounts"]),
                _rule(["update"], [""], ["secrets", "serviceaccounts"]),
                *review_rules,
                # Every shared informer lists and watches.
                _rule(["list", "watch"], ["*"], ["*"]),
                _rule(["create"], [""], ["serviceaccounts/token"]),
            ],
        ),
        _cluster_role(
            "system:kube-scheduler",
            [
                _events_rule(),
                *_leader_election_rules("kube-scheduler"),
                _rule(_READ, [""], ["nodes"]),
                _rule(["delete", *_READ], [""], ["pods"]),
                _rule(["create"], [""], ["bindings", "pods/binding"]),
                _rule(["patch", "update"], [""], ["pods/status"]),
                _rule(_READ, [""], ["replicationcontrollers", "services"]),
                _rule(_READ, ["apps", "extensions"], ["replicasets"]),
                _rule(_READ, ["apps"], ["statefulsets"]),
                _rule(_READ, ["policy"], ["poddisruptionbudgets"]),
                _rule(_READ, [""], ["persistentvolumeclaims", "persistentvolumes"]),
                *review_rules,
                _rule(_READ, ["storage.k8s.io"], ["csinodes"]),
                _rule(_READ, [""], ["namespaces"]),
                _rule(_READ, ["storage.k8s.io"], ["csidrivers"]),
                _rule(_READ, ["storage.k8s.io"], ["csistoragecapacities"]),
                # Gang scheduling (the coscheduling plugin, as scheduler-plugins ships it):
                # the scheduler installs the PodGroup CRD if absent and reads the groups.
                _rule(["get", "create"], ["apiextensions.k8s.io"],
                      ["customresourcedefinitions"]),
                _rule(_READ, ["scheduling.x-k8s.io"], ["podgroups"]),
                _rule(["patch", "update"], ["scheduling.x-k8s.io"], ["podgroups/status"]),
            ],
        ),
        # The cloud provider's guide grants its manager this role (its service, cloud-node
        # and cloud-node-lifecycle controllers), less what those controllers never use.
        _cluster_role(
            "system:cloud-controller-manager",
            [
                _events_rule(),
                *_leader_election_rules("cloud-controller-manager"),
                _rule(["delete", "get", "list", "patch", "update", "watch"], [""], ["nodes"]),
                _rule(["patch", "update"], [""], ["nodes/status"]),
                _rule(["get", "list", "patch", "update", "watch"], [""], ["services"]),
                _rule(["patch", "update"], [""], ["services/status"]),
            ],
        ),
        _cluster_role(
            "system:volume-scheduler",
            [
                _rule([*_READ, "patch", "update"], [""], ["persistentvolumes"]),
                _rule(_READ, ["storage.k8s.io"], ["storageclasses"]),
                _rule([*_READ, "patch", "update"], [""], ["persistentvolumeclaims"]),
            ],
        ),
        _cluster_role(
            "system:node",
            [
                _rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
                _rule(
                    ["create"],
                    ["authorization.k8s.io"],
                    ["localsubjectaccessreviews", "subjectaccessreviews"],
                ),
                _rule(_READ, [""], ["services"]),
                # The node agent serves cluster DNS (CoreDNS's system:coredns role in a
                # real cluster): headless names come from EndpointSlices.
                _rule(["list", "watch"], ["discovery.k8s.io"], ["endpointslices"]),
                _rule(["create", *_READ], [""], ["nodes"]),
                _rule(["patch", "update"], [""], ["nodes/status"]),
                _rule(["patch", "update"], [""], ["nodes"]),
                _rule(["create", "patch", "update"], [""], ["events"]),
                _rule(_READ, [""], ["pods"]),
                # Mirror pods for static pods.
                _rule(["create", "delete"], [""], ["pods"]),
                _rule(["patch", "update"], [""], ["pods/status"]),
                _rule(["create"], [""], ["pods/eviction"]),
                _rule(_READ, [""], ["configmaps", "secrets"]),
                _rule(["get"], [""], ["persistentvolumeclaims", "persistentvolumes"]),
                _rule(["get"], [""], ["endpoints"]),
                _rule(["create", *_READ], ["certificates.k8s.io"], ["certificatesigningrequests"]),
                _rule(
                    ["create", "delete", "get", "patch", "update"],
                    ["coordination.k8s.io"],
                    ["leases"],
                ),
                _rule(["get"], ["storage.k8s.io"], ["volumeattachments"]),
                _rule(["create"], [""], ["serviceaccounts/token"]),
                _rule(["get", "patch", "update"], [""], ["persistentvolumeclaims/status"]),
                _rule(_READ, ["storage.k8s.io"], ["csidrivers"]),
                _rule(
                    ["create", "delete", "get", "patch", "update"],
                    ["storage.k8s.io"],
                    ["csinodes"],
                ),
                _rule(_READ, ["node.k8s.io"], ["runtimeclasses"]),
            ],
        ),
        _cluster_role(
            "system:kubelet-api-admin",
            [
                _rule(_READ, [""], ["nodes"]),
                _rule(["proxy"], [""], ["nodes"]),
                _rule(
                    ["*"],
                    [""],
                    ["nodes/log", "nodes/metrics", "nodes/proxy", "nodes/spec", "nodes/stats"],
                ),
            ],
        ),
        _cluster_role(
            "system:node-proxier",
            [
                _rule(["list", "watch"], [""], ["endpoints", "services"]),
                _rule(_READ, [""], ["nodes"]),
                _events_rule(),
                _rule(["list", "watch"], ["discovery.k8s.io"], ["endpointslices"]),
            ],
        ),
    ]


def _controller_roles() -> dict[str, list[dict[str, list[str]]]]:
    """Least-privilege rules of each controller the platform runs, as upstream grants them."""
    events = _events_rule()
    return {
        "cronjob-controller": [
            _rule(["get", "list", "update", "watch"], ["batch"], ["cronjobs"]),
            _rule(["create", "delete", "get", "list", "patch", "update", "watch"], ["batch"], ["jobs"]),
            _rule(["update"], ["batch"], ["cronjobs/status"]),
            _rule(["update"], ["batch"], ["cronjobs/finalizers"]),
            _rule(["delete", "list", "watch"], [""], ["pods"]),
            events,
        ],
        "daemon-set-controller": [
            _rule(_READ, ["apps", "extensions"], ["daemonsets"]),
            _rule(["update"], ["apps", "extensions"], ["daemonsets/status"]),
            _rule(["update"], ["apps", "extensions"], ["daemonsets/finalizers"]),
            _rule(["list", "watch"], [""], ["nodes"]),
            _rule(["create", "delete", "list", "patch", "watch"], [""], ["pods"]),
            _rule(["create"], [""], ["pods/binding"]),
            _rule(
                ["create", "delete", "get", "list", "patch", "update", "watch"],
                ["apps"],
                ["controllerrevisions"],
            ),
            events,
        ],
        "deployment-controller": [
            _rule(["get", "list", "update", "watch"], ["apps", "extensions"], ["deployments"]),
            _rule(["update"], ["apps", "extensions"], ["deployments/status"]),
            _rule(["update"], ["apps", "extensions"], ["deployments/finalizers"]),
            _rule(
                ["create", "delete", "get", "list", "patch", "update", "watch"],
                ["apps", "extensions"],
                ["replicasets"],
            ),
            _rule(["get", "list", "update", "watch"], [""], ["pods"]),
            events,
        ],
        "endpoint-controller": [
            _rule(_READ, [""], ["pods", "services"]),
            _rule(["create", "delete", "get", "list", "update", "watch"], [""], ["endpoints"]),
            _rule(["create"], [""], ["endpoints/restricted"]),
            events,
        ],
        "endpointslice-controller": [
            _rule(_READ, [""], ["nodes", "pods", "services"]),
            _rule(["update"], [""], ["services/finalizers"]),
            _rule(
                ["create", "delete", "get", "list", "update", "watch"],
                ["discovery.k8s.io"],
                ["endpointslices"],
            ),
            events,
        ],
        "generic-garbage-collector": [
            _rule(["delete", "get", "list", "patch", "update", "watch"], ["*"], ["*"]),
            events,
        ],
        "horizontal-pod-autoscaler": [
            _rule(_READ, ["autoscaling"], ["horizontalpodautoscalers"]),
            _rule(["update"], ["autoscaling"], ["horizontalpodautoscalers/status"]),
            _rule(["get", "update"], ["*"], ["*/scale"]),
            _rule(["list"], [""], ["pods"]),
            _rule(["list"], ["metrics.k8s.io"], ["pods"]),
            _rule(["get", "list"], ["custom.metrics.k8s.io"], ["*"]),
            _rule(["get", "list"], ["external.metrics.k8s.io"], ["*"]),
            events,
        ],
        "job-controller": [
            _rule(["get", "list", "patch", "update", "watch"], ["batch"], ["jobs"]),
            _rule(["update"], ["batch"], ["jobs/status"]),
            _rule(["update"], ["batch"], ["jobs/finalizers"]),
            _rule(["create", "delete", "list", "patch", "watch"], [""], ["pods"]),
            events,
        ],
        "persistent-volume-binder": [
            _rule(["create", "delete", "get", "list", "update", "watch"], [""],
                  ["persistentvolumes"]),
            _rule(["update"], [""], ["persistentvolumes/status"]),
            _rule(["get", "list", "update", "watch"], [""], ["persistentvolumeclaims"]),
            _rule(["update"], [""], ["persistentvolumeclaims/status"]),
            _rule(_READ, [""], ["pods"]),
            # The upstream role only reads classes; the built-in local-path provisioner
            # also creates its default StorageClass, as k3s's manifest would.
            _rule(["create", *_READ], ["storage.k8s.io"], ["storageclasses"]),
            _rule(_READ, [""], ["nodes"]),
            events,
        ],
        "namespace-controller": [
            _rule(["delete", *_READ], [""], ["namespaces"]),
            _rule(["update"], [""], ["namespaces/finalize", "namespaces/status"]),
            _rule(["delete", "deletecollection", *_READ], ["*"], ["*"]),
        ],
        "node-controller": [
            _rule(["delete", "get", "list", "patch", "update", "watch"], [""], ["nodes"]),
            _rule(["patch", "update"], [""], ["nodes/status"]),
            _rule(["patch", "update"], [""], ["pods/status"]),
            _rule(["delete", *_READ], [""], ["pods"]),
            events,
        ],
        "replicaset-controller": [
            _rule(["get", "list", "update", "watch"], ["apps", "extensions"], ["replicasets"]),
            _rule(["update"], ["apps", "extensions"], ["replicasets/status"]),
            _rule(["update"], ["apps", "extensions"], ["replicasets/finalizers"]),
            _rule(["create", "delete", "list", "patch", "watch"], [""], ["pods"]),
            events,
        ],
        "resourcequota-controller": [
            _rule(["list", "watch"], ["*"], ["*"]),
            _rule(["update"], [""], ["resourcequotas/status"]),
            events,
        ],
        "root-ca-cert-publisher": [
            _rule(["create", "update"], [""], ["configmaps"]),
            events,
        ],
        "service-account-controller": [
            _rule(["create"], [""], ["serviceaccounts"]),
            events,
        ],
        "statefulset-controller": [
            _rule(["list", "watch"], [""], ["pods"]),
            _rule(_READ, ["apps"], ["statefulsets"]),
            _rule(["update"], ["apps"], ["statefulsets/status"]),
            _rule(["update"], ["apps"], ["statefulsets/finalizers"]),
            _rule(["create", "delete", "get", "patch", "update"], [""], ["pods"]),
            _rule(
                ["create", "delete", "get", "list", "patch", "update", "watch"],
                ["apps"],
                ["controllerrevisions"],
            ),
            _rule(["create", *_READ], [""], ["persistentvolumeclaims"]),
            _rule(["delete", "update"], [""], ["persistentvolumeclaims"]),
            _rule(["update"], [""], ["pods/finalizers"]),
            events,
        ],
        "ttl-after-finished-controller": [
            _rule(["delete", *_READ], ["batch"], ["jobs"]),
            events,
        ],
    }


def _kubeflow_operators_rules() -> list[dict[str, list[str]]]:
    # What the training operator does and nothing more: install and update its CRDs, read
    # its jobs, write their status, delete them after ttlSecondsAfterFinished; keep one pod
    # and one headless Service per replica (patched to adopt orphans and release strays)
    # and a PodGroup per gang-scheduled job; record
    # Events (created, then their counts patched); hold its leader lease; register its
    # validating webhooks (and remove them when run without). For MPIJobs, a ConfigMap
    # (hostfile, kubexec.sh) and the launcher's ServiceAccount, Role and RoleBinding; the
    # Role grants reading pods and exec (get and create on `pods/exec`, as a WebSocket
    # exec needs), which RBAC lets only a holder of those grant (its escalation check),
    # so the operator holds them too. Replicas behind a webhook Service share their
    # serving certificate in a Secret (the default name only: a renamed one needs a grant).
    # An elastic PyTorchJob with metrics gets a HorizontalPodAutoscaler (the verbs the real
    # operator's kubebuilder RBAC marker grants). Later issues extend this role (Katib,
    # Pipelines, notebooks, profiles) as each operator lands.
    jobs = ["jaxjobs", "mpijobs", "paddlejobs", "pytorchjobs", "tfjobs", "xgboostjobs"]
    return [
        _rule(["create", "get", "list", "update", "watch"], ["apiextensions.k8s.io"],
              ["customresourcedefinitions"]),
        _rule(["create", "delete", "get", "patch", "update"], ["admissionregistration.k8s.io"],
              ["validatingwebhookconfigurations"]),
        _rule(["delete", "get", "list", "watch"], ["kubeflow.org"], jobs),
        _rule(["get", "patch", "update"], ["kubeflow.org"], [f"{j}/status" for j in jobs]),
        _rule(["create", "delete", "get", "list", "patch", "watch"], [""], ["pods", "services"]),
        _rule(["create", "get"], [""], ["pods/exec"]),
        _rule(["create", "get", "list", "update", "watch"], [""], ["configmaps"]),
        _rule(["create"], [""], ["secrets"]),
        _rule(["get", "update"], [""], ["secrets"], names=["training-operator-webhook-cert"]),
        _rule(["create", "get", "list", "watch"], [""], ["serviceaccounts"]),
        _rule(["create", "get", "list", "update", "watch"], ["rbac.authorization.k8s.io"],
              ["rolebindings", "roles"]),
        _rule(["create", "patch"], [""], ["events"]),
        _rule(["create", "delete", "get", "list", "patch", "update", "watch"],
              ["scheduling.x-k8s.io"], ["podgroups"]),
        _rule(["create", "delete", "get", "list", "patch", "update", "watch"],
              ["autoscaling"], ["horizontalpodautoscalers"]),
        _rule(["create", "get", "update"], ["coordination.k8s.io"], ["leases"]),
        # Not used by the training operator; kept for the operators to come (profiles).
        _rule(_READ, [""], ["namespaces"]),
    ]


def bootstrap_policy() -> list[dict[str, Any]]:
    """Every default ClusterRole, then every default ClusterRoleBinding, as stored objects.

    Aggregated roles (admin, edit, view) carry their `aggregationRule` and empty rules;
    the API server fills the rules in from the roles their selectors match.
    """
    roles = [
        _cluster_role(
            "cluster-admin",
            [_rule(["*"], ["*"], ["*"]), _rule(["*"], urls=["*"])],
        ),
        _cluster_role("admin", [], aggregate_from=AGGREGATE_TO_ADMIN),
        _cluster_role(
            "edit", [], labels={AGGREGATE_TO_ADMIN: "true"}, aggregate_from=AGGREGATE_TO_EDIT
        ),
        _cluster_role(
            "view", [], labels={AGGREGATE_TO_EDIT: "true"}, aggregate_from=AGGREGATE_TO_VIEW
        ),
        _cluster_role(
            "system:aggregate-to-admin",
            [
                _rule(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews"]),
                _rule(_READ_WRITE, [RBAC_GROUP], ["rolebindings", "roles"]),
            ],
            labels={AGGREGATE_TO_ADMIN: "true"},
        ),
        _cluster_role(
            "system:aggregate-to-edit",
            _aggregate_to_edit_rules(),
            labels={AGGREGATE_TO_EDIT: "true"},
        ),
        _cluster_role(
            "system:aggregate-to-view",
            _aggregate_to_view_rules(),
            labels={AGGREGATE_TO_VIEW: "true"},
        ),
        _cluster_role(
            "system:basic-user",
            [
                _rule(
                    ["create"],
                    ["authorization.k8s.io"],
                    ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                _rule(["create"], ["authentication.k8s.io"], ["selfsubjectreviews"]),
            ],
        ),
        _cluster_role(
            "system:discovery",
            [
                _rule(
                    ["get"],
                    urls=[
                        "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
                        "/openapi/*", "/readyz", "/version", "/version/",
                    ],
                )
            ],
        ),
        _cluster_role(
            "system:public-info-viewer",
            [_rule(["get"], urls=["/healthz", "/livez", "/readyz", "/version", "/version/"])],
        ),
        _cluster_role(
            "system:monitoring",
            [
                _rule(
                    ["get"],
                    urls=[
                        "/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics",
                        "/metrics/slis", "/readyz", "/readyz/*",
                    ],
                )
            ],
        ),
        _cluster_role(
            "system:auth-delegator",
            [
                _rule(["create"], ["authentication.k8s.io"], ["tokenreviews"]),
                _rule(["create"], ["authorization.k8s.io"], ["subjectaccessreviews"]),
            ],
        ),
        _cluster_role(
            "system:service-account-issuer-discovery",
            [_rule(["get"], urls=["/.well-known/openid-configuration", "/openid/v1/jwks"])],
        ),
        *_component_roles(),
        _cluster_role(
            "system:aggregated-metrics-reader",
            [_rule(_READ, ["metrics.k8s.io"], ["nodes", "pods"])],
            labels={AGGREGATE_TO_ADMIN: "true", AGGREGATE_TO_EDIT: "true",
                    AGGREGATE_TO_VIEW: "true"},
        ),
    ]
    controllers = _controller_roles()
    roles += [_cluster_role(CONTROLLER_ROLE_PREFIX + n, r) for n, r in sorted(controllers.items())]
    roles.append(_cluster_role(KUBEFLOW_OPERATORS_ROLE, _kubeflow_operators_rules()))

    controller_manager = PLATFORM_COMPONENTS["controller-manager"][0]
    scheduler = PLATFORM_COMPONENTS["scheduler"][0]
    bindings = [
        _binding("cluster-admin", "cluster-admin", [_group("system:masters")]),
        _binding("system:basic-user", "system:basic-user", [_group("system:authenticated")]),
        _binding("system:discovery", "system:discovery", [_group("system:authenticated")]),
        _binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            [_group("system:authenticated"), _group("system:unauthenticated")],
        ),
        _binding("system:monitoring", "system:monitoring", [_group("system:monitoring")]),
        _binding(
            "system:service-account-issuer-discovery",
            "system:service-account-issuer-discovery",
            [_group("system:serviceaccounts")],
        ),
        _binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            [_user(controller_manager)],
        ),
        _binding("system:kube-scheduler", "system:kube-scheduler", [_user(scheduler)]),
        _binding("system:volume-scheduler", "system:volume-scheduler", [_user(scheduler)]),
        _binding(
            "system:cloud-controller-manager",
            "system:cloud-controller-manager",
            [_user(PLATFORM_COMPONENTS["cloud-controller-manager"][0])],
        ),
        _binding("system:node", "system:node", [_group("system:nodes")]),
        _binding(
            "system:node-proxier", "system:node-proxier", [_user(PLATFORM_COMPONENTS["proxy"][0])]
        ),
        _binding(
            "kubeadm:apiserver-kubelet-client",
            "system:kubelet-api-admin",
            [_user(KUBELET_CLIENT_USER)],
        ),
    ]
    for name in sorted(controllers):
        role = CONTROLLER_ROLE_PREFIX + name
        bindings.append(_binding(role, role, [_service_account("kube-system", name)]))
        bindings.append(
            _binding(f"pilothouse:controller-manager:{name}", role, [_user(controller_manager)])
        )
    bindings.append(
        _binding(
            KUBEFLOW_OPERATORS_ROLE,
            KUBEFLOW_OPERATORS_ROLE,
            [_user(PLATFORM_COMPONENTS["kubeflow-operators"][0])],
        )
    )
    return roles + bindings
