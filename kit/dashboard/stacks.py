"""A worker's current Python stack, read from outside with py-spy (as Ray's dashboard does).

    page ── "stack" (worker id) ──▶ server ── QUERY stack ──▶ head ── NODE_CMD ──▶
    the worker's node agent: Dump(pid) (py-spy dump --pid PID, in the background) ──▶
    NODE_EVENT stack ──▶ head ──▶ REPLY text ──▶ server ──▶ page

``py-spy dump`` reads the stacks of every thread of a running CPython process
without stopping it for long and without its cooperation, so a worker stuck in a
task can still be looked at. It needs permission to trace the process (same user
and ptrace allowed, or root); when it is refused, the answer says so. The node agent on the
worker's machine runs it, so workers on every machine can be read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

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


class Dump:
    """``py-spy dump`` of process ``pid``, running in the background (a node agent's loop
    starts one and looks at it on its ticks). Output goes to a temporary file, so a deep
    stack never fills a pipe that nobody reads yet.

    Example:
        >>> d = Dump(os.getpid())  # doctest: +SKIP
        >>> while (text := d.result()) is None: time.sleep(0.1)  # doctest: +SKIP
    """

    def __init__(self, pid: int):
        self.pid = int(pid)
        self.proc = None
        self.out = tempfile.TemporaryFile()
        prog = py_spy()
        if prog is None:
            self.text = "py-spy is not installed here: pip install py-spy (a dependency of kit)"
            return
        self.text = None
        self.deadline = time.monotonic() + TIMEOUT
        self.proc = subprocess.Popen(
            [prog, "dump", "--pid", str(self.pid)], stdout=self.out, stderr=subprocess.STDOUT
        )

    def result(self) -> str | None:
        """The stacks as text, or a sentence saying why not; None while py-spy runs."""
        if self.text is not None or self.proc is None:
            return self.text
        code = self.proc.poll()
        if code is None:
            if time.monotonic() < self.deadline:
                return None
            self.proc.kill()
            self.proc.wait()
            self.text = f"py-spy did not answer within {TIMEOUT:.0f} s; try again"
        else:
            self.out.seek(0)
            said = self.out.read().decode(errors="replace")
            if code == 0:
                self.text = said
            else:
                why = said.strip().splitlines()
                self.text = (
                    f"py-spy could not read process {self.pid}: {why[-1] if why else code} "
                    "(it needs permission to trace the worker: the same user with ptrace "
                    "allowed, or root)"
                )
        self.out.close()
        return self.text


def dump(pid: int) -> str:
    """The Python stacks of process ``pid`` as text, or a sentence saying why not.

    Example:
        >>> "MainThread" in dump(os.getpid()) or "py-spy" in dump(os.getpid())  # doctest: +SKIP
        True
    """
    d = Dump(pid)
    while (text := d.result()) is None:
        time.sleep(0.05)  # polling a child process: nothing to wait on but its exit
    return text
