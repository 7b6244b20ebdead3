# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3. Aggregation: a line or a tree
#
# Summing `[1, 2, ..., 8]` with an `add` task that takes 0.25 s can be done two ways:
#
# * **linearly**: `((1 + 2) + 3) + ...`, seven adds, each waiting for the one before;
# * **as a tree**: add pairs, then pairs of the sums, and so on, three rounds.
#
# Both make seven tasks. The tree lets the adds of a round run at the same time, so
# it takes about `log2(8) = 3` adds of time instead of 7.

# %%
import time

import kit
import widgets

kit.init(num_cpus=8)

@kit.remote
def add(x, y):
    time.sleep(0.25)
    return x + y

kit.get([add.remote(0, 0) for _ in range(8)])   # start the eight workers first, so the
print("workers ready")                           # timings below are the adds alone


# %% [markdown]
# ## Linear
#
# Each new task receives the ref of the previous sum, so it cannot start before it.
# `kit.events()` gives a sequence number; passing it later returns only the events
# after it, so the plot shows just this run. `rows="task"` gives every task a row of
# its own, in the order they started: one add after the other is a staircase.

# %%
mark, _ = kit.events()
start = time.time()

values = list(range(1, 9))
total = values[0]
for v in values[1:]:
    total = add.remote(total, v)
linear = kit.get(total)

linear_time = time.time() - start
print(f"linear: {linear} in {linear_time:.2f} s")
_, linear_events = kit.events(mark)
widgets.plot_timeline(linear_events, kit.nodes(), rows="task",
                      title="linear: a staircase, one add at a time")

# %% [markdown]
# ## Tree
#
# Take the first two items of the list, append a task that adds them, repeat until
# one item is left. Plain numbers and refs mix freely in the list.

# %%
mark, _ = kit.events()
start = time.time()

values = list(range(1, 9))
while len(values) > 1:
    values = values[2:] + [add.remote(values[0], values[1])]
tree = kit.get(values[0])

tree_time = time.time() - start
print(f"tree: {tree} in {tree_time:.2f} s (linear took {linear_time:.2f} s)")
_, tree_events = kit.events(mark)

# %% [markdown]
# The two runs on one time axis (each from its own first task), so their lengths
# compare directly: seven steps against three rounds of 4, 2 and 1 adds.

# %%
widgets.plot_timelines({
    f"linear: 7 adds one after another, {linear_time:.2f} s": linear_events,
    f"tree: 4, then 2, then 1 add at a time, {tree_time:.2f} s": tree_events,
}, kit.nodes(), rows="task")


# %% [markdown]
# With `n` values the line takes `n - 1` steps and the tree about `log2(n)`: for 1,024
# values that is 1,023 steps against 10. The tree needs as many slots as its widest
# round (`n / 2`); with fewer, the rounds take longer but still beat the line.
#
# ## Exercise
#
# Write `tree_reduce(task, values)` that combines any number of values (odd counts
# too) with any two-argument task, and use it with `add` on `range(1, 14)`. How long
# do you expect it to take?

# %% [markdown]
# ### Solution
#
# The loop above already works for odd counts: an item left without a partner waits at
# the end of the list for the next round. 13 values need `ceil(log2(13)) = 4` rounds,
# about 1 s.

# %%
def tree_reduce(task, values):
    values = list(values)
    while len(values) > 1:
        values = values[2:] + [task.remote(values[0], values[1])]
    return values[0]

start = time.time()
total = kit.get(tree_reduce(add, range(1, 14)))
print(f"{total} (expected {sum(range(1, 14))}) in {time.time() - start:.2f} s")

# %%
kit.shutdown()
