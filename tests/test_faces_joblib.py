"""The joblib backend: joblib.Parallel and scikit-learn's n_jobs on a real local cluster."""

import doctest
import time

import joblib
import numpy as np
import pytest
from helpers import wait_until

import kit

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def _registered():
    kit.joblib.register()


def cube(x):
    return x**3


def divide(a, b):
    return a / b


def total(arr, i, hold=0.0):
    time.sleep(hold)  # calls that last: the first ones are still running when more start
    return float(arr.sum()) + i


def mapped_from(arr, i):
    """``(the file whose memory holds arr in this worker, arr.sum() + i)``, from /proc/self/maps."""
    addr = arr.ctypes.data
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            low, high = (int(x, 16) for x in fields[0].split("-"))
            if low <= addr < high:
                return (fields[5] if len(fields) > 5 else "(anonymous)"), float(arr.sum()) + i
    return None, float(arr.sum()) + i


def labels_since(last, wanted):
    """The labels of kit's task events after ``last``, once ``wanted`` is among them."""
    seen = set()

    def found():
        seen.update(e["label"] for e in kit.events(last)[1])
        return wanted in seen

    wait_until(found, 10, lambda: f"a task labelled {wanted}, saw {seen}")
    return seen


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
    assert labels_since(last, "joblib:cube") == {"joblib:cube"}


def test_large_argument_is_put_once(cluster):
    """A 2 MiB array passed to 8 calls lives once in shared memory, not once per task."""
    arr = np.arange(256 * 1024, dtype=np.float64)  # 2 MiB, over the 100 KiB inline limit
    with joblib.parallel_backend("kit"):
        out = joblib.Parallel(n_jobs=-1, batch_size=1)(
            joblib.delayed(mapped_from)(arr, i) for i in range(8)
        )
    files, sums = zip(*out)
    assert list(sums) == [float(arr.sum()) + i for i in range(8)]
    # every call read the array from one shared-memory file (a put per call: one file each)
    prefix = f"/dev/shm/kit_{kit.api._state['client'].cluster}_"
    assert len(set(files)) == 1 and files[0].startswith(prefix), files


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
    assert "joblib:_fit_and_score" in labels_since(last, "joblib:_fit_and_score")


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
    nodes = set()

    def both_nodes():
        nodes.update(e["node"] for e in kit.events(last)[1] if e["label"] == "joblib:total")
        return len(nodes - {None}) == 2

    wait_until(both_nodes, 10, lambda: f"joblib:total on both nodes, saw {nodes}")


def test_star_import_does_not_shadow_joblib():
    ns = {}
    exec("import joblib\nfrom kit import *", ns)
    assert ns["joblib"] is joblib and kit.joblib.register is not None


def test_docstring_example(cluster):
    result = doctest.testmod(kit.joblib, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
