"""Business calendars (`services/tasks/calendar.py`): SLA time counts working hours only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.tasks.calendar import DAYS, BusinessCalendar, CalendarError

OFFICE = BusinessCalendar.from_json({
    "timezone": "Europe/Berlin",
    "hours": {d: ["09:00-12:00", "13:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
    "holidays": ["2026-12-25"],
})


OFFICE_ZONE = ZoneInfo("Europe/Berlin")


def berlin(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=OFFICE_ZONE)


def test_friday_afternoon_runs_into_monday() -> None:
    due = OFFICE.add(berlin("2026-11-20T16:00"), timedelta(hours=4))  # a Friday
    assert due == berlin("2026-11-23T12:00").astimezone(UTC)  # 1 h Fri + 3 h Mon morning


def test_lunch_break_and_before_opening() -> None:
    assert OFFICE.add(berlin("2026-11-23T11:00"), timedelta(hours=2)) == \
        berlin("2026-11-23T14:00").astimezone(UTC)
    assert OFFICE.add(berlin("2026-11-23T06:00"), timedelta(minutes=30)) == \
        berlin("2026-11-23T09:30").astimezone(UTC)


def test_holidays_and_weekends_are_skipped() -> None:
    # Thu 24 Dec 16:30 + 1 h: 30 min that day, Fri 25th is a holiday, weekend, Mon 28th.
    assert OFFICE.add(berlin("2026-12-24T16:30"), timedelta(hours=1)) == \
        berlin("2026-12-28T09:30").astimezone(UTC)


def test_round_trip_and_bad_calendars() -> None:
    assert BusinessCalendar.from_json(OFFICE.to_json()) == OFFICE
    for bad, message in [({"timezone": "Mars/Base"}, "unknown time zone"),
                         ({"hours": {"mon": ["17:00-09:00"]}}, "ends before"),
                         ({"hours": {"funday": ["09:00-17:00"]}}, "unknown weekday"),
                         ({"hours": {"mon": ["09:00-12:00", "11:00-13:00"]}}, "overlap"),
                         ({"hours": {}}, "needs some working hours"),
                         ({"hours": {"mon": ["9-5"]}}, "is not 'HH:MM-HH:MM'")]:
        with pytest.raises(CalendarError, match=message):
            BusinessCalendar.from_json(bad)


@given(st.integers(0, 60 * 24 * 14), st.integers(1, 60 * 40))
def test_working_time_between_start_and_due_is_the_duration(start_min: int,
                                                            sla_min: int) -> None:
    start = berlin("2026-11-16T00:00") + timedelta(minutes=start_min)
    due = OFFICE.add(start, timedelta(minutes=sla_min))
    # Count working minutes minute by minute: exactly the SLA.
    worked, t = 0, start.astimezone(UTC)
    while t < due:
        local = t.astimezone(OFFICE_ZONE)
        spans = OFFICE.hours.get(DAYS[local.weekday()], ())
        if local.date() not in OFFICE.holidays and any(a <= local.time() < b for a, b in spans):
            worked += 1
        t += timedelta(minutes=1)
    assert worked == sla_min
