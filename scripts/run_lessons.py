"""Run every lesson as a student would, idle and under load; time it, screenshot it.

    python scripts/run_lessons.py [--short] [--lessons 03,06] [--no-browser] [--no-load]
                                  [--modes idle,load] [--parts kernel,lab,cells,no-block]
                                  [--merge] [--shots /tmp/lesson-shots]
                                  [--md benchmarks/results/lessons.md]

For each lesson in ``notebooks/``:

    kernel    nbclient runs it top to bottom in a fresh kernel (as tests/test_notebooks.py
              does): the run time, and the error if one stopped it
    browser   JupyterLab in headless Chromium (scripts/labbrowser.py): Run All from the
              menu, the time until every cell has run, a screenshot of the whole notebook
              into --shots (NN-name.png; NN-name-load.png under load); on the idle
              machine, then again cell by cell (Shift+Enter after each cell ended, in a
              restarted kernel; NN-name-cells.png, NN-name-cells-load.png). Errors of
              cells tagged raises-exception are the lesson's own and not reported

once on the machine as it is ("idle") and once while CPU burners run ("load": one
``while True`` process per core, started and killed by this script). Then, in a
kernel with a warm 2-slot cluster, how long a ``%%remote --no-block`` cell takes to
return (execute request to reply, 20 cells) next to an empty cell's. The figures go
to ``--md`` (and a ``.json`` beside it). ``--short`` runs lessons 03 and 06 and 5
``--no-block`` cells. ``--modes`` and ``--parts`` choose what to measure (default: all;
``--no-load`` is ``--modes idle``); ``--merge`` keeps the figures already in ``--md``'s
``.json`` that this run does not measure again, each figure naming the commit and time
it was measured at. Run it under the heavy-work lock:
``flock /tmp/kit-heavy.lock python scripts/run_lessons.py``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
sys.path.insert(0, str(ROOT / "scripts"))
import labbrowser  # noqa: E402

MARKER = "KIT_LESSON_RUN"  # in the kernels' environment: every kit process inherits it
SHORT = ("03-aggregation.ipynb", "06-clusters.ipynb")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


# ---- load ----------------------------------------------------------------------------


class Burners:
    """One process per core spinning in ``while True`` (a ``stress``-like CPU load)."""

    def __init__(self, n=None):
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-c", "while True: pass"],
                start_new_session=True,
                stdin=subprocess.DEVNULL,
            )
            for _ in range(n or os.cpu_count() or 1)
        ]

    def stop(self):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait(10)


# ---- leftovers -----------------------------------------------------------------------


def marked(value) -> list:
    found = []
    for p in psutil.process_iter(["pid"]):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and p.environ().get(MARKER) == value:
                found.append(p)
        except psutil.Error:
            continue
    return found


def kill_marked(value, timeout=10.0) -> list:
    """Wait for the processes a run started to end; kill those left. Returns their pids."""
    deadline = time.monotonic() + timeout
    left = marked(value)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = marked(value)
    for p in left:
        try:
            p.kill()
        except psutil.Error:
            pass
    return [p.pid for p in left]


# ---- a lesson in a kernel ------------------------------------------------------------


def run_kernel(name) -> dict:
    import nbclient
    import nbformat

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    value = uuid.uuid4().hex
    env = dict(os.environ, **{MARKER: value})
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    start = time.monotonic()
    error = None
    try:
        client.execute(env=env)
    except Exception as e:  # noqa: BLE001 - reported, not raised: the others still run
        last = ANSI.sub("", str(e)).strip().splitlines()[-1]  # without terminal colours
        error = f"{type(e).__name__}: {last[:200]}"
    seconds = time.monotonic() - start
    left = kill_marked(value)
    return {"seconds": seconds, "error": error, "left": left}


# ---- a lesson in JupyterLab ----------------------------------------------------------


def shoot(page, path):
    """A screenshot of the whole notebook: the viewport made as tall as the notebook."""
    height = page.evaluate(
        """() => { const n = document.querySelector(
             '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer')
             || document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
           return n ? n.scrollHeight : 900; }"""
    )
    page.set_viewport_size({"width": 1280, "height": int(min(max(900, height + 160), 16000))})
    page.evaluate(
        """() => document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) *')
             .forEach(e => { if (e.scrollTop) e.scrollTop = 0; })"""
    )
    labbrowser.until(
        lambda: page.evaluate("() => Array.from(document.images).every(i => i.complete)"),
        10,
        "the figures to be drawn",
    )
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1280, "height": 900})


def tagged_errors(name) -> int:
    """Cells of the lesson tagged ``raises-exception``: errors it shows on purpose."""
    import nbformat

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    return sum("raises-exception" in c.get("metadata", {}).get("tags", ()) for c in nb.cells)


def run_browser(names, shots: Path, suffix: str, cell_by_cell=False, run_all=True) -> dict:
    """Run All in JupyterLab (and, with ``cell_by_cell``, once more cell by cell)."""
    out = {}
    tmp = Path(tempfile.mkdtemp(prefix="kit-lessons-"))
    (tmp / "root").mkdir()
    for name in names:
        shutil.copy(NOTEBOOKS / name, tmp / "root" / name)
    value = uuid.uuid4().hex
    lab = None
    try:
        lab = labbrowser.Lab(tmp, env={MARKER: value})
        for name in names:
            out[name] = {}
            if run_all:
                page = lab.open(name)
                lab.run_all(page)
                try:
                    seconds = lab.wait_ran(page, timeout=300)
                    error = None
                except TimeoutError as e:
                    seconds, error = None, str(e)
                errors = lab.errors(page)[tagged_errors(name) :] if not error else []
                shot = shots / f"{name[: -len('.ipynb')]}{suffix}.png"
                shoot(page, shot)
                out[name] = {
                    "seconds": seconds,
                    "error": error
                    or (errors[0].strip().splitlines()[-1][:200] if errors else None),
                    "shot": str(shot),
                }
                page.close()
                print(f"  browser{suffix} {name}: {seconds and round(seconds, 1)} s", flush=True)
            if cell_by_cell:  # a copy of the lesson: a kernel of its own, nothing run yet
                copy = f"cells-{name}"
                shutil.copy(NOTEBOOKS / name, tmp / "root" / copy)
                page = lab.open(copy)
                try:
                    step = lab.run_cell_by_cell(page, timeout=300)
                    step_error = None
                except TimeoutError as e:
                    step, step_error = None, str(e)
                errors = lab.errors(page)[tagged_errors(name) :] if not step_error else []
                shot = shots / f"{name[: -len('.ipynb')]}-cells{suffix}.png"
                shoot(page, shot)
                out[name]["cells"] = {
                    "seconds": step,
                    "error": step_error
                    or (errors[0].strip().splitlines()[-1][:200] if errors else None),
                    "shot": str(shot),
                }
                page.close()
                print(f"  cell by cell{suffix} {name}: {step and round(step, 1)} s", flush=True)
    finally:
        left = lab.close() if lab is not None else []
        left += [(p, "kit") for p in kill_marked(value)]
        shutil.rmtree(tmp, ignore_errors=True)
    if left:
        print(f"  processes left after JupyterLab (killed): {left}", file=sys.stderr)
    return out


# ---- %%remote --no-block latency -----------------------------------------------------


def no_block_latency(cells: int) -> dict:
    """Seconds from execute request to reply: a --no-block cell and an empty cell."""
    import jupyter_client

    value = uuid.uuid4().hex
    km, kc = jupyter_client.manager.start_new_kernel(
        kernel_name="python3", env=dict(os.environ, **{MARKER: value}), cwd=str(NOTEBOOKS)
    )

    def run(code):
        start = time.perf_counter()
        reply = kc.execute_interactive(code, timeout=120, output_hook=lambda msg: None)
        took = time.perf_counter() - start
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"{code!r}: {reply['content'].get('evalue')}")
        return took

    try:
        run("%load_ext kit")
        run("%cluster start --nodes 1 --cpus 2")
        run("data = list(range(1000))")
        run("%%remote -o warm\nwarm = sum(data)")  # workers up, the function shipped
        blocks, empties = [], []
        for _ in range(cells):
            blocks.append(run("%%remote --no-block -o s\nimport time\ntime.sleep(0.5)\ns = 1"))
            empties.append(run("pass"))
            run("import kit; kit.get(s)")  # that task is done before the next cell
        run("%cluster stop")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        kill_marked(value)

    def stats(xs):
        xs = sorted(xs)
        return {
            "median": statistics.median(xs),
            "p90": xs[min(len(xs) - 1, int(0.9 * len(xs)))],
            "max": xs[-1],
        }

    return {"cells": cells, "no_block": stats(blocks), "empty": stats(empties)}


# ---- report --------------------------------------------------------------------------


def _s(x):
    return "-" if x is None else f"{x:.1f} s"


def _ms(x):
    return f"{x * 1000:.1f} ms"


WHERES = ("kernel_idle", "kernel_load", "lab_idle", "lab_load", "lab_cells_idle", "lab_cells_load")


def _stamps(res) -> list:
    """``(when, git)`` of every run whose figures are in ``res`` (a merge has several)."""
    found = {(res["when"], res["git"])}
    for r in res["lessons"].values():
        for where in WHERES:
            m = r.get(where)
            if m and m.get("git"):
                found.add((m["when"], m["git"]))
    for key in ("no_block_idle", "no_block_load"):
        m = res.get(key)
        if m and m.get("git"):
            found.add((m["when"], m["git"]))
    return sorted(found)


def markdown(res) -> str:
    stamps = _stamps(res)
    runs = "; ".join(f"{when} at git {git}" for when, git in stamps)
    lines = [
        "# The lessons, run as a student runs them",
        "",
        f"{res['when']} · host {res['host']} · {res['cpus']} CPUs · Python {res['python']} · "
        f"git {res['git']}",
        "",
        *(
            [f"Figures from {len(stamps)} runs ({runs}); the JSON names each one's.", ""]
            if len(stamps) > 1
            else []
        ),
        "Each lesson from `notebooks/`: *kernel* is nbclient running it top to bottom in a "
        "fresh kernel; *JupyterLab* is Run All from the menu in JupyterLab in headless "
        "Chromium until every cell has run. *idle*: the machine as it was (other sessions "
        f"may have been running: load average {res['load_before']:.2f} before); *load*: "
        f"with {res['cpus']} CPU burners (`while True`) running. Screenshots of the whole "
        f"notebook after Run All are in `{res['shots']}`. Written by "
        "`scripts/run_lessons.py`.",
        "",
        "| lesson | kernel idle | kernel load | JupyterLab Run All idle | "
        "JupyterLab Run All load | JupyterLab cell by cell idle | "
        "JupyterLab cell by cell load | errors | screenshot |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for name, r in res["lessons"].items():
        errs = [
            f"{where}: {r[where]['error']}"
            for where in WHERES
            if r.get(where) and r[where].get("error")
        ]
        secs = " | ".join(_s((r.get(where) or {}).get("seconds")) for where in WHERES)
        lines.append(
            f"| {name[: -len('.ipynb')]} | {secs} | {'; '.join(errs) or 'none'} | "
            f"{(r.get('lab_idle') or {}).get('shot', '-')} |"
        )
    for label, key in (("idle", "no_block_idle"), ("under load", "no_block_load")):
        nb = res.get(key)
        if not nb:
            continue
        lines += [
            "",
            f"`%%remote --no-block` on a warm 2-slot cluster, {label} ({nb['cells']} cells; "
            "execute request to reply, as the notebook sees it return):",
            "",
            "| cell | median | p90 | max |",
            "|---|---:|---:|---:|",
            f"| `%%remote --no-block` (a 0.5 s task) | {_ms(nb['no_block']['median'])} | "
            f"{_ms(nb['no_block']['p90'])} | {_ms(nb['no_block']['max'])} |",
            f"| an empty cell (`pass`) | {_ms(nb['empty']['median'])} | "
            f"{_ms(nb['empty']['p90'])} | {_ms(nb['empty']['max'])} |",
        ]
    return "\n".join(lines) + "\n"


def write(res, path) -> Path:
    md = Path(path)
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(markdown(res))
    md.with_suffix(".json").write_text(json.dumps(res, indent=1))
    return md


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--short", action="store_true", help="lessons 03 and 06, 5 --no-block cells")
    ap.add_argument("--lessons", default="", help="comma-separated prefixes, e.g. 03,06")
    ap.add_argument("--no-browser", action="store_true", help="skip JupyterLab and screenshots")
    ap.add_argument("--no-load", action="store_true", help="skip the runs under load")
    ap.add_argument("--modes", default="idle,load", help="idle, load or both (idle,load)")
    ap.add_argument(
        "--parts",
        default="kernel,lab,cells,no-block",
        help="what to measure in each mode: kernel, lab (Run All), cells (cell by cell in "
        "JupyterLab), no-block",
    )
    ap.add_argument(
        "--merge",
        action="store_true",
        help="keep the figures in --md's .json that this run does not measure again",
    )
    ap.add_argument("--shots", default="/tmp/lesson-shots", help="where screenshots go")
    ap.add_argument("--md", default=str(ROOT / "benchmarks" / "results" / "lessons.md"))
    args = ap.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    args.parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if args.no_load:
        args.modes = [m for m in args.modes if m != "load"]
    if not args.modes or set(args.modes) - {"idle", "load"}:
        ap.error("--modes: give idle, load or idle,load")
    if not args.parts or args.parts - {"kernel", "lab", "cells", "no-block"}:
        ap.error("--parts: give some of kernel,lab,cells,no-block")
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    if args.short:
        names = [n for n in names if n in SHORT]
    if args.lessons:
        want = [w.strip() for w in args.lessons.split(",") if w.strip()]
        names = [n for n in names if any(n.startswith(w) for w in want)]
    if not names:
        ap.error("no lesson matches")
    args.names = names
    return args


def merge(res, path: Path) -> None:
    """Into ``res``: the figures of an earlier run's JSON, each stamped with its run."""
    if not path.exists():
        return
    before = json.loads(path.read_text())
    run = {"git": before["git"], "when": before["when"]}
    for key in ("no_block_idle", "no_block_load"):
        if key in before and key not in res:
            res[key] = {**run, **before[key]}
    for name, r in before.get("lessons", {}).items():
        kept = res["lessons"].setdefault(name, {})
        for where, m in r.items():
            if m and where not in kept:  # a figure this run measured stays
                kept[where] = {**run, **m}
    res["lessons"] = dict(sorted(res["lessons"].items()))


def measure(res, mode, args, browser, stamp) -> None:
    """One mode's parts, written to ``--md`` after each (a later failure keeps them)."""
    names, parts, shots = args.names, args.parts, Path(args.shots)
    for name in names if "kernel" in parts else ():
        r = run_kernel(name)
        res["lessons"][name][f"kernel_{mode}"] = {**r, **stamp}
        print(f"  kernel {name}: {r['seconds']:.1f} s {r['error'] or ''}", flush=True)
    write(res, args.md)
    if "no-block" in parts:
        cells = 5 if args.short else 20
        nb = res[f"no_block_{mode}"] = {**no_block_latency(cells), **stamp}
        print(
            f"  --no-block: median {_ms(nb['no_block']['median'])}, "
            f"empty cell {_ms(nb['empty']['median'])}",
            flush=True,
        )
    if browser and parts & {"lab", "cells"}:
        suffix = "" if mode == "idle" else "-load"
        ran = run_browser(names, shots, suffix, "cells" in parts, run_all="lab" in parts)
        for name, r in ran.items():
            stepped = r.pop("cells", None)
            if r:
                res["lessons"][name][f"lab_{mode}"] = {**r, **stamp}
            if stepped is not None:
                res["lessons"][name][f"lab_cells_{mode}"] = {**stepped, **stamp}
    write(res, args.md)


def main(argv=None):
    args = parse(argv)
    browser = not args.no_browser and labbrowser.missing() is None
    if not args.no_browser and not browser:
        print(f"run_lessons: no browser runs: {labbrowser.missing()}", file=sys.stderr)
    Path(args.shots).mkdir(parents=True, exist_ok=True)
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    res = {
        "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "git": git,
        "load_before": os.getloadavg()[0],
        "shots": args.shots,
        "lessons": {n: {} for n in args.names},
    }
    if args.merge:
        merge(res, Path(args.md).with_suffix(".json"))
    stamp = {"git": git, "when": res["when"]}
    old = {s: signal.signal(s, lambda n, f: sys.exit(f"run_lessons: signal {n}")) for s in (
        signal.SIGTERM, signal.SIGHUP)}  # fmt: skip
    try:
        for mode in args.modes:
            burners = Burners() if mode == "load" else None
            try:
                print(f"{mode}:", flush=True)
                measure(res, mode, args, browser, stamp)
            finally:
                if burners is not None:
                    burners.stop()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    md = write(res, args.md)
    print(f"wrote {md} and {md.with_suffix('.json')}")
    failed = [
        n
        for n, r in res["lessons"].items()
        if any(v.get("error") and v.get("git") == git for v in r.values() if v)
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
