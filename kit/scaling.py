"""The head's side of autoscaling: what waits for a slot, which nodes could go, and the
autoscaler's decisions as events. Answers the ``autoscale`` query in the head's loop.

    autoscaler (a driver) ── QUERY autoscale ("demand",) ──▶ head: demand(sched)
                          ── ("drain", node, on) ─────────▶ sched.drain: no new work there
                          ── ("holds", node) ─────────────▶ live actors, sole object copies
                          ── ("note", text, node) ────────▶ an event of state "cluster" in
                                                            the event log (widgets, dashboard,
                                                            kit.events) and the notes kept
    kit status ─────────── ("notes",) ────────────────────▶ the last decisions

What the head knows of waiting work: tasks on its path ready for a slot (``sched.ready``,
oldest first, each with its submit time), workers drivers asked for on the direct path
(``sched.lease_wants``: tasks queued in a driver for a lease; the autoscaler times how
long each ask waits), and requests no live node could ever run (``sched.unschedulable``).
Each answer costs O(nodes + asks), not O(tasks): the oldest ready task is the first
of the queue; only ``holds`` walks the objects, for one node about to be removed.
"""

from __future__ import annotations

from collections import deque

from .records import SHARED, TaskEvent

NOTES = 200  # decisions kept for kit status


def demand(sched, now: float) -> dict:
    """What waits and what each node runs (see the module docstring). Pure.

    Returns:
        ``{"ready": n, "oldest": seconds, "wants": [(driver, req, res, count)],
        "infeasible": [(res, since)], "nodes": [{"node_id", "tag", "alive", "resources",
        "busy", "draining"}]}``; a node is busy while a worker of it runs or queues a
        task (or an actor's call) or is leased to a driver. An idle actor does not make
        its node busy: the removal asks ``holds`` and keeps the node, saying why.
    """
    from .scheduler import READY

    oldest = 0.0
    for tid in sched.ready:
        t = sched.tasks.get(tid)
        if t is not None and t.state == READY:
            oldest = max(0.0, now - t.submitted)
            break
    infeasible = []
    for shape, (since, key) in sched.unschedulable.items():
        rec = sched.actors.get(key) if shape[0] == "actor" else sched.tasks.get(key)
        if rec is not None:
            infeasible.append((dict(rec.res), since))
    busy = set()
    for w in sched.workers.values():
        if w.tasks or w.direct or w.lease is not None:
            busy.add(w.node)
    nodes = [
        {
            "node_id": n.nid,
            "tag": n.info.get("tag"),
            "alive": n.alive,
            "resources": dict(n.total),
            "busy": n.nid in busy,
            "draining": n.nid in sched.draining,
        }
        for n in sched.nodes.values()
        if n.alive
    ]
    return {
        "ready": len(sched.ready),
        "oldest": oldest,
        "wants": [(w[0], w[1], dict(w[2]), w[3]) for w in sched.lease_wants],
        "infeasible": infeasible,
        "nodes": nodes,
    }


def holds(sched, nid) -> dict:
    """What keeps node ``nid`` from being removed: live actors there, objects whose only
    copy it holds, tasks running there (O(objects): asked once per removal)."""
    from .scheduler import A_DEAD

    actors = sum(1 for a in sched.actors.values() if a.node == nid and a.state != A_DEAD)
    alive = {x for x, n in sched.nodes.items() if n.alive and x != nid}
    sole = 0
    for obj in sched.objects.values():
        p = obj.payload
        if p is not None and p[0] == SHARED and p[1] == nid:
            if not any(c[0] in alive for c in sched.copies.get(p[2], ())):
                sole += 1
    running = sum(
        1
        for w in sched.workers.values()
        if w.node == nid and (w.tasks or w.direct or w.lease is not None)
    )
    return {"actors": actors, "sole_copies": sole, "running": running}


class Scaling:
    """The ``autoscale`` query's answers, in the head's loop (see the module docstring)."""

    def __init__(self, head):
        self.head = head
        self.notes: deque = deque(maxlen=NOTES)  # (time, text)

    def answer(self, args):
        sched = self.head.sched
        op = args[0] if args else None
        if op == "demand":
            sched.may_grow = True  # unschedulable work waits for the autoscaler's nodes
            return demand(sched, sched.now)
        if op == "drain":
            sched.drain(args[1], bool(args[2]))
            return True
        if op == "holds":
            return holds(sched, args[1])
        if op == "note":
            text, nid = args[1], args[2]
            self.notes.append((sched.now, text))
            sched.out.append(("event", TaskEvent(b"", text, "cluster", sched.now, None, nid)))
            return True
        if op == "notes":
            return list(self.notes)
        return None
