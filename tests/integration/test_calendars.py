"""Business calendars over real HTTP: a tenant's SLA due times count working hours only."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from services.common.kafka import EventProducer
from tests.integration.test_tasks_service import (  # noqa: F401  (fixtures)
    command,
    send_command,
    tasks_url,
    wait_tasks,
)

pytestmark = pytest.mark.integration
WEEKDAYS = {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}


async def test_due_time_counts_working_hours_for_a_tenant_with_a_calendar(
        client: httpx.AsyncClient, producer: EventProducer) -> None:
    missing = await client.get("/v1/calendars/acme")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "no_calendar"
    put = await client.put("/v1/calendars/acme", json={"timezone": "UTC", "hours": WEEKDAYS,
                                                      "holidays": ["2026-11-23"]})
    assert put.status_code == 200, put.text
    assert (await client.get("/v1/calendars/acme")).json()["holidays"] == ["2026-11-23"]

    friday_4pm = datetime(2026, 11, 20, 16, 0, tzinfo=UTC)
    four_hours_later = datetime(2026, 11, 20, 20, 0, tzinfo=UTC)
    for tenant, iid in (("acme", "cal-1"), ("default", "cal-2")):
        await send_command(producer, command(iid, "triage", tenant=tenant,
                                             entered_at=friday_4pm.isoformat(),
                                             due_at=four_hours_later.isoformat()))
    [acme] = await wait_tasks(client, "cal-1", 1)
    [plain] = await wait_tasks(client, "cal-2", 1)
    # 1 h on Friday; Monday the 23rd is a holiday; 3 h on Tuesday from 09:00.
    assert datetime.fromisoformat(acme["due_at"]) == datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert datetime.fromisoformat(plain["due_at"]) == four_hours_later

    bad = await client.put("/v1/calendars/acme", json={"timezone": "UTC",
                                                      "hours": {"mon": ["17:00-09:00"]}})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_calendar"
    assert (await client.delete("/v1/calendars/acme")).status_code == 204
    assert (await client.delete("/v1/calendars/acme")).status_code == 404
