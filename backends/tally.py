"""Task events and per-node counts for engines that do not keep them for us.

Pure (no engine, no threads): it runs inside Ray's channel actor and Dask's
scheduler plugin, and is unit-tested alone.

    record(key, label, state, node, time)   state: running, finished, failed, cancelled
        ─▶ events: a bounded log with sequence numbers (what ``events(since)`` reads)
        ─▶ counts: {node: {"running", "done", "failed"}}

A task that ends without a node (cancelled before it ran) changes no count.
"""

from __future__ import annotations

import collections

KEEP = 100_000  # events kept for readers that come late


class Tally:
    """The event log and counts.

    Example:
        >>> t = Tally()
        >>> t.record("a", "f", "running", "n1", 1.0)
        >>> t.record("a", "f", "finished", None, 2.0)
        >>> t.counts["n1"], t.since(0)[1][-1]["started"], t.since(0)[1][-1]["node"]
        ({'running': 0, 'done': 1, 'failed': 0}, 1.0, 'n1')
    """

    def __init__(self, keep: int = KEEP):
        self.seq = 0
        self.log = collections.deque(maxlen=keep)
        self.counts: dict = {}
        self.running: dict = {}  # key -> (node, started)

    def _node(self, node):
        return self.counts.setdefault(node, {"running": 0, "done": 0, "failed": 0})

    def record(self, key, label, state, node=None, time=0.0, worker=None) -> None:
        started = None
        if state == "running":
            if key in self.running:
                return
            self.running[key] = (node, time)
            self._node(node)["running"] += 1
        elif state in ("finished", "failed", "cancelled"):
            was = self.running.pop(key, None)
            if was is not None:
                node = node or was[0]
                started = was[1]
                self._node(was[0])["running"] -= 1
            if node is not None and state != "cancelled":
                self._node(node)["done" if state == "finished" else "failed"] += 1
        self.seq += 1
        self.log.append(
            {
                "seq": self.seq,
                "task_id": key,
                "label": label,
                "state": state,
                "time": time,
                "worker": worker,
                "node": node,
                "started": started,
            }
        )

    def since(self, since=0):
        """``(last seq, [events after since])``."""
        if since >= self.seq:
            return self.seq, []
        return self.seq, [e for e in self.log if e["seq"] > since]
