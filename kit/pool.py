"""``kit.Pool``: the ``multiprocessing.Pool`` methods people use, on a kit cluster.

    Pool.map(f, items, chunksize) ──▶ chunks ──▶ Executor(max_workers=processes)
                                                   │ one kit task per chunk
    AsyncResult ◀── combined when every chunk's Future is done ◀──┘

A pool is a thin layer over ``kit.Executor``: ``processes`` bounds how many
tasks are in flight, each chunk of ``chunksize`` items is one task (named after
the function), and callbacks run on the executor's thread, as they run on the
result-handler thread of ``multiprocessing.Pool``. The ``initializer`` runs
once in each worker process that runs a task of this pool, before its first
task there.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import multiprocessing
import os
import threading

from .executor import Executor, chunks, label_of, run_chunk, settle

_RUN, _CLOSE, _TERMINATE = "RUN", "CLOSE", "TERMINATE"

# Pools whose initializer already ran in this (worker) process.
_initialized: set = set()


class AsyncResult:
    """What ``apply_async`` and ``map_async`` return (``multiprocessing``'s AsyncResult).

    Example:
        >>> import kit
        >>> with kit.Pool(2) as p:
        ...     r = p.apply_async(divmod, (7, 2))
        ...     r.get(timeout=30)
        (3, 1)
    """

    def __init__(self, futures, combine, callback=None, error_callback=None):
        self._future = concurrent.futures.Future()
        self._parts = futures
        self._combine = combine
        self._left = len(futures)
        self._lock = threading.Lock()
        self._callback, self._error_callback = callback, error_callback
        if not futures:
            self._finish()
        for f in futures:
            f.add_done_callback(self._part_done)

    def _part_done(self, fut):
        with self._lock:
            self._left -= 1
            if self._future.done():
                return
            failed = fut.cancelled() or fut.exception() is not None
            if not failed and self._left > 0:
                return
        self._finish()

    def _finish(self):
        try:
            value = self._combine([f.result() for f in self._parts if f.done()])
        except BaseException as e:  # a part failed or was cancelled
            if settle(self._future, exc=e) and self._error_callback is not None:
                self._error_callback(e)
            return
        if settle(self._future, result=value) and self._callback is not None:
            self._callback(value)

    def ready(self) -> bool:
        """Whether the call has completed."""
        return self._future.done()

    def successful(self) -> bool:
        """Whether the call completed without raising.

        Raises:
            ValueError: the result is not ready yet; call ``wait()`` first.
        """
        if not self.ready():
            raise ValueError(f"{self!r} not ready; call wait() or get() first")
        return self._future.exception() is None

    def wait(self, timeout=None) -> None:
        """Wait until the result is available or ``timeout`` seconds pass."""
        concurrent.futures.wait([self._future], timeout=timeout)

    def get(self, timeout=None):
        """Return the result when it arrives; raise the task's exception if it failed.

        Raises:
            multiprocessing.TimeoutError: not ready within ``timeout`` seconds.
        """
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise multiprocessing.TimeoutError(
                f"the result was not ready within {timeout} s; call get() again with a "
                f"longer timeout"
            ) from None


class Pool:
    """A process pool with ``multiprocessing.Pool``'s methods; its tasks run on kit.

    Args:
        processes: tasks in flight at once (default: the cluster's CPUs).
        initializer: called as ``initializer(*initargs)`` once in each worker
            process before the first task of this pool runs there.
        initargs: arguments of ``initializer``.

    A task is sent only when one of the ``processes`` slots frees, so each costs
    a round trip to the cluster (about a millisecond): for many tiny calls pass
    a ``chunksize`` to ``imap`` (``map`` picks one, as multiprocessing does).

    Example:
        >>> import kit
        >>> with kit.Pool(2) as p:
        ...     p.map(abs, [-1, -2, -3])
        [1, 2, 3]
    """

    def __init__(self, processes=None, initializer=None, initargs=()):
        if processes is None:
            from .api import _client, cluster_resources

            _client()
            processes = max(int(cluster_resources().get("CPU", 1)), 1)
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._processes = processes
        self._init = (os.urandom(8).hex(), initializer, tuple(initargs)) if initializer else None
        self._executor = Executor(max_workers=processes)
        self._state = _RUN

    def __repr__(self):
        return f"<kit.Pool state={self._state} processes={self._processes}>"

    def _check_running(self):
        if self._state != _RUN:
            raise ValueError("Pool not running; create a new kit.Pool")

    def _submit(self, fn, args, kwargs, name):
        fn = _Initialized(fn, self._init) if self._init else fn
        return self._executor._submit(fn, args, kwargs, name)

    def _chunksize(self, n, chunksize):
        """multiprocessing's default: about four chunks per process."""
        if chunksize is None:
            chunksize, extra = divmod(n, self._processes * 4)
            return max(chunksize + bool(extra), 1)
        if chunksize < 1:
            raise ValueError(f"chunksize must be >= 1, got {chunksize}")
        return chunksize

    def _chunk_futures(self, func, argtuples, chunksize):
        name = label_of(func)
        return [
            self._submit(run_chunk, (func, chunk), {}, name)
            for chunk in chunks(argtuples, chunksize)
        ]

    # ---- one call ----------------------------------------------------------------

    def apply_async(self, func, args=(), kwds=None, callback=None, error_callback=None):
        """Run ``func(*args, **kwds)`` as a task; return an ``AsyncResult``.

        Example:
            >>> import kit
            >>> with kit.Pool(1) as p:
            ...     p.apply_async(max, (3, 9)).get(timeout=30)
            9
        """
        self._check_running()
        fut = self._submit(func, tuple(args), dict(kwds or {}), label_of(func))
        return AsyncResult([fut], lambda values: values[0], callback, error_callback)

    def apply(self, func, args=(), kwds=None):
        """``apply_async(...).get()``: run one call and return its result.

        Example:
            >>> import kit
            >>> with kit.Pool(1) as p:
            ...     p.apply(max, (3, 9))
            9
        """
        return self.apply_async(func, args, kwds).get()

    # ---- many calls --------------------------------------------------------------

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        """``map`` without waiting: an ``AsyncResult`` whose value is the list.

        Example:
            >>> import kit
            >>> with kit.Pool(2) as p:
            ...     p.map_async(abs, [-1, -2]).get(timeout=30)
            [1, 2]
        """
        return self._map_async(func, [(x,) for x in iterable], chunksize, callback, error_callback)

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        """``starmap`` without waiting: an ``AsyncResult`` whose value is the list.

        Example:
            >>> import kit
            >>> with kit.Pool(2) as p:
            ...     p.starmap_async(pow, [(2, 3), (3, 2)]).get(timeout=30)
            [8, 9]
        """
        return self._map_async(
            func, [tuple(a) for a in iterable], chunksize, callback, error_callback
        )

    def _map_async(self, func, argtuples, chunksize, callback, error_callback):
        self._check_running()
        futs = self._chunk_futures(func, argtuples, self._chunksize(len(argtuples), chunksize))
        return AsyncResult(
            futs, lambda parts: list(itertools.chain.from_iterable(parts)), callback, error_callback
        )

    def map(self, func, iterable, chunksize=None):
        """``[func(x) for x in iterable]``, in order, ``chunksize`` items per task.

        Example:
            >>> import kit
            >>> with kit.Pool(2) as p:
            ...     p.map(abs, range(-3, 0), chunksize=2)
            [3, 2, 1]
        """
        return self.map_async(func, iterable, chunksize).get()

    def starmap(self, func, iterable, chunksize=None):
        """``[func(*args) for args in iterable]``, in order.

        Example:
            >>> import kit
            >>> with kit.Pool(2) as p:
            ...     p.starmap(pow, [(2, 3), (3, 2)])
            [8, 9]
        """
        return self.starmap_async(func, iterable, chunksize).get()

    def imap(self, func, iterable, chunksize=1):
        """An iterator over ``func(x)`` in order, each yielded as soon as it is ready.

        Example:
            >>> import kit
            >>> with kit.Pool(2) as p:
            ...     list(p.imap(abs, [-1, -2]))
            [1, 2]
        """
        return _ordered(self._imap_futures(func, iterable, chunksize))

    def imap_unordered(self, func, iterable, chunksize=1):
        """Like ``imap``, but results come in the order their tasks finish.

        Example:
            >>> import kit
            >>> with kit.Pool(2) as p:
            ...     sorted(p.imap_unordered(abs, [-1, -2]))
            [1, 2]
        """
        return _unordered(self._imap_futures(func, iterable, chunksize))

    def _imap_futures(self, func, iterable, chunksize):
        self._check_running()
        return self._chunk_futures(func, [(x,) for x in iterable], self._chunksize(1, chunksize))

    # ---- lifetime ----------------------------------------------------------------

    def close(self):
        """Accept no more work; tasks already submitted run to the end."""
        if self._state == _RUN:
            self._state = _CLOSE
            self._executor.shutdown(wait=False)

    def terminate(self):
        """Accept no more work and cancel every outstanding task now."""
        self._state = _TERMINATE
        self._executor.shutdown(wait=False)
        self._executor._cancel_all()

    def join(self, timeout=None):
        """Wait for the outstanding tasks (after ``close()`` or ``terminate()``).

        Raises:
            ValueError: the pool is still running; call ``close()`` first.
        """
        if self._state == _RUN:
            raise ValueError("Pool is still running; call close() or terminate() first")
        concurrent.futures.wait(self._executor._pending(), timeout=timeout)

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, *exc):
        self.terminate()


class _Initialized:
    """A pool's function that first runs the pool's initializer once per worker process."""

    def __init__(self, fn, init):
        self.fn, self.init = fn, init
        self.__name__ = label_of(fn)

    def __call__(self, *args, **kwargs):
        key, initializer, initargs = self.init
        if key not in _initialized:
            initializer(*initargs)
            _initialized.add(key)
        return self.fn(*args, **kwargs)

    def __hash__(self):
        return hash((self.fn, self.init[0]))

    def __eq__(self, other):
        return (
            isinstance(other, _Initialized)
            and other.fn == self.fn
            and other.init[0] == self.init[0]
        )


def _ordered(futs):
    for fut in futs:
        yield from fut.result()


def _unordered(futs):
    for fut in concurrent.futures.as_completed(futs):
        yield from fut.result()
