"""Faults: dead workers, retries on application errors, the memory monitor."""

import os
import time

import psutil
import pytest

import kit


@kit.remote(max_retries=1)
def dies_on_first_try(marker, how, always=False):
    """Dies (``how``) on its first try, or on every try with ``always``; else its pid."""
    import ctypes
    import signal

    first = not os.path.exists(marker)
    open(marker, "a").close()
    if first or always:
        if how == "exit":
            os._exit(3)
        elif how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        else:
            ctypes.string_at(0)  # reads address 0: a segmentation fault
    return os.getpid()


@pytest.mark.cluster
@pytest.mark.parametrize(
    "how, named", [("exit", "exited with code 3"), ("kill", "SIGKILL"), ("segfault", "SIGSEGV")]
)
def test_dead_worker_retried_then_named(cluster, tmp_path, how, named):
    """os._exit, kill -9 and a segfault: the task runs again; without retries left,
    WorkerCrashedError names the exit code or the signal; the cluster serves on."""
    assert kit.get(dies_on_first_try.remote(str(tmp_path / "m"), how), timeout=60) > 0
    ref = dies_on_first_try.options(max_retries=0).remote(str(tmp_path / "n"), how, True)
    with pytest.raises(kit.WorkerCrashedError, match=named):
        kit.get(ref, timeout=60)
    assert kit.get(dies_on_first_try.remote(str(tmp_path / "m"), how), timeout=60) > 0


@pytest.mark.cluster
def test_retry_exceptions(fresh, tmp_path):
    fresh(num_cpus=1)
    marker = tmp_path / "tries"

    @kit.remote(retry_exceptions=True, max_retries=2)
    def flaky(path):
        n = int(open(path).read()) if os.path.exists(path) else 0
        open(path, "w").write(str(n + 1))
        if n < 2:
            raise ConnectionError(f"try {n}")
        return n

    assert kit.get(flaky.remote(str(marker)), timeout=30) == 2

    @kit.remote(retry_exceptions=[KeyError], max_retries=3)
    def wrong_kind(path):
        open(path, "a").write("x")
        raise ValueError("not retried")

    other = tmp_path / "other"
    with pytest.raises(ValueError):
        kit.get(wrong_kind.remote(str(other)), timeout=30)
    assert other.read_text() == "x"


@pytest.mark.cluster
def test_memory_monitor_kills_the_hungry_worker(fresh, monkeypatch):
    vm = psutil.virtual_memory()
    used = 1 - vm.available / vm.total
    threshold = used + (1.5 * 2**30) / vm.total
    if threshold > 0.9:
        pytest.skip("not enough free memory to provoke the monitor safely")
    monkeypatch.setenv("KIT_MEMORY_THRESHOLD", f"{threshold:.4f}")
    fresh(num_cpus=1)

    @kit.remote
    def hog():
        import numpy as np

        chunks = []
        for _ in range(40):  # up to 4 GiB, 100 MiB at a time
            chunks.append(np.ones(100 * 2**20 // 8))
            time.sleep(0.05)  # memory grows step by step: the monitor catches it on the way
        return len(chunks)

    with pytest.raises(kit.OutOfMemoryError, match="memory monitor"):
        kit.get(hog.remote(), timeout=60)

    @kit.remote
    def fine():
        return "ok"

    assert kit.get(fine.remote(), timeout=30) == "ok"


def _script(name, *args):
    import json
    import subprocess
    import sys

    path = os.path.join(os.path.dirname(__file__), "..", "scripts", name)
    out = subprocess.run([sys.executable, path, *args], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.cluster
@pytest.mark.timeout(300)
def test_wire_fuzz_short():
    r = _script("fuzz_wire.py", "--short")
    assert r["processes_alive"] and r["served_after"]
    assert r["head_dropped"] >= r["frames_sent"] // 2 * 0.9


@pytest.mark.cluster
@pytest.mark.timeout(300)
def test_chaos_short():
    r = _script("chaos.py", "--short", "--interval", "0.15")
    assert r["wrong"] == 0 and r["lost"] == 0
    assert r["workers_killed"] > 0 and r["nodes_killed"] == 1
    assert r["rebuilt"] > 0  # results lost with the node were made again


@pytest.mark.cluster
@pytest.mark.timeout(300)
def test_liveness_short():
    """A dead head noticed by the driver, a hung node (SIGSTOP) declared dead and its task
    run elsewhere, with 2 s timeouts (the long run reports the default ones)."""
    r = _script("liveness.py", "--short")
    assert r["hung_node_task_ran_elsewhere"]
    assert r["head_died_noticed_s"]["max"] > 0 and r["hung_node_declared_s"]["max"] > 0
    assert r["head_stopped_noticed_s"]["max"] >= 2  # silence: the timeout, not at once


@pytest.mark.kernel  # it restarts Jupyter kernels too
@pytest.mark.timeout(300)
def test_hygiene_short():
    """SIGKILL the driver, restart a kernel: no process, no shared memory left (3 rounds each)."""
    r = _script("hygiene.py", "--short")
    assert r["processes_left"] == 0 and r["shm_files_left"] == 0
    assert r["clusters_seen"] == 6
