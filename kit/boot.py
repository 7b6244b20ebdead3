"""The first process of a cluster: it becomes the head and forks the node agents.

    driver ── spawn `python -m kit.boot`, config on stdin ──▶ boot
    boot: fork the node agents (no zmq yet) ─ bind the head's sockets ─ serve
    node agents reach the head over an ipc:// path chosen before the fork,
        <runtime dir>/<cluster>.sock (this uid's private directory, kit/paths.py)
    boot ── one JSON line {"address", "cluster"} on stdout ──▶ driver
    boot: serve as the head until stdin closes (the driver exited) or shutdown

Started by ``kit.init()`` (watching the driver through stdin, so a driver
killed with SIGKILL takes its cluster with it) and by ``kit start --head``
(``--daemon-head``: a daemon that stays until ``kit stop``). ``--daemon-node``
runs a node agent alone, joining a head elsewhere (``kit start --address``);
``--node``, one an autoscaler started on its host (it dies with the autoscaler). A
cluster with ``autoscale`` in its config has the head fork the autoscaler too.
"""

from __future__ import annotations

import json
import os
import signal
import sys


def node_configs(cfg, address, cluster):
    """One node agent config per node of a local cluster."""
    out = []
    for i in range(cfg.get("num_nodes", 1)):
        out.append(node_config(cfg, address, cluster, f"n{i}"))
    return out


def node_config(cfg, address, cluster, tag):
    res = {"CPU": float(cfg["num_cpus"])}
    if cfg.get("num_gpus"):
        res["GPU"] = float(cfg["num_gpus"])
    res.update({k: float(v) for k, v in (cfg.get("resources") or {}).items()})
    res.setdefault("memory", float(cfg.get("memory") or _memory()))
    return {
        "address": address,
        "token": cfg["token"],
        "cluster": cluster,
        "node_id": os.urandom(8),
        "tag": tag,
        "resources": res,
        "prestart": int(cfg["num_cpus"]),
        "node_ip": cfg.get("node_ip", "127.0.0.1"),
        "object_store_memory": cfg.get("object_store_memory") or 0,
        "sys_path": cfg.get("sys_path") or [],
        "cwd": cfg.get("cwd"),
        "daemon": cfg.get("daemon", False),
        "encrypt": bool(cfg.get("encrypt")),
        "preload": cfg.get("preload"),  # None: the zygote's default (kit.spawner)
    }


def _memory() -> int:
    """The ``memory`` resource a node offers, in bytes (Ray's: what tasks and actors ask
    with ``memory=``): 70% of the machine's memory available when the node starts."""
    import psutil

    return int(psutil.virtual_memory().available * 0.7)


def run(cfg, watch_fd=None, ready=None):
    """Start the head and local node agents; serve until told to stop."""
    from . import paths
    from .spawner import fork_child

    cluster = f"{os.getpid()}x{os.urandom(3).hex()}"
    local = f"ipc://{os.path.join(paths.runtime_dir(), cluster)}.sock"
    children = {}
    # Fork before this process makes any zmq context; the agents connect to the
    # ipc path and zmq retries until the head binds it a moment later.
    for ncfg in node_configs(cfg, local, cluster):
        pid = fork_child("kit.node:main", (ncfg,), deathsig=signal.SIGTERM)
        children[pid] = ncfg["node_id"]
    dashboard, dashboard_pid = _start_dashboard(cfg, local)
    scaler_pid = _start_autoscaler(cfg, local, cluster)
    from .head import Head

    bind = f"tcp://{cfg.get('bind', '127.0.0.1')}:{cfg.get('port', 0)}"
    head = Head(
        cfg["token"].encode(),
        bind,
        cluster,
        watch_fd=watch_fd,
        node_timeout=float(os.environ.get("KIT_NODE_TIMEOUT") or cfg.get("node_timeout", 8.0)),
        children=children,
        encrypt=bool(cfg.get("encrypt")),
        also_bind=local,
    )
    head.probe.url = dashboard
    signal.signal(signal.SIGTERM, lambda *a: head.request_stop())
    if ready is not None:
        info = {"address": head.address, "cluster": cluster, "pid": os.getpid()}
        ready(dict(info, dashboard=dashboard))
    try:
        head.serve()
    finally:
        for pid in [*children, *(p for p in (dashboard_pid, scaler_pid) if p)]:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        from . import object_store

        object_store.sweep(f"kit_{cluster}_")
        try:
            os.unlink(local[len("ipc://") :])
        except OSError:
            pass


def _start_dashboard(cfg, head):
    """Bind the dashboard's port and fork it (unless told not to): ``(url, pid)``, or Nones.

    A port that cannot be bound does not stop the cluster: it starts without one and
    says why on stderr."""
    if not cfg.get("dashboard", True) or os.environ.get("KIT_DASHBOARD", "1") == "0":
        return None, None
    from .dashboard import launch

    host = cfg.get("dashboard_host") or "127.0.0.1"
    port = cfg.get("dashboard_port")
    try:
        sock = launch.bind(host, launch.DEFAULT_PORT if port is None else int(port))
    except OSError as e:
        sys.stderr.write(f"kit: no dashboard: {e}\n")
        return None, None
    url = launch.url_of(sock, host, cfg.get("node_ip", "127.0.0.1"))
    return url, launch.start(cfg, head, sock)


def _start_autoscaler(cfg, head, cluster):
    """Fork the autoscaler (``kit/autoscaler.py``) if the cluster has one; its pid, or None.

    Forked before the head's zmq context, like the node agents; it reaches the head over
    the ipc path, starts local nodes as this cluster's next ones (n1, n2...) and gives the
    ssh provider's pool the head's address on the network."""
    auto = cfg.get("autoscale")
    if not auto:
        return None
    from .spawner import fork_child

    keys = ("num_cpus", "num_gpus", "resources", "object_store_memory", "sys_path", "cwd",
            "encrypt", "preload", "node_ip")  # fmt: skip
    node = {k: cfg[k] for k in keys if cfg.get(k) is not None}
    if auto.get("cpus"):
        node["num_cpus"] = auto["cpus"]
    acfg = dict(
        auto, head=head, token=cfg["token"], encrypt=bool(cfg.get("encrypt")), cluster=cluster,
        node=node, first_tag=cfg.get("num_nodes", 1),
        address=f"{cfg.get('bind', '127.0.0.1')}:{cfg.get('port', 0)}",
    )  # fmt: skip
    return fork_child("kit.autoscaler:main", (acfg,), deathsig=signal.SIGTERM)


def _ready_line(info):
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()


def _detach(log_path):
    """After the ready line: stdout and stderr go to a log file, stdin is closed."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)


def main():
    cfg = json.loads(sys.stdin.readline())
    mode = sys.argv[1] if len(sys.argv) > 1 else "--local"
    if mode == "--local":
        run(cfg, watch_fd=sys.stdin.fileno(), ready=_ready_line)
    elif mode == "--daemon-head":
        cfg["daemon"] = True

        def ready(info):
            _ready_line(info)
            _detach(cfg["log"])

        run(cfg, watch_fd=None, ready=ready)
    elif mode == "--node":  # an autoscaler's local node: it dies with the autoscaler
        from . import node

        node.main(node_config(cfg, cfg["address"], cfg.get("cluster"), cfg["tag"]))
    elif mode == "--daemon-node":
        from . import node

        ncfg = node_config(cfg, cfg["address"], cfg["cluster"], cfg["tag"])
        ncfg["daemon"] = True
        _ready_line({"pid": os.getpid(), "node_id": ncfg["node_id"].hex()})
        _detach(cfg["log"])

        def joined(agent):
            print(f"node {agent.nid.hex()} joined cluster {agent.cluster}", flush=True)

        from .errors import KitError

        try:
            node.main(ncfg, ready=joined)
        except KitError as e:
            print(f"{type(e).__name__}: {e}", flush=True)
            sys.exit(1)


if __name__ == "__main__":
    main()
