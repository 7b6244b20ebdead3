"""kit's private directories on this machine, and the checks that keep them private.

    runtime dir  <tmp>/kit-<uid>                         local clusters' ipc sockets
    spill dir    $KIT_SPILL_DIR, else <tmp>/kit-<uid>/spill       spilled objects
    cache dir    $KIT_CACHE_DIR, else <tmp>/kit-<uid>/cache       shipped code, environments,
                                                                  synced data (kit.env_cache)
    state dir    $KIT_STATE_DIR, else ~/.kit             daemons' address and token (cli)

``<tmp>`` is ``tempfile.gettempdir()`` (``$TMPDIR``, else ``/tmp``). Not
``$XDG_RUNTIME_DIR``: it is removed at logout while a daemon head started by ``kit
start`` lives on (its workers connect to its ipc socket), and it is a small tmpfs,
memory, which spilling is there to relieve.

kit makes each directory with mode 0700. One that is there already must be a real
directory (not a symlink), owned by this process's uid, with no access for group or
others; otherwise ``UnsafePathError`` names the path, what is wrong and the fix, and kit
puts nothing in it. The reason: in a shared sticky directory such as ``/tmp`` another
user can make the directory first, then read what kit puts there or swap a spilled
object (a pickle) for one of their own, which the victim's ``kit.get`` would run.
Object files are made with ``O_EXCL`` and mode 0600, and readers check each one they
open (``kit/object_store.py``); the state files are 0600 (``kit/cli.py``).
"""

from __future__ import annotations

import os
import stat
import tempfile

from .errors import UnsafePathError

_TMP_FIX = "set TMPDIR to a directory only you can write (kit then uses $TMPDIR/kit-<uid>)"


def runtime_dir() -> str:
    """The directory for this uid's ipc sockets, made or checked (see the module docstring).

    Raises:
        UnsafePathError: it exists and is not this uid's private directory.

    Example:
        >>> os.stat(runtime_dir()).st_mode & 0o777 == 0o700
        True
    """
    return _temp_base(create=True)


def spill_dir(create: bool = True) -> str:
    """The directory spilled objects go to: made and checked, or (``create=False``) its path.

    Readers use the path alone: each object file is checked when it is opened.

    Raises:
        UnsafePathError: it exists and is not this uid's private directory.
    """
    custom = os.environ.get("KIT_SPILL_DIR")
    if custom:
        path = os.path.abspath(custom)
        if create:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            private_dir(path, "point KIT_SPILL_DIR at a directory of your own")
        return path
    path = os.path.join(_temp_base(create), "spill")
    if create:
        private_dir(path, _TMP_FIX)
    return path


def cache_dir() -> str:
    """Where a node keeps what was shipped to it (code, environments, synced data): made
    and checked (0700: what is there is run).

    Raises:
        UnsafePathError: it exists and is not this uid's private directory.
    """
    custom = os.environ.get("KIT_CACHE_DIR")
    if custom:
        path = os.path.abspath(custom)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return private_dir(path, "point KIT_CACHE_DIR at a directory of your own")
    return private_dir(os.path.join(_temp_base(True), "cache"), _TMP_FIX)


def state_dir(create: bool = True) -> str:
    """``$KIT_STATE_DIR`` or ``~/.kit``: made (``create``) and checked when it exists.

    Raises:
        UnsafePathError: it exists and is not this uid's private directory.
    """
    path = os.environ.get("KIT_STATE_DIR") or os.path.join(os.path.expanduser("~"), ".kit")
    if create:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return private_dir(path, "set KIT_STATE_DIR to a directory of your own", create)


def private_dirs(path: str, alternative: str) -> str:
    """``private_dir`` for ``path`` and for each of its parents that is missing (made
    0700 too: ``os.makedirs`` would make them 0755, and ``~/.kit`` so made is refused
    by every later kit command).

    Example:
        >>> import tempfile
        >>> base = tempfile.mkdtemp()
        >>> d = private_dirs(os.path.join(base, "a", "b"), "use another")
        >>> oct(os.stat(os.path.join(base, "a")).st_mode & 0o777)
        '0o700'
    """
    missing = []
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    for d in reversed(missing):
        private_dir(d, alternative)
    return private_dir(path, alternative)


def _temp_base(create: bool) -> str:
    path = os.path.join(tempfile.gettempdir(), f"kit-{os.geteuid()}")
    return private_dir(path, _TMP_FIX, create) if create else path


def private_dir(path: str, alternative: str, create: bool = True) -> str:
    """Make ``path`` a directory of mode 0700, or check the one there; return ``path``.

    Args:
        path: the directory (its parent must exist).
        alternative: the other way out, for the error message ("set TMPDIR to ...").
        create: make it when missing; without, a missing directory is returned unchecked.

    Raises:
        UnsafePathError: it is a symlink or not a directory, another uid owns it, or
            group or others have any access to it.

    Example:
        >>> import tempfile
        >>> d = private_dir(os.path.join(tempfile.mkdtemp(), "mine"), "use another")
        >>> oct(os.stat(d).st_mode & 0o777)
        '0o700'
    """
    if create:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if create:
            raise
        return path
    problems, foreign = _problems(st)
    if problems:
        if foreign:
            fix = (
                f"It is not kit's to use: remove it (rm -r {path}; ask an administrator if "
                f"another user owns it), or {alternative}."
            )
        else:
            fix = f"Make it private with chmod 700 {path}, or {alternative}."
        raise UnsafePathError(
            f"kit will not use {path}: it {' and '.join(problems)}. Other local users could "
            f"read or replace what kit keeps there. {fix}"
        )
    return path


def _problems(st) -> tuple:
    """What makes a directory's ``lstat`` unsafe, and whether it is someone else's."""
    if stat.S_ISLNK(st.st_mode):
        return ["is a symbolic link"], True
    if not stat.S_ISDIR(st.st_mode):
        return ["is not a directory"], True
    problems = []
    uid = os.geteuid()
    if st.st_uid != uid:
        problems.append(f"is owned by uid {st.st_uid}, not by this process's uid {uid}")
    if st.st_mode & 0o077:
        problems.append(
            f"has mode {stat.S_IMODE(st.st_mode):04o}, which lets group or others in (kit "
            f"needs 0700)"
        )
    return problems, st.st_uid != uid
