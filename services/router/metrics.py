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
TABLE_INSTANCES = Gauge(
    "flowline_router_table_instances",
    "Instances in this worker's table, per changelog partition (exact; sums to "
    "flowline_router_instances)",
    ["partition"],
)
CONSUMER_LAG = Gauge(
    "flowline_router_consumer_lag",
    "Records of an input partition this worker is assigned that are not yet committed: the "
    "end offset (read from the log) minus the router's committed offset, or minus the start "
    "of the log before its first commit; not its read position, which runs ahead of routing",
    ["topic", "partition"],
)
DEFINITIONS = Gauge("flowline_router_definitions", "Process versions known to this worker")
BATCH_SIZE = Histogram(
    "flowline_router_batch_size",
    "Records routed together: decided in order, outputs acknowledged at once, then stored",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
DELIVERY_RETRIES = Counter(
    "flowline_router_delivery_retries_total",
    "Batches sent again because the broker did not acknowledge every output",
)
UNSENDABLE = Counter(
    "flowline_router_unsendable_total",
    "Outputs dropped because the broker refuses them as too large (each one is logged)",
    ["topic"],
)
