"""pods/proxy, services/proxy and nodes/proxy: finding the target, relaying to it.

The relay tests run a real API server in-process (tests/inprocess.py) with a small HTTP
server on 127.0.0.1 standing in for a pod: a Pod whose status.podIP is 127.0.0.1 and a
Service whose EndpointSlice points there. nodes/proxy reaches the fake kubelet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from yarl import URL

from pilothouse.apiserver.proxy import (
    ProxyID,
    Target,
    pod_target,
    relayed_request_headers,
    rewrite_location,
    service_target,
)
from pilothouse.machinery.errors import APIError
from tests.inprocess import (
    InProcessCluster,
    create,
    create_nodes,
    free_port,
    in_process_cluster,
    pod,
)

PODS = "/api/v1/namespaces/default/pods"
SERVICES = "/api/v1/namespaces/default/services"
SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
RBAC = "/apis/rbac.authorization.k8s.io/v1/namespaces/default"

# -- pure parts ------------------------------------------------------------------------


def _error(call: Any) -> APIError:
    with pytest.raises(APIError) as raised:
        call()
    return raised.value


def test_proxy_names_carry_an_optional_port_and_scheme() -> None:
    assert ProxyID.parse("web", "pod") == ProxyID("", "web", "")
    assert ProxyID.parse("web:8080", "pod") == ProxyID("", "web", "8080")
    assert ProxyID.parse("https:web:443", "pod") == ProxyID("https", "web", "443")
    for bad in ("ftp:web:21", ":8080", "a:b:c:d"):
        err = _error(lambda bad=bad: ProxyID.parse(bad, "pod"))
        assert (err.code, err.message) == (400, f'invalid pod request "{bad}"')


def _pod_with(ports: list[dict], ip: str | None = "127.0.0.9") -> dict:
    body = pod("web", None, "app")
    body["spec"]["containers"][0]["ports"] = ports
    if ip:
        body["status"] = {"podIP": ip, "podIPs": [{"ip": ip}]}
    return body


def test_a_pod_is_reached_on_its_ip_and_the_port_asked_for_else_its_first_port() -> None:
    ports = [{"name": "http", "containerPort": 8080}, {"name": "admin", "containerPort": 9090}]
    assert pod_target(_pod_with(ports), ProxyID("", "web", "")) == Target("", "127.0.0.9", 8080)
    assert pod_target(_pod_with(ports), ProxyID("", "web", "9000")).port == 9000
    assert pod_target(_pod_with(ports), ProxyID("", "web", "admin")).port == 9090
    assert pod_target(_pod_with([]), ProxyID("https", "web", "")) == Target(
        "https", "127.0.0.9", 80)
    url = Target("", "::1", 8080).url("/a%2Fb", "x=%2F")
    assert (url.scheme, url.host, url.port, url.raw_path_qs) == ("http", "::1", 8080,
                                                                  "/a%2Fb?x=%2F")


def test_a_pod_without_an_ip_or_port_is_refused_with_a_reason() -> None:
    err = _error(lambda: pod_target(_pod_with([], ip=None), ProxyID("", "web", "")))
    assert (err.code, err.reason) == (400, "BadRequest")
    assert err.message.startswith('address not allowed: pod "web" has no IP yet')
    err = _error(lambda: pod_target(_pod_with([]), ProxyID("", "web", "nope")))
    assert err.message.startswith('invalid port "nope" for pod "web"')


def _slice(port_name: str, port: int, *endpoints: tuple[str, bool | None]) -> dict:
    return {"ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {} if ready is None
                           else {"ready": ready}} for ip, ready in endpoints]}


def test_a_service_port_resolves_to_a_ready_endpoints_port() -> None:
    service = {"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080},
                                  {"name": "admin", "port": 9000, "targetPort": 9090}]}}
    slices = [_slice("http", 8080, ("127.0.0.5", False), ("127.0.0.6", True)),
              _slice("admin", 9090, ("127.0.0.6", None))]

    def first(candidates: list[Target]) -> Target:
        return candidates[0]

    assert service_target(service, slices, ProxyID("", "web", "80"), choose=first) == Target(
        "", "127.0.0.6", 8080)
    assert service_target(service, slices, ProxyID("", "web", "admin"), choose=first) == Target(
        "", "127.0.0.6", 9090)
    assert _error(lambda: service_target(service, slices, ProxyID("", "web", "81"))).message == (
        'no service port 81 found for service "web"')
    # No port asked for: the unnamed Service port, which this Service does not have.
    err = _error(lambda: service_target(service, slices, ProxyID("", "web", "")))
    assert (err.code, err.reason, err.message) == (
        503, "ServiceUnavailable", 'no endpoints available for service "web"')
    not_ready = [_slice("http", 8080, ("127.0.0.5", False))]
    assert _error(lambda: service_target(service, not_ready, ProxyID("", "web", "80"))).message \
        == 'no endpoints available for service "web"'


def test_hop_by_hop_headers_and_credentials_stay_behind() -> None:
    headers = {"authorization": "Bearer secret", "connection": "keep-alive, x-private",
               "x-private": "1", "keep-alive": "timeout=5", "te": "trailers",
               "impersonate-user": "root", "host": "127.0.0.1:6443", "content-length": "3",
               "accept": "text/html", "cookie": "a=b"}
    assert relayed_request_headers(headers) == {"accept": "text/html", "cookie": "a=b"}


def test_redirects_to_the_target_stay_under_the_proxy_path() -> None:
    prefix = "/api/v1/namespaces/default/pods/web/proxy"
    target = Target("", "127.0.0.9", 8080)

    def rewrite(location: str) -> str:
        return rewrite_location(location, prefix=prefix, target=target,
                                request_host="127.0.0.1:8001")

    assert rewrite("/docs/") == f"{prefix}/docs/"
    assert rewrite("http://127.0.0.9:8080/a?b=1") == f"{prefix}/a?b=1"
    assert rewrite("http://127.0.0.1:8001/a") == f"{prefix}/a"
    assert rewrite(f"{prefix}/already") == f"{prefix}/already"
    assert rewrite("https://example.com/x") == "https://example.com/x"
    assert rewrite("relative/path") == "relative/path"


# -- relaying through a running API server ---------------------------------------------


class StandInPod:
    """An HTTP server on 127.0.0.1 that answers with what it was asked."""

    def __init__(self) -> None:
        self.port = 0
        self.release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/status/{code}", self._status)
        app.router.add_get("/stream", self._stream)
        app.router.add_get("/moved", self._moved)
        app.router.add_route("*", "/{tail:.*}", self._echo)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _echo(self, request: web.Request) -> web.Response:
        body = {"method": request.method, "path": request.raw_path,
                "body": (await request.read()).decode(),
                "headers": {k.lower(): v for k, v in request.headers.items()}}
        return web.json_response(body, headers={"X-Pod": "web", "Set-Cookie": "a=1"})

    async def _status(self, request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="from the pod\n",
                            headers={"Retry-After": "7"})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = "text/plain"
        await response.prepare(request)
        await response.write(b"first\n")
        await asyncio.wait_for(self.release.wait(), 10)
        await response.write(b"second\n")
        await response.write_eof()
        return response

    async def _moved(self, request: web.Request) -> web.Response:
        return web.Response(status=301, headers={"Location": "/moved/"})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessCluster]:
    with in_process_cluster(Path(tmp_path_factory.mktemp("proxy"))) as running:

        async def setup() -> None:
            async with running.session() as admin:
                await create_nodes(admin, running)
                await create(admin, PODS, pod("pending", None, "app"))
                await create(admin, SERVICES, {"metadata": {"name": "empty"}, "spec": {
                    "selector": {"app": "none"}, "ports": [{"port": 80}]}})

        running.run(setup())
        yield running


@pytest.fixture(scope="module")
def stand_in(cluster: InProcessCluster) -> Iterator[StandInPod]:
    """The stand-in pod, as Pod `web` (IP 127.0.0.1, its port the first container port)
    and Service `web` (port 8080, named http) with an EndpointSlice pointing at it."""
    server = StandInPod()

    async def setup() -> None:
        await server.start()
        async with cluster.session() as admin:
            web_pod = pod("web", None, "app", labels={"app": "web"})
            web_pod["spec"]["containers"][0]["ports"] = [
                {"name": "http", "containerPort": server.port}]
            await create(admin, PODS, web_pod)
            await _set_pod_ip(admin, "web", "127.0.0.1")
            await create(admin, SERVICES, {"metadata": {"name": "web"}, "spec": {
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 8080, "targetPort": "http"}]}})
            await create(admin, SLICES, {
                "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
                "ports": [{"name": "http", "port": server.port, "protocol": "TCP"}]})

    cluster.run(setup())
    try:
        yield server
    finally:
        cluster.run(server.stop())


async def _set_pod_ip(session: aiohttp.ClientSession, name: str, ip: str) -> None:
    async with session.patch(f"{PODS}/{name}/status",
                             data=orjson.dumps({"status": {"podIP": ip, "podIPs": [{"ip": ip}]}}),
                             headers={"Content-Type": "application/merge-patch+json"}) as response:
        assert response.status == 200, await response.text()


def test_get_and_post_reach_the_pod_with_path_query_body_and_headers(
        cluster: InProcessCluster, stand_in: StandInPod) -> None:
    async def go() -> None:
        async with cluster.session() as admin:
            async with admin.get(URL(f"{PODS}/web/proxy/some/where%20else/?q=1&q=2&x=a%2Fb",
                                     encoded=True),
                                 headers={"X-Custom": "kept", "Accept": "application/json"}
                                 ) as response:
                assert response.status == 200
                assert response.headers["X-Pod"] == "web"
                assert response.headers["Set-Cookie"] == "a=1"
                seen = await response.json()
            assert seen["method"] == "GET"
            assert seen["path"] == "/some/where%20else/?q=1&q=2&x=a%2Fb"
            assert seen["headers"]["x-custom"] == "kept"
            assert "authorization" not in seen["headers"]
            assert seen["headers"]["x-forwarded-uri"] == (
                f"{PODS}/web/proxy/some/where%20else/")
            assert seen["headers"]["host"] == f"127.0.0.1:{stand_in.port}"
            async with admin.post(f"{PODS}/web:{stand_in.port}/proxy/submit",
                                  data=b"name=value", headers={"Content-Type": "text/plain"}
                                  ) as response:
                seen = await response.json()
            assert (seen["method"], seen["path"], seen["body"]) == ("POST", "/submit",
                                                                   "name=value")
            assert seen["headers"]["content-type"] == "text/plain"
            for method in ("PUT", "PATCH", "DELETE"):
                async with admin.request(method, f"{PODS}/http:web:{stand_in.port}/proxy"
                                         ) as response:
                    seen = await response.json()
                assert (seen["method"], seen["path"]) == (method, "/")

    cluster.run(go())


def test_the_pods_status_code_headers_and_redirects_come_back(
        cluster: InProcessCluster, stand_in: StandInPod) -> None:
    async def go() -> None:
        async with cluster.session() as admin:
            for code in (201, 404, 418, 503):
                async with admin.get(f"{PODS}/web/proxy/status/{code}") as response:
                    assert response.status == code
                    assert response.headers["Retry-After"] == "7"
                    assert await response.read() == b"from the pod\n"
            async with admin.head(f"{PODS}/web/proxy/status/200") as response:
                assert response.status == 200
                assert await response.read() == b""
            async with admin.get(f"{PODS}/web/proxy/moved", allow_redirects=False) as response:
                assert response.status == 301
                assert response.headers["Location"] == f"{PODS}/web/proxy/moved/"

    cluster.run(go())


def test_a_pods_answer_is_streamed_as_it_comes(cluster: InProcessCluster,
                                               stand_in: StandInPod) -> None:
    async def go() -> None:
        stand_in.release.clear()
        async with cluster.session() as admin, admin.get(f"{PODS}/web/proxy/stream") as response:
            assert response.status == 200
            # The pod holds back the rest until this line has arrived through the proxy.
            assert await asyncio.wait_for(response.content.readline(), 5) == b"first\n"
            stand_in.release.set()
            assert await response.content.read() == b"second\n"

    cluster.run(go())


def test_services_proxy_reaches_a_ready_endpoint_by_port_name_or_number(
        cluster: InProcessCluster, stand_in: StandInPod) -> None:
    async def go() -> None:
        async with cluster.session() as admin:
            for name in ("web:8080", "web:http", "http:web:8080"):
                async with admin.get(f"{SERVICES}/{name}/proxy/hello?x=1") as response:
                    assert response.status == 200, await response.text()
                    assert (await response.json())["path"] == "/hello?x=1"
            async with admin.get(f"{SERVICES}/web:9999/proxy/") as response:
                assert response.status == 503
                assert (await response.json())["message"] == (
                    'no service port 9999 found for service "web"')
            async with admin.get(f"{SERVICES}/empty/proxy/") as response:
                status = await response.json()
            assert (response.status, status["reason"], status["message"]) == (
                503, "ServiceUnavailable", 'no endpoints available for service "empty"')

    cluster.run(go())


def test_unreachable_targets_and_pods_without_ips_are_refused(
        cluster: InProcessCluster, stand_in: StandInPod) -> None:
    closed = free_port()

    async def go() -> None:
        async with cluster.session() as admin:
            async with admin.get(f"{PODS}/web:{closed}/proxy/") as response:
                status = await response.json()
            assert (response.status, status["reason"]) == (503, "ServiceUnavailable")
            assert status["message"] == (
                f"error trying to reach service: dial tcp 127.0.0.1:{closed}: connect: "
                "connection refused")
            async with admin.get(f"{PODS}/pending/proxy/") as response:
                status = await response.json()
            assert (response.status, status["reason"]) == (400, "BadRequest")
            assert status["message"].startswith('address not allowed: pod "pending" has no IP')
            async with admin.get(f"{PODS}/nope/proxy/") as response:
                assert (response.status, (await response.json())["message"]) == (
                    404, 'pods "nope" not found')
            async with admin.get(f"{PODS}/a:b:c:d/proxy/") as response:
                assert (response.status, (await response.json())["message"]) == (
                    400, 'invalid pod request "a:b:c:d"')

    cluster.run(go())


def test_nodes_proxy_reaches_the_kubelet_with_the_client_certificate(
        cluster: InProcessCluster) -> None:
    async def go() -> None:
        cluster.kubelet.summary = {"node": {"nodeName": "n1"}, "pods": []}
        async with cluster.session() as admin:
            async with admin.get("/api/v1/nodes/n1/proxy/stats/summary") as response:
                assert response.status == 200
                assert (await response.json())["node"]["nodeName"] == "n1"
            assert cluster.kubelet.requests[-1] == (
                "/stats/summary", [], "kube-apiserver-kubelet-client")
            async with admin.get("/api/v1/nodes/n1/proxy/no/such/path") as response:
                assert response.status == 404  # the kubelet's own answer
            async with admin.get("/api/v1/nodes/hollow-1/proxy/stats/summary") as response:
                status = await response.json()
            assert (response.status, status["message"]) == (
                400, "node hollow-1 has no kubelet endpoint (hollow node): logs and exec need "
                "a real node agent")

    cluster.run(go())


def test_rbac_maps_each_method_to_a_verb_on_the_proxy_subresource(
        cluster: InProcessCluster, stand_in: StandInPod) -> None:
    async def go() -> None:
        async with cluster.session() as admin:
            await create(admin, f"{RBAC}/roles", {
                "metadata": {"name": "proxy-reader", "namespace": "default"},
                "rules": [{"apiGroups": [""], "resources": ["pods/proxy"], "verbs": ["get"]}]})
            await create(admin, f"{RBAC}/rolebindings", {
                "metadata": {"name": "bob-proxy-reader", "namespace": "default"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                            "name": "proxy-reader"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                              "name": "bob"}]})
        async with cluster.session("bob", ()) as bob:
            for _ in range(100):  # the authorizer learns of the binding through a watch
                async with bob.get(f"{PODS}/web/proxy/") as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.05)
            assert response.status == 200
            async with bob.post(f"{PODS}/web/proxy/", data=b"x") as response:
                status = await response.json()
            assert (response.status, status["message"]) == (
                403, 'pods "web" is forbidden: User "bob" cannot create resource "pods/proxy" '
                'in API group "" in the namespace "default"')
            async with bob.get(f"{SERVICES}/web:8080/proxy/") as response:
                assert response.status == 403

    cluster.run(go())


def test_discovery_lists_the_proxy_subresources(cluster: InProcessCluster) -> None:
    async def go() -> None:
        async with cluster.session() as admin, admin.get("/api/v1") as response:
            resources = {r["name"]: r for r in (await response.json())["resources"]}
        for name, kind in (("pods/proxy", "PodProxyOptions"),
                           ("services/proxy", "ServiceProxyOptions"),
                           ("nodes/proxy", "NodeProxyOptions")):
            assert resources[name]["kind"] == kind
            assert resources[name]["verbs"] == ["create", "delete", "get", "patch", "update"]
        assert resources["nodes/proxy"]["namespaced"] is False

    cluster.run(go())
