"""Protobuf request bodies, as kubectl's typed clients send them, decoded to JSON objects."""

from __future__ import annotations

import base64

import pytest

from pilothouse.apiserver.protobuf import decode_protobuf
from pilothouse.apiserver.protobuf_types import KIND_MESSAGES, MESSAGES
from pilothouse.machinery.errors import APIError

# `kubectl create namespace zz` (kubectl 1.32), byte for byte.
KUBECTL_CREATE_NS = (
    b'k8s\x00\n\x0f\n\x02v1\x12\tNamespace\x12\x1a\n\x12\n\x02zz\x12\x00\x1a\x00"\x00*\x002\x00'
    b'8\x00B\x00\x12\x00\x1a\x02\n\x00\x1a\x00"\x00'
)

# `kubectl create deployment web -n zz --image=nginx --replicas=0 --port=80`; Go writes every
# non-pointer field, so most of these bytes are empty strings, zeros and empty structs.
KUBECTL_CREATE_DEPLOYMENT = (
    b"k8s\x00\n\x15\n\x07apps/v1\x12\nDeployment\x12\xba\x01\n!\n\x03web\x12\x00\x1a\x02zz\"\x00*"
    b"\x002\x008\x00B\x00Z\n\n\x03app\x12\x03web\x12\x86\x01\x08\x00\x12\x0c\n\n\n\x03app\x12\x03web"
    b"\x1al\n\x1c\n\x00\x12\x00\x1a\x00\"\x00*\x002\x008\x00B\x00Z\n\n\x03app\x12\x03web\x12L\x12.\n"
    b"\x05nginx\x12\x05nginx*\x002\n\n\x00\x10\x00\x18P\"\x00*\x00B\x00j\x00r\x00\x80\x01\x00\x88\x01"
    b"\x00\x90\x01\x00\xa2\x01\x00\x1a\x002\x00B\x00J\x00R\x00X\x00`\x00h\x00\x82\x01\x00\x8a\x01"
    b"\x00\x9a\x01\x00\xc2\x01\x00\"\x02\n\x00(\x008\x00\x1a\x0c\x08\x00\x10\x00\x18\x00 \x00(\x008"
    b"\x00\x1a\x00\"\x00"
)


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def num(field: int, value: int) -> bytes:
    return varint(field << 3) + varint(value)


def msg(field: int, *parts: bytes | str) -> bytes:
    payload = b"".join(p.encode() if isinstance(p, str) else p for p in parts)
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def entry(field: int, key: str, value: bytes | str) -> bytes:
    return msg(field, msg(1, key), msg(2, value))


def envelope(api_version: str, kind: str, *fields: bytes) -> bytes:
    return b"k8s\x00" + msg(1, msg(1, api_version), msg(2, kind)) + msg(2, *fields) + msg(3) + msg(4)


def meta(name: str, *fields: bytes) -> bytes:
    """ObjectMeta as Go writes it: empty non-pointer strings and a zero creationTimestamp."""
    return msg(1, msg(1, name), msg(2), msg(3), msg(4), msg(5), msg(6), num(7, 0), msg(8), *fields)


def test_kubectl_create_namespace_body():
    assert decode_protobuf(KUBECTL_CREATE_NS) == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "zz"},
        "spec": {},
        "status": {},
    }


def test_kubectl_create_deployment_body_matches_its_json():
    """The same object `kubectl create deployment ... --dry-run=client -o json` prints."""
    assert decode_protobuf(KUBECTL_CREATE_DEPLOYMENT) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "zz", "labels": {"app": "web"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}], "resources": {}}
                    ]
                },
            },
            "strategy": {},
        },
        "status": {},
    }


def test_deployment_keeps_pointer_zero_and_decodes_containers():
    def container(name: str, image: str, port: int) -> bytes:
        return msg(
            2,
            msg(1, name),
            msg(2, image),
            msg(6, num(3, port), msg(4, "TCP")),
            msg(7, msg(1, "MODE"), msg(2, "fast")),
            msg(8, entry(1, "cpu", msg(1, "500m"))),
            msg(14, "IfNotPresent"),
        )

    body = envelope(
        "apps/v1",
        "Deployment",
        meta("web", entry(11, "app", "web"), entry(11, "tier", "front")),
        msg(
            2,
            num(1, 0),
            msg(2, entry(1, "app", "web")),
            msg(3, msg(1, entry(11, "app", "web")), msg(2, container("a", "nginx", 80), container("b", "redis", 6379))),
            msg(4),
            num(5, 0),
        ),
        msg(3),
    )
    container_json = {
        "env": [{"name": "MODE", "value": "fast"}],
        "resources": {"limits": {"cpu": "500m"}},
        "imagePullPolicy": "IfNotPresent",
    }
    assert decode_protobuf(body) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "a", "image": "nginx", "ports": [{"containerPort": 80, "protocol": "TCP"}], **container_json},
                        {"name": "b", "image": "redis", "ports": [{"containerPort": 6379, "protocol": "TCP"}], **container_json},
                    ]
                },
            },
            "strategy": {},
        },
        "status": {},
    }


def test_secret_binary_data_is_base64():
    blob = bytes(range(256))
    body = envelope("v1", "Secret", meta("creds"), entry(2, "blob", blob), entry(2, "empty", b""), msg(3, "Opaque"))
    secret = decode_protobuf(body)
    assert secret["data"] == {"blob": base64.b64encode(blob).decode(), "empty": ""}
    assert secret["type"] == "Opaque"


def test_self_subject_access_review_from_auth_can_i():
    body = envelope(
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        meta(""),
        msg(2, msg(1, msg(1, "team-a"), msg(2, "list"), msg(3), msg(4), msg(5, "pods"), msg(6), msg(7))),
        msg(3, num(1, 0), num(4, 0)),
    )
    assert decode_protobuf(body) == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "metadata": {},
        "spec": {"resourceAttributes": {"namespace": "team-a", "verb": "list", "resource": "pods"}},
        "status": {"allowed": False},
    }


def test_token_request_keeps_expiration_and_audiences():
    body = envelope(
        "authentication.k8s.io/v1",
        "TokenRequest",
        meta("builder"),
        msg(2, msg(1, "api"), msg(1, "vault"), num(4, 3600)),
        msg(3, msg(1), msg(2)),
    )
    request = decode_protobuf(body)
    assert request["spec"] == {"audiences": ["api", "vault"], "expirationSeconds": 3600}
    assert request["status"] == {"token": ""}


def test_service_target_port_int_or_string_and_negative_ints():
    def port(name: str, number: int, target: bytes) -> bytes:
        return msg(1, msg(1, name), msg(2, "TCP"), num(3, number), msg(4, target))

    body = envelope(
        "v1",
        "Service",
        meta("web"),
        msg(2, port("http", 80, num(1, 1) + msg(3, "http-alt")), port("https", 443, num(1, 0) + num(2, 8443)), port("plain", 81, num(1, 0) + num(2, 0))),
    )
    ports = decode_protobuf(body)["spec"]["ports"]
    assert ports == [
        {"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http-alt"},
        {"name": "https", "protocol": "TCP", "port": 443, "targetPort": 8443},
        {"name": "plain", "protocol": "TCP", "port": 81},
    ]
    pc = decode_protobuf(envelope("scheduling.k8s.io/v1", "PriorityClass", meta("low"), num(2, -5)))
    assert pc["value"] == -5


def test_timestamps_and_embedded_json():
    fields_v1 = b'{"f:metadata":{"f:labels":{}}}'
    managed = msg(17, msg(1, "kubectl"), msg(2, "Apply"), msg(4, num(1, 1700000000)), msg(7, msg(1, fields_v1)))
    body = envelope("v1", "ConfigMap", meta("cfg", msg(9, num(1, 1700000000), num(2, 5)), managed), entry(2, "k", "v"))
    cm = decode_protobuf(body)
    assert cm["metadata"]["deletionTimestamp"] == "2023-11-14T22:13:20Z"
    assert cm["metadata"]["managedFields"] == [
        {"manager": "kubectl", "operation": "Apply", "time": "2023-11-14T22:13:20Z", "fieldsV1": {"f:metadata": {"f:labels": {}}}}
    ]
    assert cm["data"] == {"k": "v"}


def test_eviction_and_delete_options_under_any_group():
    options = msg(2, num(1, 0), msg(4, "Foreground"), msg(5, "All"))
    eviction = decode_protobuf(envelope("policy/v1", "Eviction", meta("pod-1", msg(3, "ns")), options))
    assert eviction["deleteOptions"] == {"gracePeriodSeconds": 0, "propagationPolicy": "Foreground", "dryRun": ["All"]}
    delete = decode_protobuf(b"k8s\x00" + msg(1, msg(1, "apps/v1"), msg(2, "DeleteOptions")) + msg(2, num(1, 30)))
    assert delete == {"apiVersion": "apps/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 30}


@pytest.mark.parametrize(
    "body",
    [
        b'{"kind": "Namespace"}',
        b"k8s\x00\n\x0f\n\x02v1\x12\tNamesp",
        b"k8s\x00" + msg(1, msg(1, "v1"), msg(2, "Namespace")) + b"\x12\x05\n\x80",
        b"k8s\x00" + msg(2, msg(1, msg(1, "x"))),
        envelope("v1", "Namespace", msg(1, num(1, 7))),
    ],
    ids=["json", "truncated-field", "truncated-varint", "no-kind", "wrong-wire-type"],
)
def test_malformed_bodies_are_bad_requests(body):
    with pytest.raises(APIError) as info:
        decode_protobuf(body)
    assert info.value.code == 400


def test_kind_without_protobuf_table_is_unsupported_media_type():
    with pytest.raises(APIError) as info:
        decode_protobuf(envelope("kubeflow.org/v1", "PyTorchJob", meta("train")))
    assert info.value.code == 415
    assert "kubeflow.org/v1, Kind=PyTorchJob" in info.value.message


def test_every_table_reference_resolves():
    assert set(KIND_MESSAGES.values()) <= set(MESSAGES)
    for fields in MESSAGES.values():
        for _, kind, element, _ in fields.values():
            assert (element in MESSAGES) == kind.endswith(("message", "inline"))
