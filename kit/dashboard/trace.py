"""The task timeline as a Chrome trace (Ray's ``ray timeline``): open it in Perfetto.

    bars (start, end, label, worker, node, state) ──▶ chrome_trace() ──▶ JSON

The Trace Event Format: one complete event (``"ph": "X"``) per task run, a process
per node (named by its tag, n0, n1...) and a thread per worker (named by its pid),
times in microseconds. Loads in https://ui.perfetto.dev and ``chrome://tracing``.
"""

from __future__ import annotations


def chrome_trace(bars, node_names=None, worker_pids=None) -> dict:
    """Build a Chrome trace from task-stream bars.

    Args:
        bars: ``(seq, start, end, label, worker, node, state)`` per run (``Model.bars``);
            worker and node are ids (bytes or hex strings) or None.
        node_names: ``{node id: tag}`` for process names (default: the id's first digits).
        worker_pids: ``{worker id: pid}`` for thread names.

    Returns:
        ``{"traceEvents": [...], "displayTimeUnit": "ms"}``, ready for ``json.dump``.

    Example:
        >>> t = chrome_trace([(1, 10.0, 10.5, "f", b"w", b"n", "finished")], {b"n": "n0"})
        >>> [e["ph"] for e in t["traceEvents"]], t["traceEvents"][-1]["dur"]
        (['M', 'M', 'X'], 500000.0)
    """
    node_names = node_names or {}
    worker_pids = worker_pids or {}
    nodes: dict = {}
    threads: dict = {}
    meta, runs = [], []
    for _, start, end, label, worker, node, state in bars:
        pid = nodes.get(node)
        if pid is None:
            pid = nodes[node] = len(nodes) + 1
            name = node_names.get(node) or _short(node) or "?"
            meta.append({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": name}})
        key = (node, worker)
        tid = threads.get(key)
        if tid is None:
            tid = threads[key] = len(threads) + 1
            wpid = worker_pids.get(worker)
            name = f"worker pid {wpid}" if wpid else f"worker {_short(worker)}"
            meta.append(
                {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}}
            )
        runs.append(
            {
                "ph": "X",
                "name": label,
                "cat": state,
                "pid": pid,
                "tid": tid,
                "ts": start * 1e6,
                "dur": max(0.0, end - start) * 1e6,
                "args": {"state": state},
            }
        )
    return {"traceEvents": meta + runs, "displayTimeUnit": "ms"}


def _short(ident) -> str:
    if ident is None:
        return ""
    text = ident.hex() if isinstance(ident, (bytes, bytearray)) else str(ident)
    return text[:8]
