"""Large objects in shared memory: one file in ``/dev/shm`` per object.

Layout of a file::

    b"KIT5" | n_buffers u32 | meta_len u64 | (offset u64, length u64) * n | meta | buffers

Buffers start on 64-byte boundaries, so numpy arrays rebuilt over them are
aligned. The writer creates the file once (``O_EXCL``); readers map it read-only
and rebuild the value with ``pickle.loads(meta, buffers=...)`` without copying,
so a numpy array read back is a read-only view of the shared pages. The node
agent unlinks the file when the head says no reference is left; mappings that
readers still hold stay valid until they are dropped (POSIX semantics).

Names are ``kit_<cluster>_<node>_<object>``: everything a cluster leaves in
``/dev/shm`` can be found and removed by its prefix (``sweep``).
"""

from __future__ import annotations

import mmap
import os
import struct

import psutil

SHM_DIR = "/dev/shm"
_MAGIC = b"KIT5"
_HEAD = struct.Struct("<4sIQ")
_ENTRY = struct.Struct("<QQ")
_ALIGN = 64


def path_of(name: str) -> str:
    return os.path.join(SHM_DIR, name)


def _align(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def write(name: str, meta: bytes, buffers) -> int:
    """Write one object; return its size in bytes.

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
    fd = os.open(path_of(name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, total)
        os.pwrite(fd, bytes(header) + meta, 0)
        for off, b in zip(offsets, buffers):
            view = b.cast("B") if b.format != "B" or b.ndim != 1 else b
            done = 0
            while done < view.nbytes:
                done += os.pwrite(fd, view[done:done + (1 << 30)], off + done)
    except BaseException:
        os.close(fd)
        unlink(name)
        raise
    os.close(fd)
    return total


def read(name: str):
    """Map an object read-only; return ``(meta bytes, [memoryview buffers])``."""
    fd = os.open(path_of(name), os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        mm = mmap.mmap(fd, size, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    view = memoryview(mm)
    magic, n, meta_len = _HEAD.unpack_from(view, 0)
    if magic != _MAGIC:
        raise ValueError(f"{name} is not a kit object")
    pos = _HEAD.size
    bufs = []
    for _ in range(n):
        off, length = _ENTRY.unpack_from(view, pos)
        pos += _ENTRY.size
        bufs.append(view[off:off + length])
    meta = bytes(view[pos:pos + meta_len])
    return meta, bufs


def read_bytes(name: str, offset: int, length: int) -> bytes:
    """Read a chunk of an object's file (for sending it to another node)."""
    fd = os.open(path_of(name), os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def size_of(name: str) -> int:
    return os.stat(path_of(name)).st_size


def unlink(name: str) -> None:
    try:
        os.unlink(path_of(name))
    except FileNotFoundError:
        pass


def sweep(prefix: str) -> int:
    """Remove every object file whose name starts with ``prefix``; return how many."""
    n = 0
    try:
        names = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return 0
    for name in names:
        if name.startswith(prefix):
            unlink(name)
            n += 1
    return n


def sweep_dead_clusters() -> int:
    """Remove files of clusters whose head process no longer exists.

    A cluster id is ``<head pid>x<random>``; this runs at ``init`` so that a
    machine-wide crash (everything killed at once) leaves nothing for long.
    """
    n = 0
    try:
        names = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return 0
    for name in names:
        if not name.startswith("kit_"):
            continue
        try:
            pid = int(name.split("_")[1].split("x")[0])
        except (IndexError, ValueError):
            continue
        if not psutil.pid_exists(pid):
            unlink(name)
            n += 1
    return n
