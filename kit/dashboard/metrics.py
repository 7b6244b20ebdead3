"""``/metrics``: the cluster in Prometheus' text format, written by ``prometheus_client``.

    Collector.view() ──▶ ClusterMetrics.collect() ──▶ generate_latest() ──▶ /metrics

A custom collector on a registry of its own (not the process-wide default one), so
each scrape reads the figures the dashboard last polled and nothing else.
Counters are the cluster's totals since the dashboard started reading it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ClusterMetrics:
    """A ``prometheus_client`` collector reading a ``view()`` dict (see ``collector.py``).

    Example:
        >>> view = {"overview": {"nodes": [], "totals": {}, "waiting": 0, "tasks": {}},
        ...         "functions": [], "workers": [], "actors": [], "drivers": []}
        >>> b"kit_nodes" in render(lambda: view)
        True
    """

    def __init__(self, read_view):
        self.read_view = read_view

    def collect(self):
        v = self.read_view()
        ov = v["overview"]
        alive = GaugeMetricFamily("kit_nodes", "Nodes of the cluster", labels=["state"])
        nodes = ov["nodes"]
        alive.add_metric(["alive"], sum(1 for n in nodes if n["alive"]))
        alive.add_metric(["dead"], sum(1 for n in nodes if not n["alive"]))
        yield alive
        per_node = {
            "cpu_slots": ("kit_node_cpu_slots", "CPU slots of a node", "cpu_total"),
            "cpu_busy": ("kit_node_cpu_slots_busy", "CPU slots in use on a node", "cpu_busy"),
            "store": ("kit_node_object_store_bytes", "Object store bytes in use", "store_used"),
            "limit": ("kit_node_object_store_limit_bytes", "Object store limit", "store_limit"),
            "workers": ("kit_node_workers", "Worker processes of a node", "workers"),
        }
        for name, help_text, key in per_node.values():
            g = GaugeMetricFamily(name, help_text, labels=["node"])
            for n in nodes:
                g.add_metric([n["tag"]], float(n[key] or 0))
            yield g
        tasks = GaugeMetricFamily(
            "kit_node_tasks", "Tasks on a node now (queued, running)", labels=["node", "state"]
        )
        ended = CounterMetricFamily(
            "kit_node_tasks_ended", "Tasks a node ended", labels=["node", "state"]
        )
        for n in nodes:
            tasks.add_metric([n["tag"], "queued"], n["queued"])
            tasks.add_metric([n["tag"], "running"], n["running"])
            ended.add_metric([n["tag"], "finished"], n["done"])
            ended.add_metric([n["tag"], "failed"], n["failed"])
        yield tasks
        yield ended
        cpu = GaugeMetricFamily(
            "kit_node_process_cpu_percent", "CPU use of a node's kit processes", labels=["node"]
        )
        rss = GaugeMetricFamily(
            "kit_node_process_rss_bytes", "Memory (RSS) of a node's kit processes", labels=["node"]
        )
        for n in nodes:
            if n.get("procs"):
                cpu.add_metric([n["tag"]], n["procs"]["cpu_percent"])
                rss.add_metric([n["tag"]], n["procs"]["rss"])
        yield cpu
        yield rss
        waiting = GaugeMetricFamily("kit_tasks_waiting", "Tasks waiting for a node")
        waiting.add_metric([], ov["waiting"])
        yield waiting
        by_fn = CounterMetricFamily(
            "kit_function_tasks", "Tasks by function and state", labels=["function", "state"]
        )
        for label, submitted, _running, done, failed, cancelled in v["functions"]:
            by_fn.add_metric([label, "submitted"], submitted)
            by_fn.add_metric([label, "finished"], done)
            by_fn.add_metric([label, "failed"], failed)
            by_fn.add_metric([label, "cancelled"], cancelled)
        yield by_fn
        actors = GaugeMetricFamily("kit_actors", "Actors by state", labels=["state"])
        states: dict = {}
        for a in v["actors"]:
            states[a["state"]] = states.get(a["state"], 0) + 1
        for state, count in sorted(states.items()):
            actors.add_metric([state], count)
        yield actors
        drivers = GaugeMetricFamily("kit_drivers", "Drivers connected")
        drivers.add_metric([], len(v["drivers"]))
        yield drivers


def render(read_view) -> bytes:
    """The metrics text for one scrape.

    Example:
        >>> render(lambda: {"overview": {"nodes": [], "waiting": 0}, "functions": [],
        ...                 "actors": [], "drivers": []})[:6]
        b'# HELP'
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterMetrics(read_view))
    return generate_latest(registry)
