# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 2. Task graphs
#
# An `ObjectRef` can be passed to another task **before it is ready**. kit then runs
# the second task once the first is done and hands it the value, not the ref. Chaining
# calls this way builds a graph of tasks; the driver only submits it and waits for the
# end.
#
# Here: four random matrices, two products and one sum, seven tasks in all.
#
# ```
# create_matrix ─┐
#                ├─ multiply_matrices ─┐
# create_matrix ─┘                     │
#                                      ├─ sum_matrices ─▶ result
# create_matrix ─┐                     │
#                ├─ multiply_matrices ─┘
# create_matrix ─┘
# ```

# %%
import time

import numpy as np

import kit
import widgets

kit.init(num_cpus=2)


# %%
@kit.remote
def create_matrix(size):
    return np.random.normal(size=size)


@kit.remote
def multiply_matrices(x, y):
    return np.dot(x, y)


@kit.remote
def sum_matrices(x, y):
    return np.add(x, y)


# %% [markdown]
# A worker imports what a function needs the first time it runs it. Run each function
# once, so the timings below show the graph's own work:

# %%
kit.get(sum_matrices.remote(multiply_matrices.remote(create_matrix.remote([2, 2]),
                                                     create_matrix.remote([2, 2])),
                            create_matrix.remote([2, 2])))
print("workers ready")

# %% [markdown]
# ## Building the graph
#
# Every call returns at once. `multiply_matrices.remote(x, y)` receives two refs whose
# tasks may not have started yet; it is queued until both are ready.

# %%
SIZE = [1000, 1000]

start = time.time()
x = create_matrix.remote(SIZE)
y = create_matrix.remote(SIZE)
z = create_matrix.remote(SIZE)
w = create_matrix.remote(SIZE)
xy = multiply_matrices.remote(x, y)
zw = multiply_matrices.remote(z, w)
s = sum_matrices.remote(xy, zw)
print(f"7 tasks submitted in {(time.time() - start) * 1000:.1f} ms")

result = kit.get(s)
print(f"result {result.shape} after {time.time() - start:.2f} s")

# %% [markdown]
# The matrices never passed through the driver: each product read its inputs where
# they were stored. Fetch the inputs now to check the answer with numpy.

# %%
X, Y, Z, W = kit.get([x, y, z, w])
print("matches numpy:", np.allclose(result, X @ Y + Z @ W))

# %% [markdown]
# The timeline shows the graph as it ran on the two slots, one row per task (each row
# names the node and worker that ran it): the four `create_matrix` tasks, then the two
# products (side by side when both workers are free for them), then the sum (a mark:
# adding two matrices is quick next to multiplying them). With no events given,
# `plot_timeline` draws the tasks of the last cell that ran any: the graph above.

# %%
widgets.plot_timeline(rows="task", title="create x4, multiply x2, sum x1")


# %% [markdown]
# ## Refs inside containers
#
# Only refs passed **directly** as arguments are replaced by their values. A ref
# inside a list or dict arrives as a ref; the task calls `kit.get` itself when it
# wants the value. That lets a task decide which inputs to wait for, or pass refs on.

# %%
@kit.remote
def describe(items):
    kinds = [type(item).__name__ for item in items]
    values = kit.get(items)
    return kinds, [v.shape for v in values]

print(kit.get(describe.remote([x, y])))


# %% [markdown]
# ## Exercise
#
# 1. Add a task `trace(m)` that returns `np.trace(m)`, and compute the trace of
#    `x·y + z·w` from the ref `s` without fetching the matrix into the driver.
# 2. Build the chain `x·y·z·w` as `((x·y)·z)·w` with `multiply_matrices`, and check
#    it against numpy.

# %% [markdown]
# ### Solution

# %%
@kit.remote
def trace(m):
    return float(np.trace(m))

print("trace:", kit.get(trace.remote(s)), "numpy:", float(np.trace(X @ Y + Z @ W)))

chain = multiply_matrices.remote(multiply_matrices.remote(xy, z), w)
print("chain matches:", np.allclose(kit.get(chain), X @ Y @ Z @ W))

# %%
kit.shutdown()
