"""Native thread pools (BLAS, OpenMP) in workers: one thread per CPU a task holds.

numpy's BLAS starts a thread per core by default. Two workers on a 2-core machine
each multiplying matrices then run four busy threads on two cores, and each task is
slower than alone (measured here: 4 matrices made, 2 multiplied, 1 sum took 0.43-0.6 s,
0.17-0.23 s with one thread per worker). As Ray does, a worker's pools get as many
threads as its task's ``num_cpus`` (1 by default; a task with ``num_cpus=0`` gets 1):

    zygote, before it imports numpy:  OMP_NUM_THREADS=1 (and the BLAS libraries' own
                                      variables), unless the user set one of them
    worker, before a task:            the pools resized (threadpoolctl) when the task's
                                      CPUs differ from the last task's

A user who sets ``OMP_NUM_THREADS`` (or ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``) in
the driver's or the node's environment keeps that setting everywhere.

    >>> threads_for({"CPU": 4.0}), threads_for({"CPU": 0.5}), threads_for({})
    (4, 1, 1)
"""

from __future__ import annotations

import math
import os

VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
_state = {"user": False, "now": 1}


def threads_for(res: dict) -> int:
    """Threads a task holding resources ``res`` gets: its CPUs rounded up, at least 1."""
    return max(1, math.ceil(res.get("CPU") or 0))


def limit_before_preload() -> None:
    """The zygote, before it imports numpy: one thread per pool, unless the user chose."""
    if any(v in os.environ for v in VARS):
        _state["user"] = True
        return
    for v in VARS:
        os.environ[v] = "1"


def fit(res: dict) -> None:
    """A worker, before a task holding ``res``: resize the pools if its CPUs differ."""
    if _state["user"]:
        return
    n = threads_for(res)
    if n == _state["now"]:
        return
    _state["now"] = n
    for v in VARS:
        os.environ[v] = str(n)  # for what the task starts (subprocesses, late imports)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # a node without it: the pools keep one thread
        return
    threadpool_limits(limits=n)
