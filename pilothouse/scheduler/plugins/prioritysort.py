"""PrioritySort: higher `spec.priority` first, then whoever has waited longest."""

from __future__ import annotations

from typing import Any

from ..framework import QueueSortPlugin
from ..queue import QueuedPod


class PrioritySort(QueueSortPlugin):
    name = "PrioritySort"

    def sort_key(self, queued: QueuedPod) -> tuple[Any, ...]:
        return (-queued.info.priority, queued.timestamp)
