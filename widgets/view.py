"""Pure views: cluster snapshots and counters in, plain values and text out.

Nothing here touches a thread, a widget or the cluster, so every number a widget
shows is computed (and unit-tested) here first:

    kit.nodes() ──▶ monitor_view() ──▶ MonitorView ──▶ row_cells() / text_table()
    counters    ──▶ progress_view() ──▶ ProgressView ──▶ .text / text_bar()
    task state  ──▶ status_text()
    events      ──▶ timeline_lanes() ──▶ lanes for plot_timeline()

Views are tuples (``NamedTuple``), so "did anything change?" is one ``==``.
"""

from __future__ import annotations

import html
import math
import re
import time
from typing import NamedTuple, Optional

from backends.base import short_id

#: The monitor's columns, left to right (``bar`` is the IntProgress of done tasks).
COLUMNS = (
    "node",
    "address",
    "id",
    "state",
    "cpu",
    "queued",
    "running",
    "done",
    "failed",
    "store",
    "bar",
)

#: Column titles for the header row and the text table.
TITLES = {
    "node": "node",
    "address": "address",
    "id": "id",
    "state": "state",
    "cpu": "CPU busy",
    "queued": "queued",
    "running": "running",
    "done": "done",
    "failed": "failed",
    "store": "object store",
    "bar": "done share",
}

STATUS_LIVE, STATUS_GONE, STATUS_NONE = "live", "shut down", "no cluster"
#: The monitor stopped updating (closed, or the kernel went away): the counts are its last.
STATUS_CLOSED = "closed"


class NodeRow(NamedTuple):
    """One node's line of the monitor (or the totals line, ``key == "total"``).

    Attributes:
        key: the node id in hex (stable across updates), or ``"total"``.
        name: the node's tag (``"n0"``), or its short id when it has none.
        address: the node's IP address.
        node_id: the first 8 hex digits of the node id (a Dask worker: host:port).
        state: ``"alive"``, ``"dead"`` or ``"gone"`` (the cluster shut down);
            the totals line says ``"3/3 alive"``.
        cpu_busy: CPU slots in use (total minus available).
        cpu_total: CPU slots of the node.
        queued: tasks waiting on the node's workers.
        running: tasks running on the node.
        done: tasks the node finished.
        failed: tasks that failed on the node.
        store_used: object store bytes in use.
        store_limit: object store limit in bytes (0: unknown).
        bar_value: length of the bar of done tasks.
        bar_max: full length of that bar.
    """

    key: str
    name: str
    address: str
    node_id: str
    state: str
    cpu_busy: float
    cpu_total: float
    queued: int
    running: int
    done: int
    failed: int
    store_used: int
    store_limit: int
    bar_value: int
    bar_max: int


class MonitorView(NamedTuple):
    """Everything the cluster monitor shows, as plain values.

    Attributes:
        rows: one ``NodeRow`` per node, ordered by tag (n0, n1, ..., n10).
        totals: the sums over all nodes.
        status: ``"live"``, ``"shut down"`` or ``"no cluster"``.
        waiting: tasks submitted but not yet on any node's worker
            (``kit.cluster_status()["waiting"]``); 0 unless live.
        engine: the engine's name for the header (``kit``, ``ray``, ``dask``).
        as_of: when the counts were read (``"15:42:07"``), shown once the view is no
            longer live; None while live.
        scaling: the autoscaler's last decision and its time
            (``"added n3: 212 tasks waiting 2.1 s (15:42:01)"``), or None.
    """

    rows: tuple
    totals: NodeRow
    status: str
    waiting: int = 0
    engine: str = "kit"
    as_of: Optional[str] = None
    scaling: Optional[str] = None

    def row(self, name):
        """The row of the node tagged ``name`` (or with that id), else None."""
        for r in self.rows:
            if name in (r.name, r.key, r.node_id):
                return r
        return None


def _natural(text):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text or "")]


def monitor_view(
    snapshot, status=STATUS_LIVE, waiting=0, engine="kit", as_of=None, scaling=None
) -> MonitorView:
    """Turn a nodes snapshot (``kit.nodes()``) into the monitor's rows and totals.

    Args:
        snapshot: a list of node dicts with ``NodeID``, ``Alive``, ``address``,
            ``resources``, ``available``, ``running``, ``queued``, ``done``,
            ``failed``, ``store_used``, ``store_limit`` and ``tag`` (missing keys
            count as zero or empty).
        status: ``"live"`` while the cluster is up; ``"shut down"`` marks every
            row ``gone``, keeps its done and failed counts and shows nothing busy,
            queued or running (those tasks went with the cluster); ``"closed"``
            (the monitor stopped watching a cluster that may still run) keeps the
            last counts as they were, with ``as_of`` saying when.
        waiting: the cluster's count of tasks waiting for a node (dropped once the
            cluster is gone: nothing waits on it any more).
        engine: the engine's name (``kit``, ``ray``, ``dask``), shown in the header.
        as_of: when the snapshot was read (text), shown when not live.
        scaling: the autoscaler's decisions, ``[(time, text)]`` oldest first
            (``kit.cluster_status()["scaling"]``): the last is shown.

    Returns:
        A ``MonitorView``; equal snapshots give equal views.

    Example:
        >>> v = monitor_view([{"NodeID": "ab" * 8, "Alive": True, "tag": "n0",
        ...                    "resources": {"CPU": 2.0}, "available": {"CPU": 1.0},
        ...                    "running": 1, "done": 5}])
        >>> v.rows[0].cpu_busy, v.totals.done, v.totals.state
        (1.0, 5, '1/1 alive')
    """
    rows = []
    for n in snapshot or ():
        key = str(n.get("NodeID") or n.get("node_id") or "")
        alive = bool(n.get("Alive", n.get("alive", False)))
        total = float((n.get("resources") or n.get("Resources") or {}).get("CPU", 0.0))
        avail = float((n.get("available") or {}).get("CPU", 0.0)) if alive else total
        state = "alive" if alive else "dead"
        gone = status == STATUS_GONE
        if gone:
            state = "gone"
        rows.append(
            NodeRow(
                key=key,
                name=str(n.get("tag") or short_id(key)),
                address=str(n.get("address") or n.get("NodeManagerAddress") or ""),
                node_id=short_id(key),
                state=state,
                cpu_busy=max(0.0, total - avail) if alive and not gone else 0.0,
                cpu_total=total,
                queued=0 if gone else int(n.get("queued") or 0),
                running=0 if gone else int(n.get("running") or 0),
                done=int(n.get("done") or 0),
                failed=int(n.get("failed") or 0),
                store_used=int(n.get("store_used") or 0),
                store_limit=int(n.get("store_limit") or 0),
                bar_value=0,
                bar_max=1,
            )
        )
    rows.sort(key=lambda r: (_natural(r.name), r.key))
    done = sum(r.done for r in rows)
    rows = [r._replace(bar_value=r.done, bar_max=max(1, done)) for r in rows]
    n_alive = sum(1 for r in rows if r.state == "alive")
    queued = sum(r.queued for r in rows)
    running = sum(r.running for r in rows)
    failed = sum(r.failed for r in rows)
    waiting = int(waiting or 0) if status != STATUS_GONE else 0
    totals = NodeRow(
        key="total",
        name="total",
        address="",
        node_id="",
        state="gone" if status == STATUS_GONE else f"{n_alive}/{len(rows)} alive",
        cpu_busy=sum(r.cpu_busy for r in rows),
        cpu_total=sum(r.cpu_total for r in rows if r.state != "dead"),
        queued=queued,
        running=running,
        done=done,
        failed=failed,
        store_used=sum(r.store_used for r in rows),
        store_limit=sum(r.store_limit for r in rows),
        bar_value=done + failed,
        bar_max=max(1, done + failed + running + queued + waiting),
    )
    last = None
    if scaling:
        t, text = scaling[-1]
        last = f"{text} ({time.strftime('%H:%M:%S', time.localtime(t))})"
    return MonitorView(
        tuple(rows),
        totals,
        status,
        waiting,
        engine,
        None if status in (STATUS_LIVE, STATUS_NONE) else as_of,
        last,
    )


def format_bytes(n) -> str:
    """Bytes as short text: ``0 B``, ``512 B``, ``1.5 KiB``, ``7.1 GiB``.

    Example:
        >>> format_bytes(1536), format_bytes(7 * 2**30)
        ('1.5 KiB', '7.0 GiB')
    """
    n = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} TiB"  # pragma: no cover


def format_duration(seconds) -> str:
    """Seconds as short text: ``0.4 s``, ``12 s``, ``3 min 05 s``, ``1 h 02 min``; ``?`` if unknown.

    Example:
        >>> format_duration(0.42), format_duration(185), format_duration(None)
        ('0.4 s', '3 min 05 s', '?')
    """
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    if seconds < 10:
        return f"{seconds:.1f} s"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _num(x: float) -> str:
    return f"{x:g}"


def row_cells(row: NodeRow) -> dict:
    """The text of each column of a row (``bar`` excluded), as the monitor shows it.

    Example:
        >>> v = monitor_view([{"NodeID": "ab" * 8, "Alive": True, "tag": "n0",
        ...                    "resources": {"CPU": 2.0}, "available": {"CPU": 2.0}}])
        >>> row_cells(v.rows[0])["cpu"]
        '0/2'
    """
    store = format_bytes(row.store_used)
    if row.store_limit:
        store += " / " + format_bytes(row.store_limit)
    return {
        "node": row.name,
        "address": row.address,
        "id": row.node_id,
        "state": row.state,
        "cpu": f"{_num(row.cpu_busy)}/{_num(row.cpu_total)}",
        "queued": str(row.queued),
        "running": str(row.running),
        "done": str(row.done),
        "failed": str(row.failed),
        "store": store,
    }


_STATE_COLOURS = {"alive": "#2e7d32", "dead": "#c62828", "gone": "#757575"}


def cell_html(column: str, text: str) -> str:
    """The HTML of one monitor cell (state words coloured, the rest escaped text).

    Example:
        >>> cell_html("state", "dead")
        '<span style="color:#c62828">dead</span>'
    """
    body = html.escape(text)
    colour = _STATE_COLOURS.get(text) if column == "state" else None
    if colour:
        return f'<span style="color:{colour}">{body}</span>'
    if column == "failed" and text not in ("", "0"):
        return f'<span style="color:#c62828">{body}</span>'
    return body


def header_text(view: MonitorView) -> str:
    """The monitor's one-line summary, e.g. ``kit cluster: 3/3 nodes alive, CPU 2/3 busy (live)``.

    Tasks waiting for a node (submitted, on no worker yet) are named when there are any,
    and the autoscaler's last decision when it made one. A cluster that shut down says
    what its nodes did instead of what is busy.

    Example:
        >>> header_text(monitor_view([], waiting=4))
        'kit cluster: 0/0 nodes alive, CPU 0/0 busy, 4 tasks waiting for a node (live)'
        >>> header_text(monitor_view([{"NodeID": "aa", "done": 3}], status="shut down",
        ...                          as_of="15:42:07"))
        'kit cluster: 1 node ran 3 tasks, 0 failed (shut down, as of 15:42:07)'
    """
    t = view.totals
    when = f", as of {view.as_of}" if view.as_of else ""
    scaled = f"; autoscaler: {view.scaling}" if view.scaling else ""
    if view.status == STATUS_GONE:
        n = len(view.rows)
        return (
            f"{view.engine} cluster: {n} node{'s' if n != 1 else ''} ran {t.done:,} "
            f"task{'s' if t.done != 1 else ''}, {t.failed:,} failed ({view.status}{when})"
            f"{scaled}"
        )
    alive = sum(1 for r in view.rows if r.state == "alive")
    waiting = ""
    if view.waiting:
        waiting = f", {view.waiting:,} task{'s' if view.waiting != 1 else ''} waiting for a node"
    return (
        f"{view.engine} cluster: {alive}/{len(view.rows)} nodes alive, "
        f"CPU {_num(t.cpu_busy)}/{_num(t.cpu_total)} busy{waiting} ({view.status}{when}){scaled}"
    )


def text_table(view: MonitorView) -> str:
    """The monitor as a plain-text table, for terminals and logs.

    Example:
        >>> v = monitor_view([{"NodeID": "ab" * 8, "Alive": True, "tag": "n0",
        ...                    "resources": {"CPU": 1.0}, "available": {"CPU": 1.0},
        ...                    "done": 3}])
        >>> print(text_table(v).splitlines()[1])
        node   address  id        state      CPU busy  queued  running  done  failed  object store
    """
    cols = [c for c in COLUMNS if c != "bar"]
    lines = [[TITLES[c] for c in cols]]
    for r in (*view.rows, view.totals):
        cells = row_cells(r)
        lines.append([cells[c] for c in cols])
    widths = [max(len(line[i]) for line in lines) for i in range(len(cols))]
    out = [header_text(view)]
    for line in lines:
        out.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
    return "\n".join(out)


def html_table(view: MonitorView) -> str:
    """The monitor as a static HTML table: what a saved or exported notebook shows.

    The same header and cells as the widget, with the done share drawn as a plain
    bar, so a notebook opened without its kernel shows the monitor's last state.

    Example:
        >>> v = monitor_view([{"NodeID": "ab" * 8, "tag": "n0", "done": 3}], status="shut down")
        >>> "<table" in html_table(v) and "shut down" in html_table(v)
        True
    """
    cols = [c for c in COLUMNS if c != "bar"]
    colour = "#2e7d32" if view.status == STATUS_LIVE else "#757575"
    head = html.escape(header_text(view))
    status = html.escape(f"({view.status}")
    head = head.replace(status, f'(<span style="color:{colour}">{html.escape(view.status)}</span>')
    cell = "padding:1px 8px;text-align:left"
    out = [
        f'<div class="kit-monitor-static"><div style="margin:0 0 4px 0"><b>{head}</b></div>',
        '<table style="border-collapse:collapse;font-size:12px">',
        "<thead><tr>"
        + "".join(f'<th style="{cell}">{html.escape(TITLES[c])}</th>' for c in COLUMNS)
        + "</tr></thead><tbody>",
    ]
    for r in (*view.rows, view.totals):
        text = row_cells(r)
        tds = []
        for c in cols:
            value = cell_html(c, text[c])
            value = f"<b>{value}</b>" if r.key == "total" else value
            tds.append(f'<td style="{cell}">{value}</td>')
        share = min(1.0, r.bar_value / max(1, r.bar_max))
        tds.append(
            f'<td style="{cell};min-width:100px"><div style="background:#e0e0e0;height:8px">'
            f'<div style="background:#66bb6a;height:8px;width:{share * 100:.0f}%"></div></div></td>'
        )
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


class ProgressView(NamedTuple):
    """What a progress bar shows for a batch of refs.

    Attributes:
        done: refs that are ready (finished or failed).
        failed: ready refs whose value is an error.
        total: refs in the batch.
        rate: refs ready per second since the batch started (None before any).
        eta: seconds left at that rate (None when unknown, 0 when complete).
        text: the one-line summary.
    """

    done: int
    failed: int
    total: int
    rate: Optional[float]
    eta: Optional[float]
    text: str


def progress_view(done, failed, total, elapsed, label="") -> ProgressView:
    """Counts and elapsed seconds to a progress line with rate and time left.

    Rates and times are rounded to what is shown, so a view changes only when its
    text does.

    Example:
        >>> progress_view(50, 1, 200, 10.0).text
        '50/200 done, 1 failed, 5.0/s, 30 s left'
    """
    rate = eta = None
    if done and elapsed > 0:
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else None
    if done >= total:
        eta = 0.0
    parts = [f"{label}: " if label else "", f"{done}/{total} done"]
    if failed:
        parts.append(f", {failed} failed")
    if rate is not None:
        parts.append(f", {rate:.1f}/s" if rate < 100 else f", {rate:.0f}/s")
    if done >= total:
        parts.append(f", in {format_duration(elapsed)}")
    elif eta is not None:
        parts.append(f", {format_duration(eta)} left")
    text = "".join(parts)
    return ProgressView(
        done,
        failed,
        total,
        None if rate is None else round(rate, 1),
        None if eta is None else round(eta),
        text,
    )


def text_bar(view: ProgressView, width: int = 24) -> str:
    """A progress line for terminals: ``[#####.......] 50/200 done, ...``.

    Example:
        >>> text_bar(progress_view(1, 0, 4, 1.0), width=8)
        '[##......] 1/4 done, 1.0/s, 3.0 s left'
    """
    filled = int(width * view.done / view.total) if view.total else width
    return "[" + "#" * filled + "." * (width - filled) + "] " + view.text


def progress_html(view: ProgressView) -> str:
    """A progress bar as static HTML (a saved or exported notebook's copy of the widget).

    Example:
        >>> "3/4 done" in progress_html(progress_view(3, 0, 4, 1.0))
        True
    """
    share = view.done / view.total if view.total else 1.0
    colour = "#c62828" if view.failed else ("#43a047" if view.done >= view.total else "#1e88e5")
    return (
        '<div class="kit-progress-static" style="display:flex;align-items:center;gap:8px">'
        '<div style="width:40%;background:#e0e0e0;height:10px">'
        f'<div style="background:{colour};height:10px;width:{share * 100:.0f}%"></div></div>'
        f"<span>{html.escape(view.text)}</span></div>"
    )


#: The task states a status line shows, in the order a task moves through them.
TASK_STATES = ("submitted", "queued", "running", "finished", "failed", "cancelled", "lost")


def status_text(state, node=None, elapsed=None, label="", done=0, failed=0, total=1) -> str:
    """One line for a task's state, e.g. ``running on n1 (3 s)``; or for a batch of tasks.

    Args:
        state: one of ``TASK_STATES`` (for a batch: the state of the batch as a whole).
        node: the node's tag or id, when known (for a batch: the tags, e.g. ``"n0, n1"``).
        elapsed: seconds the task has run, from its start (rounded down to whole
            seconds under a minute while it runs, so the text changes once a
            second); None before it starts (no time is shown).
        label: a name for the task, shown first.
        done: for a batch, tasks that ended (finished or failed).
        failed: for a batch, tasks that failed.
        total: tasks in the batch; with more than one the line counts them.

    Example:
        >>> status_text("running", "n1", 3.7)
        'running on n1 (3 s)'
        >>> status_text("finished", "n1", 4.25, label="cell 3")
        'cell 3: done on n1 in 4.2 s'
        >>> status_text("running", "n0, n1", 2.5, done=3, total=8)
        '3/8 done, running on n0, n1 (2 s)'
        >>> status_text("failed", "n0, n1", 3.0, done=4, failed=1, total=4)
        'failed (1 of 4 tasks) on n0, n1 after 3.0 s'
    """
    pending = state in ("submitted", "queued", "running")
    where = f" on {node}" if node else ""
    if total > 1 and pending:
        words = f"{done}/{total} done" + (f", {failed} failed" if failed else "")
        if state in ("queued", "running"):
            words += f", {state}"
        words += where if state == "running" else ""
    elif total > 1:
        words = {
            "finished": f"done ({total} tasks)",
            "failed": f"failed ({failed} of {total} tasks)",
            "cancelled": f"cancelled ({done}/{total} done)",
            "lost": "lost (cluster gone)",
        }.get(state, state)
        words += where if state != "lost" else ""
    else:
        words = {"finished": "done", "lost": "lost (cluster gone)"}.get(state, state) + where
    text = f"{label}: {words}" if label else words
    if elapsed is not None:
        if pending:
            text += f" ({int(elapsed)} s)" if elapsed < 60 else f" ({format_duration(elapsed)})"
        elif state == "finished":
            text += f" in {format_duration(elapsed)}"
        elif state in ("failed", "cancelled"):
            text += f" after {format_duration(elapsed)}"
    return text


class Bar(NamedTuple):
    """One task on the timeline: a bar from ``start`` to ``end`` (seconds).

    ``called``: when its function was called, if its worker first spent a while loading
    it, its imports and arguments (a fresh worker's start-up: ``start`` to ``called``).
    """

    start: float
    end: float
    label: str
    failed: bool
    called: Optional[float] = None


class Lane(NamedTuple):
    """One worker's row of the timeline, on a node."""

    node: str
    worker: str
    bars: tuple


_TOKEN = re.compile(r"[-_](?:[0-9a-f]{8,}|[0-9a-f]{8}-[0-9a-f-]{27,})$")


def readable_label(label) -> str:
    """A task's label as people read it: Dask keys lose their tokens and chunk indices.

    Example:
        >>> readable_label("('random_sample-3f9a2b1c0d4e5f6a7b8c9d0e1f2a3b4c', 0, 1)")
        'random_sample'
        >>> readable_label("finalize-hlgfinalizecompute-8a2f1e9c7b6d5a4f3e2d1c0b9a8f7e6d")
        'finalize-hlgfinalizecompute'
        >>> readable_label("create_matrix")
        'create_matrix'
    """
    text = str(label or "?").strip()
    if text.startswith("(") and text.endswith(")"):  # a tuple key: its name comes first
        text = text[1:-1].split(",")[0].strip().strip("'\"")
    while True:
        short = _TOKEN.sub("", text)
        if short == text or not short:
            return text
        text = short


def timeline_lanes(events, names=None, by="worker", t0=None):
    """Group finished and failed task events into lanes: one per worker (or per task).

    Args:
        events: dicts as ``kit.timeline()`` returns them; only ``finished`` and
            ``failed`` events with a start time make bars.
        names: optional ``{node id hex: tag}`` to name nodes.
        by: ``"worker"``: one lane per worker, grouped by node; ``"task"``: one lane
            per task, in the order the tasks started (a chain of tasks is a staircase,
            a tree's rounds are 4, then 2, then 1 bars side by side).
        t0: the time that is 0 on the axis (default: the earliest start), so two
            runs can be drawn from their own starts on one shared axis.

    Returns:
        ``(lanes, t0)``: lanes ordered by node name then worker (or by start), bar
        times in seconds since ``t0``, labels readable (``readable_label``); a bar's
        ``called`` is when its function was called, if the event says its worker spent
        a while loading it first (the ``called`` of ``kit.events()``).

    Example:
        >>> ev = [{"state": "finished", "started": 10.0, "time": 11.0, "label": "f",
        ...        "node": "aa", "worker": "w1"}]
        >>> lanes, t0 = timeline_lanes(ev, {"aa": "n0"})
        >>> lanes[0].node, lanes[0].bars[0].end, t0
        ('n0', 1.0, 10.0)
    """
    names = names or {}
    spans = []
    for e in events or ():
        if e.get("state") not in ("finished", "failed"):
            continue
        start, end = e.get("started"), e.get("time")
        if start is None or end is None:
            continue
        node = e.get("node") or "?"
        spans.append(
            (
                names.get(node, short_id(node)),
                e.get("worker") or "?",
                start,
                end,
                readable_label(e.get("label")),
                e.get("state") == "failed",
                e.get("called"),
            )
        )
    if not spans:
        return [], 0.0
    if t0 is None:
        t0 = min(s[2] for s in spans)

    def bar(start, end, label, failed, called):
        end = max(end, start)
        if called is not None:
            called = min(max(called, start), end) - t0
        return Bar(start - t0, end - t0, label, failed, called)

    if by == "task":
        spans.sort(key=lambda s: (s[2], s[3]))
        lanes = [Lane(s[0], s[1], (bar(*s[2:]),)) for s in spans]
        return lanes, t0
    by_lane: dict = {}
    for s in spans:
        by_lane.setdefault((s[0], s[1]), []).append(bar(*s[2:]))
    lanes = [
        Lane(node, worker, tuple(sorted(bars, key=lambda b: (b.start, b.end))))
        for (node, worker), bars in sorted(
            by_lane.items(), key=lambda kv: (_natural(kv[0][0]), kv[0][1])
        )
    ]
    return lanes, t0
