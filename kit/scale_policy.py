"""The autoscaler's one policy: when to add nodes and which to remove. Pure.

    demand (kit/scaling.py) + what the provider started ──▶ Policy.decide(now) ──▶
        [Add(count, why)]       tasks waited for a slot longer than ``wait`` (on the head's
                                path, or as a driver's ask for workers), or need resources
                                no live node has but a new one would; or below min_nodes
        [Remove(node, why)]     a node the autoscaler added, idle ``idle_timeout`` seconds,
                                while nothing waits, down to ``min_nodes``

Nodes count whole: every live node (the head's own included) and every one started and
not yet joined, within ``[min_nodes, max_nodes]``. Only nodes the provider added are
removed; before that the autoscaler drains the node and asks what it holds (live actors,
the only copy of a live object): a node that holds any stays (``kit/autoscaler.py``).
Times come in as arguments (``now``), so the policy is tested without a cluster.

Example:
    >>> p = Policy(min_nodes=1, max_nodes=3, idle_timeout=10, wait=1, node_cpus=2)
    >>> d = {"ready": 0, "oldest": 0.0, "wants": [(b"d", 1, {"CPU": 1}, 5)],
    ...      "infeasible": [], "nodes": [{"node_id": b"n1", "busy": True, "tag": "h"}]}
    >>> p.decide(d, {}, now=100.0)
    []
    >>> p.decide(d, {}, now=101.5)
    [Add(nodes=2, why='5 tasks waiting 1.5 s')]
"""

from __future__ import annotations

import math
from typing import NamedTuple


class Add(NamedTuple):
    nodes: int  # how many to add
    why: str


class Remove(NamedTuple):
    node: bytes  # node id
    why: str


def _fits(req: dict, have: dict) -> bool:
    return all(have.get(k, 0.0) >= v - 1e-9 for k, v in req.items() if v)


class Policy:
    """Add under load, remove when idle (see the module docstring).

    Args:
        min_nodes, max_nodes: bounds on live nodes plus nodes starting.
        idle_timeout: seconds an added node must be idle before it is removed.
        wait: seconds work may wait for a slot before nodes are added.
        node_cpus: CPUs of a node the provider adds (how many tasks it takes).
        node_resources: the other resources of such a node.
    """

    def __init__(self, min_nodes, max_nodes, idle_timeout, wait=1.0, node_cpus=1,
                 node_resources=None):  # fmt: skip
        self.min_nodes = min_nodes
        self.max_nodes = max_nodes
        self.idle_timeout = idle_timeout
        self.wait = wait
        self.node = {"CPU": float(node_cpus or 1), **(node_resources or {})}
        self.first_seen: dict = {}  # (driver, request) -> when its ask was first seen
        self.idle_since: dict = {}  # node id -> since when it has been idle

    def waiting(self, demand, now):
        """(tasks waiting for a slot, the longest wait in seconds)."""
        seen = {}
        for driver, req, _res, _count in demand["wants"]:
            seen[(driver, req)] = self.first_seen.get((driver, req), now)
        self.first_seen = seen
        n = demand["ready"] + sum(w[3] for w in demand["wants"])
        longest = max([demand["oldest"], *(now - t for t in seen.values())])
        return n, longest

    def decide(self, demand, added: dict, now: float) -> list:
        """Decisions for this moment.

        Args:
            demand: the head's answer (``kit.scaling.demand``).
            added: the nodes the provider started: ``{tag: node id or None while starting}``.
            now: the time.
        """
        nodes = demand["nodes"]
        starting = sum(1 for nid in added.values() if nid is None)
        total = len(nodes) + starting
        n, longest = self.waiting(demand, now)
        if total < self.min_nodes:
            return [Add(self.min_nodes - total, f"below min_nodes ({total} < {self.min_nodes})")]
        room = self.max_nodes - total
        if n and longest >= self.wait and room > 0:
            want = math.ceil(n / max(1.0, self.node["CPU"])) - starting
            if want > 0:
                return [Add(min(room, want), f"{n} tasks waiting {longest:.1f} s")]
        fit = [r for r, since in demand["infeasible"] if _fits(r, self.node)]
        if fit and room > 0 and not starting:
            res = ", ".join(f"{v:g} {k}" for k, v in sorted(fit[0].items()))
            return [Add(1, f"work needs {res}, which no live node has")]
        return self._idle(nodes, added, now, n, total)

    def _idle(self, nodes, added, now, waiting, total) -> list:
        mine = {nid for nid in added.values() if nid is not None}
        out: list = []
        for node in nodes:
            nid = node["node_id"]
            if node["busy"] or waiting:
                self.idle_since.pop(nid, None)
                continue
            since = self.idle_since.setdefault(nid, now)
            if nid not in mine or total - len(out) <= self.min_nodes:
                continue
            if now - since >= self.idle_timeout:
                out.append(Remove(nid, f"idle {now - since:.1f} s"))
        return out

    def refused(self, nid, now) -> None:
        """A removal was refused (the node holds an actor or an object's only copy): it is
        tried again after another ``idle_timeout``."""
        self.idle_since[nid] = now

    def forget(self, nid) -> None:
        self.idle_since.pop(nid, None)


def bounds(value) -> dict:
    """``kit.init(autoscale=...)``'s value as the autoscaler's settings.

    Args:
        value: ``(min_nodes, max_nodes)``, ``"1:4"``, or a dict with ``min_nodes``,
            ``max_nodes`` and optionally ``idle_timeout`` (s, default 30) and ``wait`` (s
            tasks may wait for a slot before nodes are added, default 1).

    Raises:
        ValueError: naming what is wrong.

    Example:
        >>> bounds((1, 4))["max_nodes"], bounds("2:3")["min_nodes"]
        (4, 2)
        >>> bounds((3, 2))
        Traceback (most recent call last):
        ...
        ValueError: autoscale=(3, 2): min_nodes must be at least 1 and at most max_nodes
    """
    out = {"idle_timeout": 30.0, "wait": 1.0}
    if isinstance(value, str) and ":" in value:
        value = tuple(value.split(":", 1))
    if isinstance(value, dict):
        unknown = set(value) - {"min_nodes", "max_nodes", "idle_timeout", "wait"}
        if unknown:
            raise ValueError(f"autoscale: unknown key(s) {sorted(unknown)} (min_nodes, "
                             "max_nodes, idle_timeout, wait)")  # fmt: skip
        out.update(value)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        out.update(min_nodes=value[0], max_nodes=value[1])
    else:
        raise ValueError(f"autoscale={value!r}: give (min_nodes, max_nodes), like autoscale=(1, 4)")
    try:
        low, high = int(out["min_nodes"]), int(out["max_nodes"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"autoscale={value!r}: min_nodes and max_nodes must be whole numbers"
                         ) from None  # fmt: skip
    if not 1 <= low <= high:
        raise ValueError(f"autoscale={value!r}: min_nodes must be at least 1 and at most max_nodes")
    return dict(out, min_nodes=low, max_nodes=high, idle_timeout=float(out["idle_timeout"]),
                wait=float(out["wait"]))  # fmt: skip
