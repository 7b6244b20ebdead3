"""widgets without a cluster: pure views, text forms, plots, and the updater on a fake source."""

import collections
import concurrent.futures
import doctest
import io
import re
import threading
import time

import matplotlib
import pytest
from helpers import wait_until

import widgets
from widgets import view as V
from widgets.updater import MIN_INTERVAL, Tick, Updater, sync

pytestmark = pytest.mark.fast

matplotlib.use("Agg")


def node(
    tag,
    nid,
    *,
    alive=True,
    cpu=1.0,
    avail=None,
    queued=0,
    running=0,
    done=0,
    failed=0,
    used=0,
    limit=1 << 30,
    address="127.0.0.1",
):
    return {
        "NodeID": nid,
        "Alive": alive,
        "tag": tag,
        "address": address,
        "resources": {"CPU": cpu},
        "available": {"CPU": cpu if avail is None else avail},
        "queued": queued,
        "running": running,
        "done": done,
        "failed": failed,
        "store_used": used,
        "store_limit": limit,
    }


SNAP = [
    node("n2", "cc" * 8, done=5),
    node("n10", "dd" * 8, done=1, failed=2),
    node("n0", "aa" * 8, avail=0.0, running=1, queued=2, done=7, used=1536),
]


# ---- pure views ---------------------------------------------------------------------


def test_monitor_view_rows_and_totals():
    v = widgets.monitor_view(SNAP)
    assert [r.name for r in v.rows] == ["n0", "n2", "n10"]  # natural order
    n0 = v.row("n0")
    assert (n0.cpu_busy, n0.cpu_total, n0.queued, n0.running, n0.done) == (1.0, 1.0, 2, 1, 7)
    assert n0.node_id == "aa" * 4 and n0.state == "alive" and n0.address == "127.0.0.1"
    t = v.totals
    assert (t.done, t.failed, t.running, t.queued) == (13, 2, 1, 2)
    assert (t.cpu_busy, t.cpu_total, t.state) == (1.0, 3.0, "3/3 alive")
    assert t.store_used == 1536 and t.store_limit == 3 << 30
    assert [(r.bar_value, r.bar_max) for r in v.rows] == [(7, 13), (5, 13), (1, 13)]
    assert (t.bar_value, t.bar_max) == (15, 18)
    assert v.status == "live"


def test_monitor_view_equal_snapshots_give_equal_views():
    a = widgets.monitor_view([dict(n) for n in SNAP])
    b = widgets.monitor_view(list(reversed([dict(n) for n in SNAP])))
    assert a == b
    changed = [dict(n) for n in SNAP]
    changed[0]["done"] += 1
    assert widgets.monitor_view(changed) != a


def test_monitor_view_dead_gone_and_empty():
    v = widgets.monitor_view([node("n0", "aa" * 8, done=1), node("n1", "bb" * 8, alive=False)])
    assert v.row("n1").state == "dead" and v.row("n1").cpu_busy == 0
    assert v.totals.state == "1/2 alive" and v.totals.cpu_total == 1.0
    g = widgets.monitor_view(SNAP, status="shut down", as_of="15:42:07")
    assert {r.state for r in g.rows} == {"gone"} and g.totals.done == 13
    # nothing is busy, queued or running on a cluster that shut down; done/failed stay
    assert (g.totals.cpu_busy, g.totals.queued, g.totals.running) == (0, 0, 0)
    assert (g.totals.failed, g.totals.state) == (2, "gone")
    assert (
        V.header_text(g)
        == "kit cluster: 3 nodes ran 13 tasks, 2 failed (shut down, as of 15:42:07)"
    )
    # a closed monitor keeps its last counts, saying when they were read
    c = widgets.monitor_view(SNAP, status="closed", as_of="15:42:07")
    assert c.totals.running == 1 and V.header_text(c).endswith("busy (closed, as of 15:42:07)")
    html = V.html_table(g)
    assert html.count("<tr>") == 5 and "shut down" in html and "(live" not in html
    e = widgets.monitor_view(None, status="no cluster")
    assert e.rows == () and e.totals.done == 0 and e.totals.bar_max == 1
    # kit.nodes()-style lower-case keys and no tag work too
    bare = widgets.monitor_view([{"node_id": "ef" * 8, "alive": True, "resources": {"CPU": 2}}])
    assert bare.rows[0].name == "ef" * 4 and bare.rows[0].cpu_total == 2.0


def test_row_cells_and_html():
    v = widgets.monitor_view(SNAP)
    cells = V.row_cells(v.row("n0"))
    assert cells == {
        "node": "n0",
        "address": "127.0.0.1",
        "id": "aaaaaaaa",
        "state": "alive",
        "cpu": "1/1",
        "queued": "2",
        "running": "1",
        "done": "7",
        "failed": "0",
        "store": "1.5 KiB / 1.0 GiB",
    }
    assert "c62828" in V.cell_html("failed", "2") and V.cell_html("failed", "0") == "0"
    assert V.cell_html("node", "<x>") == "&lt;x&gt;"


def test_text_table():
    text = widgets.text_table(widgets.monitor_view(SNAP))
    lines = text.splitlines()
    assert lines[0] == "kit cluster: 3/3 nodes alive, CPU 1/3 busy (live)"
    assert lines[1].split()[:4] == ["node", "address", "id", "state"]
    assert [ln.split()[0] for ln in lines[2:]] == ["n0", "n2", "n10", "total"]
    assert lines[2].split()[4:9] == ["1/1", "2", "1", "7", "0"]
    done_col = lines[1].index("done")
    assert all(ln[done_col:].split()[0].isdigit() for ln in lines[2:])  # columns line up
    assert "(no cluster)" in widgets.text_table(widgets.monitor_view([], "no cluster"))


def test_monitor_view_waiting_for_a_node():
    v = widgets.monitor_view(SNAP, waiting=4)
    assert v.waiting == 4 and v != widgets.monitor_view(SNAP)
    assert V.header_text(v) == (
        "kit cluster: 3/3 nodes alive, CPU 1/3 busy, 4 tasks waiting for a node (live)"
    )
    assert widgets.text_table(v).splitlines()[0] == V.header_text(v)
    assert ", 1 task waiting" in V.header_text(widgets.monitor_view(SNAP, waiting=1))
    assert "waiting" not in V.header_text(widgets.monitor_view(SNAP, waiting=0))
    gone = widgets.monitor_view(SNAP, status="shut down", waiting=4)
    assert gone.waiting == 0 and "waiting" not in V.header_text(gone)
    # the totals' done share counts the tasks that wait for a node as not done
    many = widgets.monitor_view(SNAP, waiting=4349)
    assert (many.totals.bar_value, many.totals.bar_max) == (15, 18 + 4349)


def test_format_bytes_and_duration():
    assert [V.format_bytes(n) for n in (0, 512, 1536, 5 * 2**20, 7 * 2**30, 3 * 2**40)] == [
        "0 B",
        "512 B",
        "1.5 KiB",
        "5.0 MiB",
        "7.0 GiB",
        "3.0 TiB",
    ]
    assert [V.format_duration(s) for s in (0.42, 12.4, 185, 3725, None, -1, float("inf"))] == [
        "0.4 s",
        "12 s",
        "3 min 05 s",
        "1 h 02 min",
        "?",
        "?",
        "?",
    ]


def test_progress_view():
    p = widgets.progress_view(0, 0, 10, 0.0)
    assert p.text == "0/10 done" and p.rate is None and p.eta is None
    p = widgets.progress_view(50, 1, 200, 10.0, label="batch")
    assert p.text == "batch: 50/200 done, 1 failed, 5.0/s, 30 s left"
    assert (p.rate, p.eta) == (5.0, 30)
    p = widgets.progress_view(200, 0, 200, 4.0)
    assert p.text == "200/200 done, 50.0/s, in 4.0 s" and p.eta == 0
    assert widgets.progress_view(5, 0, 5, 0.01).text.startswith("5/5 done, 500/s")
    assert V.text_bar(widgets.progress_view(1, 0, 4, 1.0), width=8).startswith("[##......] 1/4")
    assert V.text_bar(widgets.progress_view(0, 0, 0, 1.0), width=4).startswith("[####]")


def test_status_text():
    s = widgets.status_text
    assert s("submitted") == "submitted"
    assert s("queued", elapsed=0.5) == "queued (0 s)"
    assert s("running", "n1", 3.7) == "running on n1 (3 s)"
    assert s("running", "n1", 75) == "running on n1 (1 min 15 s)"
    assert s("finished", "n1", 4.25, label="cell 3") == "cell 3: done on n1 in 4.2 s"
    assert s("failed", "n0", 2.0) == "failed on n0 after 2.0 s"
    assert s("lost", elapsed=9) == "lost (cluster gone)"
    assert s("cancelled", "n0", 2.0, label="c") == "c: cancelled on n0 after 2.0 s"


@pytest.mark.parametrize(
    "args, kw, text",
    [
        (("submitted", None, 0.04), {}, "c: 0/8 done (0 s)"),
        (("queued", None, 1.0), {"done": 3}, "c: 3/8 done, queued (1 s)"),
        (
            ("running", "n0, n1", 1.0),
            {"done": 3, "failed": 1},
            "c: 3/8 done, 1 failed, running on n0, n1 (1 s)",
        ),
        (("finished", "n0, n1", 2.5), {"done": 8}, "c: done (8 tasks) on n0, n1 in 2.5 s"),
        (
            ("failed", "n1", 2.5),
            {"done": 8, "failed": 2},
            "c: failed (2 of 8 tasks) on n1 after 2.5 s",
        ),
        (("cancelled", None, 1.0), {"done": 3}, "c: cancelled (3/8 done) after 1.0 s"),
        (("lost", "n0", 9.0), {}, "c: lost (cluster gone)"),
    ],
)
def test_status_text_for_a_batch(args, kw, text):
    assert widgets.status_text(*args, label="c", total=8, **kw) == text


def _ev(seq, task, state, *, label="f", node=None, worker=None, start=None, end=None):
    return {
        "seq": seq,
        "task_id": task,
        "label": label,
        "state": state,
        "time": end,
        "worker": worker,
        "node": node,
        "started": start,
    }


def linear_and_tree_events():
    """A sum of 8 leaves done linearly on one worker, then as a tree over 4 workers."""
    ev, seq = [], 0
    t = 100.0
    for i in range(7):  # linear: each add waits for the previous one
        seq += 1
        ev.append(
            _ev(seq, f"l{i}", "finished", label="add", node="aa", worker="w1", start=t, end=t + 1)
        )
        t += 1
    t0 = 110.0
    workers = [("aa", "w1"), ("aa", "w2"), ("bb", "w3"), ("bb", "w4")]
    for level, width in enumerate((4, 2, 1)):  # tree: 3 levels
        for j in range(width):
            seq += 1
            nd, wk = workers[j]
            ev.append(
                _ev(
                    seq,
                    f"t{level}{j}",
                    "finished",
                    label="tree_add",
                    node=nd,
                    worker=wk,
                    start=t0 + level,
                    end=t0 + level + 1,
                )
            )
    ev.append(_ev(seq + 1, "x", "queued"))
    ev.append(_ev(seq + 2, "y", "failed", label="boom", node="bb", worker="w3"))  # never ran
    ev.append(
        _ev(seq + 3, "z", "failed", label="boom", node="bb", worker="w4", start=112.5, end=112.6)
    )
    return ev


def test_timeline_lanes():
    lanes, t0 = widgets.timeline_lanes(linear_and_tree_events(), {"aa": "n0", "bb": "n1"})
    assert t0 == 100.0
    assert [(ln.node, ln.worker) for ln in lanes] == [
        ("n0", "w1"),
        ("n0", "w2"),
        ("n1", "w3"),
        ("n1", "w4"),
    ]
    assert len(lanes[0].bars) == 7 + 3 and lanes[0].bars[0] == V.Bar(0.0, 1.0, "add", False)
    assert [b.start for b in lanes[0].bars] == sorted(b.start for b in lanes[0].bars)
    assert lanes[3].bars[-1].failed and lanes[3].bars[-1].label == "boom"
    assert widgets.timeline_lanes([], None) == ([], 0.0)
    unnamed, _ = widgets.timeline_lanes(linear_and_tree_events())
    assert unnamed[0].node == "aa"


# ---- plots ----------------------------------------------------------------------------


def test_plot_timeline_headless_png():
    fig = widgets.plot_timeline(linear_and_tree_events(), [node("n0", "aa"), node("n1", "bb")])
    assert isinstance(fig, widgets.KitFigure)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["n0 · w1", "n0 · w2", "n1 · w3", "n1 · w4"]
    assert ax.get_xlabel() == "seconds since the first task started"
    bars = sum(len(c.get_paths()) for c in ax.collections)
    assert bars == 7 + 7 + 1  # linear + tree + the failed one that ran
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["add", "boom", "tree_add", "failed"]
    png = fig._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_plot_timeline_empty_and_node_counts():
    fig = widgets.plot_timeline([_ev(1, "x", "queued")])
    assert "no finished tasks yet" in [t.get_text() for t in fig.axes[0].texts]
    fig = widgets.plot_node_counts(SNAP[:2] + [node("n0", "aa" * 8, alive=False, done=4)])
    ax = fig.axes[0]
    heights = [float(p.get_height()) for p in ax.patches]
    assert heights == [4.0, 5.0, 1.0, 0.0, 0.0, 2.0]  # done n0 n2 n10, then failed
    assert [t.get_text() for t in ax.get_xticklabels()] == ["n0 (dead)", "n2", "n10"]
    assert fig._repr_png_()[:4] == b"\x89PNG"
    assert widgets.plot_node_counts([]).axes[0].texts[0].get_text() == "no nodes"


def test_plots_without_cluster_raise_clearly(monkeypatch):
    import kit

    monkeypatch.setattr(kit, "is_initialized", lambda: False)
    with pytest.raises(RuntimeError, match="kit.init"):
        widgets.plot_timeline()
    with pytest.raises(RuntimeError, match="kit.init"):
        widgets.plot_node_counts()


# ---- the updater and the widgets on a fake source --------------------------------------


class FakeSource:
    """A cluster in a dict: tests set ``snapshot``, ``waiting_count``, ``events``,
    ``ready_refs`` and ``up``."""

    def __init__(self, snapshot):
        self.snapshot = snapshot
        self.waiting_count = 0
        self.waiting_queries = 0
        self.scaling_notes = []  # the autoscaler's decisions: [(time, text)]
        self.events_log = []
        self.ready_refs = set()
        self.up = True
        self.queries = 0
        self.polled_at = []  # time.monotonic() of each nodes() query by the updater thread
        self.lock = threading.Lock()

    def alive(self):
        return self.up

    def nodes(self):
        self.queries += 1
        if threading.current_thread().name == "kit-widgets-updater":
            self.polled_at.append(time.monotonic())
        with self.lock:
            return [dict(n) for n in self.snapshot]

    def waiting(self):
        self.waiting_queries += 1
        with self.lock:
            return self.waiting_count

    def scaling(self):
        with self.lock:
            return list(self.scaling_notes)

    def events(self, since):
        with self.lock:
            last = self.events_log[-1]["seq"] if self.events_log else 0
            return last, [e for e in self.events_log if e["seq"] > since]

    def ready(self, refs):
        return [r for r in refs if r in self.ready_refs]


class FakeRef:
    def __init__(self, name, error=None):
        self.name, self.error = name, error

    def task_id(self):
        return self.name.encode()

    def future(self):
        f = concurrent.futures.Future()
        if self.error is None:
            f.set_result(self.name)
        else:
            f.set_exception(self.error)
        return f


def count_sends(*roots):
    """Patch the comm of every widget under ``roots``: returns a list that grows per message."""
    import ipywidgets as w

    sent = []
    seen = set()

    def walk(x):
        if id(x) in seen:
            return
        seen.add(id(x))
        comm = x.comm
        orig = comm.send

        def send(*a, _orig=orig, _x=x, **k):
            sent.append(_x)
            return _orig(*a, **k)

        comm.send = send
        for c in getattr(x, "children", ()):
            walk(c)
        if isinstance(x, widgets.ClusterMonitor):
            for cells in x._cells.values():
                for c in cells.values():
                    walk(c)

    for r in roots:
        assert isinstance(r, w.Widget)
        walk(r)
    return sent


def tick(nodes=None, events=None, names=None):
    return Tick(time.time(), nodes, events, names or {})


def test_monitor_header_names_the_autoscalers_last_decision():
    """The monitor polls the autoscaler's decisions (at most once a second) and its
    header shows the last one with its time; so does the text a shut-down monitor
    leaves behind."""
    src = FakeSource(SNAP)
    up = Updater(src)
    m = widgets.ClusterMonitor(updater=up)
    try:
        up.stop()  # drive polls by hand here
        assert "autoscaler" not in m.header.value
        at = time.mktime((2026, 12, 3, 15, 42, 1, 0, 0, -1))
        src.scaling_notes = [(at - 5, "added n2: 40 tasks waiting 0.6 s"),
                             (at, "added n10: 212 tasks waiting 2.1 s")]  # fmt: skip
        m._tick(up._poll([m], False))
        assert "autoscaler: added n10: 212 tasks waiting 2.1 s (15:42:01)" in m.header.value
        src.scaling_notes.append((at + 9, "removed n10: idle 3.0 s"))
        m._tick(up._poll([m], False))  # within a second: not read again
        assert "added n10" in m.header.value
        up._scaling = (float("-inf"), None)
        m._tick(up._poll([m], False))
        assert "autoscaler: removed n10: idle 3.0 s (15:42:10)" in m.header.value
        m._gone("the cluster was shut down")
        assert "removed n10" in m.text()
    finally:
        m.close()


def test_sync_sends_only_changes():
    import ipywidgets as w

    h, bar = w.HTML("a"), w.IntProgress(max=10, value=3)
    sent = count_sends(h, bar)
    assert sync([(h, {"value": "a"}), (bar, {"max": 10, "value": 3})]) == 0 and sent == []
    assert sync([(h, {"value": "b"}), (bar, {"max": 20, "value": 15})]) == 2
    assert len(sent) == 2 and bar.value == 15  # max first, so value was not clamped
    assert sync([(bar, {"max": 5, "value": 5})]) == 1 and (bar.max, bar.value) == (5, 5)


def test_monitor_values_and_change_detection():
    src = FakeSource(SNAP)
    up = Updater(src)
    m = widgets.ClusterMonitor(updater=up)
    try:
        up.stop()  # drive ticks by hand here
        vals = m.values()
        assert list(vals) == ["n0", "n2", "n10", "total"]
        assert vals["n0"]["done"] == "7" and vals["n0"]["cpu"] == "1/1"
        assert vals["n10"]["failed"] == "2" and vals["total"]["done"] == "13"
        assert vals["n0"]["bar"] == (7, 13) and vals["total"]["bar"] == (15, 18)
        sent = count_sends(m)
        for _ in range(5):
            m._tick(tick(src.nodes()))
        assert sent == [] and m.redraws == 0 and m.polls == 5
        snap = [dict(n) for n in SNAP]
        snap[2]["done"] = 8  # n0 finishes one more task
        m._tick(tick(snap))
        assert m.redraws == 1
        changed = {(c._dom_classes[1], c._dom_classes[2]) for c in sent}
        # n0's done cell and every bar (the share changed), the totals' done cell and bar
        assert ("kit-col-done", "kit-row-n0") in changed
        assert ("kit-col-done", "kit-row-total") in changed
        assert ("kit-col-queued", "kit-row-n0") not in changed
        assert m.values()["n0"]["done"] == "8" and m.values()["total"]["done"] == "14"
        n = len(sent)
        m._tick(tick(snap))
        assert len(sent) == n  # same again: nothing sent
        # a node joins: the grid gets a new row
        m._tick(tick(snap + [node("n3", "ee" * 8)]))
        assert list(m.values()) == ["n0", "n2", "n3", "n10", "total"]
        assert m.values()["total"]["state"] == "4/4 alive"
        # a node dies
        dead = snap + [node("n3", "ee" * 8, alive=False)]
        m._tick(tick(dead))
        assert m.values()["n3"]["state"] == "dead"
        assert m.values()["n3"]["bar"] == (0, 14)
        # the cluster goes away
        m._gone("kit.shutdown() was called")
        assert "shut down" in m.header.value and m.values()["n0"]["state"] == "gone"
        assert m.reason == "kit.shutdown() was called"
        assert m.values()["n0"]["cpu"] == "0/1" and m.values()["total"]["running"] == "0"
    finally:
        m.close()


def test_monitor_thread_rate_idle_silence_and_stop():
    src = FakeSource([dict(n) for n in SNAP])
    up = Updater(src)
    m = widgets.ClusterMonitor(updater=up)
    try:
        assert up.running and m.live
        sent = count_sends(m)
        polls0 = up.polls
        wait_until(lambda: up.polls >= polls0 + 4, 10, "four more polls")
        assert sent == []  # nothing changed, nothing sent
        # never more than 10 polls a second: the thread waits MIN_INTERVAL between polls
        # (a lower bound on the gaps, which a slow machine only widens)
        gaps = [b - a for a, b in zip(src.polled_at, src.polled_at[1:])]
        assert up.interval == MIN_INTERVAL and min(gaps) >= 0.9 * MIN_INTERVAL, gaps
        with src.lock:
            src.snapshot[0]["done"] += 3
        assert wait_until(lambda: m.values()["n2"]["done"] == "8")
        assert sent and m.redraws >= 1
        src.up = False  # kit.shutdown()
        assert wait_until(lambda: not up.running)
        assert m.view.status == "shut down" and "shut down" in m.header.value
        assert not m.live
    finally:
        m.close()
        up.stop()


def test_updater_holds_views_weakly_and_stops_without_views():
    src = FakeSource(SNAP)
    up = Updater(src)

    class View:
        needs = frozenset({"nodes"})
        ticks = 0

        def _tick(self, tick):
            View.ticks += 1

        def _gone(self, reason):
            pass

    v = View()
    up.add(v)
    assert wait_until(lambda: View.ticks >= 2)
    del v
    assert wait_until(lambda: not up.running), "the thread should end when its views are gone"
    # close() on a monitor also lets the thread end
    m = widgets.ClusterMonitor(updater=up)
    assert up.running
    m.close()
    assert wait_until(lambda: not up.running)
    assert up.thread is None


def test_updater_survives_a_broken_view_and_reads_events_once():
    src = FakeSource(SNAP)
    src.events_log = [_ev(i, f"t{i}", "queued") for i in range(1, 4)]
    up = Updater(src)
    seen = []

    class Broken:
        needs = frozenset()

        def _tick(self, tick):
            raise RuntimeError("boom")

        def _gone(self, reason):
            pass

    class Reader:
        needs = frozenset({"events"})

        def _tick(self, tick):
            seen.extend(e["seq"] for e in tick.events)

        def _gone(self, reason):
            seen.append(reason)

    b, r = Broken(), Reader()
    up.add(b)
    up.add(r)
    try:
        assert wait_until(lambda: up.polls >= 3)
        assert b not in up.views() and r in up.views()
        assert seen[:3] == [1, 2, 3]  # a view joining late gets the backlog
        with src.lock:
            src.events_log.append(_ev(4, "t4", "finished"))
        assert wait_until(lambda: 4 in seen)
        assert seen.count(4) == 1 and seen.count(1) == 1
        src.up = False
        assert wait_until(lambda: not up.running)
        assert seen[-1] == "kit.shutdown() was called"
    finally:
        up.stop()


def test_updater_names_the_engine_that_went_away():
    src = FakeSource(SNAP)
    src.name = "dask"
    up = Updater(src)
    said = []

    class Reader:
        needs = frozenset({"nodes"})

        def _tick(self, tick):
            pass

        def _gone(self, reason):
            said.append(reason)

    r = Reader()
    up.add(r)
    try:
        assert wait_until(lambda: up.polls >= 1)
        src.up = False
        assert wait_until(lambda: said)
        assert said == ["the dask cluster stopped, or %cluster stop let go of it"]
    finally:
        up.stop()


def test_monitor_without_cluster_and_text_forms():
    src = FakeSource(SNAP)
    src.up = False
    up = Updater(src)
    m = widgets.ClusterMonitor(updater=up)
    assert not up.running and m.view.status == "no cluster"
    assert repr(m).splitlines()[0].endswith("(no cluster)")
    m.close()
    src.up = True
    m = widgets.ClusterMonitor(updater=up)
    text = repr(m)
    assert text.splitlines()[0] == "kit cluster: 3/3 nodes alive, CPU 1/3 busy (live)"
    assert len(text.splitlines()) == 2 + 3 + 1
    bundle = m._repr_mimebundle_()  # no kernel here: text only, and updates stop
    assert set(bundle) == {"text/plain"} and bundle["text/plain"] == text
    assert wait_until(lambda: not up.running)


def test_progress_counts_done_failed_and_text_bar():
    a, b, c = FakeRef("a"), FakeRef("b", ValueError("x")), FakeRef("c")
    src = FakeSource(SNAP)
    up = Updater(src)
    out = io.StringIO()
    p = widgets.progress([a, b, c, a], label="batch", mode="text", file=out, updater=up)
    try:
        assert (p.done, p.failed, p.total) == (0, 0, 4) and up.running
        src.ready_refs = {a, b}
        assert wait_until(lambda: p.done == 3)
        assert p.failed == 1
        src.ready_refs = {a, b, c}
        assert wait_until(lambda: p.closed)
        assert (p.done, p.failed) == (4, 1)
        assert wait_until(lambda: not up.running)
        text = out.getvalue()  # not a terminal: only the final line
        assert text.count("\n") == 1 and text.startswith("[")
        assert "batch: 4/4 done, 1 failed" in text
        assert repr(p).endswith(p.view.text)
    finally:
        up.stop()


def test_progress_terminal_updates_and_widget_mode():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    src = FakeSource(SNAP)
    up = Updater(src)
    refs = [FakeRef(str(i)) for i in range(10)]
    out = Tty()
    with widgets.progress(refs, mode="text", file=out, updater=up) as p:
        src.ready_refs = set(refs[:5])
        assert wait_until(lambda: p.done == 5)
        wait_until(lambda: "5/10 done" in out.getvalue(), 10, "the terminal line at 5/10")
        src.ready_refs = set(refs)
    assert (p.done, p.total) == (10, 10)
    text = out.getvalue()
    assert text.startswith("\r[") and text.endswith("\n") and "10/10 done" in text
    w = widgets.progress(refs, mode="widget", display=False, updater=up)
    assert (
        w.closed and w.widget.children[0].value == 10 and "10/10 done" in w.widget.children[1].value
    )
    assert w.widget.children[0].bar_style == "success"
    assert "kit-gone" not in w.widget.children[1].value  # ended: nothing to say if it dies
    src.ready_refs = set()
    more = [FakeRef(f"m{i}") for i in range(4)]
    running = widgets.progress(more, mode="widget", display=False, updater=up)
    text = running.widget.children[1]
    # still counting: if its kernel is killed, the page's CSS shows the label after it
    assert "kit-header" in text._dom_classes and text.value.startswith("0/4 done <span")
    assert "not updated: its kernel stopped" in text.value and "<style>" in text.value
    running.close()
    empty = widgets.progress([], mode="none", updater=up)
    assert empty.closed and empty.view.text.startswith("0/0 done")
    up.stop()


def test_progress_close_early_and_cluster_gone():
    src = FakeSource(SNAP)
    up = Updater(src)
    refs = [FakeRef(str(i)) for i in range(3)]
    p = widgets.progress(refs, mode="none", updater=up)
    src.ready_refs = {refs[0]}
    p.close()
    assert p.closed and p.done == 1 and p not in up.views()
    q = widgets.progress(refs, mode="none", updater=up)
    src.up = False
    assert wait_until(lambda: q.closed)
    up.stop()


def test_status_line_follows_events_and_readiness():
    src = FakeSource(SNAP)
    up = Updater(src)
    ref = FakeRef("t1")
    task = ref.task_id().hex()
    line = widgets.StatusLine(ref, label="cell 3", updater=up)
    try:
        assert line.state == "submitted" and "kit-status" in line._dom_classes
        assert "kit-header" in line._dom_classes and "kit-gone" in line.value  # says so if
        # its kernel dies while it runs (the page's CSS shows the label then); the copy
        # saved beside it does not
        assert "kit-gone" not in line.html()
        with src.lock:
            src.events_log.append(_ev(1, task, "queued"))
        assert wait_until(lambda: line.state == "queued")
        with src.lock:
            src.events_log.append(_ev(2, "other", "running", node="bb" * 8))
            src.events_log.append(_ev(3, task, "running", node="aa" * 8, worker="w1"))
        assert wait_until(lambda: line.state == "running")
        assert line.node == "n0" and "running on n0" in line.value
        with src.lock:
            src.events_log.append(_ev(4, task, "finished", node="aa" * 8, start=1.0, end=2.0))
        assert line.wait(10) and line.state == "finished"
        assert line.text() == "cell 3: done on n0 in 1.0 s"  # the task's own run time
        assert "kit-gone" not in line.value  # ended: its line is final
        assert wait_until(lambda: line not in up.views())
        # readiness alone (no events): a failed result shows as failed
        bad = FakeRef("t2", ValueError("no"))
        line2 = widgets.StatusLine(bad, updater=up)
        src.ready_refs = {bad}
        assert line2.wait(10) and line2.state == "failed" and "failed" in line2.value
        # the cluster going away while pending: lost
        line3 = widgets.StatusLine(FakeRef("t3"), updater=up)
        src.up = False
        assert line3.wait(10) and line3.state == "lost"
        assert repr(line3) == line3.text()
        # by hand, for the %%remote magic
        line4 = widgets.StatusLine(label="x", updater=up)
        line4.set("running", node="n2")
        assert line4.text() == "x: running on n2 (0 s)"
        line4.set("finished")
        assert line4.done and line4._repr_mimebundle_()["text/plain"].startswith("x: done on n2")
    finally:
        up.stop()


def test_status_line_for_a_batch_and_by_task():
    src = FakeSource(SNAP)
    up = Updater(src)
    refs = [FakeRef("b1"), FakeRef("b2"), FakeRef("b3")]
    b1, b2, b3 = (r.task_id().hex() for r in refs)
    line = widgets.StatusLine(refs, label="cell", updater=up)
    try:
        assert line.state == "submitted" and line.text() == "cell: 0/3 done"  # no timer yet
        with src.lock:
            src.events_log += [
                _ev(1, b1, "running", node="aa" * 8, end=time.time() - 2.5),
                _ev(2, b2, "running", node="cc" * 8),
                _ev(3, b3, "queued"),
            ]
        assert wait_until(lambda: line.node == "n0, n2")
        assert line.state == "running" and "0/3 done, running on n0, n2 (" in line.value
        timer = re.search(r"running on n0, n2 \((\d+) s\)", line.value)
        assert timer and int(timer.group(1)) >= 2  # counted from the first task's start
        src.ready_refs = {refs[0]}
        assert wait_until(lambda: line.text().startswith("cell: 1/3 done, running on n0, n2"))
        # the magic says how the others ended: a final state sticks
        line.set_task(refs[1], "finished", "n2")
        line.set_task(refs[2], "failed", "n10")
        assert line.done and line.state == "failed"
        assert line.text().startswith("cell: failed (1 of 3 tasks) on n0, n2, n10 after ")
        assert wait_until(lambda: line not in up.views())
    finally:
        up.stop()


def test_monitor_shows_tasks_waiting_for_a_node():
    src = FakeSource([dict(n) for n in SNAP])
    src.waiting_count = 3
    up = Updater(src)
    m = widgets.ClusterMonitor(updater=up)
    try:
        assert m.view.waiting == 3 and "3 tasks waiting for a node" in m.header.value
        assert wait_until(lambda: up.polls >= 3)
        assert abs(src.waiting_queries - src.queries) <= 1  # read with every nodes snapshot
        with src.lock:
            src.waiting_count = 0
        assert wait_until(lambda: "waiting" not in m.header.value)
        assert "waiting" not in repr(m).splitlines()[0]
        with src.lock:
            src.waiting_count = 1
        assert wait_until(lambda: "1 task waiting for a node" in m.header.value)
    finally:
        m.close()
        up.stop()


# ---- the package's face ------------------------------------------------------------------


def test_public_names_exported_once():
    import widgets as pkg

    assert sorted(pkg.__all__) == sorted(set(pkg.__all__))
    for name in pkg.__all__:
        assert getattr(pkg, name) is not None
    public = {n for n in dir(pkg) if not n.startswith("_")}
    modules = {"cellmarks", "display", "monitor", "plots", "source", "status", "updater", "usage"}
    modules |= {"timing", "view"}
    assert public - modules == set(pkg.__all__)


@pytest.mark.parametrize("module", ["widgets.view", "widgets.plots"])
def test_docstring_examples(module):
    import importlib

    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_updater_final_and_check_tell_views_in_the_callers_thread():
    src = FakeSource([dict(n) for n in SNAP])
    up = Updater(src, interval=5.0)  # the thread polls rarely: what is seen comes from the calls
    m = widgets.ClusterMonitor(updater=up)
    p = widgets.progress([FakeRef("p1"), FakeRef("p2")], mode="none", updater=up)
    try:
        assert m.values()["total"]["done"] == "13"
        with src.lock:
            src.snapshot[0] = dict(src.snapshot[0], done=6)  # n2: 5 -> 6
        up.final()  # the last counts, read now
        assert m.values()["total"]["done"] == "14"
        assert not up.check()  # still up: nothing changes
        src.up = False
        assert up.check() and not up.running  # gone: every view told at once
        assert m.view.status == "shut down" and m.values()["total"]["done"] == "14"
        assert p.closed and p.reason == "kit.shutdown() was called"
    finally:
        m.close()
        up.stop()


def _chain(n, width=0.25, t0=100.0, worker="w1"):
    """``n`` tasks one after another on one worker: a linear reduction's events."""
    return [
        _ev(
            i,
            f"t{i}",
            "finished",
            label="add",
            node="aa" * 8,
            worker=worker,
            start=t0 + i * width,
            end=t0 + (i + 1) * width,
        )
        for i in range(n)
    ]


def test_timeline_by_task_is_a_staircase_and_a_tree_is_4_2_1():
    lanes, t0 = V.timeline_lanes(_chain(7), {"aa" * 8: "n0"}, by="task")
    assert t0 == 100.0 and len(lanes) == 7  # one lane per task, a step down each time
    starts = [lane.bars[0].start for lane in lanes]
    assert starts == sorted(starts) and len(set(starts)) == 7
    tree = [
        _ev(
            i,
            f"r{i}",
            "finished",
            label="add",
            node="aa" * 8,
            worker=f"w{i % 4}",
            start=100.0 + 0.25 * rnd,
            end=100.25 + 0.25 * rnd,
        )
        for i, rnd in enumerate([0, 0, 0, 0, 1, 1, 2])
    ]
    lanes, _ = V.timeline_lanes(tree, by="task")
    rounds = collections.Counter(lane.bars[0].start for lane in lanes)
    assert [rounds[k] for k in sorted(rounds)] == [4, 2, 1]
    # by worker: the chain is one lane of seven bars that do not overlap
    (lane,), _ = V.timeline_lanes(_chain(7), by="worker")
    assert len(lane.bars) == 7
    assert all(a.end <= b.start for a, b in zip(lane.bars, lane.bars[1:]))
    # a shared origin: a later run starts later on the axis
    lanes, t0 = V.timeline_lanes(_chain(2, t0=105.0), t0=100.0)
    assert t0 == 100.0 and lanes[0].bars[0].start == 5.0


def test_timeline_plots_keep_bars_apart_and_share_an_axis():
    fig = widgets.plot_timeline(_chain(7), rows="task", title="linear")
    ax = fig.axes[0]
    assert len(ax.get_yticks()) == 7
    edges = [tuple(c) for coll in ax.collections for c in coll.get_edgecolor()]
    assert edges and all(e == (1.0, 1.0, 1.0, 1.0) for e in edges)  # white: visible boundaries
    both = widgets.plot_timelines({"linear": _chain(7), "tree": _chain(3)}, rows="task")
    a, b = both.axes[:2]
    assert a.get_xlim() == b.get_xlim() and a.get_xlim()[1] >= 7 * 0.25
    with pytest.raises(ValueError, match="rows="):
        widgets.plot_timelines({"x": _chain(1)}, rows="lane")
    dask = [
        dict(e, label="('random_sample-3f9a2b1c0d4e5f6a7b8c9d0e1f2a3b4c', 0, 1)") for e in _chain(2)
    ]
    legend = widgets.plot_timeline(dask).axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["random_sample"]


def test_timeline_draws_a_fresh_workers_start_up_as_its_own_mark():
    """An event's ``called`` (its worker loaded the function, imports and arguments
    first) becomes the bar's ``called``; the plot draws start to called as a grey
    hatched segment over the bar and names it in the legend; warm tasks have none."""
    first, warm = _chain(2)
    first = dict(first, called=first["started"] + 0.1)  # 0.1 s of its 0.25 s loading
    lanes, t0 = V.timeline_lanes([first, warm])
    (lane,) = lanes
    assert lane.bars[0].called == pytest.approx(0.1) and lane.bars[1].called is None
    late = dict(first, called=first["time"] + 5)  # a clock step: kept inside its bar
    assert V.timeline_lanes([late])[0][0].bars[0].called == pytest.approx(0.25)
    (task_lane, _), _ = V.timeline_lanes([first, warm], by="task")
    assert task_lane.bars[0].called == pytest.approx(0.1)

    def hatched(fig):
        ax = fig.axes[0]
        return [c for c in ax.collections if c.get_hatch()]

    fig = widgets.plot_timeline([first, warm])
    (marks,) = hatched(fig)
    (path,) = marks.get_paths()  # one segment: the first task's loading
    x, _, w, _ = path.get_extents().bounds
    assert x == pytest.approx(0.0) and w == pytest.approx(0.1)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[-1].startswith("start-up")
    plain = widgets.plot_timeline(_chain(2))
    assert not hatched(plain)
    assert not any(
        t.get_text().startswith("start-up") for t in plain.axes[0].get_legend().get_texts()
    )


class _EventLog:
    """A source whose event log the test appends to (for cell marks)."""

    def __init__(self):
        self.log, self.gen = [], object()

    def alive(self):
        return True

    def generation(self):
        return self.gen

    def events(self, since):
        last = self.log[-1]["seq"] if self.log else 0
        if since is widgets.source.LATEST:
            return last, []
        return last, [e for e in self.log if e["seq"] > since]


def test_cell_marks_give_the_tasks_of_one_cell():
    from widgets.cellmarks import CellMarks

    src, marks = _EventLog(), CellMarks()
    marks.mark(src)  # cell 1 runs two tasks
    src.log += _chain(2)
    src.log = [dict(e, seq=i + 1) for i, e in enumerate(src.log)]
    marks.mark(src)  # cell 2 runs three more
    more = [dict(e, seq=10 + i, task_id=f"u{i}") for i, e in enumerate(_chain(3, t0=200.0))]
    src.log += more
    marks.mark(src)  # cell 3 (the plot) runs none: the window is cell 2's
    assert [e["task_id"] for e in marks.window(src)] == ["u0", "u1", "u2"]
    src.gen = object()  # another cluster: no mark belongs to it, every event kept
    assert len(marks.window(src)) == 5
