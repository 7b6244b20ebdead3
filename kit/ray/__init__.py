"""``ray`` as kit: the module an unmodified Ray program gets from ``import ray``.

Installed as ``ray`` by ``kit.install_ray_alias()``, ``python -m kit.ray script.py`` or
``%kit_as_ray`` (``kit/ray/alias.py``). Each submodule is a thin module with Ray's names:
``ray.actor``, ``ray.exceptions``, ``ray.types``, ``ray.runtime_context``, ``ray.util``
(``ActorPool``, ``queue``, ``state``, ``multiprocessing``, ``joblib``,
``scheduling_strategies``), ``ray.cluster_utils``, ``ray.cloudpickle``, ``ray.job_config``,
the id classes (``NodeID``, ``ActorID``... from ``kit/ray/ids.py``), and the test helpers
Ray's own tests import (``ray._common.test_utils``...). What kit does not cover is listed
in the README.

Example:
    >>> import kit.ray as ray
    >>> ray.ObjectID is ray.ObjectRef
    True
"""

from __future__ import annotations

import importlib

import kit as _kit
from kit import (
    available_resources,
    cancel,
    cluster_resources,
    get,
    get_actor,
    get_runtime_context,
    is_initialized,
    kill,
    method,
    nodes,
    put,
    remote,
    shutdown,
    timeline,
    wait,
)
from kit.actors import ActorClass, ActorHandle
from kit.object_ref import ObjectRef

from .alias import install_ray_alias, uninstall_ray_alias
from .ids import ActorID, JobID, NodeID, TaskID, WorkerID

ObjectID = ObjectRef  # Ray's old name, still imported by programs
__version__ = _kit.__version__

# Ray's ``ray.init`` arguments that mean nothing on kit (accepted, ignored).
_IGNORED = (
    "local_mode",
    "logging_level",
    "logging_format",
    "configure_logging",
    "_system_config",
    "_temp_dir",
    "_plasma_directory",
    "_metrics_export_port",
    "_enable_object_reconstruction",
    "_node_ip_address",
    "job_config",
    "storage",
    "labels",
)


def init(address=None, **kwargs):
    """``ray.init``: start or join a kit cluster, taking Ray's arguments.

    ``address`` may be a ``ray.cluster_utils.Cluster``'s address (its token is known in
    this process); ``"auto"`` is the latest such ``Cluster`` if there is one, else
    ``kit.init``'s ``"auto"`` (a cluster started with ``kit start``). Ray-only arguments
    (``local_mode``, ``_system_config``, ``job_config``, ``logging_level``...) are
    accepted and have no effect; ``job_config``'s ``default_actor_lifetime`` is kept for
    the actors this driver creates.

    Example:
        >>> import kit.ray as ray
        >>> ctx = ray.init(num_cpus=1, local_mode=True)
        >>> ray.shutdown()
    """
    from . import cluster_utils, job_config

    job_config.use(kwargs.get("job_config"))
    for name in _IGNORED:
        kwargs.pop(name, None)
    if address == "auto" and cluster_utils.latest_address() is not None:
        address = cluster_utils.latest_address()  # a Cluster this process started
    if address is not None and kwargs.get("token") is None:
        token = cluster_utils.token_of(address)
        if token is not None:
            kwargs["token"] = token
    return _kit.init(address, **kwargs)


def get_gpu_ids() -> list:
    """The GPUs given to this task or actor: kit does not assign GPUs, so always ``[]``."""
    return []


_SUBMODULES = (
    "actor",
    "exceptions",
    "types",
    "runtime_context",
    "util",
    "cluster_utils",
    "cloudpickle",
    "job_config",
    "runtime_env",
)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(
        f"module 'ray' (kit.ray) has no attribute {name!r}: kit does not provide it; see "
        f"'What kit covers of Ray's API' in kit's README"
    )


__all__ = [
    "ActorClass",
    "ActorHandle",
    "ActorID",
    "JobID",
    "NodeID",
    "ObjectID",
    "ObjectRef",
    "available_resources",
    "cancel",
    "cluster_resources",
    "get",
    "get_actor",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "install_ray_alias",
    "is_initialized",
    "kill",
    "method",
    "nodes",
    "put",
    "remote",
    "shutdown",
    "TaskID",
    "timeline",
    "uninstall_ray_alias",
    "wait",
    "WorkerID",
]
