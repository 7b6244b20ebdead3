"""The tutorial programs users paste first, run as written with `import kit as ray`."""

import os
import subprocess
import sys

import pytest

HERE = os.path.join(os.path.dirname(__file__), "tutorials")
PROGRAMS = sorted(f for f in os.listdir(HERE) if f.endswith(".py"))


@pytest.mark.parametrize("program", PROGRAMS)
def test_tutorial_program(program):
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, program)], capture_output=True, text=True, timeout=100
    )
    assert out.returncode == 0, f"{program} failed:\n{out.stdout}\n{out.stderr}"
