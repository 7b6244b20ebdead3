"""Dask distributed as a backend: cells run as Dask futures.

    driver                                      scheduler                    workers
    ──────                                      ─────────                    ───────
    submit ─ client.submit(worker.run, ..., key) ─────────────────────────▶ worker.run
      + one getitem future per return value ("kit-part-<i>-<key>")          │ printed lines:
                                                TallyPlugin.transition       │ Worker.log_event
    nodes(), waiting(), events(since)  ◀─ run_on_scheduler ─ sees every      │ (topic of this
      one round trip per poll                   task move, with its worker  │  driver)
    OutputRouter ◀─ Client.subscribe_topic ◀──── the topic ◀────────────────┘

The plugin counts every task of the cluster (not only the cells'; the getitem
parts excepted), per worker: a Dask worker is a node here. A task counts as
running from the moment the scheduler gives it to a worker ("processing").

Dask cannot stop a task that is running: ``cancel`` drops the future and the
result, and the worker's thread runs the task to its end. A task takes one
worker thread (``num_cpus`` is ignored); ``node`` pins it to one worker. The
plugin stays on a scheduler the driver only connected to (shared by drivers).
"""

from __future__ import annotations

import logging
import operator
import time
import uuid

from . import worker
from .base import CANCELLED, OTHER, Backend, BackendError, Failure, OutputRouter, remote_info
from .tally import Tally

PLUGIN = "kit-tally"
PART = "kit-part-"
CANCEL_NOTE = (
    "Dask cannot interrupt a running task: it runs to its end on the worker "
    "and its result is dropped"
)


try:
    from distributed.diagnostics.plugin import SchedulerPlugin as _PluginBase
except ImportError:  # no distributed here: the class is only defined for pickling
    _PluginBase = object


class TallyPlugin(_PluginBase):
    """A scheduler plugin: every task's move to and from a worker, as events and counts."""

    name = PLUGIN
    idempotent = True  # a second driver keeps the counts the first one started

    def __init__(self):
        self.tally = Tally()
        self.scheduler = None

    async def start(self, scheduler):
        self.scheduler = scheduler

    def transition(self, key, start, finish, *args, stimulus_id=None, **kwargs):
        if str(key).startswith(PART):
            return
        from dask.utils import key_split

        now = time.time()
        if finish == "processing":
            ts = self.scheduler.tasks.get(key) if self.scheduler is not None else None
            ws = getattr(ts, "processing_on", None)
            node = ws.address if ws is not None else kwargs.get("worker")
            self.tally.record(str(key), key_split(key), "running", node, now, node)
        elif start == "processing":
            state = {"memory": "finished", "erred": "failed"}.get(finish, "cancelled")
            node = kwargs.get("worker")
            self.tally.record(str(key), key_split(key), state, node, now, node)


def _scheduler_state(dask_scheduler=None):
    """Runs on the scheduler: workers, counts and tasks waiting for a worker."""
    s = dask_scheduler
    plugin = s.plugins.get(PLUGIN)
    workers = [
        {
            "address": ws.address,
            "host": ws.host,
            "name": str(ws.name),
            "nthreads": ws.nthreads,
            "resources": dict(ws.resources or {}),
            "memory_limit": ws.memory_limit or 0,
            "nbytes": ws.nbytes,
        }
        for ws in s.workers.values()
    ]
    counts = {k: dict(v) for k, v in plugin.tally.counts.items()} if plugin else {}
    waiting = len(getattr(s, "queued", ())) + len(getattr(s, "unrunnable", ()))
    return workers, counts, waiting


def _scheduler_events(since, dask_scheduler=None):
    plugin = dask_scheduler.plugins.get(PLUGIN)
    return plugin.tally.since(since) if plugin else (0, [])


class _Opaque:
    """An argument Dask passes as it is (it walks a dict or list item by item, ~1 µs each)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def _run(channel, key, label, fn, *args):
    """``worker.run`` with the arguments unwrapped (futures among them arrive as values)."""
    args = [a.value if isinstance(a, _Opaque) else a for a in args]
    return worker.run(channel, key, label, fn, *args)


_failed_here: set = set()  # worker side: keys of cells that raised in this process


class _QuietFailures(logging.Filter):
    """Drops the worker's "Compute Failed" log of a cell's error: the cell shows it."""

    def filter(self, record):
        return not (
            str(record.msg).startswith("Compute Failed")
            and record.args
            and str(record.args[0]) in _failed_here
        )


def _quiet(key) -> None:
    log = logging.getLogger("distributed.worker")
    if not any(isinstance(f, _QuietFailures) for f in log.filters):
        log.addFilter(_QuietFailures())
    if len(_failed_here) > 10_000:
        _failed_here.clear()
    _failed_here.add(key)


class DaskChannel:
    """The worker's end: the node is the worker's address; lines go to the driver's topic."""

    def __init__(self, topic):
        self.topic = topic

    def node_id(self):
        from distributed import get_worker

        return get_worker().address

    def event(self, key, label, state, node, t):
        if state == "failed":  # else nothing: the scheduler plugin sees every task move
            _quiet(key)

    def output(self, key, stream, text):
        from distributed import get_worker

        get_worker().log_event(self.topic, [key, stream, text])


class DaskBackend(Backend):
    """A Dask distributed cluster through a ``Client`` (or a ``LocalCluster`` started here).

    Example:
        >>> from backends import connect
        >>> b = connect("dask:local")        # doctest: +SKIP
        >>> [f] = b.submit(abs, (-1,))       # doctest: +SKIP
        >>> b.get(f)                         # doctest: +SKIP
        1
    """

    name = "dask"

    def __init__(self):
        self.client = None
        self.cluster = None
        self.started_here = False
        self.router = OutputRouter()
        self._tasks: dict = {}  # task key -> [main future, parts...] until released
        self._tags: dict = {}
        self._state = (0.0, None)

    # ---- lifecycle ------------------------------------------------------------------
    def start(self, nodes=2, cpus=None):
        from distributed import LocalCluster

        self.cluster = LocalCluster(
            n_workers=nodes, threads_per_worker=cpus or 1, processes=True, dashboard_address=None
        )
        self.started_here = True
        self._connect(self.cluster)

    def connect(self, address, token=None):
        self._connect(address)

    def _connect(self, address):
        from distributed import Client

        try:
            self.client = Client(address, timeout=10)
        except Exception as e:  # OSError, TimeoutError: nothing answers there
            self._close_cluster()
            raise BackendError(f"dask: cannot connect to {address}: {e}") from None
        self.client.register_plugin(TallyPlugin(), name=PLUGIN)
        self.topic = f"kit-output-{uuid.uuid4().hex[:12]}"
        self.channel = DaskChannel(self.topic)
        self.client.subscribe_topic(self.topic, self._on_output)

    def _on_output(self, event):
        _, (key, stream, text) = event
        self.router.deliver(key, stream, text)

    def _close_cluster(self):
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def stop(self) -> bool:
        client, self.client = self.client, None
        if client is not None:
            try:
                client.unsubscribe_topic(self.topic)
            except Exception:
                pass
            client.close()
        self._close_cluster()
        self._tasks.clear()
        return self.started_here

    def alive(self) -> bool:
        return self.client is not None and self.client.status == "running"

    def generation(self):
        return self.client

    # ---- cluster state --------------------------------------------------------------
    def _read(self):
        at, state = self._state
        if state is None or time.monotonic() - at > 0.05:
            state = self.client.run_on_scheduler(_scheduler_state)
            self._state = (time.monotonic(), state)
        return state

    def nodes(self):
        workers, counts, _ = self._read()
        for w in sorted(workers, key=lambda w: (w["name"], w["address"])):
            self._tags.setdefault(w["address"], f"n{len(self._tags)}")
        seen = {w["address"]: w for w in workers}
        out = []
        for addr, tag in self._tags.items():
            w, c = seen.get(addr), counts.get(addr, {})
            cpu = float(w["nthreads"]) if w else 0.0
            running = c.get("running", 0)
            res = dict(w["resources"], CPU=cpu) if w else {"CPU": 0.0}
            out.append(
                {
                    "NodeID": addr,
                    "node_id": addr,
                    "Alive": w is not None,
                    "alive": w is not None,
                    "tag": tag,
                    "address": w["host"] if w else addr.split("//")[-1],
                    "resources": res,
                    "available": {"CPU": max(0.0, cpu - running)},
                    "running": running,
                    "queued": 0,
                    "done": c.get("done", 0),
                    "failed": c.get("failed", 0),
                    "store_used": w["nbytes"] if w else 0,
                    "store_limit": w["memory_limit"] if w else 0,
                }
            )
        return out

    def waiting(self) -> int:
        return int(self._read()[2])

    def events(self, since=0):
        return self.client.run_on_scheduler(_scheduler_events, since)

    # ---- tasks ----------------------------------------------------------------------
    def submit(
        self,
        fn,
        args,
        *,
        num_returns=1,
        name=None,
        num_cpus=None,
        resources=None,
        node=None,
        on_output=None,
        runtime_env=None,
    ):
        if runtime_env:
            raise BackendError(
                "Dask has no runtime_env: install the packages on its workers, or use "
                "client.upload_file for a module; --env works on kit and Ray clusters"
            )
        label = name or getattr(fn, "__name__", "task")
        key = f"{label}-{uuid.uuid4().hex}"
        kw = {"key": key, "pure": False}
        if resources:
            kw["resources"] = resources
        if node:
            kw["workers"] = [node]
            kw["allow_other_workers"] = False
        self.router.route(key, on_output)
        from distributed import Future

        args = [a if isinstance(a, Future) else _Opaque(a) for a in args]
        main = self.client.submit(_run, self.channel, key, label, fn, *args, **kw)
        if num_returns == 1:
            self._tasks[key] = [main]
            return [main]
        parts = [
            self.client.submit(operator.getitem, main, i, key=f"{PART}{i}-{key}", pure=False)
            for i in range(num_returns)
        ]
        self._tasks[key] = [main, *parts]
        return parts

    def key(self, handle) -> str:
        k = str(handle.key)
        return k.split("-", 3)[3] if k.startswith(PART) else k

    def release(self, handles):
        if handles:
            key = self.key(handles[0])
            self.router.unroute(key)
            self._tasks.pop(key, None)

    def is_handle(self, value) -> bool:
        from distributed import Future

        return isinstance(value, Future)

    def put(self, value):
        # On every worker: a value put once is read by many tasks (a --map cell's spec,
        # a large notebook value), and Dask would run them all where one copy lives.
        return self.client.scatter([value], hash=False, broadcast=True)[0]

    def get(self, handles, timeout=None):
        if not isinstance(handles, (list, tuple)):
            return handles.result(timeout=timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        return [
            h.result(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
            for h in handles
        ]

    def wait(self, handles, num_returns=1, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ready = [h for h in handles if h.done()]
            if len(ready) >= num_returns or (deadline is not None and time.monotonic() >= deadline):
                done = set(id(h) for h in ready)
                return ready, [h for h in handles if id(h) not in done]
            time.sleep(0.01)

    def failed(self, handle) -> bool:
        return handle.status in ("error", "cancelled")

    def cancel(self, handle):
        futures = self._tasks.get(self.key(handle)) or [handle]
        self.client.cancel(futures)
        return CANCEL_NOTE

    def classify(self, exc) -> Failure:
        import concurrent.futures

        if isinstance(exc, concurrent.futures.CancelledError) or "Cancelled" in type(exc).__name__:
            return CANCELLED
        return remote_info(exc) or OTHER
