"""The tasks service's batch consumer on a real broker and a real SQLite file: a batch that
fails is applied again, with the records taken while it was applied, and none is lost."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from schemas.messages import ProcessRef, StepCommand
from schemas.topics import COMMAND_V1
from services.common.brokers import ensure_topics
from services.common.db import Transactions, make_engine
from services.common.kafka import EventProducer, topic_table
from services.common.settings import Settings
from services.tasks.consumers import BatchConsumer, Handler
from tests.conftest import async_wait_for

pytestmark = pytest.mark.integration


def command(instance: str, n: int) -> StepCommand:
    return StepCommand(
        command_id=f"{instance}/s{n}/1", instance_id=instance, tenant="default",
        process=ProcessRef(key="reman", version=1), step=f"s{n}", step_type="task", visit=1,
        visits={f"s{n}": 1}, role="inspector", reason="pass",
        entered_at=datetime.now(UTC).isoformat())


@pytest.fixture()
async def topics(settings: Settings) -> Settings:
    """The broker's topics, once (no database parametrization: the test brings its SQLite);
    conftest's `producer` uses these."""
    await ensure_topics(settings.kafka_bootstrap, topic_table(settings))
    return settings


def partition(key: str, partitions: int) -> int:
    return int(DefaultPartitioner()(key.encode(), list(range(partitions)), list(range(partitions))))


async def test_a_failed_batch_is_applied_again_and_nothing_taken_meanwhile_is_lost(
        topics: Settings, producer: EventProducer, tmp_path: Path) -> None:
    applied: list[str] = []  # command ids, in the order successful transactions applied them
    calls = 0
    release = threading.Event()

    def apply(session: Session, messages: Sequence[Any], now: datetime) -> None:
        nonlocal calls
        calls += 1
        session.execute(text("SELECT 1"))
        if calls == 1:  # the first transaction fails as a locked database would, once let
            release.wait(30)
            raise OperationalError("apply", {}, Exception("database is locked"))
        applied.extend(m.command_id for m in messages)

    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'tasks.db'}")
    transactions = Transactions(engine)
    handlers = {topics.commands_topic: Handler(frozenset({COMMAND_V1}), StepCommand, apply)}
    consumer = BatchConsumer(topics, transactions, producer, handlers,
                             f"{topics.topic_prefix}test-{uuid.uuid4().hex[:6]}")
    first = f"i-{uuid.uuid4().hex[:6]}"
    later = next(i for i in (f"i-{uuid.uuid4().hex[:6]}" for _ in range(1000))
                 if partition(i, topics.partitions) != partition(first, topics.partitions))
    await consumer.start()
    try:
        for n in range(5):
            await send(producer, topics, command(first, n))
        await async_wait_for(lambda: calls == 1, within=30, what="the first batch applying")
        for n in range(5):  # another partition's, taken while the first batch applies
            await send(producer, topics, command(later, n))
        await async_wait_for(  # the consumer's own state: what it took for the next batch
            lambda: any(tp.partition == partition(later, topics.partitions)
                        for tp in consumer._taken),
            within=30, what="the later records taken")
        release.set()
        wanted = {f"{i}/s{n}/1" for i in (first, later) for n in range(5)}
        await async_wait_for(lambda: wanted <= set(applied), within=30,
                             what="every command applied")
    finally:
        release.set()
        await consumer.stop()
        await transactions.close()
        await engine.dispose()
    assert calls > 1  # the failed batch was applied again
    for instance in (first, later):  # each instance's commands in their order, once each
        assert [c for c in applied if c.startswith(f"{instance}/")] == [
            f"{instance}/s{n}/1" for n in range(5)]


async def send(producer: EventProducer, topics: Settings, cmd: StepCommand) -> None:
    await producer.send(topics.commands_topic, cmd.instance_id, COMMAND_V1, cmd.dump())
