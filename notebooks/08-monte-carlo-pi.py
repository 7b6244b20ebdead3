# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 8. Monte Carlo π: from serial to parallel
#
# Throw random points into the unit square; the share that lands inside the quarter
# circle `x² + y² ≤ 1` is about π/4. More points give a better estimate, and the
# points are independent, so the work splits into tasks with no communication.

# %%
import os
import random
import time

import matplotlib.pyplot as plt

import kit

TOTAL = 12_000_000
CHUNKS = 16
print("cores on this machine:", os.cpu_count())


# %% [markdown]
# ## Serial

# %%
def sample(n):
    inside = 0
    for _ in range(n):
        x, y = random.random(), random.random()
        if x * x + y * y <= 1:
            inside += 1
    return inside

start = time.time()
inside = sample(TOTAL)
serial_time = time.time() - start
print(f"pi ~ {4 * inside / TOTAL:.5f} in {serial_time:.2f} s")

# %% [markdown]
# ## Parallel
#
# The same function as a task, run as 16 chunks. Start a cluster with 1, 2 and then 4
# slots and time the same job on each.

# %%
sample_task = kit.remote(sample)

times = {}
for slots in (1, 2, 4):
    kit.init(num_cpus=slots)
    kit.get([sample_task.remote(1) for _ in range(slots)])      # start the workers
    start = time.time()
    inside = sum(kit.get([sample_task.remote(TOTAL // CHUNKS) for _ in range(CHUNKS)]))
    times[slots] = time.time() - start
    kit.shutdown()
    print(f"{slots} slot(s): pi ~ {4 * inside / TOTAL:.5f} in {times[slots]:.2f} s, "
          f"speed-up {serial_time / times[slots]:.2f}x")

# %%
slots = list(times)
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot(slots, [serial_time / times[s] for s in slots], "o-", label="measured")
ax.plot(slots, [min(s, os.cpu_count()) for s in slots], "--", color="grey",
        label=f"ideal on {os.cpu_count()} cores")
ax.set_xlabel("task slots")
ax.set_ylabel("speed-up over serial")
ax.set_xticks(slots)
ax.set_ylim(bottom=0)
ax.legend()
plt.show()

# %% [markdown]
# ## Why 4 slots do not help here
#
# Each slot is a worker process, and this machine has 2 cores. With 2 slots both cores
# are busy; with 4, four processes share the same 2 cores and each runs half the
# time, so the job takes as long as with 2 (a little longer: switching between
# processes costs too). Slots beyond the cores help only tasks that wait rather than
# compute: the sleeps of lesson 1, network or disk I/O.
#
# Even with 2 slots the speed-up is at best 2, and often a little under: the chunks
# are sent and collected, and the other processes of the machine (this notebook, the
# head) want some CPU too.
#
# ## Exercise
#
# The pure-Python loop is slow. Write `sample_np(n)` with numpy (draw `n` points as
# arrays and count with a comparison), run it as 16 tasks on 2 slots, and compare
# with the time above.

# %% [markdown]
# ### Solution

# %%
import numpy as np

@kit.remote
def sample_np(n):
    rng = np.random.default_rng()
    x, y = rng.random(n), rng.random(n)
    return int(np.count_nonzero(x * x + y * y <= 1))

kit.init(num_cpus=2)
start = time.time()
inside = sum(kit.get([sample_np.remote(TOTAL // CHUNKS) for _ in range(CHUNKS)]))
np_time = time.time() - start
print(f"numpy, 2 slots: pi ~ {4 * inside / TOTAL:.5f} in {np_time:.2f} s "
      f"({times[2] / np_time:.0f}x faster than pure Python on 2 slots)")

# %%
kit.shutdown()
