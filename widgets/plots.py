"""matplotlib views for static pages: the task timeline and tasks done per node.

Both build a ``Figure`` directly (no pyplot): no global state, no backend to pick,
so they work headless (Agg) and in threads. The figure is a ``KitFigure``, which
has ``_repr_png_``: displayed in a notebook it becomes a PNG in the output (so it
survives export to HTML) even where ``%matplotlib inline`` never ran.

    events (one cell's, cellmarks) ──▶ timeline_lanes() ──▶ plot_timeline()   a lane per worker
                                                        plot_timelines()  runs on one axis
    nodes  (backend.nodes())    ─────────────────────▶ plot_node_counts() one bar per node

The data comes from the current backend (``backends.current()``: kit, Ray or Dask)
unless it is passed in.
"""

from __future__ import annotations

import io

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from backends.base import short_id

from . import cellmarks
from .view import _natural, timeline_lanes

_FAILED_EDGE = "#c62828"
_STARTUP = {"facecolor": "#eeeeee", "edgecolor": "#757575", "hatch": "////"}
MIN_WIDTH = 0.004  # the least width of a bar, as a share of the time axis


class KitFigure(Figure):
    """A matplotlib ``Figure`` that notebooks show as a PNG.

    Example:
        >>> fig = KitFigure()
        >>> fig._repr_png_()[:4]
        b'\\x89PNG'
    """

    def _repr_png_(self):
        buf = io.BytesIO()
        self.savefig(buf, format="png", bbox_inches="tight", dpi=100)
        return buf.getvalue()


def _colours(labels):
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def _node_names(nodes):
    return {
        (n.get("NodeID") or n.get("node_id")): (n.get("tag") or "")
        for n in nodes or ()
        if n.get("tag")
    }


def _read_cluster(events, nodes):
    import backends

    b = backends.current()
    if not b.alive():
        raise RuntimeError(
            "no cluster: call kit.init() (or %cluster connect) first, or pass the data to plot"
        )
    if events is None:
        events = cellmarks.marks().window(b)
    if nodes is None:
        nodes = b.nodes()
    return events, nodes


def _draw_lanes(ax, lanes, colour, rows, span):
    """One bar per task, each with a white edge so back-to-back bars stay apart.

    A task much shorter than the run is drawn ``MIN_WIDTH`` of the axis wide, so it
    shows as a mark instead of vanishing. A task whose worker first loaded its function,
    imports and arguments for a while (a fresh worker's start-up) has that part drawn
    over its bar's start as a grey hatched segment, apart from the task's own work.
    """
    least = MIN_WIDTH * span
    yticks, ylabels = [], []
    last_node = None
    for i, lane in enumerate(lanes):
        y = len(lanes) - 1 - i  # first lane at the top
        ax.broken_barh(
            [(b.start, max(b.end - b.start, least, 1e-4)) for b in lane.bars],
            (y - 0.4, 0.8),
            facecolors=[colour[b.label] for b in lane.bars],
            edgecolors=[_FAILED_EDGE if b.failed else "white" for b in lane.bars],
            linewidth=1.2,
        )
        loads = [(b.start, b.called - b.start) for b in lane.bars if _loaded(b)]
        if loads:
            ax.broken_barh(loads, (y - 0.4, 0.8), linewidth=0.6, **_STARTUP)
        yticks.append(y)
        if rows == "task":
            ylabels.append(f"{lane.bars[0].label} · {lane.node}/{lane.worker[:6]}")
        else:
            ylabels.append(f"{lane.node} · {lane.worker[:6]}")
            if last_node is not None and lane.node != last_node:
                ax.axhline(y + 0.5, color="#9e9e9e", linewidth=0.8)
        last_node = lane.node
    ax.set_yticks(yticks, ylabels, fontsize=8)
    ax.set_ylim(-0.6, len(lanes) - 0.4)
    ax.set_ylabel("task · node/worker" if rows == "task" else "node · worker")
    ax.grid(axis="x", alpha=0.3)


def _loaded(bar) -> bool:
    """Whether a bar has a start-up segment to draw (its worker loaded it a while)."""
    return bar.called is not None and bar.called > bar.start


def _legend(ax, labels, colour, failed, startup=False):
    handles = [Patch(facecolor=colour[label], label=label) for label in labels]
    if startup:
        handles.append(Patch(label="start-up: loading the\nfunction, imports, args", **_STARTUP))
    if failed:
        handles.append(Patch(facecolor="white", edgecolor=_FAILED_EDGE, label="failed"))
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        fontsize=8,
        frameon=False,
        title="function",
    )


def _empty(ax):
    ax.text(
        0.5,
        0.5,
        "no finished tasks yet",
        ha="center",
        va="center",
        transform=ax.transAxes,
        color="#757575",
    )
    ax.set_yticks([])


def plot_timeline(events=None, nodes=None, *, title="Task timeline", width=10.0, rows="worker"):
    """One bar per task from its start to its end, in one lane per worker (or per task).

    Bars are coloured by the task's function (Dask keys by their readable names),
    each has a white edge so back-to-back tasks on one worker stay apart, and
    failed tasks get a red edge; the x axis is seconds since the first task started.
    The first task of a function on a fresh worker starts with a grey hatched segment:
    the worker loading the function, its imports and arguments (its start-up), drawn
    apart from the task's own work.

    With no ``events`` it draws one notebook cell's tasks: those of the cell it
    runs in, or else of the last cell that ran any (``widgets.cellmarks``); pass
    ``kit.events(mark)[1]`` for another window.

    Args:
        events: task events as ``kit.timeline()`` or ``kit.events(since)`` return them
            (default: the tasks of the running cell, or of the last cell that ran any).
        nodes: nodes as ``kit.nodes()`` returns them, to name nodes by tag
            (default: read them now when ``events`` is not given).
        title: the figure's title.
        width: figure width in inches.
        rows: ``"worker"`` (one lane per worker, grouped by node) or ``"task"`` (one
            lane per task in the order they started: a chain is a staircase).

    Returns:
        A ``KitFigure``.

    Raises:
        RuntimeError: no data was given and kit is not initialized.

    Example:
        >>> from widgets import plot_timeline
        >>> ev = [{"state": "finished", "started": 0.0, "time": 1.0, "label": "add",
        ...        "node": "aa", "worker": "w1"}]
        >>> fig = plot_timeline(ev)
        >>> fig.axes[0].get_xlabel()
        'seconds since the first task started'
    """
    return plot_timelines({title: events}, nodes, width=width, rows=rows)


def plot_timelines(runs, nodes=None, *, width=10.0, rows="worker"):
    """Timelines of several runs one above the other, on one shared time axis.

    Each run is drawn from its own first start, so equal lengths on the page are
    equal durations: a run that took twice as long is twice as wide.

    Args:
        runs: ``{title: events}`` (events as ``kit.events(since)[1]`` returns them;
            None: the default window of ``plot_timeline``).
        nodes: nodes as ``kit.nodes()`` returns them, to name nodes by tag.
        width: figure width in inches.
        rows: ``"worker"`` or ``"task"`` (see ``plot_timeline``).

    Returns:
        A ``KitFigure`` with one axes per run, sharing the x axis.

    Example:
        >>> from widgets import plot_timelines
        >>> ev = lambda t: [{"state": "finished", "started": 0.0, "time": t, "label": "add",
        ...                  "node": "aa", "worker": "w1"}]
        >>> fig = plot_timelines({"short": ev(1.0), "long": ev(2.0)})
        >>> [round(float(ax.get_xlim()[1]), 2) for ax in fig.axes]
        [2.04, 2.04]
    """
    if rows not in ("worker", "task"):
        raise ValueError(f"rows={rows!r}: use 'worker' (a lane per worker) or 'task'")
    if any(ev is None for ev in runs.values()):
        read, nodes = _read_cluster(None, nodes)
        runs = {t: read if ev is None else ev for t, ev in runs.items()}
    names = _node_names(nodes)
    drawn = [(t, timeline_lanes(ev, names, by=rows)[0]) for t, ev in runs.items()]
    heights = [1.0 + 0.32 * max(1, len(lanes)) for _, lanes in drawn]
    fig = KitFigure(figsize=(width, 0.4 + sum(heights)))
    axes = fig.subplots(
        len(drawn), 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": heights}
    )[:, 0]
    labels = sorted({b.label for _, lanes in drawn for ln in lanes for b in ln.bars}, key=_natural)
    colour = _colours(labels)
    end = max([0.0] + [b.end for _, lanes in drawn for ln in lanes for b in ln.bars])
    for ax, (title, lanes) in zip(axes, drawn):
        ax.set_title(title)
        if not lanes:
            _empty(ax)
            continue
        _draw_lanes(ax, lanes, colour, rows, end)
    axes[-1].set_xlabel("seconds since the first task started")
    axes[0].set_xlim(0, end * 1.02 if end > 0 else 1)
    if labels:
        bars = [b for _, lanes in drawn for ln in lanes for b in ln.bars]
        failed = any(b.failed for b in bars)
        _legend(axes[0], labels, colour, failed, startup=any(_loaded(b) for b in bars))
    return fig


def plot_node_counts(nodes=None, *, title="Tasks done per node", width=6.0):
    """A bar chart of tasks done per node (failed tasks stacked in red on top).

    Args:
        nodes: nodes as ``kit.nodes()`` returns them (default: read them now).
        title: the figure's title.
        width: figure width in inches.

    Returns:
        A ``KitFigure``.

    Raises:
        RuntimeError: no data was given and kit is not initialized.

    Example:
        >>> from widgets import plot_node_counts
        >>> fig = plot_node_counts([{"NodeID": "aa", "tag": "n0", "done": 3, "Alive": True}])
        >>> [float(p.get_height()) for p in fig.axes[0].patches]
        [3.0, 0.0]
    """
    if nodes is None:
        _, nodes = _read_cluster([], None)
    rows = sorted(
        nodes or (),
        key=lambda n: (_natural(n.get("tag") or ""), n.get("NodeID") or n.get("node_id") or ""),
    )
    names = [n.get("tag") or short_id(n.get("NodeID") or n.get("node_id") or "?") for n in rows]
    done = [float(n.get("done") or 0) for n in rows]
    failed = [float(n.get("failed") or 0) for n in rows]
    alive = [bool(n.get("Alive", n.get("alive", True))) for n in rows]
    fig = KitFigure(figsize=(width, 3.2))
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title(title)
    ax.set_ylabel("tasks")
    if not rows:
        ax.text(
            0.5, 0.5, "no nodes", ha="center", va="center", transform=ax.transAxes, color="#757575"
        )
        return fig
    x = list(range(len(rows)))
    bars = ax.bar(x, done, color=["#43a047" if a else "#9e9e9e" for a in alive], label="done")
    ax.bar(x, failed, bottom=done, color=_FAILED_EDGE, label="failed")
    for rect, d, f in zip(bars, done, failed):
        ax.annotate(
            f"{d:.0f}" + (f" (+{f:.0f} failed)" if f else ""),
            (rect.get_x() + rect.get_width() / 2, d + f),
            ha="center",
            va="bottom",
            fontsize=8,
            xytext=(0, 2),
            textcoords="offset points",
        )
    ax.set_xticks(x, [n if a else f"{n} (dead)" for n, a in zip(names, alive)])
    ax.set_ylim(0, max(1.0, max(d + f for d, f in zip(done, failed))) * 1.3)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    return fig
