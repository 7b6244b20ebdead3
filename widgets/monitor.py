"""``ClusterMonitor``: a live table of what every node is doing, in standard ipywidgets.

    VBox .kit-monitor
    ├── HTML        header: "kit cluster: 3/3 nodes alive, CPU 2/3 busy (live)",
    │               naming tasks waiting for a node when there are any
    └── GridBox     one column per COLUMNS entry
        ├── HTML x 11           titles
        ├── HTML x 10 + IntProgress     one row per node (classes kit-row-n0, kit-col-done, ...)
        └── HTML x 10 + IntProgress     totals (kit-row-total)

The updater thread calls ``_tick`` with each nodes snapshot and the cluster's
count of tasks waiting for a node (read in the same poll); ``monitor_view``
turns it into a tuple of values; when that equals the last one nothing is sent,
otherwise only the cells that changed are set, inside ``hold_sync()``.

In a notebook the monitor is shown under a display id with a static copy (text and
an HTML table, ``widgets.display``) beside the widget; when it stops it writes its
final state there: the cluster shut down (``kit.shutdown()`` reads the counts once
more first, through the ``shutdown`` hook), or ``close()`` (the widget goes, the
table of its last counts stays). A saved or exported notebook shows that table.
"""

from __future__ import annotations

import collections
import re
import time

import ipywidgets as w

from . import display as shown
from .display import DISCONNECTED_CSS, GONE_LABEL
from .updater import default_updater, in_kernel, sync
from .view import (
    COLUMNS,
    STATUS_CLOSED,
    STATUS_GONE,
    STATUS_LIVE,
    STATUS_NONE,
    TITLES,
    cell_html,
    header_text,
    html_table,
    monitor_view,
    row_cells,
    text_table,
)

_GRID_COLUMNS = "repeat(10, max-content) minmax(100px, 1fr)"


def _css(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


class ClusterMonitor(w.VBox):
    """A live view of the cluster: one row per node, and totals.

    Each row shows the node's name, address and id, alive or dead, CPU slots
    busy/total, tasks queued, running, done and failed, object store used/limit
    and a bar of its share of the done tasks; the header adds how many tasks
    wait for a node (submitted, on no worker yet). A background thread (shared by all
    widgets, see ``Updater``) redraws at most 10 times a second and sends nothing
    when nothing changed; it keeps going while the notebook blocks in ``kit.get``.
    When the cluster goes away the header says so, the rows keep what each node
    did and show nothing busy or running, and updates stop. ``close()`` leaves a
    static table of the last counts in the notebook in place of the widget.

    Outside a Jupyter kernel, ``repr()`` and displaying it give a text table
    (and stop its updates, since nothing could show them).

    Args:
        updater: the ``Updater`` to register with (default: the process's shared
            one, reading kit's runtime).

    Attributes:
        polls: snapshots seen.
        redraws: snapshots that changed something on screen.
        messages: widget state messages sent (one per changed cell per redraw).
        history: ``(time, messages)`` of recent redraws.

    Example:
        >>> import kit, widgets
        >>> _ = kit.init(num_cpus=1)
        >>> m = widgets.ClusterMonitor()
        >>> m.view.totals.cpu_total
        1.0
        >>> m.close(); kit.shutdown()
    """

    needs = frozenset({"nodes", "waiting", "scaling"})

    def __init__(self, updater=None, **kwargs):
        self._updater = updater if updater is not None else default_updater()
        self._scaling = None  # the autoscaler's last decisions (Tick.scaling)
        self.header = w.HTML(layout=w.Layout(margin="0 0 4px 0"))
        self.header.add_class("kit-header")
        titles = []
        for col in COLUMNS:
            t = w.HTML(f"<b>{TITLES[col]}</b>")
            t.add_class("kit-title")
            t.add_class(f"kit-col-{col}")
            titles.append(t)
        self._titles = titles
        self.grid = w.GridBox(
            titles,
            layout=w.Layout(
                grid_template_columns=_GRID_COLUMNS, grid_gap="0px 12px", align_items="center"
            ),
        )
        super().__init__([self.header, self.grid], **kwargs)
        self.add_class("kit-monitor")
        self._cells = {}  # row key -> {column: widget}
        self._order = ()  # row keys in the grid
        self._snapshot = None
        self._engine = "kit"
        self.view = None
        self.reason = None
        self.polls = self.redraws = self.messages = 0
        self.history = collections.deque(maxlen=2000)
        self._display_ids: list = []  # where this monitor is shown (widgets.display)
        self._read_at = time.time()  # when the snapshot shown was read
        src = self._updater.source
        try:
            live = src.alive()
            snapshot = src.nodes() if live else None
            waiting = src.waiting() if live else 0
        except Exception:  # noqa: BLE001 - shown as "no cluster"
            live, snapshot, waiting = False, None, 0
        if live:
            self._show(snapshot, STATUS_LIVE, None, waiting)
            self._updater.add(self)
        else:
            self.reason = "kit is not initialized: call kit.init() first"
            self._show(None, STATUS_NONE, None)

    # ---- called by the updater thread --------------------------------------------

    def _tick(self, tick):
        self.polls += 1
        self._read_at = tick.now
        if tick.scaling is not None:
            self._scaling = tick.scaling
        return self._show(tick.nodes, STATUS_LIVE, tick.now, tick.waiting)

    def _gone(self, reason):
        self.reason = reason
        self._show(self._snapshot, STATUS_GONE if self._snapshot is not None else STATUS_NONE, None)
        for display_id in self._display_ids:
            shown.finish(display_id, self, self.text(), html_table(self.view))

    # ---- drawing -----------------------------------------------------------------

    def _show(self, snapshot, status, now, waiting=0):
        if status == STATUS_LIVE:
            self._engine = getattr(self._updater.source, "name", "kit")
        view = monitor_view(
            snapshot, status, waiting, self._engine,
            time.strftime("%H:%M:%S", time.localtime()), self._scaling,
        )  # fmt: skip
        self._snapshot = snapshot
        if view == self.view:
            return True
        self.view = view
        pairs = []
        keys = tuple(r.key for r in view.rows) + ("total",)
        if keys != self._order:
            children = list(self._titles)
            for r in (*view.rows, view.totals):
                children.extend(self._row_widgets(r).values())
            pairs.append((self.grid, {"children": tuple(children)}))
            self._order = keys
        colour = {STATUS_LIVE: "#2e7d32"}.get(status, "#c62828")
        label = f'<span style="color:{colour}">{status}</span>'
        if status == STATUS_LIVE:
            label = f'<span class="kit-live">{label}</span>{GONE_LABEL}'
        head = header_text(view).replace(f"({status}", f"({label}", 1)
        pairs.append(
            (
                self.header,
                {
                    "value": f"<b>{head}</b>{DISCONNECTED_CSS}",
                    "tooltip": self.reason if status != STATUS_LIVE else None,
                },
            )
        )
        for r in (*view.rows, view.totals):
            cells = self._row_widgets(r)
            text = row_cells(r)
            for col in COLUMNS[:-1]:
                value = cell_html(col, text[col])
                if r.key == "total":
                    value = f"<b>{value}</b>"
                pairs.append((cells[col], {"value": value}))
            style = "" if status != STATUS_LIVE else "danger" if r.state == "dead" else "success"
            pairs.append(
                (
                    cells["bar"],
                    {"max": r.bar_max, "value": min(r.bar_value, r.bar_max), "bar_style": style},
                )
            )
        sent = sync(pairs)
        if sent and now is not None:
            self.redraws += 1
            self.messages += sent
            self.history.append((now, sent))
        return True

    def _row_widgets(self, row):
        cells = self._cells.get(row.key)
        if cells is None:
            cells = {}
            cls = f"kit-row-{_css(row.name)}"
            for col in COLUMNS:
                c = (
                    w.IntProgress(min=0, max=1, value=0, layout=w.Layout(width="auto"))
                    if col == "bar"
                    else w.HTML()
                )
                c.add_class("kit-cell")
                c.add_class(f"kit-col-{col}")
                c.add_class(cls)
                cells[col] = c
            self._cells[row.key] = cells
        return cells

    # ---- values, text, display ---------------------------------------------------

    def values(self) -> dict:
        """What the widgets show, read back from them: ``{row name: {column: text}}``.

        The ``bar`` column gives ``(value, max)``. Row names are node tags and
        ``"total"``.

        Example:
            >>> import kit, widgets
            >>> _ = kit.init(num_cpus=1)
            >>> m = widgets.ClusterMonitor()
            >>> m.values()["total"]["cpu"]
            '0/1'
            >>> m.close(); kit.shutdown()
        """
        out = {}
        names = {r.key: r.name for r in self.view.rows} if self.view else {}
        names["total"] = "total"
        for key in self._order:
            cells = self._cells[key]
            row = {}
            for col, c in cells.items():
                if col == "bar":
                    row[col] = (c.value, c.max)
                else:
                    row[col] = re.sub(r"<[^>]+>", "", c.value)
            out[names.get(key, key)] = row
        return out

    def text(self) -> str:
        """The monitor as a text table: fresh while it watches a cluster, else its last view."""
        src = self._updater.source
        try:
            if self.view is not None and self.view.status == STATUS_LIVE and src.alive():
                return text_table(
                    monitor_view(
                        src.nodes(), STATUS_LIVE, src.waiting(), getattr(src, "name", "kit")
                    )
                )
        except Exception:  # noqa: BLE001 - fall back to the last view
            pass
        view = self.view or monitor_view(None, STATUS_NONE)
        return text_table(view)

    def __repr__(self):
        return self.text()

    def _snapshot_view(self):
        """The view shown, as a static copy says it: live counts are a snapshot at a time."""
        view = self.view or monitor_view(None, STATUS_NONE)
        if view.status != STATUS_LIVE:
            return view
        stamp = time.strftime("%H:%M:%S", time.localtime(self._read_at))
        return view._replace(status="snapshot", as_of=stamp)

    def _repr_mimebundle_(self, include=None, exclude=None, **kwargs):
        text = self.text()
        if not in_kernel() or self.comm is None:
            self.close()  # nothing here can show a widget, or its updates
            return {"text/plain": text}
        data = super()._repr_mimebundle_(**kwargs)
        data["text/plain"] = text
        data["text/html"] = html_table(self._snapshot_view())
        return data

    def _ipython_display_(self):
        """Show the monitor under a display id, its final state written there when it stops."""
        if not in_kernel() or self.comm is None:
            from IPython.display import display

            display({"text/plain": self.text()}, raw=True)
            self.close()
            return
        view = self._snapshot_view()
        self._display_ids.append(shown.show(self, text_table(view), html_table(view)))
        if self.view is not None and self.view.status != STATUS_LIVE:
            self._gone(self.reason)  # shown after its cluster went: the final state at once

    @property
    def live(self) -> bool:
        """True while the updater updates this monitor."""
        return self in self._updater.views() and self._updater.running

    def close(self):
        """Stop updating and close every widget of the monitor.

        Where it was shown, a static table of its last counts takes its place (with
        the time they were read), so the notebook keeps what it last showed.
        """
        self._updater.remove(self)
        if self.view is not None and self.view.status == STATUS_LIVE:
            stamp = time.strftime("%H:%M:%S", time.localtime(self._read_at))
            self.view = self.view._replace(status=STATUS_CLOSED, as_of=stamp)
        if self.view is not None:
            for display_id in self._display_ids:
                shown.finish(display_id, None, text_table(self.view), html_table(self.view))
        self._display_ids = []
        for cells in list(self._cells.values()):
            for c in cells.values():
                c.close()
        for c in (*self._titles, self.header, self.grid):
            c.close()
        super().close()
