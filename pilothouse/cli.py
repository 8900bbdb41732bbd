"""The `pilothouse` command: thin flag parsing over the components.

    pilothouse up                  the whole single-node cluster, in the foreground
    pilothouse apiserver           the API server alone (for multi-process set-ups)
    pilothouse controller-manager  the built-in control loops, against any kubeconfig
    pilothouse scheduler           the scheduler, against any kubeconfig
    pilothouse node                a node agent (kubelet) that runs pods, joined to any cluster
    pilothouse node --hollow N     N simulated nodes (kwok-style), against any kubeconfig

`up` starts the components listed in `_up_components` as child processes, each talking
to the API server through its own kubeconfig (`<data-dir>/components/<name>.kubeconfig`), an identity
with only the rights its bootstrap role grants. Ctrl-C or SIGTERM stops everything cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ipaddress
import logging
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from .apiserver.bootstrap_policy import PLATFORM_COMPONENTS
from .apiserver.pki import ADMIN_USER, PKI
from .apiserver.server import APIServer, Settings
from .apiserver.serviceips import parse_port_range, parse_service_cidr
from .machinery.addresses import NODE_PORT_RANGE, SERVICE_CLUSTER_IP_RANGE
from .machinery.names import is_dns1123_subdomain, is_qualified_name, is_valid_label_value
from .node.proxy import PROXY_MODES
from .node.runtime import RUNTIMES
from .store import DataDirInUse
from .supervisor import Child

DEFAULT_DATA_DIR = Path("~/.pilothouse")
DEFAULT_PORT = 6443
#: A node agent's SIGTERM stops its pods within this many seconds (shutdownGracePeriod).
NODE_SHUTDOWN_GRACE = 30.0
CLUSTER_NAME = "pilothouse"
#: What a node with an external cloud provider carries until the cloud-controller-manager
#: has initialized it (the kubelet's --cloud-provider=external).
UNINITIALIZED_TAINT = {"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true",
                       "effect": "NoSchedule"}
log = logging.getLogger("pilothouse")


def write_kubeconfig(pki: PKI, path: Path, server: str, user: str, cert: Path, key: Path
                     ) -> None:
    """A kubeconfig for `user` (client certificate) against `server`, trusting the CA."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER_NAME, "cluster": {
            "server": server,
            "certificate-authority-data": base64.b64encode(pki.ca_cert.read_bytes()).decode(),
        }}],
        "users": [{"name": user, "user": {
            "client-certificate-data": base64.b64encode(cert.read_bytes()).decode(),
            "client-key-data": base64.b64encode(key.read_bytes()).decode(),
        }}],
        "contexts": [{"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": user}}],
        "current-context": CLUSTER_NAME,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)


def write_component_kubeconfigs(pki: PKI, directory: Path, server: str) -> None:
    """One kubeconfig per platform component, each its own least-privileged identity.

    `up` hands these to the components it starts (`--kubeconfig`); run elsewhere, a
    component gets the same file copied to its machine.
    """
    node = socket.gethostname().lower()
    for component, (user, groups) in PLATFORM_COMPONENTS.items():
        user = user.format(node=node)
        cert, key = pki.ensure_client(user, groups)
        write_kubeconfig(pki, directory / f"{component}.kubeconfig", server, user, cert, key)


async def _run(settings: Settings, *, started: float, with_components: bool,
               with_node: bool, log_level: str, proxy_mode: str = "auto") -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = APIServer(settings)
    try:
        await server.start()
    except DataDirInUse as exc:
        print(f"pilothouse: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"pilothouse: cannot serve on {settings.host}:{settings.port}: {exc}",
              file=sys.stderr)
        await server.stop()
        return 1
    kubeconfig = settings.data_dir / "kubeconfig"
    url = f"https://{settings.host}:{settings.port}"
    write_kubeconfig(server.pki, kubeconfig, url, ADMIN_USER, *server.pki.client_cert(ADMIN_USER))
    components = settings.data_dir / "components"
    write_component_kubeconfigs(server.pki, components, url)
    children = []
    if with_components:
        from .node.runtime import default_runtime

        runtime, why = default_runtime()
        if with_node:
            print(f"Node runtime: {runtime} ({why})", flush=True)
        children = _up_components(components, log_level, settings.data_dir,
                                  runtime if with_node else None, proxy_mode)
    for child in children:
        child.start()
    elapsed = time.monotonic() - started
    if with_components:
        print("NetworkPolicy objects are stored but not enforced: this cluster's pod network "
              "does not implement them", flush=True)
    print(f"Pilothouse is ready in {elapsed:.1f}s: export KUBECONFIG={kubeconfig} "
          f"&& kubectl get namespaces", flush=True)
    await stop.wait()
    print("Pilothouse is stopping", file=sys.stderr, flush=True)
    await asyncio.gather(*(child.stop() for child in children))
    await server.stop()
    return 0


def _up_components(components: Path, log_level: str, data_dir: Path,
                   runtime: str | None, proxy_mode: str = "auto") -> list[Child]:
    """The components `up` runs beside the API server, each its own process and identity:
    the control loops, the scheduler, the cloud controllers with the local provider
    (LoadBalancer addresses from 127.97.0.0/16), the Kubeflow operators (training so far)
    and (unless `runtime` is None, `--disable-agent`) one node agent sharing the data dir
    (its pods' folders and logs live in DATA/pods), which the cloud controllers initialize
    as `--cloud-provider external` nodes are.
    """
    children = [
        Child("controller-manager", ["--log-level", log_level, "controller-manager",
                                     "--kubeconfig",
                                     str(components / "controller-manager.kubeconfig"),
                                     "--data-dir", str(data_dir)]),
        Child("scheduler", ["--log-level", log_level, "scheduler", "--kubeconfig",
                            str(components / "scheduler.kubeconfig")]),
        Child("cloud-controller-manager",
              ["--log-level", log_level, "cloud-controller-manager", "--kubeconfig",
               str(components / "cloud-controller-manager.kubeconfig")]),
        Child("operators", ["--log-level", log_level, "operators", "--kubeconfig",
                            str(components / "kubeflow-operators.kubeconfig")]),
    ]
    if runtime is not None:
        children.append(Child(
            "node", ["--log-level", log_level, "node", "--kubeconfig",
                     str(components / "node.kubeconfig"), "--data-dir", str(data_dir),
                     "--port", "0", "--runtime", runtime, "--cloud-provider", "external",
                     "--proxy-mode", proxy_mode],
            stop_grace=NODE_SHUTDOWN_GRACE + 5))
    return children


def _runner() -> Callable[[Awaitable[Any]], Any]:
    try:
        import uvloop

        return uvloop.run
    except ImportError:
        return asyncio.run


def _serve(args: argparse.Namespace, *, with_components: bool) -> int:
    started = time.monotonic()
    data_dir = Path(args.data_dir).expanduser().resolve()
    ranges: list[Any] = []
    for flag, value, parse in (
            ("--service-cluster-ip-range", args.service_cluster_ip_range, parse_service_cidr),
            ("--service-node-port-range", args.service_node_port_range, parse_port_range)):
        try:
            ranges.append(parse(value))
        except ValueError as exc:
            print(f'pilothouse {args.command}: invalid argument "{value}" for "{flag}" flag: '
                  f'{exc}', file=sys.stderr)
            return 2
    service_range, node_ports = ranges
    settings = Settings(
        data_dir=data_dir, port=args.port,
        default_not_ready_toleration_seconds=args.default_not_ready_toleration_seconds,
        default_unreachable_toleration_seconds=args.default_unreachable_toleration_seconds,
        service_cluster_ip_range=service_range, service_node_port_range=node_ports)
    return _runner()(_run(settings, started=started, with_components=with_components,
                          with_node=with_components and not getattr(args, "disable_agent", False),
                          log_level=args.log_level,
                          proxy_mode=getattr(args, "proxy_mode", "auto")))


def _controller_manager(args: argparse.Namespace) -> int:
    from .controllers.manager import run_controller_manager

    only = [c.strip() for c in args.controllers.split(",") if c.strip()] if args.controllers \
        else None
    try:
        _runner()(_until_signal(run_controller_manager(
            args.kubeconfig, only=only, leader_elect=args.leader_elect,
            settings={"node_monitor_grace_period": args.node_monitor_grace_period,
                      "data_dir": str(Path(args.data_dir).expanduser().resolve()),
                      "horizontal_pod_autoscaler_sync_period":
                          args.horizontal_pod_autoscaler_sync_period,
                      "horizontal_pod_autoscaler_downscale_stabilization":
                          args.horizontal_pod_autoscaler_downscale_stabilization})))
    except ValueError as exc:
        print(f"pilothouse controller-manager: {exc}", file=sys.stderr)
        return 2
    return 0


def _cloud_controller_manager(args: argparse.Namespace) -> int:
    from .cloud.manager import run_cloud_controller_manager

    only = [c.strip() for c in args.controllers.split(",") if c.strip()] if args.controllers \
        else None
    try:
        _runner()(_until_signal(run_cloud_controller_manager(
            args.kubeconfig, cloud_provider=args.cloud_provider, cloud_config=args.cloud_config,
            cluster_name=args.cluster_name, leader_elect=args.leader_elect, controllers=only)))
    except ValueError as exc:
        print(f"pilothouse cloud-controller-manager: {exc}", file=sys.stderr)
        return 2
    return 0


def _operators(args: argparse.Namespace) -> int:
    from .kubeflow.operators import run_training_operator

    only = [c.strip() for c in args.controllers.split(",") if c.strip()] if args.controllers \
        else None
    try:
        _runner()(_until_signal(run_training_operator(
            args.kubeconfig, leader_elect=args.leader_elect,
            gang_scheduler_name=args.gang_scheduler_name or None, controllers=only,
            webhook=args.webhook, webhook_host=args.webhook_host,
            webhook_port=args.webhook_port, webhook_service=args.webhook_service,
            webhook_secret=args.webhook_secret_name)))
    except ValueError as exc:
        print(f"pilothouse operators: {exc}", file=sys.stderr)
        return 2
    return 0


def _scheduler(args: argparse.Namespace) -> int:
    from .scheduler.scheduler import run_scheduler

    _runner()(_until_signal(run_scheduler(args.kubeconfig, scheduler_name=args.scheduler_name,
                                          leader_elect=args.leader_elect)))
    return 0


def _node(args: argparse.Namespace) -> int:
    try:
        labels = parse_node_labels(args.node_labels)
        taints = parse_taints(args.register_with_taints)
        if args.cloud_provider == "external":
            taints.append(dict(UNINITIALIZED_TAINT))
    except ValueError as exc:
        print(f"pilothouse node: {exc}", file=sys.stderr)
        return 2
    if not args.hollow:
        return _kubelet(args, labels, taints)
    from .node.hollow import run_hollow_nodes

    capacity = {"cpu": args.cpu, "memory": args.memory, "pods": str(args.max_pods)}
    _runner()(_until_signal(run_hollow_nodes(
        args.kubeconfig, count=args.hollow, prefix=args.name_prefix, capacity=capacity,
        labels=labels, taints=taints,
        lease_duration_seconds=args.node_lease_duration_seconds)))
    return 0


def _kubelet(args: argparse.Namespace, labels: dict[str, str],
             taints: list[dict[str, str]]) -> int:
    from .client.api import load_kubeconfig
    from .node.kubelet import KubeletSettings, NodeAgentError, detect_node_ip
    from .node.proxy import ProxySettings, proxy_mode

    server = load_kubeconfig(args.kubeconfig).host  # main() has checked it loads
    settings = KubeletSettings(
        node_name=(args.node_name or socket.gethostname()).lower(),
        data_dir=Path(args.data_dir).expanduser().resolve(),
        node_ip=args.node_ip or detect_node_ip(server), port=args.port, labels=labels,
        taints=tuple(taints), max_pods=args.max_pods,
        lease_duration_seconds=args.node_lease_duration_seconds, runtime=args.runtime,
        shutdown_grace_seconds=args.shutdown_grace_period, cluster_dns=args.cluster_dns or "",
        cluster_domain=args.cluster_domain, resolv_conf=Path(args.resolv_conf))
    try:
        mode, why = proxy_mode(args.proxy_mode)
    except ValueError as exc:
        print(f"pilothouse node: {exc}", file=sys.stderr)
        return 2
    proxy = ProxySettings(node_name=settings.node_name, node_port_addresses=(settings.node_ip,),
                          mode=mode)
    print(f"Service proxy: {mode} ({why})", flush=True)
    try:
        _runner()(_until_signal(_node_agents(args.kubeconfig, settings, proxy)))
    except NodeAgentError as exc:
        print(f"pilothouse node: {exc}", file=sys.stderr)
        return 1
    return 0


async def _node_agents(kubeconfig: str, kubelet: Any, proxy: Any) -> None:
    """A node's two agents in one process: the kubelet and the service proxy. The proxy
    lives as long as the kubelet, so Services keep working while pods shut down."""
    from .node.kubelet import run_kubelet
    from .node.proxy import run_proxy

    proxy_task = asyncio.create_task(run_proxy(kubeconfig, proxy), name="service-proxy")
    proxy_task.add_done_callback(_report_failure)
    try:
        await run_kubelet(kubeconfig, kubelet)
    finally:
        proxy_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await proxy_task


def _report_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())


async def _until_signal(main: Awaitable[Any]) -> None:
    """Run `main` until it ends or SIGINT/SIGTERM arrives. Only the first signal cancels:
    Ctrl-C reaches `up` and its children at once and `up` then sends its children SIGTERM,
    and a second cancel would cut short a shutdown under way (a node agent stopping its
    pods and tearing down their network namespaces)."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(main)

    def stop() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
            loop.add_signal_handler(sig, lambda: None)
        task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _kubeconfig_problem(path: str | None) -> str:
    """Why the kubeconfig cannot be used ("" when it loads), so a component says so in one
    line instead of failing with a traceback once it has started."""
    from .client.api import load_kubeconfig

    try:
        load_kubeconfig(path)
    except Exception as exc:  # the official loader raises several kinds for a bad file
        return str(exc) or type(exc).__name__
    return ""


def parse_node_labels(text: str) -> dict[str, str]:
    """`--node-labels k=v,k2=v2`, as the kubelet takes it."""
    labels: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"invalid --node-labels entry {item!r}: expected key=value")
        problems = is_qualified_name(key) + is_valid_label_value(value)
        if problems:
            raise ValueError(f"invalid node label {item!r}: {problems[0]}")
        labels[key] = value
    return labels


def parse_taints(text: str) -> list[dict[str, str]]:
    """`--register-with-taints key=value:Effect,key2:Effect`, as the kubelet takes it."""
    taints = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        spec, sep, effect = item.rpartition(":")
        if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise ValueError(f"invalid taint {item!r}: expected key[=value]:Effect with Effect "
                             "one of NoSchedule, PreferNoSchedule, NoExecute")
        key, _, value = spec.partition("=")
        if not key or is_qualified_name(key):
            raise ValueError(f"invalid taint key in {item!r}")
        taint = {"key": key, "effect": effect}
        if value:
            taint["value"] = value
        taints.append(taint)
    return taints


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pilothouse",
                                     description="A Kubernetes-style ML platform on one machine.")
    parser.add_argument("--log-level", default="warning",
                        choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("up", "run the whole single-node cluster in the foreground"),
                       ("apiserver", "run the API server alone")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                         help="where state, credentials and the kubeconfig live "
                              "(default ~/.pilothouse)")
        sub.add_argument("--port", type=_port, default=DEFAULT_PORT,
                         help="HTTPS port on 127.0.0.1 (default 6443)")
        if name == "up":
            sub.add_argument("--proxy-mode", choices=PROXY_MODES, default="auto",
                             help="the node's service proxy mode, as `pilothouse node "
                                  "--proxy-mode` (default auto)")
            sub.add_argument("--disable-agent", action="store_true",
                             help="run the control plane only, without the node agent (as "
                                  "k3s server --disable-agent); join nodes with "
                                  "`pilothouse node`")
        for condition in ("not-ready", "unreachable"):
            sub.add_argument(f"--default-{condition}-toleration-seconds", type=_count,
                             default=300,
                             help=f"how long pods tolerate a {condition} node unless they "
                                  "say otherwise (default 300)")
        sub.add_argument("--service-cluster-ip-range", default=str(SERVICE_CLUSTER_IP_RANGE),
                         help="the CIDR Services' cluster IPs come from; the kubernetes "
                              f"Service gets its first address (default "
                              f"{SERVICE_CLUSTER_IP_RANGE})")
        sub.add_argument("--service-node-port-range",
                         default=f"{NODE_PORT_RANGE[0]}-{NODE_PORT_RANGE[1]}",
                         help="the ports, inclusive, NodePort and LoadBalancer Services' node "
                              f"ports come from (default {NODE_PORT_RANGE[0]}-"
                              f"{NODE_PORT_RANGE[1]})")
    manager = commands.add_parser("controller-manager", help="run the built-in controllers")
    manager.add_argument("--kubeconfig", required=True)
    manager.add_argument("--controllers", default="",
                         help="comma-separated controller names (default: all)")
    manager.add_argument("--no-leader-elect", dest="leader_elect", action="store_false")
    manager.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                         help="where the local-path provisioner keeps volumes (DATA/storage; "
                              "default ~/.pilothouse)")
    manager.add_argument("--node-monitor-grace-period", type=_seconds, default=40.0,
                         help="seconds without a heartbeat before a node is NotReady "
                              "(default 40)")
    manager.add_argument("--horizontal-pod-autoscaler-sync-period", type=_seconds,
                         default=15.0,
                         help="seconds between two syncs of each HorizontalPodAutoscaler "
                              "(default 15)")
    manager.add_argument("--horizontal-pod-autoscaler-downscale-stabilization", type=_count,
                         default=300,
                         help="seconds a HorizontalPodAutoscaler looks back for a higher "
                              "recommendation before it scales down (default 300)")
    cloud = commands.add_parser("cloud-controller-manager",
                                help="run the cloud controllers (load balancers, node "
                                     "initialization) against a cloud provider")
    cloud.add_argument("--kubeconfig", required=True)
    cloud.add_argument("--cloud-provider", default="local",
                       help="the provider, by name: `local` (built in) or one a package "
                            "registers (default local)")
    cloud.add_argument("--cloud-config", default=None, help="the provider's config file")
    cloud.add_argument("--cluster-name", default="kubernetes",
                       help="names the cluster's load balancers (default kubernetes)")
    cloud.add_argument("--controllers", default="",
                       help="comma-separated: service, cloud-node, cloud-node-lifecycle "
                            "(default: all)")
    cloud.add_argument("--no-leader-elect", dest="leader_elect", action="store_false")
    operators = commands.add_parser(
        "operators", help="run the Kubeflow operators (training: PyTorchJob, TFJob, "
                          "XGBoostJob, JAXJob, PaddleJob, MPIJob) against any cluster")
    operators.add_argument("--kubeconfig", default=None,
                           help="the cluster to run against (default: in-cluster config)")
    operators.add_argument("--controllers", default="",
                           help="comma-separated: pytorchjob-controller, tfjob-controller, "
                                "xgboostjob-controller, jaxjob-controller, "
                                "paddlejob-controller, mpijob-controller (default: all)")
    operators.add_argument("--gang-scheduler-name", default="default-scheduler",
                           help="the scheduler that gang-schedules PodGroups (scheduling.x-k8s.io"
                                "/v1alpha1); empty: no gang scheduling (default "
                                "default-scheduler, whose Coscheduling plugin does it here)")
    operators.add_argument("--no-leader-elect", dest="leader_elect", action="store_false")
    operators.add_argument("--no-webhook", dest="webhook", action="store_false",
                           help="do not serve and register the validating admission webhook "
                                "(the leader then removes its configuration)")
    operators.add_argument("--webhook-host", default="127.0.0.1",
                           help="where the webhook listens and the API server reaches it "
                                "(default 127.0.0.1)")
    operators.add_argument("--webhook-port", type=_port_or_zero, default=0,
                           help="the webhook's port (default 0: any free one)")
    operators.add_argument("--webhook-service", default=None,
                           help="NAMESPACE/NAME[:PORT]: register the webhook behind this "
                                "Service instead of a URL (in-cluster; needs --webhook-port)")
    operators.add_argument("--webhook-secret-name", default="training-operator-webhook-cert",
                           help="with --webhook-service: the Secret beside it in which the "
                                "operator's replicas share their serving certificate (default "
                                "training-operator-webhook-cert)")
    scheduler = commands.add_parser("scheduler", help="run the scheduler")
    scheduler.add_argument("--kubeconfig", required=True)
    scheduler.add_argument("--scheduler-name", default="default-scheduler")
    scheduler.add_argument("--no-leader-elect", dest="leader_elect", action="store_false")
    node = commands.add_parser("node", help="run a node agent (kubelet) joined to a cluster")
    node.add_argument("--kubeconfig", required=True)
    node.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                      help="where pods' folders, logs, images and the agent's state live "
                           "(default ~/.pilothouse)")
    node.add_argument("--node-name", default=None, type=_node_name,
                      help="the Node's name (default: hostname)")
    node.add_argument("--node-ip", default=None, type=_ip,
                      help="the address the node reports and serves the kubelet API on "
                           "(default: this machine's address towards the API server)")
    node.add_argument("--port", type=_port_or_zero, default=10250,
                      help="the kubelet API's HTTPS port; 0 picks a free one (default 10250)")
    node.add_argument("--runtime", default=None, choices=sorted(RUNTIMES),
                      help="the node's default container runtime (default: sandbox where "
                           "Linux namespaces work, else process)")
    node.add_argument("--shutdown-grace-period", type=_seconds, default=NODE_SHUTDOWN_GRACE,
                      help="on SIGTERM, the longest the agent waits for its pods to stop "
                           f"(default {NODE_SHUTDOWN_GRACE:g})")
    node.add_argument("--proxy-mode", choices=PROXY_MODES, default="auto",
                      help="how the node's service proxy forwards (kube-proxy's --proxy-mode): "
                           "nftables where root and the nft tool allow, else userspace "
                           "(default auto)")
    node.add_argument("--cluster-dns", type=_ipv4, default=None,
                      help="the address the node's cluster DNS server listens on (port 53) "
                           "and pods' resolv.conf names (default: .0.10 of the node's pod "
                           "network, 127.N.0.10)")
    node.add_argument("--cluster-domain", type=_domain, default="cluster.local",
                      help="the cluster's DNS domain (default cluster.local)")
    node.add_argument("--resolv-conf", default="/etc/resolv.conf",
                      help="the resolver configuration dnsPolicy Default pods get and the "
                           "cluster DNS forwards to (default /etc/resolv.conf)")
    node.add_argument("--hollow", type=_count, default=0,
                      help="instead: register N simulated nodes that run nothing, as kwok "
                           "does")
    node.add_argument("--name-prefix", default="hollow-node-")
    node.add_argument("--cpu", default="8", help="hollow nodes' cpu capacity")
    node.add_argument("--memory", default="32Gi", help="hollow nodes' memory capacity")
    node.add_argument("--max-pods", type=_count, default=110)
    node.add_argument("--node-labels", default="")
    node.add_argument("--register-with-taints", default="")
    node.add_argument("--cloud-provider", choices=("", "external"), default="",
                      help="`external`: a cloud-controller-manager initializes this node, so "
                           "it registers with the node.cloudprovider.kubernetes.io/"
                           "uninitialized taint until then, as the kubelet does")
    node.add_argument("--node-lease-duration-seconds", type=_positive, default=40,
                      help="the nodes' Lease duration; renewed every quarter of it "
                           "(default 40, as the kubelet)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if hasattr(args, "kubeconfig"):  # every component that is an API client
        problem = _kubeconfig_problem(args.kubeconfig)
        if problem:
            where = args.kubeconfig or "(default or in-cluster)"
            print(f"pilothouse {args.command}: cannot use kubeconfig {where}: {problem}",
                  file=sys.stderr)
            return 2
    if args.command == "controller-manager":
        return _controller_manager(args)
    if args.command == "cloud-controller-manager":
        return _cloud_controller_manager(args)
    if args.command == "scheduler":
        return _scheduler(args)
    if args.command == "operators":
        return _operators(args)
    if args.command == "node":
        return _node(args)
    return _serve(args, with_components=args.command == "up")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _ipv4(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IPv4 address: {text!r}") from None


def _ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None


def _node_name(text: str) -> str:
    problems = is_dns1123_subdomain(text.strip().lower())
    if problems:
        raise argparse.ArgumentTypeError(f"invalid node name {text!r}: {problems[0]}")
    return text.strip().lower()


def _domain(text: str) -> str:
    domain = text.strip().rstrip(".").lower()
    if not domain or is_dns1123_subdomain(domain):
        raise argparse.ArgumentTypeError(f"not a DNS domain: {text!r}")
    return domain


def _port_or_zero(text: str) -> int:
    return 0 if text.strip() == "0" else _port(text)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 1 and 65535, not {port}")
    return port


if __name__ == "__main__":
    sys.exit(main())
