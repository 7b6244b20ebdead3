"""What ``kit up`` runs on each host: ``python -m kit.hostctl OP``, a JSON request on stdin,
one JSON answer on stdout.

    launcher ── ssh host 'python -m kit.hostctl start_node' ──▶ hostctl (on the host)
             ── stdin: {"state_dir", "token", "address", "cpus", ...} ──▶ kit start (daemon)
             ◀── stdout: {"ok": true, "node_id": ...}  or  {"ok": false, "error": "..."}

Ops: ``probe`` (kit's and Python's versions; the head and nodes running for this state
directory), ``start_head``, ``start_node``, ``stop`` (every daemon of the state directory,
then the directory itself: nothing stays), ``stop_nodes`` (some nodes, by tag: the
autoscaler's removals). The token comes on stdin and goes to the daemon through its
config pipe (``kit/cli.py``): never a command line, never a file others can read. The
state directory (one per cluster and host, ``~/.kit/clusters/<name>/<host>``: hosts that
share a home directory over NFS do not mix their state) is made 0700.
"""

from __future__ import annotations

import json
import os
import shutil
import sys


def _state(req, create=True) -> str:
    """This cluster's state folder on this host (made 0700), set as kit's state dir."""
    from .paths import private_dirs

    path = os.path.expanduser(req["state_dir"])
    os.environ["KIT_STATE_DIR"] = path
    if create:
        private_dirs(path, "remove it; kit up makes it again")
    return path


def _args(req, *argv):
    from .cli import parser

    args = parser().parse_args(["start", *argv])
    args.token = req.get("token")
    args.num_cpus = req.get("cpus")
    args.node_ip_address = req.get("node_ip")
    if req.get("resources"):
        args.resources = json.dumps(req["resources"])
    return args


def probe(req) -> dict:
    """Versions, and which of this state directory's daemons run."""
    import glob

    from . import process
    from .protocol import KIT_VERSION, PY_VERSION

    path = _state(req, create=False)
    head = None
    try:
        with open(os.path.join(path, "head.json")) as f:
            st = json.load(f)
        head = {"address": st["address"], "alive": process.alive(st["pid"])}
        if req.get("with_token"):
            head["token"] = st["token"]
    except (OSError, ValueError, KeyError):
        pass
    nodes = []
    for name in sorted(glob.glob(os.path.join(path, "node-*.json"))):
        try:
            with open(name) as f:
                st = json.load(f)
            nodes.append(
                {"tag": st.get("tag"), "address": st["address"], "alive": process.alive(st["pid"])}
            )
        except (OSError, ValueError, KeyError):
            pass
    return {"kit": KIT_VERSION, "python": PY_VERSION, "head": head, "nodes": nodes}


def start_head(req) -> dict:
    from .cli import start_head as start

    path = _state(req)
    argv = ["--head", "--port", str(req.get("port", 6380))]
    if not req.get("dashboard", True):
        argv.append("--no-dashboard")
    args = _args(req, *argv)
    auto = req.get("autoscale")
    if auto and auto.get("key"):
        key = os.path.join(path, "autoscale_key")  # the ssh provider's key, 0600
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(auto["key"])
        known = os.path.join(path, "known_hosts")
        fd = os.open(known, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(auto.get("known_hosts", ""))
        auto = dict(auto, key=key, known_hosts=known)
    args.autoscale = auto
    st = start(args)
    return {"address": st["address"], "dashboard": st.get("dashboard")}


def start_node(req) -> dict:
    from .cli import start_node as start

    _state(req)
    args = _args(req, "--address", req["address"])
    args.tag = req.get("tag")
    st = start(args)
    return {"node_id": st["node_id"], "tag": st["tag"]}


def stop(req) -> dict:
    from .cli import stop_all

    path = _state(req, create=False)
    if not os.path.isdir(path):
        return {"stopped": 0}
    n = stop_all()
    shutil.rmtree(path, ignore_errors=True)
    parent = os.path.dirname(path)
    try:
        os.rmdir(parent)  # the cluster's folder, once its last host here is gone
    except OSError:
        pass
    return {"stopped": n}


def stop_nodes(req) -> dict:
    from .cli import stop_all

    _state(req)
    tags = req["tags"]
    n = stop_all(tags)
    for t in tags:
        try:
            os.unlink(os.path.join(os.environ["KIT_STATE_DIR"], f"node-{t}.log"))
        except OSError:
            pass
    return {"stopped": n}


OPS = {f.__name__: f for f in (probe, start_head, start_node, stop, stop_nodes)}


def main() -> int:
    op = sys.argv[1] if len(sys.argv) > 1 else ""
    if op not in OPS:
        print(json.dumps({"ok": False, "error": f"unknown op {op!r}"}))
        return 2
    req = json.loads(sys.stdin.readline() or "{}")
    from .errors import KitError

    try:
        ans = OPS[op](req)
    except (KitError, OSError) as e:
        ans = {"ok": False, "error": str(e)}
    except SystemExit as e:  # the kit CLI's usage errors
        ans = {"ok": False, "error": str(e.code)}
    else:
        ans = dict(ans, ok=True)
    sys.stdout.write("\n" + json.dumps(ans) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
