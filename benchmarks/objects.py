"""Large objects on kit and Ray: how fast a put writes, and a put read by 4 fresh workers.

    python benchmarks/objects.py [--short] [--reps N] [--engines kit,ray] [--md PATH]

Engines: ``kit``, ``ray``, and ``kit_no_preload`` (kit with ``KIT_PRELOAD=kit.worker``:
its workers import numpy at their first task, as before the zygote preloaded it).

Each engine runs in a fresh process (``run.run_children``: a timeout, and every
process it started is killed afterwards). In it, every repetition starts the engine
afresh (default slots, warmed up as ``workloads.start`` does: one short sleep task
per slot, so the workers are up but have run nothing that imports numpy), then:

    put_4_fresh_readers  put an array of MIB MiB, 4 tasks each read it, until all 4
                         results are in (the put is the first one of this cluster)
    first_put            that first put alone, as bandwidth
    repeated_put         PUTS more puts of the same array, each ref dropped before the
                         next, as is usual in a loop: the median bandwidth

and shuts the engine down. The runner prints a markdown table of medians over the
repetitions with kit over Ray, and writes it to ``benchmarks/results/objects.md``
(``objects-short.md`` for ``--short``: 8 MiB, one repetition, kit only).
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import engines  # noqa: E402
import report  # noqa: E402
import run  # noqa: E402
from workloads import RESULT_MARK, read_array, start  # noqa: E402

ENGINES = ("kit", "ray", "kit_no_preload")
ROWS = {
    "put_4_fresh_readers": ("s", "put, then 4 tasks on fresh workers read it; all results in"),
    "first_put": ("GB/s", "the first put on a fresh cluster"),
    "repeated_put": ("GB/s", "puts in a loop, each ref dropped before the next (median)"),
}


def sizes(short):
    return {"mib": 8, "puts": 4} if short else {"mib": 100, "puts": 10}


def child(name, short, reps):
    """Measure ``name``; print one record per row, ``times`` holding one value per rep."""
    import numpy as np

    s = sizes(short)
    arr = np.arange(s["mib"] * 2**20 // 8, dtype=np.float64)
    expected = float(arr[::1000].sum())
    values = {row: [] for row in ROWS}
    error = None
    if name == "kit_no_preload":
        os.environ["KIT_PRELOAD"] = "kit.worker"
    try:
        for _ in range(reps):
            engine = engines.make("ray" if name == "ray" else "kit")
            engine.load()
            start(engine)
            try:
                f = engine.task(read_array)
                t0 = time.perf_counter()
                ref = engine.put(arr)
                t1 = time.perf_counter()
                out = engine.get([f(ref) for _ in range(4)])
                t2 = time.perf_counter()
                assert out == [expected] * 4, out
                values["put_4_fresh_readers"].append(t2 - t0)
                values["first_put"].append(arr.nbytes / (t1 - t0) / 1e9)
                del ref, out
                rates = []
                for _ in range(s["puts"]):
                    t0 = time.perf_counter()
                    ref = engine.put(arr)
                    rates.append(arr.nbytes / (time.perf_counter() - t0) / 1e9)
                    del ref
                values["repeated_put"].append(statistics.median(rates))
            finally:
                engine.shutdown()
    except Exception as e:  # noqa: BLE001 - reported in the table
        error = f"{type(e).__name__}: {e}"[:300]
    for row, got in values.items():
        record = {"engine": name, "row": row, "times": got, "status": "ok"}
        if error or not got:
            record.update(status="error", error=error or "no value")
        sys.stdout.write(RESULT_MARK + json.dumps(record) + "\n")
    sys.stdout.flush()


def table(records, names, short, reps, notes):
    cells = {(r["row"], r["engine"]): r for r in records}
    s = sizes(short)
    peers = [n for n in names if n != "kit"]
    lines = [
        f"# Large objects, kit and Ray ({'short smoke run' if short else 'full run'})",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC · "
        f"{os.cpu_count()} CPUs · Python {platform.python_version()} · an array of "
        f"{s['mib']} MiB · median of {reps} fresh cluster(s) per engine · load average "
        f"{os.getloadavg()[0]:.2f} at the end",
        "",
        *report.table_head(["row", *names, *[f"kit vs {p}" for p in peers]]),
    ]
    for row, (unit, _) in ROWS.items():
        cells_row = {n: cells[row, n] for n in names if (row, n) in cells}
        kind = " time" if unit == "s" else " throughput"
        line, _ = report.median_row(
            row,
            cells_row,
            names,
            peers,
            lambda v, u=unit: f"{report.fmt_number(v)} {u}",
            kind,
            notes,
        )
        lines.append("| " + " | ".join(line) + " |")
    lines += [
        "",
        "Ratios are kit's median over Ray's: below 1 kit takes less time (`x time`), above "
        "1 kit writes faster (`x throughput`).",
        "",
        "Rows:",
    ]
    lines += [f"- `{row}`: {what}" for row, (_, what) in ROWS.items()]
    if notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="8 MiB, one repetition, kit only")
    parser.add_argument("--reps", type=int, help="fresh clusters per engine (default 3, short 1)")
    parser.add_argument("--engines", help="comma-separated, from " + ",".join(ENGINES))
    parser.add_argument("--md", type=Path, help="where to write the table")
    parser.add_argument("--timeout", type=float, help="seconds per engine process")
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    reps = args.reps or (1 if args.short else 3)
    if args.child:
        child(args.child, args.short, reps)
        return 0
    default = ["kit"] if args.short else ["kit", "ray"]
    names = args.engines.split(",") if args.engines else default
    unknown = set(names) - set(ENGINES)
    if unknown:
        parser.error(f"unknown engine(s): {', '.join(sorted(unknown))}")
    extra = ["--reps", str(reps)] + (["--short"] if args.short else [])
    timeout = args.timeout or (60.0 if args.short else 300.0)
    records, notes = run.run_children(Path(__file__).resolve(), names, extra, timeout)
    text = table(records, names, args.short, reps, notes)
    run.write_table(text, args.md, "objects", args.short)
    return 1 if notes else 0


if __name__ == "__main__":
    sys.exit(main())
