"""Other local users can neither read kit's private files nor make kit run their code.

The attack (issue "Trustworthy under faults and attack"): another local user makes kit's
spill folder before kit does, or plants a file in ``/dev/shm`` under the name of an
object that was spilled, holding a pickle of their own; the victim's ``kit.get`` loaded
it and ran their code. Here it is staged by root with a second uid (a subprocess that
drops to ``OTHER_UID``; those tests skip when not run as root). The planted pickle makes
a marker file when loaded (``test_the_planted_pickle_runs_when_loaded`` shows it does);
kit must refuse, naming the file and what is wrong, and the marker must never appear.

Each test gets its own ``TMPDIR``, sticky and world-writable like ``/tmp``, so its
``kit-<uid>`` directory is apart from other runs on the machine.
"""

import glob
import os
import pickle
import pwd
import shutil
import stat
import subprocess
import tempfile
import types

import numpy as np
import pytest
from helpers import wait_until

import kit
from kit import cli, object_store, paths
from kit.errors import ObjectLostError, UnsafePathError, UntrustedObjectError

MiB = 1 << 20
OTHER_UID = 54321  # no account needed: the kernel checks numbers
UID = os.geteuid()

needs_root = pytest.mark.skipif(
    UID != 0, reason="staging another local user needs root (a subprocess drops to another uid)"
)


def as_other(script):
    """Run a shell script as another local user (uid and gid OTHER_UID, no groups)."""
    subprocess.run(
        ["/bin/sh", "-c", script],
        user=OTHER_UID,
        group=OTHER_UID,
        extra_groups=[],
        cwd="/",
        check=True,
        timeout=30,
    )


class _Payload:
    """Loading this makes the marker file: what an attacker's pickle could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def planted_object(marker) -> bytes:
    """A well-formed kit object file whose pickle makes ``marker`` when loaded."""
    meta = pickle.dumps(_Payload(marker), protocol=5)
    return object_store._HEAD.pack(object_store._MAGIC, 0, len(meta)) + meta


@pytest.fixture
def shared_tmp(monkeypatch):
    """A fresh TMPDIR like /tmp (mode 1777) for this test, and no KIT_SPILL_DIR."""
    if OTHER_UID != UID:
        with pytest.raises(KeyError):
            pwd.getpwuid(OTHER_UID)  # the "other user" must be nobody real
    d = tempfile.mkdtemp(prefix="kit-sec-", dir=tempfile.gettempdir())
    os.chmod(d, 0o1777)
    monkeypatch.setenv("TMPDIR", d)
    monkeypatch.delenv("KIT_SPILL_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def attacker(shared_tmp):
    """``plant(path)`` puts the marker-making object file at ``path`` as the other user;
    ``marker`` is the file that shows it ran. Planted files are removed afterwards."""
    marker = os.path.join(shared_tmp, "planted-pickle-ran")
    source = os.path.join(shared_tmp, "planted.bin")
    with open(source, "wb") as f:
        f.write(planted_object(marker))
    os.chmod(source, 0o644)
    planted = []

    def plant(path):
        planted.append(path)
        as_other(f"cp {source} {path} && chmod 644 {path}")

    yield types.SimpleNamespace(plant=plant, marker=marker, source=source)
    for path in planted:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def wait_spilled(refs):
    """Wait until one of ``refs`` is spilled; return its object's name and its ref."""
    kit.wait(refs, num_returns=len(refs), timeout=30)
    client = kit.api._current_client()
    by_name = {client.values[r._id][2]: r for r in refs}
    name = wait_until(
        lambda: next((n for n in by_name if object_store.is_spilled(n)), None),
        20,
        "an object in the spill folder and gone from shared memory",
    )
    return name, by_name[name]


@kit.remote
def first(a):
    return float(a[0])


# ---- the attack, staged --------------------------------------------------------------


@pytest.mark.fast
def test_the_planted_pickle_runs_when_loaded(tmp_path):
    """The control: the planted object is live, so a missing marker below means refused."""
    marker = str(tmp_path / "ran")
    meta, _ = object_store.parse(memoryview(planted_object(marker)))
    pickle.loads(meta)
    assert os.path.exists(marker)


@pytest.mark.cluster
@needs_root
@pytest.mark.parametrize("where", ["tmp", "KIT_SPILL_DIR"])
def test_spill_dir_made_first_by_another_user_is_refused(
    shared_tmp, fresh, attacker, monkeypatch, where
):
    if where == "tmp":
        base = os.path.join(shared_tmp, f"kit-{UID}")
        spill, fix = os.path.join(base, "spill"), "TMPDIR"
    else:
        base = spill = os.path.join(shared_tmp, "team-spill")
        monkeypatch.setenv("KIT_SPILL_DIR", spill)
        fix = "KIT_SPILL_DIR"
    as_other(f"mkdir -p -m 777 {base} {spill}")
    attacker.plant(os.path.join(spill, "kit_1x000000_n0_0"))
    with pytest.raises(UnsafePathError) as e:
        fresh(num_cpus=1, object_store_memory=20 * MiB)
    msg = str(e.value)
    assert base in msg and f"owned by uid {OTHER_UID}" in msg, msg
    assert "has mode 0777" in msg and f"rm -r {base}" in msg and fix in msg, msg
    assert isinstance(e.value, PermissionError) and not kit.is_initialized()
    assert not os.path.exists(attacker.marker)


@pytest.mark.cluster
@needs_root
def test_file_planted_in_shm_under_a_spilled_objects_name_is_refused(shared_tmp, fresh, attacker):
    fresh(num_cpus=1, object_store_memory=20 * MiB)
    refs = [kit.put(np.full(MiB, i, dtype=np.float64)) for i in range(6)]  # 8 MiB each
    name, ref = wait_spilled(refs)
    attacker.plant(object_store.path_of(name))

    with pytest.raises(UntrustedObjectError) as e:
        kit.get(ref, timeout=30)
    msg = str(e.value)
    assert not isinstance(e.value, ObjectLostError), "refused at once, not waited on as lost"
    assert object_store.path_of(name) in msg and f"owned by uid {OTHER_UID}" in msg, msg
    assert "is not kit's object file" in msg, msg

    with pytest.raises(kit.KitError, match="is not kit's object file"):
        kit.get(first.remote(ref), timeout=60)  # a worker reads the argument: refused too
    assert not os.path.exists(attacker.marker)

    others = [r for r in refs if r is not ref]
    assert sorted(kit.get([first.remote(r) for r in others], timeout=60)) == sorted(
        float(refs.index(r)) for r in others
    )
    assert not os.path.exists(attacker.marker)


@pytest.mark.cluster
@needs_root
@pytest.mark.parametrize(
    "how, why",
    [
        ("another owner", f"owned by uid {OTHER_UID}"),
        ("writable by others", "writable by group or others (mode 0666)"),
    ],
)
def test_file_not_kits_in_the_spill_folder_is_refused(shared_tmp, fresh, attacker, how, why):
    """The spill folder is 0700, so nobody else can get in; were a file there not kit's
    (a folder from an older kit, root's mistake), readers still refuse it."""
    fresh(num_cpus=1, object_store_memory=20 * MiB)
    refs = [kit.put(np.full(MiB, i, dtype=np.float64)) for i in range(6)]
    name, ref = wait_spilled(refs)
    fake = object_store.spill_path(name) + ".fake"
    shutil.copy(attacker.source, fake)
    if how == "another owner":
        os.chown(fake, OTHER_UID, OTHER_UID)
        os.chmod(fake, 0o600)
    else:
        os.chmod(fake, 0o666)
    os.replace(fake, object_store.spill_path(name))

    with pytest.raises(UntrustedObjectError) as e:
        kit.get(ref, timeout=30)
    msg = str(e.value)
    assert object_store.spill_path(name) in msg and why in msg, msg
    with pytest.raises(kit.KitError, match="is not kit's object file"):
        kit.get(first.remote(ref), timeout=60)
    assert not os.path.exists(attacker.marker)


@pytest.mark.fast
@pytest.mark.parametrize("kind", ["fifo", "symlink", "hard link"])
def test_odd_files_under_an_objects_name_are_refused_without_hanging(tmp_path, kind):
    name = f"kit_{os.getpid()}xsec_n0_{os.urandom(4).hex()}"
    path = object_store.path_of(name)
    made = [path]
    try:
        if kind == "fifo":
            os.mkfifo(path, 0o600)  # opening it for reading would block without O_NONBLOCK
            why = "is not a regular file"
        elif kind == "symlink":
            target = tmp_path / "target"
            target.write_bytes(planted_object(str(tmp_path / "ran")))
            os.symlink(target, path)
            why = "is a symbolic link"
        else:
            object_store.write(name + "a", b"meta", [memoryview(b"abc")])
            made.append(object_store.path_of(name + "a"))
            os.link(made[1], path)
            why = "has 2 hard links"
        with pytest.raises(UntrustedObjectError, match=why):
            object_store.read(name)
        with pytest.raises(OSError, match=why):  # what the node agent catches when serving
            object_store.read_bytes(name, 0, 8)
    finally:
        for p in made:
            os.unlink(p)
    assert not (tmp_path / "ran").exists()


# ---- modes of what kit makes ---------------------------------------------------------


def _mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.mark.cluster
def test_spilled_files_are_0600_in_0700_folders_even_with_umask_0(shared_tmp, fresh):
    old = os.umask(0)  # the cluster inherits it: every mode below is kit's own choice
    try:
        fresh(num_cpus=1, object_store_memory=20 * MiB)
    finally:
        os.umask(old)
    refs = [kit.put(np.full(MiB, i, dtype=np.float64)) for i in range(6)]
    name, _ = wait_spilled(refs)
    huge = kit.put(np.ones(3 * MiB))  # 24 MiB, over the whole store: written to disk directly
    kit.wait([huge], timeout=30)
    huge_name = kit.api._current_client().values[huge._id][2]

    runtime, spill = paths.runtime_dir(), paths.spill_dir(create=False)
    assert runtime == os.path.join(shared_tmp, f"kit-{UID}")
    assert spill == os.path.join(runtime, "spill")
    assert _mode(runtime) == 0o700 and _mode(spill) == 0o700
    for n in (name, huge_name):
        st = os.lstat(object_store.spill_path(n))
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == UID, n
    cluster = kit.api._current_client().cluster
    assert glob.glob(os.path.join(runtime, f"{cluster}.sock")), os.listdir(runtime)
    assert not glob.glob(os.path.join(shared_tmp, "*.sock")), "an ipc socket outside kit-<uid>"
    for f in os.listdir("/dev/shm"):
        if f.startswith(f"kit_{cluster}_"):
            path = object_store.path_of(f)
            if f.endswith("_pool"):  # the node's pool of recycled files (kit/page_pool.py)
                assert _mode(path) == 0o700 and os.lstat(path).st_uid == UID, f
                assert all(_mode(os.path.join(path, g)) == 0o600 for g in os.listdir(path)), f
            else:
                assert _mode(path) == 0o600, f
    assert kit.get(huge).sum() == 3 * MiB


@pytest.fixture
def private_env(tmp_path, monkeypatch):
    """TMPDIR, KIT_SPILL_DIR and KIT_STATE_DIR inside this test's tmp_path."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setenv("KIT_SPILL_DIR", str(tmp_path / "a" / "spill"))
    monkeypatch.setenv("KIT_STATE_DIR", str(tmp_path / "state"))
    return tmp_path


@pytest.mark.fast
def test_dirs_are_made_0700_with_umask_0(private_env):
    old = os.umask(0)
    try:
        made = [paths.runtime_dir(), paths.spill_dir(), paths.state_dir()]
    finally:
        os.umask(old)
    assert made == [
        str(private_env / f"kit-{UID}"),
        str(private_env / "a" / "spill"),
        str(private_env / "state"),
    ]
    assert [_mode(d) for d in made] == [0o700] * 3


DIRS = {
    "runtime": (lambda env: env / f"kit-{UID}", paths.runtime_dir, "TMPDIR"),
    "spill": (lambda env: env / "a" / "spill", paths.spill_dir, "KIT_SPILL_DIR"),
    "state": (lambda env: env / "state", paths.state_dir, "KIT_STATE_DIR"),
}


@pytest.mark.fast
@pytest.mark.parametrize("which", sorted(DIRS))
@pytest.mark.parametrize(
    "case, why, fix",
    [
        ("mode 0755", "has mode 0755", "chmod 700"),
        ("mode 0770", "has mode 0770", "chmod 700"),
        ("another owner", f"is owned by uid {OTHER_UID}", "rm -r"),
        ("symlink", "is a symbolic link", "rm -r"),
        ("file", "is not a directory", "rm -r"),
    ],
)
def test_existing_dir_with_wrong_owner_or_mode_is_refused(private_env, which, case, why, fix):
    where, make_or_check, env_fix = DIRS[which]
    path = where(private_env)
    path.parent.mkdir(parents=True, exist_ok=True)
    if case.startswith("mode"):
        path.mkdir()
        path.chmod(int(case[5:], 8))
    elif case == "another owner":
        if UID != 0:
            pytest.skip("giving a directory to another uid needs root")
        path.mkdir(0o700)
        os.chown(path, OTHER_UID, OTHER_UID)
    elif case == "symlink":
        (private_env / "mine").mkdir(0o700)
        path.symlink_to(private_env / "mine")
    else:
        path.write_text("")
    with pytest.raises(UnsafePathError) as e:
        make_or_check()
    msg = str(e.value)
    assert str(path) in msg and why in msg and fix in msg and env_fix in msg, msg


@pytest.mark.fast
def test_kit_stop_and_address_auto_refuse_an_open_state_dir(private_env, capsys):
    state = private_env / "state"
    state.mkdir(0o755)
    state.chmod(0o755)
    (state / "head.json").write_text('{"address": "127.0.0.1:1", "token": "stolen"}')
    assert cli.main(["stop"]) == 1
    err = capsys.readouterr().err
    assert f"kit will not use {state}: it has mode 0755" in err, err
    with pytest.raises(UnsafePathError, match="chmod 700"):
        cli.read_state()  # what kit.init(address="auto") reads the token from
    with pytest.raises(UnsafePathError):
        kit.init(address="auto")


@pytest.mark.fast
@needs_root
def test_sweeping_leaves_other_users_files_and_does_not_fail_on_them(private_env):
    """A file named like a dead cluster's object, planted by someone else, must neither
    stop kit.init (EPERM in sticky /dev/shm for a non-root user) nor be removed by a root
    kit (it is not kit's)."""
    pid = next(p for p in range(999_999, 0, -1) if not os.path.exists(f"/proc/{p}"))
    prefix = f"kit_{pid}x5ec000_n0_"
    theirs, mine = object_store.path_of(prefix + "theirs"), object_store.path_of(prefix + "mine")
    try:
        for p in (theirs, mine):
            with open(p, "wb"):
                pass
        os.chown(theirs, OTHER_UID, OTHER_UID)
        object_store.sweep_dead_clusters()
        assert os.path.exists(theirs) and not os.path.exists(mine)
        object_store.sweep(prefix)
        assert os.path.exists(theirs)
    finally:
        for p in (theirs, mine):
            if os.path.exists(p):
                os.unlink(p)


@pytest.mark.fast
def test_a_hosts_state_folder_is_private_at_every_level_kit_makes(tmp_path, monkeypatch):
    """kit up's host side makes ~/.kit/clusters/<name>/<host> on a fresh machine: each
    folder it makes is 0700 (os.makedirs made ~/.kit 0755, and every later kit command
    then refused it)."""
    from kit import hostctl

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KIT_STATE_DIR", raising=False)  # _state sets it: restored after
    path = hostctl._state({"state_dir": "~/.kit/clusters/lab/h1"})
    assert path == str(tmp_path / ".kit" / "clusters" / "lab" / "h1")
    for d in (".kit", ".kit/clusters", ".kit/clusters/lab", ".kit/clusters/lab/h1"):
        assert stat.S_IMODE(os.stat(tmp_path / d).st_mode) == 0o700, d
    monkeypatch.setenv("KIT_STATE_DIR", str(tmp_path / ".kit"))
    assert paths.state_dir() == str(tmp_path / ".kit")  # accepted by kit's next command
