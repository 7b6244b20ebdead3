"""Kill drivers and restart kernels again and again; nothing of kit may survive any of it.

    python scripts/hygiene.py [--rounds 20] [--short]

Each round starts a driver with a cluster, shared memory in use and tasks
running, SIGKILLs it (or restarts the Jupyter kernel that is its driver), and
checks 5 s later that none of its processes and none of its shared-memory files
is left. Prints the figures as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import psutil

DRIVER = r"""
import time, numpy as np, kit
kit.init(num_cpus=2)
@kit.remote
def f(x):
    time.sleep(x)
    return x
ref = kit.put(np.ones(2 << 20))
kit.get([f.remote(0.05) for _ in range(4)])
print(kit.api._current_client().cluster, flush=True)
slow = [f.remote(60) for _ in range(2)]
time.sleep(60)
"""

KERNEL_CELL = r"""
import numpy as np, kit
kit.init(num_cpus=2)
ref = kit.put(np.ones(2 << 20))
@kit.remote
def f(x):
    import time; time.sleep(x)
slow = [f.remote(60) for _ in range(2)]
print(kit.api._current_client().cluster)
"""


def leftovers(cluster, pids):
    alive = [
        p
        for p in pids
        if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
    ]
    shm = [f for f in os.listdir("/dev/shm") if f.startswith(f"kit_{cluster}_")]
    return alive, shm


def kill_driver_round():
    p = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True)
    cluster = p.stdout.readline().strip()
    pids = [c.pid for c in psutil.Process(p.pid).children(recursive=True)]
    p.send_signal(signal.SIGKILL)
    p.wait()
    time.sleep(5)
    return cluster, pids, leftovers(cluster, pids)


def restart_kernel_rounds(n):
    from jupyter_client import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    out = []
    try:
        for _ in range(n):
            kc = km.client()
            kc.start_channels()
            kc.wait_for_ready(timeout=60)
            cluster = None
            msg_id = kc.execute(KERNEL_CELL)
            deadline = time.time() + 60
            while time.time() < deadline:
                msg = kc.get_iopub_msg(timeout=60)
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "stream":
                    cluster = msg["content"]["text"].strip().splitlines()[-1]
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    break
            kc.stop_channels()
            kernel_pid = km.provisioner.pid if km.provisioner else None
            pids = [c.pid for c in psutil.Process(kernel_pid).children(recursive=True)]
            km.restart_kernel(now=True)
            time.sleep(5)
            out.append((cluster, pids, leftovers(cluster, pids)))
    finally:
        km.shutdown_kernel(now=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--short", action="store_true", help="3 rounds of each (for the tests)")
    args = ap.parse_args(argv)
    n = 3 if args.short else args.rounds
    results = [kill_driver_round() for _ in range(n)]
    results += restart_kernel_rounds(n)
    procs_left = sum(len(r[2][0]) for r in results)
    shm_left = sum(len(r[2][1]) for r in results)
    out = {
        "driver_kills": n,
        "kernel_restarts": n,
        "processes_checked": sum(len(r[1]) for r in results),
        "processes_left": procs_left,
        "shm_files_left": shm_left,
        "clusters_seen": sum(1 for r in results if r[0]),
    }
    print(json.dumps(out))
    return 0 if procs_left == 0 and shm_left == 0 and out["clusters_seen"] == 2 * n else 1


if __name__ == "__main__":
    sys.exit(main())
