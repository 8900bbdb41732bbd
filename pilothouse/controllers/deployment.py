"""The Deployment controller: roll a pod template out through ReplicaSets.

As pkg/controller/deployment: each template gets its own ReplicaSet, named
`<deployment>-<pod-template-hash>`, whose selector and template carry the
`pod-template-hash` label so revisions never select each other's pods. A sync claims
the ReplicaSets the selector matches, then, in upstream's order of precedence:

- paused (`spec.paused`), or a scaling event (the `desired-replicas` annotation of an
  active ReplicaSet differs from `spec.replicas`): scale without rolling, spreading the
  change over the active ReplicaSets in proportion to their size;
- RollingUpdate: create the new ReplicaSet, scale it up within `maxSurge`, scale the
  old ones down within `maxUnavailable` (unhealthy replicas first);
- Recreate: scale the old ReplicaSets to zero, wait until their pods are gone, then
  scale the new one up.

ReplicaSets carry the annotations kubectl's `rollout history|undo` read (`revision`,
`revision-history`, the Deployment's own annotations such as `kubernetes.io/change-cause`)
and the `desired-replicas` / `max-replicas` that proportional scaling needs. Old
ReplicaSets beyond `revisionHistoryLimit` are deleted once a rollout completes. Status
carries the counts `kubectl rollout status` waits on and the Progressing and Available
conditions, including ProgressDeadlineExceeded after `progressDeadlineSeconds` without
progress.
"""

from __future__ import annotations

import copy
import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from ..client import (
    ApiError,
    Controller,
    claim,
    classify_claims,
    controller_of,
    controller_ref,
    fresh_owner_check,
    object_key,
)
from ..machinery.meta import now as utcnow
from ..machinery.meta import parse_time
from ..machinery.selectors import label_selector_from_dict
from ._workloads import (
    error_message,
    get_condition,
    int_or_percent,
    is_pod_active,
    meta,
    new_condition,
    omit_zero,
    remove_condition,
    selecting_owners,
    set_condition,
    with_kind,
)

log = logging.getLogger(__name__)

API_VERSION = "apps/v1"
KIND = "Deployment"
RS_KIND = "ReplicaSet"

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
#: Deployment annotations never copied to its ReplicaSets (nor back by `rollout undo`).
ANNOTATIONS_TO_SKIP = frozenset({LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS,
                                 MAX_REPLICAS, ROLLBACK_TO})
#: The revision-history annotation keeps at most this many characters.
MAX_REVISION_HISTORY_CHARS = 2000
#: `progressDeadlineSeconds` at this value means "no deadline".
NO_DEADLINE = 2**31 - 1

# Condition reasons, as upstream spells them.
REPLICA_SET_UPDATED = "ReplicaSetUpdated"
FAILED_RS_CREATE = "ReplicaSetCreateError"
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_EPOCH = datetime.min.replace(tzinfo=UTC)

RS = dict[str, Any]


# -- small accessors -------------------------------------------------------------------


def spec_replicas(obj: dict[str, Any] | None) -> int:
    if obj is None:
        return 0
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def status_count(obj: dict[str, Any] | None, field: str) -> int:
    if obj is None:
        return 0
    return int((obj.get("status") or {}).get(field) or 0)


def annotations(obj: dict[str, Any]) -> dict[str, str]:
    return meta(obj).get("annotations") or {}


def _created(rs: RS) -> datetime:
    return parse_time(meta(rs).get("creationTimestamp")) or _EPOCH


def by_creation(rss: list[RS]) -> list[RS]:
    """Oldest first, ties by name (controller.ReplicaSetsByCreationTimestamp)."""
    return sorted(rss, key=lambda rs: (_created(rs), meta(rs).get("name", "")))


def active(rss: list[RS | None]) -> list[RS]:
    """ReplicaSets with a non-zero `spec.replicas` (controller.FilterActiveReplicaSets)."""
    return [rs for rs in rss if rs is not None and spec_replicas(rs) > 0]


def total_replicas(rss: list[RS | None]) -> int:
    return sum(spec_replicas(rs) for rs in rss if rs is not None)


def total_status(rss: list[RS | None], field: str) -> int:
    return sum(status_count(rs, field) for rs in rss if rs is not None)


# -- strategy arithmetic ---------------------------------------------------------------


def is_rolling(d: dict[str, Any]) -> bool:
    strategy = (d.get("spec") or {}).get("strategy") or {}
    return strategy.get("type", "RollingUpdate") == "RollingUpdate"


def resolve_fenceposts(max_surge: int | str | None, max_unavailable: int | str | None,
                       desired: int) -> tuple[int, int]:
    """(surge, unavailable): surge rounds up, unavailable down; both zero means
    unavailable 1, so a rollout can always move (deployment_util.ResolveFenceposts)."""
    surge = int_or_percent(max_surge if max_surge is not None else 0, desired, round_up=True)
    unavailable = int_or_percent(max_unavailable if max_unavailable is not None else 0,
                                 desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _fenceposts(d: dict[str, Any]) -> tuple[int, int]:
    rolling = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    return resolve_fenceposts(rolling.get("maxSurge"), rolling.get("maxUnavailable"),
                              spec_replicas(d))


def max_surge(d: dict[str, Any]) -> int:
    return _fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: dict[str, Any]) -> int:
    if not is_rolling(d) or spec_replicas(d) == 0:
        return 0
    return min(_fenceposts(d)[1], spec_replicas(d))


def new_rs_new_replicas(d: dict[str, Any], all_rss: list[RS | None], new_rs: RS) -> int:
    """How big the new ReplicaSet may be now: Recreate takes all at once; RollingUpdate
    grows it while all ReplicaSets together stay within replicas + maxSurge."""
    if not is_rolling(d):
        return spec_replicas(d)
    max_total = spec_replicas(d) + max_surge(d)
    current = total_replicas(all_rss)
    if current >= max_total:
        return spec_replicas(new_rs)
    grow = min(max_total - current, spec_replicas(d) - spec_replicas(new_rs))
    return spec_replicas(new_rs) + grow


def old_replica_set_targets(d: dict[str, Any], all_rss: list[RS | None], old_rss: list[RS],
                            new_rs: RS | None) -> list[tuple[RS, int]]:
    """The scale-downs of old ReplicaSets a rolling update may do now, in order.

    First, unhealthy replicas of old ReplicaSets go (they cost no availability); then
    available ones, oldest ReplicaSet first, while at least replicas - maxUnavailable
    stay available. Never below what the new ReplicaSet's own unavailable pods need.
    """
    old_count = total_replicas(old_rss)
    if old_count == 0:
        return []
    unavailable = max_unavailable(d)
    min_available = spec_replicas(d) - unavailable
    new_unavailable = spec_replicas(new_rs) - status_count(new_rs, "availableReplicas")
    max_scaled_down = total_replicas(all_rss) - min_available - new_unavailable
    if max_scaled_down <= 0:
        return []
    sizes = {meta(rs)["name"]: spec_replicas(rs) for rs in old_rss}
    targets: dict[str, int] = {}
    ordered = by_creation(old_rss)
    cleaned = 0
    for rs in ordered:
        if cleaned >= max_scaled_down:
            break
        name = meta(rs)["name"]
        unhealthy = sizes[name] - status_count(rs, "availableReplicas")
        if sizes[name] == 0 or unhealthy <= 0:
            continue
        step = min(max_scaled_down - cleaned, unhealthy)
        sizes[name] -= step
        targets[name] = sizes[name]
        cleaned += step
    available = total_status([*old_rss, new_rs], "availableReplicas")
    if available > min_available:
        budget = available - min_available
        scaled = 0
        for rs in ordered:
            if scaled >= budget:
                break
            name = meta(rs)["name"]
            if sizes[name] == 0:
                continue
            step = min(sizes[name], budget - scaled)
            sizes[name] -= step
            targets[name] = sizes[name]
            scaled += step
    return [(rs, targets[meta(rs)["name"]]) for rs in ordered if meta(rs)["name"] in targets]


def _annotated_int(rs: RS, key: str) -> int | None:
    try:
        return int(annotations(rs)[key])
    except (KeyError, ValueError):
        return None


def get_proportion(rs: RS, d: dict[str, Any], to_add: int, added: int) -> int:
    """This ReplicaSet's share of a scaling event (deployment_util.GetProportion)."""
    if spec_replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    if spec_replicas(d) == 0:
        fraction = -spec_replicas(rs)
    else:
        deployment_replicas = spec_replicas(d) + max_surge(d)
        annotated = _annotated_int(rs, MAX_REPLICAS)
        if annotated is None:
            annotated = status_count(d, "replicas")
        size = spec_replicas(rs) * deployment_replicas / annotated if annotated else 0
        fraction = _round_half_away(size) - spec_replicas(rs)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def _round_half_away(value: float) -> int:
    """math.Round: halves away from zero."""
    return int(value + 0.5) if value >= 0 else -int(-value + 0.5)


def proportional_sizes(d: dict[str, Any], rss: list[RS]) -> dict[str, int]:
    """New sizes of the active ReplicaSets when a rolling Deployment is scaled mid-rollout.

    The replicas to add (or remove) to reach replicas + maxSurge are spread in
    proportion to each ReplicaSet's size; leftovers go to the largest (newest on
    scale up, oldest on scale down).
    """
    rss = active(list(rss))
    allowed = spec_replicas(d) + max_surge(d) if spec_replicas(d) > 0 else 0
    to_add = allowed - total_replicas(rss)
    if to_add > 0:
        rss.sort(key=lambda rs: (-spec_replicas(rs), -_created(rs).timestamp()))
    elif to_add < 0:
        rss.sort(key=lambda rs: (-spec_replicas(rs), _created(rs), meta(rs).get("name", "")))
    sizes: dict[str, int] = {}
    added = 0
    for rs in rss:
        if to_add != 0:
            share = get_proportion(rs, d, to_add, added)
            sizes[meta(rs)["name"]] = spec_replicas(rs) + share
            added += share
        else:
            sizes[meta(rs)["name"]] = spec_replicas(rs)
    if rss and to_add != 0:
        first = meta(rss[0])["name"]
        sizes[first] = max(sizes[first] + to_add - added, 0)
    return {meta(rs)["name"]: sizes[meta(rs)["name"]] for rs in rss}


# -- templates and revisions -----------------------------------------------------------


def _fnv32a(data: bytes, value: int = 0x811C9DC5) -> int:
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def pod_template_hash(template: dict[str, Any], collision_count: int | None = None) -> str:
    """A stable short hash of a pod template (controller.ComputeHash): FNV-32a of its
    canonical JSON, salted by the collision count, spelled without vowels."""
    value = _fnv32a(orjson.dumps(template, option=orjson.OPT_SORT_KEYS))
    if collision_count is not None:
        value = _fnv32a((collision_count & 0xFFFFFFFF).to_bytes(4, "little"), value)
    return "".join(_SAFE_ALPHABET[ord(ch) % len(_SAFE_ALPHABET)] for ch in str(value))


def _without_hash(template: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(template or {})
    template_meta = template.get("metadata") or {}
    labels = template_meta.get("labels")
    if labels is not None:
        labels.pop(HASH_LABEL, None)
        if not labels:
            template_meta.pop("labels")
    if "metadata" in template and not template_meta:
        template.pop("metadata")
    return template


def equal_ignore_hash(t1: dict[str, Any] | None, t2: dict[str, Any] | None) -> bool:
    """Two pod templates are the same revision if they differ only in pod-template-hash."""
    return _without_hash(t1 or {}) == _without_hash(t2 or {})


def template_of(obj: dict[str, Any]) -> dict[str, Any]:
    return (obj.get("spec") or {}).get("template") or {}


def find_new_rs(d: dict[str, Any], rss: list[RS]) -> RS | None:
    """The oldest ReplicaSet whose template is the Deployment's."""
    for rs in by_creation(rss):
        if equal_ignore_hash(template_of(rs), template_of(d)):
            return rs
    return None


def find_old_rss(d: dict[str, Any], rss: list[RS]) -> list[RS]:
    new_rs = find_new_rs(d, rss)
    new_uid = meta(new_rs).get("uid") if new_rs is not None else None
    return [rs for rs in rss if new_rs is None or meta(rs).get("uid") != new_uid]


def revision(rs: RS) -> int:
    try:
        return int(annotations(rs).get(REVISION, "0"))
    except ValueError:
        return 0


def max_revision(rss: list[RS]) -> int:
    return max((revision(rs) for rs in rss), default=0)


def set_replicas_annotations(rs: RS, desired: int, maximum: int) -> bool:
    notes = rs.setdefault("metadata", {}).setdefault("annotations", {})
    changed = False
    for key, value in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(maximum))):
        if notes.get(key) != value:
            notes[key] = value
            changed = True
    return changed


def replicas_annotations_need_update(rs: RS, desired: int, maximum: int) -> bool:
    notes = annotations(rs)
    return notes.get(DESIRED_REPLICAS) != str(desired) or notes.get(MAX_REPLICAS) != str(maximum)


def set_new_rs_annotations(d: dict[str, Any], rs: RS, new_revision: str, *,
                           exists: bool) -> bool:
    """Copy the Deployment's annotations onto its new ReplicaSet and raise its revision;
    a ReplicaSet given a new revision remembers its old ones (a rollback). True if any
    annotation changed."""
    notes = rs.setdefault("metadata", {}).setdefault("annotations", {})
    changed = False
    for key, value in annotations(d).items():
        if key in ANNOTATIONS_TO_SKIP or notes.get(key) == value:
            continue
        notes[key] = value
        changed = True
    old_revision = notes.get(REVISION)
    try:
        old = int(old_revision) if old_revision else 0
    except ValueError:
        return False
    if old < int(new_revision):
        notes[REVISION] = new_revision
        changed = True
        if old_revision:
            history = notes.get(REVISION_HISTORY, "")
            entries = history.split(",") if history else []
            entries.append(old_revision)
            while len(",".join(entries)) > MAX_REVISION_HISTORY_CHARS and len(entries) > 1:
                entries.pop(0)
            notes[REVISION_HISTORY] = ",".join(entries)
    if not exists and set_replicas_annotations(rs, spec_replicas(d),
                                               spec_replicas(d) + max_surge(d)):
        changed = True
    return changed


def is_saturated(d: dict[str, Any], rs: RS | None) -> bool:
    """The new ReplicaSet owns, and has available, every desired replica."""
    if rs is None:
        return False
    return (spec_replicas(rs) == spec_replicas(d)
            and _annotated_int(rs, DESIRED_REPLICAS) == spec_replicas(d)
            and status_count(rs, "availableReplicas") == spec_replicas(d))


def find_active_or_latest(new_rs: RS | None, old_rss: list[RS]) -> RS | None:
    """The only active ReplicaSet, or the newest if none is active; None if several are."""
    if new_rs is None and not old_rss:
        return None
    newest_first = list(reversed(by_creation(old_rss)))
    live = active([*newest_first, new_rs])
    if not live:
        return new_rs if new_rs is not None else newest_first[0]
    return live[0] if len(live) == 1 else None


# -- status ----------------------------------------------------------------------------


def has_progress_deadline(d: dict[str, Any]) -> bool:
    deadline = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return deadline is not None and deadline != NO_DEADLINE


def calculate_status(all_rss: list[RS | None], new_rs: RS | None, d: dict[str, Any],
                     now: datetime) -> dict[str, Any]:
    """Counts summed over the ReplicaSets, plus the Available condition."""
    available = total_status(all_rss, "availableReplicas")
    old = d.get("status") or {}
    status: dict[str, Any] = {
        "observedGeneration": meta(d).get("generation") or 0,
        "replicas": total_status(all_rss, "replicas"),
        "updatedReplicas": status_count(new_rs, "replicas"),
        "readyReplicas": total_status(all_rss, "readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": max(total_replicas(all_rss) - available, 0),
    }
    if old.get("conditions"):
        status["conditions"] = copy.deepcopy(old["conditions"])
    if available >= spec_replicas(d) - max_unavailable(d):
        set_condition(status, new_condition("Available", "True", MIN_AVAILABLE,
                                            "Deployment has minimum availability.",
                                            update_time=True, now=now))
    else:
        set_condition(status, new_condition("Available", "False", MIN_UNAVAILABLE,
                                            "Deployment does not have minimum availability.",
                                            update_time=True, now=now))
    status = omit_zero(status)
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    return status


def deployment_complete(d: dict[str, Any], status: dict[str, Any]) -> bool:
    want = spec_replicas(d)
    return (status.get("updatedReplicas", 0) == want and status.get("replicas", 0) == want
            and status.get("availableReplicas", 0) == want
            and status.get("observedGeneration", 0) >= (meta(d).get("generation") or 0))


def deployment_progressing(d: dict[str, Any], status: dict[str, Any]) -> bool:
    old = d.get("status") or {}
    old_old = old.get("replicas", 0) - old.get("updatedReplicas", 0)
    new_old = status.get("replicas", 0) - status.get("updatedReplicas", 0)
    return (status.get("updatedReplicas", 0) > old.get("updatedReplicas", 0)
            or new_old < old_old
            or status.get("readyReplicas", 0) > old.get("readyReplicas", 0)
            or status.get("availableReplicas", 0) > old.get("availableReplicas", 0))


def deployment_timed_out(d: dict[str, Any], status: dict[str, Any], now: datetime) -> bool:
    if not has_progress_deadline(d):
        return False
    cond = get_condition(status, "Progressing")
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    since = parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return False
    deadline = (d.get("spec") or {}).get("progressDeadlineSeconds") or 0
    return since.timestamp() + deadline < now.timestamp()


def rollout_status(all_rss: list[RS | None], new_rs: RS | None, d: dict[str, Any],
                   now: datetime) -> dict[str, Any]:
    """The status during a rollout: counts, Available, and Progressing judged against
    the previous status and the progress deadline (progress.go syncRolloutStatus)."""
    status = calculate_status(all_rss, new_rs, d, now)
    if not has_progress_deadline(d):
        remove_condition(status, "Progressing")
    current = get_condition(d.get("status") or {}, "Progressing")
    complete = (status.get("replicas", 0) == status.get("updatedReplicas", 0)
                and current is not None and current.get("reason") == NEW_RS_AVAILABLE)
    subject = (f'ReplicaSet "{meta(new_rs)["name"]}"' if new_rs is not None
               else f'Deployment "{meta(d)["name"]}"')
    if has_progress_deadline(d) and not complete:
        if deployment_complete(d, status):
            set_condition(status, new_condition(
                "Progressing", "True", NEW_RS_AVAILABLE, f"{subject} has successfully progressed.",
                update_time=True, now=now))
        elif deployment_progressing(d, status):
            cond = new_condition("Progressing", "True", REPLICA_SET_UPDATED,
                                 f"{subject} is progressing.", update_time=True, now=now)
            if current is not None:
                if current.get("status") == "True":
                    cond["lastTransitionTime"] = current.get("lastTransitionTime")
                remove_condition(status, "Progressing")
            set_condition(status, cond)
        elif deployment_timed_out(d, status, now):
            set_condition(status, new_condition(
                "Progressing", "False", TIMED_OUT, f"{subject} has timed out progressing.",
                update_time=True, now=now))
    failures = _replica_failures(all_rss, new_rs)
    if failures:
        set_condition(status, failures[0])
    else:
        remove_condition(status, "ReplicaFailure")
    return status


def _replica_failures(all_rss: list[RS | None], new_rs: RS | None) -> list[dict[str, Any]]:
    """ReplicaFailure conditions of the new ReplicaSet, else of any, as deployment ones."""
    def failures(rs: RS | None) -> list[dict[str, Any]]:
        return [{"type": c["type"], "status": c.get("status"),
                 "lastUpdateTime": c.get("lastTransitionTime"),
                 "lastTransitionTime": c.get("lastTransitionTime"),
                 "reason": c.get("reason"), "message": c.get("message")}
                for c in ((rs or {}).get("status") or {}).get("conditions") or []
                if c.get("type") == "ReplicaFailure"]
    found = failures(new_rs)
    if found:
        return found
    return [c for rs in all_rss for c in failures(rs)]


def stuck_requeue_after(d: dict[str, Any], status: dict[str, Any], now: datetime) -> float | None:
    """Seconds until the progress deadline should be checked again (None: no need)."""
    current = get_condition(d.get("status") or {}, "Progressing")
    if not has_progress_deadline(d) or current is None:
        return None
    if deployment_complete(d, status) or current.get("reason") == TIMED_OUT:
        return None
    since = parse_time(current.get("lastUpdateTime"))
    if since is None:
        return None
    deadline = (d.get("spec") or {}).get("progressDeadlineSeconds") or 0
    after = since.timestamp() + deadline - now.timestamp()
    return 1.0 if after < 1 else after + 1


def status_differs(d: dict[str, Any], status: dict[str, Any]) -> bool:
    return (d.get("status") or {}) != status


def cleanup_candidates(d: dict[str, Any], old_rss: list[RS]) -> list[RS]:
    """Old ReplicaSets beyond revisionHistoryLimit that are empty and settled, lowest
    revision first."""
    limit = (d.get("spec") or {}).get("revisionHistoryLimit")
    if limit is None or limit == NO_DEADLINE:
        return []
    alive = [rs for rs in old_rss if not meta(rs).get("deletionTimestamp")]
    excess = len(alive) - limit
    if excess <= 0:
        return []
    alive.sort(key=lambda rs: (revision(rs), _created(rs), meta(rs).get("name", "")))
    return [rs for rs in alive[:excess]
            if status_count(rs, "replicas") == 0 and spec_replicas(rs) == 0
            and (meta(rs).get("generation") or 0) <= status_count(rs, "observedGeneration")]


# -- the controller --------------------------------------------------------------------


class DeploymentController(Controller):
    name = "deployment-controller"
    workers = 4

    def setup(self) -> None:
        informers = self.context.informers
        self.deployments = informers.informer(API_VERSION, "deployments")
        self.replicasets = informers.informer(API_VERSION, "replicasets")
        self.pods = informers.informer("v1", "pods")
        self.deployments.add_handler(self.enqueue_handler)
        self.replicasets.add_handler(self._on_replicaset)
        self.pods.add_handler(self._on_pod)

    # -- event handlers ----------------------------------------------------------------

    def _owner_key(self, rs: RS) -> str | None:
        ref = controller_of(rs)
        if ref is None or ref.get("kind") != KIND:
            return None
        key = f"{meta(rs).get('namespace')}/{ref.get('name')}"
        d = self.deployments.get(key)
        if d is None or meta(d).get("uid") != ref.get("uid"):
            return None
        return key

    def _matching_deployments(self, rs: RS) -> list[str]:
        return selecting_owners(self.deployments, meta(rs).get("namespace") or "",
                                meta(rs).get("labels") or {})

    def _on_replicaset(self, old: RS | None, new: RS | None) -> None:
        if new is None or old is None:
            obj = new if new is not None else old
            assert obj is not None
            key = self._owner_key(obj)
            if key is not None:
                self.queue.add(key)
            elif new is not None and controller_of(new) is None:
                for d_key in self._matching_deployments(new):
                    self.queue.add(d_key)
            return
        if meta(old).get("resourceVersion") == meta(new).get("resourceVersion"):
            return
        old_ref, new_ref = controller_of(old), controller_of(new)
        if old_ref is not None and old_ref != new_ref:
            old_key = self._owner_key(old)
            if old_key is not None:
                self.queue.add(old_key)
        key = self._owner_key(new)
        if key is not None:
            self.queue.add(key)
        elif new_ref is None and (old_ref != new_ref or meta(old).get("labels") != meta(new).get(
                "labels")):
            for d_key in self._matching_deployments(new):
                self.queue.add(d_key)

    def _on_pod(self, old: dict | None, new: dict | None) -> None:
        """A Recreate rollout waits for the old pods to be gone: wake it when one goes."""
        if new is not None and (old is None or is_pod_active(new) or not is_pod_active(old)):
            return
        pod = old if old is not None else new
        assert pod is not None
        ref = controller_of(pod)
        if ref is None or ref.get("kind") != RS_KIND:
            return
        rs = self.replicasets.get(f"{meta(pod).get('namespace')}/{ref.get('name')}")
        if rs is None:
            return
        key = self._owner_key(rs)
        if key is not None and not is_rolling(self.deployments.get(key) or {}):
            self.queue.add(key)

    # -- sync --------------------------------------------------------------------------

    async def reconcile(self, key: str) -> float | None:
        cached = self.deployments.get(key)
        if cached is None:
            return None
        d = with_kind(copy.deepcopy(cached), api_version=API_VERSION, kind=KIND)
        selector_spec = (d.get("spec") or {}).get("selector")
        try:
            selector = label_selector_from_dict(selector_spec)
        except ValueError as err:
            log.warning("deployment %s has an invalid selector: %s", key, err)
            return None
        if selector.empty:
            await self.events.record(d, "Warning", "SelectingAll",
                                     "This deployment is selecting all pods. A non-empty "
                                     "selector is required.")
            if status_count(d, "observedGeneration") < (meta(d).get("generation") or 0):
                status = {**(d.get("status") or {}),
                          "observedGeneration": meta(d).get("generation")}
                await self._write_status(d, status)
            return None
        rss = await self._claim_replicasets(d, selector)
        if meta(d).get("deletionTimestamp"):
            new_rs, old_rss = await self._new_and_old(d, rss, create=False)
            await self._sync_status(d, [*old_rss, new_rs], new_rs)
            return None
        await self._check_paused_conditions(d)
        if (d.get("spec") or {}).get("paused") or await self._is_scaling_event(d, rss):
            await self._sync(d, rss)
            return None
        if is_rolling(d):
            return await self._rollout_rolling(d, rss)
        return await self._rollout_recreate(d, rss)

    async def _claim_replicasets(self, d: dict[str, Any], selector: Any) -> list[RS]:
        candidates = self.replicasets.by_index("namespace", meta(d).get("namespace") or "")
        owned = await claim(
            self.client, api_version=API_VERSION, plural="replicasets", owner=d,
            owner_ref=controller_ref(d, api_version=API_VERSION, kind=KIND),
            claims=classify_claims(d, selector, candidates),
            can_adopt=lambda: fresh_owner_check(self.client, api_version=API_VERSION,
                                                plural="deployments", owner=d))
        return [copy.deepcopy(rs) for rs in owned]

    async def _new_and_old(self, d: dict[str, Any], rss: list[RS], *, create: bool
                           ) -> tuple[RS | None, list[RS]]:
        old_rss = find_old_rss(d, rss)
        return await self._new_rs(d, rss, old_rss, create=create), old_rss

    async def _new_rs(self, d: dict[str, Any], rss: list[RS], old_rss: list[RS], *,
                      create: bool) -> RS | None:
        """The new ReplicaSet with its revision synced; created if `create` and missing."""
        existing = find_new_rs(d, rss)
        new_revision = str(max_revision(old_rss) + 1)
        now = utcnow()
        if existing is not None:
            rs = copy.deepcopy(existing)
            changed = set_new_rs_annotations(d, rs, new_revision, exists=True)
            min_ready = (d.get("spec") or {}).get("minReadySeconds") or 0
            if changed or ((rs.get("spec") or {}).get("minReadySeconds") or 0) != min_ready:
                rs["spec"]["minReadySeconds"] = min_ready
                updated = await self._replace_rs(rs)
                rss[rss.index(existing)] = updated
                return updated
            needs_update = self._set_revision(d, annotations(rs).get(REVISION, ""))
            status = copy.deepcopy(d.get("status") or {})
            if has_progress_deadline(d) and get_condition(status, "Progressing") is None:
                set_condition(status, new_condition(
                    "Progressing", "True", FOUND_NEW_RS,
                    f'Found new replica set "{meta(rs)["name"]}"', update_time=True, now=now))
                needs_update = True
            if needs_update:
                await self._write(d, status)
            return rs
        if not create:
            return None
        return await self._create_new_rs(d, old_rss, new_revision, now)

    async def _create_new_rs(self, d: dict[str, Any], old_rss: list[RS], new_revision: str,
                             now: datetime) -> RS:
        spec = d.get("spec") or {}
        status = copy.deepcopy(d.get("status") or {})
        template = copy.deepcopy(template_of(d))
        template_hash = pod_template_hash(template, status.get("collisionCount"))
        template.setdefault("metadata", {})
        template["metadata"]["labels"] = {**(template["metadata"].get("labels") or {}),
                                          HASH_LABEL: template_hash}
        selector = copy.deepcopy(spec.get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}),
                                   HASH_LABEL: template_hash}
        name = f"{meta(d)['name']}-{template_hash}"
        new_rs: RS = {
            "apiVersion": API_VERSION, "kind": RS_KIND,
            "metadata": {"name": name, "namespace": meta(d).get("namespace"),
                         "labels": dict(template["metadata"]["labels"]),
                         "ownerReferences": [controller_ref(d, api_version=API_VERSION,
                                                            kind=KIND)]},
            "spec": {"replicas": 0, "minReadySeconds": spec.get("minReadySeconds") or 0,
                     "selector": selector, "template": template},
        }
        count = new_rs_new_replicas(d, [*old_rss, new_rs], new_rs)
        new_rs["spec"]["replicas"] = count
        set_new_rs_annotations(d, new_rs, new_revision, exists=False)
        already_exists = False
        try:
            created = await self.client.create(API_VERSION, "replicasets", new_rs)
        except ApiError as err:
            if err.reason == "AlreadyExists":
                found = await self._live_rs(meta(d).get("namespace"), name)
                ref = controller_of(found) if found is not None else None
                if found is not None and ref is not None and ref.get("uid") == meta(d).get(
                        "uid") and equal_ignore_hash(template_of(d), template_of(found)):
                    created, already_exists = found, True
                else:
                    status["collisionCount"] = (status.get("collisionCount") or 0) + 1
                    await self._write_status(d, status)
                    log.info("hash collision for deployment %s; collisionCount is now %d",
                             object_key(d), status["collisionCount"])
                    raise
            else:
                message = f'Failed to create new replica set "{name}": {error_message(err)}'
                if has_progress_deadline(d):
                    set_condition(status, new_condition("Progressing", "False", FAILED_RS_CREATE,
                                                        message, update_time=True, now=now))
                    try:
                        await self._write_status(d, status)
                    except ApiError:
                        pass
                await self.events.record(d, "Warning", FAILED_RS_CREATE, message)
                raise
        if not already_exists and count > 0:
            await self.events.record(d, "Normal", "ScalingReplicaSet",
                                     f"Scaled up replica set {name} to {count} from 0")
        needs_update = self._set_revision(d, new_revision)
        if not already_exists and has_progress_deadline(d):
            set_condition(status, new_condition("Progressing", "True", NEW_RS_CREATED,
                                                f'Created new replica set "{name}"',
                                                update_time=True, now=now))
            needs_update = True
        if needs_update:
            await self._write(d, status)
        return created

    async def _live_rs(self, namespace: str | None, name: str) -> RS | None:
        cached = self.replicasets.get(f"{namespace}/{name}")
        if cached is not None:
            return copy.deepcopy(cached)
        try:
            return await self.client.get(API_VERSION, "replicasets", name, namespace)
        except ApiError as err:
            if err.not_found:
                return None
            raise

    # -- scaling -----------------------------------------------------------------------

    async def _is_scaling_event(self, d: dict[str, Any], rss: list[RS]) -> bool:
        new_rs, old_rss = await self._new_and_old(d, rss, create=False)
        for rs in active([*old_rss, new_rs]):
            desired = _annotated_int(rs, DESIRED_REPLICAS)
            if desired is not None and desired != spec_replicas(d):
                return True
        return False

    async def _sync(self, d: dict[str, Any], rss: list[RS]) -> None:
        """Scale (paused or a scaling event) without rolling anything out."""
        new_rs, old_rss = await self._new_and_old(d, rss, create=False)
        await self._scale(d, new_rs, old_rss)
        if (d.get("spec") or {}).get("paused"):
            await self._cleanup(d, old_rss)
        await self._sync_status(d, [*old_rss, new_rs], new_rs)

    async def _scale(self, d: dict[str, Any], new_rs: RS | None, old_rss: list[RS]) -> None:
        only = find_active_or_latest(new_rs, old_rss)
        if only is not None:
            if spec_replicas(only) != spec_replicas(d):
                await self._scale_rs(only, spec_replicas(d), d)
            return
        if is_saturated(d, new_rs):
            for old in active(list(old_rss)):
                await self._scale_rs(old, 0, d)
            return
        if is_rolling(d):
            everything = active([*old_rss, new_rs])
            sizes = proportional_sizes(d, everything)
            for rs in everything:
                await self._scale_rs(rs, sizes[meta(rs)["name"]], d)

    async def _scale_rs(self, rs: RS, size: int, d: dict[str, Any]) -> tuple[bool, RS]:
        """Set a ReplicaSet's size and replica annotations; record the scaling event."""
        old_size = spec_replicas(rs)
        desired, maximum = spec_replicas(d), spec_replicas(d) + max_surge(d)
        if old_size == size and not replicas_annotations_need_update(rs, desired, maximum):
            return False, rs
        updated = copy.deepcopy(rs)
        updated.setdefault("spec", {})["replicas"] = size
        set_replicas_annotations(updated, desired, maximum)
        result = await self._replace_rs(updated)
        if old_size == size:
            return False, result
        direction = "up" if size > old_size else "down"
        await self.events.record(d, "Normal", "ScalingReplicaSet",
                                 f"Scaled {direction} replica set {meta(rs)['name']} to {size} "
                                 f"from {old_size}")
        return True, result

    async def _replace_rs(self, rs: RS) -> RS:
        return await self.client.replace(API_VERSION, "replicasets",
                                         with_kind(rs, api_version=API_VERSION, kind=RS_KIND))

    # -- strategies --------------------------------------------------------------------

    async def _rollout_rolling(self, d: dict[str, Any], rss: list[RS]) -> float | None:
        new_rs, old_rss = await self._new_and_old(d, rss, create=True)
        assert new_rs is not None
        all_rss: list[RS | None] = [*old_rss, new_rs]
        if spec_replicas(new_rs) != spec_replicas(d):
            target = (spec_replicas(d) if spec_replicas(new_rs) > spec_replicas(d)
                      else new_rs_new_replicas(d, all_rss, new_rs))
            scaled, _ = await self._scale_rs(new_rs, target, d)
            if scaled:
                return await self._sync_rollout_status(d, all_rss, new_rs)
        scaled_down = False
        for rs, size in old_replica_set_targets(d, all_rss, active(list(old_rss)), new_rs):
            changed, _ = await self._scale_rs(rs, size, d)
            scaled_down = scaled_down or changed
        if scaled_down:
            return await self._sync_rollout_status(d, all_rss, new_rs)
        if deployment_complete(d, d.get("status") or {}):
            await self._cleanup(d, old_rss)
        return await self._sync_rollout_status(d, all_rss, new_rs)

    async def _rollout_recreate(self, d: dict[str, Any], rss: list[RS]) -> float | None:
        new_rs, old_rss = await self._new_and_old(d, rss, create=False)
        all_rss: list[RS | None] = [*old_rss, new_rs]
        scaled_down = False
        for rs in active(list(old_rss)):
            changed, _ = await self._scale_rs(rs, 0, d)
            scaled_down = scaled_down or changed
        if scaled_down or self._old_pods_running(new_rs, old_rss):
            return await self._sync_rollout_status(d, all_rss, new_rs)
        if new_rs is None:
            new_rs, old_rss = await self._new_and_old(d, rss, create=True)
            all_rss = [*old_rss, new_rs]
        assert new_rs is not None
        await self._scale_rs(new_rs, spec_replicas(d), d)
        if deployment_complete(d, d.get("status") or {}):
            await self._cleanup(d, old_rss)
        return await self._sync_rollout_status(d, all_rss, new_rs)

    def _old_pods_running(self, new_rs: RS | None, old_rss: list[RS]) -> bool:
        if total_status(list(old_rss), "replicas") > 0:
            return True
        for rs in old_rss:
            for pod in self.pods.by_index("owner", meta(rs).get("uid", "")):
                if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                    return True
        return False

    async def _cleanup(self, d: dict[str, Any], old_rss: list[RS]) -> None:
        for rs in cleanup_candidates(d, old_rss):
            try:
                await self.client.delete(API_VERSION, "replicasets", meta(rs)["name"],
                                         meta(rs).get("namespace"))
            except ApiError as err:
                if not err.not_found:
                    raise

    # -- status ------------------------------------------------------------------------

    async def _check_paused_conditions(self, d: dict[str, Any]) -> None:
        if not has_progress_deadline(d):
            return
        status = copy.deepcopy(d.get("status") or {})
        cond = get_condition(status, "Progressing")
        if cond is not None and cond.get("reason") == TIMED_OUT:
            return
        paused = bool((d.get("spec") or {}).get("paused"))
        has_paused = cond is not None and cond.get("reason") == PAUSED
        if paused and not has_paused:
            set_condition(status, new_condition("Progressing", "Unknown", PAUSED,
                                                "Deployment is paused", update_time=True))
        elif not paused and has_paused:
            set_condition(status, new_condition("Progressing", "Unknown", RESUMED,
                                                "Deployment is resumed", update_time=True))
        else:
            return
        await self._write_status(d, status)

    async def _sync_status(self, d: dict[str, Any], all_rss: list[RS | None],
                           new_rs: RS | None) -> None:
        status = calculate_status(all_rss, new_rs, d, utcnow())
        if status_differs(d, status):
            await self._write_status(d, status)

    async def _sync_rollout_status(self, d: dict[str, Any], all_rss: list[RS | None],
                                   new_rs: RS | None) -> float | None:
        now = utcnow()
        status = rollout_status(all_rss, new_rs, d, now)
        if status_differs(d, status):
            await self._write_status(d, status)
            return None
        return stuck_requeue_after(d, status, now)

    def _set_revision(self, d: dict[str, Any], value: str) -> bool:
        notes = d.setdefault("metadata", {}).setdefault("annotations", {})
        if notes.get(REVISION) == value:
            return False
        notes[REVISION] = value
        return True

    async def _write(self, d: dict[str, Any], status: dict[str, Any]) -> None:
        """Persist the revision annotation (an update of the object: a status write may
        not touch metadata) and then the status."""
        cached = self.deployments.get(object_key(d)) or {}
        if annotations(cached).get(REVISION) != annotations(d).get(REVISION):
            body = {k: v for k, v in d.items() if k != "status"}
            updated = await self.client.replace(API_VERSION, "deployments", body)
            d["metadata"]["resourceVersion"] = meta(updated).get("resourceVersion")
        if status_differs(d, status):
            await self._write_status(d, status)

    async def _write_status(self, d: dict[str, Any], status: dict[str, Any]) -> None:
        updated = await self.client.replace(API_VERSION, "deployments", {**d, "status": status},
                                            subresource="status")
        d["status"] = status
        d["metadata"]["resourceVersion"] = meta(updated).get("resourceVersion")


CONTROLLER = DeploymentController
