"""The StatefulSet controller's decisions: ordered creation and removal, rolling updates by
ordinal, identities, claims and their owners, status, and revision hashing."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from pilothouse.controllers.statefulset import (
    claim_owner_refs,
    claims_for,
    complete_rolling_update,
    fnv32,
    identity_matches,
    new_pod,
    plan_sync,
    safe_encode,
    statefulset_revision,
    storage_matches,
)

NOW = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
TEMPLATE = {"metadata": {"labels": {"app": "db"}},
            "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}}
NEW_TEMPLATE = {"metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": "postgres:17"}]}}


def sts(replicas: int = 3, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "ns", "uid": "uid-db", "generation": 2},
            "spec": {"replicas": replicas, "serviceName": "db",
                     "selector": {"matchLabels": {"app": "db"}}, "template": TEMPLATE,
                     "updateStrategy": {"type": "RollingUpdate",
                                        "rollingUpdate": {"partition": 0}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                               "spec": {"accessModes": ["ReadWriteOnce"]}}],
                     **spec}}


def live(owner: dict[str, Any], ordinal: int, *, revision: str = "r1", phase: str = "Running",
         ready: bool = True, deleting: bool = False) -> dict[str, Any]:
    pod = new_pod(owner, TEMPLATE, ordinal, revision)
    pod["metadata"]["uid"] = f"uid-{ordinal}"
    pod["status"] = {"phase": phase, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False",
         "lastTransitionTime": "2024-05-01T09:00:00Z"}]}
    if deleting:
        pod["metadata"]["deletionTimestamp"] = "2024-05-01T09:59:00Z"
    return pod


def plan(owner: dict[str, Any], pods: list[dict[str, Any]], *, update: str = "r1"):
    return plan_sync(owner, pods, current_template=TEMPLATE,
                     update_template=NEW_TEMPLATE if update != "r1" else TEMPLATE,
                     current_revision="r1", update_revision=update, now=NOW)


def verbs(result) -> list[tuple[str, str]]:
    return [(a.verb, a.pod["metadata"]["name"]) for a in result.actions]


def test_new_pod_has_a_stable_identity_and_its_claims() -> None:
    pod = new_pod(sts(), TEMPLATE, 1, "db-abc")
    assert pod["metadata"]["name"] == "db-1"
    assert pod["metadata"]["labels"] == {
        "app": "db", "statefulset.kubernetes.io/pod-name": "db-1",
        "apps.kubernetes.io/pod-index": "1", "controller-revision-hash": "db-abc"}
    assert (pod["spec"]["hostname"], pod["spec"]["subdomain"]) == ("db-1", "db")
    assert pod["spec"]["volumes"] == [{"name": "data",
                                       "persistentVolumeClaim": {"claimName": "data-db-1"}}]
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet"
    assert identity_matches(sts(), pod) and storage_matches(sts(), pod)
    renamed = copy.deepcopy(pod)
    renamed["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] = "x"
    assert not identity_matches(sts(), renamed)


def test_claims_carry_the_selector_labels_and_retention_owners() -> None:
    claim = claims_for(sts(), 2)["data"]
    assert claim["metadata"]["name"] == "data-db-2"
    assert claim["metadata"]["labels"] == {"app": "db"}
    assert claim_owner_refs(claim, sts(), None, 2) == []
    delete_all = sts(persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete",
                                                          "whenScaled": "Delete"})
    (ref,) = claim_owner_refs(claim, delete_all, None, 2)
    assert (ref["kind"], ref["uid"]) == ("StatefulSet", "uid-db")
    scaled = sts(replicas=2, persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete",
                                                                  "whenScaled": "Delete"})
    (ref,) = claim_owner_refs(claim, scaled, live(scaled, 2), 2)
    assert (ref["kind"], ref["uid"]) == ("Pod", "uid-2")


def test_ordered_ready_creates_one_pod_at_a_time() -> None:
    owner = sts()
    assert verbs(plan(owner, [])) == [("create", "db-0")]
    assert verbs(plan(owner, [live(owner, 0, phase="Pending", ready=False)])) == [
        ("claims", "db-0")]
    assert verbs(plan(owner, [live(owner, 0)])) == [("create", "db-1")]
    assert verbs(plan(owner, [live(owner, 0), live(owner, 1, ready=False)])) == []


def test_parallel_creates_every_missing_pod() -> None:
    owner = sts(podManagementPolicy="Parallel")
    assert verbs(plan(owner, [live(owner, 1, ready=False)])) == [
        ("create", "db-0"), ("create", "db-2")]


def test_scale_down_goes_from_the_highest_ordinal_one_at_a_time() -> None:
    owner = sts(replicas=1)
    pods = [live(owner, i) for i in range(3)]
    assert verbs(plan(owner, pods)) == [("claim-owners", "db-2"), ("claim-owners", "db-1"),
                                        ("delete", "db-2")]
    pods[2]["metadata"]["deletionTimestamp"] = "2024-05-01T09:59:00Z"
    assert ("delete", "db-1") not in verbs(plan(owner, pods))


def test_failed_pods_are_deleted_to_be_recreated() -> None:
    owner = sts(replicas=1)
    assert verbs(plan(owner, [live(owner, 0, phase="Failed", ready=False)])) == [
        ("delete", "db-0")]


def test_rolling_update_replaces_from_the_highest_ordinal_down_to_the_partition() -> None:
    owner = sts()
    pods = [live(owner, i) for i in range(3)]
    result = plan(owner, pods, update="r2")
    assert verbs(result) == [("delete", "db-2")]
    assert result.status["currentReplicas"] == 2
    # db-2 came back at r2 but is not ready yet: wait for it.
    pods[2] = live(owner, 2, revision="r2", ready=False)
    assert verbs(plan(owner, pods, update="r2")) == []
    pods[2] = live(owner, 2, revision="r2")
    assert verbs(plan(owner, pods, update="r2")) == [("delete", "db-1")]
    partitioned = sts(updateStrategy={"type": "RollingUpdate",
                                      "rollingUpdate": {"partition": 2}})
    assert verbs(plan(partitioned, pods, update="r2")) == []
    on_delete = sts(updateStrategy={"type": "OnDelete"})
    assert verbs(plan(on_delete, [live(on_delete, i) for i in range(3)], update="r2")) == []


def test_a_recreated_pod_takes_the_revision_its_ordinal_calls_for() -> None:
    owner = sts(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 2}})
    result = plan(owner, [live(owner, 0), live(owner, 2, revision="r2")], update="r2")
    (create,) = result.actions
    assert create.pod["metadata"]["labels"]["controller-revision-hash"] == "r1"
    assert create.pod["spec"]["containers"][0]["image"] == "postgres:16"


def test_status_counts_and_completes_the_rollout() -> None:
    owner = sts()
    pods = [live(owner, 0, revision="r2"), live(owner, 1, revision="r2"),
            live(owner, 2, revision="r2", ready=False)]
    status = plan(owner, pods, update="r2").status
    assert (status["replicas"], status["readyReplicas"], status["currentReplicas"],
            status["updatedReplicas"], status["observedGeneration"]) == (3, 2, 0, 3, 2)
    complete_rolling_update(owner, status)
    assert status["currentRevision"] == "r1"
    pods[2] = live(owner, 2, revision="r2")
    status = plan(owner, pods, update="r2").status
    complete_rolling_update(owner, status)
    assert (status["currentRevision"], status["currentReplicas"]) == ("r2", 3)


def test_revision_names_hash_the_template_and_collision_count() -> None:
    assert fnv32(b"") == 0x811C9DC5
    assert fnv32(b"a") == 0x050C5D7E
    assert fnv32(b"a", variant_a=True) == 0xE40C292C
    assert safe_encode("0123") == "4567"
    first = statefulset_revision(sts(), 1, 0)
    assert first["metadata"]["name"].startswith("db-")
    assert first["metadata"]["labels"]["controller-revision-hash"] == first["metadata"][
        "name"][3:]
    assert first["data"]["spec"]["template"]["$patch"] == "replace"
    assert statefulset_revision(sts(), 2, 0)["metadata"]["name"] == first["metadata"]["name"]
    assert statefulset_revision(sts(), 1, 1)["metadata"]["name"] != first["metadata"]["name"]
    changed = sts(template=NEW_TEMPLATE)
    assert statefulset_revision(changed, 1, 0)["metadata"]["name"] != first["metadata"]["name"]
