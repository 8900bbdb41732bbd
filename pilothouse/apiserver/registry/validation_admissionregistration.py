"""Validation of the admissionregistration.k8s.io kinds: the webhook configurations.

A fourth part of validation.py, which merges `ADMISSION_VALIDATORS` into its tables -- use
those. The rules are `ValidateValidatingWebhookConfiguration` and
`ValidateMutatingWebhookConfiguration` of Kubernetes 1.32
(`pkg/apis/admissionregistration/validation`, `apiserver/pkg/util/webhook`), with their
field paths and messages: fully qualified, unique webhook names; rules (operations, groups,
versions, resources with their subresource wildcards, scope); exactly one of url or service
in clientConfig; sideEffects None or NoneOnDryRun; admissionReviewVersions including v1 or
v1beta1; timeoutSeconds 1..30; the selectors' syntax.

One rule is Pilothouse's own: `matchConditions` are CEL expressions, and this server has
no CEL. Ignoring them would call a webhook for requests its author meant to exclude (and
a failurePolicy Fail webhook might then block them), so a configuration that has any is
refused with a 422 that says why, on create and on update alike.

The same rules hold on update: upstream relaxes them only for what an object stored through
the old v1beta1 API may carry, and this server has only ever served v1.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pilothouse.machinery.errors import (
    Cause,
    duplicate,
    forbidden,
    invalid_value,
    not_supported,
    required,
)
from pilothouse.machinery.names import is_dns1035_label, is_dns1123_subdomain

from .validation import (
    Validator,
    as_dict,
    as_list,
    is_int,
    validate_label_selector,
)

ADMISSION_GROUP = "admissionregistration.k8s.io"
FAILURE_POLICIES = ("Fail", "Ignore")
MATCH_POLICIES = ("Equivalent", "Exact")
NO_SIDE_EFFECTS = ("None", "NoneOnDryRun")
OPERATIONS = ("*", "CONNECT", "CREATE", "DELETE", "UPDATE")
SCOPES = ("*", "Cluster", "Namespaced")
REINVOCATION_POLICIES = ("IfNeeded", "Never")
#: The AdmissionReview versions the server understands; a webhook must accept one.
REVIEW_VERSIONS = ("v1", "v1beta1")
NO_CEL = ("matchConditions are CEL expressions, which this server does not evaluate; "
          "remove them and filter with rules, namespaceSelector and objectSelector")
_URL_FORM = "; desired format: https://host[/path]"


def _fully_qualified_name(name: Any, path: str) -> list[Cause]:
    """IsFullyQualifiedName: a DNS subdomain of at least three labels."""
    if not name:
        return [required(path)]
    name = str(name)
    problems = is_dns1123_subdomain(name)
    if problems:
        return [invalid_value(path, name, ",".join(problems))]
    if len(name.split(".")) < 3:
        return [invalid_value(path, name,
                              "should be a domain with at least three segments separated by dots")]
    return []


def _has_wildcard(values: list) -> bool:
    return "*" in values


def _validate_resources(resources: list, path: str) -> list[Cause]:
    """Resources with optional `/subresource`, and the wildcard combinations refused."""
    causes: list[Cause] = []
    if not resources:
        causes.append(required(path))
    wildcard_subresources: set[str] = set()  # x/*
    wildcard_resources: set[str] = set()  # */x
    double = single = plain = False
    for i, entry in enumerate(resources):
        entry = str(entry or "")
        if not entry:
            causes.append(required(f"{path}[{i}]"))
            continue
        double = double or entry == "*/*"
        single = single or entry == "*"
        resource, slash, sub = entry.partition("/")
        if not slash:
            plain = entry != "*"
            continue
        if resource in wildcard_subresources:
            causes.append(invalid_value(f"{path}[{i}]", entry,
                                        f"if '{resource}/*' is present, must not specify {entry}"))
        if sub in wildcard_resources:
            causes.append(invalid_value(f"{path}[{i}]", entry,
                                        f"if '*/{sub}' is present, must not specify {entry}"))
        if sub == "*":
            wildcard_subresources.add(resource)
        if resource == "*":
            wildcard_resources.add(sub)
    if len(resources) > 1 and double:
        causes.append(invalid_value(path, resources,
                                    "if '*/*' is present, must not specify other resources"))
    if single and plain:
        causes.append(invalid_value(
            path, resources, "if '*' is present, must not specify other resources without "
            "subresources"))
    return causes


def _validate_rule(rule: dict, path: str) -> list[Cause]:
    """validateRuleWithOperations."""
    causes: list[Cause] = []
    operations = as_list(rule.get("operations"))
    if not operations:
        causes.append(required(f"{path}.operations"))
    if len(operations) > 1 and _has_wildcard(operations):
        causes.append(invalid_value(f"{path}.operations", operations,
                                    "if '*' is present, must not specify other operations"))
    for i, operation in enumerate(operations):
        if operation not in OPERATIONS:
            causes.append(not_supported(f"{path}.operations[{i}]", operation, OPERATIONS))
    groups = as_list(rule.get("apiGroups"))
    if not groups:
        causes.append(required(f"{path}.apiGroups"))
    if len(groups) > 1 and _has_wildcard(groups):
        causes.append(invalid_value(f"{path}.apiGroups", groups,
                                    "if '*' is present, must not specify other API groups"))
    versions = as_list(rule.get("apiVersions"))
    if not versions:
        causes.append(required(f"{path}.apiVersions"))
    if len(versions) > 1 and _has_wildcard(versions):
        causes.append(invalid_value(f"{path}.apiVersions", versions,
                                    "if '*' is present, must not specify other API versions"))
    causes += [required(f"{path}.apiVersions[{i}]") for i, v in enumerate(versions) if not v]
    causes += _validate_resources(as_list(rule.get("resources")), f"{path}.resources")
    scope = rule.get("scope")
    if scope is not None and scope not in SCOPES:
        causes.append(not_supported(f"{path}.scope", scope, SCOPES))
    return causes


def _validate_url(url: str, path: str) -> list[Cause]:
    """ValidateWebhookURL with https forced."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return [required(path, f"url must be a valid URL: {exc}{_URL_FORM}")]
    causes: list[Cause] = []
    if parts.scheme != "https":
        causes.append(invalid_value(path, parts.scheme,
                                    "'https' is the only allowed URL scheme" + _URL_FORM))
    if not parts.netloc.rpartition("@")[2]:
        causes.append(invalid_value(path, "", "host must be provided" + _URL_FORM))
    if "@" in parts.netloc:
        causes.append(invalid_value(path, parts.netloc.rpartition("@")[0],
                                    "user information is not permitted in the URL"))
    if parts.fragment:
        causes.append(invalid_value(path, parts.fragment,
                                    "fragments are not permitted in the URL"))
    if parts.query:
        causes.append(invalid_value(path, parts.query,
                                    "query parameters are not permitted in the URL"))
    return causes


def _validate_service(service: dict, path: str) -> list[Cause]:
    """ValidateWebhookService (the port is defaulted to 443 before this runs)."""
    causes: list[Cause] = []
    if not service.get("name"):
        causes.append(required(f"{path}.name", "service name is required"))
    if not service.get("namespace"):
        causes.append(required(f"{path}.namespace", "service namespace is required"))
    port = service.get("port")
    if not is_int(port) or not 1 <= port <= 65535:
        causes.append(invalid_value(f"{path}.port", port, "port is not valid: must be between "
                                    "1 and 65535, inclusive"))
    url_path = service.get("path")
    if not isinstance(url_path, str) or url_path in ("", "/"):
        return causes
    if url_path == "//":
        return [*causes, invalid_value(f"{path}.path", url_path, "segment[0] may not be empty")]
    if not url_path.startswith("/"):
        causes.append(invalid_value(f"{path}.path", url_path, "must start with a '/'"))
    steps = url_path[1:]
    steps = steps[:-1] if steps.endswith("/") else steps
    for i, step in enumerate(steps.split("/")):
        if not step:
            causes.append(invalid_value(f"{path}.path", url_path,
                                        f"segment[{i}] may not be empty"))
            continue
        causes += [invalid_value(f"{path}.path", url_path, f"segment[{i}]: {problem}")
                   for problem in is_dns1123_subdomain(step)]
    return causes


def _validate_review_versions(versions: list, path: str) -> list[Cause]:
    if not versions:
        return [required(path, f"must specify one of {', '.join(REVIEW_VERSIONS)}")]
    causes: list[Cause] = []
    seen: set[str] = set()
    for i, version in enumerate(versions):
        version = str(version)
        if version in seen:
            causes.append(invalid_value(f"{path}[{i}]", version, "duplicate version"))
            continue
        seen.add(version)
        causes += [invalid_value(f"{path}[{i}]", version, p) for p in is_dns1035_label(version)]
    if not seen & set(REVIEW_VERSIONS):
        causes.append(invalid_value(path, versions, "must include at least one of "
                                    + ", ".join(REVIEW_VERSIONS)))
    return causes


def _validate_webhook(hook: dict, path: str, *, mutating: bool) -> list[Cause]:
    causes = _fully_qualified_name(hook.get("name"), f"{path}.name")
    for i, rule in enumerate(as_list(hook.get("rules"))):
        causes += _validate_rule(as_dict(rule), f"{path}.rules[{i}]")
    for key, allowed in (("failurePolicy", FAILURE_POLICIES), ("matchPolicy", MATCH_POLICIES)):
        if hook.get(key) is not None and hook[key] not in allowed:
            causes.append(not_supported(f"{path}.{key}", hook[key], allowed))
    side_effects = hook.get("sideEffects")
    if side_effects is None:
        causes.append(required(f"{path}.sideEffects",
                               f"must specify one of {', '.join(NO_SIDE_EFFECTS)}"))
    elif side_effects not in NO_SIDE_EFFECTS:
        causes.append(not_supported(f"{path}.sideEffects", side_effects, NO_SIDE_EFFECTS))
    timeout = hook.get("timeoutSeconds")
    if timeout is not None and (not is_int(timeout) or not 1 <= timeout <= 30):
        causes.append(invalid_value(f"{path}.timeoutSeconds", timeout,
                                    "the timeout value must be between 1 and 30 seconds"))
    for key in ("namespaceSelector", "objectSelector"):
        if hook.get(key) is not None:
            causes += validate_label_selector(hook[key], f"{path}.{key}")
    reinvocation = hook.get("reinvocationPolicy")
    if mutating and reinvocation is not None and reinvocation not in REINVOCATION_POLICIES:
        causes.append(not_supported(f"{path}.reinvocationPolicy", reinvocation,
                                    REINVOCATION_POLICIES))
    client = as_dict(hook.get("clientConfig"))
    url, service = client.get("url"), client.get("service")
    if (url is None) == (service is None):
        causes.append(required(f"{path}.clientConfig", "exactly one of url or service is required"))
    elif url is not None:
        causes += _validate_url(str(url), f"{path}.clientConfig.url")
    else:
        causes += _validate_service(as_dict(service), f"{path}.clientConfig.service")
    if hook.get("matchConditions"):
        causes.append(forbidden(f"{path}.matchConditions", NO_CEL))
    return causes


def _validate_configuration(config: dict, *, mutating: bool) -> list[Cause]:
    causes: list[Cause] = []
    names: set[str] = set()
    for i, hook in enumerate(as_list(config.get("webhooks"))):
        hook = as_dict(hook)
        path = f"webhooks[{i}]"
        causes += _validate_webhook(hook, path, mutating=mutating)
        causes += _validate_review_versions(as_list(hook.get("admissionReviewVersions")),
                                            f"{path}.admissionReviewVersions")
        name = hook.get("name")
        if name:
            if name in names:
                causes.append(duplicate(f"{path}.name", name))
            names.add(name)
    return causes


def validate_validating_webhook_configuration(config: dict) -> list[Cause]:
    return _validate_configuration(config, mutating=False)


def validate_mutating_webhook_configuration(config: dict) -> list[Cause]:
    return _validate_configuration(config, mutating=True)


ADMISSION_VALIDATORS: dict[tuple[str, str], Validator] = {
    (ADMISSION_GROUP, "ValidatingWebhookConfiguration"): validate_validating_webhook_configuration,
    (ADMISSION_GROUP, "MutatingWebhookConfiguration"): validate_mutating_webhook_configuration,
}
