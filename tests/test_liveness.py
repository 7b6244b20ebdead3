"""No hang, no lost result: dead peers are noticed, late reports fenced off, refs safe.

Each test reproduces a failure found by probing kit as an adversary would (the issue
"Trustworthy under faults and attack"): a result holding a ref freed too early, a
worker killed before it joined leaking its node's start slot, a dead head nobody
noticed, a node agent that never came back, a partition whose late results were
believed.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest
from helpers import wait_until

import kit

pytestmark = pytest.mark.cluster


def test_results_holding_refs_resolve(cluster):
    """A task returning a ref it made: the ref's drop never reaches the head before the
    result that holds it (it used to free the inner object; 3-6 in 300 never resolved,
    and a chain of such refs stalled at depth 49 to 514)."""

    @kit.remote
    def inner(i):
        return i

    @kit.remote
    def outer(i):
        return inner.remote(i)

    inner_refs = kit.get([outer.remote(i) for i in range(300)], timeout=60)
    assert kit.get(inner_refs, timeout=60) == list(range(300))

    @kit.remote
    def chain(n):
        return n if n == 0 else chain.remote(n - 1)

    r, depth = chain.remote(1500), 0
    while isinstance(r, kit.ObjectRef):
        r = kit.get(r, timeout=30)
        depth += 1
    assert (r, depth) == (0, 1501)


def test_workers_killed_before_they_join(fresh):
    """Workers killed as soon as they appear (many before they join): once the killing
    stops, the node starts workers again and every task ends (a worker that died before
    joining used to keep its start slot forever: 0 workers, tasks waiting)."""
    fresh(num_cpus=2)
    agent = psutil.Process(kit.nodes()[0]["pid"])

    @kit.remote(max_retries=-1)
    def square(i):
        return i * i

    refs = [square.remote(i) for i in range(200)]
    killed = 0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:  # the storm: every worker the zygote forks dies
        for zygote in agent.children():
            for w in zygote.children():
                try:
                    w.kill()
                    killed += 1
                except psutil.Error:
                    pass
    assert killed > 2
    assert kit.get(refs, timeout=60) == [i * i for i in range(200)]


DRIVER_SEES_HEAD_DIE = r"""
import os, signal, sys, time
import kit
kit.init(num_cpus=1)
head = kit.api._state["cluster"].proc.pid

@kit.remote
def nap():
    time.sleep(120)

ref = nap.remote()
sys.path.insert(0, {tests!r})
from helpers import wait_tasks
wait_tasks(ref, "running")
os.kill(head, signal.SIGKILL)
t = time.monotonic()
try:
    kit.get(ref)
except kit.HeadDiedError as e:
    print("HeadDiedError after %.1f s: %s" % (time.monotonic() - t, e))
"""


def test_driver_learns_that_the_head_died():
    """The head killed while the driver waits in get: get raises HeadDiedError (it used
    to wait forever). The bound is the driver's KIT_HEAD_TIMEOUT (10 s by default; 2 here)."""
    code = DRIVER_SEES_HEAD_DIE.format(tests=os.path.dirname(__file__))
    env = dict(os.environ, KIT_HEAD_TIMEOUT="2")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    assert "HeadDiedError after" in out.stdout and "stopped answering" in out.stdout, out.stdout
    print(out.stdout.strip())  # the time it took: reported, not asserted


def _kit(args, env):
    out = subprocess.run(
        [sys.executable, "-m", "kit.cli", *args], capture_output=True, text=True, env=env,
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def _alive_nodes(address, token):
    code = (
        "import kit, json; kit.init(address=%r, token=%r); "
        "print(json.dumps([n['NodeID'] for n in kit.nodes() if n['Alive']])); kit.shutdown()"
    ) % (address, token)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout) if out.returncode == 0 else None


def test_node_agent_rejoins_a_head_that_comes_back(tmp_path):
    """`kit start --address` agent: its head killed and started again on the same address
    and token: the agent clears itself and joins the new head as a new node (it used to
    neither exit nor rejoin)."""
    token = "rejoin-test-token-0123456789abcdef"
    address = "127.0.0.1:6397"
    head_env = dict(os.environ, KIT_STATE_DIR=str(tmp_path / "head"))
    node_env = dict(
        os.environ, KIT_STATE_DIR=str(tmp_path / "node"), KIT_HEAD_TIMEOUT="2",
        KIT_REJOIN_GRACE="60",
    )  # fmt: skip
    start_head = ["start", "--head", "--port", "6397", "--num-cpus", "1", "--token", token,
                  "--node-ip-address", "127.0.0.1"]  # fmt: skip
    try:
        _kit(start_head, head_env)
        _kit(["start", "--address", address, "--token", token, "--num-cpus", "1",
              "--node-ip-address", "127.0.0.1"], node_env)  # fmt: skip
        first = wait_until(
            lambda: (n := _alive_nodes(address, token)) and len(n) == 2 and n, 30, "two nodes"
        )
        head_pid = json.loads((tmp_path / "head" / "head.json").read_text())["pid"]
        os.kill(head_pid, signal.SIGKILL)
        wait_until(lambda: not psutil.pid_exists(head_pid), 10, "the head to be gone")
        (tmp_path / "head" / "head.json").unlink()
        _kit(start_head, head_env)
        again = wait_until(
            lambda: (n := _alive_nodes(address, token)) and len(n) == 2 and n,
            60,
            "the agent to join the new head",
        )
        assert not set(again) & set(first), "the agent joined again as a new node"
    finally:
        for env in (head_env, node_env):
            subprocess.run([sys.executable, "-m", "kit.cli", "stop"], env=env, timeout=60,
                           capture_output=True)  # fmt: skip


PARTITION_DRIVER = r"""
import sys, time
import numpy as np
import kit
kit.init(address="10.212.0.1:6398", token={token!r})

@kit.remote(max_retries=-1)
def work(i, pause):
    time.sleep(pause)
    return np.full(50_000, i)          # 400 KB: lives in its node's shared memory

b = [n["NodeID"] for n in kit.nodes() if n["NodeManagerAddress"] == "10.212.0.2"][0]
S = kit.NodeAffinitySchedulingStrategy
early = [work.options(scheduling_strategy=S(b, soft=True)).remote(i, 0) for i in range(4)]
kit.wait(early, num_returns=4)          # ready, held on node b only (not fetched here)
late = [work.options(scheduling_strategy=S(b, soft=True)).remote(i, 3) for i in range(4, 8)]
print("submitted", flush=True)
sys.stdin.readline()                    # the test cuts b off, waits, then heals
values = kit.get(early + late, timeout=120)
assert all((v == i).all() for i, v in enumerate(values)), "a wrong result"
dead = [n for n in kit.nodes() if not n["Alive"]]
print("ok", len(dead), kit.cluster_status()["counts"].get("rebuilt", 0), flush=True)
"""


def test_a_partition_heals_with_nothing_lost(tmp_path):
    """Node b cut off from the head for longer than the node timeout, then back: the head
    reruns b's tasks and rebuilds b's results elsewhere; b's late reports are refused
    (fenced), b clears itself and joins again as a new node; nothing is lost or wrong
    (the late result used to be believed and get raised ObjectLostError)."""
    why = _netns_available()
    if why:
        pytest.skip(why)
    a, b = "kit-part-a", "kit-part-b"
    token = "partition-test-token-0123456789ab"
    env_a = dict(os.environ, KIT_STATE_DIR=str(tmp_path / "a"))
    env_b = dict(os.environ, KIT_STATE_DIR=str(tmp_path / "b"))
    ip = lambda *cmd: subprocess.run(["ip", *cmd], check=True, capture_output=True)  # noqa
    driver = None
    try:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("link", "add", "kitpart-a", "type", "veth", "peer", "name", "kitpart-b")
        ip("link", "set", "kitpart-a", "netns", a)
        ip("link", "set", "kitpart-b", "netns", b)
        ip("-n", a, "addr", "add", "10.212.0.1/24", "dev", "kitpart-a")
        ip("-n", b, "addr", "add", "10.212.0.2/24", "dev", "kitpart-b")
        ip("-n", a, "link", "set", "kitpart-a", "up")
        ip("-n", b, "link", "set", "kitpart-b", "up")
        ns_kit = lambda ns, args, env: _kit_in(ns, args, env)  # noqa
        ns_kit(a, ["start", "--head", "--port", "6398", "--num-cpus", "1", "--token", token,
                   "--node-ip-address", "10.212.0.1", "--node-timeout", "3"], env_a)  # fmt: skip
        ns_kit(b, ["start", "--address", "10.212.0.1:6398", "--token", token, "--num-cpus",
                   "2", "--node-ip-address", "10.212.0.2"], env_b)  # fmt: skip
        b_pid = json.loads(next((tmp_path / "b").glob("node-*.json")).read_text())["pid"]
        driver = subprocess.Popen(
            ["ip", "netns", "exec", a, sys.executable, "-c",
             PARTITION_DRIVER.format(token=token)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env_a,
        )  # fmt: skip
        assert driver.stdout.readline().strip() == "submitted", driver.stderr.read()
        old_workers = {p.pid for z in psutil.Process(b_pid).children() for p in z.children()}
        ip("-n", b, "link", "set", "kitpart-b", "down")  # the partition
        time.sleep(6)  # the behaviour under test: a partition longer than the 3 s timeout
        ip("-n", b, "link", "set", "kitpart-b", "up")
        out, err = driver.communicate("go\n", timeout=150)
        assert driver.returncode == 0, out + err
        _, dead, rebuilt = out.split()[-3:]
        assert int(dead) == 1, out  # b was declared dead during the partition
        assert int(rebuilt) >= 1, out  # b's early results were made again elsewhere
        # b was fenced: its old workers are gone; it joined again as a new node
        wait_until(lambda: not any(psutil.pid_exists(p) for p in old_workers), 30,
                   "b's old workers to be stopped")  # fmt: skip
        assert psutil.pid_exists(b_pid), "the agent itself stays, as a new node"
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
        for ns, env in ((a, env_a), (b, env_b)):
            subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "kit.cli", "stop"],
                           env=env, capture_output=True, timeout=60)  # fmt: skip
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _kit_in(ns, args, env):
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "kit.cli", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def _netns_available():
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    probe = subprocess.run(["ip", "netns", "add", "kit-probe"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make network namespaces here: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", "kit-probe"], capture_output=True)
    return None
