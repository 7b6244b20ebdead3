# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1. Tasks and futures
#
# kit runs Python functions as **tasks** on a cluster of worker processes. Three calls
# do most of the work:
#
# * `@kit.remote` turns a function into a remote function;
# * `f.remote(args)` starts a task and returns at once with a **future** (an `ObjectRef`);
# * `kit.get(ref)` waits for the task and returns its value.
#
# kit speaks Ray's core API, so `import kit as ray` runs programs written for Ray.
# This lesson times sixteen sleeping tasks with the standard library and with kit,
# then looks at what one task costs.

# %%
import time
from concurrent.futures import ProcessPoolExecutor

SLEEPS = [0.1, 0.2, 0.1, 0.5, 0.7, 0.9, 0.5, 0.4, 1.5, 1.3, 1.0, 0.3, 0.7, 0.6, 0.3, 0.8]
print(f"{len(SLEEPS)} sleeps, {sum(SLEEPS):.1f} s in a row, the longest {max(SLEEPS)} s")


# %% [markdown]
# ## The standard-library way
#
# `concurrent.futures.ProcessPoolExecutor` runs a function in a pool of processes. With
# 16 processes every sleep has its own, so the whole batch takes as long as the
# longest sleep (1.5 s), not the sum (9.9 s).

# %%
def sleep_plain(t):
    time.sleep(t)
    return f"Sleep time {t}"

with ProcessPoolExecutor(16) as ex:
    start = time.time()
    pool_results = list(ex.map(sleep_plain, SLEEPS))
    pool_time = time.time() - start
print(f"process pool: {pool_time:.2f} s")

# %% [markdown]
# ## The same with kit
#
# `kit.init(num_cpus=16)` starts a local cluster (a head, a node agent and its
# workers) with 16 task slots. A slot is where one task runs; it is not tied to a
# core, and sleeping tasks need no core, so 16 slots on this 2-core machine are fine.

# %%
import kit

kit.init(num_cpus=16)


# %% [markdown]
# Decorate the function with `@kit.remote`. Calling `.remote()` does not run it here:
# it sends a task to the cluster and hands back an `ObjectRef` straight away.

# %%
@kit.remote
def sleep_task(t):
    time.sleep(t)
    return f"Sleep time {t}"

start = time.time()
ref = sleep_task.remote(0.5)
print(f"submitted in {(time.time() - start) * 1000:.1f} ms:", ref)
print(kit.get(ref), f"after {time.time() - start:.2f} s")

# %% [markdown]
# Start all sixteen first, then wait for all of them with one `kit.get` on the list.
# The results come back in the order of the list, whatever order the tasks finish in.
# `progress=True` shows how many are done while it waits.

# %%
start = time.time()
futures = [sleep_task.remote(t) for t in SLEEPS]
results = kit.get(futures, progress=True)
kit_time = time.time() - start

assert results == pool_results
print(f"process pool {pool_time:.2f} s, kit {kit_time:.2f} s "
      f"(the sum of the sleeps is {sum(SLEEPS):.1f} s)")


# %% [markdown]
# A common mistake is to call `kit.get` inside the loop: each `get` waits for its
# task before the next one starts, and the program is serial again.
#
# ```python
# results = [kit.get(sleep_task.remote(t)) for t in SLEEPS]   # 9.9 s: one at a time
# ```
#
# ## What one task costs
#
# A task is not free: its arguments are pickled, it travels from the driver to the
# head, to a worker and back. Time 1,000 tasks that do nothing and compare with
# calling the function directly.

# %%
@kit.remote
def noop():
    return None

kit.get(noop.remote())                       # warm up: the function is shipped once

start = time.time()
kit.get([noop.remote() for _ in range(1000)])
per_task = (time.time() - start) / 1000

def plain():
    return None

start = time.time()
for _ in range(1000):
    plain()
per_call = (time.time() - start) / 1000
print(f"kit: {per_task * 1e6:.0f} µs per task; a plain call: {per_call * 1e6:.2f} µs")

# %% [markdown]
# A task costs on the order of a hundred microseconds, a plain call a tenth of a
# microsecond. That is nothing next to a task that computes for 10 ms or more, and a
# lot next to one that adds two numbers. So give each task a
# real piece of work: process a chunk of a list per task, not one item.
#
# ## Exercise
#
# `kit.get` on a list waits for the slowest task. `kit.wait(refs, num_returns=1)`
# returns `(ready, not_ready)` as soon as one is done. Submit the sixteen sleeps again
# and print each result **in the order the tasks finish**, with the time since the
# start.

# %% [markdown]
# ### Solution

# %%
start = time.time()
pending = [sleep_task.remote(t) for t in SLEEPS]
while pending:
    ready, pending = kit.wait(pending, num_returns=1)
    print(f"{time.time() - start:5.2f} s  {kit.get(ready[0])}")

# %% [markdown]
# The short sleeps come first and the 1.5 s one last. Stop the cluster when done:

# %%
kit.shutdown()
