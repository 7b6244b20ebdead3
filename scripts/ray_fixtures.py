"""Ray's test fixtures, for running Ray's own test files unmodified (``-p ray_fixtures``).

Ray's test files use fixtures from Ray's ``conftest.py``, which is not in the wheel. These
are kit's own versions of the ones the selected files use, written against ``import ray``
only, so the same plugin serves both runs of ``scripts/ray_tests.py``: on real Ray, and on
kit through the alias (``python -m kit.ray -m pytest -p ray_fixtures ...``).

    shutdown_only              nothing first; ray.shutdown() after
    ray_start_regular          ray.init(num_cpus=1, **param) (indirect parametrize)
    ray_start_regular_shared   the same, once per module
    ray_start_shared_local_modes  the same (not in local mode)
    error_pubsub               Ray's error subscription (real Ray only)
    ray_start_2_cpus / _10_    ray.init(num_cpus=2 / 10)
    ray_start_cluster          a ray.cluster_utils.Cluster with no node yet
    ray_start_cluster_head     a Cluster with its head (param: head_node_args), connected
    ray_start_cluster_2_nodes  a Cluster of two 1-CPU nodes, connected

On real Ray 2.60, ``SignalActor``, ``Semaphore`` and ``run_string_as_driver`` are put back in
``ray._private.test_utils`` (where the files of early 2025 import them from; 2.60 moved
them to ``ray._common.test_utils``). kit's alias has both names already.
"""

from __future__ import annotations

import pytest
import ray


def _restore_moved_helpers() -> None:
    """Real Ray only: the test helpers 2.60 moved, under their older module's names too."""
    if ray.__name__ != "ray":
        return  # kit's alias
    try:
        from ray._common import test_utils as new
        from ray._private import test_utils as old
    except ImportError:
        return
    for name in ("SignalActor", "Semaphore", "run_string_as_driver"):
        if not hasattr(old, name) and hasattr(new, name):
            setattr(old, name, getattr(new, name))


_restore_moved_helpers()


def _params(request) -> dict:
    return dict(getattr(request, "param", None) or {})


def _start(**kwargs):
    kwargs.setdefault("num_cpus", 1)
    kwargs.setdefault("include_dashboard", False)
    return ray.init(**kwargs)


@pytest.fixture
def shutdown_only():
    yield None
    ray.shutdown()


@pytest.fixture
def ray_start_regular(request):
    ctx = _start(**_params(request))
    yield ctx
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_start_regular_shared(request):
    ctx = _start(**_params(request))
    yield ctx
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_start_shared_local_modes(request):
    """Once per module, not in local mode: Ray 2.60 refuses ``local_mode`` (Ray's
    conftest of early 2025 ran each test in both modes), kit ignores it."""
    ctx = _start(**_params(request))
    yield ctx
    ray.shutdown()


@pytest.fixture
def error_pubsub():
    """Ray's subscription to its cluster's error messages (Ray's own API; kit has none,
    so on kit a test using it fails at this import)."""
    from ray._private.test_utils import init_error_pubsub

    p = init_error_pubsub()
    yield p
    p.close()


@pytest.fixture
def ray_start_2_cpus(request):
    ctx = _start(**{"num_cpus": 2, **_params(request)})
    yield ctx
    ray.shutdown()


@pytest.fixture
def ray_start_10_cpus(request):
    ctx = _start(**{"num_cpus": 10, **_params(request)})
    yield ctx
    ray.shutdown()


def _cluster(request, head: bool):
    from ray.cluster_utils import Cluster

    params = _params(request)
    num_nodes = params.pop("num_nodes", 0)
    do_init = params.pop("do_init", False)
    if head:
        cluster = Cluster(initialize_head=True, connect=True, head_node_args=params)
    else:
        cluster = Cluster()
        for _ in range(num_nodes):
            cluster.add_node(**params)
        if do_init or num_nodes:
            ray.init(address=cluster.address)
    return cluster


@pytest.fixture
def ray_start_cluster(request):
    cluster = _cluster(request, head=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


ray_start_cluster_enabled = ray_start_cluster


@pytest.fixture
def ray_start_cluster_2_nodes(request):
    cluster = _cluster(_Param({"num_nodes": 2, **_params(request)}), head=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


class _Param:
    """A stand-in for pytest's request holding fixed parameters."""

    def __init__(self, param):
        self.param = param


@pytest.fixture
def ray_start_cluster_head(request):
    cluster = _cluster(request, head=True)
    yield cluster
    ray.shutdown()
    cluster.shutdown()
