"""widgets on a real 3-node local cluster, read back through the widgets' own values.

The monitor is driven by the shared updater thread while the main thread blocks
in ``kit.get``; a sampler thread reads the widgets (never writes them).
"""

import io
import os
import re
import threading
import time

import pytest
from conftest import _check_clean
from helpers import wait_until

import kit
import widgets

pytestmark = pytest.mark.cluster

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
    time.sleep(seconds)  # tasks that last: the monitor sees them running
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
        sampler.halt.set()
        sampler.join(5)

        during = [s for s in sampler.samples if t0 <= s[0] <= t1]
        done_seen = [int(v["total"]["done"]) for _, v, _ in during]
        assert len(set(done_seen)) >= 3, f"the widgets barely moved while blocked: {done_seen}"
        assert done_seen == sorted(done_seen)
        assert any(int(v["total"]["running"]) > 0 for _, v, _ in during)
        assert any(v["total"]["cpu"] != "0/3" for _, v, _ in during)

        # the monitor redrew while the tasks ran (how often: reported, not asserted)
        redraws = [t for t, _ in m.history if t0 <= t <= t1]
        duration = max(t1 - t0, 0.5)
        rate = len(redraws) / duration
        assert len(redraws) >= 2 and m.redraws > redraws0, redraws

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
        wait_until(lambda: m.polls >= polls0 + 4, 10, "the updater to keep polling")
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


@kit.remote
def spin(seconds):
    end = time.process_time() + seconds  # CPU time: it computes that long, however busy
    while time.process_time() < end:
        pass
    return os.getpid()


def test_worker_usage_measures_each_worker(cluster3):
    kit.get([spin.remote(0.0) for _ in range(3)])  # every node's worker started
    with widgets.WorkerUsage() as usage:
        pids = kit.get([spin.remote(0.6) for _ in range(3)])
    rows = {r.pid: r for r in usage.rows}
    assert set(pids) <= set(rows), (pids, usage.text())
    for pid in set(pids):
        # it computed 0.6 s of CPU per task it ran within the block's wall time
        ran = pids.count(pid) * 0.6
        assert rows[pid].cpu_percent >= 0.9 * 100 * ran / usage.seconds, usage.text()
        assert rows[pid].rss_mib > 5 and rows[pid].node in {"n0", "n1", "n2"}
    assert 0 < usage.machine_percent <= 100
    assert "CPU (% of a core)" in usage.text() and "<table" in usage._repr_html_()
    assert len(usage.plot().axes) == 2


def test_context_repr_and_updater_stops_after_shutdown(cluster3):
    bundle = kit.api._state["ctx"]._repr_mimebundle_()
    assert bundle["text/plain"].startswith("kit cluster: 3/3 nodes alive")
    m = widgets.ClusterMonitor()
    up = widgets.default_updater()
    thread = up.thread
    assert thread is not None and thread.is_alive() and thread.daemon
    kit.shutdown()
    # kit.shutdown() told the monitor before it returned (the shutdown hook), not later
    assert m.view.status == "shut down" and "shut down" in m.header.value
    thread.join(10)
    assert not thread.is_alive(), "the updater thread must stop when the cluster goes away"
    assert not up.running and not m.live
    assert {m.values()[t]["state"] for t in ("n0", "n1", "n2")} == {"gone"}
    assert re.search(r"\(shut down, as of \d\d:\d\d:\d\d\)$", repr(m).splitlines()[0])
    m.close()
