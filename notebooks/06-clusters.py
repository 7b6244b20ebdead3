# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 6. Clusters: head and worker nodes
#
# A kit cluster has one **head** and any number of **nodes**:
#
# ```
#                  driver (this notebook)
#                          │
#                        head          keeps the task table, schedules, holds the token
#           ┌──────────────┼──────────────┐
#        node n0         node n1        node n2     one agent per machine:
#        workers,        workers,       workers,    worker processes and an
#        object store    object store   object store object store in shared memory
# ```
#
# On a real cluster every node is a machine. To try it on one machine,
# `kit.init(num_nodes=3, num_cpus=1)` starts three node agents with one slot each.
# Each node has a tag, `n0`, `n1`, `n2`: the name the monitor, errors and printed lines
# use (its id, 16 hex digits, is what the API takes; its first 8 are shown beside it).

# %%
import collections
import time

from IPython.display import display

import kit
import widgets

kit.init(num_nodes=3, num_cpus=1)
for node in sorted(kit.nodes(), key=lambda n: n["tag"]):
    state = "alive" if node["Alive"] else "dead"
    print(node["tag"], node["NodeID"][:8], node["Resources"], state)
print("cluster:", kit.cluster_resources())

# %% [markdown]
# ## Where do tasks run?
#
# Inside a task, `kit.get_runtime_context().get_node_id()` names its node. Each task
# here works for 50 ms, so the 30 of them keep all three nodes busy: kit starts a
# worker on each node and sends tasks to whichever is free.

# %%
tags = {n["NodeID"]: n["tag"] for n in kit.nodes()}

@kit.remote
def where(i):
    time.sleep(0.05)  # a little work
    return kit.get_runtime_context().get_node_id()

placed = kit.get([where.remote(i) for i in range(30)])
print(collections.Counter(tags[node] for node in placed))

# %% [markdown]
# Tasks that take no time at all spread less: right after the cluster starts, the first
# worker ready runs most of such a batch while the others are still starting, since
# waiting for them would take longer than the work.

# %% [markdown]
# ## 10,000 tasks, watched live
#
# `widgets.ClusterMonitor()` shows one row per node (CPU busy, tasks queued, running,
# done and failed, store use) and updates itself while cells run, also while a cell
# waits in `kit.get`. The header counts tasks waiting for a node; the totals row's bar
# is the share of all tasks submitted that are done. `kit.get(refs, progress=True)`
# adds a progress bar for one batch. When the cluster stops, the monitor keeps its
# final counts (and says so), here and in the saved notebook.

# %%
monitor = widgets.ClusterMonitor()
display(monitor)


# %%
@kit.remote
def tiny(i):
    return i * i

refs = [tiny.remote(i) for i in range(10_000)]
results = kit.get(refs, progress=True)
print("sum of squares:", sum(results))

# %% [markdown]
# `widgets.plot_node_counts()` draws the tasks each node has finished so far (the
# `where` tasks included), as a matplotlib figure that stays in exported notebooks.

# %%
widgets.plot_node_counts()

# %% [markdown]
# ## Real machines
#
# On real machines, start the head on one and join the others to it from a shell
# (not from this notebook):
#
# ```bash
# # on the head machine: prints the join command and the token
# kit start --head --node-ip-address 10.0.0.1
# # on every other machine
# kit start --address 10.0.0.1:6380 --token <token printed above>
# kit status          # nodes, CPUs busy/total, tasks queued/running/done/failed
# kit stop            # stops the kit daemons started on this host
# ```
#
# A notebook then connects with `kit.init(address="10.0.0.1:6380", token=...)`, or
# with the magic `%cluster connect 10.0.0.1:6380 --token ...`. The rest of the code
# does not change.
#
# ## Exercise
#
# Run five `where` tasks pinned to node `n2` with
# `kit.NodeAffinitySchedulingStrategy(node_id, soft=False)` (pass it as
# `where.options(scheduling_strategy=...)`) and check from their answers that they
# all ran there.

# %% [markdown]
# ### Solution

# %%
n2 = next(n["NodeID"] for n in kit.nodes() if n["tag"] == "n2")
pinned = where.options(
    scheduling_strategy=kit.NodeAffinitySchedulingStrategy(n2, soft=False))
print([tags[node] for node in kit.get([pinned.remote(i) for i in range(5)])])

# %% [markdown]
# Stop the cluster. The monitor above reads it one last time: it shows what each node
# did, and nothing busy or running any more.

# %%
kit.shutdown()
