"""``ray.util.scheduling_strategies``: node affinity (kit has no placement groups).

Example:
    >>> from kit.ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
"""

from __future__ import annotations

from kit.scheduling import NodeAffinitySchedulingStrategy

__all__ = ["NodeAffinitySchedulingStrategy"]
