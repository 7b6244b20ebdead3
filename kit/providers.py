"""Where the autoscaler's nodes come from: processes on the head's host, or a pool of hosts.

    LocalProvider.launch()  python -m kit.boot --node   (config and token on its stdin; it
                            dies with the autoscaler, which dies with the head)
    SshProvider.launch()    ssh <pool host> python -m kit.hostctl start_node  (token on
                            stdin), in a thread; remove(): hostctl stop there

Both answer the same calls: ``launch()`` starts one node and returns its tag (the head
shows it in each node's info, so the autoscaler learns the node's id when it joins) or
None when there is nowhere to start one; ``remove(tag)`` stops it (its agent says "bye"
to the head, which takes it out at once); ``failed()`` lists the launches that did not
work, with why; ``close()`` stops every node it started.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

JOIN_TIMEOUT = 120.0  # seconds a started node has to join before it is given up


class LocalProvider:
    """Node agents as processes on this host (see the module docstring).

    Args:
        cfg: ``node`` (the node's config: num_cpus, resources, ...), ``head`` (the head's
            address for this host), ``token``, ``cluster``, ``first_tag`` (the next node
            number: local nodes are n0, n1, ...).
    """

    name = "local"

    def __init__(self, cfg):
        self.cfg = cfg
        self.next = int(cfg.get("first_tag", 1))
        self.procs: dict = {}  # tag -> Popen
        self.started: dict = {}  # tag -> time.monotonic() of its launch
        self.stopping: dict = {}  # tag -> Popen being stopped

    def launch(self):
        tag = f"n{self.next}"
        self.next += 1
        ncfg = dict(self.cfg["node"], token=self.cfg["token"], address=self.cfg["head"],
                    cluster=self.cfg.get("cluster"), tag=tag)  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "kit.boot", "--node"], stdin=subprocess.PIPE, close_fds=True
        )
        assert proc.stdin is not None
        proc.stdin.write((json.dumps(ncfg) + "\n").encode())
        proc.stdin.close()
        self.procs[tag] = proc
        self.started[tag] = time.monotonic()
        return tag

    def joined(self, tag) -> None:
        self.started.pop(tag, None)

    def remove(self, tag) -> None:
        proc = self.procs.pop(tag, None)
        self.started.pop(tag, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the agent stops its workers, says bye
            self.stopping[tag] = proc

    def failed(self) -> list:
        """Launches that exited or did not join in time: ``[(tag, why)]`` (forgotten)."""
        out = []
        for tag, proc in list(self.procs.items()):
            code = proc.poll()
            late = time.monotonic() - self.started.get(tag, time.monotonic()) > JOIN_TIMEOUT
            if code is not None or late:
                why = f"its agent exited ({code})" if code is not None else "it did not join"
                self.remove(tag)
                out.append((tag, why))
        for tag, proc in list(self.stopping.items()):
            if proc.poll() is not None:
                del self.stopping[tag]
        return out

    def close(self) -> None:
        for tag in list(self.procs):
            self.remove(tag)
        deadline = time.monotonic() + 5.0
        for proc in self.stopping.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.stopping.clear()


class SshProvider:
    """Nodes on a pool of hosts, started over ssh from the head's host.

    Args:
        cfg: ``pool`` (``[{host, cpus, resources, state_dir}]``), ``ssh`` (user, port,
            options), ``key`` and ``known_hosts`` (the copies ``kit up`` left in the head's
            private state folder), ``python``, ``address`` (the head's, as the pool reaches
            it), ``token``.
    """

    name = "ssh"

    def __init__(self, cfg):
        self.cfg = cfg
        self.pool = {h["host"]: h for h in cfg["pool"]}
        self.used: dict = {}  # host -> tag, while a node of ours runs (or starts) there
        self.pending: dict = {}  # tag -> Future of its start
        self.jobs = ThreadPoolExecutor(4)
        self.errors: list = []

    def _remote(self, host):
        from .ssh import Remote

        s = self.cfg.get("ssh") or {}
        opts = [*map(tuple, s.get("options") or []),
                ("UserKnownHostsFile", self.cfg["known_hosts"]), ("StrictHostKeyChecking", "yes"),
                ("IdentitiesOnly", "yes")]  # fmt: skip
        return Remote(host, s.get("user"), self.cfg["key"], s.get("port"), opts)

    def _hostctl(self, host, op, req, timeout=120.0):
        h = self.pool[host]
        r = self._remote(host)
        try:
            out = r.run(
                f"{self.cfg.get('python', 'python3')} -m kit.hostctl {op}",
                stdin=(json.dumps(dict(req, state_dir=h["state_dir"])) + "\n").encode(),
                timeout=timeout, what=f"kit.hostctl {op}",
            )  # fmt: skip
        finally:
            r.close()
        lines = [x for x in out.decode(errors="replace").splitlines() if x.startswith("{")]
        ans = json.loads(lines[-1]) if lines else {"ok": False, "error": "no answer"}
        if not ans.get("ok"):
            from .errors import HostError

            raise HostError(host, f"{op}: {ans.get('error')}")
        return ans

    def _start(self, host, tag):
        h = self.pool[host]
        self._hostctl(host, "stop", {})  # what an earlier node there left
        req = {"token": self.cfg["token"], "address": self.cfg["address"], "cpus": h.get("cpus"),
               "node_ip": host, "resources": h.get("resources") or {}, "tag": tag}  # fmt: skip
        return self._hostctl(host, "start_node", req)

    def launch(self):
        free = [h for h in self.pool if h not in self.used]
        if not free:
            return None
        host = free[0]
        tag = "p" + "".join(c if c.isalnum() else "-" for c in host)
        self.used[host] = tag
        self.pending[tag] = self.jobs.submit(self._start, host, tag)
        return tag

    def host_of(self, tag):
        return next((h for h, t in self.used.items() if t == tag), None)

    def joined(self, tag) -> None:
        pass

    def remove(self, tag) -> None:
        host = self.host_of(tag)
        if host is None:
            return
        self.pending.pop(tag, None)

        def stop():
            try:
                self._hostctl(host, "stop", {})
            finally:
                self.used.pop(host, None)

        self.jobs.submit(stop)

    def failed(self) -> list:
        out = []
        for tag, fut in list(self.pending.items()):
            if not fut.done():
                continue
            del self.pending[tag]
            err = fut.exception()
            if err is not None:
                host = self.host_of(tag)
                if host is not None:
                    self.used.pop(host, None)
                out.append((tag, str(err)))
        return out

    def close(self) -> None:
        for tag in list(self.used.values()):
            self.remove(tag)
        self.jobs.shutdown(wait=True)


def make(cfg):
    """The provider ``cfg["provider"]`` names."""
    if cfg.get("provider", "local") == "ssh":
        return SshProvider(cfg)
    return LocalProvider(cfg)


def display_name(provider, tag) -> str:
    """How decisions name a node: its tag (local), its host (ssh)."""
    host = getattr(provider, "host_of", lambda t: None)(tag)
    return host or tag
