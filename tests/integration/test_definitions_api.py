"""The definitions service over real HTTP (uvicorn on a free port), a real broker, and SQLite
and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import text

from schemas.graph import ProcessVersion
from schemas.topics import DEFINITION_V1
from services.common.db import make_engine
from services.common.envelopes import Decoded, decode
from services.common.kafka import create_topics
from services.common.settings import Settings
from services.definitions.api import create_app
from services.definitions.templates import load_template
from tests.conftest import free_port, serve_app, wait_for

pytestmark = pytest.mark.integration
REMAN = load_template("remanufacturing")


@contextlib.contextmanager
def serve(settings: Settings, **app_options: Any) -> Iterator[httpx.Client]:
    """Run the app with uvicorn in a thread; yield a client for it; shut it down cleanly."""
    with serve_app(create_app(settings, **app_options)) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        yield client


@pytest.fixture()
def live(settings: Settings, database_url: str | None) -> Settings:
    settings = settings.model_copy(update={"database_url": database_url})
    asyncio.run(create_topics(settings))
    return settings


def consume_until(settings: Settings, key: str, count: int = 1,
                  timeout: float = 30) -> list[tuple[list[tuple[str, bytes]], Decoded]]:
    """Read the definitions topic from the start until ``count`` records keyed ``key`` arrive."""

    async def main() -> list[tuple[list[tuple[str, bytes]], Decoded]]:
        consumer = AIOKafkaConsumer(settings.definitions_topic,
                                    bootstrap_servers=settings.kafka_bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    fetch_max_wait_ms=100)
        await consumer.start()
        found: list[tuple[list[tuple[str, bytes]], Decoded]] = []
        try:
            deadline = time.monotonic() + timeout
            while len(found) < count and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for r in records:
                        if r.key == key.encode():
                            headers = list(r.headers)
                            found.append((headers, decode(headers, r.key, r.value)))
        finally:
            await consumer.stop()
        assert len(found) >= count, f"saw {len(found)} of {count} records keyed {key!r}"
        return found

    return asyncio.run(main())


def outbox_rows(settings: Settings) -> list[tuple[str, Any, int]]:
    async def main() -> list[tuple[str, Any, int]]:
        engine = make_engine(settings.db_url("definitions"))
        try:
            async with engine.connect() as db:
                query = text("SELECT key, sent_at, attempts FROM outbox ORDER BY id")
                rows = await db.execute(query)
                return [(r[0], r[1], r[2]) for r in rows]
        finally:
            await engine.dispose()

    return asyncio.run(main())


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body["error"]) >= {"code", "message"}, body
    return str(body["error"]["code"])


def test_create_validate_approve_get_version(api: httpx.Client, live: Settings) -> None:
    created = api.post("/v1/processes", json=REMAN)
    assert created.status_code == 201, created.text
    assert created.json()["key"] == "remanufacturing" and created.json()["status"] == "draft"

    checked = api.post("/v1/processes/remanufacturing/validate").json()
    assert checked == {"valid": True, "findings": []}

    approved = api.post("/v1/processes/remanufacturing/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["version"] == 1 and approved.json()["published"] is True

    version = api.get("/v1/processes/remanufacturing/versions/1")
    assert version.status_code == 200
    pv = ProcessVersion.model_validate(version.json())
    assert (pv.key, pv.version, pv.status, pv.tenant) == ("remanufacturing", 1, "approved",
                                                          "default")
    assert pv.approved_at and len(pv.steps) == len(REMAN["steps"])

    detail = api.get("/v1/processes/remanufacturing").json()
    assert detail["draft"] is None and [v["version"] for v in detail["versions"]] == [1]
    listing = api.get("/v1/processes").json()
    assert listing == [{"key": "remanufacturing", "name": REMAN["name"], "tenant": "default",
                        "draft": False, "latest_version": 1, "status": "approved"}]
    assert api.get("/v1/processes/remanufacturing/versions/2").status_code == 404

    # A new draft of the same key becomes version 2; version 1 stays as it was.
    assert api.post("/v1/processes", json=REMAN).status_code == 201
    assert api.post("/v1/processes", json=REMAN).status_code == 409
    assert api.post("/v1/processes/remanufacturing/approve").json()["version"] == 2
    assert api.get("/v1/processes/remanufacturing/versions/1").json() == version.json()


def test_approved_version_is_on_the_topic_as_binary_cloudevent(api: httpx.Client,
                                                               live: Settings) -> None:
    api.post("/v1/processes", json=REMAN)
    assert api.post("/v1/processes/remanufacturing/approve").json()["published"] is True
    ((headers, event),) = consume_until(live, "default/remanufacturing/1")
    names = {name for name, _ in headers}
    assert {"ce_id", "ce_type", "ce_source", "ce_specversion"} <= names  # binary mode
    assert event.type == DEFINITION_V1 and event.id == "default/remanufacturing/1"
    value = ProcessVersion.model_validate(event.data)
    assert value.topic_key == "default/remanufacturing/1"
    assert value.model_dump() == ProcessVersion.model_validate(
        api.get("/v1/processes/remanufacturing/versions/1").json()).model_dump()


def test_invalid_graph_is_refused_with_findings(api: httpx.Client) -> None:
    broken = {**REMAN, "edges": [e for e in REMAN["edges"]
                                 if not (e["from"] == "rework" and e.get("type") == "escalation")]}
    assert api.post("/v1/processes", json=broken).status_code == 201
    checked = api.post("/v1/processes/remanufacturing/validate").json()
    assert checked["valid"] is False
    refused = api.post("/v1/processes/remanufacturing/approve")
    assert refused.status_code == 422 and error_code(refused) == "invalid_graph"
    codes = {f["code"] for f in refused.json()["error"]["details"]["findings"]}
    assert "cycle.unbounded" in codes
    assert api.get("/v1/processes/remanufacturing").json()["versions"] == []


def test_put_rules(api: httpx.Client) -> None:
    assert error_code(api.put("/v1/processes/remanufacturing", json=REMAN)) == "not_found"
    api.post("/v1/processes", json=REMAN)
    renamed = {**REMAN, "name": "Reman v2"}
    updated = api.put("/v1/processes/remanufacturing", json=renamed)
    assert updated.status_code == 200 and updated.json()["graph"]["name"] == "Reman v2"
    mismatch = api.put("/v1/processes/remanufacturing", json={**REMAN, "key": "other"})
    assert mismatch.status_code == 422 and error_code(mismatch) == "key_mismatch"
    api.post("/v1/processes/remanufacturing/approve")
    no_draft = api.put("/v1/processes/remanufacturing", json=REMAN)
    assert no_draft.status_code == 409 and error_code(no_draft) == "no_draft"


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/v1/processes", b"{not json"),
    ("POST", "/v1/processes", b'{"key": "x", "steps": "nope"}'),
    ("POST", "/v1/processes", b'{"key": "bad key!"}'),
    ("POST", "/v1/processes", b"[]"),
    ("POST", "/v1/processes/remanufacturing/duplicate", b'{"new_key": ""}'),
    ("GET", "/v1/processes/remanufacturing/versions/abc", None),
    ("GET", "/v1/processes/remanufacturing/versions/99999999999999999999", None),
    ("POST", "/v1/processes/remanufacturing/pause?version=0", None),
    ("GET", "/v1/processes/nope", None),
    ("POST", "/v1/processes/nope/approve", None),
    ("DELETE", "/v1/processes", None),
])
def test_bad_input_is_a_json_4xx(api: httpx.Client, method: str, path: str,
                                 body: bytes | None) -> None:
    response = api.request(method, path, content=body,
                           headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    error_code(response)


def test_lifecycle_transitions(api: httpx.Client, live: Settings) -> None:
    api.post("/v1/processes", json=REMAN)
    api.post("/v1/processes/remanufacturing/approve")
    base = "/v1/processes/remanufacturing"

    def act(action: str, query: str = "") -> httpx.Response:
        return api.post(f"{base}/{action}{query}")

    assert act("resume").status_code == 409  # approved is not paused
    assert act("pause").json() == {"key": "remanufacturing", "version": 1, "status": "paused",
                                   "published": True}
    assert act("pause").status_code == 409
    assert act("resume").json()["status"] == "approved"
    assert act("deprecate", "?version=1").json()["status"] == "deprecated"
    for action in ("pause", "resume", "deprecate"):
        refused = act(action)
        assert refused.status_code == 409 and error_code(refused) == "invalid_transition"
    assert act("pause", "?version=7").status_code == 404
    assert api.get(f"{base}/versions/1").json()["status"] == "deprecated"
    # Compacted topic semantics: every change is the whole version under the same key.
    records = consume_until(live, "default/remanufacturing/1", count=4)
    assert [d.data["status"] for _, d in records] == ["approved", "paused", "approved",
                                                      "deprecated"]
    assert len({d.id for _, d in records}) == 4  # distinct events, so consumers keep each


def test_duplicate_keeps_lineage(api: httpx.Client) -> None:
    api.post("/v1/processes", json=REMAN)
    api.post("/v1/processes/remanufacturing/approve")
    copy = api.post("/v1/processes/remanufacturing/duplicate", json={"new_key": "reman-b"})
    assert copy.status_code == 201, copy.text
    assert copy.json()["copied_from"] == "remanufacturing/1"
    assert copy.json()["graph"]["key"] == "reman-b" and "version" not in copy.json()["graph"]
    again = api.post("/v1/processes/remanufacturing/duplicate", json={"new_key": "reman-b"})
    assert again.status_code == 409
    assert api.post("/v1/processes/reman-b/approve").json()["version"] == 1
    assert api.get("/v1/processes/reman-b/versions/1").json()["copied_from"] == \
        "remanufacturing/1"


def test_tenants_are_separate(api: httpx.Client, live: Settings) -> None:
    acme = {"X-Flowline-Tenant": "acme"}
    assert api.post("/v1/processes", json=REMAN, headers=acme).status_code == 201
    assert api.get("/v1/processes").json() == []
    assert api.post("/v1/processes/remanufacturing/approve", headers=acme).json()["version"] == 1
    assert api.get("/v1/processes/remanufacturing/versions/1").status_code == 404
    assert api.get("/v1/processes/remanufacturing/versions/1",
                   headers=acme).json()["tenant"] == "acme"
    mismatch = api.post("/v1/processes", json={**REMAN, "tenant": "other"}, headers=acme)
    assert mismatch.status_code == 422
    consume_until(live, "acme/remanufacturing/1")


def test_metrics_and_health(api: httpx.Client) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    api.post("/v1/processes", json=REMAN)
    api.post("/v1/processes/remanufacturing/approve")
    text = api.get("/metrics").text
    assert "flowline_definitions_approvals_total" in text
    assert "flowline_definitions_outbox_published_total" in text


def test_broker_down_keeps_the_event_until_a_publisher_can_send_it(live: Settings) -> None:
    dead = live.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
    with serve(dead) as down:
        assert down.post("/v1/processes", json=REMAN).status_code == 201
        started = time.monotonic()
        approved = down.post("/v1/processes/remanufacturing/approve")
        assert approved.status_code == 200, approved.text
        assert approved.json() == {"key": "remanufacturing", "version": 1, "published": False}
        assert time.monotonic() - started < 10
        assert down.get("/v1/processes/remanufacturing/versions/1").status_code == 200
    ((key, sent_at, attempts),) = outbox_rows(dead)
    assert key == "default/remanufacturing/1" and sent_at is None and attempts >= 1

    # Same database, real broker: the publisher finds the pending row on start-up.
    with serve(live):
        wait_for(lambda: outbox_rows(live)[0][1] is not None, 30, what="outbox row sent")
    ((_, event),) = consume_until(live, "default/remanufacturing/1")
    assert event.data["version"] == 1 and event.data["status"] == "approved"
