"""``StatusLine``: one line for a task (or a batch): queued, running on node X, done or failed.

    StatusLine(refs) ── add ──▶ Updater thread, each poll:
                                  events of the tasks ──▶ each task's state and node
                                  refs ready (source.ready), no final event yet
                                                      ──▶ that task done or failed
                                  draw status_text(state, nodes, elapsed, counts) if changed

The ``%%remote --no-block`` magic displays one under each cell (one line for
all ``--map`` items) and, when the cell's tasks have ended, tells it how each
one ended (``set_task``), so the last line is right even if events lag. A line
can also be driven by hand (``set("running", node="n1")``). Refs are held by
weak reference: when the notebook drops them, the line follows events only.
"""

from __future__ import annotations

import html
import threading
import time
import weakref

import ipywidgets as w

from backends.base import short_id

from .display import while_live
from .source import ref_failed, task_key
from .updater import default_updater, sync
from .view import _natural, status_text

_TERMINAL = ("finished", "failed", "cancelled", "lost")
_COLOURS = {"finished": "#2e7d32", "failed": "#c62828", "cancelled": "#757575", "lost": "#757575"}


class _Task:
    __slots__ = ("ref", "state", "node_hex", "node", "start", "end")

    def __init__(self, ref):
        try:
            self.ref = weakref.ref(ref)
        except TypeError:  # ray.ObjectRef: held, it is the task's small first value
            self.ref = lambda: ref
        self.state = "submitted"
        self.node_hex = None
        self.node = None
        self.start = None  # when it began running (its events' times), once known
        self.end = None  # when it ended


class StatusLine(w.HTML):
    """A one-line status for a task or a batch of tasks, updated by the shared updater thread.

    Args:
        ref: the ObjectRef of the task's (first) result, a list of such refs
            (one per task: the line counts them), or None to drive the line by
            hand with ``set()``.
        label: a name shown first (e.g. ``"cell 3"``).
        updater: the ``Updater`` to use (default: the shared one).

    Attributes:
        state: ``submitted``, ``queued``, ``running``, ``finished``, ``failed``,
            ``cancelled`` or ``lost`` (the cluster went away first); for a batch,
            ``finished`` once all finished, ``failed`` once all ended and one failed.
        node: the tag of the node the task ran on, once known (for a batch:
            the tags, comma-separated).
        elapsed: seconds the task (or batch) has run: from when the first one
            started (its "running" event) to now, or to the last one's end once
            done; 0 while nothing has started (the time waiting for a worker is
            not run time).

    Example:
        >>> import kit, widgets
        >>> _ = kit.init(num_cpus=1)
        >>> @kit.remote
        ... def f():
        ...     return 1
        >>> line = widgets.StatusLine(f.remote(), label="f")
        >>> line.wait(10)
        True
        >>> line.state
        'finished'
        >>> kit.shutdown()
    """

    needs = frozenset({"nodes", "events"})

    def __init__(self, ref=None, *, label="", updater=None, **kwargs):
        super().__init__(**kwargs)
        self.add_class("kit-status")
        self.add_class("kit-header")  # says so if its kernel dies (display.while_live)
        self._updater = updater if updater is not None else default_updater()
        self.label = label or ""
        self.started = time.time()
        self.state = "submitted"
        self.node = None
        self.elapsed = 0.0
        self._tasks = {}  # task id hex -> _Task, in the order given
        self._text = None
        self._lock = threading.Lock()  # set() by hand and the updater's ticks take turns
        self._draw(self.started)
        if ref is not None:
            self.track(ref)

    # ---- public ------------------------------------------------------------------

    def track(self, refs):
        """Follow the task(s) that make ``refs`` (registers with the updater)."""
        with self._lock:
            for ref in refs if isinstance(refs, (list, tuple)) else [refs]:
                self._tasks[task_key(self._updater.source, ref)] = _Task(ref)
            self._aggregate()
            self._draw(time.time())
        self._updater.add(self)

    def set(self, state, node=None):
        """Set the state of the whole line by hand (for callers that know it first), and redraw."""
        with self._lock:
            self.state = state
            if node is not None:
                self.node = node
            self._draw(time.time())
        if state in _TERMINAL:
            self._updater.remove(self)

    def set_task(self, ref, state, node=None):
        """Set the state (and node tag) of one tracked task by hand, and redraw.

        Once set to a final state, later events do not change that task.
        """
        with self._lock:
            task = self._tasks.get(task_key(self._updater.source, ref))
            if task is None:
                return
            task.state = state
            if node:
                task.node = node
            if state in _TERMINAL and task.end is None:
                task.end = time.time()
            self._aggregate()
            self._draw(time.time())
        if self.done:
            self._updater.remove(self)

    def settle(self) -> None:
        """Read now, in this thread, which tracked tasks have ended, and redraw.

        For callers that have just waited for the tasks (a blocking ``--map``
        cell): the line shows the end at once instead of at the updater's next poll.
        """
        with self._lock:
            src = self._updater.source
            pending = [
                (t, t.ref())
                for t in self._tasks.values()
                if t.state not in _TERMINAL and t.ref() is not None
            ]
            try:
                ready = set(src.ready([r for _, r in pending])) if pending else set()
            except Exception:  # noqa: BLE001 - the cluster went away: the updater says so
                ready = set()
            now = time.time()
            for task, ref in pending:
                if ref in ready:
                    task.state = "failed" if ref_failed(src, ref) else "finished"
                    task.end = task.end or now
            self._aggregate()
            self._draw(now)
        if self.done:
            self._updater.remove(self)

    @property
    def done(self) -> bool:
        """True once the task(s) finished, failed, were cancelled or lost."""
        return self.state in _TERMINAL

    def wait(self, timeout=None) -> bool:
        """Block until the line shows a final state; False on timeout."""
        deadline = None if timeout is None else time.time() + timeout
        while not self.done:
            if deadline is not None and time.time() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def text(self) -> str:
        """The line as plain text."""
        total = len(self._tasks)
        if total <= 1:
            return status_text(self.state, self.node, self.elapsed, self.label)
        states = [t.state for t in self._tasks.values()]
        return status_text(
            self.state,
            self.node,
            self.elapsed,
            self.label,
            done=sum(s in ("finished", "failed") for s in states),
            failed=states.count("failed"),
            total=total,
        )

    def __repr__(self):
        return self.text()

    def html(self) -> str:
        """The line as HTML (coloured by state), as the widget shows it."""
        colour = _COLOURS.get(self.state, "#1565c0")
        return f'<span style="color:{colour}">{html.escape(self.text())}</span>'

    def _repr_mimebundle_(self, include=None, exclude=None, **kwargs):
        if self.comm is None:
            return {"text/plain": self.text()}
        data = super()._repr_mimebundle_(**kwargs)
        data["text/plain"] = self.text()
        return data

    def close(self):
        """Stop updating and close the widget."""
        self._updater.remove(self)
        super().close()

    # ---- the updater's calls -----------------------------------------------------

    def _tick(self, tick):
        with self._lock:
            return self._update(tick)

    def _update(self, tick):
        if self.done:
            return False
        for e in tick.events or ():
            task = self._tasks.get(e.get("task_id"))
            if task is None or task.state in _TERMINAL:
                continue
            st = e.get("state")
            if st == "running" and e.get("time"):
                task.start = task.start or e["time"]
            elif st in ("finished", "failed"):
                task.start = e.get("started") or task.start
                task.end = e.get("time") or task.end
            if st in ("queued", "running", "finished", "failed") and _rank(st) >= _rank(task.state):
                task.state = st
                if e.get("node"):
                    task.node_hex = e["node"]
        pending = []
        for task in self._tasks.values():
            if task.node_hex:
                task.node = tick.names.get(task.node_hex) or short_id(task.node_hex)
            ref = task.ref()
            if task.state not in _TERMINAL and ref is not None:
                pending.append((task, ref))
        if pending:
            src = self._updater.source
            ready = set(src.ready([ref for _, ref in pending]))
            for task, ref in pending:
                if ref in ready:
                    task.state = "failed" if ref_failed(src, ref) else "finished"
        self._aggregate()
        self._draw(tick.now)
        return not self.done

    def _aggregate(self):
        """The line's state and nodes from its tasks' (no tasks: left as set by hand)."""
        tasks = list(self._tasks.values())
        if not tasks:
            return
        states = {t.state for t in tasks}
        if "lost" in states:
            self.state = "lost"
        elif states <= {"finished", "failed", "cancelled"}:
            self.state = (
                "failed"
                if "failed" in states
                else "cancelled"
                if "cancelled" in states
                else "finished"
            )
        else:
            self.state = (
                "running"
                if "running" in states
                else "queued"
                if "queued" in states
                else "submitted"
            )
        nodes = [t.node for t in tasks if t.node]
        self.node = ", ".join(sorted(set(nodes), key=_natural)) if nodes else self.node

    def _gone(self, reason):
        with self._lock:
            if not self.done:
                for t in self._tasks.values():
                    if t.state not in _TERMINAL:
                        t.state = "lost"
                self.state = "lost"
                self._draw(time.time())

    def _run_time(self, now):
        tasks = list(self._tasks.values())
        if not tasks:  # driven by hand: from creation
            return max(0.0, now - self.started)
        starts = [t.start for t in tasks if t.start is not None]
        if not starts:
            if self.state in _TERMINAL and self.state != "lost":  # ended, no event seen
                return max(0.0, now - self.started)
            return None
        if self.state in _TERMINAL:
            ends = [t.end for t in tasks if t.end is not None]
            now = max(ends) if ends else now
        return max(0.0, now - min(starts))

    def _draw(self, now):
        self.elapsed = self._run_time(now)
        text = self.text()
        if text == self._text:
            return
        self._text = text
        line = self.html()  # the widget's copy says so if its kernel dies while it runs
        sync([(self, {"value": line if self.state in _TERMINAL else while_live(line)})])


def _rank(state):
    return {"submitted": 0, "queued": 1, "running": 2, "finished": 3, "failed": 3}.get(state, 0)
