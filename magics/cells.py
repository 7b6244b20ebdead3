"""A ``%%remote`` cell as tasks of the current backend: plan, ship, submit, wait, bring back.

    plan_cell(source, options)       pure: free names, -o, --map, filename, label
        │
    Session.submit(plan, options)    pack the free names from user_ns (PutCache for
        │                            large values), one task per cell or --map item
        │                            (backend.submit), each task's output routed to
        │                            the cell's sink
        ├── blocking:  Job.wait_here()  the cell's thread prints lines as they come;
        │                               Ctrl-C / kernel interrupt cancels the tasks
        │              Job.results()    -o names into user_ns, last value returned
        └── --no-block: -o names bound to the engine's refs (futures) now; a
                        widgets.StatusLine follows the tasks (the widgets'
                        updater thread); a job thread keeps
                        the output area current and, when the tasks end, tells the
                        status line how each one ended

Where a task runs comes from the backend's task events: the "running" event
names the node. Every cluster call goes through ``backends.current()`` (kit,
Ray or Dask; see ``backends``), never an engine's internals.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field

import backends
from backends.base import short_id

from . import output, render, runner
from .analysis import MapSpec, assigned_names, compile_cell, free_names, parse_map
from .shipping import PutCache, pack, unpicklable


class CellUsageError(ValueError):
    """An option of a magic is wrong; the message is one line saying what to write."""


@dataclass
class CellPlan:
    """What one ``%%remote`` cell (or ``%remote`` expression) will do."""

    source: str
    filename: str
    label: str
    free: set
    outputs: list = field(default_factory=list)
    map: MapSpec | None = None
    has_last: bool = False
    first_line: int = 2


def plan_cell(
    source: str, number: int, outputs=(), map_text=None, name=None, kind: str = "cell"
) -> CellPlan:
    """Check a cell and work out what it reads and returns; no cluster involved.

    Raises:
        SyntaxError: the cell does not parse (line numbers are the cell's).
        CellUsageError: a bad ``-o`` name or ``--map`` text.

    Example:
        >>> p = plan_cell("y = x + 1\\ny", 3, outputs=["y"])
        >>> p.filename, sorted(p.free), p.has_last
        ('<remote-cell-3>', ['x'], True)
    """
    filename = f"<remote-{kind}-{number}>"
    first_line = 2 if kind == "cell" else 1  # a cell's body starts below %%remote
    code = compile_cell(source, filename, first_line)
    mapspec = None
    if map_text:
        try:
            mapspec = parse_map(map_text)
        except ValueError as e:
            raise CellUsageError(str(e)) from None
    bound = mapspec.names if mapspec else ()
    free = free_names(source, bound=bound)
    outputs = list(outputs)
    bad = [n for n in outputs if not n.isidentifier()]
    if bad:
        raise CellUsageError(f"-o takes names separated by commas, e.g. -o a,b; got {bad[0]!r}")
    unknown = [n for n in outputs if n not in free and n not in assigned_names(source)]
    if unknown:
        raise CellUsageError(f"-o {unknown[0]}: the cell neither assigns nor reads {unknown[0]!r}")
    return CellPlan(
        source,
        filename,
        name or filename.strip("<>"),
        free,
        outputs,
        mapspec,
        code.last is not None,
        first_line,
    )


def resolve_node(text: str, nodes) -> str:
    """A node id (hex) from its id, a unique id prefix or its tag (``n1``).

    Example:
        >>> resolve_node("n1", [{"node_id": "aa11", "tag": "n0"}, {"node_id": "bb22", "tag": "n1"}])
        'bb22'
    """
    ids = [n["node_id"] for n in nodes]
    for n in nodes:
        if text in (n["node_id"], n.get("tag")):
            return n["node_id"]
    hits = [i for i in ids if i.startswith(text.lower())]
    if len(hits) == 1:
        return hits[0]
    known = ", ".join(f"{n.get('tag')} ({n['node_id']})" for n in nodes)
    raise CellUsageError(f"--node {text}: no such node; the nodes are {known}")


def _one_line(exc: BaseException, text: str | None = None) -> BaseException:
    """Make IPython show ``exc`` as one line instead of a traceback through the magic."""
    line = text or f"{type(exc).__name__}: {exc}"
    exc._render_traceback_ = lambda: [line]
    return exc


@dataclass
class _Task:
    refs: list
    index: int | None
    node: str | None = None
    done: bool = False


class Job:
    """The tasks of one cell, their output sink, and the thread that waits for them."""

    def __init__(self, session, plan: CellPlan, sink, backend):
        self.session = session
        self.backend = backend
        self.plan = plan
        self.sink = sink
        self.tasks: list = []
        self.finished = threading.Event()
        self.cancelled = False
        self.note = None  # what the engine says about cancelling
        self.since = _event_cursor(backend)  # task events after this one concern this cell
        self.on_tick = None
        self.on_done = None
        self.tick = 1.0

    # ---- output of the tasks (called from the backend's thread) ---------------------------

    def handler(self, task: _Task):
        mapped = self.plan.map is not None

        def on_output(stream, text):
            if self.cancelled:
                return
            if mapped:
                text = output.prefix_lines(text, f"[{task.index}] ")
            self.sink.write(stream, text)

        return on_output

    def add(self, submit, index):
        """Submit one task with ``submit(on_output)``; its output is routed before it is sent."""
        task = _Task([], index)
        task.refs = submit(self.handler(task))
        self.tasks.append(task)
        return task

    # ---- waiting --------------------------------------------------------------------------

    def start(self):
        threading.Thread(target=self._wait, name=f"kit-{self.plan.label}", daemon=True).start()

    def _wait(self):
        firsts = [t.refs[0] for t in self.tasks]
        b = self.backend
        try:
            while True:
                try:
                    ready, rest = b.wait(firsts, num_returns=len(firsts), timeout=self.tick)
                except BaseException:  # the cluster went away (Ray: SystemExit)
                    break
                ready = set(ready)
                for t in self.tasks:
                    t.done = t.refs[0] in ready
                if not rest or not b.alive():
                    break
                if self.on_tick is not None:
                    self._call(self.on_tick)
        finally:
            for t in self.tasks:
                try:
                    b.release(t.refs)
                except Exception:
                    pass
            if self.on_done is not None:
                self._call(self.on_done)
            self.finished.set()
            done = getattr(self.sink, "done", None)
            if done is not None:
                done()

    @staticmethod
    def _call(fn):
        try:
            fn()
        except Exception as e:  # a view that fails must not hang the cell
            print(f"kit: %%remote status update failed: {e!r}", file=sys.__stderr__)

    def cancel(self) -> None:
        """Cancel every task of the cell that has not finished."""
        self.cancelled = True
        for t in self.tasks:
            if not t.done:
                try:
                    self.note = self.backend.cancel(t.refs[0]) or self.note
                except Exception:
                    pass

    def wait_here(self) -> None:
        """Print the tasks' output in this thread until they end; Ctrl-C cancels them.

        Raises:
            KeyboardInterrupt: interrupted; the tasks were cancelled (shown as one line).
        """
        try:
            while not self.sink.pump(0.5):
                pass
        except KeyboardInterrupt:
            self.cancel()
            running = self.nodes_seen()
            where = f" (running on {', '.join(running)})" if running else ""
            note = f"; {self.note}" if self.note else ""
            raise _one_line(
                KeyboardInterrupt(), f"KeyboardInterrupt: cancelled {self.plan.label}{where}{note}"
            ) from None

    # ---- results ----------------------------------------------------------------------

    def results(self):
        """Per task, ``(last value, [outputs])``; a task's error is raised for IPython.

        A task returns ``(node id, last value, *outputs)`` (see ``runner.run_cell``).
        """
        out = []
        for t in self.tasks:
            try:
                node, value, *outs = self.backend.get(t.refs, timeout=60)
            except Exception as err:
                raise self.error(err, t) from None
            t.node = node or t.node
            out.append((value, outs))
        return out

    def error(self, err, task):
        """``err`` ready for IPython: a task's exception shows the remote traceback, the
        rest (cancelled, worker crashed, cluster gone) one line."""
        failure = self.backend.classify(err)
        if failure.kind != "raised":
            return _one_line(err)
        lines = render.remote_error_lines(
            failure.type_name,
            failure.traceback,
            self.session.node_name(failure.node),
            failure.pid,
            item=task.index if self.plan.map is not None else None,
        )
        try:
            err._render_traceback_ = lambda: lines
        except AttributeError:
            pass
        task.node = failure.node or task.node
        return err

    def nodes_seen(self) -> list:
        """Names of the nodes the cell's tasks were sent to, from the task events.

        Example: ``["n0 ab12cd34"]``; empty if no task reached a node (or the cluster is gone).
        """
        if self.since is not None:
            keys = {}
            for t in self.tasks:
                try:
                    keys[self.backend.key(t.refs[0])] = t
                except Exception:
                    pass
            try:
                _, events = self.backend.events(self.since)
            except Exception:
                events = []
            for e in events:
                t = keys.get(e.get("task_id"))
                if t is not None and e.get("node"):
                    t.node = e["node"]
        return sorted({self.session.node_name(t.node) for t in self.tasks if t.node})


def _event_cursor(backend):
    """The sequence number of the cluster's last task event (None if it cannot be read)."""
    try:
        return backend.events(backends.LATEST)[0]
    except Exception:
        return None


class Session:
    """The extension's state in one IPython shell: the put cache and the cluster it belongs to."""

    def __init__(self, shell):
        self.shell = shell
        self.cache = PutCache()
        self.generation = None
        self.names: dict = {}
        self.jobs: list = []

    # ---- the cluster ------------------------------------------------------------------------

    def ensure_cluster(self):
        """The current backend; starts a local kit cluster if none is running (saying so)."""
        b = backends.current()
        if not b.alive():
            if b.name != "kit":  # its cluster went away: back to kit's
                b = backends.use(None)
            if not b.alive():
                b.start()
                print(
                    f"kit: started a local cluster ({b.cpus():g} CPUs) for %%remote; "
                    f"%cluster stop stops it"
                )
        gen = b.generation()
        if gen is not self.generation:  # a new cluster: refs of the old one are void
            self.forget()
            self.generation = gen
        return b

    def forget(self) -> None:
        self.cache.clear()
        self.names.clear()
        self.generation = None

    def node_name(self, node_id, short=False) -> str:
        """``"n0 ab12cd34"`` for a node id (``"n0"`` with ``short``)."""
        if not node_id:
            return "?"
        tag = self.names.get(node_id)
        if tag is None:
            try:
                self.names.update(
                    {n["node_id"]: n.get("tag") or "" for n in backends.current().nodes()}
                )
            except Exception:
                pass
            tag = self.names.setdefault(node_id, "")
        sid = short_id(node_id)
        if short:
            return tag or sid
        return f"{tag} {sid}".strip()

    # ---- submitting -------------------------------------------------------------------------

    def task_options(
        self, backend, plan: CellPlan, num_cpus=None, resources=None, node=None, env=None
    ) -> dict:
        opts = {"num_returns": 2 + len(plan.outputs), "name": plan.label}
        if env:
            opts["runtime_env"] = env
        if num_cpus is not None:
            opts["num_cpus"] = num_cpus
        if resources:
            opts["resources"] = resources
        if node:
            opts["node"] = resolve_node(node, backend.nodes())
        return opts

    def submit(self, plan: CellPlan, sink, **task_opts) -> Job:
        """Ship the cell's free names and submit one task per cell (or ``--map`` item)."""
        b = self.ensure_cluster()
        ns = self.shell.user_ns
        items = None
        if plan.map is not None:
            try:
                items = list(eval(plan.map.iterable, ns))
            except Exception as e:
                raise CellUsageError(
                    f"--map: {plan.map.iterable} failed in the notebook: {type(e).__name__}: {e}"
                ) from None
            if not items:
                raise CellUsageError(f"--map: {plan.map.iterable} gave no items")
        opts = self.task_options(b, plan, **task_opts)
        self.cache.prune(ns)
        ship = pack(
            plan.free, ns, getattr(self.shell, "user_ns_hidden", {}), self.cache, is_ref=b.is_handle
        )
        spec = {
            "source": plan.source,
            "filename": plan.filename,
            "first_line": plan.first_line,
            "values": ship.values,
            "modules": ship.modules,
            # the module objects too: kit ships the notebook's local modules by content
            # when it pickles them, and the runner's imports by name then find them
            "module_objects": [ns[n] for n in ship.modules],
            "args": ship.layout,
            "outputs": plan.outputs,
            "target": plan.map.target if plan.map is not None else None,
        }
        job = Job(self, plan, sink, b)

        def one(first, *rest):
            return lambda on_output: b.submit(
                runner.run_cell,
                (first, time.time(), *ship.args, *rest),
                on_output=on_output,
                **opts,
            )

        try:
            bad = unpicklable(ship.values)
            if bad is not None:
                name, err = bad
                raise backends.SerializationError(
                    f"the cell uses {name!r} ({type(ns[name]).__name__}), which cannot be "
                    f"sent to a worker ({type(err).__name__}: {err}); create it inside "
                    f"the cell instead"
                )
            if items is None:
                job.add(one(spec), None)
            else:
                shared = b.put(spec)
                for i, item in enumerate(items):
                    job.add(one(shared, item), i)
        except KeyboardInterrupt:
            job.cancel()
            raise
        except CellUsageError:
            raise
        except Exception as e:
            job.cancel()
            raise _one_line(e) from None
        return job

    # ---- the two ways to run ------------------------------------------------------------

    def run_blocking(self, plan: CellPlan, **task_opts):
        """Run the cell and wait; return its value (a list for ``--map``).

        A ``--map`` cell shows a status line (items done, running, failed) while it waits.
        """
        job = self.submit(plan, output.QueueSink(), **task_opts)
        line = None
        if plan.map is not None:
            line = output.batch_line(self.shell, plan.label, [t.refs[0] for t in job.tasks])
        job.start()
        try:
            job.wait_here()
            results = job.results()
        finally:
            if line is not None:
                line.finish(cancelled=job.cancelled)
        ns = self.shell.user_ns
        if plan.map is None:
            value, outs = results[0]
            ns.update(zip(plan.outputs, outs))
            return value
        for k, name in enumerate(plan.outputs):
            ns[name] = [outs[k] for _, outs in results]
        return [value for value, _ in results] if plan.has_last else None

    def run_background(self, plan: CellPlan, **task_opts) -> Job:
        """Submit the cell and return at once; -o names become the engine's refs (futures)."""
        view = output.make_view(self.shell, plan.label)
        job = self.submit(plan, view.sink, **task_opts)
        ns = self.shell.user_ns
        for k, name in enumerate(plan.outputs):
            refs = [t.refs[2 + k] for t in job.tasks]
            ns[name] = refs if plan.map is not None else refs[0]
        view.show([t.refs[0] for t in job.tasks])
        job.tick = 0.25

        def done():
            try:
                self._finish_background(job, view)
            finally:
                if job in self.jobs:
                    self.jobs.remove(job)

        job.on_tick, job.on_done = view.flush, done
        self.jobs.append(job)
        job.start()
        return job

    def _finish_background(self, job: Job, view) -> None:
        view.flush()
        values, failed = [], 0
        b = job.backend
        for t in job.tasks:
            t.done = True
            state = "finished"
            try:
                t.node = b.get(t.refs[0], timeout=30) or t.node
                if job.plan.has_last:
                    values.append(b.get(t.refs[1], timeout=30))
            except Exception as e:
                kind = b.classify(e).kind
                if kind == "cancelled":
                    job.cancelled = True
                    state = "cancelled"
                else:
                    failed += 1
                    state = "failed"
                    err = job.error(e, t)
                    view.show_error(
                        err._render_traceback_()
                        if kind == "raised"
                        else [f"{type(e).__name__}: {e}"]
                    )
            node = self.node_name(t.node, short=True) if t.node else None
            view.line.set_task(t.refs[0], state, node)
        if job.plan.has_last and not failed:
            value = values if job.plan.map is not None else values[0]
            if value is not None:
                view.show_value(value)
        view.flush()
        view.finish()
