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


def shm_bytes(cluster_id, pool=False):
    """Bytes of the cluster's files in shared memory: its objects (and ledger), and with
    ``pool`` the freed files its nodes keep for reuse (kit/page_pool.py) too."""
    total = 0
    for f in os.listdir("/dev/shm"):
        if f.startswith(f"kit_{cluster_id}_"):
            path = os.path.join("/dev/shm", f)
            try:
                if f.endswith("_pool"):
                    if pool:
                        total += sum(e.stat().st_size for e in os.scandir(path))
                else:
                    total += os.stat(path).st_size
            except FileNotFoundError:  # taken or freed while we looked
                pass
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
        peak = max(peak, shm_bytes(cid, pool=True))
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
    cid = kit.api._state["client"].cluster
    prefix = f"kit_{cid}_"
    peak, stop = [0], threading.Event()

    def sample():  # the measurement: shared memory held by this cluster, as often as possible
        while not stop.is_set():
            peak[0] = max(peak[0], shm_bytes(cid, pool=True))

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


# ---- the pool of recycled files (kit/page_pool.py) ---------------------------------------


def file_of(ref):
    """The path of the shared-memory file holding a put's value (its payload, not mapped)."""
    kit.wait([ref], timeout=10)
    return object_store.path_of(kit.api._current_client().values[ref._id][2])


def pool_inodes(cid, node="n0"):
    folder = object_store.path_of(f"kit_{cid}_{node}_pool")
    return {e.stat().st_ino for e in os.scandir(folder)}


def node_ledger(cid, node="n0"):
    """The node's ledger, open here (its agent makes it just after joining)."""
    from kit.ledger import Ledger

    path = object_store.path_of(f"kit_{cid}_{node}_ledger")
    return wait_until(lambda: Ledger.open(path), 10, "the node's ledger")


def test_a_freed_file_is_taken_by_the_next_put_of_its_size(cluster):
    """A dropped object's file goes to its node's pool and the next put of about its
    size writes over the same pages (the same inode); the ledger counts objects and
    pool alike, so it always matches what shared memory holds."""
    cid = cluster_id()
    ledger = node_ledger(cid)
    counted = lambda: ledger.used() == shm_bytes(cid, pool=True) - 8  # noqa: E731 (the ledger file)
    first = kit.put(np.full(4 * MiB // 8, 1.0))
    ino = os.stat(file_of(first)).st_ino
    wait_until(counted, 10, "the ledger to count what shared memory holds")
    del first
    wait_until(lambda: ino in pool_inodes(cid), 10, "the freed file in the node's pool")
    assert counted(), "a file in the pool is still counted"
    second = kit.put(np.full(4 * MiB // 8, 2.0))
    assert os.stat(file_of(second)).st_ino == ino, "the second put made a new file"
    assert ino not in pool_inodes(cid)
    assert counted()
    assert (kit.get(second) == 2.0).all()
    del second
    wait_until(lambda: ino in pool_inodes(cid), 10, "the file back in the pool")
    assert counted()


def test_a_view_kept_after_its_ref_is_dropped_keeps_its_contents(cluster):
    """``arr = kit.get(ref); del ref``, in the driver and in an actor: the object is
    freed while they map it; its file must not be recycled, or the next puts would
    write into ``arr``. Files nobody maps are recycled meanwhile."""
    cid = cluster_id()
    n = 4 * MiB // 8

    @kit.remote
    class Keeper:
        def keep(self, a):
            self.a = a  # a zero-copy view of the argument's file, kept past the task
            return True

        def total(self):
            return float(self.a.sum())

    keeper = Keeper.remote()
    held = kit.put(np.arange(n, dtype=np.float64))
    arr = kit.get(held)
    assert kit.get(keeper.keep.remote(held))
    mapped = os.stat(file_of(held)).st_ino
    path = file_of(held)
    del held
    wait_until(lambda: not os.path.exists(path), 10, "the object to be freed")
    assert mapped not in pool_inodes(cid), "a file still mapped went to the pool"
    reused = set()
    for i in range(6):  # puts of the same size: they take the pool's files
        r = kit.put(np.full(n, -1.0 - i))
        ino = os.stat(file_of(r)).st_ino
        reused.add(ino)
        assert ino != mapped
        del r
        wait_until(lambda ino=ino: ino in pool_inodes(cid), 10, "the put's file in the pool")
    assert len(reused) < 6, "no put took a file from the pool"
    assert np.array_equal(arr, np.arange(n, dtype=np.float64)), "a kept view changed"
    assert kit.get(keeper.total.remote()) == float(n * (n - 1) // 2)
    kit.kill(keeper)


def test_the_pool_at_the_store_level(tmp_path):
    """The writer, reader and agent sides of the pool without a cluster: a mapped file is
    unlinked, not recycled; an unmapped one is; a reader who opened a file just before
    it was recycled finds it gone instead of reading the next object."""
    from kit.ledger import Ledger
    from kit.page_pool import Pool

    prefix = f"kit_{os.getpid()}xpooltest_n0_"
    ledger = Ledger.create(object_store.path_of(prefix + "ledger"))
    pool = Pool(object_store.path_of(prefix + "pool"), ledger, 64 * MiB)
    data = [memoryview(np.full(MiB, i, dtype=np.uint8)) for i in range(3)]
    names = [prefix + os.urandom(12).hex() for _ in range(3)]
    try:
        size = object_store.write(names[0], b"m", [data[0]], ledger=ledger, limit=64 * MiB)
        view = object_store.read(names[0])[1][0]  # mapped: holds the shared lock
        pool.free(object_store.path_of(names[0]))
        assert pool.used() == 0 and ledger.used() == 0  # unlinked, given back
        object_store.write(names[1], b"m", [data[1]], ledger=ledger, limit=64 * MiB)
        ino = os.stat(object_store.path_of(names[1])).st_ino
        object_store.read(names[1])  # mapped and dropped at once: the lock goes with it
        fd = os.open(object_store.path_of(names[1]), os.O_RDONLY)  # a reader, not yet locked
        st = os.fstat(fd)
        pool.free(object_store.path_of(names[1]))
        assert pool.used() == size and ledger.used() == size  # recycled, still counted
        assert not object_store._hold(fd, object_store.path_of(names[1]), st)
        os.close(fd)
        with pytest.raises(FileNotFoundError):
            object_store.read(names[1])
        object_store.write(names[2], b"m", [data[2]], ledger=ledger, limit=64 * MiB)
        assert os.stat(object_store.path_of(names[2])).st_ino == ino
        assert pool.used() == 0 and ledger.used() == size
        assert bytes(object_store.read(names[2])[1][0][:3]) == b"\x02\x02\x02"
        assert bytes(view[:3]) == b"\x00\x00\x00", "a mapped object changed"
        pool.free(object_store.path_of(names[2]))
        pool.trim(float("inf"))  # idle for ever: unlinked
        assert pool.used() == 0 and ledger.used() == 0
    finally:
        ledger.close()
        object_store.sweep(prefix)
    assert not [f for f in os.listdir("/dev/shm") if f.startswith(prefix)]


def test_a_pulled_copy_takes_a_file_from_its_nodes_pool(fresh):
    """A copy pulled to another node is recycled there like any object, and the next
    pull of about its size writes into the same file."""
    fresh(num_nodes=2, num_cpus=1)
    cid = cluster_id()
    client = kit.api._current_client()
    here, tag = client.node_id.hex(), "n1" if client.node_tag == "n0" else "n0"
    there = kit.NodeAffinitySchedulingStrategy(
        next(n["NodeID"] for n in kit.nodes() if n["NodeID"] != here)
    )
    n = 4 * MiB // 8

    @kit.remote
    def first(a):
        return float(a[0])

    def copies():
        prefix = f"kit_{cid}_{tag}_"
        return {
            os.stat(object_store.path_of(f)).st_ino
            for f in os.listdir("/dev/shm")
            if f.startswith(prefix) and len(f) == len(prefix) + 24
        }

    r = kit.put(np.full(n, 1.0))
    assert kit.get(first.options(scheduling_strategy=there).remote(r)) == 1.0
    (copy,) = copies()
    del r
    wait_until(lambda: copy in pool_inodes(cid, tag), 10, "the copy in its node's pool")
    r = kit.put(np.full(n, 2.0))
    assert kit.get(first.options(scheduling_strategy=there).remote(r)) == 2.0
    assert copies() == {copy}, "the second pull made a new file"
