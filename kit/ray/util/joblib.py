"""``ray.util.joblib``: ``register_ray()`` makes ``"ray"`` a joblib backend running on kit.

Example:
    >>> from kit.ray.util.joblib import register_ray
    >>> register_ray()  # then: with joblib.parallel_backend("ray"): ...
"""

from __future__ import annotations


def register_ray() -> None:
    """Register kit's joblib backend under Ray's name ``"ray"`` (and ``"kit"``)."""
    import joblib

    from kit import joblib as kit_joblib

    kit_joblib.register()
    joblib.register_parallel_backend("ray", kit_joblib._registered["cls"])


__all__ = ["register_ray"]
