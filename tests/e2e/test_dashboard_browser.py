"""The dashboard in a real browser (Debian's Chromium through Playwright), and as JupyterLab tabs.

    pytest ── kit.init(3 nodes) ── dashboard process ── /ws ──▶ Chromium: the page
       │  submits a few hundred tasks and an actor's calls; reads the page while they run
       │  and after: per-node counts (== kit.nodes()), task-stream lanes, the actor table
       └── JupyterLab ── notebook: %cluster dashboard ── the extension's button ──▶ a tab
              (an iframe of the panel) whose counts follow the tasks a later cell runs

Screenshots go to ``$KIT_DASHBOARD_SHOTS`` (default ``tests/e2e/artifacts/``). Skips
without chromium, playwright or (for the second test) jupyterlab; install them with
``scripts/install-e2e.sh``.
"""

import json
import os
import secrets
import signal
import sys
import time
from pathlib import Path

import pytest
from helpers import TESTS, wait_until

import kit

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"no chromium at {CHROMIUM}; bash scripts/install-e2e.sh", allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="no playwright; bash scripts/install-e2e.sh")

from playwright.sync_api import sync_playwright  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("KIT_DASHBOARD_SHOTS") or Path(__file__).parent / "artifacts")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
N_TASKS = 300
CALLS = 40

READ_NODES = """() => {
  const out = {};
  for (const td of document.querySelectorAll('#nodes td[data-node]')) {
    (out[td.dataset.node] = out[td.dataset.node] || {})[td.dataset.col] = td.innerText.trim();
  }
  return out;
}"""
READ_LANES = """() => Array.from(document.querySelectorAll('#lanes .lane')).map(
  l => [l.dataset.node, l.dataset.worker, +l.dataset.bars])"""
READ_ACTORS = """() => Array.from(document.querySelectorAll('#actor-table tbody tr')).map(
  tr => ({cls: tr.querySelector('[data-col=class]').innerText,
          state: tr.querySelector('[data-col=state]').innerText,
          calls: +tr.querySelector('[data-col=calls]').innerText}))"""


def browser(tmp, pw=None):
    pw = pw or sync_playwright().start()
    ctx = pw.chromium.launch_persistent_context(
        str(tmp / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
        viewport={"width": 1280, "height": 800},
    )  # fmt: skip
    return pw, ctx


def counts(cells):
    return {n: {k: int(v[k]) for k in ("done", "failed")} for n, v in cells.items()}


def runtime_counts():
    return {n["tag"]: {"done": n["done"], "failed": n["failed"]} for n in kit.nodes()}


def show(page, panel):
    page.evaluate(f"() => {{ location.hash = '{panel}'; }}")
    page.locator(f"#{panel}.active").wait_for(state="visible")


@pytest.mark.timeout(180)
def test_dashboard_page_follows_tasks_nodes_and_an_actor(fresh, tmp_path):
    ctx = fresh(num_nodes=3, num_cpus=1, dashboard_port=0, log_to_driver=False)
    SHOTS.mkdir(parents=True, exist_ok=True)
    base = ctx.dashboard_url.split("/?token=")[0]
    pw, bctx = browser(tmp_path)
    try:
        page = bctx.new_page()
        page.set_default_timeout(30_000)
        page.goto(ctx.dashboard_url)
        assert "token=" not in page.url  # taken out of the address bar; the cookie carries on
        page.locator("#status.on").wait_for()
        wait_until(lambda: len(page.evaluate(READ_NODES)) == 3, 10, "three nodes on the page")

        @kit.remote
        def nap(i):
            time.sleep(0.05)  # tasks that last: the page sees them running
            return i

        @kit.remote
        class Tally:
            def __init__(self):
                self.n = 0

            def add(self, k):
                self.n += k
                return self.n

        tally = Tally.remote()
        refs = [nap.remote(i) for i in range(N_TASKS)]
        calls = [tally.add.remote(1) for _ in range(CALLS)]
        # while they run: the counts grow on the page, node by node
        during = wait_until(
            lambda: (c := counts(page.evaluate(READ_NODES))) and 0 < sum(
                v["done"] for v in c.values()) < N_TASKS and c,
            30, "done counts growing while the tasks run", interval=0.1,
        )  # fmt: skip
        show(page, "stream")
        lanes = wait_until(
            lambda: (ls := page.evaluate(READ_LANES)) and len({n for n, _, _ in ls}) == 3 and ls,
            20, "task-stream lanes of all three nodes",
        )  # fmt: skip
        page.screenshot(path=str(SHOTS / "dashboard-stream-running.png"))
        assert kit.get(refs, timeout=120) == list(range(N_TASKS))
        assert kit.get(calls, timeout=60)[-1] == CALLS
        # after: the page's counts are the runtime's
        final = runtime_counts()
        assert sum(v["done"] for v in final.values()) == N_TASKS + CALLS + 1  # and __init__
        show(page, "overview")
        wait_until(
            lambda: counts(page.evaluate(READ_NODES)) == final,
            15,
            lambda: f"the page's counts {page.evaluate(READ_NODES)} to be {final}",
        )
        page.screenshot(path=str(SHOTS / "dashboard-overview.png"))
        show(page, "stream")
        lanes = wait_until(
            lambda: (ls := page.evaluate(READ_LANES)) and sum(b for *_, b in ls) == N_TASKS
            + CALLS + 1 and ls, 15, "one bar per run in the lanes",
        )  # fmt: skip
        assert len(lanes) >= 3 and all(b > 0 for *_, b in lanes)
        progress = page.locator('#progress [data-function="nap"] .count')
        assert progress.get_attribute("data-done") == str(N_TASKS)
        page.screenshot(path=str(SHOTS / "dashboard-stream.png"))
        show(page, "actors")
        actors = wait_until(lambda: page.evaluate(READ_ACTORS), 10, "the actor table")
        assert actors == [{"cls": "Tally", "state": "ALIVE", "calls": CALLS}]
        page.screenshot(path=str(SHOTS / "dashboard-actors.png"))
        for panel in ("tasks", "workers", "drivers"):
            show(page, panel)
            page.screenshot(path=str(SHOTS / f"dashboard-{panel}.png"))
        assert during and lanes
        # a browser without the token gets 403 and nothing else, on the page and its feed
        other = browser(tmp_path / "other", pw)  # a profile without the cookie
        try:
            p2 = other[1].new_page()
            resp = p2.goto(base + "/")
            assert resp.status == 403 and p2.inner_text("body").strip() == "403 Forbidden"
            assert p2.goto(base + "/metrics").status == 403
            p2.screenshot(path=str(SHOTS / "dashboard-403.png"))
        finally:
            other[1].close()
    finally:
        bctx.close()
        pw.stop()


LAB_CELLS = [
    f"import os, sys, time\nsys.path.insert(0, {str(REPO)!r})\nsys.path.insert(0, {TESTS!r})\n"
    "import kit\nctx = kit.init(num_nodes=2, num_cpus=1, dashboard_port=0, log_to_driver=False)\n"
    "%load_ext kit",
    "%cluster dashboard",
    "from helpers import wait_until\n"
    "wait_until(lambda: os.path.exists('tab-open'), 120, 'the test to open the tab')\n"
    "@kit.remote\ndef nap(i):\n    time.sleep(0.1)  # running while the tab looks\n    return i\n"
    "refs = [nap.remote(i) for i in range(80)]\nprint('SUM', sum(kit.get(refs, timeout=120)))\n"
    "print('RUNTIME', {n['tag']: n['done'] for n in kit.nodes()})",
    "wait_until(lambda: os.path.exists('tab-read'), 120, 'the test to read the tab')\n"
    "kit.shutdown()",
]


@pytest.mark.timeout(300)
def test_jupyterlab_panel_opens_as_a_tab_and_updates(tmp_path, monkeypatch):
    pytest.importorskip("jupyterlab", reason="no jupyterlab; bash scripts/install-e2e.sh")
    import nbformat
    from test_browser import _descendants, _free_port, _raise_stop, _start_lab, _stop_lab

    installed = Path(sys.prefix, "share", "jupyter", "labextensions", "kit-dashboard")
    if not installed.exists():  # an editable install does not copy data files: point at ours
        jp = tmp_path / "jupyter-path" / "labextensions"
        jp.mkdir(parents=True)
        (jp / "kit-dashboard").symlink_to(REPO / "kit" / "dashboard" / "labextension")
        monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter-path"))
    root = tmp_path / "root"
    root.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in LAB_CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nb, str(root / "dash.ipynb"))
    SHOTS.mkdir(parents=True, exist_ok=True)
    old = {s: signal.signal(s, _raise_stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    port, token = _free_port(), secrets.token_hex(16)
    lab = pw = bctx = None
    seen = []
    try:
        lab = _start_lab(tmp_path, port, token)
        pw, bctx = browser(tmp_path)
        page = bctx.pages[0] if bctx.pages else bctx.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"http://127.0.0.1:{port}/lab/tree/dash.ipynb?token={token}")
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(
            state="attached", timeout=90_000
        )
        seen.extend(_descendants(lab.pid))

        def prompt(i):
            cell = page.locator(".jp-Notebook .jp-Cell").nth(i)
            return cell.locator(".jp-InputPrompt").inner_text()

        try:
            page.locator(".jp-Dialog .jp-mod-accept").click(timeout=1500)
        except Exception:  # noqa: BLE001 - no kernel dialog: the usual case
            pass
        # Run All, fired and forgotten (it resolves only when every cell has run)
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        button = page.locator('.kit-dashboard-open[data-panel="overview"]')
        button.wait_for(timeout=30_000)  # the extension rendered %cluster dashboard's output
        button.click()
        tab = page.locator(".kit-dashboard-tab")
        tab.wait_for()
        frame = page.frame_locator(".kit-dashboard-tab iframe")
        frame.locator("#status.on").wait_for(state="attached", timeout=30_000)  # header hidden
        read = frame.locator("body")

        def done_in_tab():
            cells = read.evaluate(READ_NODES.replace("() =>", "(body) =>"))
            return {n: int(v["done"]) for n, v in cells.items()} if len(cells) == 2 else None

        assert wait_until(done_in_tab, 20, "the tab's node rows") == {"n0": 0, "n1": 0}
        page.screenshot(path=str(SHOTS / "jupyterlab-tab-before.png"))
        (root / "tab-open").write_text("")  # the third cell runs its tasks now
        wait_until(lambda: (d := done_in_tab()) and 0 < sum(d.values()) < 80, 60,
                   "the tab's counts growing while the cell runs", interval=0.1)  # fmt: skip
        page.screenshot(path=str(SHOTS / "jupyterlab-tab-running.png"))

        def output_line():
            lines = page.locator(".jp-Notebook .jp-OutputArea").all_inner_texts()
            found = [x for t in lines for x in t.splitlines() if x.startswith("RUNTIME {")]
            return found[0] if found else None

        line = wait_until(output_line, 120, "the cell's output")
        runtime = json.loads(line[len("RUNTIME ") :].replace("'", '"'))
        wait_until(
            lambda: done_in_tab() == runtime,
            20,
            lambda: f"the tab's counts {done_in_tab()} to be the runtime's {runtime}",
        )
        page.screenshot(path=str(SHOTS / "jupyterlab-tab.png"))
        (root / "tab-read").write_text("")  # the last cell shuts the cluster down now
        wait_until(lambda: prompt(3).strip() == "[4]:", 60, "kit.shutdown() in the notebook")
    finally:
        if bctx is not None:
            bctx.close()
        if pw is not None:
            pw.stop()
        if lab is not None:
            left = _stop_lab(lab, seen)
            assert not left, f"processes left: {left}"
        for s, h in old.items():
            signal.signal(s, h)
