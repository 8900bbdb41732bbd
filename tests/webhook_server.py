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
import ipaddress
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pilothouse.machinery.certs import certificate_builder

Decide = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def serving_certificate(dns_names: tuple[str, ...]) -> tuple[bytes, bytes, bytes]:
    """(CA PEM, certificate PEM, key PEM) for 127.0.0.1 and `dns_names`."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (certificate_builder(_name("webhook-test-ca"), _name("webhook-test-ca"),
                              ca_key.public_key(), days=1)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                       crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    names += [x509.DNSName(n) for n in dns_names]
    cert = (certificate_builder(_name("webhook"), ca.subject, key.public_key(), days=1)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return ca.public_bytes(pem), cert.public_bytes(pem), key_pem


async def allow(_path: str, _request: dict[str, Any]) -> dict[str, Any]:
    return {"allowed": True}


class WebhookServer:
    """Start with `await start()` on the loop that should serve it; `stop()` on the same."""

    def __init__(self, port: int, *, dns_names: tuple[str, ...] = (),
                 decide: Decide = allow) -> None:
        self.port = port
        self.decide = decide
        self.reviews: dict[str, list[dict[str, Any]]] = {}
        self.ca_pem, cert_pem, key_pem = serving_certificate(dns_names)
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


__all__ = ["WebhookServer", "allow", "json_patch_response", "serving_certificate"]
