"""The records that cross the wire, defined once: task specs, payloads, events, results.

Every kit process builds and reads these by name. On the wire they are plain
tuples (pickle writes a tuple faster and smaller than any class), so a sender
calls ``tuple(record)`` and a receiver that wants names wraps what arrived with
``TaskSpec.of(raw)`` (no copy of the fields, no validation: the frame's
signature was checked before it was unpickled).

    driver/worker ── SUBMIT [TaskSpec] ──▶ head ── TASKS [(TaskSpec, blob, deps)] ──▶ worker
    worker ── DONE [TaskDone] ──▶ head ── OBJECTS [(oid, payload)] ──▶ owner
    head ── events [TaskEvent] ──▶ widgets, timeline()
    worker ── LOG [LogLine] ──▶ head ──▶ drivers

Ids are bytes: a client id is 8 random bytes; a task id is the client id and a
7-byte counter; an object id is its task id and its return index, 4 bytes
little-endian (Ray's width: up to ``MAX_RETURNS`` results per task). Ids are built
and split only by ``object_id(task_id, index)`` and ``task_of(object_id)``; the
head and the scheduler treat every id as opaque bytes. A ``kit.put`` object's id is
a fresh task id with index 0 (no task has that id). An actor's id is its creation
task's id.
"""

from __future__ import annotations

import pickle
from typing import Any, NamedTuple, Optional, Union

# ---- ids ----------------------------------------------------------------------------
INDEX_BYTES = 4  # an object id's return index, little-endian
MAX_RETURNS = (1 << (8 * INDEX_BYTES)) - 1  # most results a task can have
_FIRST = bytes(INDEX_BYTES)


def object_id(task_id: bytes, index: int = 0) -> bytes:
    """The id of result ``index`` (from 0) of the task ``task_id``.

    Example:
        >>> object_id(b"t" * 15, 258).hex()[-8:]
        '02010000'
        >>> task_of(object_id(b"t" * 15, 258)) == b"t" * 15
        True
    """
    if index == 0:
        return task_id + _FIRST
    return task_id + index.to_bytes(INDEX_BYTES, "little")


def task_of(object_id: bytes) -> bytes:
    """The id of the task that makes the object ``object_id`` (for a put: its own id)."""
    return object_id[:-INDEX_BYTES]


# ---- task kinds ---------------------------------------------------------------------
TASK, ACTOR_CREATE, ACTOR_CALL = 0, 1, 2

# ---- payload kinds: what the head stores and forwards for an object ----------------
INLINE, SHARED, ERROR = 0, 1, 2


class Inline(NamedTuple):
    """A small value, pickled in band: ``(INLINE, data)``."""

    kind: int
    data: bytes


class Shared(NamedTuple):
    """A large value in one node's shared memory: ``(SHARED, node, name, size)``."""

    kind: int
    node: bytes
    name: str
    size: int


class Error(NamedTuple):
    """The object is an error (a task's exception, or kit's): ``(ERROR, info)``.

    ``info`` is what ``kit.serialization.error_payload`` built: the exception's
    class name, message, remote traceback and, where it pickles, the exception.
    """

    kind: int
    info: Any


Payload = Union[Inline, Shared, Error, tuple]


class TaskSpec(NamedTuple):
    """One task, actor creation or actor call, as its submitter describes it.

    Example:
        >>> spec = TaskSpec.new(b"t" * 15, "f", fid=b"f" * 16)
        >>> spec.returns == (object_id(b"t" * 15),) and spec.kind == TASK
        True
        >>> TaskSpec.of(tuple(spec)) == spec
        True
    """

    tid: bytes  # task id (a client id and a counter)
    kind: int  # TASK, ACTOR_CREATE or ACTOR_CALL
    fid: Optional[bytes]  # the function's (or actor class's) content hash; None for calls
    args: Optional[tuple]  # the pickled (args, kwargs) payload, or None for no arguments
    deps: tuple  # object ids of top-level ref arguments: ready before it runs
    contained: tuple  # object ids nested in the arguments: kept alive while it runs
    returns: tuple  # object ids of its results
    res: dict  # resources it holds while running, e.g. {"CPU": 1.0}
    retries: int  # runs left after a system failure (worker or node death); -1: forever
    retry_exc: Union[bool, bytes]  # retry on exceptions: False, True or pickled types
    label: str  # what users see: the function's name, "Cls.method", "Cls.__init__"
    actor: Optional[bytes]  # the actor's id (creation and calls)
    method: Optional[str]  # the method an actor call runs
    opts: Optional[dict]  # placement ("node", "soft"), "parent", actor options

    @classmethod
    def of(cls, raw) -> TaskSpec:
        """Name the fields of a spec that arrived as a plain tuple."""
        return tuple.__new__(cls, raw)

    @classmethod
    def new(
        cls,
        tid: bytes,
        label: str,
        *,
        kind: int = TASK,
        fid: Optional[bytes] = None,
        args: Optional[tuple] = None,
        deps: tuple = (),
        contained: tuple = (),
        returns: Optional[tuple] = None,
        res: Optional[dict] = None,
        retries: int = 0,
        retry_exc: Union[bool, bytes] = False,
        actor: Optional[bytes] = None,
        method: Optional[str] = None,
        opts: Optional[dict] = None,
    ) -> TaskSpec:
        """A spec with defaults: one return, one CPU for a task (none for actor calls)."""
        if returns is None:
            returns = (object_id(tid),)
        if res is None:
            res = {"CPU": 1.0} if kind == TASK else {}
        return cls(
            tid,
            kind,
            fid,
            args,
            tuple(deps),
            tuple(contained),
            tuple(returns),
            res,
            retries,
            retry_exc,
            label,
            actor,
            method,
            opts,
        )


class Dep:
    """Marks a top-level ObjectRef argument; the worker puts the value in its place."""

    __slots__ = ("oid",)

    def __init__(self, oid):
        self.oid = oid

    def __reduce__(self):
        return (Dep, (self.oid,))


class Inlined:
    """A ref argument's value in a task's arguments, as the pickle it came in: unpickled
    only where the task runs (a direct task's driver resolved it, kit.lease, without
    reading it).

    Example:
        >>> import pickle
        >>> pickle.loads(pickle.dumps(Inlined(pickle.dumps([1, 2]))))
        [1, 2]
    """

    __slots__ = ("blob",)

    def __init__(self, blob):
        self.blob = blob

    def __reduce__(self):
        return (pickle.loads, (self.blob,))


class TaskResult(NamedTuple):
    """One result of a finished task: its object id, payload and the refs it holds."""

    oid: bytes
    payload: Payload
    contained: tuple


STARTUP_SHOWN = 0.001  # seconds: a task's loading this long or longer is reported


class TaskDone(NamedTuple):
    """A worker's report that a task ended (``retry``: ask the head to run it again).

    ``called``: when the worker called the task's function, after loading it, its
    imports and its arguments (on a fresh worker, its start-up); None when that took
    under ``STARTUP_SHOWN``, as it does once a worker has the function.
    """

    tid: bytes
    results: list  # [TaskResult, ...]
    started: float
    finished: float
    retry: bool
    called: Optional[float] = None


class TaskEvent(NamedTuple):
    """A task's state change, as the head records it for widgets and ``kit.timeline()``.

    ``state`` is queued, running, finished, failed or cancelled; ``started`` is set
    on finished events (when the task began on its worker), and ``called`` when its
    worker first spent a while loading it (``TaskDone.called``).
    """

    tid: bytes
    label: str
    state: str
    time: Optional[float]
    worker: Optional[bytes]
    node: Optional[bytes]
    started: Optional[float] = None
    called: Optional[float] = None


class LogLine(NamedTuple):
    """Text a task printed, labelled with where it ran."""

    tid: Optional[bytes]
    label: str
    pid: int
    node: str  # the node id in hex
    stream: str  # "stdout" or "stderr"
    text: str
