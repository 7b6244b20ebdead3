"""The ``kit`` command.

    kit demo                          tasks, a graph and an actor on a local cluster
    kit up|down|status cluster.yaml   a cluster of machines over ssh (kit/up.py)
    kit exec cluster.yaml -- CMD      a command on its head (--host H, --all)
    kit start --head [options]        a head and a node agent on this host, as daemons
    kit start --address HOST:PORT     a node agent joining that head
    kit status [--address A]          the cluster's nodes and their counts, the dashboard
    kit dashboard [PANEL] [--print]   open the dashboard of the head started here
    kit stop                          stop every kit daemon started on this host

Daemons write what ``kit stop`` and ``kit.init(address="auto")`` need to
``~/.kit/`` (or ``$KIT_STATE_DIR``): the token is a secret, so the directory is
made 0700 and its files 0600, and one that exists must be the user's own with no
group or other access (``kit/paths.py``; else ``UnsafePathError`` says why).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import secrets
import signal
import subprocess
import sys
import time

from . import paths, process
from .errors import KitError
from .paths import state_dir


def _write_private(path, data):
    """Write a JSON file in the (checked) state directory, readable only by this user."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)


def read_state():
    """The head started on this host by ``kit start --head`` (address, token...), or None.

    Raises:
        UnsafePathError: the state directory exists and is not this user's private one.
    """
    path = os.path.join(state_dir(create=False), "head.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def default_ip() -> str:
    """This host's first non-loopback IPv4 address (else 127.0.0.1)."""
    import socket

    import psutil

    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                return a.address
    return "127.0.0.1"


def _spawn(mode, cfg, log):
    cfg = dict(cfg, log=log)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kit.boot", mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=open(log, "ab"),
        start_new_session=True,
        close_fds=True,
    )
    proc.stdin.write((json.dumps(cfg) + "\n").encode())
    proc.stdin.close()
    line = proc.stdout.readline()
    proc.stdout.close()
    if not line:
        proc.wait(10)
        with open(log) as f:
            tail = f.read()[-2000:]
        raise SystemExit(f"kit: the {mode[9:]} did not start:\n{tail}")
    return json.loads(line)


def _token(args):
    """The token from --token, --token-file (``-``: the first line of stdin) or KIT_TOKEN
    (in that order), or None."""
    if getattr(args, "token", None):
        return args.token
    path = getattr(args, "token_file", None)
    if path == "-":
        return sys.stdin.readline().strip() or None
    if path:
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError as e:
            raise SystemExit(f"kit: cannot read the token file {path}: {e}") from None
    return os.environ.get("KIT_TOKEN")


def _resources(text):
    try:
        res = json.loads(text) if text else {}
        assert isinstance(res, dict)
        return res
    except (ValueError, AssertionError):
        raise SystemExit(  # noqa: B904 (a usage error, not a chained failure)
            f"kit: --resources must be a JSON object like '{{\"disk\": 2}}', not {text!r}"
        )


def cmd_start(args) -> int:
    try:
        if args.head:
            info = start_head(args)
        else:
            info = start_node(args)
    except StartError as e:
        print(f"kit: {e}", file=sys.stderr)
        return e.code
    if not args.head:
        print(f"kit node {info['node_id']} joined the cluster at {args.address}.")
        return 0
    address, token = info["address"], info["token"]
    print(f"kit head started at {address} (cluster {info['cluster']}).")
    if info.get("dashboard"):
        print(f"Its dashboard: {info['dashboard']} (`kit dashboard` opens it)")
    print("To add another machine to this cluster, run there:")
    enc, enc_py = (" --encrypt", ", encrypt=True") if args.encrypt else ("", "")
    print(f"  KIT_TOKEN={token} kit start --address {address}{enc}")
    print("To connect from Python:")
    print(f'  kit.init(address="{address}", token="{token}"{enc_py})')
    print(
        "The token is kept in "
        + os.path.join(state_dir(), "head.json")
        + " (readable only by you). Stop with `kit stop`."
    )
    return 0


class StartError(KitError):
    """``kit start`` could not start what it was asked to (``code``: the exit status)."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def _prepare_dirs():
    state_dir()  # each made 0700, or checked: the token,
    paths.runtime_dir()  # a head's ipc socket,
    paths.spill_dir()  # the node agent's spilled objects


def start_head(args) -> dict:
    """Start a head and its node as daemons (``kit start --head``); what head.json holds.

    ``args`` are ``kit start``'s parsed options; ``args.autoscale`` (set by ``kit up`` on
    the head's host, never a flag) has the head fork an autoscaler (``kit/autoscaler.py``).

    Raises:
        StartError: a head already runs here, or it did not start.
    """
    _prepare_dirs()
    cpus = args.num_cpus if args.num_cpus is not None else (os.cpu_count() or 1)
    st = read_state()
    if st is not None and process.alive(st.get("pid")):
        raise StartError("a head is already running on this host; `kit stop` first")
    ip = args.node_ip_address or default_ip()
    token = _token(args) or secrets.token_hex(16)
    cfg = {
        "token": token,
        "num_cpus": cpus,
        "resources": _resources(args.resources),
        "object_store_memory": args.object_store_memory,
        "bind": ip,
        "port": args.port,
        "node_ip": ip,
        "num_nodes": 1,
        "node_timeout": args.node_timeout,
        "encrypt": args.encrypt,
        "dashboard": not args.no_dashboard,
        "dashboard_host": args.dashboard_host,
        "dashboard_port": args.dashboard_port,
        "autoscale": getattr(args, "autoscale", None),
    }
    info = _spawn("--daemon-head", cfg, os.path.join(state_dir(), "head.log"))
    state = {
        "address": info["address"].replace("tcp://", ""),
        "token": token,
        "pid": info["pid"],
        "cluster": info["cluster"],
        "encrypt": args.encrypt,
        "dashboard": info.get("dashboard"),
    }
    _write_private(os.path.join(state_dir(), "head.json"), state)
    return state


def start_node(args) -> dict:
    """Start a node agent joining ``args.address`` as a daemon (``kit start --address``).

    Returns:
        ``{"pid", "address", "node_id", "tag"}`` (what its state file holds).

    Raises:
        StartError: no address or token, or the node did not join (the reason, one line).
    """
    _prepare_dirs()
    cpus = args.num_cpus if args.num_cpus is not None else (os.cpu_count() or 1)
    if not args.address:
        raise StartError("give --head, or --address HOST:PORT of a head", 2)
    token = _token(args)
    if not token:
        raise StartError(
            "joining needs the cluster's token (printed by kit start --head): set "
            "KIT_TOKEN, or give --token-file",
            2,
        )
    ip = args.node_ip_address or default_ip()
    cfg = {
        "token": token,
        "num_cpus": cpus,
        "resources": _resources(args.resources),
        "object_store_memory": args.object_store_memory,
        "node_ip": ip,
        "address": "tcp://" + args.address.replace("tcp://", ""),
        "cluster": None,
        "tag": getattr(args, "tag", None) or "h" + secrets.token_hex(3),
        "encrypt": args.encrypt,
    }
    log = os.path.join(state_dir(), f"node-{cfg['tag']}.log")
    info = _spawn("--daemon-node", cfg, log)
    # The node joins (hello, welcome) right after its ready line; check that it did.
    deadline = time.time() + 10
    while time.time() < deadline and process.alive(info["pid"]):
        with open(log) as f:
            text = f.read()
        if "AuthenticationError" in text or "no answer" in text:
            raise StartError(text.strip().splitlines()[-1])
        if "joined" in text:
            break
        time.sleep(0.1)  # polling the node's log for its join
    if not process.alive(info["pid"]):
        with open(log) as f:
            lines = f.read().strip().splitlines()
        raise StartError("the node did not join: " + (lines[-1] if lines else "no output"))
    state = {
        "pid": info["pid"],
        "address": args.address,
        "node_id": info["node_id"],
        "tag": cfg["tag"],
    }
    _write_private(os.path.join(state_dir(), f"node-{cfg['tag']}.json"), state)
    return state


def cmd_stop(args) -> int:
    stopped = stop_all()
    print(f"kit: stopped {stopped} daemon(s)" if stopped else "kit: nothing was running")
    return 0


def stop_all(tags=None) -> int:
    """Stop the kit daemons started with this state directory (``tags``: only those nodes);
    sweep their shared memory; return how many were running.

    Example:
        >>> stop_all()  # doctest: +SKIP
        2
    """
    folder = state_dir(create=False)
    if tags is None:
        files = glob.glob(os.path.join(folder, "node-*.json"))
        head = os.path.join(folder, "head.json")
        if os.path.exists(head):
            files.append(head)
    else:
        files = [os.path.join(folder, f"node-{t}.json") for t in tags]
    stopped = 0
    clusters = []
    for path in files:
        try:
            with open(path) as f:
                st = json.load(f)
        except (OSError, ValueError):
            if os.path.exists(path):
                os.unlink(path)
            continue
        pid = st.get("pid")
        if st.get("cluster"):
            clusters.append(st["cluster"])
        if process.alive(pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.time() + 5
            while process.alive(pid) and time.time() < deadline:
                time.sleep(0.05)  # polling for the daemon to exit
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            stopped += 1
        os.unlink(path)
    from . import object_store

    for c in clusters:
        object_store.sweep(f"kit_{c}_")
    object_store.sweep_dead_clusters()
    return stopped


def cmd_status(args) -> int:
    if args.cluster_file:
        return _from_up("cmd_status")(args)
    import kit

    st = read_state()
    address = args.address or (st and st["address"]) or os.environ.get("KIT_ADDRESS")
    token = _token(args) or (st and st["token"])
    if not address:
        print("kit: no cluster started here; give --address and --token", file=sys.stderr)
        return 1
    kit.init(
        address=address,
        token=token,
        log_to_driver=False,
        encrypt=args.encrypt or bool(st and st.get("encrypt")),
    )
    try:
        print(status_table(kit.nodes()))
        link = kit.dashboard_url()
        print(f"dashboard: {link}" if link else "dashboard: none (the head runs without one)")
    finally:
        kit.shutdown()
    return 0


def cmd_dashboard(args) -> int:
    """Open the dashboard of the cluster started here (or print its link)."""
    from .dashboard.auth import link

    st = read_state()
    if st is None or not process.alive(st.get("pid")):
        print(
            "kit: no head runs on this host: `kit start --head` first (a cluster that "
            "kit.init() started shows its link in its context: ctx.dashboard_url)",
            file=sys.stderr,
        )
        return 1
    if not st.get("dashboard"):
        print("kit: this head runs without a dashboard (started with --no-dashboard)")
        return 1
    url = link(st["dashboard"], st["token"], args.panel or "")
    if args.print:
        print(url)
        return 0
    # The link goes to the browser through a private file, not its command line (where
    # other local users would read the token), as Jupyter does.
    page = os.path.join(state_dir(), "dashboard.html")
    fd = os.open(page, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f'<meta http-equiv="refresh" content="0;url={url}">\n')
    import webbrowser

    if not webbrowser.open("file://" + page):
        print(f"kit: no browser found here; open {st['dashboard']} (`kit dashboard --print`)")
    return 0


def status_table(nodes) -> str:
    """Nodes as a text table: address, alive, CPUs busy/total, task counts, store use."""
    head = (
        f"{'node':16} {'address':15} {'alive':5} {'CPU':>9} {'queued':>6} {'running':>7} "
        f"{'done':>7} {'failed':>6} {'store MiB':>12}"
    )
    rows = [head]
    for n in nodes:
        total = n["resources"].get("CPU", 0)
        busy = total - n["available"].get("CPU", 0)
        store = f"{n['store_used'] / 2**20:.0f}/{n['store_limit'] / 2**20:.0f}"
        rows.append(
            f"{n['NodeID']:16} {str(n['address']):15} {str(n['Alive']):5} "
            f"{busy:>4g}/{total:<4g} {n['queued']:>6} {n['running']:>7} "
            f"{n['done']:>7} {n['failed']:>6} {store:>12}"
        )
    return "\n".join(rows)


def cmd_demo(args) -> int:
    from .demo import run

    run(num_nodes=args.nodes, num_cpus=args.cpus)
    return 0


def _from_up(name):
    """A command of ``kit/up.py`` (imported when it runs: PyYAML only then)."""

    def run(args):
        from . import up

        return getattr(up, name)(args)

    return run


def parser() -> argparse.ArgumentParser:
    """The ``kit`` command's argument parser (``kit up`` uses it to start daemons)."""
    p = argparse.ArgumentParser(prog="kit", description="kit: notebook-first cluster runtime")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="run a short demo on a local cluster")
    d.add_argument("--nodes", type=int, default=2, help="node agents to start (default 2)")
    d.add_argument("--cpus", type=int, default=2, help="CPU slots per node (default 2)")
    d.set_defaults(fn=cmd_demo)
    s = sub.add_parser("start", help="start a head (--head) or join one (--address)")
    s.add_argument("--head", action="store_true", help="start a head and a node here")
    s.add_argument("--address", help="HOST:PORT of the head to join")
    s.add_argument("--port", type=int, default=6380, help="head port (default 6380)")
    s.add_argument("--node-ip-address", help="this host's address others reach")
    s.add_argument("--num-cpus", type=int, help="task slots here (default: cores)")
    s.add_argument("--resources", help="custom resources as JSON, e.g. '{\"disk\": 2}'")
    s.add_argument("--object-store-memory", type=int, help="store limit in bytes")
    s.add_argument(
        "--token",
        help="the cluster's token (made up for a new head if absent); other local users see "
        "a command line: prefer KIT_TOKEN or --token-file",
    )
    s.add_argument("--token-file", help="read the cluster's token from this file")
    s.add_argument(
        "--node-timeout",
        type=float,
        default=8.0,
        help="seconds without heartbeats before a node is declared dead",
    )
    s.add_argument(
        "--encrypt",
        action="store_true",
        help="encrypt every connection with CurveZMQ (for untrusted networks)",
    )
    s.add_argument("--no-dashboard", action="store_true", help="serve no dashboard")
    s.add_argument(
        "--dashboard-host",
        default="127.0.0.1",
        help="address the dashboard listens on (default loopback; 0.0.0.0: every interface)",
    )
    s.add_argument(
        "--dashboard-port",
        type=int,
        default=8265,
        help="the dashboard's port (default 8265, or the next free one)",
    )
    s.set_defaults(fn=cmd_start)
    t = sub.add_parser("status", help="show the cluster's nodes")
    t.add_argument("cluster_file", nargs="?", help="a cluster file: each host's state, then")
    t.add_argument("--address")
    t.add_argument("--token")
    t.add_argument("--token-file")
    t.add_argument("--encrypt", action="store_true")
    t.set_defaults(fn=cmd_status)
    db = sub.add_parser("dashboard", help="open the dashboard of the head started here")
    db.add_argument("panel", nargs="?", help="one panel: overview, stream, tasks, actors...")
    db.add_argument("--print", action="store_true", help="print the link instead")
    db.set_defaults(fn=cmd_dashboard)
    st = sub.add_parser("stop", help="stop the kit daemons started on this host")
    st.set_defaults(fn=cmd_stop)
    u = sub.add_parser("up", help="start (or repair) the cluster a cluster file describes")
    u.add_argument("cluster_file")
    u.add_argument("--restart", action="store_true", help="restart what runs already")
    u.add_argument("--no-setup", action="store_true", help="skip the files and setup steps")
    u.set_defaults(fn=_from_up("cmd_up"))
    dn = sub.add_parser("down", help="stop every kit process of a cluster file, on every host")
    dn.add_argument("cluster_file")
    dn.set_defaults(fn=_from_up("cmd_down"))
    ex = sub.add_parser("exec", help="run a command on the hosts of a cluster file")
    ex.add_argument("cluster_file")
    ex.add_argument("--host", help="only this host (default: the head)")
    ex.add_argument("--all", action="store_true", help="every host of the file")
    ex.add_argument("command", nargs=argparse.REMAINDER, help="after --: the command")
    ex.set_defaults(fn=_from_up("cmd_exec"))
    return p


def main(argv=None) -> int:
    """Entry point of the ``kit`` console script.

    Example:
        $ kit start --head --num-cpus 2
        $ kit up cluster.yaml
        $ kit status
        $ kit stop
    """
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except KitError as e:
        print(f"kit: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
