"""Settings of the tasks service's automation: timers, HTTP steps, worker jobs.

Built explicitly like `services.common.settings.Settings` (never at import), from
`FLOWLINE_AUTOMATION_*` environment variables; tests pass their own (a small backoff base makes
a retry test take a second, not a minute).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AutomationSettings(BaseSettings):
    """How timers fire and automated steps are run and retried."""

    model_config = SettingsConfigDict(env_prefix="FLOWLINE_AUTOMATION_", extra="ignore")

    # How often the scheduler looks for due timers and expired leases (seconds). Timers fire
    # within this much of their time (plus the outbox's publish, which is kicked at once).
    scheduler_interval: float = Field(default=0.25, gt=0, le=1.0)
    # Retry n (after n failed attempts) waits backoff_base * 2**n seconds, at most backoff_cap:
    # 2, 4, 8, ... 60 s by default (seed 003).
    backoff_base: float = Field(default=1.0, ge=0)
    backoff_cap: float = Field(default=60.0, ge=0)
    # HTTP and webhook steps: defaults an action may override (`timeout_s`, `max_attempts`).
    http_timeout: float = Field(default=10.0, gt=0)
    http_max_attempts: int = Field(default=5, ge=1)
    http_concurrency: int = Field(default=8, ge=1)
    # Handler jobs run by `flowline worker`: attempts (an expired lease counts as one) and the
    # longest lease a worker may ask for.
    job_max_attempts: int = Field(default=3, ge=1)
    default_lease: float = Field(default=30.0, gt=0)
    max_lease: float = Field(default=600.0, gt=0)
