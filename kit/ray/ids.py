"""Ray's id classes (``ray.NodeID``, ``ray.ActorID``...) over kit's ids.

Each wraps the bytes of one kind of kit id: a node, a worker or a driver (a job) is 8
bytes, a task and an actor (its creation task) 15. ``get_runtime_context()`` and
``nodes()`` give these ids as hex text, as Ray does; ``NodeID.from_hex(text)`` makes one
an object with Ray's methods (``hex``, ``binary``, ``is_nil``, ``nil``, ``from_random``,
``size``). Ray's sizes differ (a node id is 28 bytes there): an id of another size is
refused, naming the size kit expects.

Example:
    >>> from kit.ray.ids import NodeID
    >>> NodeID.from_hex("00" * 8).is_nil()
    True
    >>> NodeID.from_hex("ab" * 8)
    NodeID(abababababababab)
"""

from __future__ import annotations

import os


class BaseID:
    """An id of ``SIZE`` bytes, compared and hashed by its bytes and its kind."""

    SIZE = 8
    __slots__ = ("_bin",)

    def __init__(self, binary: bytes):
        if not isinstance(binary, (bytes, bytearray)):
            raise TypeError(
                f"{type(self).__name__} takes the id's bytes, got {type(binary).__name__}; "
                f"use {type(self).__name__}.from_hex(text) for hex text"
            )
        if len(binary) != self.SIZE:
            raise ValueError(
                f"a {type(self).__name__} on kit is {self.SIZE} bytes, got {len(binary)} "
                f"(ids from a Ray cluster do not name anything on kit)"
            )
        self._bin = bytes(binary)

    @classmethod
    def from_hex(cls, hex_id: str):
        """The id written as hex text (what the runtime context and ``nodes()`` give)."""
        return cls(bytes.fromhex(hex_id))

    @classmethod
    def from_binary(cls, binary: bytes):
        return cls(binary)

    @classmethod
    def from_random(cls):
        return cls(os.urandom(cls.SIZE))

    @classmethod
    def nil(cls):
        """The id of nothing (all zero bytes)."""
        return cls(bytes(cls.SIZE))

    @classmethod
    def size(cls) -> int:
        return cls.SIZE

    def is_nil(self) -> bool:
        return not any(self._bin)

    def binary(self) -> bytes:
        return self._bin

    def hex(self) -> str:
        return self._bin.hex()

    def __eq__(self, other):
        return type(other) is type(self) and other._bin == self._bin

    def __hash__(self):
        return hash((type(self).__name__, self._bin))

    def __repr__(self):
        return f"{type(self).__name__}({self.hex()})"

    def __reduce__(self):
        return (type(self), (self._bin,))


class NodeID(BaseID):
    """A node's id (``get_runtime_context().get_node_id()``, ``nodes()[i]["NodeID"]``)."""


class WorkerID(BaseID):
    """A worker process's id (``get_runtime_context().get_worker_id()``)."""


class JobID(BaseID):
    """A driver's id: on kit each connected driver is a job."""


class TaskID(BaseID):
    """A task's id (``get_runtime_context().get_task_id()``)."""

    SIZE = 15


class ActorID(BaseID):
    """An actor's id: the id of the task that created it."""

    SIZE = 15


__all__ = ["ActorID", "BaseID", "JobID", "NodeID", "TaskID", "WorkerID"]
