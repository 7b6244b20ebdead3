"""Ray's own test files, unmodified, on kit (through the ``ray`` alias) and on real Ray.

    python scripts/ray_tests.py            every selected file, on both; writes
                                           benchmarks/results/ray_tests.md
    python scripts/ray_tests.py --short    a few quick tests, on kit only (the test suite's)
    python scripts/ray_tests.py --fetch-from GITDIR   copy the files from a git mirror

Ray's test files are not in its wheel and are not kit's to copy into this repository, so
they are read from a folder (``--tests-dir``, ``$KIT_RAY_TESTS``, default
``~/.cache/kit-ray-tests``); ``FILES`` names each one's origin and its SHA-256, checked
before a run (a file that differs is refused: the comparison would not be the one
documented). Each engine runs each file in its own pytest process, with Ray's fixtures
from ``scripts/ray_fixtures.py`` (``ray_start_regular``, ``shutdown_only``,
``ray_start_cluster``...): ``python -m kit.ray -m pytest`` for kit, ``python -m pytest``
for Ray. Results come from pytest's JUnit XML: per file, passed / failed / skipped, and
each failure's first line; where the difference is known, ``KNOWN`` says what it is.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_DIR = os.environ.get("KIT_RAY_TESTS") or os.path.expanduser("~/.cache/kit-ray-tests")
OUT = os.path.join(ROOT, "benchmarks", "results", "ray_tests.md")

# A fork of ray-project/ray whose snapshot this machine could fetch (Oct 2024); these
# files import nothing that Ray 2.60 lacks.
MIRROR = ("rynewang/ray", "c3ef5c28e786a909689ebc630da885ac73579f67")
# file -> (origin, sha256). Chosen for the core API: tasks, get/wait/put, options,
# cancel, actors, handles, named and detached actors, get_if_exists, kill, ActorPool,
# Queue, the joblib backend. Ray's other core files of that snapshot (test_basic*, test_actor.py,
# test_failure*.py...) import SignalActor from ray._private.test_utils, which Ray 2.60 no
# longer has: they fail on Ray itself, so they are not used; test_cancel.py is a 2025
# version of ray-project/ray's (it imports ray._common.test_utils, as 2.60 needs).
FILES = {
    "test_cancel.py": (
        "ray-project/ray, python/ray/tests/test_cancel.py, 2025 (after ray._common)",
        "2efc5f3a17adb0e4b5e3aff23260c37fc4efc5672c640e7ba29dafe16a3d403b",
    ),
    "test_get_or_create_actor.py": (
        f"{MIRROR[0]}@{MIRROR[1][:8]}",
        "84ed118bae9ad868a8f07969969ad71fa17de0555e76e73b6147f3fbc32fb528",
    ),
    "test_actor_lifetime.py": (
        f"{MIRROR[0]}@{MIRROR[1][:8]}",
        "7b6ea309b41afcda97a23409039ec6aa80e9a408414d90c5b648d95ee7ee4503",
    ),
    "test_actor_pool.py": (
        f"{MIRROR[0]}@{MIRROR[1][:8]}",
        "2f85faef9a5965eb9e208a13a317153aa81ec93284e8ee1798d79a7d4061c004",
    ),
    "test_queue.py": (
        f"{MIRROR[0]}@{MIRROR[1][:8]}",
        "c81e71545436d02b6b4a164877848ef1bc24d3244850c4516e11ea5218dfae76",
    ),
    "test_joblib.py": (
        f"{MIRROR[0]}@{MIRROR[1][:8]}",
        "39df520fb3a6ad52c3e73d07c24da7d37955f3d0550a1000ffcd863b443750de",
    ),
    "test_args.py": (
        f"{MIRROR[0]}@{MIRROR[1][:8]}",
        "f971b1fb9a0a1cd45a6cdf5e4626aa8e63b72386d55aa032dbb24459da41c450",
    ),
}
SHORT = [
    "test_get_or_create_actor.py::test_simple",
    "test_actor_pool.py::test_get_next",
    "test_actor_pool.py::test_push",
    "test_cancel.py::test_cancel_chain[False]",
    "test_queue.py::test_simple_usage",
]
# Why kit fails a test that Ray passes, where the difference is known (shown in the report).
KNOWN = {
    "test_is_canceled_with_keyboard_interrupt": (
        "a running task cancelled on the head's path is failed at once; Ray waits for "
        "its outcome (the task may catch the KeyboardInterrupt and return a value)"
    ),
    "test_recursive_cancel_actor_task": (
        "the cancelled task ends with kit's TaskCancelledError; the test wants the "
        "RayTaskError of the TaskCancelledError its get raised (Ray 2.60 fails it too)"
    ),
    "test_cancel_chain": (
        "rarely (about 1 run in 13), a direct task sent while another blocks in get is "
        "queued on the same leased worker"
    ),
}
ENGINES = {
    "kit": [sys.executable, "-m", "kit.ray", "-m", "pytest"],
    "ray": [sys.executable, "-m", "pytest"],
}


def sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def check_files(folder, names) -> list:
    """The files' problems (missing, or not the documented content), one line each."""
    problems = []
    for name in names:
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            problems.append(f"{path} is missing ({FILES[name][0]})")
            continue
        want = FILES[name][1]
        if want and sha256(path) != want:
            problems.append(f"{path} is not the documented version ({FILES[name][0]})")
    return problems


def short_missing(folder=DEFAULT_DIR) -> str | None:
    """Why ``--short`` cannot run here (Ray's test files are not in ``folder``), or None."""
    problems = check_files(folder, sorted({t.split("::")[0] for t in SHORT}))
    if problems:
        return (
            "Ray's test files are not on this machine (they are not kit's to ship): "
            + "; ".join(problems)
            + "; see scripts/ray_tests.py --fetch-from"
        )
    return None


def fetch_from(gitdir, folder) -> None:
    """Copy the mirror's files (``MIRROR``) out of a git directory into ``folder``."""
    os.makedirs(folder, mode=0o700, exist_ok=True)
    for name, (origin, _) in FILES.items():
        if not origin.startswith(MIRROR[0]):
            continue
        blob = subprocess.run(
            ["git", "--git-dir", gitdir, "show", f"{MIRROR[1]}:python/ray/tests/{name}"],
            capture_output=True,
            check=True,
        ).stdout
        with open(os.path.join(folder, name), "wb") as f:
            f.write(blob)
        print(f"{name}: {len(blob)} bytes from {origin}")


def run_pytest(engine, folder, targets, timeout) -> list:
    """Run pytest on ``targets`` under ``engine``; return ``[(test id, outcome, reason)]``."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = os.path.join(tmp, "junit.xml")
        cmd = ENGINES[engine] + [
            "-p", "ray_fixtures", "-p", "no:cacheprovider", "-q", "--rootdir", folder,
            f"--timeout={timeout}", f"--junitxml={xml}", *targets,
        ]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, ROOT]))
        env.pop("KIT_RAY_ALIAS", None)
        subprocess.run(
            cmd, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=timeout * 60, check=False,
        )  # fmt: skip
        if not os.path.exists(xml):
            return [(t, "error", "pytest wrote no report") for t in targets]
        return parse_junit(xml)


_ANSI = re.compile(r"(\x1b|#x1B)\[[0-9;]*m")  # colours in Ray's messages


def parse_junit(path) -> list:
    out = []
    for case in ET.parse(path).iter("testcase"):
        name = f"{case.get('classname', '').split('.')[-1]}.py::{case.get('name')}"
        outcome, reason = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = "skipped" if child.tag == "skipped" else "failed"
                text = child.get("message") or (child.text or "")
                text = _ANSI.sub("", text).strip()
                reason = text.splitlines()[0][:160] if text else child.tag
                break
        out.append((name, outcome, reason))
    return out


def counts(results) -> dict:
    c = {"passed": 0, "failed": 0, "skipped": 0}
    for _, outcome, _ in results:
        c[outcome] += 1
    return c


def known(test_id) -> str | None:
    return KNOWN.get(test_id.split("::")[-1].split("[")[0])


def report(results, folder) -> str:
    import importlib.metadata

    git = subprocess.run(
        ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    try:
        ray_version = importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        ray_version = "not installed"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Ray's own test files on kit and on Ray",
        "",
        f"`python scripts/ray_tests.py`, {now}, kit git {git}, ray {ray_version}, "
        f"{os.cpu_count()} CPUs. Each file unmodified, in its own pytest process per engine, "
        "with Ray's fixtures from `scripts/ray_fixtures.py`; kit through "
        "`python -m kit.ray -m pytest`.",
        "",
        "| file | origin | kit passed | kit failed | kit skipped | ray passed | ray failed "
        "| ray skipped |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    total = {e: {"passed": 0, "failed": 0, "skipped": 0} for e in ENGINES}
    for name in FILES:
        row = [name, FILES[name][0]]
        for engine in ENGINES:
            c = counts(results.get((engine, name), []))
            for k in c:
                total[engine][k] += c[k]
            row += [str(c["passed"]), str(c["failed"]), str(c["skipped"])]
        lines.append("| " + " | ".join(row) + " |")
    t = total
    lines.append(
        f"| **all** | | **{t['kit']['passed']}** | {t['kit']['failed']} | {t['kit']['skipped']} "
        f"| **{t['ray']['passed']}** | {t['ray']['failed']} | {t['ray']['skipped']} |"
    )
    for engine in ENGINES:
        lines += ["", f"## Failures on {engine}", ""]
        failed = [
            (name, tid, reason)
            for (e, name), res in results.items()
            if e == engine
            for tid, outcome, reason in res
            if outcome == "failed"
        ]
        if not failed:
            lines.append("None.")
        for _, tid, reason in failed:
            why = known(tid)
            tag = f" (known difference: {why})" if why and engine == "kit" else ""
            lines.append(f"- `{tid}`{tag}: {reason}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", action="store_true", help="a few quick tests, kit only")
    ap.add_argument("--tests-dir", default=DEFAULT_DIR)
    ap.add_argument("--engine", choices=["kit", "ray", "both"], default="both")
    ap.add_argument("--timeout", type=int, default=180, help="seconds per test")
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--fetch-from", metavar="GITDIR", help="copy the mirror's files first")
    args = ap.parse_args(argv)
    if args.fetch_from:
        fetch_from(args.fetch_from, args.tests_dir)
    names = sorted({t.split("::")[0] for t in SHORT}) if args.short else list(FILES)
    problems = check_files(args.tests_dir, names)
    if problems:
        print("cannot run Ray's tests:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    if args.short:
        res = run_pytest("kit", args.tests_dir, SHORT, args.timeout)
        for tid, outcome, reason in res:
            print(f"{outcome:8} {tid} {reason}")
        c = counts(res)
        print(f"{c['passed']} passed, {c['failed']} failed")
        return 0 if c["failed"] == 0 and c["passed"] >= len(SHORT) else 1
    engines = ["kit", "ray"] if args.engine == "both" else [args.engine]
    results = {}
    for engine in engines:
        for name in names:
            results[(engine, name)] = res = run_pytest(engine, args.tests_dir, [name], args.timeout)
            c = counts(res)
            print(f"{engine:4} {name}: {c['passed']} passed, {c['failed']} failed, "
                  f"{c['skipped']} skipped", flush=True)  # fmt: skip
    text = report(results, args.tests_dir)
    with open(args.out, "w") as f:
        f.write(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
