"""Process bookkeeping for the benchmark: find, measure and kill the processes
one workload run started.

Each workload subprocess is started with a unique value in the environment
variable ``TAG_ENV``; every process it starts (engine workers, schedulers,
controllers, raylets, ...) inherits it, even once re-parented to init. That
lets the runner find leftovers after a run, and lets the memory workload sum
up everything an engine started, whoever its parent is.
"""

import os
import time

import psutil

TAG_ENV = "KIT_BENCH_TAG"

# Ray's own daemons and workers, by command line (for the memory workload).
RAY_MARKERS = ("ray::", "raylet", "gcs_server")


def _safe(fn, default=None):
    try:
        return fn()
    except (psutil.Error, OSError):
        return default


def tagged(tag):
    """Live processes whose environment carries ``TAG_ENV=tag``."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        env = _safe(proc.environ, {})
        if env.get(TAG_ENV) == tag:
            found.append(proc)
    return found


def tree(pid):
    """The process ``pid`` and all its descendants (those still attached)."""
    root = _safe(lambda: psutil.Process(pid))
    if root is None:
        return []
    return [root] + _safe(lambda: root.children(recursive=True), [])


def kill(procs, grace=3.0):
    """SIGTERM ``procs``, wait up to ``grace`` seconds, then SIGKILL the rest.

    Returns how many had to be killed with SIGKILL.
    """
    procs = [p for p in procs if _safe(p.is_running, False)]
    for proc in procs:
        _safe(proc.terminate)
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        _safe(proc.kill)
    psutil.wait_procs(alive, timeout=grace)
    return len(alive)


def cleanup(pid, tag, grace=3.0):
    """Kill what is left of run ``pid`` (its tree plus every tagged process).

    Collects the tree before killing anything, so that children are not lost
    when their parent dies first. Returns the number of processes found.
    """
    by_pid = {p.pid: p for p in tree(pid)}
    by_pid.update((p.pid, p) for p in tagged(tag))
    by_pid.pop(os.getpid(), None)
    if by_pid:
        kill(list(by_pid.values()), grace)
    return len(by_pid)


def wait_gone(tag, timeout):
    """Wait up to ``timeout`` s for tagged processes to exit on their own."""
    deadline = time.monotonic() + timeout
    while True:
        left = tagged(tag)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)


def engine_processes(include_ray_daemons=False):
    """This process, its descendants, every process sharing its tag, and
    (optionally) Ray daemons started after it. Deduplicated by pid."""
    me = psutil.Process()
    found = {p.pid: p for p in tree(me.pid)}
    tag = os.environ.get(TAG_ENV)
    if tag:
        found.update((p.pid, p) for p in tagged(tag))
    if include_ray_daemons:
        born = me.create_time() - 1.0
        for proc in psutil.process_iter(["cmdline", "create_time"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            if (proc.info["create_time"] or 0) >= born and any(
                marker in cmd for marker in RAY_MARKERS
            ):
                found.setdefault(proc.pid, proc)
    return list(found.values())


def memory_mib(procs):
    """Summed RSS and PSS (MiB) of ``procs``; PSS shares shared pages fairly."""
    rss = pss = 0
    counted = 0
    for proc in procs:
        info = _safe(proc.memory_full_info)
        if info is None:
            mem = _safe(proc.memory_info)
            if mem is None:
                continue
            rss += mem.rss
            pss += mem.rss
        else:
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
        counted += 1
    mib = 1024.0 * 1024.0
    return rss / mib, pss / mib, counted


# Ray's per-node helpers are named like its workers ("ray::..."), but are daemons.
RAY_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def roles(found, head_pid=None, agent_pids=()):
    """Split a running engine's processes into driver, head, daemons and workers.

    ``found`` is what ``engine_processes`` returned in the driver. kit: the head
    is ``head_pid``, the daemons are the node agents (``agent_pids``) and their
    children (the zygotes), the workers are the rest. Ray (``head_pid`` None):
    the head is ``gcs_server``; workers and actors are the ``ray::`` processes
    but its agents; the daemons are the rest (raylets, agents, monitors,
    dashboard). Returns ``{role: [Process]}``.
    """
    me = os.getpid()
    agents = set(agent_pids)
    out = {"driver": [], "head": [], "daemons": [], "workers": []}
    for proc in found:
        if proc.pid == me:
            role = "driver"
        elif head_pid is not None:
            ppid = _safe(proc.ppid)
            if proc.pid == head_pid:
                role = "head"
            elif proc.pid in agents or ppid in agents:
                role = "daemons"
            else:
                role = "workers"
        else:
            cmd = " ".join(_safe(proc.cmdline, []) or [])
            if "gcs_server" in cmd:
                role = "head"
            elif cmd.startswith("ray::") and not cmd.startswith(RAY_AGENTS):
                role = "workers"
            else:
                role = "daemons"
        out[role].append(proc)
    return out


def cpu_seconds(procs):
    """Summed user + system CPU seconds of ``procs`` (those still alive)."""
    total = 0.0
    for proc in procs:
        times = _safe(proc.cpu_times)
        if times is not None:
            total += times.user + times.system
    return total


def rss_mib(procs):
    """Summed RSS (MiB) of ``procs``: cheap enough to sample often."""
    total = 0
    for proc in procs:
        mem = _safe(proc.memory_info)
        if mem is not None:
            total += mem.rss
    return total / (1024.0 * 1024.0)


class PeakRSS:
    """Samples the summed RSS of groups of processes in a thread; keeps each peak.

    peak = PeakRSS({"head": [p], "driver": [me]}, interval=0.5)
    ...                         # the measured work
    peak.stop()                 # -> {"head": MiB, "driver": MiB}
    """

    def __init__(self, groups, interval=0.5):
        import threading

        self.groups, self.interval = groups, interval
        self.peaks = dict.fromkeys(groups, 0.0)
        self._done = threading.Event()
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self):
        for name, group in self.groups.items():
            self.peaks[name] = max(self.peaks[name], rss_mib(group))

    def _run(self):
        while not self._done.wait(self.interval):
            self.sample()

    def stop(self):
        self._done.set()
        self._thread.join()
        self.sample()
        return dict(self.peaks)
