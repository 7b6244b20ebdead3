"""``ray.types``: ``ObjectRef`` for type hints (``ObjectRef[np.ndarray]`` works).

Example:
    >>> from kit.ray.types import ObjectRef
    >>> ObjectRef[int]  # doctest: +ELLIPSIS
    kit.object_ref.ObjectRef[int]
"""

from __future__ import annotations

from kit.object_ref import ObjectRef

__all__ = ["ObjectRef"]
