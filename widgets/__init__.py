"""Live views of a cluster: ipywidgets for notebooks, text for terminals, matplotlib for pages.

    ClusterMonitor()      one row per node: alive, CPU busy, queued/running/done/failed, store
    progress(refs)        done/total, failed, rate and time left for a batch of refs
    StatusLine(ref)       one task: queued, running on node X, done or failed, with time
    plot_timeline()       one bar per task, a lane per worker (or task); one cell's tasks
    plot_timelines(runs)  several runs on one shared time axis
    plot_node_counts()    tasks done per node (matplotlib Figure)
    WorkerUsage()         CPU and memory of each worker while a block ran (why no speed-up)
    time_runs(fn)         a few timed runs: median and spread (machine_busy, busy_note)

One background thread (``Updater``) polls the cluster at most 10 times a second and
redraws every live widget; pure functions in ``widgets.view`` turn snapshots into
what is shown. The data comes through a ``Source`` (``widgets.source``): by default
the current backend (``backends.current()``), so the same widgets show a kit, Ray
or Dask cluster.

Example:
    >>> import kit, widgets
    >>> _ = kit.init(num_cpus=1)
    >>> m = widgets.ClusterMonitor()       # display(m) in a notebook
    >>> print(repr(m).splitlines()[0])
    kit cluster: 1/1 nodes alive, CPU 0/1 busy (live)
    >>> m.close(); kit.shutdown()
"""

from kit import frontend as _frontend

from . import cellmarks as _cellmarks
from .monitor import ClusterMonitor as ClusterMonitor
from .plots import KitFigure as KitFigure
from .plots import plot_node_counts as plot_node_counts
from .plots import plot_timeline as plot_timeline
from .plots import plot_timelines as plot_timelines
from .progress import Progress as Progress
from .progress import progress as progress
from .source import CurrentSource as CurrentSource
from .source import KitSource as KitSource
from .source import events_since as events_since
from .status import StatusLine as StatusLine
from .timing import Timing as Timing
from .timing import busy_note as busy_note
from .timing import machine_busy as machine_busy
from .timing import time_runs as time_runs
from .updater import Updater as Updater
from .updater import default_updater as default_updater
from .usage import WorkerUsage as WorkerUsage
from .view import MonitorView as MonitorView
from .view import NodeRow as NodeRow
from .view import monitor_view as monitor_view
from .view import progress_view as progress_view
from .view import status_text as status_text
from .view import text_table as text_table
from .view import timeline_lanes as timeline_lanes

__all__ = [
    "ClusterMonitor",
    "CurrentSource",
    "KitFigure",
    "KitSource",
    "MonitorView",
    "NodeRow",
    "Progress",
    "StatusLine",
    "Timing",
    "Updater",
    "WorkerUsage",
    "busy_note",
    "default_updater",
    "events_since",
    "machine_busy",
    "monitor_view",
    "plot_node_counts",
    "plot_timeline",
    "plot_timelines",
    "progress",
    "progress_view",
    "status_text",
    "text_table",
    "time_runs",
    "timeline_lanes",
]


def _show_context(context, include=None, exclude=None):
    """How ``kit.init()``'s context shows in a notebook: a live cluster monitor."""
    return ClusterMonitor()._repr_mimebundle_(include=include, exclude=exclude)


def _display_context(context):
    """``kit.init()``'s context displayed: a monitor that leaves its final state behind."""
    ClusterMonitor()._ipython_display_()


def _on_shutdown(stop):
    """``kit.shutdown()``: every view reads the cluster once more, then shows that it stopped."""
    up = default_updater()
    try:
        up.final()
    finally:
        stop()
        up.check()


_cellmarks.watch()
_frontend.register("display", _show_context)
_frontend.register("show", _display_context)
_frontend.register("progress", progress)
_frontend.register("shutdown", _on_shutdown)
