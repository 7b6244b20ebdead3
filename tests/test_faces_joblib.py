"""The joblib backend: joblib.Parallel and scikit-learn's n_jobs on a real local cluster."""

import doctest
import os
import threading
import time

import joblib
import numpy as np
import pytest

import kit

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _registered():
    kit.joblib.register()


def cube(x):
    return x**3


def divide(a, b):
    return a / b


def total(arr, i, hold=0.0):
    time.sleep(hold)
    return float(arr.sum()) + i


def test_parallel_results_equal_serial(cluster):
    serial = [cube(i) for i in range(300)]
    with joblib.parallel_backend("kit"):
        assert joblib.Parallel(n_jobs=-1)(joblib.delayed(cube)(i) for i in range(300)) == serial
        assert (
            joblib.Parallel(n_jobs=2, batch_size=7)(joblib.delayed(cube)(i) for i in range(300))
            == serial
        )
        gen = joblib.Parallel(n_jobs=-1, return_as="generator")(
            joblib.delayed(cube)(i) for i in range(20)
        )
        assert list(gen) == serial[:20]


def test_n_jobs_minus_one_is_the_clusters_cpus(cluster):
    with joblib.parallel_backend("kit"):
        assert joblib.effective_n_jobs(-1) == int(kit.cluster_resources()["CPU"]) == 2
        assert joblib.effective_n_jobs(-2) == 1


def test_task_error_surfaces_with_its_type(cluster):
    with joblib.parallel_backend("kit"):
        with pytest.raises(ZeroDivisionError):
            joblib.Parallel(n_jobs=-1)(joblib.delayed(divide)(1, b) for b in [1, 2, 0, 4])
        # The backend is usable again after an abort.
        assert (
            joblib.Parallel(n_jobs=-1)(joblib.delayed(divide)(4, 2) for _ in range(3)) == [2.0] * 3
        )


def test_batches_run_as_named_kit_tasks(cluster):
    last, _ = kit.events()
    with joblib.parallel_backend("kit"):
        joblib.Parallel(n_jobs=-1)(joblib.delayed(cube)(i) for i in range(10))
    time.sleep(0.2)
    labels = {e["label"] for e in kit.events(last)[1]}
    assert labels == {"joblib:cube"}


def _cluster_shm():
    prefix = f"kit_{kit.api._state['client'].cluster}_"
    return {f for f in os.listdir("/dev/shm") if f.startswith(prefix)}


def test_large_argument_is_put_once(cluster):
    """A 2 MiB array passed to 8 calls lives once in shared memory, not once per task."""
    arr = np.arange(256 * 1024, dtype=np.float64)  # 2 MiB, over the 100 KiB inline limit
    before = _cluster_shm()
    peak, stop = set(), threading.Event()

    def sample():
        while not stop.is_set():
            peak.update(_cluster_shm() - before)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with joblib.parallel_backend("kit"):
            out = joblib.Parallel(n_jobs=-1, batch_size=1)(
                joblib.delayed(total)(arr, i, hold=0.3) for i in range(8)
            )
    finally:
        stop.set()
        sampler.join(10)
    assert out == [float(arr.sum()) + i for i in range(8)]
    # Tasks held the array for 4 x 0.3 s on 2 slots: a copy per task would show several.
    assert len(peak) == 1, peak


def test_gridsearchcv_matches_the_default_backend(cluster):
    from sklearn.datasets import load_iris
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    X, y = load_iris(return_X_y=True)
    grid = {"C": [0.1, 1.0, 10.0], "kernel": ["linear", "rbf"]}
    default = GridSearchCV(SVC(), grid, cv=3).fit(X, y)
    last, _ = kit.events()
    with joblib.parallel_backend("kit"):
        on_kit = GridSearchCV(SVC(), grid, cv=3, n_jobs=-1).fit(X, y)
    assert on_kit.best_params_ == default.best_params_
    assert on_kit.best_score_ == pytest.approx(default.best_score_)
    assert np.allclose(
        on_kit.cv_results_["mean_test_score"], default.cv_results_["mean_test_score"]
    )
    time.sleep(0.2)
    assert any(e["label"] == "joblib:_fit_and_score" for e in kit.events(last)[1])


def test_register_starts_kit_if_needed(fresh):
    assert not kit.is_initialized()
    with joblib.parallel_backend("kit", n_jobs=-1):
        assert joblib.Parallel()(joblib.delayed(cube)(i) for i in range(4)) == [0, 1, 8, 27]
    assert kit.is_initialized()


def test_n_jobs_minus_one_spans_every_node(fresh):
    fresh(num_nodes=2, num_cpus=1)
    last, _ = kit.events()
    with joblib.parallel_backend("kit"):
        assert joblib.effective_n_jobs(-1) == 2
        out = joblib.Parallel(n_jobs=-1, batch_size=1)(
            joblib.delayed(total)(np.ones(4), i, hold=0.3) for i in range(4)
        )
    assert out == [4.0 + i for i in range(4)]
    time.sleep(0.2)
    nodes = {e["node"] for e in kit.events(last)[1] if e["label"] == "joblib:total"}
    assert len(nodes - {None}) == 2


def test_star_import_does_not_shadow_joblib():
    ns = {}
    exec("import joblib\nfrom kit import *", ns)
    assert ns["joblib"] is joblib and kit.joblib.register is not None


def test_docstring_example(cluster):
    result = doctest.testmod(kit.joblib, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
