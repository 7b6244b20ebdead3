"""``ray.util.scheduling_strategies`` names."""

from ..scheduling import NodeAffinitySchedulingStrategy  # noqa: F401
