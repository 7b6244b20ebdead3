"""Where kit behaved differently from Ray in Ray's own tests (issue 18): each one here.

Handles and pending calls, async actors' plain methods, constructor errors, argument
checks at the call, decorator errors, class attributes, kill with restart, racing
drivers, placement on 0 CPUs, submission order on 1 CPU, calls that wait for no other's
arguments, restarts of an actor that died before it was up; ray.util's ActorPool, Queue,
state and cluster_utils.Cluster on kit.
"""

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from helpers import stays_true, wait_until

import kit
from kit.ray._common.test_utils import SignalActor
from kit.ray.util import ActorPool
from kit.ray.util.queue import Empty, Queue
from kit.ray.util.state import (
    get_node,
    get_task,
    list_actors,
    list_nodes,
    list_tasks,
    summarize_objects,
    summarize_tasks,
)

pytestmark = pytest.mark.cluster

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@kit.remote
class Slow:
    LIMIT = 5

    def __init__(self, fail=None):
        if fail:
            raise ValueError(fail)

    def nap(self, seconds, value):
        time.sleep(seconds)
        return value

    def limit(self):
        return Slow.LIMIT  # the class's attribute, through its name

    def pid(self):
        return os.getpid()

    @staticmethod
    def twice(x):
        return 2 * x


def _state(aid_hex):
    rows = [a for a in list_actors(limit=10_000) if a["actor_id"] == aid_hex]
    return rows[0]["state"] if rows else None


def test_pending_calls_finish_before_a_dropped_actor_dies(cluster):
    a = Slow.remote()
    aid = a._aid.hex()
    refs = [a.nap.remote(0.3, i) for i in range(3)]
    del a  # the last handle: Ray runs the calls already made first
    assert kit.get(refs, timeout=30) == [0, 1, 2]
    wait_until(lambda: _state(aid) == "DEAD", 10, "the dropped actor to die")


@kit.remote
class Flag:
    def __init__(self):
        import asyncio

        self.event = asyncio.Event()

    async def wait(self):
        await self.event.wait()
        return "woken"

    def set(self):  # a plain method of an async actor: on the loop's thread, as in Ray
        self.event.set()
        return threading.current_thread().name


def test_plain_methods_of_async_actors_run_on_the_event_loop(cluster):
    f = Flag.remote()
    waiting = f.wait.remote()
    assert not kit.wait([waiting], timeout=0.3)[0]
    assert kit.get(f.set.remote(), timeout=30) == "kit-actor-loop"
    assert kit.get(waiting, timeout=30) == "woken"


def test_a_constructor_error_keeps_its_text_and_cause(cluster):
    a = Slow.remote(fail="oops 42")
    with pytest.raises(kit.ActorDiedError, match="oops 42") as info:
        kit.get(a.limit.remote(), timeout=30)
    assert isinstance(info.value.__cause__, ValueError)
    assert "oops 42" in str(info.value.__cause__)


def test_wrong_arguments_raise_at_the_call(cluster):
    @kit.remote
    def two(a, b=1):
        return a + b

    with pytest.raises(TypeError, match="two.remote"):
        two.remote(1, 2, 3)
    with pytest.raises(TypeError, match="missing"):
        two.remote()
    with pytest.raises(TypeError, match="unexpected keyword"):
        two.remote(1, c=3)
    with pytest.raises(TypeError):
        Slow.remote(1, 2)  # __init__ takes one
    a = Slow.remote()
    with pytest.raises(TypeError, match="Slow.nap.remote"):
        a.nap.remote(1)
    assert kit.get(two.remote(1, b=2)) == 3
    assert kit.get(a.twice.remote(4), timeout=30) == 8  # a static method: no self


def test_decorator_misuse_and_oversized_functions_are_refused(cluster, monkeypatch):
    with pytest.raises(TypeError, match="empty parentheses"):
        kit.remote()
    with pytest.raises(TypeError, match="name"):
        Slow.options(name=object())
    from kit import remote_function

    monkeypatch.setattr(remote_function, "FUNCTION_SIZE_LIMIT", 1000)
    big = b"x" * 5000

    @kit.remote
    def captures():
        return len(big)

    with pytest.raises(ValueError, match="captures a large array"):
        captures.remote()


def test_class_attributes_through_the_class_name(cluster):
    assert kit.get(Slow.remote().limit.remote(), timeout=30) == 5
    assert Slow.LIMIT == 5 and Slow.twice(2) == 4  # on the actor class itself too


def test_kill_with_restart_restarts_then_dies(cluster):
    a = Slow.options(max_restarts=1).remote()
    first = kit.get(a.pid.remote(), timeout=30)
    kit.kill(a, no_restart=False)
    wait_until(lambda: _pid_or_none(a) not in (None, first), 20, "the restarted actor")
    kit.kill(a, no_restart=False)  # no restart left: it dies
    wait_until(lambda: _pid_or_none(a) is None, 20, "the actor to die")


def _pid_or_none(a):
    try:
        return kit.get(a.pid.remote(), timeout=10)
    except kit.ActorDiedError:
        return None


def test_exit_actor_and_ray_terminate(cluster):
    from kit.actors import exit_actor

    @kit.remote(max_restarts=3)
    class Quits:
        def quit(self):
            exit_actor()

        def ping(self):
            return "pong"

    q = Quits.remote()
    assert kit.get(q.__ray_ready__.remote(), timeout=30) is True
    with pytest.raises(kit.ActorDiedError, match="exit_actor"):
        kit.get(q.quit.remote(), timeout=30)
    with pytest.raises(kit.ActorDiedError):  # not restarted, whatever max_restarts says
        kit.get(q.ping.remote(), timeout=30)
    t = Quits.remote()
    last = t.ping.remote()
    t.__ray_terminate__.remote()  # after the calls made before it
    assert kit.get(last, timeout=30) == "pong"
    with pytest.raises(kit.ActorDiedError):
        kit.get(t.ping.remote(), timeout=30)


RACER = textwrap.dedent(
    """
    import os, sys, time
    import kit
    kit.init(address=sys.argv[1])

    @kit.remote
    class Holder:
        def pid(self):
            return os.getpid()

    open(sys.argv[2] + f".{os.getpid()}", "w").close()  # connected
    while not os.path.exists(sys.argv[2]):  # both start together
        time.sleep(0.001)
    try:
        h = Holder.options(name="only", lifetime="detached", get_if_exists=sys.argv[3] == "1")
        print("pid", kit.get(h.remote().pid.remote(), timeout=60))
    except ValueError as e:
        print("lost", e)
    kit.shutdown()
    """
)


@pytest.mark.parametrize("get_if_exists", [False, True])
def test_two_drivers_racing_for_a_detached_name(fresh, tmp_path, get_if_exists):
    ctx = fresh(num_cpus=2)
    script, go = tmp_path / "racer.py", tmp_path / "go"
    script.write_text(RACER)
    env = dict(os.environ, KIT_TOKEN=ctx.token, PYTHONPATH=ROOT)
    args = [sys.executable, str(script), ctx.address, str(go), "1" if get_if_exists else "0"]
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True) for _ in "ab"]
    wait_until(lambda: len(list(tmp_path.glob("go.*"))) == 2, 60, "both drivers connected")
    go.write_text("")
    outs = [p.communicate(timeout=120)[0] for p in procs]
    pids = [line.split()[1] for o in outs for line in o.splitlines() if line.startswith("pid")]
    lost = [line for o in outs for line in o.splitlines() if line.startswith("lost")]
    if get_if_exists:
        assert len(pids) == 2 and pids[0] == pids[1], outs  # both got the one actor
    else:
        assert len(pids) == 1 and len(lost) == 1, outs  # one won, one was told
        assert "already taken" in lost[0]
    kit.kill(kit.get_actor("only"))


def test_an_actor_asking_for_a_cpu_waits_on_a_cluster_without_one(fresh):
    fresh(num_cpus=0)
    a = Slow.options(num_cpus=1).remote()
    ref = a.limit.remote()
    stays_true(lambda: not kit.wait([ref], timeout=0)[0], 1.0, "the call unanswered")
    b = Slow.remote()  # an actor asking for no CPU is placed
    assert kit.get(b.limit.remote(), timeout=30) == 5


def test_tasks_on_one_cpu_run_in_submission_order(fresh):
    fresh(num_cpus=1)

    @kit.remote
    def stamp(i, *_):
        return i, time.time()

    ready = kit.put("an argument already there")  # such tasks take the head's path
    refs = [stamp.remote(i, ready) if i % 3 == 0 else stamp.remote(i) for i in range(30)]
    out = kit.get(refs, timeout=60)
    ran = [i for i, _ in sorted(out, key=lambda x: x[1])]
    assert ran == list(range(30))


def test_a_concurrent_actors_call_waits_for_no_other_calls_argument(cluster):
    gate = SignalActor.remote()
    a = Slow.options(max_concurrency=2).remote()
    blocked = a.nap.remote(0, gate.wait.remote())  # its argument is not ready
    later = a.nap.remote(0, "free")
    assert kit.get(later, timeout=30) == "free"
    assert not kit.wait([blocked], timeout=0)[0]
    kit.get(gate.send.remote())
    assert kit.get(blocked, timeout=30) is None


def test_an_actor_dying_before_it_is_up_is_restarted(fresh, tmp_path):
    fresh(num_cpus=1)
    marker = tmp_path / "tries"

    @kit.remote(max_restarts=2)
    class Fragile:
        def __init__(self, path):
            with open(path, "a") as f:
                f.write("x")
            if len(open(path).read()) < 2:
                os._exit(1)  # the first try dies in its constructor

        def ok(self):
            return "up"

    f = Fragile.remote(str(marker))
    assert kit.get(f.ok.remote(), timeout=60) == "up"
    assert marker.read_text() == "xx"


def test_actor_pool_queue_and_state(cluster):
    pool = ActorPool([Slow.remote(), Slow.remote()])
    assert list(pool.map(lambda a, v: a.nap.remote(0, v), range(5))) == [0, 1, 2, 3, 4]
    q = Queue(maxsize=2)
    q.put_nowait_batch([1, 2])
    assert q.get() == 1 and q.qsize() == 1
    with pytest.raises(Empty):
        Queue().get(timeout=0.1)
    tasks = list_tasks(limit=10_000)
    assert "Slow.nap" in {t["func_or_class_name"] for t in tasks}
    assert get_task(tasks[-1]["task_id"])["task_id"] == tasks[-1]["task_id"]
    assert summarize_tasks()["cluster"]["summary"]["Slow.nap"]["state_counts"]["FINISHED"] >= 5
    node = list_nodes()[0]
    assert node["state"] == "ALIVE" and get_node(node["node_id"]) == node
    kept = kit.put("held")
    counts = summarize_objects()["cluster"]["summary"]["LOCAL_REFERENCE"]["state_counts"]
    assert counts["FINISHED"] >= 1 and kit.get(kept) == "held"
    assert kit.get_runtime_context().is_canceled() is False


def test_cluster_utils_adds_and_removes_nodes():
    from kit.ray.cluster_utils import Cluster

    if kit.is_initialized():
        kit.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        node = c.add_node(num_cpus=1, resources={"side": 1})
        kit.ray.init(address="auto")  # as in Ray: the cluster started last on this host
        assert kit.api._state["ctx"].address_info["address"].endswith(c.address)

        @kit.remote(resources={"side": 1})
        def where():
            return kit.get_runtime_context().get_node_id()

        assert kit.get(where.remote(), timeout=30) == node.node_id
        c.remove_node(node, allow_graceful=False)
        assert [n["NodeID"] for n in kit.nodes() if n["Alive"]] == [c.head_node.node_id]
    finally:
        kit.shutdown()
        c.shutdown()


def test_the_memory_resource(fresh):
    fresh(num_cpus=2)
    total = kit.cluster_resources()["memory"]
    assert total > 0  # each node offers memory, as Ray's do

    @kit.remote(memory=2**20)
    def small():
        return "ran"

    assert kit.get(small.remote(), timeout=30) == "ran"
    huge = small.options(memory=total * 2).remote()  # more than any node has: it waits
    stays_true(lambda: not kit.wait([huge], timeout=0)[0], 1.0, "the task unplaced")


@kit.remote
class Child:
    def ready(self):
        return "ok"


@kit.remote
class Owner:
    def make_child(self):
        self.child = Child.remote()
        kit.get(self.child.ready.remote())
        return self.child

    def pid(self):
        return os.getpid()


@pytest.mark.parametrize("lifetime", ["detached", "non_detached"])
def test_the_jobs_default_actor_lifetime_reaches_actors_made_by_actors(fresh, lifetime):
    from kit.actors import set_default_lifetime
    from kit.ray.job_config import JobConfig, use

    fresh(num_cpus=2)
    use(JobConfig(default_actor_lifetime=lifetime))  # ray.init(job_config=...) does this
    try:
        owner = Owner.remote()
        child = kit.get(owner.make_child.remote(), timeout=30)
        os.kill(kit.get(owner.pid.remote(), timeout=30), 9)
        if lifetime == "detached":  # it outlives the actor that made it
            stays_true(lambda: kit.get(child.ready.remote(), timeout=10) == "ok", 2.0, "alive")
        else:
            wait_until(lambda: _dead(child), 20, "the child to die with its owner")
    finally:
        set_default_lifetime(None)


def _dead(handle):
    try:
        kit.get(handle.ready.remote(), timeout=10)
        return False
    except kit.ActorDiedError:
        return True


@kit.remote
class Patient:
    def __init__(self):
        self.saw = []

    def work(self, started):  # a plain actor's running call is not interrupted: it sees the flag
        open(started, "w").close()
        while not kit.get_runtime_context().is_canceled():
            time.sleep(0.01)
        self.saw.append("flag")
        return "stopped itself"

    def seen(self):
        return self.saw


@kit.remote
class AsyncPatient:
    def __init__(self):
        self.saw = []

    async def work(self, started):
        import asyncio

        open(started, "w").close()
        try:
            await asyncio.sleep(600)
        except asyncio.CancelledError:  # an async call's asyncio task is cancelled
            self.saw.append("cancelled")
            raise

    async def seen(self):
        return self.saw


@pytest.mark.parametrize("cls", [Patient, AsyncPatient])
def test_cancelling_a_running_actor_call_keeps_the_actor(cluster, cls, tmp_path):
    a = cls.remote()
    started = tmp_path / "started"
    call = a.work.remote(str(started))
    wait_until(started.exists, 30, "the call running")
    kit.cancel(call)
    with pytest.raises(kit.TaskCancelledError):
        kit.get(call, timeout=30)
    expected = ["flag"] if cls is Patient else ["cancelled"]
    wait_until(lambda: kit.get(a.seen.remote(), timeout=10) == expected, 30, "the call's end")


def _slots_left():
    return kit.available_resources().get("slot", 0)


def test_joblib_backend_ray_takes_ray_remote_args(fresh):
    import joblib

    from kit.ray.util.joblib import register_ray
    from kit.ray.util.joblib.ray_backend import RayBackend

    fresh(num_cpus=2, resources={"slot": 2})
    register_ray()
    with joblib.parallel_backend("ray"):
        assert type(joblib.parallel.get_active_backend()[0]) is RayBackend
        assert joblib.Parallel(n_jobs=2)(joblib.delayed(_slots_left)() for _ in range(2)) == [2, 2]
    with joblib.parallel_backend("ray", ray_remote_args={"resources": {"slot": 1}}):
        left = joblib.Parallel(n_jobs=2)(joblib.delayed(_slots_left)() for _ in range(4))
    assert all(n <= 1 for n in left), left  # each task held a slot while it ran


@kit.remote
def first_of(box):
    """Waits in get for the ref in ``box``, a list: a ref inside an argument does not
    hold the task back, and such a task takes the head's path."""
    return kit.get(box[0], timeout=120)


def test_tasks_queued_behind_one_blocked_in_get_run_elsewhere(fresh):
    fresh(num_cpus=1)
    # short runs: the head now queues this function's tasks behind a busy worker
    assert kit.get([first_of.remote([kit.put(i)]) for i in range(5)], timeout=60) == list(range(5))
    gate = SignalActor.remote()
    blocked = first_of.remote([gate.wait.remote()])  # waits in get on the only CPU
    free = [first_of.remote([kit.put(i)]) for i in range(3)]  # queued behind it, at first
    assert kit.get(free, timeout=60) == [0, 1, 2]  # given back, they ran on another worker
    assert not kit.wait([blocked], timeout=0)[0]
    kit.get(gate.send.remote(), timeout=30)
    assert kit.get(blocked, timeout=60) is None


def test_ray_id_classes_read_kits_ids(cluster):
    import pickle

    from kit.ray import ActorID, JobID, NodeID, TaskID, WorkerID

    @kit.remote
    def ids():
        ctx = kit.get_runtime_context()
        return ctx.get_node_id(), ctx.get_worker_id(), ctx.get_task_id()

    node, worker, task = kit.get(ids.remote(), timeout=60)
    assert NodeID.from_hex(node) in {NodeID.from_hex(n["NodeID"]) for n in kit.nodes()}
    assert WorkerID.from_hex(worker).hex() == worker
    assert TaskID.from_hex(task).binary() == bytes.fromhex(task)

    @kit.remote
    class Who:
        def me(self):
            return kit.get_runtime_context().get_actor_id()

    a = Who.remote()
    aid = ActorID.from_hex(kit.get(a.me.remote(), timeout=60))
    assert aid == ActorID(a._aid) and hash(aid) == hash(ActorID(a._aid))
    assert pickle.loads(pickle.dumps(aid)) == aid
    assert NodeID.nil().is_nil() and not NodeID.from_random().is_nil()
    assert NodeID.nil() != WorkerID.nil()  # kinds differ though the bytes are equal
    assert JobID.size() == 8 and TaskID.size() == 15
    with pytest.raises(ValueError, match="NodeID on kit is 8 bytes"):
        NodeID(b"\0" * 28)  # a Ray node id
    with pytest.raises(TypeError, match="from_hex"):
        NodeID(node)


def test_subclassing_an_actor_class_is_refused_as_in_ray():
    from kit.ray.actor import ActorClassInheritanceException

    with pytest.raises(ActorClassInheritanceException, match="cannot inherit from the actor"):

        class Slower(Slow):  # refused by the class statement itself
            pass

    assert issubclass(ActorClassInheritanceException, TypeError)

    class Plain(Slow._cls):  # the plain class is a base like any other
        pass

    assert Plain.LIMIT == 5
    from kit.ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    with pytest.raises(NotImplementedError, match="no placement groups"):
        PlacementGroupSchedulingStrategy(None)


class Flaky(Exception):
    pass


@kit.remote
class Tally:
    def __init__(self):
        self.n = 0

    def bump(self):
        self.n += 1
        return self.n - 1


def _fails_until(tally, times):
    n = kit.get(tally.bump.remote())
    if n < times:
        raise Flaky(n)
    return n


@kit.remote(max_task_retries=2)
class Shaky:
    @kit.method(max_task_retries=4, retry_exceptions=[Flaky])
    def own_retries(self, tally, times):
        return _fails_until(tally, times)

    @kit.method(retry_exceptions=True)
    def actors_retries(self, tally, times):
        return _fails_until(tally, times)

    def no_retries(self, tally, times):
        return _fails_until(tally, times)


def _runs(tally):
    return kit.get(tally.bump.remote(), timeout=30)  # calls so far (this one aside)


def test_actor_methods_run_again_on_their_retry_exceptions(cluster):
    s = Shaky.remote()
    t = Tally.remote()
    assert kit.get(s.own_retries.remote(t, 4), timeout=60) == 4  # 1 run + 4 retries
    t = Tally.remote()
    with pytest.raises(Flaky):
        kit.get(s.own_retries.remote(t, 5), timeout=60)
    assert _runs(t) == 5  # not one run more
    t = Tally.remote()
    assert kit.get(s.own_retries.options(max_task_retries=6).remote(t, 6), timeout=60) == 6
    t = Tally.remote()
    with pytest.raises(Flaky):
        kit.get(s.own_retries.options(retry_exceptions=False).remote(t, 1), timeout=60)
    assert _runs(t) == 1
    t = Tally.remote()
    assert kit.get(s.actors_retries.remote(t, 2), timeout=60) == 2  # the actor's 2
    t = Tally.remote()
    with pytest.raises(Flaky):
        kit.get(s.actors_retries.remote(t, 3), timeout=60)
    assert _runs(t) == 3
    t = Tally.remote()
    with pytest.raises(Flaky):
        kit.get(s.no_retries.remote(t, 1), timeout=60)
    assert _runs(t) == 1
    with pytest.raises(ValueError, match="max_task_retries=-2"):
        s.no_retries.options(max_task_retries=-2)


def test_a_get_of_objects_that_exist_lends_nothing(fresh):
    """As in Ray, a task's get of objects that are there already does not lend its CPU
    (kit waited for none of them: no second worker starts on the one CPU)."""
    fresh(num_cpus=1)
    refs = [kit.put(i) for i in range(3)]

    @kit.remote
    def reads(box):
        return sum(kit.get(box, timeout=60)), os.getpid()

    out = kit.get([reads.remote(refs) for _ in range(20)], timeout=120)
    assert {total for total, _ in out} == {3}
    assert len({pid for _, pid in out}) == 1
