"""The ``%cluster``, ``%remote`` and ``%%remote`` magics: option parsing, then backend calls.

Every cluster call goes to ``backends.current()``: kit's runtime by default, or
the Ray or Dask cluster that ``%cluster connect`` chose.

Everything with moving parts lives elsewhere: ``cells`` submits and waits,
``analysis`` reads the cell, ``shipping`` packs the namespace, ``render``
formats. A wrong option is a one-line ``UsageError``; ``--help`` prints the
usage with an example.
"""

from __future__ import annotations

import json

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.utils.process import arg_split

import backends
import kit

from . import render
from .cells import CellUsageError, Session, plan_cell

_HELP = ("-h", "--help")


def cell_number(shell) -> int:
    """The number in the running cell's ``In [N]`` prompt (and its ``Out[N]``).

    IPython 9 adds one to ``shell.execution_count`` before it runs a cell, IPython 8
    after; the display hook's ``prompt_count`` is the cell's own number on both, in a
    terminal and in a kernel (which shows that number in JupyterLab's prompt).

    Example:
        >>> from IPython.testing.globalipapp import get_ipython
        >>> cell_number(get_ipython()) >= 0  # doctest: +SKIP
        True
    """
    return shell.displayhook.prompt_count


def _wants_help(line: str) -> bool:
    return any(tok in _HELP for tok in line.split())


def _parse(func, line: str, magic: str):
    """Parse ``line`` with ``func``'s arguments; a mistake is one line naming the fix.

    Quotes work as in a shell (``--map "i in range(8)"``), unlike
    ``parse_argstring``, which keeps them.
    """
    try:
        return func.parser.parse_args(arg_split(line, posix=True))
    except ValueError as e:  # unbalanced quotes
        raise UsageError(f"{magic}: {e} (see {magic} --help)") from None
    except UsageError as e:
        raise UsageError(f"{magic}: {e} (see {magic} --help)") from None
    except SystemExit:
        raise UsageError(f"{magic}: bad options (see {magic} --help)") from None


@magics_class
class KitMagics(Magics):
    """``%cluster``, ``%remote`` and ``%%remote`` (``%load_ext kit`` registers them)."""

    def __init__(self, shell):
        super().__init__(shell)
        self.session = Session(shell)

    # ---- %kit_as_ray ------------------------------------------------------------------

    @line_magic
    def kit_as_ray(self, line):
        """``%kit_as_ray``: from here on, ``import ray`` in this notebook gives kit.

        One line at the top of a notebook written for Ray: ``import ray``, ``ray.init()``,
        ``from ray.util import ActorPool`` and the rest then run on kit, and so do the
        notebook's own modules that import ray, in its tasks. A real Ray installed here is
        shadowed (it says so); one already imported in this kernel cannot be (restart it).

        Example::

            %load_ext kit
            %kit_as_ray
            import ray
            ray.init()
        """
        if line.strip() and not _wants_help(line):
            raise UsageError("%kit_as_ray takes no options (see %kit_as_ray?)")
        if _wants_help(line):
            print(self.kit_as_ray.__doc__)
            return
        try:
            kit.install_ray_alias()
        except ImportError as e:
            raise UsageError(f"%kit_as_ray: {e}") from None

    # ---- %cluster ---------------------------------------------------------------------

    @line_magic
    @magic_arguments()
    @argument(
        "action",
        nargs="?",
        default="status",
        choices=[
            "start",
            "connect",
            "status",
            "monitor",
            "dashboard",
            "sync",
            "stop",
            "up",
            "down",
        ],
        help="what to do (default: status)",
    )
    @argument(
        "address",
        nargs="?",
        help="for connect: HOST:PORT (kit), ray://HOST:PORT, ray:auto, ray:local, "
        "tcp://HOST:PORT (Dask) or dask:local; for dashboard: a panel (overview, stream, "
        "tasks, actors, workers, drivers); for sync: a local folder; for up and down: "
        "a cluster file (kit up)",
    )
    @argument(
        "--nodes",
        type=int,
        default=1,
        help="node agents to start on this machine (dask:local: workers)",
    )
    @argument("--cpus", type=int, default=None, help="task slots per node (default: cores)")
    @argument("--token", default=None, help="the cluster's token, for connect")
    @argument(
        "--autoscale",
        default=None,
        metavar="MIN:MAX",
        help="for start: begin with MIN nodes, add up to MAX under load, remove idle ones",
    )
    def cluster(self, line):
        """Start, join, show or stop the cluster this notebook uses (kit, Ray or Dask).

        Examples::

            %cluster start --nodes 2 --cpus 2
            %cluster connect 10.0.0.5:6380 --token 3f9a...
            %cluster connect ray://10.0.0.5:10001      # or ray:auto, ray:local
            %cluster connect tcp://10.0.0.5:8786       # or dask:local --nodes 2
            %cluster status
            %cluster monitor
            %cluster dashboard            # the cluster's dashboard in this cell
            %cluster dashboard stream     # one panel: overview, stream, tasks, actors...
            data = %cluster sync data/    # copy a folder to every node; the path to read
            %cluster start --autoscale 1:4   # nodes join under load and leave when idle
            %cluster up cluster.yaml      # kit up: a cluster of machines, then connect
            %cluster down                 # kit down the file of the last %cluster up
            %cluster stop
        """
        if _wants_help(line):
            print(self.cluster.parser.format_help())
            return None
        args = _parse(self.cluster, line, "%cluster")
        return getattr(self, f"_cluster_{args.action}")(args)

    def _cluster_start(self, args):
        if args.nodes < 1 or (args.cpus is not None and args.cpus < 1):
            raise UsageError("%cluster start: --nodes and --cpus must be at least 1")
        b = backends.current()
        if b.alive():
            print(
                f"{b.name}: a cluster is already running ({len(b.nodes())} node(s)); "
                f"%cluster stop first"
            )
            return
        b = backends.use(None)
        if args.autoscale:
            try:
                b.start(nodes=args.nodes, cpus=args.cpus, autoscale=args.autoscale)
            except ValueError as e:
                raise UsageError(f"%cluster start: {e}") from None
            self.session.forget()
            print(f"kit: started a local cluster, autoscaling {args.autoscale} nodes "
                  f"(now {len(b.nodes())}, {b.cpus():g} CPUs)")  # fmt: skip
            return
        b.start(nodes=args.nodes, cpus=args.cpus)
        self.session.forget()
        print(f"kit: started a local cluster: {args.nodes} node(s), {b.cpus():g} CPUs")

    def _cluster_up(self, args):
        import kit

        if not args.address:
            raise UsageError("%cluster up: give a cluster file, e.g. %cluster up cluster.yaml")
        try:
            c = kit.Cluster.from_yaml(args.address)
            address = c.up()
        except kit.KitError as e:
            raise UsageError(f"%cluster up: {e}") from None
        self._cluster_file = args.address
        b = backends.current()
        if b.alive():
            print(f"{b.name}: this notebook stays on its cluster; %cluster stop, then "
                  f"%cluster connect {address}")  # fmt: skip
            return
        b = backends.connect(address)
        self.session.forget()
        print(f"kit: connected to {address}: {b.describe()}")

    def _cluster_down(self, args):
        import kit

        path = args.address or getattr(self, "_cluster_file", None)
        if not path:
            raise UsageError("%cluster down: give the cluster file: %cluster down cluster.yaml")
        c = kit.Cluster.from_yaml(path)
        b = backends.current()
        if b.alive() and c.address and b.name == "kit" and kit.is_initialized():
            if kit.init(ignore_reinit_error=True).address == c.address:
                b.stop()
        try:
            c.down()
        except kit.KitError as e:
            raise UsageError(f"%cluster down: {e}") from None

    def _cluster_connect(self, args):
        if not args.address:
            raise UsageError(
                "%cluster connect: give the cluster's address, e.g. "
                "%cluster connect 10.0.0.5:6380 --token T (kit), "
                "ray://HOST:10001, ray:local, tcp://HOST:8786 or dask:local"
            )
        try:
            backends.parse_address(args.address)
        except backends.BackendError as e:
            raise UsageError(f"%cluster connect: {e}") from None
        b = backends.current()
        if b.alive():
            print(f"{b.name}: already connected to a cluster; %cluster stop first")
            return
        try:
            b = backends.connect(
                args.address,
                token=args.token,
                nodes=args.nodes if args.nodes != 1 else None,
                cpus=args.cpus,
            )
        except backends.BackendError as e:
            raise UsageError(f"%cluster connect: {e}") from None
        self.session.forget()
        how = "started" if b.started_here else "connected to"
        print(f"{b.name}: {how} {args.address}: {b.describe()}")

    def _cluster_status(self, args):
        b = backends.current()
        if not b.alive():
            print("kit: no cluster is running; %cluster start, or run a %%remote cell")
            return
        from IPython.display import display

        nodes = b.nodes()
        display(
            {"text/plain": render.nodes_text(nodes), "text/html": render.nodes_html(nodes)},
            raw=True,
        )

    def _cluster_monitor(self, args):
        try:
            from widgets import ClusterMonitor
        except Exception:
            print(
                "kit: the cluster monitor is not available yet "
                "(widgets.ClusterMonitor cannot be imported)"
            )
            return
        if not backends.current().alive():
            print("kit: no cluster is running; %cluster start first")
            return
        from IPython.display import display

        display(ClusterMonitor())

    def _cluster_dashboard(self, args):
        from IPython.display import display

        b = backends.current()
        if not b.alive() or b.name != "kit":
            print("kit: no kit cluster is running here; %cluster start first")
            return
        panel = args.address or ""
        if panel and panel not in render.DASHBOARD_PANELS:
            raise UsageError(
                f"%cluster dashboard: no panel {panel!r}; "
                f"choose one of {', '.join(render.DASHBOARD_PANELS)}"
            )
        link = kit.dashboard_url(panel)
        if link is None:
            print("kit: this cluster runs without a dashboard (include_dashboard=False)")
            return
        display(render.dashboard_bundle(link, kit.dashboard_url(), panel), raw=True)

    def _cluster_sync(self, args):
        if not args.address:
            raise UsageError("%cluster sync: give a local folder, e.g. data = %cluster sync data/")
        b = backends.current()
        if not b.alive() or b.name != "kit":
            print("kit: no kit cluster is running here; %cluster start first")
            return None
        try:
            path = kit.sync(args.address)
        except (FileNotFoundError, kit.KitError) as e:
            raise UsageError(f"%cluster sync: {e}") from None
        n = sum(1 for node in b.nodes() if node.get("alive"))
        print(f"kit: {args.address} is on {n} node(s); tasks read it at the path returned")
        return path

    def _cluster_stop(self, args):
        b = backends.current()
        if not b.alive():
            backends.use(None)
            print("kit: no cluster is running")
            return
        started_here = b.stop()
        backends.use(None)
        self.session.forget()
        print(
            f"{b.name}: cluster stopped"
            if started_here
            else f"{b.name}: disconnected (the cluster keeps running)"
        )

    # ---- %remote and %%remote ---------------------------------------------------------

    @line_cell_magic
    @magic_arguments()
    @argument(
        "-o",
        "--outputs",
        default="",
        help="names the cell assigns to bring back, comma separated: -o a,b",
    )
    @argument(
        "--no-block",
        action="store_true",
        help="return at once; -o names become the engine's refs (Dask: futures); "
        "a status line follows",
    )
    @argument("--num-cpus", type=float, default=None, help="CPUs the task needs (default 1)")
    @argument(
        "--resources",
        default=None,
        help="custom resources as JSON, e.g. --resources '{\"disk\": 1}'",
    )
    @argument("--node", default=None, help="run on this node (id, id prefix or tag like n1)")
    @argument(
        "--map",
        default=None,
        metavar='"VAR in EXPR"',
        help="run the cell once per item, in parallel; -o names come back as lists",
    )
    @argument("--name", default=None, help="label of the task (shown in widgets)")
    @argument(
        "--env",
        default=None,
        metavar="RUNTIME_ENV",
        help='the cell\'s runtime_env: JSON, e.g. --env \'{"pip": ["requests"]}\', or the '
        "name of a dict in the notebook",
    )
    def remote(self, line, cell=None):
        """Run a cell as one task; ``%remote EXPR`` evaluates one expression remotely.

        Names the cell reads are shipped from the notebook (functions and classes
        defined here travel by value, modules are imported again on the worker,
        ObjectRefs arrive as their values). What the cell prints shows up below
        it while it runs; an error shows the cell's own line numbers and the node.

        Examples::

            %%remote -o total
            total = sum(x * x for x in data)
            total / len(data)

            %%remote --map "i in range(8)" -o squares
            squares = i * i

            %%remote --no-block -o model --num-cpus 2
            model = train(data)

            %%remote --env '{"pip": ["tabulate"], "env_vars": {"MODE": "fast"}}'
            import tabulate

            %remote sum(data)
        """
        if cell is None:
            if not line.strip() or line.strip() in _HELP:
                print(self.remote.parser.format_help())
                return None
            return self._run_expr(line)
        if _wants_help(line):
            print(self.remote.parser.format_help())
            return None
        args = _parse(self.remote, line, "%%remote")
        try:
            resources = json.loads(args.resources) if args.resources else None
            if resources is not None and not isinstance(resources, dict):
                raise ValueError("not an object")
        except ValueError as e:
            raise UsageError(
                f"%%remote: --resources takes a JSON object like '{{\"disk\": 1}}' ({e})"
            ) from None
        env = self._env(args.env)
        outputs = [n.strip() for n in args.outputs.split(",") if n.strip()]
        try:
            plan = plan_cell(cell, cell_number(self.shell), outputs, args.map, args.name)
            opts = dict(num_cpus=args.num_cpus, resources=resources, node=args.node, env=env)
            if args.no_block:
                self.session.run_background(plan, **opts)
                return None
            return self.session.run_blocking(plan, **opts)
        except CellUsageError as e:
            raise UsageError(f"%%remote: {e}") from None

    def _env(self, text):
        """``--env``: JSON, or the name of a dict in the notebook; checked by kit's rules."""
        if not text:
            return None
        env = self.shell.user_ns.get(text) if text.isidentifier() else None
        if env is None:
            try:
                env = json.loads(text)
            except ValueError as e:
                raise UsageError(
                    f'%%remote: --env takes JSON like \'{{"pip": ["requests"]}}\' or the '
                    f"name of a dict in the notebook ({e})"
                ) from None
        try:
            kit.remote(num_returns=1)(_noop).options(runtime_env=env)
        except (TypeError, ValueError) as e:
            raise UsageError(f"%%remote: --env: {e}") from None
        return env

    def _run_expr(self, line):
        source = line.strip()
        try:
            plan = plan_cell(source, cell_number(self.shell), kind="expr")
        except SyntaxError as e:
            raise UsageError(
                f"%remote: {e.msg}: {source!r} (%remote takes one expression; "
                f"use %%remote for statements)"
            ) from None
        if not plan.has_last or "\n" in source:
            raise UsageError(
                "%remote takes one expression, e.g. %remote sum(data); use %%remote for statements"
            )
        try:
            return self.session.run_blocking(plan)
        except CellUsageError as e:
            raise UsageError(f"%remote: {e}") from None


def _noop():
    """A function to check options against (``KitMagics._env``)."""
