"""``ray.util.joblib.ray_backend``: ``RayBackend``, which is kit's joblib backend class.

Example:
    >>> from kit.ray.util.joblib.ray_backend import RayBackend  # doctest: +SKIP
"""

from __future__ import annotations

from kit import joblib as _kit_joblib

_kit_joblib.register()  # makes the class once ("kit"), shared with register_ray's "ray"
RayBackend = _kit_joblib._registered["cls"]

__all__ = ["RayBackend"]
