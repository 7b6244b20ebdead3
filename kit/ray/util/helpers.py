"""``ray.util.as_completed`` and ``ray.util.map_unordered``: results as tasks finish.

Both take ready refs from ``kit.wait`` in chunks of ``chunk_size``; ``map_unordered``
keeps at most ``backpressure_size`` tasks in flight, as Ray's does.
"""

from __future__ import annotations

import itertools

from kit.api import get, wait


def as_completed(refs, *, chunk_size: int = 10, yield_obj_refs: bool = False, **wait_kwargs):
    """Yield the values of ``refs`` (or the refs) as they become ready, a chunk at a time.

    Example:
        >>> import kit
        >>> from kit.ray.util import as_completed
        >>> sorted(as_completed([kit.put(2), kit.put(1)]))
        [1, 2]
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r}: it takes an int >= 1")
    pending = list(refs)
    while pending:
        ready, pending = wait(pending, num_returns=min(chunk_size, len(pending)), **wait_kwargs)
        yield from (ready if yield_obj_refs else get(ready))


def map_unordered(
    fn,
    items,
    *,
    backpressure_size: int | None = 100,
    chunk_size: int = 10,
    yield_obj_refs: bool = False,
    **wait_kwargs,
):
    """Run ``fn.remote(item)`` for each item, at most ``backpressure_size`` in flight, and
    yield the results in the order they finish.

    Example:
        >>> import kit
        >>> from kit.ray.util import map_unordered
        >>> @kit.remote
        ... def sq(x):
        ...     return x * x
        >>> sorted(map_unordered(sq, range(4)))
        [0, 1, 4, 9]
    """
    if backpressure_size is not None and backpressure_size < 1:
        raise ValueError(f"backpressure_size={backpressure_size!r}: it takes None or an int >= 1")
    it = iter(items)
    pending: list = []
    while True:
        room = None if backpressure_size is None else backpressure_size - len(pending)
        pending += [fn.remote(x) for x in itertools.islice(it, room)]
        if not pending:
            return
        ready, pending = wait(pending, num_returns=min(chunk_size, len(pending)), **wait_kwargs)
        yield from (ready if yield_obj_refs else get(ready))


def get_node_ip_address() -> str:
    """The address of the node this code runs on (``127.0.0.1`` for a local cluster)."""
    from kit import client

    c = client._current
    transfer = getattr(c, "transfer", None) or "tcp://127.0.0.1:0"
    return transfer.replace("tcp://", "").rsplit(":", 1)[0]


def list_named_actors(all_namespaces: bool = False) -> list:
    """The names of the live named actors (dicts with ``name`` and ``namespace`` when
    ``all_namespaces``)."""
    from .state import list_actors

    live = [a for a in list_actors() if a["name"] and a["state"] != "DEAD"]
    if all_namespaces:
        return [{"name": a["name"], "namespace": a["ray_namespace"]} for a in live]
    return [a["name"] for a in live]
