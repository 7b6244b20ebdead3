"""Text and HTML the magics show: node tables and remote tracebacks.

A ``--no-block`` cell's status line is ``widgets.StatusLine`` (see ``output``).

Pure functions from plain data (``kit.nodes()`` dicts, counts, traceback text)
to strings, tested without a cluster or a notebook.
"""

from __future__ import annotations

import html
import re

from backends.base import short_id

__all__ = [
    "human_bytes",
    "node_rows",
    "nodes_text",
    "nodes_html",
    "clean_traceback",
    "remote_error_lines",
]

COLUMNS = ("node", "alive", "CPU", "running", "queued", "done", "failed", "store used")


def human_bytes(n) -> str:
    """Bytes in a short human form.

    Example:
        >>> human_bytes(0), human_bytes(1536), human_bytes(3 * 2**30)
        ('0 B', '1.5 KiB', '3.0 GiB')
    """
    n = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _num(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def node_rows(nodes) -> list:
    """One row of strings per node (``COLUMNS``), from ``kit.nodes()``.

    Example:
        >>> rows = node_rows([{"node_id": "ab12cd34ef56ab12", "tag": "n0", "alive": True,
        ...     "resources": {"CPU": 2.0}, "available": {"CPU": 1.0}, "running": 1,
        ...     "queued": 0, "done": 5, "failed": 0, "store_used": 2048}])
        >>> rows[0]
        ['n0 ab12cd34', 'yes', '1/2', '1', '0', '5', '0', '2.0 KiB']
    """
    rows = []
    for n in nodes:
        total = n.get("resources", {}).get("CPU", 0)
        avail = n.get("available", {}).get("CPU", 0)
        name = f"{n.get('tag') or ''} {short_id(n.get('node_id'))}".strip()
        rows.append(
            [
                name,
                "yes" if n.get("alive") else "no",
                f"{_num(avail)}/{_num(total)}",
                str(n.get("running", 0)),
                str(n.get("queued", 0)),
                str(n.get("done", 0)),
                str(n.get("failed", 0)),
                human_bytes(n.get("store_used", 0)),
            ]
        )
    return rows


def nodes_text(nodes) -> str:
    """The node table as aligned text (the terminal form of ``%cluster status``).

    Example:
        >>> print(nodes_text([]))
        no nodes
    """
    rows = node_rows(nodes)
    if not rows:
        return "no nodes"
    table = [list(COLUMNS)] + rows
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))
        ).rstrip()
        for r in table
    ]
    return "\n".join(lines)


def nodes_html(nodes) -> str:
    """The node table as HTML (the notebook form of ``%cluster status``).

    Example:
        >>> "<table" in nodes_html([])
        True
    """
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
        for r in node_rows(nodes)
    )
    return f"<table class='kit-nodes'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ---- remote tracebacks -------------------------------------------------------------------

_FRAME = re.compile(r'^  File "(?P<file>[^"]*)", line \d+, in ')
_MACHINERY = (
    "kit/worker.py",
    "magics/runner.py",
    "backends/worker.py",
    "magics\\runner.py",
    "kit\\worker.py",
    "backends\\worker.py",
)


def clean_traceback(tb: str) -> str:
    """Drop the frames of the workers' machinery and the cell runner from a remote traceback.

    What remains starts at the cell's own frames (``<remote-cell-N>``, with the
    cell's line numbers) and goes on into any library the cell called.

    Example:
        >>> tb = ('Traceback (most recent call last):\\n'
        ...       '  File "/x/kit/worker.py", line 210, in _execute\\n'
        ...       '    value = fn(*args, **kwargs)\\n'
        ...       '  File "/x/magics/runner.py", line 80, in run_cell\\n'
        ...       '    exec(code.body, ns)\\n'
        ...       '  File "<remote-cell-4>", line 2, in <module>\\n'
        ...       '    1 / 0\\n'
        ...       'ZeroDivisionError: division by zero\\n')
        >>> print(clean_traceback(tb))
        Traceback (most recent call last):
          File "<remote-cell-4>", line 2, in <module>
            1 / 0
        ZeroDivisionError: division by zero
    """
    out, skipping = [], False
    for line in tb.splitlines():
        m = _FRAME.match(line)
        if m:
            skipping = m.group("file").endswith(_MACHINERY)
            if skipping:
                continue
        elif skipping and line.startswith("    "):
            continue
        else:
            skipping = False
        out.append(line)
    return "\n".join(out)


def remote_error_lines(
    cause_type: str, traceback_str: str, node: str, pid, item: int | None = None
) -> list:
    """The lines IPython shows for a remote cell's error (``_render_traceback_``).

    Example:
        >>> lines = remote_error_lines("ValueError", "Traceback...\\nValueError: bad", "n0 ab12", 7)
        >>> lines[1]
        'ValueError raised remotely on node n0 ab12 (pid 7)'
    """
    where = f"on node {node} (pid {pid})"
    if item is not None:
        where += f", --map item {item}"
    return [
        "-" * 75,
        f"{cause_type} raised remotely {where}",
        clean_traceback(traceback_str).rstrip(),
    ]


#: The dashboard's panels, as ``%cluster dashboard PANEL`` and ``?panel=`` name them.
DASHBOARD_PANELS = ("overview", "stream", "tasks", "actors", "workers", "drivers")
#: The output type the JupyterLab extension (labextension/) renders as buttons that
#: open the panels as tabs; other front ends show the HTML beside it.
DASHBOARD_MIME = "application/vnd.kit.dashboard+json"


def dashboard_bundle(link: str, page: str, panel: str = "", height: int = 480) -> dict:
    """The output of ``%cluster dashboard``: the page in a frame, a link, and the data the
    JupyterLab extension uses to open panels as tabs beside the notebook.

    Args:
        link: the URL shown in the frame (with its view token and panel).
        page: the whole page's URL (with its view token), for the extension.
        panel: the panel shown, or "" for the whole page.
        height: the frame's height in pixels.

    Example:
        >>> b = dashboard_bundle("http://h:1/?token=v&panel=tasks", "http://h:1/?token=v", "tasks")
        >>> sorted(b)[:1], "iframe" in b["text/html"]
        (['application/vnd.kit.dashboard+json'], True)
    """
    src = html.escape(link, quote=True)
    what = f"the {panel} panel" if panel else "the dashboard"
    return {
        "text/plain": f"kit dashboard: {link}",
        "text/html": (
            f'<div class="kit-dashboard"><div><a href="{src}" target="_blank" '
            f'rel="noopener noreferrer">Open {what} in a browser tab</a></div>'
            f'<iframe src="{src}" style="width:100%;height:{int(height)}px;border:1px solid '
            f'#e5e7eb" title="kit dashboard"></iframe></div>'
        ),
        DASHBOARD_MIME: {"url": page, "panel": panel, "panels": list(DASHBOARD_PANELS)},
    }
