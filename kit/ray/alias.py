"""``import ray`` that gives kit: an import hook mapping ``ray`` and ``ray.*`` to ``kit.ray``.

    install_ray_alias()  ──▶ sys.meta_path[0] = RayAlias
    import ray.util.queue ──▶ RayAlias.find_spec("ray.util.queue")
                          ──▶ importlib.import_module("kit.ray.util.queue")
                          ──▶ sys.modules["ray.util.queue"] is that same module object

The alias is explicit: nothing happens at ``import kit``. It is installed by
``kit.install_ray_alias()``, ``python -m kit.ray script.py`` or ``%kit_as_ray``, and it
sets ``KIT_RAY_ALIAS=1`` so that the cluster's workers, which import the driver's modules
(a test file, a notebook's helpers) install it too. A name kit does not provide
(``ray.data``, ``ray.serve``...) raises ``ModuleNotFoundError`` naming the README's
table of what kit covers; it never falls through to a real Ray install. When a real Ray
is installed, installing the alias says so on one line of stderr; when a real Ray is
already imported in this process, the alias refuses (the two cannot share the name).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

ENV = "KIT_RAY_ALIAS"
PREFIX = "kit.ray"
_COVERAGE = "see 'What kit covers of Ray's API' in kit's README"


class _AliasLoader(importlib.abc.Loader):
    """Loads ``ray.X`` as the already imported module ``kit.ray.X`` (no code runs twice)."""

    def __init__(self, target):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module):
        pass


class RayAlias(importlib.abc.MetaPathFinder):
    """The meta path finder behind the alias (see the module docstring)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "ray" and not fullname.startswith("ray."):
            return None
        mod = PREFIX + fullname[3:]
        try:
            found = importlib.util.find_spec(mod)
        except ModuleNotFoundError:
            found = None
        if found is None:
            raise ModuleNotFoundError(
                f"No module named {fullname!r}: `ray` is kit here (kit.ray), which does not "
                f"provide {fullname}; {_COVERAGE}",
                name=fullname,
            )
        is_pkg = found.submodule_search_locations is not None
        spec = importlib.machinery.ModuleSpec(fullname, _AliasLoader(mod), is_package=is_pkg)
        if is_pkg:
            spec.submodule_search_locations = list(found.submodule_search_locations or [])
        return spec


def installed() -> bool:
    """Whether ``import ray`` gives kit in this process."""
    return any(isinstance(f, RayAlias) for f in sys.meta_path)


def real_ray_location() -> str | None:
    """Where a real Ray install is, if one is importable without the alias (else None)."""
    for finder in sys.meta_path:
        if isinstance(finder, RayAlias) or not hasattr(finder, "find_spec"):
            continue
        try:
            spec = finder.find_spec("ray", None)
        except Exception:
            continue
        if spec is not None:
            return spec.origin or str(spec.submodule_search_locations)
    return None


def install_ray_alias(quiet: bool = False) -> None:
    """Make ``import ray`` (and ``from ray.util import ...``) give kit in this process.

    Workers of clusters started after this call install it too (``KIT_RAY_ALIAS=1`` in
    the environment they inherit). Calling it twice is harmless.

    Args:
        quiet: do not print the line saying that a real Ray install is shadowed.

    Raises:
        ImportError: a real Ray is already imported here; install the alias before it
            (first line of the program, or ``python -m kit.ray script.py``).

    Example:
        >>> import kit
        >>> kit.install_ray_alias(quiet=True)
        >>> import ray
        >>> ray.remote is kit.remote
        True
    """
    os.environ[ENV] = "1"
    if installed():
        return
    existing = sys.modules.get("ray")
    if existing is not None and not getattr(existing, "__name__", "").startswith(PREFIX):
        raise ImportError(
            f"the real Ray is already imported in this process (from "
            f"{getattr(existing, '__file__', '?')}), so `ray` cannot be kit here: install the "
            f"alias before anything imports ray (its first line, or run "
            f"`python -m kit.ray script.py`)"
        )
    real = real_ray_location()
    sys.meta_path.insert(0, RayAlias())
    if real and not quiet:
        print(
            f"kit: `import ray` gives kit (kit.ray) in this process; the Ray installed at "
            f"{real} is not used",
            file=sys.stderr,
            flush=True,
        )


def uninstall_ray_alias() -> None:
    """Undo ``install_ray_alias`` (the ``ray.*`` modules already imported are forgotten).

    Example:
        >>> from kit.ray.alias import install_ray_alias, uninstall_ray_alias
        >>> install_ray_alias(quiet=True); uninstall_ray_alias()
    """
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, RayAlias)]
    for name in [n for n in sys.modules if n == "ray" or n.startswith("ray.")]:
        if getattr(sys.modules[name], "__name__", "").startswith(PREFIX):
            del sys.modules[name]
    os.environ.pop(ENV, None)


def install_if_asked() -> None:
    """In a worker: install the alias if the driver that started the cluster had it."""
    if os.environ.get(ENV) == "1" and not installed():
        install_ray_alias(quiet=True)
