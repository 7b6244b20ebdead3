"""Ray as a backend: cells run as Ray tasks; a channel actor carries what Ray keeps to itself.

    driver                                   Ray cluster
    ──────                                   ───────────
    submit ─ ray.remote(worker.run) ───────▶ worker.run(channel, key, label, fn, *args)
                                               │ "running"/"finished"/... events with the
                                               │ node id, and the lines the task prints
                                               ▼ (actor calls, fire and forget; the last
    poller thread (10/s) ◀─ take(since) ──── _Channel actor   one waits, so nothing lags
      events, per-node counts, output          (named, num_cpus=0,  behind the result)
      ─▶ OutputRouter ─▶ the cell's sink        one per driver: Tally + output lines)

Counts cover the tasks this driver submitted through the backend (Ray does not
publish per-node task counts without its dashboard). ``ray.cancel`` raises
``KeyboardInterrupt`` in a running task, so interrupting a cell stops it.

``ray://`` to this machine turns on Ray's token authentication when a token is
there (Ray Client does not on its own; ``ray.init("auto")`` does), so a default
``ray start`` cluster answers; a failed connect leaves no half-made connection.

If the notebook called ``ray.init()`` itself, the backend uses that connection and
``stop()`` leaves it up (it only removes its channel actor); otherwise ``stop()``
calls ``ray.shutdown()``, which stops a ``ray:local`` cluster.
"""

from __future__ import annotations

import collections
import os
import threading
import time
import uuid

from . import worker
from .base import (
    CANCELLED,
    OTHER,
    Backend,
    BackendError,
    Failure,
    OutputRouter,
    remote_info,
    task_options,
)
from .tally import Tally

NAMESPACE = "kit"
POLL = 0.1


class _Channel:
    """The actor: the task events (a ``Tally``) and the output lines not yet taken."""

    def __init__(self):
        self.tally = Tally()
        self.out = []

    def push(self, records):
        for r in records:
            if r[0] == "event":
                _, key, label, state, node, t, pid = r
                self.tally.record(key, label, state, node, t, worker=str(pid))
            else:
                self.out.append(r[1:])

    def take(self, since):
        out, self.out = self.out, []
        last, events = self.tally.since(since)
        return last, events, out, self.tally.counts


_actors: dict = {}  # worker side: channel name -> actor handle


class RayChannel:
    """The worker's end of the channel (pickled with each task: just the actor's name)."""

    def __init__(self, name):
        self.name = name

    def _actor(self):
        actor = _actors.get(self.name)
        if actor is None:
            import ray

            actor = _actors[self.name] = ray.get_actor(self.name, namespace=NAMESPACE)
        return actor

    def node_id(self):
        import ray

        return ray.get_runtime_context().get_node_id()

    def event(self, key, label, state, node, t):
        ref = self._actor().push.remote([("event", key, label, state, node, t, os.getpid())])
        if state in ("finished", "failed"):  # the last word: wait, so it arrives before
            # the result (a cancelled task must not wait: Ray is tearing it down)
            import ray

            ray.get(ref)

    def output(self, key, stream, text):
        self._actor().push.remote([("output", key, stream, text)])


def _is_this_machine(host) -> bool:
    """True for a loopback name or one of this machine's addresses.

    Example:
        >>> _is_this_machine("127.0.0.1"), _is_this_machine("203.0.113.9")
        (True, False)
    """
    if host in ("localhost", "::1") or host.startswith("127."):
        return True
    import psutil

    return any(a.address == host for addrs in psutil.net_if_addrs().values() for a in addrs)


def _client_token(address) -> None:
    """Let Ray Client send this machine's token to a cluster on this machine.

    A ``ray start`` cluster uses token authentication by default. ``ray.init("auto")``
    sends the local token (``~/.ray/auth_token``); Ray Client sends one only once
    ``RAY_AUTH_MODE=token`` is set, and otherwise times out after 30 s. So for
    ``ray://`` to this machine, with ``RAY_AUTH_MODE`` unset, do what ``ray.init``
    does for ``auto`` (the token does not leave the machine); for another host the
    user sets ``RAY_AUTH_MODE`` and ``RAY_AUTH_TOKEN`` as Ray documents.
    """
    if os.environ.get("RAY_AUTH_MODE"):
        return
    host = address[len("ray://") :].rsplit(":", 1)[0].strip("[]")
    if not _is_this_machine(host):
        return
    try:  # Ray's own switch (private; absent in Rays without tokens)
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


class RayBackend(Backend):
    """A Ray cluster: ``ray.init(address=...)`` (``ray://``, ``auto``) or a local one.

    Example:
        >>> from backends import connect
        >>> b = connect("ray:local")          # doctest: +SKIP
        >>> [ref] = b.submit(abs, (-1,))      # doctest: +SKIP
        >>> b.get(ref)                        # doctest: +SKIP
        1
    """

    name = "ray"

    def __init__(self):
        self.started_here = False
        self._owns = False
        self.router = OutputRouter()
        self._gen = None
        self._actor = None
        self._remote = None
        self._keys: dict = {}  # ObjectRef hex -> task key
        self._pending: dict = {}  # task key -> submitted (no "running" event yet)
        self._events = collections.deque(maxlen=100_000)
        self._last = 0
        self._counts: dict = {}
        self._tags: dict = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    # ---- lifecycle ------------------------------------------------------------------
    def start(self, nodes=1, cpus=None):
        if nodes != 1:
            raise BackendError("ray:local starts one node; connect to a Ray cluster for more")
        self._init(address=None, num_cpus=cpus, include_dashboard=False)

    def connect(self, address, token=None):
        if address.startswith("ray://"):
            _client_token(address)
        self._init(address=address)

    def _init(self, **kw):
        import ray

        self._owns = not ray.is_initialized()  # else: the notebook's own ray.init()
        if not self._owns:
            self.started_here = False
        else:
            kw = {k: v for k, v in kw.items() if v is not None}
            try:
                ray.init(ignore_reinit_error=True, **kw)
            except Exception as e:  # no answer, or Ray Client without ray[client]
                _forget_half_connection(ray)
                where = kw.get("address") or "a local cluster"
                lines = str(e).strip().splitlines() or [""]
                said = lines[-1].strip()  # a server's traceback: its last line
                hint = ""
                if "connection timeout" in said:
                    hint = (
                        " (is a Ray Client server there: ray start --head "
                        "--ray-client-server-port PORT? a cluster with token "
                        "authentication also needs RAY_AUTH_MODE=token and its "
                        "RAY_AUTH_TOKEN)"
                    )
                raise BackendError(
                    f"ray: cannot connect to {where}: {type(e).__name__}: {said}{hint}"
                ) from None
            self.started_here = kw.get("address") is None
        name = f"kit-channel-{uuid.uuid4().hex[:12]}"
        self._actor = (
            ray.remote(_Channel)
            .options(name=name, namespace=NAMESPACE, num_cpus=0, max_concurrency=1)
            .remote()
        )
        self._channel = RayChannel(name)
        self._remote = ray.remote(worker.run)
        ray.get(self._actor.take.remote(0), timeout=60)  # the actor is up
        self._gen = object()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._poll_loop, args=(self._stop,), name="kit-ray-channel", daemon=True
        )
        self._thread.start()

    def stop(self) -> bool:
        import ray

        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._gen = None
        actor, self._actor = self._actor, None
        if self._owns:
            ray.shutdown()
        elif actor is not None:  # leave the notebook's own Ray as it was
            ray.kill(actor)
        return self.started_here

    def alive(self) -> bool:
        if self._gen is None:
            return False
        import ray

        return ray.is_initialized()

    def generation(self):
        return self._gen

    # ---- the channel ----------------------------------------------------------------
    def _poll_loop(self, stop):
        while not stop.wait(POLL):
            try:
                self._poll()
            except Exception:
                if stop.is_set() or not self.alive():
                    return

    def _poll(self):
        import ray

        actor = self._actor
        if actor is None:
            return
        with self._lock:  # one reader at a time: output stays in order
            last, events, out, counts = ray.get(actor.take.remote(self._last), timeout=30)
            for e in events:
                self._pending.pop(e["task_id"], None)
            self._events.extend(events)
            self._last, self._counts = last, counts
            for key, stream, text in out:
                self.router.deliver(key, stream, text)

    # ---- cluster state --------------------------------------------------------------
    def nodes(self):
        import ray

        out = []
        for n in ray.nodes():
            nid, alive = n["NodeID"], bool(n["Alive"])
            res = dict(n.get("Resources") or {})
            c = self._counts.get(nid, {})
            cpu = float(res.get("CPU", 0))
            running = c.get("running", 0)
            tag = self._tags.setdefault(nid, f"n{len(self._tags)}")
            out.append(
                {
                    "NodeID": nid,
                    "node_id": nid,
                    "Alive": alive,
                    "alive": alive,
                    "tag": tag,
                    "address": n.get("NodeManagerAddress"),
                    "NodeManagerAddress": n.get("NodeManagerAddress"),
                    "Resources": res,
                    "resources": res,
                    "available": {"CPU": max(0.0, cpu - running)},
                    "running": running,
                    "queued": 0,
                    "done": c.get("done", 0),
                    "failed": c.get("failed", 0),
                    "store_used": 0,
                    "store_limit": int(res.get("object_store_memory", 0)),
                }
            )
        return out

    def waiting(self) -> int:
        return len(self._pending)

    def events(self, since=0):
        with self._lock:
            if since >= self._last:
                return self._last, []
            return self._last, [e for e in self._events if e["seq"] > since]

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
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        opts = task_options(
            num_returns, name, num_cpus, resources, node, NodeAffinitySchedulingStrategy,
            runtime_env,
        )  # fmt: skip
        opts["max_retries"] = 0  # a cancelled cell must not run again
        key = uuid.uuid4().hex
        self.router.route(key, on_output)
        self._pending[key] = time.time()
        refs = self._remote.options(**opts).remote(self._channel, key, name or "task", fn, *args)
        refs = refs if isinstance(refs, list) else [refs]
        for r in refs:
            self._keys[r.hex()] = key
        return refs

    def key(self, handle) -> str:
        return self._keys.get(handle.hex()) or handle.task_id().hex()

    def release(self, handles):
        if not handles:
            return
        try:
            self._poll()  # lines printed just before the end reach their cell
        except Exception:
            pass
        key = self.key(handles[0])
        self.router.unroute(key)
        self._pending.pop(key, None)

    def is_handle(self, value) -> bool:
        import ray

        return isinstance(value, ray.ObjectRef)

    def put(self, value):
        import ray

        return ray.put(value)

    def get(self, handles, timeout=None):
        import ray

        return ray.get(handles, timeout=timeout)

    def wait(self, handles, num_returns=1, timeout=None):
        import ray

        return ray.wait(list(handles), num_returns=num_returns, timeout=timeout)

    def cancel(self, handle):
        import ray

        ray.cancel(handle)
        # the task may be torn down before it can say so: the driver says it (a later
        # "finished" from the task still counts, see Tally)
        self._actor.push.remote(
            [("event", self.key(handle), "", "cancelled", None, time.time(), 0)]
        )
        return None

    def classify(self, exc) -> Failure:
        from ray import exceptions as rex

        if isinstance(exc, (rex.TaskCancelledError, KeyboardInterrupt)):
            return CANCELLED
        if isinstance(exc, rex.RayTaskError):
            cause = getattr(exc, "cause", None)
            if isinstance(cause, KeyboardInterrupt):
                return CANCELLED
            info = remote_info(cause) if cause is not None else None
            if info is not None:
                return info
            return Failure(
                "raised",
                type(cause).__name__ if cause is not None else "RayTaskError",
                exc.traceback_str,
                None,
                exc.pid,
            )
        return remote_info(exc) or OTHER


def _forget_half_connection(ray) -> None:
    """After a failed ``ray.init``: undo what it made, or the next connect is refused.

    A Ray Client connect that fails mid-way (its server did not start) keeps its client
    worker: ``ray.shutdown()`` alone leaves it, and the next ``ray.init("ray://...")``
    says "ray client is already connected".
    """
    try:
        ray.shutdown()
    except Exception:
        pass
    try:
        from ray.util.client import ray as client_ray

        client_ray.disconnect()
    except Exception:
        pass
