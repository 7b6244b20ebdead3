"""The scale workloads, and the entry point that measures one of them.

    python benchmarks/scale_workloads.py ENGINE WORKLOAD [--short]

runs in a fresh interpreter (``scale.py`` starts one per engine and workload),
starts ENGINE, measures WORKLOAD once and prints result lines prefixed with
``workloads.RESULT_MARK``: progress lines while it works (so that a run killed at
its timeout still says how far it got), then the result, then the shutdown time.

    roundtrip    2,000 sequential no-op submit + get on 2 slots: median and p90
                 (``workloads.w_roundtrip``, the main table's, with more samples)
    nodes_N      N = 1, 10, 100 simulated nodes on this machine: the time from nothing
                 until all N are registered and the driver is connected; then 10,000
                 no-op tasks submitted in a loop and one get (tasks/s), and the CPU
                 each process role spent during them, per task
    nodes_500    kit only: the registration alone
    queued_N     N = 100k, 1M no-op tasks submitted in batches of 10,000 (a list
                 comprehension each) on the default 2 slots, then gotten in batches:
                 submit rate, drain time after the last submit, end-to-end rate, and
                 peak RSS of the head, the control plane and the driver while queued
    actors_N     N = 1,000, 5,000 actors with num_cpus=0, created in a loop, then one
                 call each waited for: the rate, PSS and RSS of every process of the
                 run divided by N, and the CPU the whole runtime spends idle over 10 s

A simulated node is one node of ``kit.init(num_nodes=N, num_cpus=C)`` (an agent, a
zygote, C workers) or of Ray's ``cluster_utils.Cluster`` (the head node, then N - 1
``add_node(num_cpus=C)``: a raylet, two agents, workers): C = max(1, cores // N),
so a node has at least the one slot a real node would have and 1 node has all the
machine's cores. From 10 nodes up there are more slots than cores: the workers
share 2 cores, and what grows with N is the control plane's work (more nodes to
hear from and choose among) and the spread of the tasks over N workers.

Process roles (``procs.roles``): the head is kit's head process and Ray's
``gcs_server``; the control plane is the head plus the node daemons (kit: agents
and zygotes; Ray: raylets, their agents, monitors, dashboard); the driver is this
process; workers are the rest. kit's head pid comes from
``kit.api._state["cluster"].proc.pid`` (kit has no public way yet), its agents'
from ``kit.nodes()``.

Limits: the child gives itself a deadline to add nodes or actors and then reports
how far it got (status "partial"); a watch thread stops it the same way when the
machine's available memory falls below ``$KIT_BENCH_MIN_FREE_GIB`` (default 4), and
exits at once if memory keeps falling (the runner kills what is left).
"""

import argparse
import importlib
import os
import re
import sys
import threading
import time
import traceback
from typing import NamedTuple

import engines
import procs
import psutil
import workloads
from workloads import noop, sleep_task

ENGINES = ("kit", "ray")
CORES = os.cpu_count() or 1
MIN_FREE_ENV = "KIT_BENCH_MIN_FREE_GIB"
GIB = 1024.0**3


def sizes(short):
    if short:
        return {
            "roundtrip_calls": 100,
            "roundtrip_warmup": 10,
            "nodes": [1, 4],
            "register_only": [8],
            "tasks": 500,
            "queued": [3000],
            "actors": [20],
            "batch": 1000,
            "idle_s": 1.0,
            "settle_s": 0.5,
        }
    return {
        "roundtrip_calls": 2000,
        "roundtrip_warmup": 100,
        "nodes": [1, 10, 100],
        "register_only": [500],
        "tasks": 10_000,
        "queued": [100_000, 1_000_000],
        "actors": [1000, 5000],
        "batch": 10_000,
        "idle_s": 10.0,
        "settle_s": 2.0,
    }


class Plan(NamedTuple):
    """One workload: its name, kind and size, and each engine's time limit (None: not run)."""

    name: str
    kind: str  # "roundtrip", "nodes", "register", "queued" or "actors"
    n: int
    deadline: float  # seconds the child gives itself to add nodes or actors
    timeouts: dict  # engine -> seconds for the whole process, or None
    why_not: str = ""  # why an engine with None is not run


def label(n):
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 10_000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def plans(short):
    """The workloads in the order they run; kit and Ray take turns within each."""
    s = sizes(short)
    if short:
        both = {"kit": 60.0, "ray": 120.0}
        out = [Plan("roundtrip", "roundtrip", 1, 0, both)]
        out += [Plan(f"nodes_{n}", "nodes", n, 30, both) for n in s["nodes"]]
        out += [
            Plan(f"nodes_{n}", "register", n, 30, {"kit": 60.0, "ray": None}, "kit only")
            for n in s["register_only"]
        ]
        out += [Plan(f"queued_{label(n)}", "queued", n, 0, both) for n in s["queued"]]
        out += [Plan(f"actors_{n}", "actors", n, 30, both) for n in s["actors"]]
        return out
    nodes = {1: (60, 120, 180), 10: (60, 120, 240), 100: (120, 240, 300)}
    queued = {100_000: (180, 240), 1_000_000: (420, 120)}
    actors = {1000: (100, 180, 180), 5000: (240, 360, 360)}
    out = [Plan("roundtrip", "roundtrip", 1, 0, {"kit": 120.0, "ray": 180.0})]
    for n in s["nodes"]:
        deadline, kit_t, ray_t = nodes[n]
        out.append(Plan(f"nodes_{n}", "nodes", n, deadline, {"kit": kit_t, "ray": ray_t}))
    for n in s["register_only"]:
        out.append(
            Plan(
                f"nodes_{n}",
                "register",
                n,
                150,
                {"kit": 180.0, "ray": None},
                "not run: a Ray node takes ~2 s and ~110 MiB here (nodes_100 shows its limit)",
            )
        )
    for n in s["queued"]:
        kit_t, ray_t = queued[n]
        out.append(Plan(f"queued_{label(n)}", "queued", n, 0, {"kit": kit_t, "ray": ray_t}))
    for n in s["actors"]:
        deadline, kit_t, ray_t = actors[n]
        out.append(Plan(f"actors_{n}", "actors", n, deadline, {"kit": kit_t, "ray": ray_t}))
    return out


# name, label, unit, kind ("time", "throughput", "memory", "cpu": below 1 kit is better
# except for throughput); the first of each kind is its headline ("value").
METRICS = {
    "roundtrip": [
        ("median_us", "median", "µs", "time"),
        ("p90_us", "p90", "µs", "time"),
    ],
    "nodes": [
        ("register_s", "all registered, driver connected", "s", "time"),
        ("tasks_per_s", "no-op tasks", "tasks/s", "throughput"),
        ("head_us", "head CPU per task", "µs", "cpu"),
        ("control_us", "control-plane CPU per task", "µs", "cpu"),
    ],
    "register": [("register_s", "all registered, driver connected", "s", "time")],
    "queued": [
        ("end_to_end_per_s", "end to end", "tasks/s", "throughput"),
        ("submit_per_s", "submitted", "tasks/s", "throughput"),
        ("drain_s", "drain after the last submit", "s", "time"),
        ("head_peak_mib", "head peak RSS", "MiB", "memory"),
        ("control_peak_mib", "control-plane peak RSS", "MiB", "memory"),
        ("driver_peak_mib", "driver peak RSS", "MiB", "memory"),
    ],
    "actors": [
        ("create_per_s", "created and answered", "actors/s", "throughput"),
        ("pss_per_actor_mib", "PSS per actor", "MiB", "memory"),
        ("rss_per_actor_mib", "RSS per actor", "MiB", "memory"),
        ("idle_cpu_pct", "idle CPU, whole runtime", "% of a core", "cpu"),
    ],
}


# ---- the child: one engine, one workload ---------------------------------------------

STATE = {"stop": None, "shutdown": []}  # why to stop early; what stops the engine
_emit_lock = threading.Lock()


def emit(record):
    with _emit_lock:
        workloads.emit(record)


class Progress:
    """What the child has done so far, printed at most once a second (and on demand), so
    that a run killed at its timeout or by the memory watch still says how far it got."""

    def __init__(self):
        self.fields, self.last = {}, 0.0

    def __call__(self, text, force=False, **fields):
        self.fields.update(fields, progress=text)
        now = time.monotonic()
        if force or now - self.last >= 1.0:
            self.last = now
            emit(dict(self.fields))


PROGRESS = Progress()


def watch_memory(min_free_gib):
    """Thread: below ``min_free_gib`` available, ask the workload to stop (it checks
    ``STATE["stop"]`` between steps); below half of that, or if it has not stopped
    10 s later, report and exit at once (the runner kills what is left)."""
    asked = None
    while True:
        free = psutil.virtual_memory().available / GIB
        if free < min_free_gib and STATE["stop"] is None:
            STATE["stop"] = f"available memory fell to {free:.1f} GiB (limit {min_free_gib:g})"
            asked = time.monotonic()
        if free < min_free_gib / 2 or (asked and time.monotonic() - asked > 10):
            reason = f"stopped hard: available memory {free:.1f} GiB"
            emit(dict(PROGRESS.fields, status="partial", error=reason))
            os._exit(3)
        time.sleep(0.25)


def kit_roles(engine):
    api = importlib.import_module("kit.api")
    head = api._state["cluster"].proc.pid  # no public way to find the head's pid yet
    agents = [n["pid"] for n in engine.mod.nodes() if n.get("pid")]
    return procs.roles(procs.engine_processes(), head, agents)


def roles(engine):
    """{role: [Process]} of the running engine (see ``procs.roles``)."""
    if engine.name == "kit":
        return kit_roles(engine)
    return procs.roles(procs.engine_processes())


def start_nodes(engine, n, cpus, deadline):
    """Start a cluster of ``n`` nodes of ``cpus`` slots and connect; returns (seconds, up).

    kit: one ``init(num_nodes=n)``, which returns once all are registered. Ray: a head
    node, then ``add_node`` (each waits for its node to register) until ``n`` or the
    deadline or the memory watch says stop.
    """
    t0 = time.perf_counter()
    if engine.name == "kit":
        STATE["shutdown"].append(engine.shutdown)
        try:
            engine.mod.init(num_nodes=n, num_cpus=cpus)
        except Exception as exc:
            # kit names how many joined: "only 450 of the 500 nodes started joined within..."
            joined = re.search(r"(\d+) of the (\d+) nodes", str(exc))
            if not joined:
                raise
            PROGRESS(str(exc), force=True, init_error=str(exc)[:300])
            return time.perf_counter() - t0, int(joined.group(1))
        elapsed = time.perf_counter() - t0
        return elapsed, sum(1 for nd in engine.mod.nodes() if nd["alive"])
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus})
    STATE["shutdown"] += [engine.shutdown, cluster.shutdown]
    added = 1
    while added < n and STATE["stop"] is None and time.perf_counter() - t0 < deadline:
        cluster.add_node(num_cpus=cpus)
        added += 1
        PROGRESS(f"{added} of {n} nodes up", nodes_up=added, elapsed_s=time.perf_counter() - t0)
    cluster.wait_for_nodes(timeout=60)
    engine.mod.init(address=cluster.address)
    elapsed = time.perf_counter() - t0
    return elapsed, sum(1 for nd in engine.mod.nodes() if nd["Alive"])


def cpu_by_role(found):
    return {role: procs.cpu_seconds(ps) for role, ps in found.items()}


def m_roundtrip(engine, plan, s):
    STATE["shutdown"].append(engine.shutdown)
    p = {"roundtrip_calls": s["roundtrip_calls"], "roundtrip_warmup": s["roundtrip_warmup"]}
    median, extra = workloads.w_roundtrip(engine, p)
    return dict(extra, median_us=median)


def m_nodes(engine, plan, s):
    n = plan.n
    cpus = max(1, CORES // n)
    register_s, up = start_nodes(engine, n, cpus, plan.deadline)
    out = {"nodes": n, "cpus_per_node": cpus, "slots": n * cpus, "nodes_up": up}
    if up < n:
        why = f" ({STATE['stop']})" if STATE["stop"] else ""
        return dict(out, reached=f"{up} of {n} nodes in {register_s:.0f} s{why}")
    out["register_s"] = register_s
    PROGRESS(f"all {n} nodes up in {register_s:.1f} s", force=True, **out)
    if plan.kind == "register":
        return out
    # Every slot's worker up (a sleep each, so they spread), the function on most.
    engine.get([engine.task(sleep_task)(0.2) for _ in range(n * cpus)])
    f = engine.task(noop)
    engine.get([f(i) for i in range(1000)])
    found = roles(engine)
    tasks = s["tasks"]
    c0 = cpu_by_role(found)
    t0 = time.perf_counter()
    refs = [f(i) for i in range(tasks)]
    values = engine.get(refs)
    wall = time.perf_counter() - t0
    c1 = cpu_by_role(found)
    assert list(values) == list(range(tasks)), "wrong results"
    us = {role: (c1[role] - c0[role]) / tasks * 1e6 for role in c0}
    return dict(
        out,
        tasks=tasks,
        tasks_per_s=tasks / wall,
        head_us=us["head"],
        control_us=us["head"] + us["daemons"],
        driver_us=us["driver"],
        workers_us=us["workers"],
        processes={role: len(ps) for role, ps in found.items()},
    )


def m_queued(engine, plan, s):
    STATE["shutdown"].append(engine.shutdown)
    workloads.start(engine)
    found = roles(engine)
    control = found["head"] + found["daemons"]
    peak = procs.PeakRSS(
        {
            "head_peak_mib": found["head"],
            "control_peak_mib": control,
            "driver_peak_mib": found["driver"],
        }
    )
    n, batch = plan.n, s["batch"]
    f = engine.task(noop)
    refs = []
    t0 = time.perf_counter()
    while len(refs) < n:
        refs += [f(i) for i in range(len(refs), min(n, len(refs) + batch))]
        rate = len(refs) / (time.perf_counter() - t0)
        PROGRESS(f"submitted {len(refs):,} ({rate:,.0f}/s)", submitted=len(refs), **peak.peaks)
    t1 = time.perf_counter()
    PROGRESS(
        f"submitted {n:,} in {t1 - t0:.1f} s",
        force=True,
        submit_s=t1 - t0,
        submit_per_s=n / (t1 - t0),
        **peak.peaks,
    )
    total = 0
    for i in range(0, n, batch):
        total += sum(engine.get(refs[i : i + batch]))
        done = min(n, i + batch)
        PROGRESS(
            f"submitted {n:,} in {t1 - t0:.1f} s, got {done:,} by {time.perf_counter() - t0:.0f} s",
            gotten=done,
            **peak.peaks,
        )
    t2 = time.perf_counter()
    peaks = peak.stop()
    assert total == n * (n - 1) // 2, "wrong results"
    del refs
    return peaks | {
        "tasks": n,
        "batch": batch,
        "submit_s": t1 - t0,
        "submit_per_s": n / (t1 - t0),
        "drain_s": t2 - t1,
        "total_s": t2 - t0,
        "end_to_end_per_s": n / (t2 - t0),
    }


class Pinger:
    """The actor: one call to show it is up."""

    def ping(self):
        return 1


def m_actors(engine, plan, s):
    STATE["shutdown"].append(engine.shutdown)
    workloads.start(engine)
    base_rss, base_pss, _ = procs.memory_mib(procs.engine_processes())
    cls = engine.mod.remote(num_cpus=0)(Pinger)
    n = plan.n
    t0 = time.perf_counter()
    handles = [cls.remote() for _ in range(n)]
    submit_s = time.perf_counter() - t0
    pending = [h.ping.remote() for h in handles]
    answered, failed, first_error = 0, 0, None
    while pending and STATE["stop"] is None and time.perf_counter() - t0 < plan.deadline:
        ready, pending = engine.mod.wait(pending, num_returns=len(pending), timeout=1.0)
        for ref in ready:  # a call that failed (its actor died) is ready too
            try:
                assert engine.get(ref) == 1
                answered += 1
            except Exception as exc:  # noqa: BLE001 - counted and reported
                failed += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"[:200]
        PROGRESS(
            f"{answered:,} of {n:,} actors answered, {failed:,} failed",
            answered=answered,
            failed=failed,
        )
    create_s = time.perf_counter() - t0
    rss, pss, count = procs.memory_mib(procs.engine_processes())
    per = max(answered, 1)
    out = {
        "actors": n,
        "answered": answered,
        "submit_s": submit_s,
        "create_s": create_s,
        "create_per_s": answered / create_s,
        "pss_per_actor_mib": pss / per,
        "rss_per_actor_mib": rss / per,
        "pss_added_per_actor_mib": (pss - base_pss) / per,
        "pss_total_mib": pss,
        "rss_total_mib": rss,
        "processes": count,
    }
    if failed:  # per actor figures would count the dead: only the totals
        reached = f"{answered:,} of {n:,} actors answered, {failed:,} failed ({first_error})"
        for key in ("pss_per_actor_mib", "rss_per_actor_mib", "pss_added_per_actor_mib"):
            del out[key]
        return dict(out, failed=failed, reached=reached)
    if answered < n:
        why = STATE["stop"] or f"the {plan.deadline:.0f} s deadline"
        return dict(out, reached=f"{answered:,} of {n:,} actors in {create_s:.0f} s ({why})")
    PROGRESS(f"all {n:,} actors answered in {create_s:.1f} s", force=True, **out)
    time.sleep(s["settle_s"])
    found = procs.engine_processes()
    c0 = procs.cpu_seconds(found)
    time.sleep(s["idle_s"])
    out["idle_cpu_pct"] = (procs.cpu_seconds(found) - c0) / s["idle_s"] * 100
    out["idle_s"] = s["idle_s"]
    del handles, pending
    return out


MEASURE = {
    "roundtrip": m_roundtrip,
    "nodes": m_nodes,
    "register": m_nodes,
    "queued": m_queued,
    "actors": m_actors,
}


def child(engine_name, workload, short):
    by_name = {p.name: p for p in plans(short)}
    if workload not in by_name:
        raise SystemExit(f"unknown workload {workload!r} (choose from {', '.join(by_name)})")
    plan = by_name[workload]
    engine = engines.make(engine_name)
    import_s = engines.timed_load(engine)
    emit({"version": engine.version(), "import_s": import_s})
    min_free = float(os.environ.get(MIN_FREE_ENV) or 4.0)
    threading.Thread(target=watch_memory, args=(min_free,), daemon=True).start()
    code = 0
    try:
        out = MEASURE[plan.kind](engine, plan, sizes(short))
        headline = METRICS[plan.kind][0][0]
        if out.get("reached"):
            # a value, so that a runner timeout during shutdown keeps the partial result
            emit(dict(out, status="partial", error=out["reached"], value=out.get(headline, 0)))
        else:
            emit(dict(out, status="ok", value=out[headline]))
    except Exception as exc:  # noqa: BLE001 - reported in the table
        traceback.print_exc()
        emit({"status": "error", "error": f"{type(exc).__name__}: {exc}"[:500]})
        code = 1
    t0 = time.perf_counter()
    for stop in STATE["shutdown"]:  # in order: Ray's driver, then its cluster
        try:
            stop()
        except Exception as exc:  # noqa: BLE001 - reported in the notes
            traceback.print_exc()
            emit({"shutdown_error": f"{type(exc).__name__}: {exc}"[:500]})
    emit({"shutdown_s": time.perf_counter() - t0})
    return code


def main(argv=None):
    parser = argparse.ArgumentParser(description="Measure one scale workload on one engine.")
    parser.add_argument("engine", choices=ENGINES)
    parser.add_argument("workload")
    parser.add_argument("--short", action="store_true", help="tiny sizes")
    args = parser.parse_args(argv)
    return child(args.engine, args.workload, args.short)


if __name__ == "__main__":
    sys.exit(main())
