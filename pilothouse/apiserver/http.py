"""The HTTP front of the API server: an ASGI app that speaks the Kubernetes REST API.

Every request goes through the same filters, in kube-apiserver's order: read the body
(at most 3 MiB), authenticate, parse the request info, authorize with RBAC, then route:
non-resource paths (version, health, discovery, OpenAPI) answer directly; resource paths
go to the generic registry, or to the handlers of the special subresources and reviews.
Any `APIError` becomes a `metav1.Status` body with its code; anything else is logged
with the request and answered 500, never a traceback.

Content: JSON in and out by default; YAML bodies accepted (and returned on
`Accept: application/yaml`); `Accept: ...;as=Table;g=meta.k8s.io;v=v1` gets server-side
printing. Watches stream one JSON event per line, flushed per event. `/openapi/v2` is JSON or,
as client-go asks for it, gnostic's protobuf (`openapi_protobuf.py`), by the Accept header.

WebSocket: the streams kubectl opens for exec, attach and port-forward arrive as ASGI
"websocket" scopes and pass the same filters (authentication, request info, RBAC) before
their handler relays them to the pod's kubelet (`nodeproxy.py`). As in Kubernetes 1.35
(AuthorizePodWebsocketUpgradeCreatePermission), such a request needs `create` on the
subresource besides the `get` its GET method maps to. A refusal before the handshake is
an HTTP response carrying the Status (the ASGI websocket.http.response extension), so the
client sees the same error a plain request would get.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import email.utils
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
import yaml

from ..machinery import errors
from ..machinery.meta import now
from ..machinery.patch import json_patch, merge_patch
from ..machinery.selectors import (
    FieldSelector,
    LabelSelector,
    parse_field_selector,
    parse_label_selector,
)
from .authn import Authenticator
from .discovery import Discovery, version_info
from .openapi import OpenAPIDocuments
from .openapi_protobuf import JSON as OPENAPI_JSON
from .openapi_protobuf import V3_SERVED, negotiate, negotiate_v2
from .printers import build_table, table_spec_for
from .protobuf import CONTENT_TYPE as PROTOBUF
from .protobuf import decode_protobuf
from .rbac import RBACAuthorizer, UserInfo
from .registry import Resource, ResourceTable
from .registry.conversion import from_storage
from .registry.generic import PATCH_TYPES, GenericRegistry, WriteOptions
from .requestinfo import RequestInfo, parse_request_info
from .watchcache import WatchCache

log = logging.getLogger(__name__)

MAX_BODY = 3 * 1024 * 1024
DEFAULT_WATCH_TIMEOUT = 1800
BOOKMARK_INTERVAL = 5.0
PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})
JSON = "application/json"
YAML = "application/yaml"
#: Pod subresources that connect to a container and are served over WebSocket.
CONNECT_SUBRESOURCES = frozenset({"exec", "attach", "portforward"})

Handler = Callable[["Request", RequestInfo, Resource], Awaitable["Response | None"]]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    user: UserInfo | None = None
    send: Any = None
    receive: Any = None
    #: Every query parameter in order, repeats included (`command=a&command=b`).
    query_items: list[tuple[str, str]] = field(default_factory=list)
    #: A WebSocket request, and the subprotocols its client offered.
    websocket: bool = False
    subprotocols: tuple[str, ...] = ()
    #: The path as the client sent it, percent-encoding kept, and the query string: what
    #: the proxy subresources pass on unchanged.
    raw_path: str = ""
    query_string: str = ""

    def param(self, name: str, default: str = "") -> str:
        return self.query.get(name, default)

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in ("true", "1")

    def int_param(self, name: str, default: int = 0) -> int:
        raw = self.query.get(name)
        if raw in (None, ""):
            return default
        try:
            value = int(raw)
        except ValueError:
            raise errors.bad_request(f"invalid value for {name}: {raw!r} is not an integer") \
                from None
        if value < 0:
            raise errors.bad_request(f"invalid value for {name}: must not be negative")
        return value

    def decode_body(self, *, allow_empty: bool = False) -> Any:
        if not self.body.strip():
            if allow_empty:
                return None
            raise errors.bad_request("the request body is empty; expected an object")
        ctype = self.headers.get("content-type", JSON).split(";")[0].strip().lower()
        if ctype in ("application/yaml", "application/apply-patch+yaml", "text/yaml",
                     "application/x-yaml"):
            try:
                return yaml.safe_load(self.body)
            except yaml.YAMLError as exc:
                raise errors.bad_request(f"error converting YAML to JSON: {exc}") from None
        if ctype.endswith("json") or ctype in ("", "*/*", "text/plain"):
            try:
                return orjson.loads(self.body)
            except orjson.JSONDecodeError as exc:
                raise errors.bad_request(
                    f"error decoding request body as JSON: {exc}") from None
        if ctype == PROTOBUF:
            return decode_protobuf(self.body)
        raise errors.unsupported_media_type(ctype)

    def write_options(self) -> WriteOptions:
        dry_run = self.query.get("dryRun", "")
        if dry_run and dry_run != "All":
            raise errors.bad_request(f'unsupported dryRun value "{dry_run}": only "All" is valid')
        validation = self.query.get("fieldValidation", "Warn") or "Warn"
        if validation not in ("Strict", "Warn", "Ignore"):
            raise errors.bad_request(
                f'fieldValidation "{validation}" is invalid: must be Strict, Warn or Ignore')
        manager = self.query.get("fieldManager", "")
        if len(manager) > 128:
            raise errors.bad_request("fieldManager: must be at most 128 characters")
        force = self.flag("force")
        return WriteOptions(dry_run=bool(dry_run), field_manager=manager,
                            field_validation=validation, force=force, user=self.user)


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = JSON
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class APIServerApp:
    """The ASGI application. Components are injected; the app owns no state of its own."""

    def __init__(
        self,
        *,
        table: ResourceTable,
        registry: GenericRegistry,
        watch_cache: WatchCache,
        authenticator: Authenticator,
        authorizer: RBACAuthorizer,
        openapi: OpenAPIDocuments,
        special: dict[tuple[str, str], Handler],
    ) -> None:
        self.table = table
        self.registry = registry
        self.watch_cache = watch_cache
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.openapi = openapi
        self.discovery = Discovery(table)
        #: (qualified resource, subresource) -> handler, for reviews, special subresources and
        #: resources served from elsewhere than the datastore: ("pods", "log"),
        #: ("tokenreviews.authentication.k8s.io", ""), ("pods.metrics.k8s.io", "").
        self.special = special
        self.ready = asyncio.Event()
        self._version = orjson.dumps(version_info())

    # -- ASGI entry --------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            request = await self._read(scope, receive, send)
            response = await self._handle(request, scope)
        except errors.APIError as err:
            response = _status_response(err)
        except Exception:
            log.exception("internal error serving %s %s", scope.get("method"), scope.get("path"))
            response = _status_response(errors.internal("the server could not handle the request"))
        if response is not None:
            await _send(send, response)

    async def _websocket(self, scope: dict, receive: Any, send: Any) -> None:
        """A WebSocket request: filtered as any request, then handed to its handler, which
        accepts and relays it; refused with an HTTP Status response if anything fails first."""
        if (await receive())["type"] != "websocket.connect":
            return
        query, items = _query(scope)
        request = Request("GET", scope["path"], query, _headers(scope), b"", send=send,
                          receive=receive, query_items=items, websocket=True,
                          subprotocols=tuple(scope.get("subprotocols") or ()))
        try:
            response = await self._handle(request, scope)
        except errors.APIError as err:
            response = _status_response(err)
        except OSError:
            return  # the client went away
        except Exception:
            log.exception("internal error serving WebSocket %s", scope.get("path"))
            response = _status_response(errors.internal("the server could not handle the request"))
        if response is not None:
            await _refuse_websocket(scope, send, response)

    async def _read(self, scope: dict, receive: Any, send: Any) -> Request:
        headers = _headers(scope)
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY:
            raise errors.too_large(MAX_BODY)
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                raise errors.too_large(MAX_BODY)
            chunks.append(chunk)
            more = message.get("more_body", False)
        query, items = _query(scope)
        raw_path = (scope.get("raw_path") or b"").decode("latin-1") or scope["path"]
        return Request(scope["method"], scope["path"], query, headers, b"".join(chunks),
                       send=send, receive=receive, query_items=items, raw_path=raw_path,
                       query_string=scope.get("query_string", b"").decode("latin-1"))

    async def _handle(self, request: Request, scope: dict) -> Response | None:
        cert_subject = (scope.get("extensions") or {}).get("tls", {}).get("client_subject")
        user = await self.authenticator.authenticate(
            request.headers.get("authorization", ""), cert_subject
        )
        path = request.path
        if user is None:
            if request.headers.get("authorization") or path not in PUBLIC_PATHS:
                raise errors.unauthorized()
            user = UserInfo("system:anonymous", "", ("system:unauthenticated",))
        request.user = user
        info = parse_request_info(request.method, path, request.query)
        if path not in PUBLIC_PATHS:
            self._authorize(user, info)
        connects = (info.is_resource_request and info.api_group == "" and
                    info.resource == "pods" and info.subresource in CONNECT_SUBRESOURCES)
        if connects and info.verb != "create":
            # Connecting to a container runs code in it: a GET (how every WebSocket
            # arrives) needs `create` as well, as a POST does.
            self._authorize(user, dataclasses.replace(info, verb="create"))
        if request.websocket and not connects:
            raise errors.bad_request(
                "only pods/exec, pods/attach and pods/portforward are served over WebSocket")
        if not info.is_resource_request:
            return await self._non_resource(request)
        return await self._resource(request, info)

    def _authorize(self, user: UserInfo, info: RequestInfo) -> None:
        allowed, reason = self.authorizer.authorize(user, info)
        if not allowed:
            raise _forbidden(user, info, reason)

    # -- non-resource paths ------------------------------------------------------------

    async def _non_resource(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        if request.method not in ("GET", "HEAD"):
            raise errors.method_not_allowed()
        if path == "/version":
            return Response(200, self._version)
        if path in ("/healthz", "/livez", "/readyz"):
            if path == "/readyz" and not self.ready.is_set():
                return Response(500, b"[-]bootstrap not finished\nreadyz check failed",
                                "text/plain; charset=utf-8")
            return Response(200, b"ok", "text/plain; charset=utf-8")
        if path == "/openapi/v2":
            # Off the event loop: the first request after a CRD change encodes ~1 MB.
            return await asyncio.to_thread(self._openapi_v2, request)
        if path.startswith("/openapi/"):
            return self._openapi_v3(request, path)
        doc = self.discovery.document(path)
        if doc is not None:
            return Response(200, doc)
        if path == "/":
            paths = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v2",
                     "/openapi/v3", "/readyz", "/version"]
            return Response(200, orjson.dumps({"paths": paths}))
        raise errors.path_not_found(path)

    def _openapi_v2(self, request: Request) -> Response:
        """`/openapi/v2` as kube-openapi serves it: JSON, or gnostic's protobuf (what client-go
        asks for), chosen by the Accept header, and an empty 406 for anything else; both carry
        the JSON's ETag, and a matching If-None-Match gets 304."""
        vary = (b"vary", b"Accept")
        content_type = negotiate_v2(request.headers.get("accept", ""))
        if content_type is None:
            return Response(406, b"", "text/plain; charset=utf-8", headers=[vary])
        body, etag = self.openapi.v2_json()
        headers = [vary, (b"etag", f'"{etag}"'.encode())]
        if _etag_matches(request.headers.get("if-none-match", ""), etag):
            return Response(304, b"", content_type, headers)
        if content_type != JSON:
            body = self.openapi.v2_protobuf()
        return Response(200, body, content_type, headers)

    def _openapi_v3(self, request: Request, path: str) -> Response:
        """`/openapi/v3` and its group-version documents as kube-openapi's handler3 serves
        them: JSON (406 for a client that takes nothing else), an ETag that is the hash the
        root advertises, 304 for a matching If-None-Match; with `?hash=`, a stale hash is
        redirected (301) to the current one and a current one is cacheable for a year."""
        if path == "/openapi/v3":
            return Response(200, orjson.dumps(self.openapi.v3_root()))
        group_version = path[len("/openapi/v3/"):]
        found = self.openapi.v3_group_version_bytes(group_version)
        if found is None:
            raise errors.path_not_found(path)
        vary = (b"vary", b"Accept")
        if negotiate(request.headers.get("accept", ""), V3_SERVED) is None:
            return Response(406, b"", "text/plain; charset=utf-8", headers=[vary])
        body, etag = found
        headers = [vary, (b"etag", f'"{etag}"'.encode())]
        wanted = request.param("hash")
        if wanted and wanted != etag:
            location = f"/openapi/v3/{group_version}?hash={etag}"
            return Response(301, b"", "text/plain; charset=utf-8",
                            [*headers, (b"location", location.encode())])
        if wanted:
            expires = email.utils.format_datetime(
                datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=365),
                usegmt=True)
            headers += [(b"cache-control", b"public, immutable"),
                        (b"expires", expires.encode())]
        if _etag_matches(request.headers.get("if-none-match", ""), etag):
            return Response(304, b"", OPENAPI_JSON, headers)
        return Response(200, body, OPENAPI_JSON, headers)

    # -- resource paths ----------------------------------------------------------------

    def _resource_for(self, info: RequestInfo) -> Resource:
        res = self.table.lookup(info.api_group, info.api_version, info.resource)
        if res is None:
            raise errors.path_not_found(info.path)
        if info.subresource and info.subresource not in res.subresources:
            raise errors.path_not_found(info.path)
        return res

    async def _resource(self, request: Request, info: RequestInfo) -> Response | None:
        res = self._resource_for(info)
        handler = self.special.get((res.qualified(), info.subresource)) if not res.custom else None
        if handler is None and not res.stored:
            handler = self.special.get((res.qualified(), ""))
        if handler is not None:
            return await handler(request, info, res)
        sub = info.subresource
        verb = info.verb
        allowed = res.verbs if not sub else ("get", "update", "patch")
        if verb not in allowed:
            raise errors.method_not_allowed()
        namespace = info.namespace if res.namespaced else None
        if res.namespaced and not info.namespace and info.verb not in ("list", "watch"):
            raise errors.path_not_found(info.path)
        if sub == "scale":
            return await self._scale(request, info, res, namespace)
        if verb == "get":
            obj = await self.registry.get(res, namespace, info.name)
            return self._object(request, res, obj)
        if verb in ("list", "watch"):
            return await self._list_or_watch(request, res, namespace, verb == "watch")
        opts = request.write_options()
        if verb == "create":
            if sub:
                raise errors.method_not_allowed()
            created = await self.registry.create(res, namespace, request.decode_body(), opts)
            return self._object(request, res, created, 201, opts)
        if verb == "update":
            if sub not in ("", "status", "finalize"):
                raise errors.method_not_allowed()
            obj, created = await self.registry.update(
                res, namespace, info.name, request.decode_body(), opts,
                subresource="status" if sub == "status" else "",
            )
            return self._object(request, res, obj, 201 if created else 200, opts)
        if verb == "patch":
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype not in PATCH_TYPES:
                raise errors.unsupported_media_type(ctype or "none")
            obj, created = await self.registry.patch(
                res, namespace, info.name, ctype, request.decode_body(), opts, subresource=sub
            )
            return self._object(request, res, obj, 201 if created else 200, opts)
        if verb == "delete":
            options = request.decode_body(allow_empty=True) or {}
            _merge_delete_query(request, options)
            result, now_gone = await self.registry.delete(res, namespace, info.name, options, opts)
            code = 200 if now_gone or options.get("propagationPolicy") != "Foreground" else 202
            return self._object(request, res, result, code, opts)
        if verb == "deletecollection":
            options = request.decode_body(allow_empty=True) or {}
            _merge_delete_query(request, options)
            labels, fields = self._selectors(request, res)
            await self.registry.delete_collection(
                res, namespace, labels=labels, fields=fields, options=options, opts=opts
            )
            return Response(200, orjson.dumps({"kind": "Status", "apiVersion": "v1",
                                               "metadata": {}, "status": "Success"}))
        raise errors.method_not_allowed()

    async def _scale(
        self, request: Request, info: RequestInfo, res: Resource, namespace: str | None
    ) -> Response:
        if info.verb == "get":
            obj = await self.registry.get(res, namespace, info.name)
            return Response(200, orjson.dumps(self.registry.to_scale(res, obj)))
        opts = request.write_options()
        body = request.decode_body()
        if info.verb == "update":
            scale = await self.registry.update_scale(res, namespace, info.name,
                                                     lambda _current: body, opts)
        elif info.verb == "patch":
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()

            def patched(current: dict) -> dict:
                if ctype == "application/json-patch+json":
                    return json_patch(current, body)
                if ctype in ("application/merge-patch+json",
                             "application/strategic-merge-patch+json"):
                    return merge_patch(current, body)
                raise errors.unsupported_media_type(ctype)

            scale = await self.registry.update_scale(res, namespace, info.name, patched, opts)
        else:
            raise errors.method_not_allowed()
        return Response(200, orjson.dumps(scale), headers=_warning_headers(opts))

    def _selectors(
        self, request: Request, res: Resource
    ) -> tuple[LabelSelector | None, FieldSelector | None]:
        label_text = request.param("labelSelector")
        field_text = request.param("fieldSelector")
        labels = parse_label_selector(label_text) if label_text else None
        fields = parse_field_selector(field_text) if field_text else None
        if fields is not None:
            self.registry.check_field_selector(res, fields)
        return labels, fields

    async def _list_or_watch(
        self, request: Request, res: Resource, namespace: str | None, watch: bool
    ) -> Response | None:
        labels, fields = self._selectors(request, res)
        if watch:
            await self._watch(request, res, namespace, labels, fields)
            return None
        result = await self.registry.list(
            res, namespace, labels=labels, fields=fields,
            limit=request.int_param("limit"), continue_token=request.param("continue"),
        )
        table = _wants_table(request.headers.get("accept", ""))
        if table:
            body = build_table(
                table_spec_for(res), result.items, now=now(),
                include_object=request.param("includeObject", "Metadata"),
                resource_version=result.resource_version, continue_token=result.continue_token,
                remaining=result.remaining,
            )
            return self._encode(request, body)
        list_meta: dict[str, Any] = {"resourceVersion": result.resource_version}
        if result.continue_token:
            list_meta["continue"] = result.continue_token
        if result.remaining is not None:
            list_meta["remainingItemCount"] = result.remaining
        body = {"kind": f"{res.kind}List", "apiVersion": res.group_version,
                "metadata": list_meta, "items": result.items}
        return self._encode(request, body)

    async def _watch(
        self,
        request: Request,
        res: Resource,
        namespace: str | None,
        labels: LabelSelector | None,
        fields: FieldSelector | None,
    ) -> None:
        rv_text = request.param("resourceVersion")
        table = _wants_table(request.headers.get("accept", ""))
        spec = table_spec_for(res) if table else None
        timeout = request.int_param("timeoutSeconds", DEFAULT_WATCH_TIMEOUT) or \
            DEFAULT_WATCH_TIMEOUT
        bookmarks = request.flag("allowWatchBookmarks")
        initial: list[dict[str, Any]] = []
        if rv_text in ("", "0"):
            listed = await self.registry.list(res, namespace, labels=labels, fields=fields)
            initial = listed.items
            revision = int(listed.resource_version)
        else:
            try:
                revision = int(rv_text)
            except ValueError:
                raise errors.bad_request(
                    f'invalid resource version "{rv_text}": must be an integer') from None
        watcher = self.watch_cache.watch(res.prefix(namespace), revision)
        send = request.send
        # An idle watch would notice a client that went away only at its next write; this
        # ends it as soon as the connection closes, so dead watches do not pile up.
        gone = asyncio.create_task(_close_on_disconnect(request, watcher.close))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", JSON.encode()), (b"cache-control", b"no-cache, private"),
                (b"transfer-encoding", b"chunked")]})

            include = request.param("includeObject", "Metadata")

            def render(event_type: str, obj: dict[str, Any]) -> bytes:
                return _event_bytes(spec, event_type, obj, include)

            if initial:
                await send({"type": "http.response.body",
                            "body": b"".join(render("ADDED", o) for o in initial),
                            "more_body": True})
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            last_bookmark = loop.time()
            last_revision = revision
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                wait = min(remaining, BOOKMARK_INTERVAL) if bookmarks else remaining
                event = await watcher.next(wait)
                if event is None:
                    if watcher.closed:
                        break
                    if bookmarks and loop.time() - last_bookmark >= BOOKMARK_INTERVAL:
                        last_revision = max(last_revision, self.watch_cache.revision)
                        mark = {"type": "BOOKMARK", "object": {
                            "kind": res.kind, "apiVersion": res.group_version,
                            "metadata": {"resourceVersion": str(last_revision)}}}
                        await send({"type": "http.response.body",
                                    "body": orjson.dumps(mark) + b"\n", "more_body": True})
                        last_bookmark = loop.time()
                    continue
                last_revision = event.revision
                line = self._event_line(event, res, labels, fields, spec, include)
                if line:
                    await send({"type": "http.response.body", "body": line, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass
        finally:
            gone.cancel()
            watcher.close()

    def _event_line(self, event: Any, res: Resource, labels: LabelSelector | None,
                    fields: FieldSelector | None, spec: Any, include: str) -> bytes | None:
        """The line for one event, seen through this watch's selectors (or None).

        A filtered watch sees an object that stops matching as DELETED and one that
        starts matching as ADDED, as the real watch cache reports them.
        """
        obj = event.obj()
        if labels is None and fields is None:
            event_type = "DELETED" if event.deleted else (
                "ADDED" if event.event.prev is None else "MODIFIED")
        else:
            now_matches = self.registry.matches(res, obj, labels, fields)
            prev = event.prev()
            was = prev is not None and self.registry.matches(res, prev, labels, fields)
            if event.deleted:
                if not now_matches:
                    return None
                event_type = "DELETED"
            elif now_matches:
                event_type = "MODIFIED" if was else "ADDED"
            elif was:
                event_type = "DELETED"
            else:
                return None
        if res.storage_version:  # the cache holds the storage version: convert
            obj = from_storage(res, obj)
            if spec is None:
                return orjson.dumps({"type": event_type, "object": obj}) + b"\n"
        if spec is not None:
            shown = {**obj, "apiVersion": res.group_version} if res.custom else obj
            return _event_bytes(spec, event_type, shown, include)
        return event.line(event_type, res.group_version if res.custom else "")

    # -- encoding ----------------------------------------------------------------------

    def _object(
        self,
        request: Request,
        res: Resource,
        obj: dict[str, Any],
        status: int = 200,
        opts: WriteOptions | None = None,
    ) -> Response:
        accept = request.headers.get("accept", "")
        if _wants_table(accept) and obj.get("kind") == res.kind:
            body = build_table(table_spec_for(res), [obj], now=now(),
                               include_object=request.param("includeObject", "Metadata"))
            response = self._encode(request, body, status)
        else:
            response = self._encode(request, obj, status)
        if opts is not None:
            response.headers.extend(_warning_headers(opts))
        return response

    @staticmethod
    def _encode(request: Request, body: Any, status: int = 200) -> Response:
        accept = request.headers.get("accept", "")
        if accept.startswith(YAML) and "json" not in accept:
            return Response(status, yaml.safe_dump(body, sort_keys=False).encode(), YAML)
        if accept and "json" not in accept and "*/*" not in accept and "yaml" not in accept:
            raise errors.not_acceptable(accept)
        return Response(status, orjson.dumps(body))


def _event_bytes(spec: Any, event_type: str, obj: dict[str, Any], include: str) -> bytes:
    """One watch event line; with a TableSpec the object is a one-row Table."""
    if spec is not None:
        table = build_table(spec, [obj], now=now(), include_object=include)
        table["metadata"] = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
        obj = table
    return orjson.dumps({"type": event_type, "object": obj}) + b"\n"


def _etag_matches(if_none_match: str, etag: str) -> bool:
    """Whether an If-None-Match header names this (unquoted) entity tag: `*`, or one of its
    comma-separated tags, weak (`W/"..."`) or strong, as Go's http.ServeContent compares them."""
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or f'"{etag}"' in tags


def _wants_table(accept: str) -> bool:
    return "as=Table" in accept


def _merge_delete_query(request: Request, options: dict[str, Any]) -> None:
    if not isinstance(options, dict):
        raise errors.bad_request("the body of a delete request must be a DeleteOptions object")
    if "propagationPolicy" in request.query:
        options["propagationPolicy"] = request.query["propagationPolicy"]
    if "gracePeriodSeconds" in request.query:
        options["gracePeriodSeconds"] = request.int_param("gracePeriodSeconds")


def _warning_headers(opts: WriteOptions) -> list[tuple[bytes, bytes]]:
    return [(b"warning", f'299 - "{w}"'.encode()) for w in dict.fromkeys(opts.warnings)]


def _forbidden(user: UserInfo, info: RequestInfo, reason: str) -> errors.APIError:
    if not info.is_resource_request:
        return errors.APIError(
            403, "Forbidden",
            f'forbidden: User "{user.username}" cannot {info.verb} path "{info.path}"')
    scope = f'in the namespace "{info.namespace}"' if info.namespace else "at the cluster scope"
    err = errors.forbidden_error(user.username, info.verb, info.resource, info.api_group,
                                 info.name or None, scope, info.subresource)
    if reason:
        err.message += f": {reason}"
    return err


def _headers(scope: dict) -> dict[str, str]:
    """Request headers by lowercase name; repeated headers joined with ", "."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1")
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _query(scope: dict) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The query as {name: first value} and as the full list of pairs."""
    items = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    first: dict[str, str] = {}
    for name, value in items:
        first.setdefault(name, value)
    return first, items


def _status_response(err: errors.APIError) -> Response:
    headers = []
    if err.retry_after is not None:
        headers.append((b"retry-after", str(err.retry_after).encode()))
    return Response(err.code, orjson.dumps(err.status()), headers=headers)


async def _send(send: Any, response: Response) -> None:
    """Send `response`; `Cache-Control: no-cache, private` unless it sets its own, as
    kube-apiserver's WithCacheControl filter does."""
    headers = [(b"content-type", response.content_type.encode())]
    if not any(name == b"cache-control" for name, _ in response.headers):
        headers.append((b"cache-control", b"no-cache, private"))
    headers.extend(response.headers)
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


async def _refuse_websocket(scope: dict, send: Any, response: Response) -> None:
    """Answer a WebSocket handshake with an HTTP response instead of accepting it."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        headers = [(b"content-type", response.content_type.encode()), *response.headers]
        await send({"type": "websocket.http.response.start", "status": response.status,
                    "headers": headers})
        await send({"type": "websocket.http.response.body", "body": response.body})
        return
    reason = response.body.decode("utf-8", "replace")[:120]
    await send({"type": "websocket.close", "code": 1008, "reason": reason})


async def _close_on_disconnect(request: Request, close: Callable[[], None]) -> None:
    """Call `close` once the client of a streaming response has disconnected."""
    if request.receive is None:
        return
    while (await request.receive())["type"] != "http.disconnect":
        pass
    close()


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
