"""The layers point one way: the runtime (kit) never imports the notebook layer.

magics, widgets ──▶ backends ──▶ kit (public names only)
kit ──▶ nothing of the above (the notebook layer registers with kit.frontend)
"""

import ast
import os
import subprocess
import sys
import textwrap

import pytest

import kit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_LAYER = {"widgets", "magics", "backends"}


def modules(package):
    folder = os.path.join(ROOT, package)
    for dirpath, _, files in os.walk(folder):
        for f in sorted(files):
            if f.endswith(".py"):
                yield os.path.relpath(os.path.join(dirpath, f), ROOT)


def imported(path):
    """``(module name, line)`` of every absolute import in ``path``, and of string
    arguments to ``importlib.import_module`` / ``__import__``."""
    with open(os.path.join(ROOT, path)) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno
            for alias in node.names:
                yield f"{node.module}.{alias.name}", node.lineno
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value, node.lineno


@pytest.mark.fast
@pytest.mark.parametrize("path", list(modules("kit")))
def test_the_runtime_never_imports_the_notebook_layer(path):
    bad = [(m, line) for m, line in imported(path) if m.split(".")[0] in NOTEBOOK_LAYER]
    assert not bad, f"{path} imports the notebook layer: {bad}; register a kit.frontend hook"


PUBLIC = set(kit.__all__) | {"frontend"}


@pytest.mark.fast
@pytest.mark.parametrize("path", list(modules("magics")) + list(modules("widgets")))
def test_the_notebook_layer_uses_only_kits_public_names(path):
    bad = []
    for m, line in imported(path):
        parts = m.split(".")
        if parts[0] == "kit" and len(parts) > 1 and parts[1] not in PUBLIC:
            bad.append((m, line))
    assert not bad, f"{path} reaches into kit's private modules: {bad}"


@pytest.mark.fast
def test_the_checker_sees_an_import_of_the_notebook_layer(tmp_path):
    # The check above must be able to fail: an import hidden in a function counts.
    src = "def f():\n    from widgets import progress\n    import importlib\n"
    src += "    importlib.import_module('magics')\n"
    (tmp_path / "m.py").write_text(src)
    found = {m for m, _ in imported(str(tmp_path / "m.py"))}
    assert {"widgets", "magics"} <= found


@pytest.mark.cluster
def test_a_kit_program_loads_no_notebook_module():
    code = textwrap.dedent(
        """
        import sys
        import kit
        with kit.init(num_cpus=1):
            @kit.remote
            def f(x):
                return x + 1
            assert kit.get(f.remote(1)) == 2
            assert repr(kit.init(ignore_reinit_error=True)).startswith("ClusterContext(")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in
                        ("widgets", "magics", "backends", "IPython", "ipywidgets"))
        print(loaded)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
