"""``ray.runtime_env``: ``RuntimeEnv``, a dict of Ray's runtime_env keys (``kit.runtime_env``).

Example:
    >>> from kit.ray.runtime_env import RuntimeEnv
    >>> RuntimeEnv(env_vars={"A": "1"})
    {'env_vars': {'A': '1'}}
"""

from __future__ import annotations

from kit import runtime_env as _checks


class RuntimeEnv(dict):
    """A runtime_env as a dict, checked as kit checks ``runtime_env`` options."""

    def __init__(self, **fields):
        super().__init__(**{k: v for k, v in fields.items() if v is not None})
        _checks.check("runtime_env", dict(self))


__all__ = ["RuntimeEnv"]
