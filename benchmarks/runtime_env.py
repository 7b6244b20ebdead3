"""What a new environment costs: the first task in it, and the next ones (issue 17).

    python benchmarks/runtime_env.py [--short] [--reps N] [--md PATH]

A local kit cluster (one node, 2 slots), a driver in this process. For each kind of
environment, every repetition makes a new one (a value, a file or a wheel version no
earlier repetition used), then times:

    first     its first task, from .remote() to the result: packing and putting (the
              driver), a worker started for it, fetching and unpacking, installing
    next      a task in the same environment once its worker is up (median of 20)
    new_proc  a first task in it from a new driver and cluster (the node's cache is
              warm: nothing is fetched or installed again, a worker is started)

    base          no runtime_env: the first task of a fresh cluster, and the next ones
    env_vars      runtime_env={"env_vars": {...}}
    working_dir   a folder of 100 files, 1 MiB
    pip           a local wheel (made here, offline), installed with pip into a venv
                  over the base environment
    local_module  no option: a module beside the script, shipped; "first" after an edit
                  is the first task after its file changed

and the direct path's rate for a no-op function that refers to a local module (its
files are looked at before each .remote()) beside one that does not.
Writes a markdown table (benchmarks/results/runtime_env.md; --short: 1 repetition and
fewer tasks, to --md only).
"""

import argparse
import base64
import datetime
import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def make_wheel(folder, name, version):
    """A pure-Python wheel written by hand (no build tools, no network)."""
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{name}-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ),
        f"{name}-{version}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: kit-bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, text in files.items():
        b64 = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={b64.decode()},{len(text.encode())}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = "\n".join(record) + "\n"
    path = os.path.join(folder, f"{name}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as z:
        for p, text in files.items():
            z.writestr(p, text)
    return path


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--short", action="store_true")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--md", default=None)
    args = ap.parse_args()
    reps = args.reps or (1 if args.short else 3)
    nexts = 5 if args.short else 20
    rate_n = 500 if args.short else 5000
    work = tempfile.mkdtemp(prefix="kit-bench-env-")
    os.environ["KIT_CACHE_DIR"] = os.path.join(work, "cache")  # every number starts cold
    nb = os.path.join(work, "nb")
    os.makedirs(nb)
    sys.path.insert(0, nb)
    with open(os.path.join(nb, "bench_helpers.py"), "w") as f:
        f.write("def inc(x):\n    return x + 1\n")
    import bench_helpers

    import kit

    rows = {}

    def add(name, value):
        rows.setdefault(name, []).append(value)

    def start():
        kit.init(num_cpus=2, include_dashboard=False)

        @kit.remote
        def warm():
            return 1

        kit.get([warm.remote() for _ in range(2)])

    @kit.remote
    def noop(x=None):
        return x

    @kit.remote
    def uses_local(x=0):
        return bench_helpers.inc(x)

    @kit.remote
    def pip_version():
        import kitbench

        return kitbench.VERSION

    try:
        for rep in range(reps):
            envs = {
                "env_vars": {"env_vars": {"KIT_BENCH": f"{rep}-{time.time()}"}},
                "working_dir": {"working_dir": _folder(work, rep)},
                "pip": {"pip": [make_wheel(work, "kitbench", f"1.{rep}.{int(time.time())}")]},
            }
            start()
            add("base first", timed(lambda: kit.get(noop.remote())))
            add("base next", _median(lambda: kit.get(noop.remote()), nexts))
            for kind, env in envs.items():
                f = pip_version if kind == "pip" else noop
                g = f.options(runtime_env=env)
                add(f"{kind} first", timed(lambda g=g: kit.get(g.remote(), timeout=300)))
                add(f"{kind} next", _median(lambda g=g: kit.get(g.remote()), nexts))
            if rep == 0:
                add("local_module first", timed(lambda: kit.get(uses_local.remote(1))))
            with open(os.path.join(nb, "bench_helpers.py"), "w") as f:
                f.write(f"def inc(x):\n    return x + {rep + 2}\n")
            add("local_module first after an edit", timed(lambda: kit.get(uses_local.remote(1))))
            add("local_module next", _median(lambda: kit.get(uses_local.remote(1)), nexts))
            kit.shutdown()
            start()  # a new driver and cluster: the node's cache is warm
            for kind, env in envs.items():
                f = pip_version if kind == "pip" else noop
                g = f.options(runtime_env=env)
                add(f"{kind} new_proc", timed(lambda g=g: kit.get(g.remote(), timeout=300)))
            for name, f in (("no-op tasks/s", noop), ("local_module no-op tasks/s", uses_local)):
                kit.get([f.remote() for _ in range(200)])
                t = time.perf_counter()
                kit.get([f.remote() for _ in range(rate_n)])
                add(name, rate_n / (time.perf_counter() - t))
            kit.shutdown()
    finally:
        if kit.is_initialized():
            kit.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    text = _report(rows, reps, nexts, rate_n, args.short)
    print(text)
    out = args.md or (None if args.short else str(HERE / "results" / "runtime_env.md"))
    if out:
        Path(out).write_text(text)


def _folder(work, rep):
    d = os.path.join(work, f"wd{rep}")
    os.makedirs(d)
    for i in range(100):
        with open(os.path.join(d, f"f{i:03d}.py" if i % 2 else f"f{i:03d}.dat"), "wb") as f:
            f.write(os.urandom(10_000) if i % 2 == 0 else f"X = {i}\n".encode().ljust(10_000))
    return d


def _median(fn, n):
    return statistics.median(timed(fn) for _ in range(n))


def _fmt(name, v):
    if name.endswith("tasks/s"):
        return f"{v:,.0f}"
    return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"


def _report(rows, reps, nexts, rate_n, short):
    import kit

    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True, cwd=ROOT).stdout.strip()  # fmt: skip
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = "runtime_env: the first task in a new environment, and the next ones"
    lines = [
        f"# {title}{' (short)' if short else ''}",
        "",
        f"{now} · {platform.node()} · {os.cpu_count()} CPUs · Python {platform.python_version()} "
        f"· kit {kit.__version__} (git {git}) · pip {_pip_version()} · uv: "
        f"{'yes' if shutil.which('uv') else 'no'}",
        "",
        f"A local cluster of one node with 2 slots, the driver in the same process. Medians "
        f"of {reps} repetition(s), each with a new environment and a cold node cache; "
        f"'next' is itself a median of {nexts} tasks; rates over {rate_n:,} tasks. "
        f"Load average {os.getloadavg()[0]:.2f} at the end.",
        "",
        "| measurement | value |",
        "|---|---:|",
    ]  # fmt: skip
    for name, values in rows.items():
        lines.append(f"| {name} | {_fmt(name, statistics.median(values))} |")
    lines += [
        "",
        "Measurements:",
        "- `first`: .remote() to the result of the first task in a new environment: the "
        "driver packs and puts it, the head asks the node for a worker of that environment, "
        "the worker fetches and unpacks it into the node's cache (pip: makes a venv over the "
        "base environment and installs the wheel), then runs the task",
        "- `next`: a task in the same environment once its worker is up (the head's path)",
        "- `new_proc`: the first task in it from a new driver and cluster, the node's cache "
        "warm: a worker is started, nothing fetched or installed",
        "- `base`: no runtime_env (the direct path after the first task)",
        "- `local_module`: a function using a module beside the script, no option; "
        "`first` ships it, `first after an edit` ships the edited file again",
        "- tasks/s: no-op tasks on the direct path, plain or using a local module (its file "
        "is looked at before a .remote(), at most every 2 ms in a burst)",
    ]
    return "\n".join(lines) + "\n"


def _pip_version():
    try:
        import pip

        return pip.__version__
    except Exception:
        return "?"


if __name__ == "__main__":
    main()
