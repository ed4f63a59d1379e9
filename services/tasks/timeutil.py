"""ISO 8601 timestamps in and out of the tasks service, always UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_time(value: str | None) -> datetime | None:
    """Parse an ISO 8601 timestamp (a trailing `Z` is fine); naive values are taken as UTC.

    Raises ValueError on a malformed value, which the consumer treats as a malformed record.
    """
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    """The wire form of a timestamp: ISO 8601 in UTC, or None."""
    return None if value is None else value.astimezone(UTC).isoformat()
