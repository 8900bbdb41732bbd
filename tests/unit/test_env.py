"""The container environment and command line, as the kubelet builds them."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from typing import Any

import pytest

from pilothouse.node.env import ConfigError, container_argv, container_env, expand

ALLOCATABLE = {"cpu": "4", "memory": "8Gi", "ephemeral-storage": "100Gi"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


OBJECTS: dict[tuple[str, str], dict[str, Any]] = {
    ("ConfigMap", "settings"): {"data": {"MODE": "fast", "LEVEL": "3", "1bad": "x",
                                         "also bad": "y"}},
    ("Secret", "creds"): {"data": {"PASSWORD": b64("s3cret"), "TOKEN": b64("t0k")}},
}


def pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1",
                         "labels": {"app": "web", "tier": "front"},
                         "annotations": {"note": 'say "hi"\n'}},
            "spec": {"nodeName": "node-a", "serviceAccountName": "builder",
                     "containers": [], **spec}}


def container(**fields: Any) -> dict[str, Any]:
    return {"name": "main", "image": "python", **fields}


def service(name: str, namespace: str, ip: str = "10.96.0.10",
            ports: list[dict] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": ip, "ports": ports if ports is not None else [
                {"name": "http", "port": 80, "protocol": "TCP"}]}}


def build(ctr: Mapping[str, Any], *, the_pod: dict | None = None, services: list | None = None,
          warnings: list | None = None) -> dict[str, str]:
    calls: list[tuple[str, str, str]] = []

    async def lookup(kind: str, namespace: str, name: str) -> dict | None:
        calls.append((kind, namespace, name))
        return OBJECTS.get((kind, name))

    async def warn(reason: str, message: str) -> None:
        if warnings is not None:
            warnings.append((reason, message))

    return asyncio.run(container_env(
        the_pod or pod(), ctr, lookup=lookup, services=services or [], pod_ip="127.0.0.5",
        host_ip="192.168.1.2", node_name="node-a", node_allocatable=ALLOCATABLE, warn=warn))


# -- $(VAR) expansion ---------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("$(A)-$(B)", "1-two"),
    ("$$(A)", "$(A)"),               # $$ escapes the reference
    ("$$$(A)", "$1"),
    ("$(MISSING)", "$(MISSING)"),    # unresolved references stay as written
    ("$(A", "$(A"),                  # unterminated
    ("cost: 5$", "cost: 5$"),        # a trailing $ is kept
    ("$A $x", "$A $x"),              # $ before anything but ( or $ is kept
    ("$()", "$()"),
    ("a$(A)$(A)b", "a11b"),
])
def test_expand_follows_kubernetes_rules(text: str, expected: str) -> None:
    assert expand(text, {"A": "1", "B": "two"}) == expected


def test_argv_expands_command_and_args_and_falls_back_to_the_image_entrypoint() -> None:
    env = {"PORT": "8080"}
    assert container_argv(container(command=["serve", "--port=$(PORT)"], args=["$$(PORT)"]),
                          env) == ["serve", "--port=8080", "$(PORT)"]
    assert container_argv(container(args=["-m", "http.server", "$(PORT)"]), env,
                          ["python"]) == ["python", "-m", "http.server", "8080"]
    assert container_argv(container(), env) == []


# -- ordering and sources ---------------------------------------------------------------


def test_order_is_services_then_env_from_then_env_with_expansion_against_earlier() -> None:
    env = build(container(
        envFrom=[{"configMapRef": {"name": "settings"}},
                 {"secretRef": {"name": "creds"}, "prefix": "DB_"}],
        env=[{"name": "URL", "value": "http://$(WEB_SERVICE_HOST):$(LEVEL)/$(LATER)"},
             {"name": "LEVEL", "value": "9"},
             {"name": "LATER", "value": "x"},
             {"name": "EMPTY", "value": ""}]),
        services=[service("web", "shop")])
    names = list(env)
    assert names.index("WEB_SERVICE_HOST") < names.index("MODE") < names.index("DB_PASSWORD")
    assert env["URL"] == "http://10.96.0.10:3/$(LATER)"  # LEVEL from envFrom; LATER not yet
    assert env["LEVEL"] == "9" and env["DB_PASSWORD"] == "s3cret" and env["EMPTY"] == ""
    assert "PASSWORD" not in env


def test_invalid_env_from_keys_are_skipped_and_reported() -> None:
    warnings: list[tuple[str, str]] = []
    env = build(container(envFrom=[{"configMapRef": {"name": "settings"}}]),
                warnings=warnings)
    assert "1bad" not in env and "also bad" not in env and env["MODE"] == "fast"
    assert warnings == [("InvalidEnvironmentVariableNames",
                         "Keys [1bad, also bad] from the EnvFrom configMap shop/settings were "
                         "skipped since they are considered invalid environment variable "
                         "names.")]


def test_missing_sources_fail_with_the_kubelets_messages_unless_optional() -> None:
    cases = [
        ({"envFrom": [{"configMapRef": {"name": "nope"}}]}, 'configmap "nope" not found'),
        ({"envFrom": [{"secretRef": {"name": "nope"}}]}, 'secret "nope" not found'),
        ({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings",
                                                                  "key": "k"}}}]},
         "couldn't find key k in ConfigMap shop/settings"),
        ({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}}}]},
         "couldn't find key k in Secret shop/creds"),
        ({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}]},
         'secret "gone" not found'),
    ]
    for fields, message in cases:
        with pytest.raises(ConfigError) as err:
            build(container(**fields))
        assert str(err.value) == message
    env = build(container(
        envFrom=[{"configMapRef": {"name": "nope", "optional": True}}],
        env=[{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k",
                                                             "optional": True}}},
             {"name": "B", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k",
                                                          "optional": True}}},
             {"name": "C", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "TOKEN"}}}]))
    assert "A" not in env and "B" not in env and env["C"] == "t0k"


def test_lookup_failures_other_than_not_found_are_config_errors() -> None:
    from pilothouse.client import ApiError

    async def lookup(kind: str, namespace: str, name: str) -> dict | None:
        raise ApiError(403, {"reason": "Forbidden",
                             "message": 'configmaps "settings" is forbidden: no'})

    with pytest.raises(ConfigError, match='configmaps "settings" is forbidden: no'):
        asyncio.run(container_env(pod(), container(envFrom=[{"configMapRef": {
            "name": "settings"}}]), lookup=lookup, services=[], pod_ip="", host_ip="",
            node_name="n"))


# -- the downward API in env ------------------------------------------------------------


def field(path: str) -> dict[str, Any]:
    return {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}


def test_every_field_ref() -> None:
    paths = {
        "NAME": "metadata.name", "NS": "metadata.namespace", "UID": "metadata.uid",
        "APP": "metadata.labels['app']", "NOTE": "metadata.annotations['note']",
        "NONE": "metadata.labels['absent']", "LABELS": "metadata.labels",
        "ANNOTATIONS": "metadata.annotations", "NODE": "spec.nodeName",
        "SA": "spec.serviceAccountName", "HOST_IP": "status.hostIP",
        "HOST_IPS": "status.hostIPs", "POD_IP": "status.podIP", "POD_IPS": "status.podIPs",
    }
    env = build(container(env=[{"name": k, "valueFrom": field(v)} for k, v in paths.items()]))
    assert {k: env[k] for k in paths} == {
        "NAME": "web-1", "NS": "shop", "UID": "u-1", "APP": "web", "NOTE": 'say "hi"\n',
        "NONE": "", "LABELS": 'app="web"\ntier="front"',
        "ANNOTATIONS": 'note="say \\"hi\\"\\n"', "NODE": "node-a", "SA": "builder",
        "HOST_IP": "192.168.1.2", "HOST_IPS": "192.168.1.2", "POD_IP": "127.0.0.5",
        "POD_IPS": "127.0.0.5"}
    with pytest.raises(ConfigError, match="unsupported fieldPath: spec.hostname"):
        build(container(env=[{"name": "X", "valueFrom": field("spec.hostname")}]))


def resource(name: str, divisor: str | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"resource": name}
    if divisor:
        ref["divisor"] = divisor
    return {"resourceFieldRef": ref}


def test_resource_field_refs_round_up_and_default_limits_to_node_allocatable() -> None:
    ctr = container(resources={"limits": {"cpu": "1500m", "memory": "1Gi"},
                               "requests": {"cpu": "250m", "memory": "100Mi"}},
                    env=[{"name": "CPU", "valueFrom": resource("limits.cpu")},
                         {"name": "CPU_M", "valueFrom": resource("limits.cpu", "1m")},
                         {"name": "MEM_MI", "valueFrom": resource("limits.memory", "1Mi")},
                         {"name": "REQ_CPU", "valueFrom": resource("requests.cpu")},
                         {"name": "REQ_MEM", "valueFrom": resource("requests.memory")},
                         {"name": "DISK_GI", "valueFrom": resource(
                             "limits.ephemeral-storage", "1Gi")},
                         {"name": "REQ_DISK", "valueFrom": resource(
                             "requests.ephemeral-storage")}])
    env = build(ctr)
    assert (env["CPU"], env["CPU_M"], env["MEM_MI"], env["REQ_CPU"], env["REQ_MEM"],
            env["DISK_GI"], env["REQ_DISK"]) == ("2", "1500", "1024", "1", "104857600",
                                                 "100", "0")
    unlimited = build(container(env=[{"name": "CPU", "valueFrom": resource("limits.cpu")},
                                     {"name": "MEM", "valueFrom": resource("limits.memory",
                                                                           "1Gi")}]))
    assert (unlimited["CPU"], unlimited["MEM"]) == ("4", "8")
    with pytest.raises(ConfigError, match="unsupported container resource : limits.gpu"):
        build(container(env=[{"name": "X", "valueFrom": resource("limits.gpu")}]))


# -- service links ------------------------------------------------------------------------


def test_service_variables_for_the_namespace_and_the_kubernetes_service() -> None:
    services = [
        service("kubernetes", "default", "10.96.0.1", [{"name": "https", "port": 443,
                                                        "protocol": "TCP"}]),
        service("redis-primary", "shop", "10.96.0.20",
                [{"port": 6379}, {"name": "metrics", "port": 9121, "protocol": "UDP"}]),
        service("headless", "shop", "None"),
        service("elsewhere", "other"),
    ]
    env = build(container(), services=services)
    assert {k: v for k, v in env.items() if k.startswith("REDIS")} == {
        "REDIS_PRIMARY_SERVICE_HOST": "10.96.0.20",
        "REDIS_PRIMARY_SERVICE_PORT": "6379",
        "REDIS_PRIMARY_SERVICE_PORT_METRICS": "9121",
        "REDIS_PRIMARY_PORT": "tcp://10.96.0.20:6379",
        "REDIS_PRIMARY_PORT_6379_TCP": "tcp://10.96.0.20:6379",
        "REDIS_PRIMARY_PORT_6379_TCP_PROTO": "tcp",
        "REDIS_PRIMARY_PORT_6379_TCP_PORT": "6379",
        "REDIS_PRIMARY_PORT_6379_TCP_ADDR": "10.96.0.20",
        "REDIS_PRIMARY_PORT_9121_UDP": "udp://10.96.0.20:9121",
        "REDIS_PRIMARY_PORT_9121_UDP_PROTO": "udp",
        "REDIS_PRIMARY_PORT_9121_UDP_PORT": "9121",
        "REDIS_PRIMARY_PORT_9121_UDP_ADDR": "10.96.0.20",
    }
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert not any(k.startswith(("HEADLESS", "ELSEWHERE")) for k in env)

    unlinked = build(container(), services=services,
                     the_pod=pod(enableServiceLinks=False))
    assert "KUBERNETES_SERVICE_HOST" in unlinked
    assert not any(k.startswith("REDIS") for k in unlinked)

    overridden = build(container(env=[{"name": "KUBERNETES_SERVICE_HOST", "value": "mine"}]),
                       services=services)
    assert overridden["KUBERNETES_SERVICE_HOST"] == "mine"
