"""The scheduling plugins, one rule per module, and the default profile that uses them.

The order below is the order plugins run at each extension point, upstream's default
profile: cheap filters that rule out a node for good (cordons, taints, node affinity)
before resources, then volumes, and the pod-counting rules (spread, inter-pod affinity)
last.
"""

from __future__ import annotations

from ..framework import Framework, Handle, Plugin
from .balancedallocation import BalancedAllocation
from .coscheduling import Coscheduling
from .defaultbinder import DefaultBinder
from .defaultpreemption import DefaultPreemption
from .interpodaffinity import InterPodAffinity
from .nodeaffinity import NodeAffinity
from .nodename import NodeName
from .noderesources import NodeResourcesFit
from .nodeunschedulable import NodeUnschedulable
from .podtopologyspread import PodTopologySpread
from .prioritysort import PrioritySort
from .tainttoleration import TaintToleration
from .volumebinding import VolumeBinding

DEFAULT_PLUGINS: tuple[type[Plugin], ...] = (
    PrioritySort,
    NodeUnschedulable,
    NodeName,
    TaintToleration,
    NodeAffinity,
    NodeResourcesFit,
    VolumeBinding,
    PodTopologySpread,
    InterPodAffinity,
    BalancedAllocation,
    DefaultPreemption,
    Coscheduling,
    DefaultBinder,
)


def default_framework(handle: Handle) -> Framework:
    return Framework(handle, [plugin(handle) for plugin in DEFAULT_PLUGINS])
