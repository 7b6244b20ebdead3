"""The benchmark scripts in their short mode: every workload runs on kit and its peer."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def short_run(script, md, timeout, *args):
    """Run ``benchmarks/SCRIPT --short --md MD``; it must succeed; returns the markdown."""
    r = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "benchmarks", script),
            "--short",
            "--md",
            str(md),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return md.read_text()


@pytest.mark.cluster  # --short runs kit and concurrent.futures only
@pytest.mark.timeout(240)
def test_benchmarks_short(tmp_path):
    out_json = tmp_path / "short.json"
    short_run("run.py", tmp_path / "short.md", 220, "--json", str(out_json))
    data = json.loads(out_json.read_text())
    text = json.dumps(data)
    assert "kit" in text and "tasks_10k" in text and "put_100mib" in text


@pytest.mark.engines
@pytest.mark.timeout(120)
def test_dask_on_kit_short(tmp_path):
    text = short_run("dask_on_kit.py", tmp_path / "dask_on_kit.md", 100)
    for name in (
        "threads",
        "kit",
        "kit vs threads",
        "array_reduction",
        "dataframe_groupby",
        "delayed_tree",
    ):
        assert name in text
    assert "error" not in text and "Notes:" not in text


@pytest.mark.engines
@pytest.mark.timeout(60)
def test_cells_short(tmp_path):
    """benchmarks/cells.py --short: the same notebook cells timed on kit and Dask."""
    pytest.importorskip("distributed")
    text = short_run("cells.py", tmp_path / "cells.md", 50)
    rows = {
        line.split(" | ")[0].strip("| "): line
        for line in text.splitlines()
        if line.startswith("| ")
    }
    for name in (
        "connect",
        "first_cell",
        "roundtrip",
        "map_100",
        "map_sleep",
        "ship_array",
        "nodes",
    ):
        assert name in rows and rows[name].count(" ms") + rows[name].count(" s ") >= 2, text
        assert rows[name].rstrip(" |").endswith("x"), rows[name]  # kit / dask
    assert "kit / dask" in text and "error" not in text and "Notes:" not in text


@pytest.mark.cluster
@pytest.mark.timeout(240)
def test_faces_benchmark_short(tmp_path):
    """benchmarks/faces.py --short: every face runs against its default."""
    text = short_run("faces.py", tmp_path / "faces-short.md", 220)
    for face in ("joblib", "executor", "pool", "asyncio"):
        assert f"| {face} |" in text
    assert text.count("x |") == 8  # 2 workloads x 4 faces, each with a ratio


@pytest.mark.cluster  # --short runs kit only
@pytest.mark.timeout(120)
def test_scale_short(tmp_path):
    """benchmarks/scale.py --short: nodes, a queue and actors at tiny sizes, every one ok."""
    out_json = tmp_path / "scale.json"
    text = short_run("scale.py", tmp_path / "scale.md", 100, "--json", str(out_json))
    runs = json.loads(out_json.read_text())["runs"]
    assert [(r["workload"], r["status"]) for r in runs] == [
        (name, "ok")
        for name in ("roundtrip", "nodes_1", "nodes_4", "nodes_8", "queued_3000", "actors_20")
    ], runs
    nodes_4 = next(r for r in runs if r["workload"] == "nodes_4")
    assert nodes_4["processes"]["head"] == 1 and nodes_4["processes"]["daemons"] == 8, nodes_4
    for row in (
        "| `roundtrip` | median |",
        "head CPU per task",
        "driver peak RSS",
        "PSS per actor",
    ):
        assert row in text, text
    assert "Notes:" not in text


@pytest.mark.cluster
@pytest.mark.timeout(120)
def test_objects_short(tmp_path):
    """benchmarks/objects.py --short: put bandwidth and a put read by 4 fresh workers."""
    text = short_run("objects.py", tmp_path / "objects-short.md", 100)
    for row in ("put_4_fresh_readers", "first_put", "repeated_put"):
        assert f"| {row} | " in text and (" s |" in text or " GB/s |" in text), text
    assert "error" not in text and "Notes:" not in text, text


@pytest.mark.cluster  # --short: the dashboard off, then read by a websocket client
@pytest.mark.timeout(120)
def test_dashboard_benchmark_short(tmp_path):
    text = short_run("dashboard.py", tmp_path / "dashboard.md", 100)
    for row in ("| direct | off |", "| direct | socket |", "| head | off |", "| head | socket |"):
        assert row in text
    records = json.loads((tmp_path / "dashboard.json").read_text())
    assert all(r["frames"] >= 2 for r in records if r["mode"] == "socket")


@pytest.mark.cluster
@pytest.mark.timeout(200)
def test_runtime_env_short(tmp_path):
    text = short_run("runtime_env.py", tmp_path / "runtime_env.md", 180)
    for row in ("base first", "env_vars first", "working_dir first", "pip first",
                "pip new_proc", "local_module first after an edit", "no-op tasks/s"):  # fmt: skip
        assert f"| {row}" in text, row


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_queue_memory_short(tmp_path):
    """Each path's bytes per queued task are measured and attributed to lines."""
    text = short_run("queue_memory.py", tmp_path / "qm.md", 160)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    figures = [int(row.rsplit("|", 2)[1].strip().replace(",", "")) for row in rows[1:]]
    assert len(figures) == 3 and all(f > 0 for f in figures), text
    assert "Entry(" in text and "Task(" in text  # the records named by their lines
