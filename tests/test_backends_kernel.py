"""One notebook, run in a real Jupyter kernel on kit, Ray and Dask: only %cluster changes.

In a kernel a ``--no-block`` cell shows a status line over an ``Output`` widget and
``%cluster monitor`` a live ``ClusterMonitor``: the widget paths the in-process shell
of ``test_backends`` does not take.
"""

import pytest
from conftest import wait_gone
from helpers import TESTS

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

LINES = {
    "kit": "%cluster start --nodes 2 --cpus 1",
    "ray": "%cluster connect ray:local --cpus 2",
    "dask": "%cluster connect dask:local --nodes 2 --cpus 1",
}

CELLS = [
    "data = list(range(10))",
    "%%remote -o total\nprint('hello from the cell')\ntotal = sum(data)\ntotal * 2",
    "%%remote --map 'i in range(3)' -o sq\nsq = i * i",
    "%%remote --no-block -o y\nprint('in the background')\ny = 7",
    "session = get_ipython().magics_manager.registry['KitMagics'].session\n"
    "assert all(job.finished.wait(30) for job in list(session.jobs))\n"
    "print('NO-BLOCK', type(y).__module__.split('.')[0], total, sq)",
    "%cluster monitor",
    f"import sys, backends\nsys.path.insert(0, {TESTS!r})\nfrom helpers import wait_until\n"
    "def done():\n    return sum(n['done'] for n in backends.current().nodes())\n"
    "wait_until(lambda: done() >= 5, 15, 'the monitor to count the 5 tasks')\n"
    "print('DONE', done())",
    "%cluster stop",
]


@pytest.mark.parametrize(
    "engine",
    [
        pytest.param("kit", marks=pytest.mark.kernel),
        pytest.param("ray", marks=pytest.mark.engines),  # and a kernel: the engine decides
        pytest.param("dask", marks=pytest.mark.engines),
    ],
)
def test_the_same_notebook_runs_on_each_engine(engine, tmp_path):
    if engine != "kit":
        pytest.importorskip("ray" if engine == "ray" else "distributed")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in ["%load_ext kit\n" + LINES[engine], *CELLS]]
    client = nbclient.NotebookClient(
        nb, timeout=90, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outs = [c.outputs for c in nb.cells]

    def text(i):
        return "".join(o.get("text", "") for o in outs[i] if o["output_type"] == "stream")

    def data(i, mime):
        return [o["data"][mime] for o in outs[i] if "data" in o and mime in o["data"]]

    widget = "application/vnd.jupyter.widget-view+json"
    assert "2 CPUs" in text(0), outs[0]
    assert "hello from the cell" in text(2) and data(2, "text/plain") == ["90"]
    assert data(4, widget), outs[4]  # the status line and output area
    handle = {"kit": "kit", "ray": "ray", "dask": "distributed"}[engine]
    assert f"NO-BLOCK {handle} 45 [0, 1, 4]" in text(5)
    assert data(6, widget) and data(6, "text/plain")[0].startswith(f"{engine} cluster: ")
    assert "DONE 5" in text(7)  # 1 + 3 + 1 tasks, per-node counts
    assert "stopped" in text(8)
    wait_gone(20, "the kernel or its cluster outlived the notebook")
