"""A container's environment and command line, built as the kubelet builds them.

This module owns the kubelet's `makeEnvironmentVariables` and its helpers, and nothing
else: it reads the pod, the container, the Services it is told about and, through
`lookup`, the ConfigMaps and Secrets the container names. The pod worker calls it just
before each container start (so a changed ConfigMap shows in the next restart, not in a
running container, as on a real node); the downward API volume shares the field and
resource helpers.

The rules, in the kubelet's order:

1. Service links: for every Service with a cluster IP in the pod's namespace (unless
   `enableServiceLinks: false`), and always the `kubernetes` Service of `default`,
   `<SVC>_SERVICE_HOST`, `<SVC>_SERVICE_PORT[_<PORT NAME>]` and the Docker link
   variables `<SVC>_PORT`, `<SVC>_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR]`.
2. `envFrom` in order (ConfigMap `data`, Secret `data` decoded), each key with the
   source's prefix; keys that are not valid variable names are skipped and reported as
   the kubelet's InvalidEnvironmentVariableNames warning.
3. `env` in order: a `value` has `$(VAR)` expanded against what came before (envFrom,
   earlier `env`, service links); `valueFrom` reads a pod field, a container resource
   (a missing limit is the node's allocatable), or a ConfigMap or Secret key.

Service variables come first in the result, unless `envFrom` or `env` set the same name.
A reference that cannot be resolved raises ConfigError with the kubelet's message; the
pod worker shows it as the container's CreateContainerConfigError.
"""

from __future__ import annotations

import base64
import math
from collections import ChainMap
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import aiohttp

from ..client import ApiError
from ..machinery.names import is_env_var_name
from ..machinery.quantity import milli, parse_quantity, to_int

#: (kind "ConfigMap" or "Secret", namespace, name) -> the object, or None if it does not exist.
Lookup = Callable[[str, str, str], Awaitable[Mapping[str, Any] | None]]
#: (reason, message) of a Warning event about the pod.
Warn = Callable[[str, str], Awaitable[None]]

#: Services whose variables every pod gets, from the `default` namespace.
MASTER_SERVICES = frozenset({"kubernetes"})
_DEFAULTED_LIMITS = ("cpu", "memory", "ephemeral-storage")


class ConfigError(Exception):
    """The container's configuration names something that is not there (or not allowed).

    The kubelet shows it as the waiting reason CreateContainerConfigError with this message.
    """


# -- $(VAR) expansion ---------------------------------------------------------------------


def expand(value: str, env: Mapping[str, str]) -> str:
    """Expand `$(VAR)` from `env`, as Kubernetes does in env values, command and args.

    `$$` is a literal `$`; a reference to a variable `env` lacks stays as written, as does
    an unterminated `$(`; a `$` before any other character is kept with it.
    """
    out: list[str] = []
    start = 0
    cursor = 0
    end = len(value)
    while cursor < end:
        if value[cursor] != "$" or cursor + 1 >= end:
            cursor += 1
            continue
        out.append(value[start:cursor])
        following = value[cursor + 1]
        if following == "(":
            close = value.find(")", cursor + 2)
            if close == -1:
                out.append("$(")
                cursor += 2
            else:
                name = value[cursor + 2:close]
                out.append(env[name] if name in env else f"$({name})")
                cursor = close + 1
        else:  # `$$` is an escaped `$`; any other `$x` stays as written
            out.append("$" if following == "$" else "$" + following)
            cursor += 2
        start = cursor
    out.append(value[start:])
    return "".join(out)


def container_argv(container: Mapping[str, Any], env: Mapping[str, str],
                   image_default: Sequence[str] = ()) -> list[str]:
    """The command line: `command` + `args` with `$(VAR)` expanded from `env`.

    Without `command`, the image's entrypoint (`image_default`) runs with `args`.
    """
    command = [expand(str(part), env) for part in container.get("command") or ()]
    args = [expand(str(part), env) for part in container.get("args") or ()]
    return (command or list(image_default)) + args


# -- service links ------------------------------------------------------------------------


def _variable_name(name: str) -> str:
    return name.replace("-", "_").upper()


def _service_ip_set(service: Mapping[str, Any]) -> bool:
    return ((service.get("spec") or {}).get("clusterIP") or "") not in ("", "None")


def _host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _service_variables(service: Mapping[str, Any]) -> dict[str, str]:
    spec = service.get("spec") or {}
    ports = spec.get("ports") or []
    ip = spec["clusterIP"]
    prefix = _variable_name((service.get("metadata") or {}).get("name", ""))
    out = {f"{prefix}_SERVICE_HOST": ip}
    if ports:
        out[f"{prefix}_SERVICE_PORT"] = str(ports[0].get("port"))
    for port in ports:
        if port.get("name"):
            out[f"{prefix}_SERVICE_PORT_{_variable_name(port['name'])}"] = str(port.get("port"))
    for index, port in enumerate(ports):
        protocol = port.get("protocol") or "TCP"
        url = f"{protocol.lower()}://{_host_port(ip, port.get('port'))}"
        if index == 0:
            out[f"{prefix}_PORT"] = url
        head = f"{prefix}_PORT_{port.get('port')}_{protocol.upper()}"
        out[head] = url
        out[f"{head}_PROTO"] = protocol.lower()
        out[f"{head}_PORT"] = str(port.get("port"))
        out[f"{head}_ADDR"] = ip
    return out


def service_env(services: Iterable[Mapping[str, Any]], namespace: str, *,
                enable_service_links: bool) -> dict[str, str]:
    """The service-link variables of a pod in `namespace` (getServiceEnvVarMap)."""
    chosen: dict[str, Mapping[str, Any]] = {}
    for service in services:
        if not _service_ip_set(service):
            continue
        meta = service.get("metadata") or {}
        name = meta.get("name", "")
        if meta.get("namespace") == "default" and name in MASTER_SERVICES:
            chosen.setdefault(name, service)
        elif meta.get("namespace") == namespace and enable_service_links:
            chosen[name] = service
    out: dict[str, str] = {}
    for name in sorted(chosen):
        out.update(_service_variables(chosen[name]))
    return out


# -- the downward API ---------------------------------------------------------------------


def _go_quote(text: str) -> str:
    """Go's %q of a string (strconv.Quote), as FormatMap writes label and annotation values."""
    escapes = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f",
               "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
    out = []
    for char in text:
        code = ord(char)
        if char in escapes:
            out.append(escapes[char])
        elif char.isprintable():
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def format_map(values: Mapping[str, str]) -> str:
    """Labels or annotations as the downward API shows them: `key="value"` lines, sorted."""
    return "\n".join(f"{key}={_go_quote(values[key])}" for key in sorted(values))


def _subscript(path: str) -> tuple[str, str] | None:
    """`metadata.labels['k']` -> ("metadata.labels", "k")."""
    if not path.endswith("']"):
        return None
    head, sep, key = path[:-2].partition("['")
    return (head, key) if sep and head else None


def object_field_value(pod: Mapping[str, Any], path: str) -> str:
    """A metadata field of the pod (fieldpath.ExtractFieldPathAsString).

    Raises ValueError with the kubelet's message for a path it does not support.
    """
    meta = pod.get("metadata") or {}
    subscripted = _subscript(path)
    if subscripted is not None:
        head, key = subscripted
        if head in ("metadata.labels", "metadata.annotations"):
            return (meta.get(head.split(".")[1]) or {}).get(key, "")
        raise ValueError(f'fieldPath "{path}" does not support subscript')
    if path in ("metadata.labels", "metadata.annotations"):
        return format_map(meta.get(path.split(".")[1]) or {})
    if path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return str(meta.get(path.split(".")[1]) or "")
    raise ValueError(f"unsupported fieldPath: {path}")


def _ceil_div(amount: int, divisor: int) -> int:
    return math.ceil(amount / divisor) if divisor else 0


def container_resource_value(selector: Mapping[str, Any], container: Mapping[str, Any],
                             node_allocatable: Mapping[str, str]) -> str:
    """A resourceFieldRef's value for `container`: rounded up in units of the divisor.

    A CPU, memory or ephemeral-storage limit the container does not set (or sets to zero)
    is the node's allocatable amount, as the kubelet defaults it for the downward API.
    Raises ValueError for a resource the downward API does not expose.
    """
    resource = selector.get("resource") or ""
    divisor_text = selector.get("divisor")
    divisor = parse_quantity(divisor_text) if divisor_text not in (None, "") else None
    if not divisor:
        divisor = parse_quantity("1")
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    if kind not in ("limits", "requests") or not (
            name in _DEFAULTED_LIMITS or name.startswith("hugepages-")):
        raise ValueError(f"unsupported container resource : {resource}")
    amounts = dict(resources.get(kind) or {})
    if kind == "limits":
        for default in _DEFAULTED_LIMITS:
            if not parse_quantity(amounts.get(default) or "0") and default in node_allocatable:
                amounts[default] = node_allocatable[default]
    amount = parse_quantity(amounts.get(name) or "0")
    if name == "cpu":
        return str(_ceil_div(milli(amount), milli(divisor)))
    return str(_ceil_div(to_int(amount), to_int(divisor)))


# -- the environment ----------------------------------------------------------------------


def _lookup_message(err: Exception) -> str:
    if isinstance(err, ApiError):
        return str(err.body.get("message") or err)
    return str(err)


class _Sources:
    """ConfigMaps and Secrets of the pod's namespace, each read once per container start."""

    def __init__(self, lookup: Lookup, namespace: str) -> None:
        self.lookup = lookup
        self.namespace = namespace
        self._seen: dict[tuple[str, str], Mapping[str, Any] | None] = {}

    async def get(self, kind: str, name: str) -> Mapping[str, Any] | None:
        if (kind, name) not in self._seen:
            try:
                self._seen[(kind, name)] = await self.lookup(kind, self.namespace, name)
            except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as err:
                raise ConfigError(_lookup_message(err)) from None
        return self._seen[(kind, name)]

    async def values(self, kind: str, name: str, *, optional: bool) -> dict[str, str] | None:
        """The object's string data (a Secret's decoded); None if it is absent and optional."""
        obj = await self.get(kind, name)
        if obj is None:
            if optional:
                return None
            raise ConfigError(f'{kind.lower()} "{name}" not found')
        return decoded_data(kind, obj)


def decoded_data(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """A ConfigMap's `data`, or a Secret's `data` base64-decoded (bytes kept, not checked)."""
    data = obj.get("data") or {}
    if kind == "Secret":
        return {k: base64.b64decode(v or "").decode("utf-8", "surrogateescape")
                for k, v in data.items()}
    return {k: str(v) for k, v in data.items()}


def _pod_ips(pod_ip: str, pod_ips: Sequence[str]) -> list[str]:
    return list(pod_ips) or ([pod_ip] if pod_ip else [])


async def container_env(pod: Mapping[str, Any], container: Mapping[str, Any], *,
                        lookup: Lookup, services: Iterable[Mapping[str, Any]], pod_ip: str,
                        host_ip: str, node_name: str,
                        node_allocatable: Mapping[str, str] | None = None,
                        pod_ips: Sequence[str] = (), host_ips: Sequence[str] = (),
                        warn: Warn | None = None) -> dict[str, str]:
    """The container's environment (HOSTNAME excepted: the runtime sets it).

    `pod_ips` and `host_ips` default to the single `pod_ip` and `host_ip`. `warn`
    receives the InvalidEnvironmentVariableNames warning when envFrom keys are skipped.
    Raises ConfigError when a reference cannot be resolved.
    """
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    namespace = meta.get("namespace") or "default"
    services_vars = service_env(services, namespace,
                                enable_service_links=spec.get("enableServiceLinks") is not False)
    sources = _Sources(lookup, namespace)
    own: dict[str, str] = {}

    for source in container.get("envFrom") or ():
        kind, ref = (("ConfigMap", source["configMapRef"]) if source.get("configMapRef")
                     else ("Secret", source.get("secretRef") or {}))
        values = await sources.values(kind, ref.get("name", ""),
                                      optional=ref.get("optional") is True)
        if values is None:
            continue
        prefix = source.get("prefix") or ""
        invalid = []
        for key, value in values.items():
            if is_env_var_name(prefix + key):
                invalid.append(prefix + key)
                continue
            own[prefix + key] = value
        if invalid and warn is not None:
            await warn("InvalidEnvironmentVariableNames",
                       f"Keys [{', '.join(sorted(invalid))}] from the EnvFrom "
                       f"{'configMap' if kind == 'ConfigMap' else 'secret'} "
                       f"{namespace}/{ref.get('name', '')} were skipped since they are "
                       "considered invalid environment variable names.")

    known = ChainMap(own, services_vars)
    for var in container.get("env") or ():
        name = var.get("name", "")
        value = var.get("value") or ""
        source = var.get("valueFrom")
        if value:
            value = expand(value, known)
        elif source:
            resolved = await _value_from(
                source, pod, container, sources, pod_ips=_pod_ips(pod_ip, pod_ips),
                host_ips=list(host_ips) or [host_ip], node_name=node_name,
                node_allocatable=node_allocatable or {})
            if resolved is None:
                continue
            value = resolved
        own[name] = value

    env = {k: v for k, v in services_vars.items() if k not in own}
    env.update(own)
    return env


async def _value_from(source: Mapping[str, Any], pod: Mapping[str, Any],
                      container: Mapping[str, Any], sources: _Sources, *, pod_ips: list[str],
                      host_ips: list[str], node_name: str,
                      node_allocatable: Mapping[str, str]) -> str | None:
    """One valueFrom; None when an optional source or key is absent (the var is left out)."""
    if source.get("fieldRef"):
        path = source["fieldRef"].get("fieldPath") or ""
        spec = pod.get("spec") or {}
        special = {
            "spec.nodeName": spec.get("nodeName") or node_name,
            "spec.serviceAccountName": spec.get("serviceAccountName") or "",
            "status.hostIP": host_ips[0] if host_ips else "",
            "status.hostIPs": ",".join(host_ips),
            "status.podIP": pod_ips[0] if pod_ips else "",
            "status.podIPs": ",".join(pod_ips),
        }
        if path in special:
            return special[path]
        try:
            return object_field_value(pod, path)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    if source.get("resourceFieldRef"):
        try:
            return container_resource_value(source["resourceFieldRef"], container,
                                             node_allocatable)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    kind, ref = (("ConfigMap", source["configMapKeyRef"]) if source.get("configMapKeyRef")
                 else ("Secret", source.get("secretKeyRef") or {}))
    name, key = ref.get("name", ""), ref.get("key", "")
    optional = ref.get("optional") is True
    values = await sources.values(kind, name, optional=optional)
    if values is None:
        return None
    if key not in values:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {key} in {kind} {sources.namespace}/{name}")
    return values[key]
