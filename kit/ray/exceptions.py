"""``ray.exceptions``: Ray's exception names, each kit's error of the same meaning.

``except ray.exceptions.RayActorError`` catches what kit raises when an actor is dead;
``RayTaskError`` is kit's ``TaskError`` (a task's own exception, raised by ``get`` as an
instance of both). Names Ray has for machinery kit does not have (placement groups,
cross-language calls) are here so that ``except`` clauses import, and kit never raises
them.

Example:
    >>> from kit.ray import exceptions
    >>> issubclass(exceptions.ActorDiedError, exceptions.RayActorError)
    True
"""

from __future__ import annotations

from kit.errors import (
    ActorDiedError,
    GetTimeoutError,
    KitError,
    NodeDiedError,
    ObjectLostError,
    ObjectStoreFullError,
    OutOfMemoryError,
    RuntimeEnvSetupError,
    SerializationError,
    TaskCancelledError,
    TaskError,
    TaskUnschedulableError,
    WorkerCrashedError,
)

RayError = KitError
RaySystemError = KitError
RayTaskError = TaskError
RayActorError = ActorDiedError
ActorUnavailableError = ActorDiedError
LocalRayletDiedError = NodeDiedError
RaySerializationError = SerializationError
ObjectFetchTimedOutError = GetTimeoutError


class ActorUnschedulableError(TaskUnschedulableError):
    """No node could ever hold the actor (Ray's name; kit raises TaskUnschedulableError)."""


class ObjectFreedError(ObjectLostError):
    """The object was freed on purpose (Ray's ``free``; kit frees only unreferenced ones)."""


class OwnerDiedError(ObjectLostError):
    """The process that owned the object died (kit: the object's driver disconnected)."""


class ObjectReconstructionFailedError(ObjectLostError):
    """The object was lost and running its task again failed."""


class PendingCallsLimitExceeded(KitError):
    """An actor's queue is full (Ray's ``max_pending_calls``; kit has no limit)."""


class AsyncioActorExit(KitError):
    """Raised by ``exit_actor()`` inside an async actor method, as in Ray."""


class ActorAlreadyExistsError(KitError, ValueError):
    """An actor name is taken (kit raises ``ValueError`` naming the fix; this subclasses it)."""


class OutOfDiskError(ObjectStoreFullError):
    """Spilling found no disk space (kit raises ObjectStoreFullError)."""


class TaskPlacementGroupRemoved(KitError):
    """Ray's placement groups; kit has none and never raises it."""


class ActorPlacementGroupRemoved(KitError):
    """Ray's placement groups; kit has none and never raises it."""


class CrossLanguageError(KitError):
    """Ray's error for Java/C++ calls; kit is Python only and never raises it."""


class PlasmaObjectNotAvailable(KitError):
    """Ray's internal name; never raised by kit."""


__all__ = [
    "ActorAlreadyExistsError",
    "ActorDiedError",
    "ActorPlacementGroupRemoved",
    "ActorUnavailableError",
    "ActorUnschedulableError",
    "AsyncioActorExit",
    "CrossLanguageError",
    "GetTimeoutError",
    "LocalRayletDiedError",
    "NodeDiedError",
    "ObjectFetchTimedOutError",
    "ObjectFreedError",
    "ObjectLostError",
    "ObjectReconstructionFailedError",
    "ObjectStoreFullError",
    "OutOfDiskError",
    "OutOfMemoryError",
    "OwnerDiedError",
    "PendingCallsLimitExceeded",
    "PlasmaObjectNotAvailable",
    "RayActorError",
    "RayError",
    "RaySerializationError",
    "RaySystemError",
    "RayTaskError",
    "RuntimeEnvSetupError",
    "TaskCancelledError",
    "TaskPlacementGroupRemoved",
    "TaskUnschedulableError",
    "WorkerCrashedError",
]
