"""Warm a freshly started broker before anything is measured.

A JVM compiles its hot paths during its first minute or so of traffic. In session 8 the
broker used 0.63–0.66 of a core in `--only inbox` runs, where the inbox phase met a broker
started seconds before, and 0.24 in the same phase of a full run, where other scenarios had
run first (bench/results/NOTES.md). So before the first scenario the bench drives the broker
the way the scenarios will, for `warmup_seconds`: small records produced one request at a
time, fetched by a consumer group and committed, on a topic of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.kafka_io import delete_topics
from services.common.brokers import ensure_topics

IN_FLIGHT = 20  # sends awaited together: many small produce requests, as the services make


async def warm(bootstrap: str, seconds: float, partitions: int,
               fetch_max_wait_ms: int) -> dict[str, Any]:
    """Produce, fetch and commit for `seconds`; how many records went through."""
    topic = f"bench-warmup-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [(topic, partitions, {})])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks="all")
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=topic,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=fetch_max_wait_ms)
    await producer.start()
    await consumer.start()
    sent = read = 0
    deadline = time.monotonic() + seconds

    async def consume() -> None:
        nonlocal read
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            if batch:
                read += sum(len(records) for records in batch.values())
                await consumer.commit()

    reading = asyncio.create_task(consume())
    try:
        value = b"x" * 500
        while time.monotonic() < deadline:
            acks = [await producer.send(topic, value, key=str(sent + n).encode())
                    for n in range(IN_FLIGHT)]
            await asyncio.gather(*acks)
            sent += IN_FLIGHT
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        await consumer.stop()
        await producer.stop()
        await delete_topics(bootstrap, [topic])  # the scenarios' broker holds their own
    return {"seconds": seconds, "records_sent": sent, "records_read": read}
