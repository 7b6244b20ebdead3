"""The head's throughput with the dashboard open in a browser, against without a dashboard.

    python benchmarks/dashboard.py [--short] [--reps N] [--tasks N] [--md PATH]

Modes, each repetition a fresh process and a fresh 2-slot local cluster
(``run.run_worker``: a timeout, every process it started killed afterwards), the
modes interleaved so that drift on the machine hits all alike:

    off       kit.init(include_dashboard=False): no dashboard process at all
    idle      the dashboard runs, nobody looks at it
    browser   the dashboard open in headless Chromium (Playwright) on the task
              stream, updated twice a second while the tasks run
    socket    (``--short``, or no Chromium) a websocket client reading every frame

Paths: ``direct`` (plain tasks, as most programs submit them: the driver leases
workers and the head learns of the tasks from batched records) and ``head``
(``KIT_DIRECT=0``: every task through the head, its loop the bottleneck).
In each, after a warm-up, ``--tasks`` no-op tasks are submitted and awaited,
three times; the figure is tasks per second (median of the batches, then of the
repetitions), with the head's CPU seconds per 1,000 tasks. Memory: the head's RSS
with and without a dashboard, and the dashboard process's RSS and PSS after the
batches. Writes ``benchmarks/results/dashboard.md`` (``dashboard-short.md``).
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402
from workloads import RESULT_MARK  # noqa: E402

MODES = ("off", "idle", "browser")
PATHS = ("direct", "head")
CHROMIUM = "/usr/bin/chromium"


def emit(record):
    sys.stdout.write(RESULT_MARK + json.dumps(record) + "\n")
    sys.stdout.flush()


def _dashboard_pid(port):
    import psutil

    for c in psutil.net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            return c.pid
    return None


def _open_socket_client(url):
    """A websocket client that reads every frame (a page without a renderer)."""
    import asyncio

    import tornado.websocket

    state = {"frames": 0, "stop": False}
    base, token = url.split("/?token=")
    ws_url = base.replace("http://", "ws://") + "/ws?token=" + token.split("&")[0]

    def loop():
        async def main():
            conn = await tornado.websocket.websocket_connect(ws_url)
            while not state["stop"]:
                msg = await conn.read_message()
                if msg is None:
                    break
                json.loads(msg)
                state["frames"] += 1
            conn.close()

        asyncio.run(main())

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return state, lambda: state.update(stop=True)


def _open_browser(url):
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
    )
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(url.replace("/?token=", "/?token=", 1) + "#stream")
    state = {"page": page}

    def frames():
        return int(page.evaluate("() => +(document.body.dataset.frames || 0)"))

    def close():
        state["frames"] = frames()
        browser.close()
        pw.stop()

    state["read"] = frames
    return state, close


def child(mode, path, tasks, batches):
    if path == "head":
        os.environ["KIT_DIRECT"] = "0"
    import psutil

    import kit

    ctx = kit.init(num_cpus=2, include_dashboard=mode != "off", dashboard_port=0)
    head = psutil.Process(kit.api._state["cluster"].proc.pid)

    @kit.remote
    def noop():
        return None

    kit.get([noop.remote() for _ in range(500)])
    closer, seen = None, None
    if mode in ("browser", "socket"):
        opener = _open_browser if mode == "browser" else _open_socket_client
        seen, closer = opener(ctx.dashboard_url)
        read = seen.get("read") or (lambda: seen["frames"])
        deadline = time.time() + 30
        while read() < 2 and time.time() < deadline:
            time.sleep(0.05)
    rates, cpu = [], []
    for _ in range(batches):
        c0 = sum(head.cpu_times()[:2])
        t0 = time.perf_counter()
        kit.get([noop.remote() for _ in range(tasks)])
        rates.append(tasks / (time.perf_counter() - t0))
        cpu.append((sum(head.cpu_times()[:2]) - c0) / tasks * 1e6)  # ms per 1,000 tasks
    frames = None
    if closer is not None:
        frames = (seen.get("read") or (lambda: seen["frames"]))()
        closer()
    dash = {}
    if mode != "off":
        port = int(ctx.dashboard_url.split(":")[2].split("/")[0])
        pid = _dashboard_pid(port)
        if pid:
            info = psutil.Process(pid).memory_full_info()
            dash = {"dash_rss_mib": info.rss / 2**20, "dash_pss_mib": info.pss / 2**20}
    emit(
        {
            "mode": mode,
            "path": path,
            "rate": statistics.median(rates),
            "rates": rates,
            "head_cpu_ms_per_1k": statistics.median(cpu),
            "head_rss_mib": head.memory_info().rss / 2**20,
            "frames": frames,
            **dash,
        }
    )
    kit.shutdown()


def table(records, modes) -> str:
    lines = [
        "| path | mode | tasks/s | vs off | head CPU ms / 1k tasks | head RSS MiB "
        "| dashboard RSS / PSS MiB | frames read |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for path in PATHS:
        base = None
        for mode in modes:
            rs = [r for r in records if r["path"] == path and r["mode"] == mode]
            if not rs:
                continue
            rate = statistics.median(r["rate"] for r in rs)
            base = rate if mode == "off" else base
            cpu = statistics.median(r["head_cpu_ms_per_1k"] for r in rs)
            rss = statistics.median(r["head_rss_mib"] for r in rs)
            dash = [r for r in rs if "dash_rss_mib" in r]
            dmem = (
                f"{statistics.median(r['dash_rss_mib'] for r in dash):.0f} / "
                f"{statistics.median(r['dash_pss_mib'] for r in dash):.0f}"
                if dash
                else "—"
            )
            frames = [r["frames"] for r in rs if r.get("frames") is not None]
            ratio = f"{rate / base:.3f}" if base else "—"
            lines.append(
                f"| {path} | {mode} | {rate:,.0f} | {ratio} | {cpu:.1f} | {rss:.1f} | {dmem} "
                f"| {statistics.median(frames) if frames else '—'} |"
            )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    p.add_argument("--short", action="store_true", help="2,000 tasks, one repetition, socket")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--tasks", type=int, default=None, help="tasks per batch (default 20,000)")
    p.add_argument("--batches", type=int, default=3)
    p.add_argument("--md", default=None)
    p.add_argument("--timeout", type=float, default=240.0)
    args = p.parse_args(argv)
    tasks = args.tasks or (2000 if args.short else 20000)
    if args.child:
        child(args.child[0], args.child[1], tasks, args.batches)
        return 0
    have_browser = os.path.exists(CHROMIUM)
    try:
        import playwright  # noqa: F401
    except ImportError:
        have_browser = False
    modes = ("off", "socket") if args.short or not have_browser else MODES
    reps = 1 if args.short else args.reps
    records, notes = [], []
    for rep in range(reps):
        for path in PATHS:
            for mode in modes:
                got, info = run.run_worker(
                    ["--child", mode, path, "--tasks", str(tasks), "--batches", str(args.batches)],
                    args.timeout,
                    script=Path(__file__),
                )
                run.log(f"[{rep}] {path} {mode}: {info['status']} in {info['wall_s']:.1f} s")
                if info["status"] != "exited" or info["returncode"] != 0 or not got:
                    tail = info["stderr_tail"].strip().splitlines()
                    notes.append(f"{path} {mode}: {info['status']}: {tail[-1] if tail else ''}")
                records += got
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = (
        f"{when} · {platform.node()} · {os.cpu_count()} CPUs · kit {run.kit_revision()} · "
        f"{tasks:,} no-op tasks per batch, {args.batches} batches, {reps} repetition(s)"
    )
    text = "\n\n".join([head, table(records, modes), *(f"- {n}" for n in notes)]) + "\n"
    print(text)
    stem = "dashboard-short.md" if args.short else "dashboard.md"
    md = Path(args.md) if args.md else run.RESULTS / stem
    md.write_text("# The head with the dashboard open\n\n" + text)
    (md.with_suffix(".json")).write_text(json.dumps(records, indent=1))
    return 1 if notes else 0


if __name__ == "__main__":
    sys.exit(main())
