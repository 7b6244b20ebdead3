"""Where the widgets' data comes from: a small backend interface, and kit's own.

The widgets never call the runtime except through a ``Source``:

    alive()          -> bool                 is the cluster still there?
    nodes()          -> [node dict]          like ``kit.nodes()``
    waiting()        -> int                  tasks waiting for a node (``kit.cluster_status()``)
    events(since)    -> (last_seq, [event])  task events after ``since``
    ready(refs)      -> [ref]                the refs whose objects exist

``KitSource`` reads kit's public API; ``events`` is the one call that still uses
a private query (``events_since`` below) until kit exposes it publicly. Tests
pass a fake ``Source`` to drive the widgets without a cluster.
"""

from __future__ import annotations

#: ``events(since)`` with this returns no events, only the last sequence number.
LATEST = 2 ** 62


class ClusterGone(Exception):
    """The cluster went away (``kit.shutdown()``, or the head stopped answering)."""


def events_since(since=0):
    """Task events after sequence number ``since``: ``(last_seq, [event dict, ...])``.

    Each event is a dict like those of ``kit.timeline()``: ``seq``, ``task_id``,
    ``label``, ``state`` (``queued``, ``running``, ``finished``, ``failed``),
    ``time``, ``worker``, ``node``, ``started``. This wraps the head's private
    ``events`` query; kit should expose it as ``kit.events(since)``.

    Args:
        since: the last sequence number already seen (0 for everything kept).

    Raises:
        KitError: kit is not initialized.

    Example:
        >>> import kit, widgets
        >>> _ = kit.init(num_cpus=1)
        >>> last, events = widgets.source.events_since(widgets.source.LATEST)
        >>> events
        []
        >>> kit.shutdown()
    """
    import kit
    public = getattr(kit, "events", None)
    if public is not None:
        return public(since)
    last, raw = kit.api._current_client().query("events", since)
    out = []
    for e in raw:
        seq, tid, label, state, t, wid, node = e[:7]
        out.append({"seq": seq, "task_id": tid.hex(), "label": label, "state": state,
                    "time": t, "worker": wid.hex() if wid else None,
                    "node": node.hex() if node else None,
                    "started": e[7] if len(e) > 7 else None})
    return last, out


class KitSource:
    """The widgets' view of kit's runtime in this process.

    Example:
        >>> import kit, widgets
        >>> _ = kit.init(num_cpus=1)
        >>> src = widgets.KitSource()
        >>> src.alive(), len(src.nodes())
        (True, 1)
        >>> kit.shutdown()
    """

    def alive(self) -> bool:
        import kit
        return kit.is_initialized()

    def nodes(self):
        import kit
        return kit.nodes()

    def waiting(self) -> int:
        """Tasks submitted but not yet on any node's worker."""
        import kit
        return int(kit.cluster_status()["waiting"])

    def events(self, since):
        return events_since(since)

    def ready(self, refs):
        import kit
        if not refs:
            return []
        ready, _ = kit.wait(list(refs), num_returns=len(refs), timeout=0)
        return ready
