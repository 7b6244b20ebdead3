"""kit's public calls, with Ray's names: ``init``, ``remote``, ``get``, ``wait``, ``put``...

A program written against Ray's core API runs with ``import kit as ray``.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time

from . import client as client_mod
from . import codeship, context, frontend, logs, serialization
from . import runtime_env as runtime_env_mod
from . import sync as sync_mod
from .actors import ActorClass, ActorHandle
from .errors import GetTimeoutError, KitError, ObjectLostError
from .object_ref import ObjectRef
from .protocol import Kind
from .records import object_id
from .remote_function import RemoteFunction

_lock = threading.RLock()
_state = {"client": None, "cluster": None, "ctx": None}


class ClusterContext:
    """What ``kit.init()`` returns: the cluster's address; a context manager.

    Example:
        >>> import kit
        >>> with kit.init(num_cpus=2) as ctx:
        ...     print(ctx.address_info["address"])  # doctest: +SKIP
    """

    def __init__(self, address, token, cluster, started):
        self.address_info = {"address": address, "node_id": None, "cluster": cluster}
        self.address = address
        self.token = token
        self.started_here = started
        self.dashboard_url = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shutdown()

    def disconnect(self):
        shutdown()

    def __repr__(self):
        try:
            n = len(nodes())
            cpus = cluster_resources().get("CPU", 0)
        except KitError:
            return f"ClusterContext({self.address}, shut down)"
        dash = f", dashboard={self.dashboard_url}" if self.dashboard_url else ""
        return f"ClusterContext({self.address}, nodes={n}, CPU={cpus:g}{dash})"

    def _repr_mimebundle_(self, include=None, exclude=None):
        show = frontend.hook("display")
        if show is None:
            return {"text/plain": repr(self)}
        return show(self, include=include, exclude=exclude)

    def _ipython_display_(self):
        show = frontend.hook("show")
        if show is not None:
            show(self)
            return
        from IPython.display import display

        display(self._repr_mimebundle_(), raw=True)


def is_initialized() -> bool:
    """True between ``init()`` and ``shutdown()``."""
    return _state["client"] is not None


def init(
    address=None,
    *,
    num_cpus=None,
    num_gpus=None,
    resources=None,
    object_store_memory=None,
    namespace=None,
    ignore_reinit_error=False,
    log_to_driver=True,
    token=None,
    num_nodes=1,
    encrypt=None,
    include_dashboard=None,
    dashboard_host="127.0.0.1",
    dashboard_port=None,
    runtime_env=None,
    autoscale=None,
    _redis_password=None,
    **_ignored,
):
    """Start a local cluster, or connect to one, and make this process its driver.

    Args:
        address: None starts a local cluster on loopback; "HOST:PORT" connects to
            a head started with ``kit start --head``; "auto" uses the one started
            on this host.
        num_cpus: task slots per node (default: this machine's cores).
        resources: custom resources per node, e.g. ``{"disk": 2}``.
        object_store_memory: store limit in bytes per node.
        ignore_reinit_error: return quietly if kit is already initialized.
        log_to_driver: print what tasks print, prefixed with their origin.
        token: the cluster's token (for ``address``); also ``KIT_TOKEN``.
        num_nodes: node agents to start on this machine (to try multi-node).
        encrypt: encrypt every connection with CurveZMQ (also ``KIT_ENCRYPT=1``);
            must match how the cluster was started.
        include_dashboard: serve the cluster's dashboard (default: yes, unless
            ``KIT_DASHBOARD=0``); its link is ``ctx.dashboard_url``.
        dashboard_host: the address the dashboard listens on (loopback by default).
        dashboard_port: its port (default 8265, or the next free one; 0: any).
        autoscale: ``(min_nodes, max_nodes)`` (or a dict that also sets ``idle_timeout``
            and ``wait``, in seconds): the local cluster starts ``min_nodes`` nodes and an
            autoscaler adds nodes when tasks wait for a slot and removes idle ones
            (``kit/autoscaler.py``); its decisions are events of state ``"cluster"``.
        runtime_env: the code and environment every task and actor of this driver
            runs in, with Ray's keys (``working_dir``, ``py_modules``, ``env_vars``,
            ``pip``; see ``kit.runtime_env``). Without it, the local modules a task
            refers to are shipped anyway (``kit.codeship``).

    Returns:
        A ``ClusterContext`` (a context manager that shuts down on exit).

    Raises:
        KitError: already initialized (unless ``ignore_reinit_error``).
        AuthenticationError: the head refused the token or the versions differ.

    Example:
        >>> import kit
        >>> ctx = kit.init(num_cpus=2)
        >>> kit.cluster_resources()["CPU"]
        2.0
        >>> kit.shutdown()
    """
    runtime_env_mod.check("runtime_env", runtime_env)
    with _lock:
        if _state["client"] is not None:
            if ignore_reinit_error:
                return _state["ctx"]
            raise KitError(
                "kit.init() was already called in this process; pass "
                "ignore_reinit_error=True, or call kit.shutdown() first"
            )
        token = token or _redis_password or os.environ.get("KIT_TOKEN")
        if encrypt is None:
            encrypt = os.environ.get("KIT_ENCRYPT", "") not in ("", "0")
        address = address or os.environ.get("KIT_ADDRESS")
        cluster = None
        if address in (None, "local"):
            from .launcher import start_local

            cpus = num_cpus if num_cpus is not None else (os.cpu_count() or 1)
            if autoscale is not None:
                from .scale_policy import bounds

                autoscale = bounds(autoscale)
                num_nodes = autoscale["min_nodes"]
            cluster = start_local(
                cpus,
                num_nodes=num_nodes,
                resources=resources,
                num_gpus=num_gpus or 0,
                object_store_memory=object_store_memory,
                encrypt=encrypt,
                dashboard={
                    "dashboard": include_dashboard is not False,
                    "dashboard_host": dashboard_host,
                    "dashboard_port": dashboard_port,
                },
                autoscale=autoscale,
            )
            address, token = cluster.address, cluster.token
            expect = num_nodes
        else:
            address, token, encrypt = _resolve_address(address, token, encrypt)
            expect = 1
        if not address.startswith("tcp://"):
            address = "tcp://" + address
        try:
            client = client_mod.Client(
                address, token, "driver", info=_driver_info(log_to_driver), encrypt=encrypt
            )
        except BaseException:
            if cluster is not None:
                cluster.stop()
            raise
        if cluster is not None:
            client.head_pid = cluster.proc.pid  # watched as a process (Client._head_dead)
        client_mod.install(client)
        _state.update(client=client, cluster=cluster)
        try:
            _wait_for_nodes(client, expect, started=cluster is not None)
            local = client.query("local_node", client_mod.host_id())
        except BaseException:
            shutdown()
            raise
        nodes()  # names the nodes in the prefix of lines tasks print (kit.logs)
        if local:
            client.node_id, client.node_tag = local["node_id"], local["tag"]
            client.store_limit = local.get("store_limit", 0)
            client.transfer = local.get("transfer")
            context.set_driver(local["node_id"].hex())
        ctx = ClusterContext(
            address.replace("tcp://", ""), token, client.cluster, cluster is not None
        )
        ctx.address_info["node_id"] = local["node_id"].hex() if local else None
        url = cluster.dashboard if cluster is not None else _head_dashboard(client)
        if url:
            ctx.dashboard_url = dashboard_link(url, token)
            ctx.address_info["webui_url"] = url
        _state["ctx"] = ctx
        codeship.enable(True)
        try:
            runtime_env_mod.set_job(runtime_env)
        except BaseException:
            shutdown()
            raise
        return ctx


def _driver_info(log_to_driver) -> dict:
    """What a driver tells the head about itself (shown on the dashboard's Drivers page)."""
    import sys

    main = getattr(sys.modules.get("__main__"), "__file__", None)
    name = os.path.basename(main) if main else ("notebook" if "ipykernel" in sys.modules else "")
    return {"log_to_driver": log_to_driver, "name": name}


def _head_dashboard(client):
    """The dashboard's URL as the head knows it (a cluster started elsewhere), or None."""
    try:
        return client.query("dashboard", None, timeout=10.0).get("url")
    except (KitError, AttributeError):
        return None


def dashboard_link(url, token, panel="") -> str:
    from .dashboard.auth import link

    return link(url, token, panel)


def dashboard_url(panel: str = "") -> str | None:
    """The link to the cluster's dashboard (with its view token), or None if it has none.

    Args:
        panel: show one panel alone: ``overview``, ``stream``, ``tasks``, ``actors``,
            ``workers`` or ``drivers`` (default: the whole page).

    The link carries a *view token*, derived from the cluster's token: it opens the
    dashboard (read-only) and nothing else.

    Example:
        >>> import kit
        >>> _ = kit.init(num_cpus=1)
        >>> kit.dashboard_url().startswith("http://127.0.0.1:")
        True
        >>> kit.shutdown()
    """
    ctx = _state["ctx"]
    if ctx is None:
        raise KitError("kit is not initialized: call kit.init() first")
    url = ctx.address_info.get("webui_url")
    return dashboard_link(url, ctx.token, panel) if url else None


JOIN_SECONDS = 120.0  # how long kit.init waits for its nodes to join (KIT_JOIN_TIMEOUT)


def _wait_for_nodes(client, expect, started):
    """Return once ``expect`` nodes are alive; else raise saying how many joined."""
    timeout = float(os.environ.get("KIT_JOIN_TIMEOUT") or JOIN_SECONDS)
    try:
        client.query("wait_nodes", expect, timeout=timeout)
    except GetTimeoutError:
        alive = sum(1 for n in client.query("nodes") if n["alive"])
        what = "started" if started else "expected"
        raise KitError(
            f"only {alive} of the {expect} nodes {what} joined within {timeout:.0f} s; "
            f"the machine may be too loaded to start that many (ask for fewer nodes, or "
            f"set KIT_JOIN_TIMEOUT to wait longer)"
        ) from None


def _resolve_address(address, token, encrypt):
    from .cli import read_state

    st = read_state()
    if address == "auto":
        if st is None:
            raise KitError(
                "address='auto' but no cluster was started on this host; run "
                "`kit start --head` first, or call kit.init() for a local one"
            )
        return st["address"], token or st["token"], encrypt or st.get("encrypt", False)
    if st is not None and st["address"].split(":")[-1] == address.split(":")[-1]:
        token = token or st["token"]
        encrypt = encrypt or st.get("encrypt", False)
    token = token or _cluster_file_token(address)
    if not token:
        raise KitError(
            f"connecting to {address} needs the cluster's token: pass token=..., "
            f"or set KIT_TOKEN (`kit start --head` printed it)"
        )
    return address, token, encrypt


def _cluster_file_token(address):
    """The token of a cluster ``kit up`` started at ``address`` (its state file here), or None."""
    import glob
    import json

    from .paths import state_dir

    want = address.replace("tcp://", "")
    for path in glob.glob(os.path.join(state_dir(create=False), "clusters", "*.json")):
        try:
            with open(path) as f:
                st = json.load(f)
        except (OSError, ValueError):
            continue
        if st.get("address") == want:
            return st.get("token")
    return None


def shutdown() -> None:
    """Disconnect, and stop the local cluster if ``init`` started one.

    Example:
        >>> import kit
        >>> _ = kit.init(num_cpus=1)
        >>> kit.shutdown()
        >>> kit.is_initialized()
        False
    """
    notify = frontend.registered("shutdown") if _state["client"] is not None else None
    if notify is not None:  # the notebook's views read the last counts, then show the end
        try:
            notify(_stop)
            return
        except Exception as e:  # a broken view must not keep the cluster up
            print(f"kit: the notebook's views failed to stop cleanly: {e!r}", file=sys.stderr)
    _stop()


def _stop() -> None:
    with _lock:
        client, cluster = _state["client"], _state["cluster"]
        _state.update(client=None, cluster=None, ctx=None)
        runtime_env_mod.forget()
        codeship.enable(False)
        sync_mod.forget()
        client_mod.uninstall()
        if client is not None:
            if cluster is not None:
                try:
                    with client.lock:
                        client._flush_refs()
                        client.tx.send_multipart(client.tx_signer.pack(Kind.SHUTDOWN, "cluster"))
                except Exception:
                    pass
            client.close(notify=cluster is None)
        if cluster is not None:
            cluster.stop()


atexit.register(shutdown)


def _client():
    """The process's client (a worker's own inside tasks); starts a local cluster if none."""
    c = client_mod._current
    if c is None:
        with _lock:
            if _state["client"] is None:
                ctx = init()
                cpus = cluster_resources().get("CPU", 0)
                print(
                    f"kit: started a local cluster ({cpus:g} CPUs) for this call, since none "
                    f"was running; kit.shutdown() stops it",
                    file=sys.stderr,
                    flush=True,
                )
                del ctx
            c = _state["client"]
    return c


def _current_client():
    """The driver's client, or the worker's inside a task."""
    c = client_mod._current
    if c is None:
        raise KitError("kit is not initialized: call kit.init() first")
    return c


def remote(*args, **options):
    """Make a function a task, or a class an actor.

    Works bare (``@kit.remote``) or with options (``@kit.remote(num_cpus=2)``).

    Example:
        >>> import kit
        >>> @kit.remote(num_returns=2)
        ... def two():
        ...     return 1, 2
        >>> a, b = two.remote()
        >>> kit.get([a, b])
        [1, 2]
    """
    if len(args) == 1 and not options and callable(args[0]):
        return _make_remote(args[0], {})
    if args or not options:
        raise TypeError(
            "@kit.remote is used bare (@kit.remote) or with options "
            "(@kit.remote(num_cpus=2)); @kit.remote() with empty parentheses is not allowed, "
            "as in Ray"
        )
    return lambda fn: _make_remote(fn, options)


def _make_remote(obj, options):
    import inspect

    if inspect.isclass(obj):
        return ActorClass(obj, options)
    if callable(obj):
        return RemoteFunction(obj, options)
    raise TypeError(f"@kit.remote needs a function or a class, not {type(obj).__name__}")


def _as_list(refs, what):
    single = isinstance(refs, ObjectRef)
    lst = [refs] if single else list(refs)
    for r in lst:
        if not isinstance(r, ObjectRef):
            raise TypeError(
                f"{what} takes ObjectRefs (or a list of them), got "
                f"{type(r).__name__}; pass the result of .remote() or kit.put()"
            )
    return single, lst


def get(refs, *, timeout=None, progress=False):
    """Wait for objects and return their values (a task's error is raised here).

    Args:
        refs: an ObjectRef or a list of them.
        timeout: seconds to wait; ``GetTimeoutError`` after that.
        progress: show done/total, failures, rate and time left while waiting
            (a widget in notebooks, a text bar elsewhere); a string labels it.

    Example:
        >>> import kit
        >>> kit.get(kit.put("hi"))
        'hi'
    """
    client = _current_client()
    codeship.recheck()  # a burst of .remote() calls is over: edits are looked for again
    single, lst = _as_list(refs, "kit.get")
    oids = [r._id for r in lst]
    show_progress = frontend.hook("progress") if progress else None
    if show_progress is not None and context.get_runtime_context().worker_mode == "driver":
        with show_progress(lst, label=progress if isinstance(progress, str) else ""):
            client.wait_ready(oids, len(oids), timeout)
    else:
        client.wait_ready(oids, len(oids), timeout)
    deadline = time.monotonic() + (timeout if timeout is not None else _REFETCH_SECONDS)
    out = [_value(client, r, deadline) for r in lst]
    return out[0] if single else out


_REFETCH_SECONDS = 60.0  # how long get keeps asking for an object whose node died


def _value(client, ref, deadline):
    """The value of a ready ref; if its node died, wait for the head to make it again."""
    payload = client.values.get(ref._id)
    while True:
        if payload is None:
            if client.dead_reason:
                raise client.dead()
            raise KitError(f"object {ref.hex()} was lost")
        try:
            return serialization.from_payload(payload)
        except ObjectLostError:
            left = deadline - time.monotonic()
            if payload[0] != serialization.SHARED or left <= 0:
                raise
        # The head either learns the node is gone and makes the object again (a
        # new payload), fails it with a clear error, or still sends the old one.
        client.forget_payload(ref._id)
        client.wait_ready([ref._id], 1, left)
        new = client.values.get(ref._id)
        if new == payload:
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
        payload = new


def wait(refs, *, num_returns=1, timeout=None, fetch_local=True):
    """Wait until ``num_returns`` of ``refs`` are ready; return ``(ready, not_ready)``.

    Both lists keep the order of ``refs``. With a timeout, returns what is ready then.

    Example:
        >>> import kit
        >>> refs = [kit.put(i) for i in range(3)]
        >>> ready, rest = kit.wait(refs, num_returns=2)
        >>> len(ready), len(rest)
        (2, 1)
    """
    client = _current_client()
    codeship.recheck()
    _, lst = _as_list(refs, "kit.wait")
    if num_returns > len(lst):
        raise ValueError(f"num_returns={num_returns} but only {len(lst)} refs were given")
    oids = [r._id for r in lst]
    try:
        client.wait_ready(oids, num_returns, timeout)
    except GetTimeoutError:
        pass
    values = client.values
    ready, not_ready = [], []
    for r in lst:
        (ready if r._id in values and len(ready) < num_returns else not_ready).append(r)
    return ready, not_ready


def put(value) -> ObjectRef:
    """Store a value in the cluster once; pass the ref to many tasks.

    Large values (numpy arrays, bytes) go to the node's shared memory and are
    read there without copying.

    Example:
        >>> import kit, numpy as np
        >>> ref = kit.put(np.zeros(10))
        >>> kit.get(ref).sum()
        0.0
    """
    client = _client()
    if isinstance(value, ObjectRef):
        raise TypeError("kit.put() of an ObjectRef is not allowed; pass the ref itself")
    payload, contained = serialization.to_payload(value, client.store_name(), client.node_id)
    if contained:
        client.escape(contained)
    ref = ObjectRef(object_id(client.new_id()), _announce=False)  # the PUT announces the hold
    client.put_payload(ref._id, payload, contained)
    return ref


def cancel(ref, *, force=False, recursive=True):
    """Cancel the task that makes ``ref``: queued, it never runs; running, it is interrupted.

    ``force=True`` kills the worker instead. ``get`` on the ref then raises
    ``TaskCancelledError``. With ``recursive=True`` (the default, as in Ray) the
    tasks it submitted, and theirs, are cancelled too.

    Example:
        >>> import kit, time
        >>> @kit.remote
        ... def slow():
        ...     time.sleep(60)
        >>> r = slow.remote()
        >>> kit.cancel(r)
    """
    if not isinstance(ref, ObjectRef):
        raise TypeError("kit.cancel takes the ObjectRef of a task")
    _cancel_task(ref.task_id(), force=force, recursive=recursive)


def _cancel_task(task_id, *, force=False, recursive=True):
    """``cancel`` by task id, for callers that hold no ref to the task's results."""
    client = _current_client()
    direct = client.direct
    if direct is not None and direct.cancel(task_id, bool(force)):
        if recursive:  # the tasks it submitted went through the head, which knows them
            client.send(Kind.CANCEL, (task_id, False, True))
        return
    client.send(Kind.CANCEL, (task_id, bool(force), bool(recursive)))


def kill(actor, *, no_restart=True):
    """Stop an actor now; pending and later calls raise ``ActorDiedError``.

    With ``no_restart=False`` its process is killed as if it had crashed: an actor
    created with ``max_restarts`` is restarted (its calls retried per
    ``max_task_retries``), others die.

    Example:
        >>> import kit
        >>> @kit.remote
        ... class A:
        ...     def f(self):
        ...         return 1
        >>> a = A.remote()
        >>> kit.kill(a)
    """
    if not isinstance(actor, ActorHandle):
        raise TypeError("kit.kill takes an actor handle")
    _current_client().send(Kind.ACTOR, ("kill", actor._aid, bool(no_restart)))


def get_actor(name, namespace=None) -> ActorHandle:
    """Return the handle of a named actor (``Cls.options(name=...).remote()``).

    Raises:
        ValueError: no live actor has that name.

    Example:
        >>> import kit
        >>> @kit.remote
        ... class A:
        ...     pass
        >>> a = A.options(name="a1").remote()
        >>> kit.get_actor("a1") == a
        True
    """
    client = _current_client()
    ans = client.request(Kind.ACTOR, lambda req: ("get", req, name, namespace))
    if ans is None:
        raise ValueError(
            f"no live actor named {name!r} (namespace {namespace!r}); "
            f"create it with Cls.options(name={name!r}).remote()"
        )
    aid, meta = ans
    return ActorHandle(aid, meta)


def nodes():
    """The cluster's nodes: a list of dicts (``NodeID``, ``Alive``, ``Resources``, ...).

    Example:
        >>> import kit
        >>> len(kit.nodes())
        1
    """
    out = [_node_dict(n) for n in _current_client().query("nodes")]
    logs.name_nodes({n["node_id"]: n["tag"] for n in out})  # printed lines say n1, not an id
    return out


def _node_dict(n) -> dict:
    """A node as ``nodes()`` shows it (Ray's keys, and kit's own), from the head's snapshot."""
    return {
        "NodeID": n["node_id"].hex(),
        "Alive": n["alive"],
        "NodeManagerAddress": n.get("address"),
        "Resources": n["resources"],
        "alive": n["alive"],
        "node_id": n["node_id"].hex(),
        "address": n.get("address"),
        "resources": n["resources"],
        "available": n["available"],
        "running": n["running"],
        "queued": n["queued"],
        "done": n["done"],
        "failed": n["failed"],
        "store_used": n["store_used"],
        "store_limit": n.get("store_limit", 0),
        "tag": n.get("tag"),
        "pid": n.get("pid"),
    }


def _sum_resources(key):
    total = {}
    for n in _current_client().query("nodes"):
        if n["alive"]:
            for k, v in n[key].items():
                total[k] = total.get(k, 0.0) + v
    return total


def cluster_resources() -> dict:
    """Total resources of the live nodes, e.g. ``{"CPU": 4.0}``.

    Example:
        >>> import kit
        >>> kit.cluster_resources()["CPU"] > 0
        True
    """
    return _sum_resources("resources")


def available_resources() -> dict:
    """Resources not in use right now, e.g. ``{"CPU": 3.0}``.

    Example:
        >>> import kit
        >>> kit.available_resources().get("CPU", 0) >= 0
        True
    """
    return {k: v for k, v in _sum_resources("available").items() if v > 0}


def timeline():
    """Recent task events as dicts (task, label, state, time, worker, node).

    Example:
        >>> import kit
        >>> isinstance(kit.timeline(), list)
        True
    """
    return events(0)[1]


def events(since=0):
    """Task state changes after sequence number ``since``: ``(last_seq, [event dict])``.

    Each event: ``seq``, ``task_id``, ``label``, ``state`` (queued, running,
    finished, failed, cancelled), ``time``, ``worker``, ``node``, ``started`` and
    ``called``: on an ended task, when it began on its worker and when its function was
    called there, after loading the function, its imports and its arguments (the start-up
    of a fresh worker; None if that took under a millisecond). The head keeps the last
    100,000; pass the ``last_seq`` you got to read only what is new.

    Example:
        >>> import kit
        >>> last, evs = kit.events()
        >>> last2, new = kit.events(last)
    """
    last, raw = _current_client().query("events", since)
    out = []
    for e in raw:
        seq, tid, label, state, t, wid, node = e[:7]
        started = e[7] if len(e) > 7 else None
        called = e[8] if len(e) > 8 else None
        out.append(
            {
                "seq": seq,
                "task_id": tid.hex(),
                "label": label,
                "state": state,
                "time": t,
                "worker": wid.hex() if wid else None,
                "node": node.hex() if node else None,
                "started": started,
                "called": called,
            }
        )
    return last, out


def cluster_status() -> dict:
    """The cluster at a glance: nodes, tasks waiting for a node, task counts, and the
    autoscaler's last decisions (``scaling``: ``(time, text)``, oldest first; empty
    without an autoscaler). ``counts`` has every key from the start (0 until it
    happens): tasks ``submitted``, ``finished``, ``failed``, ``retried`` (run again after
    a failure), ``rebuilt`` (run again to make a lost result) and objects ``spilled``.

    Example:
        >>> import kit
        >>> st = kit.cluster_status()
        >>> sorted(st)
        ['counts', 'nodes', 'scaling', 'waiting']
    """
    st = _current_client().query("status")
    scaling = [tuple(x) for x in st.get("scaling", ())]
    return {"nodes": nodes(), "waiting": st["waiting"], "counts": st["counts"], "scaling": scaling}


get_runtime_context = context.get_runtime_context
