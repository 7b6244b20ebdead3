"""``kit.as_completed``: refs in the order their objects become ready.

The asyncio face is ``ObjectRef.__await__`` (in ``object_ref.py``): awaiting a
ref waits on ``ref.future()``, which kit's io thread resolves, so the event
loop never blocks and ``asyncio.gather(*refs)`` works. This module is the
blocking counterpart, the way ``concurrent.futures.as_completed`` is for
futures, built on ``kit.wait``.
"""

from __future__ import annotations

import time

from .api import wait
from .errors import GetTimeoutError


def as_completed(refs, timeout=None):
    """Yield the given refs as their objects become ready (finished first, first out).

    Args:
        refs: ObjectRefs (of tasks or puts); duplicates are yielded once.
        timeout: seconds from this call; after that the generator raises
            ``GetTimeoutError`` (a ``TimeoutError``).

    Example:
        >>> import kit
        >>> refs = [kit.put(1), kit.put(2)]
        >>> sorted(kit.get(r) for r in kit.as_completed(refs))
        [1, 2]
    """
    pending = list(dict.fromkeys(refs))
    end = None if timeout is None else time.monotonic() + timeout
    total = len(pending)
    while pending:
        left = None if end is None else max(end - time.monotonic(), 0.0)
        ready, pending = wait(pending, num_returns=1, timeout=left)
        if not ready:
            raise GetTimeoutError(
                f"{len(pending)} of {total} refs were not ready within "
                f"{timeout} s; pass a longer timeout, or kit.wait() for "
                f"what is ready"
            )
        if pending:  # take everything else that is ready by now, in one pass
            more, pending = wait(pending, num_returns=len(pending), timeout=0)
            ready += more
        yield from ready
