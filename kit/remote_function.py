"""``@kit.remote`` on a function, and how a call becomes a task spec.

A call ``f.remote(*args)`` pickles its arguments once, replacing each
top-level ``ObjectRef`` with a marker the worker swaps for the value (refs
nested in lists or dicts stay refs). Arguments that pickle to more than the
inline limit go to shared memory as an object of their own, pinned by the
task. The function itself is pickled once per ``RemoteFunction`` and sent to
the head once per client, keyed by its content hash.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle

from . import codeship, context, logs, pickling, runtime_env, serialization
from .calls import Signature
from .errors import SerializationError
from .object_ref import ObjectRef
from .options import TASK_DEFAULTS, check, resources_of
from .protocol import Kind
from .records import Dep, TaskSpec, object_id


def placement(opts):
    """A task spec's options, or None: ``node`` and ``soft`` (where it may run) and
    ``parent`` (the task that submitted it, so cancelling that task can cancel it too)."""
    out = None
    node = node_option(opts)
    if node is not None:
        strat = opts.get("scheduling_strategy")
        out = {"node": node, "soft": True} if getattr(strat, "soft", False) else {"node": node}
    parent = context.current_task()
    if parent is not None:
        out = out or {}
        out["parent"] = parent[0]
    return out


def with_env(spec_opts, env):
    """A spec's options with its packed runtime_env, if it has one (kit.runtime_env):
    such a task takes the head's path, where workers are matched by environment."""
    packed = runtime_env.for_task(env)
    if packed is None:
        return spec_opts
    out = dict(spec_opts or {})
    out["env"] = packed
    return out


def node_option(opts):
    """The node a task is pinned to, from ``node=`` or a NodeAffinitySchedulingStrategy."""
    node = opts.get("node")
    strat = opts.get("scheduling_strategy")
    if node is None and strat is not None and hasattr(strat, "node_id"):
        node = strat.node_id
    if node is None:
        return None
    return bytes.fromhex(node) if isinstance(node, str) else node


def function_blob(fn, label, shipped=None):
    """``(blob, fid)`` of a function or class; ``shipped`` gets the local modules it names."""
    try:
        blob = pickling.dumps(fn, protocol=5, shipped=shipped)
    except Exception as e:
        raise SerializationError(
            f"the function {label} cannot be pickled: {type(e).__name__}: {e}; it probably "
            f"uses an object (a lock, a socket, an open file) from the enclosing scope; create "
            f"that object inside the function instead"
        ) from e
    if len(blob) > FUNCTION_SIZE_LIMIT:
        raise ValueError(
            f"the function {label} pickles to {len(blob) / 2**20:.0f} MiB, more than "
            f"{FUNCTION_SIZE_LIMIT / 2**20:.0f} MiB (KIT_FUNCTION_SIZE_LIMIT); it probably "
            f"captures a large array or object from its enclosing scope: pass it as an "
            f"argument, or kit.put() it and pass the ref"
        )
    return blob, hashlib.blake2b(blob, digest_size=16).digest()


# A function or class that pickles to more than this is refused, as Ray does (95 MiB).
FUNCTION_SIZE_LIMIT = int(os.environ.get("KIT_FUNCTION_SIZE_LIMIT") or 95 * 2**20)


_NO_ARGS = None


def encode_args(client, args, kwargs, label, escape_deps=True):
    """Pickle a call's arguments; return ``(payload, deps, contained, keep)``.

    ``keep`` holds the ref of an argument object put in shared memory: the caller
    drops it after submitting, when the task pins it. ``escape_deps=False``: the
    caller hands the refs passed as arguments (``deps``) to the head itself, if the
    task takes the head's path (a direct task's driver resolves them: kit.lease).
    """
    if not args and not kwargs:
        return _NO_ARGS, (), (), None
    deps = []
    if any(type(a) is ObjectRef for a in args):
        args = tuple(_dep(a, deps) for a in args)
    if kwargs and any(type(v) is ObjectRef for v in kwargs.values()):
        kwargs = {k: _dep(v, deps) for k, v in kwargs.items()}
    try:
        payload, contained = serialization.to_payload(
            (args, kwargs), client.store_name(), client.node_id
        )
    except SerializationError as e:
        raise SerializationError(_culprit(args, kwargs, label, e)) from e
    escaping = deps + list(contained) if escape_deps else list(contained)
    if escaping:
        client.escape(escaping)  # direct results they name go to the head
    keep = None
    if payload[0] == serialization.SHARED:
        oid = object_id(client.new_id())
        keep = ObjectRef(oid, _announce=False)
        client.send(Kind.PUT, [(oid, payload, contained)])
        contained = [oid]
    return payload, tuple(deps), tuple(contained), keep


def _dep(a, deps):
    if type(a) is ObjectRef:
        deps.append(a._id)
        return Dep(a._id)
    return a


def _culprit(args, kwargs, label, err):
    for i, a in enumerate(args):
        try:
            pickling.dumps(a)
        except Exception as e:
            return (
                f"argument {i} of {label} ({type(a).__name__}) cannot be pickled: "
                f"{type(e).__name__}: {e}; pass picklable data, or create the object "
                f"inside the task"
            )
    for k, v in kwargs.items():
        try:
            pickling.dumps(v)
        except Exception as e:
            return (
                f"argument {k!r} of {label} ({type(v).__name__}) cannot be pickled: "
                f"{type(e).__name__}: {e}; pass picklable data, or create the object "
                f"inside the task"
            )
    return f"the arguments of {label} cannot be pickled: {err}"


def return_refs(tid, n):
    """The refs of a task's ``n`` results (none for ``num_returns=0``)."""
    return [ObjectRef(object_id(tid, i), _announce=False) for i in range(n)]


def returned(refs):
    """What ``.remote()`` gives for ``refs``: None, the one ref, or the list (as Ray)."""
    if len(refs) == 1:
        return refs[0]
    return refs or None


class RemoteFunction:
    """A function that runs as a task: ``f.remote(*args)`` returns an ``ObjectRef``.

    Example:
        >>> import kit
        >>> @kit.remote
        ... def square(x):
        ...     return x * x
        >>> kit.get([square.remote(i) for i in range(4)])
        [0, 1, 4, 9]
    """

    def __init__(self, fn, options=None):
        self._fn = fn
        self._opts = dict(TASK_DEFAULTS)
        self._opts.update(check("task", options or {}))
        self._blob = None
        self._fid = None
        self._shipped: list = []  # local modules its blob names (kit.codeship)
        self._label = self._opts.get("name") or getattr(fn, "__name__", repr(fn))
        self._res = resources_of(self._opts)
        self._sig = None  # checks .remote()'s arguments (made at the first call)
        functools.update_wrapper(self, fn)

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"remote function {self._label} cannot be called directly; "
            f"use {self._label}.remote(...) and kit.get() the result"
        )

    def options(self, **opts):
        """A copy with some options changed, e.g. ``f.options(num_cpus=2).remote()``."""
        opts = check("task", opts)
        new = RemoteFunction.__new__(RemoteFunction)
        new.__dict__.update(self.__dict__)
        new._opts = {**self._opts, **opts}
        new._label = new._opts.get("name") or self._label
        new._res = resources_of(new._opts)
        return new

    def _ensure_blob(self):
        if self._blob is None or (self._shipped and not codeship.fresh(self._shipped)):
            shipped: list = []
            self._blob, self._fid = function_blob(self._fn, self._label, shipped)
            self._shipped = shipped
        return self._fid

    def remote(self, *args, **kwargs):
        """Submit a task; return its ``ObjectRef``: a list when ``num_returns > 1``,
        None when it is 0 (the task still runs)."""
        from .api import _client

        sig = self._sig
        if sig is None:
            sig = self._sig = Signature.of(self._fn, f"{self._label}.remote")
        sig.check(args, kwargs)  # Ray's TypeError, at the call
        client = _client()
        fid = self._ensure_blob()
        if fid not in client.fids:
            client.register_function(fid, self._blob)
        opts = self._opts
        payload, deps, contained, keep = encode_args(
            client, args, kwargs, self._label, escape_deps=client.direct is None
        )
        tid = client.new_id()
        refs = return_refs(tid, opts["num_returns"])
        retry = opts["retry_exceptions"]
        if retry and retry is not True:
            retry = pickle.dumps(tuple(retry))
        spec = TaskSpec.new(
            tid,
            self._label,
            fid=fid,
            args=payload,
            deps=deps,
            contained=contained,
            returns=tuple(r._id for r in refs),
            res=self._res,
            retries=int(opts["max_retries"]),
            retry_exc=retry,
            opts=with_env(placement(opts), opts.get("runtime_env")),
        )
        logs.claim(tid)
        raw = tuple(spec)
        direct = client.direct
        if direct is not None and not direct.behind_head() and direct.takes(raw, keep):
            direct.submit(raw, self._blob, keep)  # straight to a leased worker (kit.lease)
        else:
            if direct is not None and deps:
                client.escape(list(deps))  # the head resolves them: it must hold them
            client.send(Kind.SUBMIT, [raw])
            if direct is not None and refs:
                direct.sent_to_head(tid, refs[0]._id)
        del keep
        return returned(refs)

    def __reduce__(self):
        return (_rebuild, (self._fn, self._opts, self._blob, self._fid))

    def __repr__(self):
        return f"<kit remote function {self._label}>"


def _rebuild(fn, opts, blob, fid):
    rf = RemoteFunction(fn, {k: v for k, v in opts.items() if k in TASK_DEFAULTS})
    rf._blob, rf._fid = blob, fid
    return rf
