"""Process hygiene: nothing outlives shutdown, or a driver killed with SIGKILL."""

import os
import signal
import subprocess
import sys
import time

import psutil

DRIVER = r"""
import sys, time, numpy as np, kit
kit.init(num_cpus=2)
@kit.remote
def f(x):
    time.sleep(x)
    return x
ref = kit.put(np.ones(4 << 20))
refs = [f.remote(0.2) for _ in range(4)]
kit.get(refs)
print(kit.api._current_client().cluster, flush=True)
slow = [f.remote(60) for _ in range(2)]
time.sleep(60)
"""


def descendants(pid):
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_sigkill_driver_leaves_no_process_or_shared_memory():
    for _ in range(2):
        p = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True)
        try:
            cluster = p.stdout.readline().strip()
            assert cluster, "driver did not start its cluster"
            kids = descendants(p.pid)
            assert len(kids) >= 4   # head, zygotes, node agent, workers
            assert any(f.startswith(f"kit_{cluster}_") for f in os.listdir("/dev/shm"))
            p.send_signal(signal.SIGKILL)
            p.wait(10)
            gone, alive = psutil.wait_procs(kids, timeout=5)
            assert not alive, f"left running 5 s after SIGKILL: {[a.pid for a in alive]}"
            left = [f for f in os.listdir("/dev/shm") if f.startswith(f"kit_{cluster}_")]
            assert not left, f"shared memory left: {left}"
        finally:
            if p.poll() is None:
                p.kill()
            for k in descendants(p.pid):
                k.kill()


def test_shutdown_and_exit_leave_nothing():
    code = ("import kit, numpy as np\n"
            "kit.init(num_cpus=2)\n"
            "r = kit.put(np.ones(1 << 20))\n"
            "print(kit.api._current_client().cluster)\n")  # exits without shutdown(): atexit
    t = time.time()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    cluster = out.stdout.strip()
    assert time.time() - t < 30
    time.sleep(0.5)
    assert not [f for f in os.listdir("/dev/shm") if f.startswith(f"kit_{cluster}_")]
    head_pid = int(cluster.split("x")[0])     # a cluster's id starts with its head's pid
    assert not psutil.pid_exists(head_pid) or \
        psutil.Process(head_pid).status() == psutil.STATUS_ZOMBIE


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
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert "crashed:" in out.stdout and "exited with code 3" in out.stdout, out.stderr
    assert "still serving" in out.stdout
