"""The pure scheduler driven by random event sequences, its invariants checked after each.

hypothesis' stateful testing plays a cluster around the ``Scheduler``: nodes join and
die, workers start when asked and die at random, tasks (with arguments that are other
tasks' results) and actor calls are submitted, finish, fail, are cancelled, and the
driver drops refs, in any order the rules allow. After every step:

- no node's free CPU goes above its total (or below zero but by tasks back from ``get``),
  and no CPU is lost or made up;
- no object the driver holds, or a live task reads, is freed;
- no task ends (finished, failed, cancelled) twice for one submission;
- an actor's calls reach its worker in the order they were submitted.

At the end every submitted task must end exactly once, once the cluster is given a
node big enough and every worker finishes what it holds.
"""

import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from kit.records import (
    ACTOR_CALL,
    ACTOR_CREATE,
    INLINE,
    TaskSpec,
    object_id,
    task_of,
)
from kit.scheduler import Scheduler
from kit.serialization import system_error_payload

pytestmark = pytest.mark.fast

DRIVER = b"driver00"
FINAL = {"finished", "failed", "cancelled"}
EPS = 1e-6


class ClusterPlay(RuleBasedStateMachine):
    """A cluster around the pure scheduler; actions it emits are acted on by rules."""

    refs = Bundle("refs")
    actors = Bundle("actors")

    @initialize()
    def start(self):
        self.s = Scheduler()
        self.s.add_client(DRIVER)
        self.n = 0
        self.nodes = []  # node ids added
        self.spawns = []  # (node id, actor id or None) asked for, not yet started
        self.running = {}  # worker id -> [task id, ...] dispatched to it, in order
        self.kills = []  # worker ids the scheduler asked to kill
        self.held = set()  # object ids the driver holds
        self.opened = {}  # task id -> queued events seen
        self.closed = {}  # task id -> final events seen
        self.submitted = []  # task ids, in order
        self.calls = {}  # actor id -> call task ids in submission order
        self.call_order = {}  # (actor id, worker id) -> call task ids in dispatch order
        self.actor_kind = {}  # task id -> kind
        self.worker_holds = {}  # worker id -> object ids it holds refs to (inner tasks)
        self.leased = {}  # worker id -> the driver it is leased to (kit.lease)
        self.add_node(2)

    def _id(self, prefix):
        self.n += 1
        return prefix + self.n.to_bytes(7, "little")

    def _pump(self):
        """Run a scheduling pass and act on the actions it emits."""
        s = self.s
        if s._dirty:
            s.schedule()
        out, s.out = s.out, []
        for act in out:
            op = act[0]
            if op == "spawn":
                self.spawns.append((act[1], act[2]))
            elif op == "dispatch":
                spec = act[2][0]
                self.running.setdefault(act[1], []).append(spec.tid)
                if spec.kind == ACTOR_CALL:  # per actor process: one worker's sequence
                    self.call_order.setdefault((spec.actor, act[1]), []).append(spec.tid)
            elif op == "kill":
                self.kills.append(act[2])
            elif op == "lease":
                body = act[2]
                if body[0] == "grant":
                    self.leased[body[2]] = act[1]
                elif body[0] == "lost":
                    self.leased.pop(body[1], None)
            elif op == "event":
                tid, state = act[1][0], act[1][2]
                if state == "queued":
                    self.opened[tid] = self.opened.get(tid, 0) + 1
                elif state in FINAL:
                    self.closed[tid] = self.closed.get(tid, 0) + 1

    # ---- the cluster ----------------------------------------------------------------

    @rule(cpus=st.integers(1, 3))
    def add_node(self, cpus):
        nid = self._id(b"n")
        self.s.add_node(nid, {"CPU": float(cpus)})
        self.nodes.append(nid)
        self._pump()

    @rule(data=st.data())
    @precondition(lambda self: self.spawns)
    def start_worker(self, data):
        if not self.spawns:
            return
        nid, actor = self.spawns.pop(data.draw(st.integers(0, len(self.spawns) - 1)))
        self.s.add_worker(self._id(b"w"), nid, 1, actor)
        self._pump()

    @rule(data=st.data())
    @precondition(lambda self: self.spawns)
    def spawn_dies(self, data):
        """A worker the scheduler asked for is killed before it joins."""
        if not self.spawns:
            return
        nid, actor = self.spawns.pop(data.draw(st.integers(0, len(self.spawns) - 1)))
        self.s.spawn_failed(nid, actor, "was killed")
        self._pump()

    @rule(data=st.data())
    @precondition(lambda self: self.s.workers)
    def worker_dies(self, data):
        wids = sorted(self.s.workers)
        if not wids:
            return
        wid = data.draw(st.sampled_from(wids))
        self.running.pop(wid, None)
        self.s.worker_died(wid, "killed by the test")
        self.s.client_gone(wid)  # as the head does: what it held is released
        self.worker_holds.pop(wid, None)
        self._pump()

    @rule()
    @precondition(lambda self: self.kills)
    def deliver_kills(self):
        for wid in self.kills:
            self.running.pop(wid, None)
            self.s.worker_died(wid, "killed as asked")
            self.s.client_gone(wid)
            self.worker_holds.pop(wid, None)
        self.kills = []
        self._pump()

    @rule(data=st.data())
    @precondition(lambda self: sum(n.alive for n in self.s.nodes.values()) > 1)
    def node_dies(self, data):
        alive = [n for n in self.nodes if self.s.nodes[n].alive]
        if len(alive) < 2:
            return
        nid = data.draw(st.sampled_from(alive))
        workers = [w for w, x in self.s.workers.items() if x.node == nid]
        for wid in workers:
            self.running.pop(wid, None)
        self.spawns = [sp for sp in self.spawns if sp[0] != nid]
        self.s.node_died(nid, "killed by the test")
        for wid in workers:  # as the head does: the node's workers are gone clients
            self.s.client_gone(wid)
            self.worker_holds.pop(wid, None)
        self._pump()

    # ---- work -----------------------------------------------------------------------

    @rule(
        target=refs,
        deps=st.lists(refs, max_size=3),
        cpus=st.sampled_from([0.5, 1.0, 2.0]),
        retries=st.sampled_from([2, 0, -1]),  # -1: forever (max_retries=-1)
    )
    def submit(self, deps, cpus, retries):
        tid = self._id(b"t")
        deps = tuple(d for d in dict.fromkeys(deps) if d in self.held)
        spec = TaskSpec.new(tid, "f", fid=b"f", deps=deps, res={"CPU": cpus}, retries=retries)
        self.s.submit(DRIVER, spec, 0.0)
        self.submitted.append(tid)
        self.held.add(spec.returns[0])
        self._pump()
        return spec.returns[0]

    @rule(target=refs)
    def put(self):
        oid = object_id(self._id(b"p"))
        self.s.put(DRIVER, oid, (INLINE, b"v"))
        self.held.add(oid)
        self._pump()
        return oid

    @rule(oid=consumes(refs))
    def drop(self, oid):
        if oid in self.held:
            self.held.discard(oid)
            self.s.refs(DRIVER, [(oid, -1)])
            self._pump()

    @rule(data=st.data(), fail=st.booleans(), quick=st.booleans(), retry=st.booleans())
    @precondition(lambda self: any(self.running.values()))
    def finish(self, data, fail, quick, retry):
        busy = sorted(w for w, tids in self.running.items() if tids)
        if not busy:
            return
        wid = data.draw(st.sampled_from(busy))
        tids = self.running[wid]
        tid = tids.pop(data.draw(st.integers(0, len(tids) - 1)))
        t = self.s.tasks.get(tid)
        returns = t.spec.returns if t is not None else (object_id(tid),)
        payload = system_error_payload(ValueError, "boom") if fail else (INLINE, b"r")
        # quick tasks teach the scheduler to queue more behind busy workers
        took = 0.0005 if quick else 1.0
        self.s.task_done(wid, tid, [(oid, payload, ()) for oid in returns], 1.0, 1.0 + took, retry)
        self._pump()

    @rule(data=st.data())
    @precondition(lambda self: any(self.running.values()))
    def submit_from_a_task(self, data):
        """A running task submits an inner task (its worker holds the inner ref)."""
        busy = sorted(w for w, tids in self.running.items() if tids and w in self.s.workers)
        if not busy:
            return
        wid = data.draw(st.sampled_from(busy))
        inner = TaskSpec.new(self._id(b"i"), "inner", fid=b"g", retries=2)
        self.s.submit(wid, inner, 0.0)
        self.submitted.append(inner.tid)
        self.worker_holds.setdefault(wid, set()).add(inner.returns[0])
        self._pump()

    @rule(data=st.data())
    @precondition(lambda self: any(t and self.worker_holds.get(w) for w, t in self.running.items()))
    def return_a_ref(self, data):
        """A running task returns a ref its worker holds: the worker sends the result
        (holding the ref) first and drops its own ref later (kit's order)."""
        busy = sorted(w for w, tids in self.running.items() if tids and self.worker_holds.get(w))
        if not busy:
            return
        wid = data.draw(st.sampled_from(busy))
        tid = self.running[wid].pop(data.draw(st.integers(0, len(self.running[wid]) - 1)))
        x = data.draw(st.sampled_from(sorted(self.worker_holds[wid])))
        inner = task_of(x)
        runner = next((w for w, tids in self.running.items() if inner in tids), None)
        if runner is not None and data.draw(st.booleans()):  # the inner task ends first
            self.running[runner].remove(inner)
            self.s.task_done(runner, inner, [(x, (INLINE, b"x"), ())], 1.0, 2.0)
            self._pump()
        t = self.s.tasks.get(tid)
        returns = t.spec.returns if t is not None else (object_id(tid),)
        self.s.task_done(wid, tid, [(oid, (INLINE, b"r"), (x,)) for oid in returns], 1.0, 2.0)
        self._pump()

    @rule(data=st.data())
    @precondition(lambda self: any(self.worker_holds.values()))
    def worker_drops_a_ref(self, data):
        holders = sorted(w for w, held in self.worker_holds.items() if held)
        if not holders:
            return
        wid = data.draw(st.sampled_from(holders))
        oid = data.draw(st.sampled_from(sorted(self.worker_holds[wid])))
        self.worker_holds[wid].discard(oid)
        self.s.refs(wid, [(oid, -1)])
        self._pump()

    @rule(data=st.data(), blocked=st.booleans())
    @precondition(lambda self: any(self.running.values()))
    def worker_waits_in_get(self, data, blocked):
        busy = sorted(w for w, tids in self.running.items() if tids and w in self.s.workers)
        if not busy:
            return
        self.s.worker_blocked(data.draw(st.sampled_from(busy)), blocked)
        self._pump()

    @rule(n=st.integers(1, 3), cpus=st.sampled_from([1.0, 2.0, 8.0]))
    def driver_wants_leases(self, n, cpus):
        """The direct path: the driver asks for workers (8 CPUs: denied, no node fits)."""
        self.s.want_lease(DRIVER, self._id(b"q"), {"CPU": cpus}, n)
        self._pump()

    @precondition(lambda self: self.leased)
    @rule(data=st.data())
    def driver_returns_a_lease(self, data):
        wid = data.draw(st.sampled_from(sorted(self.leased)))
        self.s.return_lease(self.leased.pop(wid), wid)
        self._pump()

    @rule()
    def unschedulable_time_passes(self):
        """Work no live node could run has waited long enough: it fails."""
        self.s.check_unschedulable(now=1e9, timeout=1.0)
        self._pump()

    @rule(data=st.data(), force=st.booleans())
    @precondition(lambda self: self.submitted)
    def cancel(self, data, force):
        if not self.submitted:
            return
        tid = data.draw(st.sampled_from(self.submitted))
        self.s.cancel(tid, force=force)
        self._pump()

    @rule(target=actors, restarts=st.sampled_from([0, 2, -1]), call_retries=st.sampled_from([0, 1]))
    def create_actor(self, restarts, call_retries):
        aid = self._id(b"a")
        opts = {"max_restarts": restarts, "max_task_retries": call_retries}
        spec = TaskSpec.new(aid, "A.__init__", kind=ACTOR_CREATE, fid=b"A", actor=aid, opts=opts)
        self.s.submit(DRIVER, spec, 0.0)
        self.submitted.append(aid)
        self.held.add(spec.returns[0])
        self.calls[aid] = []
        self.actor_kind[aid] = ACTOR_CREATE
        self._pump()
        return aid

    @rule(aid=actors)
    def call_actor(self, aid):
        tid = self._id(b"c")
        spec = TaskSpec.new(tid, "A.m", kind=ACTOR_CALL, actor=aid, method="m")
        self.s.submit(DRIVER, spec, 0.0)
        self.submitted.append(tid)
        self.held.add(spec.returns[0])
        self.calls[aid].append(tid)
        self._pump()

    # ---- invariants -----------------------------------------------------------------

    @invariant()
    def cpu_slots_stay_in_bounds(self):
        """Free CPU never exceeds the total, and goes below zero only by what tasks that
        came back from ``get`` took back (Ray's rule: a task leaving ``get`` continues on
        its slot even if another task took it meanwhile; nothing new starts until the
        node is below its total again)."""
        s = self.s
        for n in s.nodes.values():
            if not n.alive:
                continue
            cpu, total = n.avail.get("CPU", 0.0), n.total.get("CPU", 0.0)
            assert cpu <= total + EPS, (n.nid, cpu, total)
            if cpu < -EPS:
                resumed = [w for w in (s.workers[x] for x in n.workers) if w.held]
                assert resumed, f"node {n.nid!r} is over its total with no task holding it"

    @invariant()
    def cpu_slots_are_conserved(self):
        """Free + held by running tasks + held by placed actors = the node's total."""
        s = self.s
        for n in s.nodes.values():
            if not n.alive:
                continue
            held = sum(
                w.held.get("CPU", 0.0)
                for w in (s.workers[x] for x in n.workers)
                if w.held and not w.blocked
            )
            held += sum(
                a.res.get("CPU", 0.0)
                for a in s.actors.values()
                if a.node == n.nid and a.state != "DEAD"
            )
            assert abs(n.avail.get("CPU", 0.0) + held - n.total["CPU"]) < EPS, (
                f"node {n.nid!r}: {n.avail.get('CPU')} free + {held} held != {n.total['CPU']}"
            )

    @invariant()
    def indexes_match_the_workers(self):
        """The placement indexes (idle workers per node, pipeline candidates by queue
        length) say exactly what scanning every worker would."""
        s = self.s
        idle = {
            (w.node, w.wid) for w in s.workers.values() if w.state == "IDLE" and w.actor is None
        }
        assert idle == {(n, wid) for n, ws in s.idle.items() for wid in ws}
        assert all(ws for ws in s.idle.values()), "an empty entry left in the idle index"
        for depth, bucket in enumerate(s.pipe):
            for wid, w in bucket.items():
                assert s.workers.get(wid) is w and len(w.tasks) == depth and w.bucket == depth
                assert w.state == "BUSY" and not w.blocked and w.slow == 0

    @invariant()
    def nothing_referenced_is_freed(self):
        objects = self.s.objects
        for oid in self.held:
            assert oid in objects, f"object {oid!r} freed while the driver holds it"
        for t in self.s.tasks.values():
            for oid in t.spec.deps + t.spec.contained:
                assert oid in objects, f"argument {oid!r} of a live task was freed"
        for obj in list(objects.values()):
            for inner in obj.contained:
                assert inner in objects, f"{inner!r}, held by {obj.oid!r}, was freed"

    @invariant()
    def no_task_ends_twice(self):
        for tid, n in self.closed.items():
            assert n <= self.opened.get(tid, 0), f"task {tid!r} ended {n} times"

    @invariant()
    def actor_calls_arrive_in_order(self):
        """Each process of an actor gets its calls in submission order (after a restart
        the new process gets the calls that were in flight again, first)."""
        for (aid, wid), order in self.call_order.items():
            submitted = [t for t in self.calls[aid] if t in order]
            assert order == submitted, f"actor {aid!r} got its calls out of order in {wid!r}"

    def teardown(self):
        """Give the cluster room and let every worker finish: everything ends once."""
        if not hasattr(self, "s"):
            return
        self.add_node(4)
        for _ in range(400):
            if not self._drain_step():
                break
        for tid in self.submitted:
            if self.actor_kind.get(tid) == ACTOR_CREATE and tid in self.s.tasks:
                continue  # a live actor's constructor stays until the actor dies
            assert self.closed.get(tid, 0) == self.opened.get(tid, 0) >= 1, (
                f"task {tid!r}: queued {self.opened.get(tid, 0)} times, "
                f"ended {self.closed.get(tid, 0)} times"
            )
        for obj in self.s.objects.values():  # nothing left waiting for a value forever
            if obj.payload is None and task_of(obj.oid) not in self.s.tasks:
                raise AssertionError(f"object {obj.oid!r} is alive and will never be ready")
        for oid in self.held:
            if task_of(oid) not in self.s.tasks:  # else: an actor's creation result
                assert self.s.objects[oid].payload is not None, f"{oid!r} never got a value"

    def _drain_step(self) -> bool:
        """Return leases, deliver kills, start workers, finish what runs; True if anything
        happened."""
        progressed = False
        for wid, owner in list(self.leased.items()):  # the driver is done with them
            self.s.return_lease(owner, wid)
            del self.leased[wid]
            progressed = True
        if self.kills:
            self.deliver_kills()
            progressed = True
        while self.spawns:
            nid, actor = self.spawns.pop()
            self.s.add_worker(self._id(b"w"), nid, 1, actor)
            progressed = True
        for wid, tids in list(self.running.items()):
            while tids:
                tid = tids.pop(0)
                t = self.s.tasks.get(tid)
                returns = t.spec.returns if t is not None else (object_id(tid),)
                self.s.task_done(wid, tid, [(o, (INLINE, b"r"), ()) for o in returns], 1, 2)
                progressed = True
        self.s._dirty = True
        self._pump()
        return progressed or bool(self.kills or self.spawns)


TestClusterPlay = ClusterPlay.TestCase
TestClusterPlay.settings = settings(
    # A longer search: KIT_FUZZ_EXAMPLES=5000 python -m pytest tests/test_scheduler_props.py
    max_examples=int(os.environ.get("KIT_FUZZ_EXAMPLES") or 150),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
