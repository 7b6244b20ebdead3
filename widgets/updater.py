"""The updater: one daemon thread that polls the cluster and redraws every live view.

    main thread                         updater thread (at most 10 polls a second)
    ───────────                         ──────────────────────────────────────────
    ClusterMonitor() ─ add(view) ──▶    loop:
    progress(refs)   ─ add(view) ──▶      source.alive()?  no ─▶ view._gone(reason), thread ends
    StatusLine(ref)  ─ add(view) ──▶      nodes  = source.nodes()        (once, if a view needs it)
                                          waiting = source.waiting()     (once, if a view needs it)
    kit.get(...) blocks; the            events = source.events(cursor) (once, if a view needs it)
    thread keeps drawing                  view._tick(tick) for each view: it builds a pure view,
                                          compares it with the last one and sets only the
                                          widget traits that changed, inside hold_sync()

``kit.shutdown()`` (through the ``shutdown`` hook of ``kit.frontend``) and
``%cluster stop`` do not wait for the thread to notice: ``final()`` reads the
cluster once more in the caller's thread just before it stops, and ``check()``
tells every view at once afterwards, so the cell that stops the cluster shows
(and records) every view's final state.

The updater holds its views by weak reference; a view leaves when it is closed,
finished or garbage. The thread stops when no view is left, when ``stop()`` is
called, or when the cluster goes away (every view is told, then dropped). ipykernel
>= 7.1 sends comm messages from any thread, so widgets update while the notebook's
main thread blocks in ``kit.get``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from typing import NamedTuple

from .source import LATEST, CurrentSource

log = logging.getLogger("widgets")

MIN_INTERVAL = 0.1  # seconds between polls: at most 10 a second
SCALING_EVERY = 1.0  # seconds between two reads of the autoscaler's decisions
EVENT_BACKLOG = 2000  # events re-read for a view that joins late (its task may be older)


class Tick(NamedTuple):
    """What one poll read, handed to every view.

    Attributes:
        now: ``time.time()`` of the poll.
        nodes: the nodes snapshot (``kit.nodes()``), or None if no view needs it.
        events: new task events (dicts), or None if no view needs them.
        names: ``{node id hex: tag}`` from the snapshot (empty without one).
        waiting: tasks waiting for a node (``source.waiting()``), or None if no
            view needs it.
        scaling: the autoscaler's last decisions (``source.scaling()``, read at most
            once a second), or None if no view needs them.
    """

    now: float
    nodes: list
    events: list
    names: dict
    waiting: int = None
    scaling: list = None


def in_kernel() -> bool:
    """True inside a Jupyter kernel (where widgets can be shown), False in scripts and terminals."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


def sync(pairs) -> int:
    """Set the widget traits that differ from ``values``; unchanged widgets send nothing.

    All changed widgets are held with ``hold_sync()`` together, so each sends one
    message with all its changed traits when the redraw ends.

    Args:
        pairs: ``[(widget, {trait: value}), ...]``.

    Returns:
        The number of widgets that changed (messages sent).

    Example:
        >>> import ipywidgets
        >>> h = ipywidgets.HTML("a")
        >>> sync([(h, {"value": "a"})]), sync([(h, {"value": "b"})])
        (0, 1)
    """
    changed = []
    for w, values in pairs:
        diff = {k: v for k, v in values.items() if getattr(w, k) != v}
        if diff:
            changed.append((w, diff))
    if not changed:
        return 0
    with contextlib.ExitStack() as stack:
        for w, _ in reversed(changed):  # held last-in first-out: messages go in list order
            stack.enter_context(w.hold_sync())
        for w, diff in changed:
            for k, v in diff.items():
                setattr(w, k, v)
    return len(changed)


def gone_reason(engine) -> str:
    """What the views say when the cluster of ``engine`` went away.

    Example:
        >>> gone_reason("kit"), gone_reason("ray")
        ('kit.shutdown() was called', 'the ray cluster stopped, or %cluster stop let go of it')
    """
    if engine in (None, "kit", "?"):
        return "kit.shutdown() was called"
    return f"the {engine} cluster stopped, or %cluster stop let go of it"


class Updater:
    """Polls a ``Source`` and hands each poll to the views that registered.

    Args:
        source: where data comes from (default: the current backend, kit's runtime
            unless ``%cluster connect`` chose Ray or Dask).
        interval: seconds between polls, at least 0.1.

    Attributes:
        polls: polls done so far (each is at most one query of each kind).

    Example:
        >>> import widgets
        >>> up = widgets.Updater(interval=0.2)
        >>> up.running
        False
    """

    def __init__(self, source=None, interval=MIN_INTERVAL):
        self.source = source if source is not None else CurrentSource()
        self.interval = max(MIN_INTERVAL, float(interval))
        self.polls = 0
        self._views = []  # weakref.ref to views, in the order they came
        self._lock = threading.Lock()
        self._tick_lock = threading.Lock()  # one poll and its redraws at a time
        self._thread = None
        self._stop = threading.Event()  # set to end the current thread
        self._cursor = None  # last event sequence number read
        self._generation = None  # the source's cluster the cursor belongs to
        self._engine = None  # the engine last seen alive, to say which one went
        self._rewind = False  # a view that reads events joined: re-read a backlog
        self._scaling = (float("-inf"), None)  # (when read, the autoscaler's decisions)

    # ---- registration ------------------------------------------------------------

    def add(self, view) -> None:
        """Start updating ``view`` (starts the thread if it is not running)."""
        with self._lock:
            self._views.append(weakref.ref(view))
            if "events" in getattr(view, "needs", ()):
                self._rewind = True
            if self._thread is None:
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(self._stop,), daemon=True, name="kit-widgets-updater"
                )
                self._thread.start()

    def remove(self, view) -> None:
        """Stop updating ``view`` (the thread ends when no view is left)."""
        with self._lock:
            self._views = [r for r in self._views if r() is not None and r() is not view]

    def stop(self, timeout=5.0) -> None:
        """Stop the thread now; its views are dropped as they are."""
        with self._lock:
            t, self._thread = self._thread, None
            self._views = []
            self._stop.set()
        if t is not None:
            if t is not threading.current_thread():
                t.join(timeout)

    @property
    def thread(self):
        """The running thread, or None."""
        return self._thread

    @property
    def running(self) -> bool:
        """True while the thread runs."""
        t = self._thread
        return t is not None and t.is_alive()

    def views(self):
        """The live views, in the order they were added."""
        with self._lock:
            return [v for v in (r() for r in self._views) if v is not None]

    # ---- the thread --------------------------------------------------------------

    def _run(self, stop):
        me = threading.current_thread()
        while not stop.is_set():
            started = time.monotonic()
            with self._lock:
                if self._thread is not me:
                    return
                views = [v for v in (r() for r in self._views) if v is not None]
                self._views = [weakref.ref(v) for v in views]
                if not views:
                    self._thread = None
                    return
                rewind, self._rewind = self._rewind, False
            with self._tick_lock:
                try:
                    tick = self._poll(views, rewind)
                except Exception as e:  # noqa: BLE001 - a failure to read: the cluster is gone
                    tick = None
                    reason = _reason(e)
                if tick is not None:
                    self._tick_all(views, tick, stop)
            if tick is None:
                self._gone(me, reason)
                return
            self.polls += 1
            del views, tick  # hold views only by weak reference while waiting
            stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _tick_all(self, views, tick, stop):
        for v in views:
            if stop.is_set():
                return
            try:
                keep = v._tick(tick)
            except Exception:  # noqa: BLE001 - one broken view must not stop the others
                log.exception("widgets: %r failed to update; it will not update again", v)
                keep = False
            if keep is False:
                self.remove(v)

    def _poll(self, views, rewind):
        src = self.source
        if not src.alive():
            raise _Gone(gone_reason(self._engine))
        self._engine = getattr(src, "name", None)
        generation = getattr(src, "generation", None)
        if generation is not None:
            gen = generation()
            if gen is not self._generation:  # another cluster: its events count anew
                self._generation, self._cursor = gen, None
        needs = set()
        for v in views:
            needs.update(getattr(v, "needs", ()))
        nodes = events = waiting = None
        names = {}
        if "nodes" in needs:
            nodes = src.nodes()
            names = {n.get("NodeID") or n.get("node_id"): n.get("tag") or "" for n in nodes}
        if "waiting" in needs:
            waiting = src.waiting()
        scaling = None
        if "scaling" in needs and hasattr(src, "scaling"):
            now = time.monotonic()
            if now - self._scaling[0] >= SCALING_EVERY:
                self._scaling = (now, src.scaling())
            scaling = self._scaling[1]
        if "events" in needs:
            if self._cursor is None:
                self._cursor, _ = src.events(LATEST)
                rewind = True
            since = max(0, self._cursor - EVENT_BACKLOG) if rewind else self._cursor
            last, events = src.events(since)
            self._cursor = max(self._cursor, last)
        return Tick(time.time(), nodes, events, names, waiting, scaling)

    def final(self) -> None:
        """Read the cluster once more now, in this thread, and redraw every view.

        Called just before the cluster stops, so the views end on its last counts.

        Example:
            >>> import widgets
            >>> widgets.Updater().final()   # no views: nothing to read
        """
        views = self.views()
        if not views:
            return
        with self._tick_lock:
            try:
                tick = self._poll(views, False)
            except Exception:  # noqa: BLE001 - already gone: check() will say so
                return
            self._tick_all(views, tick, threading.Event())

    def check(self, reason=None) -> bool:
        """If the cluster is gone, tell every view now (in this thread) and stop; True if gone.

        Example:
            >>> import widgets
            >>> class Down:
            ...     def alive(self): return False
            >>> widgets.Updater(source=Down()).check()
            True
        """
        try:
            alive = self.source.alive()
        except Exception:  # noqa: BLE001
            alive = False
        if alive:
            return False
        with self._tick_lock, self._lock:
            views = [v for v in (r() for r in self._views) if v is not None]
            self._views = []
            self._thread = None
            self._stop.set()
            self._cursor = None
        for v in views:
            try:
                v._gone(reason or gone_reason(self._engine))
            except Exception:  # noqa: BLE001
                log.exception("widgets: %r failed to show that the cluster is gone", v)
        return True

    def _gone(self, me, reason):
        with self._lock:
            views = [v for v in (r() for r in self._views) if v is not None]
            self._views = []
            if self._thread is me:
                self._thread = None
            self._cursor = None
        for v in views:
            try:
                v._gone(reason)
            except Exception:  # noqa: BLE001
                log.exception("widgets: %r failed to show that the cluster is gone", v)


class _Gone(Exception):
    pass


def _reason(e) -> str:
    if isinstance(e, _Gone):
        return str(e)
    return f"the cluster stopped answering ({type(e).__name__}: {e})"


_default = None
_default_lock = threading.Lock()


def default_updater() -> Updater:
    """The process's shared updater over the current backend (one thread for all widgets).

    Example:
        >>> import widgets
        >>> widgets.default_updater() is widgets.default_updater()
        True
    """
    global _default
    with _default_lock:
        if _default is None:
            _default = Updater()
        return _default
