"""``kit.sync(path)``: a data folder copied to every node's cache, and the path to read.

    driver: pack(path) ──▶ put (object store) ──▶ one 0-CPU task pinned to each live node
    node:   <cache>/data/<digest>/ (fetched through the store, kit.transfer; unpacked once)
    returns SyncedPath: the driver's own path here; unpickled in a task, that node's copy

The path ``sync`` returns is a ``str``. Sent to a task (an argument, a global, a cell's
variable), it becomes the folder of that task's node, made there on the spot if the
node joined after the sync. The same content is one cache entry per node, whoever sent
it; sending a changed folder again makes a new one. What ``.gitignore`` and
``excludes`` name is left out, as for a working_dir; there is no size limit but the
object store's (a copy lives in it while the driver holds it).
"""

from __future__ import annotations

import os

from . import env_cache, packing

_synced: dict = {}  # digest -> (the driver's path, the ref holding the package)


class SyncedPath(str):
    """A folder ``kit.sync`` copied to every node: this process's path to it.

    Example:
        >>> p = SyncedPath("/data/set", "ab12", b"")
        >>> p + "/x.csv", p.digest
        ('/data/set/x.csv', 'ab12')
    """

    digest: str
    oid: bytes

    def __new__(cls, path, digest, oid):
        s = super().__new__(cls, path)
        s.digest, s.oid = digest, oid
        return s

    def __reduce__(self):
        return (_resolve, (self.digest, self.oid, str(self)))


def _resolve(digest, oid, path):
    """Unpickled where a task runs: that node's copy (the driver keeps its own path)."""
    if digest in _synced:
        return SyncedPath(path, digest, oid)
    return SyncedPath(env_cache.materialize("data", digest, oid), digest, oid)


def _copy_here(digest, oid):
    return env_cache.materialize("data", digest, oid)


def sync(path, *, excludes=(), timeout=600.0) -> SyncedPath:
    """Copy the folder ``path`` to every node's cache; return the path tasks should read.

    Args:
        path: a local folder (``.gitignore`` patterns in it are honoured).
        excludes: more gitignore patterns to leave out (``["*.tmp", "raw/"]``).
        timeout: seconds to wait for every node to have it.

    Returns:
        A ``SyncedPath`` (a ``str``): here, ``path`` itself; inside a task, the copy on
        the task's node.

    Raises:
        FileNotFoundError: ``path`` is not a folder.
        GetTimeoutError: a node did not finish within ``timeout``.

    Example:
        >>> import kit
        >>> data = kit.sync("data/")                        # doctest: +SKIP
        >>> @kit.remote
        ... def rows(folder):
        ...     return len(open(folder + "/table.csv").readlines())
        >>> kit.get(rows.remote(data))                      # doctest: +SKIP
    """
    from .api import get, nodes, put, remote
    from .scheduling import NodeAffinitySchedulingStrategy

    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"kit.sync: {path} is not a folder")
    packed = packing.pack(path, excludes, None, f"kit.sync {path}")
    held = _synced.get(packed.digest)
    if held is None:
        ref = put(packed.data)
        held = _synced[packed.digest] = (path, ref)
    oid = held[1].binary()
    copy = remote(num_cpus=0, max_retries=1)(_copy_here)
    refs = [
        copy.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"])).remote(
            packed.digest, oid
        )
        for n in nodes()
        if n["Alive"]
    ]
    get(refs, timeout=timeout)
    return SyncedPath(path, packed.digest, oid)


def forget() -> None:
    """The driver disconnected: what it synced is no longer held."""
    _synced.clear()
