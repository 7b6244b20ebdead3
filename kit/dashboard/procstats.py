"""CPU and memory of this machine and of each local node's kit processes (psutil).

    Stats.sample({node id: agent pid}) ──▶ {"machine": {...}, "nodes": {node id: {...}}}

A node's kit processes are its agent and the agent's descendants (the zygote and
its workers). The dashboard runs on the head's machine, so it measures the nodes
that run there; nodes on other machines show no figures. CPU percentages come
from the difference since the previous sample, so psutil's ``Process`` objects
are kept between samples (the first sample of a process reads 0).
"""

from __future__ import annotations

import psutil


class Stats:
    """Samples machine and per-node process figures; keep one and call ``sample``.

    Example:
        >>> import os
        >>> s = Stats()
        >>> out = s.sample({b"n": os.getpid()})
        >>> sorted(out["machine"]), sorted(out["nodes"][b"n"])
        (['cpu_count', 'cpu_percent', 'mem_total', 'mem_used'], ['cpu_percent', 'procs', 'rss'])
    """

    def __init__(self):
        self._procs: dict = {}  # pid -> psutil.Process (kept for cpu_percent)
        psutil.cpu_percent(None)  # the first call starts the machine's interval

    def _proc(self, pid):
        p = self._procs.get(pid)
        if p is None:
            p = self._procs[pid] = psutil.Process(pid)
            p.cpu_percent(None)
        return p

    def sample(self, agents: dict) -> dict:
        """Figures for the machine and for each ``{node id: agent pid}`` given."""
        vm = psutil.virtual_memory()
        machine = {
            "cpu_percent": psutil.cpu_percent(None),
            "cpu_count": psutil.cpu_count() or 1,
            "mem_used": vm.total - vm.available,
            "mem_total": vm.total,
        }
        seen = set()
        nodes = {}
        for nid, pid in agents.items():
            if not pid:
                continue
            try:
                root = self._proc(pid)
                family = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            cpu = rss = count = 0
            for p in family:
                try:
                    p = self._proc(p.pid)
                    cpu += p.cpu_percent(None)
                    rss += p.memory_info().rss
                    count += 1
                    seen.add(p.pid)
                except psutil.Error:
                    pass
            nodes[nid] = {"cpu_percent": cpu, "rss": rss, "procs": count}
        for pid in list(self._procs):
            if pid not in seen:
                del self._procs[pid]
        return {"machine": machine, "nodes": nodes}
