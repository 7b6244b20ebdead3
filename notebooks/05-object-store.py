# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 5. The object store
#
# Every node of a kit cluster has an **object store** in shared memory. `kit.put(value)`
# copies a value there once and returns a ref; tasks on that node read large numpy
# arrays **in place**, without copying them. This lesson shows what is copied, and
# when.

# %%
import time

import numpy as np

import kit
import widgets

kit.init(num_cpus=2)
MiB = 2**20

# %% [markdown]
# ## `kit.put`: one copy into shared memory

# %%
arr = np.random.rand(5_000_000)               # 38 MiB of float64
start = time.time()
ref = kit.put(arr)
print(f"put {arr.nbytes / MiB:.1f} MiB in {(time.time() - start) * 1000:.1f} ms")

# the node reports its store use with its heartbeat, about once a second: wait for it
deadline = time.time() + 5
while kit.nodes()[0]["store_used"] < arr.nbytes and time.time() < deadline:
    time.sleep(0.1)
print(f"store use on the node: {kit.nodes()[0]['store_used'] / MiB:.1f} MiB")


# %% [markdown]
# ## Zero-copy reads
#
# A task that receives the ref gets a numpy array whose memory **is** the store's
# shared memory. It does not own its data, and it is read-only: other tasks may be
# reading the same bytes.

# %%
@kit.remote
def inspect(a):
    return {"writeable": a.flags.writeable, "owndata": a.flags.owndata,
            "sum": float(a.sum())}

print(kit.get(inspect.remote(ref)))

# %% [markdown]
# The driver runs on the same node, so `kit.get` maps the same memory instead of
# copying it. Compare it with numpy copying the 38 MiB (medians of five runs; the first
# `get` of a ref maps it, later ones reuse the mapping, so each run gets a new ref):

# %%
refs = [kit.put(arr) for _ in range(5)]
gets = iter(refs)
get_time = widgets.time_runs(lambda: kit.get(next(gets)), 5)
copy_time = widgets.time_runs(arr.copy, 5)
print(f"kit.get of a 38 MiB array: {get_time.median * 1000:.2f} ms "
      f"({get_time.low * 1000:.2f}-{get_time.high * 1000:.2f} ms)")
print(f"a numpy copy of it:        {copy_time.median * 1000:.2f} ms "
      f"({copy_time.low * 1000:.2f}-{copy_time.high * 1000:.2f} ms)")
print(f"get took {get_time.median / copy_time.median:.2f} times as long as a copy")
del refs, gets
view = kit.get(ref)
print(f"writeable: {view.flags.writeable}, owndata: {view.flags.owndata}")
print("same values:", np.array_equal(view, arr))

try:
    view[0] = 1.0
except ValueError as err:
    print("writing fails:", err)


# %% [markdown]
# To change the data, make your own copy: `a = a.copy()` (inside a task or in the
# driver). The copy is yours and writeable; the stored object stays as it was.

# %%
@kit.remote
def scaled(a, factor):
    a = a.copy()                  # an explicit, private copy
    a *= factor
    return a

doubled = kit.get(scaled.remote(ref, 2.0))
print("doubled[0] / view[0] =", doubled[0] / view[0])


# %% [markdown]
# ## What gets copied, and when
#
# | what | copies |
# |---|---|
# | `kit.put(arr)` | once, from the driver's memory into the store |
# | a task reads a put array on the same node | none: a read-only view |
# | a task returns a large array | once, into the store of its node |
# | `arr` passed directly to `.remote(arr)` | once **per call**: each call stores its own copy |
# | small values and Python objects (lists, dicts) | pickled; every reader gets its own copy |
# | a task on another node reads the array | once per node: sent to that node's store |
#
# The fourth row is the one to watch. Passing the array itself ten times stores it ten
# times; putting it once and passing the ref stores it once:

# %%
@kit.remote
def first(a):
    return float(a[0])

kit.get([first.remote(ref) for _ in range(2)])      # warm up both workers

by_value = widgets.time_runs(lambda: kit.get([first.remote(arr) for _ in range(10)]))
by_ref = widgets.time_runs(lambda: kit.get([first.remote(ref) for _ in range(10)]))
print(f"10 calls with the array: {by_value.median * 1000:.0f} ms "
      f"({by_value.low * 1000:.0f}-{by_value.high * 1000:.0f}); "
      f"with the ref: {by_ref.median * 1000:.1f} ms "
      f"({by_ref.low * 1000:.1f}-{by_ref.high * 1000:.1f}), medians of 3 runs")

# %% [markdown]
# ## Exercise
#
# Put a `(4000, 1000)` array once, then have four tasks each sum one quarter of its
# rows (pass the ref and the row range). Check the total against `big.sum()` and
# check in a task that the rows it reads are not a copy (`owndata` is False).

# %% [markdown]
# ### Solution

# %%
big = np.random.rand(4000, 1000)
big_ref = kit.put(big)

@kit.remote
def sum_rows(a, lo, hi):
    part = a[lo:hi]
    return float(part.sum()), part.flags.owndata

parts = kit.get([sum_rows.remote(big_ref, lo, lo + 1000) for lo in range(0, 4000, 1000)])
print("total matches:", np.isclose(sum(s for s, _ in parts), big.sum()))
print("any copies:", any(own for _, own in parts))

# %% [markdown]
# An object stays in the store while some ref to it is alive; deleting the refs frees
# it.

# %%
del ref, view, big_ref
kit.shutdown()
