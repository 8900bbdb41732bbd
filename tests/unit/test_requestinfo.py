"""Request classification: the verb and target RBAC sees for each URL a client sends."""

import pytest

from pilothouse.apiserver.requestinfo import parse_request_info
from pilothouse.machinery.errors import APIError


def parse(method: str, path: str, **query: str):
    return parse_request_info(method, path, query)


def test_namespaced_object_get():
    info = parse("GET", "/api/v1/namespaces/ns1/pods/web")
    assert info.is_resource_request
    assert (info.api_prefix, info.api_group, info.api_version) == ("api", "", "v1")
    assert (info.verb, info.namespace, info.resource, info.name) == ("get", "ns1", "pods", "web")
    assert info.subresource == ""
    assert info.parts == ("pods", "web")


def test_collection_get_is_list_and_watch_query_makes_it_watch():
    assert parse("GET", "/apis/apps/v1/namespaces/a/deployments").verb == "list"
    assert parse("GET", "/apis/apps/v1/namespaces/a/deployments", watch="true").verb == "watch"
    assert parse("GET", "/apis/apps/v1/namespaces/a/deployments", watch="1").verb == "watch"
    assert parse("GET", "/apis/apps/v1/namespaces/a/deployments", watch="false").verb == "list"
    assert parse("GET", "/apis/apps/v1/namespaces/a/deployments", watch="0").verb == "list"


def test_watch_of_one_name_via_field_selector():
    info = parse("GET", "/api/v1/namespaces/a/pods", watch="true", fieldSelector="metadata.name=web")
    assert (info.verb, info.name) == ("watch", "web")
    listed = parse("GET", "/api/v1/namespaces/a/pods", fieldSelector="metadata.name==web")
    assert (listed.verb, listed.name) == ("list", "web")
    # A negated, unparsable, or non-path-segment name pins nothing.
    assert parse("GET", "/api/v1/pods", fieldSelector="metadata.name!=web").name == ""
    assert parse("GET", "/api/v1/pods", fieldSelector="metadata.name").name == ""
    assert parse("GET", "/api/v1/pods", fieldSelector="metadata.name=a%2Fb").name == ""


def test_namespace_itself():
    info = parse("GET", "/api/v1/namespaces/team-a")
    assert (info.resource, info.name, info.namespace) == ("namespaces", "team-a", "team-a")
    assert info.verb == "get"
    deleted = parse("DELETE", "/api/v1/namespaces/team-a")
    assert deleted.verb == "delete"
    listed = parse("GET", "/api/v1/namespaces")
    assert (listed.verb, listed.resource, listed.namespace) == ("list", "namespaces", "")


def test_namespace_status_and_finalize_are_subresources_of_the_namespace():
    status = parse("PUT", "/api/v1/namespaces/team-a/status")
    assert (status.resource, status.name, status.subresource) == ("namespaces", "team-a", "status")
    assert status.verb == "update"
    final = parse("PUT", "/api/v1/namespaces/team-a/finalize")
    assert (final.resource, final.subresource) == ("namespaces", "finalize")


def test_status_and_other_subresources():
    info = parse("PATCH", "/apis/apps/v1/namespaces/a/deployments/web/status")
    assert (info.verb, info.api_group, info.resource, info.name, info.subresource) == (
        "patch", "apps", "deployments", "web", "status",
    )
    log = parse("GET", "/api/v1/namespaces/a/pods/web/log")
    assert (log.verb, log.resource, log.subresource) == ("get", "pods", "log")
    binding = parse("POST", "/api/v1/namespaces/a/pods/web/binding")
    assert (binding.verb, binding.subresource) == ("create", "binding")


def test_write_verbs_and_deletecollection():
    assert parse("POST", "/api/v1/namespaces/a/pods").verb == "create"
    assert parse("PUT", "/api/v1/namespaces/a/pods/x").verb == "update"
    assert parse("PATCH", "/api/v1/namespaces/a/pods/x").verb == "patch"
    assert parse("DELETE", "/api/v1/namespaces/a/pods/x").verb == "delete"
    assert parse("DELETE", "/api/v1/namespaces/a/pods").verb == "deletecollection"
    assert parse("HEAD", "/api/v1/namespaces/a/pods/x").verb == "get"


def test_cluster_scoped_resource():
    info = parse("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/edit")
    assert (info.api_group, info.resource, info.name, info.namespace) == (
        "rbac.authorization.k8s.io", "clusterroles", "edit", "",
    )


def test_legacy_watch_prefix():
    info = parse("GET", "/api/v1/watch/namespaces/a/pods")
    assert (info.verb, info.namespace, info.resource, info.name) == ("watch", "a", "pods", "")
    one = parse("GET", "/apis/apps/v1/watch/namespaces/a/deployments/web")
    assert (one.verb, one.resource, one.name) == ("watch", "deployments", "web")
    everywhere = parse("GET", "/api/v1/watch/pods")
    assert (everywhere.verb, everywhere.namespace, everywhere.resource) == ("watch", "", "pods")


def test_path_verb_without_target_is_rejected():
    with pytest.raises(APIError) as caught:
        parse("GET", "/api/v1/watch")
    assert caught.value.code == 400


@pytest.mark.parametrize(
    "path",
    ["/", "/api", "/api/v1", "/apis", "/apis/apps", "/apis/apps/v1", "/version", "/healthz",
     "/openapi/v3/apis/apps/v1"],
)
def test_discovery_and_other_paths_are_non_resource(path):
    info = parse("GET", path)
    assert not info.is_resource_request
    assert (info.verb, info.path, info.resource, info.api_prefix) == ("get", path, "", "")


def test_non_resource_verb_is_lowercase_method():
    assert parse("POST", "/logs").verb == "post"
