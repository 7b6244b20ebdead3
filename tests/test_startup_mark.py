"""A worker's loading of a task, reported apart from the task's own work.

The first task of a function on a fresh worker includes the worker's start-up for it:
unpickling the function (its module-level imports) and its arguments (a DataFrame's
first unpickling imports pandas). The worker reports when it called the function
(``TaskDone.called``), on both paths; ``kit.events()`` carries it as ``called`` and the
timeline draws it as its own mark (``tests/test_widgets_unit.py``). Here the loading is
an argument whose unpickling takes a known while, on a real cluster.
"""

import time

import pytest

import kit

pytestmark = pytest.mark.cluster

LOADING = 0.3  # seconds the argument takes to unpickle


class SlowToLoad:
    """Unpickles as ``time.sleep(LOADING)`` (its value: None), as a heavy import would:
    the work measured, not a wait for something."""

    def __reduce__(self):
        return (time.sleep, (LOADING,))


def loads_slowly(x):
    return x is None  # True for a SlowToLoad: what time.sleep returned


def _ended(events, label):
    return [e for e in events if e["state"] == "finished" and e["label"].endswith(label)]


@pytest.mark.parametrize("path", ["direct", "head"])
def test_loading_is_reported_apart_from_the_run(cluster, path):
    fn = kit.remote(loads_slowly)
    if path == "head":  # a placement option: the task goes through the head's scheduler
        node = kit.nodes()[0]["NodeID"]
        fn = fn.options(scheduling_strategy=kit.NodeAffinitySchedulingStrategy(node, soft=True))
    mark, _ = kit.events()
    assert kit.get(fn.remote(SlowToLoad()), timeout=60) is True
    assert kit.get(fn.remote(1), timeout=60) is False
    _, events = kit.events(mark)  # a query sends the driver's direct records first
    slow, plain = _ended(events, "loads_slowly")
    assert slow["started"] <= slow["called"] <= slow["time"]
    assert slow["called"] - slow["started"] >= LOADING - 0.01  # the sleep, at least
    if plain["called"] is not None:  # a loading over STARTUP_SHOWN (a busy machine)
        assert plain["started"] <= plain["called"] <= plain["time"]
