"""A node agent: starts and supervises one machine's workers and keeps its object store.

    head ── NODE_CMD spawn/kill/free/peer_gone/stack ─▶ agent ── fork ─▶ zygote ─▶ workers
    head ◀── NODE_EVENT worker_exit/copied/stack ──── agent ◀── exit status ── zygote
    head ◀──▶ HEARTBEAT (every second, both ways; while a dashboard watches, the head's
              says so and the agent's carries machine and process figures)
    workers, drivers ── FETCH ──▶ transfer socket (kit.transfer) ◀──▶ other agents

The agent joins the head first (a wrong token fails at once), forks its zygote
before it creates any zmq context, then starts one worker per CPU slot so the
first tasks find workers waiting. When a worker ends, the zygote reports the
exit code or signal, and the agent tells the head, which retries the worker's
tasks or fails them naming the cause.

The head sends a heartbeat every second. An agent that hears nothing from it for
``head_timeout`` seconds, or learns that the head forgot it (``SESSION_UNKNOWN``:
the head declared it dead, e.g. during a network partition, or the head is a new
one), stops its workers, clears its object store and joins again as a new node
(a new node id): whatever it ran belongs to the old incarnation, which the head
has already written off. A local cluster's agent (one ``kit.init`` started)
exits with the head instead; an agent started with ``kit start --address`` keeps
trying to join for ``rejoin_grace`` seconds, then exits.

Objects of this node are files ``kit_<cluster>_<tag>_*`` in shared memory; freed
ones that no process maps wait in its pool, ``kit_<cluster>_<tag>_pool/``, for
writers to reuse their pages (``kit.page_pool``).
"""

from __future__ import annotations

import os
import signal
import time

import zmq

from . import object_store, process
from .errors import KitError
from .ledger import HIGH, LOW, Ledger
from .page_pool import Pool
from .protocol import KIT_VERSION, PY_VERSION, Kind
from .session import SESSION_UNKNOWN, Channel
from .spawner import Zygote, die_with_parent
from .transfer import Transfer

WATCHED_FOR = 5.0  # seconds a head's "watched" heartbeat keeps figures coming
MEMORY_THRESHOLD = 0.95  # fraction of the machine's memory; KIT_MEMORY_THRESHOLD overrides
HEAD_TIMEOUT = 8.0  # silence from the head this long: it died (KIT_HEAD_TIMEOUT)
REJOIN_GRACE = 60.0  # a daemon agent tries to join a head again this long (KIT_REJOIN_GRACE)


class Forgotten(Exception):
    """The head no longer knows this node (it was declared dead, or the head is new)."""


class NodeAgent:
    def __init__(self, cfg):
        self.cfg = cfg
        self.zygote = Zygote(cfg.get("preload"), queue=True)  # before any zmq context
        self.zygote_polled = False  # its command pipe is polled for room
        self.nid = cfg["node_id"]
        self.tag = cfg["tag"]
        self.ctx = zmq.Context()
        self.encrypt = bool(cfg.get("encrypt"))
        self.head = None  # the session with the head (a Channel)
        self.poller = zmq.Poller()
        self.transfer = Transfer(
            self.ctx, cfg["token"], self.encrypt, cfg.get("node_ip", "127.0.0.1"),
            self.poller, self._copied,
        )  # fmt: skip
        self.store_limit = cfg.get("object_store_memory") or object_store.default_limit()
        self.workers = {}  # wid -> pid (None until the zygote says it started)
        self.actor_of = {}  # wid -> the actor it was started for (None: a task worker)
        self.env_of = {}  # wid -> the key of the runtime_env it was started for, if any
        self.tags = {}  # pid -> wid
        self.stopping = False
        self.cluster = None
        self.prefix = None
        self.worker_cfg = None
        self.memory_threshold = float(
            os.environ.get("KIT_MEMORY_THRESHOLD")
            or cfg.get("memory_threshold")
            or MEMORY_THRESHOLD
        )
        self.head_timeout = float(os.environ.get("KIT_HEAD_TIMEOUT") or HEAD_TIMEOUT)
        self.rejoin_grace = float(
            os.environ.get("KIT_REJOIN_GRACE") or cfg.get("rejoin_grace") or REJOIN_GRACE
        )
        self.ledger = None  # this node's shared-memory ledger (kit.ledger)
        self.pool = None  # freed object files kept for writers to reuse (kit.page_pool)
        self.spilled = 0  # objects spilled to disk so far
        self.oom_killed = {}  # pid -> why the memory monitor killed it
        self.last_memory_check = 0.0
        self.heard = time.monotonic()
        self.joins = 0
        self.parent = os.getppid()  # a local cluster's head (the agent dies with it)
        self.watched_until = 0.0  # a dashboard watches: heartbeats carry figures till then
        self.stats = None  # kit.dashboard.procstats.Stats, made when first watched
        self.dumps: list = []  # [(key, kit.dashboard.stacks.Dump)]: stacks being read

    def send(self, kind, body):
        self.head.send(kind, body)

    def spawn(self, actor_id=None, env=None):
        """Start a worker (for an actor; in a runtime_env, which it sets up itself)."""
        wid = os.urandom(8)
        self.workers[wid] = None
        self.actor_of[wid] = actor_id
        if env is not None:
            self.env_of[wid] = env["key"]
            self.zygote.fork(wid, "kit.worker:main", self.worker_cfg, wid, actor_id, env)
        else:
            self.zygote.fork(wid, "kit.worker:main", self.worker_cfg, wid, actor_id)

    def join(self, timeout=10.0):
        """Prove the token to the head and join as this node; learn the cluster's id."""
        cfg = self.cfg
        from .client import host_id

        info = {
            "kit": KIT_VERSION,
            "python": PY_VERSION,
            "resources": cfg["resources"],
            "host": host_id(),
            "pid": os.getpid(),
            "tag": self.tag,
            "address": cfg.get("node_ip", "127.0.0.1"),
            "transfer": self.transfer.address,
            "store_limit": self.store_limit,
            "prestart": cfg["prestart"],
        }
        head = Channel(
            self.ctx, cfg["address"], cfg["token"], ("node", "node", self.nid, info),
            encrypt=self.encrypt, timeout=timeout, linger=1000, unbounded=True,
        )  # fmt: skip
        if self.head is not None:
            self.poller.unregister(self.head.sock)
            self.head.close()
        self.head = head
        self.poller.register(head.sock, zmq.POLLIN)
        self.heard = time.monotonic()
        self.joins += 1
        self.cluster = head.welcome["cluster"]
        self.prefix = f"kit_{self.cluster}_{self.tag}_"
        if self.ledger is not None:
            self.ledger.close()
        self.ledger = Ledger.create(object_store.path_of(self.prefix + "ledger"))
        self.pool = Pool(object_store.path_of(self.prefix + "pool"), self.ledger, self.store_limit)
        self.transfer.start(self.cluster, self.prefix, self.nid, self.ledger, self.store_limit)
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
            "transfer": self.transfer.address,
            "encrypt": self.encrypt,
        }

    def join_patiently(self):
        """Join, trying again while the head is slow to answer (hundreds of nodes joining
        at once): a join that is slow is retried, not lost, for KIT_JOIN_TIMEOUT seconds.
        A refusal (wrong token, another version) is final at once."""
        from .errors import AuthenticationError

        deadline = time.monotonic() + float(os.environ.get("KIT_JOIN_TIMEOUT") or 120.0)
        wait = 5.0
        while True:
            try:
                self.join(timeout=wait)
                return
            except AuthenticationError:
                raise
            except KitError:
                if time.monotonic() + wait > deadline:
                    raise
                wait = min(wait * 1.5, 20.0)

    def serve(self):
        signal.signal(signal.SIGTERM, lambda *a: self._stop_flag())
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.poller.register(self.zygote.ev, zmq.POLLIN)
        while not self.stopping:
            for _ in range(self.cfg["prestart"]):
                self.spawn()
            try:
                self._serve_session()
            except Forgotten as e:
                if self.stopping or not self.rejoin(str(e)):
                    break
        self.stop()

    def _serve_session(self):
        poller = self.poller
        last_beat = 0.0
        zygote = self.zygote
        while not self.stopping:
            self._watch_zygote_pipe()
            try:
                ready = dict(poller.poll(250))
            except zmq.ZMQError:
                self.stopping = True
                return
            if self.zygote_polled and zygote.cmd in ready:
                zygote.flush()
            if self.zygote.ev in ready:
                for ev in self.zygote.events():
                    self.on_zygote(ev)
                if self.zygote.reader.closed:
                    self.stopping = True
                    return
            if self.head.sock in ready:
                self.on_head()
            self.transfer.on_ready(ready)
            last_beat = self.on_tick(time.time(), last_beat)

    def _watch_zygote_pipe(self):
        """Poll the zygote's command pipe for room while fork commands wait for it (the
        agent never blocks on that pipe: see kit.spawner.Zygote)."""
        want = bool(self.zygote.pending)
        if want != self.zygote_polled:
            self.zygote_polled = want
            if want:
                self.poller.register(self.zygote.cmd, zmq.POLLOUT)
            else:
                self.poller.unregister(self.zygote.cmd)

    def on_head(self):
        """Handle every command the head sent (checked before anything is unpickled)."""
        while True:
            try:
                msg = self.head.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.heard = time.monotonic()
            if msg is SESSION_UNKNOWN or msg == SESSION_UNKNOWN:
                raise Forgotten("the head no longer knows this node (it declared it dead)")
            if msg is not None:
                self.on_command(msg[0], msg[1])

    def on_tick(self, now, last_beat):
        """Timed work: the memory check, the heartbeat, stalled pulls; the new last beat."""
        if now - self.last_memory_check >= 0.25:
            self.last_memory_check = now
            self.check_memory()
            self.check_store()
        if self.dumps:
            self.check_dumps()
        if now - last_beat < 1.0:
            return last_beat
        beat = {"store_used": self.ledger.used(), "spilled": self.spilled}
        if time.monotonic() < self.watched_until:
            beat["stats"] = self.sample()
        self.send(Kind.HEARTBEAT, beat)
        self.transfer.tick(now)
        silent = time.monotonic() - self.heard
        if silent > self.head_timeout and not self._head_busy(silent):
            raise Forgotten(f"nothing from the head for {silent:.0f} s")
        return now

    def sample(self) -> dict:
        """This machine's and this node's kit processes' CPU and memory (for dashboards)."""
        if self.stats is None:
            from .dashboard.procstats import Stats

            self.stats = Stats()
        pids = [os.getpid(), self.zygote.pid, *self.tags]
        return self.stats.sample(pids)

    def check_dumps(self):
        """Send the stacks that py-spy has finished reading."""
        left = []
        for key, d in self.dumps:
            text = d.result()
            if text is None:
                left.append((key, d))
            else:
                self.send(Kind.NODE_EVENT, ("stack", (key, text)))
        self.dumps = left

    def _head_busy(self, silent) -> bool:
        """A local cluster's head that is silent but still running is busy, not dead."""
        return (
            not self.cfg.get("daemon")
            and silent <= process.BUSY_TIMEOUT
            and os.getppid() == self.parent
            and process.state(self.parent) == process.RUNNING
        )

    def rejoin(self, why) -> bool:
        """Clear this node (workers, objects) and join as a new node; False to exit."""
        _log(f"kit node {self.tag}: {why}; stopping its workers and joining again as new")
        self._kill_workers()
        if self.prefix:
            object_store.sweep(self.prefix)
        if not self.cfg.get("daemon"):
            return False  # a local cluster's agent lives and dies with its head
        deadline = time.monotonic() + self.rejoin_grace
        while not self.stopping and time.monotonic() < deadline:
            self.nid = os.urandom(8)
            try:
                self.join(timeout=min(5.0, max(0.5, deadline - time.monotonic())))
                _log(f"kit node {self.tag}: joined again as node {self.nid.hex()}")
                return True
            except KitError as e:
                _log(f"kit node {self.tag}: no head yet ({e})")
        _log(f"kit node {self.tag}: no head for {self.rejoin_grace:.0f} s; exiting")
        return False

    def check_store(self):
        """Unlink pool files no writer took for a while; above the high-water mark, drain
        the pool, then spill the oldest objects until below the low one, so writers find
        room (a writer that finds none goes to disk itself)."""
        self.pool.trim(time.monotonic())
        limit = self.store_limit
        if not limit or self.ledger.used() <= HIGH * limit:
            return
        self.pool.drain()
        mine = []
        for name in os.listdir(object_store.SHM_DIR):
            if name.startswith(self.prefix) and len(name) == len(self.prefix) + 24:
                try:
                    mine.append((os.lstat(object_store.path_of(name)).st_mtime, name))
                except OSError:
                    pass
        for _, name in sorted(mine):
            if self.ledger.used() <= LOW * limit:
                break
            size = object_store.shm_size(name)
            if object_store.spill(name):
                self.ledger.release(size)
                self.spilled += 1

    def _kill_workers(self):
        for pid in list(self.tags):
            self.zygote.kill(pid)
        self.workers.clear()
        self.actor_of.clear()
        self.env_of.clear()
        self.tags.clear()

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
            if wid in self.workers:  # else: started for an incarnation that is over
                self.workers[wid] = pid
                self.tags[pid] = wid
            else:
                self.zygote.kill(pid)
        elif ev[0] == "exit":
            _, wid, pid, cause = ev
            known = self.workers.pop(wid, False) is not False
            actor = self.actor_of.pop(wid, None)
            env = self.env_of.pop(wid, None)
            self.tags.pop(pid, None)
            oom = self.oom_killed.pop(pid, None)
            if known and not self.stopping:
                why = oom or cause
                self.send(Kind.NODE_EVENT, ("worker_exit", (wid, why, oom is not None, actor, env)))

    def on_command(self, kind, body):
        if kind == Kind.SHUTDOWN:
            self.stopping = True
            return
        if kind == Kind.HEARTBEAT:
            if body and body.get("watched"):
                self.watched_until = time.monotonic() + WATCHED_FOR
            return
        if kind != Kind.NODE_CMD:
            return
        op, arg = body
        if op == "spawn":  # arg: an actor id or None, or (actor id, runtime_env)
            self.spawn(*arg) if isinstance(arg, tuple) else self.spawn(arg)
        elif op == "kill":
            pid = self.workers.get(arg)
            if pid:
                self.zygote.kill(pid)
        elif op == "free":
            for name in arg:
                if name.startswith(self.prefix):
                    # Into the pool if no process maps it, else unlinked; the ledger is
                    # told. Then whatever is left of it (spilled copies).
                    self.pool.free(object_store.path_of(name))
                    object_store.unlink(name)
        elif op == "peer_gone":
            self.transfer.peer_gone(arg)
        elif op == "stack":  # a worker's Python stack, for a dashboard
            key, pid = arg
            if pid in self.tags:
                from .dashboard.stacks import Dump

                self.dumps.append((key, Dump(pid)))
            else:
                self.send(Kind.NODE_EVENT, ("stack", (key, f"no worker {pid} on this node")))

    def _copied(self, name, local, size):
        self.send(Kind.NODE_EVENT, ("copied", (name, local, size)))

    def stop(self):
        self._kill_workers()
        self.zygote.close()
        if self.prefix:
            object_store.sweep(self.prefix)
        if self.head is not None:
            try:
                self.send(Kind.NODE_EVENT, ("bye", None))
            except zmq.ZMQError:
                pass
        self.transfer.close()
        if self.head is not None:
            self.head.close(500)
        self.ctx.term()


def _log(text):
    try:
        os.write(2, (text + "\n").encode())
    except OSError:
        pass


def main(cfg, ready=None):
    """Entry point of a node agent process (forked by a cluster's zygote, or a daemon)."""
    if not cfg.get("daemon"):
        die_with_parent(signal.SIGTERM)
    agent = NodeAgent(cfg)
    try:
        agent.join_patiently()
        if ready is not None:
            ready(agent)
        agent.serve()
    finally:
        if agent.prefix:
            object_store.sweep(agent.prefix)
