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
TASK_EVENTS = Counter("flowline_tasks_events_published_total", "Task events sent to Kafka")
TASK_EVENT_FAILURES = Counter(
    "flowline_tasks_events_publish_failures_total", "Task event outbox passes that failed"
)
SLA_BREACHES = Counter("flowline_tasks_sla_breaches_total", "Tasks that passed their due time")
ESCALATIONS = Counter(
    "flowline_tasks_escalations_total", "Breached tasks reassigned to their escalation role"
)

# --- Timers and automated steps ------------------------------------------------------------
MESSAGES = Counter("flowline_tasks_messages_published_total",
                   "Step completions and instance requests sent from the message outbox")
MESSAGE_FAILURES = Counter("flowline_tasks_messages_publish_failures_total",
                           "Message outbox passes that failed")
TIMERS_FIRED = Counter("flowline_tasks_timers_fired_total", "Timer steps woken")
JOBS = Counter("flowline_tasks_jobs_total", "Automated step jobs finished", ["kind", "result"])
JOB_ATTEMPTS = Counter("flowline_tasks_job_attempts_total", "Attempts started", ["kind"])
LEASES_EXPIRED = Counter("flowline_tasks_job_leases_expired_total",
                         "Running jobs whose lease ran out (a worker died or hung)")
