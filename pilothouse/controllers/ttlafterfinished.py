"""The TTL-after-finished controller: deletes finished Jobs once their TTL has passed.

A Job with `spec.ttlSecondsAfterFinished` is deleted that many seconds after its
Complete or Failed condition turned True (propagation Background, so the garbage
collector removes its pods). Each Job is requeued for exactly its expiry; before
deleting, the Job is read fresh from the API server, since the user may have changed the
TTL since the cache saw it, and the delete is made conditional on its uid.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from ..client import ApiError, Controller, Informer, split_key
from ..machinery.meta import now as utc_now
from ..machinery.meta import parse_time
from .job import JOB_API_VERSION, find_condition, finished_condition

log = logging.getLogger(__name__)


def needs_cleanup(job: Mapping[str, Any]) -> bool:
    return ((job.get("spec") or {}).get("ttlSecondsAfterFinished") is not None
            and finished_condition(job) is not None)


def expire_time(job: Mapping[str, Any]) -> datetime | None:
    """When a finished Job's TTL runs out (None if it has no TTL or finish time)."""
    kind = finished_condition(job)
    if kind is None or (job.get("spec") or {}).get("ttlSecondsAfterFinished") is None:
        return None
    finished = parse_time((find_condition(job, kind) or {}).get("lastTransitionTime"))
    if finished is None:
        return None
    return finished + timedelta(seconds=job["spec"]["ttlSecondsAfterFinished"])


class TTLAfterFinishedController(Controller):
    name = "ttl-after-finished-controller"

    def setup(self) -> None:
        self.jobs: Informer = self.context.informers.informer(JOB_API_VERSION, "jobs")
        self.jobs.add_handler(self._on_job)

    def _on_job(self, old: dict | None, new: dict | None) -> None:
        if new is not None and needs_cleanup(new):
            self.enqueue(new)

    def _time_left(self, job: Mapping[str, Any]) -> float | None:
        """Seconds until `job` may be deleted (<= 0: now); None if it never will be."""
        if (job.get("metadata") or {}).get("deletionTimestamp"):
            return None
        expires = expire_time(job)
        if expires is None:
            return None
        return (expires - utc_now()).total_seconds()

    async def reconcile(self, key: str) -> float | None:
        cached = self.jobs.get(key)
        if cached is None:
            return None
        left = self._time_left(cached)
        if left is None or left > 0:
            return left
        namespace, name = split_key(key)
        try:
            fresh = await self.client.get(JOB_API_VERSION, "jobs", name, namespace)
        except ApiError as err:
            if err.not_found:
                return None
            raise
        left = self._time_left(fresh)
        if left is None or left > 0:
            return left
        log.info("deleting job %s: ttlSecondsAfterFinished has expired", key)
        try:
            await self.client.delete(JOB_API_VERSION, "jobs", name, namespace,
                                     propagation_policy="Background",
                                     preconditions={"uid": fresh["metadata"]["uid"]})
        except ApiError as err:
            if not err.not_found:
                raise
        return None


CONTROLLER = TTLAfterFinishedController
