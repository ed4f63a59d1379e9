"""A producer that sends pre-encoded records at a fixed rate and notes when each went out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaProducer

from bench.workload import Record

TICK = 0.002  # send what is due every 2 ms: smooth enough at 1,000/s, cheap on the loop


async def paced_send(producer: AIOKafkaProducer, topic: str, records: Iterable[Record],
                     rate: float, on_sent: Callable[[Record, float], None] | None = None,
                     stop: asyncio.Event | None = None) -> int:
    """Send `records` at `rate`/s (send time taken just before each send); returns the count."""
    started = time.monotonic()
    sent = 0
    pending = []
    for record in records:
        if stop is not None and stop.is_set():
            break
        due = started + sent / rate
        delay = due - time.monotonic()
        if delay > TICK:
            await asyncio.sleep(delay)
        if on_sent:
            on_sent(record, time.time())
        pending.append(await producer.send(topic, record.value, key=record.key,
                                           headers=record.headers))
        sent += 1
        if len(pending) >= 1000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return sent
