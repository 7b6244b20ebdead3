"""The shared-memory object store: zero copy, one copy per put, freeing, spilling."""

import os
import threading

import numpy as np
import psutil
import pytest
from helpers import wait_until

import kit
from kit import object_store, paths

pytestmark = pytest.mark.cluster

MiB = 1 << 20


def shm_bytes(cluster_id):
    total = 0
    for f in os.listdir("/dev/shm"):
        if f.startswith(f"kit_{cluster_id}_"):
            total += os.stat(os.path.join("/dev/shm", f)).st_size
    return total


def cluster_id():
    return kit.api._current_client().cluster


def test_small_values_inline_large_in_shared_memory(cluster):
    before = shm_bytes(cluster_id())
    small = kit.put(np.zeros(100))
    assert shm_bytes(cluster_id()) == before
    big = kit.put(np.zeros(MiB // 8 * 4))
    assert shm_bytes(cluster_id()) >= before + 4 * MiB
    del small, big


def test_task_reads_array_without_copy(cluster):
    arr = np.arange(4 * MiB // 8, dtype=np.float64)
    ref = kit.put(arr)

    @kit.remote
    def inspect(a):
        import mmap  # noqa: F401

        base = a
        while getattr(base, "base", None) is not None and not isinstance(base, memoryview):
            base = base.base
        return (a.flags.writeable, a.flags.owndata, float(a[12345]), type(base).__name__)

    writeable, owndata, v, base = kit.get(inspect.remote(ref))
    assert not writeable and not owndata and v == 12345.0
    got = kit.get(ref)
    assert not got.flags.writeable and np.array_equal(got, arr)


def test_put_100mib_read_by_four_tasks_copies_once(cluster):
    cid = cluster_id()
    base = shm_bytes(cid)
    arr = np.ones(100 * MiB // 8)
    ref = kit.put(arr)

    @kit.remote
    def total(a):
        return float(a.sum())

    assert kit.get([total.remote(ref) for _ in range(4)]) == [100 * MiB / 8] * 4
    sizes = sorted(
        os.stat(os.path.join("/dev/shm", f)).st_size
        for f in os.listdir("/dev/shm")
        if f.startswith(f"kit_{cid}_")
    )
    assert sizes[-1] >= 100 * MiB  # the array, once
    assert shm_bytes(cid) - base < 101 * MiB, "the array was copied more than once"
    del ref
    wait_until(lambda: shm_bytes(cid) <= base, 10, "the array to be freed after its last ref went")


def test_large_result_goes_to_shared_memory(cluster):
    @kit.remote
    def make():
        return np.full(2 * MiB, 7, dtype=np.uint8)

    a = kit.get(make.remote())
    assert a.sum() == 14 * MiB and not a.flags.writeable


def test_memory_stays_flat_over_put_drop_cycles(cluster):
    """100 MiB arrays put, read and dropped again and again: memory stays flat."""
    cid = cluster_id()
    arr = np.ones(100 * MiB // 8)
    me = psutil.Process()
    base = shm_bytes(cid)
    for _ in range(3):  # warm up the driver's buffers (rss)
        kit.get(kit.put(arr))
    wait_until(lambda: shm_bytes(cid) <= base, 10, "the warm-up arrays to be freed")
    rss0 = me.memory_info().rss
    peak = 0
    for _ in range(40):
        r = kit.put(arr)
        kit.get(r)
        del r
        peak = max(peak, shm_bytes(cid))
    wait_until(lambda: shm_bytes(cid) <= base, 10, "the arrays to be freed")
    assert peak - base < 400 * MiB, f"{peak / MiB:.0f} MiB in shared memory at once"
    assert me.memory_info().rss - rss0 < 150 * MiB


def test_ref_inside_object_keeps_it_alive(cluster):
    inner = kit.put(np.arange(MiB))
    inner_id = inner.binary()
    outer = kit.put({"inner": inner})
    del inner
    client = kit.api._current_client()
    info = client.query("object_info", inner_id)
    assert info is not None and info["pins"] >= 1
    assert kit.get(kit.get(outer)["inner"])[5] == 5


def test_spill_to_disk_and_back(fresh):
    fresh(num_cpus=1, object_store_memory=20 * MiB)
    refs = [kit.put(np.full(8 * MiB // 8, i, dtype=np.float64)) for i in range(6)]
    client = kit.api._current_client()
    wait_until(
        lambda: client.query("status")["counts"].get("spilled", 0) > 0, 10, "a spill to be counted"
    )

    def spilled():
        try:
            return [
                f
                for f in os.listdir(paths.spill_dir(create=False))
                if f.startswith(f"kit_{client.cluster}") and not f.endswith(".part")
            ]
        except FileNotFoundError:
            return []

    wait_until(spilled, 10, "a file in the spill folder")

    @kit.remote
    def first(a):
        return float(a[0])

    assert kit.get([first.remote(r) for r in refs]) == [float(i) for i in range(6)]


def test_value_larger_than_store_spills_rather_than_failing(fresh):
    fresh(num_cpus=1, object_store_memory=4 * MiB)
    ref = kit.put(np.ones(8 * MiB // 8))
    assert kit.get(ref).sum() == 8 * MiB // 8


def test_store_write_and_read_roundtrip():
    name = f"kit_{os.getpid()}xtest_n0_{os.urandom(4).hex()}"
    try:
        object_store.write(name, b"meta", [memoryview(b"abcdef")])
        meta, bufs = object_store.read(name)
        assert meta == b"meta" and bytes(bufs[0]) == b"abcdef"
        assert object_store.spill(name) and object_store.is_spilled(name)
        assert bytes(object_store.read(name)[1][0]) == b"abcdef"
    finally:
        object_store.unlink(name)
    with pytest.raises(FileNotFoundError):
        object_store.read(name)


def test_the_store_limit_holds_when_objects_are_written(fresh):
    """Three times the limit in puts and task results, all kept alive: shared memory
    never holds more than the limit at any moment (it used to reach five times it
    before spilling caught up); what does not fit is written to disk, and every value
    reads back right."""
    limit = 40 << 20
    fresh(num_cpus=2, object_store_memory=limit)
    prefix = f"kit_{kit.api._state['client'].cluster}_"
    peak, stop = [0], threading.Event()

    def sample():  # the measurement: shared memory held by this cluster, as often as possible
        while not stop.is_set():
            used = 0
            for f in os.listdir("/dev/shm"):
                if f.startswith(prefix):
                    try:
                        used += os.stat(os.path.join("/dev/shm", f)).st_size
                    except FileNotFoundError:
                        pass
            peak[0] = max(peak[0], used)

    @kit.remote
    def make(i):
        return np.full(1 << 19, i, dtype=np.int64)  # 4 MiB

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        puts = [kit.put(np.full(1 << 19, -i, dtype=np.int64)) for i in range(15)]
        made = [make.remote(i) for i in range(15)]
        values = kit.get(puts + made, timeout=120)
    finally:
        stop.set()
        sampler.join()
    assert all((v == -i).all() for i, v in enumerate(values[:15]))
    assert all((v == i).all() for i, v in enumerate(values[15:]))
    assert peak[0] <= limit + 8, f"shared memory reached {peak[0] / 2**20:.1f} MiB"
    spilled = os.listdir(paths.spill_dir(create=False))
    assert any(f.startswith(prefix) for f in spilled)  # the rest went to disk
