"""Kill random workers (and, with --nodes > 1, the node agent of the driver's own node)
while tasks with dependencies run; every result must still be right.

Tasks retry forever (``max_retries=-1``): the question is whether kit keeps every
result and gets it right, not whether a task survives a fixed number of kills (on a
busy 2-core machine the killer can hit the same retried task many times in a row).

Every result is an array of 160 KB, so it lives in a node's shared memory: the
node agent that is killed takes finished results with it, which kit makes again
from their lineage (the figure "rebuilt").

    python scripts/chaos.py [--tasks 2000] [--nodes 3] [--interval 0.3] [--short]
                            [--deadline SECONDS] [--repeat N]

Prints the figures as one JSON line: faults injected, tasks, wrong or lost results.
A run that has not finished by the deadline (90 s in short mode) is a hang: the script
prints the cluster's state (nodes, task counts, results not ready) and every thread's
stack (where the driver waits) to stderr, a JSON line with ``"hung": true``, and exits 3.
``--repeat N`` runs it N times, each in a fresh process, stops at the first failure and
prints a summary line (runs passed, and the sums of faults, retries and rebuilds).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import random
import signal
import sys
import threading
import time

import psutil


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", type=int, default=2000)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--interval", type=float, default=0.3)
    p.add_argument("--deadline", type=float, default=None, help="seconds before a hang")
    p.add_argument("--short", action="store_true", help="300 tasks on 2 nodes (for the tests)")
    p.add_argument("--repeat", type=int, default=1, help="runs in a row, each in a new process")
    args = p.parse_args(argv)
    if args.repeat > 1:
        child = ["--tasks", str(args.tasks), "--nodes", str(args.nodes),
                 "--interval", str(args.interval)]  # fmt: skip
        if args.deadline is not None:
            child += ["--deadline", str(args.deadline)]
        if args.short:
            child.append("--short")
        return repeat(args.repeat, child)
    if args.short:
        args.tasks, args.nodes = 300, 2
    if args.deadline is None:
        args.deadline = 90.0 if args.short else 600.0
    import numpy as np

    import kit

    kit.init(num_nodes=args.nodes, num_cpus=2)
    nodes = kit.nodes()
    node_pids = {n["pid"] for n in nodes}
    # the node this driver reads its objects through: the one whose death hung drivers
    own = kit.api._current_client().node_id
    victim = next((n["pid"] for n in nodes if n["NodeID"] == (own or b"").hex()), None)

    @kit.remote(max_retries=-1)
    def leaf(i):
        time.sleep(random.random() * 0.05)
        return np.full(20_000, i, dtype=np.int64)

    @kit.remote(max_retries=-1)
    def combine(a, b):
        time.sleep(random.random() * 0.05)
        return a + b

    stop = threading.Event()
    faults = {"workers_killed": 0, "nodes_killed": 0}
    t = time.time()
    th = threading.Thread(target=killer, args=(args, node_pids, victim, stop, faults), daemon=True)
    th.start()
    leaves = [leaf.remote(i) for i in range(args.tasks // 2)]
    level = leaves
    while len(level) > 1:
        nxt = [combine.remote(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    dog = threading.Timer(args.deadline, hung, args=(kit, leaves + level, faults, t))
    dog.daemon = True
    dog.start()
    lost = wrong = 0
    try:
        values = kit.get(leaves, timeout=args.deadline)
        wrong += sum(1 for i, v in enumerate(values) if not (v == i).all())
        total = kit.get(level[0], timeout=args.deadline)
        wrong += not (total == sum(range(args.tasks // 2))).all()
    except kit.KitError as e:
        lost += 1
        print("lost:", e, file=sys.stderr)
    dog.cancel()
    stop.set()
    th.join()
    counts = kit.cluster_status()["counts"]
    kit.shutdown()
    out = {
        "tasks": args.tasks,
        **faults,
        "retried": counts.get("retried", 0),
        "rebuilt": counts.get("rebuilt", 0),
        "wrong": wrong,
        "lost": lost,
        "seconds": round(time.time() - t, 2),
    }
    print(json.dumps(out))
    return 0 if not (lost or wrong) else 1


def repeat(n, child_args):
    """Run the chaos ``n`` times in a row, each in a fresh process; stop at a failure."""
    import subprocess

    total = {"runs": n, "passed": 0}
    for i in range(n):
        out = subprocess.run(
            [sys.executable, os.path.abspath(__file__), *child_args],
            capture_output=True, text=True,
        )  # fmt: skip
        lines = out.stdout.strip().splitlines()
        r = json.loads(lines[-1]) if lines else {}
        if out.returncode != 0:
            total["failed_run"] = i + 1
            total["failure"] = r or out.stderr[-2000:]
            print(out.stderr[-4000:], file=sys.stderr)
            break
        total["passed"] += 1
        for k in ("tasks", "workers_killed", "nodes_killed", "retried", "rebuilt", "seconds"):
            total[k] = round(total.get(k, 0) + r.get(k, 0), 2)
    print(json.dumps(total))
    return 0 if total["passed"] == n else 1


def killer(args, node_pids, victim, stop, faults):
    """Kill a random worker every ``interval``; after 0.5 s, one node agent (``victim``:
    the driver's own node)."""
    rng = random.Random(7)
    killed_node = args.nodes < 2
    start = time.time()
    while not stop.wait(args.interval):
        if not killed_node and time.time() - start > 0.5:
            try:
                os.kill(victim or sorted(node_pids)[-1], signal.SIGKILL)
                faults["nodes_killed"] += 1
            except ProcessLookupError:
                pass
            killed_node = True
            continue
        workers = []
        for pid in node_pids:  # workers are children of each node agent's zygote
            try:
                for zygote in psutil.Process(pid).children():
                    workers += zygote.children()
            except psutil.Error:
                pass
        if workers:
            try:
                rng.choice(workers).kill()
                faults["workers_killed"] += 1
            except psutil.Error:
                pass


def hung(kit, refs, faults, started):
    """The deadline passed: report the cluster's state and where every thread waits."""
    err = sys.stderr
    print(f"chaos: no result after {time.time() - started:.0f} s: a hang", file=err)
    try:
        status = kit.cluster_status()
        print(f"chaos: counts {status['counts']}, waiting {status['waiting']}", file=err)
        for n in status["nodes"]:
            keys = ("tag", "alive", "running", "queued", "done", "failed", "pid")
            print("chaos: node", {k: n.get(k) for k in keys}, file=err)
        ready, rest = kit.wait(refs, num_returns=len(refs), timeout=1)
        print(f"chaos: {len(ready)} of {len(refs)} results ready", file=err)
    except Exception as e:  # the report must not hide the hang
        print(f"chaos: the cluster did not answer: {e!r}", file=err)
    faulthandler.dump_traceback(file=err, all_threads=True)
    err.flush()
    print(json.dumps({"hung": True, **faults, "seconds": round(time.time() - started, 2)}))
    sys.stdout.flush()
    os._exit(3)


if __name__ == "__main__":
    sys.exit(main())
