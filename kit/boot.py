"""The first process of a cluster: it becomes the head and forks the node agents.

    driver ── spawn `python -m kit.boot`, config on stdin ──▶ boot
    boot: fork zygote (no zmq yet) ─ bind head socket ─ zygote forks node agents
    boot ── one JSON line {"address", "cluster"} on stdout ──▶ driver
    boot: serve as the head until stdin closes (the driver exited) or shutdown

Started by ``kit.init()`` (watching the driver through stdin, so a driver
killed with SIGKILL takes its cluster with it) and by ``kit start --head``
(as a daemon that stays until ``kit stop``).
"""

from __future__ import annotations

import json
import os
import sys


def node_configs(cfg, address, cluster):
    """One node agent config per node of a local cluster."""
    out = []
    for i in range(cfg.get("num_nodes", 1)):
        res = {"CPU": float(cfg["num_cpus"])}
        if cfg.get("num_gpus"):
            res["GPU"] = float(cfg["num_gpus"])
        res.update({k: float(v) for k, v in (cfg.get("resources") or {}).items()})
        out.append({
            "address": address, "token": cfg["token"], "cluster": cluster,
            "node_id": os.urandom(8), "tag": f"n{i}", "resources": res,
            "prestart": int(cfg["num_cpus"]), "node_ip": cfg.get("node_ip", "127.0.0.1"),
            "object_store_memory": cfg.get("object_store_memory") or 0,
            "sys_path": cfg.get("sys_path") or [], "cwd": cfg.get("cwd"),
        })
    return out


def run(cfg, watch_fd=None, ready=None):
    """Start the head and local node agents; serve until told to stop."""
    from .spawner import Zygote
    zygote = Zygote()
    from .head import Head
    cluster = f"{os.getpid()}x{os.urandom(3).hex()}"
    bind = f"tcp://{cfg.get('bind', '127.0.0.1')}:{cfg.get('port', 0)}"
    head = Head(cfg["token"].encode(), bind, cluster, watch_fd=watch_fd,
                node_timeout=cfg.get("node_timeout", 10.0))
    for i, ncfg in enumerate(node_configs(cfg, head.address, cluster)):
        zygote.fork(i, "kit.node:main", ncfg)
    if ready is not None:
        ready({"address": head.address, "cluster": cluster, "pid": os.getpid()})
    try:
        head.serve()
    finally:
        zygote.close()
        from . import object_store
        object_store.sweep(f"kit_{cluster}_")


def main():
    cfg = json.loads(sys.stdin.readline())

    def ready(info):
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()

    run(cfg, watch_fd=sys.stdin.fileno(), ready=ready)


if __name__ == "__main__":
    main()
