"""Where the notebook layer plugs into the runtime, so the runtime never imports it.

    widgets ── register("display", ...), register("progress", ...) ──▶ frontend
    magics  ── register("ipython_extension", ...) ─────────────────────▶ frontend
    kit.api ── hook("progress") ──▶ the registered function, or None
    kit.api ── registered("shutdown") ──▶ the function, only if its package was imported

The runtime (``kit``) knows these hook names and nothing of the packages that
fill them. A package fills a hook when it is imported; when the runtime needs a
hook nobody filled yet, it loads the modules named by the installed entry points
of group ``kit.frontend`` (``pyproject.toml`` names ``widgets`` and ``magics``),
once. Without them (kit's runtime alone) the hooks stay empty and the runtime
does without: plain-text reprs, no progress display.

Hooks:
    display(context) -> dict         a notebook's mime bundle for ``kit.init()``'s context
    show(context)                    display the context in a notebook (``_ipython_display_``)
    progress(refs, label) -> cm      a context manager showing progress while ``get`` waits
    ipython_extension(shell)         what ``%load_ext kit`` does
    shutdown(stop)                   ``kit.shutdown()``: the views read the cluster once
                                     more, call ``stop()``, then show that it stopped
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

GROUP = "kit.frontend"
HOOKS = ("display", "show", "progress", "ipython_extension", "shutdown")

_hooks: dict = {}
_lock = threading.Lock()
_loaded = False


def register(name: str, fn: Callable) -> None:
    """Fill hook ``name`` with ``fn`` (the notebook layer calls this when imported).

    Example:
        >>> import kit.frontend as frontend
        >>> frontend.register("display", lambda ctx: {"text/plain": "a cluster"})
    """
    if name not in HOOKS:
        raise ValueError(f"unknown frontend hook {name!r}; the hooks are {HOOKS}")
    _hooks[name] = fn


def hook(name: str) -> Optional[Callable]:
    """The function registered for ``name``, loading the installed frontends first if needed.

    Example:
        >>> import kit.frontend as frontend
        >>> frontend.hook("progress") is None or callable(frontend.hook("progress"))
        True
    """
    fn = _hooks.get(name)
    if fn is None and not _loaded:
        _load_entry_points()
        fn = _hooks.get(name)
    return fn


def registered(name: str) -> Optional[Callable]:
    """The function registered for ``name``, without loading any frontend (None if none is).

    For hooks that matter only once a frontend is in use (nothing to tell otherwise).

    Example:
        >>> import kit.frontend as frontend
        >>> frontend.registered("shutdown") is None or callable(frontend.registered("shutdown"))
        True
    """
    return _hooks.get(name)


def _load_entry_points() -> None:
    global _loaded
    with _lock:
        if _loaded:
            return
        _loaded = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=GROUP):
            try:
                ep.load()  # importing the module registers its hooks
            except Exception as e:  # a broken frontend must not break the runtime
                import warnings

                warnings.warn(
                    f"kit: the frontend {ep.name!r} ({ep.value}) failed to load: "
                    f"{type(e).__name__}: {e}; reinstall it (pip install -e .)",
                    stacklevel=3,
                )
