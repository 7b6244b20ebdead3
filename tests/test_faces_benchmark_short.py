"""benchmarks/faces.py in its short mode: every face runs against its default."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.timeout(240)
def test_faces_benchmark_short(tmp_path):
    md = tmp_path / "faces-short.md"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "faces.py"), "--short",
                        "--md", str(md)], capture_output=True, text=True, timeout=220)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    text = md.read_text()
    for face in ("joblib", "executor", "pool", "asyncio"):
        assert f"| {face} |" in text
    assert text.count("x |") == 8  # 2 workloads x 4 faces, each with a ratio
