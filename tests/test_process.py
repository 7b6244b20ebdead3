"""kit.process: a process's state read from /proc, on real processes."""

import signal
import subprocess
import sys

import pytest
from helpers import wait_until

from kit import process

pytestmark = pytest.mark.cluster


def test_running_stopped_and_gone():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert process.state(p.pid) == process.RUNNING and process.alive(p.pid)
        p.send_signal(signal.SIGSTOP)
        assert wait_until(lambda: process.state(p.pid) == process.STOPPED, 10)
        assert process.alive(p.pid)  # stopped is not dead
        p.send_signal(signal.SIGCONT)
        assert wait_until(lambda: process.state(p.pid) == process.RUNNING, 10)
        p.kill()
        # a zombie (not yet reaped) is gone already
        assert wait_until(lambda: process.state(p.pid) == process.GONE, 10)
        assert not process.alive(p.pid)
    finally:
        p.kill()
        p.wait(10)
    assert process.state(p.pid) == process.GONE and process.state(None) == process.GONE
