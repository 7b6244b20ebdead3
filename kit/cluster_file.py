"""The cluster file of ``kit up``: its schema, read and checked before anything starts. Pure.

    cluster_name: lab                  # names the cluster's state here and on each host
    python: python3                    # the interpreter on every host (kit installed there)
    ssh: {user: me, key: ~/.ssh/id_ed25519, port: 22, options: {ConnectTimeout: 5}}
    cpus: 2                            # task slots per host (default: its cores)
    head: {host: 10.0.0.1, port: 6380}
    workers: [10.0.0.2, {host: 10.0.0.3, cpus: 8}]
    files: {~/project: ./project}      # remote path: local path, copied to every host
    setup: ["python3 -m pip install -q -r ~/project/requirements.txt"]
    autoscale: {min_nodes: 1, max_nodes: 4, idle_timeout: 60, provider: ssh,
                pool: [10.0.0.4, 10.0.0.5], wait: 1.0}

A host is a string or a mapping (``host``, ``cpus``, ``resources``). Nodes are
counted whole: the head's host runs a node, each worker runs one, and ``min_nodes`` /
``max_nodes`` bound them all; the autoscaler adds and removes nodes from the ``pool``
(provider ``ssh``) or as processes on the head's host (provider ``local``), never the
head or the listed workers. ``load`` raises ``ClusterFileError`` naming the file, the
key and the fix (an unknown key gets the nearest known one as a suggestion).

Example:
    >>> spec = parse({"cluster_name": "lab", "head": "10.0.0.1", "workers": ["10.0.0.2"]})
    >>> spec.head.host, [w.host for w in spec.workers], spec.head.port
    ('10.0.0.1', ['10.0.0.2'], 6380)
    >>> parse({"cluster_name": "lab", "head": "a", "worker": ["b"]})
    Traceback (most recent call last):
    ...
    kit.errors.ClusterFileError: cluster file: unknown key 'worker'; did you mean 'workers'?
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Any, NamedTuple, Optional

from .errors import ClusterFileError

TOP = ("cluster_name", "python", "ssh", "cpus", "head", "workers", "files", "setup",
       "autoscale")  # fmt: skip
SSH = ("user", "key", "port", "options")
HOST = ("host", "cpus", "resources", "port")
AUTOSCALE = ("min_nodes", "max_nodes", "idle_timeout", "provider", "pool", "wait")
PROVIDERS = ("ssh", "local")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# Options the launcher sets itself, so the file may not (how ssh runs must stay scripted).
FORBIDDEN_OPTIONS = ("batchmode", "controlmaster", "controlpath", "controlpersist")


class Host(NamedTuple):
    host: str
    cpus: Optional[int] = None  # None: the host's cores
    resources: tuple = ()  # ((name, amount), ...)
    port: int = 6380  # the head's port (a worker's is unused)


class Ssh(NamedTuple):
    user: Optional[str] = None  # None: the ssh client's default (~/.ssh/config, $USER)
    key: Optional[str] = None  # None: the client's defaults (agent, IdentityFile)
    port: Optional[int] = None
    options: tuple = ()  # ((name, value), ...): ``-o name=value``


class Autoscale(NamedTuple):
    min_nodes: int
    max_nodes: int
    idle_timeout: float = 60.0
    provider: str = "ssh"
    pool: tuple = ()  # Hosts the ssh provider may add
    wait: float = 1.0  # seconds tasks may wait for a slot before a node is added


class ClusterSpec(NamedTuple):
    name: str
    head: Host
    workers: tuple = ()
    python: str = "python3"
    ssh: Ssh = Ssh()
    files: tuple = ()  # ((remote path, local path), ...)
    setup: tuple = ()  # shell commands
    autoscale: Optional[Autoscale] = None
    folder: str = "."  # where the file is: relative local paths start here

    def hosts(self) -> list:
        """Every host kit up prepares: the head, the workers, the autoscaler's pool."""
        pool = self.autoscale.pool if self.autoscale else ()
        return [self.head, *self.workers, *pool]


def load(path: str) -> ClusterSpec:
    """Read and check a cluster file.

    Raises:
        ClusterFileError: it cannot be read, is not YAML, or breaks the schema.
    """
    import yaml

    try:
        with open(path) as f:
            raw = yaml.safe_load(f)
    except OSError as e:
        raise ClusterFileError(f"cannot read the cluster file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ClusterFileError(f"{path}{where}: not valid YAML: {e}") from None
    try:
        return parse(raw, os.path.dirname(os.path.abspath(path)))
    except ClusterFileError as e:
        raise ClusterFileError(str(e).replace("cluster file:", f"{path}:", 1)) from None


def _fail(msg: str):
    raise ClusterFileError(f"cluster file: {msg}")


def _keys(d: dict, known: tuple, where: str) -> None:
    for k in d:
        if k not in known:
            near = difflib.get_close_matches(str(k), known, 1, 0.6)
            hint = f"; did you mean {near[0]!r}?" if near else f" (known: {', '.join(known)})"
            _fail(f"unknown key {k!r}{where}{hint}")


def _int(v, what, low=0) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        _fail(f"{what} must be a whole number >= {low}, not {v!r}")
    return v


def _num(v, what) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        _fail(f"{what} must be a number of seconds >= 0, not {v!r}")
    return float(v)


def _host(v, what, default_cpus) -> Host:
    if isinstance(v, str):
        v = {"host": v}
    if not isinstance(v, dict):
        _fail(f"{what} must be a host name or a mapping with 'host', not {v!r}")
    _keys(v, HOST, f" in {what}")
    name = v.get("host")
    if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
        _fail(f"{what} needs 'host': a host name or address (got {name!r})")
    cpus = v.get("cpus", default_cpus)
    if cpus is not None:
        cpus = _int(cpus, f"{what}.cpus", 1)
    res = v.get("resources") or {}
    if not isinstance(res, dict) or not all(
        isinstance(k, str) and isinstance(x, (int, float)) for k, x in res.items()
    ):
        _fail(f"{what}.resources must map names to amounts, like {{disk: 2}}")
    port = _int(v.get("port", 6380), f"{what}.port", 1)
    return Host(name, cpus, tuple(sorted(res.items())), port)


def _hosts(v, what, default_cpus) -> tuple:
    if v is None:
        return ()
    if not isinstance(v, list):
        _fail(f"{what} must be a list of hosts")
    return tuple(_host(h, f"{what}[{i}]", default_cpus) for i, h in enumerate(v))


def _ssh(v) -> Ssh:
    if v is None:
        return Ssh()
    if not isinstance(v, dict):
        _fail("ssh must be a mapping (user, key, port, options)")
    _keys(v, SSH, " in ssh")
    opts = v.get("options") or {}
    if not isinstance(opts, dict):
        _fail("ssh.options must map ssh options to values, like {ConnectTimeout: 5}")
    for k in opts:
        if str(k).lower() in FORBIDDEN_OPTIONS:
            _fail(f"ssh.options: {k} is set by kit itself; leave it out")
    user, key = v.get("user"), v.get("key")
    for name, val in (("user", user), ("key", key)):
        if val is not None and not isinstance(val, str):
            _fail(f"ssh.{name} must be a string, not {val!r}")
    port = _int(v["port"], "ssh.port", 1) if v.get("port") is not None else None
    return Ssh(user, key, port, tuple((str(k), _opt(x)) for k, x in opts.items()))


def _opt(x) -> str:
    return ("yes" if x else "no") if isinstance(x, bool) else str(x)


def _autoscale(v, default_cpus, fixed: int) -> Optional[Autoscale]:
    if v is None:
        return None
    if not isinstance(v, dict):
        _fail("autoscale must be a mapping (min_nodes, max_nodes, idle_timeout, provider, pool)")
    _keys(v, AUTOSCALE, " in autoscale")
    provider = v.get("provider", "ssh")
    if provider not in PROVIDERS:
        _fail(f"autoscale.provider must be one of {', '.join(PROVIDERS)}, not {provider!r}")
    if "max_nodes" not in v:
        _fail("autoscale needs max_nodes (the most nodes, the head's own included)")
    low = _int(v.get("min_nodes", fixed), "autoscale.min_nodes", 1)
    high = _int(v["max_nodes"], "autoscale.max_nodes", 1)
    pool = _hosts(v.get("pool"), "autoscale.pool", default_cpus)
    if low > high:
        _fail(f"autoscale.min_nodes ({low}) is more than max_nodes ({high})")
    if high < fixed:
        _fail(f"autoscale.max_nodes ({high}) is less than the head and workers ({fixed})")
    if low < fixed:
        _fail(
            f"autoscale.min_nodes ({low}) is less than the head and workers ({fixed}), "
            "which always run: list hosts the autoscaler may remove under autoscale.pool"
        )
    if provider == "ssh" and high > fixed + len(pool):
        _fail(
            f"autoscale.max_nodes is {high} but there are {fixed} fixed nodes and "
            f"{len(pool)} pool host(s): add hosts to autoscale.pool, or lower max_nodes"
        )
    if provider == "local" and pool:
        _fail("autoscale.pool is for provider ssh; provider local adds nodes on the head's host")
    return Autoscale(
        low, high, _num(v.get("idle_timeout", 60.0), "autoscale.idle_timeout"), provider,
        pool, _num(v.get("wait", 1.0), "autoscale.wait"),
    )  # fmt: skip


def parse(raw: Any, folder: str = ".") -> ClusterSpec:
    """Check a cluster file's parsed content (see the module docstring); a ``ClusterSpec``.

    Raises:
        ClusterFileError: naming the first problem and its fix.
    """
    if not isinstance(raw, dict):
        _fail("must be a mapping of keys (cluster_name, head, workers, ...)")
    _keys(raw, TOP, "")
    name = raw.get("cluster_name")
    if not isinstance(name, str) or not NAME.match(name):
        _fail(
            f"cluster_name must be letters, digits, '.', '_' or '-' (got {name!r}); it names "
            "the cluster's state on each host"
        )
    if raw.get("head") is None:
        _fail("needs 'head': the host that runs the head (a name or address)")
    cpus = raw.get("cpus")
    if cpus is not None:
        cpus = _int(cpus, "cpus", 1)
    head = _host(raw["head"], "head", cpus)
    workers = _hosts(raw.get("workers"), "workers", cpus)
    python = raw.get("python", "python3")
    if not isinstance(python, str) or not python.strip():
        _fail(f"python must be the interpreter's name or path on the hosts, not {python!r}")
    files = raw.get("files") or {}
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(x, str) for k, x in files.items()
    ):
        _fail("files must map remote paths to local paths, like {~/project: ./project}")
    for remote, local in files.items():
        path = os.path.join(folder, os.path.expanduser(local))
        if not os.path.exists(path):
            _fail(f"files: {local!r} (for {remote}) does not exist here ({path})")
    setup = raw.get("setup") or []
    if isinstance(setup, str):
        setup = [setup]
    if not isinstance(setup, list) or not all(isinstance(c, str) for c in setup):
        _fail("setup must be a list of shell commands")
    auto = _autoscale(raw.get("autoscale"), cpus, 1 + len(workers))
    spec = ClusterSpec(
        name, head, workers, python, _ssh(raw.get("ssh")), tuple(files.items()),
        tuple(setup), auto, folder,
    )  # fmt: skip
    seen: dict = {}
    for h in spec.hosts():
        if h.host in seen:
            _fail(f"host {h.host} is listed twice; each host runs one node")
        seen[h.host] = True
    if auto is not None and auto.provider == "ssh" and auto.pool and spec.ssh.key is None:
        _fail(
            "autoscale with provider ssh needs ssh.key: the head starts pool hosts itself, "
            "with a copy of that key (it cannot use your agent)"
        )
    return spec
