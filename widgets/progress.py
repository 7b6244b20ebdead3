"""``progress(refs)``: done/total, failed, rate and time left for a batch of ObjectRefs.

    progress(refs) ──▶ Progress ── add ──▶ Updater thread, each poll:
                                             ready = source.ready(pending)
                                               (the oldest 5000; all of them every 2 s)
                                             failed += ready refs whose future holds an error
                                             draw: IntProgress + HTML (notebook)
                                                   or "\\r[####....] 120/300 done, ..." (stderr)

The refs are held only until they are ready (then dropped), so a progress bar
never keeps a finished result alive. ``kit.get(refs, progress=True)`` uses it as
``with widgets.progress(refs): <wait for refs>``; leaving the block draws the
final state. In a notebook the bar is shown with a static copy beside it (text and
HTML, ``widgets.display``), and its final state is written there when it stops, so
a saved or exported notebook shows the final bar, not a widget's repr.
"""

from __future__ import annotations

import html
import sys
import threading
import time

import ipywidgets as w

from . import display as shown
from .source import ref_failed
from .updater import default_updater, in_kernel, sync
from .view import progress_html, progress_view, text_bar

TEXT_EVERY = 0.25  # seconds between redraws of the text bar on a terminal
WINDOW = 5000  # refs checked per poll: the oldest pending ones...
FULL_EVERY = 20  # ...and all of them every 20 polls (big batches stay cheap)


class Progress:
    """A progress bar over a batch of refs; see ``progress()``.

    Attributes:
        total: refs in the batch.
        done: refs ready so far (finished or failed).
        failed: ready refs whose value is an error.
        view: the last ``ProgressView`` drawn.
        widget: the ``HBox`` shown in notebooks (None in text mode).
    """

    needs = frozenset()

    def __init__(self, refs, *, label="", mode=None, file=None, updater=None):
        refs = list(refs) if isinstance(refs, (list, tuple)) else [refs]
        self._updater = updater if updater is not None else default_updater()
        self._pending = refs
        self._lock = threading.Lock()
        self.total = len(refs)
        self.done = self.failed = 0
        self.label = label or ""
        self.started = time.time()
        self.mode = mode or ("widget" if in_kernel() else "text")
        self.view = None
        self.widget = None
        self._file = file if file is not None else sys.stderr
        self._tty = bool(getattr(self._file, "isatty", lambda: False)())
        self._last_text = 0.0
        self._width = 0
        self._ticks = 0
        self.closed = False
        self.reason = None  # why it stopped early (the cluster went away), if it did
        self._display_id = None  # where it is shown (widgets.display)
        self._finished_shown = False
        if self.mode == "widget":
            self._bar = w.IntProgress(
                min=0,
                max=max(1, self.total),
                value=0,
                bar_style="info",
                layout=w.Layout(width="40%"),
            )
            self._text = w.HTML()
            self._text.add_class("kit-header")  # says so if its kernel dies (while_live)
            self.widget = w.HBox([self._bar, self._text])
            self.widget.add_class("kit-progress")
        with self._lock:
            self._count()
            self._draw(time.time())
        if self.done < self.total:
            self._updater.add(self)
        else:
            self._finish()

    # ---- counting ----------------------------------------------------------------

    def _count(self, full=True):
        pending = self._pending
        if not pending:
            return
        if not full and len(pending) > WINDOW:
            pending = pending[:WINDOW]  # tasks finish roughly in order; the rest later
        src = self._updater.source
        ready = src.ready(pending)
        if not ready:
            return
        ready_set = set(ready)
        bad = {r for r in ready_set if ref_failed(src, r)}  # the value is here: quick
        still = []
        for r in pending:
            if r in ready_set:
                self.done += 1
                self.failed += r in bad
            else:
                still.append(r)
        self._pending = still + self._pending[len(pending) :]

    # ---- drawing -----------------------------------------------------------------

    def _draw(self, now):
        view = progress_view(self.done, self.failed, self.total, now - self.started, self.label)
        if view == self.view:
            return
        self.view = view
        if self.widget is not None:
            style = "danger" if view.failed else ("success" if view.done >= view.total else "info")
            sync(
                [
                    (
                        self._bar,
                        {"max": max(1, view.total), "value": view.done, "bar_style": style},
                    ),
                    (self._text, {"value": self._text_html(view)}),
                ]
            )
        elif self.mode == "text":
            final = view.done >= view.total or self.closed
            if self._tty and (final or now - self._last_text >= TEXT_EVERY):
                line = text_bar(view)
                pad = max(0, self._width - len(line))
                self._write("\r" + line + " " * pad + ("\n" if final else ""))
                self._width = len(line)
                self._last_text = now
            elif not self._tty and final:
                self._write(text_bar(view) + "\n")

    def _text_html(self, view) -> str:
        text = html.escape(view.text)
        return text if view.done >= view.total or self.closed else shown.while_live(text)

    def _write(self, s):
        try:
            self._file.write(s)
            self._file.flush()
        except Exception:  # noqa: BLE001 - a closed stream must not break the updater
            pass

    # ---- the updater's calls -----------------------------------------------------

    def _tick(self, tick):
        with self._lock:
            if self.closed:
                return False
            self._ticks += 1
            try:
                self._count(full=self._ticks % FULL_EVERY == 0)
            except Exception:  # noqa: BLE001 - the cluster went away under us
                self._pending = []
                self.closed = True
            self._draw(tick.now)
            if self.done >= self.total:
                self._finish()
                return False
            return not self.closed

    def _gone(self, reason):
        with self._lock:
            self.closed = True
            self.reason = reason
            self._pending = []
            self._draw(time.time())
        self._show_final()

    def _finish(self):
        self.closed = True
        self._pending = []
        self._show_final()

    def _stopped_note(self):
        if self.done >= self.total:
            return ""
        return f" (stopped: {self.reason})" if self.reason else " (stopped)"

    def _show_final(self):
        """Write the final state into the notebook output, once."""
        if self._display_id is None or self._finished_shown:
            return
        self._finished_shown = True
        view = self.view or progress_view(self.done, self.failed, self.total, 0.0, self.label)
        note = self._stopped_note()
        html = progress_html(view._replace(text=view.text + note))
        shown.finish(self._display_id, self.widget, repr(self) + note, html)

    # ---- public ------------------------------------------------------------------

    def close(self):
        """Count once more, draw the final state and stop updating."""
        with self._lock:
            if not self.closed:
                try:
                    self._count()
                except Exception:  # noqa: BLE001
                    pass
                self.closed = True
                self._pending = []
                self._draw(time.time())
        self._updater.remove(self)
        self._show_final()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        view = self.view or progress_view(self.done, self.failed, self.total, 0.0, self.label)
        return text_bar(view)

    def _repr_mimebundle_(self, include=None, exclude=None, **kwargs):
        data = {"text/plain": repr(self)}
        if self.widget is not None and self.widget.comm is not None:
            data.update(self.widget._repr_mimebundle_(**kwargs))
            data["text/plain"] = repr(self)
        if self.view is not None:
            data["text/html"] = progress_html(self.view)
        return data

    def _ipython_display_(self):
        """Show the bar under a display id; its final state is written there when it stops."""
        if self.widget is None or self.widget.comm is None:
            from IPython.display import display

            display({"text/plain": repr(self)}, raw=True)
            return
        view = self.view or progress_view(self.done, self.failed, self.total, 0.0, self.label)
        self._display_id = shown.show(self.widget, repr(self), progress_html(view))
        if self.closed:
            self._show_final()


def progress(refs, *, label="", display=True, mode=None, file=None, updater=None) -> Progress:
    """Show how far a batch of refs has got: done/total, failed, rate and time left.

    In a notebook it displays an ``IntProgress`` with a line of text; elsewhere it
    writes a text bar to stderr (carriage-return updates on a terminal, the final
    line only when stderr is not a terminal). A background thread updates it, also
    while the caller blocks in ``kit.get``; it stops when all refs are ready, on
    ``close()``, at the end of a ``with`` block, or when the cluster goes away.

    Args:
        refs: a ref (kit or Ray ObjectRef, Dask Future) or a list of them.
        label: a name shown before the counts.
        display: show the widget now (notebooks only).
        mode: ``"widget"``, ``"text"`` or ``"none"`` (default: widget in a kernel,
            text elsewhere).
        file: where the text bar goes (default ``sys.stderr``).
        updater: the ``Updater`` to use (default: the shared one).

    Returns:
        A ``Progress`` (also a context manager).

    Example:
        >>> import kit, widgets
        >>> _ = kit.init(num_cpus=1)
        >>> refs = [kit.put(i) for i in range(3)]
        >>> with widgets.progress(refs, mode="none") as p:
        ...     values = kit.get(refs)
        >>> p.done, p.total, p.failed
        (3, 3, 0)
        >>> kit.shutdown()
    """
    p = Progress(refs, label=label, mode=mode, file=file, updater=updater)
    if display and p.widget is not None:
        p._ipython_display_()
    return p
