"""Hollow nodes: many simulated kubelets in one process, as kwok runs them.

A hollow node does what the control plane can see a kubelet do, and nothing else: it
registers its Node (labels, taints, capacity, conditions, addresses, nodeInfo); renews
its Lease in `kube-node-lease` every quarter of the lease duration (10 s of 40 s);
re-posts its status every 5 minutes, or at once when someone else changed its Ready
condition (the kubelet's nodeStatusReportFrequency, and its repair of a node the
controller marked Unknown); reports the pods bound to it Running through `pods/status`;
and finishes the deletion of pods that have a deletionTimestamp (gracePeriodSeconds 0,
as the kubelet does once their containers have stopped). No process is started; pods
get fake IPs and container IDs, and the node has no kubelet API (daemonEndpoints port 0),
so logs and exec say so instead of reaching a fake address.

Efficiency, for hundreds of nodes and thousands of pods in one process: one informer
for all pods bound to any node (`spec.nodeName!=`) and one for nodes, both filtered to
this process's nodes in their handlers; one work queue of pod (`namespace/name`) and
node (`name`) keys served by a few workers; and one heartbeat task that renews a tenth
of the leases every tenth of the renew interval, so writes are spread evenly over it.

Test hooks, for controllers that need pods to finish (Jobs) or crash (Deployments):

- `pilothouse.dev/hollow-exit-code: "<n>"` on a pod makes each of its containers exit
  with code n, `pilothouse.dev/hollow-run-seconds` (default 1) after it started. The
  pod's restartPolicy then decides, as the kubelet would: `Never` ends the pod
  (Succeeded on 0, Failed otherwise); `OnFailure` ends it on 0 and restarts on non-zero;
  `Always` restarts. A restart bumps restartCount and keeps the exit in
  `lastState.terminated` (reason Completed or Error); the second and later restarts wait
  in CrashLoopBackOff (10 s, doubling, at most 5 minutes), as the kubelet's back-off does.

On cancel (SIGTERM) the heartbeats stop and the nodes stay registered, as a dead kubelet
leaves them: the node lifecycle controller then marks them unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import platform
import zlib
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from ..client import ApiError, Client, Informer, WorkQueue, object_key, split_key
from ..client.controller import process_queue
from ..machinery.meta import now as utcnow
from ..machinery.meta import parse_time, rfc3339, rfc3339_micro
from .podstatus import TERMINAL_PHASES, pod_conditions, restart_backoff

log = logging.getLogger(__name__)

EXIT_CODE_ANNOTATION = "pilothouse.dev/hollow-exit-code"
RUN_SECONDS_ANNOTATION = "pilothouse.dev/hollow-run-seconds"
DEFAULT_RUN_SECONDS = 1.0

KUBELET_VERSION = "v1.32.0"
RUNTIME_VERSION = "hollow://"
INSTANCE_TYPE = "hollow"
LEASE_NAMESPACE = "kube-node-lease"
#: The kubelet's nodeLeaseDurationSeconds; it renews the lease every quarter of it.
LEASE_DURATION_SECONDS = 40
#: The kubelet re-posts an unchanged node status this often (nodeStatusReportFrequency).
STATUS_REPORT_INTERVAL = 300.0
#: Heartbeat ticks per renew interval; each tick renews every TICKS-th node.
TICKS = 10
POD_WORKERS = 8
MAX_IN_FLIGHT = 32

NODE_NETWORK = ipaddress.IPv4Network("10.64.0.0/10")
POD_NETWORK = ipaddress.IPv4Network("10.128.0.0/9")
EPHEMERAL_STORAGE = "100Gi"

_ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
ARCH = _ARCHITECTURES.get(platform.machine().lower(), platform.machine().lower())

_NODE_CONDITIONS = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory",
     "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)


# -- nodes and leases ------------------------------------------------------------------

def node_ip(prefix: str, index: int) -> str:
    """The fake InternalIP of the `index`-th node of a process: stable across restarts."""
    block = zlib.crc32(prefix.encode()) % 64 * 65536
    return str(NODE_NETWORK.network_address + block + index + 1)


def node_object(name: str, *, ip: str, capacity: Mapping[str, str],
                labels: Mapping[str, str], taints: Iterable[Mapping[str, str]],
                now: datetime) -> dict[str, Any]:
    """The Node a hollow kubelet registers, status included (nodes may set it on create)."""
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": ARCH, "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": ARCH, "node.kubernetes.io/instance-type": INSTANCE_TYPE,
                **labels,
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                            "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
        },
        "spec": {"taints": [dict(t) for t in taints]} if taints else {},
        "status": node_status(name, ip=ip, capacity=capacity, now=now, previous=None),
    }


def node_status(name: str, *, ip: str, capacity: Mapping[str, str], now: datetime,
                previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """A healthy node's status; conditions keep their lastTransitionTime while unchanged."""
    stamp = rfc3339(now)
    before = {c.get("type"): c for c in ((previous or {}).get("conditions") or ())}
    conditions = []
    for kind, status, reason, message in _NODE_CONDITIONS:
        old = before.get(kind) or {}
        unchanged = old.get("status") == status and old.get("lastTransitionTime")
        conditions.append({
            "type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": old["lastTransitionTime"] if unchanged else stamp})
    resources = {"ephemeral-storage": EPHEMERAL_STORAGE, **capacity}
    digest = hashlib.sha256(name.encode()).hexdigest()
    return {
        "capacity": dict(resources), "allocatable": dict(resources),
        "conditions": conditions,
        "addresses": [{"type": "InternalIP", "address": ip},
                      {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},  # no kubelet API
        "nodeInfo": {
            "machineID": digest[:32], "systemUUID": digest[32:], "bootID": digest[:32],
            "kernelVersion": platform.release(), "osImage": "Pilothouse hollow node",
            "containerRuntimeVersion": RUNTIME_VERSION, "kubeletVersion": KUBELET_VERSION,
            "operatingSystem": "linux", "architecture": ARCH,
        },
    }


def needs_status(node: Mapping[str, Any]) -> bool:
    """Whether a registered node lacks what its kubelet reports (e.g. marked Unknown)."""
    status = node.get("status") or {}
    ready = next((c for c in status.get("conditions") or () if c.get("type") == "Ready"), None)
    return ready is None or ready.get("status") != "True" or not status.get("nodeInfo")


def lease_object(name: str, node_uid: str, now: datetime, *,
                 duration: int = LEASE_DURATION_SECONDS) -> dict[str, Any]:
    """A node's heartbeat Lease, owned by its Node so it goes when the node does."""
    return {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": LEASE_NAMESPACE,
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name,
                                          "uid": node_uid}]},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": duration,
                 "renewTime": rfc3339_micro(now)},
    }


# -- pods --------------------------------------------------------------------------------

def exit_plan(pod: Mapping[str, Any]) -> tuple[int, float] | None:
    """(exit code, seconds to run) from the test-hook annotations, or None to run forever."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    code = annotations.get(EXIT_CODE_ANNOTATION)
    if code is None:
        return None
    try:
        exit_code = int(code)
    except ValueError:
        return None
    try:
        seconds = float(annotations.get(RUN_SECONDS_ANNOTATION, DEFAULT_RUN_SECONDS))
    except ValueError:
        seconds = DEFAULT_RUN_SECONDS
    return exit_code, max(seconds, 0.0)


def _container_id(uid: str, name: str, restarts: int) -> str:
    return RUNTIME_VERSION + hashlib.sha256(f"{uid}/{name}/{restarts}".encode()).hexdigest()


def _container_status(pod: Mapping[str, Any], container: Mapping[str, Any], *,
                      state: dict[str, Any], restarts: int, ready: bool,
                      last_state: dict[str, Any] | None = None) -> dict[str, Any]:
    image = container.get("image", "")
    uid = (pod.get("metadata") or {}).get("uid", "")
    return {
        "name": container["name"], "state": state, "lastState": last_state or {},
        "ready": ready, "restartCount": restarts, "image": image,
        "imageID": f"{image}@sha256:{hashlib.sha256(image.encode()).hexdigest()}",
        "containerID": _container_id(uid, container["name"], restarts),
        "started": "running" in state,
    }


def _terminated(code: int, started: str, finished: str, container_id: str) -> dict[str, Any]:
    return {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
            "startedAt": started, "finishedAt": finished, "containerID": container_id}


def _init_statuses(pod: Mapping[str, Any], started: str) -> list[dict[str, Any]]:
    """Init containers have completed; sidecars (restartPolicy Always) keep running."""
    uid = (pod.get("metadata") or {}).get("uid", "")
    statuses = []
    for container in (pod.get("spec") or {}).get("initContainers") or ():
        if container.get("restartPolicy") == "Always":
            statuses.append(_container_status(pod, container, state={
                "running": {"startedAt": started}}, restarts=0, ready=True))
        else:
            cid = _container_id(uid, container["name"], 0)
            statuses.append(_container_status(pod, container, state={
                "terminated": _terminated(0, started, started, cid)}, restarts=0, ready=True))
    return statuses


def _conditions(pod: Mapping[str, Any], phase: str, statuses: list[dict[str, Any]],
                now: str) -> list[dict[str, Any]]:
    """The kubelet's pod conditions, for a pod whose sandbox and init containers are done."""
    return pod_conditions(pod, phase=phase, sandbox_ready=True, initialized=True,
                          init_pending=(), statuses=statuses, now=now)


def pod_status(pod: Mapping[str, Any], *, host_ip: str, pod_ip: str, now: datetime,
               changed_at: datetime | None = None) -> tuple[dict[str, Any] | None, float | None]:
    """What the hollow kubelet reports next for `pod`, and when to look at it again.

    Returns (status to write, or None when the current one is right; seconds until the
    next transition, or None). `changed_at` is when this process last changed the pod's
    container state, more precise than the second-resolution timestamps in the status.
    """
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    if status.get("phase") in TERMINAL_PHASES:
        return None, None
    containers = spec.get("containers") or ()
    if not containers:
        return None, None
    stamp = rfc3339(now)
    plan = exit_plan(pod)
    current = {s.get("name"): s for s in status.get("containerStatuses") or ()}
    first = current.get(containers[0]["name"]) or {}
    state = first.get("state") or {}
    restarts = int(first.get("restartCount") or 0)
    phase = "Running"
    again: float | None = None
    uid = (pod.get("metadata") or {}).get("uid", "")

    def running(since: str, count: int, last: dict[str, Any] | None = None) -> list[dict]:
        return [_container_status(pod, c, state={"running": {"startedAt": since}},
                                  restarts=count, ready=True,
                                  last_state=(last or {}).get(c["name"])) for c in containers]

    if "running" in state:
        since = state["running"].get("startedAt") or stamp
        started = changed_at or parse_time(since) or now
        if plan is None or now < started + timedelta(seconds=plan[1]):
            statuses = running(since, restarts, {n: s.get("lastState") for n, s in current.items()})
            if plan is not None:
                again = (started + timedelta(seconds=plan[1]) - now).total_seconds()
        else:
            code = plan[0]
            policy = spec.get("restartPolicy") or "Always"
            ended = {c["name"]: _terminated(code, since, stamp,
                                            _container_id(uid, c["name"], restarts))
                     for c in containers}
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                phase = "Succeeded" if code == 0 else "Failed"
                statuses = [_container_status(pod, c, state={"terminated": ended[c["name"]]},
                                              restarts=restarts, ready=False,
                                              last_state=(current.get(c["name"]) or {}).get(
                                                  "lastState"))
                            for c in containers]
            elif restart_backoff(restarts) == 0:
                statuses = running(stamp, restarts + 1,
                                   {n: {"terminated": t} for n, t in ended.items()})
                again = plan[1]
            else:
                backoff = restart_backoff(restarts)
                statuses = [_container_status(pod, c, state={"waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {backoff:g}s restarting failed container={c['name']} "
                               f"pod={pod['metadata']['name']}_{pod['metadata'].get('namespace')}"
                               f"({uid})"}}, restarts=restarts, ready=False,
                    last_state={"terminated": ended[c["name"]]}) for c in containers]
                again = backoff
    elif (state.get("waiting") or {}).get("reason") == "CrashLoopBackOff":
        last = (first.get("lastState") or {}).get("terminated") or {}
        ended_at = changed_at or parse_time(last.get("finishedAt")) or now
        due = ended_at + timedelta(seconds=restart_backoff(restarts))
        if now >= due:
            statuses = running(stamp, restarts + 1,
                               {n: s.get("lastState") for n, s in current.items()})
            again = plan[1] if plan is not None else None
        else:
            statuses = [dict(current.get(c["name"]) or {}) for c in containers]
            again = (due - now).total_seconds()
    else:
        statuses = running(stamp, 0)
        again = plan[1] if plan is not None else None

    desired: dict[str, Any] = {
        "phase": phase,
        "conditions": _conditions(pod, phase, statuses, stamp),
        "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
        "startTime": status.get("startTime") or stamp,
        "containerStatuses": statuses,
    }
    if spec.get("initContainers"):
        desired["initContainerStatuses"] = status.get("initContainerStatuses") or \
            _init_statuses(pod, desired["startTime"])
    if all(status.get(key) == value for key, value in desired.items()):
        return None, again
    return desired, again


# -- the process -------------------------------------------------------------------------

class HollowNodes:
    """`count` hollow kubelets named `<prefix><i>`, sharing one client, informers and queue."""

    def __init__(self, client: Client, *, count: int, prefix: str,
                 capacity: Mapping[str, str], labels: Mapping[str, str] | None = None,
                 taints: Iterable[Mapping[str, str]] = (),
                 lease_duration_seconds: int = LEASE_DURATION_SECONDS) -> None:
        self.client = client
        self.capacity = dict(capacity)
        self.labels = dict(labels or {})
        self.taints = [dict(t) for t in taints]
        self.lease_duration = lease_duration_seconds
        self.renew_interval = lease_duration_seconds / 4
        self.ips = {f"{prefix}{i}": node_ip(prefix, i) for i in range(count)}
        self._reported: dict[str, float] = {}
        self._pod_block = zlib.crc32(prefix.encode()) % 128 * 65536
        self._next_ip = 0
        self._used_ips: set[str] = set()
        self._changed: dict[str, datetime] = {}
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.queue = WorkQueue()
        self.nodes = Informer(client, "v1", "nodes")
        self.pods = Informer(client, "v1", "pods", field_selector="spec.nodeName!=")
        self.nodes.add_handler(self._on_node)
        self.pods.add_handler(self._on_pod)

    async def run(self) -> None:
        """Register, then heartbeat and serve pods until cancelled."""
        tasks = [asyncio.create_task(self.nodes.run(), name="hollow-node-informer"),
                 asyncio.create_task(self.pods.run(), name="hollow-pod-informer")]
        try:
            await self.nodes.synced.wait()
            await asyncio.gather(*(self._register(name) for name in self.ips))
            log.info("%d hollow nodes registered", len(self.ips))
            tasks.append(asyncio.create_task(self._heartbeat(), name="hollow-heartbeat"))
            tasks += [asyncio.create_task(process_queue(self.queue, self._sync,
                                                        name="hollow kubelet"),
                                          name=f"hollow-pods-{i}")
                      for i in range(POD_WORKERS)]
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # -- nodes ----------------------------------------------------------------------------

    async def _register(self, name: str) -> None:
        async with self._in_flight:
            node = node_object(name, ip=self.ips[name], capacity=self.capacity,
                               labels=self.labels, taints=self.taints, now=utcnow())
            try:
                created = await self.client.create("v1", "nodes", node)
            except ApiError as err:
                if not err.conflict:
                    raise
                await self._post_status(name)
            else:
                self._reported[name] = asyncio.get_running_loop().time()
                await self._ensure_lease(name, created["metadata"]["uid"])

    async def _post_status(self, name: str) -> None:
        previous = (self.nodes.get(name) or {}).get("status")
        status = node_status(name, ip=self.ips[name], capacity=self.capacity, now=utcnow(),
                             previous=previous)
        await self.client.patch("v1", "nodes", name, {"status": status}, subresource="status")
        self._reported[name] = asyncio.get_running_loop().time()

    async def _ensure_lease(self, name: str, node_uid: str) -> None:
        try:
            await self.client.create("coordination.k8s.io/v1", "leases",
                                     lease_object(name, node_uid, utcnow(),
                                                  duration=self.lease_duration),
                                     LEASE_NAMESPACE)
        except ApiError as err:
            if not err.conflict:
                raise
            await self._renew_lease(name)

    async def _renew_lease(self, name: str) -> None:
        await self.client.patch("coordination.k8s.io/v1", "leases", name, {"spec": {
            "holderIdentity": name, "leaseDurationSeconds": self.lease_duration,
            "renewTime": rfc3339_micro(utcnow())}}, LEASE_NAMESPACE)

    async def _heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        names = list(self.ips)
        tick = self.renew_interval / TICKS
        start = loop.time()
        beat = 0
        while True:
            await asyncio.gather(*(self._beat(name) for name in names[beat % TICKS::TICKS]))
            beat += 1
            await asyncio.sleep(max(0.0, start + beat * tick - loop.time()))

    async def _beat(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is None:
            return  # deleted by someone: a dead kubelet's node is not brought back
        async with self._in_flight:
            try:
                try:
                    await self._renew_lease(name)
                except ApiError as err:
                    if not err.not_found:
                        raise
                    await self._ensure_lease(name, node["metadata"]["uid"])
                due = self._reported.get(name, 0.0) + STATUS_REPORT_INTERVAL
                if asyncio.get_running_loop().time() >= due:
                    await self._post_status(name)
            except Exception as err:
                log.warning("heartbeat of hollow node %s failed: %s", name, err)

    def _on_node(self, old: dict | None, new: dict | None) -> None:
        if new is not None and new["metadata"]["name"] in self.ips and needs_status(new):
            self.queue.add(new["metadata"]["name"])

    # -- pods -----------------------------------------------------------------------------

    def _on_pod(self, old: dict | None, new: dict | None) -> None:
        pod = new if new is not None else old
        if pod is None or (pod.get("spec") or {}).get("nodeName") not in self.ips:
            return
        ip = (pod.get("status") or {}).get("podIP")
        if new is None:
            self._changed.pop(pod["metadata"].get("uid", ""), None)
            if ip:
                self._used_ips.discard(ip)
        elif ip:
            self._used_ips.add(ip)
        self.queue.add(object_key(pod))

    def _allocate_ip(self) -> str:
        size = POD_NETWORK.num_addresses - self._pod_block
        while True:
            address = POD_NETWORK.network_address + self._pod_block + self._next_ip % size
            self._next_ip += 1
            text = str(address)
            if int(address) & 0xFF not in (0, 255) and text not in self._used_ips:
                self._used_ips.add(text)
                return text

    async def _sync(self, key: str) -> float | None:
        """Pod keys are `namespace/name`; node keys are bare names."""
        return await (self._sync_pod(key) if "/" in key else self._sync_node(key))

    async def _sync_node(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is not None and needs_status(node):
            await self._post_status(name)

    async def _sync_pod(self, key: str) -> float | None:
        pod = self.pods.get(key)
        if pod is None:
            return None
        meta = pod["metadata"]
        node = (pod.get("spec") or {}).get("nodeName")
        if node not in self.ips:
            return None
        if meta.get("deletionTimestamp"):
            namespace, name = split_key(key)
            try:
                await self.client.delete("v1", "pods", name, namespace, grace_period_seconds=0,
                                         preconditions={"uid": meta["uid"]})
            except ApiError as err:
                if not (err.not_found or err.conflict):
                    raise
            return None
        status = pod.get("status") or {}
        if status.get("phase") in TERMINAL_PHASES:
            return None
        uid = meta.get("uid", "")
        host_ip = self.ips[node]
        pod_ip = host_ip if (pod.get("spec") or {}).get("hostNetwork") else \
            status.get("podIP") or self._allocate_ip()
        now = utcnow()
        desired, again = pod_status(pod, host_ip=host_ip, pod_ip=pod_ip, now=now,
                                    changed_at=self._changed.get(uid))
        if desired is not None:
            if desired["containerStatuses"] != status.get("containerStatuses"):
                self._changed[uid] = now
            await self.client.patch("v1", "pods", meta["name"],
                                    {"metadata": {"uid": uid}, "status": desired},
                                    meta.get("namespace"), subresource="status")
        return again


async def run_hollow_nodes(kubeconfig: str | None, *, count: int, prefix: str,
                           capacity: Mapping[str, str], labels: Mapping[str, str] | None = None,
                           taints: Iterable[Mapping[str, str]] = (),
                           lease_duration_seconds: int = LEASE_DURATION_SECONDS) -> None:
    """Run `count` hollow nodes against the API server of `kubeconfig` until cancelled.

    `lease_duration_seconds` is the kubelet's nodeLeaseDurationSeconds: leases are renewed
    every quarter of it, which must stay well under the node lifecycle controller's grace
    period (by default, as upstream: renewed every 10 s against a 40 s grace period).
    """
    async with Client.from_kubeconfig(kubeconfig, user_agent="pilothouse-hollow-node",
                                      field_manager="pilothouse-hollow-node") as client:
        await client.wait_ready()
        await HollowNodes(client, count=count, prefix=prefix, capacity=capacity,
                          labels=labels, taints=taints,
                          lease_duration_seconds=lease_duration_seconds).run()
