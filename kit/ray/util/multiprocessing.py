"""``ray.util.multiprocessing``: ``Pool`` (``kit.Pool``) and ``TimeoutError``.

Example:
    >>> from kit.ray.util.multiprocessing import Pool
"""

from __future__ import annotations

from multiprocessing import TimeoutError

from kit.pool import AsyncResult, Pool

__all__ = ["AsyncResult", "Pool", "TimeoutError"]
