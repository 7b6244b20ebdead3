"""Where the output of tasks goes in the driver.

By default every line a task prints is written to the driver's stdout or
stderr, prefixed with ``(function pid=..., node=n1)`` (the node's tag, as
``kit.nodes()`` and the monitor name it; ``name_nodes`` keeps the names). A front end (the
``%%remote`` magic) can route the lines of one task to its own handler, for
example to print them into the notebook cell that submitted the task.
"""

from __future__ import annotations

import sys
import threading

_routes: dict = {}
_lock = threading.Lock()
_capturing = threading.local()
_sink = None  # where lines no route claims go instead of stdout (set_sink), or None
_names: dict = {}  # node id hex -> tag, for the prefix


def name_nodes(names: dict) -> None:
    """Name nodes in the prefix of printed lines: ``{node id hex: tag}`` (kit.nodes() calls it).

    Example:
        >>> name_nodes({"ab12cd34ef56ab12": "n1"})
        >>> node_name("ab12cd34ef56ab12"), node_name("ffff0000ffff0000")
        ('n1', 'ffff0000')
    """
    _names.update({k: v for k, v in names.items() if k and v})


def node_name(node_hex) -> str:
    """A node's tag if known, else the first 8 hex digits of its id."""
    return _names.get(node_hex) or (node_hex or "?")[:8]


def route(task_id: bytes, handler) -> None:
    """Send the output of task ``task_id`` to ``handler(stream, text)`` instead of stdout.

    ``task_id`` is ``ref.task_id()``; ``stream`` is "stdout" or "stderr"; ``text``
    is one or more complete lines without the final newline.

    Example:
        >>> import kit
        >>> @kit.remote
        ... def hello():
        ...     print("hi")
        >>> ref = hello.remote()
        >>> lines = []
        >>> kit.logs.route(ref.task_id(), lambda stream, text: lines.append(text))
    """
    with _lock:
        _routes[task_id] = handler


class capture:
    """Route the output of every task this thread submits inside the block to ``handler``.

    The route exists before the task is sent, so not even its first line can
    reach the driver's stdout instead.

    Example:
        >>> import kit
        >>> @kit.remote
        ... def hello():
        ...     print("hi")
        >>> lines = []
        >>> with kit.logs.capture(lambda stream, text: lines.append(text)):
        ...     ref = hello.remote()
    """

    def __init__(self, handler):
        self.handler = handler

    def __enter__(self):
        self.prev = getattr(_capturing, "handler", None)
        _capturing.handler = self.handler
        return self

    def __exit__(self, *exc):
        _capturing.handler = self.prev


def claim(task_id: bytes) -> None:
    """Called as a task is submitted: route it if this thread is inside ``capture``."""
    handler = getattr(_capturing, "handler", None)
    if handler is not None:
        route(task_id, handler)


def unroute(task_id: bytes) -> None:
    """Stop routing the output of ``task_id``; later lines go to stdout again."""
    with _lock:
        _routes.pop(task_id, None)


def set_sink(handler) -> None:
    """Send every line no route claims to ``handler(line)`` instead of stdout and stderr.

    ``line`` is the tuple ``(task id, label, pid, node, stream, text)``; None restores
    stdout. The dashboard keeps workers' recent lines this way.

    Example:
        >>> lines = []
        >>> set_sink(lines.append)
        >>> deliver([(None, "f", 7, "ab12", "stdout", "hi")])
        >>> lines[0][-1], set_sink(None)
        ('hi', None)
    """
    global _sink
    _sink = handler


def deliver(batch) -> None:
    """Called by the client's io thread with ``[(task id, label, pid, node, stream, text)]``."""
    sink = _sink
    for item in batch:
        tid, label, pid, node, stream, text = item
        handler = _routes.get(tid)
        if handler is not None:
            try:
                handler(stream, text)
                continue
            except Exception:
                pass
        if sink is not None:
            sink(item)
            continue
        out = sys.stderr if stream == "stderr" else sys.stdout
        prefix = (
            "kit: "
            if tid is None and label == "kit"
            else f"({label} pid={pid}, node={node_name(node)}) "
        )
        try:
            out.write("".join(prefix + line + "\n" for line in text.splitlines()))
            out.flush()
        except Exception:
            pass
