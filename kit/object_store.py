"""Large objects in shared memory: one file in ``/dev/shm`` per object.

Layout of a file::

    b"KIT5" | n_buffers u32 | meta_len u64 | (offset u64, length u64) * n | meta | buffers

Buffers start on 64-byte boundaries, so numpy arrays rebuilt over them are
aligned. The writer takes a recycled file of about the right size from the node's
pool (``kit.page_pool``: its pages are allocated already, so writing runs at memory
speed) or creates a new one (``O_EXCL``); readers map it read-only and rebuild the
value with ``pickle.loads(meta, buffers=...)`` without copying, so a numpy array
read back is a read-only view of the shared pages. A reader holds a shared
``flock`` on the file for as long as its mapping lives. When the head says no
reference is left, the node agent recycles the file into the pool if it can take
the exclusive lock (no process maps it), and unlinks it otherwise: mappings that
readers still hold stay valid and unchanged until they are dropped.

Over its limit, a node's store spills: the node agent drains its pool, then moves
the oldest objects to the spill folder on disk (``paths.spill_dir()``:
this uid's own, mode 0700). Readers look in shared memory first and then on
disk, so a spilled object comes back on demand. A value larger than the whole
store is written to disk directly.

Every object file is made with ``O_EXCL`` and mode 0600 (or comes from the
node's pool, a 0700 directory of this uid), and readers check the
file they opened (``fstat`` on its descriptor: a regular file, owned by this
uid, not writable by group or others, no second hard link) before anything is
unpickled.
``/dev/shm`` is open to every local user: someone else can make a file there
under the name of an object that was spilled or freed, and unpickling it would
run their code. Such a file raises ``UntrustedObjectError`` naming it and why.

Names are ``kit_<cluster>_<node>_<object>`` (the node's pool is the directory
``kit_<cluster>_<node>_pool``): everything a cluster leaves behind can be found
and removed by its prefix (``sweep``); sweeping removes only this uid's files.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import mmap
import os
import stat
import struct
import sys

import psutil

from . import page_pool, paths
from .errors import UnsafePathError, UntrustedObjectError

SHM_DIR = "/dev/shm"
_MAGIC = b"KIT5"
_HEAD = struct.Struct("<4sIQ")
_ENTRY = struct.Struct("<QQ")
_ALIGN = 64
# Pages are mapped as they are touched, not all at once (MAP_POPULATE): a fault maps 16
# pages around it, so reading a whole 100 MiB array costs no more (25 ms against 28 here,
# unmapping included), reading part of it costs that part (a strided read: 17 ms against
# 21), and reading one element costs nothing (20 ms with MAP_POPULATE).
_MAP_FLAGS = mmap.MAP_SHARED


def path_of(name: str) -> str:
    return os.path.join(SHM_DIR, name)


def spill_path(name: str) -> str:
    return os.path.join(paths.spill_dir(create=False), name)


def _align(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _open_existing(name: str):
    """Open an object wherever it is: shared memory, or spilled to disk; ``(fd, stat)``.

    Raises:
        FileNotFoundError: it is in neither place.
        UntrustedObjectError: the file under its name is not kit's (``_open_checked``).
    """
    try:
        return _open_checked(path_of(name))
    except FileNotFoundError:
        return _open_checked(spill_path(name))


# O_NONBLOCK: a FIFO planted under an object's name must not hang the open.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_checked(path: str):
    """Open an object file for reading, refusing one that is not kit's; ``(fd, stat)``.

    One ``fstat`` on the open descriptor, which ``read`` needed anyway for the
    size: the file checked is the file read, whatever happens to the name after.

    Raises:
        FileNotFoundError: no file by that name.
        UntrustedObjectError: a symlink, not a regular file, owned by another uid,
            writable by group or others, or with other hard links.
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _untrusted(path, ["is a symbolic link"]) from None
        raise
    st = os.fstat(fd)
    uid = os.geteuid()
    if stat.S_ISREG(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o022:
        if st.st_nlink <= 1:  # 0: unlinked (freed or spilled) since it was opened
            return fd, st
    os.close(fd)
    problems = []
    if not stat.S_ISREG(st.st_mode):
        problems.append("is not a regular file")
    if st.st_uid != uid:
        problems.append(f"is owned by uid {st.st_uid}, not by this process's uid {uid}")
    if st.st_mode & 0o022:
        problems.append(f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})")
    if st.st_nlink > 1:
        problems.append(f"has {st.st_nlink} hard links (kit's have one)")
    raise _untrusted(path, problems)


def _untrusted(path, problems):
    return UntrustedObjectError(
        f"{path} is not kit's object file: it {' and '.join(problems)}. kit did not read it "
        f"(an object file is a pickle; loading it would run whatever code it holds). Another "
        f"local user may have made it under the name of an object that was spilled or freed; "
        f"the object is lost to this process: put it again, or run the task that made it again"
    )


def _create_private(path: str, flags: int = os.O_WRONLY) -> int:
    """Make a new file only this uid can read or write (``O_EXCL``, mode 0600)."""
    return os.open(path, _CREATE_FLAGS | flags, 0o600)


def write(name: str, meta: bytes, buffers, to_disk: bool = False, ledger=None, limit=0) -> int:
    """Write one object; return its size in bytes.

    ``to_disk`` writes it straight to the spill folder (a value larger than
    the whole store). With a node's ``ledger`` (``kit.ledger``) the object first
    takes a file of about its size from the node's pool (``kit.page_pool``: pages
    already allocated, counted in the ledger already), else its size is reserved
    under ``limit`` (draining the pool if that makes room), and an object that does
    not fit is written to the spill folder instead: shared memory never holds more
    than the limit. When shared memory itself is full the object spills too.

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
    reserved, fd = False, None
    if not to_disk and ledger is not None and limit:
        pool = page_pool.dir_of(name, SHM_DIR)
        fd = page_pool.take(pool, total, path_of(name), ledger, limit)
        reserved = fd is not None or ledger.reserve(total, limit)
        if not reserved and page_pool.drain(pool, ledger, keep=limit - total):
            reserved = ledger.reserve(total, limit)  # the pool gave its pages back
        to_disk = not reserved
    folder = paths.spill_dir() if to_disk else SHM_DIR
    if fd is None:
        fd = _create_private(os.path.join(folder, name), os.O_RDWR)
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
        if reserved:
            ledger.release(total)
        if to_disk:
            from .errors import ObjectStoreFullError

            raise ObjectStoreFullError(
                f"cannot store a {total / 2**20:.1f} MiB object: shared memory and the spill "
                f"folder {folder} are full ({e}); drop refs to free objects, or make room"
            ) from e
        return write(name, meta, buffers, to_disk=True)
    except BaseException:
        os.close(fd)
        unlink(name)
        if reserved:
            ledger.release(total)
        raise
    os.close(fd)
    return total


def shm_size(name: str) -> int:
    """Bytes an object holds in shared memory (0 if it is not there: spilled, gone)."""
    try:
        return os.lstat(path_of(name)).st_size
    except OSError:
        return 0


def read(name: str):
    """Map an object read-only; return ``(meta bytes, [memoryview buffers])``.

    The mapping of a file in shared memory holds a shared lock on it until the last
    view of it is dropped: the node agent does not recycle a file someone maps.

    Raises:
        FileNotFoundError: the object is in neither shared memory nor the spill folder.
        UntrustedObjectError: the file under its name is not kit's; nothing was unpickled.
    """
    path = path_of(name)
    try:
        fd, st = _open_checked(path)
    except FileNotFoundError:
        fd, st = _open_checked(spill_path(name))
    else:
        if not _hold(fd, path, st):  # freed (or spilled) as it was opened
            os.close(fd)
            fd, st = _open_checked(spill_path(name))
    try:
        # mmap keeps a duplicate of fd until the map is gone, and with it the shared lock.
        mm = mmap.mmap(fd, st.st_size, flags=_MAP_FLAGS, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    return parse(memoryview(mm), name)


def _hold(fd: int, path: str, st) -> bool:
    """Take a shared lock on an object file in shared memory, so it is not recycled
    while mapped (``kit.page_pool``); False if it is no longer the object's file.

    The lock lives with the open file (``flock``), so with the descriptor ``mmap``
    duplicates. It is refused while the node agent holds the exclusive one (recycling
    the file right now); once it is held, the name must still lead to this very file,
    else the agent recycled or spilled it between the open and the lock.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        now = os.lstat(path)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


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
    fd, _ = _open_existing(name)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def spill(name: str) -> bool:
    """Move an object from shared memory to the spill folder; readers find it either way.

    The copy (``O_EXCL``, mode 0600) is renamed into place before the
    shared-memory file goes, so at every moment one of the two exists. Mappings
    readers hold stay valid. A source that is not kit's is not copied (the
    private folder would launder it) and an unsafe spill folder is not used:
    both say why on stderr (the node agent's) and return False.
    """
    src = path_of(name)
    try:
        fd, _ = _open_checked(src)
    except FileNotFoundError:
        return False
    except UnsafePathError as e:
        print(f"kit: not spilling {name}: {e}", file=sys.stderr, flush=True)
        return False
    with os.fdopen(fd, "rb") as fin:
        try:
            dst = os.path.join(paths.spill_dir(), name)
        except UnsafePathError as e:
            print(f"kit: not spilling {name}: {e}", file=sys.stderr, flush=True)
            return False
        tmp = dst + ".part"
        try:
            _remove(tmp)  # left by a spill that died half-way (the folder is ours alone)
            with os.fdopen(_create_private(tmp), "wb") as fout:
                while True:
                    chunk = fin.read(1 << 24)
                    if not chunk:
                        break
                    fout.write(chunk)
            os.rename(tmp, dst)
        except OSError:
            _remove(tmp)
            return False
    os.unlink(src)
    return True


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def is_spilled(name: str) -> bool:
    return os.path.exists(spill_path(name)) and not os.path.exists(path_of(name))


def unlink(name: str) -> None:
    """Remove an object's files (or a node's pool directory, by its name); one another
    user planted under its name stays (EPERM)."""
    spilled = spill_path(name)
    for path in (path_of(name), spilled, spilled + ".part"):
        try:
            os.unlink(path)
        except (FileNotFoundError, PermissionError):
            pass
        except IsADirectoryError:
            page_pool.remove(path)  # a node's pool (sweep)


def _names():
    """Names of this uid's files in shared memory and the spill folder."""
    uid = os.geteuid()
    for folder in (SHM_DIR, paths.spill_dir(create=False)):
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid == uid:
                    yield entry.name
            except OSError:
                pass


def sweep(prefix: str) -> int:
    """Remove this uid's object files (in memory or spilled) whose names start with ``prefix``."""
    n = 0
    for name in list(_names()):
        if name.startswith(prefix):
            unlink(name.removesuffix(".part"))
            n += 1
    return n


def sweep_dead_clusters() -> int:
    """Remove this uid's files of clusters whose head process no longer exists.

    A cluster id is ``<head pid>x<random>``; this runs at ``init`` so that a
    machine-wide crash (everything killed at once) leaves nothing for long.
    Other users' files are theirs to sweep (and a name planted by someone else
    cannot make it fail).

    Raises:
        UnsafePathError: the runtime directory is not this uid's private one.
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
    # the local clusters' ipc sockets: <runtime dir>/<head pid>x<random>.sock
    for path in glob.glob(os.path.join(paths.runtime_dir(), "*x*.sock")):
        try:
            pid = int(os.path.basename(path).split("x")[0])
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
