"""``ray.job_config``: ``JobConfig``; kit uses its ``default_actor_lifetime`` and
``runtime_env`` (the rest of Ray's fields are accepted and unused).

Example:
    >>> from kit.ray.job_config import JobConfig
    >>> JobConfig(default_actor_lifetime="detached").default_actor_lifetime
    'detached'
"""

from __future__ import annotations

from kit import actors


class JobConfig:
    """What ``ray.init(job_config=...)`` takes."""

    def __init__(self, default_actor_lifetime=None, runtime_env=None, **_unused):
        if default_actor_lifetime not in (None, "detached", "non_detached"):
            raise ValueError(
                f"default_actor_lifetime={default_actor_lifetime!r}: it takes 'detached' or "
                f"'non_detached'"
            )
        self.default_actor_lifetime = default_actor_lifetime
        self.runtime_env = runtime_env

    def __repr__(self):
        return f"JobConfig(default_actor_lifetime={self.default_actor_lifetime!r})"


def use(config) -> None:
    """Apply ``ray.init``'s ``job_config`` to this driver (None: Ray's defaults)."""
    lifetime = getattr(config, "default_actor_lifetime", None)
    actors.set_default_lifetime(lifetime)


__all__ = ["JobConfig"]
