"""The connection every driver and worker keeps to the head.

    caller threads ── send() under a lock ──▶ tx DEALER ──▶ head
    io thread ◀── rx DEALER ◀── head   (OBJECTS, TASKS, REPLY, LOG, CANCEL)

Callers send directly on ``tx`` (no thread hop on the submit path). One
background thread owns ``rx``: it stores arriving object payloads, wakes the
callers waiting for them, hands tasks to a worker's executor, and flushes
ref-count changes that nobody else flushed.

Reference counting: every ``ObjectRef`` instance counts itself here. The first
ref to an object in this process and the last one are queued as ``(oid, +1)``
and ``(oid, -1)`` and sent, in order, before the next message, so the head
never sees a task finish before the refs it unpickled were announced.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import socket
import sys
import threading
import time
from collections import deque

import zmq

from . import logs, object_ref, object_store, process, serialization
from .errors import GetTimeoutError, HeadDiedError, KitError, ObjectLostError
from .ledger import Ledger
from .protocol import KIT_VERSION, PY_VERSION, Kind
from .session import Channel

HEAD_TIMEOUT = 8.0  # a driver that hears nothing from the head this long: it died (<= 9 s)
BEAT = 2.0  # a driver's heartbeat to the head (the head forgets silent drivers)
FLUSH_DELAY = 0.005  # ref changes and output lines wait this long to travel together
LIVENESS = 2.0  # a transfer silent this long: ask the head whether the peer is alive
# A worker's get waits this long before it tells the head it is blocked (lending its CPU
# and giving back its queued tasks): objects that exist already come within it, and, as
# in Ray, a get of them lends nothing.
BLOCK_GRACE = 0.01

_current = None


def current():
    """The process's client; raises if kit is not initialized."""
    c = _current
    if c is None:
        raise KitError("kit is not initialized: call kit.init() first")
    return c


def host_id() -> str:
    """Identifies this host: hostname, boot id and network namespace.

    Processes with the same host id share a node's shared memory directly;
    others (another machine, or another network namespace standing in for one
    in tests) get objects copied by the node agents.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    try:
        netns = os.stat("/proc/self/ns/net").st_ino
    except OSError:
        netns = 0
    return f"{socket.gethostname()}:{boot}:{netns}"


class _Waiter:
    __slots__ = ("need", "event")

    def __init__(self, need):
        self.need = need
        self.event = threading.Event()


class _AgentGone(Exception):
    """This process's node agent died (its transfer socket will never answer)."""


class Client:
    """A driver's or worker's link to the head (see the module docstring)."""

    def __init__(
        self,
        address: str,
        token,
        role: str,
        cid: bytes | None = None,
        info: dict | None = None,
        on_message=None,
        hello_timeout: float = 10.0,
        encrypt: bool = False,
    ):
        self.address = address
        self.token = token
        self.encrypt = encrypt
        self.role = role
        self.cid = cid or os.urandom(8)
        self.ctx = zmq.Context()
        self.refs: dict = {}
        self.ref_events: deque = deque()
        self.values: dict = {}
        self.subscribed: set = set()
        self.waiters: dict = {}  # oid -> [_Waiter]
        self.futures: dict = {}  # oid -> [Future]
        self.replies: dict = {}  # req id -> [Event, answer]
        self.on_message = on_message  # worker hook for TASKS / CANCEL
        self.fids: set = set()
        self.counter = itertools.count(1)
        self.req_counter = itertools.count(1)
        self.closed = False
        self.dead_reason = None
        self.dead_error = KitError
        self.logs: deque = deque()
        self.node_id = None
        self.node_tag = None
        self.store_limit = 0
        self.transfer = None  # this node's agent, which copies objects here
        self.fetch_lock = threading.Lock()
        self.xch = None  # session with this node's agent (transfer)
        self.peer_chs: dict = {}  # node id -> session with that node's agent
        self.peer_addresses: dict = {}  # node id -> its transfer address (from the head)
        self.extra_sockets: dict = {}  # socket -> handler: the io thread polls these too
        # Direct results this driver holds (kit.lease): "pending" (running), "local" (here
        # only), "expect" (its ref escaped while it ran: the head waits for it),
        # "dropped" / "expect-dropped" (the same, no ref left here)
        self.local: dict = {}
        self.direct = None
        self.blocked_depth = 0
        self.hand_back = None  # a task worker's: see _set_blocked
        self._ledger = None  # this node's shared-memory ledger, opened on first write
        self.lock = threading.Lock()
        self.vlock = threading.Lock()
        self.head_timeout = float(os.environ.get("KIT_HEAD_TIMEOUT") or HEAD_TIMEOUT)
        self.head_pid = None  # the head's process, when this driver started it (kit.init)
        self.heard = time.monotonic()
        # The io thread sleeps until a message arrives or this pipe says something waits
        # to be sent: an idle process costs no CPU (it used to wake 20 times a second).
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._nudged = False
        info = dict(info or {})
        self.log_to_driver = info.get("log_to_driver", True)  # print what tasks print
        info.update(kit=KIT_VERSION, python=PY_VERSION, pid=os.getpid(), host=host_id())
        # Two connections, each with its own session: rx (the head's messages, read by
        # the io thread) and tx (what callers send, under self.lock).
        connect = dict(encrypt=encrypt, timeout=hello_timeout, unbounded=True)
        self.rxc = Channel(self.ctx, address, token, ("rx", role, self.cid, info), **connect)
        try:
            self.txc = Channel(self.ctx, address, token, ("tx", role, self.cid, None), **connect)
        except BaseException:
            self.rxc.close()
            self.ctx.term()
            raise
        self.rx, self.rx_signer = self.rxc.sock, self.rxc.signer
        self.tx, self.tx_signer = self.txc.sock, self.txc.signer
        self.welcome = self.rxc.welcome
        self.cluster = self.welcome["cluster"]
        local = self.welcome.get("local_node")
        if local:
            self.node_id, self.node_tag = local["node_id"], local["tag"]
            self.store_limit = local.get("store_limit", 0)
            self.transfer = local.get("transfer")
        if role == "driver" and os.environ.get("KIT_DIRECT", "1") != "0":
            from .lease import Direct

            self.direct = Direct(self)
        self.thread = threading.Thread(target=self._io_loop, name="kit-io", daemon=True)
        self.thread.start()

    # ---- ids ---------------------------------------------------------------------

    def new_id(self) -> bytes:
        """A 15-byte task id (this client's id and a counter); see ``records.object_id``."""
        return self.cid + next(self.counter).to_bytes(7, "little")

    def store_name(self):
        """A callable naming a new shared-memory object on this client's node, or None."""
        if self.node_tag is None:
            return None
        prefix = f"kit_{self.cluster}_{self.node_tag}_"
        if self._ledger is None or self._ledger.path != object_store.path_of(prefix + "ledger"):
            self._ledger = Ledger.open(object_store.path_of(prefix + "ledger"))

        def name():
            return prefix + os.urandom(12).hex()

        name.limit = self.store_limit
        name.ledger = self._ledger  # admission: reserve before writing (kit.ledger)
        return name

    # ---- sending -----------------------------------------------------------------

    def send(self, kind, body):
        """Send one message; pending ref changes and output lines ride in the same frame."""
        if self.closed:
            raise self.dead()
        with self.lock:
            parts = self._pending()
            if parts:
                parts.append((kind, body))
                self.tx.send_multipart(self.tx_signer.pack(Kind.MULTI, parts))
            else:
                self.tx.send_multipart(self.tx_signer.pack(kind, body))

    def _pending(self):
        parts = []
        for kind, queue in ((Kind.REFS, self.ref_events), (Kind.LOG, self.logs)):
            if queue:
                batch = []
                pop = queue.popleft
                try:
                    while True:
                        batch.append(pop())
                except IndexError:
                    pass
                parts.append((kind, batch))
        return parts

    def _flush_refs(self):
        """Send pending ref changes and output lines now (call with the lock held)."""
        parts = self._pending()
        if parts:
            self.tx.send_multipart(self.tx_signer.pack(Kind.MULTI, parts))

    def register_function(self, fid, blob):
        if fid not in self.fids:
            self.fids.add(fid)
            self.send(Kind.FUNCTION, (fid, blob))

    # ---- refs --------------------------------------------------------------------

    def incref(self, oid, announce=True):
        n = self.refs.get(oid, 0)
        self.refs[oid] = n + 1
        if n == 0 and announce:
            self.ref_events.append((oid, 1))
            self._nudge()

    def decref(self, oid):
        n = self.refs.get(oid, 0) - 1
        if n > 0:
            self.refs[oid] = n
            return
        self.refs.pop(oid, None)
        self.values.pop(oid, None)
        self.subscribed.discard(oid)
        state = self.local.get(oid)
        if state is not None:  # a direct result the head does not hold (kit.lease)
            if state == "local":
                del self.local[oid]
            elif state == "pending":
                self.local[oid] = "dropped"
            elif state == "expect":  # the head waits for it: it gets it, then our drop
                self.local[oid] = "expect-dropped"
            return
        if not self.closed:
            self.ref_events.append((oid, -1))
            self._nudge()

    def watch(self, sock, handler) -> None:
        """Have the io thread call ``handler()`` whenever ``sock`` can be read."""
        self.extra_sockets[sock] = handler
        self._nudge()

    def add_log(self, line) -> None:
        """Queue a line of a task's output for the drivers (sent within FLUSH_DELAY)."""
        self.logs.append(line)
        self._nudge()

    def _nudge(self):
        """Wake the io thread: something waits to be sent. The flag keeps this to one
        write per batch (the io thread clears it before it looks at the queues)."""
        if not self._nudged:
            self._nudged = True
            try:
                os.write(self._wake_w, b"\0")
            except OSError:  # the pipe is full (the thread is waking anyway) or closed
                pass

    # ---- objects -----------------------------------------------------------------

    def escape(self, oids) -> None:
        """Refs of direct results (kit.lease) are about to reach other processes: hand
        those results to the head first (a PUT; without a payload while they still
        run, the result fills it later), so they are ordinary objects from then on."""
        local = self.local
        for oid in oids:
            state = local.get(oid)
            if state == "local":
                del local[oid]
                self.send(Kind.PUT, [(oid, self.values[oid], ())])
            elif state == "pending":
                local[oid] = "expect"
                self.send(Kind.PUT, [(oid, None, ())])
            elif state == "dropped":  # a parked task needs it (kit.lease), its ref is gone
                local[oid] = "expect-dropped"
                self.send(Kind.PUT, [(oid, None, ())])

    def put_payload(self, oid, payload, contained):
        """Send a PUT for an object whose ObjectRef the caller already made."""
        if payload[0] == serialization.INLINE:
            self.values[oid] = payload
        self.send(Kind.PUT, [(oid, payload, contained)])

    def forget_payload(self, oid) -> None:
        """Drop a payload that pointed at a lost copy; the next wait asks the head again."""
        with self.vlock:
            self.values.pop(oid, None)
            self.subscribed.discard(oid)

    def wait_ready(self, oids, num: int, timeout=None) -> None:
        """Block until ``num`` of ``oids`` have payloads here (raises GetTimeoutError)."""
        values = self.values
        with self.vlock:
            missing = [o for o in oids if o not in values]
            have = len(oids) - len(missing)
            if have >= num:
                return
            waiter = _Waiter(num - have)
            for o in missing:
                self.waiters.setdefault(o, []).append(waiter)
            need = [o for o in missing if o not in self.subscribed and o not in self.local]
            self.subscribed.update(need)
        if need:
            self.send(Kind.SUBSCRIBE, need)
        blocked = False
        try:
            if self.role == "worker":
                grace = BLOCK_GRACE if timeout is None else min(BLOCK_GRACE, timeout)
                if not waiter.event.wait(grace):  # else here already: nothing to lend
                    self._set_blocked(True)
                    blocked = True
            direct, local = self.direct, self.local
            here = (
                direct is not None
                and direct.server is not None
                and threading.current_thread() is not self.thread
                and any(local.get(o) is not None for o in missing)
            )
            if here:  # direct results among them: read them on this thread (kit.lease)
                direct.read_until(waiter.event.is_set, timeout)
            if not waiter.event.wait(0 if here else timeout):
                if self.dead_reason:
                    raise self.dead()
                raise GetTimeoutError(
                    f"{waiter.need} of {len(oids)} objects were not ready within {timeout} s; "
                    f"wait longer, or use kit.wait() to take what is ready"
                )
            if self.dead_reason and waiter.need > 0:
                raise self.dead()
        finally:
            if blocked:
                self._set_blocked(False)
            with self.vlock:
                for o in missing:
                    ws = self.waiters.get(o)
                    if ws is not None:
                        try:
                            ws.remove(waiter)
                        except ValueError:
                            pass
                        if not ws:
                            del self.waiters[o]

    def _set_blocked(self, flag):
        # Nested gets in actor threads count once. A task worker gives back the tasks
        # queued behind the one that waits (``hand_back``, set by kit.worker): they must
        # not wait for it, as one of them may be what it waits for.
        hand_back = self.hand_back
        if flag:
            self.blocked_depth += 1
            if self.blocked_depth == 1:
                back = hand_back(True) if hand_back is not None else None
                self.send(Kind.BLOCKED, (True, back) if back else True)
        else:
            self.blocked_depth -= 1
            if self.blocked_depth == 0:
                if hand_back is not None:
                    hand_back(False)
                self.send(Kind.BLOCKED, False)

    def future(self, ref):
        fut = concurrent.futures.Future()
        oid = ref._id
        with self.vlock:
            payload = self.values.get(oid)
            if payload is None:
                self.futures.setdefault(oid, []).append((fut, ref))
                need = oid not in self.subscribed and oid not in self.local
                self.subscribed.add(oid)
            else:
                need = False
        if payload is not None:
            _resolve(fut, payload)
        elif need:
            self.send(Kind.SUBSCRIBE, [oid])
        return fut

    def _store(self, items):
        wake = []
        done_futs = []
        with self.vlock:
            for oid, payload in items:
                if oid in self.values or (
                    oid not in self.refs and oid not in self.waiters and oid not in self.futures
                ):
                    continue  # it came twice, or nobody here holds or awaits it any more
                self.values[oid] = payload
                ws = self.waiters.pop(oid, None)
                if ws:
                    for w in ws:
                        w.need -= 1
                        if w.need <= 0:
                            wake.append(w)
                fs = self.futures.pop(oid, None)
                if fs:
                    done_futs.append((fs, payload))
        for w in wake:
            w.event.set()
        for fs, payload in done_futs:
            if payload[0] == serialization.SHARED and payload[1] != self.node_id:
                # Copying it here may take long, and a driver on no node asks the
                # head (through this io thread) where to pull it from: not here.
                threading.Thread(
                    target=_resolve_all, args=(fs, payload), daemon=True, name="kit-fetch"
                ).start()
            else:
                _resolve_all(fs, payload)

    # ---- objects on other nodes --------------------------------------------------

    def fetch(self, payload):
        """Where to read a shared object: its name here, copying it from its node first.

        A process on a node asks its node agent, which pulls the object from the
        node that holds it; a driver on no node (or whose node died) reads the chunks
        itself. Every wait notices a dead peer: when a transfer is silent for
        ``LIVENESS`` seconds the head is asked whether the nodes involved are alive,
        and the object is reported lost (so ``get`` waits for it to be made again)
        if its node died, or fetched another way if this process's own agent died.
        """
        _, nid, name, size = payload
        if nid == self.node_id:
            return name
        while self.transfer is not None:
            try:
                return self._fetch_via_agent(nid, name, size)
            except _AgentGone:
                self._leave_dead_node()
        return self._pull(nid, name, size)

    def _fetch_via_agent(self, nid, name, size):
        with self.fetch_lock:
            if self.xch is None:
                try:
                    self.xch = self._channel(self.transfer)
                except KitError:
                    raise _AgentGone() from None
            req = next(self.req_counter)
            address = self._peer_address(nid)
            if address is None:
                raise ObjectLostError(f"object {name} lives on a node that left the cluster")
            self.xch.send(Kind.FETCH, ("get", req, name, size, nid, address))
            body = self._await_reply(self.xch, lambda b: b[1] == req, nid, name)
            _, _, local, err = body
            if err:
                raise ObjectLostError(f"object {name} could not be fetched: {err}")
            return local

    def _await_reply(self, ch, match, nid, name):
        """Wait for the reply ``match`` accepts, asking the head about silent peers."""
        while True:
            if ch.sock.poll(LIVENESS * 1000):
                msg = ch.recv()
                if isinstance(msg, tuple) and match(msg[1]):
                    return msg[1] if len(msg[2]) == 0 else (msg[1], msg[2])
                continue
            if self.closed or self.dead_reason:
                raise self.dead()
            alive = self.query("alive", [nid, self.node_id], timeout=self.head_timeout)
            if not alive.get(nid):
                raise ObjectLostError(f"object {name} was lost: its node died")
            if ch is self.xch and not alive.get(self.node_id):
                raise _AgentGone()

    def _leave_dead_node(self):
        """This process's node agent died: use another node on this host, or none."""
        if self.xch is not None:
            self.xch.close()
            self.xch = None
        local = self.query("local_node", host_id(), timeout=self.head_timeout)
        if local and local["node_id"] != self.node_id and self.role == "driver":
            self.node_id, self.node_tag = local["node_id"], local["tag"]
            self.store_limit = local.get("store_limit", 0)
            self.transfer = local.get("transfer")
        else:
            self.node_id = self.node_tag = self.transfer = None

    def _channel(self, address):
        return Channel(
            self.ctx,
            address,
            self.token,
            ("peer", self.role, self.cid, None),
            encrypt=self.encrypt,
            timeout=self.head_timeout,
        )

    def _peer_address(self, nid):
        """Where node ``nid`` serves its objects (asked of the head once, then kept)."""
        addr = self.peer_addresses.get(nid)
        if addr is None:
            addr = self.query("peer", nid, timeout=self.head_timeout)
            if addr is not None:
                self.peer_addresses[nid] = addr
        return addr

    def _pull(self, nid, name, size):
        addr = self._peer_address(nid)
        if addr is None:
            raise ObjectLostError(f"object {name} lives on a node that left the cluster")
        with self.fetch_lock:
            ch = self.peer_chs.get(nid)
            if ch is None:
                try:
                    ch = self.peer_chs[nid] = self._channel(addr)
                except KitError as e:
                    raise ObjectLostError(f"object {name}: its node did not answer ({e})") from e
            buf = bytearray(size)
            chunk = 8 << 20
            for off in range(0, size, chunk):
                n = min(chunk, size - off)
                ch.send(Kind.FETCH, ("chunk", off, name, off, n))
                body, bufs = self._await_reply(ch, lambda b, off=off: b[1] == off, nid, name)
                if not body[3]:
                    raise ObjectLostError(f"object {name} is gone from its node")
                buf[off : off + n] = bufs[0]
        return object_store.parse(memoryview(buf), name)

    # ---- queries -----------------------------------------------------------------

    def query(self, what, args=None, timeout=30.0):
        """Ask the head something (nodes, status, events...) and wait for the answer.

        What this driver's direct tasks did is sent first, so the answer includes it."""
        if self.direct is not None:
            self.direct.flush_records()
        return self.request(Kind.QUERY, lambda req: (req, what, args), timeout, what)

    def request(self, kind, make_body, timeout=30.0, what="the request"):
        """Send ``make_body(req)`` and wait for the head's REPLY to ``req``."""
        req = next(self.req_counter)
        slot = [threading.Event(), None]
        self.replies[req] = slot
        self.send(kind, make_body(req))
        if not slot[0].wait(timeout):
            self.replies.pop(req, None)
            raise GetTimeoutError(f"the head did not answer {what!r} within {timeout} s")
        if self.dead_reason and slot[1] is None:
            raise self.dead()
        return slot[1]

    # ---- the io thread -----------------------------------------------------------

    def _io_loop(self):
        rx, wake = self.rx, self._wake_r
        poller = zmq.Poller()
        poller.register(rx, zmq.POLLIN)
        poller.register(wake, zmq.POLLIN)
        polled: set = set()  # extra sockets (direct path) registered now
        driver = self.role == "driver"
        next_beat = time.monotonic() + BEAT
        pending_since = None  # when ref changes or output began to wait
        while not self.closed:
            now = time.monotonic()
            timeout = None
            if driver:
                if now >= next_beat:
                    next_beat = now + BEAT
                    if self._beat(now):
                        return
                timeout = min(next_beat - now, 0.5)
            if self.direct is not None and self.direct.busy():
                self.direct.tick(now)
                timeout = 0.02 if timeout is None else min(timeout, 0.02)
            if self.ref_events or self.logs:
                pending_since = pending_since or now
                wait = pending_since + FLUSH_DELAY - now
                if wait <= 0:
                    self._flush_pending()
                    pending_since = None
                else:
                    timeout = wait if timeout is None else min(timeout, wait)
            else:
                pending_since = None  # sent along with a caller's message meanwhile
            polled = self._poll_extra(poller, polled)
            try:
                events = dict(poller.poll(None if timeout is None else max(0.0, timeout) * 1000))
            except zmq.ZMQError:
                if self.closed:
                    break
                # A socket it polled was closed meanwhile: poll again without it (this
                # thread must not end while the client lives: nothing would be heard)
                poller = zmq.Poller()
                poller.register(rx, zmq.POLLIN)
                poller.register(wake, zmq.POLLIN)
                polled = set()
                continue
            if wake in events:
                self._nudged = False
                try:
                    while os.read(wake, 4096):
                        pass
                except OSError:
                    pass
            if rx in events:
                self.heard = time.monotonic()
                self._receive(rx)
            if len(events) > (wake in events) + (rx in events):
                self._extra_events(events)

    def _beat(self, now) -> bool:
        """A driver's heartbeat; True if the head is gone (then this client is dead)."""
        try:
            self.send(Kind.HEARTBEAT, None)
        except (KitError, zmq.ZMQError):
            pass
        why = self._head_gone(now - self.heard)
        if why:
            self._die(why, HeadDiedError)
        return bool(why)

    def _poll_extra(self, poller, polled):
        """Keep the poller's extra sockets (the direct path's) as they are now."""
        want = set(self.extra_sockets)
        if self.direct is not None:
            want.update(self.direct.sockets())
        for sock in polled - want:
            poller.unregister(sock)
        for sock in want - polled:
            poller.register(sock, zmq.POLLIN)
        return want

    def _extra_events(self, events):
        try:
            for sock, handler in list(self.extra_sockets.items()):
                if sock in events:
                    handler()
            if self.direct is not None:
                self.direct.on_ready(events)
        except Exception as e:
            _err(f"kit: error on the direct path: {e!r}")

    def _receive(self, rx):
        for _ in range(256):
            try:
                frames = rx.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:
                return
            msg = self.rx_signer.unpack(frames)
            if msg is None:
                continue
            try:
                self._handle(*msg)
            except Exception as e:
                _err(f"kit: error handling a message from the head: {e!r}")

    def _flush_pending(self):
        """Send waiting ref changes and output lines (nobody else sent them along)."""
        if self.closed:
            return
        with self.lock:
            try:
                self._flush_refs()
            except zmq.ZMQError:
                pass

    def _handle(self, kind, body, buffers):
        if kind == Kind.OBJECTS:
            self._store(body)
        elif kind == Kind.REPLY:
            req, answer = body
            slot = self.replies.pop(req, None)
            if slot is not None:
                slot[1] = answer
                slot[0].set()
        elif kind == Kind.LOG:
            logs.deliver(body)
        elif kind == Kind.SHUTDOWN:
            self._die(body or "the cluster shut down")
        elif kind == Kind.LEASE and self.direct is not None:
            self.direct.on_lease(body)
        elif self.on_message is not None:
            self.on_message(kind, body)

    def _head_gone(self, silent):
        """Why the head is taken for dead, or None. The head sends drivers a heartbeat
        every second: silence means it died (or the network to it did). A head this
        driver started is watched as a process too: dead when it exits, busy (not dead)
        while it runs, even silent."""
        state = process.state(self.head_pid) if self.head_pid else None
        again = "start the cluster again and call kit.init() again"
        if state == process.GONE:
            return f"the head (pid {self.head_pid}) exited; {again}"
        if silent <= self.head_timeout:
            return None
        if state == process.RUNNING and silent <= process.BUSY_TIMEOUT:
            return None
        return (
            f"the head at {self.address} stopped answering: nothing from it for "
            f"{silent:.0f} s (it died, or the network to it is down); {again}"
        )

    def _die(self, reason, error=KitError):
        """Fail every wait of this client with ``error(reason)``: the connection is over."""
        self.dead_error = error
        self.dead_reason = reason
        with self.vlock:
            ws = [w for lst in self.waiters.values() for w in lst]
            fs = [f for lst in self.futures.values() for f in lst]
            self.futures.clear()
        for w in ws:
            w.event.set()
        for fut, _ in fs:
            if not fut.done():
                fut.set_exception(error(reason))
        for slot in list(self.replies.values()):
            slot[0].set()

    def close(self, notify=False):
        if self.closed:
            return
        if notify:
            try:
                if self.direct is not None:  # the head then knows which leases are idle
                    self.direct.flush_records()  # (it keeps their workers: Scheduler.client_gone)
                with self.lock:
                    self._flush_refs()
                    self.tx.send_multipart(self.tx_signer.pack(Kind.SHUTDOWN, None))
            except zmq.ZMQError:
                pass
        self.closed = True
        self._die("kit was shut down")
        self._nudge()  # the io thread may sleep without a timeout
        t = getattr(self, "thread", None)
        if t is not None and t is not threading.current_thread():
            t.join(1.0)
        with self.lock:
            self.tx.close(200 if notify else 0)
        self.rx.close(0)
        if self.xch is not None:
            self.xch.close()
        for ch in self.peer_chs.values():
            ch.close()
        if self.direct is not None:
            self.direct.close()
        self.ctx.term()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def dead(self) -> KitError:
        """The error that waits on this client raise once its connection is over."""
        return self.dead_error(self.dead_reason or "kit was shut down; call kit.init() again")


def _resolve_all(futs, payload):
    for fut, _ref in futs:
        _resolve(fut, payload)


def _resolve(fut, payload):
    if fut.done():
        return
    try:
        fut.set_result(serialization.from_payload(payload))
    except BaseException as e:  # the object is an error: the future carries it
        fut.set_exception(e)


def _err(text):
    try:
        sys.stderr.write(text + "\n")
    except Exception:
        pass


def install(client):
    """Make ``client`` the process's client (and the ObjectRef ref counter)."""
    global _current
    _current = client
    object_ref._tracker = client
    serialization.fetcher = client.fetch


def uninstall():
    global _current
    _current = None
    object_ref._tracker = None
    serialization.fetcher = None
