"""widgets in a real kernel: an executed notebook shows the views, and its figures survive
export to HTML."""

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
