"""Dask on kit: ``dask.compute(x, scheduler=kit.dask_scheduler)`` runs any Dask graph as kit tasks.

    dask.compute(x) ──▶ dask_scheduler(graph, keys)
        make_plan:  Task-spec graph (convert_legacy_graph), culled to what ``keys``
                    need, in dask.order's order (dependencies first, depth first)
        submit:     one kit task per Task node, in that order, named after its key
                    ("sum-aggregate", "read_csv", "add"); its dependencies go in
                    as ObjectRefs, so kit hands the worker their values from the
                    object store; the driver drops a ref once the last task that
                    uses it is submitted (pending tasks pin their arguments)
        kit.get:    the refs of the requested keys only ──▶ values, nested like ``keys``

What becomes a task and what does not:

- ``Task`` (including fused tasks and ``getitem`` of a tuple result): one kit
  task. A ``getitem`` stays a task because the tuple is in the object store and
  the driver does not know its length; it runs where the store hands it over.
- ``Alias``: no task; the key takes its target's ref (or value).
- ``DataNode``: no task; its value travels as an argument of the tasks that use
  it (kit moves a large argument to shared memory itself). A large value used by
  more than one task is ``kit.put`` once instead. A requested ``DataNode`` is
  returned as it is, without a round trip.

The tasks are ordinary kit tasks: the cluster monitor and ``kit.timeline()``
show them under their key names. ``progress=True`` shows a progress bar over the
requested keys only (a progress bar fetches what it counts, and intermediates
must stay in the store).

``dask.persist(x, scheduler=kit.dask_scheduler)`` has compute semantics: the
persisted collection holds the values in the driver. To keep results in the
cluster, ask for refs with ``return_refs=True`` and hand them to kit tasks. The
tutorial's "Dask reads a CSV, tasks process partitions":

    parts = dask.dataframe.read_csv("sales-*.csv").to_delayed()
    refs = dask.compute(*parts, scheduler=kit.dask_scheduler, return_refs=True)

    @kit.remote
    def totals(df):                      # a pandas partition, read from the store
        return df.groupby("shop")["amount"].sum()

    per_shop = sum(kit.get([totals.remote(r) for r in refs]))

Errors: a task's exception is raised by ``kit.get`` as an instance of its own
class; tasks that depend on a failed one fail with its error without running.
If the wait ends in an error or is interrupted (Ctrl-C), every task of the
graph that has not finished is cancelled.

Nothing here imports dask at module import time: ``import kit`` stays light, and
dask is already imported whenever dask calls the scheduler.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import api
from .errors import KitError
from .serialization import INLINE_LIMIT


def _execute(node, dep_keys, *dep_values):
    """In a worker: run one graph node with its dependencies' values."""
    return node(dict(zip(dep_keys, dep_values)))


_run_node = api.remote(_execute)


class Plan:
    """A graph made ready to submit.

    Attributes:
        graph: ``{key: GraphNode}``, only the nodes the requested keys need.
        order: the graph's keys, each after its dependencies.
        uses: ``{key: number of nodes that depend on it}``.
        wanted: the requested keys, flattened, in order (with repeats).
    """

    __slots__ = ("graph", "order", "uses", "wanted")

    def __init__(self, graph, order, uses, wanted):
        self.graph, self.order, self.uses, self.wanted = graph, order, uses, wanted


def make_plan(dsk, keys) -> Plan:
    """Normalize a Dask graph (legacy tuples or Task spec), cull it to ``keys``, order it.

    Pure: no cluster needed.

    Raises:
        ValueError: a requested key or a dependency is not in the graph.

    Example:
        >>> from operator import add
        >>> p = make_plan({"x": 1, "y": (add, "x", 1), "z": "y", "unused": 3}, ["z"])
        >>> p.order, sorted(p.uses.items())
        (['x', 'y', 'z'], [('x', 1), ('y', 1)])
    """
    from dask._task_spec import convert_legacy_graph
    from dask.core import flatten
    from dask.order import order

    if not isinstance(dsk, Mapping):
        dsk = dsk.__dask_graph__()
    full = convert_legacy_graph(dsk)
    wanted = list(flatten(keys)) if isinstance(keys, list) else [keys]
    graph, uses = {}, {}
    stack = [(k, None) for k in wanted]
    while stack:
        key, user = stack.pop()
        if key in graph:
            continue
        node = full.get(key)
        if node is None:
            what = f"dependency of {user!r}" if user is not None else "requested key"
            raise ValueError(f"{what} {key!r} is not in the Dask graph")
        graph[key] = node
        for dep in node.dependencies:
            uses[dep] = uses.get(dep, 0) + 1
            stack.append((dep, key))
    priority = order(graph) if graph else {}
    return Plan(graph, sorted(graph, key=priority.__getitem__), uses, wanted)


def dask_scheduler(dsk, keys, *, num_cpus=None, progress=False, return_refs=False, **kwargs):
    """A Dask scheduler ("get" function) that runs every graph node as a kit task.

    Starts a local cluster (``kit.init()``) if kit is not initialized. Other
    keyword arguments dask passes (``num_workers``, ...) are ignored: the
    cluster's slots decide the parallelism.

    Args:
        dsk: a Dask graph (a mapping, or what ``dask.compute`` passes).
        keys: a key, or a list of keys, nested as deep as you like.
        num_cpus: CPUs each task takes (default 1).
        progress: show a progress bar over the requested keys (a string labels it).
        return_refs: return ObjectRefs of the requested keys instead of values
            (a requested value that needed no task is ``kit.put``).

    Returns:
        The values of ``keys``, nested like ``keys`` (lists become tuples, as
        with Dask's own schedulers).

    Raises:
        Exception: what the first failing requested task raised (an instance of
            its own class, also a ``kit.TaskError``).

    Example:
        >>> import dask, kit
        >>> import dask.array as da
        >>> x = da.ones((100, 100), chunks=50)
        >>> total, = dask.compute((x + x.T).sum(), scheduler=kit.dask_scheduler)
        >>> float(total)
        20000.0
        >>> with dask.config.set(scheduler=kit.dask_scheduler):
        ...     int(x.sum().compute())
        10000
    """
    plan = make_plan(dsk, keys)
    api._client()  # kit.init() unless kit is initialized (or we run inside a task)
    tasks = []
    try:
        refs, local = _submit(plan, {} if num_cpus is None else {"num_cpus": num_cpus}, tasks)
    except BaseException:  # a node that cannot be pickled, Ctrl-C: stop what was sent
        _cancel(tasks)
        raise
    wanted = list(dict.fromkeys(plan.wanted))
    if return_refs:
        for key in wanted:
            if key not in refs:
                refs[key] = api.put(local[key])
        return _nest(keys, refs)
    fetch = [k for k in wanted if k in refs]
    try:
        values = api.get([refs[k] for k in fetch], progress=progress) if fetch else []
    except BaseException:
        _cancel(tasks)
        raise
    local.update(zip(fetch, values))
    return _nest(keys, local)


def _submit(plan, options, tasks):
    """Submit the plan's tasks, appending their ids to ``tasks``.

    Returns the requested keys' refs and local values.
    """
    from dask._task_spec import Alias, DataNode
    from dask.sizeof import sizeof
    from dask.utils import key_split

    runners = {}
    refs, local = {}, {}
    uses = dict(plan.uses)
    keep = set(plan.wanted)
    for key in plan.order:
        node = plan.graph[key]
        if isinstance(node, Alias):
            target = node.target
            if target in refs:
                refs[key] = refs[target]
            else:
                local[key] = local[target]
        elif isinstance(node, DataNode):
            if uses.get(key, 0) > 1 and sizeof(node.value) > INLINE_LIMIT:
                refs[key] = api.put(node.value)
            else:
                local[key] = node.value
        else:
            name = key_split(key)
            run = runners.get(name)
            if run is None:
                run = runners[name] = _run_node.options(name=name, **options)
            deps = tuple(node.dependencies)
            refs[key] = run.remote(node, deps, *[refs[d] if d in refs else local[d] for d in deps])
            tasks.append(refs[key].task_id())
        for dep in node.dependencies:
            uses[dep] -= 1
            if not uses[dep] and dep not in keep:
                refs.pop(dep, None)
                local.pop(dep, None)
    return refs, local


def _cancel(tasks):
    """Cancel the graph's tasks, last first (what ran or failed already is left alone).

    By task id, as ``kit.cancel`` does: the driver no longer holds refs to the
    intermediates, and taking new ones would keep their objects alive.
    """
    try:
        for tid in reversed(tasks):
            api._cancel_task(tid)
    except KitError:
        pass  # the cluster is gone: nothing left to cancel


def _nest(keys, values):
    if isinstance(keys, list):
        return tuple(_nest(k, values) for k in keys)
    return values[keys]
