"""``ray._common.test_utils``: ``SignalActor``, ``Semaphore``, ``wait_for_condition``.

Ray's tests synchronise with these: a task waits on ``signal.wait.remote()`` until the
test calls ``signal.send.remote()``. ``SignalActor`` is an async actor whose plain
methods run on its event loop (as in Ray), so ``send`` wakes the waiting ``wait`` calls.

Example:
    >>> import kit
    >>> from kit.ray._common.test_utils import SignalActor
    >>> s = SignalActor.remote()
    >>> waiting = s.wait.remote()
    >>> kit.get(s.send.remote()); kit.get(waiting)
"""

from __future__ import annotations

import asyncio
import time

from kit.actors import ActorClass


class SignalActor:  # noqa: F811 (becomes the actor class below, keeping its name)
    def __init__(self):
        self.ready_event = asyncio.Event()
        self.num_waiters = 0

    def send(self, clear: bool = False):
        self.ready_event.set()
        if clear:
            self.ready_event.clear()

    async def wait(self, should_wait: bool = True):
        if should_wait:
            self.num_waiters += 1
            try:
                await self.ready_event.wait()
            finally:
                self.num_waiters -= 1

    async def cur_num_waiters(self) -> int:
        return self.num_waiters


class Semaphore:  # noqa: F811
    def __init__(self, value: int = 1):
        self._sema = asyncio.Semaphore(value=value)

    async def acquire(self):
        await self._sema.acquire()

    async def release(self):
        self._sema.release()

    async def locked(self) -> bool:
        return self._sema.locked()


# Ray's names, also in the labels of their calls (SignalActor.wait). The classes are
# pickled by value (their names now mean the actor classes), once per worker.
SignalActor = ActorClass(SignalActor, {"num_cpus": 0})  # type: ignore[misc]
Semaphore = ActorClass(Semaphore, {"num_cpus": 0})  # type: ignore[misc]


def wait_for_condition(
    condition_predictor, timeout=10, retry_interval_ms=100, raise_exceptions=False, **kwargs
):
    """Call ``condition_predictor(**kwargs)`` until it is true; ``RuntimeError`` after
    ``timeout`` seconds (its last exception is named; ``raise_exceptions`` raises it).

    Example:
        >>> wait_for_condition(lambda: True)
    """
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            if condition_predictor(**kwargs):
                return
        except Exception as e:
            if raise_exceptions:
                raise
            last = e
        if time.monotonic() > deadline:
            why = f"; its last exception: {last!r}" if last is not None else ""
            raise RuntimeError(f"the condition was not met within {timeout} s{why}")
        time.sleep(retry_interval_ms / 1000.0)


__all__ = ["Semaphore", "SignalActor", "wait_for_condition"]
