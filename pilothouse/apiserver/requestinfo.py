"""What a request is about: verb, group, version, namespace, resource, name, subresource.

Authorization, audit and admission all speak of a request in these terms rather than in
HTTP terms, so the API server parses every URL once, the way k8s.io/apiserver's
`RequestInfoFactory` does, and hands the result to RBAC (`rbac.py`). The parse is purely
syntactic: it does not know which resources are served, so `/api/v1/nosuch` is still a
resource request for "nosuch" (the router answers 404 later, after authorization).

Resource paths (`/api/{v}/...` and `/apis/{g}/{v}/...`):

- `.../{resource}`, `.../{resource}/{name}`, `.../{resource}/{name}/{subresource}/...`,
  each optionally under `namespaces/{ns}/`;
- `.../namespaces/{ns}` and `.../namespaces/{ns}/status|finalize` are the Namespace
  object itself (resource "namespaces", name and namespace both `{ns}`);
- the legacy verbs in the path, `.../watch/...` and `.../proxy/...`, set the verb.

Everything else -- `/`, `/api`, `/apis`, `/apis/{g}`, `/apis/{g}/{v}`, `/api/{v}`,
`/version`, `/healthz`, `/openapi/v3` -- is a non-resource request whose verb is the
lowercase HTTP method.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pilothouse.machinery import errors
from pilothouse.machinery.selectors import parse_field_selector

_API_PREFIXES = frozenset({"api", "apis"})
_GROUPLESS_PREFIXES = frozenset({"api"})
# Verbs spelled as a path segment before the resource (deprecated, still served).
_PATH_VERBS = frozenset({"proxy", "watch"})
_PATH_VERBS_WITHOUT_SUBRESOURCES = frozenset({"proxy"})
# Segments after /namespaces/{ns} that are subresources of the Namespace, not resources.
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_METHOD_VERBS = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


@dataclass(frozen=True)
class RequestInfo:
    """One request in authorization terms (k8s.io/apiserver `request.RequestInfo`)."""

    is_resource_request: bool
    path: str
    #: Kubernetes verb (get, list, watch, create, ...) or, for non-resource requests,
    #: the lowercase HTTP method.
    verb: str
    api_prefix: str  # "api", "apis", or "" for non-resource requests
    api_group: str
    api_version: str
    namespace: str
    resource: str
    subresource: str
    name: str
    #: Path segments from the resource on: (resource, name, subresource, ...).
    parts: tuple[str, ...]


def parse_request_info(method: str, path: str, query: Mapping[str, str]) -> RequestInfo:
    """Classify one request; `query` holds the first value of each query parameter.

    Raises a 400 `APIError` for a resource path that names a path verb and nothing
    after it (`/api/v1/watch`), which the real server refuses too.
    """
    non_resource = RequestInfo(
        is_resource_request=False,
        path=path,
        verb=method.lower(),
        api_prefix="",
        api_group="",
        api_version="",
        namespace="",
        resource="",
        subresource="",
        name="",
        parts=(),
    )
    trimmed = path.strip("/")
    segments = trimmed.split("/") if trimmed else []
    if len(segments) < 3 or segments[0] not in _API_PREFIXES:
        return non_resource
    prefix, rest = segments[0], segments[1:]
    group = ""
    if prefix not in _GROUPLESS_PREFIXES:
        if len(rest) < 3:
            return non_resource
        group, rest = rest[0], rest[1:]
    version, rest = rest[0], rest[1:]

    if rest[0] in _PATH_VERBS:
        if len(rest) < 2:
            raise errors.bad_request(f"unable to determine kind and namespace from url, {path}")
        verb, rest = rest[0], rest[1:]
    else:
        verb = _METHOD_VERBS.get(method.upper(), "")

    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]

    resource = rest[0]
    name = rest[1] if len(rest) >= 2 else ""
    subresource = ""
    if len(rest) >= 3 and verb not in _PATH_VERBS_WITHOUT_SUBRESOURCES:
        subresource = rest[2]

    if not name and verb == "get":
        verb = "watch" if _is_true(query.get("watch")) else "list"
        # `kubectl get NAME -w` watches the collection narrowed to one name; authorize
        # it as a watch of that object, so resourceNames rules apply.
        name = _exact_name(query.get("fieldSelector", ""))
    if not name and verb == "delete":
        verb = "deletecollection"

    return RequestInfo(
        is_resource_request=True,
        path=path,
        verb=verb,
        api_prefix=prefix,
        api_group=group,
        api_version=version,
        namespace=namespace,
        resource=resource,
        subresource=subresource,
        name=name,
        parts=tuple(rest),
    )


def _is_true(value: str | None) -> bool:
    """A boolean query parameter as apimachinery decodes it: present and not 0/false."""
    return value is not None and value.lower() not in ("0", "false")


def _exact_name(field_selector: str) -> str:
    """The name a field selector pins with `metadata.name=N`, or "" if it pins none.

    A selector that does not parse pins nothing (the real server then falls back to an
    unnamed list/watch), and neither does a name that cannot be a path segment.
    """
    try:
        name = parse_field_selector(field_selector).exact("metadata.name") or ""
    except errors.APIError:
        return ""
    if name in (".", "..") or "/" in name or "%" in name:
        return ""
    return name
