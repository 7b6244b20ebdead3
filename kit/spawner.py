"""A fork server ("zygote"): forks preloaded children fast and reports how they end.

    parent ── ("fork", target, args) ──▶ zygote ── fork() ──▶ child runs target(*args)
    parent ◀── ("started", tag, pid) ─── zygote
    parent ◀── ("exit", tag, pid, status) ── zygote (from SIGCHLD, event driven)

The zygote is forked before its parent creates any zmq context or thread, so
forking from it is safe, and it has kit's modules imported, so a child starts
in a few milliseconds instead of a new interpreter's ~100 ms. Children die with
the zygote and the zygote dies with its parent (``PR_SET_PDEATHSIG``), so a
killed node agent takes its workers with it.

Commands travel over an inherited pipe between two processes of the same
program, so they are plain pickles (no network input reaches them).
"""

from __future__ import annotations

import ctypes
import os
import pickle
import select
import signal
import struct
import sys

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
    """Handle held by the parent: ``fork(tag, target, *args)`` and ``events()``."""

    def __init__(self):
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
                _serve(cmd_r, ev_w)
            finally:
                os._exit(0)
        os.close(cmd_r)
        os.close(ev_w)
        os.set_blocking(ev_r, False)
        self.pid = pid
        self.cmd = cmd_w
        self.ev = ev_r
        self.reader = Reader(ev_r)

    def fork(self, tag, target: str, *args) -> None:
        """Fork a child running ``target`` ("module:function") with ``args``."""
        send_obj(self.cmd, ("fork", tag, target, args))

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
