"""``ray.util.scheduling_strategies``: node affinity (kit has no placement groups).

``PlacementGroupSchedulingStrategy`` is here so that a program naming it imports; making
one raises ``NotImplementedError`` saying what to use instead.

Example:
    >>> from kit.ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    >>> from kit.ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
    >>> PlacementGroupSchedulingStrategy(None)
    Traceback (most recent call last):
    ...
    NotImplementedError: kit has no placement groups ...
"""

from __future__ import annotations

from kit.scheduling import NodeAffinitySchedulingStrategy


class PlacementGroupSchedulingStrategy:
    """Ray's placement-group strategy: kit has none, so making one is refused."""

    def __init__(self, placement_group=None, *args, **kwargs):
        raise NotImplementedError(
            "kit has no placement groups (see 'What kit covers of Ray's API' in kit's "
            "README): place tasks with NodeAffinitySchedulingStrategy or custom node "
            "resources instead"
        )


__all__ = ["NodeAffinitySchedulingStrategy", "PlacementGroupSchedulingStrategy"]
