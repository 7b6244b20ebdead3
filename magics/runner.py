"""The worker's side of ``%%remote``: run a cell's source in a fresh namespace.

One task runs one cell (or one ``--map`` item). The driver sends a spec and the
task's top-level arguments; the engine has already replaced the refs (kit, Ray)
or futures (Dask) among those arguments with their values:

    spec = {source, filename, first_line, values, modules, args, outputs, target}
    run_cell(spec, submitted, *args)
                          ─▶ namespace = values + re-imported modules + args
                          ─▶ exec(body); eval(last)
                          ─▶ (node id, last value, *outputs)
                                (num_returns = 2 + len(outputs))

The same function runs on kit, Ray and Dask workers (on Ray and Dask inside
``backends.worker.run``, which reports its node, state and printed lines).
The cell's source goes into ``linecache`` under its filename, so the traceback
sent back shows the cell's own lines. The driver learns where the task runs
from the backend's task events (the "running" event names the node), and from
the node id the task returns (``backends.worker.node_id``).

The driver routes a task's output to its cell before the task is sent
(``Backend.submit(on_output=...)``), so every line the cell prints reaches that cell.

This module is imported on workers: it must not import IPython.
"""

from __future__ import annotations

import builtins
import importlib
import linecache
import sys
import types

from .analysis import bind_target, compile_cell


def _node_id() -> str:
    try:
        from backends.worker import node_id

        return node_id()
    except Exception:
        return ""


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def build_namespace(spec: dict, args: tuple) -> dict:
    """The namespace a cell runs in: shipped values, modules, and resolved arguments.

    ``spec["args"]`` lays out ``args``: ``(name, None)`` takes one argument,
    ``(name, (n, "list"|"tuple"))`` gathers ``n`` arguments into a list or tuple.
    With a ``--map`` target, the last argument is the item.

    Example:
        >>> spec = {"values": {"a": 1}, "modules": {"m": "math"}, "args": [("r", None)],
        ...         "target": None}
        >>> ns = build_namespace(spec, (5,))
        >>> ns["a"], ns["m"].__name__, ns["r"]
        (1, 'math', 5)
    """
    ns = {"__name__": "__main__", "__builtins__": builtins}
    for name, modname in spec.get("modules", {}).items():
        ns[name] = importlib.import_module(modname)
    ns.update(spec.get("values", {}))
    pos = 0
    for name, layout in spec.get("args", ()):
        if layout is None:
            ns[name] = args[pos]
            pos += 1
        else:
            n, kind = layout
            items = list(args[pos : pos + n])
            ns[name] = tuple(items) if kind == "tuple" else items
            pos += n
    if spec.get("target"):
        bind_target(spec["target"], args[pos], ns)
    _share_globals(ns)
    return ns


def _share_globals(ns: dict) -> None:
    """Make notebook functions read and write the cell's namespace, as in the notebook.

    cloudpickle gives a ``__main__`` function a globals dict holding just the
    names it uses; those names join the namespace (shipped values win) and the
    function is rebound to it, so ``factor = 3`` in the cell changes what a
    notebook function that reads ``factor`` sees.
    """
    for name, fn in list(ns.items()):
        if (
            isinstance(fn, types.FunctionType)
            and fn.__module__ == "__main__"
            and fn.__globals__ is not ns
        ):
            for key, value in fn.__globals__.items():
                ns.setdefault(key, value)
            new = types.FunctionType(fn.__code__, ns, fn.__name__, fn.__defaults__, fn.__closure__)
            new.__kwdefaults__ = fn.__kwdefaults__
            new.__dict__.update(fn.__dict__)
            new.__qualname__, new.__doc__ = fn.__qualname__, fn.__doc__
            new.__annotations__ = fn.__annotations__
            new.__module__ = "__main__"
            ns[name] = new


def run_cell(spec: dict, submitted: float = 0.0, *args):
    """Run one cell; return ``(node id, last value, *outputs)``.

    The node id comes first so the driver knows where the cell ran without
    waiting for the cluster's task events.

    Args:
        spec: what to run (see the module docstring).
        submitted: ``time.time()`` in the driver when it submitted this task.
        *args: the values laid out by ``spec["args"]``, then the ``--map`` item.

    Raises:
        NameError: an ``-o`` name was not bound by the cell.
        Exception: whatever the cell raises (its traceback shows the cell's lines).

    Example:
        >>> spec = {"source": "y = x * 2\\ny + 1", "filename": "<remote-cell-1>",
        ...         "values": {"x": 20}, "outputs": ["y"]}
        >>> run_cell(spec)[1:]
        (41, 40)
    """
    source, filename = spec["source"], spec["filename"]
    first = spec.get("first_line", 1)
    lines = ["%%remote\n"] * (first - 1) + source.splitlines(True)
    linecache.cache[filename] = (len(source), None, lines, filename)
    code = compile_cell(source, filename, first)
    ns = build_namespace(spec, args)
    try:
        exec(code.body, ns)
        value = eval(code.last, ns) if code.last is not None else None
    finally:
        _flush()  # a last line without "\n" still belongs to this task
    outputs = spec.get("outputs") or ()
    missing = [n for n in outputs if n not in ns]
    if missing:
        raise NameError(
            f"-o {', '.join(missing)}: the cell did not assign "
            f"{' or '.join(repr(n) for n in missing)}"
        )
    return (_node_id(), value, *(ns[n] for n in outputs))
