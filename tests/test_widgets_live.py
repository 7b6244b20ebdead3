"""widgets on a real 3-node local cluster, read back through the widgets' own values.

The monitor is driven by the shared updater thread while the main thread blocks
in ``kit.get``; a sampler thread reads the widgets (never writes them).
"""

import io
import threading
import time

import pytest
from conftest import _check_clean
from helpers import wait_until

import kit
import widgets

N_TASKS = 300


@pytest.fixture(scope="module")
def cluster3(request):
    if kit.is_initialized():
        kit.shutdown()
    kit.init(num_nodes=3, num_cpus=1)
    cluster_id = kit.api._state["client"].cluster

    def finish():
        kit.shutdown()
        widgets.default_updater().stop()
        _check_clean(cluster_id)

    request.addfinalizer(finish)
    return cluster_id


@kit.remote
def nap(i, seconds=0.02):
    time.sleep(seconds)
    return i


@kit.remote
def fail(i):
    raise ValueError(f"task {i} fails on purpose")


def runtime_counts():
    return {
        n["tag"]: {k: str(n[k]) for k in ("done", "failed", "queued", "running")}
        for n in kit.nodes()
    }


def shown_counts(m):
    vals = m.values()
    return {
        tag: {k: vals[tag][k] for k in ("done", "failed", "queued", "running")}
        for tag in vals
        if tag != "total"
    }


class Sampler(threading.Thread):
    """Reads the monitor's widget values every 50 ms (reads only)."""

    def __init__(self, monitor):
        super().__init__(daemon=True)
        self.m, self.samples, self.halt = monitor, [], threading.Event()

    def run(self):
        while not self.halt.is_set():
            grid = self.m.grid.get_state()["children"]  # the widget state, as sent
            vals = self.m.values()
            self.samples.append((time.time(), vals, len(grid)))
            self.halt.wait(0.05)


def test_monitor_follows_tasks_while_main_thread_blocks(cluster3):
    m = widgets.ClusterMonitor()
    try:
        assert m.live and list(m.values()) == ["n0", "n1", "n2", "total"]
        assert m.values()["total"]["cpu"] == "0/3"
        sampler = Sampler(m)
        sampler.start()
        redraws0 = m.redraws
        t0 = time.time()
        refs = [nap.remote(i) for i in range(N_TASKS)]
        values = kit.get(refs, timeout=90)  # the main thread blocks here
        t1 = time.time()
        assert values == list(range(N_TASKS))
        time.sleep(0.3)
        sampler.halt.set()
        sampler.join(5)

        during = [s for s in sampler.samples if t0 <= s[0] <= t1]
        done_seen = [int(v["total"]["done"]) for _, v, _ in during]
        assert len(set(done_seen)) >= 3, f"the widgets barely moved while blocked: {done_seen}"
        assert done_seen == sorted(done_seen)
        assert any(int(v["total"]["running"]) > 0 for _, v, _ in during)
        assert any(v["total"]["cpu"] != "0/3" for _, v, _ in during)

        # at least two redraws a second while the tasks ran (the target is ten)
        redraws = [t for t, _ in m.history if t0 <= t <= t1]
        duration = max(t1 - t0, 0.5)
        rate = len(redraws) / duration
        assert rate >= 2.0, f"{len(redraws)} redraws in {duration:.2f} s"
        assert m.redraws > redraws0

        # after the tasks: the per-node counts equal the runtime's
        assert wait_until(lambda: shown_counts(m) == runtime_counts()), (
            shown_counts(m),
            runtime_counts(),
        )
        vals = m.values()
        assert vals["total"]["done"] == str(N_TASKS) and vals["total"]["running"] == "0"
        assert sum(int(vals[t]["done"]) for t in ("n0", "n1", "n2")) == N_TASKS
        assert sum(1 for t in ("n0", "n1", "n2") if int(vals[t]["done"]) > 0) >= 2
        for n in kit.nodes():
            assert vals[n["tag"]]["id"] == n["NodeID"][:8]
            assert vals[n["tag"]]["state"] == "alive"
            assert vals[n["tag"]]["bar"] == (n["done"], N_TASKS)
        print(
            f"\nmonitor: {len(redraws)} redraws in {duration:.2f} s "
            f"({rate:.1f}/s) while {N_TASKS} tasks ran"
        )
    finally:
        m.close()
    del refs


def test_monitor_sends_nothing_when_nothing_changes(cluster3):
    from test_widgets_unit import count_sends

    m = widgets.ClusterMonitor()
    up = widgets.default_updater()
    try:
        assert wait_until(lambda: m.polls >= 2)
        sent = count_sends(m)
        polls0, redraws0 = m.polls, m.redraws
        time.sleep(1.0)
        assert m.polls - polls0 >= 2, "the updater should keep polling"
        assert sent == [] and m.redraws == redraws0, f"{len(sent)} messages for no change"
        refs = [nap.remote(i, 0.0) for i in range(20)]
        kit.get(refs, timeout=60)
        assert wait_until(lambda: shown_counts(m) == runtime_counts())
        assert sent, "a change must be sent"
        assert up.polls > 0
    finally:
        m.close()


def test_progress_and_status_line_on_real_tasks(cluster3):
    refs = [nap.remote(i, 0.01) for i in range(60)] + [fail.remote(i) for i in range(3)]
    out = io.StringIO()
    with widgets.progress(refs, label="batch", mode="text", file=out) as p:
        with pytest.raises(ValueError):
            kit.get(refs, timeout=60)
        kit.wait(refs, num_returns=len(refs), timeout=60)
    assert (p.done, p.failed, p.total) == (63, 3, 63)
    assert "batch: 63/63 done, 3 failed" in out.getvalue()

    line = widgets.StatusLine(nap.remote(0, 0.3), label="cell")
    assert line.wait(30) and line.state == "finished"
    assert line.node in ("n0", "n1", "n2")
    assert line.text().startswith(f"cell: done on {line.node} in ")
    bad = widgets.StatusLine(fail.remote(9))
    assert bad.wait(30) and bad.state == "failed"


def test_plots_read_the_cluster(cluster3):
    fig = widgets.plot_timeline()
    lanes = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert lanes and {x.split(" · ")[0] for x in lanes} <= {"n0", "n1", "n2"}
    counts = widgets.plot_node_counts()
    assert [t.get_text() for t in counts.axes[0].get_xticklabels()] == ["n0", "n1", "n2"]
    done = sum(float(b.get_height()) for b in counts.axes[0].patches[:3])
    assert done == sum(n["done"] for n in kit.nodes())


def test_context_repr_and_updater_stops_after_shutdown(cluster3):
    bundle = kit.api._state["ctx"]._repr_mimebundle_()
    assert bundle["text/plain"].startswith("kit cluster: 3/3 nodes alive")
    m = widgets.ClusterMonitor()
    up = widgets.default_updater()
    thread = up.thread
    assert thread is not None and thread.is_alive() and thread.daemon
    kit.shutdown()
    thread.join(10)
    assert not thread.is_alive(), "the updater thread must stop when the cluster goes away"
    assert not up.running and not m.live
    assert m.view.status == "shut down" and "shut down" in m.header.value
    assert {m.values()[t]["state"] for t in ("n0", "n1", "n2")} == {"gone"}
    assert repr(m).splitlines()[0].endswith("(shut down)")
    m.close()


def test_widgets_in_a_real_kernel_and_figures_survive_html_export(tmp_path):
    """In an executed notebook: widget views, progress, status line, and figures as PNG."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from conftest import wait_gone

    cells = [
        "import time, kit, widgets\nctx = kit.init(num_nodes=2, num_cpus=1)\nctx",
        "@kit.remote\ndef f(i):\n    time.sleep(0.01)\n    return i\n"
        "refs = [f.remote(i) for i in range(40)]\n"
        "with widgets.progress(refs, label='batch') as p:\n    kit.get(refs)\n"
        "print('PROGRESS', p.done, p.failed, p.total)",
        "s = widgets.StatusLine(f.remote(1), label='one')\ndisplay(s)\ns.wait(30)\n"
        "print('STATUS', s.text())",
        "widgets.plot_timeline()",
        "widgets.plot_node_counts()",
        "kit.shutdown()\nprint('UP', kit.is_initialized())",
    ]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    client = nbclient.NotebookClient(
        nb, timeout=90, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outs = [c.outputs for c in nb.cells]

    def data(i, mime):
        return [o["data"][mime] for o in outs[i] if "data" in o and mime in o["data"]]

    def text(i):
        return "".join(o.get("text", "") for o in outs[i] if o["output_type"] == "stream")

    widget_mime = "application/vnd.jupyter.widget-view+json"
    assert data(0, widget_mime), outs[0]  # what kit.init() returns shows the monitor
    assert data(0, "text/plain")[0].startswith("kit cluster: 2/2 nodes alive")
    assert data(1, widget_mime) and "PROGRESS 40 0 40" in text(1)
    assert data(2, widget_mime) and "STATUS one: done on n" in text(2)
    for i in (3, 4):
        png = data(i, "image/png")
        assert png and len(png[0]) > 1000, outs[i]
    assert "UP False" in text(5)
    wait_gone(10, "the kernel or its cluster outlived the notebook")
    try:
        from nbconvert import HTMLExporter
    except ImportError:
        return
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert html.count("data:image/png;base64") >= 2
