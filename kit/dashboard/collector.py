"""The dashboard's reader: a driver connection to the head, polled while someone watches.

    Collector.poll(now):
      client.query("nodes")                the per-node counts the notebook monitor shows
      client.query("events", last)         the task events the widgets read, folded
                                           into model.Model
      client.query("dashboard", since)     workers, actors, drivers, new failures
                                           (kit/dashboard/probe.py, in the head)
      client.query("status"), once a second: tasks waiting for a node
    (each node's machine and process figures come with "nodes": its agent samples
    them while a dashboard watches, kit/dashboard/procstats.py)
    client's io thread ── LOG lines ──▶ recent lines per worker (kit.logs.set_sink)

``view()`` turns all of it into JSON-ready sections (ids as hex, nodes by tag);
``rows_since`` and ``bars_since`` give the pages the task rows and task-stream
bars they have not seen. The collector is used from the server's one thread
(the log sink, from the client's io thread, only appends to bounded deques).
"""

from __future__ import annotations

import time
from collections import deque

from .. import logs
from .model import ERROR, NODE, OWNER, TID, WORKER, Model

LOG_LINES = 30  # recent output lines kept per worker
STACK_TIMEOUT = 20.0  # seconds to wait for a worker's stack (py-spy may take 10)
SLOW_EVERY = 1.0  # seconds between status queries and process samples


def hx(ident) -> str | None:
    """An id as hex (None stays None).

    Example:
        >>> hx(b"\\x01\\xff"), hx(None)
        ('01ff', None)
    """
    return ident.hex() if isinstance(ident, (bytes, bytearray)) else ident


class Collector:
    """Reads the cluster through ``client`` (a ``kit.client.Client`` of role "driver").

    Args:
        client: the dashboard's connection to the head (its queries are used).
        host: this machine's host id (``kit.client.host_id()``): nodes with the same
            host are marked local.

    Example:
        >>> c = Collector(client, host_id())  # doctest: +SKIP
        >>> c.poll(time.time()); c.view()["overview"]["totals"]["done"]  # doctest: +SKIP
        0
    """

    def __init__(self, client, host: str):
        self.client = client
        self.host = host
        self.model = Model()
        self.nodes: list = []
        self.extra: dict = {"workers": [], "actors": [], "drivers": [], "url": None}
        self.waiting = 0
        self.failure_seq = 0
        self.last_slow = 0.0
        self.polled = 0.0  # time of the last poll
        self.logs: dict = {}  # (node hex, pid) -> deque of (time, stream, text)
        self.actor_workers: dict = {}  # actor id -> worker ids it ever ran on
        self.actors_seen: dict = {}  # actor id -> its last row
        self.tags: dict = {}  # node id -> tag
        logs.set_sink(self._log)

    def close(self) -> None:
        logs.set_sink(None)

    # ---- reading the head ----------------------------------------------------------

    def poll(self, now: float) -> None:
        """One round of queries (about 1 ms of the head's time)."""
        q = self.client.query
        self.nodes = q("nodes")
        _, events = q("events", self.model.last_event)
        self.model.apply(events, now)
        extra = q("dashboard", self.failure_seq)
        self.extra = extra
        self.failure_seq, failures = extra["failures"]
        for _, tid, _, text in failures:
            self.model.note_error(tid, text)
        for a in extra["actors"]:
            if a["worker"] is not None:
                self.actor_workers.setdefault(a["aid"], set()).add(a["worker"])
        self.tags = {n["node_id"]: n.get("tag") or hx(n["node_id"])[:8] for n in self.nodes}
        if now - self.last_slow >= SLOW_EVERY:
            self.last_slow = now
            self.waiting = q("status")["waiting"]
        self.polled = now

    def stack(self, wid: bytes) -> str:
        """Worker ``wid``'s Python stack, read by its node's agent (any thread may ask)."""
        try:
            return self.client.query("stack", wid, timeout=STACK_TIMEOUT)
        except Exception as e:  # the head did not answer: say so on the page
            return f"could not read the stack: {e}"

    def _log(self, line) -> None:
        tid, label, pid, node, stream, text = line
        kept = self.logs.get((node, pid))
        if kept is None:
            kept = self.logs[(node, pid)] = deque(maxlen=LOG_LINES)
        for one in text.splitlines()[-LOG_LINES:]:
            kept.append((time.time(), stream, f"({label}) {one}"))

    # ---- views -----------------------------------------------------------------------

    def view(self) -> dict:
        """Every section of the page but the task rows and bars, JSON-ready."""
        return {
            "overview": self.overview(),
            "functions": self.model.function_rows(),
            "workers": self.workers(),
            "actors": self.actors(),
            "drivers": self.drivers(),
        }

    def overview(self) -> dict:
        rows = []
        tot = {k: 0 for k in ("cpu_busy", "cpu_total", "queued", "running", "done", "failed")}
        tot.update(store_used=0, store_limit=0, alive=0, nodes=0)
        for n in self.nodes:
            total = n["resources"].get("CPU", 0.0)
            busy = total - n["available"].get("CPU", 0.0)
            local = n.get("host") == self.host
            row = {
                "id": hx(n["node_id"]),
                "tag": n.get("tag") or hx(n["node_id"])[:8],
                "address": n.get("address"),
                "alive": n["alive"],
                "cpu_busy": busy,
                "cpu_total": total,
                "workers": n.get("workers", 0),
                "queued": n["queued"],
                "running": n["running"],
                "done": n["done"],
                "failed": n["failed"],
                "store_used": n["store_used"],
                "store_limit": n.get("store_limit", 0),
                "local": local,
                "machine": (n.get("stats") or {}).get("machine"),
                "procs": (n.get("stats") or {}).get("kit"),
            }
            rows.append(row)
            tot["nodes"] += 1
            tot["alive"] += 1 if n["alive"] else 0
            for k in ("cpu_busy", "cpu_total", "queued", "running", "done", "failed"):
                tot[k] += row[k] if n["alive"] or k in ("done", "failed") else 0
            tot["store_used"] += row["store_used"]
            tot["store_limit"] += row["store_limit"]
        rows.sort(key=lambda r: _natural(r["tag"]))
        m = self.model.totals
        return {
            "nodes": rows,
            "totals": tot,
            "waiting": self.waiting,
            "tasks": dict(m),
            "cluster": self.extra.get("cluster"),
            "uptime": self.extra.get("uptime", 0.0),
            # the autoscaler's last decisions, newest first (events of state "cluster")
            "scaling": [[t, text] for t, text in reversed(list(self.model.cluster)[-12:])],
        }

    def workers(self) -> list:
        current = self.model.current
        calls = self.model.calls
        local = {n["node_id"] for n in self.nodes if n.get("host") == self.host}
        figures = {}  # (node id, pid) -> [cpu %, rss]
        for n in self.nodes:
            for pid, f in ((n.get("stats") or {}).get("pids") or {}).items():
                figures[(n["node_id"], pid)] = f
        out = []
        for w in self.extra["workers"]:
            cur = current.get(w["wid"])
            if cur is not None:
                task = {"id": hx(cur[0]), "label": cur[1], "since": cur[2]}
            elif w["tasks"]:
                task = {"id": hx(w["tasks"][0][0]), "label": w["tasks"][0][1], "since": None}
            else:
                task = None
            node_hex = hx(w["node"])
            lines = self.logs.get((node_hex, w["pid"]), ())
            out.append(
                {
                    "id": hx(w["wid"]),
                    "node": self.tags.get(w["node"], node_hex and node_hex[:8]),
                    "pid": w["pid"],
                    "state": _worker_state(w, task),
                    "actor": hx(w["actor"]),
                    "lease": hx(w["lease"]),
                    "task": task,
                    "queued": w["queued"],
                    "calls": calls.get(w["wid"], 0),
                    "logs": [list(x) for x in lines],
                    "local": w["node"] in local,
                    "cpu_rss": figures.get((w["node"], w["pid"])),
                }
            )
        out.sort(key=lambda r: (_natural(r["node"] or ""), r["pid"] or 0))
        return out

    def actors(self) -> list:
        calls = self.model.calls
        live = set()
        for a in self.extra["actors"]:
            done = sum(calls.get(w, 0) for w in self.actor_workers.get(a["aid"], ()))
            row = {
                "id": hx(a["aid"]),
                "class": a["class"],
                "name": a["name"],
                "state": a["state"],
                "node": self.tags.get(a["node"], hx(a["node"])),
                "pid": a["pid"],
                "restarts": a["restarts"],
                "max_restarts": a["max_restarts"],
                "calls": max(0, done - 1),  # its workers' tasks less its __init__
                "queued": a["queued"] + a["inflight"],
                "cause": a["cause"],
                "owner": hx(a["owner"]),
            }
            self.actors_seen[a["aid"]] = row
            live.add(a["aid"])
        for aid, row in self.actors_seen.items():
            if aid not in live and row["state"] != "DEAD":
                row.update(state="DEAD", cause=row["cause"] or "gone from the head")
        return sorted(self.actors_seen.values(), key=lambda r: (r["state"] == "DEAD", r["class"]))

    def drivers(self) -> list:
        owners = self.model.owners
        out = []
        for d in self.extra["drivers"]:
            if d["dashboard"]:
                continue
            work = owners.get(d["cid"], {})
            out.append(
                {
                    "id": hx(d["cid"]),
                    "pid": d["pid"],
                    "host": d["host"],
                    "name": d["name"],
                    "since": d["since"],
                    "leases": d["leases"],
                    "submitted": sum(c[0] for c in work.values()),
                    "done": sum(c[1] for c in work.values()),
                    "failed": sum(c[2] for c in work.values()),
                    "functions": sorted([label, *c] for label, c in work.items()),
                }
            )
        return out

    def rows_since(self, seq: int) -> list:
        """Task rows changed after ``seq``, JSON-ready: ``[id, label, state, node tag,
        worker, submitted, started, finished, owner, seq, error]``."""
        tags = self.tags
        out = []
        for r in self.model.rows_since(seq):
            row = list(r)
            row[TID] = hx(r[TID])
            row[OWNER] = hx(r[OWNER])
            row[WORKER] = hx(r[WORKER])
            row[NODE] = tags.get(r[NODE], hx(r[NODE]))
            row[ERROR] = r[ERROR]
            out.append(row)
        return out

    def bars_since(self, seq: int) -> list:
        """Task-stream bars after ``seq``: ``[seq, start, end, label, worker, node tag, state]``."""
        tags = self.tags
        return [
            [s, a, b, label, hx(w), tags.get(n, hx(n)), st]
            for s, a, b, label, w, n, st in self.model.bars_since(seq)
        ]


def _worker_state(w, task) -> str:
    """What a worker does, for people: a leased worker running nothing is "leased" (the
    head counts it busy: its driver may send it a task at any moment).

    Example:
        >>> _worker_state({"blocked": False, "lease": b"d", "state": "BUSY"}, None)
        'leased'
    """
    if w["blocked"]:
        return "blocked"
    if w["lease"] is not None and task is None:
        return "leased"
    return w["state"].lower()


def _natural(text):
    import re

    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text or "")]
