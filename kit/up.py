"""``kit up`` / ``kit down`` / ``kit exec`` / ``kit status`` for a cluster file, and the
same from Python (``kit.Cluster``).

    kit up cluster.yaml
      every host, in parallel: ssh in ─ probe (kit.hostctl) ─ a host whose kit runs is left
          as it is; else copy files (tar over ssh) ─ run setup ─ probe again (versions)
          (any failure: one line naming the host, and nothing has started)
      head host:  hostctl start_head  (token on stdin; the autoscaler, if any, forks there)
      workers:    hostctl start_node  (head's address, token on stdin), in parallel
      ──▶ "cluster lab is up: 3 nodes, 6 CPUs; connect with kit.init(address=...)"
    kit down cluster.yaml: hostctl stop on the head, then on every other host (workers and
      the autoscaler's pool): every kit daemon of the cluster and its state folder go.

The token is made here, kept in ``~/.kit/clusters/<name>.json`` (0600; ``kit.init(address=
...)`` finds it there) and sent to each host over ssh's stdin. Nothing assumes a shared
filesystem: files are copied to each host, each host keeps its own state folder,
``~/.kit/clusters/<name>/<host>``. ``kit up`` again repairs what is missing (a host whose
node died gets a new one; a dead head is started again, and then every worker too, since
they belonged to the old one) and leaves what runs alone unless ``--restart``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from . import cluster_file, paths
from .errors import HostError, KitError
from .ssh import Remote

PARALLEL = 16  # hosts worked on at once


def _say(text: str) -> None:
    print(text, flush=True)


def _host_dir(name: str, host: str) -> str:
    """A host's state folder there (``~`` is the remote user's home)."""
    return f"~/.kit/clusters/{name}/{re.sub(r'[^A-Za-z0-9_.-]', '_', host)}"


class Cluster:
    """A cluster of machines described by a cluster file (``kit/cluster_file.py``).

    Example:
        >>> c = kit.Cluster.from_yaml("cluster.yaml")  # doctest: +SKIP
        >>> c.up()                                      # doctest: +SKIP
        '10.0.0.1:6380'
        >>> ctx = kit.init(address=c.address)           # doctest: +SKIP
        >>> c.down()                                    # doctest: +SKIP
    """

    def __init__(self, spec: cluster_file.ClusterSpec, progress=_say):
        self.spec = spec
        self.progress = progress
        self._remotes: dict = {}

    @classmethod
    def from_yaml(cls, path: str, progress=_say) -> Cluster:
        """Read and check a cluster file (nothing is started).

        Raises:
            ClusterFileError: the file is wrong (the message names the key and the fix).
        """
        return cls(cluster_file.load(path), progress)

    # ---- local state -----------------------------------------------------------------

    def _state_path(self) -> str:
        folder = paths.private_dir(
            os.path.join(paths.state_dir(), "clusters"), "set KIT_STATE_DIR to a folder of your own"
        )
        return os.path.join(folder, f"{self.spec.name}.json")

    def _read_state(self) -> dict:
        try:
            with open(self._state_path()) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def _write_state(self, st: dict) -> None:
        path = self._state_path()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(st, f)

    @property
    def address(self) -> str | None:
        """The head's ``host:port`` once the cluster is up (None before)."""
        return self._read_state().get("address")

    @property
    def token(self) -> str | None:
        """The cluster's token (kept here in a file only you can read)."""
        return self._read_state().get("token")

    # ---- hosts -------------------------------------------------------------------------

    def remote(self, host: str) -> Remote:
        r = self._remotes.get(host)
        if r is None:
            s = self.spec.ssh
            r = self._remotes[host] = Remote(host, s.user, s.key, s.port, s.options)
        return r

    def _hostctl(self, host: str, op: str, req: dict, timeout: float = 120.0) -> dict:
        req = dict(req, state_dir=_host_dir(self.spec.name, host))
        out = self.remote(host).run(
            f"{self.spec.python} -m kit.hostctl {op}",
            stdin=(json.dumps(req) + "\n").encode(),
            timeout=timeout,
            what=f"kit.hostctl {op}",
        )
        lines = [x for x in out.decode(errors="replace").splitlines() if x.startswith("{")]
        if not lines:
            raise HostError(host, f"kit.hostctl {op} said nothing (is kit installed there?)")
        ans = json.loads(lines[-1])
        if not ans.get("ok"):
            raise HostError(host, f"{op.replace('_', ' ')}: {ans.get('error')}")
        return ans

    def _probe(self, host: str) -> dict | None:
        """What runs there (None: kit is not importable there yet)."""
        try:
            return self._hostctl(host, "probe", {"with_token": True}, timeout=60)
        except HostError as e:
            if "unreachable" in e.why:
                raise
            return None

    def _prepare(self, h, restart: bool, setup: bool) -> dict:
        """Reach ``h``, set it up unless its kit runs; return its probe."""
        host = h.host
        self.remote(host).run("true", timeout=60, what="ssh")
        found = self._probe(host)
        running = bool(found) and (
            (found["head"] or {}).get("alive") or any(n["alive"] for n in found["nodes"])
        )
        if running and not restart:
            self.progress(f"{host}: kit runs there; left as it is")
            return found
        if setup:
            for remote_path, local in self.spec.files:
                self.remote(host).send(os.path.join(self.spec.folder, local), remote_path)
            if self.spec.files:
                self.progress(f"{host}: {len(self.spec.files)} file(s) copied")
            for cmd in self.spec.setup:
                self.remote(host).run(cmd, timeout=1800, what=f"setup command {cmd}")
            if self.spec.setup:
                self.progress(f"{host}: {len(self.spec.setup)} setup command(s) ran")
        found = self._probe(host)
        if found is None:
            raise HostError(
                host,
                f"{self.spec.python} there cannot import kit: install it with a setup command "
                "(python3 -m pip install ...)",
            )
        from .protocol import KIT_VERSION, PY_VERSION

        if (found["kit"], found["python"]) != (KIT_VERSION, PY_VERSION):
            raise HostError(
                host,
                f"kit {found['kit']} on Python {found['python']} there, kit {KIT_VERSION} on "
                f"Python {PY_VERSION} here: install the same versions on every host",
            )
        self.progress(f"{host}: ready (kit {found['kit']}, Python {found['python']})")
        return found

    def _each(self, hosts, fn) -> dict:
        """``fn(host)`` for each host, in parallel: {host: result or the HostError}."""
        out: dict = {}
        if not hosts:
            return out
        with ThreadPoolExecutor(min(PARALLEL, len(hosts))) as pool:
            futures = {h: pool.submit(fn, h) for h in hosts}
            for h, f in futures.items():
                try:
                    out[h] = f.result()
                except HostError as e:
                    out[h] = e
        return out

    def _check(self, results: dict) -> None:
        """Raise the first HostError among ``results`` (after saying each)."""
        errors = [r for r in results.values() if isinstance(r, HostError)]
        for e in errors:
            self.progress(f"error: {e}")
        if errors:
            raise errors[0]

    # ---- up ----------------------------------------------------------------------------

    def up(self, restart: bool = False, setup: bool = True) -> str:
        """Start the cluster, or repair it (see the module docstring); its address.

        Args:
            restart: stop and start again what runs already.
            setup: copy the files and run the setup commands on hosts that need it.

        Raises:
            HostError: a host could not be reached or set up, or its node did not start
                (one line naming the host and why).
        """
        spec = self.spec
        try:
            hosts = spec.hosts()
            found = self._each(hosts, lambda h: self._prepare(h, restart, setup))
            self._check(found)
            st = self._read_state()
            head = found[spec.head]
            head_alive = bool((head["head"] or {}).get("alive"))
            if head_alive and not restart:
                address = head["head"]["address"]
                token = st.get("token") or head["head"].get("token")
                fresh = False
            else:
                if restart:
                    self._each(hosts, lambda h: self._hostctl(h.host, "stop", {}))
                address, token = self._start_head()
                fresh = True
            self._write_state({"address": address, "token": token, "head": spec.head.host})
            started = self._each(
                list(spec.workers),
                lambda h: self._start_worker(h, found[h], address, token, fresh),
            )
            self._check(started)
            n, cpus = self._count(address, token, 1 + len(spec.workers))
            self.progress(
                f"cluster {spec.name} is up: {n} node(s), {cpus:g} CPUs; head at {address}"
            )
            self.progress(f'connect with kit.init(address="{address}") (the token is kept in '
                          f"{self._state_path()}, readable only by you)")  # fmt: skip
            return address
        finally:
            self._close()

    def _start_head(self):
        """Start the head (after clearing what an old one left there): (address, token)."""
        h = self.spec.head
        token = secrets.token_hex(16)
        self._write_state({"token": token, "head": h.host})
        req = {"token": token, "cpus": h.cpus, "port": h.port, "node_ip": h.host,
               "resources": dict(h.resources), "autoscale": self._autoscale_cfg()}  # fmt: skip
        self._hostctl(h.host, "stop", {})  # what an old head left (dead daemons' files)
        ans = self._hostctl(h.host, "start_head", req)
        self.progress(f"{h.host}: head started at {ans['address']}")
        return ans["address"], token

    def _start_worker(self, h, found, address, token, fresh) -> None:
        mine = [n for n in found["nodes"] if n["alive"] and n["address"] == address]
        if mine and not fresh:
            self.progress(f"{h.host}: node runs (left as it is)")
            return
        self._hostctl(h.host, "stop", {})  # a node of an old head, or a dead one's files
        ans = self._hostctl(
            h.host,
            "start_node",
            {"token": token, "address": address, "cpus": h.cpus, "node_ip": h.host,
             "resources": dict(h.resources)},
        )  # fmt: skip
        self.progress(f"{h.host}: node {ans['node_id'][:8]} joined")

    def _count(self, address, token, expect):
        """Alive nodes and CPUs, asked of the head once ``expect`` nodes have joined."""
        from .client import Client
        from .errors import GetTimeoutError

        c = Client("tcp://" + address, token, "driver",
                   info={"log_to_driver": False, "name": "kit up"})  # fmt: skip
        try:
            try:
                c.query("wait_nodes", expect, timeout=60)
            except GetTimeoutError:
                pass  # said below: fewer nodes than hosts
            nodes = [n for n in c.query("nodes") if n["alive"]]
        finally:
            c.close(notify=True)
        return len(nodes), sum(n["resources"].get("CPU", 0.0) for n in nodes)

    def _autoscale_cfg(self) -> dict | None:
        """What the head's autoscaler needs (``kit/autoscaler.py``): the policy, and for the
        ssh provider the pool, a copy of the key and the pool's known host keys."""
        auto, spec = self.spec.autoscale, self.spec
        if auto is None:
            return None
        cfg = {
            "min_nodes": auto.min_nodes, "max_nodes": auto.max_nodes,
            "idle_timeout": auto.idle_timeout, "wait": auto.wait, "provider": auto.provider,
            "cpus": spec.head.cpus, "fixed": 1 + len(spec.workers),
        }  # fmt: skip
        if auto.provider == "ssh":
            assert spec.ssh.key is not None  # the file's check
            with open(os.path.expanduser(spec.ssh.key)) as f:
                key = f.read()
            drop = {"userknownhostsfile", "identityfile", "stricthostkeychecking"}
            cfg.update(
                pool=[{"host": h.host, "cpus": h.cpus, "resources": dict(h.resources),
                       "state_dir": _host_dir(spec.name, h.host)} for h in auto.pool],
                ssh={"user": spec.ssh.user, "port": spec.ssh.port,
                     "options": [(k, v) for k, v in spec.ssh.options if k.lower() not in drop]},
                python=spec.python, key=key,
                known_hosts="".join(self._known_host_lines(h.host) for h in auto.pool),
            )  # fmt: skip
        return cfg

    def _known_host_lines(self, host: str) -> str:
        """The host keys ssh here trusts for ``host`` (so the head checks them too)."""
        cfg = self.remote(host).config()
        files = [os.path.expanduser(f) for f in cfg.get("userknownhostsfile", "").split()]
        name, port = cfg.get("hostname", host), cfg.get("port", "22")
        key = name if port == "22" else f"[{name}]:{port}"
        lines = []
        for f in files:
            if os.path.exists(f):
                got = subprocess.run(["ssh-keygen", "-F", key, "-f", f], capture_output=True,
                                     text=True, timeout=30)  # fmt: skip
                lines += [x for x in got.stdout.splitlines() if x and not x.startswith("#")]
        return "".join(x + "\n" for x in lines)

    # ---- down, exec, status --------------------------------------------------------------

    def down(self) -> dict:
        """Stop every kit process of the cluster on every host and remove its state there.

        Returns:
            ``{host: daemons stopped}``.

        Raises:
            HostError: a host could not be reached (the others are stopped all the same).
        """
        spec = self.spec
        try:
            res = self._each([spec.head], lambda h: self._hostctl(h.host, "stop", {}))
            rest = [h for h in spec.hosts() if h is not spec.head]
            res.update(self._each(rest, lambda h: self._hostctl(h.host, "stop", {})))
            out = {}
            for h, r in res.items():
                if not isinstance(r, HostError):
                    out[h.host] = r["stopped"]
                    self.progress(f"{h.host}: stopped {r['stopped']} kit daemon(s)")
            self._check(res)
            try:
                os.unlink(self._state_path())
            except OSError:
                pass
            self.progress(f"cluster {spec.name} is down")
            return out
        finally:
            self._close()

    def exec(self, command: str, hosts=None) -> dict:
        """Run a shell command on the head (or ``hosts``); ``{host: (exit status, output)}``.

        On the head, ``kit.init(address="auto")`` connects to the cluster (the command
        runs with ``KIT_STATE_DIR`` set to the cluster's state there).
        """
        hosts = hosts or [self.spec.head.host]
        out = {}
        try:
            for host in hosts:
                env = ""
                if host == self.spec.head.host:
                    env = f"KIT_STATE_DIR={_host_dir(self.spec.name, host)} KIT_ADDRESS=auto "
                r = subprocess.run(self.remote(host).argv(env + command), capture_output=True,
                                   timeout=3600)  # fmt: skip
                text = (r.stdout + r.stderr).decode(errors="replace")
                out[host] = (r.returncode, text)
        finally:
            self._close()
        return out

    def status(self) -> dict:
        """Each host's kit daemons, and the cluster's nodes and autoscaler decisions.

        Returns:
            ``{"hosts": {host: probe or the error}, "nodes": [...], "notes": [...]}``.
        """
        try:
            found = self._each(self.spec.hosts(), lambda h: self._probe(h.host))
        finally:
            self._close()
        out: dict = {"hosts": {h.host: r for h, r in found.items()}, "nodes": [], "notes": []}
        st = self._read_state()
        if st.get("address"):
            from .client import Client

            try:
                c = Client("tcp://" + st["address"], st["token"], "driver",
                           info={"log_to_driver": False, "name": "kit status"})  # fmt: skip
            except KitError as e:
                out["error"] = str(e)
                return out
            try:
                out["nodes"] = c.query("nodes")
                out["notes"] = c.query("autoscale", ("notes",)) or []
            finally:
                c.close(notify=True)
        return out

    def _close(self):
        for r in self._remotes.values():
            r.close()
        self._remotes.clear()


# ---- the kit command ----------------------------------------------------------------------


def cmd_up(args) -> int:
    Cluster.from_yaml(args.cluster_file).up(restart=args.restart, setup=not args.no_setup)
    return 0


def cmd_down(args) -> int:
    Cluster.from_yaml(args.cluster_file).down()
    return 0


def cmd_exec(args) -> int:
    c = Cluster.from_yaml(args.cluster_file)
    cmd = list(args.command)
    if "--" in cmd:  # options after the file (argparse leaves them in the command)
        before, cmd = cmd[: cmd.index("--")], cmd[cmd.index("--") + 1 :]
        while before:
            opt = before.pop(0)
            if opt == "--all":
                args.all = True
            elif opt == "--host" and before:
                args.host = before.pop(0)
            else:
                print(f"kit: unknown option {opt!r} for kit exec", file=sys.stderr)
                return 2
    if not cmd:
        print("kit: give the command after --: kit exec cluster.yaml -- CMD", file=sys.stderr)
        return 2
    hosts = [h.host for h in c.spec.hosts()] if args.all else [args.host] if args.host else None
    code = 0
    for host, (rc, text) in c.exec(" ".join(shlex.quote(x) for x in cmd) if len(cmd) > 1
                                   else cmd[0], hosts).items():  # fmt: skip
        if hosts and len(hosts) > 1:
            text = "".join(f"{host}: {line}\n" for line in text.splitlines())
        sys.stdout.write(text)
        code = code or rc
    return code


def cmd_status(args) -> int:
    from .cli import status_table

    c = Cluster.from_yaml(args.cluster_file)
    st = c.status()
    for host, p in st["hosts"].items():
        if isinstance(p, HostError):
            print(f"{host}: {p.why}")
        elif p is None:
            print(f"{host}: reachable; kit not installed")
        else:
            what = []
            if p["head"]:
                what.append(f"head at {p['head']['address']} "
                            f"({'running' if p['head']['alive'] else 'dead'})")  # fmt: skip
            alive = sum(1 for n in p["nodes"] if n["alive"])
            what.append(f"{alive} node(s) running" if p["nodes"] or not p["head"] else "")
            print(f"{host}: " + ", ".join(w for w in what if w))
    if st.get("error"):
        print(f"head: {st['error']}")
    if st["nodes"]:
        from .api import _node_dict

        print(status_table([_node_dict(n) for n in st["nodes"]]))
    for _t, text in st["notes"][-10:]:
        print(f"autoscaler: {text}")
    return 0
