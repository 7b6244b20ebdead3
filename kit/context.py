"""What a piece of code can learn about where it runs (``kit.get_runtime_context()``)."""

from __future__ import annotations

import threading

_proc = {"node_id": None, "worker_id": None, "actor_id": None, "mode": "driver"}
_task = threading.local()


def set_worker(node_id, worker_id, actor_id=None):
    _proc.update(node_id=node_id, worker_id=worker_id, actor_id=actor_id, mode="worker")


def set_driver(node_id):
    _proc.update(node_id=node_id, worker_id=None, actor_id=None, mode="driver")


def set_task(tid, label):
    _task.value = (tid, label) if tid is not None else None


def current_task():
    return getattr(_task, "value", None)


_cancel_probe = {"fn": None}


def set_cancel_probe(fn) -> None:
    """The worker's check of whether its running task was cancelled."""
    _cancel_probe["fn"] = fn


class RuntimeContext:
    """Ids of the node, worker, task and actor the calling code runs in.

    Example:
        >>> import kit
        >>> @kit.remote
        ... def where():
        ...     return kit.get_runtime_context().get_node_id()
        >>> kit.get(where.remote()) in [n["NodeID"] for n in kit.nodes()]
        True
    """

    def get_node_id(self):
        return _proc["node_id"]

    def get_worker_id(self):
        return _proc["worker_id"]

    def get_actor_id(self):
        return _proc["actor_id"]

    def get_task_id(self):
        t = current_task()
        return t[0].hex() if t else None

    def get_task_name(self):
        t = current_task()
        return t[1] if t else None

    def is_canceled(self) -> bool:
        """Whether the running task was cancelled (``kit.cancel``); False in a driver."""
        probe = _cancel_probe["fn"]
        return bool(probe is not None and probe())

    @property
    def node_id(self):
        return self.get_node_id()

    @property
    def worker_mode(self):
        return _proc["mode"]

    def __repr__(self):
        return (
            f"RuntimeContext(node_id={self.get_node_id()}, worker_id={self.get_worker_id()}, "
            f"task_id={self.get_task_id()}, actor_id={self.get_actor_id()})"
        )


def get_runtime_context() -> RuntimeContext:
    """Return the ids of the node, worker, task and actor this code runs in."""
    return RuntimeContext()
