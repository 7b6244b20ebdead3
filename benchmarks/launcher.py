"""How long `kit up` takes to a usable 3-host cluster, and what autoscaling does over time.

    sudo python benchmarks/launcher.py [--short] [--out benchmarks/results/launcher.md]

Needs root, `ip netns` and OpenSSH (bash scripts/install-ssh.sh): it makes the tests' lab
(tests/hosts.py: three network namespaces on a bridge, an sshd in each, a key made for the
run) and measures, each ``--repeat`` times:

  up      `kit up` (the CLI, as a user types it) on a head and two workers, to the first
          task answered by each of the three hosts; then `kit up` again (nothing to do)
          and `kit down` (every kit process gone from every host)
  trace   the autoscaler's decisions, with the time since the burst began: a local
          cluster from kit.init(autoscale=...) and a cluster file with the ssh provider
          (a head and a pool of two hosts), under a burst of long tasks, then idle

``--short`` does one repetition with a smaller burst (about 30 s).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import yaml  # noqa: E402
from hosts import Lab, sshd_unavailable  # noqa: E402

import kit  # noqa: E402


@kit.remote
def where():
    return kit.get_runtime_context().get_node_id()


@kit.remote
def slow(i, seconds):
    time.sleep(seconds)  # a long task: the work the autoscaler answers
    return i


def cli(args, env):
    r = subprocess.run([sys.executable, "-m", "kit.cli", *args], capture_output=True,
                       text=True, env=env, timeout=300)  # fmt: skip
    if r.returncode != 0:
        raise SystemExit(f"kit {' '.join(args)} failed:\n{r.stdout}{r.stderr}")
    return r.stdout


def cluster_file(lab, folder, name, **extra):
    cfg = {"cluster_name": name, "python": sys.executable, "cpus": 1,
           "ssh": {"user": "root", "key": lab.key, "options": lab.ssh_options()},
           "head": lab.hosts[0], **extra}  # fmt: skip
    path = os.path.join(folder, f"{name}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return path


def measure_up(lab, folder, env):
    path = cluster_file(lab, folder, "bench", workers=lab.hosts[1:], setup=["true"])
    t0 = time.perf_counter()
    cli(["up", path], env)
    t_up = time.perf_counter() - t0
    os.environ["KIT_STATE_DIR"] = env["KIT_STATE_DIR"]
    kit.init(address=f"{lab.hosts[0]}:6380", log_to_driver=False)
    ids = {n["NodeID"] for n in kit.nodes()}
    seen: set = set()
    while seen != ids:  # the first answer from each host (tasks go where slots are)
        seen |= set(kit.get([where.remote() for _ in range(30)]))
    t_usable = time.perf_counter() - t0
    kit.shutdown()
    t1 = time.perf_counter()
    cli(["up", path], env)
    t_again = time.perf_counter() - t1
    t2 = time.perf_counter()
    cli(["down", path], env)
    t_down = time.perf_counter() - t2
    left = sum(len(lab.kit_processes(h)) for h in lab.hosts)
    return {"up": t_up, "usable": t_usable, "again": t_again, "down": t_down, "left": left}


def trace(tasks, seconds, until_nodes):
    """Submit a burst, read the 'cluster' events until the cluster is back to
    ``until_nodes`` alive nodes and every result is in; [(t since burst, text)]."""
    t0 = time.time()
    refs = [slow.remote(i, seconds) for i in range(tasks)]
    out, cursor, done = [], 0, False
    deadline = time.time() + 300
    while time.time() < deadline:
        cursor, evs = kit.events(cursor)
        out += [(e["time"] - t0, e["label"]) for e in evs if e["state"] == "cluster"]
        if not done:
            ready, _ = kit.wait(refs, num_returns=len(refs), timeout=0)
            if len(ready) == len(refs):
                assert kit.get(refs) == list(range(tasks))
                done = True
                out.append((time.time() - t0, f"all {tasks} results in"))
        if done and sum(n["Alive"] for n in kit.nodes()) == until_nodes:
            break
        time.sleep(0.1)  # polling the event log
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--short", action="store_true")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out")
    args = p.parse_args()
    why = sshd_unavailable()
    if why:
        raise SystemExit(f"launcher benchmark: {why}")
    repeat = 1 if args.short else args.repeat
    tasks, seconds = (12, 0.5) if args.short else (40, 1.0)
    folder = tempfile.mkdtemp(prefix="kit-launcher-bench-")
    env = dict(os.environ, KIT_STATE_DIR=os.path.join(folder, "state"))
    lab = Lab(3, os.path.join(folder, "lab"))
    lines = []
    try:
        ups = [measure_up(lab, folder, env) for _ in range(repeat)]
        os.environ["KIT_STATE_DIR"] = env["KIT_STATE_DIR"]
        bounds = {"min_nodes": 1, "max_nodes": 4, "idle_timeout": 3, "wait": 0.5}
        kit.init(num_cpus=1, log_to_driver=False, autoscale=bounds)
        local = trace(tasks, seconds, 1)
        kit.shutdown()
        auto = {"min_nodes": 1, "max_nodes": 3, "idle_timeout": 3, "wait": 0.5,
                "provider": "ssh", "pool": lab.hosts[1:]}  # fmt: skip
        path = cluster_file(lab, folder, "auto", autoscale=auto)
        cli(["up", path], env)
        kit.init(address=f"{lab.hosts[0]}:6380", log_to_driver=False)
        ssh = trace(tasks, seconds, 1)
        kit.shutdown()
        cli(["down", path], env)
    finally:
        if kit.is_initialized():
            kit.shutdown()
        lab.close()
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True, cwd=HERE).stdout.strip()  # fmt: skip
    lines.append("# kit up and autoscaling\n")
    lines.append(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · {platform.node()} · "
                 f"{os.cpu_count()} CPUs · kit git {git} · three hosts: network namespaces with "
                 f"an sshd each (tests/hosts.py), one CPU slot per node · `python "
                 f"benchmarks/launcher.py{' --short' if args.short else ''}`\n")  # fmt: skip
    lines.append("## From `kit up` to a usable 3-host cluster\n")
    lines.append("| run | kit up returns (s) | first task on each host (s) | kit up again (s) "
                 "| kit down (s) | kit processes left |")  # fmt: skip
    lines.append("|---:|---:|---:|---:|---:|---:|")
    for i, u in enumerate(ups, 1):
        lines.append(f"| {i} | {u['up']:.2f} | {u['usable']:.2f} | {u['again']:.2f} | "
                     f"{u['down']:.2f} | {u['left']} |")  # fmt: skip
    for title, tr, what in (
        ("local provider: kit.init(autoscale=(1, 4))", local, "1 CPU per node"),
        ("ssh provider: a head and a pool of two hosts", ssh, "1 CPU per host"),
    ):
        lines.append(f"\n## Trace, {title}\n")
        lines.append(f"{tasks} tasks of {seconds} s submitted at t = 0 ({what}; wait 0.5 s, "
                     f"idle_timeout 3 s). Each line is an event of state \"cluster\" as "
                     f"kit.events() returns it.\n")  # fmt: skip
        lines.append("```")
        lines += [f"{t:7.2f} s  {text}" for t, text in tr]
        lines.append("```")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
