"""The worker's side of the Ray and Dask backends: run a function and report on it.

    driver: engine.submit(run, channel, key, label, fn, *args)
    worker: run(...)
              channel.event(key, "running", node)     Ray: to the channel actor
              sys.stdout / sys.stderr of this thread   (Dask: its scheduler plugin
                  ──▶ whole lines ──▶ channel.output(key, stream, text)   sees it)
              fn(*args)
              channel.event(key, "finished" | "failed" | "cancelled", node)
              an exception leaves with ``_kit_remote = (traceback text, node, pid)``

``node_id()`` tells code inside the task which node it runs on (``magics.runner``
returns it with the cell's values); on kit's own workers it asks kit.

Light on purpose: imported on workers, it imports neither IPython nor the engines.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback

_local = threading.local()
_install_lock = threading.Lock()


def node_id() -> str:
    """The id of the node this task runs on ("" outside a task)."""
    node = getattr(_local, "node", None)
    if node:
        return node
    if "kit" in sys.modules:
        try:
            return sys.modules["kit"].get_runtime_context().get_node_id() or ""
        except Exception:
            return ""
    return ""


class _Lines:
    """Collects writes of one stream; hands over whole lines."""

    def __init__(self, emit, stream):
        self.emit, self.stream, self.buf = emit, stream, ""

    def write(self, text):
        self.buf += text
        if "\n" in self.buf:
            done, _, self.buf = self.buf.rpartition("\n")
            self.emit(self.stream, done)

    def flush(self):
        if self.buf:
            text, self.buf = self.buf, ""
            self.emit(self.stream, text)


class _ThreadStream:
    """Stands in for ``sys.stdout``/``sys.stderr``: a thread running a task writes to
    its task's lines, every other thread to the original stream."""

    def __init__(self, original, stream):
        self._original, self._stream = original, stream

    def _target(self):
        sinks = getattr(_local, "sinks", None)
        return sinks[self._stream] if sinks else self._original

    def write(self, text):
        target = self._target()
        target.write(text)
        return len(text)

    def flush(self):
        try:
            self._target().flush()
        except Exception:
            pass

    def __getattr__(self, name):
        return getattr(self._original, name)


def _install() -> None:
    with _install_lock:
        if not isinstance(sys.stdout, _ThreadStream):
            sys.stdout = _ThreadStream(sys.stdout, "stdout")
        if not isinstance(sys.stderr, _ThreadStream):
            sys.stderr = _ThreadStream(sys.stderr, "stderr")


def run(channel, key: str, label: str, fn, *args):
    """Run ``fn(*args)`` as task ``key``, reporting its state and output to ``channel``.

    Example:
        >>> class Ch:
        ...     got = []
        ...     def node_id(self): return "n9"
        ...     def event(self, *a): self.got.append(a[2])
        ...     def output(self, key, stream, text): self.got.append(text)
        >>> run(Ch(), "k", "f", lambda: print("hi") or node_id())
        'n9'
        >>> Ch.got
        ['running', 'hi', 'finished']
    """
    node = channel.node_id()
    _install()
    _local.node = node
    emit = lambda stream, text: channel.output(key, stream, text)  # noqa: E731
    sinks = {"stdout": _Lines(emit, "stdout"), "stderr": _Lines(emit, "stderr")}
    _local.sinks = sinks
    channel.event(key, label, "running", node, time.time())
    state = "failed"
    try:
        value = fn(*args)
        state = "finished"
        return value
    except KeyboardInterrupt:
        state = "cancelled"
        raise
    except BaseException as e:
        try:
            e._kit_remote = (traceback.format_exc(), node, os.getpid())
        except Exception:
            pass
        raise
    finally:
        for s in sinks.values():
            s.flush()
        _local.sinks = None
        _local.node = None
        channel.event(key, label, state, node, time.time())
