"""The tutorials' one source: ``notebooks/NN-name.py``, tested as notebooks and as programs.

Each lesson is written as a jupytext percent-format file; ``scripts/sync_notebooks.py``
writes the ``.ipynb`` beside it, which users open and ``tests/test_notebooks.py``
executes in a kernel. Here:

* every ``.ipynb`` is exactly what its source writes (what ``sync_notebooks.py --check``
  checks), byte for byte: no outputs, the same cells, tags and ids;
* a lesson without magics is a plain Python program too, and in Ray's spelling it runs
  with ``import kit as ray``: lesson 4's source, ``kit`` renamed ``ray`` (inside its
  tasks too), runs as a script and prints the results the lesson promises.
"""

import glob
import importlib.util
import io
import os
import re
import subprocess
import sys
import tokenize

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, "notebooks")
SOURCES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(NOTEBOOKS, "*.py")))
MAGIC = re.compile(r"^# %%?[A-Za-z]", re.M)  # a magic, commented in the source


def _sync():
    """scripts/sync_notebooks.py as a module (it needs jupytext, in the test extra)."""
    pytest.importorskip("jupytext")
    path = os.path.join(ROOT, "scripts", "sync_notebooks.py")
    spec = importlib.util.spec_from_file_location("sync_notebooks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.fast
@pytest.mark.parametrize("source", SOURCES)
def test_notebook_is_written_from_its_source(source):
    sync = _sync()
    notebook = source[: -len(".py")] + ".ipynb"
    try:
        with open(os.path.join(NOTEBOOKS, notebook), encoding="utf-8") as f:
            written = f.read()
    except FileNotFoundError:
        written = None
    assert written == sync.render(os.path.join(NOTEBOOKS, source)), (
        f"notebooks/{notebook} is not what notebooks/{source} writes: run {sync.COMMAND}"
    )


@pytest.mark.fast
def test_every_notebook_has_a_source():
    notebooks = sorted(glob.glob(os.path.join(NOTEBOOKS, "*.ipynb")))
    assert SOURCES, "no lesson sources in notebooks/"
    orphans = [
        os.path.basename(p) for p in notebooks if os.path.basename(p)[:-6] + ".py" not in SOURCES
    ]
    assert not orphans, f"notebooks without a notebooks/NN-name.py source: {orphans}"


def as_ray(source):
    """``source`` with the module ``kit`` imported and used as ``ray``.

    Names are renamed by token, so comments and strings keep their text; ``import kit``
    becomes ``import kit as ray``.
    """
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    lines = source.splitlines(keepends=True)
    edits = []
    for i, tok in enumerate(tokens):
        if tok.type != tokenize.NAME or tok.string != "kit":
            continue
        before = tokens[i - 1].string
        assert before != "from", "from kit import ...: not handled here"
        edits.append((tok.start, "kit as ray" if before == "import" else "ray"))
    for (row, col), text in reversed(edits):
        line = lines[row - 1]
        lines[row - 1] = line[:col] + text + line[col + len("kit") :]
    return "".join(lines)


@pytest.mark.fast
def test_as_ray_renames_code_only():
    src = 'import kit\n# kit.get\nkit.init()\nx = "kit"\n'
    assert as_ray(src) == 'import kit as ray\n# kit.get\nray.init()\nx = "kit"\n'


@pytest.mark.cluster
def test_lesson_runs_as_a_ray_program(tmp_path):
    with open(os.path.join(NOTEBOOKS, "04-actors.py"), encoding="utf-8") as f:
        source = f.read()
    assert not MAGIC.search(source), "a lesson with magics is not a plain program"
    program = tmp_path / "actors_as_ray.py"
    program.write_text(as_ray(source), encoding="utf-8")
    imports = re.findall(r"^[ \t]*(?:import|from) .*\bray\b.*$", program.read_text(), re.M)
    assert imports == ["import kit as ray"], imports  # never the real Ray
    assert "ray.get(stats.add.remote(i * i))" in program.read_text()  # inside a task
    out = subprocess.run(
        [sys.executable, str(program)], capture_output=True, text=True, timeout=100, cwd=tmp_path
    )
    assert out.returncode == 0, out.stdout + out.stderr
    for line in ("[1, 2, 3, 4, 5]", "[3, 3, 3, 3]", "messages received: 300", "mean: 28.5"):
        assert line in out.stdout.splitlines(), f"no {line!r} in:\n{out.stdout}{out.stderr}"
