"""An API server started in-process beside a fake kubelet, for tests of what lies between.

Both run on one event loop in a background thread, so a module can share them across its
tests: `cluster.run(coroutine)` runs a test's coroutine on that loop. `cluster.session(user)`
is an aiohttp session authenticated by a client certificate of the cluster CA (the admin's
by default). Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from pilothouse.apiserver.pki import ADMIN_GROUPS, ADMIN_USER
from pilothouse.apiserver.server import APIServer, Settings
from tests.fake_kubelet import BackgroundLoop, FakeKubelet


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class InProcessCluster:
    server: APIServer
    kubelet: FakeKubelet
    background: BackgroundLoop

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.server.settings.port}"

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        return self.background.run(coroutine, timeout)

    @contextlib.asynccontextmanager
    async def session(self, user: str = ADMIN_USER, groups: tuple[str, ...] = ADMIN_GROUPS
                      ) -> AsyncIterator[aiohttp.ClientSession]:
        context = ssl.create_default_context(cafile=str(self.server.pki.ca_cert))
        context.load_cert_chain(*self.server.pki.ensure_client(user, groups))
        async with aiohttp.ClientSession(self.base,
                                         connector=aiohttp.TCPConnector(ssl=context)) as session:
            yield session


@contextlib.contextmanager
def in_process_cluster(workdir: Path) -> Iterator[InProcessCluster]:
    background = BackgroundLoop("in-process-cluster")

    async def start() -> InProcessCluster:
        server = APIServer(Settings(data_dir=workdir / "data", port=free_port()))
        await server.start()
        kubelet = FakeKubelet(server.pki.ca_cert, workdir)
        await kubelet.start()
        cluster = InProcessCluster(server, kubelet, background)
        async with cluster.session() as admin:
            await create_namespace_accounts(admin, "default")
        return cluster

    cluster = background.run(start())
    try:
        yield cluster
    finally:
        background.run(cluster.kubelet.stop())
        background.run(cluster.server.stop())
        background.close()


async def create(session: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> dict:
    async with session.post(path, json=body) as response:
        assert response.status == 201, await response.text()
        return await response.json()


async def create_nodes(session: aiohttp.ClientSession, cluster: InProcessCluster, *,
                       labels: dict[str, dict[str, str]] | None = None) -> None:
    """Node `n1`, served by the fake kubelet, and `hollow-1`, a hollow node (no kubelet)."""
    labels = labels or {}
    await create(session, "/api/v1/nodes", cluster.kubelet.node("n1", labels.get("n1")))
    hollow = cluster.kubelet.node("hollow-1", labels.get("hollow-1"))
    hollow["status"]["nodeInfo"]["containerRuntimeVersion"] = "hollow://"
    await create(session, "/api/v1/nodes", hollow)


async def create_namespace_accounts(session: aiohttp.ClientSession, namespace: str) -> None:
    """The `default` ServiceAccount that ServiceAccount admission requires of pods: no
    controller manager runs here to make it."""
    await create(session, f"/api/v1/namespaces/{namespace}/serviceaccounts",
                 {"metadata": {"name": "default"}})


def pod(name: str, node: str | None, *containers: str, namespace: str = "default",
        labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"containers": [{"name": c, "image": "python:3.11"} for c in containers],
                 **spec},
    }
    if node:
        body["spec"]["nodeName"] = node
    return body


def component_kubeconfigs(cluster: InProcessCluster, directory: Path, component: str,
                          key: str) -> dict[str, Path]:
    """Kubeconfigs for a platform component's own identity (under `key`), so a test runs
    it with exactly the rights `up` gives it, and for the admin (under "admin")."""
    from pilothouse.apiserver.bootstrap_policy import PLATFORM_COMPONENTS
    from pilothouse.cli import write_kubeconfig

    pki = cluster.server.pki
    user, groups = PLATFORM_COMPONENTS[component]
    paths = {key: directory / f"{component}.kubeconfig", "admin": directory / "admin.kubeconfig"}
    write_kubeconfig(pki, paths[key], cluster.base, user, *pki.ensure_client(user, groups))
    write_kubeconfig(pki, paths["admin"], cluster.base, ADMIN_USER, *pki.client_cert(ADMIN_USER))
    return paths
