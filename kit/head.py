"""The head: node registry, scheduler, object directory and event stream.

    driver / worker  tx ─ SUBMIT PUT REFS DONE ──▶ ┌───────────────┐ ── TASKS ───▶ worker rx
                                                   │ ROUTER socket │ ── OBJECTS ─▶ driver rx
    node agent ──── NODE_EVENT HEARTBEAT ────────▶ │  Scheduler    │ ── NODE_CMD ▶ node agent
                                                   └───────────────┘ ── HEARTBEAT ▶ drivers, agents

One thread, one ROUTER socket, one poll loop. Each turn drains every waiting
message (up to a bound), feeds them to the pure ``Scheduler``, runs one
scheduling pass, and sends the resulting actions grouped per destination, so a
burst of submits or results becomes a few large messages.

Every connection is a session (``kit.session``): admitted only after it proves
the token, its messages signed with a key of its own and checked before
anything in them is unpickled, its identity (node, driver or worker id) fixed by
what it proved. A session may send only the kinds of messages its role sends
(``ALLOWED``). Clients (drivers and workers) hold two sessions, ``rx`` for what
the head sends them and ``tx`` for what they send; node agents one.

Liveness: the head sends drivers and agents a heartbeat every second (they
notice a dead head); agents send theirs and drivers theirs (the head notices a
dead node in ``node_timeout``, a gone driver in ``client_timeout``). A node
declared dead is fenced: its sessions and its workers' are forgotten, so a late
message from it (after a partition heals) is refused (``SESSION_UNKNOWN``) and
the agent joins again as a new node. A local cluster's head also watches a pipe
from the driver that started it and shuts the cluster down when it closes.
"""

from __future__ import annotations

import itertools
import os
import select
import signal
import time
from collections import deque

import zmq

from . import process, protocol
from .dashboard.probe import Probe
from .protocol import KIT_VERSION, PY_VERSION, Kind
from .scaling import Scaling
from .scheduler import Scheduler, _members
from .session import Sessions

DRAIN = 512  # messages handled per turn before scheduling
EVENT_LOG = 100_000  # task events kept for widgets and timeline()
BEAT = 1.0  # seconds between the head's heartbeats to drivers and agents
SCALING_NOTES = 5  # the autoscaler's last decisions told with the status

_CLIENT = {
    Kind.SUBMIT, Kind.FUNCTION, Kind.PUT, Kind.REFS, Kind.SUBSCRIBE, Kind.CANCEL,
    Kind.ACTOR, Kind.QUERY, Kind.HEARTBEAT, Kind.SHUTDOWN, Kind.MULTI,
}  # fmt: skip
# What each role may send; anything else from it is dropped (and counted).
ALLOWED = {
    "driver": _CLIENT | {Kind.LEASE, Kind.RECORDS, Kind.LOG},
    "worker": _CLIENT | {Kind.DONE, Kind.BLOCKED, Kind.LOG, Kind.PUBLISH},
    "node": {Kind.NODE_EVENT, Kind.HEARTBEAT},
}


class Head:
    def __init__(
        self,
        token: bytes,
        bind: str,
        cluster_id: str,
        watch_fd=None,
        node_timeout: float = 8.0,
        children=None,
        encrypt: bool = False,
        also_bind=None,
    ):
        self.sessions = Sessions(token)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        protocol.secure(self.sock, token, True, encrypt)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME)
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        if bind.endswith(":0"):
            port = self.sock.bind_to_random_port(bind.rsplit(":", 1)[0])
            self.address = f"{bind.rsplit(':', 1)[0]}:{port}"
        else:
            self.sock.bind(bind)
            self.address = bind
        if also_bind:
            self.sock.bind(also_bind)  # this host's node agents and workers connect here
        self.cluster_id = cluster_id
        self.sched = Scheduler()
        self.roles: dict = {}  # cid -> "driver" | "worker"
        self.rx_of: dict = {}  # cid -> routing id of its rx session (where to send to it)
        self.rids_of: dict = {}  # cid or node id -> routing ids of its sessions
        self.node_rid: dict = {}  # node id -> routing id of its agent's session
        self.worker_node: dict = {}  # worker id -> node id
        self.log_to: set = set()  # driver cids that want task output
        self.node_info: dict = {}  # nid -> info
        self.node_seen: dict = {}  # nid -> last heartbeat time
        self.node_timeout = node_timeout
        self.watch_fd = watch_fd
        self.events = deque(maxlen=EVENT_LOG)
        self.event_seq = 0
        self.waiting_nodes: list = []  # (cid, req, count) replies deferred until nodes join
        self.client_seen: dict = {}  # driver cid -> last message time
        # drivers send a heartbeat every 2 s; silent this long, a driver is gone
        self.client_timeout = float(os.environ.get("KIT_CLIENT_TIMEOUT") or 30.0)
        # tasks no node could run fail after this long (Ray's TaskUnschedulableError)
        self.unschedulable_timeout = float(os.environ.get("KIT_UNSCHEDULABLE_TIMEOUT") or 30.0)
        self.stopping = False
        self.started = time.time()
        self.children = children or {}  # pid -> node id: this host's node agents
        self.backlog = False  # the last turn left messages unread (a heartbeat among them?)
        self.probe = Probe(self)  # what the dashboard reads (kit/dashboard/probe.py)
        self.scaling = Scaling(self)  # what an autoscaler reads and does (kit/scaling.py)
        self.handlers = self._handlers()

    def request_stop(self):
        """Stop serving at the next turn (SIGTERM from `kit stop`)."""
        self.stopping = True

    # ---- sending -----------------------------------------------------------------

    def send(self, rid: bytes, kind: int, body, buffers=()):
        """Send to the session ``rid`` (nothing if it is gone)."""
        if rid is None or rid not in self.sessions.by_rid:
            return
        try:
            self.sock.send_multipart(self.sessions.pack(rid, kind, body, buffers))
        except zmq.ZMQError:
            pass

    def to_client(self, cid, kind, body):
        self.send(self.rx_of.get(cid), kind, body)

    def to_node(self, nid, kind, body):
        self.send(self.node_rid.get(nid), kind, body)

    def _send_replies(self):
        replies = self.sessions.replies
        while replies:
            rid, frames = replies.pop()
            try:
                self.sock.send_multipart([rid, *frames])
            except zmq.ZMQError:
                pass

    def forget(self, key):
        """Drop every session of a client or node: its later messages are refused."""
        for rid in self.rids_of.pop(key, ()):
            self.sessions.drop(rid)
        self.rx_of.pop(key, None)
        self.node_rid.pop(key, None)

    def flush(self):
        """Schedule if anything changed, then send the scheduler's actions, batched."""
        sched = self.sched
        if sched._dirty:
            sched.schedule()
        out = sched.out
        if not out:
            return
        sched.out = []
        batches: dict = {"dispatch": {}, "object": {}, "free": {}}
        events = []
        for act in out:
            op = act[0]
            if op == "dispatch":
                spec, fid, deps = act[2]
                blob = sched.functions.get(fid) if fid is not None else None
                batches["dispatch"].setdefault(act[1], []).append((tuple(spec), blob, deps))
            elif op == "object":
                batches["object"].setdefault(act[1], []).append((act[2], act[3]))
            elif op == "free":
                batches["free"].setdefault(act[1], []).append(act[2])
            elif op == "event":
                events.append(act[1])
            else:
                self._send_action(op, act)
        for wid, items in batches["dispatch"].items():
            self.to_client(wid, Kind.TASKS, items)
        for cid, items in batches["object"].items():
            self.to_client(cid, Kind.OBJECTS, items)
        for nid, names in batches["free"].items():
            self.to_node(nid, Kind.NODE_CMD, ("free", names))
        if events:
            seq = self.event_seq
            for e in events:
                seq += 1
                self.events.append((seq, *e))
            self.event_seq = seq
            self.probe.events(events)

    def _send_action(self, op, act):
        """An action sent as it comes (not batched per destination)."""
        if op == "cancel":
            self.to_client(act[1], Kind.CANCEL, (act[2],))
        elif op == "lease":  # the direct path: grants, losses, denials (kit.lease)
            self.to_client(act[1], Kind.LEASE, act[2])
        elif op == "warn":  # a word to a driver, shown as kit's own output
            self.to_client(act[1], Kind.LOG, [(None, "kit", 0, "head", "stderr", act[2])])
        else:  # spawn, kill: node commands (a spawn in a runtime_env: (actor, env))
            self.to_node(act[1], Kind.NODE_CMD, (op, act[2] if len(act) == 3 else act[2:]))

    # ---- receiving ---------------------------------------------------------------

    def handle(self, rid: bytes, frames):
        got = self.sessions.receive(rid, frames)
        if self.sessions.replies:
            self._send_replies()
        if got is None:
            return
        session, kind, body, _ = got
        self.sched.now = time.time()
        if kind == Kind.AUTH:
            self._join(session)
            return
        who = session.who
        role, cid = who[1], who[2]
        allowed = ALLOWED[role]
        if cid in self.client_seen:
            self.client_seen[cid] = self.sched.now
        if kind == Kind.MULTI:
            for k, b in body:
                if k in allowed:
                    self.on_message(rid, cid, k, b)
                else:
                    self.sessions.dropped += 1
        elif kind in allowed:
            self.on_message(rid, cid, kind, body)
        else:
            self.sessions.dropped += 1

    def on_message(self, ident, cid, kind, body):
        handler = self.handlers.get(kind)
        if handler is not None:
            handler(ident, cid, body)

    def _handlers(self) -> dict:
        sched = self.sched
        return {
            Kind.SUBMIT: self._submit,
            Kind.DONE: self._done,
            Kind.REFS: lambda i, cid, body: sched.refs(cid, body),
            Kind.SUBSCRIBE: lambda i, cid, body: sched.subscribe(cid, body),
            Kind.PUT: self._put,
            Kind.FUNCTION: lambda i, cid, body: sched.register_function(*body),
            Kind.BLOCKED: lambda i, cid, body: (
                sched.worker_blocked(cid, *body)
                if type(body) is tuple
                else sched.worker_blocked(cid, body)
            ),
            Kind.LOG: self._log,
            Kind.CANCEL: lambda i, cid, body: sched.cancel(body[0], body[1], recursive=body[2]),
            Kind.ACTOR: lambda i, cid, body: self._actor_op(cid, body),
            Kind.QUERY: lambda i, cid, body: self._query(cid, *body),
            Kind.HEARTBEAT: self._heartbeat,
            Kind.NODE_EVENT: lambda i, cid, body: self._node_event(cid, body),
            Kind.SHUTDOWN: self._goodbye,
            Kind.LEASE: self._lease,
            Kind.RECORDS: lambda i, cid, body: sched.direct_records(cid, body),
            Kind.PUBLISH: self._publish,
        }

    def _submit(self, ident, cid, specs):
        submit, now = self.sched.submit, self.sched.now
        for spec in specs:
            submit(cid, spec, now)

    def _done(self, ident, cid, reports):
        task_done = self.sched.task_done
        for tid, results, started, finished, retry, called in reports:
            task_done(cid, tid, results, started, finished, retry, called)

    def _put(self, ident, cid, objects):
        for oid, payload, contained in objects:
            self.sched.put(cid, oid, payload, contained)

    def _log(self, ident, cid, lines):
        """A worker's output (a driver's: its direct tasks', which it has printed itself)."""
        for driver in self.log_to:
            if driver != cid:
                self.to_client(driver, Kind.LOG, lines)

    def _lease(self, ident, cid, body):
        op = body[0]
        if op == "want":
            self.sched.want_lease(cid, body[1], body[2], body[3])
        elif op == "return":
            self.sched.return_lease(cid, body[1])
        elif op == "cancel":
            self.sched.cancel_leased(cid, body[1], body[2], body[3])
        elif op == "watch":
            self.sched.watch_start(cid, body[1])

    def _publish(self, ident, cid, body):
        req, items = body
        for owner, spec, results in items:
            self.sched.publish(owner, spec, results)
        self.flush()  # their objects exist now: then the worker tells the driver
        self.to_client(cid, Kind.REPLY, (req, None))

    def _heartbeat(self, ident, cid, body):
        if cid in self.node_seen:
            self.node_seen[cid] = self.sched.now
            if isinstance(body, dict):
                self.sched.node_store(cid, body.get("store_used", 0), body.get("spilled", 0))
                if "stats" in body:
                    self.probe.node_stats(cid, body["stats"])

    def _goodbye(self, ident, cid, body):
        """A client disconnects (``body == "cluster"``: and stops the cluster)."""
        self.client_gone(cid, clean=True)
        if body == "cluster":
            self.stopping = True

    def client_gone(self, cid, reason=None, clean=False):
        """A driver or worker left (``clean``: it said goodbye): release what it held and
        forget its sessions."""
        if reason is not None:
            self.to_client(cid, Kind.SHUTDOWN, reason)
        self.client_seen.pop(cid, None)
        if cid in self.roles:
            self.sched.client_gone(cid, clean)
            self.roles.pop(cid, None)
            self.log_to.discard(cid)
        self.worker_node.pop(cid, None)
        self.forget(cid)

    def _join(self, session):
        """A connection proved the token: admit it as who it says it is."""
        who = session.who
        rid = session.rid
        info = who[3] or {}
        if who[0] in ("node", "rx") and (
            info.get("kit") != KIT_VERSION or info.get("python") != PY_VERSION
        ):
            self._refuse(
                rid,
                f"version mismatch: this cluster runs kit {KIT_VERSION} on Python "
                f"{PY_VERSION}, you have kit {info.get('kit')} on Python "
                f"{info.get('python')}; install the same versions on every machine",
            )
            return
        if who[0] == "node":
            self._join_node(rid, who[2], info)
        elif who[0] == "rx":
            self._join_client(rid, who[1], who[2], info)
        elif who[0] == "tx":
            self.rids_of.setdefault(who[2], []).append(rid)
            self.send(rid, Kind.WELCOME, {"cluster": self.cluster_id})
        else:
            self._refuse(rid, f"a head does not serve {who[0]!r} connections")

    def _refuse(self, rid, reason):
        self.send(rid, Kind.REFUSED, (reason,))
        self.sessions.drop(rid)

    def _join_node(self, rid, nid, info):
        sched = self.sched
        if nid in sched.nodes:
            known = self.node_info.get(nid) or {}
            if sched.nodes[nid].alive and (known.get("host"), known.get("pid")) == (
                info.get("host"),
                info.get("pid"),
            ):  # the same agent trying again (its first join was slow to be answered)
                old = self.node_rid.get(nid)
                if old is not None and old != rid:
                    self.sessions.drop(old)
                self.node_rid[nid] = rid
                self.rids_of[nid] = [rid]
                self.node_seen[nid] = time.time()
                self.send(rid, Kind.WELCOME, {"cluster": self.cluster_id})
                return
            why = "was declared dead" if not sched.nodes[nid].alive else "is already joined"
            self._refuse(rid, f"node {nid.hex()} {why}; it must join as a new node")
            return
        self.node_rid[nid] = rid
        self.rids_of[nid] = [rid]
        self.node_info[nid] = info
        self.node_seen[nid] = time.time()
        sched.add_node(
            nid,
            info["resources"],
            {
                "address": info.get("address"),
                "host": info.get("host"),
                "pid": info.get("pid"),
                "store_limit": info.get("store_limit", 0),
                "transfer": info.get("transfer"),
                "tag": info.get("tag"),
            },
        )
        sched.nodes[nid].spawning = info.get("prestart", 0)
        self.send(rid, Kind.WELCOME, {"cluster": self.cluster_id})
        self._answer_node_waiters()

    def _join_client(self, rid, role, cid, info):
        sched = self.sched
        if role not in ("driver", "worker") or cid in self.roles:
            self._refuse(rid, f"client {cid.hex()} cannot join as {role!r}")
            return
        if role == "worker":
            node = sched.nodes.get(info.get("node"))
            if node is None or not node.alive:
                self._refuse(rid, "this worker's node is not part of the cluster (it died)")
                return
            self.worker_node[cid] = node.nid
        self.roles[cid] = role
        self.rx_of[cid] = rid
        self.rids_of.setdefault(cid, []).append(rid)
        sched.add_client(cid)
        if role == "worker":
            sched.add_worker(
                cid, info["node"], info["pid"], info.get("actor"), info.get("direct"),
                info.get("env"),
            )  # fmt: skip
        else:
            self.client_seen[cid] = time.time()
            if info.get("log_to_driver", True):
                self.log_to.add(cid)
        self.send(
            rid,
            Kind.WELCOME,
            {
                "cluster": self.cluster_id,
                # a worker has no use for them, and they cost O(workers): joining N
                # actors cost O(N^2) (1,000 actors: 17.6 s, the 4th 250 twice the 1st)
                "nodes": self._nodes() if role != "worker" else None,
                "local_node": self._local_node(info.get("host")),
            },
        )

    def _tell_nodes_gone(self, gone):
        """Every live node learns that ``gone`` died (its pulls from it fail at once).
        Joins tell nobody: a node's address is looked up when an object is pulled from
        it, so registering N nodes costs O(N) messages, not O(N^2)."""
        for nid, node in self.sched.nodes.items():
            if node.alive:
                self.to_node(nid, Kind.NODE_CMD, ("peer_gone", gone))

    def node_died(self, nid, cause):
        """Declare a node dead and fence it: its agent's and workers' sessions are
        forgotten, so nothing it sends later (a partition healing) is believed."""
        node = self.sched.nodes.get(nid)
        if node is None or not node.alive:
            return
        workers = [w for w, n in self.worker_node.items() if n == nid]
        self.sched.node_died(nid, cause)
        self.probe.node_gone(nid)
        for wid in workers:
            self.client_gone(wid)
        self.forget(nid)
        self._tell_nodes_gone(nid)

    def _local_node(self, host):
        for nid, info in self.node_info.items():
            if info.get("host") == host and self.sched.nodes[nid].alive:
                return {
                    "node_id": nid,
                    "tag": info.get("tag"),
                    "store_limit": info.get("store_limit", 0),
                    "transfer": info.get("transfer"),
                }
        return None

    def _node_event(self, nid, body):
        event, args = body
        self.node_seen[nid] = time.time()
        if event == "worker_exit":
            wid, cause, oom = args[:3]
            actor = args[3] if len(args) > 3 else None
            env = args[4] if len(args) > 4 else None  # the key of its runtime_env
            if wid in self.sched.workers:
                self.sched.worker_died(wid, cause, oom)
            else:  # it died before it joined: its spawn is over
                self.sched.spawn_failed(nid, actor, cause, env)
            self.client_gone(wid)
        elif event == "copied":
            self.sched.add_copy(nid, *args)
        elif event == "bye":
            self.node_died(nid, "was stopped")
        elif event == "stack":
            self.probe.stack_read(*args)

    def _actor_op(self, cid, body):
        op = body[0]
        sched = self.sched
        if op == "kill":  # ("kill", aid[, no_restart[, cause]])
            no_restart = body[2] if len(body) > 2 else True
            if no_restart or not sched.restart_actor(body[1]):
                sched.kill_actor(body[1], body[3] if len(body) > 3 else "killed with kit.kill()")
        elif op == "claim":  # a named actor's creation reserves its name first (one wins)
            _, req, name, ns, aid = body
            cur = sched.names.get((ns, name))
            a = sched.actors.get(cur) if cur is not None else None
            if a is not None and a.state != "DEAD":
                ans = (cur, a.create.spec.opts["handle"])
            elif cur is not None and a is None and cur != aid:
                ans = (cur, None)  # claimed by a creation not here yet
            else:
                sched.names[(ns, name)] = aid
                ans = None
            self.to_client(cid, Kind.REPLY, (req, ans))
        elif op == "get":
            _, req, name, ns = body
            aid = sched.names.get((ns, name))
            a = sched.actors.get(aid) if aid is not None else None
            if a is None or a.state == "DEAD":
                self.to_client(cid, Kind.REPLY, (req, None))
            else:
                self.to_client(cid, Kind.REPLY, (req, (aid, a.create.spec.opts["handle"])))

    def _nodes(self):
        return self.probe.with_stats(self.sched.snapshot())

    def _answer_node_waiters(self):
        alive = sum(1 for n in self.sched.nodes.values() if n.alive)
        keep = []
        for cid, req, count in self.waiting_nodes:
            if alive >= count:
                self.to_client(cid, Kind.REPLY, (req, self._nodes()))
            else:
                keep.append((cid, req, count))
        self.waiting_nodes = keep

    def _query(self, cid, req, what, args):
        self.flush()  # what came before the query (a driver's records) is in its answer
        sched = self.sched
        if what == "nodes":
            ans = self._nodes()
        elif what == "peer":  # where to pull a node's objects from (None: it is gone)
            node = sched.nodes.get(args)
            info = self.node_info.get(args) or {}
            ans = info.get("transfer") if node is not None and node.alive else None
        elif what == "wait_nodes":
            self.waiting_nodes.append((cid, req, args))
            self._answer_node_waiters()
            return
        elif what == "local_node":
            ans = self._local_node(args)
        elif what == "alive":
            ans = {
                nid: bool(n is not None and n.alive)
                for nid, n in ((nid, sched.nodes.get(nid)) for nid in args if nid is not None)
            }
        elif what == "events":
            # Sequence numbers are contiguous: take only what is new, from the right end
            # (skipping the old ones from the left took 0.6 ms with the log full, at
            # every poll of every widget and dashboard)
            new = max(0, min(len(self.events), self.event_seq - (args or 0)))
            fresh = list(itertools.islice(reversed(self.events), new))
            fresh.reverse()
            ans = (self.event_seq, fresh)
        elif what == "status":
            ans = {
                "nodes": self._nodes(),
                "counts": dict(sched.counts),
                "waiting": sched.waiting(),
                "dropped": self.sessions.dropped,
                "tasks_live": len(sched.tasks),
                "scaling": list(self.scaling.notes)[-SCALING_NOTES:],  # (time, text)
                "objects_live": len(sched.objects),
                "cluster": self.cluster_id,
                "uptime": time.time() - self.started,
            }
        elif what == "autoscale":  # demand, drain, notes (kit/scaling.py)
            ans = self.scaling.answer(args)
        elif what == "dashboard":  # workers, actors, drivers, failures after args
            ans = self.probe.answer(args)
        elif what == "stack":  # a worker's Python stack, read by its node's agent
            if self.probe.ask_stack(cid, req, args):
                return  # answered when the agent has read it
            ans = "no such worker (it has ended)"
        elif what == "object_info":
            obj = sched.objects.get(args)
            ans = (
                None
                if obj is None
                else {
                    "holders": len(_members(obj.holders)),
                    "pins": obj.pins,
                    "ready": obj.payload is not None,
                }
            )
        else:
            ans = None
        self.to_client(cid, Kind.REPLY, (req, ans))

    # ---- the loop ----------------------------------------------------------------

    def _reap_children(self):
        from .spawner import exited_children

        for pid, cause in exited_children():
            nid = self.children.pop(pid, None)
            if nid is not None and not self.stopping:
                self.node_died(nid, f"stopped: its agent {cause}")

    def check_nodes(self, now):
        """Once a second: heartbeats out, silent drivers and nodes declared gone."""
        self.sched.retire_idle(now)
        self.sched.check_unschedulable(now, self.unschedulable_timeout)
        for cid in self.client_seen:
            self.to_client(cid, Kind.HEARTBEAT, None)
        beat = {"watched": True} if self.probe.watched() else None  # send figures
        for nid in list(self.node_rid):
            self.to_node(nid, Kind.HEARTBEAT, beat)
        for cid, seen in list(self.client_seen.items()):
            if now - seen > self.client_timeout and self.roles.get(cid) == "driver":
                # A driver that vanished without a goodbye: release what it held.
                self.client_gone(
                    cid,
                    f"the head heard nothing from this driver for {self.client_timeout:.0f} "
                    f"s and released what it held; call kit.init() again",
                )
        pid_of = {nid: pid for pid, nid in self.children.items()}
        for nid, seen in list(self.node_seen.items()):
            node = self.sched.nodes.get(nid)
            if node is None or not node.alive:
                continue
            silent = now - seen
            if silent <= self.node_timeout:
                continue
            if silent <= process.BUSY_TIMEOUT and (
                self.backlog or process.state(pid_of.get(nid)) == process.RUNNING
            ):
                continue  # busy, not dead: unread messages here, or an agent still running
            self.node_died(nid, f"stopped answering for {silent:.0f} s")

    def serve(self):
        sock = self.sock
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        if self.watch_fd is not None:
            poller.register(self.watch_fd, zmq.POLLIN)
        wake = None
        if self.children:
            # A node agent of this host that exits is dead at once: no need to wait
            # for missed heartbeats. SIGCHLD wakes the poll through a pipe.
            wake, wake_w = os.pipe()
            os.set_blocking(wake, False)
            os.set_blocking(wake_w, False)
            signal.set_wakeup_fd(wake_w)
            signal.signal(signal.SIGCHLD, lambda *a: None)
            poller.register(wake, zmq.POLLIN)
        last_check = time.time()
        while not self.stopping:
            ready = dict(poller.poll(500))
            if self.watch_fd is not None and self.watch_fd in ready:
                if not _pipe_alive(self.watch_fd):
                    break
            if wake is not None and wake in ready:
                try:
                    os.read(wake, 4096)
                except BlockingIOError:
                    pass
                self._reap_children()
                self.flush()
            if sock in ready:
                self.backlog = True
                for _ in range(DRAIN):
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK, copy=True)
                    except zmq.Again:
                        self.backlog = False
                        break
                    try:
                        self.handle(frames[0], frames[1:])
                    except Exception as e:  # a bad message never stops the head
                        self.sessions.dropped += 1
                        _log(f"head: dropped a message that failed: {e!r}")
                self.flush()
            now = time.time()
            if now - last_check > BEAT:
                last_check = now
                self.check_nodes(now)
                self.flush()
        self.stop()

    def stop(self):
        for nid, node in self.sched.nodes.items():
            if node.alive:
                self.to_node(nid, Kind.SHUTDOWN, None)
        # Give node agents a moment to stop their workers and unlink shared memory.
        deadline = time.time() + 2.0
        alive = {nid for nid, n in self.sched.nodes.items() if n.alive}
        while alive and time.time() < deadline:
            if self.sock.poll(100):
                frames = self.sock.recv_multipart()
                got = self.sessions.receive(frames[0], frames[1:])
                if got and got[1] == Kind.NODE_EVENT and got[2][0] == "bye":
                    alive.discard(got[0].who[2])
        for cid in list(self.roles):
            self.to_client(cid, Kind.SHUTDOWN, None)
        self.sock.close(0)
        self.ctx.term()


def _pipe_alive(fd) -> bool:
    try:
        r, _, _ = select.select([fd], [], [], 0)
        if not r:
            return True
        return os.read(fd, 4096) != b""
    except OSError:
        return False


def _log(text):
    try:
        os.write(2, (text + "\n").encode())
    except OSError:
        pass
