"""Fixtures: real local clusters, bounded in time, checked for leftovers."""

import os
import time

import psutil
import pytest

import kit


def kit_children():
    return [
        p
        for p in psutil.Process().children(recursive=True)
        if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    ]


def shm_files(prefix="kit_"):
    return [f for f in os.listdir("/dev/shm") if f.startswith(prefix)]


def wait_gone(timeout=5.0):
    """Wait until this process has no live child processes; return those left."""
    deadline = time.time() + timeout
    left = kit_children()
    while left and time.time() < deadline:
        time.sleep(0.05)
        left = kit_children()
    return left


def _check_clean(cluster_id):
    left = wait_gone()
    assert not left, f"processes left after shutdown: {[p.cmdline() for p in left]}"
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
