"""The autoscaler: a process beside the head that adds nodes under load and removes idle ones.

    boot (head's process) ── fork, before its zmq context ──▶ autoscaler (dies with the head)
    autoscaler, every TICK s:
        head ── ("demand",) ──▶ tasks waiting, drivers' asks, each node busy or idle
        Policy.decide (kit/scale_policy.py) ──▶ Add(n, why) / Remove(node, why)
        Add:    provider.launch() (kit/providers.py: local processes, or ssh to a pool host)
        Remove: head ── drain ──▶ no new work there; ── holds ──▶ actors, sole copies;
                nothing held: provider.remove(); else undrain and keep it
        every decision: head ── ("note", text, node) ──▶ an event of state "cluster"
            ("added n3: 212 tasks waiting 2.1 s"), which kit.events(), the widgets, the
            dashboard and kit status show

Started by ``kit.init(autoscale=(1, 4))`` (provider ``local``) and by ``kit up`` for a
cluster file with ``autoscale`` (``local`` or ``ssh``). It is a driver of the cluster
that submits nothing; the token reached it in memory (forked from the head's process).
On exit (the head stopping, SIGTERM) it stops the nodes it started.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from . import providers
from .scale_policy import Add, Policy, Remove

TICK = 0.25  # seconds between two looks at the head's demand


class Autoscaler:
    """The loop's state (see the module docstring); ``step`` is one look and its decisions.

    Args:
        query: a function asking the head (``client.query``).
        provider: where nodes come from (``kit.providers``).
        policy: when to add and remove (``kit.scale_policy.Policy``).
    """

    def __init__(self, query, provider, policy):
        self.query = query
        self.provider = provider
        self.policy = policy
        self.added: dict = {}  # tag -> node id (None while it starts)
        self.launched: dict = {}  # tag -> when it was launched (until it joins)
        self.kept_why: dict = {}  # node id -> the last reason it was kept

    def note(self, text, nid=None):
        self.query("autoscale", ("note", text, nid))

    def name(self, tag):
        return providers.display_name(self.provider, tag)

    def step(self, now: float) -> None:
        demand = self.query("autoscale", ("demand",))
        alive = {n["node_id"] for n in demand["nodes"]}
        for n in demand["nodes"]:
            tag = n.get("tag")
            if tag in self.added and self.added[tag] is None:
                self.added[tag] = n["node_id"]
                self.provider.joined(tag)
                took = now - self.launched.pop(tag, now)
                self.note(f"{self.name(tag)} joined, {took:.1f} s after it was added",
                          n["node_id"])  # fmt: skip
        for tag, nid in list(self.added.items()):
            if nid is not None and nid not in alive:  # it died (or was stopped by hand)
                del self.added[tag]
                self.policy.forget(nid)
                self.provider.remove(tag)
        for tag, why in self.provider.failed():
            self.added.pop(tag, None)
            self.launched.pop(tag, None)
            self.note(f"could not add {self.name(tag)}: {why}")
        for d in self.policy.decide(demand, self.added, now):
            if isinstance(d, Add):
                self._add(d, now)
            elif isinstance(d, Remove):
                self._remove(d, now)

    def _add(self, d: Add, now) -> None:
        for _ in range(d.nodes):
            tag = self.provider.launch()
            if tag is None:
                self.note(f"cannot add a node ({d.why}): every pool host is in use")
                return
            self.added[tag] = None
            self.launched[tag] = now
            self.note(f"added {self.name(tag)}: {d.why}")

    def _remove(self, d: Remove, now) -> None:
        tag = next((t for t, n in self.added.items() if n == d.node), None)
        if tag is None:
            return
        self.query("autoscale", ("drain", d.node, True))
        held = self.query("autoscale", ("holds", d.node))
        why = []
        if held["actors"]:
            why.append(f"{held['actors']} live actor(s)")
        if held["sole_copies"]:
            why.append(f"the only copy of {held['sole_copies']} object(s)")
        if held["running"]:
            why.append(f"{held['running']} task(s) running")
        if why:
            self.query("autoscale", ("drain", d.node, False))
            self.policy.refused(d.node, now)
            text = f"kept {self.name(tag)} ({d.why}): it holds " + " and ".join(why)
            if self.kept_why.get(d.node) != text:
                self.kept_why[d.node] = text
                self.note(text, d.node)
            return
        self.provider.remove(tag)
        del self.added[tag]
        self.policy.forget(d.node)
        self.kept_why.pop(d.node, None)
        self.note(f"removed {self.name(tag)}: {d.why}", d.node)

    def run(self, fixed: int = 1, grace: float = 60.0) -> None:
        """Look and decide every TICK seconds until the head goes (its query fails).

        First wait (``grace`` s at most) for the ``fixed`` nodes the cluster starts with
        (the head's own, a cluster file's workers) to join: below min_nodes before they
        did, it would add nodes that are about to come anyway."""
        deadline = time.time() + grace
        while time.time() < deadline:
            if len(self.query("autoscale", ("demand",))["nodes"]) >= fixed:
                break
            time.sleep(TICK)  # polling the head for the cluster's first nodes
        while True:
            self.step(time.time())
            time.sleep(TICK)  # a poll interval: the head pushes nothing to the autoscaler


def policy_of(cfg) -> Policy:
    node = cfg.get("node") or {}
    return Policy(
        cfg["min_nodes"], cfg["max_nodes"], float(cfg.get("idle_timeout", 60.0)),
        float(cfg.get("wait", 1.0)), cfg.get("cpus") or node.get("num_cpus") or 1,
        (node.get("resources") or {}) if cfg.get("provider", "local") == "local" else None,
    )  # fmt: skip


def main(cfg) -> None:
    """The autoscaler process (``kit/boot.py`` forks it with the cluster's config)."""
    os.dup2(2, 1)  # stdout may be the pipe kit.init reads the head's address from
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.environ["KIT_DIRECT"] = "0"  # it submits nothing: no lease machinery

    def stop(*_):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    from .client import Client
    from .errors import KitError

    client = Client(
        cfg["head"], cfg["token"], "driver",
        info={"log_to_driver": False, "name": "autoscaler"}, encrypt=bool(cfg.get("encrypt")),
    )  # fmt: skip
    provider = providers.make(cfg)
    scaler = Autoscaler(client.query, provider, policy_of(cfg))
    try:
        scaler.run(int(cfg.get("fixed") or cfg.get("first_tag") or 1))
    except KitError as e:  # the head went away
        print(f"kit autoscaler: stopped ({e})", file=sys.stderr)
    finally:
        provider.close()
        client.close(notify=False)
