"""Process hygiene: nothing outlives shutdown or interpreter exit; a crashed worker is
reported. (Drivers killed with SIGKILL and kernel restarts: scripts/hygiene.py, run by
test_faults.py.)"""

import os
import subprocess
import sys
import time

import psutil
import pytest
from helpers import wait_until

import kit

pytestmark = pytest.mark.cluster


def test_shutdown_and_exit_leave_nothing():
    code = (
        "import kit, numpy as np\n"
        "kit.init(num_cpus=2)\n"
        "r = kit.put(np.ones(1 << 20))\n"
        "print(kit.api._current_client().cluster)\n"
    )  # exits without shutdown(): atexit
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    cluster = out.stdout.strip()
    head_pid = int(cluster.split("x")[0])  # a cluster's id starts with its head's pid

    def shm_left():
        return [f for f in os.listdir("/dev/shm") if f.startswith(f"kit_{cluster}_")]

    def head_gone():
        try:
            return psutil.Process(head_pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_until(lambda: not shm_left(), 10, lambda: f"shared memory freed: {shm_left()}")
    wait_until(head_gone, 10, f"the head (pid {head_pid}) to exit")


def test_worker_crash_is_retried_then_reported():
    code = r"""
import os, kit
kit.init(num_cpus=2)
@kit.remote(max_retries=2)
def die():
    os._exit(3)
try:
    kit.get(die.remote(), timeout=30)
except kit.WorkerCrashedError as e:
    print("crashed:", e)
@kit.remote
def ok():
    return "still serving"
print(kit.get(ok.remote(), timeout=30))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "crashed:" in out.stdout and "exited with code 3" in out.stdout, out.stderr
    assert "still serving" in out.stdout


def test_fresh_workers_have_numpy_when_the_driver_uses_it(fresh):
    """The zygote preloads numpy for a driver that imported it: a fresh worker's first
    task finds it loaded (kit/spawner.py: preload). A driver without numpy does not make
    every worker pay for it."""
    import numpy  # noqa: F401  (the driver uses numpy)

    fresh(num_cpus=2)

    @kit.remote
    def loaded():
        return "numpy" in sys.modules

    assert kit.get([loaded.remote() for _ in range(2)]) == [True, True]
    code = (
        "import sys, kit\n"
        "kit.init(num_cpus=1)\n"
        "f = kit.remote(lambda: 'numpy' in sys.modules)\n"
        "print(kit.get(f.remote()), 'numpy' in sys.modules)\n"
        "kit.shutdown()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stdout + out.stderr


@pytest.mark.timeout(60)
def test_a_driver_that_leaves_gives_its_workers_back_alive(fresh):
    """A driver's idle leased workers go back to the head when it shuts down: the next
    driver finds them warm (they were killed with the driver, and its node had none)."""
    ctx = fresh(num_cpus=2)
    code = (
        "import os, kit\n"
        f"kit.init(address={ctx.address_info['address']!r}, token={ctx.token!r})\n"
        "f = kit.remote(lambda i: os.getpid())\n"
        "print(*sorted(set(kit.get([f.remote(i) for i in range(200)]))))\n"
        "kit.shutdown()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    used = {int(p) for p in out.stdout.split()}
    workers = kit.api._current_client().query("dashboard", 0)["workers"]
    assert used and used <= {w["pid"] for w in workers}  # still there, and still kit's
    assert all(psutil.pid_exists(p) for p in used)


def test_a_zygote_asked_for_many_forks_at_once_never_blocks_its_parent():
    """A node agent asks its zygote for forks faster than it forks: the commands wait in
    the agent (``queue=True``), which goes on reading the zygote's events. Writing them
    blocked the agent once the pipe was full, while the zygote blocked on its events
    pipe that the agent was not reading: after ~1,500 actors asked at once both waited
    forever and the silent node was declared dead."""
    import select

    from kit.spawner import Zygote

    z = Zygote([], queue=True)
    n = 1500
    payload = "x" * 4000  # a command the size of a worker's: the pipe holds ~16
    try:
        for i in range(n):
            z.fork(i, "builtins:len", payload)  # returns at once, whatever the zygote does
        assert z.pending  # most wait here: the zygote has not taken them yet
        started = set()
        deadline = time.monotonic() + 120
        while len(started) < n and time.monotonic() < deadline:
            writers = [z.cmd] if z.pending else []
            readable, writable, _ = select.select([z.ev], writers, [], 1.0)
            if writable:
                z.flush()
            if readable:
                started.update(ev[1] for ev in z.events() if ev[0] == "started")
        assert len(started) == n and not z.pending
    finally:
        z.close()
