"""How much CPU and memory each worker used while a block of code ran: why a speed-up failed.

    with WorkerUsage() as usage:        the workers: kit's dashboard (GET /api/state,
        <run the work>                  kit.dashboard_url()): node tag, pid, task
                                        each worker's CPU time (psutil) at the start,
                                        every SAMPLE s (new workers, peak memory), at the end
    usage.rows   one WorkerRow per worker: CPU % of one core over the block, peak RSS
    usage        displays as a table; usage.plot() draws it (KitFigure)

CPU % is the CPU time a worker got divided by the block's wall time, so a worker
that computed the whole time on a core of its own shows 100 %; four workers on two
busy cores show about 50 % each. The machine's row is every core's busy share
(all processes, kit's or not). Only workers on this machine can be measured.
"""

from __future__ import annotations

import html
import json
import threading
import time
import urllib.parse
import urllib.request
from typing import NamedTuple

import psutil

from .plots import KitFigure
from .view import _natural

SAMPLE = 0.5  # seconds between samples (memory peaks, workers that start during the block)
MIB = 1024 * 1024


class WorkerRow(NamedTuple):
    """One worker's use of the machine while the block ran.

    Attributes:
        node: the node's tag (``n0``).
        pid: the worker's process id.
        cpu_percent: CPU time over wall time, in % of one core.
        rss_mib: the most resident memory seen, in MiB.
        task: the task it ran last (its function), or "".
    """

    node: str
    pid: int
    cpu_percent: float
    rss_mib: float
    task: str


def _cpu(p) -> float:
    t = p.cpu_times()
    return t.user + t.system


def _busy(times) -> float:
    return times.user + times.system + getattr(times, "nice", 0.0) + getattr(times, "irq", 0.0)


def dashboard_workers(url=None) -> list:
    """The cluster's workers on this machine, from kit's dashboard: ``[(tag, pid, task)]``.

    Args:
        url: the dashboard's link with its view token (default: ``kit.dashboard_url()``).

    Raises:
        RuntimeError: no kit cluster with a dashboard.
    """
    if url is None:
        import kit

        url = kit.dashboard_url() if kit.is_initialized() else None
    if not url:
        raise RuntimeError(
            "per-worker figures come from kit's dashboard: start kit with it "
            "(kit.init() does, unless include_dashboard=False)"
        )
    parts = urllib.parse.urlsplit(url)
    state = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/api/state", parts.query, ""))
    with urllib.request.urlopen(state, timeout=10) as r:
        body = json.loads(r.read())
    out = []
    for w in body.get("workers", ()):
        if w.get("local") and w.get("pid"):
            out.append((w.get("node") or "?", int(w["pid"]), (w.get("task") or {}).get("label")))
    return out


class WorkerUsage:
    """CPU and memory of every local worker while a ``with`` block runs.

    Args:
        url: the dashboard's link (default: ``kit.dashboard_url()``).

    Attributes:
        rows: a ``WorkerRow`` per worker (after the block), by node then pid.
        seconds: the block's wall time.
        machine_percent: the machine's busy share over the block, in % of all cores.
        cores: the machine's logical cores.

    Example:
        >>> import kit, widgets
        >>> _ = kit.init(num_cpus=1)
        >>> with widgets.WorkerUsage() as usage:  # doctest: +SKIP
        ...     kit.get(work.remote())
        >>> usage.rows[0].cpu_percent  # doctest: +SKIP
        98.7
    """

    def __init__(self, url=None):
        self.url = url
        self.rows: list = []
        self.seconds = 0.0
        self.machine_percent = 0.0
        self.cores = psutil.cpu_count() or 1
        self._procs: dict = {}  # pid -> [node, psutil.Process, cpu at start, cpu last, rss, task]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._since = None  # time.time() at the block's start (None while it starts)

    # ---- sampling ----------------------------------------------------------------

    def _discover(self):
        for node, pid, task in dashboard_workers(self.url):
            with self._lock:
                known = self._procs.get(pid)
                if known is not None:
                    known[5] = task or known[5]
                    continue
                try:
                    p = psutil.Process(pid)
                    cpu = _cpu(p)
                    born = p.create_time()
                except psutil.Error:
                    continue
                # a worker started during the block: all of its CPU time is the block's
                first = 0.0 if self._since is not None and born >= self._since else cpu
                self._procs[pid] = [node, p, first, cpu, p.memory_info().rss, task or ""]

    def _sample(self):
        with self._lock:
            for entry in self._procs.values():
                try:
                    entry[3] = _cpu(entry[1])
                    entry[4] = max(entry[4], entry[1].memory_info().rss)
                except psutil.Error:
                    pass  # it exited: its last reading stands

    def _run(self):
        n = 0
        while not self._stop.wait(SAMPLE):
            n += 1
            try:
                if n % 4 == 0:  # workers started during the block
                    self._discover()
            except Exception:  # noqa: BLE001 - the dashboard is busy: next time
                pass
            self._sample()

    def __enter__(self):
        self._since = None
        self._discover()
        self._since = time.time()
        self._machine0 = psutil.cpu_times()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True, name="kit-worker-usage")
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        try:
            self._discover()  # workers that started since the last look
        except Exception:  # noqa: BLE001 - the cluster went away: what was seen stands
            pass
        self._sample()
        self.seconds = max(1e-9, time.monotonic() - self._t0)
        m0, m1 = self._machine0, psutil.cpu_times()
        total = sum(m1) - sum(m0)
        self.machine_percent = 100.0 * (_busy(m1) - _busy(m0)) / total if total > 0 else 0.0
        rows = [
            WorkerRow(node, pid, 100.0 * (last - first) / self.seconds, rss / MIB, task)
            for pid, (node, _, first, last, rss, task) in self._procs.items()
        ]
        self.rows = sorted(rows, key=lambda r: (_natural(r.node), r.pid))

    # ---- showing -----------------------------------------------------------------

    def text(self) -> str:
        """The figures as a text table."""
        lines = [
            f"{len(self.rows)} workers over {self.seconds:.2f} s; the machine was "
            f"{self.machine_percent:.0f}% busy ({self.cores} cores, every process counted)",
            f"{'node':6s} {'pid':>7s} {'CPU (% of a core)':>18s} {'memory (MiB)':>13s}",
        ]
        for r in self.rows:
            lines.append(f"{r.node:6s} {r.pid:7d} {r.cpu_percent:18.0f} {r.rss_mib:13.1f}")
        return "\n".join(lines)

    def __repr__(self):
        return self.text()

    def _repr_html_(self):
        head = html.escape(self.text().splitlines()[0])
        cell = "padding:1px 8px;text-align:right"
        rows = "".join(
            f"<tr><td style='{cell};text-align:left'>{html.escape(r.node)}</td>"
            f"<td style='{cell}'>{r.pid}</td><td style='{cell}'>{r.cpu_percent:.0f}</td>"
            f"<td style='{cell}'>{r.rss_mib:.1f}</td></tr>"
            for r in self.rows
        )
        titles = "".join(
            f"<th style='{cell}'>{t}</th>"
            for t in ("node", "pid", "CPU (% of a core)", "memory (MiB)")
        )
        return (
            f"<div><b>{head}</b><table style='border-collapse:collapse;font-size:12px'>"
            f"<thead><tr>{titles}</tr></thead><tbody>{rows}</tbody></table></div>"
        )

    def plot(self, title="CPU and memory per worker", width=8.0):
        """Each worker's CPU share (% of one core) and peak memory (MiB), side by side.

        Returns:
            A ``KitFigure``.
        """
        fig = KitFigure(figsize=(width, 2.8))
        cpu_ax, mem_ax = fig.subplots(1, 2)
        names = [f"{r.node}/{r.pid}" for r in self.rows]
        x = list(range(len(self.rows)))
        cpu_ax.bar(x, [r.cpu_percent for r in self.rows], color="#1e88e5")
        cpu_ax.axhline(100, color="#9e9e9e", linewidth=0.8, linestyle="--")
        cpu_ax.set_ylim(0, max([110.0] + [r.cpu_percent * 1.1 for r in self.rows]))
        cpu_ax.set_ylabel("CPU (% of one core)")
        cpu_ax.set_title(f"{title}: machine {self.machine_percent:.0f}% busy", fontsize=10)
        mem_ax.bar(x, [r.rss_mib for r in self.rows], color="#43a047")
        mem_ax.set_ylabel("peak memory (MiB)")
        for ax in (cpu_ax, mem_ax):
            ax.set_xticks(x, names, rotation=30, fontsize=8, ha="right")
        fig.tight_layout()
        return fig
