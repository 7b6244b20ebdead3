"""%%remote in a real Jupyter kernel: output lands in its own cell, --no-block, interrupts.

The kernel is started with jupyter_client; what a front end would show is read
from the iopub messages: a cell's stream outputs carry the ``msg_id`` of its
execute request in ``parent_header``; a ``--no-block`` cell displays a widget
(under its own ``msg_id``) whose Output model then receives the printed text.
"""

import psutil
import pytest
from helpers import TESTS, Kernel

pytestmark = pytest.mark.kernel

jupyter_client = pytest.importorskip("jupyter_client")


@pytest.fixture(scope="module")
def kernel():
    from jupyter_client import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    k = Kernel(km, kc)
    try:
        kc.wait_for_ready(timeout=60)
        k.run("%load_ext kit\n%cluster start --cpus 2")
        yield k
    finally:
        procs = []
        try:
            kernel_proc = psutil.Process(km.provisioner.pid)
            procs = [kernel_proc] + kernel_proc.children(recursive=True)
        except Exception:
            pass
        try:
            k.run("%cluster stop", timeout=15)
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=False)
        assert len(procs) >= 3, "the kernel and its cluster should have been found"
        _, alive = psutil.wait_procs(procs, timeout=10)
        assert not alive, f"left behind: {[p.pid for p in alive]}"


def test_prints_land_in_their_own_cell(kernel):
    msg_id = kernel.run(
        "%%remote\nimport sys\nprint('hello from remote')\n"
        "print('to stderr', file=sys.stderr)\n6 * 7"
    )
    assert "hello from remote\n" in kernel.streams(msg_id)
    assert "to stderr\n" in kernel.streams(msg_id)
    assert kernel.streams().count("hello from remote") == 1
    result = kernel.of(msg_id, "execute_result")
    assert result and result[0]["content"]["data"]["text/plain"] == "42"


def test_no_block_output_stays_in_its_cell(kernel):
    # a sleeps: it is still running, and prints, while cell b runs in the kernel
    a = kernel.run(
        "%%remote --no-block -o a\nimport time\nprint('a-first')\ntime.sleep(1)\n"
        "print('a-second')\na = 1\n'a-value'"
    )
    b = kernel.run("import kit\nprint('b-local')\nkit.wait([a], timeout=20)\nprint('b-end')")
    kernel.wait_for(lambda: "a-value" in kernel.widget_output_text(a), timeout=10)
    text = kernel.widget_output_text(a)
    assert "a-first\n" in text and "a-second\n" in text
    assert "a-first" not in kernel.streams() and "a-second" not in kernel.streams()
    assert kernel.streams(b) == "b-local\nb-end\n"
    kernel.wait_for(lambda: "done on n0" in kernel.widget_status(a), timeout=10)


def test_two_no_block_cells_run_concurrently(kernel):
    for name in ("x", "y"):  # each sleeps: the two overlap if they run together
        kernel.run(f"%%remote --no-block -o {name}\nimport time\ntime.sleep(1.5)\n{name} = 1")
    check = kernel.run(
        f"import sys, kit\nsys.path.insert(0, {TESTS!r})\n"
        "from helpers import all_overlap, task_spans\n"
        "assert kit.get([x, y], timeout=20) == [1, 1]\n"
        "print('together', all_overlap(task_spans([x, y])), task_spans([x, y]))",
        timeout=20,
    )
    assert kernel.streams(check).startswith("together True"), kernel.streams(check)


def test_interrupt_cancels_the_remote_task(kernel):
    msg_id = kernel.submit(
        "%%remote\nimport time\nprint('sleeping')\ntime.sleep(30)\nprint('not reached')"
    )
    kernel.wait_for(lambda: "sleeping" in kernel.streams(msg_id), timeout=10)
    kernel.km.interrupt_kernel()
    reply = kernel.finish(msg_id, timeout=10)  # not the 30 s the cell sleeps
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
    error = kernel.of(msg_id, "error")[0]["content"]["traceback"]
    assert len(error) == 1 and "cancelled remote-cell-" in error[0]
    check = kernel.run(
        f"import sys, kit\nsys.path.insert(0, {TESTS!r})\nfrom helpers import wait_until\n"
        "busy = lambda: sum(n['running'] for n in kit.nodes())\n"
        "wait_until(lambda: busy() == 0, 5, 'the cancelled task to stop')\n"
        "print('running', busy())"
    )
    assert kernel.streams(check) == "running 0\n"
    assert "not reached" not in kernel.streams()


def test_remote_error_shows_the_cell_lines_in_the_kernel(kernel):
    msg_id = kernel.submit("%%remote\nx = 1\ny = {}\ny['missing']")
    reply = kernel.finish(msg_id)
    assert reply["status"] == "error" and "KeyError" in reply["ename"]
    text = "\n".join(kernel.of(msg_id, "error")[0]["content"]["traceback"])
    assert "KeyError raised remotely on node n0" in text
    # JupyterLab shows the execute_input's count as the cell's In [N]: the same N here.
    prompt = kernel.of(msg_id, "execute_input")[0]["content"]["execution_count"]
    assert reply["execution_count"] == prompt
    assert f'File "<remote-cell-{prompt}>", line 4, in <module>' in text, text
    assert "y['missing']" in text and "worker.py" not in text


def _displays(kernel, display_id):
    """Every bundle shown or written for ``display_id``, in order (any cell's message)."""
    return [
        m["content"]["data"]
        for m in kernel.msgs
        if m["msg_type"] in ("display_data", "update_display_data")
        and (m["content"].get("transient") or {}).get("display_id") == display_id
    ]


def test_status_lines_leave_their_final_text_in_the_cell(kernel):
    a = kernel.run(
        "%%remote --no-block -o r\nimport time\nprint('working')\ntime.sleep(0.5)\nr = 2"
    )
    shown = kernel.of(a, "display_data")
    assert shown, "the --no-block cell displays its status line"
    display_id = shown[0]["content"]["transient"]["display_id"]
    assert "VBox(" not in shown[0]["content"]["data"]["text/plain"]
    kernel.run("import kit\nkit.get(r, timeout=20)")  # the task ended; this cell ran after

    def final():
        last = _displays(kernel, display_id)[-1]
        return "done on n0 in " in last["text/plain"] and "working" in last["text/plain"]

    kernel.wait_for(final, timeout=10)
    last = _displays(kernel, display_id)[-1]
    assert "done on n0 in" in last["text/html"] and "<pre>working" in last["text/html"]
    # a blocking --map cell shows a status line over its items while it waits
    m = kernel.run('%%remote --map "i in range(4)" -o sq\nsq = i * i')
    lines = kernel.of(m, "display_data")
    assert lines and "widget-view" in " ".join(lines[0]["content"]["data"])
    line_id = lines[0]["content"]["transient"]["display_id"]
    assert _displays(kernel, line_id)[-1]["text/plain"].startswith("remote-cell-")
    assert "done (4 tasks)" in _displays(kernel, line_id)[-1]["text/plain"]
