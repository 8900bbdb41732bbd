"""What the workload controllers (ReplicaSet, Deployment, ...) share.

Pods from a template, the would-be owners of an orphan, pod readiness and availability,
expectations (so a controller never acts twice on a cache that has not caught up with its
own writes), slow-start batches, int-or-percent arithmetic and status conditions. Pure
functions over plain dicts; nothing here knows about one particular kind. Controller
references and claiming (adopting orphans, releasing strays) are the client's
(`client.ownership`), since the Kubeflow operators claim their children the same way.
"""

from __future__ import annotations

import asyncio
import copy
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..client import ApiError, Informer, object_key
from ..machinery.meta import parse_time, rfc3339
from ..machinery.selectors import label_selector_from_dict

#: How long a controller waits for the cache to show its own creates and deletes before
#: it stops trusting its expectations (client-go's ExpectationsTimeout).
EXPECTATIONS_TIMEOUT = 300.0
#: The first slow-start batch (controller.SlowStartInitialBatchSize).
SLOW_START_INITIAL_BATCH = 1


# -- metadata --------------------------------------------------------------------------


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def selecting_owners(owners: Informer, namespace: str,
                     labels: Mapping[str, str]) -> list[str]:
    """Keys of the objects in `namespace` whose non-empty spec.selector matches `labels`
    (the would-be owners of an orphan, as GetPodReplicaSets and friends find them)."""
    keys = []
    for owner in owners.by_index("namespace", namespace):
        try:
            selector = label_selector_from_dict((owner.get("spec") or {}).get("selector"))
        except ValueError:
            continue
        if not selector.empty and selector.matches(labels):
            keys.append(object_key(owner))
    return keys


def with_kind(obj: Mapping[str, Any], *, api_version: str, kind: str) -> dict[str, Any]:
    """`obj` with apiVersion and kind set (list items may lack them; events need them)."""
    return {**obj, "apiVersion": api_version, "kind": kind}


def pod_from_template(template: Mapping[str, Any], owner: Mapping[str, Any], *,
                      owner_ref: Mapping[str, Any]) -> dict[str, Any]:
    """A pod to create for `owner`: the template's labels, annotations, finalizers and
    spec, named `<owner>-<random>` by the API server."""
    template_meta = template.get("metadata") or {}
    pod_meta: dict[str, Any] = {
        "generateName": f"{meta(owner)['name']}-",
        "namespace": meta(owner).get("namespace"),
        "labels": dict(template_meta.get("labels") or {}),
        "ownerReferences": [dict(owner_ref)],
    }
    if template_meta.get("annotations"):
        pod_meta["annotations"] = dict(template_meta["annotations"])
    if template_meta.get("finalizers"):
        pod_meta["finalizers"] = list(template_meta["finalizers"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
            "spec": copy.deepcopy(template.get("spec") or {})}


# -- pods ------------------------------------------------------------------------------


def is_pod_active(pod: Mapping[str, Any]) -> bool:
    """Not finished and not being deleted (controller.IsPodActive)."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not meta(pod).get("deletionTimestamp")


def pod_condition(pod: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def is_pod_ready(pod: Mapping[str, Any]) -> bool:
    cond = pod_condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def pod_ready_since(pod: Mapping[str, Any]) -> datetime | None:
    """When the pod last became ready (None if it is not ready)."""
    cond = pod_condition(pod, "Ready")
    if cond is None or cond.get("status") != "True":
        return None
    return parse_time(cond.get("lastTransitionTime"))


def is_pod_available(pod: Mapping[str, Any], min_ready_seconds: int, now: datetime) -> bool:
    """Ready for at least `min_ready_seconds` (podutil.IsPodAvailable)."""
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = pod_ready_since(pod)
    return since is not None and since.timestamp() + min_ready_seconds <= now.timestamp()


# -- expectations ----------------------------------------------------------------------


@dataclass
class _Expectation:
    adds: int = 0
    deletes: set[str] = field(default_factory=set)
    stamp: float = field(default_factory=time.monotonic)


class Expectations:
    """Creates and deletes a controller has asked for but not yet seen in its cache.

    While any are outstanding for a key, the controller only refreshes status: acting on
    a cache that has not caught up would create (or delete) the same pods twice. They
    lapse after EXPECTATIONS_TIMEOUT in case an event was lost.
    """

    def __init__(self, timeout: float = EXPECTATIONS_TIMEOUT) -> None:
        self._timeout = timeout
        self._pending: dict[str, _Expectation] = {}

    def satisfied(self, key: str) -> bool:
        exp = self._pending.get(key)
        if exp is None:
            return True
        if exp.adds <= 0 and not exp.deletes:
            return True
        return time.monotonic() - exp.stamp > self._timeout

    def expect_creations(self, key: str, count: int) -> None:
        self._pending[key] = _Expectation(adds=count)

    def expect_deletions(self, key: str, pod_keys: Iterable[str]) -> None:
        self._pending[key] = _Expectation(deletes=set(pod_keys))

    def creation_observed(self, key: str) -> None:
        exp = self._pending.get(key)
        if exp is not None:
            exp.adds -= 1

    def deletion_observed(self, key: str, pod_key: str) -> None:
        exp = self._pending.get(key)
        if exp is not None:
            exp.deletes.discard(pod_key)

    def forget(self, key: str) -> None:
        self._pending.pop(key, None)


async def slow_start_batch(count: int, action: Callable[[], Awaitable[None]], *,
                           initial: int = SLOW_START_INITIAL_BATCH) -> tuple[int, list[Exception]]:
    """Run `action` `count` times in batches of 1, 2, 4, ... (controller.slowStartBatch).

    A batch with any failure ends the run, so a quota or admission error costs one call,
    not hundreds. Returns (successes, the failing batch's errors).
    """
    done, batch = 0, min(count, initial)
    while batch > 0:
        results = await asyncio.gather(*(action() for _ in range(batch)),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        done += batch - len(errors)
        if errors:
            return done, errors
        batch = min(2 * batch, count - done)
    return done, []


# -- arithmetic ------------------------------------------------------------------------


def int_or_percent(value: int | str | None, total: int, *, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent: an int as is, "25%" of `total`, rounded."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError(f"invalid value for IntOrString: {value!r}")
    if isinstance(value, int):
        return value
    if not value.endswith("%"):
        raise ValueError(f"invalid value for IntOrString: invalid type: string is not a "
                         f"percentage: {value!r}")
    percent = int(value[:-1])
    scaled = percent * total / 100
    return math.ceil(scaled) if round_up else math.floor(scaled)


# -- conditions ------------------------------------------------------------------------


def get_condition(status: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def remove_condition(status: dict[str, Any], kind: str) -> None:
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != kind]
    if conditions:
        status["conditions"] = conditions
    else:
        status.pop("conditions", None)


def set_condition(status: dict[str, Any], condition: dict[str, Any]) -> None:
    """Replace the condition of its type, unless status and reason are unchanged; keep the
    old lastTransitionTime when only the reason moved."""
    current = get_condition(status, condition["type"])
    if current is not None and current.get("status") == condition["status"] and current.get(
            "reason") == condition.get("reason"):
        return
    if current is not None and current.get("status") == condition["status"]:
        condition = {**condition, "lastTransitionTime": current.get("lastTransitionTime")}
    remove_condition(status, condition["type"])
    status.setdefault("conditions", []).append(condition)


def new_condition(kind: str, status: str, reason: str, message: str, *,
                  update_time: bool = False, now: datetime | None = None) -> dict[str, Any]:
    """A condition stamped now; `update_time` adds lastUpdateTime (deployment conditions)."""
    stamp = rfc3339(now)
    cond: dict[str, Any] = {"type": kind, "status": status}
    if update_time:
        cond["lastUpdateTime"] = stamp
    cond.update(lastTransitionTime=stamp, reason=reason, message=message)
    return cond


def omit_zero(status: Mapping[str, Any], *, keep: Iterable[str] = ()) -> dict[str, Any]:
    """A status as the API serializes it: zero counts and empty lists left out
    (`omitempty`), except the fields in `keep`."""
    kept = set(keep)
    return {k: v for k, v in status.items()
            if k in kept or v not in (0, None, [], {})}


def error_message(err: Exception) -> str:
    """The Status message of an API error (what kubectl would print), else str(err)."""
    if isinstance(err, ApiError):
        return str(err.body.get("message") or err)
    return str(err)
