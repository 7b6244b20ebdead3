"""How long kit takes to notice dead and cut-off peers, with the default timeouts.

    python scripts/liveness.py [--runs 5] [--partition 25] [--short]

- head: a driver waits in ``kit.get`` on a local cluster; the head is SIGKILLed (the
  driver watches a head it started as a process: seen at once), or SIGSTOPped (alive
  but silent, as a hung machine is: ``KIT_HEAD_TIMEOUT``, 8 s by default); the time
  until ``get`` raises ``HeadDiedError``.
- hung node: a node (its agent and workers) is stopped with SIGSTOP, alive but silent
  as a hung machine is; the time until the head declares it dead, and whether its
  running task ran again elsewhere (default node timeout: 10 s).
- partition (root only: network namespaces): node b cut off from the head for 25 s
  while its tasks run, then reconnected: whether every result comes back right, how
  many were made again, whether b's old workers were stopped and b joined again.

Prints one JSON line. ``--short`` is one run of the first two with 2 s timeouts.
``partition()`` is also the scenario of ``tests/test_liveness.py`` (6 s there).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAD = r"""
import os, signal, time
import kit
kit.init(num_cpus=1)
head = kit.api._state["cluster"].proc.pid

@kit.remote
def nap():
    time.sleep(600)

ref = nap.remote()
deadline = time.time() + 30
while time.time() < deadline and not any(e["state"] == "running" for e in kit.events()[1]):
    time.sleep(0.01)
os.kill(head, getattr(signal, os.environ["HOW"]))
t = time.monotonic()
try:
    kit.get(ref)
except kit.HeadDiedError:
    print(time.monotonic() - t)
finally:
    os.kill(head, signal.SIGKILL)
"""

HUNG_NODE = r"""
import os, signal, time
import psutil
import kit
kit.init(num_cpus=1, num_nodes=2)
mine = kit.get_runtime_context().get_node_id()
victim = [n for n in kit.nodes() if n["NodeID"] != mine][0]

@kit.remote(max_retries=-1)
def work():
    time.sleep(2)
    return kit.get_runtime_context().get_node_id()

S = kit.NodeAffinitySchedulingStrategy
ref = work.options(scheduling_strategy=S(victim["NodeID"], soft=True)).remote()
deadline = time.time() + 30
while time.time() < deadline and not any(e["state"] == "running" for e in kit.events()[1]):
    time.sleep(0.01)
agent = psutil.Process(victim["pid"])
tree = [agent] + agent.children(recursive=True)
for p in tree:
    p.suspend()
t = time.monotonic()
while any(n["Alive"] for n in kit.nodes() if n["NodeID"] == victim["NodeID"]):
    time.sleep(0.05)
declared = time.monotonic() - t
ran_on = kit.get(ref, timeout=60)
for p in tree:
    p.resume()
print(declared, ran_on != victim["NodeID"])
kit.shutdown()
"""

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
sys.stdin.readline()                    # the partition happens here
values = kit.get(early + late, timeout=120)
assert all((v == i).all() for i, v in enumerate(values)), "a wrong result"
dead = [n for n in kit.nodes() if not n["Alive"]]
print(len(dead), kit.cluster_status()["counts"].get("rebuilt", 0), flush=True)
"""


def run_code(code, env_extra, timeout=120):
    env = dict(os.environ, **env_extra)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env
    )
    if out.returncode != 0 or not out.stdout.strip():
        raise SystemExit(f"liveness: a run failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout.split()


def netns_unavailable():
    """Why network namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    probe = subprocess.run(["ip", "netns", "add", "kit-probe"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make network namespaces here: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", "kit-probe"], capture_output=True)
    return None


def _ip(*cmd):
    subprocess.run(["ip", *cmd], check=True, capture_output=True)


def _kit_in(ns, args, env):
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "kit.cli", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"kit {' '.join(args[:2])} failed: {out.stdout}{out.stderr}")
    return out


def partition(seconds: float, node_timeout: float = 10.0, workdir=None) -> dict:
    """Two hosts (namespaces a and b); b's link goes down for ``seconds`` while its tasks
    run, then up again. Returns what the driver saw and what became of b."""
    import psutil
    from helpers import wait_until  # tests/helpers.py: on sys.path in tests and here

    work = Path(workdir or tempfile.mkdtemp())
    a, b = "kit-part-a", "kit-part-b"
    token = "partition-test-token-0123456789ab"
    env_a = dict(os.environ, KIT_STATE_DIR=str(work / "a"))
    env_b = dict(os.environ, KIT_STATE_DIR=str(work / "b"))
    driver = None
    try:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "add", "kitpart-a", "type", "veth", "peer", "name", "kitpart-b")
        _ip("link", "set", "kitpart-a", "netns", a)
        _ip("link", "set", "kitpart-b", "netns", b)
        _ip("-n", a, "addr", "add", "10.212.0.1/24", "dev", "kitpart-a")
        _ip("-n", b, "addr", "add", "10.212.0.2/24", "dev", "kitpart-b")
        _ip("-n", a, "link", "set", "kitpart-a", "up")
        _ip("-n", b, "link", "set", "kitpart-b", "up")
        _kit_in(a, ["start", "--head", "--port", "6398", "--num-cpus", "1", "--token", token,
                    "--node-ip-address", "10.212.0.1", "--node-timeout", str(node_timeout)],
                env_a)  # fmt: skip
        _kit_in(b, ["start", "--address", "10.212.0.1:6398", "--num-cpus", "2",
                    "--node-ip-address", "10.212.0.2"], dict(env_b, KIT_TOKEN=token))  # fmt: skip
        b_pid = json.loads(next((work / "b").glob("node-*.json")).read_text())["pid"]
        driver = subprocess.Popen(
            ["ip", "netns", "exec", a, sys.executable, "-c",
             PARTITION_DRIVER.format(token=token)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env_a,
        )  # fmt: skip
        if driver.stdout.readline().strip() != "submitted":
            raise RuntimeError(f"the driver did not start: {driver.stderr.read()}")
        old = {p.pid for z in psutil.Process(b_pid).children() for p in z.children()}
        _ip("-n", b, "link", "set", "kitpart-b", "down")
        time.sleep(seconds)  # the partition itself
        _ip("-n", b, "link", "set", "kitpart-b", "up")
        healed = time.monotonic()
        out, err = driver.communicate("go\n", timeout=150)
        if driver.returncode != 0:
            raise RuntimeError(f"the driver failed: {out}{err}")
        dead, rebuilt = (int(x) for x in out.split()[-2:])
        wait_until(lambda: not any(psutil.pid_exists(p) for p in old), 30,
                   "b's old workers to be stopped")  # fmt: skip
        return {
            "partition_s": seconds,
            "results_right": True,
            "dead": dead,
            "rebuilt": rebuilt,
            "old_workers_stopped": True,
            "agent_stayed": psutil.pid_exists(b_pid),
            "after_heal_s": round(time.monotonic() - healed, 1),
        }
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
        for ns, env in ((a, env_a), (b, env_b)):
            subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "kit.cli", "stop"],
                           env=env, capture_output=True, timeout=60)  # fmt: skip
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--partition", type=float, default=25.0, help="seconds b is cut off")
    p.add_argument("--short", action="store_true", help="one run, 2 s timeouts (for tests)")
    args = p.parse_args(argv)
    runs = 1 if args.short else args.runs
    head_env = {"KIT_HEAD_TIMEOUT": "2"} if args.short else {}
    node_env = {"KIT_NODE_TIMEOUT": "2"} if args.short else {}
    head = [float(run_code(HEAD, {**head_env, "HOW": "SIGKILL"})[0]) for _ in range(runs)]
    stopped = [float(run_code(HEAD, {**head_env, "HOW": "SIGSTOP"})[0]) for _ in range(runs)]
    hung = [run_code(HUNG_NODE, node_env) for _ in range(runs)]
    declared = [float(h[0]) for h in hung]
    out = {
        "head_died_noticed_s": {"median": round(statistics.median(head), 2),
                                "max": round(max(head), 2)},
        "head_stopped_noticed_s": {"median": round(statistics.median(stopped), 2),
                                   "max": round(max(stopped), 2)},
        "hung_node_declared_s": {"median": round(statistics.median(declared), 2),
                                 "max": round(max(declared), 2)},
        "hung_node_task_ran_elsewhere": all(h[1] == "True" for h in hung),
        "runs": runs,
    }  # fmt: skip
    if not args.short:
        why = netns_unavailable()
        out["partition"] = {"skipped": why} if why else partition(args.partition)
    print(json.dumps(out))


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    main()
