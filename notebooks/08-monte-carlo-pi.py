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

import matplotlib.pyplot as plt

import kit
import widgets

TOTAL = 8_000_000
CHUNKS = 16
RUNS = 3
print("cores on this machine:", os.cpu_count())
busy = widgets.machine_busy()
print(f"the machine is {busy:.0f}% busy before we start")
print(widgets.busy_note(busy))


# %% [markdown]
# ## Serial
#
# Every timing in this lesson is the median of three runs, with the fastest and the
# slowest beside it: one run can be slowed down by whatever else the machine does.

# %%
def sample(n):
    inside = 0
    for _ in range(n):
        x, y = random.random(), random.random()
        if x * x + y * y <= 1:
            inside += 1
    return inside

serial = widgets.time_runs(lambda: sample(TOTAL), RUNS)
print(f"pi ~ {4 * sample(TOTAL // 10) / (TOTAL // 10):.4f}; serial: {serial}")

# %% [markdown]
# ## Parallel
#
# The same function as a task, run as 16 chunks. Start a cluster with 1, 2 and then 4
# slots and time the same job on each. The workers are started (and have loaded
# `sample`) before the clock starts, so the times are the work alone.
# `widgets.WorkerUsage()` records how much CPU and memory each worker used during the
# runs.

# %%
sample_task = kit.remote(sample)

def parallel():
    return sum(kit.get([sample_task.remote(TOTAL // CHUNKS) for _ in range(CHUNKS)]))

times, usage = {}, {}
for slots in (1, 2, 4):
    kit.init(num_cpus=slots)
    kit.get([sample_task.remote(1) for _ in range(slots)])      # start the workers
    with widgets.WorkerUsage() as usage[slots]:
        times[slots] = widgets.time_runs(parallel, RUNS)
    kit.shutdown()
    print(f"{slots} slot(s): {times[slots]}, "
          f"speed-up {serial.median / times[slots].median:.2f}x over serial")

# %%
slots = list(times)
speedup = {s: serial.median / times[s].median for s in slots}
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.errorbar(slots, [speedup[s] for s in slots], fmt="o-", capsize=4, label="measured (median)",
            yerr=[[speedup[s] - serial.median / times[s].high for s in slots],
                  [serial.median / times[s].low - speedup[s] for s in slots]])
ax.plot(slots, [min(s, os.cpu_count()) for s in slots], "--", color="grey",
        label=f"ideal on {os.cpu_count()} cores")
ax.set_xlabel("task slots")
ax.set_ylabel("speed-up over serial")
ax.set_xticks(slots)
ax.set_ylim(bottom=0)
ax.legend()
plt.show()

# %% [markdown]
# ## What the measurements say
#
# The sentences below are written from the numbers measured above, on this machine,
# now:

# %%
cores = os.cpu_count()
gain = speedup[4] / speedup[2]
print(f"1 slot: {speedup[1]:.2f}x, 2 slots: {speedup[2]:.2f}x, 4 slots: {speedup[4]:.2f}x "
      f"the serial speed, on {cores} cores.")
if gain < 1.15:
    print(f"Going from 2 to 4 slots changed the time by a factor of {1 / gain:.2f}: "
          f"4 slots did not help.")
else:
    print(f"4 slots ran {gain:.2f}x faster than 2.")
if speedup[2] < 1.6:
    print(f"2 slots gave {speedup[2]:.2f}x, well under the ideal 2x: the two workers did "
          f"not each have a core to themselves (their CPU share and the machine's load "
          f"below show how much they got).")

# %% [markdown]
# Where did the time go? Each slot is a worker process. The table and the plot show
# how much of a core each of the 4 workers got during its runs (100% = a core to
# itself), its memory, and how busy the whole machine was.

# %%
usage[4]

# %%
usage[4].plot(title="4 slots")

# %% [markdown]
# With 4 workers and 2 cores, each worker can have at most half a core: four
# processes share two cores and each runs half the time, so the job takes as long as
# with 2 (a little longer: switching between processes costs too). Slots beyond the
# cores help only tasks that wait rather than compute: the sleeps of lesson 1, network
# or disk I/O. And when the machine is busy with other programs, the workers share
# the cores with them too, and every speed-up shrinks: the machine's busy share above
# counts every process, kit's and the others'.
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
kit.get([sample_np.remote(1) for _ in range(2)])               # start the workers
np_time = widgets.time_runs(
    lambda: kit.get([sample_np.remote(TOTAL // CHUNKS) for _ in range(CHUNKS)]), RUNS)
print(f"numpy, 2 slots: {np_time} "
      f"({times[2].median / np_time.median:.0f}x faster than pure Python on 2 slots)")

# %%
kit.shutdown()
