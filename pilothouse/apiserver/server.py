"""Assembling and running the API server.

`APIServer.start()` opens the datastore, creates the credentials on first start, starts
the watch cache, bootstraps the cluster's default objects (namespaces, RBAC policy),
starts the RBAC and CRD loops, and serves HTTPS with uvicorn on the event loop it runs
in. `/readyz` answers ok once all of that is done.

TLS client certificates are verified by the TLS layer against the cluster CA; small
subclasses of uvicorn's HTTP and WebSocket protocols put the verified subject into the ASGI
scope (`extensions.tls.client_subject`), where authentication reads it. WebSocket is there
for exec, attach and port-forward, which the API server relays to kubelets with its own
kubelet client certificate (`nodeproxy.py`). The pods/proxy, services/proxy and nodes/proxy
subresources relay plain HTTP to pods, Services' endpoints and kubelets (`proxy.py`).

The API server owns the cluster's service addresses: it allocates Services' cluster IPs
and node ports from the configured ranges (`serviceips.py`), runs the repair loop that
keeps those allocations true (`servicerepair.py`), and keeps the `kubernetes` Service (the
range's first address) and its Endpoints and EndpointSlice pointing at itself, as
kube-apiserver's endpoint reconciler does.

Dynamic admission webhooks (`webhooks.py`) are fed from the watch cache and called from the
registry's write path.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import ipaddress
import logging
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from ..machinery import errors
from ..machinery.addresses import SERVICE_CLUSTER_IP_RANGE, first_service_ip
from ..store import Store
from ..store.sqlite import SQLiteStore
from . import openapi as openapi_module
from .admission import default_plugins
from .authn import Authenticator, ServiceAccountTokens, load_token_file
from .bootstrap_policy import bootstrap_policy
from .crdcontroller import CRDController
from .http import APIServerApp
from .metrics import ResourceMetrics
from .nodeproxy import KubeletClient, NodeProxy
from .pki import PKI, load_signing_key
from .proxy import ResourceProxy
from .rbac import RBACAuthorizer
from .registry import ResourceTable
from .registry.generic import GenericRegistry, WriteOptions
from .serviceips import DEFAULT_NODE_PORT_RANGE, IPNetwork, PortRange, ServiceAddresses
from .servicerepair import DEFAULT_INTERVAL, ServiceAddressRepair
from .special import SpecialHandlers
from .watchcache import WatchCache
from .webhooks import WebhookDispatcher

log = logging.getLogger(__name__)

#: How often the `kubernetes` Service's Endpoints and EndpointSlice are checked
#: (kube-apiserver's --endpoint-reconciler interval).
ENDPOINT_RECONCILE_INTERVAL = 10.0
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
SKIP_MIRROR_LABEL = "endpointslice.kubernetes.io/skip-mirror"
#: The PriorityClasses every cluster has, for pods that must not be preempted.
SYSTEM_PRIORITY_CLASSES = (
    ("system-node-critical", 2_000_001_000, "Used for system critical pods that must not be "
     "moved from their current node."),
    ("system-cluster-critical", 2_000_000_000, "Used for system critical pods that must run "
     "in the cluster, but can be moved to another node if necessary."),
)
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
RBAC_PREFIX = "/registry/rbac.authorization.k8s.io/"
COMPACT_INTERVAL = 60.0
HISTORY_REVISIONS = 10_000
_RBAC_PLURALS = {"roles": "Role", "clusterroles": "ClusterRole", "rolebindings": "RoleBinding",
                 "clusterrolebindings": "ClusterRoleBinding"}


def _client_subject(transport: asyncio.BaseTransport) -> dict[str, list[str]] | None:
    """The subject of the client certificate the TLS layer verified, as {attribute: values}."""
    ssl_object = transport.get_extra_info("ssl_object")
    cert = ssl_object.getpeercert() if ssl_object is not None else None
    if not cert:
        return None
    subject: dict[str, list[str]] = {}
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            subject.setdefault(key, []).append(value)
    return subject


class _TLSIdentityProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, plus the verified client-certificate subject in the scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._client_subject = _client_subject(transport)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._client_subject:
            self.scope["extensions"] = {"tls": {"client_subject": self._client_subject}}


class _TLSIdentityWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, plus the verified client-certificate subject.

    The HTTP protocol hands an upgrade over by calling `connection_made` with the same TLS
    transport, then feeding it the request again; the scope is built when that request
    is parsed, and the app runs only on the next turn of the loop, so the subject added
    here is in the scope before the app reads it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn reads the offered subprotocols itself (scope["subprotocols"]) and names
        # the app's choice in the accept; websockets' strict parse of the header would
        # refuse Kubernetes' `SPDY/3.1+portforward.k8s.io`, which is not an RFC 7230 token.
        self.conn.process_subprotocol = lambda headers: None  # type: ignore[method-assign]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._client_subject = _client_subject(transport)

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            # The handshake was answered (refused): without this uvicorn logs that the app
            # "returned without completing handshake" after every refusal.
            self.handshake_complete = True

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if self._client_subject and scope is not None:
            scope["extensions"]["tls"] = {"client_subject": self._client_subject}


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling: `up` owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    port: int = 6443
    host: str = "127.0.0.1"
    #: How long pods tolerate a not-ready / unreachable node unless they say otherwise.
    default_not_ready_toleration_seconds: int = 300
    default_unreachable_toleration_seconds: int = 300
    #: Where Services' cluster IPs come from (`--service-cluster-ip-range`).
    service_cluster_ip_range: IPNetwork = SERVICE_CLUSTER_IP_RANGE
    #: Where their node ports come from, inclusive (`--service-node-port-range`).
    service_node_port_range: PortRange = DEFAULT_NODE_PORT_RANGE
    #: Seconds between runs of the service address repair loop (also run at start).
    service_repair_interval: float = DEFAULT_INTERVAL

    @property
    def kubernetes_service_ip(self) -> str:
        return first_service_ip(self.service_cluster_ip_range)


class APIServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pki = PKI(settings.data_dir / "pki")
        self.store: Store | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._server: _Server | None = None
        self.app: APIServerApp | None = None
        self.kubelets: KubeletClient | None = None
        self.resource_proxy: ResourceProxy | None = None
        self.watch_cache: WatchCache | None = None

    async def start(self) -> None:
        settings = self.settings
        self.pki.ensure(serving_ips=(settings.kubernetes_service_ip,))
        self.store = store = SQLiteStore.open(settings.data_dir / "state.db")
        # The built-in models behind OpenAPI and strict field validation (shipped data,
        # machinery/k8s_models) and their schemas: built off the event loop while the rest
        # starts.
        threading.Thread(target=_warm_and_freeze, name="openapi-warm", daemon=True).start()
        table = ResourceTable()
        registry = GenericRegistry(store, default_plugins(
            not_ready_toleration_seconds=settings.default_not_ready_toleration_seconds,
            unreachable_toleration_seconds=settings.default_unreachable_toleration_seconds),
            service_addresses=ServiceAddresses(
                store, cluster_ip_range=settings.service_cluster_ip_range,
                node_port_range=settings.service_node_port_range))
        self.watch_cache = watch_cache = WatchCache(store)
        await watch_cache.start()
        registry.webhooks = webhooks = WebhookDispatcher(registry, table)
        await webhooks.start(watch_cache)
        authorizer = RBACAuthorizer()
        tokens = ServiceAccountTokens(load_signing_key(self.pki.sa_key))

        async def service_account_exists(namespace: str, name: str, uid: str,
                                         pod_name: str | None, pod_uid: str | None) -> bool:
            return await _exists(registry, table, "serviceaccounts", namespace, name, uid) and (
                pod_name is None
                or await _exists(registry, table, "pods", namespace, pod_name, pod_uid or ""))

        authenticator = Authenticator(tokens=load_token_file(self.pki.tokens_file),
                                      service_accounts=tokens,
                                      object_exists=service_account_exists)
        openapi = openapi_module.OpenAPIDocuments(lambda: list(table))
        special = SpecialHandlers(table=table, registry=registry, authenticator=authenticator,
                                  authorizer=authorizer, tokens=tokens)
        self.kubelets = kubelets = KubeletClient(cert=self.pki.kubelet_client_cert,
                                                 key=self.pki.kubelet_client_key)
        node_proxy = NodeProxy(table=table, registry=registry, kubelets=kubelets)
        self.resource_proxy = resource_proxy = ResourceProxy(table=table, registry=registry,
                                                             kubelets=kubelets)
        metrics = ResourceMetrics(table=table, registry=registry, kubelets=kubelets)
        self.app = app = APIServerApp(
            table=table, registry=registry, watch_cache=watch_cache, authenticator=authenticator,
            authorizer=authorizer, openapi=openapi,
            special=special.handlers() | node_proxy.handlers() | resource_proxy.handlers()
            | metrics.handlers())
        await _bootstrap(registry, table, settings)
        repair = ServiceAddressRepair(registry, table, interval=settings.service_repair_interval)
        await repair.run_once()
        self._tasks.append(asyncio.create_task(repair.run(), name="service-address-repair"))
        await _reconcile_kubernetes_endpoints(registry, table, settings)
        self._tasks.append(asyncio.create_task(
            self._reconcile_endpoints_forever(registry, table), name="endpoint-reconciler"))
        await self._start_rbac(registry, table, watch_cache, authorizer)
        crds = CRDController(table=table, registry=registry, watch_cache=watch_cache,
                             openapi=openapi)
        await crds.start()
        self._stoppers = [crds.stop, webhooks.stop, watch_cache.stop]
        self._tasks.append(asyncio.create_task(self._compact_forever(store), name="compactor"))
        config = uvicorn.Config(
            app, host=settings.host, port=settings.port, http=_TLSIdentityProtocol,
            ws=_TLSIdentityWebSocketProtocol,
            ssl_certfile=str(self.pki.serving_cert), ssl_keyfile=str(self.pki.serving_key),
            ssl_ca_certs=str(self.pki.ca_cert), ssl_cert_reqs=ssl.CERT_OPTIONAL,
            lifespan="off", access_log=False, log_level="warning",
            timeout_keep_alive=120, backlog=4096,
        )
        self._server = _Server(config)
        self._tasks.append(asyncio.create_task(self._server.serve(), name="https"))
        while not self._server.started:
            if self._tasks[-1].done():
                self._tasks[-1].result()
                raise OSError(f"the API server could not listen on {settings.host}:{settings.port}")
            await asyncio.sleep(0.01)
        app.ready.set()

    async def _start_rbac(self, registry: GenericRegistry, table: ResourceTable,
                          watch_cache: WatchCache, authorizer: RBACAuthorizer) -> None:
        """Feed the authorizer from the RBAC objects, and keep aggregated roles written."""
        revision = 0
        for plural, kind in _RBAC_PLURALS.items():
            res = table.lookup("rbac.authorization.k8s.io", "v1", plural)
            assert res is not None
            listed = await registry.list(res, None)
            for obj in listed.items:
                authorizer.upsert(kind, obj)
            revision = max(revision, int(listed.resource_version))
        watcher = watch_cache.watch(RBAC_PREFIX, revision)
        cluster_roles = table.lookup("rbac.authorization.k8s.io", "v1", "clusterroles")
        assert cluster_roles is not None

        async def write_aggregations() -> None:
            for name in list(authorizer.aggregated_names()):
                rules = authorizer.aggregated_rules(name)
                if rules is None:
                    continue

                def set_rules(obj: dict[str, Any], rules: list[dict] = rules) -> None:
                    obj["rules"] = rules

                with contextlib.suppress(errors.APIError):
                    await registry.mutate(cluster_roles, None, name, set_rules)

        async def follow() -> None:
            await write_aggregations()
            while True:
                event = await watcher.next(3600)
                if event is None:
                    if watcher.closed:
                        return
                    continue
                plural, _, rest = event.key[len(RBAC_PREFIX):].partition("/")
                kind = _RBAC_PLURALS.get(plural)
                if kind is None:
                    continue
                if event.deleted:
                    namespace, _, name = rest.rpartition("/")
                    authorizer.remove(kind, namespace or None, name)
                else:
                    authorizer.upsert(kind, event.obj())
                if kind == "ClusterRole":
                    await write_aggregations()

        self._tasks.append(asyncio.create_task(follow(), name="rbac"))

    async def _reconcile_endpoints_forever(self, registry: GenericRegistry,
                                          table: ResourceTable) -> None:
        while True:
            await asyncio.sleep(ENDPOINT_RECONCILE_INTERVAL)
            try:
                await _reconcile_kubernetes_endpoints(registry, table, self.settings)
            except errors.APIError as err:
                log.warning("could not reconcile the kubernetes service's endpoints: %s", err)

    async def _compact_forever(self, store: Store) -> None:
        while True:
            await asyncio.sleep(COMPACT_INTERVAL)
            target = store.revision - HISTORY_REVISIONS
            if target > store.compacted_revision:
                await store.compact(target)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        # uvicorn waits for requests in flight: end the watches, whose clients (the
        # components `up` has just stopped) may be gone without the server noticing yet.
        if self.watch_cache is not None:
            self.watch_cache.close_watchers()
        for task in self._tasks:
            if task.get_name() == "https":
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 5)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for stop in getattr(self, "_stoppers", []):
            await stop()
        if self.kubelets is not None:
            await self.kubelets.close()
        if self.resource_proxy is not None:
            await self.resource_proxy.close()
        if self.store is not None:
            await self.store.close()


def _warm_and_freeze() -> None:
    """Build the built-in schemas, then move them out of the garbage collector's sight.

    They live for the whole process; without the freeze every full collection walks them
    (100-130 ms stalls seen in bench/watch_fanout.py when they were the client's ~200,000
    model objects; the shipped data leaves about a quarter of that).
    """
    openapi_module.warm()
    gc.collect()
    gc.freeze()


async def _ensure_kubernetes_service(registry: GenericRegistry, table: ResourceTable,
                                     settings: Settings) -> None:
    """The `default/kubernetes` Service at the range's first address. The API server owns it:
    one left with an address outside the configured range (the range changed) is replaced,
    and its port follows the server's."""
    services = table.lookup("", "v1", "services")
    assert services is not None
    ip = settings.kubernetes_service_ip
    ports = [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": settings.port}]
    with contextlib.suppress(errors.APIError):
        current = await registry.get(services, "default", "kubernetes")
        current_ip = (current.get("spec") or {}).get("clusterIP") or ""
        try:
            in_range = ipaddress.ip_address(current_ip) in settings.service_cluster_ip_range
        except ValueError:
            in_range = False
        if in_range:
            if (current.get("spec") or {}).get("ports") != ports:

                def set_ports(svc: dict[str, Any]) -> None:
                    svc["spec"]["ports"] = copy.deepcopy(ports)

                await registry.mutate(services, "default", "kubernetes", set_ports)
            return
        log.warning("the kubernetes service's cluster IP %s is not within the service range "
                    "%s: recreating it at %s", current_ip, settings.service_cluster_ip_range, ip)
        await registry.purge(services, "default", "kubernetes")
    kubernetes = {"metadata": {"name": "kubernetes", "namespace": "default",
                               "labels": {"component": "apiserver", "provider": "kubernetes"}},
                  "spec": {"clusterIP": ip, "ports": copy.deepcopy(ports)}}
    try:
        await registry.create(services, "default", kubernetes,
                              WriteOptions(field_manager="pilothouse-apiserver"))
    except errors.APIError as err:
        if err.code != 409:
            log.error("could not create the kubernetes service: %s", err)


def _advertise_address(host: str) -> str:
    """The address the `kubernetes` Service's endpoints name: the serving address, or
    loopback when the server listens on every address or on a name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "127.0.0.1"
    if address.is_unspecified:
        return "::1" if address.version == 6 else "127.0.0.1"
    return str(address)


async def _reconcile_kubernetes_endpoints(registry: GenericRegistry, table: ResourceTable,
                                          settings: Settings) -> None:
    """Point the `kubernetes` Service's Endpoints and EndpointSlice at this API server, as
    kube-apiserver's endpoint reconciler (pkg/controlplane/reconcilers) does."""
    address = _advertise_address(settings.host)
    port = {"name": "https", "port": settings.port, "protocol": "TCP"}
    wanted = (
        (table.lookup("", "v1", "endpoints"),
         {"labels": {SKIP_MIRROR_LABEL: "true"}},
         {"subsets": [{"addresses": [{"ip": address}], "ports": [port]}]}),
        (table.lookup("discovery.k8s.io", "v1", "endpointslices"),
         {"labels": {SERVICE_NAME_LABEL: "kubernetes"}},
         {"addressType": "IPv6" if ":" in address else "IPv4",
          "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
          "ports": [port]}),
    )
    for res, meta, body in wanted:
        assert res is not None
        try:
            current = await registry.get(res, "default", "kubernetes")
        except errors.APIError:
            obj = {"metadata": {"name": "kubernetes", "namespace": "default", **meta}, **body}
            with contextlib.suppress(errors.APIError):  # another server was first
                await registry.create(res, "default", obj,
                                      WriteOptions(field_manager="pilothouse-apiserver"))
            continue
        if (current["metadata"].get("labels") or {}) == meta["labels"] and all(
                current.get(k) == v for k, v in body.items()):
            continue

        def reset(obj: dict[str, Any], meta: dict[str, Any] = meta,
                  body: dict[str, Any] = body) -> None:
            obj["metadata"]["labels"] = dict(meta["labels"])
            obj.update(copy.deepcopy(body))

        await registry.mutate(res, "default", "kubernetes", reset)


async def _exists(registry: GenericRegistry, table: ResourceTable, plural: str, namespace: str,
                  name: str, uid: str) -> bool:
    res = table.lookup("", "v1", plural)
    assert res is not None
    try:
        obj = await registry.get(res, namespace, name)
    except errors.APIError:
        return False
    return not uid or obj["metadata"].get("uid") == uid


async def _bootstrap(registry: GenericRegistry, table: ResourceTable, settings: Settings) -> None:
    """Create the default namespaces, the `kubernetes` service and the RBAC policy a fresh
    cluster has (idempotent)."""
    namespaces = table.lookup("", "v1", "namespaces")
    assert namespaces is not None
    for name in DEFAULT_NAMESPACES:
        with contextlib.suppress(errors.APIError):
            await registry.create(namespaces, None, {"metadata": {"name": name}},
                                  WriteOptions(field_manager="pilothouse-apiserver"))
    await _ensure_kubernetes_service(registry, table, settings)
    priority_classes = table.lookup("scheduling.k8s.io", "v1", "priorityclasses")
    assert priority_classes is not None
    for name, value, description in SYSTEM_PRIORITY_CLASSES:
        with contextlib.suppress(errors.APIError):
            await registry.create(priority_classes, None, {
                "metadata": {"name": name}, "value": value, "description": description},
                WriteOptions(field_manager="pilothouse-apiserver"))
    for obj in bootstrap_policy():
        plural = obj["kind"].lower() + "s"
        res = table.lookup("rbac.authorization.k8s.io", "v1", plural)
        assert res is not None
        name = obj["metadata"]["name"]
        try:
            current = await registry.get(res, None, name)
        except errors.APIError:
            await registry.create(res, None, obj, WriteOptions(field_manager="pilothouse-apiserver"))
            continue
        annotations = current["metadata"].get("annotations") or {}
        if annotations.get("rbac.authorization.kubernetes.io/autoupdate") == "false":
            continue
        wanted = {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind")}
        if obj["kind"] == "ClusterRole" and obj.get("aggregationRule"):
            wanted.pop("rules", None)
        if any(current.get(k) != v for k, v in wanted.items()):

            def refresh(cur: dict[str, Any], wanted: dict[str, Any] = wanted) -> None:
                cur.update(wanted)

            await registry.mutate(res, None, name, refresh)


__all__ = ["APIServer", "Settings"]
