"""The dashboard against real clusters: the token on every endpoint, its figures against the
runtime's, /metrics through Prometheus' parser, the timeline, a worker's stack, and a
``kit start --head`` cluster watched while two drivers submit work."""

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import tornado.httpclient
import tornado.websocket
from helpers import TESTS, wait_until
from prometheus_client.parser import text_string_to_metric_families

import kit
from kit.dashboard import auth
from kit.dashboard.server import FORBIDDEN

pytestmark = pytest.mark.cluster

PATHS = ["/", "/static/dashboard.js", "/ws", "/api/state", "/api/stack/00", "/metrics",
         "/timeline.json", "/nope"]  # fmt: skip


def fetch(url, headers=None, method="GET", data=None):
    """``(status, headers, body)`` of one request (no redirects followed, errors returned)."""
    req = urllib.request.Request(url, headers=headers or {}, method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def websocket(url, headers=None):
    """Open a websocket and read one frame: the frame, or the HTTP error's code."""

    async def go():
        req = tornado.httpclient.HTTPRequest(url, headers=headers or {}, request_timeout=10)
        try:
            conn = await tornado.websocket.websocket_connect(req)
        except tornado.httpclient.HTTPClientError as e:
            return e.code
        msg = await asyncio.wait_for(conn.read_message(), 10)
        conn.close()
        return json.loads(msg)

    return asyncio.run(go())


def state(base, token):
    return json.loads(fetch(f"{base}/api/state?token={token}")[2])


@pytest.fixture
def dash(fresh):
    ctx = fresh(num_nodes=2, num_cpus=1, dashboard_port=0)
    base, view = ctx.dashboard_url.split("/?token=")
    return ctx, base, view


@pytest.mark.timeout(60)
def test_every_endpoint_refuses_without_the_token(dash):
    ctx, base, view = dash
    assert base.startswith("http://127.0.0.1:")  # loopback unless told otherwise
    gate = auth.Gate(ctx.token)
    wrong = auth.view_token("not the token")
    for path in PATHS:
        for headers, query in [
            ({}, ""),
            ({}, f"?token={wrong}"),
            ({"Cookie": f"kit-dashboard-{base.rsplit(':', 1)[1]}=forged"}, ""),
            ({"Authorization": f"Bearer {wrong}"}, ""),
        ]:
            status, hdrs, body = fetch(base + path + query, headers)
            assert (status, body) == (403, FORBIDDEN), (path, headers, query)
            assert "Server" not in hdrs and "Set-Cookie" not in hdrs
    assert fetch(base + "/", method="POST", data=b"x")[0] == 403
    ws = base.replace("http://", "ws://") + "/ws"
    assert websocket(ws) == 403
    assert websocket(ws + f"?token={wrong}") == 403
    # the view token opens every page and sets a cookie that opens them too
    status, hdrs, body = fetch(f"{base}/?token={view}")
    assert status == 200 and b"kit dashboard" in body
    cookie = hdrs["Set-Cookie"].split(";")[0]
    assert "HttpOnly" in hdrs["Set-Cookie"] and gate.cookie in cookie and view not in cookie
    for path in ("/", "/static/dashboard.js", "/api/state", "/metrics", "/timeline.json"):
        assert fetch(base + path, {"Cookie": cookie})[0] == 200, path
    assert fetch(base + "/nope", {"Cookie": cookie})[0] == 404
    assert fetch(base + "/metrics", {"Authorization": f"Bearer {ctx.token}"})[0] == 200
    # read-only: nothing but GET, even with the token
    assert fetch(f"{base}/api/state?token={view}", method="POST", data=b"{}")[0] == 405
    frame = websocket(ws, {"Cookie": cookie, "Origin": base})
    assert frame["overview"]["totals"]["nodes"] == 2
    # a page of another origin cannot use the cookie (cross-site websocket hijacking)
    assert websocket(ws, {"Cookie": cookie, "Origin": "http://evil.example"}) == 403


@pytest.mark.timeout(90)
def test_figures_match_the_runtime_and_metrics_parse(dash):
    ctx, base, view = dash
    state(base, view)  # the first page starts the dashboard: output printed later is kept

    @kit.remote
    def nap(i):
        print("nap", i)
        time.sleep(0.01)  # tasks that last: the dashboard sees them running
        return i

    @kit.remote
    def boom(x):
        raise ValueError(f"boom {x}")

    @kit.remote
    class Counter:
        def __init__(self):
            self.n = 0

        def inc(self):
            self.n += 1
            print("count", self.n)
            return self.n

    c = Counter.remote()
    assert kit.get([c.inc.remote() for _ in range(5)]) == [1, 2, 3, 4, 5]
    assert len(kit.get([nap.remote(i) for i in range(60)])) == 60
    bad = boom.remote(kit.put(7))  # a ref argument: the head's path, which keeps errors
    with pytest.raises(ValueError):
        kit.get(bad)
    with pytest.raises(ValueError):  # the direct path: its driver sends the traceback
        kit.get(boom.remote(8))

    def settled():
        st = state(base, view)
        runtime = {n["tag"]: (n["done"], n["failed"]) for n in kit.nodes()}
        page = {n["tag"]: (n["done"], n["failed"]) for n in st["overview"]["nodes"]}
        failed = sum(f for _, f in runtime.values())
        return st if page == runtime and failed == 2 and len(_failed(st)) == 2 else None

    st = wait_until(settled, 20, "the dashboard's per-node counts to equal kit.nodes()")
    fns = {f[0]: f[1:] for f in st["functions"]}
    assert fns["nap"][:3] == [60, 0, 60] and fns["boom"][3] == 2
    failed = _failed(st)
    assert [r[1] for r in failed] == ["boom", "boom"]
    assert sorted(r[10].splitlines()[-1] for r in failed) == [
        "ValueError: boom 7",
        "ValueError: boom 8",
    ]
    (actor,) = st["actors"]
    assert (actor["class"], actor["state"], actor["calls"]) == ("Counter", "ALIVE", 5)
    (me,) = [d for d in st["drivers"] if d["pid"] == os.getpid()]
    assert me["submitted"] >= 68 and me["failed"] == 2
    actor_worker = next(w for w in st["workers"] if w["actor"] == actor["id"])
    wait_until(
        lambda: any("count 5" in line[2] for w in state(base, view)["workers"]
                    if w["id"] == actor_worker["id"] for line in w["logs"]),
        10, "the actor's output among its worker's recent lines",
    )  # fmt: skip
    wait_until(  # printed by direct tasks: their driver passes it on to the head
        lambda: any("nap 59" in line[2] for w in state(base, view)["workers"]
                    for line in w["logs"]),
        10, "a direct task's output among its worker's recent lines",
    )  # fmt: skip
    # /metrics: Prometheus' own parser reads it, and its counts are the runtime's
    _, _, text = fetch(f"{base}/metrics?token={view}")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text.decode())
        for s in f.samples
    }
    for n in kit.nodes():
        key = ("kit_node_tasks_ended_total", (("node", n["tag"]), ("state", "finished")))
        assert samples[key] == n["done"]
    assert samples[("kit_actors", (("state", "ALIVE"),))] == 1
    # the timeline: a Chrome trace with a complete event per run
    _, hdrs, body = fetch(f"{base}/timeline.json?token={view}")
    trace = json.loads(body)
    assert "attachment" in hdrs["Content-Disposition"]
    runs = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert sum(1 for e in runs if e["name"] == "nap") == 60
    # the actor's worker's Python stack, read from outside with py-spy
    _, _, body = fetch(f"{base}/api/stack/{actor_worker['id']}?token={view}")
    stack = json.loads(body)
    assert stack["pid"] == actor["pid"]
    assert "Thread" in stack["stack"] or "py-spy could not" in stack["stack"]

    # machine and process figures, sampled by each node's agent while the page watches
    def figures():
        st = state(base, view)
        rows = st["overview"]["nodes"]
        # the agent, its zygote and its workers
        procs = [r["procs"] and r["procs"]["procs"] for r in rows]
        ok = procs == [2 + len(w) for w in _workers_by_node(st)]
        return ok and all(w["cpu_rss"] and w["cpu_rss"][1] > 0 for w in st["workers"]) and st

    st = wait_until(figures, 10, "every node's and worker's CPU and memory figures")
    assert [r["machine"]["cpu_count"] for r in st["overview"]["nodes"]] == [os.cpu_count()] * 2


def _workers_by_node(st) -> list:
    """The workers of each node of the dashboard's overview, in its order."""
    return [[w for w in st["workers"] if w["node"] == r["tag"]] for r in st["overview"]["nodes"]]


def _failed(st) -> list:
    """The failed rows of the tasks table that carry their traceback."""
    return [r for r in st["rows"] if r[2] == "failed" and r[10]]


@pytest.mark.timeout(150)
def test_a_kit_start_head_cluster_shows_two_drivers_work(tmp_path):
    env = dict(os.environ, KIT_STATE_DIR=str(tmp_path / "state"))
    env.pop("KIT_ADDRESS", None)
    env.pop("KIT_TOKEN", None)

    def kit_cli(*args, check=True, extra=None):
        out = subprocess.run(
            [sys.executable, "-m", "kit.cli", *args],
            capture_output=True,
            text=True,
            env=dict(env, **(extra or {})),
            timeout=60,
        )
        assert not check or out.returncode == 0, out.stdout + out.stderr
        return out

    driver = (
        f"import sys, time, kit\nsys.path.insert(0, {TESTS!r})\n"
        "kit.init(address='auto', log_to_driver=False)\n"
        "label = sys.argv[1]\n"
        "def work(i):\n    print('said by', label, i)\n    return i\n"
        "work.__name__ = work.__qualname__ = label  # each driver's own function name\n"
        "g = kit.remote(work)\n"
        "print(sum(kit.get([g.remote(i) for i in range(int(sys.argv[2]))])), flush=True)\n"
        "sys.stdin.readline()\n"
    )
    procs = []
    try:
        out = kit_cli("start", "--head", "--port", "0", "--num-cpus", "2", "--dashboard-port", "0",
                      "--node-ip-address", "127.0.0.1").stdout  # fmt: skip
        head = json.loads((tmp_path / "state" / "head.json").read_text())
        assert head["dashboard"].startswith("http://127.0.0.1:") and head["dashboard"] in out
        assert head["token"] not in out.split("Its dashboard")[1].splitlines()[0]
        link = kit_cli("dashboard", "--print").stdout.strip()
        assert link == auth.link(head["dashboard"], head["token"])
        base, view = link.split("/?token=")
        state(base, view)  # someone watches: output printed from now on is kept
        for label, n in (("alpha_job", 40), ("beta_job", 25)):
            p = subprocess.Popen(
                [sys.executable, "-c", driver, label, str(n)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            )  # fmt: skip
            procs.append(p)
        assert [int(p.stdout.readline()) for p in procs] == [sum(range(40)), sum(range(25))]

        def both():
            pids = {p.pid for p in procs}
            ds = [d for d in state(base, view)["drivers"] if d["pid"] in pids]
            work = {f[0]: f[1:] for d in ds for f in d["functions"]}
            ok = len(ds) == 2 and work.get("alpha_job") == [40, 40, 0]
            return ok and work.get("beta_job") == [25, 25, 0] and ds

        wait_until(both, 20, "both drivers and what each submitted on the dashboard")
        # what their tasks print reaches the dashboard, not the drivers (log_to_driver=False)
        wait_until(
            lambda: {"alpha_job", "beta_job"} <= {
                line[2].split()[-2] for w in state(base, view)["workers"]
                for line in w["logs"] if "said by" in line[2]},
            10, "the tasks' output on the dashboard",
        )  # fmt: skip
        status = kit_cli("status").stdout
        assert f"dashboard: {link}" in status
        for p in procs:
            p.stdin.close()
            assert p.stdout.read() == ""  # nothing printed by the tasks
            p.wait(20)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        kit_cli("stop", check=False)


@pytest.mark.timeout(60)
def test_next_free_port_and_no_dashboard(fresh):
    from kit.dashboard import launch

    taken = launch.bind("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        ctx = fresh(num_cpus=1, dashboard_port=port)
        got = int(ctx.dashboard_url.split(":")[2].split("/")[0])
        assert port < got < port + launch.PORTS_TRIED
        assert fetch(ctx.dashboard_url)[0] == 200
        kit.shutdown()
        ctx = fresh(num_cpus=1, include_dashboard=False)
        assert ctx.dashboard_url is None and kit.dashboard_url() is None
    finally:
        taken.close()


@pytest.mark.timeout(60)
def test_cluster_dashboard_magic_shows_the_panel_in_the_cell(fresh):
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython
    from IPython.utils.capture import capture_output

    sh = start_ipython() or get_ipython()
    sh.run_line_magic("load_ext", "kit")
    fresh(num_cpus=1, dashboard_port=0)
    with capture_output() as cap:
        sh.run_cell("%cluster dashboard tasks")
    (out,) = cap.outputs
    data = out.data
    link = kit.dashboard_url("tasks")
    assert f'src="{link.replace("&", "&amp;")}"' in data["text/html"]
    mime = data["application/vnd.kit.dashboard+json"]
    assert mime == {"url": kit.dashboard_url(), "panel": "tasks", "panels": mime["panels"]}
    assert fetch(link)[0] == 200
    with capture_output() as cap:
        sh.run_cell("%cluster dashboard nonsense")
    assert "no panel 'nonsense'" in cap.stderr + cap.stdout
