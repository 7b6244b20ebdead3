"""Write the tutorial notebooks in ``notebooks/`` from their sources beside them.

    python scripts/sync_notebooks.py            # write each NN-name.ipynb from NN-name.py
    python scripts/sync_notebooks.py --check    # exit 1, naming them, if any is out of date

A lesson's source is ``notebooks/NN-name.py`` in jupytext's percent format: ``# %%``
starts a code cell, ``# %% [markdown]`` a markdown cell (its lines commented with ``# ``),
``# %% tags=["raises-exception"]`` a code cell with tags. Magics are commented in the
source (``# %%remote -o total``) and uncommented in the notebook. Edit the ``.py``, then
run this script; the ``.ipynb`` it writes has no outputs and stable cell ids (``NN-ii``,
the cell's position), so writing it again gives no diff. The tests run the notebooks
(``tests/test_notebooks.py``) and run ``--check`` (``tests/test_tutorials.py``).

A lesson drafted in JupyterLab becomes a source with (how the sources were first made)::

    jupytext --to py:percent --opt notebook_metadata_filter=kernelspec,-all \
        --opt cell_metadata_filter=tags,-all notebooks/NN-name.ipynb
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import nbformat

try:
    import jupytext
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit('sync_notebooks: needs jupytext (python -m pip install -e ".[test]")')

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")
COMMAND = "python scripts/sync_notebooks.py"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def build(source):
    """The notebook a percent-format source describes (no outputs, stable ids).

    Args:
        source: path of ``notebooks/NN-name.py``.

    Returns:
        A validated ``nbformat`` v4 notebook; its kernelspec is the source's header's
        (``python3`` when the header has none).
    """
    nb = jupytext.read(source, fmt="py:percent")
    prefix = os.path.basename(source)[:2]
    for i, cell in enumerate(nb.cells):
        cell.id = f"{prefix}-{i:02d}"
    meta = {k: v for k, v in nb.metadata.items() if k != "jupytext"}
    meta.setdefault("kernelspec", KERNELSPEC)
    meta.setdefault("language_info", {"name": "python"})
    nb.metadata = nbformat.from_dict(meta)
    nbformat.validate(nb)
    return nb


def render(source):
    """The text of the ``.ipynb`` written from ``source``, as ``nbformat.write`` writes it."""
    text = nbformat.writes(build(source))
    return text if text.endswith("\n") else text + "\n"


def _rel(path):
    return os.path.relpath(path, os.path.dirname(NOTEBOOKS))


def _read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a notebook is stale"
    )
    args = parser.parse_args(argv)

    sources = sorted(glob.glob(os.path.join(NOTEBOOKS, "*.py")))
    problems = []
    for source in sources:
        target = source[: -len(".py")] + ".ipynb"
        text = render(source)
        if _read(target) == text:
            continue
        if args.check:
            what = "is missing" if _read(target) is None else "differs from what"
            problems.append(f"{_rel(target)} {what} {_rel(source)} produces")
        else:
            with open(target, "w", encoding="utf-8") as f:
                f.write(text)
            print("wrote", _rel(target))
    for target in sorted(glob.glob(os.path.join(NOTEBOOKS, "*.ipynb"))):
        if target[: -len(".ipynb")] + ".py" not in sources:
            problems.append(f"{_rel(target)} has no source {_rel(target)[: -len('.ipynb')]}.py")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        if args.check:
            print(f"edit the .py sources, then run: {COMMAND}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
