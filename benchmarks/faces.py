"""Each face of kit against the default it replaces, on this machine, in one run.

    python benchmarks/faces.py [--short] [--reps N] [--md PATH]

    face       kit                                  default
    joblib     Parallel under parallel_backend("kit")  Parallel (loky)
    executor   kit.Executor().map                   ProcessPoolExecutor().map
    pool       kit.Pool().map                       multiprocessing.Pool().map
    asyncio    gather(*refs)                        gather(run_in_executor(ProcessPool))

Workloads: ``tiny`` (many x*x calls, on the machine's cores) and ``sleeps``
(16 calls of time.sleep(0.25) with 16 slots: kit started with num_cpus=16,
the pools with 16 processes). Every engine is started and warmed up (one call
per slot) before it is timed; the time is the median over the repetitions,
kit and the default interleaved. Prints a markdown table and writes it to
``benchmarks/results/faces.md`` (``faces-short.md`` with ``--short``).
"""

import argparse
import asyncio
import concurrent.futures
import datetime
import multiprocessing
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import joblib  # noqa: E402

import kit  # noqa: E402

FACES = ("joblib", "executor", "pool", "asyncio")


def square(x):
    return x * x


def nap(s):
    time.sleep(s)
    return s


def workloads(short):
    cores = os.cpu_count() or 1
    if short:
        return [("tiny", square, list(range(200)), cores), ("sleeps", nap, [0.05] * 4, 4)]
    return [("tiny", square, list(range(2000)), cores), ("sleeps", nap, [0.25] * 16, 16)]


# ---- one runner per (face, engine): (setup, run, teardown) ------------------------------


class Runner:
    """Starts an engine's face with ``slots`` workers; ``run(fn, items)`` returns results."""

    def __init__(self, face, slots):
        self.face, self.slots = face, slots

    def start(self):
        pass

    def stop(self):
        pass


class KitFace(Runner):
    def start(self):
        if self.face == "joblib":
            kit.joblib.register()
        elif self.face == "executor":
            self.ex = kit.Executor()
        elif self.face == "pool":
            self.pool = kit.Pool(self.slots)
        self.remote = {}

    def run(self, fn, items):
        if self.face == "joblib":
            with joblib.parallel_backend("kit", n_jobs=self.slots):
                return joblib.Parallel()(joblib.delayed(fn)(x) for x in items)
        if self.face == "executor":
            return list(self.ex.map(fn, items))
        if self.face == "pool":
            return self.pool.map(fn, items)
        rf = self.remote.get(fn) or self.remote.setdefault(fn, kit.remote(fn))

        async def main():
            return await asyncio.gather(*[rf.remote(x) for x in items])

        return asyncio.run(main())

    def stop(self):
        if self.face == "executor":
            self.ex.shutdown()
        elif self.face == "pool":
            self.pool.terminate()


class DefaultFace(Runner):
    def start(self):
        if self.face in ("executor", "asyncio"):
            self.ex = concurrent.futures.ProcessPoolExecutor(self.slots)
        elif self.face == "pool":
            self.pool = multiprocessing.Pool(self.slots)

    def run(self, fn, items):
        if self.face == "joblib":
            return joblib.Parallel(n_jobs=self.slots)(joblib.delayed(fn)(x) for x in items)
        if self.face == "executor":
            return list(self.ex.map(fn, items))
        if self.face == "pool":
            return self.pool.map(fn, items)

        async def main():
            loop = asyncio.get_running_loop()
            return await asyncio.gather(*[loop.run_in_executor(self.ex, fn, x) for x in items])

        return asyncio.run(main())

    def stop(self):
        if self.face in ("executor", "asyncio"):
            self.ex.shutdown()
        elif self.face == "pool":
            self.pool.terminate()
            self.pool.join()
        else:
            from joblib.externals.loky import get_reusable_executor

            get_reusable_executor().shutdown(wait=True)


DEFAULT_NAME = {
    "joblib": "joblib loky",
    "executor": "ProcessPoolExecutor",
    "pool": "multiprocessing.Pool",
    "asyncio": "run_in_executor(ProcessPool)",
}


def timed(runner, fn, items):
    t0 = time.perf_counter()
    out = runner.run(fn, items)
    elapsed = time.perf_counter() - t0
    expect = [fn(x) if fn is square else x for x in items]
    if out != expect:
        raise AssertionError(f"{type(runner).__name__} {runner.face} returned wrong results")
    return elapsed


def measure(short, reps, log):
    rows = []
    for name, fn, items, slots in workloads(short):
        kit.init(num_cpus=slots, log_to_driver=False)
        try:
            for face in FACES:
                runners = [KitFace(face, slots), DefaultFace(face, slots)]
                for r in runners:
                    r.start()
                try:
                    for r in runners:  # warm-up: one call per slot, untimed
                        r.run(fn, items[:1] * slots)
                    times = {0: [], 1: []}
                    for _ in range(reps):
                        for i, r in enumerate(runners):
                            times[i].append(timed(r, fn, items))
                finally:
                    for r in runners:
                        r.stop()
                k, d = statistics.median(times[0]), statistics.median(times[1])
                rows.append((name, len(items), slots, face, k, d))
                log(f"{name:7} {face:9} kit {k:8.3f} s   {DEFAULT_NAME[face]} {d:8.3f} s")
        finally:
            kit.shutdown()
    return rows


def render(rows, short, reps, loads):
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=HERE,
            timeout=10,
        ).stdout.strip()
    except Exception:
        rev = "?"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# kit's faces against their defaults{' (short run)' if short else ''}",
        "",
        f"{now} · host {socket.gethostname()} · {os.cpu_count()} CPUs · Python "
        f"{platform.python_version()} · kit {kit.__version__} (git {rev}) · joblib "
        f"{joblib.__version__}",
        "",
        f"Medians over {reps} repetition(s), kit and the default interleaved, each engine "
        f"started and warmed up (one call per slot) before timing. Load average "
        f"{loads[0]:.2f} at start, {loads[1]:.2f} at the end.",
        "",
        "| workload | face | kit | default | default time | kit / default |",
        "|---|---|---:|---|---:|---:|",
    ]
    for name, n, slots, face, k, d in rows:
        what = f"{name} ({n} calls, {slots} slots)"
        lines.append(
            f"| {what} | {face} | {k:.3f} s | {DEFAULT_NAME[face]} | {d:.3f} s | {k / d:.2f}x |"
        )
    lines += [
        "",
        "kit / default below 1 means kit is faster. Workloads: `tiny` is `x * x` "
        "per call (per-call overhead); `sleeps` is `time.sleep` per call with a slot "
        "for each (scheduling latency).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", action="store_true", help="tiny sizes, one repetition")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 3, short 1)")
    ap.add_argument("--md", default=None, help="where to write the markdown table")
    args = ap.parse_args(argv)
    reps = args.reps or (1 if args.short else 3)
    md = (
        Path(args.md)
        if args.md
        else HERE / "results" / ("faces-short.md" if args.short else "faces.md")
    )
    load0 = os.getloadavg()[0]
    rows = measure(args.short, reps, lambda s: print(s, file=sys.stderr, flush=True))
    text = render(rows, args.short, reps, (load0, os.getloadavg()[0]))
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
