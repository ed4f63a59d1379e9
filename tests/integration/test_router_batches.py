"""The router routes in batches: records for one instance decided in order within a batch, and
an output the broker cannot take does not stop the batch (a real broker, a real router process).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from bench import workload
from bench.kafka_io import TopicReader, produce_all
from bench.stack import prepare
from services.common.settings import Settings
from services.devstack import Stack
from tests.conftest import async_wait_for, committed_offsets, free_port


@pytest.fixture()
def router(settings: Settings) -> Settings:
    """Topics and the remanufacturing version (as an approval would); the test starts the
    router itself, when its records are where it wants them."""
    live = settings.model_copy(update={"router_web_port": free_port(), "log_level": "WARNING"})
    asyncio.run(prepare(live))
    return live


def start(settings: Settings) -> Stack:
    return Stack(settings).start(("router",), timeout=90)


async def limit_batches(settings: Settings, topic: str, max_bytes: int) -> None:
    """Make Apache Kafka refuse a record batch for `topic` over `max_bytes`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(
            ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": str(max_bytes)})])
    finally:
        await admin.close()


async def test_a_backlog_for_one_instance_is_decided_in_order(router: Settings) -> None:
    # The instance is started, the router stopped, and every completion of its path queued
    # before it starts again: they arrive in one batch, and each must see the state the one
    # before it left, or it would be rejected as stale.
    iid = "batch-1"
    commands = await TopicReader(router.kafka_bootstrap, router.commands_topic).start()
    letters = await TopicReader(router.kafka_bootstrap, router.dead_letters_topic).start()
    stack = await asyncio.to_thread(start, router)
    try:
        await produce_all(router.kafka_bootstrap, router.requests_topic,
                          [workload.start_record(iid)])
        await async_wait_for(lambda: len(commands.distinct) >= 1, 60, what="the first command")
        await asyncio.to_thread(stack.stop)
        await produce_all(router.kafka_bootstrap, router.completions_topic,
                          [workload.completion_record(iid, step, outcome)
                           for step, outcome in workload.PATH])
        stack = await asyncio.to_thread(start, router)
        await async_wait_for(lambda: len(commands.distinct) >= len(workload.PATH) + 1, 60,
                             what="a command per completion")
        steps = [json.loads(s.value)["step"] for s in commands.seen]
        assert steps == [step for step, _ in workload.PATH] + ["ship"]
        ids = [json.loads(s.value)["command_id"] for s in commands.seen]
        assert ids == [f"{iid}/{step}/1" for step in steps]
        assert letters.count == 0
    finally:
        await asyncio.to_thread(stack.stop)
        await commands.stop()
        await letters.stop()


async def test_a_backlog_across_batches_reads_the_states_the_batch_before_stored(
        router: Settings) -> None:
    # Each instance's next completion is queued behind every instance's previous one, so
    # under the backlog most batches hold records whose instance's state the batch before
    # wrote: a stale read would reject them (a dead letter) or send a command twice.
    n = 300
    iids = [f"overlap-{i}" for i in range(n)]
    commands = await TopicReader(router.kafka_bootstrap, router.commands_topic).start()
    letters = await TopicReader(router.kafka_bootstrap, router.dead_letters_topic).start()
    stack = await asyncio.to_thread(start, router)
    try:
        await produce_all(router.kafka_bootstrap, router.requests_topic,
                          [workload.start_record(iid) for iid in iids])
        await async_wait_for(lambda: len(commands.distinct) >= n, 60, what="the first commands")
        await asyncio.to_thread(stack.stop)
        await produce_all(router.kafka_bootstrap, router.completions_topic,
                          [workload.completion_record(iid, step, outcome)
                           for step, outcome in workload.PATH for iid in iids])
        stack = await asyncio.to_thread(start, router)
        total = n * (len(workload.PATH) + 1)
        await async_wait_for(lambda: len(commands.distinct) >= total, 120,
                             what="a command per completion")
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(
                f"http://127.0.0.1:{router.router_web_port}/metrics")).text
        assert _sample(metrics, "flowline_router_batch_size_count") >= 4  # several batches
        assert letters.count == 0
        assert len(commands.seen) == total  # none sent twice
        steps: dict[str, list[str]] = {}
        for record in commands.seen:
            command = json.loads(record.value)
            steps.setdefault(command["instance_id"], []).append(command["step"])
        assert steps == {iid: [*(step for step, _ in workload.PATH), "ship"] for iid in iids}
    finally:
        await asyncio.to_thread(stack.stop)
        await commands.stop()
        await letters.stop()


async def test_an_output_too_large_for_the_broker_is_dropped_and_routing_goes_on(
        router: Settings) -> None:
    # A malformed completion of ~700 kB, all quotes: its dead letter escapes each one, so it
    # is over the 1 MB a record may have. It must not stall the instance behind it.
    stack = await asyncio.to_thread(start, router)
    commands = await TopicReader(router.kafka_bootstrap, router.commands_topic).start()
    letters = await TopicReader(router.kafka_bootstrap, router.dead_letters_topic).start()
    producer = AIOKafkaProducer(bootstrap_servers=router.kafka_bootstrap,
                                max_request_size=2 * 1024 * 1024)
    await producer.start()
    try:
        await producer.send_and_wait(router.completions_topic, b'"' * 700_000, key=b"big-1",
                                     partition=0)
        small = workload.completion_record("big-1", "receive", None)  # unknown instance
        await producer.send_and_wait(router.completions_topic, small.value, key=small.key,
                                     headers=small.headers, partition=0)
        after = workload.start_record("after-big")
        await producer.send_and_wait(router.requests_topic, after.value, key=after.key,
                                     headers=after.headers, partition=0)
        await async_wait_for(lambda: len(commands.distinct) >= 1, 60, what="the next command")
        assert json.loads(commands.seen[0].value)["instance_id"] == "after-big"
        await async_wait_for(lambda: letters.count >= 1, 30, what="the small dead letter")
        reasons = [json.loads(s.value)["reason"] for s in letters.seen]
        assert reasons == ["unknown_instance"]  # the big one's letter was dropped, not sent
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(
                f"http://127.0.0.1:{router.router_web_port}/metrics")).text
        assert _sample(metrics, "flowline_router_unsendable_total") >= 1
    finally:
        await producer.stop()
        await asyncio.to_thread(stack.stop)
        await commands.stop()
        await letters.stop()


async def test_a_record_batch_the_broker_refuses_as_too_large_goes_again_one_by_one(
        broker: Any, router: Settings) -> None:
    # The router sends each partition's outputs as one record batch. A topic may take less in
    # one batch than that (`max.message.bytes`): each of the refused batch's records then goes
    # in a batch of its own, and all of them arrive, once each.
    if broker.kind != "kafka":
        pytest.skip("Tansu 0.6 has no AlterConfigs: a topic's batch limit cannot be set")
    await limit_batches(router, router.commands_topic, 3000)
    iids = [f"split-{i}" for i in range(40)]  # ~10 commands a partition, ~1 kB each
    await produce_all(router.kafka_bootstrap, router.requests_topic,
                      [workload.start_record(iid) for iid in iids])
    commands = await TopicReader(router.kafka_bootstrap, router.commands_topic).start()
    letters = await TopicReader(router.kafka_bootstrap, router.dead_letters_topic).start()
    stack = await asyncio.to_thread(start, router)  # the starts wait: one batch
    try:
        await async_wait_for(lambda: len(commands.distinct) >= len(iids), 60,
                             what="a command per start")
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(
                f"http://127.0.0.1:{router.router_web_port}/metrics")).text
        assert _sample(metrics, "flowline_router_batch_size_sum") == len(iids)
        # Few batches: some partition had several commands in one batch, over the limit.
        assert _sample(metrics, "flowline_router_batch_size_count") <= 3
        assert len(commands.seen) == len(iids)  # none sent twice
        assert sorted(json.loads(c.value)["instance_id"] for c in commands.seen) == sorted(iids)
        assert _sample(metrics, "flowline_router_unsendable_total") == 0
        assert _sample(metrics, "flowline_router_delivery_retries_total") == 0
        assert letters.count == 0
    finally:
        await asyncio.to_thread(stack.stop)
        await commands.stop()
        await letters.stop()


async def test_table_writes_the_broker_refuses_as_too_large_go_again_and_survive_a_restart(
        broker: Any, router: Settings) -> None:
    # The router writes each batch's states to the changelog as one record batch a
    # partition; a changelog taking less in one batch than that refuses it. The writes go
    # again, one a batch, before the inputs' offsets are committed, and a restarted router
    # (which rebuilds its table from the changelog alone) finds every state.
    if broker.kind != "kafka":
        pytest.skip("Tansu 0.6 has no AlterConfigs: a topic's batch limit cannot be set")
    commands = await TopicReader(router.kafka_bootstrap, router.commands_topic).start()
    letters = await TopicReader(router.kafka_bootstrap, router.dead_letters_topic).start()
    stack = await asyncio.to_thread(start, router)  # declares the changelog topic
    try:
        await produce_all(router.kafka_bootstrap, router.requests_topic,
                          [workload.start_record("first")])
        await async_wait_for(lambda: len(commands.distinct) >= 1, 60, what="the first command")
        await asyncio.to_thread(stack.stop)
        await limit_batches(router, f"{router.router_app_id}-instances-changelog", 2500)
        iids = [f"state-{i}" for i in range(40)]  # ~10 states a partition, ~0.7 kB each
        await produce_all(router.kafka_bootstrap, router.requests_topic,
                          [workload.start_record(iid) for iid in iids])
        stack = await asyncio.to_thread(start, router)  # the starts wait: one batch
        await async_wait_for(lambda: len(commands.distinct) >= 1 + len(iids), 60,
                             what="a command per start")
        await asyncio.to_thread(stack.stop)  # its flush waits for the writes
        await produce_all(router.kafka_bootstrap, router.completions_topic,
                          [workload.completion_record(iid, "receive", None) for iid in iids])
        stack = await asyncio.to_thread(start, router)
        await async_wait_for(lambda: len(commands.distinct) >= 1 + 2 * len(iids), 90,
                             what="a command per completion, from the recovered states")
        assert letters.count == 0
        steps = sorted(json.loads(c.value)["step"] for c in commands.seen[1 + len(iids):])
        assert steps == ["disassemble"] * len(iids)
    finally:
        await asyncio.to_thread(stack.stop)
        await commands.stop()
        await letters.stop()


async def test_a_batch_s_states_are_in_the_changelog_once_its_records_are_committed(
        router: Settings) -> None:
    # A router killed (-9: no flush at a stop) once the starts' offsets are committed is
    # never offered those starts again, so its successor, which rebuilds its table from the
    # changelog alone, must find their states there: the commit waits for their writes.
    iids = [f"committed-{i}" for i in range(20)]
    commands = await TopicReader(router.kafka_bootstrap, router.commands_topic).start()
    letters = await TopicReader(router.kafka_bootstrap, router.dead_letters_topic).start()
    stack = await asyncio.to_thread(start, router)
    try:
        ends = await _produce(router, router.requests_topic,
                              [workload.start_record(iid) for iid in iids])
        await async_wait_for(lambda: len(commands.distinct) >= len(iids), 60,
                             what="a command per start")
        committed: dict[int, int] = {}

        async def all_committed() -> bool:
            committed.update(await committed_offsets(
                router.kafka_bootstrap, router.router_app_id, router.requests_topic,
                router.partitions))
            return all(committed.get(p, 0) >= end for p, end in ends.items())

        await async_wait_for(all_committed, 30, interval=0.2, what="the starts' offsets committed")
        await asyncio.to_thread(stack.kill, "router")
        stack = await asyncio.to_thread(start, router)
        await produce_all(router.kafka_bootstrap, router.completions_topic,
                          [workload.completion_record(iid, "receive", None) for iid in iids])
        await async_wait_for(lambda: len(commands.distinct) >= 2 * len(iids), 90,
                             what="a command per completion, from the recovered states")
        assert letters.count == 0
        steps = sorted(json.loads(c.value)["step"] for c in commands.seen[len(iids):])
        assert steps == ["disassemble"] * len(iids)
    finally:
        await asyncio.to_thread(stack.stop)
        await commands.stop()
        await letters.stop()


async def _produce(settings: Settings, topic: str, records: list[Any]) -> dict[int, int]:
    """Send `records`; the offset after the last of them, by partition (read from the acks:
    Tansu's ListOffsets answers a batch's base offset + 1, not the log's end)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        sent = [await producer.send(topic, r.value, key=r.key, headers=r.headers)
                for r in records]
        ends: dict[int, int] = {}
        for meta in await asyncio.gather(*sent):
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
        return ends
    finally:
        await producer.stop()


def _sample(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))
