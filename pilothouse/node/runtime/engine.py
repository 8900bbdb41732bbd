"""The container-engine runtime: pods' containers as Docker or Podman containers, through the CLI.

Where an engine answers, a container is a real OCI container (`<cli> run -d --network host
...`), its image a real image the engine pulls, its id the engine's (`docker://<64 hex>`).
The engine keeps the state (`inspect`, `ps -a` filtered by our label), so a restarted
kubelet finds its containers there. Output is copied into the CRI log file by a shim
running `<cli> logs -f <id>` (the same shim as the other runtimes: it survives the kubelet
and writes the same format); exec and attach are `<cli> exec` / `<cli> attach`, on a
terminal when asked for one; stats are read from the container's cgroups through its pid.

As the other runtimes, pods share the host's network and see their own /etc/hosts and
resolv.conf (bound from the pod folder). Limits map to `--memory` and `--cpus`. Only the
CLI is used: no engine API client, no socket path guessing. On this machine the docker
client exists but no engine runs, so `check()` says exactly that; the command lines are
unit-tested, nothing here pretends to have run a container.

Limits of the mapping: the kubelet hands over argv with command and args already merged,
so a non-empty argv always replaces the image's ENTRYPOINT (`--entrypoint argv[0]`); an
empty argv keeps the image's ENTRYPOINT and CMD. A command missing in the image shows as
the engine's error (exit code 126/127 for exec) rather than RuntimeFailure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pilothouse.node.runtime.base import (
    ContainerConfig,
    ContainerStats,
    ContainerStatus,
    PodSandboxConfig,
    Runtime,
    RuntimeFailure,
    RuntimeUnavailable,
    StreamSession,
)
from pilothouse.node.runtime.cgroups import Cgroups
from pilothouse.node.runtime.process import (
    CONTAINERS_DIR,
    LOG_MAX_BYTES,
    LOG_MAX_FILES,
    SANDBOX_DIR,
    ProcessRuntime,
    open_session,
)

#: Label on every container we make, with the runtime's name as value.
MANAGED_LABEL = "io.pilothouse.runtime"
NAME_LABEL = "io.pilothouse.container.name"
ATTEMPT_LABEL = "io.pilothouse.container.attempt"
IMAGE_LABEL = "io.pilothouse.container.image"
ENGINES = ("docker", "podman")


def engine_problem(cli: str) -> str | None:
    """Why the engine behind `cli` cannot be used here (None: it answers)."""
    if shutil.which(cli) is None:
        if not any(shutil.which(other) for other in ENGINES):
            return "neither docker nor podman is installed"
        return f"{cli}: the client is not installed"
    try:
        done = subprocess.run([cli, "info", "--format", "{{json .ServerVersion}}"],
                              capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{cli}: the client is installed but no engine answers: {e}"
    if done.returncode != 0:
        detail = " ".join(done.stderr.split()) or f"exit code {done.returncode}"
        return f"{cli}: the client is installed but no engine answers: {detail}"
    return None


def container_name(sandbox: PodSandboxConfig, config: ContainerConfig) -> str:
    """`ph_<container>_<pod>_<namespace>_<pod uid>_<attempt>`, as dockershim named them."""
    raw = f"ph_{config.name}_{sandbox.name}_{sandbox.namespace}_{sandbox.uid}_{config.attempt}"
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", raw)


def run_command(cli: str, *, runtime: str, sandbox: PodSandboxConfig,
                config: ContainerConfig, termination_file: Path) -> list[str]:
    """`<cli> run -d ...` for a container."""
    command = [cli, "run", "-d", "--name", container_name(sandbox, config),
               "--network", "host", "--hostname", sandbox.hostname,
               "--label", f"{MANAGED_LABEL}={runtime}",
               "--label", f"{NAME_LABEL}={config.name}",
               "--label", f"{ATTEMPT_LABEL}={config.attempt}",
               "--label", f"{IMAGE_LABEL}={config.image}"]
    for key, value in sorted(config.labels.items()):
        command += ["--label", f"{key}={value}"]
    for key, value in config.env.items():
        command += ["--env", f"{key}={value}"]
    if config.working_dir:
        command += ["--workdir", config.working_dir]
    pod = sandbox.pod_dir / SANDBOX_DIR
    binds = [(pod / "hosts", "/etc/hosts", True), (pod / "resolv.conf", "/etc/resolv.conf", True),
             (termination_file, config.termination_message_path, False)]
    binds += [(m.host_path, m.container_path, m.read_only) for m in config.mounts]
    for host, target, read_only in binds:
        command += ["--mount", f"type=bind,source={host},target={target}"
                    + (",readonly" if read_only else "")]
    if config.memory_limit_bytes is not None:
        command += ["--memory", str(config.memory_limit_bytes)]
    if config.cpu_limit_millicores is not None:
        command += ["--cpus", f"{config.cpu_limit_millicores / 1000:g}"]
    if config.stdin:
        command.append("--interactive")
    if config.tty:
        command.append("--tty")
    if config.argv:
        command += ["--entrypoint", config.argv[0], config.image, *config.argv[1:]]
    else:
        command.append(config.image)
    return command


def stop_command(cli: str, engine_id: str, grace_seconds: float) -> list[str]:
    return [cli, "stop", "--time", str(max(0, math.ceil(grace_seconds))), engine_id]


def exec_command(cli: str, engine_id: str, argv: Sequence[str], *, tty: bool,
                 stdin: bool) -> list[str]:
    flags = (["--interactive"] if stdin else []) + (["--tty"] if tty else [])
    return [cli, "exec", *flags, engine_id, *argv]


def attach_command(cli: str, engine_id: str, *, stdin: bool) -> list[str]:
    return [cli, "attach", "--sig-proxy=false", *([] if stdin else ["--no-stdin"]), engine_id]


def _timestamp(value: str | None) -> float | None:
    """Engine timestamps (RFC 3339, nanoseconds) as epoch seconds; the zero time is None."""
    if not value or value.startswith("0001-"):
        return None
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", value)
    if not m:
        return None
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    seconds = datetime.fromisoformat(m.group(1) + zone).timestamp()
    return seconds + float(f"0.{m.group(2) or 0}")


def status_from_inspect(runtime: str, doc: dict[str, Any]) -> ContainerStatus:
    """A ContainerStatus from one `<cli> inspect` document."""
    state = doc.get("State") or {}
    labels = dict((doc.get("Config") or {}).get("Labels") or {})
    engine_state = state.get("Status", "")
    status = {"created": "created", "running": "running", "paused": "running",
              "restarting": "running"}.get(engine_state, "exited")
    exited = status == "exited"
    code = state.get("ExitCode", 0) if exited else None
    reason = ""
    if exited:
        reason = "OOMKilled" if state.get("OOMKilled") else "Completed" if code == 0 else \
            "ContainerCannotRun" if state.get("Error") else "Error"
    own = {MANAGED_LABEL, NAME_LABEL, ATTEMPT_LABEL, IMAGE_LABEL}
    return ContainerStatus(
        id=f"{runtime}://{doc['Id']}", name=labels.get(NAME_LABEL, doc.get("Name", "")),
        attempt=int(labels.get(ATTEMPT_LABEL, 0)), state=status,
        labels={k: v for k, v in labels.items() if k not in own},
        pid=state.get("Pid") or None, started_at=_timestamp(state.get("StartedAt")),
        finished_at=_timestamp(state.get("FinishedAt")) if exited else None,
        exit_code=code, reason=reason, message=state.get("Error", "") if exited else "",
        image=labels.get(IMAGE_LABEL, (doc.get("Config") or {}).get("Image", "")),
        image_id=doc.get("Image", ""))


class EngineRuntime(Runtime):
    """A container engine driven through its CLI (`cli`: docker or podman)."""

    name = "docker"
    cli = "docker"

    def __init__(self, pods_root: Path, run_dir: Path, *,
                 log_max_bytes: int = LOG_MAX_BYTES, log_max_files: int = LOG_MAX_FILES,
                 cli_env: Mapping[str, str] | None = None) -> None:
        self.pods_root = Path(pods_root)
        self.run_dir = Path(run_dir)
        #: The environment the CLI runs with (DOCKER_HOST, CONTAINER_HOST... choose the
        #: engine): the node's own unless given.
        self.cli_env = dict(os.environ if cli_env is None else cli_env)
        # The log followers are shims, as the other runtimes' containers are.
        self._followers = ProcessRuntime(pods_root, run_dir, log_max_bytes=log_max_bytes,
                                         log_max_files=log_max_files)
        self._followers.name = f"{self.name}-logs"
        self._followers.notify_path = self.run_dir / f"{self.name}-logs-events.sock"
        self.cgroups = Cgroups.detect()

    @classmethod
    def check(cls) -> None:
        problem = engine_problem(cls.cli)
        if problem:
            raise RuntimeUnavailable(problem)

    async def _cli(self, *args: str, check: bool = True) -> str:
        process = await asyncio.create_subprocess_exec(
            self.cli, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.cli_env)
        out, err = await process.communicate()
        if check and process.returncode != 0:
            raise RuntimeFailure("RuntimeError", f"{self.cli} {args[0]}: "
                                 f"{' '.join(err.decode(errors='replace').split())}")
        return out.decode()

    def _engine_id(self, container_id: str) -> str | None:
        prefix = f"{self.name}://"
        return container_id[len(prefix):] if container_id.startswith(prefix) else None

    async def run_pod_sandbox(self, config: PodSandboxConfig) -> None:
        await self._followers.run_pod_sandbox(config)

    async def remove_pod_sandbox(self, config: PodSandboxConfig) -> None:
        await self._followers.remove_pod_sandbox(config)

    async def start_container(self, sandbox: PodSandboxConfig,
                              config: ContainerConfig) -> ContainerStatus:
        termination = sandbox.pod_dir / CONTAINERS_DIR / f"{container_name(sandbox, config)}"
        termination.mkdir(parents=True, exist_ok=True)
        (termination / "termination-log").touch()
        command = run_command(self.cli, runtime=self.name, sandbox=sandbox, config=config,
                              termination_file=termination / "termination-log")
        process = await asyncio.create_subprocess_exec(
            *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.cli_env)
        out, err = await process.communicate()
        if process.returncode != 0:
            message = " ".join(err.decode(errors="replace").split())
            reason = "RunContainerError" if "executable file not found" in message or \
                "no such file or directory" in message else \
                "ErrImagePull" if re.search(r"pull access denied|manifest unknown|not found",
                                            message) else "CreateContainerError"
            raise RuntimeFailure(reason, message)
        engine_id = out.decode().strip().splitlines()[-1]
        config.log_path.parent.mkdir(parents=True, exist_ok=True)
        follower = ContainerConfig(
            name=config.name, attempt=config.attempt, image=config.image, image_dir=None,
            argv=[self.cli, "logs", "--follow", engine_id], env=self.cli_env,
            working_dir="/", mounts=[], log_path=config.log_path,
            labels={"engine-id": engine_id})
        with contextlib.suppress(RuntimeFailure):
            await self._followers.start_container(sandbox, follower)
        status = await self.container_status(f"{self.name}://{engine_id}")
        if status is None:
            raise RuntimeFailure("RunContainerError", f"{self.cli} lost container {engine_id}")
        return status

    async def stop_container(self, container_id: str, grace_seconds: float) -> None:
        engine_id = self._engine_id(container_id)
        if engine_id:
            await self._cli(*stop_command(self.cli, engine_id, grace_seconds)[1:], check=False)

    async def remove_container(self, container_id: str) -> None:
        engine_id = self._engine_id(container_id)
        if engine_id:
            await self._cli("rm", "--force", engine_id, check=False)
            for follower in await self._followers.list_containers():
                if follower.labels.get("engine-id") == engine_id:
                    await self._followers.remove_container(follower.id)

    async def _inspect(self, *engine_ids: str) -> list[dict[str, Any]]:
        if not engine_ids:
            return []
        out = await self._cli("inspect", *engine_ids, check=False)
        try:
            return json.loads(out or "[]")
        except ValueError:
            return []

    async def container_status(self, container_id: str) -> ContainerStatus | None:
        engine_id = self._engine_id(container_id)
        docs = await self._inspect(engine_id) if engine_id else []
        return status_from_inspect(self.name, docs[0]) if docs else None

    async def list_containers(self) -> list[ContainerStatus]:
        out = await self._cli("ps", "--all", "--no-trunc", "--quiet", "--filter",
                              f"label={MANAGED_LABEL}={self.name}")
        return [status_from_inspect(self.name, d) for d in await self._inspect(*out.split())]

    async def container_events(self) -> AsyncIterator[str]:
        process = await asyncio.create_subprocess_exec(
            self.cli, "events", "--filter", "type=container", "--filter",
            f"label={MANAGED_LABEL}={self.name}", "--format", "{{.Actor.ID}} {{.Action}}",
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self.cli_env)
        assert process.stdout is not None
        try:
            async for line in process.stdout:
                engine_id, _, action = line.decode().strip().partition(" ")
                if action in ("start", "die", "oom", "destroy"):
                    yield f"{self.name}://{engine_id}"
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()

    async def exec(self, container_id: str, argv: Sequence[str], *, tty: bool,
                   stdin: bool) -> StreamSession:
        engine_id = self._engine_id(container_id)
        if not engine_id or not argv:
            raise RuntimeFailure("ExecError", f"cannot exec {list(argv)} in {container_id}")
        return await open_session(exec_command(self.cli, engine_id, argv, tty=tty, stdin=stdin),
                                  env=self.cli_env, cwd="/", tty=tty, stdin=stdin)

    async def attach(self, container_id: str, *, stdin: bool) -> StreamSession:
        engine_id = self._engine_id(container_id)
        status = await self.container_status(container_id)
        if not engine_id or status is None:
            raise RuntimeFailure("ContainerNotFound", f"container {container_id} not found")
        tty = bool(await self._cli("inspect", "--format", "{{.Config.Tty}}", engine_id,
                                   check=False) == "true\n")
        return await open_session(attach_command(self.cli, engine_id, stdin=stdin),
                                  env=self.cli_env, cwd="/", tty=tty, stdin=stdin)

    async def container_stats(self, container_id: str) -> ContainerStats | None:
        status = await self.container_status(container_id)
        if status is None or status.state != "running" or not status.pid:
            return None
        cgroups = self.cgroups.of_process(status.pid)
        cpu, memory = cgroups.cpu_usage_ns(), cgroups.memory_working_set()
        if cpu is None or memory is None:
            return None
        return ContainerStats(cpu_usage_core_nanoseconds=cpu,
                              memory_working_set_bytes=memory, timestamp=time.time())


class DockerRuntime(EngineRuntime):
    name = "docker"
    cli = "docker"


class PodmanRuntime(EngineRuntime):
    name = "podman"
    cli = "podman"
