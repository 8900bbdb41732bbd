"""Server-side printing: the columns and cells `kubectl get` shows for each kind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pilothouse.apiserver import printers
from pilothouse.apiserver.printers import age, build_table, human_duration, table_spec_for
from pilothouse.apiserver.registry.resource import Resource

NOW = datetime(2025, 1, 10, 12, 0, 0, tzinfo=UTC)


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def resource(group: str, kind: str, **extra) -> Resource:
    return Resource(
        group=group,
        version="v1",
        plural=kind.lower() + "s",
        singular=kind.lower(),
        kind=kind,
        namespaced=True,
        **extra,
    )


def meta(name: str, **extra) -> dict:
    return {"name": name, "namespace": "default", "creationTimestamp": ago(minutes=5), **extra}


def headers(spec: printers.TableSpec, *, wide: bool = False) -> list[str]:
    return [c["name"] for c in spec.columns if wide or c["priority"] == 0]


def cells(spec: printers.TableSpec, obj: dict) -> dict[str, object]:
    return dict(zip([c["name"] for c in spec.columns], spec.row(obj, NOW), strict=True))


# -- ages -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delta", "shown"),
    [
        (timedelta(seconds=5), "5s"),
        (timedelta(seconds=119), "119s"),
        (timedelta(minutes=3, seconds=20), "3m20s"),
        (timedelta(minutes=4), "4m"),
        (timedelta(minutes=45, seconds=30), "45m"),
        (timedelta(hours=5, minutes=7), "5h7m"),
        (timedelta(hours=30), "30h"),
        (timedelta(days=2, hours=3), "2d3h"),
        (timedelta(days=30), "30d"),
        (timedelta(days=365 * 3 + 10), "3y10d"),
        (timedelta(days=365 * 9), "9y"),
        (timedelta(seconds=-1), "0s"),
        (timedelta(seconds=-5), "<invalid>"),
    ],
)
def test_human_duration_matches_apimachinery(delta: timedelta, shown: str) -> None:
    assert human_duration(delta) == shown


def test_age_of_timestamps() -> None:
    assert age(ago(minutes=3, seconds=20), NOW) == "3m20s"
    assert age("2025-01-10T11:59:55.123456Z", NOW) == "4s"
    assert age(None, NOW) == "<unknown>"
    assert age("", NOW) == "<unknown>"


# -- pods -----------------------------------------------------------------------------


def running(name: str, *, ready: bool, restarts: int = 0, finished: str | None = None) -> dict:
    status = {
        "name": name,
        "ready": ready,
        "restartCount": restarts,
        "state": {"running": {"startedAt": ago(minutes=4)}},
    }
    if finished:
        status["lastState"] = {"terminated": {"exitCode": 1, "finishedAt": finished}}
    return status


def pod(statuses: list[dict], *, phase: str = "Running", **extra) -> dict:
    spec = extra.pop("spec", {})
    status = extra.pop("status", {})
    return {
        "metadata": meta("web-0", **extra),
        "spec": {
            "nodeName": "node-1",
            "containers": [{"name": s["name"]} for s in statuses],
            **spec,
        },
        "status": {
            "phase": phase,
            "podIP": "127.0.0.5",
            "podIPs": [{"ip": "127.0.0.5"}],
            "containerStatuses": statuses,
            **status,
        },
    }


def test_pod_columns_and_wide_columns() -> None:
    assert headers(printers.POD) == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert headers(printers.POD, wide=True)[5:] == [
        "IP",
        "Node",
        "Nominated Node",
        "Readiness Gates",
    ]


def test_running_pod_with_one_of_two_ready() -> None:
    row = cells(printers.POD, pod([running("app", ready=True), running("proxy", ready=False)]))
    assert row == {
        "Name": "web-0",
        "Ready": "1/2",
        "Status": "Running",
        "Restarts": "0",
        "Age": "5m",
        "IP": "127.0.0.5",
        "Node": "node-1",
        "Nominated Node": "<none>",
        "Readiness Gates": "<none>",
    }


def test_restarts_show_how_long_ago_the_last_one_was() -> None:
    obj = pod(
        [
            running("app", ready=True, restarts=2, finished=ago(minutes=7)),
            running("proxy", ready=True, restarts=1, finished=ago(minutes=2, seconds=15)),
        ]
    )
    assert cells(printers.POD, obj)["Restarts"] == "3 (2m15s ago)"


def test_pod_being_deleted_is_terminating() -> None:
    obj = pod([running("app", ready=True)], deletionTimestamp=ago(seconds=3))
    assert cells(printers.POD, obj)["Status"] == "Terminating"
    finished = pod([], phase="Succeeded", deletionTimestamp=ago(seconds=3))
    assert cells(printers.POD, finished)["Status"] == "Succeeded"


def test_waiting_and_terminated_reasons_win_over_phase() -> None:
    crashing = pod(
        [
            {
                "name": "app",
                "ready": False,
                "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(seconds=30)}},
            }
        ]
    )
    assert cells(printers.POD, crashing)["Status"] == "CrashLoopBackOff"
    assert cells(printers.POD, crashing)["Restarts"] == "4 (30s ago)"
    killed = pod([{"name": "app", "state": {"terminated": {"exitCode": 137, "signal": 9}}}])
    assert cells(printers.POD, killed)["Status"] == "Signal:9"
    failed = pod([{"name": "app", "state": {"terminated": {"exitCode": 3}}}], phase="Failed")
    assert cells(printers.POD, failed)["Status"] == "ExitCode:3"


def test_completed_pod_and_one_with_a_container_still_running() -> None:
    done = {
        "name": "job",
        "ready": False,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
    }
    assert cells(printers.POD, pod([done], phase="Succeeded"))["Status"] == "Completed"
    mixed = pod([running("web", ready=True), done])
    assert cells(printers.POD, mixed)["Status"] == "NotReady"
    mixed["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert cells(printers.POD, mixed)["Status"] == "Running"


def test_init_containers_show_progress_and_failures() -> None:
    spec = {"initContainers": [{"name": "migrate"}, {"name": "seed"}]}
    waiting = {"name": "app", "state": {"waiting": {"reason": "PodInitializing"}}}
    first_done = {
        "name": "migrate",
        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
    }
    seed_running = {"name": "seed", "state": {"running": {}}}
    obj = pod(
        [waiting],
        phase="Pending",
        spec=spec,
        status={"initContainerStatuses": [first_done, seed_running]},
    )
    assert cells(printers.POD, obj)["Status"] == "Init:1/2"
    crash = {
        "name": "migrate",
        "restartCount": 2,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
    }
    obj["status"]["initContainerStatuses"] = [crash, {"name": "seed", "state": {"waiting": {}}}]
    assert cells(printers.POD, obj)["Status"] == "Init:CrashLoopBackOff"
    assert cells(printers.POD, obj)["Restarts"] == "2"
    error = {"name": "migrate", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}
    obj["status"]["initContainerStatuses"] = [error]
    assert cells(printers.POD, obj)["Status"] == "Init:Error"


def test_sidecar_init_containers_count_as_containers() -> None:
    spec = {"initContainers": [{"name": "mesh", "restartPolicy": "Always"}]}
    sidecar = {"name": "mesh", "started": True, "ready": True, "state": {"running": {}}}
    obj = pod([running("app", ready=True)], spec=spec, status={"initContainerStatuses": [sidecar]})
    assert cells(printers.POD, obj)["Ready"] == "2/2"
    assert cells(printers.POD, obj)["Status"] == "Running"


def test_pod_readiness_gates_and_scheduling_gates() -> None:
    spec = {"readinessGates": [{"conditionType": "lb/ready"}, {"conditionType": "dns/ready"}]}
    conditions = [{"type": "lb/ready", "status": "True"}, {"type": "dns/ready", "status": "False"}]
    obj = pod([running("app", ready=True)], spec=spec, status={"conditions": conditions})
    assert cells(printers.POD, obj)["Readiness Gates"] == "1/2"
    gated = {
        "metadata": meta("gated"),
        "spec": {"containers": [{"name": "app"}]},
        "status": {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}
            ],
        },
    }
    row = cells(printers.POD, gated)
    assert (row["Ready"], row["Status"], row["IP"], row["Node"]) == (
        "0/1",
        "SchedulingGated",
        "<none>",
        "<none>",
    )


# -- other core kinds -----------------------------------------------------------------


def test_node_status_roles_and_wide_columns() -> None:
    node = {
        "metadata": {
            "name": "node-1",
            "creationTimestamp": ago(days=2, hours=3),
            "labels": {
                "node-role.kubernetes.io/control-plane": "",
                "node-role.kubernetes.io/worker": "",
            },
        },
        "spec": {"unschedulable": True},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True"},
            ],
            "addresses": [
                {"type": "Hostname", "address": "node-1"},
                {"type": "InternalIP", "address": "10.0.0.4"},
            ],
            "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian GNU/Linux 12"},
        },
    }
    assert cells(printers.NODE, node) == {
        "Name": "node-1",
        "Status": "Ready,SchedulingDisabled",
        "Roles": "control-plane,worker",
        "Age": "2d3h",
        "Version": "v1.32.0",
        "Internal-IP": "10.0.0.4",
        "External-IP": "<none>",
        "OS-Image": "Debian GNU/Linux 12",
        "Kernel-Version": "<unknown>",
        "Container-Runtime": "<unknown>",
    }
    assert cells(printers.NODE, {"metadata": {"name": "new"}})["Status"] == "Unknown"


def test_service_ports_external_ip_and_selector() -> None:
    svc = {
        "metadata": meta("web"),
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "ports": [
                {"port": 80, "protocol": "TCP"},
                {"port": 443, "nodePort": 30443, "protocol": "TCP"},
            ],
            "selector": {"tier": "front", "app": "web"},
        },
    }
    assert headers(printers.SERVICE) == [
        "Name",
        "Type",
        "Cluster-IP",
        "External-IP",
        "Port(s)",
        "Age",
    ]
    assert cells(printers.SERVICE, svc) == {
        "Name": "web",
        "Type": "NodePort",
        "Cluster-IP": "10.96.0.10",
        "External-IP": "<none>",
        "Port(s)": "80/TCP,443:30443/TCP",
        "Age": "5m",
        "Selector": "app=web,tier=front",
    }
    svc["spec"]["type"] = "LoadBalancer"
    assert cells(printers.SERVICE, svc)["External-IP"] == "<pending>"
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}, {"hostname": "lb.example"}]}}
    assert cells(printers.SERVICE, svc)["External-IP"] == "192.0.2.7,lb.example"
    headless = {"metadata": meta("db"), "spec": {"clusterIP": "None", "clusterIPs": ["None"]}}
    row = cells(printers.SERVICE, headless)
    assert (row["Type"], row["Cluster-IP"], row["Port(s)"], row["Selector"]) == (
        "ClusterIP",
        "None",
        "<none>",
        "<none>",
    )


def test_endpoints_list_at_most_three_addresses() -> None:
    ep = {
        "metadata": meta("web"),
        "subsets": [
            {
                "addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 5)],
                "ports": [{"port": 8080, "protocol": "TCP"}],
            }
        ],
    }
    assert (
        cells(printers.ENDPOINTS, ep)["Endpoints"]
        == "10.0.0.1:8080,10.0.0.2:8080,10.0.0.3:8080 + 1 more..."
    )
    assert cells(printers.ENDPOINTS, {"metadata": meta("none")})["Endpoints"] == "<none>"


def test_config_map_secret_service_account_and_namespace() -> None:
    cm = {"metadata": meta("cfg"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}
    assert cells(printers.CONFIG_MAP, cm) == {"Name": "cfg", "Data": 3, "Age": "5m"}
    secret = {
        "metadata": meta("tls"),
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "", "tls.key": ""},
    }
    assert cells(printers.SECRET, secret) == {
        "Name": "tls",
        "Type": "kubernetes.io/tls",
        "Data": 2,
        "Age": "5m",
    }
    sa = {"metadata": meta("default")}
    assert cells(printers.SERVICE_ACCOUNT, sa) == {"Name": "default", "Secrets": 0, "Age": "5m"}
    ns = {"metadata": meta("team-a"), "status": {"phase": "Terminating"}}
    assert cells(printers.NAMESPACE, ns) == {"Name": "team-a", "Status": "Terminating", "Age": "5m"}


def test_core_and_events_v1_events_print_alike() -> None:
    core = {
        "metadata": meta("web-0.181"),
        "involvedObject": {"kind": "Pod", "name": "web-0", "fieldPath": "spec.containers{app}"},
        "reason": "BackOff",
        "message": "Back-off restarting failed container\n",
        "type": "Warning",
        "firstTimestamp": ago(minutes=10),
        "lastTimestamp": ago(seconds=40),
        "count": 7,
        "source": {"component": "kubelet", "host": "node-1"},
    }
    assert headers(printers.EVENT) == ["Last Seen", "Type", "Reason", "Object", "Message"]
    expected = {
        "Last Seen": "40s",
        "Type": "Warning",
        "Reason": "BackOff",
        "Object": "pod/web-0",
        "Subobject": "spec.containers{app}",
        "Source": "kubelet, node-1",
        "Message": "Back-off restarting failed container",
        "First Seen": "10m",
        "Count": 7,
        "Name": "web-0.181",
    }
    assert cells(printers.EVENT, core) == expected
    v1 = {
        "metadata": meta("web-0.181"),
        "regarding": core["involvedObject"],
        "reason": "BackOff",
        "note": core["message"],
        "type": "Warning",
        "deprecatedFirstTimestamp": core["firstTimestamp"],
        "deprecatedLastTimestamp": core["lastTimestamp"],
        "deprecatedCount": 7,
        "deprecatedSource": core["source"],
    }
    assert cells(printers.EVENT_V1, v1) == expected
    singleton = {
        "metadata": meta("scheduled"),
        "regarding": {"kind": "Pod", "name": "web-1"},
        "eventTime": "2025-01-10T11:59:30.000000Z",
        "reportingController": "default-scheduler",
        "type": "Normal",
        "reason": "Scheduled",
    }
    row = cells(printers.EVENT_V1, singleton)
    assert (row["Last Seen"], row["First Seen"], row["Count"], row["Source"]) == (
        "30s",
        "30s",
        1,
        "default-scheduler",
    )


def test_persistent_volumes_and_claims() -> None:
    pv = {
        "metadata": meta("pv-1"),
        "spec": {
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "claimRef": {"namespace": "default", "name": "data"},
            "storageClassName": "standard",
        },
        "status": {"phase": "Bound"},
    }
    assert list(cells(printers.PERSISTENT_VOLUME, pv).values()) == [
        "pv-1",
        "10Gi",
        "RWO,RWX",
        "Retain",
        "Bound",
        "default/data",
        "standard",
        "<unset>",
        "",
        "5m",
        "<unset>",
    ]
    pending = {
        "metadata": meta("data"),
        "spec": {"storageClassName": "standard"},
        "status": {"phase": "Pending"},
    }
    assert list(cells(printers.PERSISTENT_VOLUME_CLAIM, pending).values()) == [
        "data",
        "Pending",
        "",
        "",
        "",
        "standard",
        "<unset>",
        "5m",
        "<unset>",
    ]
    bound = {
        "metadata": meta("data", deletionTimestamp=ago(seconds=1)),
        "spec": {"volumeName": "pv-1", "volumeMode": "Filesystem"},
        "status": {
            "phase": "Bound",
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteOnce"],
        },
    }
    row = cells(printers.PERSISTENT_VOLUME_CLAIM, bound)
    assert (
        row["Status"],
        row["Volume"],
        row["Capacity"],
        row["Access Modes"],
        row["VolumeMode"],
    ) == ("Terminating", "pv-1", "10Gi", "RWO", "Filesystem")


def test_resource_quota_splits_requests_and_limits() -> None:
    quota = {
        "metadata": meta("compute"),
        "status": {
            "hard": {"pods": "10", "requests.cpu": "4", "limits.memory": "8Gi", "limits.cpu": "8"},
            "used": {"pods": "3", "requests.cpu": "500m", "limits.cpu": "1"},
        },
    }
    assert cells(printers.RESOURCE_QUOTA, quota) == {
        "Name": "compute",
        "Age": "5m",
        "Request": "pods: 3/10, requests.cpu: 500m/4",
        "Limit": "limits.cpu: 1/8, limits.memory: 0/8Gi",
    }


# -- apps and batch -------------------------------------------------------------------


def template(*containers: tuple[str, str]) -> dict:
    return {"spec": {"containers": [{"name": n, "image": i} for n, i in containers]}}


def test_deployment_ready_out_of_desired_and_wide_columns() -> None:
    deploy = {
        "metadata": meta("web"),
        "spec": {
            "replicas": 3,
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod", "canary"]}
                ],
            },
            "template": template(("app", "nginx:1.27"), ("log", "fluent-bit:3")),
        },
        "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    assert headers(printers.DEPLOYMENT) == ["Name", "Ready", "Up-to-date", "Available", "Age"]
    assert cells(printers.DEPLOYMENT, deploy) == {
        "Name": "web",
        "Ready": "2/3",
        "Up-to-date": 3,
        "Available": 2,
        "Age": "5m",
        "Containers": "app,log",
        "Images": "nginx:1.27,fluent-bit:3",
        "Selector": "app=web,env in (canary,prod)",
    }
    fresh = {"metadata": meta("new"), "spec": {"replicas": 1}}
    assert cells(printers.DEPLOYMENT, fresh)["Ready"] == "0/1"


def test_replica_stateful_and_daemon_sets() -> None:
    rs = {
        "metadata": meta("web-7d9f"),
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template(("app", "nginx")),
        },
        "status": {"replicas": 3, "readyReplicas": 1},
    }
    assert list(cells(printers.REPLICA_SET, rs).values()) == [
        "web-7d9f",
        3,
        3,
        1,
        "5m",
        "app",
        "nginx",
        "app=web",
    ]
    sts = {"metadata": meta("db"), "spec": {"replicas": 2}, "status": {"readyReplicas": 2}}
    assert cells(printers.STATEFUL_SET, sts)["Ready"] == "2/2"
    ds = {
        "metadata": meta("agent"),
        "spec": {
            "selector": {},
            "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}},
        },
        "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1},
    }
    row = cells(printers.DAEMON_SET, ds)
    assert (
        row["Desired"],
        row["Ready"],
        row["Up-to-date"],
        row["Node Selector"],
        row["Selector"],
    ) == (2, 1, 0, "kubernetes.io/os=linux", "<none>")


def test_controller_revision_names_its_owner() -> None:
    rev = {
        "metadata": meta(
            "db-5c8b",
            ownerReferences=[
                {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "controller": True}
            ],
        ),
        "revision": 2,
    }
    assert cells(printers.CONTROLLER_REVISION, rev) == {
        "Name": "db-5c8b",
        "Controller": "statefulset.apps/db",
        "Revision": 2,
        "Age": "5m",
    }


def test_job_status_completions_and_duration() -> None:
    job = {
        "metadata": meta("train"),
        "spec": {"completions": 1, "parallelism": 1, "template": template(("main", "python:3.11"))},
        "status": {
            "succeeded": 1,
            "startTime": ago(minutes=4),
            "completionTime": ago(minutes=3, seconds=15),
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True"},
                {"type": "Complete", "status": "True"},
            ],
        },
    }
    assert headers(printers.JOB) == ["Name", "Status", "Completions", "Duration", "Age"]
    row = cells(printers.JOB, job)
    assert (row["Status"], row["Completions"], row["Duration"], row["Age"]) == (
        "Complete",
        "1/1",
        "45s",
        "5m",
    )
    running_job = {
        "metadata": meta("sweep"),
        "spec": {"parallelism": 3},
        "status": {"active": 3, "startTime": ago(minutes=2, seconds=30)},
    }
    row = cells(printers.JOB, running_job)
    assert (row["Status"], row["Completions"], row["Duration"]) == ("Running", "0/1 of 3", "2m30s")
    failed = {
        "metadata": meta("bad"),
        "status": {"conditions": [{"type": "Failed", "status": "True"}]},
    }
    row = cells(printers.JOB, failed)
    assert (row["Status"], row["Completions"], row["Duration"], row["Selector"]) == (
        "Failed",
        "0/1",
        "",
        "<none>",
    )


def test_cron_job_columns() -> None:
    cj = {
        "metadata": meta("nightly"),
        "spec": {
            "schedule": "0 3 * * *",
            "timeZone": "Etc/UTC",
            "suspend": False,
            "jobTemplate": {"spec": {"template": template(("run", "busybox"))}},
        },
        "status": {"active": [{"name": "nightly-1"}], "lastScheduleTime": ago(hours=9)},
    }
    assert headers(printers.CRON_JOB) == [
        "Name",
        "Schedule",
        "Timezone",
        "Suspend",
        "Active",
        "Last Schedule",
        "Age",
    ]
    assert list(cells(printers.CRON_JOB, cj).values())[:7] == [
        "nightly",
        "0 3 * * *",
        "Etc/UTC",
        "False",
        1,
        "9h",
        "5m",
    ]
    never = {"metadata": meta("new"), "spec": {"schedule": "@hourly", "suspend": True}}
    row = cells(printers.CRON_JOB, never)
    assert (row["Timezone"], row["Suspend"], row["Last Schedule"]) == ("<none>", "True", "<none>")


# -- cluster-scoped and other groups --------------------------------------------------


def test_rbac_bindings_and_roles() -> None:
    binding = {
        "metadata": meta("edit"),
        "roleRef": {"kind": "ClusterRole", "name": "edit"},
        "subjects": [
            {"kind": "User", "name": "alice"},
            {"kind": "Group", "name": "devs"},
            {"kind": "ServiceAccount", "namespace": "ci", "name": "runner"},
            {"kind": "User", "name": "bob"},
        ],
    }
    assert cells(printers.ROLE_BINDING, binding) == {
        "Name": "edit",
        "Role": "ClusterRole/edit",
        "Age": "5m",
        "Users": "alice, bob",
        "Groups": "devs",
        "ServiceAccounts": "ci:runner",
    }
    role = table_spec_for(resource("rbac.authorization.k8s.io", "Role"))
    assert headers(role) == ["Name", "Created At"]
    assert role.row(
        {"metadata": {"name": "reader", "creationTimestamp": "2025-01-02T03:04:05Z"}}, NOW
    ) == ["reader", "2025-01-02T03:04:05Z"]


def test_storage_class_marks_the_default() -> None:
    sc = {
        "metadata": meta(
            "local", annotations={"storageclass.kubernetes.io/is-default-class": "true"}
        ),
        "provisioner": "pilothouse.io/local",
        "volumeBindingMode": "WaitForFirstConsumer",
    }
    assert list(cells(printers.STORAGE_CLASS, sc).values()) == [
        "local (default)",
        "pilothouse.io/local",
        "Delete",
        "WaitForFirstConsumer",
        False,
        "5m",
    ]


def test_lease_slice_priority_and_runtime_classes() -> None:
    lease = {"metadata": meta("kube-scheduler"), "spec": {"holderIdentity": "host_1234"}}
    assert cells(printers.LEASE, lease)["Holder"] == "host_1234"
    eps = {
        "metadata": meta("web-abc"),
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80}, {"name": "grpc"}],
        "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}],
    }
    assert list(cells(printers.ENDPOINT_SLICE, eps).values()) == [
        "web-abc",
        "IPv4",
        "80,grpc",
        "10.0.0.1,10.0.0.2",
        "5m",
    ]
    empty = cells(printers.ENDPOINT_SLICE, {"metadata": meta("x"), "addressType": "IPv4"})
    assert (empty["Ports"], empty["Endpoints"]) == ("<unset>", "<unset>")
    pc = {"metadata": meta("high"), "value": 1000, "preemptionPolicy": "PreemptLowerPriority"}
    assert list(cells(printers.PRIORITY_CLASS, pc).values()) == [
        "high",
        1000,
        False,
        "5m",
        "PreemptLowerPriority",
    ]
    assert (
        cells(printers.RUNTIME_CLASS, {"metadata": meta("gvisor"), "handler": "runsc"})["Handler"]
        == "runsc"
    )


# -- choosing a spec ------------------------------------------------------------------


def test_builtin_specs_by_group_and_kind() -> None:
    assert table_spec_for(resource("", "Pod")) is printers.POD
    assert table_spec_for(resource("apps", "Deployment")) is printers.DEPLOYMENT
    assert table_spec_for(resource("events.k8s.io", "Event")) is printers.EVENT_V1
    crd = table_spec_for(resource("apiextensions.k8s.io", "CustomResourceDefinition"))
    assert headers(crd) == ["Name", "Created At"]
    other = table_spec_for(resource("example.com", "Widget"))
    assert headers(other) == ["Name", "Age"]
    assert other.row({"metadata": meta("w")}, NOW) == ["w", "5m"]


@pytest.mark.parametrize(("key", "spec"), list(printers.BUILTIN.items()))
def test_every_builtin_row_fills_every_column(
    key: tuple[str, str], spec: printers.TableSpec
) -> None:
    row = spec.row({"metadata": {"name": "x", "creationTimestamp": ago(seconds=9)}}, NOW)
    assert len(row) == len(spec.columns), key
    for column in spec.columns:
        assert set(column) == {"name", "type", "format", "description", "priority"}


def test_custom_resource_printer_columns() -> None:
    columns = (
        {
            "name": "State",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Succeeded")].status',
        },
        {"name": "Workers", "type": "integer", "jsonPath": ".spec.replicas", "priority": 1},
        {"name": "Tags", "type": "string", "jsonPath": ".spec.tags"},
        {
            "name": "Started",
            "type": "date",
            "jsonPath": ".status.startTime",
            "description": "When it began.",
        },
        {"name": "Owner", "type": "string", "jsonPath": ".spec.owner"},
    )
    spec = table_spec_for(
        resource("kubeflow.org", "PyTorchJob", custom=True, printer_columns=columns)
    )
    assert [c["name"] for c in spec.columns] == [
        "Name",
        "State",
        "Workers",
        "Tags",
        "Started",
        "Owner",
    ]
    assert spec.columns[2]["priority"] == 1 and spec.columns[4]["description"] == "When it began."
    obj = {
        "metadata": meta("mnist"),
        "spec": {"replicas": 4.0, "tags": ["a", "b"]},
        "status": {
            "startTime": ago(minutes=3, seconds=20),
            "conditions": [
                {"type": "Created", "status": "True"},
                {"type": "Succeeded", "status": "False"},
            ],
        },
    }
    assert spec.row(obj, NOW) == ["mnist", "False", 4, '["a","b"]', "3m20s", None]


def test_custom_resource_without_columns_gets_age_only() -> None:
    spec = table_spec_for(resource("kubeflow.org", "Profile", custom=True))
    assert headers(spec) == ["Name", "Age"]
    assert spec.columns[1]["type"] == "date"
    assert spec.row({"metadata": meta("team")}, NOW) == ["team", "5m"]


def test_custom_resource_cells_follow_the_column_type() -> None:
    columns = (
        {"name": "Ready", "type": "boolean", "jsonPath": ".status.ready"},
        {"name": "Score", "type": "number", "jsonPath": ".status.score"},
        {"name": "Loss", "type": "string", "jsonPath": ".status.loss"},
        {"name": "When", "type": "date", "jsonPath": ".status.when"},
    )
    spec = table_spec_for(resource("kubeflow.org", "Trial", custom=True, printer_columns=columns))
    obj = {
        "metadata": meta("t"),
        "status": {"ready": "yes", "score": 3, "loss": 1234567.0, "when": "soon"},
    }
    assert spec.row(obj, NOW) == ["t", None, 3.0, "1.234567e+06", "<invalid>"]


def test_custom_resource_column_that_does_not_parse_ends_the_columns() -> None:
    columns = (
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Broken", "type": "string", "jsonPath": ".spec.items["},
        {"name": "After", "type": "string", "jsonPath": ".spec.after"},
    )
    spec = table_spec_for(
        resource("kubeflow.org", "Notebook", custom=True, printer_columns=columns)
    )
    assert headers(spec) == ["Name", "Phase"]
    assert spec.row({"metadata": meta("nb"), "status": {"phase": "Ready"}}, NOW) == ["nb", "Ready"]


# -- the Table ------------------------------------------------------------------------


def test_build_table_with_partial_object_metadata() -> None:
    obj = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": meta("cfg"), "data": {"k": "v"}}
    table = build_table(
        printers.CONFIG_MAP,
        [obj],
        now=NOW,
        resource_version="42",
        continue_token="abc",
        remaining=7,
    )
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {
        "resourceVersion": "42",
        "continue": "abc",
        "remainingItemCount": 7,
    }
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert table["rows"] == [
        {
            "cells": ["cfg", 1, "5m"],
            "object": {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            },
        }
    ]


def test_build_table_include_object_policies() -> None:
    obj = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": meta("cfg")}
    assert (
        build_table(printers.CONFIG_MAP, [obj], now=NOW, include_object="Object")["rows"][0][
            "object"
        ]
        is obj
    )
    none = build_table(printers.CONFIG_MAP, [obj], now=NOW, include_object="None")
    assert none["rows"][0]["object"] is None
    assert none["metadata"] == {}
    assert build_table(printers.CONFIG_MAP, [], now=NOW, resource_version="9")["rows"] == []
    with pytest.raises(ValueError, match="includeObject"):
        build_table(printers.CONFIG_MAP, [obj], now=NOW, include_object="Everything")
