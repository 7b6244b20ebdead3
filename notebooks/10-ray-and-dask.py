# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 10. Ray and Dask
#
# kit grew from tutorials about two engines. **Ray** is built around remote functions
# and actors, like kit. **Dask** is built around collections (arrays, dataframes, bags)
# that turn into task graphs, and runs them with a scheduler. This lesson runs the same
# ideas on all three, then makes them work together:
#
# * tasks and futures in each engine;
# * Dask's graphs run by kit's scheduler (`kit.dask_scheduler`) and by Ray's;
# * Dask reads a CSV, kit tasks process its partitions;
# * the same notebook cells (`%%remote`) on kit, Ray and Dask, changing only the
#   `%cluster` line.
#
# Each engine gets two worker slots on this machine. Starting Ray takes several seconds;
# the cell says what it is waiting for. On a busy machine Ray's start-up can time out:
# the cell then says so in one line, and the lesson goes on with kit and Dask (each
# Ray step below says it was skipped).

# %%
import logging
import os
import shutil
import tempfile
import time

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import ray
from dask.distributed import Client, LocalCluster
from ray.util.dask import ray_dask_get

import kit
import widgets

t = time.perf_counter()
kit.init(num_cpus=2)
print(f"kit  started in {time.perf_counter() - t:.2f} s")
print("starting Ray ...", flush=True)
t = time.perf_counter()
try:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)               # no start-up log lines here
    ray_started = True
    print(f"Ray  started in {time.perf_counter() - t:.2f} s")
except Exception as e:                                  # e.g. its start-up timed out
    ray.shutdown()                                      # whatever it started, stopped
    ray_started = False
    why = str(e).split(". ")[0].strip()
    print(f"Ray did not start ({type(e).__name__}: {why}): its steps below are skipped")
print("starting Dask ...", flush=True)
t = time.perf_counter()
cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                       silence_logs=logging.ERROR)
client = Client(cluster)
print(f"Dask started in {time.perf_counter() - t:.2f} s")


# %% [markdown]
# ## Tasks and futures in each engine
#
# One plain function, run as four tasks on each engine. kit and Ray wrap it with
# `remote` and return `ObjectRef`s; Dask's `client.submit` returns a `Future`. Each
# gives the values back with one call.

# %%
def square(x):
    return x * x

on_kit = kit.get([kit.remote(square).remote(i) for i in range(4)])
on_ray = (ray.get([ray.remote(square).remote(i) for i in range(4)]) if ray_started
          else "skipped (Ray did not start)")
on_dask = client.gather([client.submit(square, i) for i in range(4)])
print("kit: ", on_kit)
print("Ray: ", on_ray)
print("Dask:", on_dask)

# %% [markdown]
# | idea | kit | Ray | Dask |
# |---|---|---|---|
# | start a task | `f.remote(x)` | `f.remote(x)` | `client.submit(f, x)` |
# | wait for its value | `kit.get(ref)` | `ray.get(ref)` | `fut.result()`, `client.gather` |
# | wait for some | `kit.wait` | `ray.wait` | `distributed.wait`, `as_completed` |
# | share a large value | `kit.put` | `ray.put` | `client.scatter` |
# | a future as an argument | yes | yes | yes |
# | stateful workers | actors | actors | actors (`actor=True`) |
# | lazy task graphs | via Dask | via Dask | `dask.delayed`, collections |
#
# The big difference is **when** the graph is built. kit and Ray start a task the
# moment you call `.remote()`; Dask's collections record the whole graph first and
# run it when you call `.compute()`. That lets Dask plan the graph as a whole, and
# lets any scheduler run it.

# %% [markdown]
# ## Dask graphs on kit (and on Ray)
#
# A Dask collection is a graph plus a choice of scheduler. `kit.dask_scheduler` runs
# every node of the graph as a kit task, with intermediate results in kit's object
# store; `ray_dask_get` does the same on Ray. The answer is the same on each.
#
# Each scheduler runs the graph once untimed first: a worker imports numpy and Dask's
# chunk functions the first time it runs them, and that start-up is not what we compare.
# Then three timed runs each: the median, and the fastest and slowest.

# %%
x = da.random.RandomState(0).random_sample((3000, 3000), chunks=(750, 750))
y = (x + x.T).mean(axis=0)
print(f"{len(y.__dask_graph__())} nodes in the graph")
busy = widgets.machine_busy()
print(widgets.busy_note(busy) or f"the machine is {busy:.0f}% busy: quiet enough")

schedulers = [("threads", "threads"), ("kit", kit.dask_scheduler),
              ("ray", ray_dask_get), ("dask distributed", client.get)]
if not ray_started:
    print("ray: skipped (Ray did not start)")
    schedulers = [(n, s) for n, s in schedulers if n != "ray"]
answers, times = {}, {}
for name, scheduler in schedulers:
    answers[name] = y.compute(scheduler=scheduler)          # warm up, untimed
    times[name] = widgets.time_runs(lambda: y.compute(scheduler=scheduler), 3)
for name, secs in times.items():
    same = np.allclose(answers[name], answers["threads"])
    print(f"{name:17s} {secs}   same answer: {same}")
fastest = min(times, key=lambda n: times[n].median)
print(f"fastest here: {fastest}; kit's median is "
      f"{times['kit'].median / times[fastest].median:.1f}x its median")

# %% [markdown]
# The tasks ran on kit's workers under the names of Dask's keys; the timeline shows
# them (`random_sample`, `transpose`, `add`, `mean_chunk`, ...). Give it the events of
# one run to see that run alone:

# %%
mark, _ = kit.events()
y.compute(scheduler=kit.dask_scheduler)
_, one_run = kit.events(mark)
widgets.plot_timeline(one_run, kit.nodes(), title="Dask's graph, run by kit")

# %% [markdown]
# ## Dask reads the data, tasks process it
#
# A common split of work: Dask is good at reading data in partitions (`read_csv` on
# many files, Parquet, ...), and remote functions are good at doing something custom
# with each partition. Here Dask reads six CSV files; `return_refs=True` leaves each
# partition in kit's object store, and a kit task works on each one there.

# %%
data_dir = tempfile.mkdtemp(prefix="kit-sales-")
rng = np.random.default_rng(0)
for month in range(1, 7):
    pd.DataFrame({
        "shop": rng.choice(["north", "south", "east", "west"], 5000),
        "amount": rng.gamma(2.0, 20.0, 5000).round(2),
    }).to_csv(os.path.join(data_dir, f"sales-{month:02d}.csv"), index=False)

sales = dd.read_csv(os.path.join(data_dir, "sales-*.csv"))
parts = sales.to_delayed()
refs = dask.compute(*parts, scheduler=kit.dask_scheduler, return_refs=True)
print(f"{len(refs)} partitions in kit's object store")

@kit.remote
def big_sales(df, threshold=100.0):
    big = df[df["amount"] > threshold]
    return big.groupby("shop")["amount"].agg(["count", "sum"])

per_part = kit.get([big_sales.remote(r) for r in refs])
result = sum(per_part[1:], per_part[0]).sort_index()
print(result)

# %% [markdown]
# Checked against pandas reading the same files in the notebook:

# %%
everything = pd.concat(pd.read_csv(os.path.join(data_dir, f))
                       for f in sorted(os.listdir(data_dir)))
expected = (everything[everything["amount"] > 100.0]
            .groupby("shop")["amount"].agg(["count", "sum"]).sort_index())
print("same as pandas:", np.allclose(result.to_numpy(), expected.to_numpy()))

# %% [markdown]
# ## The same cells on every engine
#
# The `%%remote` magic and the widgets talk to one backend, and the `%cluster` line
# chooses it. Below, one cell runs on kit, then on Ray, then on Dask; only the
# `%cluster` line before it changes. `%cluster connect ray:local` uses the Ray
# started above, `tcp://...` the Dask scheduler; `%cluster stop` lets go of each
# (Ray and Dask were started by this notebook's own code, which stops them at the
# end). `%cluster status` shows each engine's nodes and how many tasks each ran.

# %%
# %load_ext kit

# %%
# %cluster status

# %%
# %%remote --map "i in range(4)" -o part
import os
print(f"chunk {i} in pid {os.getpid()}")
part = sum(k * k for k in range(i * 2_000_000, (i + 1) * 2_000_000))

# %%
print("sum of squares below 8 * 10**6:", sum(part))

# %% [markdown]
# `%cluster stop` lets go of kit (and stops it, since this notebook started it); the
# next line connects the magics to Ray. (If Ray did not start, the next cell runs on
# a kit cluster started for it, and says so.)

# %%
# %cluster stop
if ray_started:
    # %cluster connect ray:local
else:
    print("Ray did not start (see the first cell): the next cell runs on kit again")

# %%
# %%remote --map "i in range(4)" -o part
import os
print(f"chunk {i} in pid {os.getpid()}")
part = sum(k * k for k in range(i * 2_000_000, (i + 1) * 2_000_000))

# %%
print("sum of squares below 8 * 10**6:", sum(part))
# %cluster status
# %cluster stop

# %%
# %cluster connect {cluster.scheduler_address}

# %%
# %%remote --map "i in range(4)" -o part
import os
print(f"chunk {i} in pid {os.getpid()}")
part = sum(k * k for k in range(i * 2_000_000, (i + 1) * 2_000_000))

# %%
print("sum of squares below 8 * 10**6:", sum(part))
# %cluster status
# %cluster stop

# %% [markdown]
# ## Which one when
#
# * **kit**: a notebook and a handful of machines; starts in a fraction of a second,
#   and the notebook (cells, widgets, plots) drives and shows the cluster.
# * **Ray**: large clusters, actors everywhere, and its libraries (Tune, Serve, Data).
# * **Dask**: arrays and dataframes bigger than memory, with the pandas and NumPy API.
#
# They mix: Dask's collections run on kit or on Ray, and kit's cells and widgets run
# on Ray or Dask clusters.

# %% [markdown]
# ## Exercise
#
# With `dask.dataframe`, compute the mean `amount` per shop of all the sales files,
# once with Dask's own threaded scheduler and once with `kit.dask_scheduler`, and
# check that the two agree.

# %% [markdown]
# ### Solution

# %%
mean = sales.groupby("shop")["amount"].mean()
on_threads = mean.compute(scheduler="threads").sort_index()
on_kit = mean.compute(scheduler=kit.dask_scheduler).sort_index()
print(on_kit)
print("agree:", np.allclose(on_threads.to_numpy(), on_kit.to_numpy()))

# %%
client.close()
cluster.close()
ray.shutdown()
kit.shutdown()
shutil.rmtree(data_dir)
