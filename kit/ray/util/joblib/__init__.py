"""``ray.util.joblib``: ``register_ray()`` makes ``"ray"`` a joblib backend running on kit.

``joblib.parallel_backend("ray", ray_remote_args={"num_cpus": 2})`` gives every task
those options, as Ray's backend does (kit's own name for them: ``task_options``).

Example:
    >>> from kit.ray.util.joblib import register_ray
    >>> register_ray()  # then: with joblib.parallel_backend("ray"): ...
"""

from __future__ import annotations


def register_ray() -> None:
    """Register kit's joblib backend under Ray's name ``"ray"`` (and ``"kit"``)."""
    import joblib

    from .ray_backend import RayBackend

    joblib.register_parallel_backend("ray", RayBackend)


__all__ = ["register_ray"]
