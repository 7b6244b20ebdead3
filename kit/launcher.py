"""Starting and stopping a local cluster from a driver.

``start_local`` spawns ``python -m kit.boot`` in its own session with a pipe on
its stdin. The driver never writes to that pipe after the config line; when
the driver exits for any reason, even SIGKILL, the pipe closes and the head
shuts the whole cluster down (node agents stop their workers and unlink their
shared memory). ``LocalCluster.stop`` does the same on purpose, then makes
sure by killing the process group.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time

from . import object_store, paths, spawner
from .errors import KitError


class LocalCluster:
    def __init__(self, proc, address, cluster, token, dashboard=None):
        self.proc = proc
        self.address = address
        self.cluster = cluster
        self.token = token
        self.dashboard = dashboard  # the dashboard's URL (without a token), or None

    def stop(self, timeout: float = 5.0):
        proc = self.proc
        if proc.poll() is None:
            try:
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(1.0)
        except subprocess.TimeoutExpired:
            pass
        for f in (proc.stdout, proc.stderr):
            try:
                f and f.close()
            except OSError:
                pass
        object_store.sweep(f"kit_{self.cluster}_")


def driver_paths() -> list:
    """The driver's import path, so workers import what the driver imports (as Ray does)."""
    return [os.path.abspath(p) if p else os.getcwd() for p in sys.path]


def start_local(
    num_cpus,
    num_nodes=1,
    resources=None,
    num_gpus=0,
    object_store_memory=None,
    token=None,
    timeout: float = 30.0,
    encrypt: bool = False,
    dashboard: dict | None = None,
    autoscale: dict | None = None,
) -> LocalCluster:
    """Start a head and ``num_nodes`` node agents on loopback; return once the head serves.

    ``autoscale`` (``min_nodes``, ``max_nodes``, ``idle_timeout``, ``wait``) has the head
    fork an autoscaler that adds local node agents under load (``kit/autoscaler.py``).

    Raises:
        UnsafePathError: kit's runtime or spill directory here is not this uid's own
            (checked before anything starts; see ``kit/paths.py``).
    """
    paths.runtime_dir()
    paths.spill_dir()
    object_store.sweep_dead_clusters()
    token = token or secrets.token_hex(16)
    cfg = {
        "token": token,
        "num_cpus": num_cpus,
        "num_nodes": num_nodes,
        "resources": resources or {},
        "num_gpus": num_gpus,
        "object_store_memory": object_store_memory,
        "bind": "127.0.0.1",
        "sys_path": driver_paths(),
        "cwd": os.getcwd(),
        "encrypt": encrypt,
        "preload": spawner.driver_preload(),  # what the workers import before forking
        **(dashboard or {}),  # dashboard, dashboard_host, dashboard_port (kit/dashboard)
        "autoscale": dict(autoscale, provider="local") if autoscale else None,
    }
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "kit.boot"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=None,
        start_new_session=True,
        env=env,
        close_fds=True,
    )
    proc.stdin.write((json.dumps(cfg) + "\n").encode())
    proc.stdin.flush()
    deadline = time.time() + timeout
    line = b""
    import select

    while time.time() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], 0.1)
        if r:
            line = proc.stdout.readline()
            break
        if proc.poll() is not None:
            break
    if not line:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        raise KitError(
            "the local cluster did not start (see the error above); "
            "check that pyzmq and cloudpickle are installed"
        )
    info = json.loads(line)
    return LocalCluster(proc, info["address"], info["cluster"], token, info.get("dashboard"))
