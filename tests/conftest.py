"""Fixtures: real local clusters, bounded in time, checked for leftovers; the test tiers."""

import os

import psutil
import pytest
from helpers import wait_until

import kit

# Every test carries exactly one tier marker (registered in pyproject.toml).
TIERS = ("fast", "cluster", "kernel", "engines", "browser")


@pytest.hookimpl(tryfirst=True)  # before -m deselects: every collected test is checked
def pytest_collection_modifyitems(config, items):
    wrong = []
    for item in items:
        tiers = sorted({m.name for m in item.iter_markers() if m.name in TIERS})
        if len(tiers) != 1:
            wrong.append(f"  {item.nodeid}: {', '.join(tiers) or 'no tier'}")
    if wrong:
        raise pytest.UsageError(
            f"{len(wrong)} test(s) without exactly one tier marker ({', '.join(TIERS)}). "
            "Set `pytestmark = pytest.mark.<tier>` at the top of the module, or mark the "
            "test (the tiers are listed in pyproject.toml and the README):\n" + "\n".join(wrong)
        )


def kit_children():
    """This process's live descendants (zombies and those that just went are not counted)."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            pass
    return out


def shm_files(prefix="kit_"):
    return [f for f in os.listdir("/dev/shm") if f.startswith(prefix)]


def _cmdlines(procs):
    out = []
    for p in procs:
        try:
            out.append(" ".join(p.cmdline())[:120])
        except psutil.Error:
            out.append(f"pid {p.pid} (gone)")
    return out


def wait_gone(timeout=5.0, what="processes left"):
    """Wait until this process has no live child process; fail naming those left."""
    __tracebackhide__ = True
    left = []

    def none_left():
        left[:] = kit_children()
        return not left

    wait_until(none_left, timeout, lambda: f"no child process; {what}: {_cmdlines(left)}")


def _check_clean(cluster_id):
    wait_gone(5.0, "processes left after shutdown")
    if cluster_id:
        assert not shm_files(f"kit_{cluster_id}_"), "shared memory left after shutdown"


@pytest.fixture(scope="module")
def _module_cluster():
    yield
    if kit.is_initialized():
        cluster_id = kit.api._state["client"].cluster
        kit.shutdown()
        _check_clean(cluster_id)


@pytest.fixture
def cluster(_module_cluster):
    """A 2-slot local cluster shared by a module's tests; torn down and checked after."""
    if not kit.is_initialized():
        kit.init(num_cpus=2)
    return kit.api._state["ctx"]


@pytest.fixture
def fresh():
    """A fresh cluster per test (for tests that break things); yields a function to start it."""
    if kit.is_initialized():
        kit.shutdown()
    started = []

    def start(**kw):
        ctx = kit.init(**kw)
        started.append(ctx)
        return ctx

    yield start
    cluster_id = kit.api._state["client"].cluster if kit.is_initialized() else None
    kit.shutdown()
    _check_clean(cluster_id)
