"""Where the output of tasks goes in the driver.

By default every line a task prints is written to the driver's stdout or
stderr, prefixed with ``(function pid=..., node=...)``. A front end (the
``%%remote`` magic) can route the lines of one task to its own handler, for
example to print them into the notebook cell that submitted the task.
"""

from __future__ import annotations

import sys
import threading

_routes: dict = {}
_lock = threading.Lock()


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


def unroute(task_id: bytes) -> None:
    """Stop routing the output of ``task_id``; later lines go to stdout again."""
    with _lock:
        _routes.pop(task_id, None)


def deliver(batch) -> None:
    """Called by the client's io thread with ``[(task id, label, pid, node, stream, text)]``."""
    for tid, label, pid, node, stream, text in batch:
        handler = _routes.get(tid)
        if handler is not None:
            try:
                handler(stream, text)
                continue
            except Exception:
                pass
        out = sys.stderr if stream == "stderr" else sys.stdout
        prefix = f"({label} pid={pid}, node={node}) "
        try:
            out.write("".join(prefix + line + "\n" for line in text.splitlines()))
            out.flush()
        except Exception:
            pass
