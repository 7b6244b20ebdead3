"""cloudpickle, keeping the file name of functions pickled by value.

cloudpickle 3.1.3 writes ``<dynamic-code>`` as the file name of every function it
pickles by value (it makes pickles deterministic). A task's remote traceback then
loses its source lines: the worker cannot look the lines up in ``linecache``.
kit keeps the real name (``/path/script.py``, ``<ipython-input-3-...>``), so a
task's traceback shows the lines of the notebook cell or script that raised.

    dumps(obj, protocol=5, buffer_callback=None)   like cloudpickle.dumps

Functions, classes and modules of the driver's local modules are pickled as "import
this from that module, as shipped" (``kit.codeship``), so workers elsewhere get them.
"""

from __future__ import annotations

import copyreg
import io
import types
from collections import ChainMap

import cloudpickle

from . import codeship

_PLACEHOLDER = "<dynamic-code>"
_code_reduce = getattr(getattr(cloudpickle, "cloudpickle", None), "_code_reduce", None)


def _reduce_code(code):
    rebuild, args = _code_reduce(code)
    if code.co_filename != _PLACEHOLDER and _PLACEHOLDER in args:
        i = args.index(_PLACEHOLDER)
        args = args[:i] + (code.co_filename,) + args[i + 1 :]
    return rebuild, args


class _Pickler(cloudpickle.Pickler):
    def reducer_override(self, obj):
        shipped = codeship.reduce(obj)
        if shipped is not None:
            return shipped
        return super().reducer_override(obj)

    if _code_reduce is not None:
        dispatch_table = ChainMap(
            {types.CodeType: _reduce_code},
            getattr(cloudpickle.Pickler, "dispatch_table", copyreg.dispatch_table),
        )


def dumps(obj, protocol=5, buffer_callback=None, shipped=None) -> bytes:
    """Pickle ``obj`` with cloudpickle; functions keep their file name.

    ``shipped``, a list, gets the entries of the local modules the pickle refers to
    (``kit.codeship``): the caller checks them before it uses the pickle again.

    Example:
        >>> import pickle
        >>> f = pickle.loads(dumps(lambda: 1))
        >>> f.__code__.co_filename != "<dynamic-code>"
        True
    """
    if not codeship.in_use():
        with io.BytesIO() as f:
            _Pickler(f, protocol=protocol, buffer_callback=buffer_callback).dump(obj)
            return f.getvalue()
    token = codeship.begin()
    try:
        with io.BytesIO() as f:
            _Pickler(f, protocol=protocol, buffer_callback=buffer_callback).dump(obj)
            return f.getvalue()
    finally:
        used = codeship.end(token)
        if shipped is not None:
            shipped.extend(used)
