"""Benchmark kit against Ray, Dask, ipyparallel and concurrent.futures.

    python benchmarks/run.py [--engines kit,ray,dask,ipyparallel,futures]
                             [--workloads startup,roundtrip,...] [--reps N]
                             [--short] [--json PATH] [--md PATH] [--timeout S]
    python benchmarks/run.py --render benchmarks/results/latest.json

Every (engine, workload, repetition) runs in a fresh Python process
(``workloads.py``) with a timeout; whatever processes it started are found
through an environment tag and killed if they outlive it. Repetitions are
interleaved across engines so that drift on the machine hits all alike.

Prints a markdown table of medians, with kit's ratio to each peer, and writes
the raw records as JSON (default ``benchmarks/results/latest.json``) and the
table as markdown next to it. ``--short`` is the smoke-test mode: tiny sizes,
one repetition, engines kit and futures; its files default to
``latest-short.*`` so that a smoke run never overwrites a full run's results.

``--render`` runs nothing and re-renders the markdown of a saved JSON file.

Engines that cannot be imported are skipped with a note. The exit status is
1 if any workload of an available engine failed or timed out, else 0.
"""

import argparse
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import engines  # noqa: E402  (from HERE, put on sys.path above)
import procs  # noqa: E402
import report  # noqa: E402
from workloads import RESULT_MARK, SPECS, WORKLOADS, params, supported  # noqa: E402

WORKER = HERE / "workloads.py"
RESULTS = HERE / "results"
CHEAP_REPS = 5  # repetitions of the cheap workloads in a full run
LEFTOVER_GRACE_S = 10.0  # how long an engine may take to wind down after exit
MAX_TIMEOUTS = 2  # after this many timeouts an engine's remaining runs are skipped


def log(message):
    print(message, file=sys.stderr, flush=True)


def child_env(tag):
    env = dict(os.environ)
    env[procs.TAG_ENV] = tag
    # kit may not be installed: let the driver and its workers import it.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network here anyway
    # Always start a fresh local cluster, never join one named by the caller.
    for name in ("KIT_ADDRESS", "KIT_TOKEN", "RAY_ADDRESS"):
        env.pop(name, None)
    return env


def run_worker(args, timeout, script=WORKER):
    """Run ``workloads.py ARGS`` (or another ``script``) in a fresh process.

    Returns (records, info): the ``RESULT_MARK`` lines it printed, and the run.

    ``info`` has status ("exited" or "timeout"), returncode, wall_s, a tail of
    stderr, and how many processes were left behind and killed.
    """
    tag = uuid.uuid4().hex
    with tempfile.TemporaryDirectory(prefix="kit-bench-") as tmp:
        out_path, err_path = Path(tmp, "out"), Path(tmp, "err")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, str(script), *args],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                cwd=str(REPO),
                env=child_env(tag),
                start_new_session=True,
            )
            info = {"status": "exited"}
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                info["status"] = "timeout"
            finally:
                # Also reached on Ctrl-C: never leave the engine running.
                if proc.poll() is None:
                    info["killed"] = procs.cleanup(proc.pid, tag)
                    proc.wait()
            info["wall_s"] = time.perf_counter() - t0
            info["returncode"] = proc.returncode
            t1 = time.perf_counter()
            left = procs.wait_gone(tag, LEFTOVER_GRACE_S)
            info["linger_s"] = time.perf_counter() - t1
            if left:
                info["left_behind"] = [" ".join(_cmdline(p))[:120] for p in left]
                procs.kill(left)
        stdout = out_path.read_text(errors="replace")
        stderr = err_path.read_text(errors="replace")
    info["stderr_tail"] = stderr[-2000:]
    records = [
        json.loads(line[len(RESULT_MARK) :])
        for line in stdout.splitlines()
        if line.startswith(RESULT_MARK)
    ]
    return records, info


def run_children(script, names, extra_args, timeout):
    """Run ``script --child NAME *extra_args`` for each engine name, each in a fresh process.

    Returns (records, notes): every record the children printed, and one line per
    child that failed, timed out or left processes behind (for the report).
    """
    records, notes = [], []
    for name in names:
        got, info = run_worker(["--child", name, *extra_args], timeout, script=script)
        log(f"[{name}] {info['status']} in {info['wall_s']:.1f} s")
        records += got
        if info["status"] != "exited" or info["returncode"] != 0:
            tail = info["stderr_tail"].strip().splitlines()
            notes.append(
                f"{name}: {info['status']}, exit {info['returncode']}: {tail[-1] if tail else ''}"
            )
        if info.get("left_behind"):
            notes.append(f"{name}: killed {len(info['left_behind'])} leftover process(es)")
    return records, notes


def write_table(text, md, stem, short):
    """Print a report and write it to ``md`` (default ``results/STEM[-short].md``)."""
    print(text)
    md = Path(md) if md else RESULTS / f"{stem}{'-short' if short else ''}.md"
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(text)
    log(f"wrote {md}")


def _cmdline(proc):
    try:
        return proc.cmdline() or [proc.name()]
    except psutil.Error:
        return ["?"]


def probe(name, timeout):
    """Import ``name`` in a fresh process: (version, None) or (None, reason)."""
    records, info = run_worker([name, "--probe"], timeout)
    if info["status"] == "timeout":
        return None, f"import timed out after {timeout:.0f} s"
    for rec in records:
        if rec.get("status") == "ok":
            return rec.get("version", "unknown"), None
        if rec.get("status") == "unavailable":
            return None, rec.get("error", "not importable")
    tail = info["stderr_tail"].strip().splitlines()
    return None, tail[-1] if tail else f"probe exited with {info['returncode']}"


def measure(engine, workload, rep, short, timeout, script=WORKER):
    """One workload process (``script ENGINE WORKLOAD [--short]``); returns a flat
    record for the JSON file: the merged result lines it printed, and how it ended."""
    args = [engine, workload] + (["--short"] if short else [])
    records, info = run_worker(args, timeout, script=script)
    record = {"engine": engine, "workload": workload, "rep": rep, "status": "error"}
    for rec in records:
        record.update(rec)
    record["wall_s"] = info["wall_s"]
    record["returncode"] = info["returncode"]
    record["linger_s"] = info["linger_s"]  # how long its processes outlived it
    if info.get("left_behind"):
        record["left_behind"] = info["left_behind"]
    if info["status"] == "timeout":
        record["timed_out"] = True
        if record.get("value") is None:
            record["status"] = "timeout"
            record["error"] = f"no result within {timeout:.0f} s"
        else:
            record["error"] = f"shutdown did not finish within {timeout:.0f} s"
    elif record["status"] == "error" and "error" not in record:
        tail = info["stderr_tail"].strip().splitlines()
        record["error"] = tail[-1] if tail else f"exited with {info['returncode']}"
    if record["status"] != "ok":
        record["stderr_tail"] = info["stderr_tail"]
    return record


def describe(record):
    if record["status"] == "ok":
        unit = SPECS[record["workload"]].unit
        text = f"{report.fmt_number(record['value'])} {unit}"
    else:
        text = f"{record['status'].upper()}: {record.get('error', '')}"
    return f"{text}  (process {record['wall_s']:.1f} s)"


def reps_for(workload, args):
    if args.reps is not None:
        return args.reps
    if args.short:
        return 1
    return CHEAP_REPS if SPECS[workload].cheap else 3


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Benchmark kit against its peers; prints a markdown table."
    )
    parser.add_argument("--engines", help="comma-separated, from " + ",".join(engines.ALL_ENGINES))
    parser.add_argument("--workloads", help="comma-separated, from " + ",".join(WORKLOADS))
    parser.add_argument("--reps", type=int, help="repetitions of every workload")
    parser.add_argument("--short", action="store_true", help="tiny smoke-test run")
    parser.add_argument("--json", type=Path, help="where to write the raw results")
    parser.add_argument("--md", type=Path, help="where to write the markdown table")
    parser.add_argument("--timeout", type=float, help="seconds allowed per workload process")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="run nothing: re-render the markdown of a saved JSON file",
    )
    args = parser.parse_args(argv)
    args.md_given = args.md is not None

    default_engines = "kit,futures" if args.short else ",".join(engines.ALL_ENGINES)
    args.engines = _choices(args.engines or default_engines, engines.ALL_ENGINES, parser)
    args.workloads = _choices(args.workloads or ",".join(WORKLOADS), WORKLOADS, parser)
    if args.reps is not None and args.reps < 1:
        parser.error("--reps must be at least 1")
    if args.timeout is None:
        args.timeout = 20.0 if args.short else 300.0
    stem = "latest-short" if args.short else "latest"
    args.json = args.json or RESULTS / f"{stem}.json"
    args.md = args.md or args.json.with_suffix(".md")
    return args


def _choices(text, allowed, parser):
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in allowed]
    if bad:
        parser.error(f"unknown: {', '.join(bad)} (choose from {', '.join(allowed)})")
    return list(dict.fromkeys(names))


def kit_revision():
    """ "git abc1234" (plus "+dirty" if kit/ has uncommitted changes), or ""."""

    def git(*args):
        return subprocess.run(
            ["git", "-C", str(REPO), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()

    try:
        rev = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "kit")
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"git {rev}{'+dirty' if dirty else ''}" if rev else ""


def run_all(args):
    """Probe the engines, run every workload; returns the raw results."""
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    notes = []

    versions = {}
    available = []
    for name in args.engines:
        version, reason = probe(name, min(args.timeout, 60.0))
        if version is None:
            log(f"[{name}] skipped: {reason}")
            notes.append(f"{name} skipped: {reason}")
            versions[name] = None
            continue
        revision = kit_revision() if name == "kit" else ""
        if revision:
            version = f"{version} ({revision})"
        versions[name] = version
        available.append(name)
        log(f"[{name}] {version}")

    reps = {w: reps_for(w, args) for w in args.workloads}
    records = []
    timeouts = dict.fromkeys(available, 0)
    for workload in args.workloads:
        for name in available:
            reason = supported(name, workload)
            if reason:
                records.append(
                    {
                        "engine": name,
                        "workload": workload,
                        "status": "n/a",
                        "error": reason,
                    }
                )
    for rep in range(max(reps.values())):
        for workload in args.workloads:
            if rep >= reps[workload]:
                continue
            for name in available:
                if supported(name, workload):
                    continue
                label = f"[{name}] {workload} rep {rep + 1}/{reps[workload]}"
                if timeouts[name] >= MAX_TIMEOUTS:
                    records.append(
                        {
                            "engine": name,
                            "workload": workload,
                            "rep": rep,
                            "status": "skipped",
                            "error": "engine timed out repeatedly",
                        }
                    )
                    continue
                record = measure(name, workload, rep, args.short, args.timeout)
                records.append(record)
                if record.get("timed_out"):
                    timeouts[name] += 1
                log(f"{label}: {describe(record)}")
                if record.get("left_behind"):
                    log(f"{label}: killed {len(record['left_behind'])} leftover process(es)")

    finished = datetime.datetime.now(datetime.timezone.utc)
    return {
        "started": started.isoformat(),
        "finished": finished.isoformat(),
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg": {"start": load_before, "end": os.getloadavg()},
        "short": args.short,
        "sizes": params(args.short),
        "reps": reps,
        "workloads": args.workloads,
        "engines": {n: {"version": versions[n], "available": n in available} for n in args.engines},
        "summary": report.summarize(records, available, args.workloads),
        "notes": notes + failure_notes(records),
        "runs": records,
    }


def render(raw):
    """The markdown report for raw results (from ``run_all`` or a JSON file)."""
    available = [n for n, e in raw["engines"].items() if e["available"]]
    table = report.summarize(raw["runs"], available, raw["workloads"])
    started = datetime.datetime.fromisoformat(raw["started"])
    load = raw["loadavg"]
    header = [
        f"# kit benchmark ({'short smoke run' if raw['short'] else 'full run'})",
        "",
        (
            f"{started:%Y-%m-%d %H:%M} UTC · host {raw['host']} · {raw['cpus']} CPUs · "
            f"Python {raw['python']} · "
            + " · ".join(f"{n} {raw['engines'][n]['version']}" for n in available)
        ),
        "",
        "Medians over " + _reps_text(raw["reps"]) + "; every run is a fresh Python process. "
        f"Load average {load['start'][0]:.2f} at start, {load['end'][0]:.2f} at the end. "
        f"Sizes: {json.dumps(raw['sizes'])}.",
    ]
    return report.markdown(table, available, header, raw["notes"])


def main(argv=None):
    args = parse_args(argv)
    if args.render:
        raw = json.loads(args.render.read_text())
        md = args.md if args.md_given else args.render.with_suffix(".md")
    else:
        raw = run_all(args)
        md = args.md
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(raw, indent=1) + "\n")
    text = render(raw)
    print(text)
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(text)
    log(f"wrote {md}" + ("" if args.render else f" and {args.json}"))
    bad = [r for r in raw["runs"] if r["status"] in ("error", "timeout", "skipped")]
    return 1 if bad else 0


def _reps_text(reps):
    counts = sorted(set(reps.values()))
    if len(counts) == 1:
        return f"{counts[0]} repetition(s)"
    most = [w for w, n in reps.items() if n == counts[-1]]
    return f"{counts[0]} repetitions ({counts[-1]} for {', '.join(most)})"


def failure_notes(records):
    """One note per (engine, workload, problem), for the report."""
    notes, seen = [], set()
    for rec in records:
        where = f"{rec['engine']} {rec['workload']}"
        problems = []
        if rec["status"] in ("error", "timeout", "skipped"):
            problems.append(f"{rec['status']}: {rec.get('error', '')}")
        elif rec["status"] == "n/a":
            problems.append(f"n/a ({rec.get('error', '')})")
        elif rec.get("timed_out"):
            problems.append(rec.get("error", "timed out"))
        if rec.get("shutdown_error"):
            problems.append(f"shutdown failed: {rec['shutdown_error']}")
        if rec.get("left_behind"):
            problems.append(f"left {len(rec['left_behind'])} process(es) behind (killed)")
        for problem in problems:
            if (where, problem) not in seen:
                seen.add((where, problem))
                notes.append(f"{where}: {problem}")
    return notes


if __name__ == "__main__":
    sys.exit(main())
