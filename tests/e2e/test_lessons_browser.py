"""Lessons 06 and 03 as a student runs them: Run All in JupyterLab in Chromium, then the
notebook saved from JupyterLab and exported to HTML with nbconvert.

    pytest ──▶ scripts/labbrowser.py: JupyterLab (own session, temp config) + Chromium
                 06-clusters.ipynb   Run All; the page's monitor, progress bar; saved; HTML
                 03-aggregation.ipynb Run All; its prints and figures; saved; HTML

06 ends with ``kit.shutdown()``: the monitor displayed near its top must end showing the
cluster shut down (what each node ran, no CPU busy, nothing queued or running) on the
page and in the saved notebook, the progress bar its final count, and the export (no
widget state saved, JupyterLab's default) those final states as HTML, never a widget's
repr. 03 must draw its timelines as figures that survive the export, the tree faster
than the line. Screenshots go to ``tests/e2e/artifacts/``.
"""

import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import labbrowser  # noqa: E402

pytestmark = pytest.mark.browser

if labbrowser.missing():
    pytest.skip(labbrowser.missing(), allow_module_level=True)
pytest.importorskip("nbconvert", reason="nbconvert is not installed (pip install -e '.[test]')")

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
LESSONS = ("06-clusters.ipynb", "03-aggregation.ipynb")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


class _Stop(BaseException):
    pass


def _raise_stop(signum, frame):
    raise _Stop(f"signal {signum}: stopping the e2e harness")


def _outputs(nb, mime):
    """``(cell index, data)`` of every output holding ``mime``."""
    return [
        (i, o["data"][mime])
        for i, c in enumerate(nb.cells)
        for o in c.get("outputs", ())
        if mime in o.get("data", {})
    ]


def _stream(nb):
    return "".join(
        o.get("text", "")
        for c in nb.cells
        for o in c.get("outputs", ())
        if o.get("output_type") == "stream"
    )


def _text(page, selector):
    return page.locator(selector).first.inner_text().strip()


def check_06(lab, page):
    # on the page: the monitor shows the end, not a frozen live view
    head = _text(page, ".kit-monitor .kit-header")
    assert re.fullmatch(
        r"kit cluster: 3 nodes ran [\d,]+ tasks, 0 failed \(shut down, as of [\d:]+\)", head
    ), head
    total = {
        col: _text(page, f".kit-monitor .kit-row-total.kit-col-{col}")
        for col in ("state", "cpu", "queued", "running", "done")
    }
    assert total["state"] == "gone" and total["cpu"] == "0/3", total
    assert total["queued"] == total["running"] == "0", total
    done = int(total["done"])
    assert done >= 10_035, total  # 30 + 10,000 + 5 tasks
    assert head.startswith(f"kit cluster: 3 nodes ran {done:,} tasks")
    bar = _text(page, ".kit-progress .widget-html-content")
    assert bar.startswith("10000/10000 done"), bar
    page.locator(".kit-monitor").first.screenshot(path=str(ARTIFACTS / "lesson06-monitor.png"))
    # saved from JupyterLab: the monitor's output holds its final state beside the widget
    nb = lab.save(page, "06-clusters.ipynb")
    monitors = [(i, t) for i, t in _outputs(nb, "text/plain") if t.startswith("kit cluster:")]
    assert len(monitors) == 1, monitors
    cell, text = monitors[0]
    assert text.splitlines()[0] == head and "(live" not in text
    html = dict(_outputs(nb, "text/html"))[cell]
    assert "shut down</span>" in html and "(live" not in html and "<table" in html
    progress = [t for _, t in _outputs(nb, "text/plain") if "10000/10000 done" in t]
    assert progress and "HBox(" not in progress[0], progress
    # exported without widget state: the final copies, never a widget's repr
    nb.metadata.pop("widgets", None)
    exported = labbrowser.export_html(nb)
    for repr_text in ("HBox(children", "VBox(children", "IntProgress(", "GridBox("):
        assert repr_text not in exported, repr_text
    assert "shut down</span>" in exported and "10000/10000 done" in exported
    assert exported.count("data:image/png;base64") >= 1  # plot_node_counts
    (ARTIFACTS / "lesson06.html").write_text(exported)


def check_03(lab, page):
    nb = lab.save(page, "03-aggregation.ipynb")
    out = _stream(nb)
    linear = float(re.search(r"linear: 36 in ([\d.]+) s", out).group(1))
    tree = float(re.search(r"tree: 36 in ([\d.]+) s", out).group(1))
    assert tree < linear, out  # three rounds against seven steps (no wall-clock bound)
    assert "91 (expected 91)" in out
    pngs = _outputs(nb, "image/png")
    assert len(pngs) == 2 and all(len(p) > 5000 for _, p in pngs), [len(p) for _, p in pngs]
    exported = labbrowser.export_html(nb)
    assert exported.count("data:image/png;base64") >= 2
    assert "VBox(children" not in exported and "GridBox(" not in exported
    img = page.locator(".jp-OutputArea-output img").last
    img.scroll_into_view_if_needed()
    img.screenshot(path=str(ARTIFACTS / "lesson03-timelines.png"))


@pytest.mark.timeout(420)
def test_lessons_06_and_03_run_all_in_jupyterlab():
    tmp = Path(tempfile.mkdtemp(prefix="kit-e2e-lessons-"))
    (tmp / "root").mkdir()
    for name in LESSONS:
        shutil.copy(REPO / "notebooks" / name, tmp / "root" / name)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    old = {s: signal.signal(s, _raise_stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    lab = None
    left = []
    try:
        lab = labbrowser.Lab(tmp)
        for name, check in zip(LESSONS, (check_06, check_03)):
            page = lab.open(name)
            lab.run_all(page)
            seconds = lab.wait_ran(page, timeout=240)
            print(f"\n{name}: Run All took {seconds:.1f} s in JupyterLab")
            assert not lab.errors(page), lab.errors(page)
            check(lab, page)
            page.close()
    finally:
        if lab is not None:
            left = lab.close()
        for s, h in old.items():
            signal.signal(s, h)
        shutil.rmtree(tmp, ignore_errors=True)
    assert not left, f"processes left after JupyterLab stopped: {left}"
