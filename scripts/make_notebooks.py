"""Write the tutorial notebooks in ``notebooks/`` (no stored outputs).

    python scripts/make_notebooks.py

Each notebook is a list of markdown and code cells below; edit here, then
regenerate, so the notebooks stay plain and their diffs readable. The tests
(``tests/test_notebooks.py``) execute every notebook top to bottom.
"""

from __future__ import annotations

import os
import textwrap

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")


def md(text):
    return new_markdown_cell(textwrap.dedent(text).strip("\n"))


def code(text, tags=()):
    cell = new_code_cell(textwrap.dedent(text).strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


NOTEBOOKS = {}


def notebook(name):
    def register(fn):
        NOTEBOOKS[name] = fn
        return fn

    return register


# ---------------------------------------------------------------------------------------
@notebook("01-tasks-and-futures")
def _():
    return [
        md("""
        # 1. Tasks and futures

        kit runs Python functions as **tasks** on a cluster of worker processes. Three calls
        do most of the work:

        * `@kit.remote` turns a function into a remote function;
        * `f.remote(args)` starts a task and returns at once with a **future** (an `ObjectRef`);
        * `kit.get(ref)` waits for the task and returns its value.

        kit speaks Ray's core API, so `import kit as ray` runs programs written for Ray.
        This lesson times sixteen sleeping tasks with the standard library and with kit,
        then looks at what one task costs.
        """),
        code("""
        import time
        from concurrent.futures import ProcessPoolExecutor

        SLEEPS = [0.1, 0.2, 0.1, 0.5, 0.7, 0.9, 0.5, 0.4, 1.5, 1.3, 1.0, 0.3, 0.7, 0.6, 0.3, 0.8]
        print(f"{len(SLEEPS)} sleeps, {sum(SLEEPS):.1f} s in a row, the longest {max(SLEEPS)} s")
        """),
        md("""
        ## The standard-library way

        `concurrent.futures.ProcessPoolExecutor` runs a function in a pool of processes. With
        16 processes every sleep has its own, so the whole batch takes as long as the
        longest sleep (1.5 s), not the sum (9.9 s).
        """),
        code("""
        def sleep_plain(t):
            time.sleep(t)
            return f"Sleep time {t}"

        with ProcessPoolExecutor(16) as ex:
            start = time.time()
            pool_results = list(ex.map(sleep_plain, SLEEPS))
            pool_time = time.time() - start
        print(f"process pool: {pool_time:.2f} s")
        """),
        md("""
        ## The same with kit

        `kit.init(num_cpus=16)` starts a local cluster (a head, a node agent and its
        workers) with 16 task slots. A slot is where one task runs; it is not tied to a
        core, and sleeping tasks need no core, so 16 slots on this 2-core machine are fine.
        """),
        code("""
        import kit

        kit.init(num_cpus=16)
        """),
        md("""
        Decorate the function with `@kit.remote`. Calling `.remote()` does not run it here:
        it sends a task to the cluster and hands back an `ObjectRef` straight away.
        """),
        code("""
        @kit.remote
        def sleep_task(t):
            time.sleep(t)
            return f"Sleep time {t}"

        start = time.time()
        ref = sleep_task.remote(0.5)
        print(f"submitted in {(time.time() - start) * 1000:.1f} ms:", ref)
        print(kit.get(ref), f"after {time.time() - start:.2f} s")
        """),
        md("""
        Start all sixteen first, then wait for all of them with one `kit.get` on the list.
        The results come back in the order of the list, whatever order the tasks finish in.
        """),
        code("""
        start = time.time()
        futures = [sleep_task.remote(t) for t in SLEEPS]
        results = kit.get(futures)
        kit_time = time.time() - start

        assert results == pool_results
        print(f"process pool {pool_time:.2f} s, kit {kit_time:.2f} s "
              f"(the sum of the sleeps is {sum(SLEEPS):.1f} s)")
        """),
        md("""
        A common mistake is to call `kit.get` inside the loop: each `get` waits for its
        task before the next one starts, and the program is serial again.

        ```python
        results = [kit.get(sleep_task.remote(t)) for t in SLEEPS]   # 9.9 s: one at a time
        ```

        ## What one task costs

        A task is not free: its arguments are pickled, it travels from the driver to the
        head, to a worker and back. Time 1,000 tasks that do nothing and compare with
        calling the function directly.
        """),
        code("""
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
        """),
        md("""
        A task costs on the order of a hundred microseconds, a plain call a tenth of a
        microsecond. That is nothing next to a task that computes for 10 ms or more, and a
        lot next to one that adds two numbers. So give each task a
        real piece of work: process a chunk of a list per task, not one item.

        ## Exercise

        `kit.get` on a list waits for the slowest task. `kit.wait(refs, num_returns=1)`
        returns `(ready, not_ready)` as soon as one is done. Submit the sixteen sleeps again
        and print each result **in the order the tasks finish**, with the time since the
        start.
        """),
        md("""
        ### Solution
        """),
        code("""
        start = time.time()
        pending = [sleep_task.remote(t) for t in SLEEPS]
        while pending:
            ready, pending = kit.wait(pending, num_returns=1)
            print(f"{time.time() - start:5.2f} s  {kit.get(ready[0])}")
        """),
        md("""
        The short sleeps come first and the 1.5 s one last. Stop the cluster when done:
        """),
        code("""
        kit.shutdown()
        """),
    ]


# ---------------------------------------------------------------------------------------
@notebook("02-task-graphs")
def _():
    return [
        md("""
        # 2. Task graphs

        An `ObjectRef` can be passed to another task **before it is ready**. kit then runs
        the second task once the first is done and hands it the value, not the ref. Chaining
        calls this way builds a graph of tasks; the driver only submits it and waits for the
        end.

        Here: four random matrices, two products and one sum, seven tasks in all.

        ```
        create_matrix ─┐
                       ├─ multiply_matrices ─┐
        create_matrix ─┘                     │
                                             ├─ sum_matrices ─▶ result
        create_matrix ─┐                     │
                       ├─ multiply_matrices ─┘
        create_matrix ─┘
        ```
        """),
        code("""
        import time

        import numpy as np

        import kit
        import widgets

        kit.init(num_cpus=2)
        """),
        code("""
        @kit.remote
        def create_matrix(size):
            return np.random.normal(size=size)


        @kit.remote
        def multiply_matrices(x, y):
            return np.dot(x, y)


        @kit.remote
        def sum_matrices(x, y):
            return np.add(x, y)
        """),
        md("""
        ## Building the graph

        Every call returns at once. `multiply_matrices.remote(x, y)` receives two refs whose
        tasks may not have started yet; it is queued until both are ready.
        """),
        code("""
        SIZE = [300, 300]

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
        """),
        md("""
        The matrices never passed through the driver: each product read its inputs where
        they were stored. Fetch the inputs now to check the answer with numpy.
        """),
        code("""
        X, Y, Z, W = kit.get([x, y, z, w])
        print("matches numpy:", np.allclose(result, X @ Y + Z @ W))
        """),
        md("""
        The timeline shows the graph as it ran on the two slots: the four `create_matrix`
        tasks, then the two products side by side, then the sum.
        """),
        code("""
        widgets.plot_timeline(title="create x4, multiply x2, sum x1")
        """),
        md("""
        ## Refs inside containers

        Only refs passed **directly** as arguments are replaced by their values. A ref
        inside a list or dict arrives as a ref; the task calls `kit.get` itself when it
        wants the value. That lets a task decide which inputs to wait for, or pass refs on.
        """),
        code("""
        @kit.remote
        def describe(items):
            kinds = [type(item).__name__ for item in items]
            values = kit.get(items)
            return kinds, [v.shape for v in values]

        print(kit.get(describe.remote([x, y])))
        """),
        md("""
        ## Exercise

        1. Add a task `trace(m)` that returns `np.trace(m)`, and compute the trace of
           `x·y + z·w` from the ref `s` without fetching the matrix into the driver.
        2. Build the chain `x·y·z·w` as `((x·y)·z)·w` with `multiply_matrices`, and check
           it against numpy.
        """),
        md("""
        ### Solution
        """),
        code("""
        @kit.remote
        def trace(m):
            return float(np.trace(m))

        print("trace:", kit.get(trace.remote(s)), "numpy:", float(np.trace(X @ Y + Z @ W)))

        chain = multiply_matrices.remote(multiply_matrices.remote(xy, z), w)
        print("chain matches:", np.allclose(kit.get(chain), X @ Y @ Z @ W))
        """),
        code("""
        kit.shutdown()
        """),
    ]


# ---------------------------------------------------------------------------------------
@notebook("03-aggregation")
def _():
    return [
        md("""
        # 3. Aggregation: a line or a tree

        Summing `[1, 2, ..., 8]` with an `add` task that takes 0.25 s can be done two ways:

        * **linearly**: `((1 + 2) + 3) + ...`, seven adds, each waiting for the one before;
        * **as a tree**: add pairs, then pairs of the sums, and so on, three rounds.

        Both make seven tasks. The tree lets the adds of a round run at the same time, so
        it takes about `log2(8) = 3` adds of time instead of 7.
        """),
        code("""
        import time

        import kit
        import widgets

        kit.init(num_cpus=8)

        @kit.remote
        def add(x, y):
            time.sleep(0.25)
            return x + y
        """),
        md("""
        ## Linear

        Each new task receives the ref of the previous sum, so it cannot start before it.
        `kit.events()` gives a sequence number; passing it later returns only the events
        after it, so the plot shows just this run.
        """),
        code("""
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
        widgets.plot_timeline(linear_events, kit.nodes(),
                              title="linear: a staircase, one add at a time")
        """),
        md("""
        ## Tree

        Take the first two items of the list, append a task that adds them, repeat until
        one item is left. Plain numbers and refs mix freely in the list.
        """),
        code("""
        mark, _ = kit.events()
        start = time.time()

        values = list(range(1, 9))
        while len(values) > 1:
            values = values[2:] + [add.remote(values[0], values[1])]
        tree = kit.get(values[0])

        tree_time = time.time() - start
        print(f"tree: {tree} in {tree_time:.2f} s (linear took {linear_time:.2f} s)")
        _, tree_events = kit.events(mark)
        widgets.plot_timeline(tree_events, kit.nodes(),
                              title="tree: 4, then 2, then 1 add at a time")
        """),
        md("""
        With `n` values the line takes `n - 1` steps and the tree about `log2(n)`: for 1,024
        values that is 1,023 steps against 10. The tree needs as many slots as its widest
        round (`n / 2`); with fewer, the rounds take longer but still beat the line.

        ## Exercise

        Write `tree_reduce(task, values)` that combines any number of values (odd counts
        too) with any two-argument task, and use it with `add` on `range(1, 14)`. How long
        do you expect it to take?
        """),
        md("""
        ### Solution

        The loop above already works for odd counts: an item left without a partner waits at
        the end of the list for the next round. 13 values need `ceil(log2(13)) = 4` rounds,
        about 1 s.
        """),
        code("""
        def tree_reduce(task, values):
            values = list(values)
            while len(values) > 1:
                values = values[2:] + [task.remote(values[0], values[1])]
            return values[0]

        start = time.time()
        total = kit.get(tree_reduce(add, range(1, 14)))
        print(f"{total} (expected {sum(range(1, 14))}) in {time.time() - start:.2f} s")
        """),
        code("""
        kit.shutdown()
        """),
    ]


# ---------------------------------------------------------------------------------------
@notebook("04-actors")
def _():
    return [
        md("""
        # 4. Actors

        A task is a function: it starts, returns and forgets. An **actor** is an instance of
        a class that lives in its own worker process and keeps its state between calls.
        `@kit.remote` on a class makes it an actor class; `Cls.remote()` creates one and
        returns a **handle**; `handle.method.remote()` calls a method and returns a ref.
        """),
        code("""
        import time

        import kit

        kit.init(num_cpus=2)
        """),
        md("""
        ## A counter
        """),
        code("""
        @kit.remote
        class Counter:
            def __init__(self):
                self.value = 0

            def inc(self):
                self.value += 1
                return self.value

            def get_value(self):
                return self.value

        c = Counter.remote()
        print(kit.get([c.inc.remote() for _ in range(5)]))
        """),
        md("""
        The calls of one caller run one at a time, in the order they were made: the five
        `inc` calls above return 1 to 5. There is no lock to take; the actor is the only one
        touching its state.

        Each actor has its own state. Four counters, each incremented three times without
        waiting, then read:
        """),
        code("""
        counters = [Counter.remote() for _ in range(4)]
        for counter in counters:
            for _ in range(3):
                counter.inc.remote()                    # no get: we do not wait
        print(kit.get([counter.get_value.remote() for counter in counters]))
        """),
        md("""
        ## Passing a handle to tasks

        A handle can be passed to tasks (and other actors) like any argument. Here three
        `worker` tasks post messages to one `MessageActor`, while the driver collects what
        has arrived so far.
        """),
        code("""
        @kit.remote
        class MessageActor:
            def __init__(self):
                self.messages = []

            def add_message(self, message):
                self.messages.append(message)

            def get_and_clear_messages(self):
                messages = self.messages
                self.messages = []
                return messages


        @kit.remote
        def worker(message_actor, j):
            for i in range(100):
                time.sleep(0.001)
                message_actor.add_message.remote(f"Message {i} from worker {j}.")
        """),
        code("""
        message_actor = MessageActor.remote()
        workers = [worker.remote(message_actor, j) for j in range(3)]

        got = []
        deadline = time.time() + 30
        while len(got) < 300 and time.time() < deadline:
            new_messages = kit.get(message_actor.get_and_clear_messages.remote())
            if new_messages:
                print(f"{len(new_messages):3d} new, e.g. {new_messages[-1]!r}")
            got += new_messages
            time.sleep(0.05)
        print("messages received:", len(got))
        """),
        md("""
        Each worker's messages arrive in the order it sent them; messages of different
        workers interleave.

        ## Exercise

        Write a `Stats` actor with `add(x)` and `mean()`. Start ten tasks `square_into(stats, i)`
        for `i` in `range(10)`, each adding `i * i` to the actor through the handle. When
        the tasks are done, print the mean (it should be 28.5).

        Hint: a task that calls `stats.add.remote(...)` and returns at once may finish
        before the actor has run the call; `kit.get` the call inside the task to be sure.
        """),
        md("""
        ### Solution
        """),
        code("""
        @kit.remote
        class Stats:
            def __init__(self):
                self.values = []

            def add(self, x):
                self.values.append(x)

            def mean(self):
                return sum(self.values) / len(self.values)


        @kit.remote
        def square_into(stats, i):
            kit.get(stats.add.remote(i * i))


        stats = Stats.remote()
        kit.get([square_into.remote(stats, i) for i in range(10)])
        print("mean:", kit.get(stats.mean.remote()))
        """),
        code("""
        kit.shutdown()
        """),
    ]


# ---------------------------------------------------------------------------------------
@notebook("05-object-store")
def _():
    return [
        md("""
        # 5. The object store

        Every node of a kit cluster has an **object store** in shared memory. `kit.put(value)`
        copies a value there once and returns a ref; tasks on that node read large numpy
        arrays **in place**, without copying them. This lesson shows what is copied, and
        when.
        """),
        code("""
        import time

        import numpy as np

        import kit

        kit.init(num_cpus=2)
        """),
        md("""
        ## `kit.put`: one copy into shared memory
        """),
        code("""
        arr = np.random.rand(5_000_000)               # 40 MB of float64
        start = time.time()
        ref = kit.put(arr)
        print(f"put {arr.nbytes / 1e6:.0f} MB in {(time.time() - start) * 1000:.1f} ms")
        print(f"store use on the node: {kit.nodes()[0]['store_used'] / 1e6:.0f} MB")
        """),
        md("""
        ## Zero-copy reads

        A task that receives the ref gets a numpy array whose memory **is** the store's
        shared memory. It does not own its data, and it is read-only: other tasks may be
        reading the same bytes.
        """),
        code("""
        @kit.remote
        def inspect(a):
            return {"writeable": a.flags.writeable, "owndata": a.flags.owndata,
                    "sum": float(a.sum())}

        print(kit.get(inspect.remote(ref)))
        """),
        md("""
        The driver runs on the same node, so `kit.get` maps the same memory: it takes a
        millisecond or two, whatever the size, against the time numpy needs to copy 40 MB.
        The array is read-only here too.
        """),
        code("""
        start = time.time()
        view = kit.get(ref)
        get_time = time.time() - start
        start = time.time()
        arr.copy()
        copy_time = time.time() - start
        print(f"kit.get: {get_time * 1000:.1f} ms; a numpy copy: {copy_time * 1000:.1f} ms")
        print(f"writeable: {view.flags.writeable}, owndata: {view.flags.owndata}")
        print("same values:", np.array_equal(view, arr))

        try:
            view[0] = 1.0
        except ValueError as err:
            print("writing fails:", err)
        """),
        md("""
        To change the data, make your own copy: `a = a.copy()` (inside a task or in the
        driver). The copy is yours and writeable; the stored object stays as it was.
        """),
        code("""
        @kit.remote
        def scaled(a, factor):
            a = a.copy()                  # an explicit, private copy
            a *= factor
            return a

        doubled = kit.get(scaled.remote(ref, 2.0))
        print("doubled[0] / view[0] =", doubled[0] / view[0])
        """),
        md("""
        ## What gets copied, and when

        | what | copies |
        |---|---|
        | `kit.put(arr)` | once, from the driver's memory into the store |
        | a task reads a put array on the same node | none: a read-only view |
        | a task returns a large array | once, into the store of its node |
        | `arr` passed directly to `.remote(arr)` | once **per call**: each call stores its own copy |
        | small values and Python objects (lists, dicts) | pickled; every reader gets its own copy |
        | a task on another node reads the array | once per node: sent to that node's store |

        The fourth row is the one to watch. Passing the array itself ten times stores it ten
        times; putting it once and passing the ref stores it once:
        """),
        code("""
        @kit.remote
        def first(a):
            return float(a[0])

        kit.get([first.remote(ref) for _ in range(2)])      # warm up both workers

        start = time.time()
        kit.get([first.remote(arr) for _ in range(10)])
        by_value = time.time() - start

        start = time.time()
        kit.get([first.remote(ref) for _ in range(10)])
        by_ref = time.time() - start
        print(f"10 calls with the array: {by_value * 1000:.0f} ms; "
              f"with the ref: {by_ref * 1000:.0f} ms")
        """),
        md("""
        ## Exercise

        Put a `(4000, 1000)` array once, then have four tasks each sum one quarter of its
        rows (pass the ref and the row range). Check the total against `big.sum()` and
        check in a task that the rows it reads are not a copy (`owndata` is False).
        """),
        md("""
        ### Solution
        """),
        code("""
        big = np.random.rand(4000, 1000)
        big_ref = kit.put(big)

        @kit.remote
        def sum_rows(a, lo, hi):
            part = a[lo:hi]
            return float(part.sum()), part.flags.owndata

        parts = kit.get([sum_rows.remote(big_ref, lo, lo + 1000) for lo in range(0, 4000, 1000)])
        print("total matches:", np.isclose(sum(s for s, _ in parts), big.sum()))
        print("any copies:", any(own for _, own in parts))
        """),
        md("""
        An object stays in the store while some ref to it is alive; deleting the refs frees
        it.
        """),
        code("""
        del ref, view, big_ref
        kit.shutdown()
        """),
    ]


# ---------------------------------------------------------------------------------------
@notebook("06-clusters")
def _():
    return [
        md("""
        # 6. Clusters: head and worker nodes

        A kit cluster has one **head** and any number of **nodes**:

        ```
                         driver (this notebook)
                                 │
                               head          keeps the task table, schedules, holds the token
                  ┌──────────────┼──────────────┐
               node n0         node n1        node n2     one agent per machine:
               workers,        workers,       workers,    worker processes and an
               object store    object store   object store object store in shared memory
        ```

        On a real cluster every node is a machine. To try it on one machine,
        `kit.init(num_nodes=3, num_cpus=1)` starts three node agents with one slot each.
        """),
        code("""
        import collections

        from IPython.display import display

        import kit
        import widgets

        kit.init(num_nodes=3, num_cpus=1)
        for node in sorted(kit.nodes(), key=lambda n: n["tag"]):
            state = "alive" if node["Alive"] else "dead"
            print(node["tag"], node["NodeID"], node["Resources"], state)
        print("cluster:", kit.cluster_resources())
        """),
        md("""
        ## Where do tasks run?

        Inside a task, `kit.get_runtime_context().get_node_id()` names its node.
        """),
        code("""
        tags = {n["NodeID"]: n["tag"] for n in kit.nodes()}

        @kit.remote
        def where(i):
            return kit.get_runtime_context().get_node_id()

        placed = kit.get([where.remote(i) for i in range(30)])
        print(collections.Counter(tags[node] for node in placed))
        """),
        md("""
        ## 10,000 tasks, watched live

        `widgets.ClusterMonitor()` shows one row per node (CPU busy, tasks queued, running,
        done and failed, store use) and updates itself while cells run.
        `kit.get(refs, progress=True)` adds a progress bar for one batch.
        """),
        code("""
        monitor = widgets.ClusterMonitor()
        display(monitor)
        """),
        code("""
        @kit.remote
        def tiny(i):
            return i * i

        refs = [tiny.remote(i) for i in range(10_000)]
        results = kit.get(refs, progress=True)
        print("sum of squares:", sum(results))
        """),
        md("""
        `widgets.plot_node_counts()` draws the tasks each node has finished so far (the
        `where` tasks included), as a matplotlib figure that stays in exported notebooks.
        """),
        code("""
        widgets.plot_node_counts()
        """),
        md("""
        ## Real machines

        On real machines, start the head on one and join the others to it from a shell
        (not from this notebook):

        ```bash
        # on the head machine: prints the join command and the token
        kit start --head --node-ip-address 10.0.0.1
        # on every other machine
        kit start --address 10.0.0.1:6380 --token <token printed above>
        kit status          # nodes, CPUs busy/total, tasks queued/running/done/failed
        kit stop            # stops the kit daemons started on this host
        ```

        A notebook then connects with `kit.init(address="10.0.0.1:6380", token=...)`, or
        with the magic `%cluster connect 10.0.0.1:6380 --token ...`. The rest of the code
        does not change.

        ## Exercise

        Run five `where` tasks pinned to node `n2` with
        `kit.NodeAffinitySchedulingStrategy(node_id, soft=False)` (pass it as
        `where.options(scheduling_strategy=...)`) and check from their answers that they
        all ran there.
        """),
        md("""
        ### Solution
        """),
        code("""
        n2 = next(n["NodeID"] for n in kit.nodes() if n["tag"] == "n2")
        pinned = where.options(
            scheduling_strategy=kit.NodeAffinitySchedulingStrategy(n2, soft=False))
        print([tags[node] for node in kit.get([pinned.remote(i) for i in range(5)])])
        """),
        code("""
        monitor.close()
        kit.shutdown()
        """),
    ]


# ---------------------------------------------------------------------------------------
@notebook("07-notebook-cells-as-tasks")
def _():
    return [
        md("""
        # 7. Notebook cells as tasks

        The `kit` IPython extension runs whole cells on the cluster:

        * `%%remote` runs the cell as one task; the names it reads are shipped from the
          notebook, and `-o NAMES` brings names it assigns back;
        * `--no-block` returns at once; the `-o` names become refs;
        * `--map "i in range(8)"` runs the cell once per item, in parallel;
        * `%remote EXPR` evaluates one expression on the cluster.
        """),
        code("""
        %load_ext kit
        """),
        code("""
        %cluster start --nodes 1 --cpus 2
        """),
        code("""
        %cluster status
        """),
        md("""
        ## `%%remote` and `-o`

        `data` lives in the notebook; the cell reads it, so it is shipped with the task. The
        cell's last expression is shown as its result, and `-o total` assigns `total` in the
        notebook when the task is done.
        """),
        code("""
        data = list(range(1_000))
        """),
        code("""
        %%remote -o total
        import os
        total = sum(x * x for x in data)
        print("computed in process", os.getpid())
        total / len(data)
        """),
        code("""
        import os

        print("back in the notebook (process", os.getpid(), "): total =", total)
        """),
        md("""
        `%remote` does the same for one expression:
        """),
        code("""
        %remote max(data) - min(data)
        """),
        md("""
        ## Output streams while the cell runs

        What the task prints appears under the cell as it is printed, not at the end.
        """),
        code("""
        %%remote
        import time
        for step in range(1, 6):
            print(f"step {step}/5")
            time.sleep(0.3)
        """),
        md("""
        ## `--no-block`

        The cell returns at once and the notebook stays free; a status line shows the
        task's progress, and the `-o` names are refs until you fetch them.
        """),
        code("""
        %%remote --no-block -o slow_total
        import time
        time.sleep(1)
        slow_total = sum(data)
        """),
        code("""
        import kit

        print("meanwhile, in the notebook:", type(slow_total).__name__)
        print("fetched:", kit.get(slow_total))
        """),
        md("""
        ## `--map`

        The cell runs once per item, in parallel; each `-o` name comes back as a list in the
        order of the items.
        """),
        code("""
        %%remote --map "i in range(8)" -o squares
        squares = i * i
        """),
        code("""
        print(squares)
        """),
        md("""
        ## Errors

        An error in a remote cell is raised in the notebook with the cell's own line numbers
        and the node it ran on. (This cell is tagged `raises-exception`, so running the whole
        notebook goes on past it.)
        """),
        code(
            """
        %%remote
        values = [1, 2, 0]
        inverses = [1 / v for v in values]
        """,
            tags=["raises-exception"],
        ),
        md("""
        ## Interrupting

        The stop button (or *Kernel → Interrupt*) on a running `%%remote` cell cancels its
        task: kit interrupts the task where it runs (a `time.sleep` too), the cell ends with
        one line, `KeyboardInterrupt: cancelled remote-cell-N (running on n0)`, and the
        cluster and the notebook's variables stay as they were. An automated run of this
        notebook cannot press the button, so try it by hand:

        ```python
        %%remote
        import time
        while True:
            time.sleep(1)
        ```

        ## Exercise

        Count the primes below 40,000 with `--map` over four ranges of 10,000 numbers each,
        bring the four counts back with `-o`, and add them up in the notebook (the answer is
        4,203).
        """),
        md("""
        ### Solution
        """),
        code("""
        %%remote --map "k in range(4)" -o counts
        def is_prime(n):
            return n > 1 and all(n % d for d in range(2, int(n ** 0.5) + 1))

        counts = sum(is_prime(n) for n in range(k * 10_000, (k + 1) * 10_000))
        """),
        code("""
        print(counts, "->", sum(counts))
        """),
        code("""
        %cluster stop
        """),
    ]


# ---------------------------------------------------------------------------------------
@notebook("08-monte-carlo-pi")
def _():
    return [
        md("""
        # 8. Monte Carlo π: from serial to parallel

        Throw random points into the unit square; the share that lands inside the quarter
        circle `x² + y² ≤ 1` is about π/4. More points give a better estimate, and the
        points are independent, so the work splits into tasks with no communication.
        """),
        code("""
        import os
        import random
        import time

        import matplotlib.pyplot as plt

        import kit

        TOTAL = 12_000_000
        CHUNKS = 16
        print("cores on this machine:", os.cpu_count())
        """),
        md("""
        ## Serial
        """),
        code("""
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
        """),
        md("""
        ## Parallel

        The same function as a task, run as 16 chunks. Start a cluster with 1, 2 and then 4
        slots and time the same job on each.
        """),
        code("""
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
        """),
        code("""
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
        """),
        md("""
        ## Why 4 slots do not help here

        Each slot is a worker process, and this machine has 2 cores. With 2 slots both cores
        are busy; with 4, four processes share the same 2 cores and each runs half the
        time, so the job takes as long as with 2 (a little longer: switching between
        processes costs too). Slots beyond the cores help only tasks that wait rather than
        compute: the sleeps of lesson 1, network or disk I/O.

        Even with 2 slots the speed-up is at best 2, and often a little under: the chunks
        are sent and collected, and the other processes of the machine (this notebook, the
        head) want some CPU too.

        ## Exercise

        The pure-Python loop is slow. Write `sample_np(n)` with numpy (draw `n` points as
        arrays and count with a comparison), run it as 16 tasks on 2 slots, and compare
        with the time above.
        """),
        md("""
        ### Solution
        """),
        code("""
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
        """),
        code("""
        kit.shutdown()
        """),
    ]


# ---------------------------------------------------------------------------------------
@notebook("09-faults")
def _():
    return [
        md("""
        # 9. Faults: crashed workers, lost nodes and exceptions

        Three different things can go wrong:

        * the **worker process dies** (a crash, running out of memory, a kill): kit runs the
          task again on another worker, up to `max_retries` times (3 by default);
        * a **node dies** with results in its shared memory: kit makes them again by
          running the tasks that made them;
        * the **task raises an exception**: that is your program's answer, so it is not
          retried (unless you ask); `kit.get` raises it in the driver with the remote
          traceback.
        """),
        code("""
        import os
        import shutil
        import signal
        import tempfile
        import time

        import numpy as np

        import kit

        kit.init(num_cpus=2)
        scratch = tempfile.mkdtemp(prefix="kit-faults-")
        """),
        md("""
        ## A worker that dies on the first try

        The task leaves a file behind on its first try and then kills its own process with
        `os._exit(1)`. The second try finds the file and finishes.
        """),
        code("""
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
        """),
        md("""
        Without retries the crash reaches the driver as a `WorkerCrashedError` that says what
        happened:
        """),
        code("""
        os.remove(marker)
        try:
            kit.get(flaky.options(max_retries=0).remote(marker))
        except kit.WorkerCrashedError as err:
            print(f"{type(err).__name__}: {err}")
        """),
        md("""
        ## Killing a worker from outside

        The same happens when something else kills the worker, as the kernel's
        out-of-memory killer or an operator would. The task writes its pid to a file and
        works for a second; the driver kills that pid with `SIGKILL` mid-run.
        """),
        code("""
        @kit.remote
        def long_job(pid_file):
            with open(pid_file, "a") as f:
                f.write(f"{os.getpid()}\\n")
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
        """),
        md("""
        ## Exceptions carry their remote traceback

        An exception raised in a task comes back as an instance of **its own class** (so
        `except ZeroDivisionError:` works) that is also a `kit.TaskError`, with the
        traceback from the worker in `err.traceback_str` and where it ran in `err.pid` and
        `err.node_id`.
        """),
        code("""
        @kit.remote
        def inverse(x):
            return 1 / x

        try:
            kit.get(inverse.remote(0))
        except ZeroDivisionError as err:
            print("caught:", err)
            print("a kit.TaskError too:", isinstance(err, kit.TaskError))
            print(err.traceback_str)
        """),
        md("""
        Exceptions are not retried by default: running the same code on the same input
        usually fails the same way. For errors that may pass (a network hiccup), set
        `retry_exceptions=True`:
        """),
        code("""
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
        """),
        md("""
        ## A node that dies takes its objects with it

        Large results live in the shared memory of the node that made them. When a node
        dies they are gone, and kit makes them again by running the task that made them
        (its **lineage**) on a node that is left, within the same `max_retries`. A value
        made with `kit.put` has no task behind it: `get` raises `ObjectLostError`.

        Here the second node makes an 8 MB array, and we kill that node's agent with `SIGKILL`.
        """),
        code("""
        kit.shutdown()
        kit.init(num_nodes=2, num_cpus=1)
        first, second = kit.nodes()

        @kit.remote
        def make_array(n):
            print(f"making the array on node {kit.get_runtime_context().get_node_id()}")
            return np.arange(n)

        on_second = kit.NodeAffinitySchedulingStrategy(second["NodeID"], soft=True)
        ref = make_array.options(scheduling_strategy=on_second).remote(1_000_000)
        kit.wait([ref])
        time.sleep(0.2)                       # let the task's output reach this cell
        os.kill(second["pid"], signal.SIGKILL)
        arr = kit.get(ref, timeout=60)
        print("sum:", arr.sum(), "- made again:", kit.cluster_status()["counts"]["rebuilt"])
        """),
        md("""
        `soft=True` lets the task run elsewhere when its node is gone; a hard pin
        (`soft=False`) would fail with `NodeDiedError` instead.
        """),
        md("""
        ## Exercise

        Submit `inverse` for `x` in `range(-3, 4)`. One of them fails. Collect the results
        that succeeded and the errors that did not, without the one failure losing the
        others, and print both.
        """),
        md("""
        ### Solution

        `kit.get` on the whole list raises at the first failure; get each ref on its own.
        """),
        code("""
        refs = {x: inverse.remote(x) for x in range(-3, 4)}
        results, errors = {}, {}
        for x, r in refs.items():
            try:
                results[x] = kit.get(r)
            except kit.TaskError as err:
                errors[x] = str(err)
        print("results:", {x: round(v, 3) for x, v in results.items()})
        print("errors:", errors)
        """),
        code("""
        kit.shutdown()
        shutil.rmtree(scratch)
        """),
    ]


# The cell notebook 10 runs on kit, on Ray and on Dask, word for word.
SAME_CELL = """
%%remote --map "i in range(4)" -o part
import os
print(f"chunk {i} in pid {os.getpid()}")
part = sum(k * k for k in range(i * 2_000_000, (i + 1) * 2_000_000))
"""
SAME_RESULT = 'print("sum of squares below 8 * 10**6:", sum(part))'


# ---------------------------------------------------------------------------------------
@notebook("10-ray-and-dask")
def _():
    return [
        md("""
        # 10. Ray and Dask

        kit grew from tutorials about two engines. **Ray** is built around remote functions
        and actors, like kit. **Dask** is built around collections (arrays, dataframes, bags)
        that turn into task graphs, and runs them with a scheduler. This lesson runs the same
        ideas on all three, then makes them work together:

        * tasks and futures in each engine;
        * Dask's graphs run by kit's scheduler (`kit.dask_scheduler`) and by Ray's;
        * Dask reads a CSV, kit tasks process its partitions;
        * the same notebook cells (`%%remote`) on kit, Ray and Dask, changing only the
          `%cluster` line.

        Each engine gets two worker slots on this machine.
        """),
        code("""
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
        t = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        print(f"Ray  started in {time.perf_counter() - t:.2f} s")
        t = time.perf_counter()
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
        client = Client(cluster)
        print(f"Dask started in {time.perf_counter() - t:.2f} s")
        """),
        md("""
        ## Tasks and futures in each engine

        One plain function, run as four tasks on each engine. kit and Ray wrap it with
        `remote` and return `ObjectRef`s; Dask's `client.submit` returns a `Future`. Each
        gives the values back with one call.
        """),
        code("""
        def square(x):
            return x * x

        on_kit = kit.get([kit.remote(square).remote(i) for i in range(4)])
        on_ray = ray.get([ray.remote(square).remote(i) for i in range(4)])
        on_dask = client.gather([client.submit(square, i) for i in range(4)])
        print("kit: ", on_kit)
        print("Ray: ", on_ray)
        print("Dask:", on_dask)
        """),
        md("""
        | idea | kit | Ray | Dask |
        |---|---|---|---|
        | start a task | `f.remote(x)` | `f.remote(x)` | `client.submit(f, x)` |
        | wait for its value | `kit.get(ref)` | `ray.get(ref)` | `fut.result()`, `client.gather` |
        | wait for some | `kit.wait` | `ray.wait` | `distributed.wait`, `as_completed` |
        | share a large value | `kit.put` | `ray.put` | `client.scatter` |
        | a future as an argument | yes | yes | yes |
        | stateful workers | actors | actors | actors (`actor=True`) |
        | lazy task graphs | via Dask | via Dask | `dask.delayed`, collections |

        The big difference is **when** the graph is built. kit and Ray start a task the
        moment you call `.remote()`; Dask's collections record the whole graph first and
        run it when you call `.compute()`. That lets Dask plan the graph as a whole, and
        lets any scheduler run it.
        """),
        md("""
        ## Dask graphs on kit (and on Ray)

        A Dask collection is a graph plus a choice of scheduler. `kit.dask_scheduler` runs
        every node of the graph as a kit task, with intermediate results in kit's object
        store; `ray_dask_get` does the same on Ray. The answer is the same on each.
        """),
        code("""
        x = da.random.RandomState(0).random_sample((3000, 3000), chunks=(750, 750))
        y = (x + x.T).mean(axis=0)
        print(f"{len(y.__dask_graph__())} nodes in the graph")

        answers, times = {}, {}
        for name, scheduler in [("threads", "threads"), ("kit", kit.dask_scheduler),
                                ("ray", ray_dask_get), ("dask distributed", client.get)]:
            t = time.perf_counter()
            answers[name] = y.compute(scheduler=scheduler)
            times[name] = time.perf_counter() - t
        for name, secs in times.items():
            same = np.allclose(answers[name], answers["threads"])
            print(f"{name:17s} {secs:6.3f} s   same answer: {same}")
        """),
        md("""
        The tasks ran on kit's workers under the names of Dask's keys; the timeline shows
        them (`random_sample`, `transpose`, `add`, `mean_chunk`, ...).
        """),
        code("""
        widgets.plot_timeline(title="Dask's graph, run by kit")
        """),
        md("""
        ## Dask reads the data, tasks process it

        A common split of work: Dask is good at reading data in partitions (`read_csv` on
        many files, Parquet, ...), and remote functions are good at doing something custom
        with each partition. Here Dask reads six CSV files; `return_refs=True` leaves each
        partition in kit's object store, and a kit task works on each one there.
        """),
        code("""
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
        """),
        md("""
        Checked against pandas reading the same files in the notebook:
        """),
        code("""
        everything = pd.concat(pd.read_csv(os.path.join(data_dir, f))
                               for f in sorted(os.listdir(data_dir)))
        expected = (everything[everything["amount"] > 100.0]
                    .groupby("shop")["amount"].agg(["count", "sum"]).sort_index())
        print("same as pandas:", np.allclose(result.to_numpy(), expected.to_numpy()))
        """),
        md("""
        ## The same cells on every engine

        The `%%remote` magic and the widgets talk to one backend, and the `%cluster` line
        chooses it. Below, one cell runs on kit, then on Ray, then on Dask; only the
        `%cluster` line before it changes. `%cluster connect ray:local` uses the Ray
        started above, `tcp://...` the Dask scheduler; `%cluster stop` lets go of each
        (Ray and Dask were started by this notebook's own code, which stops them at the
        end). `%cluster status` shows each engine's nodes and how many tasks each ran.
        """),
        code("""
        %load_ext kit
        """),
        code("""
        %cluster status
        """),
        code(SAME_CELL),
        code(SAME_RESULT),
        md("""
        `%cluster stop` lets go of kit (and stops it, since this notebook started it); the
        next line connects the magics to Ray.
        """),
        code("""
        %cluster stop
        %cluster connect ray:local
        """),
        code(SAME_CELL),
        code(SAME_RESULT + "\n%cluster status\n%cluster stop"),
        code("""
        %cluster connect {cluster.scheduler_address}
        """),
        code(SAME_CELL),
        code(SAME_RESULT + "\n%cluster status\n%cluster stop"),
        md("""
        ## Which one when

        * **kit**: a notebook and a handful of machines; starts in a fraction of a second,
          and the notebook (cells, widgets, plots) drives and shows the cluster.
        * **Ray**: large clusters, actors everywhere, and its libraries (Tune, Serve, Data).
        * **Dask**: arrays and dataframes bigger than memory, with the pandas and NumPy API.

        They mix: Dask's collections run on kit or on Ray, and kit's cells and widgets run
        on Ray or Dask clusters.
        """),
        md("""
        ## Exercise

        With `dask.dataframe`, compute the mean `amount` per shop of all the sales files,
        once with Dask's own threaded scheduler and once with `kit.dask_scheduler`, and
        check that the two agree.
        """),
        md("""
        ### Solution
        """),
        code("""
        mean = sales.groupby("shop")["amount"].mean()
        on_threads = mean.compute(scheduler="threads").sort_index()
        on_kit = mean.compute(scheduler=kit.dask_scheduler).sort_index()
        print(on_kit)
        print("agree:", np.allclose(on_threads.to_numpy(), on_kit.to_numpy()))
        """),
        code("""
        client.close()
        cluster.close()
        ray.shutdown()
        kit.shutdown()
        shutil.rmtree(data_dir)
        """),
    ]


def build(name, cells):
    for i, cell in enumerate(cells):
        cell.id = f"{name[:2]}-{i:02d}"  # stable ids: regenerating gives no diff
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.validate(nb)
    return nb


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, make in NOTEBOOKS.items():
        path = os.path.join(OUT, f"{name}.ipynb")
        nbformat.write(build(name, make()), path)
        print("wrote", os.path.relpath(path))


if __name__ == "__main__":
    main()
