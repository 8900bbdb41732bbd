"""The `kubernetes` Service the API server owns: the service range's first address, its
Endpoints and EndpointSlice naming the server, a serving certificate that names the
address, and both following a change of `--service-cluster-ip-range`."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509

from pilothouse.apiserver.server import APIServer, Settings
from pilothouse.apiserver.serviceips import IP_PREFIX
from pilothouse.cli import main
from tests.inprocess import free_port


def serving_ips(server: APIServer) -> set[str]:
    cert = x509.load_pem_x509_certificate(server.pki.serving_cert.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}


async def started(data_dir: Path, **settings) -> APIServer:
    server = APIServer(Settings(data_dir=data_dir, port=free_port(), **settings))
    await server.start()
    return server


async def kubernetes_objects(server: APIServer) -> tuple[dict, dict, dict]:
    assert server.app is not None
    registry, table = server.app.registry, server.app.table
    found = []
    for group, plural in (("", "services"), ("", "endpoints"),
                          ("discovery.k8s.io", "endpointslices")):
        res = table.lookup(group, "v1", plural)
        found.append(await registry.get(res, "default", "kubernetes"))
    return found[0], found[1], found[2]


def test_the_kubernetes_service_its_endpoints_and_certificate(tmp_path):
    async def scenario() -> None:
        server = await started(tmp_path)
        try:
            service, endpoints, endpoint_slice = await kubernetes_objects(server)
            port = server.settings.port
            assert service["spec"]["clusterIP"] == "127.96.0.1"
            assert await server.store.get(IP_PREFIX + "127.96.0.1") is not None
            assert endpoints["subsets"] == [{"addresses": [{"ip": "127.0.0.1"}], "ports": [
                {"name": "https", "port": port, "protocol": "TCP"}]}]
            assert endpoints["metadata"]["labels"] == {
                "endpointslice.kubernetes.io/skip-mirror": "true"}
            assert endpoint_slice["metadata"]["labels"] == {
                "kubernetes.io/service-name": "kubernetes"}
            assert endpoint_slice["addressType"] == "IPv4"
            assert endpoint_slice["endpoints"] == [{"addresses": ["127.0.0.1"],
                                                    "conditions": {"ready": True}}]
            assert endpoint_slice["ports"] == [{"name": "https", "port": port,
                                                "protocol": "TCP"}]
            assert "127.96.0.1" in serving_ips(server)
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_a_new_service_range_moves_the_kubernetes_service_and_reissues_the_cert(tmp_path):
    async def scenario() -> None:
        server = await started(tmp_path, service_cluster_ip_range=ipaddress.ip_network(
            "10.100.0.0/24"))
        try:
            service, _, _ = await kubernetes_objects(server)
            assert service["spec"]["clusterIP"] == "10.100.0.1"
            assert "10.100.0.1" in serving_ips(server)
        finally:
            await server.stop()
        server = await started(tmp_path)
        try:
            moved, _, _ = await kubernetes_objects(server)
            assert moved["spec"]["clusterIP"] == "127.96.0.1"
            assert moved["metadata"]["uid"] != service["metadata"]["uid"]
            assert await server.store.get(IP_PREFIX + "10.100.0.1") is None
            assert "127.96.0.1" in serving_ips(server)
        finally:
            await server.stop()
        server = await started(tmp_path)  # the same range, another port
        try:
            kept, endpoints, _ = await kubernetes_objects(server)
            assert kept["metadata"]["uid"] == moved["metadata"]["uid"]
            assert kept["spec"]["ports"][0]["targetPort"] == server.settings.port
            assert endpoints["subsets"][0]["ports"][0]["port"] == server.settings.port
        finally:
            await server.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize(("command", "flag", "value", "message"), [
    ("apiserver", "--service-cluster-ip-range", "10.0.0.0/33",
     "service-cluster-ip-range[0] is not a valid cidr"),
    ("up", "--service-cluster-ip-range", "10.0.0.0/30",
     "the service cluster IP range must be at least 8 IP addresses"),
    ("up", "--service-node-port-range", "32767-30000",
     "end port cannot be less than start port: 32767-30000"),
    ("apiserver", "--service-node-port-range", "lots", "unable to parse port range: lots"),
])
def test_bad_range_flags_exit_2_with_one_line(tmp_path, capsys, command, flag, value, message):
    assert main([command, "--data-dir", str(tmp_path), flag, value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert err.startswith(f'pilothouse {command}: invalid argument "{value}" for "{flag}" flag')


@pytest.mark.parametrize("command", [
    "controller-manager", "scheduler", "cloud-controller-manager", "operators", "node"])
def test_a_component_given_an_unusable_kubeconfig_exits_2_with_one_line(tmp_path, capsys,
                                                                        command):
    missing = tmp_path / "nothing.kubeconfig"
    assert main([command, "--kubeconfig", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"pilothouse {command}: cannot use kubeconfig {missing}: ")
