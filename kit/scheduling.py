"""Placement options for tasks and actors (Ray's names)."""

from __future__ import annotations


class NodeAffinitySchedulingStrategy:
    """Run a task or actor on one node: ``f.options(scheduling_strategy=...)``.

    With ``soft=False`` a task runs only there, and fails with ``NodeDiedError``
    if that node dies before it runs. With ``soft=True`` the node is a
    preference: a task runs elsewhere when the node has no free slot or is gone
    (so a task that must be run again after its node died can run). Actors are
    always placed on the node.

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
