"""Turning values into payloads and back.

A *payload* is what the head stores and forwards for an object:

    (INLINE, bytes)                 a small value, pickled in band
    (SHARED, node_id, name, size)   a large value in a node's shared memory
    (ERROR, info)                   the object is an error (see ``error_payload``)

Values are pickled with cloudpickle and protocol 5. When the out-of-band
buffers of a value add up to more than ``INLINE_LIMIT`` the value goes to the
node's shared memory (``kit.object_store``) instead of into a message; readers
on that node map it without copying.

While a value is pickled, every ``ObjectRef`` inside it is recorded, so the head
can keep those objects alive for as long as the outer value lives.
"""

from __future__ import annotations

import os
import pickle
import threading
import traceback

from . import object_store, pickling
from .errors import (
    ActorDiedError,
    GetTimeoutError,
    KitError,
    NodeDiedError,
    ObjectLostError,
    ObjectStoreFullError,
    OutOfMemoryError,
    RuntimeEnvSetupError,
    SerializationError,
    TaskCancelledError,
    TaskError,
    TaskUnschedulableError,
    WorkerCrashedError,
)
from .records import ERROR, INLINE, SHARED  # payload kinds, re-exported here

INLINE_LIMIT = 100 * 1024

_local = threading.local()

# Set by the process's client: maps a shared payload held by another node to a
# local name (after copying it here), or to ``(meta, buffers)`` read over the wire.
fetcher = None


class _Collect:
    """Context in which pickled ObjectRefs are recorded (see ``ObjectRef.__reduce__``)."""

    def __enter__(self):
        self.prev = getattr(_local, "refs", None)
        _local.refs = self.refs = []
        return self

    def __exit__(self, *exc):
        _local.refs = self.prev


def note_ref(oid: bytes) -> None:
    """Called while pickling an ObjectRef: remember it as contained in the value."""
    refs = getattr(_local, "refs", None)
    if refs is not None:
        refs.append(oid)


def to_payload(value, store_name=None, node_id=None):
    """Serialize ``value``; large values go to shared memory under ``store_name``.

    Returns ``(payload, contained_ids)``. ``store_name`` is a callable giving a
    fresh shared-memory name; without it every value is inline.
    """
    buffers = []
    with _Collect() as c:
        try:
            meta = pickling.dumps(value, protocol=5, buffer_callback=buffers.append)
        except Exception as e:
            raise SerializationError(f"cannot pickle {type(value).__name__}: {e}") from e
    if not buffers:
        if len(meta) <= INLINE_LIMIT or store_name is None:
            return (INLINE, meta), c.refs
        raws = []
    else:
        raws = [b.raw() for b in buffers]
        size = sum(r.nbytes for r in raws)
        if size + len(meta) <= INLINE_LIMIT or store_name is None:
            with _Collect():
                data = pickling.dumps(value, protocol=5)
            return (INLINE, data), c.refs
    name = store_name()
    total = len(meta) + sum(r.nbytes for r in raws)
    limit = getattr(store_name, "limit", 0)
    ledger = getattr(store_name, "ledger", None)
    size = object_store.write(
        name, meta, raws, to_disk=bool(limit) and total > limit, ledger=ledger, limit=limit
    )
    return (SHARED, node_id, name, size), c.refs


def from_payload(payload, fetch=None):
    """Rebuild the value of a payload; raise the stored error for error payloads.

    ``fetch(payload)`` maps a shared payload held by another node into a local
    name; without it, shared payloads are mapped directly.
    """
    kind = payload[0]
    if kind == INLINE:
        try:
            return pickle.loads(payload[1])
        except TaskCancelledError:  # kit.cancel's signal came while it unpickled
            raise
        except Exception as e:
            raise _unpickle_error(e) from e
    if kind == SHARED:
        fetch = fetch or fetcher
        loc = fetch(payload) if fetch is not None else payload[2]
        if isinstance(loc, tuple):
            meta, bufs = loc
        else:
            try:
                meta, bufs = object_store.read(loc)
            except FileNotFoundError:
                raise ObjectLostError(
                    f"object in shared memory {loc!r} is gone (freed, or its node died)"
                ) from None
        try:
            return pickle.loads(meta, buffers=bufs)
        except TaskCancelledError:  # kit.cancel's signal came while it unpickled
            raise
        except Exception as e:
            raise _unpickle_error(e) from e
    if kind == ERROR:
        raise error_from_info(payload[1])
    raise SerializationError(f"unknown payload kind {kind!r}")


def _unpickle_error(e):
    return SerializationError(
        f"an object could not be unpickled here: {type(e).__name__}: {e}; the modules and "
        f"classes it needs must be importable in this process too"
    )


# ---- errors as payloads --------------------------------------------------------------

_SYSTEM = {
    c.__name__: c
    for c in (
        WorkerCrashedError,
        OutOfMemoryError,
        ActorDiedError,
        NodeDiedError,
        TaskUnschedulableError,
        ObjectLostError,
        TaskCancelledError,
        ObjectStoreFullError,
        GetTimeoutError,
        SerializationError,
        RuntimeEnvSetupError,
        KitError,
    )
}


_KIT_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_traceback(exc: BaseException) -> str:
    """``exc``'s traceback from the user's first frame: kit's own frames above it dropped.

    A task's traceback starts in kit's worker (``_execute`` calling the function);
    people want to read their own code. An error raised inside kit keeps every frame.

    Example:
        >>> def f():
        ...     return 1 / 0
        >>> try:
        ...     f()
        ... except ZeroDivisionError as e:
        ...     print(user_traceback(e).splitlines()[-1])
        ZeroDivisionError: division by zero
    """
    tb = exc.__traceback__
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_KIT_DIR):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))


def task_error_payload(
    exc: BaseException, function: str, node_id: str, pid: int, node_tag: str = ""
):
    """Payload for an exception raised by user code in a task (``node_tag``: ``"n1"``)."""
    if isinstance(exc, TaskError):
        # A failed dependency fetched with get inside a task: pass it on unchanged.
        info = (
            "task",
            _try_dumps(exc.cause),
            exc.cause_type,
            exc.args[0] if exc.args else "",
            exc.traceback_str,
            exc.function,
            exc.node_id,
            exc.pid,
            getattr(exc, "node_tag", ""),
        )
        return (ERROR, info)
    if isinstance(exc, KitError) and type(exc).__name__ in _SYSTEM:
        return (ERROR, ("sys", type(exc).__name__, str(exc)))
    tb = user_traceback(exc)
    try:
        msg = str(exc)
    except Exception:
        msg = f"<{type(exc).__name__} with unprintable message>"
    info = ("task", _try_dumps(exc), type(exc).__name__, msg, tb, function, node_id, pid, node_tag)
    return (ERROR, info)


def system_error_payload(cls, message: str):
    """Payload for an error kit itself raises (crash, cancel, lost object...)."""
    return (ERROR, ("sys", cls.__name__, message))


def _try_dumps(exc):
    if exc is None:
        return None
    try:
        blob = pickling.dumps(exc, protocol=5)
        pickle.loads(blob)  # it must also come back on the other side
        return blob
    except Exception:
        return None


ERROR_TEXT = 8000  # characters of a traceback kept by error_text


def error_text(payload) -> str:
    """The traceback (or kit's message) that an ERROR payload holds, for people to read.

    Example:
        >>> error_text((2, ("sys", "WorkerCrashedError", "the worker died")))
        'WorkerCrashedError: the worker died'
    """
    info = payload[1]
    if info[0] == "sys":
        text = f"{info[1]}: {info[2]}"
    else:
        _, _, type_name, msg, tb, *_ = info
        text = tb or f"{type_name}: {msg}"
    return text[-ERROR_TEXT:]


def error_name(payload) -> str:
    """The class name of the error an ERROR payload holds (``TaskCancelledError``...)."""
    info = payload[1]
    return info[1] if info[0] == "sys" else info[2]


def error_from_info(info) -> BaseException:
    if info[0] == "sys":
        cls = _SYSTEM.get(info[1], KitError)
        err = cls(info[2])
        if len(info) > 3 and info[3] is not None:  # its cause (an actor's constructor error)
            err.__cause__ = error_from_info(info[3])
        return err
    _, blob, type_name, msg, tb, function, node_id, pid, *rest = info
    node_tag = rest[0] if rest else ""  # kit before node tags sent 8 fields
    cause = None
    if blob is not None:
        try:
            cause = pickle.loads(blob)
        except Exception:
            cause = None
    if isinstance(cause, ImportError) and getattr(cause, "name", None):
        from .codeship import explain

        msg = f"{msg}; {explain(cause.name)}"  # the fix, as this process knows it
    return TaskError.build(cause, type_name, msg, tb, function, node_id, pid, node_tag)
