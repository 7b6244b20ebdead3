"""kit: a notebook-first cluster runtime with Ray's core API.

``import kit as ray`` runs programs written for Ray's core API. The public
names are re-exported here; the machinery lives in small private modules
(see ``DESIGN.md`` at the repository's top).
"""

from . import exceptions as exceptions
from . import joblib as joblib
from . import logs as logs
from . import util as util
from .actors import ActorClass as ActorClass
from .actors import ActorHandle as ActorHandle
from .actors import method as method
from .api import ClusterContext as ClusterContext
from .api import available_resources as available_resources
from .api import cancel as cancel
from .api import cluster_resources as cluster_resources
from .api import cluster_status as cluster_status
from .api import dashboard_url as dashboard_url
from .api import events as events
from .api import get as get
from .api import get_actor as get_actor
from .api import get_runtime_context as get_runtime_context
from .api import init as init
from .api import is_initialized as is_initialized
from .api import kill as kill
from .api import nodes as nodes
from .api import put as put
from .api import remote as remote
from .api import shutdown as shutdown
from .api import timeline as timeline
from .api import wait as wait
from .completion import as_completed as as_completed
from .errors import ActorDiedError as ActorDiedError
from .errors import AuthenticationError as AuthenticationError
from .errors import ClusterFileError as ClusterFileError
from .errors import GetTimeoutError as GetTimeoutError
from .errors import HeadDiedError as HeadDiedError
from .errors import HostError as HostError
from .errors import KitError as KitError
from .errors import NodeDiedError as NodeDiedError
from .errors import ObjectLostError as ObjectLostError
from .errors import ObjectStoreFullError as ObjectStoreFullError
from .errors import OutOfMemoryError as OutOfMemoryError
from .errors import RuntimeEnvSetupError as RuntimeEnvSetupError
from .errors import SerializationError as SerializationError
from .errors import TaskCancelledError as TaskCancelledError
from .errors import TaskError as TaskError
from .errors import TaskUnschedulableError as TaskUnschedulableError
from .errors import WorkerCrashedError as WorkerCrashedError
from .executor import Executor as Executor
from .object_ref import ObjectRef as ObjectRef
from .pool import Pool as Pool
from .protocol import KIT_VERSION
from .scheduling import NodeAffinitySchedulingStrategy as NodeAffinitySchedulingStrategy
from .sync import SyncedPath as SyncedPath
from .sync import sync as sync
from .up import Cluster as Cluster


def install_ray_alias(quiet: bool = False) -> None:
    """Make ``import ray`` give kit in this process (and its clusters' workers).

    One line runs an unmodified Ray program or notebook on kit; see ``kit.ray.alias``
    (also ``python -m kit.ray script.py`` and the ``%kit_as_ray`` magic).

    Example:
        >>> import kit
        >>> kit.install_ray_alias(quiet=True)
        >>> import ray
        >>> ray.get(ray.put(1))  # doctest: +SKIP
        1
    """
    from .ray.alias import install_ray_alias as install

    install(quiet=quiet)


def dask_scheduler(dsk, keys, **kwargs):
    """Run a Dask graph as kit tasks: ``dask.compute(x, scheduler=kit.dask_scheduler)``.

    See ``kit.dask``; imported on first call, so ``import kit`` does not import dask
    (and ``from kit import *`` does not shadow ``dask``).
    """
    from .dask import dask_scheduler as run

    return run(dsk, keys, **kwargs)


__version__ = KIT_VERSION
# kit.joblib stays out of ``from kit import *``, which would shadow the joblib package.
__all__ = [
    name for name in dir() if not name.startswith("_") and name not in ("KIT_VERSION", "joblib")
]


def load_ipython_extension(ipython):
    """``%load_ext kit`` registers the notebook magics (``%cluster``, ``%%remote``).

    The magics live in the notebook layer, which registers this hook with
    ``kit.frontend``; the runtime itself never imports it.
    """
    from . import frontend

    load = frontend.hook("ipython_extension")
    if load is None:
        raise ImportError(
            "kit's notebook magics are not installed: install the package with "
            "`python -m pip install -e .` (it provides the `magics` and `widgets` modules)"
        )
    load(ipython)
