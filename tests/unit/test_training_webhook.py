"""The training operator's validating webhook: its rules as pure functions, the
AdmissionReview it answers, the certificate it serves and the configuration it registers."""

from __future__ import annotations

import asyncio
import base64
import copy
import ipaddress
from typing import Any

import pytest
from cryptography import x509

from pilothouse.kubeflow.operators import run_training_operator
from pilothouse.kubeflow.training.crds import JAX, PYTORCH, TENSORFLOW, XGBOOST, JobKind
from pilothouse.kubeflow.training.validation import validate_job
from pilothouse.kubeflow.training.webhook import (
    CONFIGURATION_NAME,
    ServiceReference,
    WebhookServer,
    review_response,
    webhook_path,
)
from pilothouse.machinery.certs import serving_chain


def job(kind: JobKind, replicas: dict[str, int | None], *, name: str = "mnist",
        **spec: Any) -> dict[str, Any]:
    specs = {}
    for rtype, count in replicas.items():
        specs[rtype] = {"template": {"spec": {"containers": [
            {"name": kind.container, "image": "python:3.11"}]}}}
        if count is not None:
            specs[rtype]["replicas"] = count
    return {"apiVersion": "kubeflow.org/v1", "kind": kind.kind,
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {kind.replica_specs_field: specs, **spec}}


def rendered(kind: JobKind, obj: dict[str, Any], old: dict[str, Any] | None = None
             ) -> list[str]:
    return [cause.render() for cause in validate_job(kind, obj, old).causes]


def test_good_jobs_of_every_kind_pass() -> None:
    assert rendered(PYTORCH, job(PYTORCH, {"Master": 1, "Worker": 3})) == []
    assert rendered(PYTORCH, job(PYTORCH, {"Worker": 2})) == []
    assert rendered(TENSORFLOW, job(TENSORFLOW, {"Chief": 1, "PS": 2, "Worker": 0})) == []
    assert rendered(XGBOOST, job(XGBOOST, {"Master": 1, "Worker": 2})) == []
    assert rendered(JAX, job(JAX, {"Worker": 0})) == []


def test_no_replica_specs_and_unknown_types_are_named() -> None:
    none = job(PYTORCH, {})
    del none["spec"]["pytorchReplicaSpecs"]
    assert rendered(PYTORCH, none) == [
        "spec.pytorchReplicaSpecs: Required value: must be required"]
    unknown = job(PYTORCH, {"Master": 1, "Launcher": 1})
    assert rendered(PYTORCH, unknown) == [
        'spec.pytorchReplicaSpecs[Launcher]: Unsupported value: "Launcher": supported '
        'values: "Master", "Worker"']
    assert rendered(JAX, job(JAX, {"Master": 1})) == [
        'spec.jaxReplicaSpecs[Master]: Unsupported value: "Master": supported values: '
        '"Worker"']


def test_pytorch_replica_counts() -> None:
    assert rendered(PYTORCH, job(PYTORCH, {"Master": 2, "Worker": 1})) == [
        "spec.pytorchReplicaSpecs[Master].replicas: Forbidden: must be 1"]
    assert rendered(PYTORCH, job(PYTORCH, {"Master": None})) == [
        "spec.pytorchReplicaSpecs[Master].replicas: Forbidden: must be 1"]
    assert rendered(PYTORCH, job(PYTORCH, {"Master": 1, "Worker": 0})) == [
        "spec.pytorchReplicaSpecs[Worker].replicas: Forbidden: must be at least 1"]
    assert rendered(PYTORCH, job(PYTORCH, {"Master": 1, "Worker": -1})) == [
        "spec.pytorchReplicaSpecs[Worker].replicas: Forbidden: must be at least 1"]


def test_containers_need_an_image_and_the_framework_container() -> None:
    obj = job(PYTORCH, {"Master": 1, "Worker": 1})
    master = obj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    master["containers"] = [{"name": "main", "image": ""}]
    obj["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"] = []
    assert rendered(PYTORCH, obj) == [
        "spec.pytorchReplicaSpecs[Master].template.spec.containers[0].image: Required value: "
        "must be required",
        "spec.pytorchReplicaSpecs[Master].template.spec.containers: Required value: must "
        "have at least one container with name pytorch",
        "spec.pytorchReplicaSpecs[Worker].template.spec.containers: Required value: must be "
        "specified",
        "spec.pytorchReplicaSpecs[Worker].template.spec.containers: Required value: must "
        "have at least one container with name pytorch"]


def test_elastic_policy_rules_and_warning() -> None:
    elastic = job(PYTORCH, {"Master": 1}, elasticPolicy={"maxReplicas": 3})
    assert rendered(PYTORCH, elastic) == [
        "spec.pytorchReplicaSpecs[Worker]: Required value: must be configured if elastic "
        "policy is used"]
    both = job(PYTORCH, {"Worker": 2}, nprocPerNode="2", elasticPolicy={"nProcPerNode": 2})
    verdict = validate_job(PYTORCH, both)
    assert [c.render() for c in verdict.causes] == [
        "spec.elasticPolicy.nProcPerNode: Forbidden: must not be used with spec.nprocPerNode"]
    assert verdict.warnings == [
        "spec.elasticPolicy.nProcPerNode is deprecated, use spec.nprocPerNode instead"]
    deprecated_only = job(PYTORCH, {"Worker": 2}, elasticPolicy={"nProcPerNode": 2})
    verdict = validate_job(PYTORCH, deprecated_only)
    assert (verdict.causes, len(verdict.warnings)) == ([], 1)


def test_xgboost_needs_one_master_and_tf_at_most_one_chief_or_master() -> None:
    assert rendered(XGBOOST, job(XGBOOST, {"Worker": 2})) == [
        "spec.xgbReplicaSpecs[Master]: Required value: must be present"]
    assert rendered(XGBOOST, job(XGBOOST, {"Master": 3})) == [
        "spec.xgbReplicaSpecs[Master].replicas: Forbidden: must be 1"]
    assert rendered(TENSORFLOW, job(TENSORFLOW, {"Chief": 1, "Master": 1})) == [
        "spec.tfReplicaSpecs: Forbidden: must not have more than 1 Chief or Master role"]


@pytest.mark.parametrize("kind", [PYTORCH, TENSORFLOW, XGBOOST, JAX])
def test_the_name_must_be_a_dns_1035_label(kind: JobKind) -> None:
    replicas: dict[str, int | None] = {"Master": 1} if kind is XGBOOST else {"Worker": 1}
    [cause] = rendered(kind, job(kind, replicas, name="1st.job"))
    assert cause.startswith('metadata.name: Invalid value: "1st.job": should match: a '
                            "DNS-1035 label must consist of lower case alphanumeric")


def test_managed_by_is_known_and_immutable_except_for_jax() -> None:
    other = job(PYTORCH, {"Worker": 1}, runPolicy={"managedBy": "someone/else"})
    assert rendered(PYTORCH, other) == [
        'spec.runPolicy.managedBy: Unsupported value: "someone/else": supported values: '
        '"kubeflow.org/training-operator", "kueue.x-k8s.io/multikueue"']
    before = job(TENSORFLOW, {"Worker": 1})
    after = job(TENSORFLOW, {"Worker": 1}, runPolicy={"managedBy": "kueue.x-k8s.io/multikueue"})
    assert rendered(TENSORFLOW, after) == []
    assert rendered(TENSORFLOW, after, before) == [
        'spec.runPolicy.managedBy: Invalid value: "kueue.x-k8s.io/multikueue": field is '
        "immutable"]
    assert rendered(TENSORFLOW, before, after) == [
        'spec.runPolicy.managedBy: Invalid value: "null": field is immutable']
    jax = job(JAX, {"Worker": 1}, runPolicy={"managedBy": "someone/else"})
    assert rendered(JAX, jax, job(JAX, {"Worker": 1})) == []


def review(obj: dict[str, Any], operation: str = "CREATE",
           old: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-1", "operation": operation, "name": "mnist",
                        "namespace": "ns", "object": obj, "oldObject": old}}


def test_a_refusal_is_an_invalid_status_with_causes() -> None:
    bad = job(PYTORCH, {"Master": 2, "Worker": 1})
    answer = review_response(PYTORCH, review(bad))
    assert (answer["apiVersion"], answer["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    response = answer["response"]
    assert (response["uid"], response["allowed"]) == ("u-1", False)
    assert response["status"] == {
        "metadata": {}, "status": "Failure", "reason": "Invalid", "code": 422,
        "message": 'PyTorchJob.kubeflow.org "mnist" is invalid: spec.pytorchReplicaSpecs'
                   "[Master].replicas: Forbidden: must be 1",
        "details": {"name": "mnist", "group": "kubeflow.org", "kind": "PyTorchJob",
                    "causes": [{"reason": "FieldValueForbidden", "message": "Forbidden: must "
                                "be 1", "field": "spec.pytorchReplicaSpecs[Master].replicas"}]}}


def test_an_allowed_update_carries_warnings_and_reads_the_old_object() -> None:
    good = job(PYTORCH, {"Worker": 2}, elasticPolicy={"nProcPerNode": 2})
    response = review_response(PYTORCH, review(good, "UPDATE", copy.deepcopy(good)))["response"]
    assert response["allowed"] is True
    assert response["warnings"] == [
        "spec.elasticPolicy.nProcPerNode is deprecated, use spec.nprocPerNode instead"]
    moved = job(PYTORCH, {"Worker": 2}, runPolicy={"managedBy": "kueue.x-k8s.io/multikueue"})
    assert review_response(PYTORCH, review(moved, "UPDATE", good))["response"][
        "allowed"] is False
    assert review_response(PYTORCH, review(moved, "CREATE", good))["response"][
        "allowed"] is True


def test_the_serving_certificate_is_signed_by_its_ca_for_the_names_asked() -> None:
    ca_pem, cert_pem, _ = serving_chain("t", ips=["127.0.0.1"], dns_names=["to.kubeflow.svc"])
    ca, cert = x509.load_pem_x509_certificate(ca_pem), x509.load_pem_x509_certificate(cert_pem)
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert names.get_values_for_type(x509.DNSName) == ["to.kubeflow.svc"]


def test_the_configuration_points_at_the_url_or_the_service() -> None:
    server = WebhookServer(port=40123)
    config = server.configuration()
    assert config["metadata"]["name"] == CONFIGURATION_NAME == \
        "validator.training-operator.kubeflow.org"
    hooks = {hook["name"]: hook for hook in config["webhooks"]}
    assert sorted(hooks) == [f"validator.{k}.training-operator.kubeflow.org"
                             for k in ("jaxjob", "paddlejob", "pytorchjob", "tfjob",
                                       "xgboostjob")]
    pytorch = hooks["validator.pytorchjob.training-operator.kubeflow.org"]
    assert pytorch["clientConfig"]["url"] == \
        "https://127.0.0.1:40123/validate-kubeflow-org-v1-pytorchjob"
    assert base64.b64decode(pytorch["clientConfig"]["caBundle"]) == server.ca_pem
    assert pytorch["rules"] == [{"apiGroups": ["kubeflow.org"], "apiVersions": ["v1"],
                                 "operations": ["CREATE", "UPDATE"],
                                 "resources": ["pytorchjobs"]}]
    assert (pytorch["failurePolicy"], pytorch["sideEffects"],
            pytorch["admissionReviewVersions"]) == ("Fail", "None", ["v1"])

    service = ServiceReference.parse("kubeflow/training-operator")
    in_cluster = WebhookServer(host="0.0.0.0", port=9443, service=service, kinds=[TENSORFLOW])
    [tf] = in_cluster.configuration()["webhooks"]
    assert tf["clientConfig"]["service"] == {
        "namespace": "kubeflow", "name": "training-operator", "port": 443,
        "path": webhook_path(TENSORFLOW)}
    assert "url" not in tf["clientConfig"]
    cert = x509.load_pem_x509_certificate(in_cluster.ca_pem)
    assert cert.subject.rfc4514_string() == "CN=training-operator-webhook-ca"


@pytest.mark.parametrize("value", ["kubeflow", "/svc", "ns/", "ns/svc:https"])
def test_a_bad_service_reference_says_what_is_wrong(value: str) -> None:
    with pytest.raises(ValueError, match="<namespace>/<name>"):
        ServiceReference.parse(value)


def test_an_address_that_cannot_be_bound_is_a_value_error() -> None:
    async def scenario() -> None:
        first = WebhookServer()
        await first.start()
        try:
            with pytest.raises(ValueError, match=f"127.0.0.1:{first.port}"):
                await WebhookServer(port=first.port).start()
        finally:
            await first.stop()
    asyncio.run(scenario())


@pytest.mark.parametrize(("flags", "message"), [
    ({"webhook_service": "kubeflow/training-operator", "webhook_port": 9443,
      "webhook_secret": "Bad_Name"}, "webhook secret name 'Bad_Name' is not a valid Secret name"),
    ({"webhook_service": "kubeflow/training-operator"}, "needs a fixed webhook port"),
])
def test_bad_webhook_flags_are_refused_before_connecting(flags: dict[str, Any],
                                                         message: str) -> None:
    """No kubeconfig is read: the flags are refused first, with one clear line."""
    with pytest.raises(ValueError, match=message):
        asyncio.run(run_training_operator("/nonexistent/kubeconfig", **flags))
