"""``ray.actor``: actor classes, handles, ``exit_actor`` (an actor ending itself), and
``ActorClassInheritanceException`` (raised by a class statement that names an actor
class as a base).

Example:
    >>> from kit.ray.actor import ActorHandle, exit_actor
"""

from __future__ import annotations

from kit.actors import (
    ActorClass,
    ActorClassInheritanceException,
    ActorHandle,
    ActorMethod,
    exit_actor,
    method,
)

from .exceptions import AsyncioActorExit

__all__ = [
    "ActorClass",
    "ActorClassInheritanceException",
    "ActorHandle",
    "ActorMethod",
    "AsyncioActorExit",
    "exit_actor",
    "method",
]
