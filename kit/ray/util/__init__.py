"""``ray.util``: ``ActorPool``, ``as_completed``, ``map_unordered`` and the submodules
``queue``, ``state``, ``multiprocessing``, ``joblib``, ``scheduling_strategies``
(imported when first used).

Example:
    >>> from kit.ray.util import ActorPool, as_completed, map_unordered
"""

from __future__ import annotations

import importlib

from .actor_pool import ActorPool
from .helpers import as_completed, get_node_ip_address, list_named_actors, map_unordered

_SUBMODULES = ("queue", "state", "multiprocessing", "joblib", "scheduling_strategies")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(
        f"module 'ray.util' (kit.ray.util) has no attribute {name!r}: kit does not provide "
        f"it (placement groups, collective, metrics...); see 'What kit covers of Ray's API' "
        f"in kit's README"
    )


__all__ = ["ActorPool", "as_completed", "get_node_ip_address", "list_named_actors",
           "map_unordered"]  # fmt: skip
