"""A node's cache of what was shipped to it, and the worker side of ``runtime_env``.

    <cache>/code/<digest>/    a local module or package of a driver (kit.codeship)
    <cache>/dir/<digest>/     a working_dir or py_module (kit.runtime_env)
    <cache>/data/<digest>/    a directory sent with kit.sync
    <cache>/files/<digest>/   a wheel or sdist named in runtime_env['pip']
    <cache>/pip/<digest>/     a virtual environment over the base one, pip's packages in it

``<cache>`` is ``kit.paths.cache_dir()`` (``$KIT_CACHE_DIR``, else ``<tmp>/kit-<uid>/cache``):
one per machine, shared by its nodes. The first process of a node that needs an entry
fetches it from the object store (``kit.get`` of the object its driver put: inline
through the head when small, else pulled from the owner's node in chunks, kit.transfer)
and unpacks it under a file lock; every later one finds it there. A pip environment is
made once per node and content (``python -m venv --without-pip``, a ``.pth`` naming the
base environment's paths so that what is installed there already is not installed
again, then ``pip --python`` into it, which never uninstalls from outside that venv;
``uv pip`` for ``runtime_env['uv']``). A failed install raises ``RuntimeEnvSetupError``
with the installer's last lines, and leaves nothing behind.

``apply(env)`` is what a worker started for an environment does before its first task:
the working_dir becomes its working directory and first import path, then the
py_modules, then the pip environment's packages, and env_vars are set.
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager

from . import packing, paths
from .errors import KitError, RuntimeEnvSetupError

PIP_TIMEOUT = 900.0  # seconds an install may take (KIT_PIP_TIMEOUT)
TAIL = 25  # lines of the installer's output kept in the error


@contextmanager
def _locked(path):
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _fetch(oid: bytes) -> bytes:
    """The bytes a driver put as object ``oid`` (this process's client gets them)."""
    from .api import get
    from .object_ref import ObjectRef

    data = get(ObjectRef(oid), timeout=600)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise KitError(f"object {oid.hex()} is not a package ({type(data).__name__})")
    return bytes(data)


def entry(kind: str, digest: str) -> str:
    """The cache path of an entry (it may not be there yet)."""
    return os.path.join(paths.cache_dir(), kind, digest)


def materialize(kind: str, digest: str, oid: bytes) -> str:
    """The directory of a packed entry on this node: unpacked now if it is not there yet.

    Raises:
        RuntimeEnvSetupError: its object could not be fetched (its driver is gone...).
    """
    dest = entry(kind, digest)
    if os.path.isdir(dest):
        return dest
    with _locked(dest + ".lock"):
        if os.path.isdir(dest):
            return dest
        try:
            data = _fetch(oid)
        except KitError as e:
            raise RuntimeEnvSetupError(
                f"could not fetch the shipped {kind} {digest[:12]} on this node: {e}; the "
                f"driver that shipped it may have disconnected"
            ) from None
        packing.unpack_into(data, dest)
    return dest


def materialize_file(digest: str, oid: bytes, name: str) -> str:
    """A single shipped file (a wheel), as ``<cache>/files/<digest>/<name>``."""
    d = entry("files", digest)
    path = os.path.join(d, name)
    if os.path.exists(path):
        return path
    with _locked(d + ".lock"):
        if not os.path.exists(path):
            data = _fetch(oid)
            os.makedirs(d, mode=0o700, exist_ok=True)
            tmp = f"{path}.part-{os.getpid()}"
            with open(tmp, "wb") as f:
                f.write(data)
            os.rename(tmp, path)
    return path


def _tool(want: str):
    """The installer: ``runtime_env['uv']`` (or ``KIT_PIP_TOOL=uv``) uses uv, else this
    Python's pip. Not uv whenever it is present: uv does not read the base environment
    through the venv's ``.pth``, so it installs the requirements' dependencies into the
    venv again, where they shadow the base's versions (and a worker may have imported
    the base's already); pip sees them as satisfied and installs only what is missing."""
    uv = shutil.which("uv")
    if want == "uv" or os.environ.get("KIT_PIP_TOOL", "") == "uv":
        if uv is None:
            raise RuntimeEnvSetupError(
                "runtime_env['uv'] (or KIT_PIP_TOOL=uv) needs the uv command on every node, "
                "and this node has none: install it there (pip install uv), or use "
                "runtime_env['pip']"
            )
        return "uv", lambda py: [uv, "pip", "install", "--python", py]
    return "pip", lambda py: [
        sys.executable, "-m", "pip", "--python", py, "--disable-pip-version-check",
        "--no-input", "install", "--no-warn-script-location",
    ]  # fmt: skip


def _base_paths() -> list:
    """This interpreter's import paths other than the standard library: the base
    environment a pip environment is laid over."""
    std = {os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix)}
    cache = os.path.realpath(paths.cache_dir())
    out = []
    for p in sys.path:
        if not p or not os.path.isdir(p):
            continue
        real = os.path.realpath(p)
        if real.startswith(cache) or any(real.startswith(s + os.sep) for s in std):
            if "site-packages" not in real and "dist-packages" not in real:
                continue
        if real not in out:
            out.append(real)
    return out


def _site_dir(venv: str) -> str:
    found = glob.glob(os.path.join(venv, "lib", "python*", "site-packages"))
    if not found:
        raise RuntimeEnvSetupError(f"the environment {venv} has no site-packages folder")
    return found[0]


def pip_env(pip: dict, node: str = "") -> str:
    """The site-packages folder of the pip environment ``pip`` on this node, made once.

    ``pip`` is the packed form (``kit.runtime_env``): ``digest``, ``packages`` (strings,
    or ``(digest, oid, filename)`` of a shipped file), ``options``, ``tool``.

    Raises:
        RuntimeEnvSetupError: the install failed; the message ends with its last lines.
    """
    venv = entry("pip", pip["digest"])
    done = os.path.join(venv, ".kit-ready")
    if os.path.exists(done):
        return _site_dir(venv)
    with _locked(venv + ".lock"):
        if os.path.exists(done):
            return _site_dir(venv)
        shutil.rmtree(venv, ignore_errors=True)
        try:
            _install(venv, pip, node)
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise
        open(done, "w").close()
    return _site_dir(venv)


def _install(venv, pip, node):
    reqs = []
    for p in pip["packages"]:
        if isinstance(p, (tuple, list)):
            reqs.append(materialize_file(*p))
        else:
            reqs.append(p)
    made = subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", venv], capture_output=True, text=True
    )
    if made.returncode != 0:
        raise RuntimeEnvSetupError(
            f"could not make a virtual environment on node {node}: {made.stderr.strip()}"
        )
    site = _site_dir(venv)
    with open(os.path.join(site, "_kit_base.pth"), "w") as f:
        f.write("\n".join(_base_paths()) + "\n")
    name, cmd = _tool(pip.get("tool", "pip"))
    cmd = cmd(os.path.join(venv, "bin", "python")) + [*pip.get("options", ()), *reqs]
    timeout = float(os.environ.get("KIT_PIP_TIMEOUT") or PIP_TIMEOUT)
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as e:
        text = (e.stdout or "") + (e.stderr or "") if isinstance(e.stdout, str) else ""
        raise RuntimeEnvSetupError(
            f"{name} install of {pip['packages_text']} on node {node} took over "
            f"{timeout:.0f} s (KIT_PIP_TIMEOUT); its last lines:\n{_tail(text)}"
        ) from None
    if out.returncode != 0:
        raise RuntimeEnvSetupError(
            f"runtime_env['pip']: {name} could not install {pip['packages_text']} on node "
            f"{node} (exit code {out.returncode}); fix the requirement (name, version, or a "
            f"wheel for this Python) and run the task again. {name}'s last lines:\n"
            f"{_tail(out.stdout + out.stderr)}"
        )


def _tail(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join("    " + line for line in lines[-TAIL:])


def apply(env: dict, node: str = "") -> None:
    """Make this worker process run in ``env`` (packed; see ``kit.runtime_env``).

    Raises:
        RuntimeEnvSetupError: something could not be fetched or installed.
    """
    front = []
    wd = env.get("working_dir")
    if wd is not None:
        front.append(materialize("dir", *wd))
    for mod in env.get("py_modules") or ():
        front.append(materialize("dir", *mod))
    if env.get("pip"):
        site = pip_env(env["pip"], node)
        front.append(site)
        for pth in sorted(glob.glob(os.path.join(site, "*.pth"))):
            if not pth.endswith("_kit_base.pth"):
                _pth_paths(pth, site, front)
    for p in reversed(front):
        while p in sys.path:
            sys.path.remove(p)
        sys.path.insert(0, p)
    if wd is not None:
        os.chdir(front[0])
    for k, v in (env.get("env_vars") or {}).items():
        os.environ[k] = v
    import importlib

    importlib.invalidate_caches()


def _pth_paths(pth, site, front):
    """Paths a ``.pth`` file of the pip environment adds (editable installs), in front too."""
    try:
        lines = open(pth, encoding="utf-8").read().splitlines()
    except OSError:
        return
    for line in lines:
        line = line.strip()
        if not line or line.startswith(("#", "import ")):
            continue
        p = os.path.join(site, line)
        if os.path.isdir(p) and p not in front:
            front.append(p)
