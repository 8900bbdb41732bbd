"""`/openapi/v3/<group version>` over HTTP, as kube-openapi's handler3 answers client-go.

client-go reads the root's `serverRelativeURL`s (each with `?hash=`) and caches what they
return; the server must keep the hash, the ETag and the caching headers consistent, send a
client holding a stale hash to the current document, and answer a revalidation with 304.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import orjson
import pytest

from tests.inprocess import InProcessCluster, in_process_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessCluster]:
    with in_process_cluster(Path(tmp_path_factory.mktemp("openapi-v3"))) as running:
        yield running


def fetch(cluster: InProcessCluster, path: str, **headers: str
          ) -> tuple[int, Mapping[str, str], bytes]:
    async def go() -> tuple[int, Mapping[str, str], bytes]:
        async with cluster.session() as session, session.get(
                path, headers={k.replace("_", "-"): v for k, v in headers.items()},
                allow_redirects=False) as response:
            return response.status, response.headers.copy(), await response.read()

    return cluster.run(go())


def apps_url(cluster: InProcessCluster) -> str:
    status, _, body = fetch(cluster, "/openapi/v3")
    assert status == 200
    return orjson.loads(body)["paths"]["apis/apps/v1"]["serverRelativeURL"]


def test_the_advertised_hash_is_the_etag_and_makes_the_document_immutable(
        cluster: InProcessCluster) -> None:
    url = apps_url(cluster)
    status, headers, body = fetch(cluster, url, Accept="application/json")
    assert status == 200 and b"io.k8s.api.apps.v1.Deployment" in body
    assert headers["ETag"] == f'"{url.partition("?hash=")[2]}"'
    assert headers["Cache-Control"] == "public, immutable"
    assert headers["Expires"].endswith(" GMT") and headers["Vary"] == "Accept"
    assert headers["Content-Type"] == "application/json"
    # Without a hash: the same document and ETag, cached as any other API answer.
    status, plain, again = fetch(cluster, "/openapi/v3/apis/apps/v1")
    assert (status, again, plain["ETag"]) == (200, body, headers["ETag"])
    assert plain["Cache-Control"] == "no-cache, private"


def test_a_stale_hash_is_redirected_and_a_current_etag_revalidates(
        cluster: InProcessCluster) -> None:
    url = apps_url(cluster)
    status, headers, _ = fetch(cluster, "/openapi/v3/apis/apps/v1?hash=STALE")
    assert (status, headers["Location"]) == (301, url)
    status, headers, body = fetch(cluster, url, If_None_Match=f'"{url.partition("=")[2]}"')
    assert (status, body) == (304, b"")
    status, _, _ = fetch(cluster, url, If_None_Match='"something-else"')
    assert status == 200


def test_a_client_that_takes_only_protobuf_is_refused_with_406(
        cluster: InProcessCluster) -> None:
    status, headers, body = fetch(cluster, "/openapi/v3/apis/apps/v1",
                                  Accept="application/com.github.proto-openapi.spec.v3@v1.0"
                                         "+protobuf")
    assert (status, body, headers["Vary"]) == (406, b"", "Accept")
    status, _, _ = fetch(cluster, "/openapi/v3/apis/apps/v1", Accept="*/*")
    assert status == 200
