"""Print the versions of Python and of the packages kit's tests depend on most.

    python scripts/versions.py

CI prints this after installing, so a run's log says what a fresh environment got.
"""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = (
    "nbcluster",
    "ipython",
    "ipykernel",
    "ipywidgets",
    "pyzmq",
    "cloudpickle",
    "numpy",
    "matplotlib",
    "ray",
    "dask",
    "distributed",
    "jupyterlab",
    "playwright",
    "pytest",
    "hypothesis",
    "ruff",
    "mypy",
)


def versions() -> dict:
    """``{package: version or None}`` for ``PACKAGES`` in this environment.

    Example:
        >>> "pyzmq" in versions()
        True
    """
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


if __name__ == "__main__":
    found = " · ".join(f"{k} {v}" for k, v in versions().items() if v)
    print(f"python {platform.python_version()} · {found}")
