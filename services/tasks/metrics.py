"""Prometheus metrics of the tasks service (registered once, at import, on the default registry)."""

from __future__ import annotations

from prometheus_client import Counter

RECORDS = Counter("flowline_tasks_records_total", "Records applied to SQL", ["topic"])
DEAD_LETTERS = Counter("flowline_tasks_dead_letters_total", "Records dead-lettered", ["reason"])
BATCH_FAILURES = Counter(
    "flowline_tasks_batch_failures_total", "Consumer batches that failed and were retried",
    ["error"],
)
TASK_ACTIONS = Counter(
    "flowline_tasks_actions_total", "Inbox actions over HTTP", ["action", "result"]
)
