"""Prometheus metrics of the definitions service (module level: a registry allows one each)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

APPROVALS = Counter("flowline_definitions_approvals_total", "Process versions approved")
TRANSITIONS = Counter(
    "flowline_definitions_transitions_total", "Version status changes", ["action"]
)
PUBLISHED = Counter("flowline_definitions_outbox_published_total", "Outbox events sent")
PUBLISH_FAILURES = Counter(
    "flowline_definitions_outbox_failures_total", "Failed outbox publish passes (retried)"
)
PENDING = Gauge("flowline_definitions_outbox_pending", "Outbox events not yet sent")
