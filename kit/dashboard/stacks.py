"""A worker's current Python stack, read from outside with py-spy (as Ray's dashboard does).

    page ── "stack" (worker id) ──▶ server ──▶ py-spy dump --pid PID ──▶ text

``py-spy dump`` reads the stacks of every thread of a running CPython process
without stopping it for long and without its cooperation, so a worker stuck in a
task can still be looked at. It needs permission to trace the process (same user
and ptrace allowed, or root); when it is refused, the answer says so. Only
workers on the dashboard's own machine can be read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

TIMEOUT = 10.0  # seconds a dump may take


def py_spy() -> str | None:
    """The py-spy program: next to this Python first, then on PATH; None if absent.

    Example:
        >>> py_spy() is None or os.path.basename(py_spy()).startswith("py-spy")
        True
    """
    here = os.path.join(os.path.dirname(sys.executable), "py-spy")
    if os.access(here, os.X_OK):
        return here
    return shutil.which("py-spy")


def dump(pid: int) -> str:
    """The Python stacks of process ``pid`` as text, or a sentence saying why not.

    Example:
        >>> "MainThread" in dump(os.getpid()) or "py-spy" in dump(os.getpid())  # doctest: +SKIP
        True
    """
    prog = py_spy()
    if prog is None:
        return "py-spy is not installed here: pip install py-spy (a dependency of kit)"
    try:
        out = subprocess.run(
            [prog, "dump", "--pid", str(int(pid))],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return f"py-spy did not answer within {TIMEOUT:.0f} s; try again"
    if out.returncode != 0:
        why = (out.stderr or out.stdout).strip().splitlines()
        return (
            f"py-spy could not read process {pid}: {why[-1] if why else out.returncode} "
            "(it needs permission to trace the worker: the same user with ptrace allowed, "
            "or root)"
        )
    return out.stdout
