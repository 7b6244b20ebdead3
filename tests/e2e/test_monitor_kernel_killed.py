"""A monitor whose kernel is killed outright says it is no longer updated.

    pytest ──▶ scripts/labbrowser.py: JupyterLab (own session, temp config) + Chromium
                 a notebook: kit with 2 slots, a ClusterMonitor, two long tasks running
                 SIGKILL to the kernel (no shutdown from the front end, no kit.shutdown)

Such a kernel sends nothing more, so the monitor kept its last live picture for good
("CPU 2/2 busy (live)", measured before this test existed), with ipywidgets'
broken-link icon on each of its 36 views once JupyterLab restarted the kernel. Now its
header's rules, keyed on the class ipywidgets gives the old kernel's views then
(``jupyter-widgets-disconnected``), say "not updated: its kernel stopped" in place of
"live", dim the last figures and hide the icons; a progress bar (or a status line)
still counting adds that label to its line. The test checks the live header, then
that label, no icon inside the monitor, the bar's label, and that the cluster died
with the kernel.
"""

import os
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
nbformat = pytest.importorskip("nbformat")

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
MARKER = "KIT_E2E_KILLED"
CELLS = [
    "import os, time\nimport kit, widgets\nkit.init(num_cpus=2)\nm = widgets.ClusterMonitor()\nm",
    "@kit.remote\ndef nap(s):\n    time.sleep(s)\n\n"
    "refs = [nap.remote(120) for _ in range(2)]\nprint('kernel pid', os.getpid())",
    "bar = widgets.progress(refs, label='naps')",
]


class _Stop(BaseException):
    pass


def _raise_stop(signum, frame):
    raise _Stop(f"signal {signum}: stopping the e2e harness")


def _header(page):
    return page.locator(".kit-monitor .kit-header").first.inner_text().strip()


@pytest.mark.timeout(300)
def test_a_killed_kernels_monitor_says_it_is_not_updated():
    tmp = Path(tempfile.mkdtemp(prefix="kit-e2e-killed-"))
    (tmp / "root").mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nbformat.write(nb, str(tmp / "root" / "killed.ipynb"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    old = {s: signal.signal(s, _raise_stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    lab, left, kit_left = None, [], []
    value = tmp.name
    try:
        lab = labbrowser.Lab(tmp, env={MARKER: value})
        page = lab.open("killed.ipynb")
        lab.run_all(page)
        lab.wait_ran(page, timeout=120)
        live = labbrowser.until(
            lambda: _header_if(page, lambda h: "CPU 2/2 busy" in h), 60, "both slots busy"
        )
        assert live == "kit cluster: 1/1 nodes alive, CPU 2/2 busy (live)", live
        out = page.locator(".jp-OutputArea-output", has_text="kernel pid").first.inner_text()
        pid = int(re.search(r"kernel pid (\d+)", out).group(1))
        lab.watch()
        os.kill(pid, signal.SIGKILL)
        stale = labbrowser.until(
            lambda: _header_if(page, lambda h: "not updated" in h),
            60,
            "the header to say its kernel stopped",
        )
        assert (
            stale == "kit cluster: 1/1 nodes alive, CPU 2/2 busy (not updated: its kernel stopped)"
        )
        icons = page.evaluate(
            """() => Array.from(document.querySelectorAll(
                 '.kit-monitor.jupyter-widgets-disconnected, '
                 + '.kit-monitor .jupyter-widgets-disconnected'))
                 .map(e => getComputedStyle(e, '::before').display)"""
        )
        assert len(icons) > 30 and set(icons) == {"none"}, icons  # marked, icons hidden
        grid = page.evaluate(
            "() => getComputedStyle(document.querySelector('.kit-monitor .widget-gridbox')).opacity"
        )
        assert float(grid) < 1, grid
        bar = page.locator(".kit-progress .kit-header").first.inner_text().strip()
        assert bar.startswith("naps: 0/2 done") and bar.endswith(
            "not updated: its kernel stopped"
        ), bar  # a bar still counting says so too
        page.locator(".kit-monitor").first.screenshot(
            path=str(ARTIFACTS / "monitor-kernel-killed.png")
        )
        page.close()
        kit_left = _marked_alive(value)
    finally:
        if lab is not None:
            left = lab.close()
        for s, h in old.items():
            signal.signal(s, h)
        shutil.rmtree(tmp, ignore_errors=True)
    assert not kit_left, f"kit processes outlived their killed kernel: {kit_left}"
    assert not left, f"processes left after JupyterLab stopped: {left}"


def _header_if(page, check):
    """The monitor's header if ``check`` holds for it, else None (for ``until``)."""
    header = _header(page)
    return header if check(header) else None


def _marked_alive(value, timeout=15.0):
    """kit processes started by the killed kernel that are still alive after ``timeout``
    (they die with the kernel: its pipe to the head closes)."""
    import psutil

    def alive():
        found = []
        for p in psutil.process_iter(["pid"]):
            try:
                if p.status() != psutil.STATUS_ZOMBIE and p.environ().get(MARKER) == value:
                    if "jupyter" not in " ".join(p.cmdline()) and "ipykernel" not in " ".join(
                        p.cmdline()
                    ):
                        found.append(p)
            except psutil.Error:
                continue
        return found

    try:
        labbrowser.until(lambda: not alive(), timeout, "kit to stop with its kernel")
    except TimeoutError:
        pass
    return [(p.pid, " ".join(p.cmdline())[:100]) for p in alive()]
