"""A worker's results wait for their batch at most ``LATE_FLUSH`` seconds.

A worker sends finished tasks' results in batches while more of its tasks are queued
(a storm of short tasks then costs one message per batch, not one per task). If the
task after a batch runs long, the batch would wait for it: ``kit.wait`` on a fast
task queued before a slow one would see nothing until the slow one ended. So when
the main thread starts a task with results still unsent, it arms this timer; if the
batch is still unsent when the timer fires, the timer's thread sends it.

The thread starts the first time a batch waits (a worker that runs one task at a
time never starts it) and is woken once per batch, not once per task.

    >>> flushes = []
    >>> late = LateFlush(lambda: flushes.append(1), lambda: len(flushes))
    >>> late.arm(0)   # a batch is unsent and a task starts: sent within LATE_FLUSH
"""

from __future__ import annotations

import threading
from typing import Callable

LATE_FLUSH = 0.002  # seconds a finished task's result may wait behind the next task


class LateFlush:
    """Calls ``flush()`` when the batch armed for is still unsent after ``LATE_FLUSH``.

    ``epoch()`` counts the worker's flushes: a batch is identified by the count when it
    was armed, so a flush by the main thread in between disarms the timer.
    """

    def __init__(self, flush: Callable[[], None], epoch: Callable[[], int]):
        self.flush, self.epoch = flush, epoch
        self.armed_for = -1
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None

    def arm(self, epoch: int) -> None:
        """The main thread starts a task while batch ``epoch`` is unsent."""
        self.armed_for = epoch
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="kit-late-flush", daemon=True)
            self.thread.start()
        self.wake.set()

    def _run(self) -> None:
        wake = self.wake
        timer = threading.Event()  # never set: its wait is the batching window
        while True:
            wake.wait()
            wake.clear()
            epoch = self.armed_for
            timer.wait(LATE_FLUSH)
            if self.epoch() == epoch:  # still unsent: the task after it runs long
                self.flush()
