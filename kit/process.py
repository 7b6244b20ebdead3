"""What state a process on this machine is in (psutil; no signal sent).

kit tells a dead peer from a busy one by this where it can: a node agent the head
started, or a head the driver started, that is silent but still running is busy (a
2-core machine starting 500 nodes), not dead; a stopped one (SIGSTOP, a debugger) is
treated as silent; one that exited is dead at once.
"""

from __future__ import annotations

import os

import psutil

GONE, STOPPED, RUNNING = "gone", "stopped", "running"
# How long a silent peer that is still running here counts as busy, not dead
BUSY_TIMEOUT = float(os.environ.get("KIT_BUSY_TIMEOUT") or 120.0)


def state(pid) -> str:
    """``"gone"`` (no such process, or a zombie), ``"stopped"``, or ``"running"``.

    Example:
        >>> import os
        >>> state(os.getpid())
        'running'
    """
    if not pid:
        return GONE
    try:
        status = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return GONE
    except psutil.AccessDenied:  # another user's process: it exists
        return RUNNING
    if status in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
        return GONE
    if status in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP):
        return STOPPED
    return RUNNING


def alive(pid) -> bool:
    """True if the process exists and has not exited (a stopped one is alive).

    Example:
        >>> import os
        >>> alive(os.getpid())
        True
    """
    return state(pid) != GONE
