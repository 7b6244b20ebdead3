"""Placement options for tasks and actors (Ray's names)."""

from __future__ import annotations


class NodeAffinitySchedulingStrategy:
    """Run a task or actor on one node: ``f.options(scheduling_strategy=...)``.

    Example:
        >>> import kit
        >>> node = kit.nodes()[0]["NodeID"]
        >>> s = NodeAffinitySchedulingStrategy(node_id=node, soft=False)
    """

    def __init__(self, node_id: str, soft: bool = False):
        self.node_id = node_id
        self.soft = soft

    def __repr__(self):
        return f"NodeAffinitySchedulingStrategy({self.node_id!r}, soft={self.soft})"
