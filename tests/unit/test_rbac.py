"""RBAC decisions over the default policy, as `kubectl auth can-i` would report them."""

import time

import pytest

from pilothouse.apiserver.bootstrap_policy import PLATFORM_COMPONENTS, bootstrap_policy
from pilothouse.apiserver.rbac import RBACAuthorizer, UserInfo, aggregate
from pilothouse.apiserver.requestinfo import parse_request_info

RBAC_V1 = "rbac.authorization.k8s.io/v1"
ALICE = UserInfo("alice")


def role_binding(name, namespace, role_kind, role, subjects):
    return {
        "apiVersion": RBAC_V1,
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": subjects,
    }


def user(name):
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}


def cluster_role(name, rules, labels=None):
    return {
        "apiVersion": RBAC_V1,
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": labels or {}},
        "rules": rules,
    }


@pytest.fixture
def authz():
    a = RBACAuthorizer()
    for obj in bootstrap_policy():
        a.upsert(obj["kind"], obj)
    return a


def can(a, who, verb, resource, namespace="", *, group="", subresource="", name=""):
    allowed, _ = a.authorize_attributes(
        who, verb=verb, namespace=namespace, group=group, resource=resource,
        subresource=subresource, name=name,
    )
    return allowed


def grant(a, cluster_role_name, namespace, who="alice"):
    a.upsert(
        "RoleBinding",
        role_binding(f"{who}-{cluster_role_name}", namespace, "ClusterRole", cluster_role_name,
                     [user(who)]),
    )


def test_nobody_gets_anything_by_default(authz):
    assert not can(authz, ALICE, "get", "pods", "a")
    allowed, reason = authz.authorize_attributes(ALICE, verb="list", resource="pods")
    assert (allowed, reason) == (False, "")


def test_view_reads_but_does_not_write(authz):
    grant(authz, "view", "a")
    assert can(authz, ALICE, "get", "pods", "a")
    assert can(authz, ALICE, "list", "deployments", "a", group="apps")
    assert can(authz, ALICE, "get", "pods", "a", subresource="log")
    assert not can(authz, ALICE, "create", "pods", "a")
    assert not can(authz, ALICE, "get", "secrets", "a")
    assert not can(authz, ALICE, "get", "pods", "a", subresource="exec")


def test_edit_writes_workloads_but_cannot_read_roles(authz):
    grant(authz, "edit", "a")
    assert can(authz, ALICE, "create", "deployments", "a", group="apps")
    assert can(authz, ALICE, "get", "secrets", "a")
    assert can(authz, ALICE, "create", "pods", "a", subresource="exec")
    assert not can(authz, ALICE, "get", "roles", "a", group="rbac.authorization.k8s.io")
    assert not can(authz, ALICE, "create", "rolebindings", "a", group="rbac.authorization.k8s.io")


def test_admin_adds_role_management(authz):
    grant(authz, "admin", "a")
    assert can(authz, ALICE, "create", "rolebindings", "a", group="rbac.authorization.k8s.io")
    assert can(authz, ALICE, "delete", "deployments", "a", group="apps")


def test_role_binding_to_cluster_role_is_scoped_to_its_namespace(authz):
    grant(authz, "edit", "a")
    assert can(authz, ALICE, "create", "pods", "a")
    assert not can(authz, ALICE, "create", "pods", "b")
    assert not can(authz, ALICE, "list", "pods")  # cluster-wide


def test_reason_names_the_binding(authz):
    grant(authz, "view", "a")
    info = parse_request_info("GET", "/api/v1/namespaces/a/pods/web", {})
    assert authz.authorize(ALICE, info) == (
        True, 'RBAC: allowed by RoleBinding "alice-view/a" of ClusterRole "view" to User "alice"',
    )
    admin = UserInfo("root", groups=("admins",))
    authz.upsert("ClusterRoleBinding", {
        "apiVersion": RBAC_V1, "kind": "ClusterRoleBinding", "metadata": {"name": "root"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "admins"}],
    })
    assert authz.authorize(admin, info) == (
        True, 'RBAC: allowed by ClusterRoleBinding "root" of ClusterRole "cluster-admin" '
              'to Group "admins"',
    )


def test_resource_names_restrict(authz):
    authz.upsert("Role", {
        "apiVersion": RBAC_V1, "kind": "Role", "metadata": {"name": "one-cm", "namespace": "a"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["settings"],
                   "verbs": ["get", "update", "list"]}],
    })
    authz.upsert("RoleBinding", role_binding("b", "a", "Role", "one-cm", [user("alice")]))
    assert can(authz, ALICE, "get", "configmaps", "a", name="settings")
    assert not can(authz, ALICE, "get", "configmaps", "a", name="other")
    # A list names no object, so a rule limited to names does not allow it...
    assert not can(authz, ALICE, "list", "configmaps", "a")
    # ...unless the request is narrowed to that name by field selector.
    info = parse_request_info(
        "GET", "/api/v1/namespaces/a/configmaps", {"fieldSelector": "metadata.name=settings"}
    )
    assert authz.authorize(ALICE, info)[0]


def test_subresource_rules(authz):
    authz.upsert("ClusterRole", cluster_role("log-reader", [
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    ]))
    authz.upsert("ClusterRole", cluster_role("scaler", [
        {"apiGroups": ["*"], "resources": ["*/scale"], "verbs": ["get", "update"]},
    ]))
    authz.upsert("ClusterRole", cluster_role("wild", [
        {"apiGroups": [""], "resources": ["pods/*"], "verbs": ["get"]},
    ]))
    grant(authz, "log-reader", "a")
    grant(authz, "scaler", "a", who="bob")
    grant(authz, "wild", "a", who="carol")
    assert can(authz, ALICE, "get", "pods", "a", subresource="log")
    assert not can(authz, ALICE, "get", "pods", "a")
    assert not can(authz, ALICE, "get", "pods", "a", subresource="exec")
    bob = UserInfo("bob")
    assert can(authz, bob, "update", "deployments", "a", group="apps", subresource="scale")
    assert not can(authz, bob, "update", "deployments", "a", group="apps")
    # As in Kubernetes, "pods/*" is not a wildcard over subresources.
    assert not can(authz, UserInfo("carol"), "get", "pods", "a", subresource="log")


def test_non_resource_urls(authz):
    def get(who, path):
        return authz.authorize_attributes(who, verb="get", non_resource_path=path)[0]

    anonymous = UserInfo("system:anonymous", groups=("system:unauthenticated",))
    assert get(ALICE, "/apis/apps/v1")  # system:discovery, prefix rule "/apis/*"
    assert get(ALICE, "/openapi/v3")
    assert get(anonymous, "/healthz")  # system:public-info-viewer
    assert get(anonymous, "/version")
    assert not get(anonymous, "/apis")
    assert not get(ALICE, "/metrics")
    assert not authz.authorize_attributes(ALICE, verb="post", non_resource_path="/apis")[0]


def test_basic_user_may_review_itself(authz):
    assert can(authz, ALICE, "create", "selfsubjectaccessreviews", group="authorization.k8s.io")
    assert can(authz, ALICE, "create", "selfsubjectrulesreviews", group="authorization.k8s.io")
    assert can(authz, ALICE, "create", "selfsubjectreviews", group="authentication.k8s.io")
    assert not can(authz, ALICE, "create", "subjectaccessreviews", group="authorization.k8s.io")


def test_system_masters_always_allowed():
    empty = RBACAuthorizer()  # not even the cluster-admin binding exists
    root = UserInfo("kubernetes-admin", groups=("system:masters",))
    assert empty.authorize_attributes(root, verb="delete", resource="nodes", name="n1")[0]
    assert empty.authorize_attributes(root, verb="get", non_resource_path="/metrics")[0]


def test_service_account_subjects(authz):
    sa = UserInfo("system:serviceaccount:a:builder", groups=("system:serviceaccounts",
                                                            "system:serviceaccounts:a"))
    # A subject without a namespace means the RoleBinding's own namespace.
    authz.upsert("RoleBinding", role_binding(
        "builder", "a", "ClusterRole", "edit", [{"kind": "ServiceAccount", "name": "builder"}],
    ))
    assert can(authz, sa, "create", "jobs", "a", group="batch")
    _, reason = authz.authorize_attributes(sa, verb="create", namespace="a", group="batch",
                                           resource="jobs")
    assert reason.endswith('to ServiceAccount "builder/a"')
    # The same name in another namespace is another account.
    other = UserInfo("system:serviceaccount:b:builder")
    authz.upsert("RoleBinding", role_binding(
        "builder", "b", "ClusterRole", "view",
        [{"kind": "ServiceAccount", "name": "builder", "namespace": "a"}],
    ))
    assert not can(authz, other, "get", "pods", "b")
    assert can(authz, sa, "get", "pods", "b")


def test_aggregation_picks_up_a_newly_labelled_role(authz):
    grant(authz, "edit", "a")
    grant(authz, "view", "a", who="bob")
    bob = UserInfo("bob")
    assert not can(authz, ALICE, "create", "crontabs", "a", group="stable.example.com")
    authz.upsert("ClusterRole", cluster_role(
        "crontab-view",
        [{"apiGroups": ["stable.example.com"], "resources": ["crontabs"],
          "verbs": ["get", "list", "watch"]}],
        labels={"rbac.authorization.k8s.io/aggregate-to-view": "true"},
    ))
    authz.upsert("ClusterRole", cluster_role(
        "crontab-edit",
        [{"apiGroups": ["stable.example.com"], "resources": ["crontabs"],
          "verbs": ["create", "delete", "patch", "update"]}],
        labels={"rbac.authorization.k8s.io/aggregate-to-edit": "true"},
    ))
    assert can(authz, ALICE, "create", "crontabs", "a", group="stable.example.com")
    # view aggregates into edit, which aggregates into admin.
    assert can(authz, bob, "list", "crontabs", "a", group="stable.example.com")
    assert not can(authz, bob, "create", "crontabs", "a", group="stable.example.com")
    admin_rules = authz.aggregated_rules("admin")
    assert {"apiGroups": ["stable.example.com"], "resources": ["crontabs"],
            "verbs": ["get", "list", "watch"]} in admin_rules
    assert authz.aggregated_rules("cluster-admin") is None
    authz.remove("ClusterRole", None, "crontab-edit")
    assert not can(authz, ALICE, "create", "crontabs", "a", group="stable.example.com")


def test_aggregate_orders_and_deduplicates():
    rule = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}
    other = {"apiGroups": [""], "resources": ["services"], "verbs": ["get"]}
    roles = {
        "sum": {"metadata": {"name": "sum"}, "aggregationRule": {"clusterRoleSelectors": [
            {"matchExpressions": [{"key": "part", "operator": "In", "values": ["yes"]}]},
        ]}},
        "b": {"metadata": {"name": "b", "labels": {"part": "yes"}}, "rules": [other, rule]},
        "a": {"metadata": {"name": "a", "labels": {"part": "yes"}}, "rules": [rule]},
        "c": {"metadata": {"name": "c", "labels": {"part": "no"}}, "rules": [{"verbs": ["*"]}]},
    }
    assert aggregate(roles) == {"sum": [rule, other]}


def test_missing_role_is_reported_and_marks_rules_incomplete(authz):
    authz.upsert("RoleBinding", role_binding("ghost", "a", "ClusterRole", "nope", [user("alice")]))
    allowed, reason = authz.authorize_attributes(ALICE, verb="get", namespace="a", resource="pods")
    assert not allowed
    assert reason == 'RBAC: clusterrole.rbac.authorization.k8s.io "nope" not found'
    _, _, incomplete = authz.rules_for(ALICE, "a")
    assert incomplete


def test_rules_for_lists_what_can_i_list_shows(authz):
    grant(authz, "view", "a")
    resource_rules, non_resource_rules, incomplete = authz.rules_for(ALICE, "a")
    assert not incomplete
    assert {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
            "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]} in resource_rules
    assert any("pods/log" in r["resources"] for r in resource_rules)
    assert any("/api/*" in r["nonResourceURLs"] for r in non_resource_rules)
    elsewhere, _, _ = authz.rules_for(ALICE, "b")
    assert not any("pods/log" in r["resources"] for r in elsewhere)


def test_removing_a_binding_revokes(authz):
    grant(authz, "edit", "a")
    assert can(authz, ALICE, "delete", "pods", "a")
    authz.remove("RoleBinding", "a", "alice-edit")
    assert not can(authz, ALICE, "delete", "pods", "a")
    # Replacing a binding re-indexes its subjects.
    grant(authz, "edit", "a")
    binding = role_binding("alice-edit", "a", "ClusterRole", "edit", [user("bob")])
    authz.upsert("RoleBinding", binding)
    assert not can(authz, ALICE, "delete", "pods", "a")
    assert can(authz, UserInfo("bob"), "delete", "pods", "a")


def test_platform_components_have_what_they_need_and_no_more(authz):
    def identity(component):
        username, groups = PLATFORM_COMPONENTS[component]
        return UserInfo(username.format(node="node-1"), groups=groups)

    manager = identity("controller-manager")
    assert can(authz, manager, "create", "pods", "a")  # replicaset/job controllers
    assert can(authz, manager, "update", "deployments", "a", group="apps", subresource="status")
    assert can(authz, manager, "watch", "nodes")
    assert not can(authz, manager, "create", "clusterroles", group="rbac.authorization.k8s.io")
    scheduler = identity("scheduler")
    assert can(authz, scheduler, "create", "pods", "a", subresource="binding")
    assert not can(authz, scheduler, "create", "pods", "a")
    node = identity("node")
    assert can(authz, node, "patch", "pods", "a", subresource="status")
    assert not can(authz, node, "delete", "deployments", "a", group="apps")
    proxy = identity("proxy")
    assert can(authz, proxy, "watch", "endpointslices", group="discovery.k8s.io")
    assert not can(authz, proxy, "get", "secrets", "a")
    operators = identity("kubeflow-operators")
    assert can(authz, operators, "update", "pytorchjobs", "a", group="kubeflow.org",
               subresource="status")
    assert can(authz, operators, "create", "services", "a")
    assert can(authz, operators, "patch", "pods", "a")  # adopting and releasing
    assert can(authz, operators, "list", "namespaces")
    assert not can(authz, operators, "delete", "namespaces", name="a")
    assert not can(authz, operators, "get", "secrets", "a")  # but its webhook's own
    assert can(authz, operators, "get", "secrets", "a", name="training-operator-webhook-cert")


def test_bootstrap_objects_look_like_a_real_cluster():
    objs = {(o["kind"], o["metadata"]["name"]): o for o in bootstrap_policy()}
    edit = objs[("ClusterRole", "edit")]
    assert edit["aggregationRule"] == {"clusterRoleSelectors": [
        {"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}}]}
    assert edit["metadata"]["labels"] == {
        "kubernetes.io/bootstrapping": "rbac-defaults",
        "rbac.authorization.k8s.io/aggregate-to-admin": "true",
    }
    assert edit["metadata"]["annotations"] == {"rbac.authorization.kubernetes.io/autoupdate": "true"}
    masters = objs[("ClusterRoleBinding", "cluster-admin")]
    assert masters["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}]
    controller = objs[("ClusterRoleBinding", "system:controller:deployment-controller")]
    assert controller["subjects"] == [
        {"kind": "ServiceAccount", "name": "deployment-controller", "namespace": "kube-system"}]
    public = objs[("ClusterRoleBinding", "system:public-info-viewer")]
    assert [s["name"] for s in public["subjects"]] == [
        "system:authenticated", "system:unauthenticated"]


def test_decisions_are_fast(authz):
    for i in range(2000):
        grant(authz, "view", f"ns-{i}", who=f"user-{i}")
    who = UserInfo("user-1999", groups=("devs",))
    info = parse_request_info("GET", "/api/v1/namespaces/ns-1999/pods/x", {})
    started = time.perf_counter()
    for _ in range(5000):
        assert authz.authorize(who, info)[0]
    assert time.perf_counter() - started < 0.5
