"""Business calendars: an SLA counts working time only (seed 001), per tenant, as an option.

A calendar has a time zone, working hours per weekday (several spans a day are fine, e.g. a
lunch break) and holidays. `add(start, duration)` walks forward through the working spans
until `duration` of working time has passed: 4 h of SLA given on Friday at 16:00 with 9–17
hours is due Monday at 11:00. Without a calendar, time is wall-clock time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_DAYS = 3660  # a calendar with no working time at all must not loop forever


class CalendarError(ValueError):
    pass


@dataclass(frozen=True)
class BusinessCalendar:
    zone: str = "UTC"
    hours: dict[str, tuple[tuple[time, time], ...]] = field(default_factory=dict)
    holidays: frozenset[date] = frozenset()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BusinessCalendar:
        """`{"timezone": "Europe/Berlin", "hours": {"mon": ["08:00-12:00", "13:00-17:00"],
        ...}, "holidays": ["2026-12-25"]}`; weekdays left out are not worked."""
        zone = str(data.get("timezone", "UTC"))
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise CalendarError(f"unknown time zone {zone!r}") from exc
        hours: dict[str, tuple[tuple[time, time], ...]] = {}
        raw_hours = data.get("hours") or {}
        if not isinstance(raw_hours, dict):
            raise CalendarError("hours must map weekdays to lists of 'HH:MM-HH:MM'")
        for day, spans in raw_hours.items():
            if day not in DAYS:
                raise CalendarError(f"unknown weekday {day!r}; use {', '.join(DAYS)}")
            parsed = sorted(_span(s) for s in (spans or []))
            for (_, end), (start, _) in zip(parsed, parsed[1:], strict=False):
                if start < end:
                    raise CalendarError(f"{day}: working spans overlap")
            hours[day] = tuple(parsed)
        try:
            holidays = frozenset(date.fromisoformat(str(d)) for d in data.get("holidays") or [])
        except ValueError as exc:
            raise CalendarError(f"holidays must be YYYY-MM-DD dates: {exc}") from exc
        if not any(hours.values()):
            raise CalendarError("a calendar needs some working hours")
        return cls(zone, hours, holidays)

    def to_json(self) -> dict[str, Any]:
        return {"timezone": self.zone,
                "hours": {d: [f"{a:%H:%M}-{b:%H:%M}" for a, b in spans]
                          for d, spans in self.hours.items()},
                "holidays": sorted(d.isoformat() for d in self.holidays)}

    def _spans(self, day: date) -> tuple[tuple[time, time], ...]:
        if day in self.holidays:
            return ()
        return self.hours.get(DAYS[day.weekday()], ())

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The moment `duration` of working time after `start` (aware datetimes)."""
        zone = ZoneInfo(self.zone)
        local = start.astimezone(zone)
        left = duration
        day = local.date()
        for _ in range(MAX_DAYS):
            for begin, end in self._spans(day):
                span_start = datetime.combine(day, begin, zone)
                span_end = datetime.combine(day, end, zone) if end != time(0) \
                    else datetime.combine(day + timedelta(days=1), time(0), zone)
                if span_end <= local:
                    continue
                frm = max(span_start, local)
                available = span_end - frm
                if left <= available:
                    return (frm + left).astimezone(UTC)
                left -= available
            day += timedelta(days=1)
        raise CalendarError("no working time within ten years")


def _span(text: Any) -> tuple[time, time]:
    try:
        a, b = str(text).split("-")
        start = time.fromisoformat(a.strip())
        end = time.fromisoformat(b.strip()) if b.strip() != "24:00" else time(0)
    except ValueError as exc:
        raise CalendarError(f"working span {text!r} is not 'HH:MM-HH:MM'") from exc
    if end != time(0) and end <= start:
        raise CalendarError(f"working span {text!r} ends before it starts")
    return start, end
