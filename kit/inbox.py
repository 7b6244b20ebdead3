"""A worker's door for the direct path (``kit.lease``): tasks in, results out.

    driver ── DTASKS ──▶ ROUTER (this worker; read by its main thread between tasks)
    driver ── LEASE cancel ──▶ head ── CANCEL ──▶ the worker's io thread (while it runs)
    driver's result ROUTER ◀── DLOG, DDONE ── a session per driver (any thread, locked)
    head ◀──▶ PUBLISH, REPLY ── results the head must keep (large ones, ones holding refs),
                        on the worker's own connection, before the DDONE

The ROUTER belongs to the main thread (it receives tasks and answers handshakes
when it has nothing to run, so a task reaches it without a thread in between); the
connections to drivers are used under a lock (results from the main thread, output
from whatever thread of the task prints), so a task's output reaches its driver
before its result, on one connection. A result is
published to the head when the head must know it: it lives in a node's shared
memory (the head frees it and rebuilds it from lineage), or it holds refs (the head
keeps them alive); the worker keeps holding those refs until the publish is sent.
"""

from __future__ import annotations

import threading

import zmq

from .protocol import Kind, secure
from .records import SHARED
from .session import Channel, Sessions


class Inbox:
    """The direct path's end in a worker (see the module docstring)."""

    def __init__(self, ctx, token, encrypt: bool, ip: str, on_task, wake_fd):
        self.ctx, self.token, self.encrypt = ctx, token, encrypt
        self.sock = ctx.socket(zmq.ROUTER)
        secure(self.sock, token, True, encrypt)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        port = self.sock.bind_to_random_port(f"tcp://{ip}")
        self.address = f"tcp://{ip}:{port}"
        self.sessions = Sessions(token)
        self.on_task = on_task  # (spec, blob, owner id, result address): queue it
        self.poller = zmq.Poller()  # this socket, and ``wake_fd``: the head sent tasks
        self.poller.register(self.sock, zmq.POLLIN)
        self.poller.register(wake_fd, zmq.POLLIN)
        self.outs: dict = {}  # result address -> Channel
        self.out_lock = threading.Lock()
        self.done: dict = {}  # (owner, result address) -> [(spec, TaskDone)] to send
        self.done_lock = threading.Lock()  # finish (main thread) and flush (any thread)

    def wait(self) -> None:
        """The main thread: sleep until a driver sends something or the wake fd is readable."""
        self.poller.poll()

    def on_readable(self) -> None:
        """The main thread: read what drivers sent (tasks, handshakes), without waiting."""
        for session, kind, body, _ in self.sessions.serve(self.sock):
            if kind == Kind.DTASKS:
                owner = session.who[2]
                address, batch = body
                for spec, blob in batch:
                    self.on_task(spec, blob, owner, address)

    def finish(self, owner, address, spec, done) -> None:
        """The main thread: a direct task ended; its report waits for ``flush``."""
        with self.done_lock:
            self.done.setdefault((owner, address), []).append((spec, done))

    def pending(self) -> int:
        return sum(len(v) for v in self.done.values())

    def flush(self, client, wid) -> None:
        """Publish what the head must keep, then answer each driver; then drop the refs
        results hold (the head holds them now). The main thread, or the worker's
        LateFlush while the main thread runs the next task."""
        with self.done_lock:
            done, self.done = self.done, {}
        for (owner, address), items in done.items():
            publish = []
            for spec, d in items:
                keep = [r for r in d[1] if r[1][0] == SHARED or r[2]]
                if keep:
                    publish.append((owner, spec, keep))
            if publish:  # the head has them before the driver hears of them (and of refs
                # inside them, made by this worker: it must know those first too)
                client.request(Kind.PUBLISH, lambda req, p=publish: (req, p), 30.0, "publish")
            self._send(address, wid, Kind.DDONE, [d for _, d in items])
            for _, d in items:
                for _, _, contained in d[1]:
                    for oid in contained:
                        client.decref(oid)

    def log(self, address, wid, line) -> None:
        """A direct task printed: its driver gets the line straight away."""
        self._send(address, wid, Kind.DLOG, [line])

    def _send(self, address, wid, kind, body) -> None:
        with self.out_lock:
            out = self.outs.get(address)
            if out is None:
                try:
                    out = self.outs[address] = Channel(
                        self.ctx, address, self.token, ("peer", "worker", wid, None),
                        encrypt=self.encrypt, timeout=10.0, unbounded=True,
                    )  # fmt: skip
                except Exception:  # the driver is gone: its leases end with it
                    return
            out.send(kind, body)

    def close(self) -> None:
        for out in self.outs.values():
            out.close()
        self.sock.close(0)
