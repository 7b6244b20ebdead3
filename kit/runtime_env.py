"""``runtime_env``, with Ray's meaning: the code and environment a task or actor runs in.

    kit.init(runtime_env=...)              the driver's: every task and actor it starts
    @kit.remote(runtime_env=...)           one function or actor class (and .options)

    keys           what it does on the node
    working_dir    a local directory, packed once (kit.packing: .gitignore and
                   ``excludes`` left out, at most KIT_RUNTIME_ENV_LIMIT bytes, 100 MiB),
                   unpacked into the node's cache: the task's working directory and
                   first import path
    py_modules     local packages or modules (paths, or module objects), shipped the
                   same way, importable by name
    env_vars       {name: value} set in the worker
    pip            requirements (a list, a requirements.txt path, or {"packages": [...],
                   "pip_install_options": [...]}); local wheels and folders are shipped;
                   installed once per node into a cached environment over the base one
    uv             the same, installed with uv (which must be on every node; it installs
                   the dependencies again rather than use the base environment's)
    excludes       gitignore patterns left out of working_dir

A task's runtime_env is merged over its driver's as Ray merges them: each key the task
gives replaces the driver's, env_vars are merged (the task's win). A task started by a
task inherits its parent's environment.

Packing happens once per driver for each environment, where it is first used (the size
limit is checked then), and the packages go into the object store: the driver holds them
until it disconnects. What travels in a task's spec is the packed form below; its
``key`` (a hash of everything in it) is how workers are matched: a worker is started for
one environment and runs only that environment's tasks (kit.scheduler), so two
environments never share a process, and a worker is reused for tasks of its own.

    {"key": hex, "working_dir": (digest, oid) | None, "py_modules": [(digest, oid)],
     "env_vars": {...}, "pip": {"digest", "packages", "options", "tool", "packages_text"}}
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import types

from .packing import pack, size_text

LIMIT = 100 << 20  # bytes of a working_dir or py_module, after excludes (KIT_RUNTIME_ENV_LIMIT)
SUPPORTED = ("working_dir", "py_modules", "env_vars", "pip", "uv", "excludes")
# Ray's other keys: named in the error rather than called unknown.
RAY_ONLY = ("conda", "container", "image_uri", "java_jars", "nsight", "mpi", "config", "rocprof")

_lock = threading.RLock()
_job: dict = {"raw": None, "packed": None}  # the driver's (kit.init), or a worker's own
_packed: dict = {}  # canonical raw env -> packed (this driver's, while connected)
_held: list = []  # refs to the packages put here: alive until the driver disconnects


def _bad(msg):
    return ValueError(f"runtime_env: {msg}")


def check(name, value) -> None:
    """Check a ``runtime_env`` option: a dict of known keys with values of the right kind.

    Raises:
        TypeError: not a dict, or a key's value of the wrong type.
        ValueError: an unknown or unsupported key.

    Example:
        >>> check("runtime_env", {"env_vars": {"A": "1"}})
        >>> try:
        ...     check("runtime_env", {"conda": "env.yml"})
        ... except ValueError as e:
        ...     print(str(e)[:45])
        runtime_env: 'conda' is not supported by kit
    """
    if value is None:
        return
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be None or a dict, not {type(value).__name__} ({value!r})")
    for key, v in value.items():
        if key in RAY_ONLY:
            fix = (
                "list the packages under 'pip' instead"
                if key == "conda"
                else ("kit runs tasks in the node's Python; use 'pip' for packages")
            )
            raise _bad(f"{key!r} is not supported by kit (it takes {', '.join(SUPPORTED)}); {fix}")
        if key not in SUPPORTED:
            raise _bad(f"unknown key {key!r}; the keys are {', '.join(SUPPORTED)}")
        if v is None:
            continue
        _check_key(key, v)


def _check_key(key, v):
    if key == "working_dir" and not isinstance(v, (str, os.PathLike)):
        raise TypeError(f"runtime_env['working_dir'] must be a local folder's path, not {v!r}")
    if key == "env_vars":
        if not isinstance(v, dict) or not all(
            isinstance(k, str) and isinstance(x, str) for k, x in v.items()
        ):
            raise TypeError(
                f"runtime_env['env_vars'] must be a dict of str to str, not {v!r} "
                f"(write numbers as strings: {{'N': '4'}})"
            )
    if key in ("py_modules", "excludes") and not isinstance(v, (list, tuple)):
        raise TypeError(f"runtime_env[{key!r}] must be a list, not {type(v).__name__}")
    if key == "py_modules":
        for m in v:
            if not isinstance(m, (str, os.PathLike, types.ModuleType)):
                raise TypeError(
                    f"runtime_env['py_modules'] takes local paths or module objects, not {m!r}"
                )
    if key in ("pip", "uv"):
        if isinstance(v, dict):
            extra = set(v) - {"packages", "pip_install_options", "pip_check", "pip_version"}
            if extra or "packages" not in v:
                raise _bad(
                    f"{key} as a dict takes 'packages' (a list) and 'pip_install_options'; "
                    f"got {sorted(v)}"
                )
        elif not isinstance(v, (str, list, tuple)):
            raise TypeError(
                f"runtime_env[{key!r}] must be a list of requirements, a requirements.txt "
                f"path or a dict with 'packages', not {type(v).__name__}"
            )


def merge(base: dict | None, over: dict | None) -> dict | None:
    """``over``'s keys replace ``base``'s; env_vars are merged (``over``'s win), as in Ray.

    Example:
        >>> merge({"env_vars": {"A": "1", "B": "1"}, "pip": ["x"]}, {"env_vars": {"B": "2"}})
        {'env_vars': {'A': '1', 'B': '2'}, 'pip': ['x']}
    """
    if not base:
        return dict(over) if over else None
    if not over:
        return dict(base)
    out = dict(base)
    for k, v in over.items():
        if k == "env_vars" and base.get("env_vars"):
            out[k] = {**base["env_vars"], **(v or {})}
        else:
            out[k] = v
    return out


def set_job(env: dict | None) -> None:
    """The driver's runtime_env (``kit.init``): packed now, so a mistake raises there."""
    with _lock:
        _job["raw"] = env or None
        _job["packed"] = prepare(env) if env else None


def set_worker_env(packed: dict | None) -> None:
    """A worker's own environment: the default of the tasks it submits (inherited)."""
    _job["raw"], _job["packed"] = None, packed


def forget() -> None:
    """The driver disconnected: its packages and its environment go."""
    with _lock:
        _job["raw"] = _job["packed"] = None
        _packed.clear()
        _held.clear()


def for_task(env: dict | None) -> dict | None:
    """The packed environment a task or actor with option ``runtime_env=env`` runs in
    (its driver's merged with its own), or None for the base environment."""
    job = _job["packed"]
    if not env:
        return job
    with _lock:
        mine = prepare(env)
    return merge_packed(job, mine) if job else mine


def merge_packed(base, over):
    """``merge`` on packed environments; the key is made again."""
    out = merge({k: v for k, v in base.items() if k != "key"},
                {k: v for k, v in over.items() if k != "key" and v})  # fmt: skip
    out["key"] = _key(out)
    return out


def _canonical(env) -> str:
    def norm(v):
        if isinstance(v, types.ModuleType):
            return ("module", v.__name__)
        if isinstance(v, os.PathLike):
            return os.fspath(v)
        if isinstance(v, dict):
            return tuple(sorted((k, norm(x)) for k, x in v.items()))
        if isinstance(v, (list, tuple)):
            return tuple(norm(x) for x in v)
        return v

    return repr(norm(env))


def _key(packed) -> str:
    text = repr(sorted((k, repr(v)) for k, v in packed.items() if k != "key"))
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def prepare(env: dict) -> dict:
    """Pack ``env`` (once per driver; see the module docstring) into its travelling form.

    Raises:
        PackTooLargeError: the working_dir or a py_module is over the limit.
        FileNotFoundError, ValueError: a path that is not there, a bad requirement.
    """
    canon = _canonical(env)
    packed = _packed.get(canon)
    if packed is not None:
        return packed
    limit = int(os.environ.get("KIT_RUNTIME_ENV_LIMIT") or LIMIT)
    excludes = list(env.get("excludes") or ())
    out: dict = {}
    wd = env.get("working_dir")
    if wd is not None:
        wd = os.path.abspath(os.path.expanduser(os.fspath(wd)))
        if not os.path.isdir(wd):
            raise FileNotFoundError(f"runtime_env['working_dir']: {wd} is not a directory")
        out["working_dir"] = _put(pack(wd, excludes, limit, f"runtime_env['working_dir'] {wd}"))
    mods = []
    for m in env.get("py_modules") or ():
        mods.append(_put(_pack_module(m, limit)))
    if mods:
        out["py_modules"] = mods
    if env.get("env_vars"):
        out["env_vars"] = dict(env["env_vars"])
    for tool in ("pip", "uv"):
        if env.get(tool):
            out["pip"] = _pip(env[tool], tool)
    out["key"] = _key(out)
    _packed[canon] = out
    return out


def _pack_module(m, limit):
    """A py_modules entry: a package folder or a module file, under its own name."""
    if isinstance(m, types.ModuleType):
        path = getattr(m, "__file__", None)
        if path is None:
            raise ValueError(f"runtime_env['py_modules']: module {m.__name__} has no file")
        if os.path.basename(path) == "__init__.py":
            path = os.path.dirname(path)
    else:
        path = os.path.abspath(os.path.expanduser(os.fspath(m)))
    what = f"runtime_env['py_modules'] {path}"
    if os.path.isdir(path):
        return pack(path, (), limit, what, prefix=os.path.basename(path.rstrip("/")) + "/")
    return pack(path, (), limit, what)


def _put(packed):
    """Put a package in the object store; ``(digest, oid)``, the ref held here."""
    from .api import put

    ref = put(packed.data)
    _held.append(ref)
    return (packed.digest, ref.binary())


def _pip(spec, tool):
    options: list = []
    if isinstance(spec, dict):
        options = list(spec.get("pip_install_options") or ())
        spec = spec["packages"]
    if isinstance(spec, str):  # a requirements.txt
        path = os.path.abspath(os.path.expanduser(spec))
        try:
            lines = open(path, encoding="utf-8").read().splitlines()
        except OSError as e:
            raise FileNotFoundError(
                f"runtime_env[{tool!r}] is a string, so kit reads it as a requirements file: "
                f"{e}; give a list to name packages: [{spec!r}]"
            ) from None
        spec = [x.split("#", 1)[0].strip() for x in lines]
        spec = [x for x in spec if x]
    packages: list = []
    text = []
    for req in spec:
        req = os.fspath(req)
        local = os.path.abspath(os.path.expanduser(req))
        if req.endswith((".whl", ".tar.gz", ".zip")) or os.sep in req or req.startswith("."):
            if not os.path.exists(local):
                raise FileNotFoundError(f"runtime_env[{tool!r}]: {local} does not exist")
            with open(local, "rb") as f:
                data = f.read()
            digest = hashlib.blake2b(data, digest_size=16).hexdigest()
            from .api import put

            ref = put(data)
            _held.append(ref)
            packages.append((digest, ref.binary(), os.path.basename(local)))
            text.append(os.path.basename(local))
        else:
            packages.append(req)
            text.append(req)
    names = [p if isinstance(p, str) else p[0] for p in packages]
    body = repr((names, options, tool, sys.version_info[:2]))
    return {
        "digest": hashlib.blake2b(body.encode(), digest_size=16).hexdigest(),
        "packages": packages,
        "options": options,
        "tool": tool,
        "packages_text": ", ".join(text) or "nothing",
    }


def describe(packed: dict | None) -> str:
    """One line for people: what an environment holds."""
    if not packed:
        return "the base environment"
    parts = []
    if packed.get("working_dir"):
        parts.append("a working_dir")
    if packed.get("py_modules"):
        parts.append(f"{len(packed['py_modules'])} py_modules")
    if packed.get("pip"):
        parts.append(f"pip: {packed['pip']['packages_text']}")
    if packed.get("env_vars"):
        parts.append(f"env_vars: {', '.join(sorted(packed['env_vars']))}")
    return "; ".join(parts) or "an empty runtime_env"


__all__ = ["check", "merge", "prepare", "for_task", "set_job", "describe", "size_text"]
