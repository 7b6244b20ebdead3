"""kit's own runtime as a backend: every call is kit's public API.

kit keeps what the other engines need help with: the head's task events
(``kit.events``) and per-node counts (``kit.nodes``), and it routes a task's
printed lines to a handler before the task is sent (``kit.logs.capture``).
"""

from __future__ import annotations

from .base import CANCELLED, OTHER, Backend, BackendError, Failure, task_options


def _kit():
    import kit

    return kit


class KitBackend(Backend):
    """kit's runtime in this process (``kit.init`` / ``kit.shutdown``).

    Example:
        >>> import kit
        >>> from backends import KitBackend
        >>> _ = kit.init(num_cpus=1)
        >>> src = KitBackend()
        >>> src.alive(), len(src.nodes())
        (True, 1)
        >>> kit.shutdown()
    """

    name = "kit"

    # ---- lifecycle ------------------------------------------------------------------
    def start(self, nodes=1, cpus=None, autoscale=None):
        _kit().init(num_nodes=nodes, num_cpus=cpus, autoscale=autoscale)

    def connect(self, address, token=None):
        try:
            _kit().init(address=address, token=token)
        except ValueError as e:
            raise BackendError(str(e)) from None

    def stop(self) -> bool:
        kit = _kit()
        started = kit.init(ignore_reinit_error=True).started_here
        kit.shutdown()
        return started

    @property
    def started_here(self):
        kit = _kit()
        return kit.is_initialized() and kit.init(ignore_reinit_error=True).started_here

    def alive(self) -> bool:
        return _kit().is_initialized()

    def generation(self):
        kit = _kit()
        return kit.init(ignore_reinit_error=True) if kit.is_initialized() else None

    def cpus(self) -> float:
        return float(_kit().cluster_resources().get("CPU", 0))

    # ---- cluster state --------------------------------------------------------------
    def nodes(self):
        return _kit().nodes()

    def waiting(self) -> int:
        """Tasks submitted but not yet on any node's worker."""
        return int(_kit().cluster_status()["waiting"])

    def scaling(self) -> list:
        return _kit().cluster_status()["scaling"]

    def events(self, since=0):
        return _kit().events(since)

    def timeline(self):
        return _kit().timeline()

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
    ):
        kit = _kit()
        opts = task_options(
            num_returns, name, num_cpus, resources, node, kit.NodeAffinitySchedulingStrategy,
            runtime_env,
        )  # fmt: skip
        remote = kit.remote(fn).options(**opts)
        if on_output is None:
            refs = remote.remote(*args)
        else:
            with kit.logs.capture(on_output):
                refs = remote.remote(*args)
        return refs if isinstance(refs, list) else [refs]

    def key(self, handle) -> str:
        return handle.task_id().hex()

    def release(self, handles):
        if handles:
            _kit().logs.unroute(handles[0].task_id())

    def is_handle(self, value) -> bool:
        return isinstance(value, _kit().ObjectRef)

    def put(self, value):
        return _kit().put(value)

    def get(self, handles, timeout=None):
        return _kit().get(handles, timeout=timeout)

    def wait(self, handles, num_returns=1, timeout=None):
        return _kit().wait(handles, num_returns=num_returns, timeout=timeout)

    def failed(self, handle) -> bool:
        fut = handle.future()
        return fut.done() and fut.exception() is not None

    def cancel(self, handle):
        _kit().cancel(handle)
        return None

    def classify(self, exc) -> Failure:
        kit = _kit()
        if isinstance(exc, kit.TaskError):
            return Failure(
                "raised",
                exc.cause_type or type(exc).__name__,
                exc.traceback_str or str(exc),
                exc.node_id,
                exc.pid,
            )
        if isinstance(exc, kit.TaskCancelledError):
            return CANCELLED
        return OTHER
