"""The built-in kinds' models as shipped data: what the official client's model classes say.

The OpenAPI generator (`apiserver.openapi`) and the patch machinery (`machinery.patch`,
`machinery.apply`) walk the type graph of every built-in kind. The official Python client
(`kubernetes.client.models`) describes that graph, one class per Go struct, and this module
is the one place that knows it. Per model it keeps what those consumers read:

- the attributes in order: JSON name, the client's type string ('List[V1Container]',
  'Dict[str, str]', 'V1PodSpec', 'object', 'datetime', ...), description, whether required,
  and for an 'object' attribute what its annotation admits: an int-or-string union
  (`INT_OR_STRING`), a JSON object only (`OBJECT`) or anything (`ANY`);
- the class description (its docstring up to "Attributes:", whitespace collapsed);
- whether it has `kind` (a top-level kind or list; derived from the attributes).

and the group versions the client has an API for, spelled as its API modules and
kube-apiserver's OpenAPI tags spell them (`core_v1`, `rbac_authorization_v1`).

Why data and not the client: importing the client's ~850 pydantic model classes cost the API
server about 0.8 s of CPU at start and ~50 MiB it kept for its lifetime (bench/cold_start.py:
idle RSS 123 -> 75 MiB with this data), and requiring the client at run time (>=37, the first
release with pydantic models) would stop users from installing Pilothouse beside SDKs that pin
an older client (kubeflow-training pins kubernetes<36). So the package ships
`k8s_models.json.gz`, loaded on first use, written from an installed client (>=37) by

    python -m pilothouse.machinery.k8s_models --generate

which records the client's version in it. A unit test regenerates it from the client the
tests install and compares, so the data cannot silently go stale or the generator drift.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import importlib
import importlib.metadata
import re
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

#: The shipped data file, beside this module (package data).
DATA = Path(__file__).with_name("k8s_models.json.gz")

#: What an 'object' attribute admits.
INT_OR_STRING = "int-or-string"
OBJECT = "object"
ANY = "any"

#: The first client release whose models are pydantic models (annotations, descriptions).
MIN_CLIENT_MAJOR = 37

#: An API module of one group version: core_v1, rbac_authorization_v1, resource_v1beta2.
_VERSIONED_API = re.compile(r"^\w+_v\d+(?:alpha\d+|beta\d+)?$")


@dataclass(frozen=True, slots=True)
class Field:
    """One attribute of a model."""

    name: str  # its JSON name
    type: str  # the client's type string: 'List[V1Container]', 'object', 'V1PodSpec', ...
    description: str | None
    required: bool
    admits: str | None  # for type 'object': INT_OR_STRING, OBJECT or ANY; else None


@dataclass(frozen=True, slots=True)
class Model:
    """One model class of the client."""

    name: str  # the class name: V1Pod, CoreV1Event, V2HorizontalPodAutoscaler, ...
    description: str
    fields: tuple[Field, ...]

    @property
    def has_kind(self) -> bool:
        """Whether it carries `kind`: a kind (or list of one) rather than a part of one."""
        return any(field.name == "kind" for field in self.fields)


@dataclass(frozen=True, slots=True)
class _Catalog:
    client: str
    group_versions: frozenset[str]
    models: dict[str, Model]  # in the client's order (`__all__`)
    digest: bytes


@functools.cache
def _catalog() -> _Catalog:
    raw = DATA.read_bytes()
    data = orjson.loads(gzip.decompress(raw))
    models = {
        name: Model(name, description, tuple(Field(*field) for field in fields))
        for name, (description, fields) in data["models"].items()
    }
    return _Catalog(data["client"], frozenset(data["groupVersions"]), models,
                    hashlib.sha256(raw).digest())


def model(name: str) -> Model | None:
    """The client model class `name` (V1Pod), or None if the client has no such model."""
    return _catalog().models.get(name)


def models() -> tuple[Model, ...]:
    """Every model, in the client's order."""
    return tuple(_catalog().models.values())


def group_versions() -> frozenset[str]:
    """The group versions the client has an API for, as its API modules name them (core_v1,
    apps_v1, rbac_authorization_v1)."""
    return _catalog().group_versions


def client_version() -> str:
    """The version of the `kubernetes` client the data was generated from."""
    return _catalog().client


def digest() -> bytes:
    """SHA-256 of the shipped data: changes whenever the data does (for cache keys)."""
    return _catalog().digest


# --- the generator ------------------------------------------------------------------------


def _leaf_types(annotation: Any) -> set[Any]:
    """The concrete types a pydantic annotation admits (Optional/Union/Annotated unwrapped)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _leaf_types(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_leaf_types(a) for a in typing.get_args(annotation)))
    if annotation is type(None):
        return set()
    return {origin or annotation}


def _admits(annotation: Any) -> str:
    leaves = _leaf_types(annotation)
    if leaves == {int, str}:
        return INT_OR_STRING
    return OBJECT if leaves == {dict} else ANY


def _describe(cls: Any) -> list[Any]:
    """[class description, [[JSON name, type, description, required, admits], ...]]."""
    fields = []
    for attr, spec in cls.openapi_types.items():
        # Attributes that clash with Python or pydantic names are fields `var_<name>`.
        field = cls.model_fields.get(attr) or cls.model_fields["var_" + attr.lstrip("_")]
        admits = _admits(field.annotation) if spec == "object" else None
        fields.append([cls.attribute_map[attr], spec, field.description, field.is_required(),
                       admits])
    description = " ".join((cls.__doc__ or "").split("Attributes:")[0].split())
    return [description, fields]


def generate() -> bytes:
    """The data (uncompressed JSON) from the installed `kubernetes` client."""
    version = importlib.metadata.version("kubernetes")
    if int(version.split(".")[0]) < MIN_CLIENT_MAJOR:
        raise RuntimeError(f"kubernetes {version} is installed; the generator needs "
                           f">={MIN_CLIENT_MAJOR} (pydantic models)")
    models = importlib.import_module("kubernetes.client.models")
    api_dir = Path(models.__file__).parent.parent / "api"
    group_versions = sorted(
        path.name.removesuffix("_api.py") for path in api_dir.glob("*_api.py")
        if _VERSIONED_API.match(path.name.removesuffix("_api.py")))
    return orjson.dumps({
        "client": version,
        "groupVersions": group_versions,
        "models": {name: _describe(getattr(models, name)) for name in models.__all__},
    })


def compress(content: bytes) -> bytes:
    """The data file's bytes for `content`: gzip without a timestamp, so they are reproducible."""
    return gzip.compress(content, compresslevel=9, mtime=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pilothouse.machinery.k8s_models",
        description="Write the built-in models' data file from the installed kubernetes client.")
    parser.add_argument("--generate", action="store_true", required=True,
                        help="regenerate the data file from the installed client")
    parser.add_argument("--output", type=Path, default=DATA,
                        help=f"where to write it (default {DATA})")
    args = parser.parse_args(argv)
    try:
        content = generate()
    except (ImportError, RuntimeError) as exc:
        print(f"cannot generate the models' data: {exc}; install kubernetes>="
              f"{MIN_CLIENT_MAJOR} (pip install 'pilothouse[test]')", file=sys.stderr)
        return 1
    args.output.write_bytes(compress(content))
    print(f"wrote {args.output} from kubernetes {importlib.metadata.version('kubernetes')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
