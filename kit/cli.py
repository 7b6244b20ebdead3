"""The ``kit`` command: ``kit demo``, and the cluster commands.

    kit demo                     run tasks, a graph and an actor on a local cluster
    kit start --head [...]       (the multi-node issue) start a head on this host
    kit stop / kit status        stop the kit processes started here / show nodes
"""

from __future__ import annotations

import argparse
import json
import os
import sys

STATE_DIR = os.path.join(os.path.expanduser("~"), ".kit")
STATE_FILE = os.path.join(STATE_DIR, "cluster.json")


def read_state():
    """The cluster started on this host by ``kit start --head`` (address, token), or None."""
    try:
        with open(STATE_FILE) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def cmd_demo(args) -> int:
    from .demo import run
    run(num_nodes=args.nodes, num_cpus=args.cpus)
    return 0


def main(argv=None) -> int:
    """Entry point of the ``kit`` console script.

    Example:
        $ kit demo
    """
    p = argparse.ArgumentParser(prog="kit", description="kit: notebook-first cluster runtime")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="run a short demo on a local cluster")
    d.add_argument("--nodes", type=int, default=2, help="node agents to start (default 2)")
    d.add_argument("--cpus", type=int, default=2, help="CPU slots per node (default 2)")
    d.set_defaults(fn=cmd_demo)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
