"""``ray._private.test_utils``: the helpers of it that Ray's tests of the core API use.

``wait_for_condition`` (also in ``ray._common.test_utils``), ``wait_for_pid_to_exit``,
``run_string_as_driver`` / ``run_string_as_driver_nonblocking`` (the script runs with
``python -m kit.ray -``, so its ``import ray`` is kit too), ``BatchQueue``,
``client_test_enabled`` (False: kit has no Ray Client), ``generate_system_config_map``,
and ``SignalActor``, ``Semaphore`` and ``wait_for_condition``, which Ray kept here before
2.60 moved them to ``ray._common.test_utils`` (the same objects).

Example:
    >>> from kit.ray._private.test_utils import run_string_as_driver
    >>> run_string_as_driver("import ray; print(ray.__name__)").strip()
    'kit.ray'
"""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from .._common.test_utils import Semaphore, SignalActor, wait_for_condition
from ..util.queue import Queue

DRIVER = [sys.executable, "-m", "kit.ray", "-"]


def client_test_enabled() -> bool:
    """Whether the tests run through Ray Client: never on kit."""
    return False


def generate_system_config_map(**kwargs) -> dict:
    """Ray's internal settings for a test cluster; kit takes none, so they are dropped."""
    return {"_system_config": kwargs}


def wait_for_pid_to_exit(pid: int, timeout: float = 20) -> None:
    """Wait until process ``pid`` has exited; ``TimeoutError`` after ``timeout`` seconds."""
    try:
        psutil.Process(pid).wait(timeout)
    except psutil.NoSuchProcess:
        return
    except psutil.TimeoutExpired:
        raise TimeoutError(f"process {pid} was still running after {timeout} s") from None


def run_string_as_driver(driver_script: str, env: dict | None = None, encode="utf-8") -> str:
    """Run ``driver_script`` as a new driver process; return its output (stdout, stderr).

    Raises:
        subprocess.CalledProcessError: it exited with a non-zero code.
    """
    proc = subprocess.run(
        DRIVER,
        input=driver_script.encode(encode),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        timeout=600,
    )
    out = proc.stdout.decode(encode)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, DRIVER, out)
    return out


def run_string_as_driver_nonblocking(driver_script: str, env: dict | None = None):
    """Start ``driver_script`` as a new driver process; return its ``Popen`` (pipes)."""
    proc = subprocess.Popen(
        DRIVER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdin is not None
    proc.stdin.write(driver_script.encode("utf-8"))
    proc.stdin.close()
    return proc


class BatchQueue(Queue):
    """A ``Queue`` with ``get_batch``: waits for a first item (``first_timeout``; None:
    as long as it takes), then takes up to ``batch_size`` items within ``total_timeout``
    seconds (0: those already there)."""

    def get_batch(self, batch_size=None, total_timeout=None, first_timeout=None) -> list:
        try:
            out = [self.get(timeout=first_timeout)]
        except Exception:
            return []
        deadline = None if total_timeout is None else time.monotonic() + total_timeout
        while batch_size is None or len(out) < batch_size:
            left = None if deadline is None else deadline - time.monotonic()
            try:
                if left is not None and left <= 0:
                    out.append(self.get_nowait())
                else:
                    out.append(self.get(timeout=left))
            except Exception:
                break
        return out


__all__ = [
    "BatchQueue",
    "Semaphore",
    "SignalActor",
    "client_test_enabled",
    "generate_system_config_map",
    "run_string_as_driver",
    "run_string_as_driver_nonblocking",
    "wait_for_condition",
    "wait_for_pid_to_exit",
]
