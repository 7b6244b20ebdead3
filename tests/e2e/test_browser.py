"""The cluster monitor in a real browser: JupyterLab on loopback, Debian's Chromium, Playwright.

    pytest ──▶ python -m jupyterlab (own session, temp config) ──▶ kernel ──▶ kit (3 nodes)
       │                                                             │ updater thread
       └──▶ playwright ──▶ /usr/bin/chromium (headless) ──▶ /lab/tree/monitor.ipynb
                               reads .kit-row-<node>.kit-col-<column> cells

The notebook starts a 3-node cluster, displays a ClusterMonitor, then blocks in
``kit.get`` on a few hundred tasks; the test reads the per-node counts from the
rendered page while that cell shows ``[*]`` and after it finished, compares them
with the runtime's numbers printed by a later cell, counts the page updates with
a MutationObserver, saves screenshots under ``tests/e2e/artifacts/`` and stops
the browser, JupyterLab, the kernel and the cluster. Follows
``shared/E2E-BROWSER.md``; install what it needs with ``scripts/install-e2e.sh``.
Skips when chromium, playwright or jupyterlab is missing.
"""

import json
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers import TESTS, wait_until

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
N_TASKS = 300
TASK_SECONDS = 0.05

sys.path.insert(0, str(REPO / "scripts"))
import labbrowser  # noqa: E402

if labbrowser.missing():
    pytest.skip(labbrowser.missing(), allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402

CHROMIUM, CHROMIUM_ARGS = labbrowser.CHROMIUM, labbrowser.CHROMIUM_ARGS
_free_port, _descendants = labbrowser.free_port, labbrowser.descendants
_start_lab, _stop_lab = labbrowser.start_lab, labbrowser.stop_lab

PAGE_READ = "page-read"  # the test writes it next to the notebook once it has read the page

CELLS = [
    # 0: a 3-node local cluster
    f"""import os, sys, time, json
sys.path.insert(0, {str(REPO)!r})
sys.path.insert(0, {TESTS!r})
from helpers import wait_until
import kit, widgets
ctx = kit.init(num_nodes=3, num_cpus=1)
print("NODES", len(kit.nodes()))""",
    # 1: the monitor (displayed through its _repr_mimebundle_)
    """m = widgets.ClusterMonitor()
m""",
    # 2: a few hundred tasks; this cell blocks in kit.get while the monitor updates
    f"""@kit.remote
def nap(i):
    time.sleep({TASK_SECONDS})  # tasks that last: the cell blocks for seconds
    return i

t0 = time.time()
refs = [nap.remote(i) for i in range({N_TASKS})]
values = kit.get(refs, timeout=120)
t1 = time.time()
redraws = [t for t, _ in m.history if t0 <= t <= t1]
print("KERNEL", json.dumps({{"redraws": len(redraws), "seconds": t1 - t0, "n": len(values)}}))""",
    # 3: the runtime's own numbers
    f"""def counts():
    return {{n["tag"]: {{k: n[k] for k in ("done", "failed", "queued", "running")}}
            for n in kit.nodes()}}
wait_until(lambda: sum(c["done"] for c in counts().values()) == {N_TASKS}, 30, "every task counted")
print("RUNTIME", json.dumps(counts()))""",
    # 4: stop everything the notebook started, once the test has read the page
    f"""wait_until(lambda: os.path.exists({PAGE_READ!r}), 120, "the test to read the page")
kit.shutdown()
print("SHUTDOWN", kit.is_initialized())""",
]

READ_CELLS_JS = """() => {
  const out = {};
  for (const el of document.querySelectorAll('.kit-monitor .kit-cell')) {
    const cls = Array.from(el.classList);
    const row = (cls.find(c => c.startsWith('kit-row-')) || '').slice(8);
    const col = (cls.find(c => c.startsWith('kit-col-')) || '').slice(8);
    if (!row || !col) continue;
    out[row] = out[row] || {};
    if (col === 'bar') {
      const bar = el.querySelector('.progress-bar');
      out[row][col] = bar ? bar.style.width : null;
    } else {
      const c = el.querySelector('.widget-html-content');
      out[row][col] = c ? c.innerText.trim() : null;
    }
  }
  return out;
}"""

OBSERVE_JS = """() => {
  window.__kit = {all: [], done: []};
  const root = document.querySelector('.kit-monitor');
  new MutationObserver(() => window.__kit.all.push(performance.now()))
    .observe(root, {subtree: true, childList: true, characterData: true, attributes: true});
  const done = document.querySelector('.kit-row-total.kit-col-done .widget-html-content');
  new MutationObserver(() => window.__kit.done.push(performance.now()))
    .observe(done, {subtree: true, childList: true, characterData: true});
  return performance.now();
}"""


class _Stop(BaseException):
    pass


def _raise_stop(signum, frame):
    raise _Stop(f"signal {signum}: stopping the e2e harness")


def _write_notebook(path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nbformat.write(nb, str(path))


def _prompt(page, i):
    return page.locator(".jp-Notebook .jp-Cell").nth(i).locator(".jp-InputPrompt").inner_text()


def _output_line(page, prefix):
    text = page.locator(".jp-Notebook").inner_text()
    for line in text.splitlines():
        if line.startswith(prefix + " "):
            return line[len(prefix) + 1 :]
    return None


def _read_stable(page):
    """The monitor's cells, read until two reads 20 ms apart agree.

    One redraw reaches the page as one message per changed cell, so a read can
    fall between two of them; a stable read is one redraw's state.
    """
    reads = []

    def agree():
        reads.append(page.evaluate(READ_CELLS_JS))
        return len(reads) > 1 and reads[-1] == reads[-2]

    wait_until(agree, 10, "two reads of the monitor 20 ms apart that agree", interval=0.02)
    return reads[-1]


def _counts(cells):
    return {
        row: {k: int(v[k]) for k in ("done", "failed", "queued", "running")}
        for row, v in cells.items()
        if row != "total" and all(v.get(k) for k in ("done", "failed"))
    }


@pytest.mark.timeout(300)
def test_monitor_updates_in_browser_while_cell_blocks():
    tmp = Path(tempfile.mkdtemp(prefix="kit-e2e-"))
    (tmp / "root").mkdir()
    _write_notebook(tmp / "root" / "monitor.ipynb")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    old = {s: signal.signal(s, _raise_stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    port, token = _free_port(), secrets.token_hex(16)
    lab = None
    seen = []
    pw = ctx = None
    try:
        lab = _start_lab(tmp, port, token)
        pw = sync_playwright().start()
        ctx = pw.chromium.launch_persistent_context(
            str(tmp / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800},
        )
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"http://127.0.0.1:{port}/lab/tree/monitor.ipynb?token={token}")
        page.locator(".jp-Notebook .jp-Cell").nth(2).wait_for(state="attached", timeout=90_000)
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(
            state="attached", timeout=90_000
        )
        try:
            page.locator(".jp-Dialog .jp-mod-accept").click(timeout=1500)
        except Exception:  # noqa: BLE001 - no kernel dialog: the usual case
            pass
        seen.extend(_descendants(lab.pid))

        # Run All from the Run menu
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()

        # the monitor renders, then cell 2 blocks in kit.get
        page.locator(".kit-monitor .kit-row-total.kit-col-done .widget-html-content").wait_for(
            state="attached", timeout=120_000
        )
        t_obs = page.evaluate(OBSERVE_JS)
        wait_until(
            lambda: (
                re.fullmatch(r"\[\d+\]:", _prompt(page, 1).strip())
                and _prompt(page, 2).strip() == "[*]:"
            ),
            60,
            "cell 2 to run",
        )
        seen.extend(_descendants(lab.pid))

        readings = []  # (seconds, cells) read while cell 2 still shows [*], one per change
        t_start = time.time()

        def blocked():
            return _prompt(page, 2).strip() == "[*]:"

        def total_done():
            return page.evaluate(READ_CELLS_JS).get("total", {}).get("done")

        while blocked():
            cells = _read_stable(page)
            if not blocked():
                break
            readings.append((time.time() - t_start, cells))
            if len(readings) == 2:
                page.locator(".kit-monitor").first.screenshot(
                    path=str(ARTIFACTS / "monitor-running.png")
                )
            shown = cells["total"]["done"]
            wait_until(
                lambda shown=shown: not blocked() or total_done() != shown,
                150,
                "the page's done count to change, or cell 2 to finish",
                interval=0.1,
            )
        blocked_for = time.time() - t_start
        seen.extend(_descendants(lab.pid))
        wait_until(
            lambda: re.fullmatch(r"\[\d+\]:", _prompt(page, 2).strip()), 150, "cell 2 to finish"
        )
        obs = page.evaluate("() => [window.__kit.all, window.__kit.done, performance.now()]")

        # the runtime's numbers, printed by cell 3
        wait_until(lambda: _output_line(page, "RUNTIME") is not None, 60, "the RUNTIME line")
        runtime = json.loads(_output_line(page, "RUNTIME"))
        kernel = json.loads(_output_line(page, "KERNEL"))
        final = {}

        def page_matches():
            final.update(page.evaluate(READ_CELLS_JS))
            return _counts(final) == runtime

        wait_until(page_matches, 20, f"the page to show the runtime's counts {runtime}")
        page.locator(".kit-monitor").first.scroll_into_view_if_needed()
        page.locator(".kit-monitor").first.screenshot(path=str(ARTIFACTS / "monitor.png"))
        page.screenshot(path=str(ARTIFACTS / "notebook.png"))
        (tmp / "root" / PAGE_READ).touch()  # cell 4 may shut the cluster down now

        # everything stops: the notebook shuts the cluster down, the monitor says so
        wait_until(lambda: _output_line(page, "SHUTDOWN") is not None, 60, "the SHUTDOWN line")
        assert _output_line(page, "SHUTDOWN") == "False"
        wait_until(
            lambda: "shut down" in page.locator(".kit-monitor .kit-header").inner_text(),
            20,
            "the monitor to show the cluster shut down",
        )
        page.locator(".kit-monitor").first.screenshot(path=str(ARTIFACTS / "monitor-shutdown.png"))

        # ---- what was seen --------------------------------------------------------------
        assert len(readings) >= 2, f"cell 2 blocked only {blocked_for:.1f} s: {readings}"
        done_seen = [int(c["total"]["done"]) for _, c in readings]
        assert done_seen == sorted(done_seen)
        assert any(0 < d < N_TASKS for d in done_seen), done_seen
        assert len(set(done_seen)) >= 2, f"the page did not change while blocked: {done_seen}"
        for _, c in readings:  # every reading is a consistent row set
            assert set(c) == {"n0", "n1", "n2", "total"}
            assert sum(int(c[n]["done"]) for n in ("n0", "n1", "n2")) == int(c["total"]["done"])
        assert sum(v["done"] for v in runtime.values()) == N_TASKS
        assert {row: final[row]["state"] for row in ("n0", "n1", "n2")} == {
            "n0": "alive",
            "n1": "alive",
            "n2": "alive",
        }

        all_updates, done_updates, t_end = obs
        window = [t for t in done_updates if t_obs <= t <= t_end]
        span = max((t_end - t_obs) / 1000.0, 1e-3)
        updates = _bursts(all_updates)
        page_rate = len(window) / span
        print(f"\ne2e: cell blocked {blocked_for:.1f} s; page readings of total done: {done_seen}")
        print(
            f"e2e: page updates (monitor DOM bursts) {len(updates)} in {span:.1f} s "
            f"= {len(updates) / span:.1f}/s; 'done' cell changed {len(window)} times "
            f"= {page_rate:.1f}/s; kernel redraws {kernel['redraws']} in "
            f"{kernel['seconds']:.1f} s = {kernel['redraws'] / kernel['seconds']:.1f}/s"
        )
        (ARTIFACTS / "rate.json").write_text(
            json.dumps(
                {
                    "blocked_seconds": blocked_for,
                    "page_done_readings": done_seen,
                    "page_bursts": len(updates),
                    "page_seconds": span,
                    "page_done_changes": len(window),
                    "kernel": kernel,
                    "runtime": runtime,
                    "page_final": final,
                },
                indent=1,
            )
        )
        # the rates are reported above and in rate.json, not asserted (no wall-clock asserts)
    finally:
        if ctx is not None:
            try:
                ctx.close()
            except Exception:  # noqa: BLE001
                pass
        if pw is not None:
            try:
                pw.stop()
            except Exception:  # noqa: BLE001
                pass
        left = _stop_lab(lab, seen) if lab is not None else []
        for s, h in old.items():
            signal.signal(s, h)
        shutil.rmtree(tmp, ignore_errors=True)
    assert not left, f"processes left after JupyterLab stopped: {left}"


def _bursts(times, gap=30.0):
    """Group DOM mutation times (ms) closer than ``gap`` into one visible update."""
    out = []
    for t in sorted(times):
        if not out or t - out[-1] > gap:
            out.append(t)
        else:
            out[-1] = t
    return out
