"""Moving objects between nodes: a node agent's transfer socket and its pulls.

    other node's agent, or a driver ── FETCH chunk ──▶ ROUTER (this node) ── data ──▶
    process on this node ── FETCH get ──▶ ROUTER ── pull: FETCH chunk ──▶ owner's ROUTER
                                          ◀── "got" (local name) once the copy is whole

Every connection to the transfer socket is a session (``kit.session``), so only
holders of the cluster's token read objects or ask for copies. A process on this
node that needs an object held by another node asks here ("get"); the object is
pulled from the owner's agent in 8 MiB chunks, several in flight, written to a local
file in shared memory, and the head is told of the copy (``on_copied``); data never
passes through the head. The connections to other agents are opened without
blocking (``Dialer``): chunks wait until the session is ready.
"""

from __future__ import annotations

import os
import time

import zmq

from . import object_store, page_pool, paths
from .protocol import Kind, secure
from .session import Dialer, Sessions

CHUNK = 8 << 20
IN_FLIGHT = 4
STALL = 10.0  # seconds without a chunk before a pull fails


class Pull:
    """One object being copied here from another node."""

    def __init__(self, name, local, size, peer):
        self.name, self.local, self.size, self.peer = name, local, size, peer
        self.next = 0
        self.received = 0
        self.waiters = []  # (routing id, req)
        self.fd = None
        self.final = None  # where the whole copy goes: shared memory or the spill folder
        self.in_memory = False  # its size is reserved in the node's ledger
        self.progress = time.time()


class Transfer:
    """A node's transfer socket: serves its objects, copies others' objects here.

    ``poller`` is the agent's: the transfer socket and every peer connection are
    registered there; the agent calls ``on_ready(ready)`` with what it polled.
    """

    def __init__(self, ctx, token, encrypt: bool, ip: str, poller, on_copied):
        self.ctx, self.token, self.encrypt = ctx, token, encrypt
        self.sock = ctx.socket(zmq.ROUTER)
        secure(self.sock, token, True, encrypt)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        port = self.sock.bind_to_random_port(f"tcp://{ip}")
        self.address = f"tcp://{ip}:{port}"
        self.sessions = Sessions(token)
        self.poller = poller
        poller.register(self.sock, zmq.POLLIN)
        self.on_copied = on_copied
        self.peers: dict = {}  # node id -> transfer address, as requesters told us
        self.gone: set = set()  # nodes the head said died
        self.dialers: dict = {}  # node id -> Dialer to that node's transfer socket
        self.waiting: dict = {}  # node id -> [(kind, body)] to send once its session is ready
        self.pulls: dict = {}  # name -> Pull
        self.cluster = self.prefix = self.nid = self.ledger = None
        self.limit = 0

    def start(self, cluster, prefix, nid, ledger=None, limit=0):
        """What this node is, once it joined a cluster (and its store's ledger and limit)."""
        self.cluster, self.prefix, self.nid = cluster, prefix, nid
        self.ledger, self.limit = ledger, limit

    @property
    def dropped(self) -> int:
        return self.sessions.dropped

    def on_ready(self, ready) -> None:
        if self.sock in ready:
            self.on_request()
        for d in list(self.dialers.values()):
            if d.sock in ready:
                self.on_peer(d)

    def tick(self, now) -> None:
        for pull in list(self.pulls.values()):
            if now - pull.progress > STALL:
                self._finish(pull, f"its node sent nothing for {STALL:.0f} s")

    def peer_gone(self, nid) -> None:
        """The head says node ``nid`` died: pulls from it fail now, not after a stall."""
        self.gone.add(nid)
        self.peers.pop(nid, None)
        self._drop_dialer(nid)
        for pull in list(self.pulls.values()):
            if pull.peer == nid:
                self._finish(pull, "the node holding it died")

    # ---- serving -----------------------------------------------------------------

    def on_request(self):
        for session, kind, body, _ in self.sessions.serve(self.sock):
            if kind == Kind.FETCH and body[0] == "chunk":
                self._chunk(session.rid, *body[1:])
            elif kind == Kind.FETCH and body[0] == "get":
                self.fetch(session.rid, *body[1:])

    def _reply(self, rid, body, buffers=()):
        if rid in self.sessions.by_rid:
            frames = self.sessions.pack(rid, Kind.FETCH, body, buffers)
            self.sock.send_multipart(frames, copy=not buffers)

    def _chunk(self, rid, req, name, offset, length):
        try:
            data = (
                object_store.read_bytes(name, offset, length)
                if name.startswith(f"kit_{self.cluster}_")
                else None
            )
        except OSError:
            data = None
        self._reply(rid, ("data", req, offset, data is not None), [data] if data else [])

    def fetch(self, rid, req, name, size, owner, address=None):
        """A process here asks for an object of ``owner`` (whose transfer socket is at
        ``address``, which the requester looked up): its local name once copied."""
        if address and owner not in self.gone:
            self.peers[owner] = address
        local = self.prefix + name.rsplit("_", 1)[-1]
        if (
            owner == self.nid
            or os.path.exists(object_store.path_of(local))
            or os.path.exists(object_store.spill_path(local))
        ):  # fmt: skip
            self._reply(rid, ("got", req, name if owner == self.nid else local, None))
            return
        pull = self.pulls.get(name)
        if pull is None:
            if owner not in self.peers:
                why = "the node holding it is not known (it left the cluster)"
                self._reply(rid, ("got", req, None, why))
                return
            try:
                fd, final, in_memory = self._local_copy(local, size)
            except OSError as e:
                self._reply(rid, ("got", req, None, f"cannot make the local copy of {local}: {e}"))
                return
            pull = self.pulls[name] = Pull(name, local, size, owner)
            pull.fd, pull.final, pull.in_memory = fd, final, in_memory
            os.ftruncate(fd, size)
            for _ in range(IN_FLIGHT):
                self._request_chunk(pull)
        pull.waiters.append((rid, req))

    def _local_copy(self, local, size):
        """Open the file a pull writes, ``<final>.part``: ``(fd, final, in shared memory)``.

        A file from the node's pool first (its pages are there already, and counted in
        the ledger: ``kit.page_pool``), else a new one in shared memory if the ledger has
        room (draining the pool if that makes it), else a new one in the spill folder.

        Raises:
            OSError: the file could not be made (nothing is left reserved).
        """
        ledger, limit = self.ledger, self.limit
        final = object_store.path_of(local)
        if ledger is not None and limit:
            pool = page_pool.dir_of(local, object_store.SHM_DIR)
            fd = page_pool.take(pool, size, final + ".part", ledger, limit)
            if fd is not None:
                return fd, final, True
            in_memory = ledger.reserve(size, limit)
            if not in_memory and page_pool.drain(pool, ledger, keep=limit - size):
                in_memory = ledger.reserve(size, limit)
        else:
            in_memory = ledger is None or ledger.reserve(size, limit)
        try:
            if not in_memory:
                final = os.path.join(paths.spill_dir(), local)
            part = final + ".part"
            try:
                os.unlink(part)  # a stale part of ours; never write into someone else's
            except FileNotFoundError:
                pass
            fd = os.open(part, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
        except OSError:
            if in_memory and ledger is not None:
                ledger.release(size)
            raise
        return fd, final, in_memory

    # ---- pulling -----------------------------------------------------------------

    def _send_to(self, nid, kind, body):
        d = self.dialers.get(nid)
        if d is None:
            d = self.dialers[nid] = Dialer(
                self.ctx, self.peers[nid], self.token, ("peer", "node", self.nid, None),
                encrypt=self.encrypt,
            )  # fmt: skip
            self.poller.register(d.sock, zmq.POLLIN)
        if d.ready:
            d.send(kind, body)
        else:
            self.waiting.setdefault(nid, []).append((kind, body))

    def _drop_dialer(self, nid):
        d = self.dialers.pop(nid, None)
        self.waiting.pop(nid, None)
        if d is not None:
            self.poller.unregister(d.sock)
            d.close()

    def _request_chunk(self, pull):
        if pull.next >= pull.size:
            return
        length = min(CHUNK, pull.size - pull.next)
        self._send_to(pull.peer, Kind.FETCH, ("chunk", pull.name, pull.name, pull.next, length))
        pull.next += length

    def on_peer(self, d):
        nid = next((n for n, x in self.dialers.items() if x is d), None)
        while True:
            try:
                frames = d.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            frames = [f.bytes if len(f) < 4096 else f.buffer for f in frames]
            was_ready = d.ready
            msg = d.on_frames(frames)
            if d.failed is not None or d.forgotten:
                why = f"its node refused the connection ({d.failed or 'session forgotten'})"
                for pull in [p for p in self.pulls.values() if p.peer == nid]:
                    self._finish(pull, why)
                self._drop_dialer(nid)
                return
            if d.ready and not was_ready:
                for kind, body in self.waiting.pop(nid, ()):
                    d.send(kind, body)
            if msg is not None:
                self._on_data(msg)

    def _on_data(self, msg):
        _, name, offset, ok = msg[1]
        pull = self.pulls.get(name)
        if pull is None:
            return
        if not ok:
            self._finish(pull, "its node no longer has it")
            return
        data = msg[2][0]
        os.pwrite(pull.fd, data, offset)
        pull.received += len(data)
        pull.progress = time.time()
        self._request_chunk(pull)
        if pull.received >= pull.size:
            self._finish(pull, None)

    def _finish(self, pull, error):
        self.pulls.pop(pull.name, None)
        os.close(pull.fd)
        part = pull.final + ".part"
        if error is None:
            os.rename(part, pull.final)
            self.on_copied(pull.name, pull.local, pull.size)
        else:
            try:
                os.unlink(part)
            except OSError:
                pass
            if pull.in_memory and self.ledger is not None:
                self.ledger.release(pull.size)
        for rid, req in pull.waiters:
            self._reply(rid, ("got", req, pull.local if error is None else None, error))

    def close(self):
        for pull in list(self.pulls.values()):
            self._finish(pull, "the node is stopping")
        for nid in list(self.dialers):
            self._drop_dialer(nid)
        self.sock.close(0)
