"""The scheduler as a pure state machine: events in, actions out, no processes."""

import pytest

from kit.records import ACTOR_CALL, ACTOR_CREATE, ERROR, INLINE, SHARED, TASK, TaskSpec
from kit.records import object_id as oid
from kit.scheduler import BUSY, COUNTS, FAILED, FINISHED, IDLE, RUNNING, WAITING, Scheduler

pytestmark = pytest.mark.fast

NODE, NODE2 = b"node0000", b"node0001"
DRIVER = b"driver00"


def spec(
    tid,
    deps=(),
    res=None,
    retries=3,
    kind=TASK,
    actor=None,
    method=None,
    opts=None,
    fid=b"f",
    contained=(),
):
    return TaskSpec.new(
        tid,
        "t",
        kind=kind,
        fid=fid,
        deps=deps,
        contained=contained,
        res=res if res is not None else {"CPU": 1.0},
        retries=retries,
        actor=actor,
        method=method,
        opts=opts,
    )


def ok(v=b"x"):
    return (INLINE, v)


def actions(s, op):
    out = [a for a in s.out if a[0] == op]
    return out


def setup(cpus=2, workers=2, nodes=(NODE,)):
    s = Scheduler()
    for n in nodes:
        s.add_node(n, {"CPU": float(cpus)})
        s.nodes[n].spawning = 0
        for i in range(workers):
            s.add_worker(n + bytes([i]), n, 100 + i)
    s.add_client(DRIVER)
    s.schedule()
    s.out.clear()
    return s


def test_task_dispatched_to_idle_worker_and_result_pushed_to_owner():
    s = setup()
    s.submit(DRIVER, spec(b"t1"))
    s.schedule()
    (d,) = actions(s, "dispatch")
    wid = d[1]
    assert s.workers[wid].state == BUSY and s.nodes[NODE].avail["CPU"] == 1.0
    s.out.clear()
    s.task_done(wid, b"t1", [(oid(b"t1"), ok(), ())], 0.0, 0.1)
    assert ("object", DRIVER, oid(b"t1"), ok()) in s.out
    assert s.workers[wid].state == IDLE and s.nodes[NODE].avail["CPU"] == 2.0


def test_dependencies_wait_then_run():
    s = setup()
    s.submit(DRIVER, spec(b"a"))
    s.submit(DRIVER, spec(b"b", deps=[oid(b"a")]))
    s.schedule()
    assert s.tasks[b"b"].state == WAITING
    (d,) = actions(s, "dispatch")
    s.out.clear()
    s.task_done(d[1], b"a", [(oid(b"a"), ok(), ())], 0, 0)
    s.schedule()
    (d2,) = actions(s, "dispatch")
    assert d2[2][0][0] == b"b" and d2[2][2] == {oid(b"a"): ok()}


def test_failure_propagates_to_dependents_without_running():
    s = setup()
    s.submit(DRIVER, spec(b"a"))
    s.submit(DRIVER, spec(b"b", deps=[oid(b"a")]))
    s.schedule()
    wid = actions(s, "dispatch")[0][1]
    err = (ERROR, ("sys", "KitError", "boom"))
    s.out.clear()
    s.task_done(wid, b"a", [(oid(b"a"), err, ())], 0, 0)
    s.schedule()
    assert not actions(s, "dispatch")
    assert s.objects[oid(b"b")].payload == err


def test_slots_limit_and_queue():
    s = setup(cpus=2, workers=2)
    for i in range(5):
        s.submit(DRIVER, spec(b"t%d" % i))
    s.schedule()
    assert len(actions(s, "dispatch")) == 2
    assert len(s.ready) == 3


def test_worker_death_retries_then_fails():
    s = setup(cpus=1, workers=1)
    s.submit(DRIVER, spec(b"t", retries=1))
    s.schedule()
    w = actions(s, "dispatch")[0][1]
    s.worker_died(w, "killed by signal 9")
    assert s.tasks[b"t"].state == "READY" and s.tasks[b"t"].retries == 0
    s.add_worker(b"w2", NODE, 7)
    s.schedule()
    s.worker_died(b"w2", "killed by signal 9")
    p = s.objects[oid(b"t")].payload
    assert p[0] == ERROR and p[1][1] == "WorkerCrashedError" and "signal 9" in p[1][2]


def test_retries_minus_one_retries_forever():
    """max_retries=-1 (Ray's "forever"): worker deaths and retried exceptions never
    spend the budget; the task ends when it succeeds."""
    s = setup(cpus=1, workers=1)
    s.submit(DRIVER, spec(b"t", retries=-1))
    for i in range(30):
        s.schedule()
        (d,) = actions(s, "dispatch")
        s.out.clear()
        if i % 2:
            s.worker_died(d[1], "killed by signal 9")
            s.add_worker(b"w%d" % i, NODE, 10 + i)
        else:
            err = (ERROR, ("sys", "ConnectionError", "flaky"))
            s.task_done(d[1], b"t", [(oid(b"t"), err, ())], 0, 0, True)
        assert s.tasks[b"t"].state == "READY", i
    s.schedule()
    (d,) = actions(s, "dispatch")
    s.task_done(d[1], b"t", [(oid(b"t"), ok(), ())], 0, 0)
    assert s.objects[oid(b"t")].payload == ok()


def test_blocked_worker_gives_slot_back_and_spawns():
    s = setup(cpus=1, workers=1)
    s.submit(DRIVER, spec(b"outer"))
    s.schedule()
    w = actions(s, "dispatch")[0][1]
    s.submit(w, spec(b"inner"))
    s.schedule()
    assert s.nodes[NODE].avail["CPU"] == 0
    s.out.clear()
    s.worker_blocked(w, True)
    s.schedule()
    assert s.nodes[NODE].avail["CPU"] == 1.0
    assert ("spawn", NODE, None) in s.out


def test_refcount_frees_shared_object_when_last_holder_goes():
    s = setup()
    payload = (SHARED, NODE, "kit_c_n0_obj", 1000)
    s.put(DRIVER, b"o1", payload)
    s.submit(DRIVER, spec(b"t", deps=[b"o1"]))
    s.refs(DRIVER, [(b"o1", -1)])
    assert b"o1" in s.objects  # pinned by the pending task
    s.schedule()
    w = actions(s, "dispatch")[0][1]
    s.task_done(w, b"t", [(oid(b"t"), ok(), ())], 0, 0)
    assert b"o1" not in s.objects
    assert ("free", NODE, "kit_c_n0_obj") in s.out


def test_store_use_is_what_the_node_reports():
    """A node's agent keeps its store under the limit (kit.ledger) and reports its use;
    the scheduler shows it and counts spills, it does not guess from payload sizes."""
    s = setup()
    s.node_store(NODE, 4096, 0)
    s.node_store(NODE, 1024, 3)
    assert s.nodes[NODE].store_used == 1024 and s.counts["spilled"] == 3
    s.node_store(NODE, 0, 5)
    assert s.counts["spilled"] == 5
    assert s.snapshot()[0]["store_used"] == 0


def test_contained_refs_live_as_long_as_container():
    s = setup()
    s.put(DRIVER, b"inner", ok())
    s.put(DRIVER, b"outer", ok(), contained=[b"inner"])
    s.refs(DRIVER, [(b"inner", -1)])
    assert b"inner" in s.objects
    s.refs(DRIVER, [(b"outer", -1)])
    assert b"inner" not in s.objects and b"outer" not in s.objects


def test_cancel_queued_task():
    s = setup(cpus=1, workers=1)
    s.submit(DRIVER, spec(b"a"))
    s.submit(DRIVER, spec(b"b"))
    s.schedule()
    assert s.cancel(b"b")
    p = s.objects[oid(b"b")].payload
    assert p[1][1] == "TaskCancelledError"
    assert b"b" not in s.ready
    assert [e[1][2] for e in actions(s, "event") if e[1][0] == b"b"][-1] == "cancelled"


def test_node_affinity_and_resources():
    s = setup(nodes=(NODE, NODE2))
    s.submit(DRIVER, spec(b"a", opts={"node": NODE2}))
    s.submit(DRIVER, spec(b"g", res={"GPU": 1.0}))
    s.schedule()
    d = actions(s, "dispatch")
    assert len(d) == 1 and s.workers[d[0][1]].node == NODE2
    assert s.tasks[b"g"].state == "READY"  # no node has a GPU: it waits


def test_actor_lifecycle_and_call_order():
    s = setup()
    aid = b"actor1"
    s.submit(
        DRIVER, spec(aid, kind=ACTOR_CREATE, actor=aid, res={}, opts={"meta": "A", "handle": {}})
    )
    (sp,) = actions(s, "spawn")
    assert sp[2] == aid
    for i in range(3):
        s.submit(DRIVER, spec(b"c%d" % i, kind=ACTOR_CALL, actor=aid, method="m", fid=None, res={}))
    s.out.clear()
    s.add_worker(b"aw", NODE, 55, aid)
    d = actions(s, "dispatch")
    assert [x[2][0][0] for x in d] == [aid, b"c0", b"c1", b"c2"]
    s.task_done(b"aw", aid, [(oid(aid), ok(), ())], 0, 0)
    assert s.actors[aid].state == "ALIVE"
    s.worker_died(b"aw", "killed by signal 9")
    for i in range(3):
        assert s.objects[oid(b"c%d" % i)].payload[1][1] == "ActorDiedError"


def test_dropping_every_handle_kills_actor():
    s = setup()
    aid = b"actor2"
    s.submit(
        DRIVER, spec(aid, kind=ACTOR_CREATE, actor=aid, res={}, opts={"meta": "A", "handle": {}})
    )
    s.add_worker(b"aw", NODE, 55, aid)
    s.task_done(b"aw", aid, [(oid(aid), ok(), ())], 0, 0)
    s.out.clear()
    s.refs(DRIVER, [(oid(aid), -1)])
    assert ("kill", NODE, b"aw") in s.out
    assert s.actors[aid].state == "DEAD"


def test_dead_actors_are_remembered_then_forgotten_oldest_first(monkeypatch):
    monkeypatch.setattr("kit.scheduler.DEAD_ACTORS_KEPT", 3)
    s = setup()
    aids = [b"dead%d" % i for i in range(5)]
    for i, aid in enumerate(aids):
        opts = {"meta": "A", "handle": {}, "name": f"a{i}"}
        s.submit(DRIVER, spec(aid, kind=ACTOR_CREATE, actor=aid, res={}, opts=opts))
        s.kill_actor(aid, "killed by kit.kill")
    assert [a for a in aids if a in s.actors] == aids[2:]  # the last 3 dead ones
    assert [k[1] for k in s.names] == ["a2", "a3", "a4"]
    s.submit(DRIVER, spec(b"call", kind=ACTOR_CALL, actor=aids[4], method="m", fid=None, res={}))
    assert "killed by kit.kill" in s.objects[oid(b"call")].payload[1][2]  # still says why
    live = b"live"  # a live actor is never forgotten
    s.submit(DRIVER, spec(live, kind=ACTOR_CREATE, actor=live, res={}, opts={"handle": {}}))
    for i in range(5, 10):
        aid = b"dead%d" % i
        s.submit(DRIVER, spec(aid, kind=ACTOR_CREATE, actor=aid, res={}, opts={"handle": {}}))
        s.kill_actor(aid, "gone")
    assert live in s.actors and len(s.actors) == 4


def test_fast_tasks_pipeline_but_not_behind_slow_ones():
    s = setup(cpus=1, workers=1)
    w = next(iter(s.workers))
    for i in range(3):  # learn that f is fast
        s.submit(DRIVER, spec(b"w%d" % i))
        s.schedule()
        s.task_done(w, b"w%d" % i, [(oid(b"w%d" % i), ok(), ())], 0.0, 0.0001)
    s.out.clear()
    for i in range(5):
        s.submit(DRIVER, spec(b"p%d" % i))
    s.schedule()
    assert len(actions(s, "dispatch")) == 5
    # a slow function occupies the worker: fast tasks do not queue behind it
    s2 = setup(cpus=1, workers=1)
    w2 = next(iter(s2.workers))
    for i in range(3):
        s2.submit(DRIVER, spec(b"w%d" % i))
        s2.schedule()
        s2.task_done(w2, b"w%d" % i, [(oid(b"w%d" % i), ok(), ())], 0.0, 0.0001)
    s2.submit(DRIVER, spec(b"slow", fid=b"slowfn"))
    s2.schedule()
    s2.out.clear()
    s2.submit(DRIVER, spec(b"fast"))
    s2.schedule()
    assert not actions(s2, "dispatch")


def test_failed_runs_do_not_make_a_function_fast():
    """Runs that failed at once (a cancelled chain) say nothing of a function's length: it
    stays 'slow', so its tasks are not queued on a busy worker, where one would wait
    behind a task blocked in get (Ray's test_cancel_chain hung so)."""
    s = setup(cpus=1, workers=1)
    w = next(iter(s.workers))
    err = (ERROR, ("sys", "TaskCancelledError", "cancelled"))
    for i in range(5):
        s.submit(DRIVER, spec(b"c%d" % i))
        s.schedule()
        s.task_done(w, b"c%d" % i, [(oid(b"c%d" % i), err, ())], 0.0, 0.0001)
    s.out.clear()
    for i in range(3):
        s.submit(DRIVER, spec(b"p%d" % i))
    s.schedule()
    assert len(actions(s, "dispatch")) == 1  # one at a time: f is not known to be fast


def _fast_pipeline(s, w):
    """Teach ``s`` that function f is fast (three short runs on ``w``)."""
    for i in range(3):
        s.submit(DRIVER, spec(b"w%d" % i))
        s.schedule()
        s.task_done(w, b"w%d" % i, [(oid(b"w%d" % i), ok(), ())], 0.0, 0.0001)
    s.out.clear()


def test_failed_direct_runs_do_not_make_a_function_fast():
    """A driver's records of direct runs that failed count no more than the head's own."""
    s = setup(cpus=1, workers=1)
    w = next(iter(s.workers))
    for i in range(5):
        s.direct_records(DRIVER, [(b"d%d" % i, "f", w, b"f", 1.0, 1.0, 1.0001, "failed", "E")])
    for i in range(3):
        s.submit(DRIVER, spec(b"p%d" % i))
    s.schedule()
    assert len(actions(s, "dispatch")) == 1  # one at a time: f is not known to be fast


def test_a_blocked_worker_gives_back_the_tasks_queued_behind_it():
    """Tasks queued (pipelined) on a worker whose task then waits in get are given back
    unstarted: they run elsewhere, in order, and the function goes again with the first."""
    s = setup(cpus=1, workers=1)
    w = next(iter(s.workers))
    _fast_pipeline(s, w)
    for name in (b"blocks", b"q1", b"q2"):
        s.submit(DRIVER, spec(name))
    s.schedule()
    assert [a[2][0].tid for a in actions(s, "dispatch")] == [b"blocks", b"q1", b"q2"]
    s.out.clear()
    s.worker_blocked(w, True, [(b"q1", None), (b"q2", b"f")])
    assert s.tasks[b"q1"].state == "READY" and s.workers[w].tasks == [b"blocks"]
    assert b"f" not in s.workers[w].fids  # its pickle came with q2: sent again
    s.add_worker(b"other000", NODE, 200)
    s.schedule()
    sent = actions(s, "dispatch")
    assert [(a[1], a[2][0].tid) for a in sent] == [(b"other000", b"q1"), (b"other000", b"q2")]
    # a stale give-back (q1 runs elsewhere now) changes nothing; nor does one after the
    # worker stopped waiting
    s.worker_blocked(w, False)
    s.worker_blocked(w, None, [(b"q1", None)])
    assert s.tasks[b"q1"].worker == b"other000" and not s.workers[w].blocked


def test_a_task_cancelled_while_queued_on_a_blocked_worker_never_runs():
    s = setup(cpus=1, workers=1)
    w = next(iter(s.workers))
    _fast_pipeline(s, w)
    s.submit(DRIVER, spec(b"blocks"))
    s.submit(DRIVER, spec(b"q1"))
    s.schedule()
    s.cancel(b"q1")  # queued on the worker: it is asked to stop it there
    assert ("cancel", w, b"q1") in s.out
    s.out.clear()
    s.worker_blocked(w, True, [(b"q1", None)])  # given back before the cancel came
    s.add_worker(b"other000", NODE, 200)
    s.schedule()
    assert not actions(s, "dispatch")
    p = s.objects[oid(b"q1")].payload
    assert p[0] == ERROR and p[1][1] == "TaskCancelledError"
    assert b"q1" not in s.interrupted


def test_unknown_argument_object_fails_task():
    s = setup()
    s.submit(DRIVER, spec(b"t", deps=[oid(b"nonexistent")]))
    p = s.objects[oid(b"t")].payload
    assert p[0] == ERROR and p[1][1] == "ObjectLostError"


def test_states_reach_finished_and_failed():
    s = setup()
    s.submit(DRIVER, spec(b"a"))
    s.schedule()
    assert s.tasks[b"a"].state == RUNNING
    s.task_done(actions(s, "dispatch")[0][1], b"a", [(oid(b"a"), ok(), ())], 0, 0)
    assert s.counts["finished"] == 1
    _ = (FINISHED, FAILED)


def test_idle_extra_workers_retire():
    s = setup(cpus=1, workers=1)
    s.add_worker(b"extra", NODE, 9)  # started while a task was blocked in get
    s.now = 100.0
    s.schedule()
    for w in s.workers.values():
        w.idle_since = 100.0
    s.out.clear()
    s.retire_idle(105.0)
    assert not actions(s, "kill")
    s.retire_idle(111.0)
    kills = actions(s, "kill")
    assert len(kills) == 1
    retired = kills[0][2]
    assert s.workers[retired].state == "RETIRING"
    s.submit(DRIVER, spec(b"t"))
    s.schedule()
    assert actions(s, "dispatch")[0][1] != retired
    s.worker_died(retired, "killed by signal 9")
    assert retired not in s.workers


# ---- lineage: objects lost with a node are made again -----------------------------------


def _shared(node, name):
    return (SHARED, node, name, 1000)


def _run_on(s, tid, payload):
    """Schedule, and finish task ``tid`` on the worker it was sent to, with ``payload``."""
    s.schedule()
    (w,) = [a[1] for a in actions(s, "dispatch") if a[2][0][0] == tid]
    s.out.clear()
    s.task_done(w, tid, [(oid(tid), payload, ())], 0.0, 0.01)
    return w


def test_lost_result_is_made_again_on_a_live_node():
    s = setup(cpus=1, workers=1, nodes=(NODE, NODE2))
    s.submit(DRIVER, spec(b"a", opts={"node": NODE, "soft": True}))
    _run_on(s, b"a", _shared(NODE, "a-on-node0"))
    s.submit(DRIVER, spec(b"b", deps=[oid(b"a")]))
    _run_on(s, b"b", ok())
    s.node_died(NODE)
    assert s.objects[oid(b"a")].payload is None and s.tasks[b"a"].retries == 2
    w = _run_on(s, b"a", _shared(NODE2, "a-again"))
    assert s.workers[w].node == NODE2
    assert s.objects[oid(b"a")].payload == _shared(NODE2, "a-again")
    assert s.counts["rebuilt"] == 1


def test_counts_name_every_kind_whatever_happened():
    """kit.cluster_status()["counts"] has the same keys on every run: a run in which no
    object was lost says "rebuilt": 0 (the key used to appear only after a rebuild)."""
    s = setup(cpus=1, workers=1, nodes=(NODE, NODE2))
    assert s.counts == dict.fromkeys(COUNTS, 0)
    assert {"rebuilt", "spilled", "retried"} <= set(COUNTS)
    s.submit(DRIVER, spec(b"a"))
    _run_on(s, b"a", ok())
    assert s.counts == {**dict.fromkeys(COUNTS, 0), "submitted": 1, "finished": 1}
    s.node_store(NODE, 10, 2)  # the agent spilled two objects
    assert s.counts["spilled"] == 2 and s.counts["rebuilt"] == 0


def test_a_result_of_a_task_cancelled_after_it_finished_is_not_made_again():
    s = setup(cpus=1, workers=1, nodes=(NODE, NODE2))
    s.submit(DRIVER, spec(b"a", opts={"node": NODE, "soft": True}))
    _run_on(s, b"a", _shared(NODE, "a-on-node0"))
    assert s.cancel(b"a") is False  # finished: nothing to stop, but it is marked
    s.node_died(NODE)
    payload = s.objects[oid(b"a")].payload
    assert payload[0] == ERROR and payload[1][1] == "TaskCancelledError"
    assert b"a" not in s.tasks and s.counts.get("rebuilt", 0) == 0


def test_lost_input_is_made_again_before_the_task_that_reads_it():
    s = setup(cpus=1, workers=1, nodes=(NODE, NODE2))
    s.submit(DRIVER, spec(b"a", opts={"node": NODE, "soft": True}))
    _run_on(s, b"a", _shared(NODE, "a0"))
    s.submit(DRIVER, spec(b"b", deps=[oid(b"a")], opts={"node": NODE, "soft": True}))
    s.refs(DRIVER, [(oid(b"a"), -1)])  # only b's result is held now
    _run_on(s, b"b", _shared(NODE, "b0"))
    assert oid(b"a") not in s.objects and len(s.lineage) == 2
    s.node_died(NODE)
    assert s.tasks[b"b"].state == WAITING  # waits for a, made again first
    _run_on(s, b"a", _shared(NODE2, "a1"))
    _run_on(s, b"b", _shared(NODE2, "b1"))
    assert s.objects[oid(b"b")].payload == _shared(NODE2, "b1")
    assert oid(b"a") not in s.objects  # a's new copy freed once b had it
    assert ("free", NODE2, "a1") in s.out
    s.refs(DRIVER, [(oid(b"b"), -1)])
    assert len(s.lineage) == 0  # nothing kept once nothing is held


def test_put_object_and_spent_retries_are_lost_with_a_clear_error():
    s = setup(cpus=1, workers=1, nodes=(NODE, NODE2))
    s.put(DRIVER, oid(b"p"), _shared(NODE, "p0"))
    s.submit(DRIVER, spec(b"a", retries=0, opts={"node": NODE, "soft": True}))
    _run_on(s, b"a", _shared(NODE, "a0"))
    s.node_died(NODE)
    put_err = s.objects[oid(b"p")].payload
    task_err = s.objects[oid(b"a")].payload
    assert put_err[0] == ERROR and put_err[1][1] == "ObjectLostError"
    assert "kit.put" in put_err[1][2]
    assert task_err[0] == ERROR and "raise max_retries" in task_err[1][2]


def test_copy_on_a_live_node_replaces_the_lost_one():
    s = setup(cpus=1, workers=1, nodes=(NODE, NODE2))
    s.put(DRIVER, oid(b"p"), _shared(NODE, "p0"))
    s.add_copy(NODE2, "p0", "p0-copy", 1000)
    s.node_died(NODE)
    assert s.objects[oid(b"p")].payload == _shared(NODE2, "p0-copy")


def test_hard_pin_to_a_dead_node_fails_soft_pin_runs_elsewhere():
    s = setup(cpus=1, workers=1, nodes=(NODE, NODE2))
    s.node_died(NODE)
    s.submit(DRIVER, spec(b"hard", opts={"node": NODE}))
    s.submit(DRIVER, spec(b"soft", opts={"node": NODE, "soft": True}))
    s.schedule()
    p = s.objects[oid(b"hard")].payload
    assert p[0] == ERROR and p[1][1] == "NodeDiedError" and "soft=True" in p[1][2]
    (d,) = actions(s, "dispatch")
    assert d[2][0][0] == b"soft" and s.workers[d[1]].node == NODE2


def test_actor_pinned_to_a_dead_node_dies_with_the_reason():
    s = setup(cpus=1, workers=1, nodes=(NODE, NODE2))
    aid = b"actor9"
    s.submit(
        DRIVER,
        spec(
            aid,
            kind=ACTOR_CREATE,
            actor=aid,
            res={},
            opts={"meta": "Pinned", "handle": {}, "node": NODE, "max_restarts": 2},
        ),
    )
    s.add_worker(b"aw", NODE, 55, aid)
    s.task_done(b"aw", aid, [(oid(aid), ok(), ())], 0, 0)
    s.node_died(NODE)  # restarts are left, but only NODE may hold it
    assert s.actors[aid].state == "DEAD"
    s.submit(DRIVER, spec(b"call", kind=ACTOR_CALL, actor=aid, method="m", fid=None, res={}))
    p = s.objects[oid(b"call")].payload
    assert p[1][1] == "ActorDiedError" and "which died" in p[1][2]


def test_recursive_cancel_reaches_the_tasks_a_task_submitted():
    s = setup(cpus=4, workers=4)
    s.submit(DRIVER, spec(b"p"))
    s.schedule()
    (w,) = [a[1] for a in actions(s, "dispatch")]
    s.submit(w, spec(b"c1", opts={"parent": b"p"}))  # submitted by p's worker
    s.submit(w, spec(b"c2", opts={"parent": b"p"}))
    s.schedule()
    (w2,) = [a[1] for a in actions(s, "dispatch") if a[2][0][0] == b"c1"]
    s.submit(w2, spec(b"g", opts={"parent": b"c1"}))  # a grandchild
    s.submit(DRIVER, spec(b"other"))
    s.out.clear()
    s.cancel(b"p", recursive=True)
    interrupted = [a for a in s.out if a[0] == "cancel"]  # the running ones: as in Ray,
    assert {a[2] for a in interrupted} == {b"p", b"c1", b"c2"}  # their outcome answers
    err = (ERROR, ("sys", "TaskCancelledError", "the task was cancelled"))
    for _, wid, tid in interrupted:
        s.task_done(wid, tid, [(oid(tid), err, ())], 0, 0)
        assert [e for _, e in actions(s, "event") if e[0] == tid][-1][2] == "cancelled"
    for tid in (b"p", b"c1", b"c2", b"g"):
        assert s.objects[oid(tid)].payload[1][1] == "TaskCancelledError", tid
    assert b"other" in s.tasks and not s.children
    s.submit(DRIVER, spec(b"q"))
    s.schedule()
    s.submit(w, spec(b"k", opts={"parent": b"q"}))
    s.cancel(b"q")  # not recursive
    assert s.tasks[b"k"].state != "CANCELLED"


def test_a_running_task_cancelled_without_force_answers_with_its_outcome():
    """As in Ray: the interrupted task may catch the KeyboardInterrupt and return."""
    s = setup(cpus=1, workers=1)
    s.submit(DRIVER, spec(b"t"))
    s.schedule()
    (w,) = [a[1] for a in actions(s, "dispatch")]
    assert s.cancel(b"t") is True
    assert ("cancel", w, b"t") in s.out and s.objects[oid(b"t")].payload is None
    s.task_done(w, b"t", [(oid(b"t"), ok(b"caught it"), ())], 0, 0)
    assert s.objects[oid(b"t")].payload == ok(b"caught it")
    s.submit(DRIVER, spec(b"u"))
    s.schedule()
    s.cancel(b"u", force=True)  # force: the worker is killed, the task fails at once
    assert s.objects[oid(b"u")].payload[1][1] == "TaskCancelledError"


def test_lost_result_of_a_task_with_retries_minus_one_is_made_again():
    s = setup(cpus=1, workers=1, nodes=(NODE, NODE2))
    s.submit(DRIVER, spec(b"a", retries=-1, opts={"node": NODE, "soft": True}))
    _run_on(s, b"a", _shared(NODE, "a-on-node0"))
    s.node_died(NODE)
    assert s.objects[oid(b"a")].payload is None and s.tasks[b"a"].retries < 0
    _run_on(s, b"a", _shared(NODE2, "a-again"))
    assert s.objects[oid(b"a")].payload == _shared(NODE2, "a-again")


def test_a_result_holding_a_ref_keeps_it_when_the_drop_comes_after():
    """A task returns a ref to an inner task's finished result, and its worker drops its
    own ref afterwards (kit's order): the inner object lives on, held by the result.
    Dropped before the result arrived, it would be freed: this is why a worker holds
    the refs of a result until its DONE is sent (kit.worker)."""
    s = setup()
    w = next(iter(s.workers))
    s.submit(DRIVER, spec(b"outer"))
    s.schedule()
    s.submit(w, spec(b"inner"))  # the outer task, on w, submits inner and holds its ref
    s.schedule()
    for tid in (b"inner",):
        wid = s.tasks[tid].worker
        s.task_done(wid, tid, [(oid(tid), ok(), ())], 1, 2)
    x = oid(b"inner")
    s.task_done(s.tasks[b"outer"].worker, b"outer", [(oid(b"outer"), ok(), (x,))], 1, 2)
    s.refs(w, [(x, -1)])
    assert s.objects[x].payload == ok() and s.objects[x].pins == 1
    s.refs(DRIVER, [(oid(b"outer"), -1)])  # the result goes: so does what it held
    assert x not in s.objects


def test_a_direct_result_holding_a_ref_keeps_it_when_the_driver_is_first():
    """The direct path: the driver gets a result holding a ref straight from the worker,
    takes the inner ref and drops the result before the head has seen the worker's
    submit of the inner task or its publish (they travel on another connection). The
    early ref changes wait for the publish: the inner object stays the driver's."""
    s = setup()
    w = next(iter(s.workers))
    x, outer = oid(b"inner"), oid(b"outer")
    s.refs(DRIVER, [(x, 1), (outer, -1)])  # both objects unknown to the head yet
    s.submit(w, spec(b"inner"))
    s.schedule()
    s.task_done(s.tasks[b"inner"].worker, b"inner", [(x, ok(), ())], 1, 2)
    s.publish(DRIVER, spec(b"outer"), [(outer, ok(), (x,))])
    s.refs(w, [(x, -1)])  # the worker's own ref goes after its publish
    assert outer not in s.objects  # the driver had dropped it
    assert DRIVER in s.objects[x].holders and s.objects[x].payload == ok()
    s.refs(DRIVER, [(x, -1)])
    assert x not in s.objects


def test_head_path_work_reclaims_idle_leases():
    """Every worker is leased to a driver (kit.lease) and a task with a ref argument (the
    head's path) arrives: the head asks the driver to give back the workers it is not
    using (it used to wait for the driver's 0.2 s idle return: 4 readers of a fresh put
    took 3x Ray's time), at most once per RECLAIM_EVERY; the task runs on the returned one."""
    s = setup(cpus=1, workers=1)
    s.want_lease(DRIVER, 1, {"CPU": 1.0}, 1)
    s.schedule()
    (grant,) = actions(s, "lease")
    wid = grant[2][2]
    s.out.clear()
    s.put(DRIVER, oid(b"arg"), ok())
    s.submit(DRIVER, spec(b"reader", deps=(oid(b"arg"),)))
    s.schedule()
    assert actions(s, "lease") == [("lease", DRIVER, ("reclaim",))]
    assert not actions(s, "dispatch")
    s.out.clear()
    s.schedule()  # asked already, moments ago: not again
    assert not actions(s, "lease")
    s.return_lease(DRIVER, wid)
    s.schedule()
    (dispatch,) = actions(s, "dispatch")
    assert dispatch[1] == wid and dispatch[2][0].tid == b"reader"


def test_a_lease_running_nothing_is_not_busy_in_the_snapshot():
    """A worker leased to a driver holds its slot, but the views (nodes(), widgets, the
    dashboard) show it busy only while the driver's records say a task runs on it."""
    s = setup(cpus=1, workers=1)
    s.want_lease(DRIVER, 1, {"CPU": 1.0}, 1)
    s.schedule()
    wid = actions(s, "lease")[0][2][2]
    assert s.nodes[NODE].avail["CPU"] == 0.0  # the scheduler's own accounting
    assert s.snapshot()[0]["available"]["CPU"] == 1.0
    s.direct_records(DRIVER, [(b"t1", "f", wid, b"f", 1.0, 1.0, None, None, None)])
    (snap,) = s.snapshot()
    assert snap["available"]["CPU"] == 0.0 and snap["running"] == 1
    s.direct_records(DRIVER, [(b"t1", "f", wid, b"f", 1.0, 1.0, 2.0, "finished", None)])
    assert s.snapshot()[0]["available"]["CPU"] == 1.0


@pytest.mark.parametrize("clean", [True, False])
def test_a_driver_leaving_keeps_its_idle_leased_workers_if_it_said_goodbye(clean):
    """A driver that says goodbye has sent its records first: its leased workers that run
    nothing of it go back to the pool (the next driver finds them warm); one still running
    a task of it is killed. A driver that vanished: all its leased workers are killed (its
    last records may never come)."""
    s = setup(cpus=2, workers=2)
    s.want_lease(DRIVER, 1, {"CPU": 1.0}, 2)
    s.schedule()
    idle, busy = [a[2][2] for a in actions(s, "lease")]
    s.direct_records(DRIVER, [(b"t1", "f", busy, b"f", 1.0, 1.0, None, None, None)])
    s.out.clear()
    s.client_gone(DRIVER, clean)
    killed = {a[2] for a in actions(s, "kill")}
    assert killed == ({busy} if clean else {idle, busy})
    assert (s.workers[idle].state == IDLE) is clean
