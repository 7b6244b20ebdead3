"""``kit demo``: a local cluster doing tasks, a task graph and an actor, in a few seconds."""

from __future__ import annotations

import time


def run(num_nodes: int = 2, num_cpus: int = 2, out=print) -> dict:
    """Run the demo; return per-node task counts (node id -> tasks done).

    Example:
        >>> counts = run(num_nodes=1, num_cpus=1, out=lambda *a: None)
        >>> sum(counts.values()) > 0
        True
    """
    import kit

    t0 = time.perf_counter()
    kit.init(num_nodes=num_nodes, num_cpus=num_cpus)
    try:
        out(
            f"started a local cluster: {len(kit.nodes())} nodes, "
            f"{kit.cluster_resources()['CPU']:g} CPU slots, in {time.perf_counter() - t0:.2f} s"
        )

        @kit.remote
        def square(x):
            return x * x

        t = time.perf_counter()
        squares = kit.get([square.remote(i) for i in range(1000)])
        out(f"1,000 tasks: sum of squares {sum(squares)} in {time.perf_counter() - t:.2f} s")

        @kit.remote
        def add(a, b):
            return a + b

        values = [square.remote(i) for i in range(16)]
        while len(values) > 1:
            values = values[2:] + [add.remote(values[0], values[1])]
        out(f"a tree of 15 add tasks over 16 squares: {kit.get(values[0])}")

        @kit.remote
        class Counter:
            def __init__(self):
                self.n = 0

            def inc(self):
                self.n += 1
                return self.n

        c = Counter.remote()
        for _ in range(9):
            c.inc.remote()
        out(f"an actor counted to {kit.get(c.inc.remote())}")

        counts = {n["NodeID"]: n["done"] for n in kit.nodes()}
        out("tasks done per node:")
        for node, done in counts.items():
            out(f"  node {node}: {done}")
        return counts
    finally:
        kit.shutdown()
        import psutil

        left = psutil.Process().children(recursive=True)
        out(
            "shut down; "
            + (
                "no process left behind"
                if not left
                else f"{len(left)} processes still running: {[p.pid for p in left]}"
            )
        )
