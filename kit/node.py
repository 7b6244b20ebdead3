"""A node agent: starts and supervises one machine's workers and keeps its object store.

    head ── NODE_CMD spawn/kill/free/spill/peers ──▶ agent ── fork ──▶ zygote ──▶ workers
    head ◀── NODE_EVENT worker_exit/copied ──────── agent ◀── exit status ── zygote
    head ◀── HEARTBEAT (every second)
    workers, drivers ── FETCH get ──▶ agent transfer socket ── FETCH chunk ──▶ other agents

The agent joins the head first (a wrong token fails at once), forks its zygote
before it creates any zmq context, then starts one worker per CPU slot so the
first tasks find workers waiting. When a worker ends, the zygote reports the
exit code or signal, and the agent tells the head, which retries the worker's
tasks or fails them naming the cause.

Objects of this node are files ``kit_<cluster>_<tag>_*`` in shared memory. A
process here that needs an object held by another node asks this agent, which
pulls it from that node's agent in 8 MiB chunks (several in flight), writes a
local copy and tells the head about it; data never passes through the head.
"""

from __future__ import annotations

import os
import signal
import time

import zmq

from . import object_store
from .protocol import KIT_VERSION, PY_VERSION, Kind, Signer, await_welcome, secure
from .spawner import Zygote, die_with_parent

MEMORY_THRESHOLD = 0.95  # fraction of the machine's memory; KIT_MEMORY_THRESHOLD overrides
CHUNK = 8 << 20
IN_FLIGHT = 4
STALL = 10.0  # seconds without a chunk before a pull fails


class Pull:
    """One object being copied here from another node."""

    def __init__(self, name, local, size, peer):
        self.name, self.local, self.size, self.peer = name, local, size, peer
        self.next = 0
        self.received = 0
        self.waiters = []  # (ident, req)
        self.fd = None
        self.progress = time.time()


class NodeAgent:
    def __init__(self, cfg):
        self.cfg = cfg
        self.zygote = Zygote()  # before any zmq context exists here
        self.nid = cfg["node_id"]
        self.tag = cfg["tag"]
        self.signer = Signer(cfg["token"])
        self.xsigner = Signer(cfg["token"])
        self.ctx = zmq.Context()
        self.encrypt = bool(cfg.get("encrypt"))
        self.sock = self.ctx.socket(zmq.DEALER)
        secure(self.sock, cfg["token"], False, self.encrypt)
        self.sock.setsockopt(zmq.IDENTITY, self.nid + b"n")
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.connect(cfg["address"])
        self.xfer = self.ctx.socket(zmq.ROUTER)
        secure(self.xfer, cfg["token"], True, self.encrypt)
        self.xfer.setsockopt(zmq.LINGER, 0)
        ip = cfg.get("node_ip", "127.0.0.1")
        port = self.xfer.bind_to_random_port(f"tcp://{ip}")
        self.xfer_address = f"tcp://{ip}:{port}"
        self.store_limit = cfg.get("object_store_memory") or object_store.default_limit()
        self.workers = {}  # wid -> pid
        self.tags = {}  # pid -> wid
        self.stopping = False
        self.peers = {}  # nid -> transfer address
        self.peer_socks = {}  # nid -> DEALER
        self.pulls = {}  # name -> Pull
        self.poller = zmq.Poller()
        self.cluster = None
        self.prefix = None
        self.worker_cfg = None
        self.memory_threshold = float(
            os.environ.get("KIT_MEMORY_THRESHOLD")
            or cfg.get("memory_threshold")
            or MEMORY_THRESHOLD
        )
        self.oom_killed = {}  # pid -> why the memory monitor killed it
        self.last_memory_check = 0.0

    def send(self, kind, body):
        self.sock.send_multipart(self.signer.pack(kind, body))

    def spawn(self, actor_id=None):
        wid = os.urandom(8)
        self.workers[wid] = None
        self.zygote.fork(wid, "kit.worker:main", self.worker_cfg, wid, actor_id)

    def join(self, timeout=10.0):
        """Say hello to the head and wait for its welcome; learn the cluster's id."""
        cfg = self.cfg
        from .client import host_id

        self.send(
            Kind.HELLO,
            (
                "node",
                {
                    "kit": KIT_VERSION,
                    "python": PY_VERSION,
                    "resources": cfg["resources"],
                    "host": host_id(),
                    "pid": os.getpid(),
                    "tag": self.tag,
                    "address": cfg.get("node_ip", "127.0.0.1"),
                    "transfer": self.xfer_address,
                    "store_limit": self.store_limit,
                    "prestart": cfg["prestart"],
                },
            ),
        )
        welcome = await_welcome(
            self.sock, self.signer, cfg["address"], timeout, on_other=self.on_command
        )
        self.cluster = welcome["cluster"]
        self.prefix = f"kit_{self.cluster}_{self.tag}_"
        self.worker_cfg = {
            "address": cfg["address"],
            "token": cfg["token"],
            "node_id": self.nid,
            "node_hex": self.nid.hex(),
            "tag": self.tag,
            "cluster": self.cluster,
            "store_limit": self.store_limit,
            "sys_path": cfg.get("sys_path") or [],
            "cwd": cfg.get("cwd"),
            "transfer": self.xfer_address,
            "encrypt": self.encrypt,
        }

    def serve(self):
        signal.signal(signal.SIGTERM, lambda *a: self._stop_flag())
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for _ in range(self.cfg["prestart"]):
            self.spawn()
        poller = self.poller
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.xfer, zmq.POLLIN)
        poller.register(self.zygote.ev, zmq.POLLIN)
        last_beat = 0.0
        while not self.stopping:
            try:
                ready = dict(poller.poll(250))
            except zmq.ZMQError:
                break
            if self.zygote.ev in ready:
                for ev in self.zygote.events():
                    self.on_zygote(ev)
                if self.zygote.reader.closed:
                    break
            if self.sock in ready:
                self.on_head()
            if self.xfer in ready:
                self.on_transfer()
            for s in list(self.peer_socks.values()):
                if s in ready:
                    self.on_peer_data(s)
            last_beat = self.on_tick(time.time(), last_beat)
        self.stop()

    def on_head(self):
        """Handle every command the head sent (checked before anything is unpickled)."""
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            msg = self.signer.unpack(frames)
            if msg is not None:
                self.on_command(msg[0], msg[1])

    def on_tick(self, now, last_beat):
        """Timed work: the memory check, the heartbeat, stalled pulls; the new last beat."""
        if now - self.last_memory_check >= 0.25:
            self.last_memory_check = now
            self.check_memory()
        if now - last_beat < 1.0:
            return last_beat
        self.send(Kind.HEARTBEAT, None)
        for pull in list(self.pulls.values()):
            if now - pull.progress > STALL:
                self._finish_pull(pull, f"its node sent nothing for {STALL:.0f} s")
        return now

    def check_memory(self):
        """Kill the worker using the most memory when the machine is over the threshold.

        Its task then fails with OutOfMemoryError, instead of the machine swapping
        or the kernel's OOM killer taking the driver.
        """
        import psutil

        vm = psutil.virtual_memory()
        used = 1.0 - vm.available / vm.total
        if used < self.memory_threshold:
            return
        biggest, size = None, 0
        for pid in self.tags:
            if pid in self.oom_killed:
                continue
            try:
                rss = psutil.Process(pid).memory_info().rss
            except psutil.Error:
                continue
            if rss > size:
                biggest, size = pid, rss
        if biggest is None:
            return
        self.oom_killed[biggest] = (
            f"killed by kit's memory monitor: the machine was at {used:.0%} of its memory "
            f"(threshold {self.memory_threshold:.0%}) and this worker used the most "
            f"({size / 2**30:.2f} GiB); use less memory per task, or fewer tasks at once"
        )
        self.zygote.kill(biggest)

    def _stop_flag(self):
        self.stopping = True

    def on_zygote(self, ev):
        if ev[0] == "started":
            _, wid, pid = ev
            self.workers[wid] = pid
            self.tags[pid] = wid
        elif ev[0] == "exit":
            _, wid, pid, cause = ev
            self.workers.pop(wid, None)
            self.tags.pop(pid, None)
            oom = self.oom_killed.pop(pid, None)
            if not self.stopping:
                self.send(Kind.NODE_EVENT, ("worker_exit", (wid, oom or cause, oom is not None)))

    def on_command(self, kind, body):
        if kind == Kind.SHUTDOWN:
            self.stopping = True
            return
        if kind != Kind.NODE_CMD:
            return
        op, arg = body
        if op == "spawn":
            self.spawn(arg)
        elif op == "kill":
            pid = self.workers.get(arg)
            if pid:
                self.zygote.kill(pid)
        elif op == "spill":
            for name in arg:
                if name.startswith(self.prefix):
                    object_store.spill(name)
        elif op == "free":
            for name in arg:
                if name.startswith(self.prefix):
                    object_store.unlink(name)
        elif op == "peers":
            self.peers = dict(arg)
            for pull in list(self.pulls.values()):
                if pull.peer not in self.peers:
                    self._finish_pull(pull, "the node holding it died")

    # ---- moving objects between nodes -------------------------------------------

    def on_transfer(self):
        while True:
            try:
                frames = self.xfer.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            ident = frames[0]
            msg = self.xsigner.unpack(frames[1:], ident)
            if msg is None or msg[0] != Kind.FETCH:
                continue
            body = msg[1]
            if body[0] == "chunk":
                _, req, name, offset, length = body
                try:
                    data = (
                        object_store.read_bytes(name, offset, length)
                        if name.startswith(f"kit_{self.cluster}_")
                        else None
                    )
                except OSError:
                    data = None
                self._xreply(
                    ident,
                    ("data", req, offset, data is not None),
                    [data] if data is not None else [],
                )
            elif body[0] == "get":
                _, req, name, size, owner = body
                self.fetch(ident, req, name, size, owner)

    def _xreply(self, ident, body, buffers=()):
        self.xfer.send_multipart(
            [ident, *self.xsigner.pack(Kind.FETCH, body, buffers)], copy=not buffers
        )

    def fetch(self, ident, req, name, size, owner):
        local = self.prefix + name.rsplit("_", 1)[-1]
        if (
            owner == self.nid
            or os.path.exists(object_store.path_of(local))
            or os.path.exists(object_store.spill_path(local))
        ):
            self._xreply(ident, ("got", req, name if owner == self.nid else local, None))
            return
        pull = self.pulls.get(name)
        if pull is None:
            addr = self.peers.get(owner)
            if addr is None:
                self._xreply(
                    ident,
                    ("got", req, None, "the node holding it is not known (it left the cluster)"),
                )
                return
            pull = self.pulls[name] = Pull(name, local, size, owner)
            pull.fd = os.open(
                object_store.path_of(local) + ".part", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600
            )
            os.ftruncate(pull.fd, size)
            for _ in range(IN_FLIGHT):
                self._request_chunk(pull)
        pull.waiters.append((ident, req))

    def _peer(self, nid):
        s = self.peer_socks.get(nid)
        if s is None:
            s = self.ctx.socket(zmq.DEALER)
            secure(s, self.cfg["token"], False, self.encrypt)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(self.peers[nid])
            self.peer_socks[nid] = s
            self.poller.register(s, zmq.POLLIN)
        return s

    def _request_chunk(self, pull):
        if pull.next >= pull.size:
            return
        length = min(CHUNK, pull.size - pull.next)
        self._peer(pull.peer).send_multipart(
            self.xsigner.pack(Kind.FETCH, ("chunk", pull.name, pull.name, pull.next, length))
        )
        pull.next += length

    def on_peer_data(self, s):
        while True:
            try:
                frames = s.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            frames = [f.bytes if len(f) < 4096 else f.buffer for f in frames]
            msg = self.xsigner.unpack(frames, id(s))
            if msg is None:
                continue
            _, name, offset, ok = msg[1]
            pull = self.pulls.get(name)
            if pull is None:
                continue
            if not ok:
                self._finish_pull(pull, "its node no longer has it")
                continue
            data = msg[2][0]
            os.pwrite(pull.fd, data, offset)
            pull.received += len(data)
            pull.progress = time.time()
            self._request_chunk(pull)
            if pull.received >= pull.size:
                self._finish_pull(pull, None)

    def _finish_pull(self, pull, error):
        self.pulls.pop(pull.name, None)
        os.close(pull.fd)
        part = object_store.path_of(pull.local) + ".part"
        if error is None:
            os.rename(part, object_store.path_of(pull.local))
            self.send(Kind.NODE_EVENT, ("copied", (pull.name, pull.local, pull.size)))
        else:
            try:
                os.unlink(part)
            except OSError:
                pass
        for ident, req in pull.waiters:
            self._xreply(ident, ("got", req, pull.local if error is None else None, error))

    def stop(self):
        for pid in list(self.tags):
            self.zygote.kill(pid)
        self.zygote.close()
        if self.prefix:
            object_store.sweep(self.prefix)
        try:
            self.send(Kind.NODE_EVENT, ("bye", None))
        except zmq.ZMQError:
            pass
        for s in self.peer_socks.values():
            s.close(0)
        self.xfer.close(0)
        self.sock.close(500)
        self.ctx.term()


def main(cfg, ready=None):
    """Entry point of a node agent process (forked by a cluster's zygote, or a daemon)."""
    if not cfg.get("daemon"):
        die_with_parent(signal.SIGTERM)
    agent = NodeAgent(cfg)
    try:
        agent.join()
        if ready is not None:
            ready(agent)
        agent.serve()
    finally:
        if agent.prefix:
            object_store.sweep(agent.prefix)
