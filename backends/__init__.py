"""The engines the magics and widgets run on: kit's own runtime, Ray, Dask distributed.

The magics (``%%remote``, ``%remote``, ``%cluster``) and the widgets talk to one
``Backend`` (see ``base``), never to an engine's internals, so the same notebook
cells run on each engine by changing only the ``%cluster`` line::

    %cluster start                      kit: a local cluster        (the default)
    %cluster connect 10.0.0.5:6380      kit: a running head (HOST:PORT, --token)
    %cluster connect ray://HOST:10001   Ray Client                  ray.init(address=...)
    %cluster connect ray:auto           the Ray cluster of this machine
    %cluster connect ray:local          a local ray.init(include_dashboard=False)
    %cluster connect tcp://HOST:8786    a Dask scheduler            distributed.Client(...)
    %cluster connect dask:local         a Dask LocalCluster (processes)

How each engine gives what the magics and widgets need:

    need                     kit              Ray                        Dask
    a cell as a task         kit.remote       ray.remote(worker.run)     client.submit(worker.run)
    -o values / --no-block   ObjectRefs       ray.ObjectRefs             Futures (one getitem each)
    per-node counts, events  the head         a channel actor that the   a scheduler plugin
                                              tasks report to            (every task's move)
    streamed output          kit.logs         the channel actor          Worker.log_event topic
    interrupt                kit.cancel       ray.cancel (KeyboardInterrupt)  cancel: the future
                                                                          only; a running task
                                                                          runs to its end

``backends.worker.run`` is the worker-side wrapper of Ray and Dask tasks: it
reports the node, the state changes and the printed lines, and leaves the
remote traceback on the exception. Ray and Dask are imported only when used.

Example:
    >>> import backends
    >>> backends.current().name in ("kit", "ray", "dask")
    True
"""

from __future__ import annotations

import threading

from .base import LATEST as LATEST
from .base import Backend as Backend
from .base import BackendError as BackendError
from .base import Failure as Failure
from .base import SerializationError as SerializationError
from .kit_backend import KitBackend as KitBackend

__all__ = [
    "LATEST",
    "Backend",
    "BackendError",
    "Failure",
    "KitBackend",
    "SerializationError",
    "connect",
    "current",
    "make",
    "parse_address",
    "use",
]

_lock = threading.Lock()
_default = KitBackend()
_current = None


def current() -> Backend:
    """The backend in use: the one ``connect``/``use`` chose, else kit's runtime."""
    return _current or _default


def use(backend: Backend | None) -> Backend:
    """Make ``backend`` current (None: back to kit's runtime); returns the current one."""
    global _current
    with _lock:
        _current = backend if backend is not _default else None
    return current()


def parse_address(address: str):
    """``(engine, how, where)`` for an address given to ``%cluster connect``.

    Example:
        >>> parse_address("ray://10.0.0.5:10001"), parse_address("ray:local")
        (('ray', 'connect', 'ray://10.0.0.5:10001'), ('ray', 'start', None))
        >>> parse_address("tcp://h:8786"), parse_address("10.0.0.5:6380")
        (('dask', 'connect', 'tcp://h:8786'), ('kit', 'connect', '10.0.0.5:6380'))
    """
    a = address.strip()
    if a.startswith("ray://"):
        return "ray", "connect", a
    if a in ("ray:auto", "ray"):
        return "ray", "connect", "auto"
    if a == "ray:local":
        return "ray", "start", None
    if a.startswith(("tcp://", "tls://")):
        return "dask", "connect", a
    if a == "dask:local":
        return "dask", "start", None
    if a.startswith("kit://"):
        a = a[len("kit://") :]
    if ":" in a and "//" not in a and a.rsplit(":", 1)[1].isdigit():
        return "kit", "connect", a
    raise BackendError(
        f"{address!r} is no address; give HOST:PORT (kit), ray://HOST:PORT, "
        f"ray:auto, ray:local, tcp://HOST:PORT (Dask) or dask:local"
    )


def make(engine: str) -> Backend:
    """A new, unconnected backend for ``engine`` (``kit``, ``ray``, ``dask``)."""
    if engine == "kit":
        return _default
    try:
        if engine == "ray":
            import ray  # noqa: F401

            from .ray_backend import RayBackend

            return RayBackend()
        if engine == "dask":
            import distributed  # noqa: F401

            from .dask_backend import DaskBackend

            return DaskBackend()
    except ImportError as e:
        raise BackendError(
            f"{engine} is not installed here ({e}); pip install "
            f"{'ray' if engine == 'ray' else 'dask[distributed]'}"
        ) from None
    raise BackendError(f"no backend called {engine!r}")


def connect(address: str, token=None, nodes=None, cpus=None) -> Backend:
    """Connect to (or start) the cluster ``address`` names and make it current.

    Args:
        address: see ``parse_address``.
        token: the cluster token (kit only).
        nodes: nodes (Dask: workers) of a cluster started here (``dask:local``).
        cpus: task slots per node of a cluster started here (``ray:local``, ``dask:local``).

    Raises:
        BackendError: a bad address, an engine that is not installed, or no answer.
    """
    engine, how, where = parse_address(address)
    backend = make(engine)
    if how == "start":
        opts = {"nodes": nodes, "cpus": cpus}
        backend.start(**{k: v for k, v in opts.items() if v is not None})
    else:
        backend.connect(where, token=token)
    return use(backend)
