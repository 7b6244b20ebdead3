"""Running commands on other hosts with the OpenSSH client (``ssh``), as a user would.

    Remote(host, user, key, port, options).run("cmd", stdin=b"...")
        ssh [-i key] [-p port] [-o K=V]... -o BatchMode=yes
            -o ControlMaster=auto -o ControlPath=<private dir>/%C -o ControlPersist=30
            [user@]host -- cmd                    secrets go on stdin, never in ``cmd``
    Remote.send(local_path, remote_path):  tar -c | ssh host 'tar -x'   (no shared disk)
    Remote.close(): ssh -O exit  (the shared connection ends with the launcher's work)

The ssh client reads ``~/.ssh/config``, uses the user's agent and jump hosts, and checks
host keys as it always does: kit adds only what keeps it scripted (``BatchMode``: no
prompt ever waits) and one shared connection per host, in a private folder (0700), so
the many short commands of ``kit up`` do not each pay for a handshake.

A failure is one line naming the host and why (``HostError``): ssh's own last word for
a connection or key problem (exit status 255: "Connection refused", "Permission denied
(publickey)", "Host key verification failed"), or the command's exit status and last line.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tarfile
import tempfile

from .errors import HostError

SSH_FAILED = 255  # ssh's exit status for its own failures (not the command's)


def _private_tmp() -> str:
    from . import paths

    folder = os.path.join(paths.runtime_dir(), "ssh")
    return paths.private_dir(folder, "remove it; kit makes it again")


class Remote:
    """One host reached over ssh (see the module docstring).

    Args:
        host: its name or address, as ssh takes it (a ``~/.ssh/config`` alias works).
        user, key, port: ``-l``, ``-i``, ``-p`` (None: ssh's defaults).
        options: ``(name, value)`` pairs given as ``-o name=value``.
        connect_timeout: seconds to wait for the connection (unless options set one).

    Example:
        >>> r = Remote("10.0.0.2", user="me", key="~/.ssh/id_ed25519")
        >>> r.argv("true")[-3:]
        ['10.0.0.2', '--', 'true']
    """

    def __init__(self, host, user=None, key=None, port=None, options=(), connect_timeout=10):
        self.host = host
        self.user = user
        self.key = os.path.expanduser(key) if key else None
        self.port = port
        self.options = tuple(options)
        self.connect_timeout = connect_timeout
        self._control = None

    def _plain(self) -> list:
        """ssh with the user's settings for this host (key, port, user, options)."""
        ssh = shutil.which("ssh")
        if ssh is None:
            raise HostError(self.host, "no ssh client here: install OpenSSH's client")
        argv = [ssh]
        if self.key:
            argv += ["-i", self.key]
        if self.port:
            argv += ["-p", str(self.port)]
        if self.user:
            argv += ["-l", self.user]
        names = {k.lower() for k, _ in self.options}
        for k, v in self.options:
            argv += ["-o", f"{k}={v}"]
        if "connecttimeout" not in names:
            argv += ["-o", f"ConnectTimeout={self.connect_timeout}"]
        return argv

    def _base(self) -> list:
        """``_plain`` made scripted: no prompt, one shared connection (a private socket)."""
        if self._control is None:
            self._control = _private_tmp()
        return [*self._plain(),
            "-o", "BatchMode=yes",
            "-o", "ControlMaster=auto",
            "-o", f"ControlPath={os.path.join(self._control, '%C')}",
            "-o", "ControlPersist=30",
        ]  # fmt: skip

    def config(self) -> dict:
        """The ssh client's settings for this host (``ssh -G``: ~/.ssh/config applied)."""
        r = subprocess.run([*self._plain(), "-G", self.host], capture_output=True, text=True,
                           timeout=30)  # fmt: skip
        out = {}
        for line in r.stdout.splitlines():
            k, _, v = line.partition(" ")
            out[k] = v
        return out

    def argv(self, command: str) -> list:
        """The ssh command line that runs ``command`` (a shell string) there."""
        return [*self._base(), self.host, "--", command]

    def run(self, command: str, stdin: bytes = b"", timeout: float = 120.0, what=None):
        """Run ``command`` there; its stdout (bytes).

        Args:
            command: a shell command line for the remote shell (no secret in it).
            stdin: bytes for its standard input (where secrets travel).
            timeout: seconds before it is given up.
            what: how the failure names the command (default: the command).

        Raises:
            HostError: ssh could not connect or log in, the command failed or timed out.
        """
        try:
            r = subprocess.run(
                self.argv(command), input=stdin, capture_output=True, timeout=timeout,
                start_new_session=True,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise HostError(
                self.host, f"{what or command!r} did not finish within {timeout:.0f} s"
            ) from None
        if r.returncode == SSH_FAILED and _ssh_said(r.stderr):
            raise HostError(self.host, "unreachable over ssh: " + _ssh_said(r.stderr))
        if r.returncode != 0:
            last = _last_line(r.stderr) or _last_line(r.stdout) or "no output"
            raise HostError(
                self.host, f"{what or command!r} failed (exit status {r.returncode}): {last}"
            )
        return r.stdout

    def send(self, local: str, remote: str, timeout: float = 600.0) -> None:
        """Copy a file or a directory's contents to ``remote`` there (through tar on stdin).

        Raises:
            HostError: the copy failed.
        """
        local = os.path.expanduser(local)
        buf = tempfile.TemporaryFile()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            if os.path.isdir(local):
                for name in sorted(os.listdir(local)):
                    tar.add(os.path.join(local, name), arcname=name)
                target = remote
            else:
                tar.add(local, arcname=os.path.basename(remote.rstrip("/")))
                target = os.path.dirname(remote.rstrip("/")) or "."
        buf.seek(0)
        dest = remote_path(target)
        self.run(
            f"mkdir -p {dest} && tar -x -m -C {dest} -f -",
            stdin=buf.read(), timeout=timeout, what=f"copy {local} to {remote}",
        )  # fmt: skip

    def close(self) -> None:
        """End the shared connection, if one was opened (nothing stays behind)."""
        if self._control is None:
            return
        try:
            subprocess.run(
                [*self._base(), "-O", "exit", self.host], capture_output=True, timeout=10
            )
        except (subprocess.TimeoutExpired, OSError, HostError):
            pass


def remote_path(path: str) -> str:
    """A remote path for a shell command: ``~`` stays for the remote shell to expand.

    Example:
        >>> remote_path("~/my project")
        "~/'my project'"
        >>> remote_path("/opt/x")
        '/opt/x'
    """
    if path == "~":
        return "~"
    if path.startswith("~/"):
        return "~/" + shlex.quote(path[2:])
    return shlex.quote(path)


def _last_line(data: bytes) -> str:
    lines = [x.strip() for x in data.decode(errors="replace").splitlines() if x.strip()]
    return lines[-1] if lines else ""


def _ssh_said(stderr: bytes) -> str:
    """ssh's own complaint (a connection or key problem), or "" if it came from elsewhere."""
    for line in reversed(stderr.decode(errors="replace").splitlines()):
        line = line.strip()
        if line.startswith("ssh: "):
            return line[5:]
        low = line.lower()
        if any(
            w in low
            for w in ("permission denied", "host key verification failed", "connection closed",
                      "could not resolve", "no route", "timed out", "refused",
                      "kex_exchange_identification", "connection reset")
        ):  # fmt: skip
            return line
    return ""
