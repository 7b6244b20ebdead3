"""The head's side of the dashboard: what it reads that ``nodes`` and ``events`` do not say.

    Head.flush ── new task events ──▶ Probe.events: a failed task's error, kept now
                                       (its object may be freed a moment later)
    Head._query("dashboard", since) ──▶ Probe.answer: workers, actors, drivers,
                                       the failures kept after ``since``, the URL
    agents' heartbeats (while watched) ──▶ Probe.stats: machine and process figures,
                                       added to each node in ``nodes``
    Head._query("stack", worker) ──▶ Probe.ask_stack ── NODE_CMD ──▶ the worker's agent
                                       ── NODE_EVENT stack ──▶ Probe.stack_read ──▶ REPLY

Runs inside the head's loop, so it only reads the scheduler's state and does
little: one pass over workers and actors per query (the dashboard asks a few
times a second), one check per task event. Nothing here changes anything.
"""

from __future__ import annotations

import itertools
import time
from collections import deque

from ..protocol import Kind
from ..records import ERROR, object_id
from ..serialization import error_text

WATCHED = 5.0  # seconds after a dashboard's query that agents keep sending figures
FAILURES = 1000  # failed tasks' errors kept for the dashboard
ACTORS = 2000  # actors listed at most (live ones first)


class Probe:
    """Reads the head's state for the dashboard (see the module docstring).

    Example:
        >>> class FakeHead: pass
        >>> p = Probe(FakeHead())
        >>> p.url is None, p.failure_seq
        (True, 0)
    """

    def __init__(self, head):
        self.head = head
        self.url = None  # the dashboard's address (kit/boot.py sets it), or None: none runs
        self.failures: deque = deque(maxlen=FAILURES)  # (seq, task id, label, text)
        self.failure_seq = 0
        self.watched_until = 0.0  # a dashboard asked lately: agents send their figures
        self.stats: dict = {}  # node id -> its agent's last figures (procstats.Stats)
        self.stack_keys = itertools.count()
        self.stack_asks: dict = {}  # key -> (driver, req, node id): stacks being read

    # ---- machine figures and stacks: read by each node's agent -------------------------

    def watched(self) -> bool:
        """A dashboard asked within WATCHED s (the head's heartbeats tell the agents)."""
        return time.monotonic() < self.watched_until

    def node_stats(self, nid, stats) -> None:
        self.stats[nid] = stats

    def with_stats(self, nodes: list) -> list:
        """``nodes`` (the scheduler's snapshot) with each alive node's last figures."""
        if self.stats:
            for n in nodes:
                n["stats"] = self.stats.get(n["node_id"]) if n["alive"] else None
        return nodes

    def ask_stack(self, cid, req, wid) -> bool:
        """Ask the agent of worker ``wid`` for its stack; False if there is no such worker
        (the answer comes with ``stack_read``)."""
        w = self.head.sched.workers.get(wid)
        if w is None or w.pid is None:
            return False
        key = next(self.stack_keys)
        self.stack_asks[key] = (cid, req, w.node)
        self.head.to_node(w.node, Kind.NODE_CMD, ("stack", (key, w.pid)))
        return True

    def stack_read(self, key, text) -> None:
        ask = self.stack_asks.pop(key, None)
        if ask is not None:
            self.head.to_client(ask[0], Kind.REPLY, (ask[1], text))

    def node_gone(self, nid) -> None:
        """A node died: its figures go, its pending stacks are answered."""
        self.stats.pop(nid, None)
        for key, (_, _, where) in list(self.stack_asks.items()):
            if where == nid:
                self.stack_read(key, "the worker's node died before its stack was read")

    def events(self, events) -> None:
        """Called with the task events of one turn: keep the error of each failed task."""
        for e in events:
            if e[2] == "failed":
                self._keep(e)

    def _keep(self, e) -> None:
        sched = self.head.sched
        text = sched.direct_errors.pop(e[0], None)  # a direct task's: its driver sent it
        if text is None:
            obj = sched.objects.get(object_id(e[0], 0))
            payload = obj.payload if obj is not None else None
            if payload is None or payload[0] != ERROR:
                return
            text = error_text(payload)
        self.failure_seq += 1
        self.failures.append((self.failure_seq, e[0], e[1], text))

    def answer(self, since) -> dict:
        """The dashboard query's answer: workers, actors, drivers, failures after ``since``."""
        head = self.head
        self.watched_until = time.monotonic() + WATCHED
        since = since or 0
        new = max(0, min(len(self.failures), self.failure_seq - since))
        failures = list(self.failures)[len(self.failures) - new :] if new else []
        return {
            "workers": self._workers(),
            "actors": self._actors(),
            "drivers": self._drivers(),
            "failures": (self.failure_seq, failures),
            "url": self.url,
            "cluster": head.cluster_id,
            "uptime": time.time() - head.started,
        }

    def _workers(self) -> list:
        sched = self.head.sched
        tasks = sched.tasks
        out = []
        for w in sched.workers.values():
            running = []
            for tid in w.tasks[:3]:
                t = tasks.get(tid)
                running.append((tid, t.label if t is not None else "?"))
            out.append(
                {
                    "wid": w.wid,
                    "node": w.node,
                    "pid": w.pid,
                    "state": w.state,
                    "actor": w.actor,
                    "lease": w.lease,
                    "blocked": w.blocked,
                    "tasks": running,
                    "queued": max(0, len(w.tasks) - 1),
                    "direct": w.direct,
                }
            )
        return out

    def _actors(self) -> list:
        sched = self.head.sched
        actors = sorted(sched.actors.values(), key=lambda a: a.state == "DEAD")[:ACTORS]
        out = []
        for a in actors:
            w = sched.workers.get(a.worker) if a.worker is not None else None
            opts = a.create.spec.opts or {}
            max_restarts = opts.get("max_restarts", 0)
            label = a.create.label
            out.append(
                {
                    "aid": a.aid,
                    "class": label[: -len(".__init__")] if label.endswith(".__init__") else label,
                    "name": a.name,
                    "state": a.state,
                    "node": a.node if a.node is not None else (w.node if w else None),
                    "worker": a.worker,
                    "pid": w.pid if w is not None else None,
                    "restarts": max(0, max_restarts - a.restarts) if max_restarts >= 0 else None,
                    "max_restarts": max_restarts,
                    "queued": len(a.queue),
                    "inflight": len(a.inflight),
                    "cause": a.cause,
                    "owner": a.owner,
                }
            )
        return out

    def _drivers(self) -> list:
        head = self.head
        by_rid = head.sessions.by_rid
        leases = head.sched.leases
        out = []
        for cid, role in head.roles.items():
            if role != "driver":
                continue
            s = by_rid.get(head.rx_of.get(cid))
            info = (s.who[3] if s is not None else None) or {}
            out.append(
                {
                    "cid": cid,
                    "pid": info.get("pid"),
                    "host": str(info.get("host", "")).split(":")[0],
                    "name": info.get("name") or "",
                    "dashboard": bool(info.get("dashboard")),
                    "since": getattr(s, "since", None) if s is not None else None,
                    "leases": len(leases.get(cid, ())),
                }
            )
        return out
