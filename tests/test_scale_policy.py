"""The autoscaler's policy (kit/scale_policy.py), pure: events in, decisions out."""

import pytest

from kit.scale_policy import Add, Policy, Remove, bounds

pytestmark = pytest.mark.fast


def node(nid, busy=False, tag=None):
    return {"node_id": nid, "busy": busy, "tag": tag or nid.decode()}


def demand(nodes, ready=0, oldest=0.0, wants=(), infeasible=()):
    return {"ready": ready, "oldest": oldest, "wants": list(wants),
            "infeasible": list(infeasible), "nodes": nodes}  # fmt: skip


def test_adds_once_work_waited_long_enough_up_to_the_bound():
    p = Policy(1, 4, idle_timeout=10, wait=1.0, node_cpus=2)
    busy = [node(b"n0", busy=True)]
    assert p.decide(demand(busy, ready=50, oldest=0.5), {}, 0.0) == []
    assert p.decide(demand(busy, ready=50, oldest=1.2), {}, 0.0) == [
        Add(3, "50 tasks waiting 1.2 s")
    ]  # 50 tasks would fill 25 nodes: the bound allows 3 more
    # two nodes still starting count towards the bound and the need
    assert p.decide(demand(busy, ready=3, oldest=2.0), {"n1": None, "n2": None}, 0.0) == []
    full = [node(b"n%d" % i, busy=True) for i in range(4)]
    assert p.decide(demand(full, ready=99, oldest=9.0), {}, 0.0) == []


def test_a_drivers_ask_for_workers_is_timed_from_when_it_was_first_seen():
    p = Policy(1, 3, idle_timeout=10, wait=1.0)
    d = demand([node(b"n0", busy=True)], wants=[(b"drv", 7, {"CPU": 1}, 4)])
    assert p.decide(d, {}, 100.0) == []
    assert p.decide(d, {}, 100.9) == []
    assert p.decide(d, {}, 101.0) == [Add(2, "4 tasks waiting 1.0 s")]
    d2 = demand([node(b"n0", busy=True)], wants=[(b"drv", 8, {"CPU": 1}, 4)])
    assert p.decide(d2, {}, 101.5) == []  # a new ask: its clock starts now


def test_work_no_live_node_fits_adds_a_node_if_a_new_one_would():
    p = Policy(1, 3, idle_timeout=10, node_cpus=4)
    d = demand([node(b"n0")], infeasible=[({"CPU": 3.0}, 0.0)])
    assert p.decide(d, {}, 0.0) == [Add(1, "work needs 3 CPU, which no live node has")]
    too_big = demand([node(b"n0")], infeasible=[({"CPU": 8.0}, 0.0)])
    assert p.decide(too_big, {}, 0.0) == []


def test_removes_only_added_nodes_idle_long_enough_down_to_min():
    p = Policy(2, 4, idle_timeout=5, wait=1.0)
    nodes = [node(b"n0"), node(b"n1"), node(b"n2"), node(b"n3", busy=True)]
    added = {"n1": b"n1", "n2": b"n2", "n3": b"n3"}
    assert p.decide(demand(nodes), added, 0.0) == []
    assert p.decide(demand(nodes), added, 4.9) == []
    # n0 is not the autoscaler's; n3 is busy; min_nodes 2 leaves room for two removals
    assert p.decide(demand(nodes), added, 5.0) == [
        Remove(b"n1", "idle 5.0 s"), Remove(b"n2", "idle 5.0 s")
    ]  # fmt: skip
    p.refused(b"n1", 5.0)  # it held something: idle counts again from now
    assert p.decide(demand(nodes), added, 6.0) == [Remove(b"n2", "idle 6.0 s")]
    # waiting work makes every node count as needed
    assert p.decide(demand(nodes, ready=1, oldest=0.1), added, 20.0) == []


def test_below_min_nodes_adds_at_once():
    p = Policy(3, 4, idle_timeout=5)
    assert p.decide(demand([node(b"n0")]), {}, 0.0) == [Add(2, "below min_nodes (1 < 3)")]


def test_bounds():
    assert bounds("1:4") == {"min_nodes": 1, "max_nodes": 4, "idle_timeout": 30.0, "wait": 1.0}
    assert bounds({"min_nodes": 2, "max_nodes": 2, "idle_timeout": 5})["idle_timeout"] == 5.0
    with pytest.raises(ValueError, match="unknown key"):
        bounds({"min_nodes": 1, "max_nodes": 2, "idle": 3})
    with pytest.raises(ValueError, match="whole numbers"):
        bounds(("a", 2))


def test_decisions_are_kept_apart_from_tasks_in_the_dashboard_model():
    from kit.dashboard.model import Model

    m = Model()
    node = b"n" * 8
    events = [(1, b"t" * 15, "f", "queued", 10.0, None, None),
              (2, b"", "added n1: 5 tasks waiting 1.2 s", "cluster", 10.5, None, node),
              (3, b"", "removed n1: idle 30.0 s", "cluster", 42.0, None, node)]  # fmt: skip
    m.apply(events, now=42.0)
    assert m.totals["submitted"] == 1 and list(m.tasks) == [b"t" * 15]
    assert list(m.cluster) == [(10.5, "added n1: 5 tasks waiting 1.2 s"),
                               (42.0, "removed n1: idle 30.0 s")]  # fmt: skip
