"""The cluster at scale, kit beside Ray: many nodes, a deep queue, many actors, the round trip.

    python benchmarks/scale.py [--short] [--engines kit,ray] [--workloads nodes_10,...]
                               [--json PATH] [--md PATH] [--min-free-gib G]
    python benchmarks/scale.py --render benchmarks/results/scale.json   # the table again

    runner ── run.measure: `scale_workloads.py ENGINE WORKLOAD`, fresh process, timeout ──▶ child
    child: start the engine, measure; progress lines while it works, then the result
    runner: merge each child's lines (the last progress outlives a timeout) ─▶ scale.{json,md}

The workloads (``roundtrip``, ``nodes_N``, ``queued_N``, ``actors_N``), what a
simulated node is and how processes are split into roles are described in
``scale_workloads.py``. kit and Ray take turns within each workload; each runs
once. A bigger size of a workload is skipped for an engine whose smaller size did
not finish. Writes ``benchmarks/results/scale.{json,md}`` (``scale-short.*`` with
``--short``: tiny sizes, kit only, seconds). The exit status is 1 if a kit
workload did not finish or any workload failed with an error.
"""

import argparse
import datetime
import json
import os
import platform
import socket
import sys
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import report  # noqa: E402  (from HERE, put on sys.path above)
import run  # noqa: E402
from scale_workloads import CORES, ENGINES, GIB, METRICS, MIN_FREE_ENV, plans, sizes  # noqa: E402

WORKER = HERE / "scale_workloads.py"

# ---- the runner ------------------------------------------------------------------------


def log(message):
    print(message, file=sys.stderr, flush=True)


def skip_reason(plan, engine, records):
    """Why ``engine`` does not run ``plan``: not planned, or a smaller size did not finish."""
    if plan.timeouts.get(engine) is None:
        return "n/a", plan.why_not or "not run"
    family = {"register": "nodes"}.get(plan.kind, plan.kind)
    for rec in reversed(records):
        if rec["engine"] == engine and rec.get("family") == family:
            if rec["status"] != "ok":
                return "skipped", f"{rec['workload']} did not finish ({rec['status']})"
            break
    return None


def run_all(args):
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    notes, versions, available = [], {}, []
    for name in args.engines:
        version, reason = run.probe(name, 60.0)
        if version is None:
            log(f"[{name}] skipped: {reason}")
            notes.append(f"{name} skipped: {reason}")
        else:
            revision = run.kit_revision() if name == "kit" else ""
            versions[name] = f"{version} ({revision})" if revision else version
            available.append(name)
            log(f"[{name}] {versions[name]}")
    os.environ[MIN_FREE_ENV] = str(args.min_free_gib)  # the children read it
    records = []
    for plan in plans(args.short):
        if plan.name not in args.workloads:
            continue
        family = {"register": "nodes"}.get(plan.kind, plan.kind)
        for name in available:
            skip = skip_reason(plan, name, records)
            if skip:
                status, why = skip
                rec = {"engine": name, "workload": plan.name, "status": status, "error": why}
            else:
                timeout = plan.timeouts[name]
                rec = run.measure(name, plan.name, 0, args.short, timeout, script=WORKER)
                rec["timeout_s"] = timeout
            rec["family"] = family
            records.append(rec)
            log(f"[{name}] {plan.name}: {describe(plan, rec)}")
    finished = datetime.datetime.now(datetime.timezone.utc)
    return {
        "started": started.isoformat(),
        "finished": finished.isoformat(),
        "host": socket.gethostname(),
        "cpus": CORES,
        "memory_gib": psutil.virtual_memory().total / GIB,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg": {"start": load_before, "end": os.getloadavg()},
        "short": args.short,
        "min_free_gib": args.min_free_gib,
        "sizes": sizes(args.short),
        "engines": {n: versions.get(n) for n in args.engines},
        "available": available,
        "workloads": [p.name for p in plans(args.short) if p.name in args.workloads],
        "notes": notes,
        "runs": records,
    }


def fmt_value(value, unit):
    return f"{report.fmt_number(value)} {unit}"


def describe(plan, rec):
    if rec["status"] == "ok":
        name, _, unit, _ = METRICS[plan.kind][0]
        text = fmt_value(rec[name], unit)
    else:
        text = f"{rec['status'].upper()}: {rec.get('error', '')}"
        if rec.get("progress"):
            text += f" (last progress: {rec['progress']})"
    wall = f"  (process {rec['wall_s']:.1f} s)" if "wall_s" in rec else ""
    return text + wall


def what(plan, s):
    """One line of the legend for ``plan``."""
    n = plan.n
    if plan.kind == "roundtrip":
        return (
            f"{s['roundtrip_calls']:,} sequential no-op submit + get on {CORES} slots "
            f"(after {s['roundtrip_warmup']}), median and p90"
        )
    if plan.kind in ("nodes", "register"):
        cpus = max(1, CORES // n)
        text = (
            f"{n} simulated node(s) of {cpus} slot(s): from nothing until all are "
            "registered and the driver connected"
        )
        if plan.kind == "register":
            return text + " (registration only)"
        return text + (
            f"; then {s['tasks']:,} no-op tasks in a loop and one get, and the CPU "
            "of the head and of the control plane during them, per task"
        )
    if plan.kind == "queued":
        return (
            f"{n:,} no-op tasks submitted in batches of {s['batch']:,} on {CORES} slots, "
            "then gotten in batches; peaks sampled every 0.5 s"
        )
    return (
        f"{n:,} actors (num_cpus=0) created in a loop, one call each waited for; memory "
        f"of every process of the run / {n:,}; idle CPU over {s['idle_s']:g} s after"
    )


def render(raw):
    """The markdown report of a run (``run_all``'s dict or its JSON)."""
    available = raw["available"]
    peers = [e for e in available if e != "kit"] if "kit" in available else []
    by = {(r["workload"], r["engine"]): r for r in raw["runs"]}
    s = raw["sizes"]
    started = datetime.datetime.fromisoformat(raw["started"])
    load = raw["loadavg"]
    lines = [
        f"# kit at scale ({'short smoke run' if raw['short'] else 'full run'})",
        "",
        f"{started:%Y-%m-%d %H:%M} UTC · host {raw['host']} · {raw['cpus']} CPUs · "
        f"{raw['memory_gib']:.0f} GiB · Python {raw['python']} · "
        + " · ".join(f"{n} {raw['engines'][n]}" for n in available),
        "",
        "One run of each workload, each in a fresh process with a time limit; "
        f"load average {load['start'][0]:.2f} at start, {load['end'][0]:.2f} at the end. "
        f"Adding nodes or actors stops when the machine's available memory falls "
        f"below {raw['min_free_gib']:g} GiB.",
        "",
        *report.table_head(
            ["workload", "measurement", *available, *[f"kit vs {p}" for p in peers]]
        ),
    ]
    plans_by_name = {p.name: p for p in plans(raw["short"])}
    for workload in raw["workloads"]:
        plan = plans_by_name[workload]
        for i, (key, name, unit, kind) in enumerate(METRICS[plan.kind]):
            row = [f"`{workload}`" if i == 0 else "", name]
            values = {}
            for engine in available:
                rec = by.get((workload, engine))
                if i == 0 and rec is not None and rec["status"] == "partial":
                    row.append(status_text(rec))  # how far it got, not a rate
                elif rec is not None and rec.get(key) is not None and rec["status"] != "error":
                    if rec["status"] == "ok":  # only finished runs are compared
                        values[engine] = rec[key]
                        row.append(fmt_value(rec[key], unit))
                    else:
                        row.append(fmt_value(rec[key], unit) + " (unfinished)")
                elif i == 0:
                    row.append(status_text(rec))
                else:
                    row.append("—")
            for p in peers:
                ok = values.get("kit") is not None and values.get(p)  # 0 for kit is fine
                row.append(f"{report.fmt_ratio(values['kit'] / values[p])}x {kind}" if ok else "—")
            lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "kit vs a peer is kit's value over the peer's: for `x time`, `x memory` and `x cpu` "
        "below 1 means kit is better; for `x throughput` above 1 means kit is better.",
        "",
        "The head is kit's head process and Ray's `gcs_server`; the control plane is the "
        "head plus the node daemons (kit: agents and zygotes; Ray: raylets, their agents, "
        "monitors, dashboard); the driver is the measuring process. CPU per task is the "
        "processes' user + system CPU time during the timed tasks over the number of tasks. "
        "A run that did not finish shows how far it got, and figures it had measured by "
        "then as *unfinished* (not compared).",
        "",
        "Workloads:",
    ]
    lines += [f"- `{w}`: {what(plans_by_name[w], s)}" for w in raw["workloads"]]
    notes = list(raw["notes"]) + run.failure_notes(raw["runs"])
    for rec in raw["runs"]:
        where = f"{rec['engine']} {rec['workload']}"
        if rec["status"] == "partial":
            notes.append(f"{where}: reached {rec['reached']}")
        if rec["status"] in ("timeout", "error") and rec.get("progress"):
            notes.append(f"{where}: last progress: {rec['progress']}")
    if notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def status_text(rec):
    if rec is None:
        return "not run"
    if rec["status"] == "partial":
        return rec["reached"].split(" (")[0]
    if rec["status"] == "timeout":
        return f"did not finish in {rec.get('timeout_s', 0):.0f} s"
    return rec["status"]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="tiny sizes, kit only, seconds")
    parser.add_argument("--engines", help="comma-separated, from " + ",".join(ENGINES))
    parser.add_argument("--workloads", help="comma-separated workload names")
    parser.add_argument("--json", type=Path, help="where to write the raw results")
    parser.add_argument("--md", type=Path, help="where to write the markdown table")
    parser.add_argument(
        "--min-free-gib",
        type=float,
        default=4.0,
        help="stop adding nodes or actors below this much available memory (default 4)",
    )
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="run nothing: re-render a saved JSON file"
    )
    args = parser.parse_args(argv)
    md_given = args.md
    names = [p.name for p in plans(args.short)]
    args.engines = run._choices(
        args.engines or ("kit" if args.short else "kit,ray"), ENGINES, parser
    )
    args.workloads = run._choices(args.workloads or ",".join(names), names, parser)
    stem = "scale-short" if args.short else "scale"
    args.json = args.json or run.RESULTS / f"{stem}.json"
    args.md = md_given or (args.render or args.json).with_suffix(".md")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.render:
        raw = json.loads(args.render.read_text())
    else:
        raw = run_all(args)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(raw, indent=1) + "\n")
    run.write_table(render(raw), args.md, "scale", args.short)
    kit_bad = [r for r in raw["runs"] if r["engine"] == "kit" and r["status"] != "ok"]
    ray_bad = [r for r in raw["runs"] if r["status"] == "error"]
    return 1 if kit_bad or ray_bad else 0


if __name__ == "__main__":
    sys.exit(main())
