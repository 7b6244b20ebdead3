"""Where a remote cell's output goes while it runs.

The backend calls a task's output handler from a thread of its own (kit's io
thread, Ray's channel poller, Dask's client loop; see ``backends``). In
a Jupyter kernel, output written from a background thread lands in whichever
cell runs at that moment, so each cell keeps its own destination:

    blocking cell:     handler ──▶ queue ──▶ the cell's own thread prints it
    --no-block cell:   handler ──▶ buffer ──▶ job thread ──▶ ipywidgets.Output
                       widgets.StatusLine(refs) ◀── the widgets' updater thread (events)
                                            ◀── the job thread, when the tasks end
    no kernel:         handler ──▶ sys.stdout / sys.stderr directly;
                       the same StatusLine, printed as text when shown and at the end

The Output widget and the status line are displayed by the cell itself, so
they belong to that cell's output area; later changes travel as widget
updates, which the front end applies wherever the widget is shown. They are
displayed under a display id with a static copy (``widgets.display``); when the
tasks end, the final line and what the tasks printed are written there, so a
saved or exported notebook shows them instead of a widget's repr.
"""

from __future__ import annotations

import queue
import sys
import threading


def prefix_lines(text: str, prefix: str) -> str:
    """Put ``prefix`` before every line (``--map`` items label their lines).

    Example:
        >>> prefix_lines("a\\nb", "[2] ")
        '[2] a\\n[2] b'
    """
    return "\n".join(prefix + line for line in text.split("\n"))


class QueueSink:
    """Lines of a blocking cell: queued by the backend's thread, printed by the cell's thread."""

    def __init__(self):
        self.q = queue.SimpleQueue()

    def write(self, stream: str, text: str) -> None:
        self.q.put((stream, text))

    def done(self) -> None:
        """Wake the reader: every task of the cell has finished."""
        self.q.put(None)

    def pump(self, timeout: float):
        """Print what arrived; wait up to ``timeout`` for more. True once ``done`` was called."""
        try:
            item = self.q.get(timeout=timeout)
        except queue.Empty:
            return False
        while True:
            if item is None:
                return True
            _print(*item)
            try:
                item = self.q.get_nowait()
            except queue.Empty:
                return False


def _print(stream, text):
    out = sys.stderr if stream == "stderr" else sys.stdout
    try:
        out.write(text + "\n")
        out.flush()
    except Exception:
        pass


class DirectSink:
    """Lines printed right away from the backend's thread (a terminal, or no kernel)."""

    def write(self, stream: str, text: str) -> None:
        _print(stream, text)

    def flush(self) -> None:
        pass


class BufferSink:
    """Lines kept until the job thread flushes them into a view."""

    def __init__(self):
        self.lock = threading.Lock()
        self.items: list = []

    def write(self, stream: str, text: str) -> None:
        with self.lock:
            self.items.append((stream, text))

    def take(self) -> list:
        with self.lock:
            items, self.items = self.items, []
        return items


def merge_outputs(outputs: list, items) -> list:
    """Append ``(stream, text)`` items to notebook outputs, merging runs of one stream.

    Example:
        >>> merge_outputs([], [("stdout", "a"), ("stdout", "b"), ("stderr", "c")])
        [{'output_type': 'stream', 'name': 'stdout', 'text': 'a\\nb\\n'}, \
{'output_type': 'stream', 'name': 'stderr', 'text': 'c\\n'}]
    """
    outputs = list(outputs)
    for stream, text in items:
        last = outputs[-1] if outputs else None
        if last is not None and last.get("output_type") == "stream" and last["name"] == stream:
            outputs[-1] = dict(last, text=last["text"] + text + "\n")
        else:
            outputs.append({"output_type": "stream", "name": stream, "text": text + "\n"})
    return outputs


def static_html(line_html: str, outputs) -> str:
    """A status line and what the tasks printed, as static HTML (a notebook's saved copy).

    Example:
        >>> static_html("<b>done</b>", [{"output_type": "stream", "name": "stdout",
        ...                              "text": "a < b\\n"}])
        '<div class="kit-remote"><div><b>done</b></div><pre>a &lt; b\\n</pre></div>'
    """
    import html

    parts = [f'<div class="kit-remote"><div>{line_html}</div>']
    for o in outputs:
        if o.get("output_type") == "stream":
            colour = ' style="color:#c62828"' if o.get("name") == "stderr" else ""
            parts.append(f"<pre{colour}>{html.escape(o.get('text', ''))}</pre>")
        elif "text/plain" in o.get("data", {}):
            parts.append(f"<pre>{html.escape(o['data']['text/plain'])}</pre>")
    parts.append("</div>")
    return "".join(parts)


def static_text(line_text: str, outputs) -> str:
    """The plain-text form of ``static_html``: the line, then the printed text."""
    body = "".join(
        o.get("text", "")
        if o.get("output_type") == "stream"
        else o.get("data", {}).get("text/plain", "") + "\n"
        for o in outputs
    )
    return line_text + ("\n" + body.rstrip("\n") if body.strip() else "")


class WidgetView:
    """A status line over an Output area, displayed in the cell that submitted the job.

    The status line is a ``widgets.StatusLine`` over the cell's tasks: the
    widgets' updater thread keeps it current from the cluster's task events.
    """

    def __init__(self, label: str):
        import ipywidgets

        self.label = label
        self.line = None
        self.out = ipywidgets.Output()
        self.sink = BufferSink()
        self.box = None
        self.display_id = None

    def show(self, refs) -> None:
        """Display the status line (following the tasks of ``refs``) over the output area."""
        import ipywidgets

        from widgets import StatusLine
        from widgets import display as shown

        self.line = StatusLine(refs, label=self.label)
        self.box = ipywidgets.VBox([self.line, self.out])
        self.display_id = shown.show(self.box, self.line.text(), self.line.html())

    def flush(self) -> None:
        items = self.sink.take()
        if items:
            self.out.outputs = tuple(merge_outputs(self.out.outputs, items))

    def show_value(self, value) -> None:
        self.out.append_display_data(value)

    def show_error(self, lines) -> None:
        self.flush()
        self.out.outputs = tuple(merge_outputs(self.out.outputs, [("stderr", "\n".join(lines))]))

    def finish(self) -> None:
        """Write the final line and what the tasks printed into the cell's saved output."""
        from widgets import display as shown

        outputs = list(self.out.outputs)
        shown.finish(
            self.display_id,
            self.box,
            static_text(self.line.text(), outputs),
            static_html(self.line.html(), outputs),
        )


class TextView:
    """The ``--no-block`` view without a kernel: lines as they come, the status line as text.

    The status line is the same ``widgets.StatusLine``; its text is printed when
    the cell is submitted and once more when its tasks have ended.
    """

    def __init__(self, label: str):
        self.label = label
        self.line = None
        self.sink = DirectSink()

    def show(self, refs) -> None:
        from widgets import StatusLine

        self.line = StatusLine(refs, label=self.label)
        _print("stdout", self.line.text())

    def flush(self) -> None:
        pass

    def show_value(self, value) -> None:
        _print("stdout", repr(value))

    def show_error(self, lines) -> None:
        _print("stderr", "\n".join(lines))

    def finish(self) -> None:
        _print("stdout", self.line.text())


class BatchLine:
    """The status line of a blocking ``--map`` cell: items done, running and failed.

    Shown above the lines the items print while the cell waits (the widgets'
    updater thread keeps it current); ``finish`` settles it and writes its final
    text into the cell's saved output.
    """

    def __init__(self, label: str, refs):
        from widgets import StatusLine
        from widgets import display as shown

        self.line = StatusLine(refs, label=label)
        self.display_id = shown.show(self.line, self.line.text(), self.line.html())

    def finish(self, cancelled: bool = False) -> None:
        from widgets import display as shown

        self.line.settle()
        if cancelled:
            self.line.set("cancelled")
        shown.finish(self.display_id, self.line, self.line.text(), self.line.html())


def batch_line(shell, label: str, refs):
    """A ``BatchLine`` in a Jupyter kernel with ipywidgets; None elsewhere (lines suffice)."""
    if getattr(shell, "kernel", None) is None:
        return None
    try:
        return BatchLine(label, refs)
    except Exception:
        return None


def make_view(shell, label: str):
    """A ``WidgetView`` in a Jupyter kernel with ipywidgets, else a ``TextView``."""
    if getattr(shell, "kernel", None) is not None:
        try:
            return WidgetView(label)
        except Exception:
            pass
    return TextView(label)
