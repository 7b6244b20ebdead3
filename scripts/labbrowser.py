"""JupyterLab in headless Chromium, driven by Playwright: what the browser tests and
``scripts/run_lessons.py`` use to run notebooks as a student would.

    Lab(tmp) ──▶ python -m jupyterlab (own session, config and token under tmp, loopback)
             ──▶ playwright ──▶ /usr/bin/chromium (headless, a fresh profile)
    lab.open("06-clusters.ipynb") ──▶ page; lab.run_all(page); lab.wait_ran(page)
    lab.save(page) ──▶ the notebook on disk, with the outputs JupyterLab holds
    lab.close()    ──▶ browser, JupyterLab, its kernels: stopped, no process left

Follows ``/work/shared/E2E-BROWSER.md`` (install the tools with
``scripts/install-e2e.sh``; never ``playwright install``). ``missing()`` says what is
not installed, for callers that skip.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

CHROMIUM = "/usr/bin/chromium"
INSTALL_HINT = "install it with: bash scripts/install-e2e.sh"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[1]


def missing() -> str | None:
    """What the harness needs and is not installed (a sentence), or None."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"Debian's chromium is not installed at {CHROMIUM}; {INSTALL_HINT}"
    for module in ("playwright.sync_api", "jupyterlab", "nbformat"):
        try:
            __import__(module)
        except ImportError:
            return f"{module.split('.')[0]} is not installed; {INSTALL_HINT}"
    return None


def until(check, timeout, what, interval=0.1):
    """Poll ``check()`` until it is true; raise ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid) -> list:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def start_lab(tmp: Path, port: int, token: str, env_extra=None):
    """Start JupyterLab on loopback with its config under ``tmp`` and ``tmp/root`` as root."""
    env = dict(os.environ)
    for var, sub in (
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
        ("JUPYTERLAB_SETTINGS_DIR", "settings"),
        ("IPYTHONDIR", "ipython"),
    ):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(tmp / sub)
    note = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    note.mkdir(parents=True, exist_ok=True)
    (note / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    tracker = tmp / "settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True, exist_ok=True)  # every cell rendered, on screen or not
    (tracker / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(env_extra or {})
    (tmp / "root").mkdir(parents=True, exist_ok=True)
    log = open(tmp / "jupyterlab.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={tmp / 'root'}",
            f"--IdentityProvider.token={token}",
            "--LabApp.expose_app_in_browser=True",
            "--allow-root",
        ],
        cwd=str(tmp),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    url = f"http://127.0.0.1:{port}/api/status?token={token}"

    def answers():
        if proc.poll() is not None:
            raise RuntimeError(
                f"jupyterlab exited with {proc.returncode}: "
                f"{(tmp / 'jupyterlab.log').read_text()[-2000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    until(answers, 90, "jupyterlab to answer /api/status", interval=0.2)
    return proc


def stop_lab(proc, known) -> list:
    """SIGINT until it stops (10 s), then TERM/KILL; then kill every child seen. Returns
    ``(pid, command)`` of processes that were still alive at the end (and were killed)."""
    known = {p.pid: p for p in known}
    for p in descendants(proc.pid):
        known.setdefault(p.pid, p)
    if proc.poll() is None:

        def stopped():
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGINT)
                except ProcessLookupError:
                    pass
            return proc.poll() is not None

        try:
            until(stopped, 10, "jupyterlab to stop on SIGINT", interval=0.3)
        except TimeoutError:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    _, alive = psutil.wait_procs(list(known.values()), timeout=10)
    left = []
    for p in alive:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                left.append((p.pid, " ".join(p.cmdline())[:120]))
                p.kill()
        except psutil.Error:
            pass
    return left


class Lab:
    """JupyterLab and a headless Chromium page on it; ``close()`` stops both.

    Args:
        tmp: a fresh directory for config, the notebooks' root (``tmp/root``) and logs.
        env: extra environment for JupyterLab and its kernels.
        viewport: the page's size.
    """

    def __init__(self, tmp: Path, env=None, viewport=(1280, 900)):
        from playwright.sync_api import sync_playwright

        self.tmp = Path(tmp)
        self.root = self.tmp / "root"
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.proc = None
        self.seen: list = []
        self.pw = self.ctx = None
        self.proc = start_lab(self.tmp, self.port, self.token, env)
        self.pw = sync_playwright().start()
        self.ctx = self.pw.chromium.launch_persistent_context(
            str(self.tmp / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": viewport[0], "height": viewport[1]},
        )

    def open(self, name: str, timeout=90):
        """Open ``root/name`` in a new tab; return the page once its kernel is idle."""
        page = self.ctx.new_page()
        page.set_default_timeout(60_000)
        # a workspace of its own, reset: only this notebook is open in the tab
        space = re.sub(r"[^A-Za-z0-9]", "-", name)
        page.goto(
            f"http://127.0.0.1:{self.port}/lab/workspaces/{space}/tree/{name}"
            f"?reset&token={self.token}"
        )
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(
            state="attached", timeout=timeout * 1000
        )
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(
            state="attached", timeout=timeout * 1000
        )
        try:
            page.locator(".jp-Dialog .jp-mod-accept").click(timeout=1500)
        except Exception:  # noqa: BLE001 - no kernel dialog: the usual case
            pass
        self.watch()
        return page

    def watch(self):
        """Note JupyterLab's processes now (kernels run in sessions of their own)."""
        self.seen.extend(descendants(self.proc.pid))

    def run_all(self, page):
        """Run All, from the Run menu (as a student would)."""
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()

    def run_cell_by_cell(self, page, timeout=120) -> float:
        """Run the cells one at a time (Shift+Enter), each after the one before has ended,
        as a student stepping through; the seconds it took."""
        start = time.monotonic()
        page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").first.click()
        page.keyboard.press("Escape")
        cells = page.evaluate(
            "() => document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell')"
            ".length"
        )
        for _ in range(cells):
            page.keyboard.press("Shift+Enter")
            until(
                lambda: "[*]:" not in self.prompts(page), timeout, "the cell to end", interval=0.1
            )
        self.watch()
        return time.monotonic() - start

    def prompts(self, page) -> list:
        """The input prompts of the notebook's code cells (``[3]:``, ``[*]:``, ``[ ]:``)."""
        return page.evaluate(
            """() => Array.from(document.querySelectorAll(
                 '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt'))
                 .map(e => e.textContent.trim())"""
        )

    def wait_ran(self, page, timeout=300) -> float:
        """Wait until every code cell has run (a number in each prompt); the seconds waited."""
        start = time.monotonic()

        def ran():
            ps = self.prompts(page)
            return ps and all(re.fullmatch(r"\[\d+\]:", p) for p in ps)

        until(ran, timeout, "every cell to run", interval=0.25)
        self.watch()
        return time.monotonic() - start

    def errors(self, page) -> list:
        """The text of error outputs on the page."""
        return page.evaluate(
            """() => Array.from(document.querySelectorAll(
                 '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'))
                 .map(e => e.innerText).filter(t => /Error|Traceback/.test(t))"""
        )

    def save(self, page, name: str):
        """Save the notebook from JupyterLab (its outputs as shown); return it read from disk."""
        import nbformat

        path = self.root / name
        before = path.stat().st_mtime_ns
        page.evaluate("() => { window.jupyterapp.commands.execute('docmanager:save'); }")
        until(lambda: path.stat().st_mtime_ns != before, 30, f"{name} to be saved")
        until(lambda: _readable(path), 10, f"{name} to be written whole")
        return nbformat.read(str(path), as_version=4)

    def close(self) -> list:
        """Stop the browser and JupyterLab; ``(pid, command)`` of processes left (killed)."""
        if self.ctx is not None:
            try:
                self.ctx.close()
            except Exception:  # noqa: BLE001
                pass
        if self.pw is not None:
            try:
                self.pw.stop()
            except Exception:  # noqa: BLE001
                pass
        return stop_lab(self.proc, self.seen) if self.proc is not None else []


def _readable(path) -> bool:
    import nbformat

    try:
        nbformat.read(str(path), as_version=4)
        return True
    except Exception:  # noqa: BLE001 - still being written
        return False


def export_html(nb) -> str:
    """The notebook exported by nbconvert's HTML exporter (as ``jupyter nbconvert --to html``)."""
    from nbconvert import HTMLExporter

    html, _ = HTMLExporter().from_notebook_node(nb)
    return html
