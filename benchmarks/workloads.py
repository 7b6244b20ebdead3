"""The benchmark workloads, and the entry point that measures one of them.

    python benchmarks/workloads.py ENGINE WORKLOAD [--short]
    python benchmarks/workloads.py ENGINE --probe

runs in a fresh interpreter, imports ENGINE (timing the import), measures
WORKLOAD once, shuts the engine down and prints result lines prefixed with
``RESULT_MARK`` (one JSON object each) on stdout. ``run.py`` starts one such
process per engine, workload and repetition.

The task functions live in this module so that every engine ships them the
way it ships a user's script functions (by value from ``__main__``, or by
fork for concurrent.futures). They import what they need inside their body,
because ipyparallel ships functions without their module globals.

Only the standard library is imported at module level, so that the engine's
import time is measured in a clean interpreter and ``run.py`` can import this
module for the workload table.
"""

import argparse
import json
import statistics
import sys
import time
import traceback

import engines

RESULT_MARK = "@@KIT-BENCH@@ "

# The Ray tutorial's sixteen sleeps.
SLEEPS = [
    0.1,
    0.2,
    0.1,
    0.5,
    0.7,
    0.9,
    0.5,
    0.4,
    1.5,
    1.3,
    1.0,
    0.3,
    0.7,
    0.6,
    0.3,
    0.8,
]


# --------------------------------------------------------------------- tasks


def noop(x=None):
    return x


def sleep_task(t):
    import time

    time.sleep(t)
    return f"Sleep time {t}"


def create_matrix(size):
    import numpy as np

    return np.random.normal(size=size)


def multiply_matrices(x, y):
    import numpy as np

    return np.dot(x, y)


def sum_matrices(x, y):
    import numpy as np

    return np.add(x, y)


def add(x, y):
    return x + y


def read_array(arr):
    return float(arr[::1000].sum())


class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n


# ------------------------------------------------------------ workload table


class Spec:
    """What a workload reports: unit, which way is better, how to compare."""

    def __init__(self, unit, kind, cheap=False, needs_actors=False, what=""):
        self.unit = unit
        self.kind = kind  # "time", "throughput" or "memory"
        self.cheap = cheap  # cheap enough to run more repetitions
        self.needs_actors = needs_actors
        self.what = what

    @property
    def higher_is_better(self):
        return self.kind == "throughput"


SPECS = {
    "import": Spec("s", "time", what="import of the engine's package (from the startup runs)"),
    "startup": Spec(
        "s",
        "time",
        cheap=True,
        what="init (default slots) until the first no-op task's result",
    ),
    "roundtrip": Spec(
        "µs",
        "time",
        cheap=True,
        what="median latency of one sequential no-op submit+get",
    ),
    "tasks_10k": Spec(
        "tasks/s", "throughput", what="no-op tasks submitted in a loop, then one get"
    ),
    "actor_10k": Spec(
        "calls/s",
        "throughput",
        needs_actors=True,
        what="calls to one actor method, then one get",
    ),
    "sleeps16_default": Spec("s", "time", what="the tutorial's sleep tasks, default slots"),
    "sleeps16_16slots": Spec("s", "time", what="the tutorial's sleep tasks, 16 slots"),
    "matrix": Spec("s", "time", what="4 create_matrix, 2 multiply, 1 sum, one get"),
    "tree_1024": Spec("s", "time", what="pairwise tree of add tasks over the values"),
    "put_100mib": Spec("s", "time", what="put one array, 4 tasks read it, get all"),
    "idle_memory": Spec("MiB", "memory", what="RSS of driver + all engine processes after warm-up"),
}

# Workloads that run as their own process ("import" comes from "startup").
WORKLOADS = [name for name in SPECS if name != "import"]


def params(short):
    """Sizes of every workload; ``short`` is the smoke-test mode."""
    if short:
        return {
            "roundtrip_calls": 20,
            "roundtrip_warmup": 5,
            "tasks": 200,
            "actor_calls": 200,
            "sleeps": [0.01] * 4,
            "many_slots": 4,
            "matrix_size": 100,
            "tree_values": 64,
            "put_mib": 1,
            "settle_s": 0.5,
        }
    return {
        "roundtrip_calls": 200,
        "roundtrip_warmup": 20,
        "tasks": 10_000,
        "actor_calls": 10_000,
        "sleeps": SLEEPS,
        "many_slots": 16,
        "matrix_size": 1000,
        "tree_values": 1024,
        "put_mib": 100,
        "settle_s": 2.0,
    }


def supported(engine_name, workload):
    """None if ``engine_name`` can run ``workload``, else the reason why not."""
    engine = engines.make(engine_name)
    if SPECS[workload].needs_actors and not engine.has_actors:
        return engine.no_actor_reason
    return None


# ----------------------------------------------------------------- workloads


def start(engine, slots=None):
    """Start the engine and warm it up: one round of short tasks per slot, so
    that lazily started workers are up before anything is timed."""
    engine.start(slots)
    n = slots or engine.default_slots()
    sleep = engine.task(sleep_task)
    engine.get([sleep(0.05) for _ in range(n)])
    return engine


def warm_numpy(engine, slots=None):
    """One tiny numpy task per slot, so worker-side ``import numpy`` is not
    timed (Ray's workers have it loaded already, the others import it late)."""
    n = slots or engine.default_slots()
    create = engine.task(create_matrix)
    engine.get([create([2, 2]) for _ in range(n)])


def w_startup(engine, p):
    t0 = time.perf_counter()
    engine.start(None)
    t1 = time.perf_counter()
    value = engine.get(engine.task(noop)(1))
    t2 = time.perf_counter()
    assert value == 1, value
    return t2 - t0, {"init_s": t1 - t0, "first_task_s": t2 - t1}


def w_roundtrip(engine, p):
    start(engine)
    f = engine.task(noop)
    for i in range(p["roundtrip_warmup"]):
        engine.get(f(i))
    lat = []
    for i in range(p["roundtrip_calls"]):
        t0 = time.perf_counter()
        engine.get(f(i))
        lat.append((time.perf_counter() - t0) * 1e6)
    lat.sort()
    extra = {
        "calls": len(lat),
        "p10_us": lat[len(lat) // 10],
        "p90_us": lat[(len(lat) * 9) // 10],
        "mean_us": statistics.fmean(lat),
    }
    return statistics.median(lat), extra


def w_tasks_10k(engine, p):
    start(engine)
    n = p["tasks"]
    f = engine.task(noop)
    t0 = time.perf_counter()
    refs = [f(i) for i in range(n)]
    t1 = time.perf_counter()
    out = engine.get(refs)
    t2 = time.perf_counter()
    assert list(out) == list(range(n)), "wrong results"
    return n / (t2 - t0), {"tasks": n, "submit_s": t1 - t0, "total_s": t2 - t0}


def w_actor_10k(engine, p):
    start(engine)
    n = p["actor_calls"]
    handle = engine.actor(Counter)
    assert engine.get(engine.call(handle, "incr")) == 1
    t0 = time.perf_counter()
    refs = [engine.call(handle, "incr") for _ in range(n)]
    t1 = time.perf_counter()
    out = engine.get(refs)
    t2 = time.perf_counter()
    # Each call ran exactly once; Dask actors need not run them in order.
    expected = list(range(2, n + 2))
    assert sorted(out) == expected, "wrong results"
    extra = {
        "calls": n,
        "submit_s": t1 - t0,
        "total_s": t2 - t0,
        "in_order": list(out) == expected,
    }
    return n / (t2 - t0), extra


def _sleeps(engine, p, slots):
    start(engine, slots)
    times = p["sleeps"]
    f = engine.task(sleep_task)
    t0 = time.perf_counter()
    out = engine.get([f(t) for t in times])
    wall = time.perf_counter() - t0
    assert out == [f"Sleep time {t}" for t in times], out
    n = slots or engine.default_slots()
    return wall, {
        "slots": n,
        "tasks": len(times),
        "bound_s": max(max(times), sum(times) / n),
    }


def w_sleeps16_default(engine, p):
    return _sleeps(engine, p, None)


def w_sleeps16_16slots(engine, p):
    return _sleeps(engine, p, p["many_slots"])


def w_matrix(engine, p):
    start(engine)
    warm_numpy(engine)
    size = [p["matrix_size"]] * 2
    create = engine.task(create_matrix)
    multiply = engine.task(multiply_matrices)
    total = engine.task(sum_matrices)
    a = engine.arg
    t0 = time.perf_counter()
    m = [create(size) for _ in range(4)]
    p1 = multiply(a(m[0]), a(m[1]))
    p2 = multiply(a(m[2]), a(m[3]))
    result = engine.get(total(a(p1), a(p2)))
    wall = time.perf_counter() - t0
    assert result.shape == tuple(size), result.shape
    return wall, {"size": size}


def w_tree_1024(engine, p):
    start(engine)
    n = p["tree_values"]
    f = engine.task(add)
    a = engine.arg
    t0 = time.perf_counter()
    values = list(range(n))
    while len(values) > 1:
        values = values[2:] + [f(a(values[0]), a(values[1]))]
    result = engine.get(values[0])
    wall = time.perf_counter() - t0
    assert result == n * (n - 1) // 2, result
    return wall, {"values": n, "tasks": n - 1}


def w_put_100mib(engine, p):
    import numpy as np

    start(engine)
    warm_numpy(engine)
    arr = np.arange(p["put_mib"] * 1024 * 1024 // 8, dtype=np.float64)
    expected = float(arr[::1000].sum())
    f = engine.task(read_array)
    t0 = time.perf_counter()
    ref = engine.put(arr)
    out = engine.get([f(engine.arg(ref)) for _ in range(4)])
    wall = time.perf_counter() - t0
    assert out == [expected] * 4, out
    return wall, {"mib": p["put_mib"], "readers": 4}


def w_idle_memory(engine, p):
    import procs

    start(engine)
    time.sleep(p["settle_s"])
    found = procs.engine_processes(include_ray_daemons=engine.name == "ray")
    rss, pss, counted = procs.memory_mib(found)
    return rss, {"pss_mib": pss, "processes": counted}


# --------------------------------------------------------------- entry point


def emit(record):
    sys.stdout.write(RESULT_MARK + json.dumps(record) + "\n")
    sys.stdout.flush()


def main(argv=None):
    parser = argparse.ArgumentParser(description="Measure one workload on one engine.")
    parser.add_argument("engine", choices=engines.ALL_ENGINES)
    parser.add_argument("workload", nargs="?", choices=WORKLOADS)
    parser.add_argument("--short", action="store_true", help="tiny smoke-test sizes")
    parser.add_argument("--probe", action="store_true", help="only import, print version")
    args = parser.parse_args(argv)

    engine = engines.make(args.engine)
    record = {"engine": args.engine, "workload": args.workload}
    try:
        record["import_s"] = engines.timed_load(engine)
        record["version"] = engine.version()
    except Exception as exc:  # noqa: BLE001 - any import failure means "skip"
        emit(dict(record, status="unavailable", error=f"{type(exc).__name__}: {exc}"))
        return 2
    emit({"import_s": record["import_s"], "version": record["version"]})  # early, for timeouts
    if args.probe:
        emit(dict(record, status="ok"))
        return 0
    if args.workload is None:
        parser.error("a workload is required unless --probe is given")

    measure = globals()["w_" + args.workload]
    code = 0
    try:
        value, extra = measure(engine, params(args.short))
        emit(dict(record, status="ok", value=value, extra=extra))
    except Exception as exc:  # noqa: BLE001 - reported in the table
        traceback.print_exc()
        emit(dict(record, status="error", error=f"{type(exc).__name__}: {exc}"[:500]))
        code = 1
    t0 = time.perf_counter()
    try:
        engine.shutdown()
    except Exception as exc:  # noqa: BLE001 - reported in the notes
        traceback.print_exc()
        emit({"shutdown_error": f"{type(exc).__name__}: {exc}"[:500]})
    emit({"shutdown_s": time.perf_counter() - t0})
    return code


if __name__ == "__main__":
    sys.exit(main())
