"""What one queued task costs in memory, on each path, and where the bytes go.

    python benchmarks/queue_memory.py [--short] [--md FILE]

Three measurements, each with N no-op tasks queued behind a task that holds the only
CPU (it waits for a file the script creates once they are counted):

    direct   the driver's memory per queued task, its ref included (tracemalloc in the
             driver); the head holds nothing for a task waiting in its driver
    head     the head's RSS growth per queued head-path task (a put argument sends a
             task there), once the head says all N wait
    records  the scheduler's own records per queued task (tracemalloc around
             ``Scheduler.submit`` in this process; the spec's fields as unpickled from
             the wire are not counted), by line: what a compact queue has to shrink

The issue's budget is ~600 B per queued task in the head and ~300 B per pending ref in
the driver. Figures from one run; the lines are tracemalloc's largest differences.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import sys
import tempfile
import time
import tracemalloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import kit  # noqa: E402


@kit.remote
def noop(x, y=None):
    return x


@kit.remote
def hold(path):
    while not os.path.exists(path):
        time.sleep(0.01)  # holds the only CPU until the script has counted


def _top(before, after, n, lines=8):
    diffs = after.compare_to(before, "lineno")
    out = []
    for st in diffs[:lines]:
        if st.size_diff / n < 4:
            break
        where = st.traceback.format()[-1].strip()
        out.append((round(st.size_diff / n, 1), where[:100]))
    return sum(st.size_diff for st in after.compare_to(before, "filename")) / n, out


def direct_driver(n, gate):
    kit.get([noop.remote(i) for i in range(200)])  # leases held, the function known short
    blocker = hold.remote(gate)
    gc.collect()
    tracemalloc.start(10)
    before = tracemalloc.take_snapshot()
    refs = [noop.remote(i) for i in range(n)]
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    per, lines = _top(before, after, n)
    open(gate, "w").close()
    kit.get(refs, timeout=600)
    kit.get(blocker)
    return {"bytes_per_task": round(per), "lines": lines}


def head_rss(n, gate):
    import psutil

    head = psutil.Process(kit.api._state["cluster"].proc.pid)
    arg = kit.put(1)
    kit.get([noop.remote(i, arg) for i in range(200)])
    blocker = hold.remote(gate)
    r0 = head.memory_info().rss
    refs = [noop.remote(i, arg) for i in range(n)]
    deadline = time.monotonic() + 120
    while kit.cluster_status()["waiting"] < n and time.monotonic() < deadline:
        time.sleep(0.1)  # polled until the head holds them all
    r1 = head.memory_info().rss
    open(gate, "w").close()
    kit.get(refs[-1], timeout=600)
    kit.get(blocker)
    return {"bytes_per_task": round((r1 - r0) / n)}


def scheduler_records(n):
    from kit.records import INLINE, TaskSpec, object_id
    from kit.scheduler import Scheduler

    s = Scheduler()
    node, driver = b"node0000", b"driver00"
    s.add_node(node, {"CPU": 1.0})
    s.nodes[node].spawning = 0
    s.add_worker(b"worker00", node, 1)
    s.add_client(driver)
    s.submit(driver, TaskSpec.new(os.urandom(15), "hold"), 0.0)
    s.schedule()
    arg = object_id(os.urandom(15))
    s.put(driver, arg, (INLINE, b"x"))
    specs = [
        tuple(
            TaskSpec.new(
                os.urandom(15), "bench.noop", fid=b"f" * 16,
                args=(INLINE, os.urandom(40)), deps=(arg,), res={"CPU": 1.0},
            )
        )
        for _ in range(n)
    ]  # fmt: skip
    s.out.clear()
    gc.collect()
    tracemalloc.start(10)
    before = tracemalloc.take_snapshot()
    for spec in specs:
        s.submit(driver, spec, 0.0)
    s.schedule()
    s.out.clear()  # the events' copies: bounded by the head's log, not per queued task
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    per, lines = _top(before, after, n)
    del specs  # alive until here: only the scheduler's own share is counted
    return {"bytes_per_task": round(per), "lines": lines}


def render(res) -> str:
    out = [
        "# What a queued task costs in memory",
        "",
        f"{res['when']} · {res['tasks']:,} queued no-op tasks · `benchmarks/queue_memory.py`",
        "",
        "| where | bytes per queued task |",
        "|---|---:|",
        f"| driver, direct path (its ref included; the head holds nothing) "
        f"| {res['direct']['bytes_per_task']:,} |",
        f"| head, head's path (RSS growth) | {res['head']['bytes_per_task']:,} |",
        f"| of which the scheduler's records | {res['records']['bytes_per_task']:,} |",
        "",
    ]
    for key, title in (("direct", "Driver, by line"), ("records", "Scheduler, by line")):
        out += [f"{title}:", ""]
        out += [f"- {b:,} B: `{where}`" for b, where in res[key]["lines"]]
        out.append("")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--short", action="store_true", help="2,000 tasks instead of 100,000")
    p.add_argument("--md", help="where to write the markdown report")
    args = p.parse_args(argv)
    n = 2_000 if args.short else 100_000
    res = {"tasks": n, "when": datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC")}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        kit.init(num_cpus=1)
        try:
            res["direct"] = direct_driver(n, os.path.join(tmp, "gate1"))
            res["head"] = head_rss(n, os.path.join(tmp, "gate2"))
        finally:
            kit.shutdown()
    res["records"] = scheduler_records(n)
    text = render(res)
    print(text)
    if args.md:
        with open(args.md, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
