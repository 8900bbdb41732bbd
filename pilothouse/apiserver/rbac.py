"""RBAC: may this user do this request? Evaluated on every request the API server serves.

The authorizer holds the cluster's Roles, ClusterRoles, RoleBindings and
ClusterRoleBindings (the API server feeds it from a watch of the four kinds) and decides
as kube-apiserver's RBAC authorizer does (plugin/pkg/auth/authorizer/rbac):

- a user's rules are those of every ClusterRoleBinding naming them, plus, for a request
  in a namespace, every RoleBinding there; a RoleBinding to a ClusterRole grants that
  role's rules in the binding's namespace only;
- subjects are Users, Groups and ServiceAccounts (the user
  `system:serviceaccount:<ns>:<name>`); every authenticated user is in the group
  `system:authenticated`;
- a rule matches when its verbs, apiGroups, resources (`res`, `res/sub`, `*/sub`, `*`)
  and resourceNames all match, or, for a non-resource request, its verbs and
  nonResourceURLs (`*`, exact, or a `prefix*`);
- nothing denies: the first matching rule allows, and the reason names its binding;
- members of `system:masters` are allowed everything before RBAC is consulted, as the
  real server's authorizer chain does.

Aggregated ClusterRoles (admin, edit, view, ...) are evaluated with the rules their
selectors gather (`aggregate`), so a role labelled `aggregate-to-edit: "true"` widens
edit at once; the API server also writes those rules back into the stored object.

Fast path: bindings are indexed by subject, so a decision reads only the bindings that
name the user or one of their groups, and each user's resolved rules are cached per
namespace until any RBAC object changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pilothouse.apiserver.requestinfo import RequestInfo
from pilothouse.machinery.selectors import label_selector_from_dict

PRIVILEGED_GROUP = "system:masters"
AUTHENTICATED_GROUP = "system:authenticated"
UNAUTHENTICATED_GROUP = "system:unauthenticated"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"

KINDS = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
_NOT_FOUND_PREFIX = {"Role": "role", "ClusterRole": "clusterrole"}
_CACHE_LIMIT = 4096  # resolved (user, namespace) entries kept before the cache is reset

# An index key for a subject: ("User", username) or ("Group", group). ServiceAccount
# subjects are indexed under the username they authenticate as.
_SubjectKey = tuple[str, str]


@dataclass(frozen=True)
class UserInfo:
    """An authenticated (or anonymous) caller, as an authenticator reports it."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class _Rule:
    """A PolicyRule compiled for matching; `source` is the rule as stored."""

    verbs: frozenset[str]
    groups: frozenset[str]
    resources: frozenset[str]
    names: frozenset[str]
    urls: tuple[str, ...]
    source: Mapping[str, Any]

    def allows(self, info: RequestInfo) -> bool:
        if "*" not in self.verbs and info.verb not in self.verbs:
            return False
        if not info.is_resource_request:
            return any(_url_matches(url, info.path) for url in self.urls)
        if "*" not in self.groups and info.api_group not in self.groups:
            return False
        sub = info.subresource
        combined = f"{info.resource}/{sub}" if sub else info.resource
        if not (
            "*" in self.resources
            or combined in self.resources
            or (sub and f"*/{sub}" in self.resources)
        ):
            return False
        return not self.names or info.name in self.names


def _url_matches(rule_url: str, path: str) -> bool:
    if rule_url == "*" or rule_url == path:
        return True
    return rule_url.endswith("*") and path.startswith(rule_url.rstrip("*"))


def _compile(rules: Iterable[Mapping[str, Any]] | None) -> tuple[_Rule, ...]:
    return tuple(
        _Rule(
            verbs=frozenset(r.get("verbs") or ()),
            groups=frozenset(r.get("apiGroups") or ()),
            resources=frozenset(r.get("resources") or ()),
            names=frozenset(r.get("resourceNames") or ()),
            urls=tuple(r.get("nonResourceURLs") or ()),
            source=r,
        )
        for r in rules or ()
    )


def _normalized(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A rule without empty fields, so `null`, `[]` and absent compare equal."""
    return {k: v for k, v in rule.items() if v}


def aggregate(cluster_roles: Mapping[str, dict]) -> dict[str, list[dict]]:
    """Rules of every ClusterRole with an aggregationRule, keyed by role name.

    As the clusterrole-aggregation controller computes them: for each selector in
    order, the roles it matches (by name, never the role itself) contribute their rules,
    each rule once. A matched role that aggregates itself contributes its aggregated
    rules, so admin picks up edit picks up view. A role whose selectors do not parse
    keeps its stored rules, as the controller leaves it untouched.
    """
    result: dict[str, list[dict]] = {}
    in_progress: set[str] = set()

    def effective(name: str) -> list[dict]:
        role = cluster_roles[name]
        if not role.get("aggregationRule"):
            return list(role.get("rules") or [])
        if name in result:
            return result[name]
        if name in in_progress:  # a cycle: use what is stored, as the controller would
            return list(role.get("rules") or [])
        in_progress.add(name)
        try:
            result[name] = gather(name, role)
        finally:
            in_progress.discard(name)
        return result[name]

    def gather(name: str, role: dict) -> list[dict]:
        selectors = role["aggregationRule"].get("clusterRoleSelectors") or []
        try:
            parsed = [label_selector_from_dict(s) for s in selectors]
        except ValueError:
            return list(role.get("rules") or [])
        rules: list[dict] = []
        seen: list[dict] = []
        for selector in parsed:
            for other in sorted(cluster_roles):
                if other == name:
                    continue
                labels = (cluster_roles[other].get("metadata") or {}).get("labels") or {}
                if not selector.matches(labels):
                    continue
                for rule in effective(other):
                    key = _normalized(rule)
                    if key not in seen:
                        seen.append(key)
                        rules.append(rule)
        return rules

    for role_name in sorted(cluster_roles):
        effective(role_name)
    return result


@dataclass(frozen=True)
class _Resolved:
    """What applies to one user in one namespace: (source, rules) pairs and errors."""

    grants: tuple[tuple[str, tuple[_Rule, ...]], ...]
    errors: tuple[str, ...]


class RBACAuthorizer:
    """The RBAC decision point, kept current by `upsert`/`remove` from a watch."""

    def __init__(self) -> None:
        self._cluster_roles: dict[str, dict] = {}
        self._role_bindings: dict[tuple[str, str], dict] = {}
        self._cluster_role_bindings: dict[str, dict] = {}
        # Subject -> names of the bindings that name it.
        self._crb_index: dict[_SubjectKey, set[str]] = {}
        self._rb_index: dict[tuple[str, _SubjectKey], set[str]] = {}
        # Roles are kept compiled; ClusterRoles raw, since aggregation reads their labels.
        self._compiled_roles: dict[tuple[str, str], tuple[_Rule, ...]] = {}
        # Derived state, rebuilt lazily after changes.
        self._compiled_cluster_roles: dict[str, tuple[_Rule, ...]] | None = None
        self._aggregated: dict[str, list[dict]] | None = None
        self._cache: dict[tuple[str, tuple[str, ...], str], _Resolved] = {}

    # -- keeping current -------------------------------------------------------------

    def upsert(self, kind: str, obj: dict) -> None:
        """Add or replace one RBAC object (`kind` is its Kind)."""
        meta = obj.get("metadata") or {}
        name, namespace = meta.get("name", ""), meta.get("namespace", "")
        if kind == "Role":
            self._compiled_roles[(namespace, name)] = _compile(obj.get("rules"))
        elif kind == "ClusterRole":
            self._cluster_roles[name] = obj
            self._cluster_roles_changed()
        elif kind == "RoleBinding":
            self._unindex_role_binding(namespace, name)
            self._role_bindings[(namespace, name)] = obj
            for key in _subject_keys(obj.get("subjects"), namespace):
                self._rb_index.setdefault((namespace, key), set()).add(name)
        elif kind == "ClusterRoleBinding":
            self._unindex_cluster_role_binding(name)
            self._cluster_role_bindings[name] = obj
            for key in _subject_keys(obj.get("subjects"), ""):
                self._crb_index.setdefault(key, set()).add(name)
        else:
            raise ValueError(f"not an RBAC kind: {kind!r} (expected one of {', '.join(KINDS)})")
        self._cache.clear()

    def remove(self, kind: str, namespace: str | None, name: str) -> None:
        """Forget one RBAC object; unknown objects are ignored."""
        namespace = namespace or ""
        if kind == "Role":
            self._compiled_roles.pop((namespace, name), None)
        elif kind == "ClusterRole":
            self._cluster_roles.pop(name, None)
            self._cluster_roles_changed()
        elif kind == "RoleBinding":
            self._unindex_role_binding(namespace, name)
            self._role_bindings.pop((namespace, name), None)
        elif kind == "ClusterRoleBinding":
            self._unindex_cluster_role_binding(name)
            self._cluster_role_bindings.pop(name, None)
        else:
            raise ValueError(f"not an RBAC kind: {kind!r} (expected one of {', '.join(KINDS)})")
        self._cache.clear()

    def _cluster_roles_changed(self) -> None:
        self._compiled_cluster_roles = None
        self._aggregated = None

    def _unindex_role_binding(self, namespace: str, name: str) -> None:
        old = self._role_bindings.get((namespace, name))
        if old is None:
            return
        for key in _subject_keys(old.get("subjects"), namespace):
            names = self._rb_index.get((namespace, key))
            if names is not None:
                names.discard(name)
                if not names:
                    del self._rb_index[(namespace, key)]

    def _unindex_cluster_role_binding(self, name: str) -> None:
        old = self._cluster_role_bindings.get(name)
        if old is None:
            return
        for key in _subject_keys(old.get("subjects"), ""):
            names = self._crb_index.get(key)
            if names is not None:
                names.discard(name)
                if not names:
                    del self._crb_index[key]

    # -- aggregation -----------------------------------------------------------------

    def aggregated_rules(self, name: str) -> list[dict] | None:
        """The rules ClusterRole `name` aggregates, or None if it does not aggregate."""
        return self._aggregation().get(name)

    def aggregated_names(self) -> list[str]:
        """The ClusterRoles whose rules come from aggregation."""
        return list(self._aggregation())

    def _aggregation(self) -> dict[str, list[dict]]:
        if self._aggregated is None:
            self._aggregated = aggregate(self._cluster_roles)
        return self._aggregated

    def _cluster_role_rules(self, name: str) -> tuple[_Rule, ...] | None:
        if self._compiled_cluster_roles is None:
            aggregated = self._aggregation()
            self._compiled_cluster_roles = {
                n: _compile(aggregated[n] if n in aggregated else role.get("rules"))
                for n, role in self._cluster_roles.items()
            }
        return self._compiled_cluster_roles.get(name)

    # -- decisions -------------------------------------------------------------------

    def authorize(self, user: UserInfo, info: RequestInfo) -> tuple[bool, str]:
        """(allowed, reason) for one request; the reason names the granting binding."""
        if PRIVILEGED_GROUP in user.groups:
            return True, ""
        resolved = self._resolve(user, info.namespace)
        for source, rules in resolved.grants:
            for rule in rules:
                if rule.allows(info):
                    return True, f"RBAC: allowed by {source}"
        if resolved.errors:
            return False, f"RBAC: {_aggregate_errors(resolved.errors)}"
        return False, ""

    def authorize_attributes(
        self,
        user: UserInfo,
        *,
        verb: str,
        namespace: str = "",
        group: str = "",
        resource: str = "",
        subresource: str = "",
        name: str = "",
        non_resource_path: str | None = None,
    ) -> tuple[bool, str]:
        """`authorize` for a (Self)SubjectAccessReview's resource or non-resource attributes."""
        is_resource = non_resource_path is None
        info = RequestInfo(
            is_resource_request=is_resource,
            path=non_resource_path or "",
            verb=verb,
            api_prefix="",
            api_group=group if is_resource else "",
            api_version="",
            namespace=namespace if is_resource else "",
            resource=resource if is_resource else "",
            subresource=subresource if is_resource else "",
            name=name if is_resource else "",
            parts=(),
        )
        return self.authorize(user, info)

    def rules_for(self, user: UserInfo, namespace: str) -> tuple[list[dict], list[dict], bool]:
        """(resourceRules, nonResourceRules, incomplete) for a SelfSubjectRulesReview.

        `incomplete` is true when a binding names a role that does not exist, as the
        real review reports it.
        """
        resolved = self._resolve(user, namespace)
        resource_rules: list[dict] = []
        non_resource_rules: list[dict] = []
        for _, rules in resolved.grants:
            for rule in rules:
                src = rule.source
                if src.get("resources"):
                    resource_rules.append(
                        _present(
                            verbs=src.get("verbs"),
                            apiGroups=src.get("apiGroups"),
                            resources=src.get("resources"),
                            resourceNames=src.get("resourceNames"),
                        )
                    )
                if src.get("nonResourceURLs"):
                    non_resource_rules.append(
                        _present(verbs=src.get("verbs"), nonResourceURLs=src.get("nonResourceURLs"))
                    )
        return resource_rules, non_resource_rules, bool(resolved.errors)

    def _resolve(self, user: UserInfo, namespace: str) -> _Resolved:
        groups = _effective_groups(user)
        cache_key = (user.username, groups, namespace)
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        keys = [("User", user.username), *(("Group", g) for g in groups)]
        grants: list[tuple[str, tuple[_Rule, ...]]] = []
        errors: list[str] = []

        names = set().union(*(self._crb_index.get(k, ()) for k in keys))
        for name in sorted(names):
            binding = self._cluster_role_bindings[name]
            subject = _first_applying(binding.get("subjects"), user.username, groups, "")
            if subject is None:
                continue
            rules = self._role_ref_rules(binding.get("roleRef") or {}, "", errors)
            if rules is not None:
                source = (
                    f'ClusterRoleBinding "{name}" of {_role_ref_text(binding)} '
                    f"to {_describe_subject(subject, '')}"
                )
                grants.append((source, rules))

        if namespace:
            names = set().union(*(self._rb_index.get((namespace, k), ()) for k in keys))
            for name in sorted(names):
                binding = self._role_bindings[(namespace, name)]
                subject = _first_applying(binding.get("subjects"), user.username, groups, namespace)
                if subject is None:
                    continue
                rules = self._role_ref_rules(binding.get("roleRef") or {}, namespace, errors)
                if rules is not None:
                    source = (
                        f'RoleBinding "{name}/{namespace}" of {_role_ref_text(binding)} '
                        f"to {_describe_subject(subject, namespace)}"
                    )
                    grants.append((source, rules))

        resolved = _Resolved(tuple(grants), tuple(errors))
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[cache_key] = resolved
        return resolved

    def _role_ref_rules(
        self, role_ref: Mapping[str, Any], namespace: str, errors: list[str]
    ) -> tuple[_Rule, ...] | None:
        kind, name = role_ref.get("kind", ""), role_ref.get("name", "")
        if kind == "ClusterRole":
            rules = self._cluster_role_rules(name)
        elif kind == "Role":
            rules = self._compiled_roles.get((namespace, name)) if namespace else None
        else:
            errors.append(f'unsupported role reference kind: "{kind}"')
            return None
        if rules is None:
            errors.append(f'{_NOT_FOUND_PREFIX[kind]}.rbac.authorization.k8s.io "{name}" not found')
        return rules


def _effective_groups(user: UserInfo) -> tuple[str, ...]:
    """The user's groups plus `system:authenticated` for anyone not anonymous."""
    groups = tuple(dict.fromkeys(user.groups))
    if UNAUTHENTICATED_GROUP in groups or AUTHENTICATED_GROUP in groups:
        return groups
    return (*groups, AUTHENTICATED_GROUP)


def _service_account_namespace(subject: Mapping[str, Any], binding_namespace: str) -> str:
    """A ServiceAccount subject's namespace; a RoleBinding's own if left out."""
    return subject.get("namespace") or binding_namespace


def _subject_keys(subjects: Iterable[Mapping[str, Any]] | None, namespace: str) -> set[_SubjectKey]:
    keys: set[_SubjectKey] = set()
    for subject in subjects or ():
        kind, name = subject.get("kind"), subject.get("name", "")
        if kind in ("User", "Group"):
            keys.add((kind, name))
        elif kind == "ServiceAccount":
            sa_namespace = _service_account_namespace(subject, namespace)
            if sa_namespace:
                keys.add(("User", f"{SERVICE_ACCOUNT_PREFIX}{sa_namespace}:{name}"))
    return keys


def _first_applying(
    subjects: Iterable[Mapping[str, Any]] | None,
    username: str,
    groups: tuple[str, ...],
    namespace: str,
) -> Mapping[str, Any] | None:
    """The first subject of a binding that names this user (directly, by group or SA)."""
    for subject in subjects or ():
        kind, name = subject.get("kind"), subject.get("name", "")
        if kind == "User" and name == username:
            return subject
        if kind == "Group" and name in groups:
            return subject
        if kind == "ServiceAccount":
            sa_namespace = _service_account_namespace(subject, namespace)
            if sa_namespace and username == f"{SERVICE_ACCOUNT_PREFIX}{sa_namespace}:{name}":
                return subject
    return None


def _role_ref_text(binding: Mapping[str, Any]) -> str:
    ref = binding.get("roleRef") or {}
    return f'{ref.get("kind", "")} "{ref.get("name", "")}"'


def _describe_subject(subject: Mapping[str, Any], binding_namespace: str) -> str:
    kind, name = subject.get("kind", ""), subject.get("name", "")
    if kind == "ServiceAccount":
        return f'{kind} "{name}/{_service_account_namespace(subject, binding_namespace)}"'
    return f'{kind} "{name}"'


def _aggregate_errors(errors: Iterable[str]) -> str:
    """Join messages as apimachinery's error aggregate prints them (deduplicated)."""
    unique = list(dict.fromkeys(errors))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


def _present(**fields: Any) -> dict[str, list[str]]:
    """A review rule with `verbs` always present and other empty lists left out."""
    out = {"verbs": list(fields.pop("verbs") or [])}
    out.update({k: list(v) for k, v in fields.items() if v})
    return out
