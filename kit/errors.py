"""kit's exception tree. Every error kit raises is a ``KitError``.

``TaskError`` wraps an exception raised by user code in a task or actor method.
Where the user's exception class can be subclassed, ``get`` raises an instance of
a class that derives from both ``TaskError`` and the user's class, so
``except ValueError:`` works around remote code as it does around local code.
The remote traceback travels as ``__cause__`` (a ``RemoteTraceback``).
"""

from __future__ import annotations

__all__ = [
    "KitError",
    "TaskError",
    "RemoteTraceback",
    "GetTimeoutError",
    "WorkerCrashedError",
    "ActorDiedError",
    "NodeDiedError",
    "HeadDiedError",
    "TaskUnschedulableError",
    "ObjectLostError",
    "UntrustedObjectError",
    "TaskCancelledError",
    "ObjectStoreFullError",
    "AuthenticationError",
    "UnsafePathError",
    "OutOfMemoryError",
    "SerializationError",
    "ClusterFileError",
    "HostError",
    "RuntimeEnvSetupError",
    "RaySystemError",
]


class KitError(Exception):
    """Base of every error raised by kit itself."""


class RemoteTraceback(Exception):
    """Carries the formatted traceback of the remote side, as the ``__cause__``."""

    def __init__(self, tb: str):
        super().__init__(tb)
        self.tb = tb

    def __str__(self):
        return self.tb


class TaskError(KitError):
    """A task or actor method raised; ``get`` re-raises it in the caller.

    Attributes: ``cause`` (the user's exception, or None if it could not be
    rebuilt), ``cause_type`` (its class name), ``traceback_str``, ``function``,
    ``node_id``, ``pid``, ``node_tag`` (``"n1"``, as the monitor names the node).
    """

    def __init__(
        self,
        message="",
        *,
        cause=None,
        cause_type="",
        traceback_str="",
        function="",
        node_id="",
        pid=0,
        node_tag="",
    ):
        super().__init__(message)
        self.cause = cause
        self.cause_type = cause_type
        self.traceback_str = traceback_str
        self.function = function
        self.node_id = node_id
        self.pid = pid
        self.node_tag = node_tag

    def __str__(self):
        node = getattr(self, "node_tag", "") or self.node_id
        head = f"{self.cause_type} in {self.function} (pid {self.pid}, node {node})"
        msg = self.args[0] if self.args else ""
        return f"{head}: {msg}" if msg else head

    def __reduce__(self):
        return (
            _rebuild_task_error,
            (
                self.args[0] if self.args else "",
                self.cause,
                self.cause_type,
                self.traceback_str,
                self.function,
                self.node_id,
                self.pid,
                getattr(self, "node_tag", ""),
            ),
        )

    @classmethod
    def build(cls, cause, cause_type, message, traceback_str, function, node_id, pid, node_tag=""):
        """Make the error ``get`` raises: also an instance of ``type(cause)`` if possible."""
        kwargs = dict(
            cause=cause,
            cause_type=cause_type,
            traceback_str=traceback_str,
            function=function,
            node_id=node_id,
            pid=pid,
            node_tag=node_tag,
        )
        err = None
        if cause is not None and not isinstance(cause, KitError):
            err = _dual_instance(cls, cause, message, kwargs)
        if err is None:
            err = cls(message, **kwargs)
        err.__cause__ = RemoteTraceback(traceback_str)
        return err


_dual_classes: dict = {}


def _dual_instance(base, cause, message, kwargs):
    user_cls = type(cause)
    try:
        dual = _dual_classes.get(user_cls)
        if dual is None:
            dual = type(
                f"TaskError({user_cls.__name__})",
                (base, user_cls),
                {
                    "__module__": "kit.errors",
                    "__str__": base.__str__,
                    "__reduce__": base.__reduce__,
                },
            )
            _dual_classes[user_cls] = dual
        err = dual.__new__(dual, message)
        Exception.__init__(err, message)
        for k, v in getattr(cause, "__dict__", {}).items():
            try:
                setattr(err, k, v)
            except Exception:
                pass
        for k, v in kwargs.items():
            setattr(err, k, v)
        return err
    except Exception:
        return None


def _rebuild_task_error(message, cause, cause_type, tb, function, node_id, pid, node_tag=""):
    return TaskError.build(cause, cause_type, message, tb, function, node_id, pid, node_tag)


class GetTimeoutError(KitError, TimeoutError):
    """``get`` or ``wait`` ran out of time before the objects were ready."""


class WorkerCrashedError(KitError):
    """The worker running a task died (signal, ``os._exit``, out of memory) and retries ran out."""


class OutOfMemoryError(WorkerCrashedError):
    """The memory monitor killed the worker because the machine ran short of memory."""


class ActorDiedError(KitError):
    """The actor's process is gone (crashed, killed, or its node died); calls cannot run."""


class NodeDiedError(KitError):
    """The node that held a task or object stopped answering."""


class TaskUnschedulableError(KitError):
    """No node of the cluster could ever run the task (it asks for more of a resource
    than any node has), and none was added in time. Ray's name."""


class HeadDiedError(KitError):
    """The head stopped answering (it died, or the network to it did): the cluster is gone
    for this driver. Unlike ``NodeDiedError``, nothing can be retried: start the cluster
    again and call ``kit.init()`` again."""


class ObjectLostError(KitError):
    """Every copy of an object is gone and it cannot be rebuilt."""


class TaskCancelledError(KitError):
    """The task was cancelled with ``kit.cancel`` before it finished."""


class ObjectStoreFullError(KitError):
    """The object store is over its limit and spilling to disk failed too."""


class AuthenticationError(KitError):
    """The cluster refused this process: the token is wrong or the versions differ."""


class UnsafePathError(KitError, PermissionError):
    """A directory or file kit keeps private is open to other local users.

    It belongs to another uid, gives group or others access, or is a symlink or not a
    directory (see ``kit/paths.py``). kit uses nothing in it; the message names the path,
    what is wrong and the fix. Also a ``PermissionError``.
    """


class UntrustedObjectError(UnsafePathError):
    """A file under an object's name is not kit's: another uid owns it, others can write
    it, or it is not a regular file. kit refuses to unpickle it (that would run whatever
    code it holds). Unlike ``ObjectLostError`` it is not retried: waiting or running the
    task again finds the same file.
    """


class SerializationError(KitError, TypeError):
    """A value could not be pickled or unpickled; the message names which one."""


class ClusterFileError(KitError, ValueError):
    """A cluster file (``kit up cluster.yaml``) is wrong: an unknown key, a missing host,
    a value of the wrong kind. Raised before anything starts; the message names the file,
    the key and the fix. Also a ``ValueError``."""


class HostError(KitError):
    """A host of a cluster file could not be used: unreachable, the key refused, a setup
    command failed, kit not installed there. One line naming the host and why; raised by
    ``kit up`` before the cluster starts, or when a step on that host fails."""

    def __init__(self, host: str, why: str):
        super().__init__(f"host {host}: {why}")
        self.host = host
        self.why = why


RaySystemError = KitError


class RuntimeEnvSetupError(KitError):
    """A task's or actor's ``runtime_env`` could not be set up on its node: a package
    could not be installed, a shipped folder could not be fetched. The message names the
    node and what failed, with the installer's last lines. Other environments' tasks are
    not affected (Ray's name)."""
