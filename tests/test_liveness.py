"""No hang, no lost result: dead peers are noticed, late reports fenced off, refs safe.

Each test reproduces a failure found by probing kit as an adversary would (the issue
"Trustworthy under faults and attack"): a result holding a ref freed too early, a
worker killed before it joined leaking its node's start slot, a dead head nobody
noticed, a node agent that never came back, a partition whose late results were
believed.
"""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from helpers import wait_until

import kit

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
import liveness  # noqa: E402  (scripts/liveness.py: the partition scenario)

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
os.kill(head, signal.{sig})
t = time.monotonic()
try:
    kit.get(ref)
except kit.HeadDiedError as e:
    print("HeadDiedError after %.1f s: %s" % (time.monotonic() - t, e))
finally:
    os.kill(head, signal.SIGKILL)  # a stopped head too (its agents die with it)
"""


@pytest.mark.parametrize(
    "sig, said",
    [("SIGKILL", "exited"), ("SIGSTOP", "stopped answering")],
    ids=["killed", "stopped"],
)
def test_driver_learns_that_the_head_died(sig, said):
    """The head killed, or stopped (as a hung machine is), while the driver waits in get:
    get raises HeadDiedError (it used to wait forever). A head the driver started is
    watched as a process: its exit is seen at once; a stopped one after the driver's
    KIT_HEAD_TIMEOUT of silence (10 s by default; 2 here). A head that is silent but
    running is busy, not dead (kit.process.BUSY_TIMEOUT)."""
    code = DRIVER_SEES_HEAD_DIE.format(tests=os.path.dirname(__file__), sig=sig)
    env = dict(os.environ, KIT_HEAD_TIMEOUT="2")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    assert "HeadDiedError after" in out.stdout and said in out.stdout, out.stdout
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


def test_a_partition_heals_with_nothing_lost(tmp_path):
    """Node b cut off from the head for longer than the node timeout, then back: the head
    reruns b's tasks and rebuilds b's results elsewhere; b's late reports are refused
    (fenced), b clears itself and joins again as a new node; nothing is lost or wrong
    (the late result used to be believed and get raised ObjectLostError). The scenario is
    scripts/liveness.py's (6 s here, 25 s in its long run)."""
    why = liveness.netns_unavailable()
    if why:
        pytest.skip(why)
    r = liveness.partition(6.0, node_timeout=3.0, workdir=tmp_path)
    assert r["dead"] == 1, r  # b was declared dead during the partition
    assert r["rebuilt"] >= 1, r  # b's early results were made again elsewhere
    assert r["old_workers_stopped"] and r["agent_stayed"], r
