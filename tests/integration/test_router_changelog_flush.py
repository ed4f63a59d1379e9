"""The router's own table writes and faust's flushes (`transport._Producer`), on a real broker.

faust flushes the producer before it commits input offsets, at a rebalance and at a stop, and
a flush must not return before every table write handed to the producer until then is
acknowledged: a commit would otherwise cover a batch whose states the changelog lacks.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.common.settings import Settings
from services.router import sending, transport
from services.router.app import Out
from tests.conftest import async_wait_for

LIMIT = 2500  # bytes a record batch of the topic may hold
WRITES = 10  # ~0.5 kB each: too many for one batch, so the broker refuses it


class Offsets:
    """What `_Producer` tells the table's store: each partition's last acknowledged write."""

    def __init__(self) -> None:
        self.offsets: dict[int, int] = {}

    def persisted_offset(self, tp: Any) -> int | None:
        return self.offsets.get(tp.partition)

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        self.offsets[tp.partition] = offset


async def test_a_flush_that_begins_while_another_settles_waits_for_the_writes_it_took(
        broker: Any, settings: Settings) -> None:
    # A commit's flush and a rebalance's can overlap. The first takes the writes tracked so
    # far and, the broker having refused their batch for its size, sends them again one a
    # batch after a pause; the second, which finds nothing left to take, must still wait
    # until those writes are taken before it returns.
    if broker.kind != "kafka":
        pytest.skip("Tansu 0.6 does not enforce a topic's max.message.bytes: it refuses no batch")
    topic = f"{settings.topic_prefix}instances-changelog"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1,
                                            topic_configs={"max.message.bytes": str(LIMIT)})])
    finally:
        await admin.close()
    transport.register()
    app = faust.App(f"{settings.topic_prefix}flush", broker=f"flowline://{settings.kafka_bootstrap}",
                    web_enabled=False)
    producer: Any = app.producer
    await producer.start()
    first: asyncio.Future[None] | None = None
    try:
        writes = [Out(topic, f"state-{n}".encode(), b"x" * 500, [], partition=0)
                  for n in range(WRITES)]
        store = Offsets()
        sent, unsent, _ = await sending.send(producer._ensure_producer(), writes)
        assert len(sent) == 1 and not unsent  # one record batch, over the topic's limit
        producer.track_changelog(sent, store, unsent)
        first = asyncio.ensure_future(producer.flush())
        await async_wait_for(lambda: not producer._unsettled, 10,
                             what="the first flush taking the writes")
        assert not first.done()
        await producer.flush()
        assert store.offsets == {0: WRITES - 1}  # every write acknowledged
        await first
    finally:
        if first is not None and not first.done():
            first.cancel()
        await producer.stop()
