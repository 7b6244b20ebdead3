"""The direct path: a driver leases workers from the head and sends them tasks itself.

    driver ── LEASE want(res, n) ──▶ head: an idle worker, marked leased to the driver
    driver ◀── LEASE grant(worker, address) ── head
    driver ── DTASKS (its result address, [spec, function once]) ──▶ worker
    driver ◀── DDONE [results] ── worker            (2 hops, not 4: the head is not crossed)
    driver ── RECORDS (batched, every 20 ms) ──▶ head: events, counts, function stats,
                                                  a failed task's traceback
    driver ── LOG (a leased worker's output, sent by DLOG) ──▶ head ──▶ the other drivers
    worker ── PUBLISH (large results, results holding refs) ──▶ head, before DDONE
    driver ── LEASE return(worker) ──▶ head, once the lane has been idle IDLE_RETURN s

A task goes direct when it is a plain task submitted by a driver, with no placement
option, whose ref arguments (if any) are results of this driver's own direct tasks:
the driver sends their values with the task, and a task whose arguments are still
being made waits in the driver ("parked") until they are. Other ref arguments, a
large result (which the head holds) and placement options need the head's object
directory or its placement: such a task takes the head's path, and the tasks parked
for its results follow it there. Its result stays in the driver ("local")
until its ref escapes (passed to a task or put): then the driver hands it to the head
(a PUT, or, while it is still running, a PUT without a payload that the result fills
later), so every other part of kit sees an ordinary object.

Faults hold on this path as on the head's: a worker that dies under a lease is
reported by the head ("lost"); its tasks run again (within ``max_retries``) or fail
with ``WorkerCrashedError``. A driver that dies has its leased workers killed by
the head. A worker's large results are published to the head with their task's
spec, so a node's death rebuilds them from lineage as usual.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections import deque

import zmq

from . import logs
from .errors import OutOfMemoryError, TaskCancelledError, WorkerCrashedError
from .protocol import Kind
from .records import ERROR, INLINE, SHARED, Dep, Inlined
from .serialization import (
    INLINE_LIMIT,
    error_name,
    error_text,
    from_payload,
    system_error_payload,
    to_payload,
)
from .session import Dialer, Sessions

IDLE_RETURN = 0.2  # seconds a lease may sit idle before it goes back to the head
RECORD_EVERY = 0.02  # seconds between batches of records to the head
FAST = 0.002  # a function whose mean run is shorter is pipelined on its worker
DEPTH = 64  # at most this many tasks in flight on one leased worker (fast functions)
QUEUED_WORK = 0.01  # seconds of a fast function's runs queued on one worker at most
MAX_LEASES = 64  # per lane
MAX_QUEUED = 100_000  # tasks waiting in a driver for a worker: .remote() waits past this
RECLAIM_WINDOW = 0.5  # seconds after the head asks for leases back: each lease going
# idle in that window is returned at once (not after IDLE_RETURN)


_PARKED = (None, None)  # by_task's value for a task waiting for its ref arguments


class Entry:
    """A direct task the driver holds until its results come back."""

    __slots__ = ("spec", "blob", "keep", "submitted", "retries", "started", "cancelled",
                 "deps", "missing", "shown")  # fmt: skip

    def __init__(self, spec, blob, keep, now):
        self.spec = spec  # the plain tuple (kit.records.TaskSpec's fields)
        self.blob = blob
        self.keep = keep  # the ref to its shared-memory arguments, while it runs
        self.submitted = now
        self.retries = spec[8]
        self.started = None
        self.cancelled = False  # force-cancelled: its worker is being killed
        # ref argument -> its value's payload (this driver's results); None: it has none
        # (most tasks: an empty dict each was 64 B of a queued task's ~900)
        self.deps: dict | None = None
        self.missing = 0  # ref arguments whose tasks still run: it waits for them
        self.shown = False  # the head was told it waits here (a "queued" record)


class Lease:
    """A worker leased to this driver."""

    __slots__ = (
        "wid", "node", "dialer", "inflight", "fids", "lock", "idle_since", "is_open", "pair"
    )  # fmt: skip

    def __init__(self, wid, node, dialer, lane=None):
        self.wid = wid
        self.node = node
        self.dialer = dialer
        self.inflight: dict = {}  # task id -> Entry, in the order sent
        self.fids: set = set()  # functions it has
        self.lock = threading.Lock()  # sends come from callers and from the io thread
        self.idle_since = time.monotonic()
        self.is_open = False  # in its lane's ``open`` ring
        self.pair = (lane, self)  # by_task's value for its tasks in flight (one tuple)


class Lane:
    """Direct tasks that need the same resources, and the workers leased for them."""

    __slots__ = ("res", "queue", "leases", "asked", "open", "unready", "unsent")

    def __init__(self, res):
        self.res = res
        self.unsent = (self, None)  # by_task's value for its queued tasks (one tuple)
        self.queue: deque = deque()  # Entries not yet sent
        self.leases: dict = {}  # worker id -> Lease
        self.asked = 0  # leases asked of the head, not granted yet
        # Ready leases that may have room, taken in turn: placing a task costs O(1)
        # whatever the number of leases (one that left is dropped when met).
        self.open: deque = deque()
        self.unready = 0  # leases whose connection is not up yet

    def reopen(self, lease) -> None:
        """``lease`` is ready and may have room: it takes tasks again."""
        if not lease.is_open:
            lease.is_open = True
            self.open.append(lease)

    def drop(self, lease) -> None:
        """``lease`` leaves the lane (returned or lost)."""
        if self.leases.pop(lease.wid, None) is lease and not lease.dialer.ready:
            self.unready -= 1


class Direct:
    """One driver's direct path (see the module docstring). Callers submit; the io
    thread handles grants, results and timers (``sockets``/``on_ready``/``tick``).

    The result socket has one reader at a time, whoever holds ``baton``: the io thread,
    or a thread waiting in ``kit.get`` for direct results (``read_until``), which then
    reads them itself, without a handoff between threads. The io thread polls the
    socket's file descriptor, not the socket, so it never touches the socket without
    the baton; when it finds the baton taken it stops polling (``missed``) until the
    reader lets go and wakes it."""

    def __init__(self, client):
        self.client = client
        self.lanes: dict = {}  # resource key -> Lane
        self.by_task: dict = {}  # task id -> (Lane, Lease or None) while it is not done
        self.pending_grants: dict = {}  # request id -> Lane
        self.req = itertools.count(1)
        self.lock = threading.RLock()
        self.room = threading.Condition(self.lock)  # back-pressure: see MAX_QUEUED
        self.queued = 0  # entries waiting in lanes
        self.records: list = []
        self.last_records = time.monotonic()
        self.stats: dict = {}  # function id -> [runs, seconds]
        self.denied: set = set()  # resource keys no node can run: the head's path
        self.server = None  # ROUTER where workers send results (made on first use)
        self.server_fd = None
        self.baton = threading.Lock()  # who reads ``server`` now
        self.missed = False  # the io thread found the baton taken: wake it on release
        self.address = None
        self.sessions = Sessions(client.token)
        self.waiters: dict = {}  # result id -> Entries waiting for it (a ref argument)
        self.parked: dict = {}  # task id -> Entry waiting for its ref arguments
        self.reclaim_until = 0.0  # monotonic time: the head wants idle leases back till then
        self.behind: dict = {}  # task id -> its first result: on the head's path, not yet
        # dispatched, so later plain tasks follow it there (see behind_head)

    # ---- who goes direct -------------------------------------------------------

    def behind_head(self) -> bool:
        """Whether a task this driver sent on the head's path may still wait to be
        dispatched: then a later plain task follows it there rather than overtake it on a
        worker this driver holds (tasks start in submission order, as in Ray; on 1 CPU
        the head's task would otherwise wait for the lease). Ends when the head says it
        dispatched it, or its result is here or dropped. Amortized O(1)."""
        behind = self.behind
        if not behind:
            return False
        values, refs = self.client.values, self.client.refs
        with self.lock:
            while behind:
                tid = next(iter(behind))
                oid = behind[tid]
                if oid in values or oid not in refs:
                    del behind[tid]
                else:
                    return True
        return False

    def sent_to_head(self, tid, oid) -> None:
        """Task ``tid`` (first result ``oid``) took the head's path: hold later plain
        tasks off the direct path until the head says it dispatched it (a worker this
        driver holds, or is granted after it, would otherwise run them first)."""
        with self.lock:
            self.behind[tid] = oid
        self.client.send(Kind.LEASE, ("watch", [tid]))

    def takes(self, spec, keep) -> bool:
        """A plain task of a driver, no placement option, whose ref arguments (if any)
        are results of this driver's direct tasks: it sends their values itself."""
        if spec[1] != 0 or spec[13]:
            return False
        contained = spec[5]
        if contained and (keep is None or tuple(contained) != (keep._id,)):
            return False
        if spec[4]:
            local = self.client.local
            if any(local.get(oid) not in ("local", "pending") for oid in spec[4]):
                return False
        return _key(spec[7]) not in self.denied

    def submit(self, spec, blob, keep) -> None:
        """Queue a direct task and send what leased workers have room for (a task with
        ref arguments waits here for the tasks that make them)."""
        entry = Entry(spec, blob, keep, time.time())
        client = self.client
        for oid in spec[6]:
            client.local[oid] = "pending"
        with self.lock:
            while self.queued >= MAX_QUEUED:  # a huge batch streams, it does not pile up
                if client.dead_reason:
                    raise client.dead()
                self.room.wait(0.5)
            if spec[4] and not self._resolve(entry):
                return
            self._ready(entry)

    def _enqueue(self, entry):
        lane = self._lane(entry.spec[7])
        lane.queue.append(entry)
        self.queued += 1
        self.by_task[entry.spec[0]] = lane.unsent
        self._pump(lane)

    # ---- ref arguments, resolved here --------------------------------------------

    def _resolve(self, entry) -> bool:
        """Take the values of ``entry``'s ref arguments that are here; park it for those
        still being made. False if it went elsewhere (failed, or the head's path)."""
        local, values = self.client.local, self.client.values
        deps = entry.spec[4]
        states = [local.get(oid) for oid in deps]
        if any(s not in ("local", "pending") for s in states):  # one left meanwhile
            self._to_head(entry)
            return False
        pending = set()
        for oid, state in zip(deps, states):
            if state == "pending":
                pending.add(oid)
                continue
            payload = values.get(oid)
            if payload is None:
                self._to_head(entry)
                return False
            if payload[0] == ERROR:  # as on the head's path: it fails with that error
                self._fail(entry, payload)
                return False
            if entry.deps is None:
                entry.deps = {}
            entry.deps[oid] = payload
        if not pending:
            return True
        entry.missing = len(pending)
        for oid in pending:
            self.waiters.setdefault(oid, []).append(entry)
        self.parked[entry.spec[0]] = entry
        self.by_task[entry.spec[0]] = _PARKED
        entry.shown = True  # the views see it wait, as on the head's path
        self.records.append((entry.spec[0], entry.spec[10], None, entry.spec[2],
                             entry.submitted, None, None, "queued", None))  # fmt: skip
        return False

    def _made(self, oid, payload):
        """A result that parked tasks wait for is in: run them, fail them with its error,
        or (a large result, which the head holds) send them to the head's path."""
        for entry in self.waiters.pop(oid, ()):
            tid = entry.spec[0]
            if self.parked.get(tid) is not entry:
                continue  # cancelled, failed or sent on already
            if payload[0] == ERROR:
                del self.parked[tid]
                self._fail(entry, payload)
            elif payload[0] == SHARED or _key(entry.spec[7]) in self.denied:
                del self.parked[tid]
                self._to_head(entry)
            else:
                if entry.deps is None:
                    entry.deps = {}
                entry.deps[oid] = payload
                entry.missing -= 1
                if entry.missing == 0:
                    del self.parked[tid]
                    self._ready(entry)

    def _ready(self, entry):
        """Its ref arguments' values are here: into its arguments, and off it goes."""
        if entry.deps and not self._inline(entry):
            self._to_head(entry)
        else:
            self._enqueue(entry)

    def _inline(self, entry) -> bool:
        """Put the values of ``entry``'s ref arguments in its arguments' place: its spec
        then names no object (its worker needs nothing from anyone, and its published
        result is rebuilt from it like any other). False if they do not fit inline."""
        spec = entry.spec
        if spec[3] is None or spec[3][0] != INLINE:
            return False
        blobs = {oid: Inlined(p[1]) for oid, p in (entry.deps or {}).items()}  # never read here
        try:
            args, kwargs = from_payload(spec[3])  # this driver's own pickle of them
            args = tuple(blobs[a.oid] if type(a) is Dep else a for a in args)
            kwargs = {k: blobs[v.oid] if type(v) is Dep else v for k, v in kwargs.items()}
            payload, contained = to_payload((args, kwargs))
        except Exception:  # an argument that does not pickle twice: the head's path
            return False
        if contained or len(payload[1]) > INLINE_LIMIT:
            return False
        entry.spec = (*spec[:3], payload, (), *spec[5:])
        entry.deps = None
        return True

    def _to_head(self, entry):
        """Send one task to the head's path after all: its ref arguments go there too."""
        client = self.client
        self.by_task.pop(entry.spec[0], None)
        for oid in entry.spec[6]:
            client.local.pop(oid, None)
        deps = entry.deps or {}
        gone = [o for o in deps if client.local.get(o) is None and o not in client.refs]
        for oid in gone:  # values it took whose refs were dropped: the head holds them
            client.send(Kind.PUT, [(oid, deps[oid], ())])
        client.escape(list(entry.spec[4]))
        client.register_function(entry.spec[2], entry.blob)
        if entry.shown:  # the head learns it waited here before it sees it come
            self._maybe_records(force=True)
        client.send(Kind.SUBMIT, [entry.spec])  # it pins them: this driver's holds go
        client.ref_events.extend((oid, -1) for oid in gone)
        self._follow_to_head(entry.spec[6])

    def _follow_to_head(self, oids):
        """Tasks parked for results that the head's path makes now follow them there."""
        for oid in oids:
            for entry in self.waiters.pop(oid, ()):
                if self.parked.get(entry.spec[0]) is entry:
                    del self.parked[entry.spec[0]]
                    self._to_head(entry)

    def _lane(self, res):
        key = _key(res)
        lane = self.lanes.get(key)
        if lane is None:
            lane = self.lanes[key] = Lane(res)
        return lane

    # ---- sending -----------------------------------------------------------------

    def _depth(self, fid) -> int:
        st = self.stats.get(fid)
        if not st or st[0] < 3:
            return 1
        mean = st[1] / st[0]
        if mean > FAST:
            return 1
        # deep enough that batches pay for their messages, shallow enough that a worker
        # holds ~10 ms of work: 64 no-op tasks, 10 of 1 ms
        return max(2, min(DEPTH, int(QUEUED_WORK / max(mean, 1e-6))))

    def _pump(self, lane):
        """Send queued tasks to leases with room; ask for more leases if they are short."""
        queue = lane.queue
        if not queue:
            return
        ring, leases = lane.open, lane.leases
        sent = False
        while queue and ring:
            lease = ring[0]
            depth = self._depth(queue[0].spec[2])
            room = depth - len(lease.inflight)
            if room <= 0 or leases.get(lease.wid) is not lease:
                ring.popleft()  # full (back when a result comes) or gone
                lease.is_open = False
                continue
            batch = []
            while queue and room > 0:
                entry = queue.popleft()
                self.queued -= 1
                fid = entry.spec[2]
                blob = None
                if fid not in lease.fids:
                    lease.fids.add(fid)
                    blob = entry.blob
                lease.inflight[entry.spec[0]] = entry
                self.by_task[entry.spec[0]] = lease.pair
                batch.append((entry.spec, blob))
                entry.started = time.time()
                # "running" from the moment it is sent, as on the head's path
                self.records.append((entry.spec[0], entry.spec[10], lease.wid, fid,
                                     entry.submitted, entry.started, None,
                                     "running" if entry.shown else None, None))  # fmt: skip
                room -= 1
            with lease.lock:
                lease.dialer.send(Kind.DTASKS, (self._server_address(), batch))
            sent = True
            if room > 0:
                ring.rotate(-1)  # the next task goes to the next lease: spread evenly
            else:
                ring.popleft()
                lease.is_open = False
        if sent and self.queued < MAX_QUEUED:
            self.room.notify_all()
        if queue and len(leases) + lane.asked < MAX_LEASES:
            want = min(MAX_LEASES, len(queue)) - lane.asked - lane.unready
            if want > 0:
                req = next(self.req)
                self.pending_grants[req] = lane
                lane.asked += want
                self.client.send(Kind.LEASE, ("want", req, lane.res, want))

    # ---- the io thread -----------------------------------------------------------

    def sockets(self):
        """Sockets the io thread polls for the direct path."""
        out = []
        if self.server_fd is not None and not self.missed:
            out.append(self.server_fd)
        with self.lock:
            for lane in self.lanes.values():
                if not lane.unready:
                    continue  # O(1) in the steady state, whatever the number of leases
                for lease in lane.leases.values():
                    if not lease.dialer.ready:
                        out.append(lease.dialer.sock)
        return out

    def on_ready(self, events) -> None:
        if self.server_fd is not None and self.server_fd in events:
            self._read_on_io_thread()
        with self.lock:
            for lane in list(self.lanes.values()):
                if not lane.unready:
                    continue
                for lease in list(lane.leases.values()):
                    d = lease.dialer
                    if not d.ready and d.sock in events:
                        self._handshake(lane, lease)

    def _handshake(self, lane, lease):
        d = lease.dialer
        while not d.ready and d.failed is None:
            try:
                frames = d.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            d.on_frames(frames)
        if d.failed is not None:
            self._lost(lane, lease, f"its worker refused the connection ({d.failed})")
            return
        lane.unready -= 1
        lane.reopen(lease)
        self._pump(lane)

    def on_lease(self, body) -> None:
        """The head's answer about leases (on the io thread)."""
        op = body[0]
        with self.lock:
            if op == "grant":
                _, req, wid, address, node = body
                lane = self.pending_grants.get(req)
                if lane is None or address is None:
                    self.client.send(Kind.LEASE, ("return", wid))
                    return
                lane.asked = max(0, lane.asked - 1)
                if lane.asked == 0:
                    self.pending_grants.pop(req, None)
                who = ("peer", "driver", self.client.cid, None)
                dialer = Dialer(
                    self.client.ctx, address, self.client.token, who,
                    encrypt=self.client.encrypt, unbounded=True,
                )  # fmt: skip
                lane.leases[wid] = Lease(wid, node, dialer, lane)
                lane.unready += 1
                self.client._nudge()  # the io thread polls the new dialer
            elif op == "lost":
                _, wid, cause, oom = body
                for lane in self.lanes.values():
                    lease = lane.leases.get(wid)
                    if lease is not None:
                        self._lost(lane, lease, cause, oom)
            elif op == "reclaim":  # the head's path has work waiting for workers
                self.reclaim_until = time.monotonic() + RECLAIM_WINDOW
                self._return_idle(0.0)
            elif op == "started":  # head-path tasks dispatched: plain ones may go direct
                for tid in body[1]:
                    self.behind.pop(tid, None)
            elif op == "deny":
                _, req, why = body
                lane = self.pending_grants.pop(req, None)
                if lane is not None:
                    self._to_head_path(lane, why)

    def _lost(self, lane, lease, cause, oom=False):
        """A leased worker died (or refused us): its tasks run again or fail, in order
        (killed by the memory monitor: fail at once, as on the head's path)."""
        lane.drop(lease)
        lease.dialer.close()
        again = []
        for entry in lease.inflight.values():
            label = entry.spec[10]
            if entry.cancelled:
                self._fail(entry, system_error_payload(
                    TaskCancelledError, f"task {label} was cancelled"))  # fmt: skip
            elif oom:
                self._fail(entry, system_error_payload(
                    OutOfMemoryError, f"the worker running {label} was {cause}"))  # fmt: skip
            elif entry.retries != 0:
                if entry.retries > 0:
                    entry.retries -= 1
                again.append(entry)
            else:
                runs = entry.spec[8] - entry.retries + 1
                self._fail(entry, system_error_payload(WorkerCrashedError, (
                    f"the worker running {label} died ({cause}) and its retries ran out (it "
                    f"ran {runs} times); raise max_retries or find why it dies"
                )))  # fmt: skip
        lease.inflight = {}
        lane.queue.extendleft(reversed(again))
        self.queued += len(again)
        for entry in again:
            self.by_task[entry.spec[0]] = lane.unsent
        self._pump(lane)

    def _to_head_path(self, lane, why):
        """No node could run this lane's tasks: the head's path says so and waits."""
        key = _key(lane.res)
        self.denied.add(key)
        self.lanes.pop(key, None)
        queue, lane.queue = lane.queue, deque()
        self.queued -= len(queue)
        self.room.notify_all()
        for entry in queue:
            self._to_head(entry)

    def _read_on_io_thread(self):
        baton = self.baton
        if not baton.acquire(blocking=False):
            self.missed = True  # the reader wakes us when it lets go
            if not baton.acquire(blocking=False):
                return
            self.missed = False
        try:
            self._results()
        finally:
            baton.release()

    def read_until(self, done, timeout) -> bool:
        """Read results on this thread until ``done()`` (a ``kit.get`` waiting for direct
        results); False if ``timeout`` (seconds, None: no limit) passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        baton, client = self.baton, self.client
        while not baton.acquire(timeout=0.05):  # another thread reads: it may be for us
            if done() or client.dead_reason:
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
        try:
            self.missed = True  # the io thread stops polling the socket meanwhile
            client._nudge()
            server = self.server
            while not done() and not client.dead_reason:
                self._results()
                if done():
                    break
                wait = 0.05  # short: a lost lease or a cancel comes by the io thread
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    wait = min(wait, left)
                server.poll(wait * 1000)
            return True
        finally:
            baton.release()
            if self.missed:
                self.missed = False
                client._nudge()

    def _results(self):
        """Results from workers (checked, signed with each connection's key)."""
        for _, kind, body, _ in self.sessions.serve(self.server):
            if kind == Kind.DDONE:
                self._done(body)
            elif kind == Kind.DLOG:  # printed here (if asked), and by every other driver
                if self.client.log_to_driver:
                    logs.deliver(body)
                self.client.send(Kind.LOG, body)

    def _done(self, reports):
        client = self.client
        store, settle = [], []
        with self.lock:
            touched = set()
            for tid, results, started, finished, retry, called in reports:
                lane, lease = self.by_task.get(tid, (None, None))
                if lease is None:
                    continue  # cancelled, or a late report of a lease that was lost
                entry = lease.inflight.pop(tid, None)
                if entry is None:
                    continue
                lease.idle_since = time.monotonic()
                if not lease.is_open and lane.leases.get(lease.wid) is lease:
                    lane.reopen(lease)
                touched.add(lane)
                errors = [p for _, p, _ in results if p[0] == ERROR]
                failed = bool(errors)
                if failed and retry and entry.retries != 0:
                    if entry.retries > 0:
                        entry.retries -= 1
                    lane.queue.appendleft(entry)
                    self.queued += 1
                    self.by_task[tid] = lane.unsent
                    continue
                del self.by_task[tid]
                fid = entry.spec[2]
                if not failed:  # a failed run (cancelled at once) says nothing of its length
                    st = self.stats.setdefault(fid, [0, 0.0])
                    st[0] += 1
                    st[1] += max(0.0, finished - started)
                state, text = "finished", None
                if failed:
                    state = _failed_state(errors[0])
                    text = error_text(errors[0])
                self.records.append((tid, entry.spec[10], lease.wid, fid, entry.submitted,
                                     started, finished, state, text, called))  # fmt: skip
                for oid, payload, contained in results:
                    store.append((oid, payload))
                    settle.append((oid, payload[0] == SHARED or bool(contained), payload))
            for lane in touched:
                self._pump(lane)
            if self.reclaim_until and time.monotonic() < self.reclaim_until:
                self.client._nudge()  # the io thread returns the idle leases (tick)
        if store:
            client._store(store)  # first: a ref that escapes from now on finds its value
        with self.lock:
            for oid, published, payload in settle:
                self._settle(oid, published, payload)
        self._maybe_records()

    def _settle(self, oid, published, payload):
        """Where a direct result lives now: the driver alone, or the head too (lock held);
        the tasks parked for it go on first (one sent to the head's path then holds it
        there before this driver's own hold may go)."""
        if oid in self.waiters:
            self._made(oid, payload)
        self._place(oid, published, payload)

    def _place(self, oid, published, payload):
        client = self.client
        state = client.local.get(oid)
        if state in ("expect", "expect-dropped"):  # its ref escaped while it ran
            client.local.pop(oid, None)
            if not published:  # the head waits for its value (its worker sent it if not)
                client.send(Kind.PUT, [(oid, payload, ())])
            if state == "expect-dropped":  # then our hold goes, in that order
                client.ref_events.append((oid, -1))
                client._nudge()
        elif state == "dropped":  # nobody holds it any more
            client.local.pop(oid, None)
            if published:
                client.ref_events.append((oid, -1))
                client._nudge()
        elif published:
            client.local.pop(oid, None)  # the head holds it for this driver: refs count
        else:
            client.local[oid] = "local"

    def _fail(self, entry, payload):
        """Fail a direct task here, without a worker (its value first, then its state)."""
        tid = entry.spec[0]
        self.by_task.pop(tid, None)
        now = time.time()
        if entry.started is None and not entry.shown:  # never seen: queued, then failed
            self.records.append((tid, entry.spec[10], None, entry.spec[2], entry.submitted,
                                 now, None, None, None))  # fmt: skip
        self.records.append((tid, entry.spec[10], None, entry.spec[2], entry.submitted,
                             entry.started or now, now, _failed_state(payload),
                             error_text(payload)))  # fmt: skip
        self.client._store([(oid, payload) for oid in entry.spec[6]])
        for oid in entry.spec[6]:
            self._settle(oid, False, payload)

    def tick(self, now) -> None:
        """Timers: return leases idle too long (at once while the head reclaims them),
        send records. The io thread: it alone closes a lease's connection, which it may
        be polling."""
        with self.lock:
            reclaim = self.reclaim_until and time.monotonic() < self.reclaim_until
            self._return_idle(0.0 if reclaim else IDLE_RETURN)
        self._maybe_records(force=True)

    def _return_idle(self, idle_for):
        """Give back leases with nothing in flight, idle ``idle_for`` seconds (lock held)."""
        mono = time.monotonic()
        for lane in self.lanes.values():
            if lane.queue:
                continue
            for wid, lease in list(lane.leases.items()):
                if not lease.inflight and mono - lease.idle_since >= idle_for:
                    lane.drop(lease)
                    lease.dialer.close()
                    self.client.send(Kind.LEASE, ("return", wid))

    def busy(self) -> bool:
        """Something waits on a timer (a lease to return, records to send)."""
        return bool(self.records) or any(lane.leases for lane in self.lanes.values())

    def flush_records(self) -> None:
        """Send the records now (a query follows: its answer must include them)."""
        self._maybe_records(force=True)

    def _maybe_records(self, force=False):
        now = time.monotonic()
        if self.records and (force or now - self.last_records > RECORD_EVERY):
            with self.lock:
                batch, self.records = self.records, []
            self.last_records = now
            self.client.send(Kind.RECORDS, batch)

    # ---- cancel ------------------------------------------------------------------

    def cancel(self, tid, force) -> bool:
        """Cancel a direct task: dropped if still queued here, interrupted (or its worker
        killed, ``force``) if running. False if ``tid`` is not a direct task."""
        with self.lock:
            parked = self.parked.pop(tid, None)
            if parked is not None:  # waiting for its ref arguments: it never runs
                self._fail(parked, system_error_payload(
                    TaskCancelledError, f"task {parked.spec[10]} was cancelled"))  # fmt: skip
                return True
            lane, lease = self.by_task.get(tid, (None, None))
            if lane is None:
                return False
            if lease is None:
                for entry in lane.queue:
                    if entry.spec[0] == tid:
                        lane.queue.remove(entry)
                        self.queued -= 1
                        label = entry.spec[10]
                        self._fail(entry, system_error_payload(
                            TaskCancelledError, f"task {label} was cancelled"))  # fmt: skip
                        break
                return True
            if force:
                entry = lease.inflight.get(tid)
                if entry is not None:
                    entry.cancelled = True
            # through the head: the worker's main thread is busy with the task, its io
            # thread listens to the head
            self.client.send(Kind.LEASE, ("cancel", lease.wid, tid, force))
            return True

    # ---- where workers answer ----------------------------------------------------

    def _server_address(self):
        if self.server is None:
            ctx = self.client.ctx
            sock = ctx.socket(zmq.ROUTER)
            from .protocol import secure

            secure(sock, self.client.token, True, self.client.encrypt)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
            sock.setsockopt(zmq.RCVHWM, 0)
            ip = _reachable_ip(self.client.address)
            port = sock.bind_to_random_port(f"tcp://{ip}")
            self.address = f"tcp://{ip}:{port}"
            self.server_fd = sock.getsockopt(zmq.FD)
            self.server = sock
            self.client._nudge()  # the io thread polls the new socket
        return self.address

    def close(self):
        with self.lock:
            for lane in self.lanes.values():
                for lease in lane.leases.values():
                    lease.dialer.close()
            self.lanes.clear()
        if self.server is not None:
            self.server.close(0)


def _key(res) -> tuple:
    return tuple(sorted(res.items()))


def _reachable_ip(head_address: str) -> str:
    """This host's address as the head's network sees it (loopback for a local head)."""
    host = head_address.replace("tcp://", "").rsplit(":", 1)[0]
    if host.startswith("127.") or host == "localhost":
        return "127.0.0.1"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))
            return s.getsockname()[0]
    except OSError:
        return os.environ.get("KIT_NODE_IP", "127.0.0.1")


def _failed_state(payload) -> str:
    """The end state of a task whose result is the ERROR ``payload``."""
    return "cancelled" if error_name(payload) == "TaskCancelledError" else "failed"
