"""The router's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("flowline_router_events_total", "Records consumed by the router",
                 ["topic_kind", "result"])
REJECTIONS = Counter("flowline_router_rejections_total", "Records rejected, by reason",
                     ["reason"])
DUPLICATES = Counter("flowline_router_duplicates_total", "Records whose event id was applied")
COMMANDS = Counter("flowline_router_commands_total", "Step commands emitted", ["step_type"])
LATENCY = Histogram(
    "flowline_router_routing_seconds",
    "From record received to its outputs acknowledged by the broker",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
INSTANCES = Gauge("flowline_router_instances", "Instances in this worker's table")
DEFINITIONS = Gauge("flowline_router_definitions", "Process versions known to this worker")
