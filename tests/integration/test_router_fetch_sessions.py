"""services/router/fetch_sessions.py against a real broker: every record arrives, in order, through
incremental fetches, seeks and lost sessions."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.common.brokers import ensure_topics
from services.common.settings import Settings
from services.router import fetch_sessions
from tests.conftest import async_wait_for

PARTITIONS = 12


@pytest.fixture()
async def topic(settings: Settings) -> str:
    name = f"{settings.topic_prefix}sessions"
    await ensure_topics(settings.kafka_bootstrap, [(name, PARTITIONS, {})])
    return name


@pytest.fixture()
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=0)
    await p.start()
    yield p
    await p.stop()


class Reader:
    """A consumer of all the topic's partitions, with fetch sessions, keeping what it reads."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                         enable_auto_commit=False,
                                         fetch_max_wait_ms=settings.fetch_max_wait_ms)
        self.parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        self.seen: defaultdict[int, list[tuple[int, bytes]]] = defaultdict(list)
        self.sessions: dict[int, fetch_sessions.Session] = {}

    async def start(self) -> Reader:
        await self.consumer.start()
        self.sessions = fetch_sessions.attach(self.consumer._fetcher)
        self.consumer.assign(self.parts)
        await self.consumer.seek_to_beginning()
        return self

    async def read(self) -> None:
        batches = await self.consumer.getmany(timeout_ms=100)
        for tp, records in batches.items():
            self.seen[tp.partition] += [(r.offset, r.value) for r in records]

    async def until(self, count: int) -> None:
        async def enough() -> bool:
            await self.read()
            return sum(map(len, self.seen.values())) >= count
        await async_wait_for(enough, within=30, interval=0, what=f"{count} records")


@pytest.fixture()
async def reader(settings: Settings, topic: str) -> AsyncIterator[Reader]:
    r = await Reader(settings, topic).start()
    yield r
    await r.consumer.stop()


async def produce(producer: AIOKafkaProducer, topic: str, values: list[tuple[int, bytes]]) -> None:
    for partition, value in values:
        await producer.send_and_wait(topic, value, partition=partition)


def in_order(seen: dict[int, list[tuple[int, bytes]]]) -> dict[int, list[bytes]]:
    for records in seen.values():
        offsets = [o for o, _ in records]
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), offsets
    return {p: [v for _, v in records] for p, records in seen.items()}


async def test_records_trickling_into_a_few_partitions_all_arrive_in_order(
        broker: Any, topic: str, producer: AIOKafkaProducer, reader: Reader) -> None:
    sent: defaultdict[int, list[bytes]] = defaultdict(list)
    for round_ in range(40):
        batch = [((round_ * 5 + k) % PARTITIONS, f"r{round_}-{k}".encode()) for k in range(3)]
        await produce(producer, topic, batch)
        for p, v in batch:
            sent[p].append(v)
        await reader.read()
    await reader.until(120)
    assert in_order(reader.seen) == dict(sent)
    if broker.kind == "kafka":  # it keeps sessions (Tansu answers session id 0: full fetches)
        (session,) = reader.sessions.values()
        assert session.id != 0 and session.opened >= 1
        assert session.incremental > 10


async def test_a_seek_back_is_fetched_from_the_new_offset(
        topic: str, producer: AIOKafkaProducer, reader: Reader) -> None:
    await produce(producer, topic, [(3, b"a"), (3, b"b"), (3, b"c"), (5, b"x")])
    await reader.until(4)
    reader.consumer.seek(TopicPartition(topic, 3), 1)
    reader.seen.clear()
    await produce(producer, topic, [(5, b"y")])
    await reader.until(3)
    assert in_order(reader.seen) == {3: [b"b", b"c"], 5: [b"y"]}


async def test_a_partition_paused_and_resumed_loses_nothing(
        topic: str, producer: AIOKafkaProducer, reader: Reader) -> None:
    paused = TopicPartition(topic, 7)
    await produce(producer, topic, [(7, b"before"), (2, b"other")])
    await reader.until(2)
    reader.consumer.pause(paused)
    await produce(producer, topic, [(7, b"while paused"), (2, b"other 2")])
    await reader.until(3)
    assert [v for _, v in reader.seen[7]] == [b"before"]
    reader.consumer.resume(paused)
    await produce(producer, topic, [(7, b"after")])
    await reader.until(5)
    assert in_order(reader.seen) == {7: [b"before", b"while paused", b"after"],
                                     2: [b"other", b"other 2"]}


async def test_a_session_the_broker_does_not_know_is_replaced(
        broker: Any, topic: str, producer: AIOKafkaProducer, reader: Reader) -> None:
    await produce(producer, topic, [(1, b"one")])
    await reader.until(1)
    (session,) = reader.sessions.values()
    opened = session.opened
    session.id, session.epoch = 7919, 5  # as after a broker restart: unknown to the broker
    await produce(producer, topic, [(1, b"two"), (9, b"nine")])
    await reader.until(3)
    assert in_order(reader.seen) == {1: [b"one", b"two"], 9: [b"nine"]}
    if broker.kind == "kafka":
        assert session.opened > opened and session.id not in (0, 7919)


def test_attach_wraps_only_the_fetcher_it_is_given() -> None:
    class Fetcher:
        _client: Any = object()

        def _get_actions_per_node(self, assignment: Any) -> tuple[Any, ...]:
            return ([], {}, 0.1, False, [])

    fetcher, other = Fetcher(), Fetcher()
    fetch_sessions.attach(fetcher)
    assert fetcher._get_actions_per_node(None) == ([], {}, 0.1, False, [])
    assert isinstance(fetcher._client, fetch_sessions._SessionClient)
    assert not isinstance(other._client, fetch_sessions._SessionClient)


async def test_partitions_left_out_of_answers_still_count_as_polled(
        topic: str, producer: AIOKafkaProducer, reader: Reader) -> None:
    """faust's event-path check warns about a partition not polled for 300 s; in a session
    an idle partition is in no answer, so the session marks it polled itself."""
    await produce(producer, topic, [(0, b"first")])
    await reader.until(1)
    idle = reader.consumer._fetcher._subscriptions.subscription.assignment.state_value(
        TopicPartition(topic, 11))
    since = int(1000 * time.time())

    async def polled_again() -> bool:
        await produce(producer, topic, [(0, b"more")])  # fetches go on; partition 11 idle
        await reader.read()
        return bool(idle.timestamp and idle.timestamp >= since)

    await async_wait_for(polled_again, within=20, interval=0, what="partition 11 polled")
    assert reader.seen[11] == []
