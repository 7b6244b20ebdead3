"""``%cluster connect ray:auto`` and ``ray://HOST:PORT`` against a ``ray start`` cluster.

The cluster is started once for the module with the CLI (one head node, 2 CPUs,
its own ports and temp dir, ``RAY_TMPDIR`` pointing there so that ``ray:auto``
finds this cluster and no other Ray on the machine), and each address connects,
runs cells, shows the node and disconnects: the cluster keeps running.

Teardown kills the cluster's processes with SIGKILL, as ``ray stop --force`` does,
but only this cluster's (found by an environment tag they all inherit): ``ray
stop`` would stop every Ray on the machine, other test runs' included. Then it
checks that none is left and that this process has no child left.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
import warnings

import psutil
import pytest
from conftest import wait_gone
from helpers import wait_until
from test_backends import run, shell

import backends

pytestmark = pytest.mark.engines

TAG_ENV = "KIT_TEST_RAY_CLUSTER"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tagged(cluster):
    """The cluster's live processes: those in the session ``ray start`` led, or with
    ``TAG_ENV`` in their environment (setting a process title may blank it)."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.pid == os.getpid() or p.status() == psutil.STATUS_ZOMBIE:
                continue
            if os.getsid(p.pid) == cluster["sid"] or p.environ().get(TAG_ENV) == cluster["tag"]:
                found.append(p)
        except (psutil.Error, OSError):
            pass
    return found


def kill_cluster(cluster, timeout=20.0):
    """SIGKILL the cluster's processes (``ray stop --force``, this cluster only) until none
    is left (a process may start another while dying)."""
    left = []

    def none_left():
        for p in tagged(cluster):
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        psutil.wait_procs(tagged(cluster), timeout=2)
        left[:] = tagged(cluster)
        return not left

    wait_until(none_left, timeout, lambda: f"Ray's processes to go: {names(left)}")


def names(procs):
    out = []
    for p in procs:
        try:
            out.append(" ".join(p.cmdline()[:2]))
        except psutil.Error:
            out.append(str(p.pid))
    return out


@pytest.fixture(scope="module")
def ray_cluster():
    """``{"gcs": HOST:PORT, "client": PORT, ...}`` of a running ``ray start`` cluster."""
    pytest.importorskip("ray")
    pytest.importorskip("grpc", reason="Ray Client needs ray[client]")
    tag = uuid.uuid4().hex
    tmp = tempfile.mkdtemp(prefix="kit-ray-")  # short: Ray's socket paths live here
    gcs, client = free_port(), free_port()
    env = dict(os.environ, RAY_TMPDIR=tmp, RAY_USAGE_STATS_ENABLED="0", **{TAG_ENV: tag})
    env.pop("RAY_ADDRESS", None)
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    mp = pytest.MonkeyPatch()
    start = subprocess.Popen(
        [
            ray_cli,
            "start",
            "--head",
            "--num-cpus",
            "2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            "--port",
            str(gcs),
            "--ray-client-server-port",
            str(client),
            "--temp-dir",
            os.path.join(tmp, "ray"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    cluster = {
        "gcs": f"127.0.0.1:{gcs}",
        "client": client,
        "tag": tag,
        "sid": start.pid,
        "tmp": tmp,
    }
    try:
        out, _ = start.communicate(timeout=60)
        assert start.returncode == 0, out[-3000:]
        mp.setenv("RAY_TMPDIR", tmp)  # ray:auto reads $RAY_TMPDIR/ray/ray_current_cluster
        mp.delenv("RAY_ADDRESS", raising=False)
        # the proxy starts each client's server through the runtime env agent: wait for it
        assert wait_until(lambda: "ray::RuntimeEnvAgent" in daemons(cluster), 20)
        yield cluster
    finally:
        if start.poll() is None:
            start.kill()
            start.wait()
        mp.undo()
        if backends.current().name == "ray":  # a failed test left it connected
            run(shell(), "%cluster stop")
        import shutil

        try:
            kill_cluster(cluster)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        wait_gone(20, "processes left")


def daemons(cluster):
    """The names of the cluster's processes (``gcs_server``, ``raylet``, ``ray::...``)."""
    names = set()
    for p in tagged(cluster):
        try:
            names.add(os.path.basename(p.cmdline()[0]))
        except (psutil.Error, IndexError):
            pass
    return names


def client_server_logs(cluster):
    """The tails of the Ray Client servers' error logs, for a failure message."""
    import glob

    out = []
    pattern = os.path.join(cluster["tmp"], "ray", "session_latest", "logs", "ray_client_*.err")
    for path in sorted(glob.glob(pattern)):
        with open(path, errors="replace") as f:
            out.append(f"--- {os.path.basename(path)}\n{f.read()[-1500:]}")
    return "\n".join(out)


# ray:// first: in a fresh process, Ray Client has not been told to send the token
# yet (ray:auto turns token authentication on for the whole process)
@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["ray://", "ray:auto"])
def test_connect_runs_cells_and_leaves_the_cluster_running(ray_cluster, how):
    import ray

    sh = shell()
    address = f"ray://127.0.0.1:{ray_cluster['client']}" if how == "ray://" else "ray:auto"
    r, cap = run(sh, f"%cluster connect {address}")
    said = cap.stdout + cap.stderr
    if not r.success and ("Starting Ray client server failed" in said or "ZombieProcess" in said):
        # Ray's proxy gave up starting this client's server (after 30 s; about one run
        # in six here), or the server died as the proxy read its command line (Ray's
        # proxier.py reads psutil cmdline() of a process that already exited): once
        # more, and say so with the server's log
        logs = client_server_logs(ray_cluster)
        warnings.warn(
            f"Ray Client's server failed to start; retrying. Its logs:\n{logs}", stacklevel=1
        )
        r, cap = run(sh, f"%cluster connect {address}")
        assert r.success, cap.stdout + cap.stderr + logs
    assert r.success, cap.stdout + cap.stderr
    try:
        assert f"ray: connected to {address}: 1 node(s), 2 CPUs" in cap.stdout, cap.stdout
        b = backends.current()
        assert b.name == "ray" and not b.started_here
        run(sh, "data = list(range(10))")
        r, cap = run(
            sh, "%%remote -o total\nprint('hello from', 'the cell')\ntotal = sum(data)\ntotal * 2"
        )
        assert r.success, cap.stdout + cap.stderr
        assert r.result == 90 and sh.user_ns["total"] == 45
        assert "hello from the cell\n" in cap.stdout

        r, cap = run(sh, "%%remote --map 'i in range(4)' -o sq\nprint('item', i)\nsq = i * i")
        assert r.success, cap.stdout + cap.stderr
        assert sh.user_ns["sq"] == [0, 1, 4, 9]
        assert all(f"[{i}] item {i}" in cap.stdout for i in range(4)), cap.stdout

        # %cluster status: the one node, with the 5 tasks of this connection done
        assert wait_until(lambda: sum(n["done"] for n in b.nodes()) == 5, 10), b.nodes()
        [node] = b.nodes()
        r, cap = run(sh, "%cluster status")
        header, row = cap.outputs[0].data["text/plain"].splitlines()
        assert header.split()[:7] == ["node", "alive", "CPU", "running", "queued", "done", "failed"]
        assert row.split()[:8] == ["n0", node["node_id"][:8], "yes", "2/2", "0", "0", "5", "0"], row
    finally:
        r, cap = run(sh, "%cluster stop")
    assert "ray: disconnected (the cluster keeps running)" in cap.stdout, cap.stdout
    assert backends.current().name == "kit" and not ray.is_initialized()

    # the cluster runs on: its daemons are up and its GCS answers
    assert {"gcs_server", "raylet"} <= daemons(ray_cluster)
    host, port = ray_cluster["gcs"].split(":")
    socket.create_connection((host, int(port)), timeout=5).close()


@pytest.mark.timeout(30)
def test_ray_client_without_ray_client_extra_is_one_line(monkeypatch):
    """Without grpc (``ray[client]``) Ray refuses ``ray://`` at once: one line says so."""
    pytest.importorskip("ray")
    monkeypatch.setitem(sys.modules, "grpc", None)  # import grpc: ImportError
    sh = shell()
    r, cap = run(sh, "%cluster connect ray://127.0.0.1:1")
    lines = (cap.stdout + cap.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "UsageError: %cluster connect: ray: cannot connect to ray://127.0.0.1:1"
    ), lines
    assert "ray[client]" in lines[0]
    assert backends.current().name == "kit"
