"""The dashboard's pure parts: the model folded from events, the trace, the gate, the metrics."""

import doctest
import importlib
import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kit.dashboard import auth, metrics, trace
from kit.dashboard.model import ERROR, STATE, Model

pytestmark = pytest.mark.fast

W1, W2, N1 = b"w" * 8, b"v" * 8, b"n" * 8


def tid(i, owner=b"d" * 8):
    return owner + i.to_bytes(7, "big")


def run(i, label, t, worker=W1, state="finished", owner=b"d" * 8, seq=0):
    """The three events of one task: queued at t, running at t+1, ended at t+2."""
    k = tid(i, owner)
    return [
        (seq + 1, k, label, "queued", t, None, None),
        (seq + 2, k, label, "running", t + 1, worker, N1),
        (seq + 3, k, label, state, t + 2, worker, N1, t + 1),
    ]


def test_model_counts_functions_owners_and_bars():
    m = Model()
    events = run(1, "f", 0) + run(2, "f", 0, state="failed") + run(3, "g", 0, worker=W2)
    events += [(20, tid(4), "g", "queued", 5.0, None, None)]
    m.apply(events, now=10.0)
    assert m.functions == {"f": [2, 0, 1, 1, 0], "g": [2, 0, 1, 0, 0]}
    assert m.totals == {"submitted": 4, "running": 0, "finished": 2, "failed": 1, "cancelled": 0}
    assert m.owners[b"d" * 8] == {"f": [2, 1, 1], "g": [2, 1, 0]}
    assert [b[3] for b in m.bars] == ["f", "f", "g"]
    assert m.calls == {W1: 2, W2: 1}
    assert m.tasks[tid(4)][STATE] == "queued"


def test_running_task_is_current_until_it_ends_and_retry_counts_once():
    m = Model()
    k = tid(1)
    m.apply([(1, k, "f", "queued", 0.0, None, None), (2, k, "f", "running", 1.0, W1, N1)], 2.0)
    assert m.current[W1][0] == k and m.totals["running"] == 1
    # its worker died: back to the queue, then run again elsewhere
    m.apply([(3, k, "f", "queued", 3.0, None, None), (4, k, "f", "running", 4.0, W2, N1)], 5.0)
    assert W1 not in m.current and m.current[W2][0] == k
    m.apply([(5, k, "f", "finished", 6.0, W2, N1, 4.0)], 7.0)
    assert m.functions["f"] == [1, 0, 1, 0, 0] and not m.current
    m.apply([(6, k, "f", "finished", 6.5, W2, N1, 4.0)], 7.0)  # a late duplicate
    assert m.totals["finished"] == 1


def test_rows_and_bars_since_give_only_what_changed():
    m = Model()
    m.apply(run(1, "f", 0), 3.0)
    seq = m.seq
    assert m.rows_since(seq) == [] and m.bars_since(m.bars[-1][0]) == []
    m.apply(run(2, "g", 0, seq=3), 3.0)
    assert [r[1] for r in m.rows_since(seq)] == ["g"]
    assert [b[3] for b in m.bars_since(seq)] == ["g"]
    assert m.note_error(tid(2), "Traceback: boom")
    assert m.rows_since(m.seq - 1)[0][ERROR] == "Traceback: boom"


def test_model_stays_bounded_and_keeps_live_tasks():
    m = Model(window=10.0, keep=50)
    live = [(1, tid(0), "slow", "queued", 0.0, None, None)]
    live.append((2, tid(0), "slow", "running", 0.5, W1, N1))
    m.apply(live, 1.0)
    events = []
    for i in range(1, 200):
        events += run(i, "f", float(i), seq=10 * i)
    m.apply(events, 205.0)
    assert len(m.tasks) == 50 and tid(0) in m.tasks  # the running task is kept
    assert all(b[2] >= 195.0 for b in m.bars)  # only the last 10 s of runs
    assert len(m.rows_since(0)) == 50


def test_chrome_trace_loads_as_json_with_one_event_per_run():
    m = Model()
    m.apply(run(1, "f", 0) + run(2, "g", 0, worker=W2, seq=3), 5.0)
    t = trace.chrome_trace(m.bars, {N1: "n0"}, {W1: 101, W2: 102})
    json.loads(json.dumps(t))
    runs = [e for e in t["traceEvents"] if e["ph"] == "X"]
    names = {e["args"]["name"] for e in t["traceEvents"] if e["ph"] == "M"}
    assert [e["name"] for e in runs] == ["f", "g"] and runs[0]["dur"] == 1e6
    assert names == {"n0", "worker pid 101", "worker pid 102"}


def test_gate_accepts_the_token_the_view_token_and_the_cookie_only():
    g = auth.Gate("secret-token")
    view = auth.view_token("secret-token")
    assert g.token_ok("secret-token") and g.token_ok(view)
    for bad in ("", None, "secret", view[:-1], view + "0", g.cookie, "secret-token "):
        assert not g.token_ok(bad)
    assert g.cookie_ok(g.cookie) and not g.cookie_ok(view) and not g.cookie_ok("secret-token")
    # the view token and the cookie do not reveal the cluster's token
    assert "secret-token" not in view + g.cookie
    assert (
        auth.link("http://h:1", "secret-token", "tasks") == f"http://h:1/?token={view}&panel=tasks"
    )


def test_metrics_parse_with_prometheus_parser():
    node = {
        "tag": "n0", "alive": True, "cpu_total": 2.0, "cpu_busy": 1.0, "store_used": 10,
        "store_limit": 100, "workers": 2, "queued": 3, "running": 1, "done": 7, "failed": 1,
        "procs": {"cpu_percent": 12.5, "rss": 2**20, "procs": 3},
    }  # fmt: skip
    view = {
        "overview": {"nodes": [node], "waiting": 4},
        "functions": [["f", 9, 1, 7, 1, 0]],
        "actors": [{"state": "ALIVE"}, {"state": "DEAD"}],
        "drivers": [{}],
    }
    text = metrics.render(lambda: view).decode()
    value = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert value[("kit_node_tasks", (("node", "n0"), ("state", "queued")))] == 3
    assert value[("kit_node_tasks_ended_total", (("node", "n0"), ("state", "finished")))] == 7
    assert value[("kit_function_tasks_total", (("function", "f"), ("state", "failed")))] == 1
    assert value[("kit_tasks_waiting", ())] == 4
    assert value[("kit_actors", (("state", "DEAD"),))] == 1


@pytest.mark.parametrize("name", ["auth", "launch", "metrics", "model", "trace", "probe"])
def test_docstring_examples(name):
    mod = importlib.import_module(f"kit.dashboard.{name}")
    result = doctest.testmod(mod)
    assert result.failed == 0
