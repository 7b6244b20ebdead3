"""``ObjectRef``: a handle to a value that exists, or will exist, in the cluster.

A ref is hashable, picklable (pickled inside a task's argument or result it stays
a ref and keeps its object alive), awaitable, and has ``.future()``. Each process
counts the refs it holds per object; the first and the last one are reported to
the head, which frees the object when no process, pending task or containing
object holds it any more.
"""

from __future__ import annotations

from . import serialization
from .records import task_of

# The process's client sets this to itself; it counts refs (see kit.client).
_tracker = None


class ObjectRef:
    """A future value in the cluster, returned by ``f.remote()`` and ``kit.put``.

    Example:
        >>> import kit
        >>> ref = kit.put(41)
        >>> kit.get(ref) + 1
        42
    """

    __slots__ = ("_id", "_tracked", "__weakref__")

    def __init__(self, oid: bytes, _announce: bool = True):
        self._id = oid
        t = _tracker
        self._tracked = t
        if t is not None:
            t.incref(oid, _announce)

    def __del__(self):
        t = self._tracked
        if t is not None:
            try:
                t.decref(self._id)
            except Exception:
                pass

    def binary(self) -> bytes:
        """The object's id as bytes."""
        return self._id

    def hex(self) -> str:
        """The object's id as hex text."""
        return self._id.hex()

    def task_id(self) -> bytes:
        """Id of the task that makes this object (puts have their own id)."""
        return task_of(self._id)

    def __hash__(self):
        return hash(self._id)

    def __eq__(self, other):
        return isinstance(other, ObjectRef) and other._id == self._id

    def __repr__(self):
        return f"ObjectRef({self._id.hex()})"

    def __reduce__(self):
        serialization.note_ref(self._id)
        return (_rebuild, (self._id,))

    def future(self):
        """A ``concurrent.futures.Future`` that resolves to the value (or its error)."""
        from .client import current

        return current().future(self)

    def __class_getitem__(cls, item):
        """``ObjectRef[np.ndarray]`` in type hints (as ``ray.types.ObjectRef``)."""
        import types

        return types.GenericAlias(cls, item)

    def __await__(self):
        import asyncio

        return asyncio.wrap_future(self.future()).__await__()


def _rebuild(oid):
    return ObjectRef(oid)
