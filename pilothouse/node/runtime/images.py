"""Images: an image name is a Python virtual environment in the node's data dir.

A pod's image (`python:3.11`, `ghcr.io/org/trainer:v2`) names a virtual environment
`<images root>/<safe name>-<short hash>/`, made on first use as a pull would be (in about
the time Python takes to make a venv without pip). The runtimes put its `bin/` first on
the container's PATH, so `python` in a pod is the venv's.

What a pod sees and may change:

- The packages of the environment Pilothouse runs in are visible (a `.pth` file adds its
  site-packages with `site.addsitedir`, so their own .pth files work too), *after* the
  venv's own site-packages: torch installed beside Pilothouse imports in the pod, and a
  package the pod installs wins over the host's copy.
- `pip install` in a pod installs into the venv only. The venv has no pip of its own (that
  would make each pull seconds long); its `bin/pip` runs the host's pip module with the
  venv's Python, whose prefix is the venv, so nothing is written to the host's
  environment, and pip refuses to uninstall a package outside the venv.

The image id is `sha256:` of the normalized name and the Python version, stable across
pulls, as a digest would be. A pull is safe to run concurrently: in-process callers share
one task per image, other processes wait on a lock file, and the venv is marked complete
(`pilothouse-image.json`) only once it is whole. Names follow the container image
reference grammar; anything else is `InvalidImageName`, as the kubelet reports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import re
import shutil
import site
import sys
import sysconfig
import time
import venv
from dataclasses import dataclass
from pathlib import Path

from pilothouse.node.runtime.base import RuntimeFailure

MARKER = "pilothouse-image.json"
HOST_PTH = "_pilothouse_host.pth"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?"
_REFERENCE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z]"
    r"[A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?$")


def normalize_image(image: str) -> str:
    """The full reference an image name stands for (`python` ->
    `docker.io/library/python:latest`), as a container runtime resolves it; raises
    RuntimeFailure("InvalidImageName") for a name that is not an image reference."""
    m = _REFERENCE.match(image)
    domain, path = (m.group("domain"), m.group("path")) if m else (None, "")
    if domain and not ("." in domain or ":" in domain or domain == "localhost"):
        path = f"{domain}/{path}"  # not a registry: the first component of the path
        domain = None
    if m is None or path != path.lower() or len(path) > 255:
        lowercase = ": repository name must be lowercase" if image != image.lower() else ""
        raise RuntimeFailure("InvalidImageName", f'Failed to apply default image tag "{image}": '
                             f'couldn\'t parse image reference "{image}": invalid reference '
                             f"format{lowercase}")
    domain = domain or "docker.io"
    if domain == "docker.io" and "/" not in path:
        path = f"library/{path}"
    name = f"{domain}/{path}"
    if m.group("tag"):
        name += f":{m.group('tag')}"
    if m.group("digest"):
        name += f"@{m.group('digest')}"
    elif not m.group("tag"):
        name += ":latest"
    return name


@dataclass(frozen=True)
class ImageRef:
    #: The image's virtual environment.
    dir: Path
    #: "sha256:<hex>", as imageID in a container status.
    id: str


def host_site_packages() -> list[str]:
    """The site-packages folders of the environment this process runs in."""
    paths = [*site.getsitepackages(), sysconfig.get_paths()["purelib"],
             sysconfig.get_paths()["platlib"]]
    return [p for p in dict.fromkeys(paths) if Path(p).is_dir()]


class ImageStore:
    """Image name -> virtual environment under `images_root`."""

    def __init__(self, images_root: Path, *, host_site: list[str] | None = None) -> None:
        self.root = Path(images_root)
        self.host_site = host_site if host_site is not None else host_site_packages()
        self.python = f"{sys.version_info.major}.{sys.version_info.minor}"
        self._pulls: dict[str, asyncio.Task[ImageRef]] = {}

    def _locate(self, image: str) -> tuple[str, Path, str]:
        name = normalize_image(image)
        digest = hashlib.sha256(f"{name}\n{sys.version}".encode()).hexdigest()
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name.removeprefix("docker.io/library/"))
        return name, self.root / f"{safe[:60]}-{digest[:12]}", f"sha256:{digest}"

    def present(self, image: str) -> ImageRef | None:
        """The image's environment if it has been pulled (raises InvalidImageName)."""
        _, folder, image_id = self._locate(image)
        return ImageRef(folder, image_id) if (folder / MARKER).exists() else None

    async def pull(self, image: str) -> ImageRef:
        """Make the image's environment unless it is there (one pull per image at a time)."""
        name, _, _ = self._locate(image)
        present = self.present(image)
        if present is not None:
            return present
        task = self._pulls.get(name)
        if task is None:
            task = asyncio.ensure_future(asyncio.to_thread(self._pull, image))
            self._pulls[name] = task
            task.add_done_callback(lambda _: self._pulls.pop(name, None))
        return await asyncio.shield(task)

    def _pull(self, image: str) -> ImageRef:
        name, folder, image_id = self._locate(image)
        with self._lock(folder):
            if not (folder / MARKER).exists():
                started = time.monotonic()
                self._make(folder)
                (folder / MARKER).write_text(json.dumps({
                    "name": name, "id": image_id, "python": sys.version,
                    "created": time.time(),
                    "seconds": round(time.monotonic() - started, 3)}, indent=1))
        return ImageRef(folder, image_id)

    def _make(self, folder: Path) -> None:
        if folder.exists():
            shutil.rmtree(folder)  # a pull that died half way
        try:
            venv.EnvBuilder(symlinks=True, with_pip=False).create(folder)
            packages = folder / "lib" / f"python{self.python}" / "site-packages"
            (packages / HOST_PTH).write_text("".join(
                f"import site; site.addsitedir({path!r})\n" for path in self.host_site))
            for name in ("pip", "pip3", f"pip{self.python}"):
                script = folder / "bin" / name
                script.write_text(f"#!{folder / 'bin' / 'python'}\n"
                                  "import sys\nfrom pip._internal.cli.main import main\n"
                                  "sys.exit(main())\n")
                script.chmod(0o755)
        except OSError as e:
            shutil.rmtree(folder, ignore_errors=True)
            raise RuntimeFailure("ErrImagePull", f"cannot make the environment for the "
                                 f"image in {folder}: {e}") from None

    @contextlib.contextmanager
    def _lock(self, folder: Path):
        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{folder.name}.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def remove(self, image: str) -> bool:
        """Delete the image's environment; False if it was not there."""
        _, folder, _ = self._locate(image)
        with self._lock(folder):
            if not folder.exists():
                return False
            shutil.rmtree(folder)
            return True

    def images(self) -> list[tuple[str, ImageRef]]:
        """(normalized name, ref) of every pulled image."""
        found = []
        for marker in sorted(self.root.glob(f"*/{MARKER}")):
            try:
                doc = json.loads(marker.read_text())
            except (OSError, ValueError):
                continue
            found.append((doc["name"], ImageRef(marker.parent, doc["id"])))
        return found
