"""``ray.cloudpickle``: the cloudpickle kit pickles with (Ray vendors its own copy).

Example:
    >>> from kit.ray import cloudpickle
    >>> cloudpickle.loads(cloudpickle.dumps(lambda: 3))()
    3
"""

from __future__ import annotations

from cloudpickle import *  # noqa: F403
from cloudpickle import CloudPickler, Pickler, dump, dumps, load, loads  # noqa: F401
