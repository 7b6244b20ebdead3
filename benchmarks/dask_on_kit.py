"""Dask workloads under Dask's own schedulers, dask.distributed, kit and Ray.

    python benchmarks/dask_on_kit.py [--short] [--reps N] [--schedulers a,b] [--md PATH]

The same three Dask computations run under each scheduler:

    threads       dask's threaded scheduler (scheduler="threads")
    processes     dask's multiprocessing scheduler (scheduler="processes")
    distributed   a dask.distributed LocalCluster, one thread per worker process
    kit           kit.dask_scheduler on kit.init(num_cpus=SLOTS)
    ray           ray.util.dask.ray_dask_get on ray.init(num_cpus=SLOTS)

Each scheduler runs in a fresh process (``run.run_worker``: a timeout, and
every process it started is killed afterwards). In it, the engine is started,
each workload is computed once untimed (workers import numpy and pandas, and
the result becomes the check value), then timed ``--reps`` times; the runner
prints a markdown table of medians with kit's time over each peer's, and
writes it to ``benchmarks/results/dask_on_kit.md`` (``dask_on_kit-short.md``
for ``--short``, which runs tiny sizes under threads and kit only).
"""

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import engines  # noqa: E402
import report  # noqa: E402
import run  # noqa: E402
from workloads import RESULT_MARK  # noqa: E402

SCHEDULERS = ("threads", "processes", "distributed", "kit", "ray")
SHORT_SCHEDULERS = ("threads", "kit")
SLOTS = 2


def sizes(short):
    if short:
        return {"array_n": 800, "array_chunk": 200, "days": 4, "leaves": 64}
    return {"array_n": 4000, "array_chunk": 500, "days": 30, "leaves": 256}


# ---- the workloads (built in the child) -----------------------------------------------


def array_reduction(s):
    import dask.array as da

    x = da.random.RandomState(0).random_sample((s["array_n"],) * 2, chunks=s["array_chunk"])
    return (x + x.T).sum(axis=0)


def dataframe_groupby(s):
    import dask

    df = dask.datasets.timeseries(
        start="2000-01-01",
        freq="4s",
        seed=1,
        end=f"2000-01-{1 + s['days']:02d}",
        partition_freq="1d",
    )
    return df.groupby("name").agg({"x": "mean", "y": "max", "id": "count"})


def delayed_tree(s):
    from dask import delayed

    def inc(i):
        return i + 1

    def add(a, b):
        return a + b

    level = [delayed(inc)(i) for i in range(s["leaves"])]
    while len(level) > 1:
        level = [delayed(add)(a, b) for a, b in zip(level[::2], level[1::2])]
    return level[0]


WORKLOADS = {
    "array_reduction": (
        array_reduction,
        "(x + x.T).sum(axis=0), x random {array_n}² in {array_chunk}² chunks",
    ),
    "dataframe_groupby": (
        dataframe_groupby,
        "groupby-agg of dask.datasets.timeseries, {days} daily partitions at 4 s",
    ),
    "delayed_tree": (
        delayed_tree,
        "{leaves} inc leaves summed by a pairwise add tree (2×{leaves}−1 tasks)",
    ),
}


def checksum(value):
    """One float for a result, to check that every scheduler computed the same."""
    import numpy as np

    if hasattr(value, "to_numpy"):
        value = value.sort_index().to_numpy(dtype=float)
    return float(np.sum(value))


def start(name):
    """Start what the scheduler needs; returns (scheduler for dask.compute, stop)."""
    if name in ("threads", "processes"):
        return name, lambda: None
    if name == "ray":
        import ray
        from ray.util.dask import ray_dask_get

        ray.init(num_cpus=SLOTS, include_dashboard=False, log_to_driver=False)
        return ray_dask_get, ray.shutdown
    engine = engines.make({"distributed": "dask", "kit": "kit"}[name])
    engine.load()
    engine.start(SLOTS)
    scheduler = engine.client if name == "distributed" else engine.mod.dask_scheduler
    return scheduler, engine.shutdown


def child(name, short, reps):
    import dask

    s = sizes(short)
    scheduler, stop = start(name)
    extra = {"num_workers": SLOTS} if name in ("threads", "processes") else {}
    try:
        for workload, (build, _) in WORKLOADS.items():
            record = {"scheduler": name, "workload": workload}
            try:
                record["check"] = checksum(dask.compute(build(s), scheduler=scheduler, **extra)[0])
                times = []
                for _ in range(reps):
                    collection = build(s)
                    t0 = time.perf_counter()
                    dask.compute(collection, scheduler=scheduler, **extra)
                    times.append(time.perf_counter() - t0)
                record.update(status="ok", times=times)
            except Exception as e:  # noqa: BLE001 - reported in the table
                record.update(status="error", error=f"{type(e).__name__}: {e}"[:300])
            sys.stdout.write(RESULT_MARK + json.dumps(record) + "\n")
            sys.stdout.flush()
    finally:
        stop()


# ---- the runner ------------------------------------------------------------------------


def measure(names, short, reps, timeout):
    args = ["--reps", str(reps)] + (["--short"] if short else [])
    return run.run_children(Path(__file__).resolve(), names, args, timeout)


def table(records, names, short, reps, notes):
    cells = {}
    for r in records:
        cells[r["workload"], r["scheduler"]] = r
    s = sizes(short)
    peers = [n for n in names if n != "kit"]
    head = ["workload", *names, *[f"kit vs {p}" for p in peers]]
    lines = [
        f"# Dask on kit ({'short smoke run' if short else 'full run'})",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC · "
        f"{os.cpu_count()} CPUs · Python {platform.python_version()} · {SLOTS} slots per "
        f"engine · median of {reps} run(s) after one untimed run · load average "
        f"{os.getloadavg()[0]:.2f} at the end",
        "",
        *report.table_head(head),
    ]
    for workload in WORKLOADS:
        row, medians = report.median_row(
            workload,
            {n: cells[workload, n] for n in names if (workload, n) in cells},
            names,
            peers,
            lambda v: f"{report.fmt_number(v)} s",
            " time",
            notes,
        )
        lines.append("| " + " | ".join(row) + " |")
        checks = {n: cells[workload, n]["check"] for n in medians}
        ref = checks.get("threads", next(iter(checks.values()), None))
        bad = [n for n, c in checks.items() if abs(c - ref) > 1e-6 * max(1.0, abs(ref))]
        if bad:
            notes.append(f"{workload}: result differs from threads under {', '.join(bad)}")
    lines += [
        "",
        "Ratios are kit's median time over the peer's: below 1 kit is faster.",
        "",
        "Workloads:",
    ]
    lines += [f"- `{w}`: {what.format(**s)}" for w, (_, what) in WORKLOADS.items()]
    if notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="tiny sizes, threads and kit")
    parser.add_argument("--reps", type=int, help="timed runs per workload (default 5, 1)")
    parser.add_argument("--schedulers", help="comma-separated, from " + ",".join(SCHEDULERS))
    parser.add_argument("--md", type=Path, help="where to write the table")
    parser.add_argument("--timeout", type=float, help="seconds per scheduler process")
    parser.add_argument("--child", choices=SCHEDULERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    reps = args.reps or (1 if args.short else 5)
    if args.child:
        child(args.child, args.short, reps)
        return 0
    names = (
        args.schedulers.split(",")
        if args.schedulers
        else SHORT_SCHEDULERS
        if args.short
        else SCHEDULERS
    )
    unknown = set(names) - set(SCHEDULERS)
    if unknown:
        parser.error(f"unknown scheduler(s): {', '.join(sorted(unknown))}")
    timeout = args.timeout or (60.0 if args.short else 900.0)
    records, notes = measure(names, args.short, reps, timeout)
    text = table(records, names, args.short, reps, notes)
    run.write_table(text, args.md, "dask_on_kit", args.short)
    return 1 if notes else 0


if __name__ == "__main__":
    sys.exit(main())
