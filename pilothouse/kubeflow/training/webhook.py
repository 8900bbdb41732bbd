"""The training operator's validating admission webhook: an HTTPS server and its registration.

A job the schema accepts can still be wrong in ways only the operator knows (an unknown
replica type, a Master with two replicas, no `pytorch` container); the real operator refuses
those in validating webhooks (`pkg/webhooks/`), and so does this one, with the rules of
`validation.py`. The API server calls it with an AdmissionReview v1 at the real paths
(`/validate-kubeflow-org-v1-<kind>`); a refusal is the Status of an Invalid error (422,
`details.causes` one per field), so `kubectl` prints `The PyTorchJob "x" is invalid: ...`.
(The real webhooks hand controller-runtime an aggregate of field errors, which it turns into
a 403 with the causes only in the message; the Invalid Status is what controller-runtime
sends for a validator that returns `apierrors.NewInvalid`, and what lets clients read the
causes.)

Each start makes a new CA and serving certificate (`machinery/certs.py`), valid for
127.0.0.1, the host the server is reached at, and `<service>.<namespace>.svc` when a Service
fronts it. Behind a Service, where every replica of the operator answers (the Service picks
any of them, while only the leader registers its caBundle), the replicas share one chain
kept in a `kubernetes.io/tls` Secret beside the Service, as the real operator's certificate
rotator keeps it (`training-operator-webhook-cert`: ca.crt, tls.crt, tls.key): the first
replica to start creates it, the others load it, and one that finds it expiring within
RENEW_BEFORE, unreadable or not valid for the Service's name replaces it (a leader started
earlier keeps serving its old chain until it restarts). Once leading, the operator creates or replaces the ValidatingWebhookConfiguration
named as the real manifest names it, `validator.training-operator.kubeflow.org`, with the
new caBundle and address: by default `clientConfig.url` on an ephemeral port of 127.0.0.1
(several clusters may share a machine), or a Service reference when the operator runs in a
cluster. A standby never writes it; shutting down leaves it in place, as the real operator
does, and the next leader replaces it.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import logging
import socket
import ssl
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from cryptography import x509

from ...client import ApiError, Client
from ...machinery.certs import serving_chain
from ...machinery.errors import invalid
from .crds import GROUP, VERSION, JobKind
from .validation import VALIDATED_KINDS, validate_job

log = logging.getLogger(__name__)

CONFIGURATION_NAME = "validator.training-operator.kubeflow.org"
ADMISSION_API = "admissionregistration.k8s.io/v1"
CONFIGURATIONS = "validatingwebhookconfigurations"
REVIEW_API_VERSION = "admission.k8s.io/v1"
#: A Service reference's port when none is given (the real Service's `443 -> 9443`).
SERVICE_PORT = 443
CERT_DAYS = 365
REGISTER_ATTEMPTS = 5
#: The Secret the replicas behind a Service share their serving chain in (the real default).
DEFAULT_SECRET_NAME = "training-operator-webhook-cert"
#: A shared certificate this close to expiring is replaced.
RENEW_BEFORE = datetime.timedelta(days=30)


def webhook_path(kind: JobKind) -> str:
    return f"/validate-{GROUP.replace('.', '-')}-{VERSION}-{kind.singular}"


def webhook_name(kind: JobKind) -> str:
    return f"validator.{kind.singular}.training-operator.kubeflow.org"


@dataclass(frozen=True)
class ServiceReference:
    """The Service that fronts the webhook server inside a cluster."""

    namespace: str
    name: str
    port: int = SERVICE_PORT

    @classmethod
    def parse(cls, value: str) -> ServiceReference:
        """`<namespace>/<name>[:<port>]`; a ValueError says what is wrong."""
        ref, _, port = value.partition(":")
        namespace, _, name = ref.partition("/")
        if not namespace or not name or (port and not port.isdigit()):
            raise ValueError(f"webhook service {value!r} is not <namespace>/<name>[:<port>]")
        return cls(namespace, name, int(port) if port else SERVICE_PORT)

    @property
    def dns_name(self) -> str:
        return f"{self.name}.{self.namespace}.svc"


def review_response(kind: JobKind, review: Mapping[str, Any]) -> dict[str, Any]:
    """The AdmissionReview that answers `review` for a job of `kind`."""
    request = review.get("request") or {}
    job = request.get("object") or {}
    old = request.get("oldObject") if request.get("operation") == "UPDATE" else None
    verdict = validate_job(kind, job, old)
    response: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": not verdict.causes}
    if verdict.causes:
        name = (job.get("metadata") or {}).get("name") or request.get("name") or ""
        status = invalid(kind.kind, name, verdict.causes, group=GROUP).status()
        response["status"] = {k: v for k, v in status.items() if k not in ("kind", "apiVersion")}
    else:
        response["status"] = {"metadata": {}, "code": 200}
    if verdict.warnings:
        response["warnings"] = verdict.warnings
    return {"apiVersion": REVIEW_API_VERSION, "kind": "AdmissionReview", "response": response}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


Chain = tuple[bytes, bytes, bytes]  # CA, certificate, key: PEM
#: The keys of a Secret holding a Chain, in order.
CHAIN_KEYS = ("ca.crt", "tls.crt", "tls.key")


def new_chain(host: str, service: ServiceReference | None) -> Chain:
    """A new CA and serving certificate for 127.0.0.1, `host` and the Service's name."""
    ips = {"127.0.0.1"} | ({host} if _is_ip(host) else set())
    dns = ({host} if not _is_ip(host) else set()) | ({service.dns_name} if service else set())
    return serving_chain("training-operator-webhook", ips=sorted(ips), dns_names=sorted(dns),
                         days=CERT_DAYS)


def _usable(data: Mapping[str, str], dns_name: str, now: datetime.datetime) -> Chain | None:
    """The chain in a Secret's data if it serves `dns_name` for RENEW_BEFORE yet."""
    try:
        ca, cert, key = (base64.b64decode(data[k]) for k in CHAIN_KEYS)
        parsed = x509.load_pem_x509_certificate(cert)
        names = parsed.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except (KeyError, ValueError, x509.ExtensionNotFound):
        return None
    if dns_name not in names or parsed.not_valid_after_utc - now < RENEW_BEFORE:
        return None
    return ca, cert, key


async def shared_chain(client: Client, service: ServiceReference, *, host: str,
                       secret_name: str = DEFAULT_SECRET_NAME) -> Chain:
    """The serving chain every replica behind `service` uses: the one in the Secret
    `secret_name` in the Service's namespace if usable, else a new one written there (a
    replica that loses the race to write it takes the winner's)."""
    for _ in range(REGISTER_ATTEMPTS):
        try:
            current: dict[str, Any] | None = await client.get(
                "v1", "secrets", secret_name, namespace=service.namespace)
        except ApiError as err:
            if not err.not_found:
                raise
            current = None
        now = datetime.datetime.now(datetime.UTC)
        if current is not None:
            found = _usable(current.get("data") or {}, service.dns_name, now)
            if found is not None:
                return found
        chain = new_chain(host, service)
        data = {key: base64.b64encode(pem).decode()
                for key, pem in zip(CHAIN_KEYS, chain, strict=True)}
        try:
            if current is None:
                await client.create("v1", "secrets", {
                    "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                    "metadata": {"name": secret_name, "namespace": service.namespace},
                    "data": data})
            else:
                await client.replace("v1", "secrets", {**current, "data": data})
        except ApiError as err:
            if err.conflict:
                continue
            raise
        log.info("wrote the webhooks' serving certificate to secret %s/%s",
                 service.namespace, secret_name)
        return chain
    raise RuntimeError(f"could not settle secret {service.namespace}/{secret_name}: it kept "
                       "changing under us")


class WebhookServer:
    """The HTTPS server answering the API server's reviews; `start` binds it (port 0: any
    free port, then `port` says which; an address it cannot bind is a ValueError), `stop`
    closes it. It serves `chain` (`shared_chain` behind a Service), else a new one."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0,
                 service: ServiceReference | None = None,
                 kinds: Iterable[JobKind] = VALIDATED_KINDS, chain: Chain | None = None
                 ) -> None:
        self.host = host
        self.port = port
        self.service = service
        self.kinds = tuple(kinds)
        self.ca_pem, cert_pem, key_pem = chain or new_chain(host, service)
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory() as tmp:  # the ssl module loads files only
            cert_file, key_file = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
            cert_file.write_bytes(cert_pem)
            key_file.write_bytes(key_pem)
            self._ssl.load_cert_chain(cert_file, key_file)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        for kind in self.kinds:
            app.router.add_post(webhook_path(kind), self._handler(kind))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:  # a flag's value the caller can fix: say which, no traceback
            sock.close()
            await self._runner.cleanup()
            raise ValueError(f"cannot serve the training webhooks on {self.host}:{self.port}: "
                             f"{exc.strerror}") from None
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock, ssl_context=self._ssl).start()
        log.info("training webhooks serving on https://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _handler(self, kind: JobKind) -> Any:
        async def review(request: web.Request) -> web.Response:
            try:
                body = orjson.loads(await request.read())
            except orjson.JSONDecodeError as exc:
                return web.Response(status=400, text=f"the body is not JSON: {exc}")
            if not isinstance(body, dict) or not isinstance(body.get("request"), dict):
                return web.Response(status=400, text="the body is not an AdmissionReview")
            answer = review_response(kind, body)
            if not answer["response"]["allowed"]:
                log.info("refused %s %s/%s: %s", kind.kind, body["request"].get("namespace"),
                         answer["response"]["status"]["details"]["name"],
                         answer["response"]["status"]["message"])
            return web.Response(body=orjson.dumps(answer), content_type="application/json")
        return review

    def configuration(self) -> dict[str, Any]:
        """The ValidatingWebhookConfiguration that points the API server here."""
        ca_bundle = base64.b64encode(self.ca_pem).decode()
        webhooks = []
        for kind in self.kinds:
            path = webhook_path(kind)
            client: dict[str, Any] = {"caBundle": ca_bundle}
            if self.service is not None:
                client["service"] = {"namespace": self.service.namespace,
                                     "name": self.service.name, "path": path,
                                     "port": self.service.port}
            else:
                host = f"[{self.host}]" if ":" in self.host else self.host
                client["url"] = f"https://{host}:{self.port}{path}"
            webhooks.append({
                "name": webhook_name(kind), "admissionReviewVersions": ["v1"],
                "clientConfig": client, "failurePolicy": "Fail", "sideEffects": "None",
                "rules": [{"apiGroups": [GROUP], "apiVersions": [VERSION],
                           "operations": ["CREATE", "UPDATE"], "resources": [kind.plural]}]})
        return {"apiVersion": ADMISSION_API, "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": CONFIGURATION_NAME,
                             "labels": {"control-plane": "kubeflow-training-operator"}},
                "webhooks": webhooks}


async def register(client: Client, configuration: Mapping[str, Any]) -> None:
    """Create the configuration, or replace the stored one's webhooks and labels with it."""
    name = configuration["metadata"]["name"]
    for _ in range(REGISTER_ATTEMPTS):
        try:
            current = await client.get(ADMISSION_API, CONFIGURATIONS, name)
        except ApiError as err:
            if not err.not_found:
                raise
            try:
                await client.create(ADMISSION_API, CONFIGURATIONS, dict(configuration))
            except ApiError as exc:
                if exc.conflict:
                    continue
                raise
            log.info("registered the validating webhooks %s", name)
            return
        metadata = current["metadata"]
        labels = {**(metadata.get("labels") or {}), **configuration["metadata"]["labels"]}
        updated = {**current, "metadata": {**metadata, "labels": labels},
                   "webhooks": configuration["webhooks"]}
        try:
            await client.replace(ADMISSION_API, CONFIGURATIONS, updated)
        except ApiError as exc:
            if exc.conflict:
                continue
            raise
        log.info("updated the validating webhooks %s", name)
        return
    raise RuntimeError(f"could not register {name}: it kept changing under us")


async def unregister(client: Client) -> None:
    """Remove the configuration, so that running without the webhook does not leave the
    API server calling one nobody serves (failurePolicy Fail would refuse every job)."""
    try:
        await client.delete(ADMISSION_API, CONFIGURATIONS, CONFIGURATION_NAME)
    except ApiError as err:
        if not err.not_found:
            raise
        return
    log.info("removed the validating webhooks %s", CONFIGURATION_NAME)
