"""Where the tasks service gets the time: the real clock, or one a test sets and moves."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that stands still until told otherwise (thread-safe: tests move it while the
    service runs in another thread)."""

    def __init__(self, at: datetime) -> None:
        self._lock = threading.Lock()
        self._at = self._aware(at)

    @staticmethod
    def _aware(at: datetime) -> datetime:
        return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)

    def now(self) -> datetime:
        with self._lock:
            return self._at

    def set(self, at: datetime) -> None:
        with self._lock:
            self._at = self._aware(at)

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._at += delta
            return self._at
