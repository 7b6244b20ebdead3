"""Tasks, refs, get/wait/put and errors on a real local cluster."""

import asyncio
import concurrent.futures
import os
import pickle
import re
import time

import pytest
from helpers import latest_event, wait_tasks, wait_until

import kit

pytestmark = pytest.mark.cluster


@kit.remote
def square(x):
    return x * x


@kit.remote
def add(a, b):
    return a + b


@kit.remote
def boom(msg):
    raise ValueError(msg)


def test_remote_returns_ref_at_once_and_get(cluster):
    @kit.remote
    def slow(seconds):
        time.sleep(seconds)  # still running when the test looks at its ref
        return 7

    ref = slow.remote(30)
    assert isinstance(ref, kit.ObjectRef)
    assert kit.wait([ref], timeout=0) == ([], [ref])  # returned before the value exists
    kit.cancel(ref)
    assert kit.get(slow.remote(0)) == 7


def test_map_and_order(cluster):
    assert kit.get([square.remote(i) for i in range(4)]) == [0, 1, 4, 9]
    assert kit.get([square.remote(i) for i in range(500)]) == [i * i for i in range(500)]


def test_refs_as_top_level_args_become_values(cluster):
    a, b = square.remote(3), square.remote(4)
    assert kit.get(add.remote(a, b)) == 25
    assert kit.get(add.remote(a, b=b)) == 25


def test_nested_refs_stay_refs(cluster):
    @kit.remote
    def kinds(xs, d):
        return (
            [type(x).__name__ for x in xs],
            type(d["k"]).__name__,
            kit.get(xs[0]) + kit.get(d["k"]),
        )

    r = square.remote(2)
    kinds_, dk, total = kit.get(kinds.remote([r], {"k": r}))
    assert kinds_ == ["ObjectRef"] and dk == "ObjectRef" and total == 8


def test_tree_aggregation(cluster):
    values = [kit.put(i) for i in range(1, 65)]
    while len(values) > 1:
        values = values[2:] + [add.remote(values[0], values[1])]
    assert kit.get(values[0]) == sum(range(1, 65))


def test_num_returns(cluster):
    @kit.remote(num_returns=3)
    def three():
        return 1, 2, 3

    refs = three.remote()
    assert len(refs) == 3 and kit.get(refs) == [1, 2, 3]
    with pytest.raises(kit.TaskError):
        kit.get(three.options(num_returns=2).remote())


def test_options_and_direct_call_error(cluster):
    assert kit.get(square.options(num_cpus=1, name="sq").remote(5)) == 25
    with pytest.raises(TypeError, match=r"\.remote"):
        square(3)
    with pytest.raises(ValueError, match="unknown option"):
        square.options(bogus=1)


def test_put_get_and_ref_in_value(cluster):
    inner = kit.put({"a": 1})
    outer = kit.put([inner, 2])
    got = kit.get(outer)
    assert isinstance(got[0], kit.ObjectRef)
    assert kit.get(got[0]) == {"a": 1}
    with pytest.raises(TypeError):
        kit.put(inner)


def test_get_timeout(cluster):
    @kit.remote
    def sleepy():
        time.sleep(3)  # still running when get gives up

    r = sleepy.remote()
    with pytest.raises(kit.GetTimeoutError):
        kit.get(r, timeout=0.2)
    kit.cancel(r)


def test_wait_keeps_order_and_timeout(cluster):
    @kit.remote
    def sleep_then(t, v):
        time.sleep(t)  # ready in the order of their sleeps; the 10 s one is not, in time
        return v

    refs = [sleep_then.remote(0.01, 0), sleep_then.remote(10.0, 1), sleep_then.remote(0.02, 2)]
    ready, rest = kit.wait(refs, num_returns=2, timeout=5)
    assert ready == [refs[0], refs[2]] and rest == [refs[1]]
    ready, rest = kit.wait([refs[1]], num_returns=1, timeout=0.05)
    assert ready == [] and rest == [refs[1]]
    with pytest.raises(ValueError):
        kit.wait(refs, num_returns=4)
    kit.cancel(refs[1])


def test_task_error_is_users_class_with_traceback(cluster):
    with pytest.raises(ValueError) as info:
        kit.get(boom.remote("bad input"))
    err = info.value
    assert isinstance(err, kit.TaskError)
    assert "bad input" in str(err)
    assert err.function == "boom" and err.pid > 0 and err.node_id
    assert "raise ValueError(msg)" in err.traceback_str
    assert isinstance(err.__cause__, Exception) and "Traceback" in str(err.__cause__)
    # the user's frames only (not kit's worker), and the node as the monitor names it
    assert "kit/worker.py" not in err.traceback_str and "_execute" not in err.traceback_str
    assert err.traceback_str.splitlines()[1].startswith(f'  File "{__file__}"')
    tags = {n["NodeID"]: n["tag"] for n in kit.nodes()}
    assert err.node_tag == tags[err.node_id] and f"node {err.node_tag})" in str(err)
    again = pickle.loads(pickle.dumps(err))  # the tag travels with the error
    assert again.node_tag == err.node_tag and str(again) == str(err)


def test_dependents_of_failed_task_fail_without_running(cluster):
    @kit.remote
    def record(x):
        return "ran"

    bad = boom.remote("first")
    dep = record.remote(bad)
    with pytest.raises(ValueError, match="first"):
        kit.get(dep)


def test_nested_tasks_on_one_slot_do_not_deadlock(fresh):
    fresh(num_cpus=1)

    @kit.remote
    def depth(n):
        if n == 0:
            return 0
        return kit.get(depth.remote(n - 1)) + 1

    assert kit.get(depth.remote(4), timeout=60) == 4


def test_cancel_queued_and_running(cluster):
    @kit.remote
    def long():
        time.sleep(30)  # still running when cancelled
        return "finished"

    running = [long.remote() for _ in range(2)]
    queued = long.remote()
    for r in running:  # the two slots are taken: the third waits in the queue
        wait_tasks(r, "running")
    kit.cancel(queued)
    for r in running:
        kit.cancel(r)
    for r in running + [queued]:
        with pytest.raises(kit.TaskCancelledError):
            kit.get(r, timeout=5)
    # the slots came back
    assert kit.get(square.remote(3), timeout=10) == 9


def _rebuilt_slowly(value):
    time.sleep(30)  # still being unpickled on the worker when the task is cancelled
    return value


class SlowToUnpickle:
    def __reduce__(self):
        return _rebuilt_slowly, (1,)


def test_cancel_while_the_arguments_are_unpickled(cluster):
    """kit.cancel's interrupt may come while the worker unpickles the task's arguments:
    the task is cancelled, not failed with a SerializationError (a dask graph's cancelled
    tasks showed as failed about 3 runs in 4 once local modules were shipped)."""

    @kit.remote
    def takes(x):
        return x

    ref = takes.remote(SlowToUnpickle())
    wait_tasks(ref, "running")
    kit.cancel(ref)
    with pytest.raises(kit.TaskCancelledError):
        kit.get(ref, timeout=10)
    wait_tasks(ref, "cancelled")


@kit.remote
def child_sleeper():
    time.sleep(2)  # running when its parent is cancelled; left alone, it ends by itself
    return "child finished"


@kit.remote
def parent_of_sleeper(_):
    child = child_sleeper.remote()
    time.sleep(30)  # running when it is cancelled
    return kit.get(child)


def _states(label, since):
    return [e["state"] for e in kit.events(since)[1] if e["label"] == label]


@pytest.mark.parametrize("recursive", [True, False])
def test_cancel_reaches_the_tasks_a_task_submitted(fresh, recursive):
    fresh(num_cpus=2)
    since = latest_event()
    parent = parent_of_sleeper.remote(recursive)
    wait_tasks("child_sleeper", "running", since=since)
    kit.cancel(parent, recursive=recursive)
    with pytest.raises(kit.TaskCancelledError):
        kit.get(parent, timeout=10)
    # either the child was cancelled with its parent, or it runs to its end
    wait_tasks("child_sleeper", "cancelled" if recursive else "finished", since=since)
    child_states = _states("child_sleeper", since)
    assert ("cancelled" in child_states) == recursive, child_states


def test_force_cancel_kills_worker(cluster):
    @kit.remote
    def stuck():
        while True:
            pass

    r = stuck.remote()
    wait_tasks(r, "running")
    kit.cancel(r, force=True)
    with pytest.raises(kit.TaskCancelledError):
        kit.get(r, timeout=10)
    assert kit.get(square.remote(6), timeout=10) == 36


def test_ref_hashable_picklable_future_awaitable(cluster):
    r = square.remote(9)
    assert {r: 1}[r] == 1
    r2 = pickle.loads(pickle.dumps(r))
    assert r2 == r and kit.get(r2) == 81
    fut = square.remote(10).future()
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(timeout=10) == 100

    async def main():
        return await square.remote(11)

    assert asyncio.run(main()) == 121


def test_future_carries_error(cluster):
    fut = boom.remote("via future").future()
    with pytest.raises(ValueError, match="via future"):
        fut.result(timeout=10)


def test_print_reaches_driver(cluster, capfd):
    @kit.remote
    def talk(i):
        print(f"line from task {i}")
        return i

    kit.get([talk.remote(i) for i in range(3)])
    seen = []

    def all_printed():
        seen.append(capfd.readouterr().out)
        return all(f"line from task {i}" in "".join(seen) for i in range(3))

    wait_until(all_printed, 5, lambda: f"the three lines in the driver's output: {seen}")
    assert "(talk pid=" in "".join(seen)
    tags = {n["tag"] for n in kit.nodes()}  # lines name their node by tag, as the monitor does
    assert re.findall(r"\(talk pid=\d+, node=(\S+)\)", "".join(seen))[0] in tags


def test_runtime_context(cluster):
    @kit.remote
    def where():
        ctx = kit.get_runtime_context()
        return ctx.get_node_id(), ctx.get_worker_id(), ctx.get_task_id()

    node, worker, task = kit.get(where.remote())
    assert node in [n["NodeID"] for n in kit.nodes()]
    assert worker and task


def test_nodes_and_resources(cluster):
    ns = kit.nodes()
    assert len(ns) == 1 and ns[0]["Alive"]
    assert kit.cluster_resources()["CPU"] == 2.0
    assert 0 <= kit.available_resources().get("CPU", 0) <= 2.0


def test_custom_resources_and_node_pinning(fresh):
    fresh(num_cpus=2, resources={"gadget": 1})
    assert kit.cluster_resources()["gadget"] == 1.0

    @kit.remote(resources={"gadget": 1})
    def uses_gadget():
        return "ok"

    assert kit.get(uses_gadget.remote()) == "ok"
    node = kit.nodes()[0]["NodeID"]
    strat = kit.NodeAffinitySchedulingStrategy(node_id=node, soft=False)
    assert kit.get(square.options(scheduling_strategy=strat).remote(3)) == 9


def test_second_init_raises_unless_ignored(cluster):
    with pytest.raises(kit.KitError, match="ignore_reinit_error"):
        kit.init()
    assert kit.init(ignore_reinit_error=True) is not None


def test_remote_before_init_starts_a_cluster():
    import subprocess
    import sys

    code = (
        "import kit\n"
        "@kit.remote\n"
        "def f(): return 5\n"
        "print(kit.get(f.remote()), kit.is_initialized())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "5 True", out.stderr


def test_output_routed_from_the_first_line(cluster, capfd):
    """kit.logs.capture routes a task's output before the task is sent: no line escapes."""

    @kit.remote
    def shout(i):
        print(f"first line of {i}")
        return i

    got = {}
    refs = []
    for i in range(100):
        with kit.logs.capture(lambda stream, text, i=i: got.setdefault(i, []).append(text)):
            refs.append(shout.remote(i))
    kit.get(refs)
    wait_until(lambda: len(got) == 100, 10, lambda: f"a line from each task, got {len(got)}")
    for r in refs:
        kit.logs.unroute(r.task_id())
    assert all(got[i] == [f"first line of {i}"] for i in range(100))
    assert "first line of" not in capfd.readouterr().out


# ---- ref arguments on the direct path (kit.lease resolves them in the driver) --------


def _head_knows(ref) -> bool:
    return kit.api._current_client().query("object_info", ref._id) is not None


def test_a_tree_of_direct_results_never_crosses_the_head(cluster):
    """Small results of this driver's direct tasks, passed to its next tasks, go from
    the driver to the workers itself: a tree of adds is right, and the head never holds
    its intermediate results (temporaries the driver dropped at once included)."""
    leaves = [square.remote(i) for i in range(64)]
    level = leaves
    while len(level) > 1:
        level = [add.remote(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    assert kit.get(level[0], timeout=30) == sum(i * i for i in range(64))
    assert not any(_head_knows(r) for r in leaves)
    chain = square.remote(2)
    for _ in range(20):
        chain = add.remote(chain, 1)  # each waits in the driver for the one before
    assert kit.get(chain, timeout=30) == 24


def test_large_and_failed_ref_arguments_on_the_direct_path(cluster):
    """A large result lives in the head's store: the tasks waiting for it in the driver
    (and the ones waiting for those) take the head's path. A failed one fails the tasks
    that wait for it with its error, as on the head's path."""
    np = pytest.importorskip("numpy")

    @kit.remote
    def big(i):
        return np.full(200_000, i, dtype=np.int64)  # 1.6 MB: shared memory

    level = [big.remote(i) for i in range(8)]
    while len(level) > 1:
        level = [add.remote(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    assert int(kit.get(level[0], timeout=30)[0]) == sum(range(8))

    @kit.remote
    def boom():
        raise ValueError("boom")

    failed = add.remote(add.remote(boom.remote(), 1), 2)
    with pytest.raises(ValueError, match="boom"):
        kit.get(failed, timeout=30)


def test_cancel_a_task_waiting_for_its_ref_arguments(cluster):
    """A direct task waiting in the driver for a running task's result is cancelled
    there: it never runs, and the task that waits for it fails the same way."""

    @kit.remote
    def slow():
        time.sleep(30)  # still running when the waiting task is cancelled
        return 1

    first = slow.remote()
    waiting = add.remote(first, 1)
    after = add.remote(waiting, 1)
    wait_tasks(first, "running")
    kit.cancel(waiting)
    for r in (waiting, after):
        with pytest.raises(kit.TaskCancelledError):
            kit.get(r, timeout=10)
    kit.cancel(first)


def test_a_task_waiting_in_its_driver_for_its_arguments_is_shown_queued(cluster):
    """The views see a direct task wait in its driver for its ref arguments (queued, as on
    the head's path), counted once, whether it then runs direct or on the head's path."""
    np = pytest.importorskip("numpy")

    @kit.remote
    def slow(x):
        time.sleep(0.5)  # running while the task after it waits in the driver
        return x

    def submitted():
        return kit.cluster_status()["counts"]["submitted"]

    for arg in (1, np.zeros(200_000)):  # small: runs direct; 1.6 MB: the head's path
        before = submitted()
        first = slow.remote(arg)
        waiting = add.remote(first, 1)
        kit.get(waiting, timeout=30)
        (made,) = wait_tasks(first, "finished")
        (queued,) = wait_tasks(waiting, "queued")
        assert queued["seq"] < made["seq"]  # shown while it waited, not once it was sent
        _, events = kit.events(queued["seq"] - 1)
        states = [e["state"] for e in events if e["task_id"] == queued["task_id"]]
        assert states == ["queued", "running", "finished"], states
        assert submitted() == before + 2


# ---- a worker's batched results, and submission order with the head's path ----------


@kit.remote
def until_exists(path=None, *_):
    """Returns at once, or when ``path`` exists (the test creates it)."""
    while path is not None and not os.path.exists(path):
        time.sleep(0.01)  # the task's own duration: it runs until the test says
    return path


@pytest.mark.parametrize("path", ["direct", "head"])
def test_a_fast_result_does_not_wait_for_a_slow_task_behind_it(fresh, tmp_path, path):
    """One worker, a short task queued before a long one of the same (short) function:
    the short one's result reaches the driver while the long one still runs (as in
    Ray's test_wait), on the direct path and on the head's."""
    fresh(num_cpus=1)
    extra = (kit.put("a put argument: the head's path"),) if path == "head" else ()
    kit.get([until_exists.remote(None, *extra) for _ in range(50)], timeout=60)  # known short
    gate = str(tmp_path / "gate")
    fast = until_exists.remote(None, *extra)
    slow = until_exists.remote(gate, *extra)
    try:
        ready, _ = kit.wait([fast, slow], num_returns=1, timeout=30)
        assert ready == [fast]
        assert not kit.wait([slow], timeout=0)[0]  # the long task is still running
    finally:
        open(gate, "w").close()
    assert kit.get(slow, timeout=30) == gate


def test_plain_tasks_go_direct_again_once_a_head_path_task_is_dispatched(fresh, tmp_path):
    """A plain task after a head-path task follows it to the head only until the head
    has dispatched it, not until its result is read: here the head-path task runs on
    (it waits for a file) and the driver's next tasks take the direct path again."""
    fresh(num_cpus=2)
    direct = kit.api._current_client().direct
    kit.get([until_exists.remote() for _ in range(10)], timeout=30)  # leases held
    gate = str(tmp_path / "gate")
    long = until_exists.remote(gate, kit.put(1))  # a put argument: the head's path
    try:
        assert wait_until(lambda: not direct.behind_head(), timeout=30)
        assert not kit.wait([long], timeout=0)[0]  # it still runs
        fid = until_exists._ensure_blob()
        before = direct.stats[fid][0]
        kit.get([until_exists.remote() for _ in range(10)], timeout=30)
        assert direct.stats[fid][0] == before + 10  # they ran on the direct path
    finally:
        open(gate, "w").close()
    assert kit.get(long, timeout=30) == gate


_POOLS = """
import os, kit, threadpoolctl
kit.init(num_cpus=2)

@kit.remote
def pools():
    import numpy  # its BLAS pool
    import threadpoolctl
    sizes = sorted({p["num_threads"] for p in threadpoolctl.threadpool_info()})
    return sizes, os.environ["OMP_NUM_THREADS"]

print(kit.get(pools.remote(), timeout=60))
print(kit.get(pools.options(num_cpus=2).remote(), timeout=60))
print(kit.get(pools.remote(), timeout=60))
kit.shutdown()
"""


@pytest.mark.timeout(120)
def test_native_thread_pools_follow_the_tasks_cpus():
    """numpy's BLAS pool in a worker has one thread per CPU the task holds (as in Ray):
    1 by default, 2 for num_cpus=2, and 1 again for the next default task. A driver of
    its own, without the thread variables (a test before may have set them here: Ray's
    init does, and a user's setting is kept)."""
    pytest.importorskip("numpy")
    import subprocess
    import sys

    from kit.native_threads import VARS

    env = {k: v for k, v in os.environ.items() if k not in VARS}
    r = subprocess.run(
        [sys.executable, "-c", _POOLS], env=env, capture_output=True, text=True, timeout=100
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split("\n")[:3] == ["([1], '1')", "([2], '2')", "([1], '1')"], r.stdout
