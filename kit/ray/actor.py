"""``ray.actor``: actor classes, handles, and ``exit_actor`` (an actor ending itself).

Example:
    >>> from kit.ray.actor import ActorHandle, exit_actor
"""

from __future__ import annotations

from kit.actors import ActorClass, ActorHandle, ActorMethod, exit_actor, method

from .exceptions import AsyncioActorExit

__all__ = ["ActorClass", "ActorHandle", "ActorMethod", "AsyncioActorExit", "exit_actor", "method"]
