"""runtime_env and the driver's local modules on two hosts (issue 17).

The cluster test makes two hosts in network namespaces (tests/hosts.py) whose node
agents run from an empty folder, with no import path to the driver's files and a cache
of their own (KIT_CACHE_DIR), so whatever a task imports from the driver reached it
through kit. The driver is a script in the test's own namespace, beside its "notebook"
folder.
"""

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile

import pytest
from helpers import TESTS

from kit import packing, runtime_env

# ---- fast: packing and checking ---------------------------------------------------------


@pytest.mark.fast
def test_pack_leaves_out_gitignore_and_excludes(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("A = 1\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.csv").write_text("x" * 1000)
    (tmp_path / "notes.tmp").write_text("scratch")
    (tmp_path / "keep.tmp").write_text("kept")
    (tmp_path / ".gitignore").write_text("*.tmp\n!keep.tmp\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "a.pyc").write_bytes(b"\0")
    packed = packing.pack(str(tmp_path), excludes=["data/"])
    names = sorted(zipfile.ZipFile(__import__("io").BytesIO(packed.data)).namelist())
    assert names == [".gitignore", "keep.tmp", "pkg/a.py"]
    again = packing.pack(str(tmp_path), excludes=["data/"])
    assert again.digest == packed.digest  # the same content is the same bytes
    (tmp_path / "pkg" / "a.py").write_text("A = 2\n")
    assert packing.pack(str(tmp_path), excludes=["data/"]).digest != packed.digest


@pytest.mark.fast
def test_pack_over_the_limit_names_size_limit_and_fix(tmp_path):
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / "w.bin").write_bytes(b"x" * 5000)
    (tmp_path / "a.py").write_text("A = 1\n")
    with pytest.raises(packing.PackTooLargeError) as e:
        packing.pack(str(tmp_path), limit=4096, what="runtime_env['working_dir'] here")
    msg = str(e.value)
    for part in ("4.9 KiB", "4.0 KiB", "blobs/", "excludes", ".gitignore"):
        assert part in msg, (part, msg)


@pytest.mark.fast
def test_unpack_refuses_names_outside(tmp_path):
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../evil.py", "x = 1")
    with pytest.raises(ValueError, match="outside"):
        packing.unpack_into(buf.getvalue(), str(tmp_path / "d"))
    assert not (tmp_path / "evil.py").exists()


@pytest.mark.fast
@pytest.mark.parametrize(
    "env, error, words",
    [
        ({"conda": "env.yml"}, ValueError, ["'conda' is not supported", "pip"]),
        ({"container": {}}, ValueError, ["'container' is not supported"]),
        ({"workdir": "."}, ValueError, ["unknown key 'workdir'", "working_dir"]),
        ({"env_vars": {"N": 4}}, TypeError, ["str to str", "'4'"]),
        ({"pip": 3}, TypeError, ["requirements"]),
        ("x", TypeError, ["dict"]),
    ],
)
def test_bad_runtime_env_is_refused_where_given(env, error, words):
    import kit

    with pytest.raises(error) as e:
        kit.remote(runtime_env=env)(lambda: 1)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


@pytest.mark.fast
def test_task_env_merges_over_the_drivers_as_in_ray():
    job = {"env_vars": {"A": "1", "B": "1"}, "pip": ["x"], "working_dir": "/a"}
    task = {"env_vars": {"B": "2"}, "working_dir": "/b"}
    assert runtime_env.merge(job, task) == {
        "env_vars": {"A": "1", "B": "2"},
        "pip": ["x"],
        "working_dir": "/b",
    }


# ---- a wheel made here, offline ---------------------------------------------------------


def make_wheel(folder, name, version, body="", pad=0):
    """A pure-Python wheel of package ``name`` written by hand (no build tools, no
    network); ``pad`` bytes of data make it big enough to travel in chunks."""
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n{body}",
        f"{name}/pad.bin": "p" * pad,
        f"{name}-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ),
        f"{name}-{version}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: kit-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, text in files.items():
        digest = hashlib.sha256(text.encode()).digest()
        b64 = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        record.append(f"{path},sha256={b64},{len(text.encode())}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = "\n".join(record) + "\n"
    path = os.path.join(folder, f"{name}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for p, text in files.items():
            z.writestr(p, text)
    return path


# ---- the driver, a script beside its notebook folder ------------------------------------

DRIVER = r"""
import json, os, sys, time
sys.path.insert(0, {tests!r})
from helpers import wait_until
sys.path.insert(0, {nb!r})      # the notebook's folder: its modules are only here
import helpers_nb
import kit

kit.init(address={head!r}, token={token!r})
out = {{}}
S = kit.NodeAffinitySchedulingStrategy
nodes = sorted((n["address"], n["NodeID"]) for n in kit.nodes() if n["Alive"])
out["hosts"] = [a for a, _ in nodes]
on = lambda f, nid: f.options(scheduling_strategy=S(nid))  # noqa: E731

@kit.remote
def use(x):
    import os
    return helpers_nb.clean(x), os.getcwd(), kit.get_runtime_context().get_node_id()

out["local"] = kit.get([on(use, n).remote(1) for _, n in nodes], timeout=60)
with open(os.path.join({nb!r}, "helpers_nb.py"), "w") as f:   # edited, not reloaded here
    f.write("def clean(x):\n    return x * 1000\n")
out["edited"] = [r[0] for r in kit.get([on(use, n).remote(2) for _, n in nodes], timeout=60)]

@kit.remote
def version():
    import kitwheel
    return kitwheel.VERSION, kitwheel.__file__

with_pip = version.options(runtime_env={{"pip": [{wheel!r}]}})
t = time.time()
out["pip"] = kit.get([on(with_pip, n).remote() for _, n in nodes], timeout=120)
out["pip_first_s"] = round(time.time() - t, 2)
t = time.time()
out["pip_again"] = kit.get([on(with_pip, n).remote() for _, n in nodes], timeout=60)
out["pip_next_s"] = round(time.time() - t, 3)
out["no_pip"] = []
for _, n in nodes:
    try:
        kit.get(on(version, n).remote(), timeout=60)
        out["no_pip"].append("imported")
    except ModuleNotFoundError as e:
        out["no_pip"].append(str(e))

@kit.remote(runtime_env={{"env_vars": {{"KIT_T17": "on"}}}})
def env_var():
    return os.environ.get("KIT_T17")

out["env_vars"] = kit.get([on(env_var, n).remote() for _, n in nodes], timeout=60)

@kit.remote(runtime_env={{"working_dir": {nb!r}, "py_modules": [{pkg!r}]}})
def in_dirs():
    import helpers_nb, kitpkg.sub
    return os.getcwd(), open("data/table.csv").read(), kitpkg.sub.NAME, helpers_nb.clean(1)

out["dirs"] = kit.get([on(in_dirs, n).remote() for _, n in nodes], timeout=60)

@kit.remote(runtime_env={{"env_vars": {{"KIT_T17": "actor"}}}})
class Holder:
    def get(self):
        return os.environ.get("KIT_T17"), kit.get_runtime_context().get_node_id()

h = Holder.options(scheduling_strategy=S(nodes[1][1])).remote()
out["actor"] = kit.get(h.get.remote(), timeout=60)

try:
    on(use, nodes[0][1]).options(runtime_env={{"working_dir": {big!r}}}).remote(1)
    out["too_big"] = "accepted"
except ValueError as e:
    out["too_big"] = str(e)

# Two environments at once: each task waits (on files, with a timeout) until the other
# has started, then tries both packages.
@kit.remote
def both(me, other, gate):
    import importlib
    open(os.path.join(gate, me), "w").close()
    wait_until(lambda: os.path.exists(os.path.join(gate, other)), 60, "the other task")
    seen = {{}}
    for name in ("kitwheel_a", "kitwheel_b"):
        try:
            seen[name] = importlib.import_module(name).VERSION
        except ImportError:
            seen[name] = None
    return me, os.getpid(), seen

a = both.options(runtime_env={{"pip": [{wheel_a!r}]}}).remote("a", "b", {gate!r})
b = both.options(runtime_env={{"pip": [{wheel_b!r}]}}).remote("b", "a", {gate!r})
out["two_envs"] = kit.get([a, b], timeout=120)

broken = version.options(runtime_env={{"pip": [{broken!r}]}})
others = [on(use, n).remote(3) for _, n in nodes]
try:
    kit.get(broken.remote(), timeout=120)
    out["broken"] = "ran"
except kit.RuntimeEnvSetupError as e:
    out["broken"] = str(e)
out["others"] = [r[0] for r in kit.get(others, timeout=60)]
print("RESULT " + json.dumps(out), flush=True)
kit.shutdown()
"""


def _start(lab, host, args, env, cwd):
    out = lab.run(host, [sys.executable, "-m", "kit.cli", "start", *args], env=env, cwd=cwd)
    assert out.returncode == 0, out.stdout + out.stderr


TOKEN = "runtime-env-test-token-0123456789abcdef"


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory):
    """Two hosts (network namespaces), a head and a node agent on each, run from an empty
    folder with caches of their own; the driver's notebook folder and wheels beside."""
    from hosts import Lab, netns_unavailable

    why = netns_unavailable()
    if why:
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("two_hosts")
    nb = tmp / "notebook"
    nb.mkdir()
    (nb / "helpers_nb.py").write_text("def clean(x):\n    return x + 1\n")
    (nb / "data").mkdir()
    (nb / "data" / "table.csv").write_text("a,b\n1,2\n3,4\n")
    wheels = tmp / "wheels"
    wheels.mkdir()
    empty = tmp / "empty"  # where the agents run: nothing of the driver's there
    empty.mkdir()
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KIT_CACHE_DIR")}
    lab = Lab(2, str(tmp / "lab"), ssh=False)
    h1, h2 = lab.hosts
    envs = {}
    try:
        for host, role in ((h1, "head"), (h2, "node")):
            envs[host] = dict(
                base,
                KIT_STATE_DIR=str(tmp / f"state-{role}"),
                KIT_CACHE_DIR=str(tmp / f"cache-{role}"),
            )
        common = ["--num-cpus", "2", "--token", TOKEN, "--no-dashboard"]
        _start(lab, h1, ["--head", "--port", "6397", "--node-ip-address", h1, *common],
               envs[h1], str(empty))  # fmt: skip
        _start(lab, h2, ["--address", f"{h1}:6397", "--node-ip-address", h2, *common],
               envs[h2], str(empty))  # fmt: skip
        yield {
            "tmp": tmp, "nb": nb, "wheels": wheels, "empty": empty, "hosts": (h1, h2),
            "head": f"{h1}:6397", "base": base,
            "wheel": make_wheel(str(wheels), "kitwheel", "1.5", pad=300_000),  # in chunks
        }  # fmt: skip
    finally:
        for host in (h2, h1):
            if host in envs:
                lab.run(host, [sys.executable, "-m", "kit.cli", "stop"], env=envs[host])
        lab.close()


@pytest.mark.cluster
@pytest.mark.timeout(300)
def test_two_hosts_get_the_drivers_code_and_environments(two_hosts):
    c = two_hosts
    tmp, nb = c["tmp"], c["nb"]
    h1, h2 = c["hosts"]
    wheel_a = make_wheel(str(c["wheels"]), "kitwheel_a", "1.0")
    wheel_b = make_wheel(str(c["wheels"]), "kitwheel_b", "2.0")
    big = tmp / "big"
    big.mkdir()
    (big / "blob.bin").write_bytes(b"x" * 3_000_000)
    gate = tmp / "gate"
    gate.mkdir()
    pkg = tmp / "elsewhere" / "kitpkg"  # a package on no import path
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub.py").write_text("NAME = 'kitpkg.sub'\n")
    broken = c["wheels"] / "kitbroken-1.0-py3-none-any.whl"
    broken.write_bytes(b"this is not a zip file")
    script = DRIVER.format(
        tests=TESTS, nb=str(nb), head=c["head"], token=TOKEN, wheel=c["wheel"],
        wheel_a=wheel_a, wheel_b=wheel_b, big=str(big), gate=str(gate), broken=str(broken),
        pkg=str(pkg),
    )  # fmt: skip
    env = dict(c["base"], KIT_STATE_DIR=str(tmp / "state-driver"),
               KIT_RUNTIME_ENV_LIMIT=str(1 << 20))  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env,
        timeout=240, cwd=str(tmp),
    )  # fmt: skip
    lines = [x for x in run.stdout.splitlines() if x.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stdout[-3000:] + run.stderr[-3000:]
    out = json.loads(lines[0][len("RESULT ") :])
    cache_a, cache_b = (os.listdir(tmp / f"cache-{r}") for r in ("head", "node"))

    assert out["hosts"] == [h1, h2]
    # a local module, shipped once: the driver said so in one line
    assert [r[0] for r in out["local"]] == [2, 2]
    assert {cwd for _, cwd, _ in out["local"]} == {str(c["empty"])}  # the agents' folder
    assert run.stderr.count("kit: shipping local module helpers_nb") == 1, run.stderr
    assert out["edited"] == [2000, 2000]  # the edit reached both hosts
    assert "code" in cache_a and "code" in cache_b
    # a wheel made here, installed on both hosts, in their own caches
    assert [v for v, _ in out["pip"]] == ["1.5", "1.5"]
    assert str(tmp / "cache-head") in out["pip"][0][1]
    assert str(tmp / "cache-node") in out["pip"][1][1]
    assert out["pip_again"] == out["pip"]
    for msg, host in zip(out["no_pip"], (h1, h2)):
        assert "kitwheel" in msg and host in msg and "runtime_env['pip']" in msg, msg
    assert out["env_vars"] == ["on", "on"]
    # working_dir: the task's folder and first import path; py_modules importable by name
    for (cwd, table, name, cleaned), role in zip(out["dirs"], ("head", "node")):
        assert cwd.startswith(str(tmp / f"cache-{role}" / "dir")), cwd
        assert table.startswith("a,b") and name == "kitpkg.sub" and cleaned == 1000
    assert out["actor"][0] == "actor"
    assert "over the limit of 1.0 MiB" in out["too_big"] and "excludes" in out["too_big"]
    (_, pid_a, seen_a), (_, pid_b, seen_b) = out["two_envs"]
    assert pid_a != pid_b
    assert seen_a == {"kitwheel_a": "1.0", "kitwheel_b": None}
    assert seen_b == {"kitwheel_a": None, "kitwheel_b": "2.0"}
    # a failed install: one clear error with pip's last lines; other tasks unharmed
    assert "pip could not install kitbroken-1.0-py3-none-any.whl on node" in out["broken"]
    assert "last lines" in out["broken"] and "ERROR" in out["broken"], out["broken"]
    assert out["others"] == [3000, 3000]
    print(
        f"\nruntime_env on two hosts: first pip task {out['pip_first_s']} s, "
        f"the next {out['pip_next_s']} s"
    )


@pytest.mark.kernel
@pytest.mark.timeout(300)
def test_a_notebook_on_two_hosts_through_remote_cells(two_hosts):
    """The same through %%remote in a real kernel whose folder holds the notebook's
    helper module and data: shipped, edited, --env pip and env_vars, %cluster sync."""
    pytest.importorskip("jupyter_client")
    from helpers import Kernel
    from jupyter_client import KernelManager

    c = two_hosts
    nb = c["nb"]
    (nb / "helpers_nb.py").write_text("def clean(x):\n    return x + 1\n")
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(nb), env=dict(c["base"], KIT_STATE_DIR=str(c["tmp"] / "state-nb")))
    kc = km.client()
    kc.start_channels()
    k = Kernel(km, kc)
    try:
        kc.wait_for_ready(timeout=60)
        k.run(f"%load_ext kit\n%cluster connect {c['head']} --token {TOKEN}", timeout=60)
        k.run("import helpers_nb, json")
        first = k.run("%%remote -o r\nr = helpers_nb.clean(1)", timeout=60)
        assert k.streams(first).count("kit: shipping local module helpers_nb") == 1
        k.run("assert r == 2, r")
        (nb / "helpers_nb.py").write_text("def clean(x):\n    return x * 1000\n")
        nodes = "[n['NodeID'] for n in __import__('kit').nodes() if n['Alive']]"
        k.run(f"ids = {nodes}")
        for i in range(2):
            again = k.run(f"%%remote -o r --node {{ids[{i}]}}\nr = helpers_nb.clean(2)", timeout=60)
            assert "shipping" not in k.streams(again)  # said once
            k.run("assert r == 2000, r")
        env = json.dumps({"pip": [c["wheel"]], "env_vars": {"KIT_T17": "cell"}})
        k.run(f"env = {env}")
        cell = "import kitwheel, os\nv = (kitwheel.VERSION, os.environ['KIT_T17'])"
        k.run(f"%%remote -o v --env env\n{cell}", timeout=120)
        k.run("assert v == ('1.5', 'cell'), v")
        bad = k.submit("%%remote\nimport kitwheel")
        reply = k.finish(bad, timeout=60)
        assert reply["status"] == "error"
        shown = k.streams(bad) + json.dumps(k.of(bad), default=str)
        assert "kitwheel" in shown and "runtime_env['pip']" in shown, shown[-2000:]
        k.run("data = %cluster sync data/", timeout=60)
        k.run("%%remote -o rows --node {ids[1]}\nrows = open(data + '/table.csv').read().split()")
        k.run("assert rows == ['a,b', '1,2', '3,4'], rows")
        k.run("%cluster stop", timeout=30)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.cluster
@pytest.mark.timeout(120)
def test_uv_installs_when_asked(fresh, tmp_path):
    """runtime_env['uv']: installed with uv (skipped where uv is not on PATH)."""
    import shutil

    import kit

    if shutil.which("uv") is None:
        pytest.skip("uv is not installed here (pip install uv)")
    fresh(num_cpus=1, include_dashboard=False)
    wheel = make_wheel(str(tmp_path), "kituv", "3.0")

    @kit.remote(runtime_env={"uv": [wheel]})
    def version():
        import kituv

        return kituv.VERSION, kituv.__file__

    v, path = kit.get(version.remote(), timeout=100)
    assert v == "3.0" and os.sep + "pip" + os.sep in path
