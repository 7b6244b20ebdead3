"""Options of tasks and actors: Ray's rules, checked where an option is given.

``@kit.remote(...)``, ``f.options(...)``, ``Cls.options(...)``, ``@kit.method(...)`` and
``handle.method.options(...)`` check what they are given, so a bad option raises on
the line that gave it, never later in the head. As in Ray, a value of the wrong type
raises ``TypeError`` and a value out of range ``ValueError``; each message names the
option, the value and what is allowed.

    option                        allowed (None means the default)
    num_cpus, num_gpus, memory    a finite number >= 0, in steps of at least 0.0001
    resources                     {name: quantity as above}; names are strings other
                                  than "CPU", "GPU", "memory", "object_store_memory"
    num_returns                   an int, 0 <= n <= MAX_RETURNS (0: .remote() gives None)
    max_retries, max_restarts,    an int >= -1; -1 is forever (max_task_retries, also an
    max_task_retries              actor method's: how often a call that raised one of its
                                  retry_exceptions runs again)
    max_concurrency               an int >= 0
    retry_exceptions              a bool, or a list or tuple of exception classes
    name, namespace               a string (an actor's name and namespace: not empty)
    lifetime                      "detached" or "non_detached"
    get_if_exists                 a bool; True needs a name
    scheduling_strategy           "DEFAULT", "SPREAD" or a NodeAffinitySchedulingStrategy
    node                          a node id (bytes) or its hex (kit's own option)
    runtime_env                   None or a dict of Ray's keys (kit.runtime_env.check)
    placement_group               "default" (kit has no placement groups)

bool counts as an int, as it does in Python and in Ray. NaN and infinity are
refused (Ray lets NaN through its check and fails on it later).
"""

from __future__ import annotations

import math

from . import runtime_env
from .records import MAX_RETURNS

TASK_DEFAULTS = {
    "num_cpus": 1,
    "num_gpus": 0,
    "resources": None,
    "max_retries": 3,
    "retry_exceptions": False,
    "num_returns": 1,
    "name": None,
    "scheduling_strategy": None,
    "node": None,
    "runtime_env": None,
    "memory": None,
    "placement_group": None,
}

ACTOR_DEFAULTS = {
    "num_cpus": None,
    "num_gpus": 0,
    "resources": None,
    "max_restarts": 0,
    "max_task_retries": 0,
    "max_concurrency": 1,
    "name": None,
    "namespace": None,
    "lifetime": None,
    "scheduling_strategy": None,
    "node": None,
    "runtime_env": None,
    "memory": None,
    "get_if_exists": False,
}

# Ray counts resources in units of 0.0001: a smaller nonzero fraction is refused.
RESOURCE_UNIT = 0.0001
# Resources that have options of their own; Ray refuses them inside ``resources``.
_OWN_OPTION = {"CPU": "num_cpus", "GPU": "num_gpus", "memory": "memory"}
_STRATEGIES = ("DEFAULT", "SPREAD")


def _bad_type(name, value, allowed):
    return TypeError(f"{name} must be {allowed}, not {type(value).__name__} ({value!r})")


def _bad_value(name, value, allowed):
    return ValueError(f"{name}={value!r} is not allowed: it takes {allowed}")


def quantity(name, value):
    """Check a resource quantity (``num_cpus``, ``resources['x']``...): a number >= 0.

    Example:
        >>> quantity("num_cpus", 0.5)
        >>> quantity("num_cpus", -1)
        Traceback (most recent call last):
        ...
        ValueError: num_cpus=-1 is not allowed: it takes None or a finite number >= 0
    """
    allowed = "None or a finite number >= 0"
    if value is None:
        return
    if not isinstance(value, (int, float)):
        raise _bad_type(name, value, allowed)
    if isinstance(value, float) and not math.isfinite(value):
        raise _bad_value(name, value, allowed)
    if value < 0:
        raise _bad_value(name, value, allowed)
    if isinstance(value, float) and 0 < value < RESOURCE_UNIT:
        raise _bad_value(name, value, f"0 or at least {RESOURCE_UNIT} (Ray's resource unit)")


def _resources(name, value):
    if value is None:
        return
    if not isinstance(value, dict):
        raise _bad_type(name, value, "None or a dict of {resource name: quantity}")
    for key, q in value.items():
        if not isinstance(key, str):
            raise _bad_type(f"a key of {name}", key, "a resource name (str)")
        if key in _OWN_OPTION or key == "object_store_memory":
            own = _OWN_OPTION.get(key)
            fix = f"use the {own} option instead" if own else "it is not a task resource"
            raise ValueError(f"{name}={value!r} is not allowed: {key!r} in {name}: {fix}")
        quantity(f"{name}[{key!r}]", q)


def _count(least, meaning=""):
    allowed = f"None or an int >= {least}{meaning}"

    def check(name, value):
        if value is None:
            return
        if not isinstance(value, int):
            raise _bad_type(name, value, allowed)
        if value < least:
            raise _bad_value(name, value, allowed)

    return check


def num_returns(name, value):
    """Check ``num_returns``: an int from 0 to ``MAX_RETURNS`` (or None: one).

    Example:
        >>> num_returns("num_returns", 300)
        >>> num_returns("num_returns", -1)
        Traceback (most recent call last):
        ...
        ValueError: num_returns=-1 is not allowed: it takes None or an int from 0 to 4294967295
    """
    allowed = f"None or an int from 0 to {MAX_RETURNS}"
    if isinstance(value, str) and value in ("streaming", "dynamic"):
        raise ValueError(
            f"{name}={value!r} is not allowed: kit does not stream a generator's results; "
            f"return a list and set num_returns to its length"
        )
    if value is None:
        return
    if not isinstance(value, int):
        raise _bad_type(name, value, allowed)
    if not 0 <= value <= MAX_RETURNS:
        raise _bad_value(name, value, allowed)


def _retry_exceptions(name, value):
    allowed = "a bool, or a list or tuple of exception classes"
    if isinstance(value, bool):
        return
    if not isinstance(value, (list, tuple)):
        raise _bad_type(name, value, allowed)
    for cls in value:
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            raise _bad_value(name, value, f"{allowed}; {cls!r} is not an exception class")


def _string(name, value):
    if value is not None and not isinstance(value, str):
        raise _bad_type(name, value, "None or a str")


def _actor_string(name, value):
    _string(name, value)
    if value == "":
        raise _bad_value(name, value, "None or a non-empty str")


def _lifetime(name, value):
    allowed = "None, 'detached' or 'non_detached'"
    if value is None:
        return
    if not isinstance(value, str):
        raise _bad_type(name, value, allowed)
    if value not in ("detached", "non_detached"):
        raise _bad_value(name, value, allowed)


def _bool(name, value):
    if not isinstance(value, bool):
        raise _bad_type(name, value, "a bool")


def _node_id(name, value):
    allowed = "None, a node id (bytes) or its hex (str)"
    if value is None:
        return
    if isinstance(value, str):
        try:
            bytes.fromhex(value)
        except ValueError:
            raise _bad_value(name, value, allowed) from None
    elif not isinstance(value, bytes):
        raise _bad_type(name, value, allowed)


def _strategy(name, value):
    allowed = f"None, {' or '.join(map(repr, _STRATEGIES))}, or a NodeAffinitySchedulingStrategy"
    if value is None:
        return
    if isinstance(value, str):
        if value not in _STRATEGIES:
            raise _bad_value(name, value, allowed)
        return
    if not hasattr(value, "node_id"):
        raise _bad_type(name, value, allowed)
    _node_id(f"{name}.node_id", value.node_id)


def _placement_group(name, value):
    if value not in (None, "default"):
        raise _bad_value(
            name, value, "None or 'default': kit has no placement groups; use node affinity"
        )


_COMMON = {
    "num_cpus": quantity,
    "num_gpus": quantity,
    "memory": quantity,
    "resources": _resources,
    "scheduling_strategy": _strategy,
    "node": _node_id,
    "runtime_env": runtime_env.check,
}
_RULES = {
    "task": {
        **_COMMON,
        "num_returns": num_returns,
        "max_retries": _count(-1, " (-1: retry forever)"),
        "retry_exceptions": _retry_exceptions,
        "name": _string,
        "placement_group": _placement_group,
    },
    "actor": {
        **_COMMON,
        "max_restarts": _count(-1, " (-1: restart forever)"),
        "max_task_retries": _count(-1, " (-1: retry forever)"),
        "max_concurrency": _count(0),
        "name": _actor_string,
        "namespace": _actor_string,
        "lifetime": _lifetime,
        "get_if_exists": _bool,
    },
}
# An actor method's own options (``@kit.method(...)``, ``handle.m.options(...)``); None
# (the default) means the actor's: its max_task_retries, no retry on exceptions.
_RULES["method"] = {
    "num_returns": num_returns,
    "max_task_retries": _RULES["actor"]["max_task_retries"],
    "retry_exceptions": _retry_exceptions,
}
METHOD_DEFAULTS = {"num_returns": 1, "max_task_retries": None, "retry_exceptions": None}
_WHAT = {"task": "a remote function", "actor": "an actor class", "method": "an actor method"}
_DEFAULTS = {"task": TASK_DEFAULTS, "actor": ACTOR_DEFAULTS, "method": METHOD_DEFAULTS}


def check(kind: str, opts: dict, merged: dict | None = None) -> dict:
    """Check the options ``opts`` of a task (``kind`` "task"), an actor ("actor") or an
    actor method ("method").

    ``merged`` is every option in force once ``opts`` applies (for rules between
    options, such as ``get_if_exists`` needing a name); by default ``opts`` itself.
    Returns ``opts`` with None replaced by the option's default.

    Raises:
        ValueError: an unknown option, or a value out of range.
        TypeError: a value of the wrong type.

    Example:
        >>> check("task", {"num_cpus": 2, "max_retries": None})
        {'num_cpus': 2, 'max_retries': 3}
        >>> check("task", {"num_gpus": float("nan")})
        Traceback (most recent call last):
        ...
        ValueError: num_gpus=nan is not allowed: it takes None or a finite number >= 0
    """
    rules = _RULES[kind]
    unknown = set(opts) - set(rules)
    if unknown:
        raise ValueError(
            f"unknown option(s) {sorted(unknown)} for {_WHAT[kind]}; valid options: {sorted(rules)}"
        )
    for name, value in opts.items():
        rules[name](name, value)
    merged = opts if merged is None else merged
    if kind == "actor" and merged.get("get_if_exists") and not merged.get("name"):
        raise ValueError(
            "get_if_exists=True needs a name: Cls.options(name=..., get_if_exists=True)"
        )
    defaults = _DEFAULTS[kind]
    return {k: defaults[k] if v is None else v for k, v in opts.items()}


def resources_of(opts: dict, default_cpus=1) -> dict:
    """The resources a task or actor holds, from its checked options (zeros left out).

    Example:
        >>> resources_of({"num_cpus": 0.5, "num_gpus": 0, "resources": {"disk": 1}})
        {'CPU': 0.5, 'disk': 1.0}
    """
    cpus = opts.get("num_cpus")
    res = {"CPU": float(default_cpus if cpus is None else cpus)}
    if opts.get("num_gpus"):
        res["GPU"] = float(opts["num_gpus"])
    if opts.get("memory"):  # bytes, held while it runs (Ray's ``memory`` resource)
        res["memory"] = float(opts["memory"])
    for k, v in (opts.get("resources") or {}).items():
        res[k] = float(v)
    return {k: v for k, v in res.items() if v}
