"""``ray.cluster_utils.Cluster``: a cluster of several nodes on this machine, nodes added
and removed while it runs (what Ray's tests use to test node failures).

    Cluster.add_node()   first: kit.launcher.start_local (the head and node n0), with
                         the node's CPUs and resources; later: a node agent process
                         (kit.providers.LocalProvider, `python -m kit.boot --node`)
    Cluster.remove_node  SIGTERM (graceful: the agent says bye) or SIGKILL to that agent
    wait_for_nodes       the head's node list, read over a connection of the Cluster's own

``ray.init(address=cluster.address)`` finds the cluster's token here (kit.ray.init).
Every process it starts dies with this process (the head watches its stdin pipe, the
agents have a parent-death signal); ``shutdown()`` stops them at once.

Example:
    >>> from kit.ray.cluster_utils import Cluster
    >>> c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # doctest: +SKIP
    >>> worker = c.add_node(num_cpus=1)  # doctest: +SKIP
    >>> c.remove_node(worker); c.shutdown()  # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import signal
import time

from kit.errors import KitError

_tokens: dict = {}  # "host:port" -> token of the clusters made in this process

JOIN_TIMEOUT = 60.0


def _plain(address: str) -> str:
    return address.replace("tcp://", "")


def token_of(address) -> str | None:
    """The token of a ``Cluster`` this process made at ``address``, or None."""
    return _tokens.get(_plain(str(address)))


def latest_address() -> str | None:
    """The address of the last ``Cluster`` this process started that is still up: what
    ``ray.init(address="auto")`` joins, as Ray joins the host's latest cluster."""
    return next(reversed(_tokens), None)


class ClusterNode:
    """A node of a ``Cluster``: ``node_id`` (hex, once joined), ``tag`` (``n0``, ``n1``...)."""

    def __init__(self, tag, resources, proc=None):
        self.tag = tag
        self.resources = resources
        self.node_id = None
        self.proc = proc  # the agent's process (None: the head's own node)

    @property
    def unique_id(self):
        return self.node_id

    def __repr__(self):
        return f"ClusterNode({self.tag}, {self.node_id})"


def _resources(args) -> dict:
    res = {"CPU": float(args.get("num_cpus", 1))}
    if args.get("num_gpus"):
        res["GPU"] = float(args["num_gpus"])
    res.update({k: float(v) for k, v in (args.get("resources") or {}).items()})
    return res


class Cluster:
    """Nodes on this machine that a test adds and removes (Ray's ``cluster_utils.Cluster``).

    Args:
        initialize_head: start the head node now, with ``head_node_args``.
        connect: also ``ray.init(address=...)`` this process to it.
        head_node_args: ``add_node`` arguments of the head node.
        shutdown_at_exit: stop the cluster when this process exits.
    """

    def __init__(
        self,
        initialize_head=False,
        connect=False,
        head_node_args=None,
        shutdown_at_exit=True,
        **_ignored,
    ):
        self._local = None  # the LocalCluster of the head (kit.launcher)
        self._provider = None
        self._client = None
        self.head_node = None
        self.worker_nodes: list = []
        if shutdown_at_exit:
            atexit.register(self.shutdown)
        if initialize_head:
            self.add_node(**(head_node_args or {}))
            if connect:
                from . import init

                init(address=self.address)

    @property
    def address(self) -> str:
        if self._local is None:
            raise KitError("the cluster has no head yet: call add_node() first")
        return _plain(self._local.address)

    @property
    def gcs_address(self) -> str:
        return self.address

    def add_node(self, wait=True, **node_args) -> ClusterNode:
        """Start a node (the head if it is the first) and return it.

        Args:
            wait: return once the node has joined.
            node_args: ``num_cpus`` (default 1), ``num_gpus``, ``resources``,
                ``object_store_memory``; Ray's other arguments are ignored.
        """
        res = _resources(node_args)
        if self._local is None:
            return self._add_head(res, node_args, wait)
        node_cfg = {
            "num_cpus": res["CPU"],
            "num_gpus": res.get("GPU", 0),
            "resources": {k: v for k, v in res.items() if k not in ("CPU", "GPU")},
            "object_store_memory": node_args.get("object_store_memory"),
        }
        from kit.launcher import driver_paths

        node_cfg.update(sys_path=driver_paths())
        self._provider.cfg["node"] = node_cfg
        tag = self._provider.launch()
        node = ClusterNode(tag, res, self._provider.procs[tag])
        self.worker_nodes.append(node)
        if wait:
            self._wait_joined([node])
        return node

    def _add_head(self, res, args, wait):
        from kit.client import Client
        from kit.launcher import start_local
        from kit.providers import LocalProvider

        extra = {k: v for k, v in res.items() if k not in ("CPU", "GPU")}
        self._local = start_local(
            res["CPU"],
            resources=extra,
            num_gpus=res.get("GPU", 0),
            object_store_memory=args.get("object_store_memory"),
            dashboard={"dashboard": False},
        )
        _tokens[self.address] = self._local.token
        self._client = Client(
            self._local.address,
            self._local.token,
            "driver",
            info={"log_to_driver": False, "name": "cluster_utils"},
        )
        self._provider = LocalProvider(
            {
                "node": {},
                "head": self._local.address,
                "token": self._local.token,
                "cluster": self._local.cluster,
                "first_tag": 1,
            }
        )
        self.head_node = ClusterNode("n0", res)
        if wait:
            self._wait_joined([self.head_node])
        return self.head_node

    def _snapshot(self) -> list:
        return self._client.query("nodes")

    def _wait_joined(self, nodes, timeout=JOIN_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            by_tag = {n.get("tag"): n for n in self._snapshot() if n["alive"]}
            for node in nodes:
                if node.node_id is None and node.tag in by_tag:
                    node.node_id = by_tag[node.tag]["node_id"].hex()
            if all(n.node_id is not None for n in nodes):
                return
            for node in nodes:
                if node.proc is not None and node.proc.poll() is not None:
                    raise KitError(
                        f"node {node.tag} exited ({node.proc.returncode}) before joining"
                    )
            if time.monotonic() > deadline:
                late = [n.tag for n in nodes if n.node_id is None]
                raise KitError(f"nodes {late} did not join within {timeout:.0f} s")
            time.sleep(0.05)

    def wait_for_nodes(self, timeout=30):
        """Wait until every node added (and not removed) has joined."""
        nodes = ([self.head_node] if self.head_node else []) + self.worker_nodes
        self._wait_joined(nodes, timeout)

    def remove_node(self, node, allow_graceful=True):
        """Stop a node: gracefully (its agent stops its workers and says bye) or killed.

        Raises:
            ValueError: it is the head node (stop the cluster with ``shutdown``).
        """
        if node is self.head_node:
            raise ValueError("the head node cannot be removed; call shutdown() instead")
        if node not in self.worker_nodes:
            raise ValueError(f"{node!r} is not a node of this cluster")
        self.worker_nodes.remove(node)
        if allow_graceful:
            self._provider.remove(node.tag)
        else:
            self._provider.procs.pop(node.tag, None)
            node.proc.send_signal(signal.SIGKILL)
        try:
            node.proc.wait(10)
        except Exception:
            node.proc.kill()
            node.proc.wait(5)
        if node.node_id is not None:
            self._wait_gone(node.node_id)

    def _wait_gone(self, node_id, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive = {n["node_id"].hex() for n in self._snapshot() if n["alive"]}
            if node_id not in alive:
                return
            time.sleep(0.05)

    def list_all_nodes(self) -> list:
        """The head node and the worker nodes still in the cluster."""
        return ([self.head_node] if self.head_node else []) + list(self.worker_nodes)

    def connect(self, namespace=None):
        """``ray.init(address=...)`` this process to the cluster."""
        from . import init

        return init(address=self.address, namespace=namespace)

    def shutdown(self):
        """Stop every node and the head."""
        if self._local is None:
            return
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
            self._client = None
        if self._provider is not None:
            self._provider.close()
        _tokens.pop(self.address, None)
        local, self._local = self._local, None
        local.stop()
        self.head_node = None
        self.worker_nodes = []


def cluster_not_supported(*args, **kwargs):
    """Ray's marker for tests that cannot run on a multi-node cluster; kit's Cluster runs
    on Linux, so it is always False."""
    return False


__all__ = ["Cluster", "ClusterNode", "cluster_not_supported"]
