"""A node's shared-memory ledger: the bytes its objects use, reserved before writing.

    writer (driver, worker, agent's pull)    ledger file kit_<cluster>_<node>_ledger
      reserve(size, limit) ── flock ──▶      used + size <= limit ? used += size : refuse
      refused: write the object to the spill folder instead (never over the limit)
    node agent: free / spill ── release(size) ──▶ used -= size
    node agent, every tick: used > 80% of the limit ── spill the oldest objects to 60%

Every process that writes objects on a node opens the node's ledger (an 8-byte file
in shared memory, made by the agent, mode 0600, checked like every object file) and
reserves the object's size under an exclusive ``flock`` before it writes; a write
that does not fit goes to disk, so shared memory never holds more than the limit.
The agent, which frees and spills, gives the bytes back, and keeps the store below
its high-water mark by spilling the oldest objects, so new ones find room. It reports
``used`` to the head with its heartbeat (for ``kit.nodes()`` and the widgets).
"""

from __future__ import annotations

import fcntl
import os
import stat
import struct

_USED = struct.Struct("<q")
HIGH, LOW = 0.8, 0.6  # spill when above HIGH of the limit, down to LOW


class Ledger:
    """One node's ledger, open in this process.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "ledger")
        >>> ledger = Ledger.create(path)
        >>> ledger.reserve(60, limit=100), ledger.reserve(60, limit=100), ledger.used()
        (True, False, 60)
        >>> ledger.release(60); ledger.used()
        0
    """

    __slots__ = ("path", "fd")

    def __init__(self, path: str, fd: int):
        self.path = path
        self.fd = fd

    @classmethod
    def create(cls, path: str) -> Ledger:
        """Make a new, empty ledger (the node agent, when it joins)."""
        try:
            os.unlink(path)  # a previous incarnation's
        except FileNotFoundError:
            pass
        flags = os.O_CREAT | os.O_EXCL | os.O_RDWR | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, 0o600)
        os.pwrite(fd, _USED.pack(0), 0)
        return cls(path, fd)

    @classmethod
    def open(cls, path: str):
        """Open a node's ledger, or None if there is none (or it is not kit's own)."""
        try:
            fd = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return None
        st = os.fstat(fd)
        if (
            not stat.S_ISREG(st.st_mode)
            or st.st_uid != os.getuid()
            or st.st_mode & 0o022
            or st.st_size != _USED.size
        ):
            os.close(fd)
            return None
        return cls(path, fd)

    def _add(self, delta: int, limit: int = 0) -> bool:
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            used = _USED.unpack(os.pread(self.fd, _USED.size, 0))[0]
            if delta > 0 and limit and used + delta > limit:
                return False
            os.pwrite(self.fd, _USED.pack(max(0, used + delta)), 0)
            return True
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def reserve(self, size: int, limit: int) -> bool:
        """Count ``size`` bytes as used if they fit under ``limit``; False if not."""
        return self._add(size, limit)

    def release(self, size: int) -> None:
        """Give back ``size`` bytes (an object left shared memory)."""
        self._add(-size)

    def used(self) -> int:
        return _USED.unpack(os.pread(self.fd, _USED.size, 0))[0]

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass
