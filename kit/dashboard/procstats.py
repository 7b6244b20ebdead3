"""CPU and memory of a machine and of one node's kit processes (psutil), read by its agent.

    node agent, each heartbeat while a dashboard watches:
      Stats.sample(pids) ──▶ {"machine": {...}, "kit": {...}, "pids": {pid: [cpu %, rss]}}
      ── HEARTBEAT ──▶ head (kept per node, in kit.nodes()) ──▶ dashboard

A node's kit processes are its agent, its zygote and its workers: the agent names
them (no scan of the machine's process table). CPU percentages come from the
difference since the previous sample, so psutil's ``Process`` objects are kept
between samples (the first sample of a process reads 0).
"""

from __future__ import annotations

import psutil


class Stats:
    """Samples machine and process figures; keep one and call ``sample``.

    Example:
        >>> import os
        >>> s = Stats()
        >>> out = s.sample([os.getpid()])
        >>> sorted(out), sorted(out["machine"]), sorted(out["kit"])
        (['kit', 'machine', 'pids'], ['cpu_count', 'cpu_percent', 'mem_total', 'mem_used'], \
['cpu_percent', 'procs', 'rss'])
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

    def sample(self, pids) -> dict:
        """Figures for the machine, for the processes ``pids`` together and each."""
        vm = psutil.virtual_memory()
        machine = {
            "cpu_percent": psutil.cpu_percent(None),
            "cpu_count": psutil.cpu_count() or 1,
            "mem_used": vm.total - vm.available,
            "mem_total": vm.total,
        }
        each = {}
        for pid in pids:
            try:
                p = self._proc(pid)
                each[pid] = [p.cpu_percent(None), p.memory_info().rss]
            except psutil.Error:
                self._procs.pop(pid, None)
        for pid in list(self._procs):
            if pid not in each:
                del self._procs[pid]
        kit = {
            "cpu_percent": sum(c for c, _ in each.values()),
            "rss": sum(r for _, r in each.values()),
            "procs": len(each),
        }
        return {"machine": machine, "kit": kit, "pids": each}
