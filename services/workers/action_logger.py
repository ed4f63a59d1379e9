"""Seed 004's ActionLogger for one job: step logs with entity links, progress, stats, failure.

Handlers run in a thread and call it synchronously; it only buffers (thread-safe), and the
worker ships what it holds to the tasks service with every heartbeat and before it finishes
the job. Without a worker around (a unit test) it simply keeps everything.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from services.workers.registry import Failed

LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")


class ActionLogger:
    """Collects what a running handler reports."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []  # everything logged, for tests and summaries
        self.progress: float | None = None
        self.progress_message: str | None = None
        self._progress_sent: float | None = None
        self.stats: dict[str, Any] = {}

    def log_step(self, message: str, level: str = "INFO", *, entity_tag: str | None = None,
                 entity_route: str | None = None, entity_id: str | None = None,
                 entity_type: str | None = None) -> None:
        """One clear, actionable step ("Created P-101"), linked to its entity when it has one."""
        level = level.upper()
        if level not in LEVELS:
            raise ValueError(f"level {level!r} is not one of {', '.join(LEVELS)}")
        entry = {"message": message, "level": level, "entity_tag": entity_tag,
                 "entity_route": entity_route, "entity_id": entity_id,
                 "entity_type": entity_type}
        with self._lock:
            self._pending.append(entry)
            self.steps.append(entry)

    def update_progress(self, progress: float, message: str | None = None) -> None:
        """How far the handler is, 0..1 (log every batch, not every item)."""
        with self._lock:
            self.progress = min(1.0, max(0.0, float(progress)))
            self.progress_message = message

    def complete(self, stats: Mapping[str, Any] | None = None) -> None:
        """Summary stats for the job (the duration is added by the tasks service)."""
        with self._lock:
            self.stats.update(stats or {})

    def fail(self, error: str, stack: str | None = None) -> None:
        """Fail fast: stop the handler here; the job fails with `error`, for good."""
        self.log_step(error, "ERROR")
        raise Failed(error, stack)

    def drain(self) -> tuple[list[dict[str, Any]], tuple[float, str | None] | None]:
        """The logs not shipped yet, and the progress if it changed since the last drain."""
        with self._lock:
            entries, self._pending = self._pending, []
            progress = None
            if self.progress is not None and self.progress != self._progress_sent:
                progress = (self.progress, self.progress_message)
                self._progress_sent = self.progress
            return entries, progress
