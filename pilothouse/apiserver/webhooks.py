"""Dynamic admission: calling the webhooks that Mutating/ValidatingWebhookConfigurations name.

Operators (Kubeflow's training operator among them) check and complete their objects in
webhooks of their own, so the API server must call them as kube-apiserver's
MutatingAdmissionWebhook and ValidatingAdmissionWebhook plugins do
(`apiserver/pkg/admission/plugin/webhook`). The registry asks this module twice per write:

- `mutate` after the built-in mutating plugins, before validation: matching mutating
  webhooks are called one after another (configurations by name, then in their order);
  each may answer a JSONPatch, applied before the next is called. A webhook with
  reinvocationPolicy IfNeeded is called once more if a later one changed the object.
- `validate` after the kind's validation, before ResourceQuota charges: matching
  validating webhooks are called in parallel; any denial refuses the write.

A webhook matches a request by its rules (operation, group, version, resource and
subresource with `*` wildcards, scope; matchPolicy Equivalent also accepts another served
version of the same resource), its namespaceSelector (the labels of the request's
namespace) and its objectSelector (the old or new object's labels). The configuration
kinds themselves are never sent to webhooks, so a broken webhook cannot lock out the
fix. CONNECT requests (exec, attach, port-forward) are not sent to webhooks.

The configurations are held in memory, fed by the watch cache (`follow`), so a change
takes effect as soon as it is stored and no request pays a store read for them. The
write path asks one dict, keyed by (group, resource), for the webhooks that could match;
with no webhook configured, or none for that resource, that is all a write costs.

Calls are AdmissionReview v1 over HTTPS, the server verified against the webhook's
caBundle (the system roots if it has none). A service reference is resolved to a ready
endpoint of the Service's EndpointSlices (the proxy's `service_target`), reached by
address and verified as `<service>.<namespace>.svc`. Failures read as upstream's:
a denial is `<resource> "<name>" is forbidden: admission webhook "<webhook>" denied the
request: <message>` with the webhook's code (403 when it gives none); a call that fails
or times out is a 500 `failed calling webhook "<webhook>": failed to call webhook: ...`
under failurePolicy Fail, and is logged and skipped under Ignore.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import os
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from ..machinery import errors
from ..machinery.meta import new_uid
from ..machinery.patch import json_patch
from ..machinery.selectors import LabelSelector, label_selector_from_dict, parse_label_selector
from .admission import AdmissionRequest
from .proxy import SERVICE_NAME_LABEL, ProxyID, service_target
from .special import _user_info_dict

if TYPE_CHECKING:
    from .registry import ResourceTable
    from .registry.generic import GenericRegistry, WriteOptions
    from .watchcache import WatchCache

log = logging.getLogger(__name__)

GROUP = "admissionregistration.k8s.io"
MUTATING = "mutatingwebhookconfigurations"
VALIDATING = "validatingwebhookconfigurations"
PREFIX = f"/registry/{GROUP}/"
#: Kinds never sent to webhooks (upstream's IsExemptAdmissionConfigurationResource).
EXEMPT_RESOURCES = frozenset({MUTATING, VALIDATING, "validatingadmissionpolicies",
                              "validatingadmissionpolicybindings", "mutatingadmissionpolicies",
                              "mutatingadmissionpolicybindings"})
REVIEW_API_VERSION = "admission.k8s.io/v1"
NO_SIDE_EFFECTS_ON_DRY_RUN = ("None", "NoneOnDryRun")


class CallError(Exception):
    """The webhook could not be asked or answered nonsense (upstream's ErrCallingWebhook):
    failurePolicy decides whether the request fails."""

    def __init__(self, webhook: str, reason: str) -> None:
        super().__init__(f'failed calling webhook "{webhook}": {reason}')


@dataclass(frozen=True)
class Rule:
    """One RuleWithOperations, compiled: resources split into (resource, subresource)."""

    operations: frozenset[str]
    groups: frozenset[str]
    versions: frozenset[str]
    resources: tuple[tuple[str, str], ...]
    scope: str

    @classmethod
    def from_dict(cls, rule: Mapping[str, Any]) -> Rule:
        resources = tuple(tuple(str(r).partition("/")[::2]) for r in rule.get("resources") or ())
        return cls(frozenset(rule.get("operations") or ()), frozenset(rule.get("apiGroups") or ()),
                   frozenset(rule.get("apiVersions") or ()),
                   resources,  # type: ignore[arg-type]
                   rule.get("scope") or "*")

    def may_match(self, group: str, plural: str) -> bool:
        """Whether some request on this resource could match: what the index keeps."""
        return ("*" in self.groups or group in self.groups) and any(
            res in ("*", plural) for res, _ in self.resources)

    def matches(self, request: AdmissionRequest, version: str) -> bool:
        res = request.resource
        return (("*" in self.operations or request.operation in self.operations)
                and ("*" in self.groups or res.group in self.groups)
                and ("*" in self.versions or version in self.versions)
                and any(r in ("*", res.plural) and s in ("*", request.subresource)
                        for r, s in self.resources)
                and self._scope_matches(request))

    def _scope_matches(self, request: AdmissionRequest) -> bool:
        if self.scope == "*":
            return True
        is_namespace = (request.resource.group, request.resource.plural) == ("", "namespaces")
        if self.scope == "Namespaced":
            return not is_namespace and bool(request.namespace)
        return is_namespace or not request.namespace


@dataclass(frozen=True)
class Webhook:
    """One webhook of a stored configuration, compiled for matching and calling."""

    configuration: str
    name: str
    mutating: bool
    rules: tuple[Rule, ...]
    failure_policy: str = "Fail"
    match_policy: str = "Equivalent"
    namespace_selector: LabelSelector = field(default_factory=LabelSelector)
    object_selector: LabelSelector = field(default_factory=LabelSelector)
    side_effects: str = "None"
    timeout: int = 10
    reinvoke: bool = False
    url: str = ""
    service: Mapping[str, Any] | None = None
    ca_bundle: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.configuration, self.name)

    def may_match(self, group: str, plural: str) -> bool:
        return any(rule.may_match(group, plural) for rule in self.rules)


def compile_configuration(config: Mapping[str, Any], *, mutating: bool) -> list[Webhook]:
    """The webhooks of a stored (defaulted, validated) configuration."""
    out = []
    name = (config.get("metadata") or {}).get("name", "")
    for hook in config.get("webhooks") or ():
        client = hook.get("clientConfig") or {}
        try:
            namespace_selector = label_selector_from_dict(hook.get("namespaceSelector") or {})
            object_selector = label_selector_from_dict(hook.get("objectSelector") or {})
        except ValueError:
            log.warning("webhook %s of %s has a selector that does not parse; skipped",
                        hook.get("name"), name)
            continue
        ca_bundle = client.get("caBundle") or ""
        try:
            ca_pem = base64.b64decode(ca_bundle).decode() if ca_bundle else ""
        except (binascii.Error, UnicodeDecodeError):
            log.warning("webhook %s of %s has a caBundle that is not base64 PEM",
                        hook.get("name"), name)
            ca_pem = "-"  # verification then fails, as it does upstream
        out.append(Webhook(
            configuration=name, name=hook.get("name", ""), mutating=mutating,
            rules=tuple(Rule.from_dict(r) for r in hook.get("rules") or ()),
            failure_policy=hook.get("failurePolicy") or "Fail",
            match_policy=hook.get("matchPolicy") or "Equivalent",
            namespace_selector=namespace_selector, object_selector=object_selector,
            side_effects=hook.get("sideEffects") or "",
            timeout=hook.get("timeoutSeconds") or 10,
            reinvoke=mutating and hook.get("reinvocationPolicy") == "IfNeeded",
            url=client.get("url") or "", service=client.get("service"), ca_bundle=ca_pem))
    return out


def object_selector_matches(selector: LabelSelector, request: AdmissionRequest) -> bool:
    """objectSelector: the new or the old object's labels (upstream's MatchObjectSelector)."""
    if selector.empty:
        return True
    return any(obj is not None and selector.matches((obj.get("metadata") or {}).get("labels"))
               for obj in (request.obj, request.old))


@dataclass
class _Invocation:
    """A webhook that matched, and the version it is called with (Equivalent may differ)."""

    hook: Webhook
    version: str


class WebhookDispatcher:
    """The configurations in memory, and the calls to the webhooks that match a write."""

    def __init__(self, registry: GenericRegistry, table: ResourceTable) -> None:
        self.registry = registry
        self.table = table
        self._configs: dict[tuple[str, str], list[Webhook]] = {}  # (plural, name) -> hooks
        #: (mutating, group, plural) -> the webhooks whose rules name that resource, in
        #: call order; filled on first use, emptied whenever a configuration changes.
        self._index: dict[tuple[bool, str, str], tuple[Webhook, ...]] = {}
        self._ssl: dict[str, ssl.SSLContext] = {}
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    # -- the configurations -------------------------------------------------------------

    def upsert(self, plural: str, config: Mapping[str, Any]) -> None:
        name = (config.get("metadata") or {}).get("name", "")
        self._configs[(plural, name)] = compile_configuration(config, mutating=plural == MUTATING)
        self._index.clear()

    def remove(self, plural: str, name: str) -> None:
        if self._configs.pop((plural, name), None) is not None:
            self._index.clear()

    def candidates(self, mutating: bool, group: str, plural: str) -> tuple[Webhook, ...]:
        """The webhooks that could match requests on a resource: one dict lookup, after
        the first request since the configurations last changed."""
        key = (mutating, group, plural)
        hooks = self._index.get(key)
        if hooks is None:
            kind = MUTATING if mutating else VALIDATING
            exempt = group == GROUP and plural in EXEMPT_RESOURCES
            hooks = () if exempt else tuple(
                hook for (p, _), config in sorted(self._configs.items()) if p == kind
                for hook in config if hook.may_match(group, plural))
            self._index[key] = hooks
        return hooks

    async def start(self, watch_cache: WatchCache) -> None:
        """Load the configurations, then follow their changes through the watch cache."""
        revision = await self._load()
        self._task = asyncio.create_task(self._follow(watch_cache, revision),
                                         name="admission-webhooks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()

    async def _load(self) -> int:
        self._configs.clear()
        self._index.clear()
        revision = 0
        for plural in (MUTATING, VALIDATING):
            res = self.table.lookup(GROUP, "v1", plural)
            assert res is not None
            listed = await self.registry.list(res, None)
            for config in listed.items:
                self.upsert(plural, config)
            revision = max(revision, int(listed.resource_version))
        return revision

    async def _follow(self, watch_cache: WatchCache, revision: int) -> None:
        while True:
            try:
                watcher = watch_cache.watch(PREFIX, revision)
            except errors.APIError:  # too far behind: read everything again
                revision = await self._load()
                continue
            while True:
                event = await watcher.next(3600)
                if event is None:
                    if watcher.closed:
                        break
                    continue
                revision = event.revision
                plural, _, name = event.key[len(PREFIX):].partition("/")
                if plural not in (MUTATING, VALIDATING):
                    continue
                if event.deleted:
                    self.remove(plural, name)
                else:
                    self.upsert(plural, event.obj())

    # -- admission ----------------------------------------------------------------------

    async def mutate(self, request: AdmissionRequest, opts: WriteOptions) -> bool:
        """Call the matching mutating webhooks in order, applying their patches to
        `request.obj` in place. True if the object changed."""
        res = request.resource
        hooks = self.candidates(True, res.group, res.plural)
        if not hooks:
            return False
        invocations = await self._matching(hooks, request)
        changed_any = False
        reinvoke: set[tuple[str, str]] = set()
        invoked_ifneeded: set[tuple[str, str]] = set()
        for round_ in (0, 1):
            if round_ and not reinvoke:
                break
            for invocation in invocations:
                hook = invocation.hook
                if round_ and hook.key not in reinvoke:
                    continue
                changed = await self._call_mutating(invocation, request, opts)
                if changed:
                    changed_any = True
                    reinvoke |= invoked_ifneeded
                    invoked_ifneeded.clear()
                if hook.reinvoke:
                    invoked_ifneeded.add(hook.key)
            if round_ == 0 and not changed_any:
                break
        return changed_any

    async def validate(self, request: AdmissionRequest, opts: WriteOptions) -> None:
        """Call the matching validating webhooks in parallel; the first refusal wins."""
        res = request.resource
        hooks = self.candidates(False, res.group, res.plural)
        if not hooks:
            return
        invocations = await self._matching(hooks, request)
        if not invocations:
            return
        results = await asyncio.gather(
            *(self._call_validating(i, request, opts) for i in invocations),
            return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _matching(self, hooks: Iterable[Webhook],
                        request: AdmissionRequest) -> list[_Invocation]:
        """The hooks whose rules and selectors match (upstream's ShouldCallHook)."""
        namespace_labels: dict[str, str] | None = None
        out = []
        for hook in hooks:
            version = self._matching_version(hook, request)
            if version is None:
                continue
            if not hook.namespace_selector.empty and self._namespaced(request):
                if namespace_labels is None:
                    namespace_labels = await self._namespace_labels(request)
                if not hook.namespace_selector.matches(namespace_labels):
                    continue
            if not object_selector_matches(hook.object_selector, request):
                continue
            out.append(_Invocation(hook, version))
        return out

    def _matching_version(self, hook: Webhook, request: AdmissionRequest) -> str | None:
        res = request.resource
        if any(rule.matches(request, res.version) for rule in hook.rules):
            return res.version
        if hook.match_policy != "Equivalent":
            return None
        for rule in hook.rules:
            for version in sorted(rule.versions - {res.version, "*"}):
                if self.table.lookup(res.group, version, res.plural) is not None and \
                        rule.matches(request, version):
                    return version
        return None

    @staticmethod
    def _namespaced(request: AdmissionRequest) -> bool:
        """Whether the namespaceSelector applies: namespaced requests and Namespaces."""
        return bool(request.namespace) or (
            (request.resource.group, request.resource.plural) == ("", "namespaces"))

    async def _namespace_labels(self, request: AdmissionRequest) -> dict[str, str]:
        res = request.resource
        if (res.group, res.plural) == ("", "namespaces") and not request.subresource and \
                request.operation in ("CREATE", "UPDATE") and request.obj is not None:
            return (request.obj.get("metadata") or {}).get("labels") or {}
        name = request.namespace or request.name
        kv = await self.registry.store.get(f"/registry/core/namespaces/{name}")
        if kv is None:
            raise errors.not_found("namespaces", name)
        return (orjson.loads(kv.value).get("metadata") or {}).get("labels") or {}

    # -- calls --------------------------------------------------------------------------

    async def _call_mutating(self, invocation: _Invocation, request: AdmissionRequest,
                             opts: WriteOptions) -> bool:
        hook = invocation.hook
        try:
            response = await self._call(invocation, request, opts)
            if not response.get("allowed"):
                raise _denied(hook, request, response.get("status"))
            patch = response.get("patch")
            if not patch:
                return False
            try:
                ops = orjson.loads(base64.b64decode(patch))
            except (binascii.Error, ValueError) as exc:
                raise CallError(hook.name, "received undecodable patch in webhook response: "
                                f"{exc}") from None
            if not ops:
                return False
            if request.obj is None:
                raise errors.internal(f'admission webhook "{hook.name}" attempted to modify '
                                      "the object, which is not supported for this operation")
            try:
                patched = json_patch(_versioned(request.obj, invocation.version, request),
                                     ops)
            except errors.APIError as err:
                raise errors.internal(f'admission webhook "{hook.name}" returned a patch '
                                      f"that does not apply: {err.message}") from None
            patched["apiVersion"] = request.obj.get("apiVersion")
            if patched == request.obj:
                return False
            request.obj.clear()
            request.obj.update(patched)
            return True
        except CallError as err:
            return self._failed(hook, err)

    async def _call_validating(self, invocation: _Invocation, request: AdmissionRequest,
                               opts: WriteOptions) -> None:
        hook = invocation.hook
        try:
            response = await self._call(invocation, request, opts)
        except CallError as err:
            self._failed(hook, err)
            return
        if not response.get("allowed"):
            raise _denied(hook, request, response.get("status"))

    @staticmethod
    def _failed(hook: Webhook, err: CallError) -> bool:
        if hook.failure_policy == "Ignore":
            log.warning("Failed calling webhook, failing open %s: %s", hook.name, err)
            return False
        log.warning("Failed calling webhook, failing closed %s: %s", hook.name, err)
        raise errors.internal(str(err))

    async def _call(self, invocation: _Invocation, request: AdmissionRequest,
                    opts: WriteOptions) -> dict[str, Any]:
        """POST the AdmissionReview; the verified `response` it answers with."""
        hook = invocation.hook
        if request.dry_run and hook.side_effects not in NO_SIDE_EFFECTS_ON_DRY_RUN:
            raise errors.bad_request(f'admission webhook "{hook.name}" does not support dry run')
        uid = new_uid()
        review = {"apiVersion": REVIEW_API_VERSION, "kind": "AdmissionReview",
                  "request": _review_request(uid, invocation.version, request)}
        address, shown, server_name = await self._address(hook)
        query = f"?timeout={hook.timeout}s"
        try:
            session = self._client()
            async with session.post(
                    address + query, data=orjson.dumps(review), ssl=self._ssl_context(hook),
                    server_hostname=server_name,
                    headers={"Content-Type": "application/json", "Accept": "application/json",
                             **({"Host": shown.split("/")[2]} if server_name else {})},
                    timeout=aiohttp.ClientTimeout(total=hook.timeout)) as answer:
                body = await answer.read()
                status = answer.status
        except TimeoutError:
            raise CallError(hook.name, f'failed to call webhook: Post "{shown}{query}": '
                            "context deadline exceeded") from None
        except aiohttp.ClientError as exc:
            raise CallError(hook.name, f'failed to call webhook: Post "{shown}{query}": '
                            f"{_dial_problem(exc)}") from None
        if not 200 <= status < 300:
            text = body.decode(errors="replace").strip()[:200]
            raise CallError(hook.name, f"failed to call webhook: an error on the server "
                            f'("{text}") has prevented the request from succeeding')
        try:
            answered = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise CallError(hook.name, f"failed to call webhook: {exc}") from None
        problem = _review_problem(answered, uid, mutating=hook.mutating)
        if problem:
            raise CallError(hook.name, f"received invalid webhook response: {problem}")
        response = answered["response"]
        opts.warnings.extend(str(w) for w in response.get("warnings") or ())
        return response

    async def _address(self, hook: Webhook) -> tuple[str, str, str | None]:
        """(where to connect, the URL as errors show it, the TLS server name if not the
        connected host's)."""
        if hook.url:
            return hook.url, hook.url, None
        service = hook.service or {}
        name, namespace = service.get("name", ""), service.get("namespace", "")
        port = service.get("port") or 443
        path = service.get("path") or ""
        host = f"{name}.{namespace}.svc"
        shown = f"https://{host}:{port}{path}"
        try:
            target = await self._service_endpoint(namespace, name, port)
        except errors.APIError as err:
            raise CallError(hook.name, f'failed to call webhook: Post "{shown}": '
                            f"{err.message}") from None
        return f"https://{target}{path}", shown, host

    async def _service_endpoint(self, namespace: str, name: str, port: int) -> str:
        services = self.table.lookup("", "v1", "services")
        slices = self.table.lookup("discovery.k8s.io", "v1", "endpointslices")
        assert services is not None and slices is not None
        service = await self.registry.get(services, namespace, name)
        listed = await self.registry.list(
            slices, namespace, labels=parse_label_selector(f"{SERVICE_NAME_LABEL}={name}"))
        return service_target(service, listed.items, ProxyID("https", name, str(port))).netloc

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self._session

    def _ssl_context(self, hook: Webhook) -> ssl.SSLContext:
        context = self._ssl.get(hook.ca_bundle)
        if context is None:
            context = ssl.create_default_context()
            if hook.ca_bundle:
                try:
                    context.load_verify_locations(cadata=hook.ca_bundle)
                except ssl.SSLError as exc:
                    raise CallError(hook.name, f"failed to call webhook: the caBundle is not "
                                    f"usable: {exc}") from None
            self._ssl[hook.ca_bundle] = context
        return context


def _versioned(obj: dict[str, Any], version: str, request: AdmissionRequest) -> dict[str, Any]:
    """The object as the webhook's version shows it (custom resources convert by apiVersion
    alone: conversion strategy None)."""
    if version == request.resource.version or request.kind is not None:
        return obj
    group = request.resource.group
    return {**obj, "apiVersion": f"{group}/{version}" if group else version}


def _review_request(uid: str, version: str, request: AdmissionRequest) -> dict[str, Any]:
    res = request.resource
    group, request_version, kind = request.gvk()
    sent_version = request_version if request.kind is not None else version
    body: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": group, "version": sent_version, "kind": kind},
        "resource": {"group": res.group, "version": version, "resource": res.plural},
        "requestKind": {"group": group, "version": request_version, "kind": kind},
        "requestResource": {"group": res.group, "version": res.version,
                            "resource": res.plural},
        "name": request.name,
        "operation": request.operation,
        "userInfo": _user_info_dict(request.user) if request.user else {},
        "object": None if request.obj is None else _versioned(request.obj, version, request),
        "oldObject": None if request.old is None else _versioned(request.old, version, request),
        "dryRun": request.dry_run,
        "options": request.options,
    }
    if request.subresource:
        body["subResource"] = request.subresource
        body["requestSubResource"] = request.subresource
    if request.namespace:
        body["namespace"] = request.namespace
    return body


def _review_problem(review: Any, uid: str, *, mutating: bool) -> str:
    """What makes an answer unusable (upstream's VerifyAdmissionResponse), or ""."""
    if not isinstance(review, dict):
        return "the response is not an AdmissionReview"
    if (review.get("apiVersion"), review.get("kind")) != (REVIEW_API_VERSION, "AdmissionReview"):
        return (f"expected webhook response of {REVIEW_API_VERSION}, Kind=AdmissionReview, "
                f"got {review.get('apiVersion')}, Kind={review.get('kind')}")
    response = review.get("response")
    if not isinstance(response, dict):
        return "webhook response was absent"
    if response.get("uid") != uid:
        return f'expected response.uid="{uid}", got "{response.get("uid")}"'
    patch, patch_type = response.get("patch"), response.get("patchType")
    if patch and not patch_type:
        return "webhook returned response.patch but not response.patchType"
    if patch_type and not patch:
        return "webhook returned response.patchType but not response.patch"
    if patch_type and not mutating:
        return "validating webhooks may not return patches"
    if patch_type and patch_type != "JSONPatch":
        return f'webhook returned invalid response.patchType of "{patch_type}"'
    return ""


def _denied(hook: Webhook, request: AdmissionRequest, status: Any) -> errors.APIError:
    """The refusal a denial reads as (upstream's ToStatusErr): details the webhook gave
    (an Invalid error's kind, name and causes) are kept; others get the resource's."""
    status = status if isinstance(status, dict) else {}
    code = status.get("code") or 403
    denied_by = f'admission webhook "{hook.name}" denied the request'
    if status.get("message"):
        message = f"{denied_by}: {status['message']}"
    elif status.get("reason"):
        message = f"{denied_by}: {status['reason']}"
    else:
        message = f"{denied_by} without explanation"
    res = request.resource
    name = request.name or "Unknown"
    if code == 500:
        return errors.APIError(500, status.get("reason") or "InternalError",
                               f"Internal error occurred: {message}")
    prefixed = f'{res.qualified()} "{name}" is forbidden: {message}'
    details = status.get("details")
    if isinstance(details, dict):  # the webhook's own details stand, causes and all
        causes = [errors.Cause(str(c.get("field") or ""), str(c.get("message") or ""),
                               str(c.get("reason") or ""))
                  for c in details.get("causes") or () if isinstance(c, dict)]
        return errors.APIError(code, status.get("reason") or "Forbidden", prefixed,
                               name=details.get("name"), group=details.get("group"),
                               kind=details.get("kind"), causes=causes,
                               retry_after=details.get("retryAfterSeconds"))
    return errors.APIError(code, status.get("reason") or "Forbidden", prefixed,
                           name=name, group=res.group, kind=res.plural)


def _dial_problem(exc: aiohttp.ClientError) -> str:
    """A connection failure worded as Go's net/http words it, where we can."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"tls: failed to verify certificate: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error
        if cause.errno:
            return f"dial tcp {exc.host}:{exc.port}: connect: {os.strerror(cause.errno).lower()}"
    return str(exc) or type(exc).__name__


__all__ = ["Rule", "Webhook", "WebhookDispatcher",
           "compile_configuration", "object_selector_matches"]
