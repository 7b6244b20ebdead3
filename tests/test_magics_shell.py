"""%%remote, %remote and %cluster in a real in-process IPython shell, on a real local cluster."""

import signal
import threading
import time

import numpy as np
import pytest
from helpers import all_overlap, task_spans, wait_until
from IPython.testing.globalipapp import start_ipython
from IPython.utils.capture import capture_output

import kit

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def shell():
    from IPython import get_ipython

    sh = start_ipython() or get_ipython()  # the first caller in this process starts it
    sh.run_line_magic("load_ext", "kit")
    yield sh
    sh.run_cell("%cluster stop")


def session(sh):
    return sh.magics_manager.registry["KitMagics"].session


def run(sh, cell):
    """Run a cell as the notebook would; return (result, captured output)."""
    with capture_output() as cap:
        result = sh.run_cell(cell, store_history=True)
    return result, cap


def one_line_error(cap, start="UsageError:"):
    lines = cap.stderr.strip().splitlines() + cap.stdout.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(start), lines[0]
    return lines[0]


def wait_jobs(sh, timeout=15):
    deadline = time.time() + timeout
    for job in list(session(sh).jobs):
        assert job.finished.wait(max(0.0, deadline - time.time())), "a --no-block cell hung"


# ---- names travel -------------------------------------------------------------------


def test_namespace_functions_classes_and_modules_travel(shell, cluster):
    run(
        shell,
        "import math\nimport os.path as osp\nfactor = 10\n"
        "def scaled(v):\n    return v * factor\n"
        "class Box:\n    def __init__(self, v):\n        self.v = v\n"
        "    def double(self):\n        return 2 * self.v\n"
        "data = [1, 2, 3]\nbox = Box(4)\n",
    )
    r, cap = run(
        shell,
        "%%remote -o total,where\n"
        "print('hello from', 'the cell')\nprint('no newline', end='')\n"
        "total = sum(scaled(x) for x in data) + box.double()\n"
        "where = osp.join('a', 'b')\n"
        "math.floor(total / 7)",
    )
    assert r.success, cap.stdout
    assert "hello from the cell\nno newline\n" in cap.stdout and "pid=" not in cap.stdout
    assert r.result == 9
    assert shell.user_ns["total"] == 68 and shell.user_ns["where"] == "a/b"
    assert session(shell).cache.puts == 0
    r, cap = run(shell, "%%remote\nfactor = 100\nscaled(1)")  # as it would in the notebook
    assert r.result == 100 and shell.user_ns["factor"] == 10


def test_modules_are_imported_on_the_worker(shell, cluster):
    r, _ = run(shell, "import json as js")
    r, cap = run(shell, "%%remote\nimport os, sys\n(js is sys.modules['json'], os.getpid())")
    same_module, pid = r.result
    assert same_module and pid != __import__("os").getpid()


def test_object_refs_arrive_as_values(shell, cluster):
    shell.user_ns["ref"] = kit.put(41)
    shell.user_ns["refs"] = [kit.put(i) for i in range(4)]
    assert shell.run_line_magic("remote", "ref + 1") == 42
    assert shell.run_line_magic("remote", "sum(refs)") == 6


def test_outputs_last_expression_and_semicolon(shell, cluster):
    r, cap = run(shell, "%%remote -o a,b\na = 1\nb = [a] * 3")
    assert r.result is None and shell.user_ns["b"] == [1, 1, 1] and "Out" not in cap.stdout
    r, cap = run(shell, "%%remote\n'quiet';")
    assert r.result is None and "quiet" not in cap.stdout
    r, cap = run(shell, "%%remote\n{'k': 'shown'}")
    assert r.result == {"k": "shown"} and "Out[" in cap.stdout


def test_map_results_come_back_in_item_order(shell, cluster):
    # the items sleep less the later they come: they finish in the reverse order
    r, cap = run(
        shell,
        "%%remote --map 'i in range(6)' -o sq\n"
        "import time\ntime.sleep(0.05 * (6 - i))\nprint('item', i)\n"
        "sq = i * i\n-i",
    )
    assert r.success, cap.stdout
    assert shell.user_ns["sq"] == [0, 1, 4, 9, 16, 25]
    assert r.result == [0, -1, -2, -3, -4, -5]
    for i in range(6):
        assert f"[{i}] item {i}" in cap.stdout


def test_remote_line_magic(shell, cluster):
    shell.user_ns["nums"] = list(range(10))
    r, cap = run(shell, "%remote sum(n * n for n in nums)")
    assert r.result == 285
    r, cap = run(shell, "%remote x = 1")
    one_line_error(cap)


# ---- errors --------------------------------------------------------------------------


def test_error_shows_cell_line_numbers_and_node(shell, cluster):
    r, cap = run(shell, "%%remote\nx = 1\n\nraise ValueError(f'bad {x}')\n")
    number = r.execution_count  # IPython's own number: the cell's In [N] prompt
    assert not r.success and isinstance(r.error_in_exec, ValueError)
    node = r.error_in_exec.node_id
    assert node in [n["node_id"] for n in kit.nodes()]
    out = cap.stdout
    assert f'File "<remote-cell-{number}>", line 4, in <module>' in out
    assert "raise ValueError(f'bad {x}')" in out and "ValueError: bad 1" in out
    assert f"on node n0 {node[:8]}" in out
    assert "worker.py" not in out and "runner.py" not in out


def test_error_is_the_users_exception_class(shell, cluster):
    with pytest.raises(ZeroDivisionError) as ei:
        shell.run_cell_magic("remote", "", "def f(d):\n    return 1 / d\nf(0)\n")
    assert isinstance(ei.value, kit.TaskError)
    assert "<remote-cell-" in ei.value.traceback_str
    lines = ei.value._render_traceback_()
    assert any("line 3, in f" in ln for ln in lines)  # line 1 is %%remote


def test_error_in_a_map_item_names_the_item(shell, cluster):
    r, cap = run(shell, "%%remote --map 'i in range(4)'\nassert i != 2, 'two'\ni")
    assert not r.success and "--map item 2" in cap.stdout and "AssertionError: two" in cap.stdout


def test_unpicklable_value_is_one_line(shell, cluster):
    shell.user_ns["lock"] = threading.Lock()
    r, cap = run(shell, "%%remote\nlock.acquire()")
    line = one_line_error(cap, "SerializationError:")
    assert "'lock'" in line and "create it inside the cell" in line


@pytest.mark.parametrize(
    "cell",
    [
        "%%remote --bogus\nx = 1",
        "%%remote --resources notjson\nx = 1",
        "%%remote --resources '[1]'\nx = 1",
        "%%remote --map nonsense\nx = 1",
        "%%remote --map 'i in []'\nx = 1",
        "%%remote -o a-b\na = 1",
        "%%remote -o never\na = 1",
        "%%remote --node zzzz\nx = 1",
        "%%remote --num-cpus many\nx = 1",
        "%%remote --name 'unclosed\nx = 1",
        "%cluster bogus",
        "%cluster start --nodes 0",
        "%remote (",
    ],
)
def test_bad_options_give_one_line(shell, cluster, cell):
    shell.user_ns.pop("a", None)
    r, cap = run(shell, cell)
    one_line_error(cap)
    assert "a" not in shell.user_ns


def test_help_has_an_example(shell):
    for cell in ("%%remote --help\nx = 1", "%remote --help", "%cluster --help"):
        r, cap = run(shell, cell)
        assert "Examples::" in cap.stdout and "options:" in cap.stdout, cell
    r, cap = run(shell, "%%remote --help\nx = 1")
    assert "--map" in cap.stdout and "--no-block" in cap.stdout


# ---- interrupting, and --no-block ----------------------------------------------------


def test_interrupt_cancels_the_task(shell, cluster):
    main = threading.main_thread().ident
    sent = []

    def interrupt_once_it_runs():  # like Ctrl-C on a cell that has printed
        wait_until(lambda: "sleeping" in cap.stdout, 20, "the cell to print 'sleeping'")
        sent.append(True)
        signal.pthread_kill(main, signal.SIGINT)

    with capture_output() as cap:
        threading.Thread(target=interrupt_once_it_runs, daemon=True).start()
        r = shell.run_cell(
            "%%remote\nimport time\nprint('sleeping')\ntime.sleep(30)\nprint('woke')",
            store_history=True,
        )  # the cell sleeps: it is still running when the interrupt comes
    assert sent and isinstance(r.error_in_exec, KeyboardInterrupt), cap.stdout + cap.stderr
    assert "KeyboardInterrupt: cancelled remote-cell-" in cap.stdout
    assert "sleeping" in cap.stdout and "woke" not in cap.stdout
    wait_until(lambda: sum(n["running"] for n in kit.nodes()) == 0, 5, "the cancelled task to stop")


def test_no_block_cells_run_together(shell, cluster):
    with capture_output() as cap:
        for name in ("first", "second"):  # each cell sleeps: the two would overlap
            r = shell.run_cell(
                f"%%remote --no-block -o {name}\nimport time\n"
                f"print('start {name}')\ntime.sleep(1.5)\n"
                f"{name} = '{name} done'\n{name}.upper()",
                store_history=True,
            )
            assert r.success and r.result is None
        refs = [shell.user_ns["first"], shell.user_ns["second"]]
        assert isinstance(refs[0], kit.ObjectRef)
        assert kit.get(refs, timeout=10) == ["first done", "second done"]
        wait_jobs(shell)
    # both cells returned at once and their tasks ran together, not one after the other
    assert all_overlap(task_spans(refs)), task_spans(refs)
    out = cap.stdout
    assert "start first" in out and "start second" in out
    assert "'FIRST DONE'" in out and "'SECOND DONE'" in out
    assert out.count(": done on n0") == 2, out


def test_no_block_outputs_feed_the_next_cell(shell, cluster):
    with capture_output():
        shell.run_cell(
            "%%remote --no-block --map 'k in range(3)' -o parts\nparts = k * 10", store_history=True
        )
        assert all(isinstance(p, kit.ObjectRef) for p in shell.user_ns["parts"])
        r = shell.run_cell("%remote sum(parts)")
        wait_jobs(shell)
    assert r.result == 30


def test_no_block_failure_is_reported(shell, cluster):
    with capture_output() as cap:
        shell.run_cell("%%remote --no-block -o y\ny = 1\n1 / 0", store_history=True)
        wait_jobs(shell)
    assert "ZeroDivisionError" in cap.stderr and ": failed" in cap.stdout
    with pytest.raises(ZeroDivisionError):
        kit.get(shell.user_ns["y"], timeout=5)


# ---- large values travel once ----------------------------------------------------------


def test_large_array_is_put_once_per_version(shell, cluster, monkeypatch):
    puts = []
    real_put = kit.put
    monkeypatch.setattr(kit, "put", lambda v: puts.append(type(v).__name__) or real_put(v))
    cache = session(shell).cache
    shell.user_ns["big"] = np.ones(300_000)  # 2.4 MB
    assert shell.run_cell_magic("remote", "", "float(big.sum())") == 300_000.0
    assert shell.run_cell_magic("remote", "", "float(big.mean())") == 1.0
    assert shell.run_line_magic("remote", "big.shape") == (300_000,)
    assert puts == ["ndarray"] and cache.puts == 1 and len(cache) == 1
    shell.user_ns["big"][0] = 100.0  # changed in place
    assert shell.run_cell_magic("remote", "", "float(big[0])") == 100.0
    assert puts == ["ndarray", "ndarray"] and len(cache) == 1
    del shell.user_ns["big"]
    shell.run_line_magic("remote", "1")
    assert len(cache) == 0


# ---- %cluster ------------------------------------------------------------------------


def test_cluster_lifecycle_status_and_node_option(shell, fresh):
    r, cap = run(shell, "%cluster status")
    assert "no cluster is running" in cap.stdout
    r, cap = run(shell, "%cluster start --nodes 2 --cpus 1")
    assert "2 node(s), 2 CPUs" in cap.stdout and kit.is_initialized()
    r, cap = run(shell, "%cluster start")
    assert "already running" in cap.stdout
    r, cap = run(shell, "%cluster status")
    data = cap.outputs[0].data
    assert data["text/html"].count("<tr>") == 3
    assert "n1" in data["text/plain"] and "store used" in data["text/plain"]
    n1 = [n["node_id"] for n in kit.nodes() if n["tag"] == "n1"][0]
    for where in ("n1", n1, n1[:6]):
        r, cap = run(
            shell, f"%%remote --node {where}\nimport kit\nkit.get_runtime_context().get_node_id()"
        )
        assert r.result == n1, cap.stdout
    r, cap = run(shell, "%cluster monitor")
    assert cap.outputs or "not available yet" in cap.stdout
    r, cap = run(shell, "%cluster stop")
    assert "cluster stopped" in cap.stdout and not kit.is_initialized()
    r, cap = run(shell, "%cluster stop")
    assert "no cluster" in cap.stdout


def test_first_remote_cell_starts_a_cluster(shell, fresh):
    r, cap = run(shell, "%%remote\n6 * 7")
    assert r.result == 42 and kit.is_initialized()
    assert cap.stdout.count("started a local cluster") == 1


def test_task_options(shell, fresh):
    fresh(num_cpus=2, resources={"disk": 1})
    r, cap = run(
        shell,
        "%%remote --num-cpus 2 --resources '{\"disk\": 1}' --name heavy\n"
        "import kit\nctx = kit.get_runtime_context()\n"
        "(ctx.get_task_name(), kit.available_resources())",
    )
    name, available = r.result
    assert name == "heavy" and "CPU" not in available and "disk" not in available


def test_cluster_connect_to_a_running_head(shell, fresh):
    import subprocess
    import sys

    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import kit, sys\nctx = kit.init(num_cpus=1)\n"
            "print(ctx.address, ctx.token, flush=True)\nsys.stdin.readline()\nkit.shutdown()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        address, token = owner.stdout.readline().split()
        r, cap = run(shell, "%cluster connect")
        one_line_error(cap)
        r, cap = run(shell, f"%cluster connect {address} --token {token}")
        assert f"connected to {address}: 1 node(s), 1 CPUs" in cap.stdout, cap.stdout
        r, cap = run(shell, "%%remote\nimport os\nos.getpid()")
        assert isinstance(r.result, int)
        r, cap = run(shell, "%cluster stop")
        assert "disconnected" in cap.stdout and not kit.is_initialized()
    finally:
        owner.stdin.close()
        owner.wait(10)


def test_load_ext_magics_twice_keeps_state(shell, cluster):
    before = session(shell)
    shell.run_line_magic("load_ext", "magics")
    shell.run_line_magic("reload_ext", "kit")
    assert session(shell) is before
