"""``kit.Executor``: ``concurrent.futures`` on a kit cluster.

    submit() ──▶ Future (PENDING) ──▶ slot free? ──yes──▶ f.remote(*args) ──▶ ref
                          │                 └─no──▶ local queue (max_workers)
                          ▼
    kit io thread: ref.future() done ──▶ completions queue ──▶ executor thread
    executor thread: copy the outcome into the Future (user callbacks run here,
                     never on kit's io thread), start queued calls in freed slots

Each call is an ordinary kit task named after the function, so it shows in the
monitor and the progress widgets. A future stays PENDING until its task is
done, so ``cancel()`` also cancels a queued or running kit task
(``kit.cancel``); it fails only once the outcome is in. The executor thread
lives while calls are outstanding and exits after a second of idleness.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import queue
import threading
import time
from collections import deque

from .remote_function import RemoteFunction

_IDLE_S = 1.0


def label_of(fn) -> str:
    """A readable task name for a callable (unwraps partials and sklearn/joblib wrappers)."""
    for _ in range(4):
        inner = getattr(fn, "func", None) or getattr(fn, "function", None)
        if inner is None or inner is fn:
            break
        fn = inner
    return getattr(fn, "__name__", None) or type(fn).__name__


class Executor(concurrent.futures.Executor):
    """A ``concurrent.futures.Executor`` whose calls run as kit tasks on the cluster.

    Args:
        max_workers: at most this many calls in flight at once (the rest wait
            in the executor); None lets the cluster's slots decide.
        task_options: options of every call's task (``num_cpus``, ``resources``...), as
            ``f.options()`` takes them.

    ``ObjectRef`` arguments arrive as their values, as with ``.remote()``.
    Futures are ``concurrent.futures.Future``, so ``wait`` and ``as_completed``
    work; errors are raised as the task's exception type. Unlike
    ``ProcessPoolExecutor``, a future stays pending while its task runs, so
    ``future.cancel()`` also interrupts a running task (``kit.cancel``).

    Example:
        >>> import kit
        >>> with kit.Executor() as ex:
        ...     list(ex.map(abs, [-1, -2]))
        [1, 2]
    """

    def __init__(self, max_workers=None, task_options=None):
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0 (or None for the cluster's slots)")
        self._max = max_workers
        self._lock = threading.Lock()
        self._queued = deque()  # (future, fn, args, kwargs, name) waiting for a slot
        self._running = {}  # future -> ObjectRef of its task
        self._done = queue.SimpleQueue()  # (future, inner future) from kit's io thread
        self._thread = None
        self._shutdown = False
        self._remotes = {}  # (fn, name) -> RemoteFunction
        self._options = dict(task_options or {})  # every task's options (num_cpus, ...)

    # ---- submitting --------------------------------------------------------------

    def submit(self, fn, /, *args, **kwargs):
        """Run ``fn(*args, **kwargs)`` as a kit task; return its ``Future``.

        Raises:
            RuntimeError: the executor was shut down (make a new one).

        Example:
            >>> import kit
            >>> with kit.Executor() as ex:
            ...     ex.submit(pow, 2, 5).result()
            32
        """
        return self._submit(fn, args, kwargs, None)

    def _submit(self, fn, args, kwargs, name):
        fut = concurrent.futures.Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError(
                    "cannot schedule new futures after shutdown; create a new kit.Executor"
                )
            start = self._max is None or len(self._running) < self._max
            if start:
                self._running[fut] = None  # the slot is taken before the task exists
            else:
                self._queued.append((fut, fn, args, kwargs, name))
            self._ensure_thread()
        fut.add_done_callback(self._on_cancel)
        if start and not self._start(fut, fn, args, kwargs, name):
            self._fill_slots()
        return fut

    def _remote(self, fn, name):
        key = (fn, name)
        opts = {**self._options, "name": name or label_of(fn)}
        try:
            rf = self._remotes.get(key)
        except TypeError:  # an unhashable callable: no caching
            return RemoteFunction(fn, opts)
        if rf is None:
            rf = self._remotes[key] = RemoteFunction(fn, opts)
        return rf

    def _start(self, fut, fn, args, kwargs, name):
        """Submit the task of a future whose slot is taken; False if the slot is free again."""
        try:
            ref = self._remote(fn, name).remote(*args, **kwargs)
        except BaseException as e:  # unpicklable arguments, kit shut down...
            with self._lock:
                self._running.pop(fut, None)
            settle(fut, exc=e)
            return False
        with self._lock:
            cancelled = fut.cancelled()
            if cancelled:
                self._running.pop(fut, None)
            else:
                self._running[fut] = ref
        if cancelled:
            _cancel_task(ref)
            return False
        ref.future().add_done_callback(lambda inner, f=fut: self._done.put((f, inner)))
        return True

    def _on_cancel(self, fut):
        if not fut.cancelled():
            return
        fut.set_running_or_notify_cancel()  # wakes concurrent.futures.wait/as_completed
        with self._lock:
            ref = self._running.get(fut)
        if ref is not None:
            _cancel_task(ref)  # its inner future then settles and frees the slot

    # ---- the executor thread -----------------------------------------------------

    def _ensure_thread(self):
        # With the lock held.
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="kit-executor", daemon=True)
            self._thread.start()

    def _loop(self):
        done = self._done
        while True:
            try:
                item = done.get(timeout=_IDLE_S)
            except queue.Empty:
                with self._lock:
                    if not self._running and not self._queued and done.empty():
                        self._thread = None
                        return
                continue
            fut, inner = item
            with self._lock:
                self._running.pop(fut, None)
            _copy(inner, fut)
            self._fill_slots()

    def _fill_slots(self):
        while True:
            with self._lock:
                if not self._queued or (self._max is not None and len(self._running) >= self._max):
                    return
                fut, fn, args, kwargs, name = self._queued.popleft()
                if fut.cancelled():
                    continue
                self._running[fut] = None
            self._start(fut, fn, args, kwargs, name)

    # ---- map and shutdown --------------------------------------------------------

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        """Like ``map(fn, *iterables)``, each call (or chunk of calls) a kit task.

        All calls are submitted at once; results come back in order.

        Args:
            timeout: seconds from this call for all results; the iterator
                raises ``TimeoutError`` after that (and cancels the rest).
            chunksize: calls per task; larger chunks cut overhead for tiny calls.

        Example:
            >>> import kit
            >>> with kit.Executor() as ex:
            ...     list(ex.map(pow, [2, 3], [2, 2], chunksize=2))
            [4, 9]
        """
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        end = None if timeout is None else time.monotonic() + timeout
        name = label_of(fn)
        if chunksize == 1:
            fs = [self._submit(fn, args, {}, name) for args in zip(*iterables)]
        else:
            fs = [
                self._submit(run_chunk, (fn, chunk), {}, name)
                for chunk in chunks(zip(*iterables), chunksize)
            ]
        return _in_order(fs, end, chunksize > 1)

    def shutdown(self, wait=True, *, cancel_futures=False):
        """No more submits; optionally cancel queued calls and wait for the rest.

        Args:
            wait: block until every outstanding call is done.
            cancel_futures: cancel the calls still waiting for a slot in this
                executor (calls already sent to the cluster run to the end).

        Example:
            >>> import kit
            >>> ex = kit.Executor()
            >>> ex.shutdown()
        """
        with self._lock:
            self._shutdown = True
            queued = list(self._queued) if cancel_futures else []
        for item in queued:
            item[0].cancel()
        if wait:
            concurrent.futures.wait(self._pending())
        self._remotes.clear()

    def _pending(self):
        """The futures not done yet: sent to the cluster, or waiting for a slot."""
        with self._lock:
            return [f for f in self._running] + [q[0] for q in self._queued]

    def _cancel_all(self):
        """Cancel every outstanding call, its kit task included (Pool.terminate, joblib)."""
        for fut in self._pending():
            fut.cancel()


def _in_order(fs, end, chunked):
    """Yield the futures' results in order; cancel the rest if stopped early."""
    fs.reverse()
    try:
        while fs:
            fut = fs.pop()
            try:
                value = fut.result(None if end is None else end - time.monotonic())
            finally:
                fut.cancel()  # a no-op once done; cancels the late one on a timeout
            if chunked:
                yield from value
            else:
                yield value
    finally:
        for fut in fs:
            fut.cancel()


def run_chunk(fn, chunk):
    """Run ``fn(*args)`` for each args tuple of a chunk (one task for many calls)."""
    return [fn(*args) for args in chunk]


def chunks(it, size):
    """Tuples of ``size`` items of ``it`` (the last one shorter)."""
    it = iter(it)
    while True:
        chunk = tuple(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk


def _copy(inner, fut):
    exc = inner.exception()
    if exc is not None:
        settle(fut, exc=exc)
    else:
        settle(fut, result=inner.result())


def settle(fut, result=None, exc=None) -> bool:
    """Set a future's outcome; False if it was cancelled (or settled) meanwhile."""
    try:
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
        return True
    except concurrent.futures.InvalidStateError:
        return False


def _cancel_task(ref):
    from .api import cancel

    try:
        cancel(ref)
    except Exception:
        pass  # kit shut down: nothing left to cancel
