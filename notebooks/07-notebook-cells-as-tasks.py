# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 7. Notebook cells as tasks
#
# The `kit` IPython extension runs whole cells on the cluster:
#
# * `%%remote` runs the cell as one task; the names it reads are shipped from the
#   notebook, and `-o NAMES` brings names it assigns back;
# * `--no-block` returns at once; the `-o` names become refs;
# * `--map "i in range(8)"` runs the cell once per item, in parallel;
# * `%remote EXPR` evaluates one expression on the cluster.

# %%
# %load_ext kit

# %%
# %cluster start --nodes 1 --cpus 2

# %%
# %cluster status

# %% [markdown]
# ## Watching the cluster
#
# `%cluster monitor` shows a live table of the nodes: CPU slots busy, tasks queued,
# running, done and failed, and object store use. It updates itself while the cells
# below run (also while a cell waits), so keep an eye on it as you go; when the cluster
# stops it keeps the final counts.

# %%
# %cluster monitor

# %% [markdown]
# ## `%%remote` and `-o`
#
# `data` lives in the notebook; the cell reads it, so it is shipped with the task. The
# cell's last expression is shown as its result, and `-o total` assigns `total` in the
# notebook when the task is done.

# %%
data = list(range(1_000))

# %%
# %%remote -o total
import os
total = sum(x * x for x in data)
print("computed in process", os.getpid())
total / len(data)

# %%
import os

print("back in the notebook (process", os.getpid(), "): total =", total)

# %% [markdown]
# `%remote` does the same for one expression:

# %%
# %remote max(data) - min(data)

# %% [markdown]
# ## Output streams while the cell runs
#
# What the task prints appears under the cell as it is printed, not at the end.

# %%
# %%remote
import time
for step in range(1, 6):
    print(f"step {step}/5")
    time.sleep(0.3)

# %% [markdown]
# ## `--no-block`
#
# The cell returns at once (in a few milliseconds) and the notebook stays free; a status
# line shows the task's progress (its timer starts when the task starts on a worker),
# and the `-o` names are refs until you fetch them.

# %%
# %%remote --no-block -o slow_total
import time
time.sleep(1)
slow_total = sum(data)

# %%
import kit

print("meanwhile, in the notebook:", type(slow_total).__name__)
print("fetched:", kit.get(slow_total))

# %% [markdown]
# ## `--map`
#
# The cell runs once per item, in parallel; each `-o` name comes back as a list in the
# order of the items. While it runs, a status line counts the items done, running and
# failed.

# %%
# %%remote --map "i in range(8)" -o squares
squares = i * i

# %%
print(squares)

# %% [markdown]
# ## Errors
#
# An error in a remote cell is raised in the notebook with the cell's own line numbers
# and the node it ran on. (This cell is tagged `raises-exception`, so running the whole
# notebook goes on past it.)

# %% tags=["raises-exception"]
# %%remote
values = [1, 2, 0]
inverses = [1 / v for v in values]


# %% [markdown]
# ## Interrupting
#
# The stop button (or *Kernel → Interrupt*) on a running `%%remote` cell cancels its
# task: kit interrupts the task where it runs (a `time.sleep` too), the cell ends with
# one line, `KeyboardInterrupt: cancelled remote-cell-N (running on n0)`, and the
# cluster and the notebook's variables stay as they were. An automated run of this
# notebook cannot press the button, so try it by hand:
#
# ```python
# %%remote
# import time
# while True:
#     time.sleep(1)
# ```
#
# ## Exercise
#
# Count the primes below 40,000 with `--map` over four ranges of 10,000 numbers each,
# bring the four counts back with `-o`, and add them up in the notebook (the answer is
# 4,203).

# %% [markdown]
# ### Solution

# %%
# %%remote --map "k in range(4)" -o counts
def is_prime(n):
    return n > 1 and all(n % d for d in range(2, int(n ** 0.5) + 1))

counts = sum(is_prime(n) for n in range(k * 10_000, (k + 1) * 10_000))

# %%
print(counts, "->", sum(counts))

# %%
# %cluster stop
