"""kit up / down / exec / status over real SSH: sshd in network namespaces (tests/hosts.py).

A lab of three hosts, each with its own address and sshd, and a key made for the test.
The cluster file's checks are in test_cluster_file.py.
"""

import collections
import os
import subprocess
import sys
import time

import pytest
import yaml
from helpers import wait_until
from hosts import Lab, sshd_unavailable

import kit

pytestmark = pytest.mark.cluster


# ---- a lab of hosts over SSH ------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    why = sshd_unavailable()
    if why:
        pytest.skip(why)
    lab = Lab(3, str(tmp_path_factory.mktemp("lab")))
    yield lab
    lab.close()


@pytest.fixture
def state(tmp_path, monkeypatch):
    """This test's own ~/.kit (the launcher's state: the token of each cluster file)."""
    folder = tmp_path / "state"
    monkeypatch.setenv("KIT_STATE_DIR", str(folder))
    return {**os.environ, "KIT_STATE_DIR": str(folder)}


def write_file(lab, path, name, **extra) -> str:
    cfg = {
        "cluster_name": name,
        "python": sys.executable,  # the hosts share this machine's Python and kit
        "ssh": {"user": "root", "key": lab.key, "options": lab.ssh_options()},
        "cpus": 1,
        "head": lab.hosts[0],
        "workers": lab.hosts[1:],
        **extra,
    }
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def kit_cli(args, env, timeout=180):
    return subprocess.run(
        [sys.executable, "-m", "kit.cli", *args], capture_output=True, text=True, env=env,
        timeout=timeout,
    )  # fmt: skip


def no_kit_left(lab):
    left = {h: lab.kit_processes(h) for h in lab.hosts}
    return not any(left.values()) or left


@kit.remote
def host_of(i):
    return kit.get_runtime_context().get_node_id(), i


@pytest.mark.timeout(240)
def test_up_spreads_tasks_over_every_host_and_down_leaves_nothing(lab, state, tmp_path):
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "data.txt").write_text("copied\n")
    path = write_file(
        lab, tmp_path / "cluster.yaml", "spread",
        files={f"/tmp/kit-launcher-test-{os.getpid()}/project": str(tmp_path / "project")},
        setup=["true", "python3 -c 'print(1)'"],
    )  # fmt: skip
    try:
        up = kit_cli(["up", path], state)
        assert up.returncode == 0, up.stdout + up.stderr
        head = f"{lab.hosts[0]}:6380"
        assert f'kit.init(address="{head}")' in up.stdout
        assert "cluster spread is up: 3 node(s), 3 CPUs" in up.stdout
        for h in lab.hosts:
            assert f"{h}: 2 setup command(s) ran" in up.stdout
        # the token never was on a command line, and its file here is this user's only
        st = tmp_path / "state" / "clusters" / "spread.json"
        assert oct(st.stat().st_mode & 0o777) == "0o600"
        token = yaml.safe_load(st.read_text())["token"]
        for h in lab.hosts:
            for line in lab.kit_processes(h):
                assert token not in line
        # the files went to each host (here: one disk, so one folder with the file)
        assert open(f"/tmp/kit-launcher-test-{os.getpid()}/project/data.txt").read() == "copied\n"

        again = kit_cli(["up", path], state)
        assert again.returncode == 0, again.stderr
        assert again.stdout.count("left as it is") == 5  # 3 hosts probed, 2 nodes kept

        ctx = kit.init(address=head)  # the token comes from the launcher's state file
        try:
            ids = {n["NodeID"]: n["address"] for n in kit.nodes()}
            assert sorted(ids.values()) == sorted(lab.hosts)
            got = kit.get([host_of.remote(i) for i in range(10_000)], timeout=120)
            assert [i for _, i in got] == list(range(10_000))
            counts = collections.Counter(ids[n] for n, _ in got)
            assert set(counts) == set(lab.hosts), counts
            assert min(counts.values()) > 300, counts
        finally:
            kit.shutdown()
        assert ctx.address == head

        status = kit_cli(["status", path], state)
        assert status.returncode == 0, status.stderr
        assert f"{lab.hosts[0]}: head at {head} (running)" in status.stdout
        assert len([x for x in status.stdout.splitlines() if " True " in x]) == 3

        ran = kit_cli(["exec", path, "--", "python3", "-c", "import os; print(os.getcwd())"], state)
        assert ran.returncode == 0 and ran.stdout.strip() == os.path.expanduser("~")
        every = kit_cli(["exec", path, "--all", "--", "hostname -I"], state)
        for h in lab.hosts:
            assert f"{h}: {h}" in every.stdout

        # a worker whose node died: kit up starts it again and leaves the others alone
        victim = lab.hosts[2]
        for line in lab.kit_processes(victim):
            os.kill(int(line.split(":")[0]), 9)
        wait_until(lambda: not lab.kit_processes(victim), 10, "the killed node gone")
        fixed = kit_cli(["up", path, "--no-setup"], state)
        assert fixed.returncode == 0, fixed.stderr
        assert f"{victim}: node" in fixed.stdout and "joined" in fixed.stdout
        assert f"{lab.hosts[1]}: node runs (left as it is)" in fixed.stdout
        assert "4 node(s)" in fixed.stdout  # the head has not yet timed the dead one out
    finally:
        down = kit_cli(["down", path], state)
        subprocess.run(["rm", "-rf", f"/tmp/kit-launcher-test-{os.getpid()}"])
    assert down.returncode == 0, down.stderr
    assert "cluster spread is down" in down.stdout
    wait_until(lambda: no_kit_left(lab) is True, 15, lambda: f"no kit process: {no_kit_left(lab)}")
    assert not (tmp_path / "state" / "clusters" / "spread.json").exists()
    assert not os.path.exists(os.path.expanduser("~/.kit/clusters/spread"))


def _one_line_error(result, host, why):
    assert result.returncode == 1, result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"kit: host {host}: "), result.stderr
    assert why in last, last
    return last


@pytest.mark.timeout(120)
def test_a_bad_host_is_named_in_one_line_and_nothing_starts(lab, state, tmp_path):
    # a host that is down: nothing answers at that address
    gone = lab.net + ".77"
    opts = dict(lab.ssh_options(), ConnectTimeout="2")
    path = write_file(lab, tmp_path / "down.yaml", "bad", workers=[lab.hosts[1], gone],
                      ssh={"user": "root", "key": lab.key, "options": opts})  # fmt: skip
    t = time.monotonic()
    r = kit_cli(["up", path], state)
    _one_line_error(r, gone, "unreachable over ssh: connect to host")
    print(f"\nhost down reported in {time.monotonic() - t:.1f} s: {r.stderr.strip()}")

    # a wrong key: one the hosts do not know
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong = {"user": "root", "key": str(other), "options": lab.ssh_options()}
    path = write_file(lab, tmp_path / "key.yaml", "bad", ssh=wrong)
    r = kit_cli(["up", path], state)
    _one_line_error(r, lab.hosts[0], "Permission denied (publickey)")

    # a failing setup command, on one host only
    fails = f"hostname -I | grep -q {lab.hosts[2]} && exit 3 || true"
    path = write_file(lab, tmp_path / "setup.yaml", "bad", setup=[fails])
    r = kit_cli(["up", path], state)
    line = _one_line_error(r, lab.hosts[2], "failed (exit status 3)")
    assert "setup command" in line
    assert no_kit_left(lab) is True  # checked before anything started
    assert kit_cli(["down", path], state).returncode == 0


@pytest.mark.timeout(120)
def test_python_api_up_and_down(lab, state, tmp_path):
    path = write_file(lab, tmp_path / "api.yaml", "api", workers=[lab.hosts[1]])
    lines = []
    c = kit.Cluster.from_yaml(path, progress=lines.append)
    try:
        address = c.up()
        assert address == c.address == f"{lab.hosts[0]}:6380"
        assert any("cluster api is up: 2 node(s)" in x for x in lines), lines
        with kit.init(address=c.address):
            assert len(kit.nodes()) == 2
    finally:
        stopped = c.down()
    assert set(stopped) == set(lab.hosts[:2])
    assert c.address is None
    wait_until(lambda: no_kit_left(lab) is True, 15, lambda: f"no kit process: {no_kit_left(lab)}")


@kit.remote
def slow_task(i):
    time.sleep(0.6)  # long tasks: work waits for slots, so the autoscaler adds hosts
    return kit.get_runtime_context().get_node_id(), i


@pytest.mark.timeout(150)
def test_ssh_autoscaler_adds_pool_hosts_under_load_and_removes_them_idle(lab, state, tmp_path):
    auto = {"min_nodes": 1, "max_nodes": 3, "idle_timeout": 1.5, "wait": 0.3,
            "provider": "ssh", "pool": lab.hosts[1:]}  # fmt: skip
    path = write_file(lab, tmp_path / "auto.yaml", "auto", workers=[], autoscale=auto)
    try:
        up = kit_cli(["up", path], state)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "cluster auto is up: 1 node(s)" in up.stdout
        for h in lab.hosts[1:]:
            assert f"{h}: ready" in up.stdout  # the pool is set up, not started
            assert not lab.kit_processes(h)
        with kit.init(address=f"{lab.hosts[0]}:6380"):
            alive = lambda: sorted(n["address"] for n in kit.nodes() if n["Alive"])  # noqa: E731
            notes = lambda: [e["label"] for e in kit.events(0)[1] if e["state"] == "cluster"]  # noqa: E731
            refs = [slow_task.remote(i) for i in range(15)]
            wait_until(lambda: alive() == sorted(lab.hosts), 40,
                       lambda: f"every pool host added: {alive()}, {notes()}")  # fmt: skip
            got = kit.get(refs, timeout=60)
            assert [i for _, i in got] == list(range(15))
            wait_until(lambda: alive() == [lab.hosts[0]], 30,
                       lambda: f"the pool hosts removed once idle: {notes()}")  # fmt: skip
            said = notes()
        for h in lab.hosts[1:]:
            assert any(x.startswith(f"added {h}: ") and "tasks waiting" in x for x in said), said
            assert any(x.startswith(f"removed {h}: idle") for x in said), said
            wait_until(lambda h=h: not lab.kit_processes(h), 10, f"no kit process on {h}")
        status = kit_cli(["status", path], state)
        assert f"autoscaler: removed {lab.hosts[1]}: idle" in status.stdout, status.stdout
    finally:
        down = kit_cli(["down", path], state)
    assert down.returncode == 0, down.stderr
    wait_until(lambda: no_kit_left(lab) is True, 15, lambda: f"no kit process: {no_kit_left(lab)}")


@pytest.mark.timeout(120)
def test_cluster_magic_up_and_down(lab, state, tmp_path):
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython
    from IPython.utils.capture import capture_output

    if kit.is_initialized():
        kit.shutdown()
    path = write_file(lab, tmp_path / "nb.yaml", "nb", workers=[lab.hosts[2]])
    sh = start_ipython() or get_ipython()
    sh.run_line_magic("load_ext", "kit")
    try:
        with capture_output() as cap:
            sh.run_cell(f"%cluster up {path}")
        assert f"kit: connected to {lab.hosts[0]}:6380" in cap.stdout, cap.stdout + cap.stderr
        assert len(kit.nodes()) == 2
    finally:
        with capture_output() as cap:
            sh.run_cell("%cluster down")
    assert "cluster nb is down" in cap.stdout, cap.stdout + cap.stderr
    assert not kit.is_initialized()
    wait_until(lambda: no_kit_left(lab) is True, 15, lambda: f"no kit process: {no_kit_left(lab)}")
