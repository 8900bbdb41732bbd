"""The API server's side of logs, exec and port-forward: finding the kubelet, relaying to it.

The relay tests run a real API server in-process beside a fake kubelet (tests/inprocess.py)
and talk to it as kubectl does: WebSocket with a channel subprotocol for exec, streamed GET
for logs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from pilothouse.apiserver.nodeproxy import kubelet_endpoint, kubelet_error, select_container
from pilothouse.machinery.errors import APIError
from tests.inprocess import InProcessCluster, create, create_nodes, in_process_cluster, pod

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
PORT_FORWARD = "SPDY/3.1+portforward.k8s.io"
PODS = "/api/v1/namespaces/default/pods"

# -- pure parts ------------------------------------------------------------------------


def _pod(*containers: str, init: tuple[str, ...] = (), default: str | None = None) -> dict:
    body = pod("web", "n1", *containers, initContainers=[{"name": c} for c in init])
    if default:
        body["metadata"]["annotations"] = {"kubectl.kubernetes.io/default-container": default}
    return body


def _message(call) -> str:
    with pytest.raises(APIError) as raised:
        call()
    assert raised.value.code == 400
    return raised.value.message


def test_container_is_the_one_named_else_the_default_else_the_only_one() -> None:
    assert select_container(_pod("app", "sidecar"), "sidecar") == "sidecar"
    assert select_container(_pod("app", "sidecar", init=("setup",)), "setup") == "setup"
    assert select_container(_pod("app", "sidecar", default="sidecar"), "") == "sidecar"
    assert select_container(_pod("app"), "") == "app"


def test_container_errors_read_as_kube_apiservers() -> None:
    assert _message(lambda: select_container(_pod("app", "sidecar"), "")) == (
        "a container name must be specified for pod web, choose one of: [app sidecar]")
    assert _message(lambda: select_container(_pod("a", "b", init=("i",)), "")) == (
        "a container name must be specified for pod web, choose one of: [a b] "
        "or one of the init containers: [i]")
    assert _message(lambda: select_container(_pod("app"), "nope")) == (
        "container nope is not valid for pod web")
    # A default naming no container is ignored.
    assert _message(lambda: select_container(_pod("a", "b", default="gone"), "")).startswith(
        "a container name must be specified")


def _node(addresses: list[tuple[str, str]], port: object = 10250,
          runtime: str = "containerd://1.7") -> dict:
    return {"metadata": {"name": "n1"}, "status": {
        "addresses": [{"type": t, "address": a} for t, a in addresses],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {"containerRuntimeVersion": runtime}}}


def test_kubelet_is_at_the_internal_ip_else_the_hostname_on_the_advertised_port() -> None:
    endpoint = kubelet_endpoint(_node([("Hostname", "n1"), ("InternalIP", "10.0.0.5")]))
    assert (endpoint.host, endpoint.port) == ("10.0.0.5", 10250)
    assert kubelet_endpoint(_node([("Hostname", "n1.local")], 12345)).host == "n1.local"
    assert kubelet_endpoint(_node([("InternalIP", "::1")])).url("/stats/summary") == (
        "https://[::1]:10250/stats/summary")


def test_nodes_without_a_kubelet_say_so() -> None:
    assert _message(lambda: kubelet_endpoint(_node([("InternalIP", "10.64.0.1")],
                                                   runtime="hollow://"))) == (
        "node n1 has no kubelet endpoint (hollow node): logs and exec need a real node agent")
    assert "has no kubelet endpoint" in _message(
        lambda: kubelet_endpoint(_node([("InternalIP", "10.0.0.5")], port=0)))
    assert "no InternalIP or Hostname address" in _message(
        lambda: kubelet_endpoint(_node([("ExternalIP", "1.2.3.4")])))


def test_kubelet_refusals_keep_their_status_or_their_text() -> None:
    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 400,
              "reason": "BadRequest", "message": 'container "c" is waiting to start'}
    err = kubelet_error("n1", 400, orjson.dumps(status))
    assert (err.code, err.reason, err.message) == (400, "BadRequest",
                                                   'container "c" is waiting to start')
    err = kubelet_error("n1", 404, b'container not found ("c")\n')
    assert (err.code, err.reason, err.message) == (404, "NotFound", 'container not found ("c")')
    assert kubelet_error("n1", 500, b"boom").message == "Internal error occurred: boom"


# -- relaying through a running API server ---------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessCluster]:
    with in_process_cluster(Path(tmp_path_factory.mktemp("nodeproxy"))) as running:

        async def setup() -> None:
            async with running.session() as admin:
                await create_nodes(admin, running)
                await create(admin, PODS, pod("web", "n1", "app", "sidecar"))
                await create(admin, PODS, pod("solo", "n1", "app"))
                await create(admin, PODS, pod("pending", None, "app"))
                await create(admin, PODS, pod("sim", "hollow-1", "app"))

        running.run(setup())
        yield running


async def _refusal(session: aiohttp.ClientSession, path: str,
                   protocols: tuple[str, ...] = (V5, V4)) -> tuple[int, dict]:
    """The HTTP status and Status body of a WebSocket handshake the server refuses."""
    headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
               "Sec-WebSocket-Protocol": ", ".join(protocols)}
    async with session.get(path, headers=headers) as response:
        assert response.status != 101
        return response.status, orjson.loads(await response.read())


def test_exec_relays_channel_frames_both_ways(cluster: InProcessCluster) -> None:
    async def go() -> None:
        async with cluster.session() as admin:
            url = (f"{PODS}/web/exec?container=sidecar&command=cat&command=-n"
                   "&stdin=true&stdout=true&stderr=true")
            async with admin.ws_connect(url, protocols=(V5, V4)) as ws:
                assert ws.protocol == V5
                assert (await ws.receive_bytes()) == b"\x01cat -n\n"
                await ws.send_bytes(b"\x00hello")
                assert (await ws.receive_bytes()) == b"\x01hello"
                await ws.send_bytes(b"\xff\x00")  # v5: stdin is done
                error = await ws.receive_bytes()
                assert error[0] == 3
                assert orjson.loads(error[1:])["status"] == "Success"
                closing = await ws.receive()
                assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1000
        path, query, user = cluster.kubelet.requests[-1]
        assert path == "/exec/default/web/sidecar"
        assert query == [("command", "cat"), ("command", "-n"), ("stdin", "true"),
                         ("stdout", "true"), ("stderr", "true")]
        assert user == "kube-apiserver-kubelet-client"
        assert b"\x00hello" in cluster.kubelet.received

    cluster.run(go())


def test_exec_offers_the_clients_protocols_and_accepts_the_kubelets_choice(
        cluster: InProcessCluster) -> None:
    async def go() -> None:
        async with cluster.session() as admin, admin.ws_connect(
                f"{PODS}/solo/exec?command=date&stdout=true", protocols=(V4,)) as ws:
            assert ws.protocol == V4
            assert (await ws.receive_bytes()) == b"\x01date\n"

    cluster.run(go())


def test_port_forward_relays_spdy_bytes_verbatim(cluster: InProcessCluster) -> None:
    async def go() -> None:
        frames = [b"\x80\x03\x00\x01\x00\x00\x00\x0apayload-1", bytes(range(256)) * 64]
        async with cluster.session() as admin, admin.ws_connect(
                f"{PODS}/solo/portforward?ports=8080", protocols=(PORT_FORWARD,)) as ws:
            assert ws.protocol == PORT_FORWARD
            for frame in frames:
                await ws.send_bytes(frame)
                assert (await ws.receive_bytes()) == frame
        path, query, _ = next(r for r in reversed(cluster.kubelet.requests)
                              if r[0].startswith("/portForward"))
        assert (path, query) == ("/portForward/default/solo", [("ports", "8080")])

    cluster.run(go())


def test_a_kubelet_refusal_arrives_on_the_error_channel(cluster: InProcessCluster) -> None:
    async def go() -> None:
        async with cluster.session() as admin:
            await create(admin, PODS, pod("broken", "n1", "missing"))
            async with admin.ws_connect(f"{PODS}/broken/exec?command=ls&stdout=true",
                                        protocols=(V5, V4)) as ws:
                assert ws.protocol == V5
                error = await ws.receive_bytes()
                assert error[0] == 3
                status = orjson.loads(error[1:])
                assert (status["code"], status["message"]) == (
                    404, 'container not found ("missing")')

    cluster.run(go())


def test_streams_are_refused_before_the_handshake_with_a_status(
        cluster: InProcessCluster) -> None:
    async def go() -> None:
        async with cluster.session() as admin:
            code, status = await _refusal(admin, f"{PODS}/pending/exec?command=ls")
            assert (code, status["message"]) == (
                400, "pod pending does not have a host assigned")
            code, status = await _refusal(admin, f"{PODS}/sim/exec?command=ls")
            assert (code, status["message"]) == (
                400, "node hollow-1 has no kubelet endpoint (hollow node): logs and exec need "
                "a real node agent")
            code, status = await _refusal(admin, f"{PODS}/nope/exec?command=ls")
            assert (code, status["message"]) == (404, 'pods "nope" not found')
            code, status = await _refusal(admin, f"{PODS}/web/exec?command=ls")
            assert (code, status["reason"]) == (400, "BadRequest")
            assert "choose one of: [app sidecar]" in status["message"]

    cluster.run(go())


def test_spdy_upgrades_are_answered_with_a_status_that_says_use_websocket(
        cluster: InProcessCluster) -> None:
    async def go() -> None:
        async with cluster.session() as admin:
            async with admin.post(f"{PODS}/solo/exec?command=ls&stdout=true", headers={
                    "Connection": "Upgrade", "Upgrade": "SPDY/3.1",
                    "X-Stream-Protocol-Version": "v4.channel.k8s.io"}) as response:
                status = await response.json()
            assert response.status == 400
            assert "SPDY is not supported" in status["message"]
            assert "v5.channel.k8s.io" in status["message"]
            # The checks that come first still answer first, as kubectl's fallback needs.
            async with admin.post(f"{PODS}/pending/exec?command=ls", headers={
                    "Connection": "Upgrade", "Upgrade": "SPDY/3.1"}) as response:
                assert (await response.json())["message"] == (
                    "pod pending does not have a host assigned")

    cluster.run(go())


def test_websocket_exec_needs_create_as_well_as_get(cluster: InProcessCluster) -> None:
    async def go() -> None:
        async with cluster.session() as admin:
            role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                    "metadata": {"name": "peek", "namespace": "default"},
                    "rules": [{"apiGroups": [""], "resources": ["pods", "pods/exec"],
                               "verbs": ["get"]}]}
            await create(admin, "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles",
                         role)
            await create(admin,
                         "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
                         {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                          "metadata": {"name": "alice-peek", "namespace": "default"},
                          "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": "peek"},
                          "subjects": [{"apiGroup": "rbac.authorization.k8s.io",
                                        "kind": "User", "name": "alice"}]})
        async with cluster.session("alice", ()) as alice:
            for _ in range(100):  # the authorizer learns of the binding through a watch
                async with alice.get(f"{PODS}/solo") as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.05)
            code, status = await _refusal(alice, f"{PODS}/solo/exec?command=ls&stdout=true")
            assert (code, status["reason"]) == (403, "Forbidden")
            assert status["message"] == (
                'pods "solo" is forbidden: User "alice" cannot create resource "pods/exec" '
                'in API group "" in the namespace "default"')
            async with cluster.session() as admin, admin.patch(
                    "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles/peek",
                    json={"rules": [{"apiGroups": [""], "resources": ["pods", "pods/exec"],
                                     "verbs": ["get", "create"]}]},
                    headers={"Content-Type": "application/merge-patch+json"}) as response:
                assert response.status == 200
            for _ in range(100):
                try:
                    async with alice.ws_connect(f"{PODS}/solo/exec?command=id&stdout=true",
                                                protocols=(V5,)) as ws:
                        assert (await ws.receive_bytes()) == b"\x01id\n"
                        return
                except aiohttp.WSServerHandshakeError as refused:
                    assert refused.status == 403
                    await asyncio.sleep(0.05)
            raise AssertionError("alice never got to exec after being granted create")

    cluster.run(go())


def test_logs_stream_from_the_kubelet_with_its_query(cluster: InProcessCluster) -> None:
    async def go() -> None:
        async with cluster.session() as admin:
            async with admin.get(f"{PODS}/solo/log?tailLines=5&timestamps=true") as response:
                assert response.status == 200
                assert response.headers["content-type"].startswith("text/plain")
                assert await response.read() == b"line 1\nline 2\n"
            path, query, _ = cluster.kubelet.requests[-1]
            assert (path, query) == ("/containerLogs/default/solo/app",
                                     [("tailLines", "5"), ("timestamps", "true")])
            async with admin.get(f"{PODS}/web/log?container=sidecar") as response:
                assert await response.read() == b"line 1\nline 2\n"
            assert cluster.kubelet.requests[-1][0] == "/containerLogs/default/web/sidecar"

    cluster.run(go())


def test_following_logs_passes_chunks_through_until_the_kubelet_ends(
        cluster: InProcessCluster) -> None:
    kubelet = cluster.kubelet

    async def go() -> None:
        kubelet.follow_ended.clear()
        async with cluster.session() as admin, admin.get(
                f"{PODS}/solo/log?follow=true") as response:
            assert (await response.content.readuntil(b"line 2\n")) == b"line 1\nline 2\n"
            await kubelet.more_logs.put(b"line 3\n")
            assert (await response.content.readline()) == b"line 3\n"
            await kubelet.more_logs.put(None)
            assert (await response.content.read()) == b""
        await asyncio.wait_for(kubelet.follow_ended.wait(), 5)

    cluster.run(go())


def test_following_logs_stops_when_the_client_goes_away(cluster: InProcessCluster) -> None:
    kubelet = cluster.kubelet

    async def go() -> None:
        kubelet.follow_ended.clear()
        async with cluster.session() as admin:
            response = await admin.get(f"{PODS}/solo/log?follow=true")
            await response.content.readuntil(b"line 2\n")
            response.close()
        await asyncio.wait_for(kubelet.follow_ended.wait(), 5)

    cluster.run(go())


def test_log_errors(cluster: InProcessCluster) -> None:
    async def go() -> None:
        async with cluster.session() as admin:
            async with admin.get(f"{PODS}/pending/log") as response:
                # Not scheduled: an empty log, as kube-apiserver answers.
                assert (response.status, await response.read()) == (200, b"")
            async with admin.get(f"{PODS}/sim/log") as response:
                assert response.status == 400
                assert "(hollow node)" in (await response.json())["message"]
            async with admin.get(f"{PODS}/web/log") as response:
                assert response.status == 400
                assert (await response.json())["message"] == (
                    "a container name must be specified for pod web, choose one of: "
                    "[app sidecar]")
            async with admin.get(f"{PODS}/web/log?container=db") as response:
                assert (await response.json())["message"] == "container db is not valid for pod web"
            await create(admin, PODS, pod("gone", "n1", "missing"))
            async with admin.get(f"{PODS}/gone/log") as response:
                assert response.status == 404
                assert (await response.json())["message"] == 'container "missing" not found'
            async with admin.get(f"{PODS}/solo/log?tailLines=-1") as response:
                assert response.status == 400

    cluster.run(go())


def test_discovery_lists_the_stream_subresources(cluster: InProcessCluster) -> None:
    async def go() -> None:
        async with cluster.session() as admin, admin.get("/api/v1") as response:
            resources = {r["name"]: r for r in (await response.json())["resources"]}
        assert resources["pods/exec"]["kind"] == "PodExecOptions"
        assert resources["pods/exec"]["verbs"] == ["create", "get"]
        assert resources["pods/portforward"]["kind"] == "PodPortForwardOptions"
        assert resources["pods/attach"]["kind"] == "PodAttachOptions"

    cluster.run(go())
