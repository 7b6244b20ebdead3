"""``ray._private.utils``: ``DeferSigint``, the one helper Ray programs and tests import.

Example:
    >>> from kit.ray._private.utils import DeferSigint
    >>> with DeferSigint.create_if_main_thread():
    ...     pass
"""

from __future__ import annotations

import contextlib
import signal
import threading


class DeferSigint(contextlib.AbstractContextManager):
    """Hold SIGINT back until the block ends, then deliver it once.

    A handler installed for SIGINT inside the block is kept aside and is the one that
    runs (once) at the end; the handler in place before is restored otherwise.
    """

    def __init__(self):
        self.pending = False
        self.handler = None
        self._signal = None

    @classmethod
    def create_if_main_thread(cls):
        """A ``DeferSigint`` in the main thread (where signals arrive), else a no-op."""
        if threading.current_thread() is threading.main_thread():
            return cls()
        return contextlib.nullcontext()

    def _held(self, signum, frame):
        self.pending = True

    def _install(self, signum, handler):
        if signum != signal.SIGINT:
            return self._signal(signum, handler)
        old, self.handler = self.handler, handler
        return old

    def __enter__(self):
        self.handler = signal.getsignal(signal.SIGINT)
        self._signal = signal.signal
        self._signal(signal.SIGINT, self._held)
        signal.signal = self._install
        return self

    def __exit__(self, *exc):
        signal.signal = self._signal
        signal.signal(signal.SIGINT, self.handler)
        if self.pending:
            self.pending = False
            handler = self.handler
            if handler is signal.default_int_handler or handler == signal.SIG_DFL:
                raise KeyboardInterrupt
            if callable(handler):
                handler(signal.SIGINT, None)
        return False


__all__ = ["DeferSigint"]
