"""Starting the dashboard from the head's process (``kit/boot.py``): its port, then its process.

    boot: fork node agents ─ bind() the dashboard's port ─ start(): fork the dashboard
          (before any zmq context, like the agents) ─ bind the head ─ ready line with the URL

The port is bound here, in the head's process, so the URL is known at once and
``kit.init()`` does not wait for the dashboard to import its web server: a page
that comes early waits in the socket's backlog. The forked process gets the
listening socket and the cluster's token in memory (never on a command line or
in a file), reaches the head over the same ipc path as the local node agents,
and dies with the head (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket

DEFAULT_PORT = 8265  # Ray's
PORTS_TRIED = 100  # 8265, 8266, ... until one is free


def bind(host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> socket.socket:
    """A listening socket on ``port``, or the next free one (``port`` 0: any free port).

    Raises:
        OSError: none of the ``PORTS_TRIED`` ports from ``port`` on is free.

    Example:
        >>> s = bind("127.0.0.1", 0)
        >>> s.getsockname()[1] > 0
        True
        >>> s.close()
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last = None
    for p in [0] if port == 0 else range(port, min(port + PORTS_TRIED, 65536)):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, p))
            s.listen(128)
            return s
        except OSError as e:
            s.close()
            if e.errno != errno.EADDRINUSE:
                raise
            last = e
    raise OSError(
        f"no free port for the dashboard from {port} to {port + PORTS_TRIED - 1} on {host} "
        f"({last}); pass another --dashboard-port, or --no-dashboard"
    )


def url_of(sock: socket.socket, host: str, node_ip: str = "127.0.0.1") -> str:
    """The address people open (a wildcard host is shown as this node's address).

    Example:
        >>> s = bind("127.0.0.1", 0)
        >>> url_of(s, "127.0.0.1").startswith("http://127.0.0.1:")
        True
        >>> s.close()
    """
    port = sock.getsockname()[1]
    shown = node_ip if host in ("", "0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def start(cfg: dict, head: str, sock: socket.socket) -> int:
    """Fork the dashboard process serving on ``sock``; return its pid (``sock`` is closed here).

    Args:
        cfg: the cluster's config (``token``, ``encrypt``).
        head: the head's address for processes of this host (its ipc path).
        sock: the listening socket from ``bind``.
    """
    from ..spawner import fork_child

    dcfg = {
        "head": head,
        "token": cfg["token"],
        "encrypt": bool(cfg.get("encrypt")),
        "port": sock.getsockname()[1],
    }
    pid = fork_child("kit.dashboard.launch:run", (dcfg, sock.fileno()), deathsig=signal.SIGTERM)
    sock.close()
    return pid


def run(cfg: dict, fd: int) -> None:
    """The dashboard process: wait for the first page, then serve (``server.main``).

    Nothing is imported or connected before someone opens the dashboard: until then
    it is a sleeping fork of the head's process, its pages shared with it, costing no
    CPU and little memory (the cluster's start-up does not wait for a web server).
    """
    os.dup2(2, 1)  # stdout may be the pipe kit.init reads the head's address from
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    try:
        os.nice(5)  # the head and the workers first
    except OSError:
        pass
    select.select([fd], [], [])
    from .server import main

    main(cfg, fd)
