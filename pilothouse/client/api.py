"""The async API client every component uses: plain JSON dicts over HTTPS.

Why our own thin client: components need raw dicts (custom resources and built-ins
alike, as they are on the wire), streaming watches, and throughput (the scheduler binds
hundreds of pods a second); the generated clients decode into model objects and, in
their async flavour, lag the API. The parts that are easy to get subtly wrong are taken
from well-kept libraries: kubeconfig semantics (contexts, inline or file credentials,
exec plugins, in-cluster service-account config) from the official `kubernetes`
client's loader, and HTTP/1.1 with keep-alive connection pooling from aiohttp.

Paths are built from (apiVersion, plural, namespace): the caller knows its kinds, so no
discovery round trip is needed, and the same code runs against a real cluster.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
_PATCH_TYPES = {"merge": MERGE_PATCH, "strategic": STRATEGIC_PATCH, "json": JSON_PATCH,
                "apply": APPLY_PATCH}


class ApiError(Exception):
    """A non-2xx answer; `status` is the HTTP code, `reason` the Status reason."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body if isinstance(body, dict) else {}
        self.reason = self.body.get("reason", "")
        message = self.body.get("message") or str(body)[:500]
        super().__init__(f"{status} {self.reason}: {message}")

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def gone(self) -> bool:
        return self.status == 410


@dataclass(frozen=True)
class Connection:
    """Where the API is and how to prove who we are."""

    host: str
    ssl_context: ssl.SSLContext | bool
    headers: Mapping[str, str]
    #: The file of the CA bundle the API server is trusted by ("" if none is named).
    ca_file: str = ""


def load_kubeconfig(path: str | None = None, *, context: str | None = None) -> Connection:
    """Read a kubeconfig (or the in-cluster config when `path` is None and none is found)
    with the official client's loader, the one way every component reads one: it knows
    every kubeconfig form (files and -data, tokens, exec and auth-provider plugins)."""
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config

    configuration = k8s_client.Configuration()
    try:
        k8s_config.load_kube_config(config_file=path, context=context,
                                    client_configuration=configuration)
    except k8s_config.ConfigException:
        if path is not None:
            raise
        k8s_config.load_incluster_config(client_configuration=configuration)
    ctx: ssl.SSLContext | bool
    if configuration.verify_ssl:
        ctx = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if configuration.cert_file and isinstance(ctx, ssl.SSLContext):
        ctx.load_cert_chain(configuration.cert_file, configuration.key_file)
    headers = {}
    token = (configuration.api_key or {}).get("authorization")
    if token:
        headers["Authorization"] = token
    return Connection(configuration.host.rstrip("/"), ctx, headers,
                      ca_file=configuration.ssl_ca_cert or "")


def resource_path(api_version: str, plural: str, namespace: str | None = None,
                  name: str | None = None, subresource: str | None = None) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    parts = [base]
    if namespace:
        parts.append(f"namespaces/{quote(namespace, safe='')}")
    parts.append(plural)
    if name:
        parts.append(quote(name, safe=""))
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


class Client:
    """One pooled HTTPS session to the API server. Use `async with Client(conn)`."""

    def __init__(self, connection: Connection, *, user_agent: str = "pilothouse",
                 field_manager: str = "pilothouse", max_connections: int = 64) -> None:
        self.connection = connection
        self.field_manager = field_manager
        self._headers = {"User-Agent": user_agent, "Accept": JSON, **connection.headers}
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, **kwargs: Any) -> Client:
        return cls(load_kubeconfig(path), **kwargs)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.connection.ssl_context,
                                             limit=self._max_connections)
            self._session = aiohttp.ClientSession(
                base_url=self.connection.host, connector=connector, headers=self._headers,
                json_serialize=lambda o: orjson.dumps(o).decode(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- generic verbs -----------------------------------------------------------------

    async def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                      body: Any = None, content_type: str = JSON,
                      timeout: float | None = 60) -> Any:
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else None
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        async with self.session.request(
                method, path, params=query, data=data, headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            raw = await response.read()
            try:
                decoded = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                decoded = raw.decode(errors="replace")
            if response.status >= 400:
                raise ApiError(response.status, decoded)
            return decoded

    async def get(self, api_version: str, plural: str, name: str,
                  namespace: str | None = None, *, subresource: str | None = None) -> dict:
        return await self.request(
            "GET", resource_path(api_version, plural, namespace, name, subresource))

    async def list(self, api_version: str, plural: str, namespace: str | None = None, *,
                   label_selector: str | None = None, field_selector: str | None = None,
                   limit: int | None = None, continue_token: str | None = None,
                   resource_version: str | None = None) -> dict:
        return await self.request("GET", resource_path(api_version, plural, namespace), params={
            "labelSelector": label_selector, "fieldSelector": field_selector, "limit": limit,
            "continue": continue_token, "resourceVersion": resource_version})

    async def list_all(self, api_version: str, plural: str, namespace: str | None = None,
                       **kwargs: Any) -> tuple[list[dict], str]:
        """Every item, following `continue`; returns (items, list resourceVersion)."""
        items: list[dict] = []
        token = None
        while True:
            page = await self.list(api_version, plural, namespace, limit=500,
                                   continue_token=token, **kwargs)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items, (page.get("metadata") or {}).get("resourceVersion", "")

    async def create(self, api_version: str, plural: str, obj: dict,
                     namespace: str | None = None, *, subresource: str | None = None,
                     name: str | None = None) -> dict:
        namespace = namespace or _meta(obj).get("namespace")
        return await self.request(
            "POST", resource_path(api_version, plural, namespace, name, subresource),
            params={"fieldManager": self.field_manager}, body=obj)

    async def replace(self, api_version: str, plural: str, obj: dict, *,
                      subresource: str | None = None) -> dict:
        meta = _meta(obj)
        return await self.request(
            "PUT", resource_path(api_version, plural, meta.get("namespace"), meta["name"],
                                 subresource),
            params={"fieldManager": self.field_manager}, body=obj)

    async def patch(self, api_version: str, plural: str, name: str, patch: Any,
                    namespace: str | None = None, *, patch_type: str = "merge",
                    subresource: str | None = None, force: bool | None = None) -> dict:
        return await self.request(
            "PATCH", resource_path(api_version, plural, namespace, name, subresource),
            params={"fieldManager": self.field_manager,
                    "force": None if force is None else str(force).lower()},
            body=patch, content_type=_PATCH_TYPES[patch_type])

    async def delete(self, api_version: str, plural: str, name: str,
                     namespace: str | None = None, *, propagation_policy: str | None = None,
                     grace_period_seconds: int | None = None,
                     preconditions: Mapping[str, str] | None = None) -> Any:
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy:
            body["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        if preconditions:
            body["preconditions"] = dict(preconditions)
        return await self.request(
            "DELETE", resource_path(api_version, plural, namespace, name), body=body)

    async def watch(self, api_version: str, plural: str, namespace: str | None = None, *,
                    resource_version: str = "", label_selector: str | None = None,
                    field_selector: str | None = None, timeout_seconds: int = 300,
                    bookmarks: bool = True) -> AsyncIterator[dict]:
        """Watch events as dicts {"type", "object"}; ends when the server closes the stream.

        An ERROR event carrying a 410 Status is raised as ApiError(410) so callers relist.
        """
        params = {"watch": "true", "resourceVersion": resource_version,
                  "labelSelector": label_selector, "fieldSelector": field_selector,
                  "timeoutSeconds": timeout_seconds,
                  "allowWatchBookmarks": "true" if bookmarks else None}
        query = {k: _query_value(v) for k, v in params.items() if v is not None}
        path = resource_path(api_version, plural, namespace)
        async with self.session.get(
                path, params=query,
                timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 30)
        ) as response:
            if response.status >= 400:
                raw = await response.read()
                raise ApiError(response.status, _loads_or_text(raw))
            buffer = b""
            async for chunk in response.content.iter_any():
                *lines, buffer = (buffer + chunk).split(b"\n")  # one split per chunk
                for line in lines:
                    if not line.strip():
                        continue
                    event = orjson.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        raise ApiError(int(status.get("code") or 500), status)
                    yield event

    # -- conveniences ------------------------------------------------------------------

    async def bind(self, namespace: str, pod: str, uid: str, node: str) -> None:
        await self.request("POST", resource_path("v1", "pods", namespace, pod, "binding"), body={
            "kind": "Binding", "apiVersion": "v1",
            "metadata": {"name": pod, "namespace": namespace, "uid": uid},
            "target": {"kind": "Node", "apiVersion": "v1", "name": node}})

    async def wait_ready(self, *, timeout: float = 30) -> None:
        """Poll /readyz until the API server answers ok."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                async with self.session.get("/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if loop.time() > deadline:
                raise TimeoutError(f"the API server at {self.connection.host} is not ready")
            await asyncio.sleep(0.2)


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _loads_or_text(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace")
