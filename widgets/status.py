"""``StatusLine``: one line for one task: queued, running on node X, done or failed, with time.

    StatusLine(ref) ── add ──▶ Updater thread, each poll:
                                 events for ref's task ──▶ state, node (running, finished...)
                                 ref ready (kit.wait timeout=0) and no event yet ──▶ done or failed
                                 draw status_text(state, node, elapsed) if it changed

Made for ``%%remote --no-block`` cells: the magic displays it under the cell and
can also drive it by hand (``set("running", node="n1")``). The ref is held by
weak reference: when the notebook drops it, the line follows the task's events
only.
"""

from __future__ import annotations

import html
import threading
import time
import weakref

import ipywidgets as w

from .updater import default_updater, sync
from .view import status_text

_TERMINAL = ("finished", "failed", "lost")
_COLOURS = {"finished": "#2e7d32", "failed": "#c62828", "lost": "#757575"}


class StatusLine(w.HTML):
    """A one-line status for a task, updated by the shared updater thread.

    Args:
        ref: the ObjectRef of the task's (first) result, or None to drive the
            line by hand with ``set()``.
        label: a name shown first (e.g. ``"cell 3"``).
        updater: the ``Updater`` to use (default: the shared one).

    Attributes:
        state: ``submitted``, ``queued``, ``running``, ``finished``, ``failed``
            or ``lost`` (the cluster went away first).
        node: the tag of the node the task ran on, once known.
        elapsed: seconds from creation to the last change (to the end once done).

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
        self._updater = updater if updater is not None else default_updater()
        self.label = label or ""
        self.started = time.time()
        self.state = "submitted"
        self.node = None
        self.elapsed = 0.0
        self._ref = None
        self._task = None
        self._node_hex = None
        self._text = None
        self._lock = threading.Lock()  # set() by hand and the updater's ticks take turns
        self._draw(self.started)
        if ref is not None:
            self.track(ref)

    # ---- public ------------------------------------------------------------------

    def track(self, ref):
        """Follow the task that makes ``ref`` (registers with the updater)."""
        self._ref = weakref.ref(ref)
        self._task = ref.task_id().hex()
        self._updater.add(self)

    def set(self, state, node=None):
        """Set the state by hand (for callers that know it first), and redraw."""
        with self._lock:
            self.state = state
            if node is not None:
                self.node = node
            self._draw(time.time())
        if state in _TERMINAL:
            self._updater.remove(self)

    @property
    def done(self) -> bool:
        """True once the task finished, failed or was lost."""
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
        return status_text(self.state, self.node, self.elapsed, self.label)

    def __repr__(self):
        return self.text()

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
            if e.get("task_id") != self._task:
                continue
            st = e.get("state")
            if st in ("queued", "running", "finished", "failed") and \
                    _rank(st) >= _rank(self.state):
                self.state = st
                if e.get("node"):
                    self._node_hex = e["node"]
        if self._node_hex:
            self.node = tick.names.get(self._node_hex) or self._node_hex[:8]
        if not self.done:
            ref = self._ref() if self._ref is not None else None
            if ref is not None and self._updater.source.ready([ref]):
                fut = ref.future()
                self.state = "failed" if fut.done() and fut.exception() is not None \
                    else "finished"
        self._draw(tick.now)
        return not self.done

    def _gone(self, reason):
        with self._lock:
            if not self.done:
                self.state = "lost"
                self._draw(time.time())

    def _draw(self, now):
        self.elapsed = max(0.0, now - self.started)
        text = self.text()
        if text == self._text:
            return
        self._text = text
        colour = _COLOURS.get(self.state, "#1565c0")
        sync([(self, {"value": f'<span style="color:{colour}">{html.escape(text)}</span>'})])


def _rank(state):
    return {"submitted": 0, "queued": 1, "running": 2, "finished": 3, "failed": 3}.get(state, 0)
