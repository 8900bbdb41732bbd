"""The admission chain through the generic registry: LimitRanger, ServiceAccount, Priority,
default tolerations, quota."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest

from pilothouse.apiserver.admission import default_plugins
from pilothouse.apiserver.registry.builtin import BUILTIN_RESOURCES
from pilothouse.apiserver.registry.generic import GenericRegistry, WriteOptions
from pilothouse.machinery import errors
from pilothouse.store.sqlite import SQLiteStore

RES = {r.plural: r for r in BUILTIN_RESOURCES if r.group == ""}


@pytest.fixture
def registry(tmp_path) -> Iterator[GenericRegistry]:
    store = SQLiteStore.open(tmp_path / "state.db")
    registry = GenericRegistry(store, default_plugins())
    asyncio.run(registry.create(RES["namespaces"], None, {"metadata": {"name": "ns"}},
                                WriteOptions()))
    # What the service account controller makes in every namespace; pods run as it.
    create(registry, "serviceaccounts", {"metadata": {"name": "default"}})
    yield registry
    asyncio.run(store.close())


def create(registry: GenericRegistry, plural: str, obj: dict, *, dry_run: bool = False) -> dict:
    return asyncio.run(registry.create(RES[plural], "ns", obj, WriteOptions(dry_run=dry_run)))


def get(registry: GenericRegistry, plural: str, name: str) -> dict:
    return asyncio.run(registry.get(RES[plural], "ns", name))


def pod(name: str, *containers: dict, **spec: object) -> dict:
    return {"metadata": {"name": name},
            "spec": {"containers": list(containers) or [container("c")], **spec}}


def container(name: str, requests: dict | None = None, limits: dict | None = None) -> dict:
    resources = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return {"name": name, "image": "busybox", "resources": resources}


def limit_range(*items: dict) -> dict:
    return {"metadata": {"name": "limits"}, "spec": {"limits": list(items)}}


def forbidden(registry: GenericRegistry, plural: str, obj: dict) -> str:
    with pytest.raises(errors.APIError) as err:
        create(registry, plural, obj)
    assert (err.value.code, err.value.reason) == (403, "Forbidden")
    return err.value.message


def add_quota(registry: GenericRegistry, hard: dict, *, name: str = "compute",
              used: dict | None = None) -> None:
    """A quota whose status the controller has already counted (all zero by default)."""
    create(registry, "resourcequotas", {"metadata": {"name": name}, "spec": {"hard": hard}})

    def count(quota: dict) -> None:
        quota["status"] = {"hard": hard, "used": used or dict.fromkeys(hard, "0")}

    asyncio.run(registry.mutate(RES["resourcequotas"], "ns", name, count))


def used(registry: GenericRegistry, name: str = "compute") -> dict:
    return get(registry, "resourcequotas", name)["status"]["used"]


# -- LimitRanger ---------------------------------------------------------------------------


def test_limit_range_defaults_a_new_pod_and_says_so(registry):
    create(registry, "limitranges", limit_range({
        "type": "Container", "default": {"cpu": "500m", "memory": "256Mi"},
        "defaultRequest": {"cpu": "100m"}}))
    created = create(registry, "pods", pod("p", container("a", {"memory": "128Mi"}),
                                           initContainers=[container("setup")]))
    resources = created["spec"]["containers"][0]["resources"]
    assert resources == {"requests": {"cpu": "100m", "memory": "128Mi"},
                         "limits": {"cpu": "500m", "memory": "256Mi"}}
    assert created["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu request for container a; cpu, memory limit for container a; "
        "cpu, memory request for init container setup; cpu, memory limit for init container setup")
    assert created["status"]["qosClass"] == "Burstable"


def test_limit_range_bounds_containers_and_pods(registry):
    create(registry, "limitranges", limit_range(
        {"type": "Container", "max": {"cpu": "1"}, "min": {"cpu": "100m"},
         "maxLimitRequestRatio": {"cpu": "2"}},
        {"type": "Pod", "max": {"memory": "1Gi"}}))
    assert forbidden(registry, "pods", pod("big", container("a", {"cpu": "2"}, {"cpu": "2"}))) == (
        'pods "big" is forbidden: [maximum cpu usage per Container is 1, but limit is 2, '
        "maximum memory usage per Pod is 1Gi.  No limit is specified]")
    ratio = pod("r", container("a", {"cpu": "200m", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"}))
    assert forbidden(registry, "pods", ratio) == (
        'pods "r" is forbidden: cpu max limit to request ratio per Container is 2, '
        "but provided ratio is 5.000000")
    fits = pod("ok", container("a", {"cpu": "500m"}, {"cpu": "1", "memory": "512Mi"}))
    assert create(registry, "pods", fits)["metadata"]["name"] == "ok"


def test_limit_range_bounds_claims_and_lets_an_unchanged_request_stand(registry):
    def claim(name: str) -> dict:
        return {"metadata": {"name": name}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}}

    create(registry, "persistentvolumeclaims", claim("data"))
    create(registry, "limitranges", limit_range(
        {"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "2Gi"}}))
    stored = get(registry, "persistentvolumeclaims", "data")
    stored["metadata"].setdefault("labels", {})["touched"] = "yes"
    asyncio.run(registry.update(RES["persistentvolumeclaims"], "ns", "data", stored,
                                WriteOptions()))
    assert forbidden(registry, "persistentvolumeclaims", claim("more")) == (
        'persistentvolumeclaims "more" is forbidden: maximum storage usage per '
        "PersistentVolumeClaim is 2Gi, but request is 5Gi")


# -- ServiceAccount ------------------------------------------------------------------------

TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


def token_mount(volume: str) -> dict:
    return {"name": volume, "readOnly": True, "mountPath": TOKEN_PATH}


def test_a_pod_runs_as_default_with_its_token_the_ca_and_its_namespace(registry):
    created = create(registry, "pods", pod("p", container("a"), container("b"),
                                           initContainers=[container("setup")]))
    spec = created["spec"]
    assert (spec["serviceAccountName"], spec["serviceAccount"]) == ("default", "default")
    [volume] = spec["volumes"]
    assert re.fullmatch(r"kube-api-access-[bcdfghjklmnpqrstvwxz2456789]{5}", volume["name"])
    assert volume["projected"] == {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt",
                       "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}
    for c in [*spec["containers"], *spec["initContainers"]]:
        assert c["volumeMounts"] == [token_mount(volume["name"])]
    created["metadata"]["labels"] = {"tier": "web"}
    updated, _ = asyncio.run(registry.update(RES["pods"], "ns", "p", created, WriteOptions()))
    assert updated["spec"]["volumes"] == [volume]  # only a create is admitted this way


def test_a_container_that_mounts_the_token_path_itself_keeps_its_own(registry):
    own = {"name": "own", "emptyDir": {}}
    mine = {**container("mine"), "volumeMounts": [{"name": "own", "mountPath": TOKEN_PATH}]}
    spec = create(registry, "pods", pod("p", mine, volumes=[own]))["spec"]
    assert spec["volumes"] == [own] and spec["containers"][0]["volumeMounts"] == [
        {"name": "own", "mountPath": TOKEN_PATH}]
    mixed = create(registry, "pods", pod("q", mine, container("other"), volumes=[own]))["spec"]
    added = mixed["volumes"][1]["name"]
    assert mixed["containers"][1]["volumeMounts"] == [token_mount(added)]
    reuse = {"name": "kube-api-access-abcde", "projected": {"sources": []}}
    spec = create(registry, "pods", pod("r", volumes=[reuse]))["spec"]
    assert spec["volumes"] == [{**reuse, "projected": {"sources": [], "defaultMode": 420}}]
    assert spec["containers"][0]["volumeMounts"] == [token_mount("kube-api-access-abcde")]


def test_automount_false_on_the_pod_or_else_the_account_means_no_token(registry):
    plain = create(registry, "pods", pod("off", automountServiceAccountToken=False))["spec"]
    assert "volumes" not in plain and "volumeMounts" not in plain["containers"][0]
    create(registry, "serviceaccounts", {"metadata": {"name": "quiet"},
                                         "automountServiceAccountToken": False})
    quiet = create(registry, "pods", pod("quiet", serviceAccountName="quiet"))["spec"]
    assert "volumes" not in quiet
    wanted = create(registry, "pods", pod("on", serviceAccountName="quiet",
                                          automountServiceAccountToken=True))["spec"]
    assert wanted["volumes"][0]["name"].startswith("kube-api-access-")


def test_a_pod_naming_a_missing_account_is_refused(registry):
    assert forbidden(registry, "pods", pod("p", serviceAccountName="robot")) == (
        'pods "p" is forbidden: error looking up service account ns/robot: '
        'serviceaccount "robot" not found')
    create(registry, "serviceaccounts", {"metadata": {"name": "robot"},
                                         "imagePullSecrets": [{"name": "registry"}]})
    spec = create(registry, "pods", pod("p", serviceAccount="robot"))["spec"]
    assert (spec["serviceAccountName"], spec["serviceAccount"]) == ("robot", "robot")
    assert spec["imagePullSecrets"] == [{"name": "registry"}]
    own = create(registry, "pods", pod("q", serviceAccountName="robot",
                                       imagePullSecrets=[{"name": "mine"}]))["spec"]
    assert own["imagePullSecrets"] == [{"name": "mine"}]


def test_the_default_account_of_a_new_namespace_is_waited_for(registry):
    asyncio.run(registry.create(RES["namespaces"], None, {"metadata": {"name": "fresh"}},
                                WriteOptions()))

    async def controller_then_pod() -> dict:
        async def account_soon() -> None:
            await asyncio.sleep(0.3)
            await registry.create(RES["serviceaccounts"], "fresh",
                                  {"metadata": {"name": "default"}}, WriteOptions())

        created, _ = await asyncio.gather(
            registry.create(RES["pods"], "fresh", pod("early"), WriteOptions()), account_soon())
        return created

    assert asyncio.run(controller_then_pod())["spec"]["serviceAccountName"] == "default"
    asyncio.run(registry.create(RES["namespaces"], None, {"metadata": {"name": "bare"}},
                                WriteOptions()))
    with pytest.raises(errors.APIError) as err:
        asyncio.run(registry.create(RES["pods"], "bare", pod("late"), WriteOptions()))
    assert (err.value.code, err.value.message) == (
        403, 'pods "late" is forbidden: error looking up service account bare/default: '
        'serviceaccount "default" not found')


def test_mirror_pods_are_left_alone_and_may_not_use_accounts_or_secrets(registry):
    mirror = {"kubernetes.io/config.mirror": "abc"}
    static = pod("static")
    static["metadata"]["annotations"] = mirror
    spec = create(registry, "pods", static)["spec"]
    assert "serviceAccountName" not in spec and "volumes" not in spec
    named = {**pod("named", serviceAccountName="default"), "metadata": {
        "name": "named", "annotations": mirror}}
    assert forbidden(registry, "pods", named) == (
        'pods "named" is forbidden: a mirror pod may not reference service accounts')
    secret = {**pod("secret", volumes=[{"name": "s", "secret": {"secretName": "x"}}]),
              "metadata": {"name": "secret", "annotations": mirror}}
    assert forbidden(registry, "pods", secret) == (
        'pods "secret" is forbidden: a mirror pod may not reference secrets')


# -- DefaultTolerationSeconds --------------------------------------------------------------


def test_pods_tolerate_unready_and_unreachable_nodes_for_five_minutes(registry):
    tolerations = create(registry, "pods", pod("p"))["spec"]["tolerations"]
    assert tolerations == [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300}]
    everything = [{"operator": "Exists"}]
    assert create(registry, "pods", pod("q", tolerations=everything))["spec"][
        "tolerations"] == everything


# -- ResourceQuota -------------------------------------------------------------------------


def test_quota_charges_creates_and_refuses_past_the_limit(registry):
    add_quota(registry, {"pods": "2", "requests.cpu": "1"})
    create(registry, "pods", pod("a", container("c", {"cpu": "500m"})))
    create(registry, "pods", pod("b", container("c", {"cpu": "250m"})))
    assert used(registry) == {"pods": "2", "requests.cpu": "750m"}
    assert forbidden(registry, "pods", pod("c", container("c", {"cpu": "100m"}))) == (
        'pods "c" is forbidden: exceeded quota: compute, requested: pods=1, used: pods=2, '
        "limited: pods=2")
    assert used(registry) == {"pods": "2", "requests.cpu": "750m"}


def test_quota_requires_what_it_constrains_and_waits_for_its_first_count(registry):
    create(registry, "resourcequotas", {"metadata": {"name": "fresh"},
                                        "spec": {"hard": {"pods": "5"}}})
    asyncio.run(registry.mutate(RES["resourcequotas"], "ns", "fresh",
                                lambda quota: quota.update(status={"hard": {"pods": "5"}})))
    assert "status unknown for quota: fresh, resources: pods" in forbidden(
        registry, "pods", pod("a"))
    asyncio.run(registry.delete(RES["resourcequotas"], "ns", "fresh", {}, WriteOptions()))
    add_quota(registry, {"limits.memory": "1Gi", "requests.cpu": "1"})
    assert forbidden(registry, "pods", pod("a", container("x", {"cpu": "1"}), container("y"))) == (
        'pods "a" is forbidden: failed quota: compute: must specify limits.memory for: x,y; '
        "requests.cpu for: y")


def test_dry_runs_duplicates_and_pod_updates_are_not_charged(registry):
    add_quota(registry, {"pods": "3"})
    create(registry, "pods", pod("a"), dry_run=True)
    assert used(registry) == {"pods": "0"}
    created = create(registry, "pods", pod("a"))
    with pytest.raises(errors.APIError, match="already exists"):
        create(registry, "pods", pod("a"))
    created["metadata"]["labels"] = {"tier": "web"}
    asyncio.run(registry.update(RES["pods"], "ns", "a", created, WriteOptions()))
    assert used(registry) == {"pods": "1"}


def test_concurrent_creates_cannot_share_the_last_unit(registry):
    add_quota(registry, {"count/configmaps": "2"})

    async def race() -> list[object]:
        return await asyncio.gather(*(
            registry.create(RES["configmaps"], "ns", {"metadata": {"name": f"cm{i}"}},
                            WriteOptions()) for i in range(6)), return_exceptions=True)

    results = asyncio.run(race())
    refused = [r for r in results if isinstance(r, errors.APIError)]
    assert len(refused) == 4 and all(r.code == 403 for r in refused)
    assert used(registry) == {"count/configmaps": "2"}


def test_a_refusal_by_a_later_quota_hands_back_earlier_charges(registry):
    add_quota(registry, {"pods": "5"}, name="a-roomy")
    add_quota(registry, {"count/pods": "1"}, name="b-tight", used={"count/pods": "1"})
    assert "exceeded quota: b-tight" in forbidden(registry, "pods", pod("p"))
    assert used(registry, "a-roomy") == {"pods": "0"}


def test_service_updates_are_charged_for_new_node_ports(registry):
    add_quota(registry, {"services.nodeports": "1"})
    svc = create(registry, "services", {"metadata": {"name": "web"}, "spec": {
        "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}], "selector": {"app": "web"}}})
    svc["spec"]["type"] = "NodePort"
    with pytest.raises(errors.APIError) as err:
        asyncio.run(registry.update(RES["services"], "ns", "web", svc, WriteOptions()))
    assert "requested: services.nodeports=2, used: services.nodeports=0" in err.value.message


PRIORITY_CLASSES = next(r for r in BUILTIN_RESOURCES if r.plural == "priorityclasses")


def priority_class(registry: GenericRegistry, name: str, value: int, **extra: object) -> None:
    asyncio.run(registry.create(PRIORITY_CLASSES, None,
                                {"metadata": {"name": name}, "value": value, **extra},
                                WriteOptions()))


def test_priority_comes_from_the_class_or_the_global_default(registry: GenericRegistry) -> None:
    assert create(registry, "pods", pod("plain"))["spec"]["priority"] == 0
    priority_class(registry, "high", 1000, preemptionPolicy="Never")
    high = create(registry, "pods", pod("important", priorityClassName="high"))["spec"]
    assert (high["priority"], high["preemptionPolicy"]) == (1000, "Never")
    priority_class(registry, "everyday", 10, globalDefault=True)
    everyday = create(registry, "pods", pod("usual"))["spec"]
    assert (everyday["priorityClassName"], everyday["priority"]) == ("everyday", 10)
    assert everyday["preemptionPolicy"] == "PreemptLowerPriority"


def test_priority_refuses_a_missing_class_or_a_stated_value(registry: GenericRegistry) -> None:
    message = forbidden(registry, "pods", pod("lost", priorityClassName="nope"))
    assert message == 'pods "lost" is forbidden: no PriorityClass with name nope was found'
    message = forbidden(registry, "pods", pod("bold", priority=7))
    assert "the integer value of priority (7) must not be provided in pod spec" in message
