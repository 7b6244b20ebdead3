"""The same notebook cells timed on kit, Ray and Dask: the magics' front end on each engine.

    python benchmarks/cells.py [--short] [--reps N] [--engines kit,ray,dask] [--md PATH]

Each engine runs in a fresh process (``run.run_worker``: a timeout, and every
process it started is killed afterwards). In it, an IPython ``InteractiveShell``
loads the magics (``%load_ext kit``) and runs the engine's ``%cluster`` line:

    kit     %cluster start --cpus 2
    ray     %cluster connect ray:local --cpus 2
    dask    %cluster connect dask:local --nodes 2 --cpus 1

then times (wall clock around ``run_cell``, output captured), after an
untimed ``--map`` cell that warms every slot from ``roundtrip`` on:

    connect      the %cluster line (one sample per run)
    first_cell   the first %%remote cell after it (one sample: workers starting)
    roundtrip    %%remote -o y: y = x + 1; y          (median of N)
    map_100      %%remote --map over 100 tiny items
    map_sleep    %%remote --map over 8 items of time.sleep(0.25): 2 slots, ideal 1 s
    ship_50mb    %%remote: float(arr.sum()), arr a 50 MB numpy array of the notebook
    nodes        backends.current().nodes(), what %cluster status and the monitor read

The parent prints a markdown table of medians with kit's time over Ray's and
Dask's, and writes it to ``benchmarks/results/cells.md`` (``cells-short.md``
for ``--short``: kit and Dask only, few repetitions, an 8 MB array).
"""

import argparse
import datetime
import json
import os
import platform
import socket
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import engines  # noqa: E402
import report  # noqa: E402
import run  # noqa: E402
from workloads import RESULT_MARK  # noqa: E402

ENGINES = ("kit", "ray", "dask")
SHORT_ENGINES = ("kit", "dask")
CLUSTER_LINE = {
    "kit": "%cluster start --cpus 2",
    "ray": "%cluster connect ray:local --cpus 2",
    "dask": "%cluster connect dask:local --nodes 2 --cpus 1",
}
SLOTS = 2


def sizes(short):
    return {
        "roundtrips": 5 if short else 20,
        "reps": 1 if short else 5,
        "nodes_calls": 5 if short else 50,
        "array_mb": 8 if short else 50,
        "map_items": 100,
        "sleep_items": 8,
        "sleep_s": 0.25,
    }


def measurements(s):
    """``[(name, what it times)]``, in the table's order."""
    return [
        ("connect", "the `%cluster` line: start or connect, magics loaded (one sample)"),
        (
            "first_cell",
            "the first `%%remote` cell after it (`1`): what the line left to start (one sample)",
        ),
        (
            "roundtrip",
            f"a small `%%remote -o y` cell (`y = x + 1; y`), median of {s['roundtrips']}",
        ),
        ("map_100", f"`%%remote --map` over {s['map_items']} tiny items (`out = i * 2`)"),
        (
            "map_sleep",
            f"`%%remote --map` over {s['sleep_items']} items of "
            f"`time.sleep({s['sleep_s']})` on {SLOTS} slots (ideal "
            f"{s['sleep_items'] * s['sleep_s'] / SLOTS:g} s)",
        ),
        (
            "ship_array",
            f"a cell reading a {s['array_mb']} MB numpy array of the notebook "
            f"and returning its sum",
        ),
        (
            "nodes",
            f"`backends.current().nodes()` (what `%cluster status` and the monitor "
            f"read), median of {s['nodes_calls']}",
        ),
    ]


# ---- the child: one engine, one shell --------------------------------------------------


def emit(record):
    sys.stdout.write(RESULT_MARK + json.dumps(record) + "\n")
    sys.stdout.flush()


def child(name, short):
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    import backends

    s = sizes(short)
    adapter = engines.make(name)
    adapter.load()
    emit({"engine": name, "version": adapter.version()})
    sh = InteractiveShell.instance()
    sh.run_line_magic("load_ext", "kit")

    def cell(source, expect=None):
        """Run ``source``; its wall time. Raises if it fails or returns the wrong value."""
        with capture_output() as cap:
            t0 = time.perf_counter()
            r = sh.run_cell(source, store_history=True)
            elapsed = time.perf_counter() - t0
        if not r.success:
            raise RuntimeError(
                f"cell failed: {source.splitlines()[0]!r}: {(cap.stdout + cap.stderr)[-500:]}"
            )
        if expect is not None and r.result != expect:
            raise RuntimeError(f"{source.splitlines()[0]!r} gave {r.result!r}, not {expect!r}")
        return elapsed

    def record(metric, fn, times_n):
        rec = {"engine": name, "metric": metric}
        try:
            rec.update(status="ok", times=[fn() for _ in range(times_n)])
        except Exception as e:  # noqa: BLE001 - reported in the table
            rec.update(status="error", error=f"{type(e).__name__}: {e}"[:300])
        emit(rec)

    record("connect", lambda: cell(CLUSTER_LINE[name]), 1)
    try:
        if backends.current().name != name:
            raise RuntimeError(f"{CLUSTER_LINE[name]!r} made {backends.current().name} current")
        n, items = s["map_items"], s["sleep_items"]
        arr_n = s["array_mb"] * 2**20 // 8
        cell(f"import numpy as np\nx = 41\narr = np.ones({arr_n})")
        record("first_cell", lambda: cell("%%remote\n1", 1), 1)  # a worker is up
        cell(f"%%remote --map 'i in range({2 * SLOTS})'\nimport numpy\ni")  # every slot
        record("roundtrip", lambda: cell("%%remote -o y\ny = x + 1\ny", 42), s["roundtrips"])
        record(
            "map_100",
            lambda: cell(
                f"%%remote --map 'i in range({n})' -o out\nout = i * 2\nout",
                [2 * i for i in range(n)],
            ),
            s["reps"],
        )
        record(
            "map_sleep",
            lambda: cell(
                f"%%remote --map 'i in range({items})'\nimport time\ntime.sleep({s['sleep_s']})\ni",
                list(range(items)),
            ),
            s["reps"],
        )
        record("ship_array", lambda: cell("%%remote\nfloat(arr.sum())", float(arr_n)), s["reps"])

        def nodes():
            t0 = time.perf_counter()
            got = backends.current().nodes()
            elapsed = time.perf_counter() - t0
            if not got or not all(nd["alive"] for nd in got):
                raise RuntimeError(f"nodes() gave {got!r}")
            return elapsed

        record("nodes", nodes, s["nodes_calls"])
    finally:
        cell("%cluster stop")


# ---- the parent ------------------------------------------------------------------------


def measure(names, short, timeout):
    return run.run_children(Path(__file__).resolve(), names, ["--short"] if short else [], timeout)


def fmt_s(value):
    return f"{report.fmt_number(value * 1000)} ms" if value < 1 else f"{report.fmt_number(value)} s"


def table(records, names, short, notes):
    s = sizes(short)
    versions = {r["engine"]: r["version"] for r in records if "version" in r}
    if "kit" in versions:
        rev = run.kit_revision()
        versions["kit"] += f" ({rev})" if rev else ""
    cells = {(r["metric"], r["engine"]): r for r in records if "metric" in r}
    peers = [n for n in names if n != "kit"] if "kit" in names else []
    head = ["measurement", *names, *[f"kit / {p}" for p in peers]]
    load = os.getloadavg()
    lines = [
        f"# Notebook cells on kit, Ray and Dask ({'short smoke run' if short else 'full run'})",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC · host "
        f"{socket.gethostname()} · {os.cpu_count()} CPUs · Python "
        f"{platform.python_version()} · "
        + " · ".join(f"{n} {versions.get(n, '?')}" for n in names),
        "",
        f"{SLOTS} task slots per engine ("
        + "; ".join(f"{n}: `{CLUSTER_LINE[n]}`" for n in names)
        + f"). Each engine in a fresh process with an IPython shell and `%load_ext kit`; "
        f"medians of {s['reps']} run(s) unless said; from `roundtrip` on, after an "
        f"untimed cell on every slot. "
        f"Load average {load[0]:.2f} at the end.",
        "",
        *report.table_head(head),
    ]
    for metric, _ in measurements(s):
        row, _ = report.median_row(
            metric,
            {n: cells[metric, n] for n in names if (metric, n) in cells},
            names,
            peers,
            fmt_s,
            "",
            notes,
        )
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "kit / peer is kit's median time over the peer's: below 1 kit is faster.",
        "",
        "Measurements:",
    ]
    lines += [f"- `{m}`: {what}" for m, what in measurements(s)]
    if notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--short", action="store_true", help="kit and Dask, few repetitions, an 8 MB array"
    )
    parser.add_argument("--engines", help="comma-separated, from " + ",".join(ENGINES))
    parser.add_argument("--md", type=Path, help="where to write the table")
    parser.add_argument("--timeout", type=float, help="seconds per engine process")
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.short)
        return 0
    names = args.engines.split(",") if args.engines else SHORT_ENGINES if args.short else ENGINES
    unknown = set(names) - set(ENGINES)
    if unknown:
        parser.error(f"unknown engine(s): {', '.join(sorted(unknown))}")
    timeout = args.timeout or (60.0 if args.short else 600.0)
    records, notes = measure(names, args.short, timeout)
    text = table(records, names, args.short, notes)
    run.write_table(text, args.md, "cells", args.short)
    return 1 if notes else 0


if __name__ == "__main__":
    sys.exit(main())
