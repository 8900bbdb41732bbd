"""Validation of workloads: pods, pod templates and the apps and batch controllers' kinds.

The second half of validation.py, which imports its tables from here and re-exports them
as `VALIDATORS` and `UPDATE_VALIDATORS` -- use those. The rules follow
`pkg/apis/core/validation` (pod spec, pod updates), `pkg/apis/apps/validation` and
`pkg/apis/batch/validation` of Kubernetes 1.32, with their field paths and messages.
"""

from __future__ import annotations

import re
import zoneinfo
from decimal import Decimal
from typing import Any

from croniter import CroniterError, croniter

from pilothouse.machinery.equality import semantic
from pilothouse.machinery.errors import (
    Cause,
    duplicate,
    forbidden,
    invalid_value,
    not_supported,
    required,
)
from pilothouse.machinery.names import (
    is_dns1123_label,
    is_dns1123_subdomain,
    is_env_var_name,
    is_qualified_name,
)

from .validation import (
    IS_NEGATIVE,
    UpdateValidator,
    Validator,
    as_dict,
    as_list,
    immutable,
    is_int,
    is_valid_port_name,
    not_found,
    quantity,
    required_enum,
    selector_of,
    shown,
    too_many,
    validate_annotations,
    validate_label_selector,
    validate_labels,
    validate_names,
    validate_nonnegative,
    validate_port_num_or_name,
    validate_port_number,
    validate_protocol,
    validate_resource_list,
    validate_tolerations,
)

MAX_INT32 = 2**31 - 1
RESTART_POLICIES = ("Always", "OnFailure", "Never")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
_NATIVE_RESOURCES = ("cpu", "memory", "ephemeral-storage")

# ---------------------------------------------------------------------------------------
# Pod spec.


def validate_pod_spec(spec: dict, path: str, *, restart_defaulted: bool = True) -> list[Cause]:
    """ValidatePodSpec: volumes, containers, policies and scheduling fields of a PodSpec.

    `restart_defaulted` is False for job templates, whose restartPolicy is left unset by
    defaulting so that the job's own rule reports it (as upstream reports the default)."""
    causes, volumes = _validate_volumes(as_list(spec.get("volumes")), f"{path}.volumes")
    containers = as_list(spec.get("containers"))
    if not containers:
        causes.append(required(f"{path}.containers"))
    names: set[str] = set()
    host_network = spec.get("hostNetwork") is True
    for key in ("initContainers", "containers"):
        for i, ctr in enumerate(as_list(spec.get(key))):
            ctr = as_dict(ctr)
            at = f"{path}.{key}[{i}]"
            name = ctr.get("name") or ""
            if name and name in names:
                causes.append(duplicate(f"{at}.name", name))
            names.add(name)
            causes += _validate_container(ctr, at, volumes, init=key == "initContainers",
                                          host_network=host_network)
    if spec.get("restartPolicy") or restart_defaulted:
        causes += _validate_restart_policy(spec.get("restartPolicy"), f"{path}.restartPolicy")
    dns_policy = spec.get("dnsPolicy")
    if not dns_policy:
        causes.append(required(f"{path}.dnsPolicy"))
    elif dns_policy not in DNS_POLICIES:
        causes.append(not_supported(f"{path}.dnsPolicy", dns_policy, DNS_POLICIES))
    elif dns_policy == "None" and not spec.get("dnsConfig"):
        causes.append(required(f"{path}.dnsConfig",
                               "must provide `dnsConfig` when `dnsPolicy` is None"))
    causes += validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector")
    for key, check in (("serviceAccountName", is_dns1123_subdomain),
                       ("nodeName", is_dns1123_subdomain),
                       ("priorityClassName", is_dns1123_subdomain),
                       ("hostname", is_dns1123_label), ("subdomain", is_dns1123_label)):
        if spec.get(key):
            causes += validate_names(str(spec[key]), f"{path}.{key}", check)
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and (not is_int(deadline) or not 1 <= deadline <= MAX_INT32):
        causes.append(invalid_value(f"{path}.activeDeadlineSeconds", deadline,
                               f"must be between 1 and {MAX_INT32}, inclusive"))
    causes += validate_tolerations(spec.get("tolerations"), f"{path}.tolerations")
    causes += validate_resource_list(spec.get("overhead"), f"{path}.overhead")
    return causes


def _validate_restart_policy(policy: Any, path: str) -> list[Cause]:
    return required_enum(policy, path, RESTART_POLICIES)


def _validate_volumes(volumes: list, path: str) -> tuple[list[Cause], set[str]]:
    causes: list[Cause] = []
    names: set[str] = set()
    for i, volume in enumerate(volumes):
        volume = as_dict(volume)
        at = f"{path}[{i}]"
        name = volume.get("name") or ""
        if not name:
            causes.append(required(f"{at}.name"))
        else:
            causes += validate_names(name, f"{at}.name", is_dns1123_label)
            if name in names:
                causes.append(duplicate(f"{at}.name", name))
        names.add(name)
        sources = [key for key in volume if key != "name" and volume[key] is not None]
        if not sources:
            causes.append(required(at, "must specify a volume type"))
        causes += [forbidden(f"{at}.{key}", "may not specify more than 1 volume type")
                   for key in sources[1:]]
        causes += _validate_volume_source(volume, at)
    return causes, names


_SOURCE_REQUIRED = {"configMap": ("name",), "secret": ("secretName",),
                    "persistentVolumeClaim": ("claimName",), "hostPath": ("path",),
                    "nfs": ("server", "path"), "csi": ("driver",)}


def _validate_volume_source(volume: dict, at: str) -> list[Cause]:
    causes: list[Cause] = []
    for source, keys in _SOURCE_REQUIRED.items():
        if source in volume:
            causes += [required(f"{at}.{source}.{key}") for key in keys
                       if not as_dict(volume[source]).get(key)]
    size = as_dict(volume.get("emptyDir")).get("sizeLimit")
    if size is not None:
        causes += validate_resource_list({"sizeLimit": size}, f"{at}.emptyDir")
    return causes


def _validate_container(ctr: dict, at: str, volumes: set[str], *, init: bool,
                        host_network: bool) -> list[Cause]:
    causes: list[Cause] = []
    name = ctr.get("name") or ""
    if not name:
        causes.append(required(f"{at}.name"))
    else:
        causes += validate_names(name, f"{at}.name", is_dns1123_label)
    if not ctr.get("image"):
        causes.append(required(f"{at}.image"))
    for key, allowed in (("terminationMessagePolicy", ("File", "FallbackToLogsOnError")),
                         ("imagePullPolicy", PULL_POLICIES)):
        if not ctr.get(key):
            causes.append(required(f"{at}.{key}"))
        elif ctr[key] not in allowed:
            causes.append(not_supported(f"{at}.{key}", ctr[key], allowed))
    causes += _validate_ports(as_list(ctr.get("ports")), f"{at}.ports", host_network)
    causes += _validate_env(as_list(ctr.get("env")), f"{at}.env")
    causes += _validate_mounts(as_list(ctr.get("volumeMounts")), f"{at}.volumeMounts", volumes)
    causes += _validate_resources(as_dict(ctr.get("resources")), f"{at}.resources")
    sidecar = init and ctr.get("restartPolicy") == "Always"
    if ctr.get("restartPolicy") is not None and not init:
        causes.append(forbidden(f"{at}.restartPolicy", "may not be set for non-init containers"))
    elif ctr.get("restartPolicy") is not None and not sidecar:
        causes.append(not_supported(f"{at}.restartPolicy", ctr["restartPolicy"], ("Always",)))
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if ctr.get(probe) is None:
            continue
        if init and not sidecar:
            causes.append(forbidden(f"{at}.{probe}",
                                    "may not be set for init containers without restartPolicy=Always"))
            continue
        causes += _validate_probe(as_dict(ctr[probe]), f"{at}.{probe}")
        threshold = as_dict(ctr[probe]).get("successThreshold")
        if probe != "readinessProbe" and threshold not in (None, 1):
            causes.append(invalid_value(f"{at}.{probe}.successThreshold", threshold, "must be 1"))
    return causes


def _validate_ports(ports: list, path: str, host_network: bool) -> list[Cause]:
    causes: list[Cause] = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        port = as_dict(port)
        at = f"{path}[{i}]"
        name = port.get("name") or ""
        if name:
            errs = [invalid_value(f"{at}.name", name, msg) for msg in is_valid_port_name(str(name))]
            if errs:
                causes += errs
            elif name in names:
                causes.append(duplicate(f"{at}.name", name))
            names.add(name)
        container_port = port.get("containerPort")
        if not container_port:
            causes.append(required(f"{at}.containerPort"))
        else:
            causes += validate_port_number(container_port, f"{at}.containerPort")
        host_port = port.get("hostPort")
        if host_port:
            causes += validate_port_number(host_port, f"{at}.hostPort")
            if host_network and host_port != container_port:
                causes.append(invalid_value(f"{at}.containerPort", container_port,
                                       "must match `hostPort` when `hostNetwork` is true"))
        causes += validate_protocol(port.get("protocol"), f"{at}.protocol")
    return causes


_ENV_SOURCES = ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")


def _validate_env(env: list, path: str) -> list[Cause]:
    causes: list[Cause] = []
    for i, var in enumerate(env):
        var = as_dict(var)
        at = f"{path}[{i}]"
        name = var.get("name") or ""
        if not name:
            causes.append(required(f"{at}.name"))
        else:
            causes += validate_names(name, f"{at}.name", is_env_var_name)
        source = as_dict(var.get("valueFrom"))
        if var.get("valueFrom") is None:
            continue
        if var.get("value"):
            causes.append(invalid_value(f"{at}.valueFrom", "",
                                   "may not be specified when `value` is not empty"))
        chosen = [key for key in _ENV_SOURCES if source.get(key) is not None]
        if not chosen:
            causes.append(invalid_value(f"{at}.valueFrom", "", "must specify one of: `fieldRef`, "
                                   "`resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"))
        elif len(chosen) > 1:
            causes.append(invalid_value(f"{at}.valueFrom", "",
                                   "may not have more than one field specified at a time"))
        for key in ("configMapKeyRef", "secretKeyRef"):
            if source.get(key) is not None and not as_dict(source[key]).get("key"):
                causes.append(required(f"{at}.valueFrom.{key}.key"))
        if source.get("fieldRef") is not None and not as_dict(source["fieldRef"]).get("fieldPath"):
            causes.append(required(f"{at}.valueFrom.fieldRef.fieldPath"))
    return causes


def _validate_mounts(mounts: list, path: str, volumes: set[str]) -> list[Cause]:
    causes: list[Cause] = []
    paths: set[str] = set()
    for i, mount in enumerate(mounts):
        mount = as_dict(mount)
        at = f"{path}[{i}]"
        name, mount_path = mount.get("name") or "", mount.get("mountPath") or ""
        if not name:
            causes.append(required(f"{at}.name"))
        elif name not in volumes:
            causes.append(not_found(f"{at}.name", name))
        if not mount_path:
            causes.append(required(f"{at}.mountPath"))
        elif mount_path in paths:
            causes.append(invalid_value(f"{at}.mountPath", mount_path, "must be unique"))
        paths.add(mount_path)
        sub_path = str(mount.get("subPath") or "")
        if sub_path.startswith("/"):
            causes.append(invalid_value(f"{at}.subPath", sub_path, "must be a relative path"))
        if ".." in re.split(r"[/\\]", sub_path):
            causes.append(invalid_value(f"{at}.subPath", sub_path, "must not contain '..'"))
    return causes


def _overcommittable(name: str) -> bool:
    native = "/" not in name or "kubernetes.io/" in name
    return native and not name.startswith("hugepages-")


def _validate_resources(resources: dict, path: str) -> list[Cause]:
    """Container resources: known names, quantities, requests within limits."""
    causes: list[Cause] = []
    amounts: dict[str, dict[str, Decimal]] = {"limits": {}, "requests": {}}
    for key in ("limits", "requests"):
        for name, value in as_dict(resources.get(key)).items():
            at = f"{path}.{key}[{name}]"
            if "/" not in name and name not in _NATIVE_RESOURCES and not name.startswith("hugepages-"):
                causes.append(invalid_value(at, name, "must be a standard resource for containers"))
            elif "/" in name:
                causes += validate_names(name, at, is_qualified_name)
            amount = quantity(value, at, causes)
            if amount is None:
                continue
            if amount < 0:
                causes.append(invalid_value(at, shown(value), IS_NEGATIVE))
            elif not _overcommittable(name) and "/" in name and amount != amount.to_integral_value():
                causes.append(invalid_value(at, shown(value), "must be an integer"))
            amounts[key][name] = amount
    limits, requests = amounts["limits"], amounts["requests"]
    raw_limits = as_dict(resources.get("limits"))
    for name, amount in requests.items():
        raw = shown(as_dict(resources.get("requests"))[name])
        if name in limits:
            limit = shown(raw_limits[name])
            if not _overcommittable(name) and amount != limits[name]:
                causes.append(invalid_value(f"{path}.requests", raw,
                                       f"must be equal to {name} limit of {limit}"))
            elif amount > limits[name]:
                causes.append(invalid_value(f"{path}.requests", raw,
                                       f"must be less than or equal to {name} limit of {limit}"))
        elif not _overcommittable(name):
            causes.append(required(f"{path}.limits",
                                   "Limit must be set for non overcommitable resources"))
    return causes


_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")


def _validate_probe(probe: dict, path: str) -> list[Cause]:
    handlers = [key for key in _HANDLERS if probe.get(key) is not None]
    causes: list[Cause] = []
    if not handlers:
        causes.append(required(path, "must specify a handler type"))
    causes += [forbidden(f"{path}.{key}", "may not specify more than 1 handler type")
               for key in handlers[1:]]
    if "exec" in handlers and not as_list(as_dict(probe["exec"]).get("command")):
        causes.append(required(f"{path}.exec.command"))
    if "httpGet" in handlers:
        get = as_dict(probe["httpGet"])
        if not get.get("path"):
            causes.append(required(f"{path}.httpGet.path"))
        causes += validate_port_num_or_name(get.get("port"), f"{path}.httpGet.port")
        if get.get("scheme") not in ("HTTP", "HTTPS"):
            causes.append(not_supported(f"{path}.httpGet.scheme", get.get("scheme") or "",
                                        ("HTTP", "HTTPS")))
    if "tcpSocket" in handlers:
        causes += validate_port_num_or_name(as_dict(probe["tcpSocket"]).get("port"),
                                            f"{path}.tcpSocket.port")
    if "grpc" in handlers:
        causes += validate_port_number(as_dict(probe["grpc"]).get("port"), f"{path}.grpc.port")
    for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold",
                "failureThreshold"):
        causes += validate_nonnegative(probe.get(key), f"{path}.{key}")
    return causes


def validate_pod_template(template: Any, path: str, *, restart_defaulted: bool = True) -> list[Cause]:
    """ValidatePodTemplateSpec: template labels and annotations, then its pod spec."""
    template = as_dict(template)
    meta = as_dict(template.get("metadata"))
    causes = validate_labels(meta.get("labels"), f"{path}.labels")
    causes += validate_annotations(meta.get("annotations"), f"{path}.annotations")
    spec = as_dict(template.get("spec"))
    causes += validate_pod_spec(spec, f"{path}.spec", restart_defaulted=restart_defaulted)
    if spec.get("ephemeralContainers"):
        causes.append(forbidden(f"{path}.spec.ephemeralContainers",
                                "ephemeral containers not allowed in pod template"))
    return causes


def validate_pod(pod: dict) -> list[Cause]:
    return validate_pod_spec(as_dict(pod.get("spec")), "spec")


def validate_pod_template_kind(obj: dict) -> list[Cause]:
    return validate_pod_template(obj.get("template"), "template")


_POD_UPDATE_MESSAGE = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
    "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be "
    "set to 1 if it was previously negative)")


def validate_pod_update(new: dict, old: dict) -> list[Cause]:
    """A pod's spec is fixed once created, but for images, deadlines and added tolerations."""
    spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    causes: list[Cause] = []
    deadline, old_deadline = spec.get("activeDeadlineSeconds"), old_spec.get("activeDeadlineSeconds")
    if deadline is None and old_deadline is not None:
        causes.append(invalid_value("spec.activeDeadlineSeconds", None,
                               "must not update from a positive integer to nil value"))
    elif is_int(deadline) and is_int(old_deadline) and deadline > old_deadline:
        causes.append(invalid_value("spec.activeDeadlineSeconds", deadline,
                               "must be less than or equal to previous value"))
    munged = dict(old_spec)
    for key in ("initContainers", "containers"):
        new_images = [as_dict(c).get("image") for c in as_list(spec.get(key))]
        old_list = as_list(old_spec.get(key))
        if len(new_images) == len(old_list):
            munged[key] = [{**as_dict(c), "image": image} for c, image in zip(old_list, new_images,
                                                                              strict=True)]
    munged["activeDeadlineSeconds"] = deadline
    old_tolerations = [semantic(t) for t in as_list(old_spec.get("tolerations"))]
    new_tolerations = [semantic(t) for t in as_list(spec.get("tolerations"))]
    if all(t in new_tolerations for t in old_tolerations):
        munged["tolerations"] = spec.get("tolerations")
    grace, old_grace = spec.get("terminationGracePeriodSeconds"), old_spec.get(
        "terminationGracePeriodSeconds")
    if is_int(old_grace) and old_grace < 0 and grace == 1:
        munged["terminationGracePeriodSeconds"] = grace
    if semantic(munged) != semantic(spec):
        causes.append(forbidden("spec", _POD_UPDATE_MESSAGE))
    return causes


# ---------------------------------------------------------------------------------------
# apps/v1


def _validate_selector(spec: dict, kind: str, *, allow_missing: bool = False) -> list[Cause]:
    """A controller's selector: present, well formed, non-empty and matching its template."""
    selector = spec.get("selector")
    causes: list[Cause] = []
    if selector is None:
        if not allow_missing:
            causes.append(required("spec.selector"))
    else:
        causes += validate_label_selector(selector, "spec.selector")
        sel = as_dict(selector)
        if not as_dict(sel.get("matchLabels")) and not as_list(sel.get("matchExpressions")):
            causes.append(invalid_value("spec.selector", selector, f"empty selector is invalid for {kind}"))
    parsed = selector_of(selector) if selector is not None else None
    if selector is not None and parsed is None:
        causes.append(invalid_value("spec.selector", selector, "invalid label selector"))
        return causes
    labels = as_dict(as_dict(as_dict(spec.get("template")).get("metadata")).get("labels"))
    if parsed is None or not parsed.matches(labels):
        causes.append(invalid_value("spec.template.metadata.labels", labels,
                               "`selector` does not match template `labels`"))
    return causes


def _validate_controller_template(spec: dict, kind: str, *, pod_spec: bool = True) -> list[Cause]:
    template = as_dict(spec.get("template"))
    if pod_spec:
        causes = validate_pod_template(template, "spec.template")
    else:
        meta = as_dict(template.get("metadata"))
        causes = validate_labels(meta.get("labels"), "spec.template.labels")
        causes += validate_annotations(meta.get("annotations"), "spec.template.annotations")
    pod = as_dict(template.get("spec"))
    if pod.get("restartPolicy") != "Always":
        causes.append(not_supported("spec.template.spec.restartPolicy", pod.get("restartPolicy") or "",
                                    ("Always",)))
    if pod.get("activeDeadlineSeconds") is not None:
        causes.append(forbidden("spec.template.spec.activeDeadlineSeconds",
                                f"activeDeadlineSeconds in {kind} is not Supported"))
    for key in ("replicas", "minReadySeconds", "revisionHistoryLimit"):
        causes += validate_nonnegative(spec.get(key), f"spec.{key}")
    return causes


def _percent(value: Any) -> int | None:
    match = re.fullmatch(r"([0-9]+)%", value) if isinstance(value, str) else None
    return int(match.group(1)) if match else None


def _int_or_percent(value: Any, path: str, *, at_most_100: bool = True) -> tuple[list[Cause], int]:
    """ValidatePositiveIntOrPercent (and IsNotMoreThan100Percent); the value, 0 when unset."""
    if value is None:
        return [], 0
    if isinstance(value, str):
        percent = _percent(value)
        if percent is None:
            return [invalid_value(path, value, "a valid percent string must be a numeric string "
                                  "followed by an ending '%' (e.g. '1%',  or '93%', regex used "
                                  "for validation is '[0-9]+%')")], 0
        if at_most_100 and percent > 100:
            return [invalid_value(path, value, "must not be greater than 100%")], percent
        return [], percent
    if not is_int(value):
        return [invalid_value(path, value, "must be an integer or percentage (e.g '5%')")], 0
    return validate_nonnegative(value, path), value


def validate_deployment(deploy: dict) -> list[Cause]:
    spec = as_dict(deploy.get("spec"))
    causes = _validate_selector(spec, "deployment") + _validate_controller_template(spec, "ReplicaSet")
    strategy = as_dict(spec.get("strategy"))
    kind, rolling = strategy.get("type"), strategy.get("rollingUpdate")
    if kind == "Recreate":
        if rolling is not None:
            causes.append(forbidden("spec.strategy.rollingUpdate",
                                    "may not be specified when strategy `type` is 'Recreate'"))
    elif kind == "RollingUpdate":
        if rolling is None:
            causes.append(required("spec.strategy.rollingUpdate",
                                   "this should be defaulted and never be nil"))
        else:
            at = "spec.strategy.rollingUpdate"
            errs, unavailable = _int_or_percent(as_dict(rolling).get("maxUnavailable"),
                                                f"{at}.maxUnavailable")
            surge_errs, surge = _int_or_percent(as_dict(rolling).get("maxSurge"), f"{at}.maxSurge",
                                                at_most_100=False)
            causes += errs + surge_errs
            if unavailable == 0 and surge == 0:
                causes.append(invalid_value(f"{at}.maxUnavailable", as_dict(rolling).get("maxUnavailable"),
                                       "may not be 0 when `maxSurge` is 0"))
    else:
        causes.append(not_supported("spec.strategy", strategy, ("Recreate", "RollingUpdate")))
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is not None:
        causes += validate_nonnegative(deadline, "spec.progressDeadlineSeconds")
        if is_int(deadline) and deadline <= (spec.get("minReadySeconds") or 0):
            causes.append(invalid_value("spec.progressDeadlineSeconds", deadline,
                                   "must be greater than minReadySeconds"))
    return causes


def validate_replica_set(rs: dict) -> list[Cause]:
    spec = as_dict(rs.get("spec"))
    return _validate_selector(spec, "deployment") + _validate_controller_template(spec, "ReplicaSet")


def validate_stateful_set(sts: dict) -> list[Cause]:
    """StatefulSet templates have only labels and annotations checked, as upstream."""
    spec = as_dict(sts.get("spec"))
    causes = _validate_selector(spec, "statefulset")
    causes += _validate_controller_template(spec, "StatefulSet", pod_spec=False)
    policy = spec.get("podManagementPolicy")
    if not policy:
        causes.append(required("spec.podManagementPolicy"))
    elif policy not in ("OrderedReady", "Parallel"):
        causes.append(invalid_value("spec.podManagementPolicy", policy,
                               "must be 'OrderedReady' or 'Parallel'"))
    strategy = as_dict(spec.get("updateStrategy"))
    rolling = strategy.get("rollingUpdate")
    if not strategy.get("type"):
        causes.append(required("spec.updateStrategy"))
    elif strategy["type"] == "OnDelete":
        if rolling is not None:
            causes.append(invalid_value("spec.updateStrategy.rollingUpdate", rolling,
                                   "only allowed for updateStrategy 'RollingUpdate'"))
    elif strategy["type"] == "RollingUpdate":
        at = "spec.updateStrategy.rollingUpdate"
        causes += validate_nonnegative(as_dict(rolling).get("partition"), f"{at}.partition")
        if as_dict(rolling).get("maxUnavailable") is not None:
            errs, value = _int_or_percent(as_dict(rolling)["maxUnavailable"], f"{at}.maxUnavailable")
            causes += errs
            if value == 0:
                causes.append(invalid_value(f"{at}.maxUnavailable", 0, "cannot be 0"))
    else:
        causes.append(invalid_value("spec.updateStrategy", strategy,
                               "must be 'RollingUpdate' or 'OnDelete'"))
    retention = spec.get("persistentVolumeClaimRetentionPolicy")
    if retention is not None:
        for key in ("whenDeleted", "whenScaled"):
            value = as_dict(retention).get(key)
            if value not in ("Retain", "Delete"):
                causes.append(not_supported(f"spec.persistentVolumeClaimRetentionPolicy.{key}",
                                            value or "", ("Retain", "Delete")))
    return causes


def validate_daemon_set(ds: dict) -> list[Cause]:
    spec = as_dict(ds.get("spec"))
    causes = _validate_selector(spec, "daemonset", allow_missing=True)
    causes += _validate_controller_template(spec, "DaemonSet")
    strategy = as_dict(spec.get("updateStrategy"))
    kind, rolling = strategy.get("type"), strategy.get("rollingUpdate")
    if kind == "RollingUpdate":
        at = "spec.updateStrategy.rollingUpdate"
        if rolling is None:
            causes.append(required(at))
        else:
            errs, unavailable = _int_or_percent(as_dict(rolling).get("maxUnavailable"),
                                                f"{at}.maxUnavailable")
            surge_errs, surge = _int_or_percent(as_dict(rolling).get("maxSurge"), f"{at}.maxSurge")
            causes += errs + surge_errs
            if unavailable and surge:
                causes.append(invalid_value(f"{at}.maxSurge", as_dict(rolling).get("maxSurge"),
                                       "may not be set when maxUnavailable is non-zero"))
            elif not unavailable and not surge:
                causes.append(required(f"{at}.maxUnavailable", "cannot be 0 when maxSurge is 0"))
    elif kind != "OnDelete":
        causes.append(not_supported("spec.updateStrategy", strategy, ("RollingUpdate", "OnDelete")))
    return causes


def _validate_selector_update(new: dict, old: dict) -> list[Cause]:
    selector = as_dict(new.get("spec")).get("selector")
    return immutable("spec.selector", selector, as_dict(old.get("spec")).get("selector"))


_STATEFUL_SET_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy",
                         "persistentVolumeClaimRetentionPolicy", "minReadySeconds")


def validate_stateful_set_update(new: dict, old: dict) -> list[Cause]:
    spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    fixed = {k: v for k, v in spec.items() if k not in _STATEFUL_SET_MUTABLE}
    old_fixed = {k: v for k, v in old_spec.items() if k not in _STATEFUL_SET_MUTABLE}
    if semantic(fixed) != semantic(old_fixed):
        return [forbidden("spec", "updates to statefulset spec for fields other than 'replicas', "
                          "'ordinals', 'template', 'updateStrategy', "
                          "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are "
                          "forbidden")]
    return []


def validate_controller_revision(rev: dict) -> list[Cause]:
    causes = [] if rev.get("data") is not None else [required("data", "data is mandatory")]
    return causes + validate_nonnegative(rev.get("revision"), "revision")


def validate_controller_revision_update(new: dict, old: dict) -> list[Cause]:
    return immutable("data", new.get("data"), old.get("data"))


# ---------------------------------------------------------------------------------------
# batch/v1

_JOB_LABELS = ("batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name",
               "controller-uid", "job-name")
_FAILURE_ACTIONS = ("Count", "FailIndex", "FailJob", "Ignore")


def validate_job(job: dict) -> list[Cause]:
    """ValidateJob: the generated selector (see defaults.job_prepare_for_create), then the spec."""
    spec, meta = as_dict(job.get("spec")), as_dict(job.get("metadata"))
    causes = _validate_generated_selector(job)
    if spec.get("selector") is None:
        causes.append(required("spec.selector"))
    else:
        causes += validate_label_selector(spec["selector"], "spec.selector")
        parsed = selector_of(spec["selector"])
        labels = as_dict(as_dict(as_dict(spec.get("template")).get("metadata")).get("labels"))
        if parsed is not None and not parsed.matches(labels):
            causes.append(invalid_value("spec.template.metadata.labels", labels,
                                   "`selector` does not match template `labels`"))
    causes += _validate_job_spec(spec, "spec")
    completions = spec.get("completions")
    if spec.get("completionMode") == "Indexed" and is_int(completions) and completions > 0:
        hostname = f"{meta.get('name') or ''}-{completions - 1}"
        if is_dns1123_label(hostname):
            causes.append(invalid_value("metadata.name", meta.get("name") or "",
                                   f"will not able to create pod with invalid DNS label: {hostname}"))
    return causes


def _validate_generated_selector(job: dict) -> list[Cause]:
    spec, meta = as_dict(job.get("spec")), as_dict(job.get("metadata"))
    if spec.get("manualSelector") is True or spec.get("selector") is None:
        return []
    uid, name = meta.get("uid") or "", meta.get("name") or ""
    causes = [] if uid else [required("metadata.uid")]
    labels = as_dict(as_dict(as_dict(spec.get("template")).get("metadata")).get("labels"))
    expected = dict(zip(_JOB_LABELS, (uid, name, uid, name), strict=True))
    for key, value in expected.items():
        at = f"spec.template.metadata.labels[{key}]"
        if key not in labels:
            causes.append(required(at, f"must be '{value}'"))
        elif labels[key] != value:
            causes.append(invalid_value(at, labels, f"must be '{value}'"))
    parsed = selector_of(spec["selector"])
    if parsed is not None and not parsed.matches(expected):
        causes.append(invalid_value("spec.selector", spec["selector"], "`selector` not auto-generated"))
    return causes


def _validate_job_spec(spec: dict, path: str) -> list[Cause]:
    """validateJobSpec: counts, completion mode, failure policy, template and restartPolicy."""
    causes: list[Cause] = []
    for key in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit",
                "ttlSecondsAfterFinished", "backoffLimitPerIndex", "maxFailedIndexes"):
        causes += validate_nonnegative(spec.get(key), f"{path}.{key}")
    mode = spec.get("completionMode")
    indexed = mode == "Indexed"
    if mode is not None and mode not in ("NonIndexed", "Indexed"):
        causes.append(not_supported(f"{path}.completionMode", mode, ("NonIndexed", "Indexed")))
    if indexed and spec.get("completions") is None:
        causes.append(required(f"{path}.completions", "when completion mode is Indexed"))
    if spec.get("maxFailedIndexes") is not None and spec.get("backoffLimitPerIndex") is None:
        causes.append(required(f"{path}.backoffLimitPerIndex", "when maxFailedIndexes is specified"))
    if not indexed:
        for key in ("backoffLimitPerIndex", "maxFailedIndexes"):
            if spec.get(key) is not None:
                causes.append(invalid_value(f"{path}.{key}", spec[key], "requires indexed completion mode"))
    failure_policy = spec.get("podFailurePolicy")
    if failure_policy is not None:
        causes += _validate_pod_failure_policy(spec, as_dict(failure_policy),
                                               f"{path}.podFailurePolicy")
    replacement = spec.get("podReplacementPolicy")
    if replacement is not None:
        allowed = ("Failed",) if failure_policy is not None else ("Failed", "TerminatingOrFailed")
        if replacement not in allowed:
            causes.append(not_supported(f"{path}.podReplacementPolicy", replacement, allowed))
    template = as_dict(spec.get("template"))
    causes += validate_pod_template(template, f"{path}.template", restart_defaulted=False)
    restart = as_dict(template.get("spec")).get("restartPolicy") or ""
    at = f"{path}.template.spec.restartPolicy"
    if restart in ("Always", ""):
        causes.append(required(at, 'valid values: "OnFailure", "Never"'))
    elif restart not in ("OnFailure", "Never"):
        causes.append(not_supported(at, restart, ("OnFailure", "Never")))
    elif failure_policy is not None and restart != "Never":
        causes.append(invalid_value(at, restart, 'only "Never" is supported when podFailurePolicy is '
                               "specified"))
    return causes


def _validate_pod_failure_policy(spec: dict, policy: dict, path: str) -> list[Cause]:
    rules = as_list(policy.get("rules"))
    causes = [too_many(f"{path}.rules", len(rules), 20)] if len(rules) > 20 else []
    pod_spec = as_dict(as_dict(spec.get("template")).get("spec"))
    containers = {as_dict(c).get("name") for key in ("containers", "initContainers")
                  for c in as_list(pod_spec.get(key))}
    for i, rule in enumerate(rules):
        rule = as_dict(rule)
        at = f"{path}.rules[{i}]"
        action = rule.get("action")
        if not action:
            causes.append(required(f"{at}.action", "valid values: " + str(list(_FAILURE_ACTIONS))
                                   .replace("'", '"')))
        elif action == "FailIndex" and spec.get("backoffLimitPerIndex") is None:
            causes.append(invalid_value(f"{at}.action", action, "requires the backoffLimitPerIndex to be set"))
        elif action not in _FAILURE_ACTIONS:
            causes.append(not_supported(f"{at}.action", action, _FAILURE_ACTIONS))
        on_codes, on_conditions = rule.get("onExitCodes"), as_list(rule.get("onPodConditions"))
        if on_codes is not None:
            causes += _validate_on_exit_codes(as_dict(on_codes), f"{at}.onExitCodes", containers)
        for j, pattern in enumerate(on_conditions):
            pattern = as_dict(pattern)
            causes += validate_names(str(pattern.get("type") or ""),
                                     f"{at}.onPodConditions[{j}].type", is_qualified_name)
            status = pattern.get("status")
            if status not in ("False", "True", "Unknown"):
                causes.append(not_supported(f"{at}.onPodConditions[{j}].status", status or "",
                                            ("False", "True", "Unknown")))
        if on_codes is not None and on_conditions:
            causes.append(Cause(at, "Invalid value: specifying both OnExitCodes and "
                                "OnPodConditions is not supported"))
        if on_codes is None and not on_conditions:
            causes.append(Cause(at, "Invalid value: specifying one of OnExitCodes and "
                                "OnPodConditions is required"))
    return causes


def _validate_on_exit_codes(req: dict, path: str, containers: set[Any]) -> list[Cause]:
    causes: list[Cause] = []
    operator = req.get("operator")
    if operator not in ("In", "NotIn"):
        causes.append(not_supported(f"{path}.operator", operator or "", ("In", "NotIn")))
    name = req.get("containerName")
    if name is not None and name not in containers:
        causes.append(invalid_value(f"{path}.containerName", name,
                               "must be one of the container or initContainer names in the pod "
                               "template"))
    values = as_list(req.get("values"))
    if not values:
        causes.append(invalid_value(f"{path}.values", values, "at least one value is required"))
    elif len(values) > 255:
        causes.append(too_many(f"{path}.values", len(values), 255))
    for j, value in enumerate(values):
        if operator == "In" and value == 0:
            causes.append(invalid_value(f"{path}.values[{j}]", value, "must not be 0 for the In operator"))
        if value in values[:j]:
            causes.append(duplicate(f"{path}.values[{j}]", value))
    if values != sorted(values, key=lambda v: v if is_int(v) else 0):
        causes.append(invalid_value(f"{path}.values", values, "must be ordered"))
    return causes


def validate_job_update(new: dict, old: dict) -> list[Cause]:
    """Selector, completions and failure policy are fixed; the template too, but for
    scheduling directives and labels of a suspended job that never started."""
    spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    causes: list[Cause] = []
    if spec.get("completionMode") == "Indexed" and semantic(spec.get("completions")) != semantic(
            old_spec.get("completions")):
        if spec.get("completions") is not None and spec["completions"] != spec.get("parallelism"):
            causes.append(invalid_value("spec.completions", spec["completions"],
                                   "can only be modified in tandem with spec.parallelism"))
    else:
        causes += immutable("spec.completions", spec.get("completions"), old_spec.get("completions"))
    for key in ("selector", "completionMode", "podFailurePolicy", "backoffLimitPerIndex",
                "managedBy", "successPolicy"):
        causes += immutable(f"spec.{key}", spec.get(key), old_spec.get(key))
    template, old_template = as_dict(spec.get("template")), as_dict(old_spec.get("template"))
    never_started = not as_dict(old.get("status")).get("startTime")
    if old_spec.get("suspend") is True and never_started:
        old_template = _with_scheduling_of(old_template, template)
    causes += immutable("spec.template", template, old_template)
    return causes


def _with_scheduling_of(old_template: dict, template: dict) -> dict:
    """`old_template` carrying `template`'s labels, annotations and scheduling directives."""
    meta, pod = dict(as_dict(old_template.get("metadata"))), dict(as_dict(old_template.get("spec")))
    new_meta, new_pod = as_dict(template.get("metadata")), as_dict(template.get("spec"))
    for key in ("labels", "annotations"):
        meta[key] = new_meta.get(key)
    for key in ("nodeSelector", "tolerations", "schedulingGates"):
        pod[key] = new_pod.get(key)
    affinity = dict(as_dict(pod.get("affinity")))
    affinity["nodeAffinity"] = as_dict(new_pod.get("affinity")).get("nodeAffinity")
    pod["affinity"] = affinity
    return {**old_template, "metadata": meta, "spec": pod}


_CRON_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight",
                     "@hourly")
_GO_DURATION = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|ms|s|m|h)")


def schedule_errors(schedule: str) -> list[str]:
    """What robfig/cron's ParseStandard (the CronJob controller's parser) says of `schedule`."""
    spec = schedule.strip()
    if spec.startswith(("TZ=", "CRON_TZ=")):
        zone, _, spec = spec.partition(" ")
        try:
            zoneinfo.ZoneInfo(zone.partition("=")[2])
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return [f"provided bad location {zone.partition('=')[2]}: unknown time zone "
                    f"{zone.partition('=')[2]}"]
        spec = spec.strip()
    if not spec:
        return ["empty spec string"]
    if spec.startswith("@"):
        if spec in _CRON_DESCRIPTORS:
            return []
        if spec.startswith("@every "):
            duration = spec[len("@every "):].strip()
            if duration and re.fullmatch(rf"(?:{_GO_DURATION.pattern})+", duration):
                return []
            return [f"failed to parse duration {spec}: time: invalid duration \"{duration}\""]
        return [f"unrecognized descriptor: {spec}"]
    fields = spec.split()
    if len(fields) != 5:
        return [f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]"]
    try:
        croniter(spec)
    except CroniterError as exc:
        return [str(exc)]
    return []


def _validate_time_zone(zone: Any) -> list[Cause]:
    if zone is None:
        return []
    path = "spec.timeZone"
    if zone == "":
        return [invalid_value(path, zone, "timeZone must be nil or non-empty string")]
    for part in str(zone).split("/"):
        if part in (".", "..") or part.startswith("-") or not re.fullmatch(r"[A-Za-z.\-_0-9+]{1,14}", part):
            return [invalid_value(path, zone, f"unknown time zone {zone}")]
    if str(zone).lower() == "local":
        return [invalid_value(path, zone, "timeZone must be an explicit time zone as defined in "
                         "https://www.iana.org/time-zones")]
    try:
        zoneinfo.ZoneInfo(str(zone))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return [invalid_value(path, zone, f"unknown time zone {zone}")]
    return []


def validate_cron_job(cj: dict) -> list[Cause]:
    """CronJob spec and name; no update rule, since no stored CronJob was ever allowed a TZ
    in its schedule (the only rule upstream relaxes for old objects)."""
    spec = as_dict(cj.get("spec"))
    causes: list[Cause] = []
    schedule = spec.get("schedule") or ""
    if not schedule:
        causes.append(required("spec.schedule"))
    else:
        causes += [invalid_value("spec.schedule", schedule, msg) for msg in schedule_errors(schedule)]
        if "TZ" in schedule:
            causes.append(invalid_value("spec.schedule", schedule, "cannot use TZ or CRON_TZ in "
                                        "schedule, use timeZone field instead"))
    causes += _validate_time_zone(spec.get("timeZone"))
    for key in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        causes += validate_nonnegative(spec.get(key), f"spec.{key}")
    policy = spec.get("concurrencyPolicy")
    causes += required_enum(policy, "spec.concurrencyPolicy", ("Allow", "Forbid", "Replace"))
    job_spec = as_dict(as_dict(spec.get("jobTemplate")).get("spec"))
    causes += _validate_job_spec(job_spec, "spec.jobTemplate.spec")
    if job_spec.get("selector") is not None:
        causes.append(invalid_value("spec.jobTemplate.spec.selector", job_spec["selector"],
                               "`selector` will be auto-generated"))
    if job_spec.get("manualSelector") is True:
        causes.append(not_supported("spec.jobTemplate.spec.manualSelector", True, ("nil", "false")))
    name = as_dict(cj.get("metadata")).get("name") or ""
    if len(name) > 52:
        causes.append(invalid_value("metadata.name", name, "must be no more than 52 characters"))
    return causes


WORKLOAD_VALIDATORS: dict[tuple[str, str], Validator] = {
    ("", "Pod"): validate_pod,
    ("", "PodTemplate"): validate_pod_template_kind,
    ("apps", "Deployment"): validate_deployment,
    ("apps", "ReplicaSet"): validate_replica_set,
    ("apps", "StatefulSet"): validate_stateful_set,
    ("apps", "DaemonSet"): validate_daemon_set,
    ("apps", "ControllerRevision"): validate_controller_revision,
    ("batch", "Job"): validate_job,
    ("batch", "CronJob"): validate_cron_job,
}

WORKLOAD_UPDATE_VALIDATORS: dict[tuple[str, str], UpdateValidator] = {
    ("", "Pod"): validate_pod_update,
    ("apps", "Deployment"): _validate_selector_update,
    ("apps", "ReplicaSet"): _validate_selector_update,
    ("apps", "DaemonSet"): _validate_selector_update,
    ("apps", "StatefulSet"): validate_stateful_set_update,
    ("apps", "ControllerRevision"): validate_controller_revision_update,
    ("batch", "Job"): validate_job_update,
}

__all__ = ["WORKLOAD_UPDATE_VALIDATORS", "WORKLOAD_VALIDATORS", "schedule_errors",
           "validate_pod_spec", "validate_pod_template"]
