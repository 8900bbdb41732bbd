"""The process runtime: real containers (host process groups under their shims) in tmp dirs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilothouse.node.logs import log_path, read_log
from pilothouse.node.runtime.base import (
    ContainerConfig,
    ContainerStatus,
    Mount,
    PodSandboxConfig,
    Runtime,
    RuntimeFailure,
    StreamSession,
)
from pilothouse.node.runtime.process import PathMap, ProcessRuntime

HOST_PATH = "/usr/local/bin:/usr/bin:/bin"


def pod(tmp_path: Path, name: str = "web", uid: str = "0b6f7e2c-uid") -> PodSandboxConfig:
    return PodSandboxConfig(uid=uid, namespace="default", name=name, hostname=name,
                            pod_dir=tmp_path / "pods" / f"default_{name}_{uid}", ip="127.0.0.10",
                            hosts="127.0.0.1\tlocalhost\n127.0.0.10\tweb\n",
                            resolv_conf="nameserver 127.0.0.1\n")


def container(sandbox: PodSandboxConfig, name: str, argv: list[str], **fields) -> ContainerConfig:
    attempt = fields.pop("attempt", 0)
    return ContainerConfig(name=name, attempt=attempt, image="busybox",
                           image_dir=fields.pop("image_dir", None), argv=argv,
                           env=fields.pop("env", {}), working_dir=fields.pop("working_dir", None),
                           mounts=fields.pop("mounts", []),
                           log_path=log_path(sandbox.pod_dir, name, attempt), **fields)


async def until(check, timeout: float = 10.0, interval: float = 0.01):
    """Poll the coroutine function `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            assert result, "timed out"
            return result
        await asyncio.sleep(interval)


async def exited(runtime: Runtime, container_id: str, timeout: float = 10.0) -> ContainerStatus:
    async def check() -> ContainerStatus | None:
        status = await runtime.container_status(container_id)
        return status if status is not None and status.state == "exited" else None

    return await until(check, timeout)


async def logged(config: ContainerConfig, text: bytes, timeout: float = 10.0) -> bytes:
    async def check() -> bytes | None:
        out = b"".join([c async for c in read_log(config.log_path)])
        return out if text in out else None

    return await until(check, timeout)


async def collect(session: StreamSession) -> dict[int, bytes]:
    out = {1: b"", 2: b""}
    async for stream, data in session.output():
        out[stream] += data
    return out


async def stop_everything(runtime: Runtime) -> None:
    for status in await runtime.list_containers():
        await runtime.stop_container(status.id, 0)


def leftovers(tmp_path: Path) -> str:
    """Processes whose command line mentions the test's folder (shims, containers)."""
    return subprocess.run(["pgrep", "-af", str(tmp_path)], capture_output=True,
                          text=True).stdout


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[ProcessRuntime]:
    runtime = ProcessRuntime(tmp_path / "pods", tmp_path / "run", host_path=HOST_PATH)
    asyncio.run(runtime.run_pod_sandbox(pod(tmp_path)))
    yield runtime
    asyncio.run(stop_everything(runtime))
    assert asyncio.run(until(lambda: asyncio.sleep(0, not leftovers(tmp_path)), 5))


# -- running a container -------------------------------------------------------------------

def test_a_container_logs_its_output_and_reports_its_exit(runtime: ProcessRuntime,
                                                          tmp_path: Path) -> None:
    sandbox = pod(tmp_path)
    config = container(sandbox, "main", ["sh", "-c", "echo hi; echo err >&2; exit 3"])

    async def go() -> None:
        started = await runtime.start_container(sandbox, config)
        assert started.id.startswith("process://") and len(started.id) == 10 + 64
        assert started.state in ("running", "exited") and started.pid
        status = await exited(runtime, started.id)
        assert (status.exit_code, status.reason, status.name, status.attempt) == \
            (3, "Error", "main", 0)
        assert status.finished_at >= status.started_at
        records = config.log_path.read_bytes().splitlines()
        assert sorted(r.split(b" ", 1)[1] for r in records) == [b"stderr F err",
                                                                b"stdout F hi"]
        assert sorted((await logged(config, b"err")).splitlines()) == [b"err", b"hi"]
        listed = await runtime.list_containers()
        assert [s.id for s in listed] == [started.id]

    asyncio.run(go())


def test_the_environment_is_the_specs_plus_path_and_hostname(runtime: ProcessRuntime,
                                                             tmp_path: Path) -> None:
    sandbox = pod(tmp_path)
    image = tmp_path / "images" / "python"
    config = container(sandbox, "env", ["env"], env={"GREETING": "hello world"},
                       image_dir=image)

    async def go() -> None:
        status = await runtime.start_container(sandbox, config)
        assert (await exited(runtime, status.id)).exit_code == 0
        lines = (await logged(config, b"GREETING")).decode().splitlines()
        assert sorted(lines) == sorted([f"PATH={image}/bin:{HOST_PATH}", "HOSTNAME=web",
                                        "GREETING=hello world"])

    asyncio.run(go())


def test_mount_paths_are_rewritten_to_the_volumes(runtime: ProcessRuntime,
                                                  tmp_path: Path) -> None:
    sandbox = pod(tmp_path)
    volume = sandbox.pod_dir / "volumes" / "config"
    volume.mkdir(parents=True)
    (volume / "key").write_text("value\n")
    config = container(
        sandbox, "reader", ["sh", "-c", 'cat /etc/config/key; echo "$FLAG"; pwd; '
                            "echo finished > /dev/termination-log"],
        env={"FLAG": "--file=/etc/config/key"}, working_dir="/etc/config",
        mounts=[Mount(volume, "/etc/config", read_only=True)])

    async def go() -> None:
        status = await exited(runtime, (await runtime.start_container(sandbox, config)).id)
        assert (status.exit_code, status.message) == (0, "finished\n")
        lines = (await logged(config, b"value")).decode().splitlines()
        assert lines == ["value", f"--file={volume}/key", str(volume)]
        hex_id = status.id.split("://")[1]
        root = sandbox.pod_dir / ".containers" / hex_id / "root"
        assert (root / "etc" / "config").resolve() == volume.resolve()
        assert (root / "etc" / "config" / "key").read_text() == "value\n"

    asyncio.run(go())


def test_paths_are_rewritten_only_at_path_boundaries() -> None:
    paths = PathMap({"/data": "/v/data", "/data/models": "/v/models", "/": "/ignored"})
    assert paths.rewrite("/data/models/a.pt") == "/v/models/a.pt"  # the longest match
    assert paths.rewrite("/data/x --out=/data cp /data/models:/tmp") == \
        "/v/data/x --out=/v/data cp /v/models:/tmp"
    for text in ("/database", "http://host/data", "x/data", "/datamodels"):
        assert paths.rewrite(text) == text
    assert paths.host("/data") == "/v/data" and paths.host("/etc") == "/etc"


def test_a_missing_program_or_working_dir_is_a_run_container_error(runtime: ProcessRuntime,
                                                                  tmp_path: Path) -> None:
    sandbox = pod(tmp_path)
    not_a_binary = tmp_path / "garbage"
    not_a_binary.write_bytes(b"\x7fELF not really")
    not_a_binary.chmod(0o755)
    cases = [
        (["nosuchcmd", "--flag"], None,
         'exec: "nosuchcmd": executable file not found in $PATH'),
        (["/no/such/program"], None,
         'exec: "/no/such/program": stat /no/such/program: no such file or directory'),
        (["true"], "/no/such/dir",
         'chdir to cwd ("/no/such/dir") set in config.json failed: no such file or directory'),
        ([str(not_a_binary)], None, f'exec: "{not_a_binary}": exec format error'),  # by the shim
    ]

    async def go() -> None:
        for i, (argv, working_dir, message) in enumerate(cases):
            config = container(sandbox, f"bad{i}", argv, working_dir=working_dir)
            with pytest.raises(RuntimeFailure) as failure:
                await runtime.start_container(sandbox, config)
            assert failure.value.reason == "RunContainerError"
            assert failure.value.message == f"unable to start container process: {message}"
        listed = await runtime.list_containers()
        assert len(listed) == len(cases)
        assert {(s.state, s.exit_code, s.reason) for s in listed} == \
            {("exited", 128, "ContainerCannotRun")}

    asyncio.run(go())


def test_container_events_announce_starts_and_exits(runtime: ProcessRuntime,
                                                    tmp_path: Path) -> None:
    sandbox = pod(tmp_path)

    async def go() -> None:
        seen: list[str] = []

        async def listen() -> None:
            async for container_id in runtime.container_events():
                seen.append(container_id)

        listener = asyncio.create_task(listen())
        await until(lambda: asyncio.sleep(0, runtime.notify_path.exists()))
        status = await runtime.start_container(
            sandbox, container(sandbox, "blink", ["sh", "-c", "sleep 0.1"]))
        await until(lambda: asyncio.sleep(0, len(seen) >= 2))
        assert seen == [status.id, status.id]
        assert (await runtime.container_status(status.id)).state == "exited"
        listener.cancel()

    asyncio.run(go())


def test_log_files_rotate_past_their_size(tmp_path: Path) -> None:
    runtime = ProcessRuntime(tmp_path / "pods", tmp_path / "run", log_max_bytes=2000,
                             log_max_files=3)
    sandbox = pod(tmp_path)
    config = container(sandbox, "chatty", ["sh", "-c", "i=0; while [ $i -lt 300 ]; do "
                                           "echo line $i; i=$((i+1)); done"])

    async def go() -> None:
        await runtime.run_pod_sandbox(sandbox)
        await exited(runtime, (await runtime.start_container(sandbox, config)).id)

    asyncio.run(go())
    files = sorted(config.log_path.parent.iterdir())
    assert [f.name for f in files][0] == "0.log" and len(files) == 3
    assert all(f.name.startswith("0.log.") for f in files[1:])
    text = b"".join(f.read_bytes() for f in [*files[1:], files[0]])
    numbers = [int(line.rsplit(b" ", 1)[1]) for line in text.splitlines()]
    assert numbers == list(range(numbers[0], 300)) and numbers[0] > 0


# -- stopping, adopting --------------------------------------------------------------------

def test_stop_sends_sigterm_then_sigkill_after_the_grace_period(runtime: ProcessRuntime,
                                                                tmp_path: Path) -> None:
    sandbox = pod(tmp_path)
    polite = container(sandbox, "polite", ["sh", "-c", 'trap "exit 0" TERM; echo ready; '
                                           "while :; do sleep 0.05; done"])
    stubborn = container(sandbox, "stubborn", ["sh", "-c", 'trap "" TERM; echo ready; '
                                               "while :; do sleep 0.05; done"])

    async def go() -> None:
        first = await runtime.start_container(sandbox, polite)
        second = await runtime.start_container(sandbox, stubborn)
        await logged(polite, b"ready")
        await logged(stubborn, b"ready")
        began = time.monotonic()
        await runtime.stop_container(first.id, 10)
        assert time.monotonic() - began < 2
        status = await runtime.container_status(first.id)
        assert (status.state, status.exit_code, status.reason) == ("exited", 0, "Completed")
        began = time.monotonic()
        await runtime.stop_container(second.id, 0.5)
        assert 0.5 <= time.monotonic() - began < 3
        status = await runtime.container_status(second.id)
        assert (status.state, status.exit_code, status.reason) == ("exited", 137, "Error")
        await runtime.stop_container(second.id, 1)  # stopping a stopped container: nothing
        await runtime.remove_container(second.id)
        assert await runtime.container_status(second.id) is None
        assert stubborn.log_path.exists()  # the log outlives the container

    asyncio.run(go())


ORPHAN = """
import asyncio, os, signal, sys
from pathlib import Path
from pilothouse.node.runtime.process import ProcessRuntime
from tests.unit.test_runtime_process import container, pod, survivor

async def main():
    tmp_path = Path(sys.argv[1])
    sandbox = pod(tmp_path)
    runtime = ProcessRuntime(tmp_path / "pods", tmp_path / "run")
    await runtime.run_pod_sandbox(sandbox)
    status = await runtime.start_container(sandbox, container(sandbox, "survivor",
                                                              survivor(tmp_path)))
    print(status.id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # the kubelet dies

asyncio.run(main())
"""


def survivor(tmp_path: Path) -> list[str]:
    """A container that runs until the test creates a file, then exits 4."""
    return ["sh", "-c", f"while [ ! -e {tmp_path / 'finish'} ]; do sleep 0.02; done; "
            "echo done; exit 4"]


def test_a_container_outlives_its_kubelet_and_is_adopted(runtime: ProcessRuntime,
                                                         tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", ORPHAN, str(tmp_path)], capture_output=True,
                          text=True, timeout=30, cwd=repo)
    assert done.returncode == -signal.SIGKILL, done.stderr
    container_id = done.stdout.strip()
    config = container(pod(tmp_path), "survivor", survivor(tmp_path))

    async def go() -> None:
        fresh = ProcessRuntime(tmp_path / "pods", tmp_path / "run")
        [status] = await fresh.list_containers()
        assert (status.id, status.state, status.name) == (container_id, "running", "survivor")
        (tmp_path / "finish").touch()
        status = await exited(fresh, container_id)
        assert (status.exit_code, status.reason) == (4, "Error")
        assert (await logged(config, b"done")) == b"done\n"

    asyncio.run(go())


def test_a_container_whose_shim_died_is_reported_with_an_unknown_exit(
        runtime: ProcessRuntime, tmp_path: Path) -> None:
    sandbox = pod(tmp_path)

    async def go() -> None:
        status = await runtime.start_container(sandbox,
                                               container(sandbox, "orphan", ["sleep", "30"]))
        folder = sandbox.pod_dir / ".containers" / status.id.split("://")[1]
        state = json.loads((folder / "state.json").read_text())
        os.kill(state["shimPid"], signal.SIGKILL)
        await asyncio.sleep(0.05)
        fresh = ProcessRuntime(tmp_path / "pods", tmp_path / "run")
        assert (await fresh.container_status(status.id)).state == "running"
        os.kill(status.pid, signal.SIGKILL)
        lost = await exited(fresh, status.id)
        assert (lost.exit_code, lost.reason) == (137, "Error")
        assert "unknown" in lost.message
        assert (await runtime.container_status(status.id)).exit_code == 137  # recorded

    asyncio.run(go())


# -- exec, attach, stats -------------------------------------------------------------------

def test_exec_runs_in_the_containers_environment(runtime: ProcessRuntime,
                                                 tmp_path: Path) -> None:
    sandbox = pod(tmp_path)
    volume = sandbox.pod_dir / "volumes" / "data"
    volume.mkdir(parents=True)
    (volume / "key").write_text("secret")
    config = container(sandbox, "app", ["sleep", "30"], env={"COLOR": "blue"},
                       mounts=[Mount(volume, "/data")])

    async def go() -> None:
        status = await runtime.start_container(sandbox, config)
        session = await runtime.exec(status.id, ["sh", "-c", 'echo "$COLOR"; cat /data/key; '
                                                 "echo oops >&2; exit 5"], tty=False, stdin=False)
        assert await collect(session) == {1: b"blue\nsecret", 2: b"oops\n"}
        assert await session.wait() == 5
        session = await runtime.exec(status.id, ["cat"], tty=False, stdin=True)
        await session.write_stdin(b"piped")
        await session.close_stdin()
        assert (await collect(session))[1] == b"piped" and await session.wait() == 0
        with pytest.raises(RuntimeFailure, match='exec: "nope": executable file not found'):
            await runtime.exec(status.id, ["nope"], tty=False, stdin=False)

    asyncio.run(go())


@pytest.mark.skipif(os.geteuid() != 0, reason="binding files in a mount namespace needs root")
def test_as_root_containers_and_exec_see_the_pods_hosts_and_resolv_conf(
        runtime: ProcessRuntime, tmp_path: Path) -> None:
    sandbox = pod(tmp_path)
    host_files = {path: Path(path).read_bytes() for path in ("/etc/hosts", "/etc/resolv.conf")}
    config = container(sandbox, "app", ["sh", "-c", "cat /etc/resolv.conf /etc/hosts; "
                                        "exec sleep 30"])

    async def go() -> None:
        status = await runtime.start_container(sandbox, config)
        assert await logged(config, b"127.0.0.10\tweb") == \
            b"nameserver 127.0.0.1\n127.0.0.1\tlocalhost\n127.0.0.10\tweb\n"
        session = await runtime.exec(status.id, ["sh", "-c", "pwd; cat /etc/resolv.conf"],
                                     tty=False, stdin=False)
        root = str(next((sandbox.pod_dir / ".containers").iterdir()) / "root")
        assert (await collect(session))[1] == f"{root}\nnameserver 127.0.0.1\n".encode()

    asyncio.run(go())
    assert {path: Path(path).read_bytes() for path in host_files} == host_files


def test_exec_with_a_terminal(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sandbox = pod(tmp_path)

    async def go() -> None:
        status = await runtime.start_container(sandbox, container(sandbox, "app",
                                                                  ["sleep", "30"]))
        session = await runtime.exec(status.id, ["sh", "-c", "read x; stty size; echo got $x; "
                                                 "test -t 0 && echo is-a-tty"],
                                     tty=True, stdin=True)
        await session.resize(120, 33)
        await session.write_stdin(b"hello\n")
        out = await collect(session)
        assert out[2] == b""  # a terminal has one stream
        assert b"33 120" in out[1] and b"got hello" in out[1] and b"is-a-tty" in out[1]
        assert await session.wait() == 0
        await session.close()

    asyncio.run(go())


def test_attach_relays_output_and_stdin_once(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sandbox = pod(tmp_path)
    echo = container(sandbox, "echo", ["sh", "-c", 'while read line; do echo "echo:$line"; '
                                       "done; echo bye"], stdin=True, stdin_once=True)
    late = container(sandbox, "late", ["sh", "-c", "sleep 0.3; echo late; exit 2"])

    async def go() -> None:
        first = await runtime.start_container(sandbox, echo)
        session = await runtime.attach(first.id, stdin=True)
        await session.write_stdin(b"a\n")
        output = session.output()
        assert await output.__anext__() == (1, b"echo:a\n")
        await output.aclose()
        await session.close()  # the first client leaves: stdin closes
        status = await exited(runtime, first.id)
        assert status.exit_code == 0
        assert await logged(echo, b"bye") == b"echo:a\nbye\n"

        second = await runtime.start_container(sandbox, late)
        session = await runtime.attach(second.id, stdin=False)
        assert await collect(session) == {1: b"late\n", 2: b""}
        assert await session.wait() == 2
        await session.close()
        with pytest.raises(RuntimeFailure):
            await runtime.attach(second.id, stdin=False)

    asyncio.run(go())


def test_a_tty_container_is_attached_through_its_terminal(runtime: ProcessRuntime,
                                                         tmp_path: Path) -> None:
    sandbox = pod(tmp_path)
    config = container(sandbox, "shell", ["sh", "-c", "read x; stty size; echo got $x; "
                                          'echo "TERM=$TERM"'], tty=True, stdin=True)

    async def go() -> None:
        status = await runtime.start_container(sandbox, config)
        session = await runtime.attach(status.id, stdin=True)
        await session.resize(100, 30)  # frames are handled in order: before the input
        await session.write_stdin(b"hi\n")
        out = await collect(session)
        assert out[2] == b"" and b"30 100" in out[1] and b"got hi" in out[1]
        assert await session.wait() == 0
        logged_lines = config.log_path.read_bytes().splitlines()
        assert all(b" stdout " in line for line in logged_lines)  # one stream under a tty
        assert b"TERM=xterm" in await logged(config, b"TERM")
        await session.close()

    asyncio.run(go())


def test_stats_sum_the_containers_processes(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sandbox = pod(tmp_path)
    config = container(sandbox, "hog", [sys.executable, "-c", "import time\n"
                                        "x = b'x' * (64 << 20)\nsum(range(3_000_000))\n"
                                        "print('ready', flush=True)\ntime.sleep(30)"])

    async def go() -> None:
        status = await runtime.start_container(sandbox, config)
        await logged(config, b"ready")
        stats = await runtime.container_stats(status.id)
        assert stats.memory_working_set_bytes > 64 << 20
        assert stats.cpu_usage_core_nanoseconds > 10_000_000
        await runtime.stop_container(status.id, 0)
        assert await runtime.container_stats(status.id) is None

    asyncio.run(go())
