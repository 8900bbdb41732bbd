"""The wire contract for bad input: the right Status code, and nothing changed."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from .conftest import Cluster


def call(cluster: Cluster, method: str, path: str, body: bytes | None = None,
         content_type: str = "application/json") -> tuple[int, Any]:
    token = (cluster.data_dir / "pki" / "tokens.csv").read_text().split(",")[0]
    context = ssl.create_default_context(cafile=str(cluster.data_dir / "pki" / "ca.crt"))
    request = urllib.request.Request(
        f"https://127.0.0.1:{cluster.port}{path}", data=body, method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


CM = "/api/v1/namespaces/default/configmaps"


@pytest.mark.parametrize(("body", "content_type", "code", "reason"), [
    (b'{"metadata": {"name": "x"', "application/json", 400, "BadRequest"),
    (b"metadata: [unclosed", "application/yaml", 400, "BadRequest"),
    (b'{"kind": "Pod", "metadata": {"name": "x"}}', "application/json", 400, "BadRequest"),
    (b'{"metadata": {"name": "Not_Valid"}}', "application/json", 422, "Invalid"),
    (b'{"metadata": {"name": "x"}}', "application/x-unknown", 415, "UnsupportedMediaType"),
    (b"{" + b'"data": {"k": "' + b"v" * (3 * 1024 * 1024) + b'"}}', "application/json", 413,
     "RequestEntityTooLarge"),
])
def test_bad_bodies_get_a_status_and_change_nothing(cluster: Cluster, body: bytes,
                                                    content_type: str, code: int,
                                                    reason: str) -> None:
    before = call(cluster, "GET", CM)[1]
    status, answer = call(cluster, "POST", CM, body, content_type)
    assert (status, answer["kind"], answer["code"], answer["reason"]) == (
        code, "Status", code, reason)
    after = call(cluster, "GET", CM)[1]
    assert [i["metadata"]["name"] for i in after["items"]] == \
        [i["metadata"]["name"] for i in before["items"]]


def test_unknown_resource_and_stale_update(cluster: Cluster) -> None:
    assert call(cluster, "GET", "/api/v1/namespaces/default/frobs")[0] == 404
    assert call(cluster, "GET", "/apis/nosuch.io/v1/things")[0] == 404
    status, created = call(cluster, "POST", CM, json.dumps(
        {"metadata": {"name": "cas"}, "data": {"v": "1"}}).encode())
    assert status == 201
    fresh = dict(created, data={"v": "2"})
    assert call(cluster, "PUT", f"{CM}/cas", json.dumps(fresh).encode())[0] == 200
    stale_status, stale = call(cluster, "PUT", f"{CM}/cas", json.dumps(
        dict(created, data={"v": "3"})).encode())
    assert (stale_status, stale["reason"]) == (409, "Conflict")
    assert call(cluster, "GET", f"{CM}/cas")[1]["data"] == {"v": "2"}


def test_deletecollection_with_a_selector(cluster: Cluster) -> None:
    for name, team in (("dc1", "a"), ("dc2", "a"), ("dc3", "b")):
        call(cluster, "POST", CM, json.dumps(
            {"metadata": {"name": name, "labels": {"team": team}}}).encode())
    status, _ = call(cluster, "DELETE", f"{CM}?labelSelector=team%3Da")
    assert status == 200
    left = {i["metadata"]["name"] for i in call(cluster, "GET", f"{CM}?labelSelector=team")[1]
            ["items"]}
    assert left == {"dc3"}


def test_watch_ends_at_its_timeout_and_rejects_bad_versions(cluster: Cluster) -> None:
    status, answer = call(cluster, "GET", f"{CM}?watch=1&resourceVersion=abc")
    assert (status, answer["reason"]) == (400, "BadRequest")
    listed = call(cluster, "GET", CM)[1]
    token = (cluster.data_dir / "pki" / "tokens.csv").read_text().split(",")[0]
    context = ssl.create_default_context(cafile=str(cluster.data_dir / "pki" / "ca.crt"))
    url = (f"https://127.0.0.1:{cluster.port}{CM}?watch=1&timeoutSeconds=1"
           f"&resourceVersion={listed['metadata']['resourceVersion']}")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    started = time.monotonic()
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        assert response.status == 200 and response.read() == b""  # nothing changed
    assert 0.9 <= time.monotonic() - started < 5
