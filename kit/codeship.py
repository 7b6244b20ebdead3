"""The driver's own modules follow its tasks: local code shipped without any option.

    driver: pickling a task (function, arguments, a put) meets a function, class or
            module of a *local* module (a file beside the notebook, a src/ on sys.path:
            not under site-packages or the standard library, not an installed package)
      ──▶ that module's top package (or file) is zipped (kit.packing) and put in the
          object store once per content; the pickle says "import clean from helpers,
          as shipped in <digest>" (``_load_global``) instead of "import helpers"
    worker: unpickling it ──▶ <cache>/code/<digest>/ on its node (fetched and unpacked
            once, kit.env_cache) goes first on sys.path; if the worker had another
            version of that module loaded, it is dropped from sys.modules first

A module's digest is of its files' content, so an edited file ships again: before a
``.remote()`` the driver looks at the files (one ``stat`` each) of the modules the
function's pickle named, and pickles it again if one changed; the next task imports the
new code on every node, whether or not the driver reloaded it (``%autoreload``). In a
burst of ``.remote()`` calls the files are looked at once every 2 ms; a ``kit.get`` or
``kit.wait`` ends the burst (an edit made between a get and the next ``.remote()`` is
always seen).
Modules a shipped module imports from other local files ship with it. The first time
the driver ships a module it says so in one line. ``KIT_SHIP_LOCAL=0`` turns this off
(then workers import such modules by name, as before).

A task that fails to import a module gets an error naming the module, the node and the
fix (``explain``), computed where the error is read: the driver knows whether the
module is a local file there or which package it comes from.
"""

from __future__ import annotations

import importlib
import os
import site
import sys
import sysconfig
import threading
import time
import types
from typing import NamedTuple

from . import packing

_lock = threading.RLock()
_tl = threading.local()
_state = {"enabled": False}
_roots: dict = {}  # root name -> Root: modules this process ships (the driver's own)
_active: dict = {}  # root name -> (entry, folder): shipped modules loaded here from the cache
_local: dict = {}  # root name -> its path if it is local here, else None
_announced: set = set()
CHECK_EVERY = 0.002  # seconds: a module's files are looked at most this often
_checked: dict = {}  # root name -> when its files were last looked at
_OWN = {"kit", "magics", "widgets", "backends", "__main__", "__mp_main__"}


class Root(NamedTuple):
    """A local module as last packed: where it is, what its files were, its entry."""

    path: str
    sig: tuple  # ((path, (mtime_ns, size, inode)), ...) of its files and folders
    entry: tuple  # (root name, digest, object id, (entries of local modules it imports))
    ref: object  # the ObjectRef holding the package


def enable(on: bool = True) -> None:
    """A driver ships its local modules (``kit.init``); off at ``kit.shutdown``."""
    with _lock:
        _state["enabled"] = on and os.environ.get("KIT_SHIP_LOCAL", "1") != "0"
        if not on:
            _roots.clear()


def in_use() -> bool:
    """Whether pickles here may name shipped modules (a driver shipping, or a worker that
    loaded some)."""
    return _state["enabled"] or bool(_active)


def shipped() -> dict:
    """``{module: digest}`` of what this driver ships now.

    Example:
        >>> isinstance(shipped(), dict)
        True
    """
    return {name: r.entry[1] for name, r in _roots.items()}


# ---- which modules are local ----------------------------------------------------------


def _system_dirs() -> tuple:
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            dirs.add(p)
    try:
        dirs.update(site.getsitepackages())
        dirs.add(site.getusersitepackages())
    except AttributeError:  # a virtualenv's old site module
        pass
    return tuple(os.path.realpath(d) + os.sep for d in dirs if d)


_elsewhere: dict = {}


def _installed_elsewhere() -> tuple:
    """Installed outside site-packages: ``(names, folders)`` of editable installs (their
    finders' mappings) and the folders ``.pth`` files add. Cheap: read once."""
    if not _elsewhere:
        names: set = set()
        for name, mod in list(sys.modules.items()):
            mapping = getattr(mod, "MAPPING", None) if name.startswith("__editable__") else None
            if isinstance(mapping, dict):
                names.update(mapping)
        folders = set()
        try:
            sites = site.getsitepackages() + [site.getusersitepackages()]
        except AttributeError:
            sites = []
        for d in sites:
            try:
                pths = [f for f in os.listdir(d) if f.endswith(".pth")]
            except OSError:
                continue
            for f in pths:
                try:
                    lines = open(os.path.join(d, f), encoding="utf-8").read().splitlines()
                except OSError:
                    continue
                for line in lines:
                    line = line.strip()
                    if line and not line.startswith(("#", "import ")):
                        folders.add(os.path.realpath(os.path.join(d, line)))
        _elsewhere["names"], _elsewhere["folders"] = names, folders
    return _elsewhere["names"], _elsewhere["folders"]


_installed_names: dict = {}


def _installed() -> dict:
    """Top-level import names of installed distributions (editable ones too), once."""
    if not _installed_names:
        import importlib.metadata as md

        try:
            _installed_names.update(md.packages_distributions())
        except Exception:
            pass
        _installed_names.setdefault("", [])
    return _installed_names


def local_path(root: str):
    """The file or package folder of module ``root`` if it is local here, else None.

    Local: imported, from a ``.py`` file outside the standard library, site-packages and
    this environment's prefix, and not installed elsewhere (an editable install, a
    folder a ``.pth`` file adds).

    Example:
        >>> local_path("json") is None and local_path("kit") is None
        True
    """
    if root in _local:
        return _local[root]
    path = None
    mod = sys.modules.get(root)
    file = getattr(mod, "__file__", None) if mod is not None else None
    if (
        file
        and file.endswith(".py")
        and root not in _OWN
        and root not in sys.builtin_module_names
        and root not in getattr(sys, "stdlib_module_names", ())
    ):
        real = os.path.realpath(file)
        names, folders = _installed_elsewhere()
        path = os.path.dirname(file) if os.path.basename(file) == "__init__.py" else file
        path = os.path.abspath(path)
        found_in = os.path.dirname(os.path.realpath(path))  # the import path it came from
        if real.startswith(_system_dirs()) or root in names or found_in in folders:
            path = None
    _local[root] = path
    return path


# ---- the driver: packing, freshness -----------------------------------------------------


def _sig(path: str) -> tuple:
    if os.path.isfile(path):
        files = [path]
    else:
        files = [path] + [
            os.path.join(d, n)
            for d, dirs, names in os.walk(path)
            for n in dirs + names
            if "__pycache__" not in d and n != "__pycache__" and not n.endswith(".pyc")
        ]
    out = []
    for f in sorted(files):
        try:
            st = os.stat(f)
            out.append((f, (st.st_mtime_ns, st.st_size, st.st_ino)))
        except OSError:
            out.append((f, None))
    return tuple(out)


def _changed(sig: tuple) -> bool:
    for f, old in sig:
        try:
            st = os.stat(f)
        except OSError:
            if old is not None:
                return True
            continue
        if old != (st.st_mtime_ns, st.st_size, st.st_ino):
            return True
    return False


def _imports_of(root: str) -> list:
    """Other local modules that ``root`` (or its submodules) refers to at module level."""
    out = set()
    for name, mod in list(sys.modules.items()):
        if mod is None or not (name == root or name.startswith(root + ".")):
            continue
        for v in list(vars(mod).values()):
            if isinstance(v, types.ModuleType):
                other = v.__name__.partition(".")[0]
            elif isinstance(v, (types.FunctionType, type)):
                other = (getattr(v, "__module__", None) or "").partition(".")[0]
            else:
                continue
            if other and other != root and local_path(other):
                out.add(other)
    return sorted(out)


def current(root: str, _seen=None):
    """The entry of local module ``root`` as its files are now: packed again (and put)
    if a file changed since. None if ``root`` is not local or shipping is off."""
    if not _state["enabled"]:
        return None
    path = local_path(root)
    if path is None:
        return None
    seen = _seen if _seen is not None else set()
    if root in seen:  # two local modules that import each other
        r = _roots.get(root)
        return r.entry if r else None
    seen.add(root)
    now = time.monotonic()
    r = _roots.get(root)
    if r is not None and now - _checked.get(root, -1.0) < CHECK_EVERY:
        return r.entry
    _checked[root] = now
    with _lock:
        r = _roots.get(root)
        deps = []
        if r is not None:
            deps = [current(d[0], seen) for d in r.entry[3]]
            if not _changed(r.sig) and all(d == old for d, old in zip(deps, r.entry[3])):
                return r.entry
        sig = _sig(path)
        if os.path.isdir(path):
            packed = packing.pack(path, (), None, f"module {root}", prefix=root + "/")
        else:
            packed = packing.pack(path, (), None, f"module {root}")
        if r is not None and r.entry[1] == packed.digest and r.entry[3] == tuple(deps):
            _roots[root] = r._replace(sig=sig)
            return r.entry
        deps = [e for e in (current(d, seen) for d in _imports_of(root)) if e is not None]
        from .api import put

        ref = put(packed.data)
        entry = (root, packed.digest, ref.binary(), tuple(deps))
        _roots[root] = Root(path, sig, entry, ref)
        if root not in _announced:
            _announced.add(root)
            _announce(root, path, packed)
    return entry


def _announce(root, path, packed):
    what = os.path.basename(path) + ("/" if os.path.isdir(path) else "")
    files = f"{packed.files} files, " if packed.files > 1 else ""
    try:
        print(
            f"kit: shipping local module {root} ({what}, {files}{packing.size_text(packed.size)}) "
            f"to the workers; edits ship again before the next task (KIT_SHIP_LOCAL=0: off)",
            file=sys.stderr,
            flush=True,
        )
    except Exception:
        pass


def recheck() -> None:
    """Look at the files again at the next ``.remote()`` (called by ``get`` and ``wait``)."""
    if _checked:
        _checked.clear()


def fresh(entries) -> bool:
    """Whether every entry in ``entries`` is still what its module's files hold now."""
    for e in entries:
        if current(e[0]) != e:
            return False
    return True


# ---- pickling (kit.pickling calls these) ----------------------------------------------


def _entry_for(root):
    a = _active.get(root)
    if a is not None:
        return a[0]
    if not _state["enabled"] or root in _OWN:
        return None
    memo = getattr(_tl, "memo", None)
    if memo is not None and root in memo:
        return memo[root]
    e = current(root)
    if memo is not None:
        memo[root] = e
    return e


def begin():
    """Start a pickle: entries are looked up once each in it. Returns a token for ``end``."""
    prev = getattr(_tl, "memo", None)
    _tl.memo = {}
    return prev


def end(token) -> list:
    """End a pickle; the entries of local modules it named."""
    memo = getattr(_tl, "memo", None) or {}
    _tl.memo = token
    return [e for e in memo.values() if e is not None]


def reduce(obj):
    """How to pickle ``obj`` if it is a function, class or module of a shipped module,
    else None (pickled as usual)."""
    if not (_state["enabled"] or _active):
        return None
    t = type(obj)
    if t is types.ModuleType:
        name = obj.__name__
        e = _entry_for(name.partition(".")[0])
        return None if e is None else (_load_module, (e, name))
    modname = getattr(obj, "__module__", None)
    if not isinstance(modname, str) or modname in _OWN:
        return None
    qual = getattr(obj, "__qualname__", None)
    if not qual or "<locals>" in qual or _lookup(sys.modules.get(modname), qual) is not obj:
        return None  # not reachable by name: pickled by value as usual (nothing shipped)
    e = _entry_for(modname.partition(".")[0])
    if e is None:
        return None
    return (_load_global, (e, modname, qual))


def _lookup(mod, qual):
    obj = mod
    for part in qual.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


# ---- unpickling: where shipped modules are loaded -------------------------------------


def ensure(entry) -> None:
    """Load shipped module ``entry`` here (the modules it imports first), unless this
    process is the one that ships it (it uses its own)."""
    root, digest, oid, deps = entry
    a = _active.get(root)
    if (a is not None and a[0][1] == digest) or root in _roots:
        return
    for d in deps:
        ensure(d)
    from . import env_cache

    with _lock:
        a = _active.get(root)
        if a is not None and a[0][1] == digest:
            return
        folder = env_cache.materialize("code", digest, oid)
        if a is not None:
            while a[1] in sys.path:
                sys.path.remove(a[1])
        sys.path.insert(0, folder)
        for name in [n for n in sys.modules if n == root or n.startswith(root + ".")]:
            del sys.modules[name]
        importlib.invalidate_caches()
        _active[root] = (entry, folder)


def _load_module(entry, name):
    ensure(entry)
    return importlib.import_module(name)


def _load_global(entry, modname, qual):
    ensure(entry)
    obj = importlib.import_module(modname)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


# ---- errors ----------------------------------------------------------------------------


def explain(name: str) -> str:
    """The fix for a task that could not import ``name``, from what this process knows.

    Example:
        >>> "runtime_env['pip']" in explain("no_such_module_anywhere")
        True
    """
    if not name:
        return ""
    root = name.partition(".")[0]
    path = local_path(root) if root in sys.modules else None
    if path is not None:
        return (
            f"it is a local file here ({path}): kit ships local modules that a task's "
            f"function, arguments or cell refers to; refer to {root} in the function (import "
            f"it at the top of the notebook or script), or list it: "
            f"runtime_env={{'py_modules': [{path!r}]}}"
        )
    dists = _installed().get(root) if root in sys.modules else None
    if dists:
        dist = dists[0]
        try:
            import importlib.metadata as md

            req = f"{dist}=={md.version(dist)}"
        except Exception:
            req = dist
        return (
            f"here it comes from the package {dist}: add it to runtime_env['pip'] (e.g. "
            f"@kit.remote(runtime_env={{'pip': [{req!r}]}}), or kit.init(runtime_env=...) "
            f"for every task), or install it on every node"
        )
    return (
        f"it is not importable here either: install it, and add it to runtime_env['pip'] "
        f"(e.g. runtime_env={{'pip': [{root!r}]}}) so that every node has it"
    )
