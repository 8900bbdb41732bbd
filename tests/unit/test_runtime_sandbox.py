"""The sandbox runtime (bubblewrap namespaces, cgroups), the runtime choice, and the engine
runtime's command lines (no engine runs here)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilothouse.node.podnet import unavailable as pod_network_unavailable
from pilothouse.node.runtime import RUNTIMES, default_runtime
from pilothouse.node.runtime.base import Mount, RuntimeFailure, RuntimeUnavailable
from pilothouse.node.runtime.cgroups import Cgroups, parse_hierarchies
from pilothouse.node.runtime.engine import (
    DockerRuntime,
    PodmanRuntime,
    attach_command,
    exec_command,
    run_command,
    status_from_inspect,
    stop_command,
)
from pilothouse.node.runtime.images import ImageStore
from pilothouse.node.runtime.sandbox import HIDDEN_PYTHON_DIRS, SandboxRuntime, bwrap_command
from tests.unit.test_runtime_process import (
    HOST_PATH,
    collect,
    container,
    exited,
    leftovers,
    logged,
    pod,
    stop_everything,
    until,
)


def sandbox_unavailable() -> str:
    try:
        SandboxRuntime.check()
    except RuntimeUnavailable as e:
        return str(e)
    return ""


needs_sandbox = pytest.mark.skipif(bool(sandbox_unavailable()), reason=sandbox_unavailable())


@pytest.fixture
def cgroups() -> Iterator[Cgroups]:
    cgroups = Cgroups.detect(parent=f"pilothouse-test-{uuid.uuid4().hex[:8]}")
    yield cgroups
    bases = [base for base in cgroups._bases.values() if base]
    cgroups.remove_parent()
    assert not any(base.exists() for base in bases)


@pytest.fixture
def runtime(tmp_path: Path, cgroups: Cgroups) -> Iterator[SandboxRuntime]:
    runtime = SandboxRuntime(tmp_path / "pods", tmp_path / "run", host_path=HOST_PATH,
                             cgroups=cgroups)
    sandbox = pod(tmp_path)
    asyncio.run(runtime.run_pod_sandbox(sandbox))
    yield runtime

    async def clean() -> None:
        await stop_everything(runtime)
        for status in await runtime.list_containers():
            await runtime.remove_container(status.id)
        await runtime.remove_pod_sandbox(sandbox)

    asyncio.run(clean())
    assert asyncio.run(until(lambda: asyncio.sleep(0, not leftovers(tmp_path)), 5))


# -- isolation -----------------------------------------------------------------------------

@needs_sandbox
def test_a_sandboxed_container_has_its_own_host_name_pids_tmp_and_a_read_only_root(
        runtime: SandboxRuntime, tmp_path: Path) -> None:
    sandbox = pod(tmp_path)
    script = ("hostname; echo pid=$$; cat /etc/hosts; ls /proc | grep -c '^[0-9]'; "
              "touch /tmp/mine && ls /tmp; "
              "touch /usr/intruder 2>/dev/null || echo usr-read-only; "
              "touch /new 2>/dev/null || echo root-read-only; "
              "echo bye > /dev/termination-log")
    config = container(sandbox, "iso", ["sh", "-c", script])

    async def go() -> None:
        status = await exited(runtime, (await runtime.start_container(sandbox, config)).id)
        assert (status.exit_code, status.reason, status.message) == (0, "Completed", "bye\n")
        lines = (await logged(config, b"root-read-only")).decode().splitlines()
        assert lines[0] == "web"
        assert lines[1] == "pid=2"  # bubblewrap's init is pid 1
        assert lines[2:4] == ["127.0.0.1\tlocalhost", "127.0.0.10\tweb"]
        assert int(lines[4]) <= 5  # only the namespace's processes
        # /tmp is private: only the file made there, and the Python environment Pilothouse
        # runs in when that lives under /tmp (a CI virtualenv), shown read-only.
        private = sorted({"mine", *(d.split("/")[2] for d in HIDDEN_PYTHON_DIRS)})
        assert lines[5:] == [*private, "usr-read-only", "root-read-only"]
        assert not Path("/usr/intruder").exists() and not Path("/new").exists()

    asyncio.run(go())


@needs_sandbox
def test_volumes_are_bound_at_their_paths(runtime: SandboxRuntime, tmp_path: Path) -> None:
    sandbox = pod(tmp_path)
    volumes = sandbox.pod_dir / "volumes"
    (volumes / "config").mkdir(parents=True)
    (volumes / "config" / "key").write_text("value\n")
    (volumes / "data").mkdir()
    (volumes / "files").mkdir()
    (volumes / "files" / "app.yaml").write_text("port: 80\n")
    mounts = [Mount(volumes / "config", "/etc/config", read_only=True),
              Mount(volumes / "data", "/data"),
              Mount(volumes / "files" / "app.yaml", "/opt/app/app.yaml", read_only=True)]
    script = ("cat /etc/config/key /opt/app/app.yaml; echo written > /data/out; "
              "touch /etc/config/x 2>/dev/null || echo config-read-only; "
              "test -f /etc/passwd && echo etc-still-there; pwd")
    config = container(sandbox, "vol", ["sh", "-c", script], mounts=mounts,
                       working_dir="/data")

    async def go() -> None:
        status = await exited(runtime, (await runtime.start_container(sandbox, config)).id)
        assert status.exit_code == 0
        out = await logged(config, b"/data")
        assert out == b"value\nport: 80\nconfig-read-only\netc-still-there\n/data\n"
        assert (volumes / "data" / "out").read_text() == "written\n"

    asyncio.run(go())


@needs_sandbox
def test_a_missing_program_in_the_sandbox_is_a_run_container_error(
        runtime: SandboxRuntime, tmp_path: Path) -> None:
    sandbox = pod(tmp_path)

    async def go() -> None:
        with pytest.raises(RuntimeFailure) as failure:
            await runtime.start_container(sandbox, container(sandbox, "x", ["nosuchcmd"]))
        assert failure.value.reason == "RunContainerError"
        assert failure.value.message.endswith(
            'exec: "nosuchcmd": executable file not found in $PATH')
        with pytest.raises(RuntimeFailure, match="chdir to cwd"):
            await runtime.start_container(sandbox, container(sandbox, "y", ["true"],
                                                             working_dir="/tmp/nothing"))

    asyncio.run(go())


@needs_sandbox
def test_stop_signals_the_namespace_and_exec_enters_it(runtime: SandboxRuntime,
                                                       tmp_path: Path) -> None:
    sandbox = pod(tmp_path)
    volume = sandbox.pod_dir / "volumes" / "config"
    volume.mkdir(parents=True)
    (volume / "key").write_text("value")
    config = container(sandbox, "app", ["sh", "-c", 'trap "exit 7" TERM; echo ready; '
                                        "while :; do sleep 0.05; done"],
                       env={"COLOR": "blue"}, mounts=[Mount(volume, "/etc/config")])

    async def go() -> None:
        status = await runtime.start_container(sandbox, config)
        await logged(config, b"ready")
        session = await runtime.exec(status.id, ["sh", "-c", "hostname; echo $COLOR; "
                                                 "cat /etc/config/key; echo; ls /proc | "
                                                 "grep -c '^[0-9]'"], tty=False, stdin=False)
        out = (await collect(session))[1].decode().splitlines()
        assert out[:3] == ["web", "blue", "value"] and int(out[3]) <= 6
        assert await session.wait() == 0
        with pytest.raises(RuntimeFailure, match="executable file not found"):
            await runtime.exec(status.id, ["nope"], tty=False, stdin=False)
        stats = await runtime.container_stats(status.id)
        assert stats.cpu_usage_core_nanoseconds > 0 and stats.memory_working_set_bytes > 0
        await runtime.stop_container(status.id, 10)
        stopped = await runtime.container_status(status.id)
        assert (stopped.state, stopped.exit_code, stopped.reason) == ("exited", 7, "Error")

    asyncio.run(go())


@needs_sandbox
def test_the_image_environment_is_the_sandboxed_python(runtime: SandboxRuntime,
                                                       tmp_path: Path) -> None:
    sandbox = pod(tmp_path)
    image = asyncio.run(ImageStore(tmp_path / "images").pull("trainer:v1"))
    config = container(sandbox, "py", ["python", "-c", "import sys, yaml; print(sys.prefix)"],
                       image_dir=image.dir)

    async def go() -> None:
        status = await exited(runtime, (await runtime.start_container(sandbox, config)).id)
        assert status.exit_code == 0 and status.image_id == image.id
        assert await logged(config, b"\n") == f"{image.dir}\n".encode()

    asyncio.run(go())


# -- limits --------------------------------------------------------------------------------

@needs_sandbox
def test_memory_limit_ends_in_oom_killed(runtime: SandboxRuntime, tmp_path: Path) -> None:
    if "memory" not in runtime.cgroups.enforced:
        pytest.skip("no writable memory cgroup here")
    sandbox = pod(tmp_path)
    config = container(sandbox, "hog", ["python3", "-c", "x = b'x' * (200 << 20); print('no')"],
                       memory_limit_bytes=50 << 20)

    async def go() -> None:
        status = await exited(runtime, (await runtime.start_container(sandbox, config)).id)
        assert (status.exit_code, status.reason) == (137, "OOMKilled")

    asyncio.run(go())


@needs_sandbox
def test_cpu_and_memory_limits_are_written_to_the_cgroups(runtime: SandboxRuntime,
                                                          tmp_path: Path) -> None:
    if not {"cpu", "memory"} <= runtime.cgroups.enforced:
        pytest.skip("no writable cpu and memory cgroups here")
    sandbox = pod(tmp_path)
    config = container(sandbox, "limited", ["sleep", "30"], cpu_limit_millicores=250,
                       memory_limit_bytes=64 << 20)

    async def go() -> None:
        status = await runtime.start_container(sandbox, config)
        cgroups = runtime.cgroups.container(sandbox.uid, status.id.split("://")[1])
        version, cpu = cgroups.dirs["cpu"]
        if version == 1:
            assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "25000"
            assert (cpu / "cpu.cfs_period_us").read_text().strip() == "100000"
        else:
            assert (cpu / "cpu.max").read_text().split() == ["25000", "100000"]
        version, memory = cgroups.dirs["memory"]
        limit = "memory.limit_in_bytes" if version == 1 else "memory.max"
        assert int((memory / limit).read_text()) == 64 << 20
        assert status.pid in cgroups.pids()
        await runtime.stop_container(status.id, 5)
        await until(lambda: asyncio.sleep(0, not any(f.exists() for f in cgroups.folders)))

    asyncio.run(go())


def test_cgroup_v2_limits_go_to_the_unified_files(tmp_path: Path) -> None:
    mount = tmp_path / "unified"
    (mount / "kubelet.slice").mkdir(parents=True)
    (mount / "kubelet.slice" / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    [h] = parse_hierarchies(f"cgroup2 {mount} cgroup2 rw,nosuid 0 0\n",
                            "0::/kubelet.slice\n")
    assert (h.version, h.own, h.controllers) == (2, "/kubelet.slice",
                                                 {"cpu", "cpuacct", "memory", "pids"})
    cgroups = Cgroups([h], parent="pilothouse")
    made = cgroups.create("pod-uid", "abc", cpu_millicores=1500, memory_bytes=1 << 30)
    folder = mount / "kubelet.slice" / "pilothouse" / "pod-uid" / "abc"
    assert made.folders == [folder]
    assert (folder / "cpu.max").read_text() == "150000 100000"
    assert (folder / "memory.max").read_text() == str(1 << 30)
    assert (folder.parent / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert made.oom_files == [folder / "memory.events"]
    (folder / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (folder / "cpu.stat").write_text("usage_usec 2500\nuser_usec 2000\n")
    (folder / "memory.current").write_text("1000000\n")
    (folder / "memory.stat").write_text("anon 600000\ninactive_file 300000\n")
    assert made.oom_kills() == 1
    assert (made.cpu_usage_ns(), made.memory_working_set()) == (2_500_000, 700_000)


def test_cgroup_v1_hierarchies_are_found_per_controller() -> None:
    mounts = ("cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,relatime,cpu,cpuacct 0 0\n"
              "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n"
              "cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0\n"
              "proc /proc proc rw 0 0\n")
    own = "5:cpu,cpuacct:/user.slice\n4:memory:/user.slice/session-1.scope\n1:name=systemd:/\n"
    found = {h.mount.name: (h.version, h.own, h.controllers)
             for h in parse_hierarchies(mounts, own)}
    assert found == {"cpu,cpuacct": (1, "/user.slice", {"cpu", "cpuacct"}),
                     "memory": (1, "/user.slice/session-1.scope", {"memory"})}


def test_the_bwrap_command_shadows_read_only_folders_for_new_mount_points(
        tmp_path: Path) -> None:
    host = tmp_path / "host"
    for folder in ("etc/ssl", "usr/bin", "tmp"):
        (host / folder).mkdir(parents=True)
    (host / "etc" / "passwd").write_text("root:x:0:0\n")
    (host / "bin").symlink_to("usr/bin")
    command = bwrap_command(bwrap="bwrap", hostname="web", argv=["sh"], cwd="/data",
                            mounts=[Mount(Path("/v/config"), "/etc/config", read_only=True),
                                    Mount(Path("/v/data"), "/data")],
                            files=[("/p/hosts", "/etc/hosts", False)], host_root=str(host))
    pairs = list(zip(command, command[1:], command[2:], strict=False))
    assert ("--symlink", "usr/bin", "/bin") in pairs
    assert ("--ro-bind", f"{host}/usr", "/usr") in pairs
    assert f"{host}/tmp" not in command  # /tmp is private
    assert ("--ro-bind", f"{host}/etc/passwd", "/etc/passwd") in pairs
    assert ("--ro-bind", "/v/config", "/etc/config") in pairs
    assert ("--bind", "/v/data", "/data") in pairs
    assert command.index("--remount-ro") > command.index("/v/data")
    tmpfs = [command[i + 1] for i, c in enumerate(command) if c == "--tmpfs"]
    assert tmpfs == ["/tmp", "/etc"]  # /data is made in the root: no shadow needed
    assert command[-8:] == ["--remount-ro", "/etc", "--remount-ro", "/", "--chdir", "/data",
                            "--", "sh"]


# -- the choice of runtime, the engines ----------------------------------------------------

def test_the_default_runtime_is_the_sandbox_where_bubblewrap_works() -> None:
    assert set(RUNTIMES) == {"process", "sandbox", "docker", "podman"}
    name, reason = default_runtime()
    if sandbox_unavailable():
        assert name == "process" and reason.startswith("process: ")
    else:
        assert name == "sandbox" and reason.startswith("sandbox: bubblewrap namespaces work here")
        network = pod_network_unavailable()
        assert (network in reason) if network else \
            reason.endswith("each pod gets its own network namespace on the node's bridge")


def test_an_engine_without_a_daemon_is_unavailable_with_the_reason() -> None:
    import shutil

    for runtime in (DockerRuntime, PodmanRuntime):
        if shutil.which(runtime.cli) is None:
            with pytest.raises(RuntimeUnavailable, match="not installed"):
                runtime.check()
            continue
        try:
            runtime.check()
        except RuntimeUnavailable as e:
            assert str(e).startswith(f"{runtime.cli}: the client is installed but no engine "
                                     "answers: ")


def test_engine_command_lines(tmp_path: Path) -> None:
    sandbox = pod(tmp_path)
    config = container(sandbox, "web", ["python", "-m", "http.server"], env={"A": "1"},
                       working_dir="/srv", mounts=[Mount(Path("/v/data"), "/data", True)],
                       cpu_limit_millicores=500, memory_limit_bytes=1 << 28, tty=True,
                       stdin=True, labels={"io.kubernetes.pod.uid": "u"})
    command = run_command("docker", runtime="docker", sandbox=sandbox, config=config,
                          termination_file=Path("/s/termination-log"))
    assert command[:4] == ["docker", "run", "-d", "--name"]
    assert command[4] == "ph_web_web_default_0b6f7e2c-uid_0"
    text = " ".join(command)
    for part in ("--network host", "--hostname web", "--label io.pilothouse.runtime=docker",
                 "--label io.kubernetes.pod.uid=u", "--env A=1", "--workdir /srv",
                 "--mount type=bind,source=/v/data,target=/data,readonly",
                 "--mount type=bind,source=/s/termination-log,target=/dev/termination-log",
                 f"--mount type=bind,source={sandbox.pod_dir}/.sandbox/hosts,target=/etc/hosts",
                 "--memory 268435456", "--cpus 0.5", "--interactive", "--tty"):
        assert part in text
    assert command[-5:] == ["--entrypoint", "python", "busybox", "-m", "http.server"]
    assert stop_command("podman", "abc", 2.5) == ["podman", "stop", "--time", "3", "abc"]
    assert exec_command("docker", "abc", ["ls", "/"], tty=True, stdin=True) == \
        ["docker", "exec", "--interactive", "--tty", "abc", "ls", "/"]
    assert attach_command("docker", "abc", stdin=False) == \
        ["docker", "attach", "--sig-proxy=false", "--no-stdin", "abc"]


def test_engine_inspect_becomes_a_container_status() -> None:
    doc = {"Id": "f" * 64, "Image": "sha256:" + "1" * 64,
           "Config": {"Image": "nginx", "Labels": {
               "io.pilothouse.runtime": "docker", "io.pilothouse.container.name": "web",
               "io.pilothouse.container.attempt": "2",
               "io.pilothouse.container.image": "nginx:1.27", "pod": "p"}},
           "State": {"Status": "exited", "ExitCode": 137, "OOMKilled": True, "Pid": 0,
                     "StartedAt": "2025-01-01T12:00:00.5Z",
                     "FinishedAt": "2025-01-01T12:00:10.000000001Z", "Error": ""}}
    status = status_from_inspect("docker", doc)
    assert (status.id, status.name, status.attempt, status.state) == \
        ("docker://" + "f" * 64, "web", 2, "exited")
    assert (status.exit_code, status.reason, status.labels) == (137, "OOMKilled", {"pod": "p"})
    assert (status.started_at, status.image, status.image_id) == \
        (1735732800.5, "nginx:1.27", "sha256:" + "1" * 64)
    running = status_from_inspect("docker", {**doc, "State": {
        "Status": "running", "Pid": 42, "StartedAt": "2025-01-01T12:00:00Z",
        "FinishedAt": "0001-01-01T00:00:00Z"}})
    assert (running.state, running.pid, running.exit_code, running.finished_at) == \
        ("running", 42, None, None)
