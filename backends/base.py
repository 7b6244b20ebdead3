"""The ``Backend`` interface: what the magics and widgets need from an engine.

A backend is a cluster connection in the driver. The magics submit cells
through it and the widgets read it (it is also the widgets' ``Source``):

    lifecycle   start(nodes, cpus) / connect(address, token) / stop() -> started here?
                alive(), generation() (changes when the cluster changes), describe()
    cluster     nodes() -> [node dict]     like kit.nodes(): node_id, tag, address,
                                           resources, available, running, queued,
                                           done, failed, alive (+ Ray's NodeID/Alive)
                cpus(), waiting(), events(since) -> (last seq, [event dict]),
                timeline() -> finished/failed events with their start time
    tasks       submit(fn, args, num_returns, name, num_cpus, resources, node,
                       on_output) -> [handle] * num_returns
                key(handle) -> task key (the events' ``task_id``), release(handles),
                is_handle(value), put(value), get(handles, timeout),
                wait(handles, num_returns, timeout) -> (ready, rest), ready(handles),
                failed(handle), cancel(handle) -> a note for the user, or None
    errors      classify(exc) -> Failure(kind="raised" | "cancelled" | "other", ...)

Handles are the engine's own futures (a kit ``ObjectRef``, a ``ray.ObjectRef``,
a ``distributed.Future``), so ``--no-block -o`` names are what a user of that
engine expects. ``on_output(stream, text)`` gets the lines a task prints while
it runs (``text``: complete lines without the final newline), from some thread
of the backend's.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

#: ``events(since)`` with this gives no events, only the last sequence number.
LATEST = 2**62


class BackendError(RuntimeError):
    """The engine is missing, unreachable, or the address names none."""


class SerializationError(TypeError):
    """A value of the cell cannot be sent to a worker."""


class Failure(NamedTuple):
    """What went wrong with a task, as the magics show it.

    Attributes:
        kind: ``"raised"`` (the task's code raised), ``"cancelled"`` or ``"other"``
            (a worker died, the cluster went away, ...).
        type_name: the class name of the task's exception (``"raised"`` only).
        traceback: the remote traceback text (``"raised"`` only).
        node: the id of the node the task ran on, if known.
        pid: the worker's process id, if known.
    """

    kind: str
    type_name: str = ""
    traceback: str = ""
    node: str | None = None
    pid: int | None = None


OTHER = Failure("other")
CANCELLED = Failure("cancelled")


def remote_info(exc) -> Failure | None:
    """The ``Failure`` a worker-side wrapper attached to ``exc`` (``backends.worker``).

    Example:
        >>> e = ValueError("x"); e._kit_remote = ("Traceback...", "n1", 7)
        >>> remote_info(e).node
        'n1'
    """
    info = getattr(exc, "_kit_remote", None)
    if not info:
        return None
    tb, node, pid = info
    return Failure("raised", type(exc).__name__, tb, node, pid)


def task_options(
    num_returns=1, name=None, num_cpus=None, resources=None, node=None, affinity=None,
    runtime_env=None,
) -> dict:  # fmt: skip
    """Options for ``.options(...)`` in Ray's names (kit takes the same ones).

    ``affinity(node_id, soft=False)`` builds the engine's node affinity strategy.

    Example:
        >>> task_options(2, "cell", resources={"disk": 1})
        {'num_returns': 2, 'name': 'cell', 'resources': {'disk': 1}}
    """
    opts = {"num_returns": num_returns}
    if name:
        opts["name"] = name
    if num_cpus is not None:
        opts["num_cpus"] = num_cpus
    if resources:
        opts["resources"] = resources
    if node:
        opts["scheduling_strategy"] = affinity(node, soft=False)
    if runtime_env:
        opts["runtime_env"] = runtime_env
    return opts


def short_id(node_id) -> str:
    """How a node id is shown: 8 hex digits (kit, Ray), or a Dask worker's ``host:port``.

    Example:
        >>> short_id("ab12cd34ef56"), short_id("tcp://10.0.0.5:40291")
        ('ab12cd34', '10.0.0.5:40291')
    """
    node_id = str(node_id or "")
    return node_id.split("://", 1)[1] if "://" in node_id else node_id[:8]


class Backend:
    """The interface; see the module docstring. Subclasses implement every method."""

    name = "?"
    started_here = False

    # ---- lifecycle ------------------------------------------------------------------
    def start(self, nodes: int = 1, cpus=None, autoscale=None) -> None:
        """Start a local cluster of ``nodes`` nodes with ``cpus`` task slots each
        (``autoscale`` "MIN:MAX": engines that can add and remove nodes; kit does)."""
        raise NotImplementedError

    def connect(self, address: str, token=None) -> None:
        """Connect to a running cluster (``address`` as the engine writes it).

        Raises:
            BackendError: nothing answers there.
        """
        raise NotImplementedError

    def stop(self) -> bool:
        """Shut down (a cluster started here) or disconnect; True if it was started here."""
        raise NotImplementedError

    def alive(self) -> bool:
        raise NotImplementedError

    def generation(self):
        """An object that differs for each cluster this backend connects to."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line: ``"3 node(s), 6 CPUs"``."""
        nodes = [n for n in self.nodes() if n.get("alive")]
        return f"{len(nodes)} node(s), {self.cpus():g} CPUs"

    # ---- cluster state (the widgets' Source) ----------------------------------------
    def nodes(self) -> list:
        raise NotImplementedError

    def cpus(self) -> float:
        return float(
            sum(n.get("resources", {}).get("CPU", 0) for n in self.nodes() if n.get("alive"))
        )

    def waiting(self) -> int:
        return 0

    def scaling(self) -> list:
        """The autoscaler's last decisions, ``[(time, text)]`` oldest first (none here)."""
        return []

    def events(self, since=0):
        raise NotImplementedError

    def timeline(self) -> list:
        _, events = self.events(0)
        return [e for e in events if e.get("state") in ("finished", "failed")]

    # ---- tasks ----------------------------------------------------------------------
    def submit(
        self,
        fn,
        args,
        *,
        num_returns=1,
        name=None,
        num_cpus=None,
        resources=None,
        node=None,
        on_output=None,
        runtime_env=None,
    ) -> list:
        """Run ``fn(*args)`` as one task; refs (futures) among ``args`` arrive as values.

        Args:
            fn: an importable function (it is pickled by reference).
            args: its positional arguments.
            num_returns: ``fn`` returns a tuple this long (1: any value).
            name: the task's label in events and widgets.
            num_cpus, resources: what the task needs (Dask ignores ``num_cpus``).
            node: a node id from ``nodes()``: run there or not at all.
            on_output: ``on_output(stream, text)`` gets the task's printed lines,
                routed before the task is sent, until ``release``.
            runtime_env: the task's environment, with Ray's keys (kit and Ray).

        Returns:
            ``num_returns`` handles, one per value.

        Example:
            >>> import backends
            >>> [ref] = backends.current().submit(abs, (-2,))   # doctest: +SKIP
        """
        raise NotImplementedError

    def key(self, handle) -> str:
        """The task id of ``handle`` as ``events`` names it (the same for all its handles)."""
        raise NotImplementedError

    def release(self, handles) -> None:
        """Stop routing the output of the task of ``handles`` (it has ended)."""

    def is_handle(self, value) -> bool:
        """True for this engine's refs (futures): they travel as task arguments."""
        raise NotImplementedError

    def put(self, value):
        """Store ``value`` in the cluster once; returns a handle to pass to tasks."""
        raise NotImplementedError

    def get(self, handles, timeout=None):
        """The value of a handle (a list of values for a list).

        Raises:
            Exception: the task's error (see ``classify``), or a timeout.
        """
        raise NotImplementedError

    def wait(self, handles, num_returns=1, timeout=None):
        """``(ready, not ready)`` once ``num_returns`` handles are ready or at ``timeout``."""
        raise NotImplementedError

    def ready(self, handles) -> list:
        if not handles:
            return []
        ready, _ = self.wait(list(handles), num_returns=len(handles), timeout=0)
        return ready

    def failed(self, handle) -> bool:
        """For a ready handle: did its task fail?"""
        try:
            self.get(handle, timeout=5)
        except Exception:
            return True
        return False

    def cancel(self, handle):
        """Cancel the task of ``handle``; returns a note for the user on what it could
        not do (Dask: a running task runs on), or None."""
        raise NotImplementedError

    def classify(self, exc) -> Failure:
        """What an exception from ``get`` means: see ``Failure``."""
        return remote_info(exc) or OTHER


class OutputRouter:
    """Driver side: task key -> ``on_output`` handler; lines of unknown keys are printed.

    Example:
        >>> r = OutputRouter(); got = []
        >>> r.route("k", lambda s, t: got.append((s, t)))
        >>> r.deliver("k", "stdout", "hi"); got
        [('stdout', 'hi')]
    """

    def __init__(self):
        self._routes: dict = {}
        self._lock = threading.Lock()

    def route(self, key, handler) -> None:
        if handler is not None:
            with self._lock:
                self._routes[key] = handler

    def unroute(self, key) -> None:
        with self._lock:
            self._routes.pop(key, None)

    def deliver(self, key, stream, text) -> None:
        handler = self._routes.get(key)
        if handler is not None:
            try:
                handler(stream, text)
                return
            except Exception:
                pass
        import sys

        out = sys.stderr if stream == "stderr" else sys.stdout
        try:
            out.write("".join(f"({key[:12]}) {line}\n" for line in text.split("\n")))
            out.flush()
        except Exception:
            pass
