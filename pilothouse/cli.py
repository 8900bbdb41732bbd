"""The `pilothouse` command: thin flag parsing over the components.

    pilothouse up         the whole single-node cluster, in the foreground
    pilothouse apiserver  the API server alone (for multi-process set-ups)

`up` starts the components listed in `_up_components`; later issues add the controller
manager, scheduler, node agent and operators there, each talking to the API server
through its own kubeconfig (`<data-dir>/components/<name>.kubeconfig`), an identity
with only the rights its bootstrap role grants. Ctrl-C or SIGTERM stops everything cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import yaml

from .apiserver.bootstrap_policy import PLATFORM_COMPONENTS
from .apiserver.pki import ADMIN_USER, PKI
from .apiserver.server import APIServer, Settings
from .store import DataDirInUse

DEFAULT_DATA_DIR = Path("~/.pilothouse")
DEFAULT_PORT = 6443
CLUSTER_NAME = "pilothouse"


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


async def _run(settings: Settings, *, started: float, extra: list[Callable[[], Awaitable[None]]]
               ) -> int:
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
    write_component_kubeconfigs(server.pki, settings.data_dir / "components", url)
    for start_component in extra:
        await start_component()
    elapsed = time.monotonic() - started
    print(f"Pilothouse is ready in {elapsed:.1f}s: export KUBECONFIG={kubeconfig} "
          f"&& kubectl get namespaces", flush=True)
    await stop.wait()
    print("Pilothouse is stopping", file=sys.stderr, flush=True)
    await server.stop()
    return 0


def _up_components() -> list[Callable[[], Awaitable[None]]]:
    """The components `up` runs beside the API server (more arrive with later issues)."""
    return []


def _settings(args: argparse.Namespace) -> Settings:
    data_dir = Path(args.data_dir).expanduser().resolve()
    return Settings(data_dir=data_dir, port=args.port)


def _serve(args: argparse.Namespace, extra: list[Callable[[], Awaitable[None]]]) -> int:
    started = time.monotonic()
    settings = _settings(args)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    return runner(_run(settings, started=started, extra=extra))


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
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "up":
        return _serve(args, _up_components())
    return _serve(args, [])


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
