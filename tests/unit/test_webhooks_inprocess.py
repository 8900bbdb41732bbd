"""Admission webhooks end to end in one process: a real API server (tests/inprocess.py)
calling a real HTTPS webhook server (tests/webhook_server.py) on 127.0.0.1.

Each test's configuration selects only the objects labelled `hook: <its own value>`, so the
module's tests share one cluster and one webhook server without seeing each other's hooks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from pilothouse.apiserver.pki import ADMIN_USER
from tests.inprocess import InProcessCluster, create, free_port, in_process_cluster
from tests.webhook_server import WebhookServer, json_patch_response

GROUP_PATH = "/apis/admissionregistration.k8s.io/v1"
VALIDATING = f"{GROUP_PATH}/validatingwebhookconfigurations"
MUTATING = f"{GROUP_PATH}/mutatingwebhookconfigurations"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
#: How soon a stored configuration must be in force.
TAKES_EFFECT = 1.0


async def _decide(path: str, request: dict[str, Any]) -> dict[str, Any]:
    if path == "/deny":
        return {"allowed": False, "status": {"code": 400, "message": "this name is reserved"}}
    if path == "/deny-quietly":
        return {"allowed": False}
    if path == "/patch":
        return json_patch_response([{"op": "add", "path": "/metadata/labels/patched",
                                     "value": "yes"}])
    if path == "/slow":
        await asyncio.sleep(3)
    if path == "/warn":
        return {"allowed": True, "warnings": ["this configmap looks odd"]}
    return {"allowed": True}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessCluster]:
    with in_process_cluster(Path(tmp_path_factory.mktemp("webhooks"))) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def hooks(cluster: InProcessCluster) -> Iterator[WebhookServer]:
    server = WebhookServer(free_port(), dns_names=("hooks.default.svc",), decide=_decide)
    cluster.run(server.start())
    yield server
    cluster.run(server.stop())


def configuration(server: WebhookServer, kind: str, name: str, path: str, *,
                  operations: tuple[str, ...] = ("CREATE", "UPDATE"),
                  client: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """A configuration of one webhook, `<name>.pilothouse.test`, on ConfigMaps labelled
    `hook: <name>`, at `path` of the test server."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
        "metadata": {"name": name},
        "webhooks": [{
            "name": f"{name}.pilothouse.test",
            "clientConfig": client or {"url": server.url(path), "caBundle": server.ca_bundle},
            "rules": [{"operations": list(operations), "apiGroups": [""],
                       "apiVersions": ["v1"], "resources": ["configmaps"]}],
            "objectSelector": {"matchLabels": {"hook": name}},
            "sideEffects": "None", "admissionReviewVersions": ["v1"], **fields}],
    }


def config_map(name: str, hook: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {"hook": hook}}, "data": {"k": "v"}}


async def eventually(check: Callable[[], Awaitable[bool]], what: str,
                     timeout: float = TAKES_EFFECT) -> None:
    """`check` holds within `timeout` seconds: how fast a configuration takes effect."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.05)


async def post(session: aiohttp.ClientSession, path: str, body: dict[str, Any]
               ) -> tuple[int, dict[str, Any], CIMultiDictProxy[str]]:
    async with session.post(path, json=body) as response:
        return response.status, await response.json(), response.headers


def test_configurations_are_served_defaulted_and_printed(
        cluster: InProcessCluster, hooks: WebhookServer) -> None:
    async def scenario() -> None:
        async with cluster.session() as admin:
            service = {"service": {"namespace": "default", "name": "hooks"},
                       "caBundle": hooks.ca_bundle}
            stored = await create(admin, MUTATING, configuration(
                hooks, "MutatingWebhookConfiguration", "defaults", "/allow", client=service))
            hook = stored["webhooks"][0]
            assert (hook["failurePolicy"], hook["matchPolicy"], hook["timeoutSeconds"],
                    hook["reinvocationPolicy"], hook["namespaceSelector"]) == (
                "Fail", "Equivalent", 10, "Never", {})
            assert hook["rules"][0]["scope"] == "*"
            assert hook["clientConfig"]["service"]["port"] == 443
            async with admin.get(MUTATING, headers={"Accept": TABLE}) as response:
                table = await response.json()
            assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Webhooks", "Age"]
            assert ["defaults", 1] in [row["cells"][:2] for row in table["rows"]]
            async with admin.delete(f"{MUTATING}/defaults") as response:
                assert response.status == 200

    cluster.run(scenario())


@pytest.mark.parametrize(("change", "cause"), [
    ({"sideEffects": None}, "webhooks[0].sideEffects: Required value: must specify one of "
     "None, NoneOnDryRun"),
    ({"sideEffects": "Some"}, 'webhooks[0].sideEffects: Unsupported value: "Some": supported '
     'values: "None", "NoneOnDryRun"'),
    ({"timeoutSeconds": 31}, "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout "
     "value must be between 1 and 30 seconds"),
    ({"admissionReviewVersions": ["v2"]}, "webhooks[0].admissionReviewVersions: Invalid "
     "value: ['v2']: must include at least one of v1, v1beta1"),
    ({"name": "short"}, 'webhooks[0].name: Invalid value: "short": should be a domain with '
     "at least three segments separated by dots"),
    ({"clientConfig": {"url": "http://127.0.0.1/x", "service": {"namespace": "a", "name": "b"}}},
     "webhooks[0].clientConfig: Required value: exactly one of url or service is required"),
    ({"clientConfig": {"url": "http://127.0.0.1/x"}}, 'webhooks[0].clientConfig.url: Invalid '
     "value: \"http\": 'https' is the only allowed URL scheme; desired format: "
     "https://host[/path]"),
    ({"matchConditions": [{"name": "x", "expression": "true"}]}, "webhooks[0].matchConditions: "
     "Forbidden: matchConditions are CEL expressions, which this server does not evaluate"),
])
def test_invalid_configurations_are_refused(cluster: InProcessCluster, hooks: WebhookServer,
                                            change: dict[str, Any], cause: str) -> None:
    body = configuration(hooks, "ValidatingWebhookConfiguration", "invalid", "/allow")
    body["webhooks"][0].update(change)
    body["webhooks"][0] = {k: v for k, v in body["webhooks"][0].items() if v is not None}

    async def scenario() -> None:
        async with cluster.session() as admin:
            status, answer, _ = await post(admin, VALIDATING, body)
        assert status == 422, answer
        assert answer["message"].startswith(
            'ValidatingWebhookConfiguration.admissionregistration.k8s.io "invalid" is invalid')
        assert cause in answer["message"]

    cluster.run(scenario())


def test_duplicate_webhook_names_are_refused(cluster: InProcessCluster,
                                             hooks: WebhookServer) -> None:
    body = configuration(hooks, "ValidatingWebhookConfiguration", "twice", "/allow")
    body["webhooks"].append(dict(body["webhooks"][0]))

    async def scenario() -> None:
        async with cluster.session() as admin:
            status, answer, _ = await post(admin, VALIDATING, body)
        assert status == 422
        assert 'webhooks[1].name: Duplicate value: "twice.pilothouse.test"' in answer["message"]

    cluster.run(scenario())


def test_a_validating_webhook_sees_each_write(cluster: InProcessCluster,
                                              hooks: WebhookServer) -> None:
    async def scenario() -> None:
        async with cluster.session() as admin:
            await create(admin, VALIDATING, configuration(
                hooks, "ValidatingWebhookConfiguration", "seen", "/seen",
                operations=("CREATE", "UPDATE", "DELETE")))

            async def called() -> bool:
                name = f"seen-{len(hooks.reviews.get('/seen', []))}"
                status, _, _ = await post(admin, CONFIGMAPS, config_map(name, "seen"))
                assert status == 201
                return bool(hooks.reviews.get("/seen"))

            await eventually(called, "the new webhook is called")
            created = hooks.reviews["/seen"][-1]
            assert created["operation"] == "CREATE"
            assert created["kind"] == {"group": "", "version": "v1", "kind": "ConfigMap"}
            assert created["resource"] == {"group": "", "version": "v1",
                                           "resource": "configmaps"}
            assert created["requestKind"] == created["kind"]
            assert created["namespace"] == "default"
            assert created["userInfo"]["username"] == ADMIN_USER
            assert created["object"]["data"] == {"k": "v"}
            assert created["oldObject"] is None
            assert created["dryRun"] is False
            assert created["options"]["kind"] == "CreateOptions"
            name = created["name"]
            async with admin.patch(f"{CONFIGMAPS}/{name}", json={"data": {"k": "w"}},
                                   headers={"Content-Type": "application/merge-patch+json"}
                                   ) as response:
                assert response.status == 200
            updated = hooks.reviews["/seen"][-1]
            assert (updated["operation"], updated["object"]["data"],
                    updated["oldObject"]["data"]) == ("UPDATE", {"k": "w"}, {"k": "v"})
            async with admin.delete(f"{CONFIGMAPS}/{name}") as response:
                assert response.status == 200
            deleted = hooks.reviews["/seen"][-1]
            assert (deleted["operation"], deleted["object"], deleted["options"]["kind"]) == (
                "DELETE", None, "DeleteOptions")
            assert deleted["oldObject"]["metadata"]["name"] == name
            # An object the selector does not pick is not sent.
            count = len(hooks.reviews["/seen"])
            await create(admin, CONFIGMAPS, config_map("unseen", "someone-else"))
            assert len(hooks.reviews["/seen"]) == count

    cluster.run(scenario())


def test_a_denial_carries_the_webhooks_code_and_message(cluster: InProcessCluster,
                                                        hooks: WebhookServer) -> None:
    async def scenario() -> None:
        async with cluster.session() as admin:
            await create(admin, VALIDATING, configuration(
                hooks, "ValidatingWebhookConfiguration", "deny", "/deny"))
            await create(admin, VALIDATING, configuration(
                hooks, "ValidatingWebhookConfiguration", "deny-quietly", "/deny-quietly"))
            answers: dict[str, tuple[int, dict[str, Any]]] = {}

            async def refused(label: str) -> bool:
                status, answer, _ = await post(admin, CONFIGMAPS, config_map(label, label))
                answers[label] = (status, answer)
                return status != 201

            await eventually(lambda: refused("deny"), "the deny webhook is in force")
            status, answer = answers["deny"]
            assert status == 400
            assert answer["reason"] == "Forbidden"
            assert answer["message"] == (
                'configmaps "deny" is forbidden: admission webhook "deny.pilothouse.test" '
                "denied the request: this name is reserved")
            await eventually(lambda: refused("deny-quietly"), "the second webhook")
            status, answer = answers["deny-quietly"]
            assert status == 403
            assert answer["message"].endswith(
                'admission webhook "deny-quietly.pilothouse.test" denied the request without '
                "explanation")
            async with admin.get(f"{CONFIGMAPS}/deny") as response:
                assert response.status == 404

    cluster.run(scenario())


def test_a_mutating_webhook_patches_the_object(cluster: InProcessCluster,
                                               hooks: WebhookServer) -> None:
    async def scenario() -> None:
        async with cluster.session() as admin:
            await create(admin, MUTATING, configuration(
                hooks, "MutatingWebhookConfiguration", "patch", "/patch"))
            stored: dict[str, Any] = {}

            async def patched() -> bool:
                await admin.delete(f"{CONFIGMAPS}/patched")
                stored.update(await create(admin, CONFIGMAPS, config_map("patched", "patch")))
                return stored["metadata"]["labels"].get("patched") == "yes"

            await eventually(patched, "the patch webhook is in force")
            async with admin.get(f"{CONFIGMAPS}/patched") as response:
                again = await response.json()
            assert again["metadata"]["labels"] == {"hook": "patch", "patched": "yes"}

    cluster.run(scenario())


def test_an_ifneeded_webhook_is_called_again_after_a_later_patch(
        cluster: InProcessCluster, hooks: WebhookServer) -> None:
    """Configurations run by name: `again-a` (IfNeeded, no patch) before `again-b` (adds a
    label); b's change earns a a second call, which sees the label."""
    selector = {"matchLabels": {"hook": "again"}}

    async def scenario() -> None:
        async with cluster.session() as admin:
            await create(admin, MUTATING, configuration(
                hooks, "MutatingWebhookConfiguration", "again-a", "/again",
                reinvocationPolicy="IfNeeded", objectSelector=selector))
            await create(admin, MUTATING, configuration(
                hooks, "MutatingWebhookConfiguration", "again-b", "/patch",
                objectSelector=selector))

            async def both_called() -> bool:
                await admin.delete(f"{CONFIGMAPS}/again")
                hooks.reviews.pop("/again", None)
                stored = await create(admin, CONFIGMAPS, config_map("again", "again"))
                return stored["metadata"]["labels"].get("patched") == "yes" and \
                    len(hooks.reviews.get("/again", [])) == 2

            await eventually(both_called, "both webhooks are in force")
            first, second = hooks.reviews["/again"]
            assert "patched" not in first["object"]["metadata"]["labels"]
            assert second["object"]["metadata"]["labels"]["patched"] == "yes"

    cluster.run(scenario())


@pytest.mark.parametrize("policy", ["Fail", "Ignore"])
def test_a_webhook_that_times_out(cluster: InProcessCluster, hooks: WebhookServer,
                                  policy: str) -> None:
    name = f"slow-{policy.lower()}"

    async def scenario() -> None:
        async with cluster.session() as admin:
            await create(admin, VALIDATING, configuration(
                hooks, "ValidatingWebhookConfiguration", name, "/slow", timeoutSeconds=1,
                failurePolicy=policy))
            outcome: list[Any] = []

            async def called() -> bool:
                before = len(hooks.reviews.get("/slow", []))
                await admin.delete(f"{CONFIGMAPS}/{name}")
                started = time.monotonic()
                status, answer, _ = await post(admin, CONFIGMAPS, config_map(name, name))
                outcome[:] = [status, answer, time.monotonic() - started]
                return len(hooks.reviews.get("/slow", [])) > before

            # Each call in force takes the webhook's timeout, one second.
            await eventually(called, "the slow webhook is called", TAKES_EFFECT + 1.5)
            status, answer, elapsed = outcome
            assert 1 <= elapsed < 2.5
            if policy == "Ignore":
                assert status == 201, answer
                return
            assert status == 500
            assert answer["reason"] == "InternalError"
            assert answer["message"] == (
                f'Internal error occurred: failed calling webhook "{name}.pilothouse.test": '
                f'failed to call webhook: Post "{hooks.url("/slow")}?timeout=1s": context '
                "deadline exceeded")

    cluster.run(scenario())


def test_warnings_become_warning_headers(cluster: InProcessCluster,
                                         hooks: WebhookServer) -> None:
    async def scenario() -> None:
        async with cluster.session() as admin:
            await create(admin, VALIDATING, configuration(
                hooks, "ValidatingWebhookConfiguration", "warn", "/warn"))
            seen: list[str] = []

            async def warned() -> bool:
                await admin.delete(f"{CONFIGMAPS}/warned")
                status, _, headers = await post(admin, CONFIGMAPS, config_map("warned", "warn"))
                assert status == 201
                seen[:] = headers.getall("Warning", [])
                return bool(seen)

            await eventually(warned, "the warning webhook is in force")
            assert seen == ['299 - "this configmap looks odd"']

    cluster.run(scenario())


def test_a_service_reference_reaches_a_ready_endpoint(cluster: InProcessCluster,
                                                      hooks: WebhookServer) -> None:
    async def scenario() -> None:
        async with cluster.session() as admin:
            await create(admin, "/api/v1/namespaces/default/services", {
                "metadata": {"name": "hooks"},
                "spec": {"ports": [{"port": 443, "targetPort": hooks.port}]}})
            await create(admin, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", {
                "metadata": {"name": "hooks-1",
                             "labels": {"kubernetes.io/service-name": "hooks"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
                "ports": [{"port": hooks.port, "protocol": "TCP"}]})
            await create(admin, VALIDATING, configuration(
                hooks, "ValidatingWebhookConfiguration", "by-service", "",
                client={"service": {"namespace": "default", "name": "hooks", "path": "/deny"},
                        "caBundle": hooks.ca_bundle}))
            answers: list[dict[str, Any]] = []

            async def refused() -> bool:
                status, answer, _ = await post(admin, CONFIGMAPS,
                                               config_map("by-service", "by-service"))
                answers.append(answer)
                return status == 400

            await eventually(refused, "the service's webhook denies")
            assert answers[-1]["message"].endswith(
                'admission webhook "by-service.pilothouse.test" denied the request: this name '
                "is reserved")

    cluster.run(scenario())


def test_dry_run_requests_reach_webhooks_without_side_effects(
        cluster: InProcessCluster, hooks: WebhookServer) -> None:
    async def scenario() -> None:
        async with cluster.session() as admin:
            await create(admin, VALIDATING, configuration(
                hooks, "ValidatingWebhookConfiguration", "dry", "/dry",
                sideEffects="NoneOnDryRun"))

            async def called() -> bool:
                status, _, _ = await post(admin, f"{CONFIGMAPS}?dryRun=All",
                                          config_map("dry", "dry"))
                assert status == 201
                return bool(hooks.reviews.get("/dry"))

            await eventually(called, "the dry-run webhook is called")
            review = hooks.reviews["/dry"][-1]
            assert review["dryRun"] is True
            assert review["options"]["dryRun"] == ["All"]
            async with admin.get(f"{CONFIGMAPS}/dry") as response:
                assert response.status == 404

    cluster.run(scenario())


def test_a_broken_webhook_cannot_lock_out_its_configuration(
        cluster: InProcessCluster, hooks: WebhookServer) -> None:
    """A Fail webhook on every resource that cannot be reached: everything it matches is
    refused, but its configuration itself can still be changed and deleted."""
    dead = f"https://127.0.0.1:{free_port()}/gone"

    async def scenario() -> None:
        async with cluster.session() as admin:
            body = configuration(hooks, "ValidatingWebhookConfiguration", "lockout", "",
                                 client={"url": dead, "caBundle": hooks.ca_bundle},
                                 operations=("*",))
            body["metadata"]["labels"] = {"hook": "lockout"}
            body["webhooks"][0]["rules"] = [{"operations": ["*"], "apiGroups": ["*"],
                                             "apiVersions": ["*"], "resources": ["*/*"]}]
            await create(admin, VALIDATING, body)
            answers: list[dict[str, Any]] = []

            async def refused() -> bool:
                status, answer, _ = await post(admin, CONFIGMAPS, config_map("locked", "lockout"))
                answers.append(answer)
                return status == 500

            await eventually(refused, "the dead webhook is in force")
            assert f'failed to call webhook: Post "{dead}?timeout=10s": dial tcp 127.0.0.1:' \
                in answers[-1]["message"]
            assert "connect: connection refused" in answers[-1]["message"]
            async with admin.patch(f"{VALIDATING}/lockout",
                                   json={"metadata": {"annotations": {"fixed": "soon"}}},
                                   headers={"Content-Type": "application/merge-patch+json"}
                                   ) as response:
                assert response.status == 200
            async with admin.delete(f"{VALIDATING}/lockout") as response:
                assert response.status == 200

            async def admitted() -> bool:
                await admin.delete(f"{CONFIGMAPS}/locked")
                status, _, _ = await post(admin, CONFIGMAPS, config_map("locked", "lockout"))
                return status == 201

            await eventually(admitted, "the deleted webhook is out of force")

    cluster.run(scenario())
