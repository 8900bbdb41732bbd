"""Images as virtual environments: names, pulls (once, even concurrently), and what a pod sees."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pilothouse.node.runtime.base import RuntimeFailure
from pilothouse.node.runtime.images import ImageStore, normalize_image
from pilothouse.node.runtime.process import ProcessRuntime
from tests.unit.test_runtime_process import container, exited, logged, pod


def test_names_normalize_as_a_container_runtime_resolves_them() -> None:
    assert normalize_image("python") == "docker.io/library/python:latest"
    assert normalize_image("python:3.11") == "docker.io/library/python:3.11"
    assert normalize_image("kubeflow/notebook") == "docker.io/kubeflow/notebook:latest"
    assert normalize_image("ghcr.io/org/trainer:v2") == "ghcr.io/org/trainer:v2"
    digest = "sha256:" + "ab" * 32
    assert normalize_image(f"localhost:5000/x@{digest}") == f"localhost:5000/x@{digest}"


@pytest.mark.parametrize("name", ["", "Python:3.11", "Org/app", "a b", "app:", ":tag",
                                  "app@sha256:short", "-app"])
def test_an_invalid_name_is_invalid_image_name(name: str, tmp_path: Path) -> None:
    with pytest.raises(RuntimeFailure) as failure:
        ImageStore(tmp_path).present(name)
    assert failure.value.reason == "InvalidImageName"
    assert f'couldn\'t parse image reference "{name}"' in failure.value.message


def test_pulling_twice_makes_one_environment(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")

    async def go() -> None:
        assert store.present("python:3.11") is None
        first, second = await asyncio.gather(store.pull("python:3.11"),
                                             store.pull("docker.io/library/python:3.11"))
        assert first == second == store.present("python:3.11")
        again = await store.pull("python:3.11")
        assert again == first and first.id.startswith("sha256:") and len(first.id) == 71
        other = await store.pull("python:3.12")
        assert other.dir != first.dir and other.id != first.id

    asyncio.run(go())
    assert sorted(p.name for p in (tmp_path / "images").iterdir() if p.name != ".locks") == \
        sorted([store.present("python:3.11").dir.name, store.present("python:3.12").dir.name])
    assert [name for name, _ in store.images()] == ["docker.io/library/python:3.11",
                                                    "docker.io/library/python:3.12"]
    assert store.remove("python:3.12") and not store.remove("python:3.12")
    assert store.present("python:3.12") is None


PULL = """
import asyncio, sys
from pathlib import Path
from pilothouse.node.runtime.images import ImageStore
ref = asyncio.run(ImageStore(Path(sys.argv[1])).pull("shared:v1"))
print(ref.dir, ref.id)
"""


def test_processes_pulling_the_same_image_make_one_environment(tmp_path: Path) -> None:
    pullers = [subprocess.Popen([sys.executable, "-c", PULL, str(tmp_path)],
                                stdout=subprocess.PIPE, text=True) for _ in range(3)]
    answers = {p.communicate(timeout=60)[0] for p in pullers}
    assert len(answers) == 1
    folder = Path(answers.pop().split()[0])
    marker = json.loads((folder / "pilothouse-image.json").read_text())
    assert marker["name"] == "docker.io/library/shared:v1"
    assert [p.name for p in tmp_path.iterdir() if p.name != ".locks"] == [folder.name]


def test_a_pod_sees_the_hosts_packages_after_its_own(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    ref = asyncio.run(store.pull("trainer:v1"))
    python = ref.dir / "bin" / "python"
    probe = ("import json, sys, yaml; print(json.dumps({'prefix': sys.prefix, "
             "'base': sys.base_prefix, 'yaml': yaml.__file__, 'path': sys.path}))")
    seen = json.loads(subprocess.run([str(python), "-c", probe], capture_output=True,
                                     text=True, check=True).stdout)
    assert Path(seen["prefix"]) == ref.dir and seen["prefix"] != sys.prefix
    own = str(ref.dir / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
              / "site-packages")
    host = str(Path(seen["yaml"]).parent.parent)
    assert seen["path"].index(own) < seen["path"].index(host)  # the pod's packages win
    pip = (ref.dir / "bin" / "pip").read_text().splitlines()[0]
    assert pip == f"#!{python}"  # `pip install` in a pod runs with the pod's prefix


def test_a_pods_python_is_its_images(tmp_path: Path) -> None:
    ref = asyncio.run(ImageStore(tmp_path / "images").pull("trainer:v1"))
    runtime = ProcessRuntime(tmp_path / "pods", tmp_path / "run")
    sandbox = pod(tmp_path)
    config = container(sandbox, "py", ["python", "-c", "import sys; print(sys.prefix)"],
                       image_dir=ref.dir)

    async def go() -> None:
        await runtime.run_pod_sandbox(sandbox)
        status = await exited(runtime, (await runtime.start_container(sandbox, config)).id)
        assert (status.exit_code, status.image_id) == (0, ref.id)
        assert await logged(config, b"\n") == f"{ref.dir}\n".encode()

    asyncio.run(go())
