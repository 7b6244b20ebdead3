"""Checking a call's arguments against a function's signature, where ``.remote()`` is called.

As in Ray, ``f.remote(1, 2)`` on a one-argument function raises ``TypeError`` at the call
rather than when the task runs. The check is done once per call; a signature made only of
plain positional parameters (the common case) is checked by counting, which costs about
0.2 µs instead of ``inspect.Signature.bind``'s few microseconds.
"""

from __future__ import annotations

import inspect

_PLAIN = inspect.Parameter.POSITIONAL_OR_KEYWORD


class Signature:
    """What calls of one function may pass (see the module docstring).

    Example:
        >>> def f(a, b=1): ...
        >>> s = Signature.of(f, "f.remote")
        >>> s.check((1,), {})
        >>> s.check((), {})
        Traceback (most recent call last):
        ...
        TypeError: f.remote(): missing a required argument: 'a'
    """

    __slots__ = ("sig", "label", "least", "most")

    def __init__(self, sig, label):
        self.sig = sig
        self.label = label
        self.least = self.most = None  # plain positional parameters only: their bounds
        if sig is not None:
            params = list(sig.parameters.values())
            if all(p.kind is _PLAIN for p in params):
                self.most = len(params)
                self.least = sum(1 for p in params if p.default is inspect.Parameter.empty)

    @classmethod
    def of(cls, fn, label, skip_self=False) -> Signature:
        """The signature of ``fn`` (a class: its constructor's); none if it has none."""
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            return cls(None, label)
        if skip_self:
            params = list(sig.parameters.values())[1:]
            sig = sig.replace(parameters=params)
        return cls(sig, label)

    def check(self, args, kwargs) -> None:
        """Raise ``TypeError`` naming the problem if ``(args, kwargs)`` cannot be passed."""
        if self.sig is None:
            return
        if not kwargs and self.most is not None and self.least <= len(args) <= self.most:
            return
        try:
            self.sig.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{self.label}(): {e}") from None
