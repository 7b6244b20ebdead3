"""``ray.util.queue``: a first-in first-out queue shared by tasks and actors.

    Queue(maxsize) ── holds a handle to ──▶ _QueueActor (async: one asyncio.Queue)
    put / get (block, timeout) ── one actor call each ── Full / Empty on timeout

The queue's handle pickles, so tasks and actors given a ``Queue`` use the same actor.
The actor asks for no CPU unless ``actor_options`` says so.

Example:
    >>> import kit
    >>> from kit.ray.util.queue import Queue
    >>> q = Queue()
    >>> q.put(1); q.get()
    1
"""

from __future__ import annotations

import asyncio
import queue as _queue

from kit.actors import ActorClass
from kit.api import get


class Empty(_queue.Empty):
    """``get`` found nothing (no wait, or the timeout passed)."""


class Full(_queue.Full):
    """``put`` found no room (no wait, or the timeout passed)."""


def _check_timeout(timeout):
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout={timeout!r}: it takes None or a number >= 0")


class _QueueActor:
    def __init__(self, maxsize):
        self.maxsize = maxsize
        self.queue = asyncio.Queue(maxsize)

    def qsize(self):
        return self.queue.qsize()

    def empty(self):
        return self.queue.empty()

    def full(self):
        return self.queue.full()

    async def put(self, item, timeout=None):
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except asyncio.TimeoutError:
            raise Full from None

    async def put_batch(self, items, timeout=None):
        for item in items:
            await self.put(item, timeout)

    async def get(self, timeout=None):
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            raise Empty from None

    def put_nowait(self, item):
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            raise Full(f"the queue is full ({self.maxsize} items)") from None

    def put_nowait_batch(self, items):
        if self.maxsize > 0 and len(items) + self.qsize() > self.maxsize:
            raise Full(f"cannot add {len(items)} items to a queue of size {self.qsize()} "
                       f"and maxsize {self.maxsize}")  # fmt: skip
        for item in items:
            self.queue.put_nowait(item)

    def get_nowait(self):
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            raise Empty("the queue is empty") from None

    def get_nowait_batch(self, num_items):
        if num_items > self.qsize():
            raise Empty(f"cannot get {num_items} items from a queue of size {self.qsize()}")
        return [self.queue.get_nowait() for _ in range(num_items)]


QueueActor = ActorClass(_QueueActor, {"num_cpus": 0})


def _plain(e):
    """The Empty/Full an actor call raised, as this module's class (else the error)."""
    for cls in (Empty, Full):
        if isinstance(e, (_queue.Empty if cls is Empty else _queue.Full)):
            return cls(*e.args)
    return e


class Queue:
    """A queue whose items live in an actor, usable from any task or actor.

    Args:
        maxsize: at most this many items (0: no bound).
        actor_options: options of the queue's actor, e.g. ``{"num_cpus": 1}``.

    Example:
        >>> from kit.ray.util.queue import Queue
        >>> q = Queue(maxsize=2)
        >>> q.put_nowait_batch([1, 2]); q.qsize()
        2
    """

    def __init__(self, maxsize: int = 0, actor_options: dict | None = None):
        self.maxsize = maxsize
        self.actor = QueueActor.options(**(actor_options or {})).remote(maxsize)

    def __len__(self):
        return self.size()

    def size(self) -> int:
        """The number of items in the queue."""
        return get(self.actor.qsize.remote())

    qsize = size

    def empty(self) -> bool:
        """Whether the queue is empty."""
        return get(self.actor.empty.remote())

    def full(self) -> bool:
        """Whether the queue holds ``maxsize`` items."""
        return get(self.actor.full.remote())

    def _call(self, ref):
        try:
            return get(ref)
        except (_queue.Empty, _queue.Full) as e:
            raise _plain(e) from None

    def put(self, item, block: bool = True, timeout: float | None = None) -> None:
        """Add an item; wait for room if ``block`` (at most ``timeout`` seconds).

        Raises:
            Full: no room (``block=False``, or the timeout passed).
            ValueError: a negative timeout.
        """
        if not block:
            return self._call(self.actor.put_nowait.remote(item))
        _check_timeout(timeout)
        self._call(self.actor.put.remote(item, timeout))

    async def put_async(self, item, block: bool = True, timeout: float | None = None):
        """``put`` for coroutines."""
        if not block:
            return self.put_nowait(item)
        _check_timeout(timeout)
        try:
            await self.actor.put.remote(item, timeout)
        except _queue.Full as e:
            raise _plain(e) from None

    def get(self, block: bool = True, timeout: float | None = None):
        """Remove and return the oldest item; wait for one if ``block``.

        Raises:
            Empty: nothing came (``block=False``, or the timeout passed).
            ValueError: a negative timeout.
        """
        if not block:
            return self._call(self.actor.get_nowait.remote())
        _check_timeout(timeout)
        return self._call(self.actor.get.remote(timeout))

    async def get_async(self, block: bool = True, timeout: float | None = None):
        """``get`` for coroutines."""
        if not block:
            return self.get_nowait()
        _check_timeout(timeout)
        try:
            return await self.actor.get.remote(timeout)
        except _queue.Empty as e:
            raise _plain(e) from None

    def put_nowait(self, item) -> None:
        """``put(item, block=False)``."""
        return self.put(item, block=False)

    def put_nowait_batch(self, items) -> None:
        """Add all of ``items`` at once, or none (``Full`` if they do not all fit)."""
        if not isinstance(items, list):
            raise TypeError(f"put_nowait_batch takes a list, not {type(items).__name__}")
        self._call(self.actor.put_nowait_batch.remote(items))

    def get_nowait(self):
        """``get(block=False)``."""
        return self.get(block=False)

    def get_nowait_batch(self, num_items: int) -> list:
        """Remove and return ``num_items`` items at once (``Empty`` if there are fewer)."""
        if not isinstance(num_items, int) or num_items < 0:
            raise ValueError(f"num_items={num_items!r}: it takes an int >= 0")
        return self._call(self.actor.get_nowait_batch.remote(num_items))

    def shutdown(self, force: bool = False, grace_period_s: int = 5) -> None:
        """Stop the queue's actor; the queue is unusable afterwards."""
        from kit.api import kill

        if self.actor is not None:
            kill(self.actor)
        self.actor = None


__all__ = ["Empty", "Full", "Queue"]
