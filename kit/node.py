"""A node agent: starts and supervises one machine's workers and keeps its object store.

    head ── NODE_CMD spawn/kill/free ──▶ node agent ── fork ──▶ zygote ──▶ workers
    head ◀── NODE_EVENT worker_exit ──── node agent ◀── exit status ── zygote
    head ◀── HEARTBEAT (every second)

The agent forks its zygote before it creates any zmq context, then starts one
worker per CPU slot so the first tasks find workers waiting. When a worker
ends, the zygote reports the exit code or signal, and the agent tells the head,
which retries the worker's tasks or fails them naming the cause. Shared-memory
objects of this node are named ``kit_<cluster>_<tag>_*``; the agent unlinks
them when the head frees them and sweeps them all when it stops.
"""

from __future__ import annotations

import os
import signal
import time

import zmq

from . import object_store
from .protocol import KIT_VERSION, PY_VERSION, Kind, Signer
from .spawner import Zygote, die_with_parent


class NodeAgent:
    def __init__(self, cfg):
        self.cfg = cfg
        self.zygote = Zygote()            # before any zmq context exists here
        self.nid = cfg["node_id"]
        self.tag = cfg["tag"]
        self.prefix = f"kit_{cfg['cluster']}_{self.tag}_"
        self.store_limit = cfg.get("object_store_memory") or object_store.default_limit()
        self.signer = Signer(cfg["token"])
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.IDENTITY, self.nid + b"n")
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.connect(cfg["address"])
        self.workers = {}                 # wid -> pid
        self.tags = {}                    # pid -> wid
        self.stopping = False
        self.worker_cfg = {
            "address": cfg["address"], "token": cfg["token"], "node_id": self.nid,
            "node_hex": self.nid.hex(), "tag": self.tag, "cluster": cfg["cluster"],
            "store_limit": self.store_limit, "sys_path": cfg.get("sys_path") or [],
            "cwd": cfg.get("cwd")}

    def send(self, kind, body):
        self.sock.send_multipart(self.signer.pack(kind, body))

    def spawn(self, actor_id=None):
        wid = os.urandom(8)
        self.workers[wid] = None
        self.zygote.fork(wid, "kit.worker:main", self.worker_cfg, wid, actor_id)

    def hello(self):
        cfg = self.cfg
        from .client import host_id
        self.send(Kind.HELLO, ("node", {
            "kit": KIT_VERSION, "python": PY_VERSION, "resources": cfg["resources"],
            "host": host_id(), "pid": os.getpid(), "tag": self.tag,
            "address": cfg.get("node_ip", "127.0.0.1"),
            "store_limit": self.store_limit,
            "prestart": cfg["prestart"]}))

    def serve(self):
        signal.signal(signal.SIGTERM, lambda *a: self._stop_flag())
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.hello()
        for _ in range(self.cfg["prestart"]):
            self.spawn()
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.zygote.ev, zmq.POLLIN)
        last_beat = 0.0
        while not self.stopping:
            try:
                ready = dict(poller.poll(500))
            except zmq.ZMQError:
                break
            if self.zygote.ev in ready:
                for ev in self.zygote.events():
                    self.on_zygote(ev)
                if self.zygote.reader.closed:
                    break
            if self.sock in ready:
                while True:
                    try:
                        frames = self.sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    msg = self.signer.unpack(frames)
                    if msg is not None:
                        self.on_command(msg[0], msg[1])
            now = time.time()
            if now - last_beat >= 1.0:
                last_beat = now
                self.send(Kind.HEARTBEAT, None)
        self.stop()

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
            if not self.stopping:
                self.send(Kind.NODE_EVENT, ("worker_exit", (wid, cause, False)))

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

    def stop(self):
        for pid in list(self.tags):
            self.zygote.kill(pid)
        self.zygote.close()
        object_store.sweep(self.prefix)
        try:
            self.send(Kind.NODE_EVENT, ("bye", None))
        except zmq.ZMQError:
            pass
        self.sock.close(500)
        self.ctx.term()


def main(cfg):
    """Entry point of a node agent process (forked by the cluster's zygote)."""
    die_with_parent(signal.SIGTERM)
    agent = NodeAgent(cfg)
    try:
        agent.serve()
    finally:
        object_store.sweep(agent.prefix)
