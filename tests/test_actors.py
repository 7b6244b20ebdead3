"""Actors: state, ordering, handles passed around, concurrency, death."""

import asyncio
import os
import signal
import threading
import time

import pytest
from helpers import all_overlap, latest_event, task_spans, wait_tasks, wait_until

import kit

pytestmark = pytest.mark.cluster


@kit.remote
class Counter:
    def __init__(self, start=0):
        self.n = start

    def inc(self):
        self.n += 1
        return self.n

    def get_value(self):
        return self.n

    def pid(self):
        return os.getpid()

    def fail(self):
        raise KeyError("nope")


def test_counters_and_order(cluster):
    cs = [Counter.remote() for _ in range(4)]
    for c in cs:
        for _ in range(3):
            c.inc.remote()
    assert kit.get([c.get_value.remote() for c in cs]) == [3, 3, 3, 3]
    c = Counter.remote(10)
    refs = [c.inc.remote() for _ in range(200)]
    assert kit.get(refs) == list(range(11, 211))


def test_four_actors_live_on_two_slots(cluster):
    cs = [Counter.remote() for _ in range(4)]
    pids = kit.get([c.pid.remote() for c in cs], timeout=30)
    assert len(set(pids)) == 4


def test_handle_passed_to_tasks(cluster):
    @kit.remote
    class Messages:
        def __init__(self):
            self.msgs = []

        def add(self, m):
            self.msgs.append(m)

        def take(self):
            out, self.msgs = self.msgs, []
            return out

    @kit.remote
    def worker(box, i):
        for j in range(20):
            box.add.remote(f"{i}:{j}")
        return i

    box = Messages.remote()
    kit.get([worker.remote(box, i) for i in range(3)])
    got = []

    def all_arrived():
        got.extend(kit.get(box.take.remote()))
        return len(got) >= 60

    wait_until(all_arrived, 10, lambda: f"the 60 messages, {len(got)} arrived")
    assert sorted(got) == sorted(f"{i}:{j}" for i in range(3) for j in range(20))
    for i in range(3):  # each caller's calls arrive in the order it made them
        mine = [m for m in got if m.startswith(f"{i}:")]
        assert mine == [f"{i}:{j}" for j in range(20)]


def test_method_error_keeps_actor_alive(cluster):
    c = Counter.remote()
    with pytest.raises(KeyError):
        kit.get(c.fail.remote())
    assert kit.get(c.inc.remote()) == 1


def test_constructor_error(cluster):
    @kit.remote
    class Bad:
        def __init__(self):
            raise RuntimeError("cannot build")

        def f(self):
            return 1

    b = Bad.remote()
    with pytest.raises(kit.KitError):
        kit.get(b.f.remote(), timeout=10)


def test_named_actor_and_kill(cluster):
    c = Counter.options(name="the_counter").remote()
    kit.get(c.inc.remote())
    same = kit.get_actor("the_counter")
    assert kit.get(same.inc.remote()) == 2
    with pytest.raises(ValueError):
        kit.get_actor("no_such_actor")
    kit.kill(c)
    with pytest.raises(kit.ActorDiedError):
        kit.get(c.inc.remote(), timeout=10)


def test_actor_process_death_fails_calls(cluster):
    c = Counter.remote()
    pid = kit.get(c.pid.remote())
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(kit.ActorDiedError):
        kit.get(c.inc.remote(), timeout=10)


def test_actor_restart(cluster):
    c = Counter.options(max_restarts=1).remote(5)
    pid = kit.get(c.pid.remote())
    since = latest_event()
    os.kill(pid, signal.SIGKILL)
    wait_tasks("Counter.__init__", "finished", since=since, timeout=20)  # restarted
    assert kit.get(c.inc.remote(), timeout=20) == 6  # __init__ ran again


@kit.remote
class Slow:
    def pid(self):
        return os.getpid()

    def work(self, seconds):
        time.sleep(seconds)  # still running when its process is killed
        return os.getpid()


def _kill_during(actor, pid):
    ref = actor.work.remote(2.0)
    wait_tasks(ref, "running", timeout=20)  # the call is in flight
    os.kill(pid, signal.SIGKILL)
    return ref


def test_max_task_retries_resends_the_call_in_flight(cluster):
    a = Slow.options(max_restarts=1, max_task_retries=1).remote()
    first = kit.get(a.pid.remote(), timeout=20)
    second = kit.get(_kill_during(a, first), timeout=30)  # ran again, in the new process
    assert second != first
    ref = _kill_during(a, second)  # no restart left
    with pytest.raises(kit.ActorDiedError, match="SIGKILL"):  # the cause is named
        kit.get(ref, timeout=30)
    with pytest.raises(kit.ActorDiedError, match="the actor is dead: .*SIGKILL"):
        kit.get(a.pid.remote(), timeout=30)


def test_call_in_flight_fails_without_max_task_retries(cluster):
    a = Slow.options(max_restarts=1).remote()
    first = kit.get(a.pid.remote(), timeout=20)
    with pytest.raises(kit.ActorDiedError, match="while running this call"):
        kit.get(_kill_during(a, first), timeout=30)
    assert kit.get(a.pid.remote(), timeout=30) != first  # restarted for the next calls


def test_max_concurrency_threads(cluster):
    @kit.remote
    class Sleeper:
        def nap(self, t):
            time.sleep(t)  # naps overlap if the calls run at once
            return threading.get_ident()

    s = Sleeper.options(max_concurrency=4).remote()
    kit.get(s.nap.remote(0))
    refs = [s.nap.remote(0.5) for _ in range(4)]
    idents = kit.get(refs)
    assert all_overlap(task_spans(refs)), task_spans(refs)  # the four ran at once
    assert len(set(idents)) > 1


def test_async_actor(cluster):
    @kit.remote
    class AsyncActor:
        async def work(self, t):
            await asyncio.sleep(t)  # overlap if the calls are awaited together
            return t

    a = AsyncActor.remote()
    refs = [a.work.remote(0.4) for _ in range(4)]
    assert kit.get(refs) == [0.4] * 4
    assert all_overlap(task_spans(refs)), task_spans(refs)  # awaited together


def test_actor_handle_dropped_stops_process(cluster):
    c = Counter.remote()
    pid = kit.get(c.pid.remote())
    del c

    def gone():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(gone, 10, "the actor's process to end after its last handle was dropped")


def test_actor_calls_actor(cluster):
    @kit.remote
    class Caller:
        def __init__(self, other):
            self.other = other

        def poke(self):
            return kit.get(self.other.inc.remote())

    target = Counter.remote()
    caller = Caller.remote(target)
    assert kit.get([caller.poke.remote() for _ in range(3)]) == [1, 2, 3]
