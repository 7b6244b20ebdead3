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
