"""Ray's ``ray.exceptions`` names, so ``except ray.exceptions.RayTaskError`` carries over."""

from .errors import *  # noqa: F401,F403
from .errors import (
    ActorDiedError,
    GetTimeoutError,
    KitError,
    ObjectLostError,
    TaskCancelledError,
    TaskError,
    WorkerCrashedError,
)

RayError = KitError
RayTaskError = TaskError
RayActorError = ActorDiedError
ActorUnavailableError = ActorDiedError
TaskCancelledError = TaskCancelledError
GetTimeoutError = GetTimeoutError
WorkerCrashedError = WorkerCrashedError
ObjectLostError = ObjectLostError
