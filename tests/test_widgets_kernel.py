"""widgets in a real kernel: an executed notebook shows the views, and its figures survive
export to HTML."""

import time

import pytest
from conftest import wait_gone

pytestmark = pytest.mark.kernel


def test_widgets_in_a_real_kernel_and_figures_survive_html_export(tmp_path):
    """In an executed notebook: widget views, progress, status line, and figures as PNG."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    # f sleeps a moment: the progress bar and the status line have a task to follow
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
        "m2 = widgets.ClusterMonitor()\ndisplay(m2)\nkit.get([f.remote(i) for i in range(5)])",
        "m2.close()",
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
    # what kit.init() returns shows the monitor; kit.shutdown() wrote its final state there
    assert data(0, widget_mime), outs[0]
    final = data(0, "text/plain")[0]
    assert final.startswith("kit cluster: 2 nodes ran 46 tasks, 0 failed (shut down"), final
    assert "(live" not in final and "snapshot" not in final
    assert "gone" in data(0, "text/html")[0] and "(live" not in data(0, "text/html")[0]
    titles = final.splitlines()[1]
    for line in final.splitlines()[2:]:  # no node is busy, queues nor runs anything
        state, cpu, queued, running = (
            line[titles.index(t) :].split()[0] for t in ("state", "CPU", "queued", "running")
        )
        assert state == "gone" and cpu.startswith("0/") and queued == running == "0", line
    # the progress bar's saved copy is its final state, as text and HTML
    assert data(1, widget_mime) and "PROGRESS 40 0 40" in text(1)
    assert data(1, "text/plain")[0].startswith("[########################] batch: 40/40 done")
    assert "batch: 40/40 done" in data(1, "text/html")[0]
    assert data(2, widget_mime) and "STATUS one: done on n" in text(2)
    for i in (3, 4):
        png = data(i, "image/png")
        assert png and len(png[0]) > 1000, outs[i]
    # a closed monitor leaves a table of its last counts in place of the widget
    assert not data(5, widget_mime), outs[5]
    closed = data(5, "text/plain")[0]
    assert "(closed, as of " in closed.splitlines()[0], closed
    assert "<table" in data(5, "text/html")[0]
    assert "UP False" in text(7)
    wait_gone(10, "the kernel or its cluster outlived the notebook")
    try:
        from nbconvert import HTMLExporter
    except ImportError:
        return
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert html.count("data:image/png;base64") >= 2
    # nbclient saved the widgets' state: the export embeds it, and it is the final one
    assert "shut down<\\/span>" in html and "batch: 40\\/40 done" in html  # JSON: \\/
    # without saved widget state (JupyterLab's default), the export shows the views'
    # final copies, never a widget's repr
    nb.metadata.pop("widgets", None)
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert "Box(children=" not in html and "IntProgress(" not in html
    assert '(<span style="color:#757575">shut down</span>' in html
    assert "batch: 40/40 done" in html and "closed</span>, as of" in html


def test_a_kernel_shut_down_leaves_the_monitor_final(tmp_path):
    """JupyterLab's "Shut Down Kernel": kit stops at the kernel's exit, and the monitor's
    output is told first (its final state, not a frozen "live")."""
    import queue

    jupyter_client = pytest.importorskip("jupyter_client")
    km, kc = jupyter_client.manager.start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        shown = []
        kc.execute_interactive(
            "import kit, widgets\nkit.init(num_cpus=1)\nm = widgets.ClusterMonitor()\ndisplay(m)",
            timeout=60,
            output_hook=shown.append,
        )
        display_id = next(
            m["content"]["transient"]["display_id"]
            for m in shown
            if m["msg_type"] == "display_data"
        )
        kc.shutdown()  # a shutdown request, as a front end sends it
        updates = []
        deadline = time.monotonic() + 20
        while km.is_alive() and time.monotonic() < deadline:
            try:
                m = kc.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                continue
            if (
                m["msg_type"] == "update_display_data"
                and m["content"]["transient"]["display_id"] == display_id
            ):
                updates.append(m["content"]["data"])
        assert updates, "no final state before the kernel exited"
        assert "(shut down" in updates[-1]["text/plain"].splitlines()[0]
        assert "shut down</span>" in updates[-1]["text/html"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    wait_gone(10, "the kernel or its cluster outlived the shutdown")
