"""Where the widgets' data comes from: a small ``Source`` interface, met by every backend.

The widgets never call an engine except through a ``Source``:

    alive()          -> bool                 is the cluster still there?
    nodes()          -> [node dict]          like ``kit.nodes()``
    waiting()        -> int                  tasks waiting for a node
    events(since)    -> (last_seq, [event])  task events after ``since``
    ready(refs)      -> [ref]                the refs whose objects exist
    key(ref)         -> str                  the task id of a ref, as events name it
    failed(ref)      -> bool                 a ready ref holds an error
    generation()     -> object               changes with the cluster (optional)

Every ``backends.Backend`` (kit, Ray, Dask) is a ``Source``. ``CurrentSource``
follows whichever backend is current (``backends.current()``), so the shared
updater keeps working when ``%cluster connect`` switches engines. ``key`` and
``failed`` are optional: ``task_key`` and ``ref_failed`` fall back to kit's
``ObjectRef`` methods. Tests pass a fake ``Source`` to drive the widgets
without a cluster.
"""

from __future__ import annotations

from backends import LATEST as LATEST
from backends import KitBackend as KitSource

__all__ = [
    "LATEST",
    "ClusterGone",
    "CurrentSource",
    "KitSource",
    "events_since",
    "ref_failed",
    "task_key",
]


class ClusterGone(Exception):
    """The cluster went away (``kit.shutdown()``, or the head stopped answering)."""


def events_since(since=0):
    """Task events of the current backend after sequence number ``since``.

    Each event is a dict: ``seq``, ``task_id``, ``label``, ``state`` (``queued``,
    ``running``, ``finished``, ``failed``), ``time``, ``worker``, ``node``, ``started``.

    Example:
        >>> import kit, widgets
        >>> _ = kit.init(num_cpus=1)
        >>> last, events = widgets.source.events_since(widgets.source.LATEST)
        >>> events
        []
        >>> kit.shutdown()
    """
    import backends

    return backends.current().events(since)


class CurrentSource:
    """The widgets' default source: the current backend, looked up on every call.

    Example:
        >>> import kit, widgets
        >>> _ = kit.init(num_cpus=1)
        >>> src = widgets.source.CurrentSource()
        >>> src.alive(), len(src.nodes())
        (True, 1)
        >>> kit.shutdown()
    """

    @staticmethod
    def _b():
        import backends

        return backends.current()

    @property
    def name(self) -> str:
        """The current engine's name (``kit``, ``ray``, ``dask``)."""
        return self._b().name

    def alive(self) -> bool:
        return self._b().alive()

    def nodes(self):
        return self._b().nodes()

    def waiting(self) -> int:
        return self._b().waiting()

    def scaling(self) -> list:
        """The autoscaler's last decisions, ``[(time, text)]`` (none without one)."""
        return self._b().scaling()

    def events(self, since):
        return self._b().events(since)

    def ready(self, refs):
        return self._b().ready(refs)

    def generation(self):
        """Changes when the current backend's cluster does (event numbers start anew)."""
        return self._b().generation()

    def key(self, ref) -> str:
        return self._b().key(ref)

    def failed(self, ref) -> bool:
        return self._b().failed(ref)


def task_key(source, ref) -> str:
    """The task id of ``ref`` as the source's events name it."""
    key = getattr(source, "key", None)
    return key(ref) if key is not None else ref.task_id().hex()


def ref_failed(source, ref) -> bool:
    """True if the ready ``ref`` holds an error."""
    failed = getattr(source, "failed", None)
    if failed is not None:
        return failed(ref)
    fut = ref.future()
    return fut.done() and fut.exception() is not None
