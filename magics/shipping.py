"""Which notebook values a cell takes along, and how each one travels.

    free names of the cell ──▶ pack(names, user_ns) ──▶ Shipment
        module            ──▶ its name; the worker imports it again
        ref / future      ──▶ a top-level task argument (the engine passes its value)
        [ref, ...]        ──▶ one argument per ref, gathered back into a list
        large value       ──▶ PutCache: put once, then the same ref each cell
        anything else     ──▶ pickled inside the task (cloudpickle: notebook
                              functions and classes travel by value)

``PutCache`` keeps, per object id, a weak reference (where the type allows
one), a fingerprint of the content (a CRC of its buffers or of its pickle) and
the ref from the backend's ``put``. A cell that uses the same, unchanged object again reuses
the ref; an object changed in place gets a new ``put``; entries of objects no
longer in the namespace are dropped, which frees their cluster copy.
"""

from __future__ import annotations

import sys
import types
import weakref
import zlib
from dataclasses import dataclass, field

import cloudpickle

LARGE = 1 << 20  # values at least this big go through the object store once


@dataclass
class Shipment:
    """How a cell's free names travel: see ``runner.build_namespace`` for the layout."""

    values: dict = field(default_factory=dict)  # name -> value (pickled with the task)
    modules: dict = field(default_factory=dict)  # name -> module name
    layout: list = field(default_factory=list)  # [(name, None | (n, "list"|"tuple"))]
    args: list = field(default_factory=list)  # top-level task arguments (refs)

    @property
    def names(self) -> list:
        """Every shipped name."""
        return list(self.values) + list(self.modules) + [n for n, _ in self.layout]


def _is_ref(value) -> bool:
    import backends

    return backends.current().is_handle(value)


def pack(
    names, namespace: dict, hidden: dict | None = None, cache: "PutCache | None" = None, is_ref=None
) -> Shipment:
    """Sort the values of ``names`` found in ``namespace`` by how they travel.

    Names missing from ``namespace`` (builtins, typos) are skipped: the cell
    finds builtins on the worker, and a typo raises ``NameError`` there with
    the cell's line number. Names IPython put in the namespace itself (listed
    in ``hidden`` with the same value, e.g. ``get_ipython``) are skipped too.
    ``is_ref(value)`` tells the engine's refs (default: the current backend's).

    Example:
        >>> import math
        >>> s = pack(["math", "x", "print"], {"math": math, "x": 3})
        >>> s.modules, s.values
        ({'math': 'math'}, {'x': 3})
    """
    hidden = hidden or {}
    is_ref = is_ref or _is_ref
    out = Shipment()
    for name in sorted(names):
        if name not in namespace:
            continue
        value = namespace[name]
        if name in hidden and hidden[name] is value:
            continue
        if isinstance(value, types.ModuleType) and _importable(value):
            out.modules[name] = value.__name__
        elif is_ref(value):
            out.layout.append((name, None))
            out.args.append(value)
        elif type(value) in (list, tuple) and value and all(is_ref(v) for v in value):
            out.layout.append((name, (len(value), type(value).__name__)))
            out.args.extend(value)
        else:
            ref = cache.ref_for(value) if cache is not None else None
            if ref is not None:
                out.layout.append((name, None))
                out.args.append(ref)
            else:
                out.values[name] = value
    return out


def _importable(module) -> bool:
    name = getattr(module, "__name__", None)
    return bool(name) and sys.modules.get(name) is module and name != "__main__"


def unpicklable(values: dict):
    """The first ``(name, error)`` among ``values`` that cloudpickle cannot pickle, or None.

    Example:
        >>> import threading
        >>> unpicklable({"ok": 1, "lock": threading.Lock()})[0]
        'lock'
    """
    for name, value in values.items():
        try:
            cloudpickle.dumps(value, protocol=5)
        except Exception as e:
            return name, e
    return None


# ---- the cache of large values ----------------------------------------------------------


def quick_size(obj) -> int:
    """A cheap estimate of a value's size in bytes (exact for arrays and bytes).

    Example:
        >>> quick_size(bytes(2048))
        2048
    """
    nbytes = getattr(obj, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if isinstance(obj, (bytes, bytearray, memoryview, str)):
        return len(obj)
    try:
        return sys.getsizeof(obj)
    except Exception:
        return 0


def fingerprint(obj):
    """Type, shape and a CRC of the content: equal fingerprints mean equal content.

    Contiguous buffers (numpy arrays, bytes) are checksummed in place (~3 GB/s);
    other values through their pickle (protocol 5, buffers out of band).

    Example:
        >>> fingerprint(b"abc") == fingerprint(b"abc"), fingerprint(b"abc") == fingerprint(b"abd")
        (True, False)
    """
    try:
        view = memoryview(obj)
        if view.c_contiguous:
            meta = (getattr(obj, "dtype", None), getattr(obj, "shape", None))
            return (type(obj), str(meta), view.nbytes, zlib.crc32(view.cast("B")))
    except (TypeError, ValueError):
        pass
    buffers = []
    data = cloudpickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    crc = zlib.crc32(data)
    size = len(data)
    for b in buffers:
        raw = b.raw()
        crc = zlib.crc32(raw, crc)
        size += raw.nbytes
    return (type(obj), size, crc)


class _Entry:
    __slots__ = ("alive", "fp", "ref")

    def __init__(self, alive, fp, ref):
        self.alive = alive  # weakref to the object, or None
        self.fp = fp
        self.ref = ref


class PutCache:
    """Maps large notebook values to stored refs, reused while the value is unchanged.

    Args:
        put: the function that stores a value (default: the current backend's ``put``,
            looked up per call).
        threshold: values smaller than this (``quick_size``) are not cached.

    Example:
        >>> calls = []
        >>> cache = PutCache(put=lambda v: calls.append(v) or f"ref{len(calls)}", threshold=10)
        >>> data = bytearray(100)
        >>> cache.ref_for(data), cache.ref_for(data), len(calls)
        ('ref1', 'ref1', 1)
        >>> data[0] = 1          # changed in place: stored again
        >>> cache.ref_for(data)
        'ref2'
    """

    def __init__(self, put=None, threshold: int = LARGE):
        self._put = put
        self.threshold = threshold
        self._entries: dict = {}
        self.puts = 0

    def __len__(self):
        return len(self._entries)

    def refs(self) -> list:
        """The refs held now (one per cached value)."""
        return [e.ref for e in self._entries.values()]

    def ref_for(self, obj):
        """The ref of ``obj`` in the object store, or None if it is small."""
        if quick_size(obj) < self.threshold:
            return None
        try:
            fp = fingerprint(obj)
        except Exception:
            return None  # unpicklable: the task's own pickling will say so
        key = id(obj)
        entry = self._entries.get(key)
        if entry is not None and entry.fp == fp and (entry.alive is None or entry.alive() is obj):
            return entry.ref
        ref = self._store(obj)
        try:
            alive = weakref.ref(obj, lambda _w, key=key: self._drop(key, _w))
        except TypeError:
            alive = None
        self._entries[key] = _Entry(alive, fp, ref)
        return ref

    def _store(self, obj):
        self.puts += 1
        if self._put is not None:
            return self._put(obj)
        import backends

        return backends.current().put(obj)

    def _drop(self, key, wref):
        entry = self._entries.get(key)
        if entry is not None and entry.alive is wref:
            del self._entries[key]

    def prune(self, namespace: dict) -> None:
        """Forget values that are no longer in ``namespace`` (frees their cluster copy)."""
        live = {id(v) for v in list(namespace.values())}
        for key in [k for k in self._entries if k not in live]:
            del self._entries[key]

    def clear(self) -> None:
        """Forget everything (the cluster went away)."""
        self._entries.clear()
