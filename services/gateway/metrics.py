"""Prometheus metrics of the gateway (registered once, at import, on the default registry)."""

from __future__ import annotations

from prometheus_client import Counter

PRODUCED = Counter("flowline_gateway_produced_total", "Events produced to Kafka", ["type"])
PROXIED = Counter(
    "flowline_gateway_proxied_total", "Requests passed to a peer service", ["peer", "status"]
)
