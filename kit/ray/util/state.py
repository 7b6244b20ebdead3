"""``ray.util.state``: list and summarize tasks, actors, nodes, workers and objects.

    list_tasks / summarize_tasks ── kit.events(0) folded by the dashboard's Model
    list_actors / list_workers   ── the head's "dashboard" query (kit/dashboard/probe.py)
    list_nodes                   ── kit.nodes()
    list_objects                 ── this driver's refs, each looked up with "object_info"

The same data the monitor widget and the dashboard show, in Ray's shapes: dicts with
Ray's keys and states (``RUNNING``, ``FINISHED``, ``ALIVE``...). ``filters`` take
``(key, "=" | "!=", value)`` tuples; ``limit`` caps the rows (100 by default, as Ray).
``list_objects`` lists the objects this driver holds refs to (Ray lists the cluster's).

Example:
    >>> from kit.ray.util.state import list_tasks
    >>> list_tasks(filters=[("state", "=", "RUNNING")])  # doctest: +SKIP
    []
"""

from __future__ import annotations

from kit import api

from ...dashboard.model import (
    FINISHED,
    LABEL,
    NODE,
    STARTED,
    STATE,
    SUBMITTED,
    TID,
    WORKER,
    Model,
)

TASK_STATES = {
    "queued": "PENDING_NODE_ASSIGNMENT",
    "running": "RUNNING",
    "finished": "FINISHED",
    "failed": "FAILED",
    "cancelled": "FAILED",
}
ACTOR_STATES = {
    "PENDING": "PENDING_CREATION",
    "ALIVE": "ALIVE",
    "RESTARTING": "RESTARTING",
    "DEAD": "DEAD",
}
DEFAULT_LIMIT = 100


def _hex(b):
    return b.hex() if isinstance(b, (bytes, bytearray)) else b


def _task_type(label: str) -> str:
    if label.endswith(".__init__"):
        return "ACTOR_CREATION_TASK"
    return "ACTOR_TASK" if "." in label else "NORMAL_TASK"


def _keep(rows, filters, limit):
    for key, op, value in filters or ():
        if op not in ("=", "!="):
            raise ValueError(f"filter {(key, op, value)!r}: kit takes '=' and '!=' only")
        same = op == "="
        rows = [r for r in rows if (str(r.get(key)) == str(value)) == same]
    return rows[: limit if limit is not None else DEFAULT_LIMIT]


def _tasks() -> list:
    model = Model(keep=1_000_000)
    raw = api._current_client().query("events", 0)[1]
    model.apply(raw, now=0.0)
    out = []
    for row in model.tasks.values():
        label = row[LABEL]
        out.append(
            {
                "task_id": _hex(row[TID]),
                "name": label,
                "func_or_class_name": label,
                "state": TASK_STATES.get(row[STATE], row[STATE].upper()),
                "type": _task_type(label),
                "node_id": _hex(row[NODE]),
                "worker_id": _hex(row[WORKER]),
                "creation_time_ms": _ms(row[SUBMITTED]),
                "start_time_ms": _ms(row[STARTED]),
                "end_time_ms": _ms(row[FINISHED]),
                "error_type": "TASK_CANCELLED" if row[STATE] == "cancelled" else None,
            }
        )
    return out


def _ms(t):
    return None if t is None else int(t * 1000)


def list_tasks(filters=None, limit=None, detail=False, **_ignored) -> list:
    """The cluster's recent tasks (the head keeps the last 100,000 events).

    Example:
        >>> from kit.ray.util.state import list_tasks
        >>> list_tasks(filters=[("func_or_class_name", "=", "f")])  # doctest: +SKIP
    """
    return _keep(_tasks(), filters, limit)


def _dashboard() -> dict:
    return api._current_client().query("dashboard", 0)


def list_actors(filters=None, limit=None, detail=False, **_ignored) -> list:
    """The cluster's actors (live ones first, then the last dead ones).

    Example:
        >>> from kit.ray.util.state import list_actors
        >>> list_actors(filters=[("state", "=", "ALIVE")])  # doctest: +SKIP
    """
    rows = [
        {
            "actor_id": _hex(a["aid"]),
            "class_name": a["class"],
            "name": a["name"] or "",
            "ray_namespace": a.get("namespace"),
            "state": ACTOR_STATES.get(a["state"], a["state"]),
            "node_id": _hex(a["node"]),
            "pid": a["pid"],
            "num_restarts": (a["max_restarts"] - a["restarts"]) if a["restarts"] else 0,
            "death_cause": a["cause"] or None,
        }
        for a in _dashboard()["actors"]
    ]
    return _keep(rows, filters, limit)


def list_workers(filters=None, limit=None, detail=False, **_ignored) -> list:
    """The cluster's worker processes."""
    rows = [
        {
            "worker_id": _hex(w["wid"]),
            "node_id": _hex(w["node"]),
            "pid": w["pid"],
            "is_alive": w["state"] != "DEAD",
            "worker_type": "WORKER",
            "actor_id": _hex(w["actor"]),
        }
        for w in _dashboard()["workers"]
    ]
    return _keep(rows, filters, limit)


def list_nodes(filters=None, limit=None, detail=False, **_ignored) -> list:
    """The cluster's nodes."""
    rows = [
        {
            "node_id": n["NodeID"],
            "state": "ALIVE" if n["Alive"] else "DEAD",
            "node_ip": (n.get("address") or "127.0.0.1").replace("tcp://", "").split(":")[0],
            "node_name": n.get("tag"),
            "resources_total": n["Resources"],
            "is_head_node": n.get("tag") == "n0",
        }
        for n in api.nodes()
    ]
    return _keep(rows, filters, limit)


def list_objects(filters=None, limit=None, detail=False, **_ignored) -> list:
    """The objects this driver holds refs to, with the head's view of each."""
    c = api._current_client()
    rows = []
    for oid in list(c.refs)[: limit if limit is not None else DEFAULT_LIMIT]:
        info = c.query("object_info", oid)
        if info is None:
            continue
        rows.append(
            {
                "object_id": oid.hex(),
                "reference_type": "LOCAL_REFERENCE",
                "task_status": "FINISHED" if info["ready"] else "PENDING",
                "holders": info["holders"],
                "pins": info["pins"],
            }
        )
    return _keep(rows, filters, limit)


def _summary(rows, key, state_key="state") -> dict:
    out: dict = {}
    for r in rows:
        entry = out.setdefault(r[key], {"state_counts": {}})
        counts = entry["state_counts"]
        counts[r[state_key]] = counts.get(r[state_key], 0) + 1
    return out


def summarize_tasks(**_ignored) -> dict:
    """Task counts per function and state: ``{"cluster": {"summary": {name: ...}}}``."""
    return {"cluster": {"summary": _summary(_tasks(), "func_or_class_name")}}


def summarize_actors(**_ignored) -> dict:
    """Actor counts per class and state."""
    return {"cluster": {"summary": _summary(list_actors(limit=10**9), "class_name")}}


def _one(rows_of, key, value):
    rows = rows_of(filters=[(key, "=", value)], limit=1)
    return rows[0] if rows else None


def get_actor(actor_id: str):
    """One actor's row by id (hex), or None."""
    return _one(list_actors, "actor_id", actor_id)


def get_task(task_id: str):
    """One task's row by id (hex), or None."""
    return _one(list_tasks, "task_id", task_id)


def get_node(node_id: str):
    """One node's row by id (hex), or None."""
    return _one(list_nodes, "node_id", node_id)


def get_worker(worker_id: str):
    """One worker's row by id (hex), or None."""
    return _one(list_workers, "worker_id", worker_id)


def summarize_objects(**_ignored) -> dict:
    """How many objects this driver holds refs to, ready or pending."""
    return {
        "cluster": {"summary": _summary(list_objects(limit=10**9), "reference_type", "task_status")}
    }


__all__ = [
    "get_actor",
    "get_node",
    "get_task",
    "get_worker",
    "list_actors",
    "list_nodes",
    "list_objects",
    "list_tasks",
    "list_workers",
    "summarize_actors",
    "summarize_objects",
    "summarize_tasks",
]
