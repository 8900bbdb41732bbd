"""A real HTTPS admission webhook for tests: an aiohttp server on 127.0.0.1.

It serves AdmissionReview v1 at any path with a certificate of its own CA (made here with
`machinery/certs.py`), valid for 127.0.0.1 and the DNS names a test asks for (a Service's
`<svc>.<ns>.svc`). What it answers is the test's `decide` coroutine, given the path and
the review's `request` and returning the `response` fields beyond `uid` (`allowed`,
`status`, `patch`, `warnings`, ...; it may sleep, to time out); every request it received
is kept in `reviews`, by path.
"""

from __future__ import annotations

import base64
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from pilothouse.machinery.certs import serving_chain

Decide = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


async def allow(_path: str, _request: dict[str, Any]) -> dict[str, Any]:
    return {"allowed": True}


class WebhookServer:
    """Start with `await start()` on the loop that should serve it; `stop()` on the same."""

    def __init__(self, port: int, *, dns_names: tuple[str, ...] = (),
                 decide: Decide = allow) -> None:
        self.port = port
        self.decide = decide
        self.reviews: dict[str, list[dict[str, Any]]] = {}
        self.ca_pem, cert_pem, key_pem = serving_chain("webhook", ips=["127.0.0.1"], dns_names=dns_names, days=1)
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory() as tmp:
            cert_file, key_file = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
            cert_file.write_bytes(cert_pem)
            key_file.write_bytes(key_pem)
            self._context.load_cert_chain(cert_file, key_file)
        self._runner: web.AppRunner | None = None

    @property
    def ca_bundle(self) -> str:
        """The caBundle a webhook configuration names: the CA, base64."""
        return base64.b64encode(self.ca_pem).decode()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._review)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port,
                          ssl_context=self._context).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _review(self, request: web.Request) -> web.Response:
        review = orjson.loads(await request.read())
        self.reviews.setdefault(request.path, []).append(review["request"])
        answer = await self.decide(request.path, review["request"])
        response = {"uid": review["request"]["uid"], **answer}
        return web.Response(body=orjson.dumps({"apiVersion": "admission.k8s.io/v1",
                                               "kind": "AdmissionReview",
                                               "response": response}),
                            content_type="application/json")


def json_patch_response(ops: list[dict[str, Any]]) -> dict[str, Any]:
    """An allowing response that patches the object."""
    return {"allowed": True, "patchType": "JSONPatch",
            "patch": base64.b64encode(orjson.dumps(ops)).decode()}


__all__ = ["WebhookServer", "allow", "json_patch_response"]
