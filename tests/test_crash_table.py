"""A crash table: bad arguments, results, functions and exceptions, each failing a
different way; every case gives a clear error and the cluster serves the next task."""

import threading

import pytest

import kit

pytestmark = pytest.mark.cluster


class FailsPickle:
    def __reduce__(self):
        raise RuntimeError("refuses to be pickled")


def _explode(*a):
    raise RuntimeError("refuses to be unpickled")


class FailsUnpickle:
    def __reduce__(self):
        return (_explode, ())


class OddInitError(Exception):
    """An exception whose constructor does not match its args: unpickling it fails."""

    def __init__(self, a, b):
        super().__init__(f"{a}/{b}")


class LockError(Exception):
    def __init__(self, msg):
        super().__init__(msg)
        self.lock = threading.Lock()


@kit.remote
def identity(x):
    return x


@kit.remote
def ok():
    return "served"


def serves_next():
    assert kit.get(ok.remote(), timeout=30) == "served"


@pytest.mark.parametrize(
    "bad, match",
    [
        (threading.Lock(), "argument 0 of identity"),
        (FailsPickle(), "argument 0 of identity"),
    ],
)
def test_argument_that_cannot_be_pickled(cluster, bad, match):
    with pytest.raises(kit.SerializationError, match=match):
        identity.remote(bad)
    serves_next()


def test_keyword_argument_named(cluster):
    @kit.remote
    def kw(x=None):
        return x

    with pytest.raises(kit.SerializationError, match="argument 'x' of kw"):
        kw.remote(x=threading.Lock())
    serves_next()


def test_argument_that_cannot_be_unpickled_on_worker(cluster):
    with pytest.raises(kit.SerializationError, match="could not be unpickled on the worker"):
        kit.get(identity.remote(FailsUnpickle()), timeout=30)
    serves_next()


@pytest.mark.parametrize(
    "maker, match",
    [
        (lambda: threading.Lock(), "result of make cannot be pickled"),
        (lambda: FailsPickle(), "result of make cannot be pickled"),
    ],
)
def test_result_that_cannot_be_pickled(cluster, maker, match):
    @kit.remote
    def make(m):
        return m()

    with pytest.raises(kit.SerializationError, match=match):
        kit.get(make.remote(maker), timeout=30)
    serves_next()


def test_result_that_cannot_be_unpickled_on_driver(cluster):
    @kit.remote
    def make():
        return FailsUnpickle()

    with pytest.raises(kit.SerializationError, match="could not be unpickled"):
        kit.get(make.remote(), timeout=30)
    serves_next()


def test_function_that_cannot_be_pickled(cluster):
    lock = threading.Lock()

    @kit.remote
    def uses_lock():
        with lock:
            return 1

    with pytest.raises(kit.SerializationError, match="function uses_lock cannot be pickled"):
        uses_lock.remote()
    serves_next()


def test_function_that_cannot_be_unpickled_on_worker(cluster):
    bad = FailsUnpickle()

    @kit.remote
    def holds_bad():
        return bad

    with pytest.raises(kit.SerializationError, match="could not be unpickled on the worker"):
        kit.get(holds_bad.remote(), timeout=30)
    serves_next()


def test_exception_with_unusual_constructor(cluster):
    @kit.remote
    def raise_odd():
        raise OddInitError(1, 2)

    with pytest.raises(kit.TaskError) as info:
        kit.get(raise_odd.remote(), timeout=30)
    assert info.value.cause_type == "OddInitError"
    assert "1/2" in str(info.value) and "raise OddInitError" in info.value.traceback_str
    serves_next()


def test_exception_that_cannot_be_pickled(cluster):
    @kit.remote
    def raise_locked():
        raise LockError("holding a lock")

    with pytest.raises(kit.TaskError) as info:
        kit.get(raise_locked.remote(), timeout=30)
    assert info.value.cause_type == "LockError" and "holding a lock" in str(info.value)
    serves_next()


def test_exception_whose_reduce_raises(cluster):
    class ReduceBoom(Exception):
        def __reduce__(self):
            raise RuntimeError("no")

    @kit.remote
    def raise_it():
        raise ReduceBoom("msg here")

    with pytest.raises(kit.TaskError, match="msg here"):
        kit.get(raise_it.remote(), timeout=30)
    serves_next()


def test_recursion_in_task(cluster):
    @kit.remote
    def recurse():
        def f(n):
            return f(n + 1)

        return f(0)

    with pytest.raises(RecursionError):
        kit.get(recurse.remote(), timeout=30)
    serves_next()


def test_get_after_shutdown_and_from_another_cluster(fresh):
    fresh(num_cpus=1)
    ref = ok.remote()
    kit.get(ref)
    kit.shutdown()
    with pytest.raises(kit.KitError, match="not initialized"):
        kit.get(ref)
    fresh(num_cpus=1)
    with pytest.raises(kit.ObjectLostError, match="does not exist in this cluster"):
        kit.get(ref, timeout=10)
    serves_next()


def test_non_ref_to_get(cluster):
    with pytest.raises(TypeError, match="ObjectRef"):
        kit.get([1, 2])


def test_task_returning_a_huge_object(fresh):
    """Results far larger than the object store (an array, and a plain list that pickles
    to tens of MiB) are written to the spill folder instead of failing."""
    import numpy as np

    from kit import object_store
    from kit.api import _current_client
    from kit.serialization import SHARED

    fresh(num_cpus=1, object_store_memory=8 << 20)

    @kit.remote
    def huge_array():
        return np.ones((64 << 20) // 8)

    @kit.remote
    def huge_list():
        return list(range(3_000_000))

    refs = [huge_array.remote(), huge_list.remote()]
    arr, lst = kit.get(refs, timeout=120)
    assert arr.nbytes == 64 << 20 and arr.sum() == (64 << 20) // 8
    assert len(lst) == 3_000_000 and lst[-1] == 2_999_999
    for ref in refs:
        payload = _current_client().values[ref._id]
        assert payload[0] == SHARED and object_store.is_spilled(payload[2])
    serves_next()
