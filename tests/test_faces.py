"""The faces Python users know: kit.Executor, kit.Pool, await ref, kit.as_completed.

Modelled on CPython's test_concurrent_futures and test_multiprocessing, on a real
2-slot local cluster (the module's ``cluster`` fixture).
"""

import asyncio
import concurrent.futures as cf
import doctest
import multiprocessing
import os
import threading
import time

import pytest
from helpers import latest_event, wait_tasks, wait_until

import kit

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]


def square(x):
    return x * x


def fail(msg):
    raise ValueError(msg)


def mul(a, b=1):
    return a * b


def nap(s, value=None):
    time.sleep(s)  # a call that takes s seconds: still running, or done later than another
    return value


def interval(s):
    """Sleep; return when (wall clock) the sleep started and ended."""
    t0 = time.time()
    time.sleep(s)  # a span that overlaps others if calls run together
    return t0, time.time()


def overlaps(spans):
    spans = sorted(spans)
    return any(b[0] < a[1] - 0.02 for a, b in zip(spans, spans[1:]))


def submitted():
    return kit.cluster_status()["counts"]["submitted"]


def runs_promptly(timeout=15):
    """A fresh task gets a slot within ``timeout`` (nothing is left occupying them)."""
    return kit.get(kit.remote(square).remote(3), timeout=timeout) == 9


# ---- Executor: submit, errors, map ------------------------------------------------------


def test_executor_is_a_concurrent_futures_executor(cluster):
    with kit.Executor() as ex:
        assert isinstance(ex, cf.Executor)
        fut = ex.submit(mul, 6, b=7)
        assert isinstance(fut, cf.Future)
        assert fut.result(timeout=30) == 42
        assert fut.done() and not fut.cancelled() and fut.exception() is None


def test_executor_exception_propagates_with_its_type(cluster):
    with kit.Executor() as ex:
        fut = ex.submit(fail, "boom")
        with pytest.raises(ValueError, match="boom"):
            fut.result(timeout=30)
        assert isinstance(fut.exception(), ValueError)


def test_executor_map_order_chunks_and_error(cluster):
    with kit.Executor() as ex:
        assert list(ex.map(square, range(50))) == [i * i for i in range(50)]
        assert list(ex.map(mul, range(10), range(10), chunksize=3)) == [i * i for i in range(10)]
        assert list(ex.map(square, [])) == []
        it = ex.map(fail, ["x"])
        with pytest.raises(ValueError, match="x"):
            next(it)
        with pytest.raises(ValueError):
            ex.map(square, [1], chunksize=0)


def test_executor_map_chunksize_is_one_task_per_chunk(cluster):
    with kit.Executor() as ex:
        before = submitted()
        assert list(ex.map(square, range(20), chunksize=5)) == [i * i for i in range(20)]
        assert submitted() - before == 4


def test_executor_map_timeout(cluster):
    since = latest_event()
    with kit.Executor() as ex:
        results = ex.map(nap, [0.0, 20.0], timeout=1.0)
        with pytest.raises(TimeoutError):
            list(results)
    wait_tasks("nap", "cancelled", since=since)  # the late call, not left sleeping on a slot
    assert runs_promptly()


def test_executor_as_completed_and_wait(cluster):
    with kit.Executor() as ex:
        slow = ex.submit(nap, 1.5, "slow")
        fast = ex.submit(nap, 0.0, "fast")
        order = [f.result() for f in cf.as_completed([slow, fast], timeout=30)]
        assert order == ["fast", "slow"]

        slow = ex.submit(nap, 1.5)
        fast = ex.submit(nap, 0.0)
        done, not_done = cf.wait([slow, fast], timeout=30, return_when=cf.FIRST_COMPLETED)
        assert done == {fast} and not_done == {slow}
        done, not_done = cf.wait([slow, fast], timeout=30, return_when=cf.ALL_COMPLETED)
        assert done == {slow, fast} and not not_done

        bad = ex.submit(fail, "first")
        slow = ex.submit(nap, 1.5)
        done, not_done = cf.wait([bad, slow], timeout=30, return_when=cf.FIRST_EXCEPTION)
        assert done == {bad} and not_done == {slow}


def test_executor_done_callbacks(cluster):
    seen = []
    got = threading.Event()
    with kit.Executor() as ex:
        fut = ex.submit(square, 5)
        fut.add_done_callback(lambda f: (seen.append(f.result()), got.set()))
        assert got.wait(30)
        fut.add_done_callback(lambda f: seen.append("late"))  # already done: runs at once
    assert seen == [25, "late"]


def test_executor_cancel_queued_and_running(cluster):
    since = latest_event()
    with kit.Executor(max_workers=1) as ex:
        running = ex.submit(nap, 30.0)
        queued = ex.submit(square, 2)
        assert queued.cancel() and queued.cancelled()
        wait_tasks("nap", "running", since=since)
        assert running.cancel() and running.cancelled()
        with pytest.raises(cf.CancelledError):
            running.result(timeout=1)
        # The running task was cancelled on the cluster: its slot frees at once.
        wait_tasks("nap", "cancelled", since=since)
        assert ex.submit(square, 4).result(timeout=20) == 16
    assert runs_promptly()


def test_executor_max_workers_bounds_tasks_in_flight(cluster):
    with kit.Executor(max_workers=1) as ex:
        spans = list(ex.map(interval, [0.3, 0.3, 0.3]))
    assert not overlaps(spans)
    with pytest.raises(ValueError):
        kit.Executor(max_workers=0)


def test_executor_shutdown(cluster):
    ex = kit.Executor()
    fut = ex.submit(nap, 0.5, "ok")
    ex.shutdown(wait=True)
    assert fut.done() and fut.result() == "ok"
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(square, 1)

    ex = kit.Executor(max_workers=1)
    first = ex.submit(nap, 0.5, "first")
    rest = [ex.submit(square, i) for i in range(3)]
    ex.shutdown(wait=True, cancel_futures=True)
    assert first.result() == "first"
    assert all(f.cancelled() for f in rest)


def test_executor_context_manager_waits(cluster):
    with kit.Executor() as ex:
        futs = [ex.submit(nap, 0.2, i) for i in range(4)]
    assert all(f.done() for f in futs)
    assert [f.result() for f in futs] == list(range(4))
    with pytest.raises(RuntimeError):
        ex.submit(square, 1)


def test_executor_tasks_are_named_after_the_function(cluster):
    last, _ = kit.events()
    with kit.Executor() as ex:
        ex.submit(square, 3).result(timeout=30)
        list(ex.map(mul, [1, 2], chunksize=2))
    labels = set()

    def both_seen():
        labels.update(e["label"] for e in kit.events(last)[1])
        return {"square", "mul"} <= labels

    wait_until(both_seen, 10, lambda: f"tasks labelled square and mul, saw {labels}")


def crash(_):
    os._exit(3)


def test_executor_worker_crash_fails_only_its_future(cluster):
    with kit.Executor() as ex:
        bad = ex.submit(crash, 0)
        good = ex.submit(square, 5)
        with pytest.raises(kit.WorkerCrashedError):
            bad.result(timeout=60)  # after kit's retries
        assert good.result(timeout=30) == 25
        assert ex.submit(square, 6).result(timeout=30) == 36


def test_executor_unpicklable_argument_fails_its_future(cluster):
    with kit.Executor(max_workers=1) as ex:
        fut = ex.submit(square, threading.Lock())
        assert isinstance(fut.exception(timeout=10), kit.SerializationError)
        assert ex.submit(square, 2).result(timeout=30) == 4  # its slot was freed


# ---- Pool --------------------------------------------------------------------------------


def test_pool_map_imap_starmap(cluster):
    with kit.Pool(2) as p:
        assert p.map(square, range(30)) == [i * i for i in range(30)]
        assert p.map(square, range(30), chunksize=7) == [i * i for i in range(30)]
        assert list(p.imap(square, range(10))) == [i * i for i in range(10)]
        assert list(p.imap(square, range(10), chunksize=3)) == [i * i for i in range(10)]
        assert sorted(p.imap_unordered(square, range(10), chunksize=2)) == [
            i * i for i in range(10)
        ]
        assert p.starmap(mul, [(i, i) for i in range(10)]) == [i * i for i in range(10)]
        assert p.map(square, []) == []
        assert p.apply(mul, (3,), {"b": 5}) == 15


def test_pool_imap_unordered_is_in_completion_order(cluster):
    with kit.Pool(2) as p:
        assert list(p.imap_unordered(nap, [1.5, 0.0])) == [None, None]
        it = p.imap_unordered(interval, [1.5, 0.0])
        first, second = list(it)
        assert first[1] - first[0] < second[1] - second[0]


def test_pool_chunksize_is_one_task_per_chunk(cluster):
    with kit.Pool(2) as p:
        before = submitted()
        p.map(square, range(20), chunksize=5)
        assert submitted() - before == 4
        before = submitted()
        p.map(square, range(20))  # default: about 4 chunks per process
        assert submitted() - before == 7


def test_pool_apply_async_callbacks(cluster):
    results, errors = [], []
    with kit.Pool(2) as p:
        r = p.apply_async(square, (7,), callback=results.append)
        assert r.get(timeout=30) == 49
        assert r.ready() and r.successful()
        bad = p.apply_async(fail, ("no",), error_callback=errors.append)
        bad.wait(30)
        assert bad.ready() and not bad.successful()
        with pytest.raises(ValueError, match="no"):
            bad.get(timeout=1)
        m = p.map_async(square, range(5), callback=results.append)
        assert m.get(timeout=30) == [0, 1, 4, 9, 16]
        s = p.starmap_async(mul, [(2, 3)], callback=results.append)
        assert s.get(timeout=30) == [6]
        bad_map = p.map_async(fail, ["a", "b"], chunksize=1, error_callback=errors.append)
        with pytest.raises(ValueError):
            bad_map.get(timeout=30)
    # callbacks run on the executor thread, right after the result
    wait_until(lambda: len(results) == 3 and len(errors) == 2, 10, "the five callbacks")
    assert results == [49, [0, 1, 4, 9, 16], [6]]
    assert len(errors) == 2 and all(isinstance(e, ValueError) for e in errors)


def test_pool_async_result_timeout_and_not_ready(cluster):
    with kit.Pool(1) as p:
        r = p.apply_async(nap, (1.0, "late"))
        with pytest.raises(ValueError):
            r.successful()
        with pytest.raises(multiprocessing.TimeoutError):
            r.get(timeout=0.1)
        r.wait(0.05)
        assert not r.ready()
        assert r.get(timeout=30) == "late"


def test_pool_close_and_join(cluster):
    p = kit.Pool(2)
    r = p.map_async(nap, [0.3] * 4)
    with pytest.raises(ValueError, match="still running"):
        p.join()
    p.close()
    with pytest.raises(ValueError, match="not running"):
        p.apply_async(square, (1,))
    p.join(timeout=30)
    assert r.ready() and r.get(timeout=1) == [None] * 4


def test_pool_terminate_cancels_tasks(cluster):
    since = latest_event()
    p = kit.Pool(2)
    r = p.map_async(nap, [30.0] * 6, chunksize=1)
    wait_tasks("nap", "running", count=2, since=since)
    p.terminate()
    p.join(timeout=30)
    assert r.ready() and not r.successful()
    wait_tasks("nap", "cancelled", count=2, since=since)  # the running ones too
    with pytest.raises(ValueError):
        p.map(square, [1])
    assert runs_promptly()


def test_pool_context_manager_exit_terminates(cluster):
    with kit.Pool(2) as p:
        assert p.map(square, [3]) == [9]
        r = p.apply_async(nap, (30.0,))
    r.wait(10)
    assert r.ready() and not r.successful()
    assert runs_promptly()


def test_pool_processes_bounds_tasks_in_flight(cluster):
    with kit.Pool(1) as p:
        spans = p.map(interval, [0.3, 0.3, 0.3], chunksize=1)
    assert not overlaps(spans)
    with pytest.raises(ValueError):
        kit.Pool(0)


def set_marker(value):
    os.environ["KIT_TEST_POOL_INIT"] = value


def read_marker(_):
    return os.environ.get("KIT_TEST_POOL_INIT")


def test_pool_initializer(cluster):
    with kit.Pool(2, initializer=set_marker, initargs=("ready",)) as p:
        assert p.map(read_marker, range(8), chunksize=1) == ["ready"] * 8


# ---- asyncio and kit.as_completed --------------------------------------------------------

sq = kit.remote(square)
boom = kit.remote(fail)
sleepy = kit.remote(nap)


def test_asyncio_gather_over_refs(cluster):
    async def main():
        return await asyncio.gather(*[sq.remote(i) for i in range(20)])

    assert asyncio.run(main()) == [i * i for i in range(20)]


def test_await_ref_whose_task_raises(cluster):
    async def main():
        with pytest.raises(ValueError, match="awaited"):
            await boom.remote("awaited")
        results = await asyncio.gather(
            boom.remote("in gather"), sq.remote(2), return_exceptions=True
        )
        return results

    err, four = asyncio.run(main())
    assert isinstance(err, ValueError) and four == 4


@kit.remote
class Latch:
    """``wait(timeout)`` returns True once ``open()`` was called, False after ``timeout``."""

    def __init__(self):
        self.event = None

    def _event(self):
        if self.event is None:  # made in the actor's event loop
            self.event = asyncio.Event()
        return self.event

    async def open(self):
        self._event().set()

    async def wait(self, timeout):
        try:
            await asyncio.wait_for(self._event().wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False


def test_await_does_not_block_the_event_loop(cluster):
    latch = Latch.remote()
    opened = []

    async def main():
        ticks = 0

        async def ticker():  # runs only while the loop is free
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1
                if ticks == 3:
                    opened.append(latch.open.remote())

        t = asyncio.ensure_future(ticker())
        # the latch opens only if the ticker runs while this coroutine awaits the ref
        value = await asyncio.wait_for(latch.wait.remote(20), timeout=30)
        t.cancel()
        return value, ticks

    value, ticks = asyncio.run(main())
    assert value is True and ticks >= 3


def test_kit_as_completed_order(cluster):
    slow = sleepy.remote(1.5, "slow")
    fast = sleepy.remote(0.0, "fast")
    put = kit.put("put")
    order = [kit.get(r) for r in kit.as_completed([slow, fast, put], timeout=30)]
    assert order[-1] == "slow" and set(order[:2]) == {"fast", "put"}
    assert list(kit.as_completed([])) == []


def test_kit_as_completed_timeout(cluster):
    slow = sleepy.remote(5.0)
    fast = sq.remote(3)
    it = kit.as_completed([slow, fast], timeout=1.0)
    assert next(it) == fast
    with pytest.raises(TimeoutError):
        next(it)
    kit.cancel(slow)


# ---- the docstring examples --------------------------------------------------------------


@pytest.mark.parametrize("module", ["kit.executor", "kit.pool", "kit.completion"])
def test_docstring_examples(cluster, module):
    import importlib

    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
