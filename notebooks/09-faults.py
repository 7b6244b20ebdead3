# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 9. Faults: crashed workers, lost nodes and exceptions
#
# Three different things can go wrong:
#
# * the **worker process dies** (a crash, running out of memory, a kill): kit runs the
#   task again on another worker, up to `max_retries` times (3 by default);
# * a **node dies** with results in its shared memory: kit makes them again by
#   running the tasks that made them;
# * the **task raises an exception**: that is your program's answer, so it is not
#   retried (unless you ask); `kit.get` raises it in the driver with the remote
#   traceback.

# %%
import os
import shutil
import signal
import tempfile
import time

import numpy as np

import kit

kit.init(num_cpus=2)
scratch = tempfile.mkdtemp(prefix="kit-faults-")


# %% [markdown]
# ## A worker that dies on the first try
#
# The task leaves a file behind on its first try and then kills its own process with
# `os._exit(1)`. The second try finds the file and finishes.

# %%
@kit.remote(max_retries=2)
def flaky(marker):
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        os._exit(1)                       # the worker process dies here
    return os.getpid()

marker = os.path.join(scratch, "flaky")
pid = kit.get(flaky.remote(marker))
with open(marker) as f:
    print(f"first try in pid {f.read()} died; the retry finished in pid {pid}")

# %% [markdown]
# Without retries the crash reaches the driver as a `WorkerCrashedError` that says what
# happened:

# %%
os.remove(marker)
try:
    kit.get(flaky.options(max_retries=0).remote(marker))
except kit.WorkerCrashedError as err:
    print(f"{type(err).__name__}: {err}")


# %% [markdown]
# ## Killing a worker from outside
#
# The same happens when something else kills the worker, as the kernel's
# out-of-memory killer or an operator would. The task writes its pid to a file and
# works for a second; the driver kills that pid with `SIGKILL` mid-run.

# %%
@kit.remote
def long_job(pid_file):
    with open(pid_file, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(1)
    return f"done in pid {os.getpid()}"

pid_file = os.path.join(scratch, "pids")
ref = long_job.remote(pid_file)
deadline = time.time() + 10
while not os.path.exists(pid_file) and time.time() < deadline:
    time.sleep(0.02)
with open(pid_file) as f:
    victim = int(f.read().split()[0])
os.kill(victim, signal.SIGKILL)
print(f"killed pid {victim}")
print(kit.get(ref, timeout=30))
with open(pid_file) as f:
    print("tries, by pid:", f.read().split())
print("task counts:", kit.cluster_status()["counts"])


# %% [markdown]
# ## Exceptions carry their remote traceback
#
# An exception raised in a task comes back as an instance of **its own class** (so
# `except ZeroDivisionError:` works) that is also a `kit.TaskError`, with the
# traceback from the worker in `err.traceback_str` and where it ran in `err.pid` and
# `err.node_id`.

# %%
@kit.remote
def inverse(x):
    return 1 / x

try:
    kit.get(inverse.remote(0))
except ZeroDivisionError as err:
    print("caught:", err)
    print("a kit.TaskError too:", isinstance(err, kit.TaskError))
    print(err.traceback_str)


# %% [markdown]
# Exceptions are not retried by default: running the same code on the same input
# usually fails the same way. For errors that may pass (a network hiccup), set
# `retry_exceptions=True`:

# %%
@kit.remote(max_retries=3, retry_exceptions=True)
def unreliable(counter_file):
    with open(counter_file, "a") as f:
        f.write("x")
    with open(counter_file) as f:
        tries = len(f.read())
    if tries < 3:
        raise ConnectionError(f"try {tries} failed")
    return f"succeeded on try {tries}"

print(kit.get(unreliable.remote(os.path.join(scratch, "tries"))))

# %% [markdown]
# ## A node that dies takes its objects with it
#
# Large results live in the shared memory of the node that made them. When a node
# dies they are gone, and kit makes them again by running the task that made them
# (its **lineage**) on a node that is left, within the same `max_retries`. A value
# made with `kit.put` has no task behind it: `get` raises `ObjectLostError`.
#
# Here node `n1` makes an array of 7.6 MiB (a million int64), and we kill that node's
# agent with `SIGKILL`. A line a task prints starts with its function, process and node:
# `(make_array pid=..., node=n1)`.

# %%
kit.shutdown()
kit.init(num_nodes=2, num_cpus=1)
first, second = sorted(kit.nodes(), key=lambda n: n["tag"])

@kit.remote
def make_array(n, pid_file):
    print("making the array")
    with open(pid_file, "a") as f:
        f.write(f"{os.getpid()}\n")
    return np.arange(n)

made_by = os.path.join(scratch, "made-by")
on_second = kit.NodeAffinitySchedulingStrategy(second["NodeID"], soft=True)
ref = make_array.options(scheduling_strategy=on_second).remote(1_000_000, made_by)
kit.wait([ref])
print(f"killing node {second['tag']}")
os.kill(second["pid"], signal.SIGKILL)
arr = kit.get(ref, timeout=60)
with open(made_by) as f:
    print("sum:", arr.sum(), "- made by pids:", f.read().split())

# %% [markdown]
# Two pids: the first try on `n1` and the second on `n0`, which made the lost array
# again. (One pid means the array was still readable here when `n1` died: its shared
# memory outlived the agent for a moment.) `soft=True` lets the task run elsewhere when
# its node is gone; a hard pin (`soft=False`) would fail with `NodeDiedError` instead.

# %% [markdown]
# ## Exercise
#
# Submit `inverse` for `x` in `range(-3, 4)`. One of them fails. Collect the results
# that succeeded and the errors that did not, without the one failure losing the
# others, and print both.

# %% [markdown]
# ### Solution
#
# `kit.get` on the whole list raises at the first failure; get each ref on its own.

# %%
refs = {x: inverse.remote(x) for x in range(-3, 4)}
results, errors = {}, {}
for x, r in refs.items():
    try:
        results[x] = kit.get(r)
    except kit.TaskError as err:
        errors[x] = str(err)
print("results:", {x: round(v, 3) for x, v in results.items()})
print("errors:", errors)

# %%
kit.shutdown()
shutil.rmtree(scratch)
