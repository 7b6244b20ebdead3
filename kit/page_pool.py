"""Recycled object files: a node's pool of shared-memory pages, ready to be written again.

    agent, on "free": flock(LOCK_EX|LOCK_NB) on the object's file
        taken (no process maps it) ── rename ──▶ <shm>/kit_<cluster>_<tag>_pool/<size>_<random>
        refused (a reader holds LOCK_SH) ──▶ unlink, as before (its mappings stay valid)
    writer (put, a task's result, a pull): take a pool file of about its size
        ── rename ──▶ its object's name, ftruncate to its size, write over the old pages
    agent, every tick: pool files idle for POOL_IDLE s, or all of them when the store
        passes its high-water mark ── unlink (the ledger gets their bytes back)

Writing into a new file of ``/dev/shm`` runs at the speed the kernel allocates and
zeroes pages (about 2 GB/s here); writing over pages a file already has runs at
memory speed (5 GB/s and more). So freed objects are not unlinked but renamed into
a small per-node pool (``POOL_FILES`` files, a quarter of the store's limit at most),
where the next writer of a similar size takes one by an atomic rename: two writers
cannot take the same file, and a writer never sees a half-recycled one.

The hazard is a reader still mapping the old object (``arr = kit.get(ref); del ref``
keeps a zero-copy view of the file after the object is freed): recycling that file
would change ``arr`` under its user. Readers therefore hold a shared ``flock`` on the
object's file for as long as their mapping lives (``object_store.read``: the lock is
taken on the descriptor that ``mmap`` duplicates and keeps until the map is gone), and
the agent recycles a file only while it holds the exclusive lock, which it gets only
when no reader holds one. A reader that opened the file just before it was recycled
finds, once locked, that the name no longer leads to that file, and treats the object
as gone (or looks in the spill folder).

Pool files stay counted as used in the node's ledger (``kit.ledger``), so the store's
limit covers them; a writer that finds no room drains the pool before it gives up on
shared memory. The pool directory is this uid's own (0700): nobody else can put a file
into it, and writers check it before taking from it.
"""

from __future__ import annotations

import os
import stat
import time

POOL_FILES = 16  # files in a node's pool at most
POOL_SHARE = 0.25  # and bytes: this share of the store's limit
POOL_IDLE = 10.0  # seconds a pool file waits for a writer before it is unlinked


def dir_of(name: str, shm_dir: str) -> str:
    """The pool directory of the node an object name belongs to (``kit_<c>_<t>_pool``)."""
    return os.path.join(shm_dir, name[: name.rfind("_") + 1] + "pool")


def _usable(folder: str) -> bool:
    """True if ``folder`` is a directory of this uid that no one else can enter."""
    try:
        st = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077


def files(folder: str) -> list:
    """``[(size, file name), ...]`` of the pool in ``folder`` (names are ``<size>_<random>``)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    out = []
    for fname in names:
        head = fname.split("_", 1)[0]
        if head.isdigit():
            out.append((int(head), fname))
    return out


def take(folder: str, size: int, dest: str, ledger, limit: int):
    """Take a pool file for an object of ``size`` bytes: an open descriptor of ``dest``, or None.

    The file is renamed to ``dest`` (atomic: of two writers one gets it), truncated to
    ``size`` and opened for writing; its bytes were counted in ``ledger`` already, so
    only the difference is reserved (under ``limit``) or given back. A file between half
    and twice ``size`` fits; the smallest that is large enough is preferred, else the
    largest that is smaller.

    Example:
        >>> import tempfile; from kit.ledger import Ledger
        >>> d = tempfile.mkdtemp(); pool = os.path.join(d, "pool"); os.mkdir(pool, 0o700)
        >>> ledger = Ledger.create(os.path.join(d, "ledger")); ledger.reserve(100, 1000)
        True
        >>> open(os.path.join(pool, "100_a"), "wb").write(bytes(100))
        100
        >>> fd = take(pool, 80, os.path.join(d, "obj"), ledger, 1000)
        >>> os.fstat(fd).st_size, ledger.used(), files(pool)
        (80, 80, [])
        >>> os.close(fd)
    """
    if not _usable(folder):
        return None
    fit = [(p, f) for p, f in files(folder) if size // 2 <= p <= 2 * size]
    larger = sorted(x for x in fit if x[0] >= size)
    smaller = sorted((x for x in fit if x[0] < size), reverse=True)
    for have, fname in larger + smaller:
        grow = size - have
        if grow > 0 and not ledger.reserve(grow, limit):
            continue
        try:
            os.rename(os.path.join(folder, fname), dest)
        except OSError as e:
            if grow > 0:
                ledger.release(grow)
            if isinstance(e, FileNotFoundError):
                continue  # another writer took it first
            return None
        try:
            fd = os.open(dest, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
            os.ftruncate(fd, size)
        except OSError:
            _unlink(dest)
            ledger.release(max(have, size))
            return None
        if grow < 0:
            ledger.release(-grow)
        return fd
    return None


def drain(folder: str, ledger, keep: int = 0) -> int:
    """Unlink pool files, largest first, until the ledger's use is at most ``keep`` bytes
    (0: all of them); give their bytes back. Returns the bytes freed."""
    freed = 0
    for have, fname in sorted(files(folder), reverse=True):
        if keep and ledger.used() <= keep:
            break
        if _unlink(os.path.join(folder, fname)):
            ledger.release(have)
            freed += have
    return freed


def remove(folder: str) -> bool:
    """Remove a pool directory and its files, if it is this uid's (``sweep``); True if it was."""
    try:
        st = os.lstat(folder)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        return False
    try:
        for fname in os.listdir(folder):
            _unlink(os.path.join(folder, fname))
        os.rmdir(folder)
    except OSError:
        return False
    return True


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except OSError:
        return False


class Pool:
    """A node agent's side of its pool: recycling freed objects, trimming, draining.

    Args:
        folder: the pool directory (made here, 0700, emptied if it was there).
        ledger: the node's ``Ledger``.
        limit: the store's limit in bytes (the pool holds ``POOL_SHARE`` of it at most).
    """

    def __init__(self, folder: str, ledger, limit: int):
        self.folder, self.ledger = folder, ledger
        self.max_bytes = int(limit * POOL_SHARE)
        self.max_files = POOL_FILES
        self.added: dict = {}  # file name -> when it came into the pool (monotonic)
        self.recycled = 0  # objects recycled so far
        remove(folder)
        try:
            os.mkdir(folder, 0o700)
        except OSError:
            pass
        self.enabled = _usable(folder)  # a directory someone else made: no pool

    def free(self, path: str) -> None:
        """Free the object file at ``path``: into the pool if no process maps it, else unlink.

        The ledger gets the object's bytes back unless they stay in the pool. A file
        that is not this uid's regular file is left alone (``unlink`` would fail too).
        """
        import fcntl

        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return  # not in shared memory (spilled, or gone)
        try:
            st = os.fstat(fd)
            if (
                not stat.S_ISREG(st.st_mode)
                or st.st_uid != os.geteuid()
                or st.st_mode & 0o022
                or st.st_nlink != 1
            ):
                return
            size = st.st_size
            if self.enabled and 0 < size <= self.max_bytes:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    locked = True
                except OSError:
                    locked = False  # a reader maps it: it must not change
                if locked and self._make_room(size):
                    fname = f"{size}_{os.urandom(6).hex()}"
                    try:
                        os.rename(path, os.path.join(self.folder, fname))
                    except OSError:
                        pass
                    else:
                        self.added[fname] = time.monotonic()
                        self.recycled += 1
                        return  # still counted in the ledger, as pool
            if _unlink(path):
                self.ledger.release(size)
        finally:
            os.close(fd)  # and with it the exclusive lock

    def _make_room(self, size: int) -> bool:
        """Unlink the oldest pool files until one of ``size`` bytes fits; False if it cannot."""
        have = files(self.folder)
        have.sort(key=lambda x: self.added.get(x[1], 0.0))
        total = sum(p for p, _ in have)
        while have and (len(have) >= self.max_files or total + size > self.max_bytes):
            p, fname = have.pop(0)
            self._evict(fname, p)
            total -= p
        return len(have) < self.max_files and total + size <= self.max_bytes

    def _evict(self, fname: str, size: int) -> None:
        self.added.pop(fname, None)
        if _unlink(os.path.join(self.folder, fname)):
            self.ledger.release(size)

    def trim(self, now: float, idle: float = POOL_IDLE) -> None:
        """Unlink pool files no writer took for ``idle`` seconds (``now`` is monotonic)."""
        if not self.added:
            return
        present = dict((f, p) for p, f in files(self.folder))
        for fname, since in list(self.added.items()):
            if fname not in present:
                del self.added[fname]  # a writer took it
            elif now - since > idle:
                self._evict(fname, present[fname])

    def drain(self) -> int:
        """Unlink every pool file (the store is short of room); the bytes freed."""
        self.added.clear()
        return drain(self.folder, self.ledger)

    def used(self) -> int:
        """Bytes in the pool now."""
        return sum(p for p, _ in files(self.folder))
