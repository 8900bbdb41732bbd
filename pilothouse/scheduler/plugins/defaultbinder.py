"""DefaultBinder: `POST pods/{name}/binding`, which sets `spec.nodeName` on the server."""

from __future__ import annotations

from ...client import ApiError
from ..framework import BindPlugin, CycleState, Status
from ..nodeinfo import PodInfo


class DefaultBinder(BindPlugin):
    name = "DefaultBinder"

    async def bind(self, state: CycleState, pod: PodInfo, node: str) -> Status | None:
        client = self.handle.client
        if client is None:
            return Status.error("no API client to bind with")
        try:
            await client.bind(pod.namespace, pod.name, pod.uid, node)
        except ApiError as err:
            return Status.error(f"binding rejected: {err}")
        return None
