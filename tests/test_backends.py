"""The magics and widgets on kit, Ray and Dask: the same cells, only the %cluster line changes.

Each engine is started once per module (Ray: ``%cluster connect ray:local``; Dask: a
``LocalCluster`` of two worker processes joined with ``%cluster connect tcp://...``;
kit: ``%cluster start``) and stopped after, checking that no process is left.
"""

import doctest
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import wait_gone
from helpers import wait_until
from IPython.testing.globalipapp import start_ipython
from IPython.utils.capture import capture_output

import backends
import widgets
from backends.tally import Tally

# tiers: the kit engine's tests start a kit cluster; Ray's and Dask's need those engines
ENGINES = [
    pytest.param("kit", marks=pytest.mark.cluster),
    pytest.param("ray", marks=pytest.mark.engines),
    pytest.param("dask", marks=pytest.mark.engines),
]


def shell():
    """The process's test IPython shell (``start_ipython`` gives it only the first time)."""
    from IPython import get_ipython

    sh = start_ipython() or get_ipython()
    sh.run_line_magic("load_ext", "kit")
    return sh


def run(sh, cell):
    with capture_output() as cap:
        r = sh.run_cell(cell, store_history=True)
    return r, cap


@pytest.fixture(scope="module", params=ENGINES)
def engine(request):
    """``(shell, engine name, handle type)`` with that engine's cluster current."""
    name = request.param
    sh = shell()
    local = None
    if name == "kit":
        line, handle = "%cluster start --nodes 2 --cpus 1", "kit.ObjectRef"
    elif name == "ray":
        pytest.importorskip("ray")
        line, handle = "%cluster connect ray:local --cpus 2", "ray.ObjectRef"
    else:
        distributed = pytest.importorskip("distributed")
        local = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        line, handle = f"%cluster connect {local.scheduler_address}", "distributed.Future"
    try:
        r, cap = run(sh, line)
        assert r.success and backends.current().name == name, cap.stdout + cap.stderr
        yield sh, name, handle
    finally:
        run(sh, "%cluster stop")
        if local is not None:
            local.close()
            # spawning Dask's workers started multiprocessing's resource tracker, which
            # would live as long as this process: stop it (it restarts on demand)
            from multiprocessing import resource_tracker

            resource_tracker._resource_tracker._stop()
        widgets.default_updater().stop()
        assert backends.current().name == "kit" and not backends.current().alive()
        wait_gone(20, f"{name} left processes")


def wait_jobs(sh, timeout=20):
    deadline = time.time() + timeout
    for job in list(sh.magics_manager.registry["KitMagics"].session.jobs):
        assert job.finished.wait(max(0.0, deadline - time.time())), "a --no-block cell hung"


def totals(m):
    v = m.values()
    return int(v["total"]["done"]), int(v["total"]["failed"])


# ---- the same cells on every engine ----------------------------------------------------


def test_map_items_spread_over_the_nodes(engine):
    """A --map cell's items run on every node (on Dask the shared cell spec is on every
    worker, so locality does not pull all items to the one worker that holds it)."""
    sh, name, handle = engine
    if len(backends.current().nodes()) < 2:
        pytest.skip(f"{name} runs one node here")
    r, cap = run(  # each item sleeps a little: the first ones still run when the rest start
        sh,
        "%%remote --map 'i in range(4)' -o where\nimport time, backends.worker\n"
        "time.sleep(0.1)\nwhere = backends.worker.node_id()",
    )
    assert r.success, cap.stdout + cap.stderr
    assert len(set(sh.user_ns["where"])) == 2, sh.user_ns["where"]


def test_the_same_cells_run_on_each_engine(engine):
    sh, name, handle = engine
    m = widgets.ClusterMonitor()
    try:
        assert m.live, m.reason
        assert m.header.value.startswith(f"<b>{name} cluster: ")
        done0, failed0 = totals(m)
        run(sh, "data = list(range(10))\ndef scaled(v):\n    return 3 * v")

        r, cap = run(
            sh,
            "%%remote -o total\nprint('hello from', 'the cell')\n"
            "total = sum(scaled(x) for x in data)\ntotal * 2",
        )
        assert r.success, cap.stdout + cap.stderr
        assert r.result == 270 and sh.user_ns["total"] == 135
        assert "hello from the cell\n" in cap.stdout

        r, cap = run(sh, "%%remote --map 'i in range(4)' -o sq\nprint('item', i)\nsq = i * i\n-i")
        assert r.success, cap.stdout + cap.stderr
        assert sh.user_ns["sq"] == [0, 1, 4, 9] and r.result == [0, -1, -2, -3]
        assert all(f"[{i}] item {i}" in cap.stdout for i in range(4))

        r, cap = run(sh, "%%remote\nx = 1\n\nraise ValueError(f'bad {x}')\n")
        number = r.execution_count  # the cell's In [N]
        assert not r.success and isinstance(r.error_in_exec, ValueError)
        assert f'File "<remote-cell-{number}>", line 4, in <module>' in cap.stdout, cap.stdout
        assert "ValueError raised remotely on node n" in cap.stdout
        assert "ValueError: bad 1" in cap.stdout and "worker.py" not in cap.stdout

        with capture_output() as cap:  # the cell sleeps: it still runs when its first line shows
            r = sh.run_cell(
                "%%remote --no-block -o y\nimport time\nprint('early line')\n"
                "time.sleep(1.0)\nprint('late line')\ny = 7\ny + 1",
                store_history=True,
            )
            assert r.success and r.result is None
            job = sh.magics_manager.registry["KitMagics"].session.jobs[-1]
            assert wait_until(lambda: "early line" in cap.stdout, 5)  # streamed: it shows
            assert not job.finished.is_set()  # while the task runs
            ref = sh.user_ns["y"]
            assert f"{type(ref).__module__.split('.')[0]}.{type(ref).__name__}" == handle
            assert sh.run_line_magic("remote", "y * 2") == 14  # a ref arrives as its value
            wait_jobs(sh)
        assert "late line" in cap.stdout and ": done on n" in cap.stdout, cap.stdout

        # the monitor: per-node counts from the engine, adding up to the 8 tasks run
        assert wait_until(lambda: totals(m) == (done0 + 7, failed0 + 1)), (totals(m), m.values())
        vals = m.values()
        rows = [t for t in vals if t != "total"]
        assert rows and all(t.startswith("n") for t in rows)
        assert sum(int(vals[t]["done"]) for t in rows) == done0 + 7
        assert sum(int(vals[t]["failed"]) for t in rows) == failed0 + 1
        assert all(vals[t]["state"] == "alive" for t in rows)
        assert wait_until(lambda: m.values()["total"]["running"] == "0")

        # the other views read the same backend
        with widgets.progress([ref], mode="none") as p:
            pass
        assert (p.done, p.failed, p.total) == (1, 0, 1)
        lanes = [t.get_text() for t in widgets.plot_timeline().axes[0].get_yticklabels()]
        assert lanes and {x.split(" · ")[0] for x in lanes} <= set(rows)
    finally:
        m.close()


def test_status_and_node_option(engine):
    sh, name, _ = engine
    r, cap = run(sh, "%cluster status")
    text = cap.outputs[0].data["text/plain"]
    nodes = backends.current().nodes()
    assert "n0" in text and len(text.splitlines()) == 1 + len(nodes)
    last = nodes[-1]
    r, cap = run(
        sh, f"%%remote --node {last['tag']}\nimport backends.worker\nbackends.worker.node_id()"
    )
    assert r.result == last["node_id"], cap.stdout + cap.stderr


# ---- interrupting ----------------------------------------------------------------------


def test_interrupt(engine):
    sh, name, _ = engine
    if name == "kit":
        pytest.skip("kit's interrupt is tested in test_magics_shell")
    seconds = 30 if name == "ray" else 3
    run(sh, "%%remote\n1")  # a worker is warm
    main = threading.main_thread().ident
    sent = []

    def interrupt_once_it_runs():  # like Ctrl-C on a cell that has printed
        wait_until(lambda: "sleeping" in cap.stdout, 20, "the cell to print 'sleeping'")
        sent.append(True)
        signal.pthread_kill(main, signal.SIGINT)

    with capture_output() as cap:
        threading.Thread(target=interrupt_once_it_runs, daemon=True).start()
        r = sh.run_cell(  # the cell sleeps: still running when interrupted; "woke" never shows
            f"%%remote\nimport time\nprint('sleeping')\ntime.sleep({seconds})\nprint('woke')",
            store_history=True,
        )
    assert sent and isinstance(r.error_in_exec, KeyboardInterrupt), cap.stdout + cap.stderr
    assert "KeyboardInterrupt: cancelled remote-cell-" in cap.stdout
    assert "sleeping" in cap.stdout and "woke" not in cap.stdout
    if name == "dask":
        assert "Dask cannot interrupt a running task" in cap.stdout
    b = backends.current()
    assert wait_until(lambda: sum(n["running"] for n in b.nodes()) == 0, 10), b.nodes()
    r, cap = run(sh, "%%remote\n'after'")  # the engine still works
    assert r.result == "after"


# ---- without an engine -----------------------------------------------------------------


@pytest.mark.fast
def test_parse_address():
    p = backends.parse_address
    assert p("ray://h:10001") == ("ray", "connect", "ray://h:10001")
    assert p("ray:auto") == ("ray", "connect", "auto")
    assert p("ray:local") == ("ray", "start", None)
    assert p("tcp://h:8786") == ("dask", "connect", "tcp://h:8786")
    assert p("dask:local") == ("dask", "start", None)
    assert p("10.0.0.5:6380") == ("kit", "connect", "10.0.0.5:6380")
    for bad in ("nonsense", "http://x:1", "h:port"):
        with pytest.raises(backends.BackendError, match="ray://HOST:PORT"):
            p(bad)


@pytest.mark.fast
def test_bad_connect_is_one_line():
    r, cap = run(shell(), "%cluster connect nonsense")
    lines = (cap.stdout + cap.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("UsageError:") and "ray:local" in lines[0]


@pytest.mark.fast
def test_tally_counts_and_events():
    t = Tally(keep=3)
    t.record("a", "f", "running", "n0", 1.0)
    t.record("b", "f", "running", "n1", 1.5)
    t.record("a", "f", "finished", None, 2.0)
    t.record("b", "f", "failed", "n1", 3.0)
    t.record("c", "f", "cancelled", None, 3.5)  # never ran: no count
    assert t.counts == {
        "n0": {"running": 0, "done": 1, "failed": 0},
        "n1": {"running": 0, "done": 0, "failed": 1},
    }
    last, events = t.since(0)
    assert last == 5 and [e["seq"] for e in events] == [3, 4, 5]  # the last 3 kept
    assert events[0]["node"] == "n0" and events[0]["started"] == 1.0
    assert t.since(5) == (5, [])


@pytest.mark.fast
def test_worker_wrapper_reports_and_marks_errors():
    from backends import worker

    class Channel:
        def __init__(self):
            self.got = []

        def node_id(self):
            return "node-9"

        def event(self, key, label, state, node, t):
            self.got.append((state, node))

        def output(self, key, stream, text):
            self.got.append((stream, text))

    ch = Channel()

    def boom():
        print("one\ntwo", end="")
        raise KeyError("x")

    with pytest.raises(KeyError) as ei:
        worker.run(ch, "k", "boom", boom)
    assert ch.got == [
        ("running", "node-9"),
        ("stdout", "one"),
        ("stdout", "two"),
        ("failed", "node-9"),
    ]
    info = backends.base.remote_info(ei.value)
    assert info.kind == "raised" and info.node == "node-9" and "in boom" in info.traceback
    assert worker.node_id() != "node-9"  # only inside the task


@pytest.mark.cluster
def test_importing_the_front_ends_imports_no_engine():
    code = (
        "import sys, magics, widgets, backends, magics.cells, magics.magic\n"
        "print(sorted(m for m in ('ray', 'distributed', 'dask') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.fast
def test_public_names_exported_once():
    public = {n for n in dir(backends) if not n.startswith("_")}
    modules = {
        "base",
        "kit_backend",
        "tally",
        "worker",
        "ray_backend",
        "dask_backend",
        "threading",
        "annotations",
    }
    assert sorted(backends.__all__) == sorted(set(backends.__all__))
    assert public - modules == set(backends.__all__)


@pytest.mark.fast
@pytest.mark.parametrize(
    "module", ["backends", "backends.base", "backends.tally", "backends.worker"]
)
def test_docstring_examples(module):
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.fast
def test_updater_reads_events_anew_when_the_cluster_changes():
    class Source:
        def __init__(self):
            self.gen, self.log = object(), []

        def alive(self):
            return True

        def generation(self):
            return self.gen

        def events(self, since):
            last = self.log[-1]["seq"] if self.log else 0
            return last, [e for e in self.log if e["seq"] > since]

    class View:
        needs = frozenset({"events"})

    src, view = Source(), View()
    up = widgets.Updater(src)
    src.log = [{"seq": i, "task_id": f"a{i}"} for i in range(1, 51)]
    up._poll([view], False)
    assert up._poll([view], False).events == []
    src.gen, src.log = object(), [{"seq": 1, "task_id": "b1"}]  # numbering starts anew
    assert [e["task_id"] for e in up._poll([view], False).events] == ["b1"]
