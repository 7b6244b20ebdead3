"""A worker process: runs tasks, or hosts one actor.

    head ── TASKS ──▶ io thread ──▶ queue ──▶ main thread: run, pickle results
    head ◀── DONE (batched while more tasks wait) ◀── main thread (or kit.late_flush,
                                                      if the next task runs long)
    driver ── DTASKS ──▶ inbox (read by the main thread when it has nothing to run)
    driver ◀── DDONE ◀── main thread                        (kit.inbox: the direct path)

Forked from its node's zygote with kit already imported. Functions arrive once
(the head sends a function's pickle the first time this worker runs it) and are
cached by id. What a task prints goes to the driver, line by line, labelled
with the function, pid and node. ``kit.cancel`` interrupts the running task by
signalling the main thread (so ``time.sleep`` is interrupted too).

A worker started for a ``runtime_env`` sets it up first (kit.env_cache: fetch and
unpack what was shipped, install pip packages once per node) and runs only that
environment's tasks; if the setup fails, every task it is given fails with the
``RuntimeEnvSetupError``, and it exits once it has nothing queued.

An actor worker runs its creation task first and then the calls, in order,
one at a time; with ``max_concurrency > 1`` on a thread pool; ``async def``
methods on an event loop.
"""

from __future__ import annotations

import collections
import inspect
import os
import pickle
import queue
import signal
import sys
import threading
import time

from . import client as client_mod
from . import context, native_threads, serialization
from .actors import ActorExit, set_default_lifetime
from .errors import ActorDiedError, ObjectLostError, SerializationError, TaskCancelledError
from .inbox import Inbox
from .late_flush import LateFlush
from .protocol import Kind
from .records import ACTOR_CALL, ACTOR_CREATE, STARTUP_SHOWN, Dep, LogLine, TaskDone, TaskSpec


class LogStream:
    """stdout/stderr of a worker: complete lines go to the driver, labelled."""

    def __init__(self, worker, name):
        self.worker = worker
        self.name = name
        self.buf = ""
        self.lock = threading.Lock()

    def write(self, text):
        if not text:
            return 0
        with self.lock:
            self.buf += text
            if "\n" in self.buf:
                lines, self.buf = self.buf.rsplit("\n", 1)
                self.worker.log(self.name, lines)
        return len(text)

    def flush(self):
        with self.lock:
            if self.buf:
                text, self.buf = self.buf, ""
                self.worker.log(self.name, text)

    def isatty(self):
        return False

    def fileno(self):
        raise OSError("kit worker output is a stream to the driver")

    @property
    def encoding(self):
        return "utf-8"


class Worker:
    def __init__(self, cfg, wid, actor_id, env=None):
        self.cfg = cfg
        self.env = env  # the packed runtime_env it was started for (kit.runtime_env)
        self.env_error = None  # why that environment could not be set up
        self.env_failed = 0  # tasks failed with env_error
        self.wid = wid
        self.actor_id = actor_id
        self.node_tag = cfg["tag"]
        self.node_hex = cfg["node_hex"]
        self.q = queue.SimpleQueue()
        self.q_lock = threading.Lock()  # the io thread's puts and _hand_back
        self.handing_back = False  # the task waits in get: tasks that come go back
        self.functions = {}
        self.current = None  # task id running on the main thread
        self.current_ctx = None
        self.cancelled = set()
        self.instance = None
        self.pool = None
        self.loop = None
        self.pending_done = []
        self.done_lock = threading.Lock()
        self.flush_lock = threading.RLock()  # the main thread's flushes and the late one's
        self.flushes = 0  # _flush_done calls: names the batch a LateFlush is armed for
        self.late = LateFlush(self._flush_done, lambda: self.flushes)
        self.inbox = None
        self.exiting = None  # why the actor ends after its current call (exit_actor)
        self.called = None  # when _execute called the task's function (TaskDone.called)
        self.async_calls: dict = {}  # task id -> Future of an async actor's running call
        self.direct_of: dict = {}  # direct task id -> its driver's result address
        self.direct_items: collections.deque = collections.deque()  # read from the inbox
        self.waiting = False  # the main thread waits for work: TASKS must wake it
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        info = {"node": cfg["node_id"], "actor": actor_id, "env": env["key"] if env else None}
        if actor_id is None and env is None:  # base task workers can be leased
            import zmq

            ip = (cfg.get("transfer") or "tcp://127.0.0.1:0").replace("tcp://", "").rsplit(":")[0]
            self.inbox = Inbox(
                zmq.Context(), cfg["token"], bool(cfg.get("encrypt")), ip,
                self._direct_task, self._wake_r
            )  # fmt: skip
            info["direct"] = self.inbox.address
        self.client = client_mod.Client(
            cfg["address"],
            cfg["token"],
            "worker",
            cid=wid,
            info=info,
            on_message=self.on_message,
            encrypt=bool(cfg.get("encrypt")),
        )
        self.client.node_id = cfg["node_id"]
        self.client.node_tag = cfg["tag"]
        self.client.store_limit = cfg.get("store_limit", 0)
        self.client.transfer = cfg.get("transfer")
        self.client.hand_back = self._hand_back
        client_mod.install(self.client)
        context.set_worker(
            node_id=self.node_hex,
            worker_id=wid.hex(),
            actor_id=actor_id.hex() if actor_id else None,
        )
        self.store_name = self.client.store_name()

    # ---- messages from the io thread ---------------------------------------------

    def on_message(self, kind, body):
        if kind == Kind.TASKS:
            with self.q_lock:
                if self.handing_back:  # sent before the head knew this worker waits
                    self.client.send(Kind.BLOCKED, (None, [_returned(i) for i in body]))
                    return
                for item in body:
                    self.q.put(item)
            if self.waiting:  # the main thread sleeps in _next's poll
                try:
                    os.write(self._wake_w, b"\0")
                except OSError:  # the pipe is full: it wakes anyway
                    pass
        elif kind == Kind.CANCEL:
            self._cancel(body[0])

    def _hand_back(self, blocked: bool) -> list:
        """The client's hook: this task worker's task waits in get (``blocked``) or no
        longer does. While it waits, the head's tasks queued here (never started) go back
        to the head, which runs them elsewhere: ``[(task id, fid or None)]``, as
        ``Kind.BLOCKED`` carries them. An actor keeps its calls."""
        if self.actor_id is not None:
            return []
        back = []
        with self.q_lock:
            self.handing_back = blocked
            while blocked:
                try:
                    back.append(_returned(self.q.get_nowait()))
                except queue.Empty:
                    break
        return back

    def _cancel(self, tid):
        self.cancelled.add(tid)
        if self.actor_id is not None:  # as Ray: an actor's running call is not interrupted
            call = self.async_calls.get(tid)  # (it may check is_canceled()), but an async
            if call is not None:  # call's asyncio task is cancelled
                call.cancel()
            return
        if self.current == tid:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)

    def _direct_task(self, spec, blob, owner, address):
        """A leasing driver sent a task (read by the main thread): run it like the head's."""
        self.direct_of[spec[0]] = address  # where its output goes while it runs
        self.direct_items.append((spec, blob, {}, (owner, address)))

    def log(self, stream, text):
        ctx = context.current_task()
        if ctx is None and self.current is not None:
            ctx = self.current_ctx  # a thread the task started: it is the task's output
        tid, label = ctx if ctx else (None, "worker")
        line = tuple(LogLine(tid, label, os.getpid(), self.node_hex, stream, text))
        address = self.direct_of.get(tid) if tid is not None else None
        if address is not None:  # a direct task: its driver gets it straight away
            self.inbox.log(address, self.wid, line)
        else:
            self.client.add_log(line)

    # ---- running -----------------------------------------------------------------

    def setup_env(self):
        """Set up the runtime_env this worker was started for; a failure is kept, and
        given to every task it is sent."""
        if self.env is None:
            return
        from . import env_cache, runtime_env

        runtime_env.set_worker_env(self.env)
        try:
            env_cache.apply(self.env, self._where())
        except Exception as e:
            if not isinstance(e, env_cache.RuntimeEnvSetupError):
                e = env_cache.RuntimeEnvSetupError(
                    f"the runtime_env could not be set up on node {self._where()}: "
                    f"{type(e).__name__}: {e}"
                )
            self.env_error = e

    def _where(self) -> str:
        """This worker's node, for messages: its id and address."""
        ip = (self.cfg.get("transfer") or "").replace("tcp://", "").rsplit(":", 1)[0]
        return f"{self.node_hex[:8]} ({ip})" if ip else self.node_hex[:8]

    def serve(self):
        signal.signal(signal.SIGUSR1, self._on_cancel_signal)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        while True:
            if self.env_failed and self.q.empty() and not self.direct_items:
                self._flush_done()
                return  # a broken environment's worker: the next task tries again
            item = self._next()
            if item is None:
                return
            late = self.late
            if late.armed_for != self.flushes and (
                self.pending_done or (self.inbox is not None and self.inbox.done)
            ):
                late.arm(self.flushes)  # results wait: sent anyway if this task runs long
            self.run_item(item)
            if len(self.pending_done) >= 64 or (self.inbox and self.inbox.pending() >= 64):
                self._flush_done()

    def _next(self):
        """The next task, from the head (the io thread's queue) or from a leaseholder (the
        inbox, read here: no thread in between). Results go out before this waits."""
        q, inbox, items = self.q, self.inbox, self.direct_items
        while True:
            if items:
                return items.popleft()
            try:
                return q.get_nowait()
            except queue.Empty:
                pass
            if inbox is not None:
                inbox.on_readable()
                if items:
                    continue
            self._flush_done()
            if inbox is None:
                return q.get()
            self.waiting = True  # set before looking: a TASKS put after it writes the pipe
            try:
                if q.empty():
                    inbox.wait()
            finally:
                self.waiting = False
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except OSError:
                pass

    def _on_cancel_signal(self, signum, frame):
        if self.current is not None and self.current in self.cancelled:
            raise CancelInterrupt("the task was cancelled")

    def is_canceled(self) -> bool:
        """Whether the task or actor call running in this thread was cancelled."""
        task = context.current_task()
        return task is not None and task[0] in self.cancelled

    def _flush_done(self):
        """Send the finished tasks' results (the main thread, or a LateFlush)."""
        with self.flush_lock:
            self.flushes += 1
            if self.inbox is not None and self.inbox.done:
                sys.stdout.flush()
                sys.stderr.flush()
                self.inbox.flush(self.client, self.wid)
            with self.done_lock:
                batch, self.pending_done = self.pending_done, []
            if batch:
                sys.stdout.flush()
                sys.stderr.flush()
                self.client.send(Kind.DONE, batch)
                # The head has the results now (same connection, in order): the refs
                # they hold may be dropped here (see _results).
                decref = self.client.decref
                for done in batch:
                    for _, _, contained in done[1]:
                        for oid in contained:
                            decref(oid)

    def _finish(self, tid, results, started, retry=False, now_flush=False, called=None):
        with self.done_lock:
            self.pending_done.append(
                tuple(TaskDone(tid, results, started, time.time(), retry, called))
            )
        if now_flush:
            self._flush_done()

    def function(self, fid, blob):
        fn = self.functions.get(fid)
        if fn is None:
            fn = self.functions[fid] = pickle.loads(blob)
        return fn

    def run_item(self, item):
        raw, blob, deps = item[:3]
        direct = item[3] if len(item) > 3 else None  # (owner, result address): kit.lease
        spec = TaskSpec.of(raw)
        tid = spec.tid
        started = time.time()
        if tid in self.cancelled:
            self.cancelled.discard(tid)
            error = self._error_results(
                spec, TaskCancelledError(f"task {spec.label} was cancelled")
            )
            if direct is not None:
                self.inbox.finish(*direct, raw, (tid, error, started, time.time(), False, None))
            else:
                self._finish(tid, error, started)
            return
        if self.env_error is not None:
            self.env_failed += 1
            self._finish(tid, self._error_results(spec, self.env_error), started)
            return
        kind = spec.kind
        if kind != ACTOR_CALL:
            native_threads.fit(spec.res)  # BLAS/OpenMP threads: the task's CPUs
        if kind == ACTOR_CALL and self.pool is not None:
            self.pool.submit(self._run_threaded, spec, deps, started)
            return
        if kind == ACTOR_CALL and self.loop is not None:  # an async actor: all on its loop
            import asyncio

            call = asyncio.run_coroutine_threadsafe(self._run_async(spec, deps, started), self.loop)
            self.async_calls[tid] = call
            call.add_done_callback(lambda _, tid=tid: self.async_calls.pop(tid, None))
            return
        self.current = tid
        self.current_ctx = (tid, spec.label)
        try:
            results, retry = self._execute(spec, blob, deps)
        finally:
            self.current = None
            self.current_ctx = None
            self.cancelled.discard(tid)
        called = self.called  # its function's start, reported if loading took a while
        if called is not None and called - started < STARTUP_SHOWN:
            called = None
        if direct is not None:
            self.inbox.finish(*direct, raw, (tid, results, started, time.time(), retry, called))
            self.direct_of.pop(tid, None)
        else:
            self._finish(tid, results, started, retry, called=called)
        if self.exiting is not None:
            self._exit_actor()

    def _execute(self, spec, blob, deps):
        label = spec.label
        self.called = None
        context.set_task(spec.tid, label)
        try:
            try:
                if spec.kind == ACTOR_CREATE:  # the job's default lifetime, for its children
                    set_default_lifetime((spec.opts or {}).get("job_lifetime"))
                fn = self._callable(spec, blob)
                args, kwargs = self._args(spec, deps)
            except TaskCancelledError as e:
                return self._error_results(spec, e), False
            except ObjectLostError as e:
                # An argument's node died under us: run again (the head makes the
                # argument again first, if it can) while retries last.
                return self._error_results(spec, e), True
            except Exception as e:
                return self._error_results(spec, e), False
            self.called = time.time()  # loaded: the function, its imports, its arguments
            try:
                value = fn(*args, **kwargs)
            except TaskCancelledError as e:
                return self._error_results(spec, e), False
            except ActorExit:
                return self._actor_exit(spec), False
            except (Exception, KeyboardInterrupt) as e:
                if isinstance(e, ImportError) and getattr(e, "name", None):
                    named = self._import_error(e, spec.label)  # which node could not
                    named.__cause__ = e
                    return self._error_results(spec, named), self._retryable(spec, e)
                return self._error_results(spec, e), self._retryable(spec, e)
            if spec.kind == ACTOR_CREATE:
                self._become_actor(value, spec)
                value = None
            return self._results(spec, value), False
        finally:
            for stream in (sys.stdout, sys.stderr):  # a last partial line is this task's
                try:
                    stream.flush()
                except Exception:
                    pass
            context.set_task(None, None)

    def _callable(self, spec, blob):
        kind = spec.kind
        if kind == ACTOR_CALL:
            return self._method(spec.method)
        fid = spec.fid
        fn = self.functions.get(fid)
        if fn is None:
            if blob is None:
                raise SerializationError(f"function of {spec.label} never arrived")
            try:
                fn = self.functions[fid] = pickle.loads(blob)
            except TaskCancelledError:  # kit.cancel's signal came while it unpickled
                raise
            except ImportError as e:
                raise self._import_error(e, f"the function {spec.label}") from e
            except Exception as e:
                raise SerializationError(
                    f"the function {spec.label} could not be unpickled on the worker: "
                    f"{type(e).__name__}: {e}; make sure the modules it uses are installed "
                    f"on every node"
                ) from e
        return fn

    def _args(self, spec, deps):
        payload = spec.args
        if payload is None:
            return (), {}
        try:
            args, kwargs = serialization.from_payload(payload)
        except TaskCancelledError:  # kit.cancel's signal came while they were unpickled
            raise
        except Exception as e:
            if isinstance(e.__cause__, ImportError):
                raise self._import_error(e.__cause__, f"the arguments of {spec.label}") from e
            raise SerializationError(
                f"the arguments of {spec.label} could not be unpickled on the worker: "
                f"{type(e).__name__}: {e}"
            ) from e
        if spec.deps:
            values = {oid: serialization.from_payload(p) for oid, p in deps.items()}
            args = [values[a.oid] if type(a) is Dep else a for a in args]
            for k, v in kwargs.items():
                if type(v) is Dep:
                    kwargs[k] = values[v.oid]
        return args, kwargs

    def _import_error(self, e, what):
        """A module that ``what`` needs is not importable here: say which, and where."""
        name = getattr(e, "name", None) or ""
        return ModuleNotFoundError(
            f"{what} needs module {name!r}, which cannot be imported on node {self._where()}: {e}",
            name=name,
        )

    def _results(self, spec, value):
        returns = spec.returns
        n = len(returns)
        if n == 1:
            values = (value,)
        elif n == 0:
            return []
        else:
            try:
                values = tuple(value)
            except TypeError:
                values = None
            if values is None or len(values) != n:
                return self._error_results(
                    spec,
                    ValueError(
                        f"{spec.label} has num_returns={n} but returned "
                        f"{type(value).__name__} that is not a sequence of {n} values"
                    ),
                )
        out = []
        for oid, v in zip(returns, values):
            try:
                payload, contained = serialization.to_payload(
                    v, self.store_name, self.client.node_id
                )
            except SerializationError as e:
                return self._error_results(
                    spec,
                    SerializationError(
                        f"the result of {spec.label} cannot be pickled: {e}; return plain "
                        f"data, or build the object on the caller's side"
                    ),
                )
            # A ref the result holds must not be dropped here before the head has the
            # result (it would free the object first): hold it until the DONE is sent.
            for inner in contained:
                self.client.incref(inner, announce=False)
            out.append((oid, payload, contained))
        return out

    def _error_results(self, spec, exc):
        if isinstance(exc, CancelInterrupt):  # kit's own error, not the task's
            exc = TaskCancelledError(str(exc))
        payload = serialization.task_error_payload(
            exc, spec.label, self.node_hex, os.getpid(), self.node_tag
        )
        return [(oid, payload, ()) for oid in spec.returns]

    def _retryable(self, spec, exc):
        rule = spec.retry_exc
        if not rule:
            return False
        if rule is True:
            return True
        try:
            types = pickle.loads(rule)
            return isinstance(exc, tuple(types))
        except Exception:
            return False

    # ---- actors ------------------------------------------------------------------

    def _become_actor(self, instance, spec):
        self.instance = instance
        opts = spec.opts
        conc = opts.get("max_concurrency", 1)
        has_async = any(
            inspect.iscoroutinefunction(m)
            for _, m in inspect.getmembers(type(instance), inspect.isfunction)
        )
        if has_async:
            import asyncio

            self.loop = asyncio.new_event_loop()
            threading.Thread(
                target=self.loop.run_forever, daemon=True, name="kit-actor-loop"
            ).start()
        if conc > 1 and not has_async:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(conc, thread_name_prefix="kit-actor")

    def _method(self, name):
        """An actor method by name; ``__ray_ready__`` and ``__ray_terminate__`` (Ray's
        methods every actor has) are kit's own."""
        if name == "__ray_ready__":
            return _ready
        if name == "__ray_terminate__":
            return _terminate
        return getattr(self.instance, name)

    def _actor_exit(self, spec):
        """The actor's method called ``exit_actor()`` (or ``__ray_terminate__`` ran): this
        call ends, then the actor does, for good (``_exit_actor``)."""
        self.exiting = f"it ended itself in {spec.label}"
        if spec.method == "__ray_terminate__":
            return self._results(spec, None)
        err = ActorDiedError(f"the actor exited: exit_actor() was called in {spec.label}")
        return self._error_results(spec, err)

    def _exit_actor(self):
        """Tell the head the actor is over (no restart), after this call's result; the
        head stops this worker and fails the calls queued after it."""
        self._flush_done()
        self.client.send(Kind.ACTOR, ("kill", self.actor_id, True, self.exiting))

    def _run_threaded(self, spec, deps, started):
        results, retry = self._execute(spec, None, deps)
        self._finish(spec.tid, results, started, retry, now_flush=True)
        if self.exiting is not None:
            self._exit_actor()

    async def _run_async(self, spec, deps, started):
        """A call of an async actor, on its event loop: a plain method runs on the loop's
        thread too (as in Ray), so it may use the loop's objects (``asyncio.Event``)."""
        import asyncio

        tid = spec.tid
        retry = False
        try:
            fn = self._method(spec.method)
            args, kwargs = self._args(spec, deps)
            value = fn(*args, **kwargs)
            if inspect.iscoroutine(value):  # not isawaitable: a returned ObjectRef is one
                value = await value
            results = self._results(spec, value)
        except ActorExit:
            results = self._actor_exit(spec)
        except asyncio.CancelledError:  # kit.cancel cancelled its asyncio task (as Ray)
            results = self._error_results(spec, TaskCancelledError(f"{spec.label} was cancelled"))
        except Exception as e:
            results, retry = self._error_results(spec, e), self._retryable(spec, e)
        self._finish(tid, results, started, retry, now_flush=True)
        if self.exiting is not None:
            self._exit_actor()


class CancelInterrupt(TaskCancelledError, KeyboardInterrupt):
    """What ``kit.cancel`` raises inside a running task: a ``TaskCancelledError`` that is
    also a ``KeyboardInterrupt``, as Ray raises one, so ``except KeyboardInterrupt:`` in
    the task sees it (and may return a value, which is then the task's result)."""


def _returned(item) -> tuple:
    """A queued task given back to the head: its id, and its function's id if the
    function's pickle came with it (the head then sends it again)."""
    spec = TaskSpec.of(item[0])
    return (spec.tid, spec.fid if item[1] is not None else None)


def _ready():
    return True


def _terminate():
    raise ActorExit("__ray_terminate__")


def create_instance(cls, args, kwargs):
    """The creation task of an actor: the class's constructor."""
    return cls(*args, **kwargs)


def use_driver_paths(cfg):
    """Import what the driver imports: its sys.path entries and working directory."""
    for p in cfg.get("sys_path") or []:
        if p not in sys.path:
            sys.path.append(p)
    cwd = cfg.get("cwd")
    if cwd and os.path.isdir(cwd):
        try:
            os.chdir(cwd)
        except OSError:
            pass


def main(cfg, wid, actor_id=None, env=None):
    """Entry point of a forked worker process (``env``: the runtime_env it runs)."""
    use_driver_paths(cfg)
    if os.environ.get("KIT_RAY_ALIAS") == "1":  # the driver ran with `import ray` as kit
        from .ray.alias import install_ray_alias

        install_ray_alias(quiet=True)
    w = Worker(cfg, wid, actor_id, env)
    context.set_cancel_probe(w.is_canceled)
    sys.stdout = LogStream(w, "stdout")
    sys.stderr = LogStream(w, "stderr")
    w.setup_env()
    try:
        w.serve()
    finally:
        try:
            w.client.close(notify=False)
        except Exception:
            pass
