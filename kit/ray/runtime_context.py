"""``ray.runtime_context``: what running code can learn about where it runs.

Example:
    >>> from kit.ray.runtime_context import get_runtime_context
    >>> get_runtime_context().worker_mode
    'driver'
"""

from __future__ import annotations

from kit.context import RuntimeContext, get_runtime_context

__all__ = ["RuntimeContext", "get_runtime_context"]
