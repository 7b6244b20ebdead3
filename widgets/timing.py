"""Honest timings for lessons: a few runs with their median and spread, and how busy the machine is.

    time_runs(fn, runs=3)  ──▶ Timing: every run's seconds; .median, .low, .high; str()
                               "0.84 s (0.81-0.90 s, 3 runs)"
    machine_busy(0.5)      ──▶ % of all cores busy over half a second (every process)
    busy_note(percent)     ──▶ "" on a quiet machine, else a sentence saying the times
                               below are slower and noisier than on an idle one

A lesson warms its workers first (one untimed run), times a few runs, and phrases
its conclusion from the numbers it measured, so a busy machine cannot make the
text contradict the figures next to it.
"""

from __future__ import annotations

import statistics
import time
from typing import NamedTuple

import psutil

BUSY = 25.0  # % of all cores busy (before timing, kit idle) above which a note is shown


class Timing(NamedTuple):
    """The seconds of each run of one measurement.

    Example:
        >>> t = Timing((0.9, 0.81, 0.84))
        >>> t.median, t.low, t.high
        (0.84, 0.81, 0.9)
        >>> str(t)
        '0.84 s (0.81-0.90 s, 3 runs)'
    """

    runs: tuple

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def low(self) -> float:
        return min(self.runs)

    @property
    def high(self) -> float:
        return max(self.runs)

    def __str__(self):
        if len(self.runs) == 1:
            return f"{self.median:.2f} s (1 run)"
        return f"{self.median:.2f} s ({self.low:.2f}-{self.high:.2f} s, {len(self.runs)} runs)"


def time_runs(fn, runs: int = 3) -> Timing:
    """Call ``fn()`` ``runs`` times and time each call (wall clock).

    Warm up first (workers started, functions loaded) with an untimed call if the
    first run would otherwise pay for it.

    Example:
        >>> t = time_runs(lambda: sum(range(1000)), runs=3)
        >>> len(t.runs)
        3
    """
    if runs < 1:
        raise ValueError(f"runs={runs}: time at least one run")
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return Timing(tuple(out))


def machine_busy(seconds: float = 0.5) -> float:
    """How busy the machine's cores are now, in % of all of them (every process counted).

    Measure while your own work is idle: what it reads is then other programs' load.

    Example:
        >>> 0.0 <= machine_busy(0.1) <= 100.0
        True
    """
    return float(psutil.cpu_percent(interval=seconds))


def busy_note(percent: float, threshold: float = BUSY) -> str:
    """A sentence for timings taken on a busy machine ("" when it was quiet).

    Example:
        >>> busy_note(5.0)
        ''
        >>> busy_note(80.0).startswith("Note: other programs kept this machine 80% busy")
        True
    """
    if percent < threshold:
        return ""
    return (
        f"Note: other programs kept this machine {percent:.0f}% busy before these "
        f"timings, so they are slower and noisier than on an idle machine; the runs' "
        f"spread shows by how much."
    )
