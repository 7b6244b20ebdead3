"""The benchmark harness in its short mode: every workload runs on kit (and futures)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.timeout(240)
def test_benchmarks_short(tmp_path):
    out_json = tmp_path / "short.json"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--short",
                        "--json", str(out_json), "--md", str(tmp_path / "short.md")],
                       capture_output=True, text=True, timeout=220)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    data = json.loads(out_json.read_text())
    text = json.dumps(data)
    assert "kit" in text and "tasks_10k" in text and "put_100mib" in text


@pytest.mark.timeout(120)
def test_dask_on_kit_short(tmp_path):
    md = tmp_path / "dask_on_kit.md"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "dask_on_kit.py"),
                        "--short", "--md", str(md)], capture_output=True, text=True,
                       timeout=100)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    text = md.read_text()
    for name in ("threads", "kit", "kit vs threads", "array_reduction", "dataframe_groupby",
                 "delayed_tree"):
        assert name in text
    assert "error" not in text and "Notes:" not in text


@pytest.mark.timeout(60)
def test_cells_short(tmp_path):
    """benchmarks/cells.py --short: the same notebook cells timed on kit and Dask."""
    pytest.importorskip("distributed")
    md = tmp_path / "cells.md"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "cells.py"),
                        "--short", "--md", str(md)], capture_output=True, text=True,
                       timeout=50)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    text = md.read_text()
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()
            if line.startswith("| ")}
    for name in ("connect", "first_cell", "roundtrip", "map_100", "map_sleep", "ship_array", "nodes"):
        assert name in rows and rows[name].count(" ms") + rows[name].count(" s ") >= 2, text
        assert rows[name].rstrip(" |").endswith("x"), rows[name]     # kit / dask
    assert "kit / dask" in text and "error" not in text and "Notes:" not in text
