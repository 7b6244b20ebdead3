"""A fork server ("zygote"): forks preloaded children fast and reports how they end.

    parent ── ("fork", target, args) ──▶ zygote ── fork() ──▶ child runs target(*args)
    parent ◀── ("started", tag, pid) ─── zygote
    parent ◀── ("exit", tag, pid, status) ── zygote (from SIGCHLD, event driven)

The zygote is forked before its parent creates any zmq context or thread, so
forking from it is safe, and it has kit's modules imported, so a child starts
in a few milliseconds instead of a new interpreter's ~100 ms. It also preloads
what a worker would otherwise import on its first task (``preload``: the worker
module, numpy if the driver uses it, the pickling of an array), so a fresh worker
reads an array at once; the pages are shared by every child (``gc.freeze`` keeps
the children's garbage collector from copying them). Children die with the zygote and the
zygote dies with its parent (``PR_SET_PDEATHSIG``), so a killed node agent
takes its workers with it.

Commands travel over an inherited pipe between two processes of the same
program, so they are plain pickles (no network input reaches them).
"""

from __future__ import annotations

import ctypes
import gc
import os
import pickle
import select
import signal
import struct
import sys

from . import native_threads

_LEN = struct.Struct("<I")
PR_SET_PDEATHSIG = 1

try:
    _libc = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # not Linux: parents watch their children by other means
    _libc = None


def die_with_parent(sig=signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent exits (Linux)."""
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def send_obj(fd, obj) -> None:
    data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    os.write(fd, _LEN.pack(len(data)) + data)


class Reader:
    """Reads length-prefixed pickles from a pipe without blocking on partial data."""

    def __init__(self, fd):
        self.fd = fd
        self.buf = b""
        self.closed = False

    def read(self):
        try:
            chunk = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            chunk = None
        except OSError:
            chunk = b""
        if chunk == b"":
            self.closed = True
        elif chunk:
            self.buf += chunk
        out = []
        while len(self.buf) >= 4:
            (n,) = _LEN.unpack_from(self.buf)
            if len(self.buf) < 4 + n:
                break
            out.append(pickle.loads(self.buf[4 : 4 + n]))
            self.buf = self.buf[4 + n :]
        return out


class Zygote:
    """Handle held by the parent: ``fork(tag, target, *args)`` and ``events()``.

    With ``queue=True`` a fork command the pipe cannot take now waits in ``pending``:
    the parent polls ``cmd`` for writing while ``pending`` is not empty and calls
    ``flush()``. A node agent must never block on this pipe: the zygote, busy forking,
    then blocks writing its "started" events to the agent, which reads them only between
    its own writes; after ~1,500 forks asked at once both waited forever and the node,
    silent, was declared dead.
    """

    def __init__(self, preload_names=None, queue=False):
        cmd_r, cmd_w = os.pipe()
        ev_r, ev_w = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            os.close(cmd_w)
            os.close(ev_r)
            try:
                die_with_parent()
                if os.getppid() != parent:
                    os._exit(0)
                native_threads.limit_before_preload()  # before numpy starts its pools
                preload(preload_names)
                # What is loaded now stays as it is: the children's garbage collector
                # never writes to it, so its pages stay shared with every child.
                gc.collect()
                gc.freeze()
                _serve(cmd_r, ev_w)
            finally:
                os._exit(0)
        os.close(cmd_r)
        os.close(ev_w)
        os.set_blocking(ev_r, False)
        if queue:
            os.set_blocking(cmd_w, False)
        self.queue = queue
        self.pending = bytearray()  # commands the pipe has not taken yet (queue=True)
        self.pid = pid
        self.cmd = cmd_w
        self.ev = ev_r
        self.reader = Reader(ev_r)

    def fork(self, tag, target: str, *args) -> None:
        """Fork a child running ``target`` ("module:function") with ``args``."""
        if not self.queue:
            send_obj(self.cmd, ("fork", tag, target, args))
            return
        data = pickle.dumps(("fork", tag, target, args), pickle.HIGHEST_PROTOCOL)
        self.pending += _LEN.pack(len(data)) + data
        self.flush()

    def flush(self) -> bool:
        """Write what the pipe takes now of the queued commands; True when none is left."""
        pending = self.pending
        while pending:
            try:
                n = os.write(self.cmd, pending)
            except BlockingIOError:
                return False
            except OSError:  # the zygote is gone: its end is reported by events()
                pending.clear()
                return True
            del pending[:n]
        return True

    def kill(self, pid, sig=signal.SIGKILL) -> None:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def events(self):
        """``[("started", tag, pid) | ("exit", tag, pid, cause), ...]`` ready now."""
        return self.reader.read()

    def close(self) -> None:
        try:
            os.close(self.cmd)
        except OSError:
            pass
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


# Imported by the zygote for its children: kit's worker and what kit depends on that a
# task is likely to need first (unpickling an array imports numpy). A local cluster's
# nodes preload the ones its driver had imported (``driver_preload``), a daemon node all
# of them; KIT_PRELOAD, a comma-separated list, decides instead ("" preloads nothing).
PRELOAD = ("kit.worker", "numpy")


def driver_preload(modules=None) -> list:
    """What a local cluster's zygotes preload: kit's worker, and each other module of
    ``PRELOAD`` that the driver has imported (``modules``: its ``sys.modules``). A driver
    that uses numpy sends arrays, so its workers need numpy at their first task; one that
    does not use it does not pay for it in every worker (about 5 MiB of RSS each, shared).

    Example:
        >>> driver_preload({"numpy": None}), driver_preload({})
        (['kit.worker', 'numpy'], ['kit.worker'])
    """
    modules = sys.modules if modules is None else modules
    return [n for n in PRELOAD if n.startswith("kit.") or n in modules]


def preload(names=None) -> list:
    """Import ``names`` here, before forking: ``KIT_PRELOAD`` if set, else ``names``,
    else ``PRELOAD``.

    With numpy loaded, pickles an array through kit's own path once, so what that
    imports lazily is loaded too. A module that is not installed is skipped. Returns
    the names imported.

    Example:
        >>> preload(["json"])
        ['json']
    """
    env = os.environ.get("KIT_PRELOAD")
    if env is not None:
        names = [n.strip() for n in env.split(",") if n.strip()]
    elif names is None:
        names = PRELOAD
    done = []
    for name in names:
        try:
            __import__(name)
        except ImportError:
            continue
        done.append(name)
    if "numpy" in sys.modules:
        from . import serialization

        payload, _ = serialization.to_payload(sys.modules["numpy"].zeros(1))
        serialization.from_payload(payload)
    return done


def describe_status(status: int) -> tuple[str, bool]:
    """Turn a wait status into words, and whether the kernel's OOM killer is a likely cause."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        hint = {
            "SIGKILL": "killed (kill -9, or out of memory)",
            "SIGSEGV": "segmentation fault in native code",
            "SIGABRT": "aborted",
            "SIGBUS": "bus error in native code",
        }.get(name, "")
        return f"killed by signal {sig} ({name}{': ' + hint if hint else ''})", False
    code = os.WEXITSTATUS(status)
    return f"exited with code {code}", False


def _serve(cmd_r, ev_w):
    children = {}
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *a: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    reader = Reader(cmd_r)
    while True:
        try:
            r, _, _ = select.select([cmd_r, wake_r], [], [])
        except InterruptedError:
            r = [wake_r]
        if wake_r in r:
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
            _reap(children, ev_w)
        if cmd_r in r:
            for cmd in reader.read():
                if cmd[0] == "fork":
                    _, tag, target, args = cmd
                    pid = fork_child(target, args, (cmd_r, ev_w, wake_r, wake_w))
                    children[pid] = tag
                    send_obj(ev_w, ("started", tag, pid))
            if reader.closed:
                for pid in list(children):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                return


def exited_children():
    """Yield ``(pid, cause)`` for every child that has ended, without blocking."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, describe_status(status)[0]


def _reap(children, ev_w):
    for pid, cause in exited_children():
        tag = children.pop(pid, None)
        try:
            send_obj(ev_w, ("exit", tag, pid, cause))
        except OSError:
            pass


def fork_child(target, args, close_fds=(), deathsig=signal.SIGKILL):
    """Fork a child that runs ``target`` ("module:function") and dies with this process."""
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for fd in close_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        die_with_parent(deathsig)
        if os.getppid() != parent:
            os._exit(0)
        mod, fn = target.split(":")
        __import__(mod)
        getattr(sys.modules[mod], fn)(*args)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        os._exit(code)
