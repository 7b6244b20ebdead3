"""``@kit.remote`` on a class: actors, their handles and method calls.

``Cls.remote(*args)`` submits a creation task; the head starts a worker
process for the actor and runs the constructor there. The handle holds the
ref of that creation task's result, so the actor lives as long as some handle
to it exists anywhere (handles pickle, and travel to tasks and other actors).
Named actors live until ``kit.kill`` or until their creator disconnects.
Calls are task specs addressed to the actor; the head sends them to its
worker in the order each caller submitted them.
"""

from __future__ import annotations

import inspect
import time

from . import codeship, logs, runtime_env
from .calls import Signature
from .options import ACTOR_DEFAULTS, check, resources_of
from .options import num_returns as check_num_returns
from .protocol import Kind
from .records import ACTOR_CALL, ACTOR_CREATE, TaskSpec
from .remote_function import encode_args, function_blob, node_option, return_refs, returned


def method(*, num_returns=1, max_task_retries=None, retry_exceptions=None, **_ignored):
    """Set options of one actor method, e.g. ``@kit.method(num_returns=2)``.

    ``num_returns`` is checked as a task's is (an int from 0; 0: calls give None). With
    ``retry_exceptions`` (True, or exception classes), a call that raises one of them
    runs again, up to ``max_task_retries`` times (default: the actor's), as in Ray.

    Example:
        >>> import kit
        >>> @kit.remote
        ... class Pair:
        ...     @kit.method(num_returns=2)
        ...     def both(self):
        ...         return 1, 2
    """
    n = _check_returns(num_returns)
    retry = _retry_options(max_task_retries, retry_exceptions)

    def deco(fn):
        fn.__kit_num_returns__ = n
        if retry:
            fn.__kit_retry__ = retry
        return fn

    return deco


_default = {"lifetime": None}


def set_default_lifetime(lifetime) -> None:
    """The lifetime of actors this driver creates without one (Ray's ``JobConfig``'s
    ``default_actor_lifetime``: ``"detached"``, ``"non_detached"`` or None)."""
    _default["lifetime"] = lifetime


class ActorExit(BaseException):
    """Raised by ``exit_actor()``: the actor's worker ends after this call, for good."""


def exit_actor() -> None:
    """End the actor this is called in, after the current call; it is not restarted.

    The call that made it fails with ``ActorDiedError`` saying so, as do calls queued
    after it. Outside an actor it raises ``TypeError``.

    Example:
        >>> import kit
        >>> from kit.actors import exit_actor
        >>> @kit.remote
        ... class Once:
        ...     def stop(self):
        ...         exit_actor()
    """
    from .context import get_runtime_context

    if get_runtime_context().get_actor_id() is None:
        raise TypeError(  # Ray's words, which programs match
            "exit_actor API is called on a non-actor worker: call exit_actor() in an actor's method"
        )
    raise ActorExit("exit_actor() was called")


def _check_returns(n):
    check_num_returns("num_returns", n)
    return 1 if n is None else n


def _retry_options(max_task_retries, retry_exceptions) -> dict:
    """A method's retry options, checked; those not given are left out. Exception classes
    are kept pickled (cloudpickle): handles carry these options through the head, which
    never unpickles a user's class."""
    given = {"max_task_retries": max_task_retries, "retry_exceptions": retry_exceptions}
    opts = check("method", {k: v for k, v in given.items() if v is not None})
    rule = opts.get("retry_exceptions")
    if rule and rule is not True:
        import cloudpickle

        opts["retry_exceptions"] = cloudpickle.dumps(tuple(rule))
    return opts


def _retry_spec(meta, name, override) -> tuple:
    """``(retries, retry_exc)`` of a call of method ``name`` (TaskSpec's fields): runs
    again on the method's ``retry_exceptions``, up to its ``max_task_retries`` (else the
    actor's); no retry on exceptions unless asked."""
    opts = {**meta.get("retry", {}).get(name, {}), **override}
    rule = opts.get("retry_exceptions") or False  # True, or the classes' pickle
    if not rule:
        return 0, False
    retries = opts.get("max_task_retries")
    if retries is None:
        retries = meta.get("task_retries", 0)
    return int(retries), rule


class ActorClassInheritanceException(TypeError):
    """A class statement named an actor class as a base (Ray refuses it too)."""


class ActorClass:
    """A class whose instances live in their own worker process.

    Example:
        >>> import kit
        >>> @kit.remote
        ... class Counter:
        ...     def __init__(self):
        ...         self.n = 0
        ...     def inc(self):
        ...         self.n += 1
        ...         return self.n
        >>> c = Counter.remote()
        >>> kit.get([c.inc.remote(), c.inc.remote()])
        [1, 2]
    """

    def __init__(self, cls, options=None):
        self._cls = cls
        self._opts = dict(ACTOR_DEFAULTS)
        self._opts.update(check("actor", options or {}))
        self._blob = None
        self._fid = None
        self._shipped: list = []
        self.__name__ = cls.__name__
        self.__qualname__ = getattr(cls, "__qualname__", cls.__name__)
        self.__doc__ = cls.__doc__
        methods, retry = {}, {}
        for name, fn in inspect.getmembers(cls, callable):
            if name.startswith("__") and name != "__call__":
                continue
            methods[name] = getattr(fn, "__kit_num_returns__", 1)
            if getattr(fn, "__kit_retry__", None):
                retry[name] = fn.__kit_retry__
        self._meta = {"class": cls.__name__, "methods": methods}
        if retry:
            self._meta["retry"] = retry
        self._sigs = None  # the constructor's and methods' signatures, made at first use

    def __mro_entries__(self, bases):
        raise ActorClassInheritanceException(
            f"a class cannot inherit from the actor class {self.__name__}: inherit from "
            f"the plain class instead, and make the subclass an actor with @remote"
        )

    def __getattr__(self, name):
        # The class's own attributes, static and class methods (``Cls.X`` in a method).
        if name.startswith("__"):
            raise AttributeError(name)
        cls = self.__dict__.get("_cls")
        if cls is None:
            raise AttributeError(name)
        return getattr(cls, name)

    def _signatures(self) -> dict:
        if self._sigs is None:
            cls = self._cls
            sigs = {"__init__": Signature.of(cls, f"{self.__name__}.remote", skip_self=False)}
            for name in self._meta["methods"]:
                fn = inspect.getattr_static(cls, name, None)
                skip = not isinstance(fn, (staticmethod, classmethod))
                sigs[name] = Signature.of(getattr(cls, name), f"{self.__name__}.{name}.remote",
                                          skip_self=skip and inspect.isfunction(fn))  # fmt: skip
            self._sigs = sigs
        return self._sigs

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"actor class {self.__name__} cannot be instantiated directly; "
            f"use {self.__name__}.remote(...)"
        )

    def options(self, **opts):
        """A copy with some options changed, e.g. ``Cls.options(name="c").remote()``."""
        opts = check("actor", opts, {**self._opts, **opts})
        new = ActorClass.__new__(ActorClass)
        new.__dict__.update(self.__dict__)
        new._opts = {**self._opts, **opts}
        return new

    def remote(self, *args, **kwargs):
        """Start the actor; return its handle at once."""
        from .api import _client

        opts = self._opts
        sigs = self._signatures()
        sigs["__init__"].check(args, kwargs)  # Ray's TypeError, at the call
        client = _client()
        if self._blob is None or (self._shipped and not codeship.fresh(self._shipped)):
            shipped: list = []
            self._blob, self._fid = function_blob(self._cls, self.__name__, shipped)
            self._shipped = shipped
        if self._fid not in client.fids:
            client.register_function(self._fid, self._blob)
        payload, deps, contained, keep = encode_args(client, args, kwargs, self.__name__)
        tid = client.new_id()
        aid = tid
        if opts.get("name"):
            other = _claim(client, opts["name"], opts.get("namespace"), aid)
            if other is not None:
                if opts.get("get_if_exists"):
                    return other
                raise ValueError(
                    f"the actor name {opts['name']!r} (namespace {opts.get('namespace')!r}) is "
                    f"already taken; use kit.get_actor({opts['name']!r}), get_if_exists=True, "
                    f"or another name"
                )
        (ref,) = return_refs(tid, 1)
        meta = self._meta
        if opts["max_task_retries"]:  # a retried method's default (_retry_spec)
            meta = {**meta, "task_retries": int(opts["max_task_retries"])}
        res = resources_of(opts, default_cpus=0)
        node = node_option(opts)
        spec_opts = {
            "name": opts.get("name"),
            "namespace": opts.get("namespace"),
            "max_restarts": int(opts["max_restarts"]),
            "max_task_retries": int(opts["max_task_retries"]),
            "max_concurrency": _concurrency(self._cls, opts),
            "lifetime": opts.get("lifetime") or _default["lifetime"],
            "meta": self.__name__,
            "node": node,
            "handle": meta,
        }
        if _default["lifetime"] is not None:  # the job's default, for the actors it makes
            spec_opts["job_lifetime"] = _default["lifetime"]
        env = runtime_env.for_task(opts.get("runtime_env"))
        if env is not None:
            spec_opts["env"] = env
        spec = TaskSpec.new(
            tid,
            f"{self.__name__}.__init__",
            kind=ACTOR_CREATE,
            fid=self._fid,
            args=payload,
            deps=deps,
            contained=contained,
            returns=(ref._id,),
            res=res,
            actor=aid,
            opts=spec_opts,
        )
        client.send(Kind.SUBMIT, [tuple(spec)])
        del keep
        detached = spec_opts["lifetime"] == "detached"
        handle = ActorHandle(aid, meta, None if opts.get("name") or detached else ref)
        handle._sigs = sigs
        return handle

    def __repr__(self):
        return f"<kit actor class {self.__name__}>"


class ActorHandle:
    """A reference to a live actor; ``handle.method.remote(...)`` calls it."""

    def __init__(self, aid, meta, creation_ref=None):
        self._aid = aid
        self._meta = meta
        self._ref = creation_ref
        self._sigs = None  # signatures to check calls against (where the class is known)

    def __getattr__(self, name):
        if name in _BUILTIN_METHODS:
            return ActorMethod(self, name, 1)
        if name.startswith("_"):
            raise AttributeError(name)
        methods = self._meta["methods"]
        if name not in methods:
            raise AttributeError(
                f"actor {self._meta['class']} has no method {name!r}; it has {sorted(methods)}"
            )
        sig = self._sigs.get(name) if self._sigs is not None else None
        return ActorMethod(self, name, methods[name], sig)

    def __reduce__(self):
        return (ActorHandle, (self._aid, self._meta, self._ref))

    def __repr__(self):
        return f"Actor({self._meta['class']}, {self._aid.hex()})"

    def __eq__(self, other):
        return isinstance(other, ActorHandle) and other._aid == self._aid

    def __hash__(self):
        return hash(self._aid)


class ActorMethod:
    """One method of an actor; ``.remote(*args)`` queues a call and returns its ref."""

    def __init__(self, handle, name, num_returns=1, signature=None, retry=None):
        self._handle = handle
        self._name = name
        self._num_returns = num_returns
        self._sig = signature
        self._retry = retry or {}  # max_task_retries, retry_exceptions given to options

    def options(self, num_returns=None, max_task_retries=None, retry_exceptions=None, **_):
        """A copy with ``num_returns``, ``max_task_retries`` or ``retry_exceptions``
        changed (checked as ``kit.method``'s are)."""
        n = self._num_returns if num_returns is None else _check_returns(num_returns)
        retry = {**self._retry, **_retry_options(max_task_retries, retry_exceptions)}
        return ActorMethod(self._handle, self._name, n, self._sig, retry)

    def remote(self, *args, **kwargs):
        from .api import _client

        if self._sig is not None:
            self._sig.check(args, kwargs)  # Ray's TypeError, at the call
        client = _client()
        h = self._handle
        label = f"{h._meta['class']}.{self._name}"
        payload, deps, contained, keep = encode_args(client, args, kwargs, label)
        tid = client.new_id()
        refs = return_refs(tid, self._num_returns)
        retries, retry_exc = _retry_spec(h._meta, self._name, self._retry)
        spec = TaskSpec.new(
            tid,
            label,
            kind=ACTOR_CALL,
            args=payload,
            deps=deps,
            contained=contained,
            returns=tuple(r._id for r in refs),
            retries=retries,
            retry_exc=retry_exc,
            actor=h._aid,
            method=self._name,
        )
        logs.claim(tid)
        client.send(Kind.SUBMIT, [tuple(spec)])
        del keep
        return returned(refs)

    def __call__(self, *args, **kwargs):
        raise TypeError(f"actor methods cannot be called directly; use .{self._name}.remote(...)")


# Methods every actor has (Ray's names): ``__ray_ready__`` answers once the actor is
# alive; ``__ray_terminate__`` ends it after the calls queued before it (no restart).
_BUILTIN_METHODS = ("__ray_ready__", "__ray_terminate__")


ASYNC_CONCURRENCY = 1000  # calls an async actor runs at once unless told (Ray's default)


def _concurrency(cls, opts) -> int:
    """``max_concurrency``: as given; left at 1, 1000 for a class with ``async def``
    methods (its calls interleave on one event loop, as Ray's default), else 1."""
    given = opts.get("max_concurrency")
    if given is not None and given != 1:
        return int(given)
    has_async = any(inspect.iscoroutinefunction(m) for _, m in inspect.getmembers(cls))
    return ASYNC_CONCURRENCY if has_async else 1


def _claim(client, name, namespace, aid, wait: float = 10.0):
    """Reserve an actor name at the head for ``aid``: None if it is ours now, else the
    handle of the actor that has it (waited for if its creation is still on its way)."""
    from .api import get_actor

    deadline = time.monotonic() + wait
    while True:
        ans = client.request(Kind.ACTOR, lambda req: ("claim", req, name, namespace, aid))
        if ans is None:
            return None
        other, meta = ans
        if meta is not None:
            return ActorHandle(other, meta)
        try:  # claimed by another driver whose creation has not arrived yet
            return get_actor(name, namespace)
        except ValueError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
