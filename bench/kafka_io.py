"""Bench-side Kafka clients: bulk producing, a paced producer and a counting reader."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.workload import Record


async def produce_all(bootstrap: str, topic: str, records: Sequence[Record],
                      linger_ms: int = 5) -> float:
    """Send every record (acks=all) and return the seconds it took."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms, acks="all",
                                max_batch_size=256 * 1024)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for r in records:
            pending.append(await producer.send(topic, r.value, key=r.key, headers=r.headers))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def delete_topics(bootstrap: str, prefixes: Sequence[str]) -> list[str]:
    """Delete every topic whose name starts with one of `prefixes`; the names deleted."""
    if not prefixes:
        return []
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(tuple(prefixes))]
        if doomed:
            await admin.delete_topics(doomed)
        return doomed
    finally:
        await admin.close()


@dataclass
class Seen:
    """One record read back: its CreateTime (ms, set by the writer) and when we read it."""

    key: bytes
    value: bytes
    create_ms: int
    read_at: float  # time.time()


@dataclass
class TopicReader:
    """Reads a topic from the beginning (no group), counting records as they arrive.

    `on_record` sees each record as it is read (the latency scenario timestamps there);
    `keep` keeps every record's timestamps for throughput maths.
    """

    bootstrap: str
    topic: str
    fetch_max_wait_ms: int = 20
    keep: bool = True
    on_record: Callable[[Seen], None] | None = None
    count: int = 0
    seen: list[Seen] = field(default_factory=list)
    distinct: set[int] = field(default_factory=set)  # hashes of values: replays repeat bytes
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> TopicReader:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap,
                                          enable_auto_commit=False,
                                          fetch_max_wait_ms=self.fetch_max_wait_ms,
                                          max_partition_fetch_bytes=4 * 1024 * 1024)
        await self._consumer.start()
        partitions = None
        for _ in range(100):
            partitions = self._consumer.partitions_for_topic(self.topic)
            if partitions:
                break
            await self._consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        if not partitions:
            raise RuntimeError(f"topic {self.topic} has no partitions")
        self._consumer.assign([TopicPartition(self.topic, p) for p in partitions])
        await self._consumer.seek_to_beginning()
        self._task = asyncio.create_task(self._read(), name=f"reader-{self.topic}")
        return self

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=100, max_records=10000)
            now = time.time()
            for records in batches.values():
                for r in records:
                    seen = Seen(r.key, r.value, r.timestamp, now)
                    self.count += 1
                    self.distinct.add(hash(r.value))
                    if self.keep:
                        self.seen.append(seen)
                    if self.on_record:
                        self.on_record(seen)
            if batches:
                self._changed.set()

    async def wait_for(self, count: int, within: float,
                       progress: Callable[[int], None] | None = None) -> bool:
        """Wait until `count` distinct records were read; False on timeout (never raises)."""
        deadline = time.monotonic() + within
        while len(self.distinct) < count:
            if self._task and self._task.done():
                self._task.result()  # surface the reader's error
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
            if progress:
                progress(len(self.distinct))
        return True

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer:
            await self._consumer.stop()


def rate_between(seen: Sequence[Seen]) -> dict[str, Any]:
    """Records/s over the writer's CreateTime span of `seen` (first to last record)."""
    if len(seen) < 2:
        return {"records": len(seen), "seconds": 0.0, "per_second": 0.0}
    stamps = sorted(s.create_ms for s in seen)
    span = max(1, stamps[-1] - stamps[0]) / 1000.0
    return {"records": len(seen), "seconds": round(span, 3),
            "per_second": round((len(seen) - 1) / span, 1)}
