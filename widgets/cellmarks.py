"""Which task events belong to which notebook cell: the event cursor at each cell's start.

    IPython pre_run_cell ──▶ CellMarks.mark(): (cluster generation, last event seq)
    plot_timeline()      ──▶ CellMarks.window(source): the events of the running cell,
                             or else of the last cell that ran tasks

A timeline drawn with no events given shows the tasks of one cell, not everything
since the cluster started. Marks are kept for the last ``KEEP`` cells; outside
IPython there are none and a window is every event the head kept.
"""

from __future__ import annotations

import threading

from .source import LATEST

KEEP = 40  # cells remembered


class CellMarks:
    """Event cursors at the start of recent cells, for one source.

    Example:
        >>> marks = CellMarks()
        >>> marks.marks
        []
    """

    def __init__(self):
        self.marks: list = []  # (generation, seq) at the start of each cell, oldest first
        self._lock = threading.Lock()

    def mark(self, source) -> None:
        """Record where the source's event log stands (a cell is about to run)."""
        try:
            if not source.alive():
                return
            gen = source.generation()
            seq = source.events(LATEST)[0]
        except Exception:  # noqa: BLE001 - no cluster, or it is going: nothing to mark
            return
        with self._lock:
            self.marks.append((gen, seq))
            del self.marks[:-KEEP]

    def window(self, source) -> list:
        """The task events of the running cell, or of the last cell that ran tasks.

        Falls back to every event kept when no cell mark belongs to this cluster.
        """
        gen = source.generation()
        with self._lock:
            seqs = [seq for g, seq in self.marks if g is gen]
        if not seqs:
            return source.events(0)[1]
        _, events = source.events(seqs[0])
        bounds = seqs + [float("inf")]
        for i in range(len(seqs) - 1, -1, -1):  # the running cell first, then back
            lo, hi = bounds[i], bounds[i + 1]
            part = [e for e in events if lo < e.get("seq", 0) <= hi]
            if any(e.get("state") in ("finished", "failed") for e in part):
                return part
        return events


_marks = CellMarks()
_hooked = False


def marks() -> CellMarks:
    """The process's cell marks (filled once ``watch()`` has hooked into IPython)."""
    return _marks


def watch() -> None:
    """Mark every cell's start in the running IPython shell, if there is one (once)."""
    global _hooked
    if _hooked:
        return
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    from .source import CurrentSource

    source = CurrentSource()
    shell.events.register("pre_run_cell", lambda *info: _marks.mark(source))
    _hooked = True
    _marks.mark(source)  # the running cell (it imported widgets) started before the hook
