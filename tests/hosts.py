"""A lab of hosts for multi-host tests: network namespaces on one switch, each with its
own address and, if asked, its own ``sshd``.

    this test (root namespace) .254 ──veth──┐
    kit<id>h1  .1 ──veth──┐                 │
    kit<id>h2  .2 ──veth──┼── bridge, in its own namespace kit<id>sw
    kit<id>h3  .3 ──veth──┘
    each host: sshd -D (own config, host key, the test's key authorized for root),
    listening on its address only

The hosts share this machine's filesystem and Python, as nothing else (their network,
their processes as ``ip netns pids`` sees them). The test's key pair, the host keys, a
``known_hosts`` and the sshd configs live in a private folder (0700) the test gives.
``Lab.close`` kills every process left in each namespace (sshd, kit daemons started over
SSH), then deletes the namespaces and the test's veth: nothing stays behind.

Skips: ``netns_unavailable()`` and ``sshd_unavailable()`` say why a machine cannot
run these tests (not root, no ``ip netns``, no OpenSSH: ``bash scripts/install-ssh.sh``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess

import psutil
from helpers import wait_until

SSHD = "/usr/sbin/sshd"


def netns_unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return "needs root and iproute2 (ip netns)"
    probe = f"kitprobe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True)
    if r.returncode != 0:
        return "cannot create network namespaces here: " + r.stderr.decode().strip()
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def sshd_unavailable() -> str | None:
    """Why the SSH tests cannot run here, or None when they can."""
    why = netns_unavailable()
    if why:
        return why
    missing = [p for p in (SSHD, shutil.which("ssh"), shutil.which("ssh-keygen")) if not p]
    if missing or not os.path.exists(SSHD):
        return "needs OpenSSH's server and client: run `bash scripts/install-ssh.sh`"
    return None


def _ip(*args, check=True):
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


def _free_subnet() -> str:
    """A /24 under 10.213/16 that no route of this machine uses (three octets)."""
    used = _ip("-4", "route").stdout
    for i in range(250):
        net = f"10.213.{(os.getpid() + i) % 250}"
        if f"{net}.0/24" not in used:
            return net
    raise RuntimeError("no free 10.213.x.0/24 subnet for the lab")


SSHD_CONFIG = """\
ListenAddress {address}:22
HostKey {host_key}
AuthorizedKeysFile {authorized}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
MaxStartups 64
MaxSessions 64
LogLevel ERROR
Subsystem sftp internal-sftp
"""


class Lab:
    """``n`` hosts in network namespaces (see the module docstring).

    Args:
        n: how many hosts.
        folder: a private folder for keys and configs (made 0700).
        ssh: start an sshd in each host.

    Example (in a test, as root)::

        lab = Lab(3, str(tmp_path / "lab"))
        try:
            lab.run(lab.hosts[0], ["hostname", "-I"])
        finally:
            lab.close()
    """

    def __init__(self, n: int, folder: str, ssh: bool = True):
        self.id = f"kit{os.getpid() % 100000}"
        self.folder = folder
        os.makedirs(folder, mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)
        self.switch = f"{self.id}sw"
        self.namespaces: dict = {}  # address -> namespace name
        self.sshd: dict = {}  # address -> Popen
        self.root_link = f"{self.id}r"
        self.hosts: list = []
        self.closed = False
        try:
            self._network(n)
            if ssh:
                self._ssh()
        except BaseException:
            self.close()
            raise

    # ---- the network ---------------------------------------------------------------

    def _network(self, n):
        net = _free_subnet()
        self.net = net
        for ns in [self.switch] + [f"{self.id}h{i + 1}" for i in range(n)]:
            _ip("netns", "del", ns, check=False)
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for i in range(n):
            ns, address = f"{self.id}h{i + 1}", f"{net}.{i + 1}"
            self._plug(ns, f"p{i + 1}", address)
            self.namespaces[address] = ns
            self.hosts.append(address)
        # This test's own namespace joins the switch too, so it reaches every host.
        _ip("link", "add", self.root_link, "type", "veth", "peer", "name", "pr",
            "netns", self.switch)  # fmt: skip
        _ip("-n", self.switch, "link", "set", "pr", "master", "br0", "up")
        _ip("addr", "add", f"{net}.254/24", "dev", self.root_link)
        _ip("link", "set", self.root_link, "up")
        self.client = f"{net}.254"

    def _plug(self, ns, port, address):
        _ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0",
            "netns", ns)  # fmt: skip
        _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")

    # ---- ssh -----------------------------------------------------------------------

    def _keygen(self, path):
        for old in (path, path + ".pub"):
            if os.path.exists(old):
                os.unlink(old)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kit-test", "-f", path],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip

    def _ssh(self):
        f = self.folder
        self.key = os.path.join(f, "id_test")
        self._keygen(self.key)
        self.authorized = os.path.join(f, "authorized_keys")
        shutil.copy(self.key + ".pub", self.authorized)
        self.known_hosts = os.path.join(f, "known_hosts")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation
        lines = []
        for address, ns in self.namespaces.items():
            host_key = os.path.join(f, f"host_{ns}")
            self._keygen(host_key)
            with open(host_key + ".pub") as k:
                lines.append(f"{address} {' '.join(k.read().split()[:2])}\n")
            cfg = os.path.join(f, f"sshd_{ns}.conf")
            with open(cfg, "w") as c:
                c.write(SSHD_CONFIG.format(
                    address=address, host_key=host_key, authorized=self.authorized
                ))  # fmt: skip
            self.sshd[address] = subprocess.Popen(
                ["ip", "netns", "exec", ns, SSHD, "-D", "-e", "-f", cfg],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=open(os.path.join(f, f"sshd_{ns}.log"), "ab"),
            )  # fmt: skip
        with open(self.known_hosts, "w") as k:
            k.writelines(lines)
        for address in self.namespaces:
            wait_until(lambda a=address: self._listening(a), 15, f"sshd on {address}")

    def _listening(self, address) -> bool:
        proc = self.sshd[address]
        if proc.poll() is not None:
            log = os.path.join(self.folder, f"sshd_{self.namespaces[address]}.log")
            raise RuntimeError(f"sshd on {address} exited: {open(log).read()[-500:]}")
        try:
            socket.create_connection((address, 22), timeout=0.5).close()
            return True
        except OSError:
            return False

    def ssh_options(self) -> dict:
        """The ssh client options that reach the lab's hosts with the test's key only."""
        return {
            "UserKnownHostsFile": self.known_hosts,
            "StrictHostKeyChecking": "yes",
            "IdentitiesOnly": "yes",
            "ConnectTimeout": "5",
        }

    # ---- looking inside --------------------------------------------------------------

    def run(self, address, cmd, timeout=60, **kw):
        """Run ``cmd`` (a list) inside the host's namespace; a CompletedProcess."""
        return subprocess.run(
            ["ip", "netns", "exec", self.namespaces[address], *cmd],
            capture_output=True, text=True, timeout=timeout, **kw,
        )  # fmt: skip

    def pids(self, address) -> list:
        """Every process in the host's namespace."""
        out = _ip("netns", "pids", self.namespaces[address], check=False).stdout
        return [int(p) for p in out.split()]

    def kit_processes(self, address) -> list:
        """The command lines of kit's processes in the host's namespace (not sshd)."""
        out = []
        for pid in self.pids(address):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            if "kit" in cmd and "sshd" not in cmd:
                out.append(f"{pid}: {cmd[:150]}")
        return out

    def stop_host(self, address):
        """Take a host off the network (its sshd and kit processes go on running)."""
        _ip("-n", self.namespaces[address], "link", "set", "eth0", "down")

    # ---- teardown --------------------------------------------------------------------

    def close(self):
        """Kill whatever runs in the namespaces, then delete them and the test's veth."""
        if self.closed:
            return
        self.closed = True
        for proc in self.sshd.values():
            if proc.poll() is None:
                proc.terminate()
        for ns in list(self.namespaces.values()) + [self.switch]:
            _kill_namespace(ns)
        for proc in self.sshd.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        _ip("link", "del", self.root_link, check=False)
        for ns in list(self.namespaces.values()) + [self.switch]:
            _ip("netns", "del", ns, check=False)


def _kill_namespace(ns, timeout=10.0):
    """SIGTERM every process of the namespace, then SIGKILL what is left after a moment."""
    pids = lambda: [int(p) for p in _ip("netns", "pids", ns, check=False).stdout.split()]  # noqa: E731
    for sig, wait in ((signal.SIGTERM, timeout / 2), (signal.SIGKILL, timeout / 2)):
        procs = []
        for pid in pids():
            try:
                os.kill(pid, sig)
                procs.append(psutil.Process(pid))
            except (ProcessLookupError, psutil.NoSuchProcess):
                pass
        psutil.wait_procs(procs, timeout=wait)  # returns once they have all exited
        if not pids():
            return
