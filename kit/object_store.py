"""Large objects in shared memory: one file in ``/dev/shm`` per object.

Layout of a file::

    b"KIT5" | n_buffers u32 | meta_len u64 | (offset u64, length u64) * n | meta | buffers

Buffers start on 64-byte boundaries, so numpy arrays rebuilt over them are
aligned. The writer creates the file once (``O_EXCL``); readers map it read-only
and rebuild the value with ``pickle.loads(meta, buffers=...)`` without copying,
so a numpy array read back is a read-only view of the shared pages. The node
agent unlinks the file when the head says no reference is left; mappings that
readers still hold stay valid until they are dropped (POSIX semantics).

Over its limit, a node's store spills: the head picks the oldest objects and
the node agent moves them to ``SPILL_DIR`` on disk. Readers look in shared
memory first and then on disk, so a spilled object comes back on demand. A
value larger than the whole store is written to disk directly.

Names are ``kit_<cluster>_<node>_<object>``: everything a cluster leaves
behind can be found and removed by its prefix (``sweep``).
"""

from __future__ import annotations

import mmap
import os
import struct

import psutil

SHM_DIR = "/dev/shm"
SPILL_DIR = os.path.join(os.environ.get("TMPDIR", "/tmp"), "kit-spill")
_MAGIC = b"KIT5"
_HEAD = struct.Struct("<4sIQ")
_ENTRY = struct.Struct("<QQ")
_ALIGN = 64
# Map every page at once: one call instead of a page fault per page touched.
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)


def path_of(name: str) -> str:
    return os.path.join(SHM_DIR, name)


def spill_path(name: str) -> str:
    return os.path.join(SPILL_DIR, name)


def _align(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _open_existing(name: str):
    """Open an object wherever it is: shared memory, or spilled to disk."""
    try:
        return os.open(path_of(name), os.O_RDONLY)
    except FileNotFoundError:
        return os.open(spill_path(name), os.O_RDONLY)


def write(name: str, meta: bytes, buffers, to_disk: bool = False) -> int:
    """Write one object; return its size in bytes.

    ``to_disk`` writes it straight to the spill folder (a value larger than
    the whole store). When shared memory itself is full the object spills too.

    Raises:
        ObjectStoreFullError: neither shared memory nor the spill folder has room.

    Example:
        >>> size = write("kit_doc_n_1", b"meta", [memoryview(b"abc")])
        >>> read("kit_doc_n_1")[0]
        b'meta'
        >>> unlink("kit_doc_n_1")
    """
    header_len = _HEAD.size + _ENTRY.size * len(buffers)
    offsets, pos = [], _align(header_len + len(meta))
    for b in buffers:
        offsets.append(pos)
        pos = _align(pos + b.nbytes)
    total = max(pos, 1)
    header = bytearray(_HEAD.pack(_MAGIC, len(buffers), len(meta)))
    for off, b in zip(offsets, buffers):
        header += _ENTRY.pack(off, b.nbytes)
    if to_disk:
        os.makedirs(SPILL_DIR, exist_ok=True)
    path = spill_path(name) if to_disk else path_of(name)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, total)
        os.pwrite(fd, bytes(header) + meta, 0)
        for off, b in zip(offsets, buffers):
            view = b.cast("B") if b.format != "B" or b.ndim != 1 else b
            done = 0
            while done < view.nbytes:
                done += os.pwrite(fd, view[done : done + (1 << 30)], off + done)
    except OSError as e:
        os.close(fd)
        unlink(name)
        if to_disk:
            from .errors import ObjectStoreFullError

            raise ObjectStoreFullError(
                f"cannot store a {total / 2**20:.1f} MiB object: shared memory and the spill "
                f"folder {SPILL_DIR} are full ({e}); drop refs to free objects, or make room"
            ) from e
        return write(name, meta, buffers, to_disk=True)
    except BaseException:
        os.close(fd)
        unlink(name)
        raise
    os.close(fd)
    return total


def read(name: str):
    """Map an object read-only; return ``(meta bytes, [memoryview buffers])``."""
    fd = _open_existing(name)
    try:
        size = os.fstat(fd).st_size
        mm = mmap.mmap(fd, size, flags=_MAP_FLAGS, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    return parse(memoryview(mm), name)


def parse(view, name="object"):
    """Split an object file's bytes (mapped or in memory) into ``(meta, buffers)``."""
    magic, n, meta_len = _HEAD.unpack_from(view, 0)
    if magic != _MAGIC:
        raise ValueError(f"{name} is not a kit object")
    pos = _HEAD.size
    bufs = []
    for _ in range(n):
        off, length = _ENTRY.unpack_from(view, pos)
        pos += _ENTRY.size
        bufs.append(view[off : off + length])
    meta = bytes(view[pos : pos + meta_len])
    return meta, bufs


def read_bytes(name: str, offset: int, length: int) -> bytes:
    """Read a chunk of an object's file (for sending it to another node)."""
    fd = _open_existing(name)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def spill(name: str) -> bool:
    """Move an object from shared memory to the spill folder; readers find it either way.

    The copy is renamed into place before the shared-memory file goes, so at
    every moment one of the two exists. Mappings readers hold stay valid.
    """
    src = path_of(name)
    if not os.path.exists(src):
        return False
    os.makedirs(SPILL_DIR, exist_ok=True)
    tmp = spill_path(name) + ".part"
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while True:
                chunk = fin.read(1 << 24)
                if not chunk:
                    break
                fout.write(chunk)
        os.rename(tmp, spill_path(name))
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False
    os.unlink(src)
    return True


def is_spilled(name: str) -> bool:
    return os.path.exists(spill_path(name)) and not os.path.exists(path_of(name))


def unlink(name: str) -> None:
    for path in (path_of(name), spill_path(name), spill_path(name) + ".part"):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _names():
    for folder in (SHM_DIR, SPILL_DIR):
        try:
            yield from os.listdir(folder)
        except FileNotFoundError:
            pass


def sweep(prefix: str) -> int:
    """Remove every object file (in memory or spilled) whose name starts with ``prefix``."""
    n = 0
    for name in list(_names()):
        if name.startswith(prefix):
            unlink(name.removesuffix(".part"))
            n += 1
    return n


def sweep_dead_clusters() -> int:
    """Remove files of clusters whose head process no longer exists.

    A cluster id is ``<head pid>x<random>``; this runs at ``init`` so that a
    machine-wide crash (everything killed at once) leaves nothing for long.
    """
    n = 0
    for name in list(_names()):
        if not name.startswith("kit_"):
            continue
        try:
            pid = int(name.split("_")[1].split("x")[0])
        except (IndexError, ValueError):
            continue
        if not psutil.pid_exists(pid):
            unlink(name.removesuffix(".part"))
            n += 1
    # the local clusters' ipc sockets: /tmp/kit-<head pid>x<random>.sock
    import glob
    import tempfile

    for path in glob.glob(os.path.join(tempfile.gettempdir(), "kit-*x*.sock")):
        try:
            pid = int(os.path.basename(path)[4:].split("x")[0])
        except ValueError:
            continue
        if not psutil.pid_exists(pid):
            try:
                os.unlink(path)
                n += 1
            except OSError:
                pass
    return n


def default_limit() -> int:
    """30% of the machine's memory, and no more than ``/dev/shm`` can hold."""
    total = psutil.virtual_memory().total
    try:
        st = os.statvfs(SHM_DIR)
        shm = st.f_frsize * st.f_blocks
    except OSError:
        shm = total
    return int(min(total * 0.3, shm * 0.9))
