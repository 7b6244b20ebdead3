"""The dashboard's picture of the cluster, folded from the head's task events. Pure.

    events (the "events" query: seq, task id, label, state, time, worker, node, started)
        │ Model.apply(events, now)
        ▼
    tasks      recent tasks by id: state, node, worker, times, error   (Tasks page)
    bars       finished runs of the last ``window`` seconds            (Task stream)
    functions  per label: submitted, running, done, failed             (progress bars)
    current    per worker: the task it runs now                        (Workers page)
    owners     per submitting client: what it submitted, by label      (Drivers page)
    calls      per worker: tasks it ended                              (actors' calls done)
    cluster    the autoscaler's decisions (events of state "cluster"), newest last

No clock, thread or socket: ``now`` is passed in, so tests feed events and read
the result. Every change takes the next number of ``seq``; rows and bars keep
the number of their last change, so a page is sent only what changed since the
number it last saw (``rows_since``, ``bars_since``).
"""

from __future__ import annotations

from collections import OrderedDict, deque

# A task row: a list, indexed by these (sent to the page as it is).
TID, LABEL, STATE, NODE, WORKER, SUBMITTED, STARTED, FINISHED, OWNER, SEQ, ERROR = range(11)
ENDED = ("finished", "failed", "cancelled")
LIVE = ("queued", "running")


class Model:
    """Tasks, task-stream bars and counts, from task events (see the module docstring).

    Args:
        window: seconds of finished runs kept for the task stream.
        keep: task rows kept (the oldest ended ones are dropped first).
        max_bars: runs kept for the task stream at most, whatever the window.

    Example:
        >>> m = Model()
        >>> _ = m.apply([(1, b"t" * 15, "f", "queued", 10.0, None, None),
        ...          (2, b"t" * 15, "f", "running", 10.5, b"w" * 8, b"n" * 8),
        ...          (3, b"t" * 15, "f", "finished", 11.0, b"w" * 8, b"n" * 8, 10.5)], now=11.0)
        >>> m.functions["f"], m.totals["finished"], len(m.bars)
        ([1, 0, 1, 0, 0], 1, 1)
    """

    def __init__(self, window: float = 300.0, keep: int = 5000, max_bars: int = 20000):
        self.window = window
        self.keep = keep
        self.seq = 0
        self.last_event = 0
        self.tasks: OrderedDict = OrderedDict()  # task id -> row (a list, see TID...)
        self.bars: deque = deque(maxlen=max_bars)  # (seq, start, end, label, worker, node, state)
        # label -> [submitted, running, done, failed, cancelled]
        self.functions: dict = {}
        self.current: dict = {}  # worker id -> (task id, label, started)
        self.owners: dict = {}  # client id -> {label: [submitted, done, failed]}
        self.calls: dict = {}  # worker id -> tasks it ended
        self.totals = {"submitted": 0, "running": 0, "finished": 0, "failed": 0, "cancelled": 0}
        self.cluster: deque = deque(maxlen=50)  # (time, text): the autoscaler's decisions

    # ---- folding events ------------------------------------------------------------

    def apply(self, events, now: float) -> int:
        """Fold task events (raw tuples from the head, oldest first); return how many."""
        for e in events:
            self._one(e, now)
        if events:
            self.last_event = events[-1][0]
        self._trim(now)
        return len(events)

    def _row(self, tid, label, now):
        row = self.tasks.get(tid)
        if row is None:
            row = [tid, label, "new", None, None, None, None, None, tid[:8], 0, None]
            self.tasks[tid] = row
        return row

    def _one(self, e, now):
        tid, label, state, t = e[1], e[2], e[3], e[4]
        t = now if t is None else t
        if state == "cluster":  # not a task: a decision of the autoscaler (kit/scaling.py)
            self.cluster.append((t, label))
            return
        row = self._row(tid, label, now)
        fn = self.functions.get(label)
        if fn is None:
            fn = self.functions[label] = [0, 0, 0, 0, 0]
        old = row[STATE]
        if old == "new":  # counted once, whatever its first event (older ones may be gone)
            fn[0] += 1
            self.totals["submitted"] += 1
            self._owner(row[OWNER], label)[0] += 1
        if state == "queued":
            if old == "new":
                row[SUBMITTED] = t
            elif old == "running":  # sent back to the queue (its worker died)
                self._stop_running(row, fn)
        elif state == "running":
            self._running(row, fn, old, t, e[5], e[6])
        elif state in ENDED:
            if old in ENDED:
                return
            self._ended(row, fn, old, state, t, e)
        else:
            return
        row[STATE] = state
        self.seq += 1
        row[SEQ] = self.seq
        self.tasks.move_to_end(tid)

    def _stop_running(self, row, fn):
        fn[1] -= 1
        self.totals["running"] -= 1
        self._leave(row)

    def _running(self, row, fn, old, t, wid, node):
        if old != "running":
            fn[1] += 1
            self.totals["running"] += 1
        else:
            self._leave(row)
        row[STARTED], row[WORKER], row[NODE] = t, wid, node
        if wid is not None:
            self.current[wid] = (row[TID], row[LABEL], t)

    def _ended(self, row, fn, old, state, t, e):
        if old == "running":
            self._stop_running(row, fn)
        wid, node = e[5], e[6]
        started = e[7] if len(e) > 7 and e[7] is not None else row[STARTED]
        row[STARTED], row[FINISHED] = started, t
        if wid is not None:
            row[WORKER], row[NODE] = wid, node
            self.calls[wid] = self.calls.get(wid, 0) + 1
        index = 2 + ENDED.index(state)
        fn[index] += 1
        self.totals[state] += 1
        if state != "cancelled":
            self._owner(row[OWNER], row[LABEL])[index - 1] += 1
        if started is not None and row[WORKER] is not None:
            self.seq += 1
            self.bars.append((self.seq, started, t, row[LABEL], row[WORKER], row[NODE], state))

    def _leave(self, row):
        cur = self.current.get(row[WORKER])
        if cur is not None and cur[0] == row[TID]:
            del self.current[row[WORKER]]

    def _owner(self, cid, label):
        labels = self.owners.get(cid)
        if labels is None:
            labels = self.owners[cid] = {}
        counts = labels.get(label)
        if counts is None:
            counts = labels[label] = [0, 0, 0]
        return counts

    def _trim(self, now):
        tasks = self.tasks
        extra = len(tasks) - self.keep
        looked, size = 0, len(tasks)
        while extra > 0 and looked < size:
            tid, row = tasks.popitem(last=False)
            looked += 1
            if row[STATE] in LIVE:  # still live: keep it (it moves to the end, as changed)
                self.seq += 1
                row[SEQ] = self.seq
                tasks[tid] = row
            else:
                extra -= 1
        bars = self.bars
        while bars and bars[0][2] < now - self.window:
            bars.popleft()

    def note_error(self, tid, text) -> bool:
        """A failed task's traceback (from the head's probe); False if the row is gone."""
        row = self.tasks.get(tid)
        if row is None:
            return False
        row[ERROR] = text
        self.seq += 1
        row[SEQ] = self.seq
        self.tasks.move_to_end(tid)
        return True

    # ---- reading ---------------------------------------------------------------------

    def rows_since(self, seq: int, limit: int = 2000) -> list:
        """Task rows changed after ``seq``, oldest change first (the newest ``limit``)."""
        out: list = []
        for row in reversed(self.tasks.values()):
            if row[SEQ] <= seq or len(out) >= limit:
                break
            out.append(row)
        out.reverse()
        return out

    def bars_since(self, seq: int, limit: int = 5000) -> list:
        """Task-stream bars added after ``seq``, oldest first (the newest ``limit``)."""
        out: list = []
        for bar in reversed(self.bars):
            if bar[0] <= seq or len(out) >= limit:
                break
            out.append(bar)
        out.reverse()
        return out

    def function_rows(self) -> list:
        """``[label, submitted, running, done, failed, cancelled]`` per function, by label."""
        return [[label, *counts] for label, counts in sorted(self.functions.items())]
