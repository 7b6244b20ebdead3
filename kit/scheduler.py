"""The cluster's task and object state, as a pure state machine.

Events go in as method calls (``submit``, ``task_done``, ``worker_died``, ...);
decisions come out as actions appended to ``self.out``, which the head's I/O
loop turns into messages. Nothing here touches a socket, a thread or a clock
(times are passed in), so it is unit-tested without processes.

Actions (tuples in ``self.out``):

    ("dispatch", worker_id, (spec, fid, dep_payloads))  run a task on a worker
    ("object",   client_id, oid, payload)                 an object a client waits for
    ("free",     node_id, name)                          unlink a shared-memory object
    ("spawn",    node_id, actor_id or None[, env])       start a worker (for an actor; in a
                                                         runtime_env: the packed env)
    ("kill",     node_id, worker_id)                     kill a worker process
    ("cancel",   worker_id, task_id)                     interrupt a running task
    ("event",    record)                                 a task state change, for widgets
                                                         (queued, running, finished, failed,
                                                         cancelled)

States:

    task:   WAITING (deps pending) -> READY -> RUNNING -> FINISHED | FAILED
            any unfinished state   -> CANCELLED
            RUNNING -> READY again when its worker dies and retries remain
    object: pending (payload None) -> ready (payload set; may be an error payload)
            -> freed (no holder, pin or container left)
    worker: IDLE <-> BUSY, BLOCKED while its task waits in get, RETIRING (an idle
            extra being stopped), DEAD
    actor:  PENDING -> ALIVE -> (RESTARTING -> ALIVE)* -> DEAD
"""

from __future__ import annotations

import sys
from collections import deque

from .errors import (
    ActorDiedError,
    NodeDiedError,
    TaskCancelledError,
    TaskUnschedulableError,
    WorkerCrashedError,
)
from .lineage import LineageTable
from .records import ACTOR_CALL, ACTOR_CREATE, ERROR, SHARED, TASK, TaskEvent, TaskSpec
from .serialization import system_error_payload

# task states
WAITING, READY, RUNNING, FINISHED, FAILED, CANCELLED = (
    "WAITING",
    "READY",
    "RUNNING",
    "FINISHED",
    "FAILED",
    "CANCELLED",
)
# worker states (a worker's task waiting in get is BUSY with ``blocked`` set)
IDLE, BUSY, RETIRING, DEAD = "IDLE", "BUSY", "RETIRING", "DEAD"
# actor states
A_PENDING, A_ALIVE, A_RESTARTING, A_DEAD = "PENDING", "ALIVE", "RESTARTING", "DEAD"

# The moves each kind of record may make; ``_move`` refuses any other.
TASK_MOVES = {
    WAITING: {READY, FAILED, CANCELLED},
    READY: {RUNNING, WAITING, FAILED, CANCELLED},  # WAITING: an argument is being rebuilt
    RUNNING: {FINISHED, FAILED, CANCELLED, READY},  # READY: its worker died, retries left
    FINISHED: set(),
    FAILED: set(),
    CANCELLED: set(),
}
# An actor's constructor runs again when the actor restarts.
CREATE_MOVES = {**TASK_MOVES, FINISHED: {READY}}
WORKER_MOVES = {
    IDLE: {BUSY, RETIRING, DEAD},
    BUSY: {IDLE, DEAD},
    RETIRING: {DEAD},
    DEAD: set(),
}
ACTOR_MOVES = {
    A_PENDING: {A_ALIVE, A_RESTARTING, A_DEAD},  # its worker died before __init__ ended
    A_ALIVE: {A_RESTARTING, A_DEAD},
    A_RESTARTING: {A_ALIVE, A_RESTARTING, A_DEAD},  # it may die again while restarting
    A_DEAD: set(),
}


class StateError(AssertionError):
    """A record was asked to make a move its table does not allow: a bug in kit."""


def _move(record, new: str, table: dict) -> None:
    """Set ``record.state`` to ``new`` if ``table`` allows it, else raise ``StateError``."""
    old = record.state
    if new not in table[old]:
        raise StateError(f"{type(record).__name__} {record!r}: {old} -> {new} is not allowed")
    record.state = new


def _task_move(t, new: str) -> None:
    _move(t, new, CREATE_MOVES if t.spec.kind == ACTOR_CREATE else TASK_MOVES)


DEAD_ACTORS_KEPT = 1000  # dead actors remembered (why they died), the oldest forgotten
DIRECT_ERRORS = 1000  # direct tasks' tracebacks kept until the dashboard's probe takes them
RECLAIM_EVERY = 0.05  # seconds between two asks to one driver to give leases back
PIPELINE_DEPTH = 8  # tasks queued on one worker when tasks are known to be short
FAST_TASK_SECONDS = 0.002  # "short": a function's mean run time below this
# what Scheduler.counts counts (kit.cluster_status()["counts"]): tasks submitted,
# finished, failed, run again after a failure, run again to make a lost result, and
# objects spilled to disk
COUNTS = ("submitted", "finished", "failed", "retried", "rebuilt", "spilled")


class Task:
    __slots__ = (
        "spec",
        "tid",
        "state",
        "owner",
        "deps_left",
        "retries",
        "worker",
        "node",
        "label",
        "submitted",
        "started",
        "finished",
        "fid",
        "res",
        "shape",
        "slow",
    )

    def __init__(self, spec: TaskSpec, owner, now):
        self.spec = spec = _compact(spec)
        self.tid = spec.tid
        self.state = WAITING
        self.owner = owner
        self.deps_left = 0
        self.retries = spec.retries  # runs left; -1 (or below): forever, as in Ray
        self.worker = None
        self.node = None
        self.label = spec.label
        self.submitted = now
        self.started = self.finished = None
        self.fid = spec.fid
        self.res = spec.res
        opts = spec.opts
        # what placement depends on: tasks of one shape fit (or not) the same workers
        self.shape = _shared((_res_key(spec.res), opts.get("node") if opts else None, spec.fid))
        self.slow = False  # counted in its worker's ``slow`` when it was dispatched


# Values many queued tasks repeat (resource requests, function ids, labels, shapes)
# are kept once and shared: a queued task holds pointers, not copies.
_SHARED: dict = {}
_SHARED_MAX = 100_000  # a runaway variety of values: stop sharing, stay bounded


def _shared(value):
    """The one kept object equal to ``value`` (hashable), or ``value`` itself."""
    kept = _SHARED.get(value)
    if kept is None:
        if len(_SHARED) >= _SHARED_MAX:
            return value
        kept = _SHARED[value] = value
    return kept


def _res_key(res) -> tuple:
    return tuple(sorted(res.items()))


def _shared_res(res) -> dict:
    """The one kept resource dict equal to ``res`` (every task asking the same shares it)."""
    key = ("res", _res_key(res))
    kept = _SHARED.get(key)
    if kept is None:
        if len(_SHARED) >= _SHARED_MAX:
            return dict(res)
        kept = _SHARED[key] = dict(res)
    return kept


def _compact(raw) -> TaskSpec:
    """Name a spec's fields, sharing its resource dict, function id and label with every
    other task that has the same ones (as it arrived, each spec had its own)."""
    fid = raw[2] if raw[2] is None else _shared(raw[2])
    res = _shared_res(raw[7])
    return tuple.__new__(
        TaskSpec, (*raw[:2], fid, *raw[3:7], res, *raw[8:10], sys.intern(raw[10]), *raw[11:])
    )


class Obj:
    """An object the cluster knows: its payload once ready, and who keeps it alive.

    Most objects have one holder (their task's owner), no waiter and no waiting
    task, so those are stored without a container until a second one comes: a
    client id (bytes) or a set for ``holders`` and ``waiters``, None or a list for
    ``tasks``. That keeps a queued task's result at about 100 bytes (it was ~600).
    """

    __slots__ = ("oid", "payload", "holders", "pins", "contained", "waiters", "tasks", "size")

    def __init__(self, oid):
        self.oid = oid
        self.payload = None
        self.holders = None  # client ids holding a ref: None, one id, or a set
        self.pins = 0  # pending tasks using it as an argument, containing objects
        self.contained = ()  # oids this object's value holds refs to
        self.waiters = None  # client ids that asked for it: None, one id, or a set
        self.tasks = None  # task ids waiting for it: None or a list
        self.size = 0

    def add_holder(self, cid) -> None:
        self.holders = _with(self.holders, cid)

    def drop_holder(self, cid) -> None:
        self.holders = _without(self.holders, cid)

    def add_waiter(self, cid) -> None:
        self.waiters = _with(self.waiters, cid)

    def drop_waiter(self, cid) -> None:
        self.waiters = _without(self.waiters, cid)

    def add_task(self, tid) -> None:
        if self.tasks is None:
            self.tasks = [tid]
        else:
            self.tasks.append(tid)


def _with(group, cid):
    """``group`` (None, one id, or a set of ids) with ``cid`` in it."""
    if group is None or group == cid:
        return cid
    if isinstance(group, set):
        group.add(cid)
        return group
    return {group, cid}


def _without(group, cid):
    if group is None or group == cid:
        return None
    if isinstance(group, set):
        group.discard(cid)
        if len(group) == 1:
            return next(iter(group))
        return group or None
    return group


def _members(group):
    """The ids in a group, as an iterable."""
    if group is None:
        return ()
    if isinstance(group, set):
        return group
    return (group,)


def _has(group, cid) -> bool:
    return group is not None and (group == cid or (isinstance(group, set) and cid in group))


class Worker:
    __slots__ = (
        "wid",
        "node",
        "pid",
        "state",
        "tasks",
        "fids",
        "held",
        "actor",
        "blocked",
        "idle_since",
        "slow",
        "bucket",
        "lease",
        "address",
        "direct",
        "env",
    )

    def __init__(self, wid, node, pid, actor=None, address=None, env=None):
        self.wid = wid
        self.node = node
        self.pid = pid
        self.state = IDLE
        self.tasks = []  # dispatched, unfinished task ids, in order
        self.fids = set()
        self.held = None  # resources held while busy
        self.actor = actor
        self.blocked = False
        self.idle_since = 0.0
        self.slow = 0  # queued tasks not known to be short (none: it may take more)
        self.bucket = -1  # its pipeline bucket (queue length), or -1: not a candidate
        self.lease = None  # the driver it is leased to (kit.lease), or None
        self.address = address  # where a driver that leases it sends tasks
        self.direct = 0  # its driver's tasks on it now, as the driver's records say
        self.env = env  # the key of the runtime_env it runs (None: the base environment)


class Node:
    __slots__ = (
        "nid",
        "total",
        "avail",
        "workers",
        "alive",
        "info",
        "spawning",
        "store_used",
        "done",
        "failed",
        "spilled",
    )

    def __init__(self, nid, resources, info):
        self.nid = nid
        self.total = dict(resources)
        self.avail = dict(resources)
        self.workers = set()
        self.alive = True
        self.info = info
        self.spawning = 0
        self.store_used = 0  # bytes in shared memory, as its agent last reported
        self.spilled = 0  # objects its agent spilled to disk, as it last reported
        self.done = 0
        self.failed = 0


class Actor:
    __slots__ = (
        "aid",
        "create",
        "state",
        "worker",
        "node",
        "queue",
        "inflight",
        "restarts",
        "name",
        "cause",
        "owner",
        "res",
        "task_retries",
        "meta",
        "orphaned",
    )

    def __init__(self, aid, create_task, owner):
        opts = create_task.spec.opts
        self.aid = aid
        self.create = create_task
        self.state = A_PENDING
        self.worker = None
        self.node = None
        self.queue: deque = deque()  # calls not yet sent, in submission order
        self.inflight = []  # calls sent to the worker, unfinished
        self.restarts = opts.get("max_restarts", 0)
        self.task_retries = opts.get("max_task_retries", 0)
        self.name = opts.get("name")
        self.cause = ""
        self.owner = owner
        self.res = create_task.res
        self.meta = opts.get("meta")
        self.orphaned = False  # every handle is gone: it dies once its calls are done


def fits(req, avail) -> bool:
    for k, v in req.items():
        if v and avail.get(k, 0.0) < v - 1e-9:
            return False
    return True


def _take(req, avail):
    for k, v in req.items():
        if v:
            avail[k] = avail.get(k, 0.0) - v


def _give(req, avail):
    for k, v in req.items():
        if v:
            avail[k] = avail.get(k, 0.0) + v


class Scheduler:
    """All cluster state the head keeps; see the module docstring."""

    def __init__(self):
        self.tasks: dict = {}
        self.objects: dict = {}
        self.workers: dict = {}
        self.nodes: dict = {}
        self.actors: dict = {}
        self.names: dict = {}  # (namespace, name) -> actor id
        self.functions: dict = {}  # fid -> blob
        self.ready: deque = deque()
        self.out: list = []
        self.fn_stats: dict = {}  # fid -> [count, total seconds]
        self.interrupted: set = set()  # tasks asked to stop on their worker (no force)
        self.clients: dict = {}  # client id -> set of oids held
        # every kind named from the start: kit.cluster_status()["counts"] has the same
        # keys whatever happened (a run with no lost object has "rebuilt": 0)
        self.counts = dict.fromkeys(COUNTS, 0)
        self._dirty = False
        self.now = 0.0  # set by the head before each event (time is injected)
        self._pending_actors: list = []
        self.actor_of: dict = {}  # creation result oid -> actor id (handles hold it)
        self.dead_actors: deque = deque()  # actor ids in the order they died (see _bury)
        self.copies: dict = {}  # shared-memory name -> [(node id, copy name, size)]
        self.lineage = LineageTable()  # how to make lost objects again
        self.children: dict = {}  # task id -> ids of the tasks it submitted (to cancel)
        self.unschedulable: dict = {}  # shape -> (since, a task id): no node could run it
        # Indexes kept up to date by every state change, so placement costs the same
        # with 1 node or 500: idle task workers per node (insertion order: round robin),
        # and busy workers that may take one more short task, by queue length.
        self.idle: dict = {}  # node id -> {worker id: Worker}
        # Workers started for a runtime_env run only its tasks (kit.runtime_env): their
        # own index, and the spawns asked for, per environment.
        self.idle_env: dict = {}  # env key -> {node id: {worker id: Worker}}
        self.env_spawning: dict = {}  # (node id, env key) -> workers asked for
        self.leases: dict = {}  # driver id -> {worker ids leased to it} (kit.lease)
        self.lease_wants: deque = deque()  # [driver, req, res, count]: waiting for workers
        # (client, oid) -> [+1 | -1, ...]: ref changes about objects the head did not know
        # yet (a direct result, or a ref in it, reaches its driver before the head)
        self.early: dict = {}
        self.direct_errors: dict = {}  # task id -> traceback text of a failed direct task
        self.waiting_direct: set = set()  # direct tasks shown waiting in their driver
        self.reclaimed: dict = {}  # driver id -> when it was last asked to give leases back
        # task id -> its driver, which holds later plain tasks off its direct path until
        # this one is dispatched (submission order: see Direct.behind_head)
        self.start_watch: dict = {}
        self.pipe: list = [{} for _ in range(PIPELINE_DEPTH)]  # [queue length] -> {wid: w}
        self.may_grow = False  # an autoscaler may add nodes: unschedulable work waits
        self.draining: set = set()  # nodes an autoscaler empties: no new work unless pinned

    # ---- nodes and workers ---------------------------------------------------------

    def add_node(self, nid, resources, info=None):
        self.nodes[nid] = Node(nid, resources, info or {})
        self._dirty = True

    def drain(self, nid, on: bool = True) -> None:
        """Place no new work on node ``nid`` (unless pinned there), or again (``on`` False):
        an autoscaler empties a node this way before it removes it (``kit/scaling.py``)."""
        if on and nid in self.nodes:
            self.draining.add(nid)
        else:
            self.draining.discard(nid)
        self._dirty = True

    def add_worker(self, wid, nid, pid, actor_id=None, address=None, env=None):
        node = self.nodes.get(nid)
        if node is None or not node.alive:
            self.out.append(("kill", nid, wid))
            return
        w = Worker(wid, nid, pid, actor_id, address, env)
        self.workers[wid] = w
        node.workers.add(wid)
        if actor_id is None:
            if env is None:
                node.spawning = max(0, node.spawning - 1)
            else:
                self._env_spawned(nid, env)
            self._idle_index(w).setdefault(nid, {})[wid] = w
            self._dirty = True
            return
        actor = self.actors.get(actor_id)
        if actor is None or actor.state == A_DEAD:
            self.out.append(("kill", nid, wid))
            return
        actor.worker = wid
        self._worker_to(w, BUSY)
        self._dispatch(w, actor.create)
        self._pump_actor(actor)

    def worker_died(self, wid, cause: str, oom=False):
        w = self.workers.get(wid)
        if w is None or w.state == DEAD:
            return
        was_blocked = w.blocked
        self._worker_to(w, DEAD)
        node = self.nodes.get(w.node)
        if node is not None:
            node.workers.discard(wid)
            if w.held is not None and not was_blocked:
                _give(w.held, node.avail)
        w.held = None
        if w.lease is not None:
            self.leases.get(w.lease, set()).discard(wid)
            self.out.append(("lease", w.lease, ("lost", wid, cause, oom)))
            w.lease = None
        if w.actor is not None:
            self._actor_lost(self.actors.get(w.actor), cause)
        else:
            for tid in list(w.tasks):
                t = self.tasks.get(tid)
                if t is None or t.state != RUNNING or t.worker != wid:
                    continue  # ended, or running again elsewhere already
                if t.retries != 0 and not oom:
                    t.retries -= 1
                    _task_move(t, READY)
                    t.worker = None
                    self.counts["retried"] += 1
                    self.ready.appendleft(tid)
                else:
                    cls = WorkerCrashedError
                    if oom:
                        from .errors import OutOfMemoryError

                        cls = OutOfMemoryError
                    why = (
                        f"the worker running {t.label} was {cause}"
                        if oom
                        else f"the worker running {t.label} died ({cause}) and its retries "
                        f"ran out (it ran {t.spec.retries - t.retries + 1} times); raise "
                        f"max_retries or find why it dies"
                    )
                    self._fail(t, system_error_payload(cls, why))
        self.interrupted.difference_update(w.tasks)
        w.tasks.clear()
        self._repipe(w)
        self.workers.pop(wid, None)
        self._dirty = True

    def spawn_failed(self, nid, actor_id, cause: str, env=None):
        """A worker the scheduler asked for died before it joined (killed, or crashed
        while starting): the node may start another (an actor's start is retried or
        the actor dies, by the same rules as a crash)."""
        node = self.nodes.get(nid)
        if actor_id is None:
            if env is not None:
                self._env_spawned(nid, env)
            elif node is not None:
                node.spawning = max(0, node.spawning - 1)
            self._dirty = True
            return
        actor = self.actors.get(actor_id)
        if actor is not None and actor.worker is None and actor.state != A_DEAD:
            self._actor_lost(actor, f"its worker process {cause} before it started")

    def node_died(self, nid, cause="stopped answering"):
        node = self.nodes.get(nid)
        if node is None or not node.alive:
            return
        node.alive = False
        for wid in list(node.workers):
            self.worker_died(
                wid, f"its node {nid.hex() if isinstance(nid, bytes) else nid} {cause}"
            )
        for actor in list(self.actors.values()):
            if actor.node == nid and actor.worker is None and actor.state != A_DEAD:
                actor.node = None  # placed there, its worker not started: place it again
                self._place_actor(actor)
        lost = []
        for obj in list(self.objects.values()):
            p = obj.payload
            if p is not None and p[0] == SHARED and p[1] == nid and not self._use_copy(obj, nid):
                lost.append(obj)
        rebuild = [e for e in (self._object_lost(obj, f"its node {cause}") for obj in lost) if e]
        for entry in rebuild:  # after every lost object is marked as pending
            self._rebuild(entry)
        for name, held in list(self.copies.items()):  # copies the dead node held
            left = [c for c in held if c[0] != nid]
            if len(left) != len(held):
                if left:
                    self.copies[name] = left
                else:
                    del self.copies[name]
        self._dirty = True

    def _use_copy(self, obj, dead):
        """Point ``obj`` at a copy another node made of it, if one is left."""
        name = obj.payload[2]
        held = self.copies.get(name, ())
        for i, (nid, local, size) in enumerate(held):
            node = self.nodes.get(nid)
            if nid != dead and node is not None and node.alive:
                rest = [c for j, c in enumerate(held) if j != i and c[0] != dead]
                del self.copies[name]
                if rest:
                    self.copies[local] = rest
                obj.payload = (SHARED, nid, local, size)
                return True
        return False

    def _can_rebuild(self, entry) -> bool:
        """A lineage entry can make its results again: retries left, or running again."""
        return entry is not None and (entry.retries != 0 or entry.spec.tid in self.tasks)

    def _object_lost(self, obj, cause):
        """The only copy of ``obj`` is gone: the lineage entry to run again, or fail it."""
        entry = self.lineage.producer(obj.oid)
        what = f"object {obj.oid.hex()} was lost: {cause}"
        if entry is not None and entry.cancelled:  # as Ray: a cancelled task is not rerun
            why = f"{what}; its task {entry.spec.label} was cancelled, so it is not run again"
            self._set_payload(obj, system_error_payload(TaskCancelledError, why), force=True)
            return None
        if self._can_rebuild(entry):
            obj.payload = None
            return entry
        if entry is None:
            why = (
                f"{what}; it was made by kit.put (or by an actor), which kit cannot "
                f"make again: put it again, or keep the value in the driver"
            )
        else:
            why = (
                f"{what}; the task that made it ({entry.spec.label}) has no retries "
                f"left to run again: raise max_retries"
            )
        self._set_payload(obj, system_error_payload(_lost(), why), force=True)
        return None

    def _rebuild(self, entry):
        """Run a finished task again to make its lost results (and lost inputs first)."""
        spec = entry.spec
        tid = spec.tid
        if tid in self.tasks:
            return  # already running again for another result
        entry.retries -= 1
        self.counts["rebuilt"] += 1
        t = Task(spec, entry.owner, self.now)
        t.retries = entry.retries
        self.tasks[tid] = t
        deps_left = 0
        failed = None
        for oid in spec.deps + spec.contained:
            existed = oid in self.objects
            obj = self._obj(oid)
            obj.pins += 1
            if failed is not None:
                continue
            if not existed:
                producer = self.lineage.producer(oid)
                if not self._can_rebuild(producer):
                    failed = system_error_payload(
                        _lost(),
                        (
                            f"{t.label} had to run again to make an object lost with its node, "
                            f"but its argument {oid.hex()} is gone too and cannot be made again"
                        ),
                    )
                    continue
                self._rebuild(producer)
            if obj.payload is None:
                if oid in spec.deps:
                    obj.add_task(tid)
                    deps_left += 1
            elif obj.payload[0] == ERROR:
                failed = obj.payload
        self.out.append(("event", TaskEvent(tid, t.label, "queued", self.now, None, None)))
        if failed is not None:
            self._fail(t, failed)
            return
        t.deps_left = deps_left
        if deps_left == 0:
            self._make_ready(t)

    def _deps_gone(self, t) -> bool:
        """True (and ``t`` waits again) if an argument of ``t`` is being made again."""
        objects = self.objects
        missing = [oid for oid in t.spec.deps if objects[oid].payload is None]
        if not missing:
            return False
        _task_move(t, WAITING)
        t.deps_left = len(missing)
        for oid in missing:
            objects[oid].add_task(t.tid)
        return True

    # ---- clients and refs ---------------------------------------------------------

    def add_client(self, cid):
        self.clients.setdefault(cid, set())

    def client_gone(self, cid, clean=False):
        """A client left; ``clean``: it said goodbye after sending its records, so a
        worker leased to it that its records show running nothing goes back to the pool
        (others may run its tasks still, and are killed)."""
        self.reclaimed.pop(cid, None)
        self.lease_wants = deque(x for x in self.lease_wants if x[0] != cid)
        if self.start_watch:
            self.start_watch = {t: c for t, c in self.start_watch.items() if c != cid}
        if self.waiting_direct:  # its tasks' ids start with its id
            self.waiting_direct = {t for t in self.waiting_direct if not t.startswith(cid)}
        for wid in list(self.leases.get(cid, ())):
            w = self.workers.get(wid)
            if w is None:
                continue
            if clean and w.direct == 0:
                self.return_lease(cid, wid)
            else:
                self.out.append(("kill", w.node, wid))
        self.leases.pop(cid, None)
        held = self.clients.pop(cid, set())
        for oid in held:
            obj = self.objects.get(oid)
            if obj is not None:
                obj.drop_holder(cid)
                obj.drop_waiter(cid)
                self._maybe_free(obj)
        for a in list(self.actors.values()):
            if (
                a.owner == cid
                and a.state != A_DEAD
                and a.create.spec.opts.get("lifetime") != "detached"
            ):
                self.kill_actor(a.aid, "its creator disconnected")

    def refs(self, cid, events):
        """Apply a client's ref changes: ``[(oid, +1 | -1), ...]`` in the order they happened."""
        held = self.clients.setdefault(cid, set())
        for oid, delta in events:
            obj = self.objects.get(oid)
            if obj is None:  # freed (a stale ref), or not known yet: see ``publish``
                self._early(cid, oid, delta)
                continue
            if delta > 0:
                obj.add_holder(cid)
                held.add(oid)
            else:
                held.discard(oid)
                obj.drop_holder(cid)
                obj.drop_waiter(cid)
                self._maybe_free(obj)

    def _obj(self, oid):
        obj = self.objects.get(oid)
        if obj is None:
            obj = self.objects[oid] = Obj(oid)
        return obj

    def _hold(self, cid, oid):
        obj = self._obj(oid)
        obj.add_holder(cid)
        self.clients.setdefault(cid, set()).add(oid)
        return obj

    def _maybe_free(self, obj):
        if obj.payload is None or obj.holders or obj.pins:
            return
        self._free(obj)

    def _free(self, obj):
        self.objects.pop(obj.oid, None)
        self.lineage.object_gone(obj.oid)
        aid = self.actor_of.pop(obj.oid, None)
        if aid is not None:
            a = self.actors.get(aid)
            if a is not None and not a.name and a.create.spec.opts.get("lifetime") != "detached":
                if a.queue or a.inflight:  # as Ray: the calls already made run first
                    a.orphaned = True
                else:
                    self.kill_actor(aid, "every handle to it was dropped")
        p = obj.payload
        if p is not None and p[0] == SHARED:
            self.out.append(("free", p[1], p[2]))
            for nid, local, _ in self.copies.pop(p[2], ()):
                self.out.append(("free", nid, local))
        for inner in obj.contained:
            self._unpin(inner)

    def _unpin(self, oid):
        obj = self.objects.get(oid)
        if obj is not None:
            obj.pins -= 1
            self._maybe_free(obj)

    def _pin(self, oid):
        self._obj(oid).pins += 1

    # ---- objects ------------------------------------------------------------------

    def put(self, cid, oid, payload, contained=()):
        """A client stores an object; ``payload`` None: it will (a direct result still
        running, whose ref escaped: kit.lease), and holds it meanwhile."""
        obj = self._hold(cid, oid)
        if payload is None:
            return
        if obj.payload is not None:
            return  # published by its worker already
        obj.contained = tuple(contained)
        for inner in obj.contained:
            self._pin(inner)
        self._set_payload(obj, payload)

    def add_copy(self, nid, name, local, size):
        """A node copied a shared object from another node (to read it locally)."""
        if nid in self.nodes:
            self.copies.setdefault(name, []).append((nid, local, size))

    def node_store(self, nid, used: int, spilled: int):
        """A node's agent reports its store: bytes in shared memory, objects spilled so far.

        The agent keeps the store under its limit itself (``kit.ledger``); the head only
        shows what it reports."""
        node = self.nodes.get(nid)
        if node is None:
            return
        node.store_used = used
        if spilled > node.spilled:
            self.counts["spilled"] += spilled - node.spilled
            node.spilled = spilled

    def subscribe(self, cid, oids):
        for oid in oids:
            obj = self.objects.get(oid)
            if obj is None:
                self.out.append(
                    (
                        "object",
                        cid,
                        oid,
                        system_error_payload(
                            _lost(),
                            f"object {oid.hex()} does not exist in this cluster (freed, "
                            f"or made by another cluster)",
                        ),
                    )
                )
            elif obj.payload is not None:
                self.out.append(("object", cid, oid, obj.payload))
            else:
                obj.add_waiter(cid)

    def _set_payload(self, obj, payload, force=False):
        if obj.payload is not None and not force:
            return
        obj.payload = payload
        if payload[0] == SHARED:
            obj.size = payload[3]
        for cid in _members(obj.waiters):
            self.out.append(("object", cid, obj.oid, payload))
        obj.waiters = None
        waiting, obj.tasks = obj.tasks or (), None
        failed = payload[0] == ERROR
        for tid in waiting:
            t = self.tasks.get(tid)
            if t is None or t.state != WAITING:
                continue
            if failed:
                self._fail(t, payload)
            else:
                t.deps_left -= 1
                if t.deps_left == 0:
                    self._make_ready(t)
        if not (obj.holders or obj.pins):
            self._free(obj)

    # ---- tasks ---------------------------------------------------------------------

    def register_function(self, fid, blob):
        self.functions[fid] = blob

    def submit(self, cid, spec, now=0.0):
        """A client submitted a task, an actor's creation or an actor call."""
        t = Task(spec, cid, now)
        spec = t.spec
        self.tasks[t.tid] = t
        opts = spec.opts
        if opts and "parent" in opts:
            self.children.setdefault(opts["parent"], []).append(t.tid)
        shown = t.tid in self.waiting_direct  # its driver showed it waiting, then sent it here
        if shown:
            self.waiting_direct.discard(t.tid)
        else:
            self.counts["submitted"] += 1
        for oid in spec.returns:
            self._hold(cid, oid)
        missing = [oid for oid in spec.deps if oid not in self.objects]
        for oid in spec.deps:
            self._pin(oid)
        for oid in spec.contained:
            self._pin(oid)
        if missing:
            self._missing_args(t, missing)
            return
        if not shown:
            self.out.append(("event", TaskEvent(t.tid, t.label, "queued", now, None, None)))
        kind = spec.kind
        if kind == ACTOR_CREATE and not self._new_actor(t, cid):
            return
        if kind == ACTOR_CALL:
            actor = self.actors.get(spec.actor)
            if actor is None or actor.state == A_DEAD:
                why = actor.cause if actor is not None else "no such actor in this cluster"
                self._fail(t, system_error_payload(ActorDiedError, f"the actor is dead: {why}"))
                return
            actor.queue.append(t.tid)
        deps_left = 0
        for oid in spec.deps:
            obj = self.objects[oid]
            if obj.payload is None:
                obj.add_task(t.tid)
                deps_left += 1
            elif obj.payload[0] == ERROR:
                self._fail(t, obj.payload)
                return
        t.deps_left = deps_left
        if deps_left == 0:
            self._make_ready(t)

    def _missing_args(self, t, missing):
        """Fail ``t``: arguments it names are not in this cluster (freed, or another's)."""
        why = (
            f"argument object {missing[0].hex()} of {t.label} does not exist in this "
            f"cluster (it was freed, or it belongs to another cluster)"
        )
        self._fail(t, system_error_payload(_lost(), why))
        for oid in missing:
            o = self.objects.get(oid)
            if o is not None and o.payload is None and not (o.pins or o.holders):
                del self.objects[oid]

    def _bury(self, actor):
        """A dead actor is kept (its calls say why it died; views list it) among the last
        DEAD_ACTORS_KEPT dead ones; older ones are forgotten, or a notebook that makes
        actors all day would grow the head without end."""
        dead = self.dead_actors
        dead.append(actor.aid)
        while len(dead) > DEAD_ACTORS_KEPT:
            old = self.actors.get(dead.popleft())
            if old is None or old.state != A_DEAD:
                continue
            del self.actors[old.aid]
            if old.name is not None:
                key = (old.create.spec.opts.get("namespace"), old.name)
                if self.names.get(key) == old.aid:
                    del self.names[key]

    def _new_actor(self, t, cid) -> bool:
        """Record the actor ``t`` creates; False (and ``t`` failed) if its name is taken."""
        spec = t.spec
        aid = spec.actor
        actor = Actor(aid, t, cid)
        self.actors[aid] = actor
        self.actor_of[spec.returns[0]] = aid
        if actor.name is None:
            return True
        key = (spec.opts.get("namespace"), actor.name)
        other = self.actors.get(self.names.get(key))
        if other is not None and other is not actor and other.state != A_DEAD:
            why = (
                f"an actor named {actor.name!r} already exists; "
                f"use kit.get_actor({actor.name!r}) or another name"
            )
            self._fail(t, system_error_payload(ActorDiedError, why))
            _move(actor, A_DEAD, ACTOR_MOVES)
            self._bury(actor)
            return False
        self.names[key] = aid
        return True

    def _make_ready(self, t):
        _task_move(t, READY)
        kind = t.spec.kind
        if kind == TASK:
            self.ready.append(t.tid)
            self._dirty = True
        elif kind == ACTOR_CREATE:
            self._place_actor(self.actors[t.spec.actor])
        else:
            actor = self.actors.get(t.spec.actor)
            if actor is not None:
                self._pump_actor(actor)

    def schedule(self):
        """Give ready tasks to idle workers, spawning workers where slots are free.

        Events only mark the state dirty; the head calls this once per batch of
        messages, so a burst of submits costs one pass.
        """
        self._dirty = False
        if self._pending_actors:
            self._place_pending_actors()
        ready = self.ready
        if not ready:
            if self.lease_wants:
                self._grant_leases()
            return
        skipped = []
        failed_shapes = set()
        scans = 0
        while ready and scans < 64:
            tid = ready.popleft()
            t = self.tasks.get(tid)
            if t is None or t.state != READY:
                continue
            shape = t.shape
            if shape in failed_shapes:
                skipped.append(tid)
                scans += 1
                continue
            if t.spec.deps and self._deps_gone(t):
                continue
            w = self._pick_worker(t)
            if w is None:
                if self._pinned_to_dead_node(t):
                    continue
                failed_shapes.add(shape)
                skipped.append(tid)
                scans += 1
                self._check_feasible(shape, t)
                continue
            if shape in self.unschedulable:
                del self.unschedulable[shape]
            if w.state == IDLE:
                _take(t.res, self.nodes[w.node].avail)
                w.held = t.res
                self._worker_to(w, BUSY)
            self._dispatch(w, t)
        ready.extendleft(reversed(skipped))
        if skipped and self.leases:
            self._reclaim()
        if self.lease_wants:
            self._grant_leases()

    def _place_pending_actors(self):
        waiting, self._pending_actors = self._pending_actors, []
        for aid in waiting:
            a = self.actors.get(aid)
            if a is not None and a.state in (A_PENDING, A_RESTARTING) and a.node is None:
                self._place_actor(a)
        if self._pending_actors and self.leases:
            self._reclaim()

    def _check_feasible(self, shape, t):
        """``t`` found no worker: if no live node could ever run it, say so."""
        if not self._feasible(t.res, t.spec.opts):
            self._unschedulable(shape, t)
        elif shape in self.unschedulable:
            del self.unschedulable[shape]

    def _feasible(self, res, opts) -> bool:
        """Some live node could ever run this: its total fits (on the node it is pinned to)."""
        want = opts.get("node") if opts and not opts.get("soft") else None
        for n in self.nodes.values():
            if n.alive and (want is None or n.nid == want) and fits(res, n.total):
                return True
        return False

    def _unschedulable(self, shape, t):
        """No live node could ever run ``t``: say so to its owner at once (once per shape)."""
        if shape in self.unschedulable:
            return
        self.unschedulable[shape] = (self.now, t.tid)
        why = self._why_unschedulable(t.label, t.res)
        self.out.append(("warn", t.owner, f"{why}; it waits for a node that fits"))

    def _why_unschedulable(self, label, res) -> str:
        alive = [n for n in self.nodes.values() if n.alive]
        if not alive:
            return f"{label} waits: the cluster has no live node"
        for k, v in sorted(res.items()):
            have = max(n.total.get(k, 0.0) for n in alive)
            if have < v - 1e-9:
                if have == 0:
                    return f"{label} needs {v:g} {k} and no node has any {k}"
                return f"{label} needs {v:g} {k} but the largest node has {have:g}"
        return f"{label} needs {res} and no node has all of it at once"

    def check_unschedulable(self, now, timeout: float):
        """Fail tasks and actors no node could run that waited ``timeout`` seconds,
        naming the resource and the largest node (unless nodes may still be added)."""
        if self.may_grow or not self.unschedulable:
            return
        expired = {s for s, (since, _) in self.unschedulable.items() if now - since >= timeout}
        if not expired:
            return
        keep: deque = deque()
        for tid in self.ready:
            t = self.tasks.get(tid)
            if t is None or t.state != READY:
                continue
            if t.shape in expired:
                why = self._why_unschedulable(t.label, t.res)
                self._fail(t, system_error_payload(TaskUnschedulableError, (
                    f"{why}, for {timeout:.0f} s; add a node that has it, or ask for less"
                )))  # fmt: skip
            else:
                keep.append(tid)
        self.ready = keep
        for shape in expired:
            del self.unschedulable[shape]
            if shape[0] == "actor":
                actor = self.actors.get(shape[1])
                if actor is not None and actor.node is None and actor.state != A_DEAD:
                    why = self._why_unschedulable(actor.create.label, actor.res)
                    self.kill_actor(actor.aid, f"{why}, for {timeout:.0f} s")

    def _pinned_to_dead_node(self, t) -> bool:
        """Fail ``t`` if it must run on a node that died (it would wait forever)."""
        opts = t.spec.opts
        want = opts.get("node") if opts else None
        if want is None or opts.get("soft"):
            return False
        node = self.nodes.get(want)
        if node is None or node.alive:
            return False
        self._fail(
            t,
            system_error_payload(
                NodeDiedError,
                (
                    f"{t.label} must run on node {want.hex()}, which died; pin it with "
                    f"NodeAffinitySchedulingStrategy(node_id, soft=True) to let it run elsewhere"
                ),
            ),
        )
        return True

    def _pick_worker(self, t):
        """An idle worker for ``t`` (its node's free resources fit), else a busy one it
        may queue behind (short tasks), else None; asks for workers where slots are free.

        Costs O(1) in the common case whatever the cluster's size: idle workers are
        indexed by node (tried in round robin), pipeline candidates by queue length.
        Arguments' nodes are tried first (a large argument is read without a copy)."""
        res = t.res
        opts = t.spec.opts
        if opts and "env" in opts:
            return self._pick_env_worker(t, opts)
        want = opts.get("node") if opts else None
        soft = want is not None and opts.get("soft")
        if soft:  # a preference: kept while that node is alive and has room
            pref = self.nodes.get(want)
            soft = pref is None or not pref.alive or not fits(res, pref.avail)
        if want is not None and not soft:
            return self._idle_on(want, res) or self._no_idle_worker(t, want)
        if t.spec.deps:
            for nid in self._arg_nodes(t):
                w = self._idle_on(nid, res) if nid not in self.draining else None
                if w is not None:
                    return w
        nodes = self.nodes
        for nid in self.idle:
            if nid not in self.draining and fits(res, nodes[nid].avail):
                w = self._idle_on(nid, res)
                ws = self.idle.get(nid)
                if ws:  # round robin: this node goes last for the next task
                    self.idle[nid] = self.idle.pop(nid)
                return w
        return self._no_idle_worker(t, None)

    def _pick_env_worker(self, t, opts):
        """An idle worker of ``t``'s runtime_env on a node where it fits, else a busy one
        to queue behind (short tasks); else asks for one where the resources are free."""
        env = opts["env"]
        key = env["key"]
        res = t.res
        want = opts.get("node") if not opts.get("soft") else None
        nodes = self.nodes
        for nid, ws in self.idle_env.get(key, {}).items():
            node = nodes[nid]
            if ws and node.alive and (want is None or nid == want) and fits(res, node.avail):
                return next(iter(ws.values()))
        for node in [nodes.get(want)] if want is not None else nodes.values():
            if node is None or not node.alive or not fits(res, node.avail):
                continue
            asked = self.env_spawning.get((node.nid, key), 0)
            if asked < max(1, int(node.avail.get("CPU", 0.0))):
                self.env_spawning[(node.nid, key)] = asked + 1
                self.out.append(("spawn", node.nid, None, env))
                break
        if self._fast(t.fid):
            for bucket in self.pipe:
                for w in bucket.values():
                    if w.env == key and w.held == res and (want is None or w.node == want):
                        return w
        return None

    def _env_spawned(self, nid, key) -> None:
        """A worker asked for in environment ``key`` on ``nid`` joined, or never will."""
        left = self.env_spawning.get((nid, key), 0) - 1
        if left > 0:
            self.env_spawning[(nid, key)] = left
        else:
            self.env_spawning.pop((nid, key), None)

    def _idle_index(self, w) -> dict:
        """The index of idle task workers ``w`` belongs in: {node id: {worker id: Worker}}."""
        if w.env is None:
            return self.idle
        return self.idle_env.setdefault(w.env, {})

    def _idle_on(self, nid, res):
        """Take an idle task worker on node ``nid`` if its free resources fit ``res``."""
        ws = self.idle.get(nid)
        if not ws:
            return None
        node = self.nodes[nid]
        if not node.alive or not fits(res, node.avail):
            return None
        return next(iter(ws.values()))

    def _arg_nodes(self, t):
        """Nodes holding ``t``'s arguments in shared memory, the most bytes first."""
        held: dict = {}
        objects = self.objects
        for oid in t.spec.deps:
            obj = objects.get(oid)
            if obj is not None and obj.payload is not None and obj.payload[0] == SHARED:
                nid = obj.payload[1]
                held[nid] = held.get(nid, 0) + obj.size + 1
        return sorted(held, key=held.__getitem__, reverse=True)

    def _no_idle_worker(self, t, only):
        """No idle worker fits ``t``: start workers where slots are free (on ``only``, or
        on any live node), and return a busy worker to queue it behind if it is short."""
        res = t.res
        self._spawn_where_free(res, only)
        if not self._fast(t.fid):
            return None
        for bucket in self.pipe:
            for w in bucket.values():
                if w.held == res and w.env is None and (only is None or w.node == only):
                    return w
        return None

    def _spawn_where_free(self, res, only):
        """Start task workers on nodes (``only``, or any live one) with slots free for ``res``."""
        for node in [self.nodes.get(only)] if only is not None else self.nodes.values():
            if node is None or not node.alive or not fits(res, node.avail):
                continue
            if only is None and node.nid in self.draining:
                continue
            if node.spawning < max(1, int(node.avail.get("CPU", 0.0))) and not self.idle.get(
                node.nid
            ):
                node.spawning += 1
                self.out.append(("spawn", node.nid, None))

    def _worker_to(self, w, new: str) -> None:
        """Move a worker to ``new`` (checked), keeping the idle index in step."""
        old = w.state
        _move(w, new, WORKER_MOVES)
        if w.actor is not None:
            return
        index = self._idle_index(w)
        if old == IDLE:
            ws = index.get(w.node)
            if ws is not None:
                ws.pop(w.wid, None)
                if not ws:
                    del index[w.node]
        if new == IDLE:
            index.setdefault(w.node, {})[w.wid] = w
        self._repipe(w)

    def _repipe(self, w) -> None:
        """File ``w`` under its queue length if a short task may queue behind it."""
        n = len(w.tasks)
        ok = (
            w.state == BUSY and w.actor is None and not w.blocked and w.slow == 0
            and 0 < n < PIPELINE_DEPTH
        )  # fmt: skip
        new = n if ok else -1
        if new == w.bucket:
            return
        if w.bucket >= 0:
            self.pipe[w.bucket].pop(w.wid, None)
        if new >= 0:
            self.pipe[new][w.wid] = w
        w.bucket = new

    def _fast(self, fid):
        st = self.fn_stats.get(fid)
        return st is not None and st[0] >= 3 and st[1] / st[0] <= FAST_TASK_SECONDS

    def _dispatch(self, w, t):
        _task_move(t, RUNNING)
        t.worker = w.wid
        t.node = w.node
        w.tasks.append(t.tid)
        if w.actor is None:
            t.slow = not self._fast(t.fid)
            w.slow += t.slow
            self._repipe(w)
        deps = {}
        for oid in t.spec.deps:
            deps[oid] = self.objects[oid].payload
        fid = t.fid
        send_fid = None
        if fid is not None and fid not in w.fids:
            w.fids.add(fid)
            send_fid = fid
        self.out.append(("dispatch", w.wid, (t.spec, send_fid, deps)))
        self.out.append(("event", TaskEvent(t.tid, t.label, "running", self.now, w.wid, w.node)))
        if self.start_watch:
            watcher = self.start_watch.pop(t.tid, None)
            if watcher is not None:
                self.out.append(("lease", watcher, ("started", [t.tid])))

    def task_done(self, wid, tid, results, started, finished, retry=False, called=None):
        """A worker finished a task: ``results`` is ``[(oid, payload, contained), ...]``;
        ``called``: when its function was called, if loading it took a while (TaskDone)."""
        t = self.tasks.get(tid)
        w = self.workers.get(wid)
        if w is not None:
            self._off_worker(w, tid)
        self._dirty = True
        if t is None or t.state != RUNNING or t.worker != wid:
            # Cancelled, ended, or running again on another worker (this report comes
            # from a worker that was declared dead): the report is not believed.
            for _, payload, _ in results:
                if payload[0] == SHARED:
                    self.out.append(("free", payload[1], payload[2]))
            return
        t.started, t.finished = started, finished
        failed = any(p[0] == ERROR for _, p, _ in results)
        if not failed:  # a failed run (cancelled at once) says nothing of its length
            st = self.fn_stats.setdefault(t.fid, [0, 0.0])
            st[0] += 1
            st[1] += max(0.0, finished - started)
        if failed and retry and t.retries != 0:
            t.retries -= 1
            _task_move(t, READY)
            self.counts["retried"] += 1
            if t.spec.kind == ACTOR_CALL:  # again on its actor, before the calls queued
                self._retry_call(t)
            else:
                self.ready.appendleft(tid)
            return
        node = self.nodes.get(t.node)
        if node is not None:
            if failed:
                node.failed += 1
            else:
                node.done += 1
        _task_move(t, _failed_state(results) if failed else FINISHED)
        self.counts["failed" if failed else "finished"] += 1
        self.out.append(
            (
                "event",
                TaskEvent(tid, t.label, t.state.lower(), finished, wid, t.node, started, called),
            )
        )
        self._store_results(t, results)
        kind = t.spec.kind
        if kind == TASK and not failed:  # before its inputs are released
            objects = self.objects
            self.lineage.record(
                t.spec, t.owner, t.retries, [oid for oid, _, _ in results if oid in objects]
            )
        self._release(t)
        if kind != TASK:
            self._actor_task_done(t, failed, results)

    def _off_worker(self, w, tid):
        """Task ``tid`` left worker ``w``: a task worker with nothing queued is idle again."""
        try:
            w.tasks.remove(tid)
        except ValueError:
            return
        self.interrupted.discard(tid)
        if w.actor is not None:
            return
        t = self.tasks.get(tid)
        if t is not None and t.slow:
            t.slow = False
            w.slow -= 1
        if not w.tasks and w.state == BUSY:
            if not w.blocked:  # a blocked worker gave its slot back already
                _give(w.held or {}, self.nodes[w.node].avail)
            w.held = None
            w.blocked = False  # an idle worker waits in no get
            w.slow = 0
            self._worker_to(w, IDLE)
            w.idle_since = self.now
        self._repipe(w)

    def _store_results(self, t, results):
        for oid, payload, contained in results:
            obj = self.objects.get(oid)
            if obj is None or obj.payload is not None:
                # Nobody holds the result any more (or a rebuild made a result that
                # was not lost): free what it would have kept.
                if payload[0] == SHARED:
                    self.out.append(("free", payload[1], payload[2]))
                continue
            obj.contained = tuple(contained)
            for inner in obj.contained:
                self._pin(inner)
            self._push_owner(t, obj, payload)
            self._set_payload(obj, payload)

    def _actor_task_done(self, t, failed, results):
        actor = self.actors.get(t.spec.actor)
        if actor is None:
            return
        if t.spec.kind == ACTOR_CALL:
            try:
                actor.inflight.remove(t.tid)
            except ValueError:
                pass
            if actor.orphaned and not actor.queue and not actor.inflight:
                self.kill_actor(actor.aid, "every handle to it was dropped")
        elif failed:
            actor.cause = "its __init__ raised"
            error = results[0][1]
            info = error[1]
            what = f"{info[2]}: {info[3]}" if info[0] == "task" else f"{info[1]}: {info[2]}"
            self.kill_actor(actor.aid, f"its constructor raised {what}", error=error)
        else:
            _move(actor, A_ALIVE, ACTOR_MOVES)
            self._pump_actor(actor)

    def _retry_call(self, t) -> None:
        """An actor call that raised one of its ``retry_exceptions`` runs again next."""
        actor = self.actors.get(t.spec.actor)
        if actor is None or actor.state == A_DEAD:
            why = f"the actor died before {t.label} could run again"
            self._fail(t, system_error_payload(ActorDiedError, why))
            return
        try:
            actor.inflight.remove(t.tid)
        except ValueError:
            pass
        actor.queue.appendleft(t.tid)
        self._pump_actor(actor)

    def _push_owner(self, t, obj, payload):
        # The submitter most likely gets its result: send it without being asked.
        if _has(obj.holders, t.owner) and not _has(obj.waiters, t.owner):
            self.out.append(("object", t.owner, obj.oid, payload))

    def _release(self, t):
        spec = t.spec
        if spec.kind == ACTOR_CREATE:
            return  # kept (args pinned) for restarts; released by kill_actor
        self.tasks.pop(t.tid, None)
        self.children.pop(t.tid, None)
        if self.start_watch:
            self.start_watch.pop(t.tid, None)
        for oid in spec.deps:
            self._unpin(oid)
        for oid in spec.contained:
            self._unpin(oid)

    def _fail(self, t, payload):
        """Fail a task without running it (or after it ran): its returns get ``payload``."""
        if t.state in (FINISHED, FAILED, CANCELLED):
            return  # it ended already (a cancelled task's returns hold the cancellation)
        _task_move(t, FAILED)
        self.counts["failed"] += 1
        self.out.append(("event", TaskEvent(t.tid, t.label, "failed", None, t.worker, t.node)))
        for oid in t.spec.returns:
            obj = self.objects.get(oid)
            if obj is not None:
                self._push_owner(t, obj, payload)
                self._set_payload(obj, payload)
        self._release(t)

    def worker_blocked(self, wid, blocked, returned=()):
        """Worker ``wid``'s task waits in ``get`` (``blocked``), or no longer does: its
        CPU is lent out meanwhile. ``returned``: the tasks that were queued behind it and
        that it gives back unstarted, ``[(task id, function id or None)]`` (the function
        id when the function's pickle came with that task): they go to other workers.
        ``blocked`` None: tasks that came while it waits, given back; nothing else."""
        w = self.workers.get(wid)
        if w is None or w.state == DEAD:
            return
        if returned:
            self._take_back(w, returned)
        if blocked is None or w.blocked == blocked:
            return  # None: tasks given back, the state unchanged
        w.blocked = blocked
        node = self.nodes.get(w.node)
        if w.held and node is not None:
            (_give if blocked else _take)(w.held, node.avail)
        self._repipe(w)
        if blocked:
            self._dirty = True

    def _take_back(self, w, returned) -> None:
        """Tasks a blocked worker never started are ready again, first in line, in order
        (those asked to stop meanwhile are cancelled); a function whose pickle it dropped
        with them is sent to it again next time."""
        back: list = []  # ready again
        stop: list = []  # cancelled meanwhile
        for tid, fid in returned:
            if fid is not None:
                w.fids.discard(fid)
            if tid not in w.tasks:
                continue
            t = self.tasks.get(tid)
            asked = tid in self.interrupted  # cancelled while queued there: it never runs
            self._off_worker(w, tid)
            if t is None or t.state != RUNNING or t.worker != w.wid:
                continue  # cancelled while on its way back: it has its result already
            _task_move(t, READY)
            t.worker = None
            (stop if asked else back).append(tid)
        self.ready.extendleft(reversed(back))
        for tid in stop:
            self.cancel(tid)
        self._dirty = True

    def cancel(self, tid, force=False, recursive=False):
        """Cancel task ``tid``; with ``recursive``, also the tasks it submitted (and theirs)."""
        children = self.children.pop(tid, ())
        if recursive:
            for child in children:
                self.cancel(child, force, recursive=True)
        t = self.tasks.get(tid)
        if t is None or t.state in (FINISHED, FAILED, CANCELLED):
            self.lineage.cancel(tid)  # finished: its lost results are not made again
            return False
        if t.spec.kind == ACTOR_CREATE:  # cancelling an actor's creation stops the actor
            self.kill_actor(t.spec.actor, "its creation was cancelled")
            return True
        payload = system_error_payload(TaskCancelledError, f"task {t.label} was cancelled")
        if t.state == RUNNING and self._interrupt(t, force):
            return True
        prev = t.state
        _task_move(t, CANCELLED)
        self.counts["failed"] += 1
        self.out.append(("event", TaskEvent(tid, t.label, "cancelled", self.now, t.worker, t.node)))
        if prev == READY:
            try:
                self.ready.remove(tid)
            except ValueError:
                pass
        for oid in t.spec.returns:
            obj = self.objects.get(oid)
            if obj is not None:
                self._push_owner(t, obj, payload)
                self._set_payload(obj, payload)
        if prev != RUNNING:
            self._release(t)
        else:
            self.tasks.pop(tid, None)
            for oid in t.spec.deps:
                self._unpin(oid)
            for oid in t.spec.contained:
                self._unpin(oid)
        return True

    def _interrupt(self, t, force) -> bool:
        """Stop running task ``t``: kill its worker (``force``, a plain task's) or interrupt
        it. True when its outcome is left to come, as in Ray: a plain task interrupted
        without force ends as it ends (TaskCancelledError, or the value it returns if it
        catches the KeyboardInterrupt); it is not retried."""
        w = self.workers.get(t.worker)
        if w is None:
            return False
        t.retries = 0
        if force and w.actor is None:
            self.out.append(("kill", w.node, w.wid))
            return False
        self.out.append(("cancel", w.wid, t.tid))
        if not force and t.spec.kind == TASK:
            self.interrupted.add(t.tid)  # (if its worker gives it back unstarted: cancelled)
            return True
        return False

    # ---- the direct path: leases, records, published results (kit.lease) ----------

    def watch_start(self, cid, tids):
        """A driver holds its plain tasks off the direct path until these tasks of its
        (sent on the head's path) are dispatched: say so then, or now if they are."""
        now = []
        for tid in tids:
            t = self.tasks.get(tid)
            if t is not None and t.state in (WAITING, READY):
                self.start_watch[tid] = cid
            else:
                now.append(tid)
        if now:
            self.out.append(("lease", cid, ("started", now)))

    def want_lease(self, cid, req, res, count):
        """A driver asks for up to ``count`` workers for tasks needing ``res``."""
        res = _shared_res(res)
        if not self._feasible(res, None):
            why = self._why_unschedulable("its tasks", res)
            self.out.append(("lease", cid, ("deny", req, why)))
            return
        self.lease_wants.append([cid, req, res, count])
        self._dirty = True

    def _grant_leases(self):
        """Give idle workers to drivers that asked (after queued tasks had their turn)."""
        wants = self.lease_wants
        nodes = self.nodes
        while wants:
            want = wants[0]
            cid, req, res, count = want
            w = None
            for nid in self.idle:
                if nid not in self.draining and fits(res, nodes[nid].avail):
                    w = self._idle_on(nid, res)
                    if self.idle.get(nid):
                        self.idle[nid] = self.idle.pop(nid)
                    break
            if w is None:
                self._spawn_where_free(res, None)
                return
            _take(res, nodes[w.node].avail)
            w.held = res
            self._worker_to(w, BUSY)
            w.lease = cid
            self.leases.setdefault(cid, set()).add(w.wid)
            self.out.append(("lease", cid, ("grant", req, w.wid, w.address, w.node)))
            want[3] = count - 1
            if want[3] <= 0:
                wants.popleft()

    def _reclaim(self):
        """Work on the head's path waits while drivers hold leased workers: ask them to
        give back the ones they are not using (at most every RECLAIM_EVERY s each)."""
        now, asked = self.now, self.reclaimed
        for cid, wids in self.leases.items():
            if wids and now - asked.get(cid, -1e9) >= RECLAIM_EVERY:
                asked[cid] = now
                self.out.append(("lease", cid, ("reclaim",)))

    def return_lease(self, cid, wid):
        """A driver gives a worker back: it is idle again."""
        w = self.workers.get(wid)
        if w is None or w.lease != cid:
            return
        self.leases.get(cid, set()).discard(wid)
        w.lease = None
        w.direct = 0
        if w.state == BUSY and not w.tasks:
            if not w.blocked:
                _give(w.held or {}, self.nodes[w.node].avail)
            w.held = None
            w.blocked = False
            self._worker_to(w, IDLE)
            w.idle_since = self.now
        self._dirty = True

    def cancel_leased(self, cid, wid, tid, force):
        """``kit.cancel`` of a direct task sent to a worker leased to ``cid``: interrupt it
        (or, ``force``, kill its worker)."""
        w = self.workers.get(wid)
        if w is not None and w.lease == cid:
            self.out.append(("kill", w.node, wid) if force else ("cancel", wid, tid))

    def direct_records(self, cid, records):
        """What a driver's direct tasks did, reported in batches: a task sent to a worker
        (``finished`` None: queued and running events), or ended (events, counts, stats)."""
        out, counts, stats = self.out, self.counts, self.fn_stats
        for tid, label, wid, fid, submitted, started, finished, state, error, *more in records:
            w = self.workers.get(wid)
            nid = w.node if w is not None else None
            if finished is None:  # state None: sent (queued and running); "queued": it
                # waits in its driver for its ref arguments; "running": sent after that
                if state != "running":
                    out.append(("event", TaskEvent(tid, label, "queued", submitted, None, None)))
                    counts["submitted"] += 1
                if state == "queued":
                    self.waiting_direct.add(tid)
                    continue
                self.waiting_direct.discard(tid)
                out.append(("event", TaskEvent(tid, label, "running", started, wid, nid)))
                if w is not None:
                    w.direct += 1
                continue
            if w is not None and w.direct > 0:
                w.direct -= 1
            self.waiting_direct.discard(tid)
            called = more[0] if more else None  # the worker's loading, if it took a while
            out.append(("event", TaskEvent(tid, label, state, finished, wid, nid, started, called)))
            failed = state != "finished"
            counts["failed" if failed else "finished"] += 1
            if error is not None:  # for the dashboard (its probe takes it at the event)
                errors = self.direct_errors
                errors[tid] = error
                if len(errors) > DIRECT_ERRORS:
                    del errors[next(iter(errors))]
            node = self.nodes.get(nid)
            if node is not None:
                if failed:
                    node.failed += 1
                else:
                    node.done += 1
            if not failed:  # as for the head's tasks: a failed run says nothing of its length
                st = stats.setdefault(fid, [0, 0.0])
                st[0] += 1
                st[1] += max(0.0, finished - started)

    def publish(self, owner, spec, results):
        """A worker hands over a direct task's results that the head must keep (large, or
        holding refs): they are ``owner``'s, as if the task had run on the head's path."""
        spec = TaskSpec.of(spec)
        if owner not in self.clients:  # its driver is gone: nobody will read them
            for _, payload, _ in results:
                if payload[0] == SHARED:
                    self.out.append(("free", payload[1], payload[2]))
            return
        kept = []
        for oid, payload, contained in results:
            known = self.objects.get(oid)
            if known is not None and known.payload is not None:
                continue
            obj = self._hold(owner, oid)
            obj.contained = tuple(contained)
            for inner in obj.contained:
                self._pin(inner)
            self._set_payload(obj, payload)
            kept.append(oid)
        # what the owner did before this came: dropped a result, took or dropped a ref
        # inside one (its worker made those before publishing: the head knows them now)
        early = self.early
        for oid, _, contained in results:
            for x in (oid, *contained):
                events = early.pop((owner, x), None)
                if events:
                    self.refs(owner, [(x, d) for d in events])
        live = [oid for oid in kept if oid in self.objects]
        # rebuilt from lineage only if the head holds its ref arguments (a direct task's
        # driver may have sent their values itself: then a lost result is lost)
        known = all(d in self.objects for d in spec.deps)
        if live and known and spec.retries != 0 and owner in self.clients:
            self.lineage.record(spec, owner, spec.retries, live)

    def _early(self, cid, oid, delta):
        early = self.early
        early.setdefault((cid, oid), []).append(delta)
        if len(early) > 100_000:  # bounded: the oldest are forgotten
            for key in list(early)[:10_000]:
                del early[key]

    # ---- actors --------------------------------------------------------------------

    def _place_actor(self, actor):
        want = actor.create.spec.opts.get("node")
        pinned = self.nodes.get(want) if want is not None else None
        if pinned is not None and not pinned.alive:
            actor.node = None
            self.kill_actor(
                actor.aid, f"it must live on node {want.hex()}, which died", from_death=True
            )
            return
        best = None
        for node in self.nodes.values():
            if not node.alive or (want is not None and node.nid != want):
                continue
            if want is None and node.nid in self.draining:
                continue
            if fits(actor.res, node.avail):
                if best is None or node.avail.get("CPU", 0) > best.avail.get("CPU", 0):
                    best = node
        if best is None:
            # Wait for resources: placement is tried again on every schedule pass.
            self._pending_actors.append(actor.aid)
            if not self._feasible(actor.res, actor.create.spec.opts):
                shape = ("actor", actor.aid)
                if shape not in self.unschedulable:
                    self.unschedulable[shape] = (self.now, actor.aid)
                    why = self._why_unschedulable(actor.create.label, actor.res)
                    self.out.append(("warn", actor.owner, f"{why}; it waits for a node"))
            else:
                self.unschedulable.pop(("actor", actor.aid), None)
            return
        self.unschedulable.pop(("actor", actor.aid), None)
        _take(actor.res, best.avail)
        actor.node = best.nid
        self.out.append(self._actor_spawn(best.nid, actor))

    def _actor_spawn(self, nid, actor) -> tuple:
        """The spawn action of ``actor``'s worker (in its runtime_env, if it has one)."""
        env = actor.create.spec.opts.get("env")
        return ("spawn", nid, actor.aid, env) if env else ("spawn", nid, actor.aid)

    def _pump_actor(self, actor):
        if actor.worker is None or actor.state == A_DEAD:
            return
        w = self.workers.get(actor.worker)
        if w is None:
            return
        q = actor.queue
        if actor.create.spec.opts.get("max_concurrency", 1) > 1:
            self._pump_unordered(actor, w)  # as Ray: a call waits for no other's arguments
            return
        while q:
            t = self.tasks.get(q[0])
            if t is None or t.state in (CANCELLED, FAILED, FINISHED):
                q.popleft()
                continue
            if t.state != READY or (t.spec.deps and self._deps_gone(t)):
                break
            q.popleft()
            actor.inflight.append(t.tid)
            self._dispatch(w, t)

    def _pump_unordered(self, actor, w):
        """A concurrent actor (threads or asyncio) gets each call whose arguments are
        ready, in submission order among those; a call still waiting for an argument
        holds back no other."""
        waiting: deque = deque()
        for tid in actor.queue:
            t = self.tasks.get(tid)
            if t is None or t.state in (CANCELLED, FAILED, FINISHED):
                continue
            if t.state != READY or (t.spec.deps and self._deps_gone(t)):
                waiting.append(tid)
                continue
            actor.inflight.append(tid)
            self._dispatch(w, t)
        actor.queue = waiting

    def _actor_lost(self, actor, cause):
        if actor is None or actor.state == A_DEAD:
            return
        actor.worker = None
        if actor.restarts != 0:  # also while PENDING, as Ray: its creation runs again
            actor.restarts -= 1
            never_up = actor.state == A_PENDING  # its calls never started: they wait
            _move(actor, A_RESTARTING, ACTOR_MOVES)
            requeue = []
            for tid in actor.inflight:
                t = self.tasks.get(tid)
                if t is None:
                    continue
                if actor.task_retries != 0 or never_up:
                    _task_move(t, READY)
                    requeue.append(tid)
                else:
                    self._fail(
                        t,
                        system_error_payload(
                            ActorDiedError, f"the actor died ({cause}) while running this call"
                        ),
                    )
            actor.inflight = []
            actor.queue.extendleft(reversed(requeue))
            if actor.task_retries > 0:
                actor.task_retries -= 1
            c = actor.create
            if c.state != READY:  # READY: it never started in the lost worker
                if c.state == FINISHED:  # its constructor runs again: a new run to show
                    self.out.append(
                        ("event", TaskEvent(c.tid, c.label, "queued", self.now, None, None))
                    )
                _task_move(c, READY)
            node = self.nodes.get(actor.node)
            if node is not None and node.alive:
                self.out.append(self._actor_spawn(actor.node, actor))
            else:
                actor.node = None
                self._place_actor(actor)
            return
        self.kill_actor(actor.aid, cause, from_death=True)

    def restart_actor(self, aid) -> bool:
        """``kill(actor, no_restart=False)``: kill its worker as if it had died, so it is
        restarted if restarts are left (else it dies); False if it has no worker to kill."""
        actor = self.actors.get(aid)
        if actor is None or actor.state == A_DEAD or actor.worker is None:
            return False
        w = self.workers.get(actor.worker)
        if w is None:
            return False
        self.out.append(("kill", w.node, w.wid))
        return True

    def kill_actor(self, aid, cause, error=None, from_death=False):
        actor = self.actors.get(aid)
        if actor is None or actor.state == A_DEAD:
            return
        _move(actor, A_DEAD, ACTOR_MOVES)
        actor.cause = cause
        self._bury(actor)
        node = self.nodes.get(actor.node)
        if node is not None:
            _give(actor.res, node.avail)
        actor.node = None
        if actor.worker is not None and not from_death:
            w = self.workers.get(actor.worker)
            if w is not None:
                self.out.append(("kill", w.node, w.wid))
        msg = f"the actor {actor.meta or ''} died: {cause}".replace("  ", " ")
        payload = error if error is not None else system_error_payload(ActorDiedError, msg)
        dead = system_error_payload(ActorDiedError, msg)
        if error is not None:  # the calls' error has the constructor's as its cause
            dead = (dead[0], (*dead[1], error[1]))
        for tid in list(actor.inflight) + list(actor.queue):
            t = self.tasks.get(tid)
            if t is not None:
                self._fail(t, dead)
        actor.inflight, actor.queue = [], deque()
        c = actor.create
        if c.state not in (FINISHED, FAILED):
            self._fail(c, payload)
        self.tasks.pop(c.tid, None)
        for oid in c.spec.deps:
            self._unpin(oid)
        for oid in c.spec.contained:
            self._unpin(oid)
        self._dirty = True

    def retire_idle(self, now, after=10.0):
        """Stop task workers idle for ``after`` seconds beyond one per CPU slot of their node.

        Extra workers are started while tasks wait in ``get``; once that is over
        they would only hold memory.
        """
        for node in self.nodes.values():
            if not node.alive:
                continue
            idle = sorted(
                (
                    w
                    for w in (self.workers.get(x) for x in node.workers)
                    if w is not None and w.actor is None and w.state == IDLE
                ),
                key=lambda w: w.idle_since,
            )
            task_workers = sum(
                1
                for x in node.workers
                if self.workers.get(x) is not None and self.workers[x].actor is None
            )
            extra = task_workers - int(node.total.get("CPU", 0))
            for w in idle[: max(0, extra)]:
                if now - w.idle_since >= after:
                    self._worker_to(w, RETIRING)
                    self.out.append(("kill", node.nid, w.wid))

    # ---- views ---------------------------------------------------------------------

    def waiting(self) -> int:
        """Tasks submitted but not on any worker yet (ready to place, or waiting on deps)."""
        return sum(
            1 for t in self.tasks.values() if t.state in (WAITING, READY) and t.spec.kind == TASK
        )

    def snapshot(self):
        """Per-node state for ``nodes()``, status tables and widgets."""
        out = []
        for n in self.nodes.values():
            running = queued = 0
            avail = dict(n.avail)
            for wid in n.workers:
                w = self.workers.get(wid)
                if w is not None and w.actor is None:
                    k = len(w.tasks) + w.direct  # its tasks from the head and a leaseholder
                    running += 1 if k else 0
                    queued += max(0, k - 1)
                    if w.lease is not None and not k and w.held:  # leased, running nothing
                        for r, v in w.held.items():
                            avail[r] = avail.get(r, 0.0) + v
            out.append(
                {
                    "node_id": n.nid,
                    "alive": n.alive,
                    "resources": dict(n.total),
                    "available": avail,  # a lease running nothing is not busy
                    "workers": len(n.workers),
                    "running": running,
                    "queued": queued,
                    "done": n.done,
                    "failed": n.failed,
                    "store_used": n.store_used,
                    **n.info,
                }
            )
        return out


def _failed_state(results) -> str:
    """How a failed run ends: CANCELLED if it was interrupted by a cancel, else FAILED."""
    for _, payload, _ in results:
        info = payload[1] if payload[0] == ERROR else None
        if info is not None and info[0] == "sys" and info[1] == "TaskCancelledError":
            return CANCELLED
    return FAILED


def _lost():
    from .errors import ObjectLostError

    return ObjectLostError
