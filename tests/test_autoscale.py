"""Autoscaling with the local provider: kit.init(autoscale=...) grows under load, shrinks
when idle, never removes a node holding a live actor or an object's only copy, and says
every decision as a "cluster" event. The policy alone is tested in test_scale_policy.py."""

import time

import numpy as np
import pytest
from helpers import wait_until

import kit
from widgets.view import header_text, monitor_view

pytestmark = pytest.mark.cluster

S = kit.NodeAffinitySchedulingStrategy


@kit.remote
def slow(i):
    time.sleep(0.6)  # a long task: work waits for slots, so nodes are added
    return i


@kit.remote
def big():
    return np.arange(200_000, dtype=np.int64)  # 1.6 MB: kept in its node's shared memory


@kit.remote
class Counter:
    def __init__(self):
        self.n = 0

    def add(self, k):
        self.n += k
        return self.n


def alive():
    return sorted(n["tag"] for n in kit.nodes() if n["Alive"])


def notes():
    return [e["label"] for e in kit.events(0)[1] if e["state"] == "cluster"]


@pytest.mark.timeout(90)
def test_local_autoscaler_grows_to_the_bound_and_shrinks_keeping_actors_and_objects(fresh):
    fresh(num_cpus=1, autoscale={"min_nodes": 1, "max_nodes": 3, "idle_timeout": 1.5,
                                 "wait": 0.3})  # fmt: skip
    assert alive() == ["n0"]
    first = Counter.remote()
    assert kit.get(first.add.remote(1)) == 1
    most = []
    refs = [slow.remote(i) for i in range(12)]

    def grown():
        most.append(len(alive()))
        return most[-1] == 3

    wait_until(grown, 30, lambda: f"3 nodes (seen {most[-1:]}; decisions {notes()})")
    # an actor and an object's only copy, each on a node the autoscaler added
    a, b = [n["NodeID"] for n in kit.nodes() if n["Alive"] and n["tag"] != "n0"]
    second = Counter.options(scheduling_strategy=S(a)).remote()
    assert kit.get(second.add.remote(5)) == 5
    held = big.options(scheduling_strategy=S(b)).remote()
    kit.wait([held], timeout=30)
    assert kit.get(refs, timeout=60) == list(range(12))  # no result lost
    wait_until(lambda: any("kept" in x and "actor" in x for x in notes())
               and any("kept" in x and "only copy" in x for x in notes()), 20,
               lambda: f"both added nodes kept, saying why: {notes()}")  # fmt: skip
    assert len(alive()) == 3
    kit.kill(second)
    wait_until(lambda: len(alive()) == 2, 20, lambda: f"the actor's node removed: {notes()}")
    assert int(kit.get(held)[-1]) == 199_999
    del held
    wait_until(lambda: alive() == ["n0"], 20, lambda: f"back to min_nodes: {notes()}")
    assert kit.get(first.add.remote(1)) == 2  # the first actor lived through it all
    assert max(most) == 3  # never above max_nodes
    said = notes()
    assert any(x.startswith("added n") and "tasks waiting" in x for x in said), said
    assert any(x.startswith("removed n") and "idle" in x for x in said), said
    assert any("joined" in x for x in said), said
    # the same decisions reach the notebook's monitor, through the public status
    scaling = kit.cluster_status()["scaling"]
    assert scaling and all(text in said for _, text in scaling), (scaling, said)
    header = header_text(monitor_view(kit.nodes(), scaling=scaling))
    assert f"autoscaler: {scaling[-1][1]} (" in header


@pytest.mark.timeout(60)
def test_autoscale_needs_bounds():
    with pytest.raises(ValueError, match=r"give \(min_nodes, max_nodes\)"):
        kit.init(autoscale=4)
    with pytest.raises(ValueError, match="min_nodes must be at least 1"):
        kit.init(autoscale=(0, 2))
    assert not kit.is_initialized()


@pytest.mark.timeout(90)
def test_cluster_magic_starts_an_autoscaling_cluster():
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython
    from IPython.utils.capture import capture_output

    if kit.is_initialized():
        kit.shutdown()
    sh = start_ipython() or get_ipython()
    sh.run_line_magic("load_ext", "kit")
    try:
        with capture_output() as cap:
            sh.run_cell("%cluster start --cpus 1 --autoscale 1:2")
        assert "autoscaling 1:2 nodes (now 1, 1 CPUs)" in cap.stdout, cap.stdout + cap.stderr
        refs = [slow.remote(i) for i in range(6)]
        wait_until(lambda: len(alive()) == 2, 30, lambda: f"a second node: {notes()}")
        assert kit.get(refs, timeout=60) == list(range(6))
        with capture_output() as cap:
            sh.run_cell("%cluster start --autoscale 3:2")
        assert "already running" in cap.stdout
    finally:
        sh.run_cell("%cluster stop")
    with capture_output() as cap:
        sh.run_cell("%cluster start --autoscale 3:2")
    assert "min_nodes must be at least 1 and at most max_nodes" in cap.stderr + cap.stdout
    assert not kit.is_initialized()
