"""Real-broker tests for services.common.brokers: Tansu and single-node KRaft Apache Kafka.

No mocks: each test talks Kafka protocol to a broker process started on 127.0.0.1.
A missing prerequisite (java, the Tansu binary) skips locally but fails under CI=true,
so CI can never go green by silently not running the broker tests.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.common.brokers import (
    ApacheKafkaBroker,
    BrokerError,
    ContainerBroker,
    ExternalBroker,
    LocalBroker,
    TansuBroker,
    broker_from_env,
    ensure_topics,
    find_java,
    find_tansu,
    wait_until_ready,
)
from tests.conftest import committed_offsets

KINDS = [
    pytest.param("tansu", id="tansu"),
    pytest.param("kafka", id="kafka", marks=pytest.mark.kafka),
]


def _require(kind: str) -> None:
    """Skip (or, under CI, fail) when the broker's runtime is not installed."""
    try:
        find_java() if kind == "kafka" else find_tansu()
    except BrokerError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the {kind} broker cannot run: {exc}")
        pytest.skip(f"{kind} broker unavailable: {exc}")


def _new(kind: str, **kwargs: Any) -> LocalBroker:
    _require(kind)
    return TansuBroker(**kwargs) if kind == "tansu" else ApacheKafkaBroker(**kwargs)


@pytest.fixture(scope="module")
def brokers() -> Iterator[dict[str, LocalBroker]]:
    """One started broker per kind, shared by the module's tests and closed at the end."""
    started: dict[str, LocalBroker] = {}
    yield started
    for broker in started.values():
        broker.close()


@pytest.fixture(params=KINDS)
def broker(request: pytest.FixtureRequest, brokers: dict[str, LocalBroker]) -> LocalBroker:
    kind: str = request.param
    if kind not in brokers:
        brokers[kind] = _new(kind).start()
    return brokers[kind]


@pytest.fixture
def kafka(brokers: dict[str, LocalBroker]) -> LocalBroker:
    if "kafka" not in brokers:
        brokers["kafka"] = _new("kafka").start()
    return brokers["kafka"]


def _topic() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


async def _produce(bootstrap: str, topic: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic,
                key=f"k{i % 20}".encode(),
                value=f"v{i}".encode(),
                headers=[("seq", str(i).encode()), ("ce_type", b"test.v1")],
            )
            for i in range(n)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _consume(
    bootstrap: str, topic: str, n: int, *, group: str | None = None, within: float = 60
) -> list[Any]:
    """Poll until ``n`` records arrived or ``within`` s passed; commit when in a group."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        records: list[Any] = []
        deadline = asyncio.get_running_loop().time() + within
        while len(records) < n and asyncio.get_running_loop().time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
        if group:
            await consumer.commit()
        return records
    finally:
        await consumer.stop()


async def _committed(bootstrap: str, topic: str, group: str, partitions: int) -> int:
    return sum((await committed_offsets(bootstrap, group, topic, partitions)).values())


def test_roundtrip_with_consumer_group(broker: LocalBroker) -> None:
    topic, group = _topic(), f"g-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        await ensure_topics(broker.bootstrap, [(topic, 12, {})])
        await ensure_topics(broker.bootstrap, [(topic, 12, {})])  # idempotent
        await _produce(broker.bootstrap, topic, 100)
        records = await _consume(broker.bootstrap, topic, 100, group=group)

        assert sorted(int(r.value[1:]) for r in records) == list(range(100))
        assert len({r.partition for r in records}) > 1  # keys really spread over partitions
        by_key: dict[bytes, list[Any]] = {}
        for r in records:
            assert r.headers == (("seq", r.value[1:]), ("ce_type", b"test.v1"))
            by_key.setdefault(r.key, []).append(r)
        for same_key in by_key.values():
            assert len({r.partition for r in same_key}) == 1
            offsets = [r.offset for r in same_key]
            assert offsets == sorted(offsets)
        assert await _committed(broker.bootstrap, topic, group, 12) == 100

    asyncio.run(scenario())


@pytest.mark.kafka
def test_kafka_transactions_read_committed(kafka: LocalBroker) -> None:
    topic = _topic()

    async def scenario() -> None:
        await ensure_topics(kafka.bootstrap, [(topic, 3, {})])
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap, transactional_id=f"tx-{uuid.uuid4().hex[:8]}"
        )
        await producer.start()
        try:
            await producer.begin_transaction()
            for i in range(5):
                await producer.send_and_wait(topic, key=b"a", value=f"aborted{i}".encode())
            await producer.abort_transaction()
            async with producer.transaction():
                for i in range(10):
                    await producer.send(topic, key=f"k{i}".encode(), value=f"ok{i}".encode())
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka.bootstrap,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        await consumer.start()
        try:
            seen: list[bytes] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            # Read to the last stable offset of every partition, so an aborted record that
            # leaked through would be seen rather than merely not waited for.
            while loop.time() < deadline:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    seen.extend(r.value for r in batch)
                assignment = consumer.assignment()
                if not assignment:
                    continue
                ends = await consumer.end_offsets(list(assignment))
                if all([await consumer.position(tp) >= ends[tp] for tp in assignment]):
                    break
        finally:
            await consumer.stop()
        assert sorted(seen) == sorted(f"ok{i}".encode() for i in range(10))

    asyncio.run(scenario())


@pytest.mark.kafka
def test_kafka_runs_with_apache_kafkas_own_jvm_settings(kafka: LocalBroker) -> None:
    """As bin/kafka-server-start.sh runs it: a fixed 1 GB heap, G1 aiming at 20 ms pauses."""
    assert kafka.pid is not None
    argv = Path(f"/proc/{kafka.pid}/cmdline").read_bytes().decode().split("\0")
    assert {"-Xmx1G", "-Xms1G", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35"} <= set(argv)
    assert argv.index("-Xms1G") < argv.index("kafka.Kafka")  # JVM options, not the server's


@pytest.mark.kafka
def test_kafka_restart_keeps_records(tmp_path: Path) -> None:
    first = _new("kafka", data_dir=tmp_path / "kafka")
    topic, group = _topic(), "durable"
    first.start()
    try:
        asyncio.run(ensure_topics(first.bootstrap, [(topic, 4, {})]))
        asyncio.run(_produce(first.bootstrap, topic, 50))
        asyncio.run(_consume(first.bootstrap, topic, 20, group=group))
        committed = asyncio.run(_committed(first.bootstrap, topic, group, 4))
        assert committed >= 20
    finally:
        first.stop()
    with socket.socket() as s:  # the broker's port is really released
        assert s.connect_ex(("127.0.0.1", int(first.bootstrap.rsplit(":", 1)[1]))) != 0

    # A fresh object on the same data dir remembers the ports and the cluster id.
    second = ApacheKafkaBroker(data_dir=tmp_path / "kafka")
    assert second.bootstrap == first.bootstrap
    with second:
        records = asyncio.run(_consume(second.bootstrap, topic, 50))
        assert sorted(int(r.value[1:]) for r in records) == list(range(50))
        assert asyncio.run(_committed(second.bootstrap, topic, group, 4)) == committed
    assert second.pid is None


def test_broker_from_env(monkeypatch: pytest.MonkeyPatch, broker: LocalBroker) -> None:
    monkeypatch.delenv("FLOWLINE_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("FLOWLINE_BROKER", raising=False)
    assert isinstance(broker_from_env(), TansuBroker)
    assert isinstance(broker_from_env("kafka"), ApacheKafkaBroker)
    assert isinstance(broker_from_env("testcontainers"), ContainerBroker)
    with pytest.raises(BrokerError, match="unknown broker kind"):
        broker_from_env("zookeeper")

    monkeypatch.setenv("FLOWLINE_BROKER", broker.kind)
    monkeypatch.setenv("FLOWLINE_KAFKA_BOOTSTRAP", broker.bootstrap)
    external = broker_from_env()
    assert isinstance(external, ExternalBroker)
    assert external.kind == broker.kind
    with external:  # waits for the running broker, and stopping it is a no-op
        assert external.bootstrap == broker.bootstrap
    wait_until_ready(broker.bootstrap, timeout=10)
