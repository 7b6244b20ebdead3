"""Dask on kit: ``kit.dask_scheduler`` runs Dask graphs as kit tasks on a real cluster.

Every result is compared with Dask's own synchronous scheduler.
"""

import doctest
import operator
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import psutil
import pytest
from helpers import latest_event, wait_tasks, wait_until

import kit

dask = pytest.importorskip("dask")
import dask.array as da  # noqa: E402
import dask.bag as db  # noqa: E402
import dask.dataframe as dd  # noqa: E402
from dask import delayed  # noqa: E402

from kit.dask import make_plan  # noqa: E402

pytestmark = [pytest.mark.engines, pytest.mark.timeout(90)]


def on_kit(*collections, **kw):
    return dask.compute(*collections, scheduler=kit.dask_scheduler, **kw)


def on_sync(*collections):
    return dask.compute(*collections, scheduler="sync")


# ---- without a cluster ---------------------------------------------------------------


def test_import_kit_does_not_import_dask():
    code = (
        "import sys, kit; assert 'dask' not in sys.modules; "
        "assert 'dask' not in kit.__all__ and 'dask_scheduler' in kit.__all__"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_plan_culls_orders_and_counts_uses():
    dsk = {
        "a": 1,
        "b": (operator.add, "a", 1),
        "c": (operator.mul, "b", "b"),
        "d": (sum, ["a", "b", "c"]),
        "e": "d",
        "unused": (operator.neg, "a"),
    }
    p = make_plan(dsk, ["e"])
    assert set(p.graph) == {"a", "b", "c", "d", "e"}
    pos = {k: i for i, k in enumerate(p.order)}
    for key, node in p.graph.items():
        assert all(pos[d] < pos[key] for d in node.dependencies)
    assert p.uses == {"a": 2, "b": 2, "c": 1, "d": 1}
    assert p.wanted == ["e"]
    assert make_plan(dsk, [["a", "b"], "c"]).wanted == ["a", "b", "c"]
    assert make_plan(dsk, "c").wanted == ["c"]


def test_plan_reports_missing_keys():
    with pytest.raises(ValueError, match="requested key 'nope'"):
        make_plan({"a": 1}, ["nope"])
    from dask._task_spec import Task, TaskRef

    dsk = {"a": (operator.neg, "b"), "b": Task("b", operator.neg, TaskRef("gone"))}
    with pytest.raises(ValueError, match="dependency of 'b' 'gone'"):
        make_plan(dsk, ["a"])


def test_plan_doctest():
    import kit.dask

    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(make_plan, "make_plan", globs=vars(kit.dask)):
        runner.run(test)
    assert runner.summarize(verbose=False) == (0, 3)


# ---- arrays --------------------------------------------------------------------------


def test_array_reductions_and_matmul(cluster):
    x = da.random.RandomState(0).random_sample((300, 300), chunks=(100, 100))
    exprs = [(x + x.T).sum(axis=0), x.mean(), x @ x.T, x[::2, 50:].std(axis=1)]
    for got, want in zip(on_kit(*exprs), on_sync(*exprs)):
        np.testing.assert_allclose(got, want)


def test_config_set_scheduler(cluster):
    x = da.arange(1000, chunks=100)
    with dask.config.set(scheduler=kit.dask_scheduler):
        assert int((x * 2).sum().compute()) == 999 * 1000
    assert int(x.sum().compute(scheduler=kit.dask_scheduler)) == 999 * 500
    kept = (x * 3).persist(scheduler=kit.dask_scheduler)  # compute semantics: values here
    assert int(kept.sum().compute(scheduler="sync")) == 3 * 999 * 500


# ---- dataframes ----------------------------------------------------------------------


def sample_frame(n=2000):
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {"k": rng.integers(0, 7, n), "v": rng.random(n), "w": rng.integers(0, 100, n)}
    )


def test_dataframe_groupby_aggregate(cluster):
    ddf = dd.from_pandas(sample_frame(), npartitions=5)
    exprs = [
        ddf.groupby("k").agg({"v": "sum", "w": "max"}),
        ddf.v.mean(),
        ddf[ddf.w > 50].groupby("k").v.count(),
    ]
    for got, want in zip(on_kit(*exprs), on_sync(*exprs)):
        if isinstance(want, (pd.DataFrame, pd.Series)):
            pd.testing.assert_frame_equal(
                pd.DataFrame(got).sort_index(), pd.DataFrame(want).sort_index()
            )
        else:
            assert got == pytest.approx(want)


def test_read_csv_in_partitions(cluster, tmp_path):
    path = tmp_path / "data.csv"
    sample_frame(3000).to_csv(path, index=False)
    ddf = dd.read_csv(path, blocksize=20_000)
    assert ddf.npartitions >= 3
    (got,) = on_kit(ddf.groupby("k").v.sum())
    (want,) = on_sync(ddf.groupby("k").v.sum())
    pd.testing.assert_series_equal(got.sort_index(), want.sort_index())
    assert len(on_kit(ddf)[0]) == 3000


# ---- delayed and raw graphs ----------------------------------------------------------


def test_delayed_graph_with_nested_structure(cluster):
    inc = delayed(lambda x: x + 1, pure=True)
    add = delayed(operator.add, pure=True)
    a, b = inc(1), inc(10)
    c = add(a, b)
    d = delayed(sum)([a, b, c])
    nested = {"flat": d, "list": [a, [b, c]], "tuple": (c, 5)}
    assert on_kit(nested) == on_sync(nested)
    assert on_kit(nested)[0] == {"flat": 26, "list": [2, [11, 13]], "tuple": (13, 5)}


def test_raw_graph_nested_keys_like_dask_get(cluster):
    from dask.local import get_sync

    dsk = {
        "x": 1,
        "y": (operator.add, "x", 2),
        "z": (operator.mul, "y", 10),
        "w": "z",
        "s": (sum, ["x", "y", "z"]),
    }
    for keys in (["x", "w"], [["y", "z"], ["s", ["x"]]], "s", [], ["w", "w"]):
        assert kit.dask_scheduler(dsk, keys) == get_sync(dsk, keys)


def boom(x):
    raise KeyError(f"no {x}")


def test_exception_in_delayed_is_raised_with_its_type(cluster):
    bad = delayed(boom)(3)
    after = delayed(operator.add)(bad, 1)
    with pytest.raises(KeyError, match="no 3") as info:
        on_kit(after)
    assert isinstance(info.value, kit.TaskError)
    assert info.value.function == "boom"
    # The cluster still works afterwards.
    assert on_kit(delayed(operator.add)(1, 2)) == (3,)


def nap(x):
    time.sleep(30)  # still running when the graph is cancelled
    return x


def wait_cpus_free(n, timeout=10):
    return wait_until(
        lambda: kit.available_resources().get("CPU", 0) >= n, timeout, f"{n} free CPUs"
    )


def test_failure_cancels_the_rest_of_the_graph(cluster):
    since = latest_event()
    with pytest.raises(KeyError):  # one slot naps, the other fails
        on_kit(delayed(sum)([delayed(boom)(1), delayed(operator.neg)(delayed(nap)(1))]))
    wait_tasks("nap", "cancelled", since=since)  # not waited for: cancelled
    assert wait_cpus_free(2)  # the nap was cancelled, not left to run


def test_interrupt_cancels_the_graph(cluster, monkeypatch):
    since = latest_event()

    def interrupted(*args, **kwargs):  # Ctrl-C while the graph's tasks run
        wait_tasks("nap", "running", count=2, since=since)
        raise KeyboardInterrupt

    monkeypatch.setattr(kit.api, "get", interrupted)
    with pytest.raises(KeyboardInterrupt):
        on_kit(delayed(sum)([delayed(nap)(i) for i in range(3)]))
    monkeypatch.undo()
    wait_tasks("nap", "cancelled", count=3, since=since)
    assert wait_cpus_free(2)


def test_unpicklable_node_cancels_what_was_submitted(cluster):
    import threading

    lock = threading.Lock()  # cannot be pickled
    first = delayed(nap)(1, dask_key_name="first-nap")
    failed = kit.cluster_status()["counts"]["failed"]
    with pytest.raises(kit.SerializationError):
        on_kit(delayed(lambda a, b: a)(first, lock, dask_key_name="needs-lock"))
    wait_until(
        lambda: kit.cluster_status()["counts"]["failed"] != failed, 10, "the nap to be cancelled"
    )
    assert kit.cluster_status()["counts"]["failed"] == failed + 1  # the nap, cancelled
    assert wait_cpus_free(2)


# ---- bags ----------------------------------------------------------------------------


def test_bag_map_filter_fold_frequencies(cluster):
    b = db.from_sequence(range(200), npartitions=6)
    words = db.from_sequence(["a", "b", "a", "c", "b", "a"] * 10, npartitions=4)
    exprs = [
        b.map(lambda i: i * i).filter(lambda i: i % 3 == 0).sum(),
        b.fold(operator.add, initial=0),
        b.map(str).take(3, compute=False),
        words.frequencies(sort=True),
        b.count(),
    ]
    got, want = on_kit(*exprs), on_sync(*exprs)
    assert got[:3] == want[:3] and got[4] == want[4] == 200
    assert sorted(got[3]) == sorted(want[3]) == [("a", 30), ("b", 20), ("c", 10)]


# ---- where it ran, and what the driver saw -------------------------------------------


def pid_of_worker(_):
    return os.getpid()


def test_tasks_run_on_kit_workers_under_key_names(cluster):
    last, _ = kit.events()
    parts = [delayed(pid_of_worker)(i, dask_key_name=f"whereami-{i}") for i in range(6)]
    pids = set(on_kit(*parts))
    assert os.getpid() not in pids and pids
    workers = {p.pid for p in psutil.Process().children(recursive=True)}
    assert pids <= workers
    _, evs = kit.events(last)
    finished = [e for e in evs if e["state"] == "finished"]
    assert sum(e["label"] == "whereami" for e in finished) == 6
    assert all(e["worker"] for e in finished)


def test_visible_in_monitor_timeline_and_progress(cluster, capsys):
    from widgets.view import timeline_lanes

    last, _ = kit.events()
    done = sum(n["done"] for n in kit.nodes())
    on_kit(da.ones(100, chunks=10).sum(), progress="dask sum")
    assert sum(n["done"] for n in kit.nodes()) - done >= 11  # the monitor's counts
    lanes, _ = timeline_lanes(kit.events(last)[1])
    labels = {bar.label for lane in lanes for bar in lane.bars}
    assert {"sum", "sum-aggregate"} <= labels, labels
    assert "dask sum: 1/1 done" in capsys.readouterr().err


UNPICKLED_HERE = []


class Marker:
    """A value that notes every time this process unpickles one."""

    def __init__(self, n):
        self.n = n

    def __reduce__(self):
        return (_unpickled, (self.n,))


def _unpickled(n):
    UNPICKLED_HERE.append(n)
    return Marker(n)


def make_marker(n):
    return Marker(n)


def total(markers):
    return sum(m.n for m in markers)


def test_intermediates_stay_in_the_cluster(cluster):
    markers = [delayed(make_marker)(i) for i in range(5)]
    UNPICKLED_HERE.clear()
    assert on_kit(delayed(total)(markers)) == (10,)
    assert UNPICKLED_HERE == []  # five Markers were results, none came to the driver
    got = on_kit(markers[3])[0]  # a requested Marker does come (the control)
    assert got.n == 3 and UNPICKLED_HERE == [3]


def test_requested_data_and_alias_need_no_task(cluster):
    last, _ = kit.events()
    assert kit.dask_scheduler({"a": 41, "b": "a"}, ["a", "b"]) == (41, 41)
    _, evs = kit.events(last)
    assert evs == []


def test_large_data_used_twice_is_put_once(cluster, monkeypatch):
    puts = []
    real_put = kit.api.put
    monkeypatch.setattr(kit.api, "put", lambda v: puts.append(v) or real_put(v))
    big = np.ones(200_000)
    dsk = {
        "big": big,
        "small": 2,
        "a": (np.sum, "big"),
        "b": (np.dot, "big", "big"),
        "c": (operator.mul, "small", "small"),
    }
    assert kit.dask_scheduler(dsk, ["a", "b", "c"]) == (200_000.0, 200_000.0, 4)
    assert len(puts) == 1 and puts[0] is big
    assert kit.dask_scheduler(dsk, ["a"]) == (200_000.0,)  # used once: an argument
    assert len(puts) == 1


def test_return_refs_and_num_cpus(cluster):
    dsk = {"x": 5, "y": (operator.mul, "x", 3)}
    refs = kit.dask_scheduler(dsk, ["x", "y"], return_refs=True, num_cpus=2)
    assert all(isinstance(r, kit.ObjectRef) for r in refs)
    assert kit.get(list(refs)) == [5, 15]


# ---- the tutorial: Dask reads a CSV, kit tasks process the partitions ----------------


@kit.remote
def shop_totals(df):
    return df.groupby("shop")["amount"].sum()


def test_tutorial_read_csv_then_kit_tasks(cluster, tmp_path):
    rng = np.random.default_rng(7)
    sales = pd.DataFrame(
        {"shop": rng.choice(["north", "south", "east"], 4000), "amount": rng.integers(1, 500, 4000)}
    )
    sales.to_csv(tmp_path / "sales.csv", index=False)

    parts = dd.read_csv(tmp_path / "sales.csv", blocksize=8_000).to_delayed()
    assert len(parts) >= 3
    refs = dask.compute(*parts, scheduler=kit.dask_scheduler, return_refs=True)
    per_shop = sum(kit.get([shop_totals.remote(r) for r in refs], timeout=60))

    # Dask reads text as pyarrow strings, pandas as objects: compare the contents.
    assert (
        per_shop.to_dict()
        == pd.read_csv(tmp_path / "sales.csv").groupby("shop")["amount"].sum().to_dict()
    )


def test_scheduler_doctest(cluster):
    import kit.dask

    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(kit.dask.dask_scheduler, "dask_scheduler", globs={}):
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_starts_kit_when_not_initialized(fresh):
    assert not kit.is_initialized()
    assert on_kit(da.ones(10, chunks=5).sum()) == (10,)
    assert kit.is_initialized()
