"""A batch's outputs handed to aiokafka as one record batch per partition, not one by one.

`AIOKafkaProducer.send` costs a coroutine, a metadata check, a partitioner call, an accumulator
append and a future per record, and faust's `Producer.send` wraps each in its own call; the
futures are then resolved one by one when the broker answers, and gathered. The router sends
hundreds of records per batch and waits for all of them anyway, so it builds each partition's
records into one batch itself (`BatchBuilder`, aiokafka's public batch API) and waits for one
future per partition.

The builders take up to the producer's `max_request_size`, not its `max_batch_size` (faust's
16 kB): a batch of 500 commands spread over 12 partitions is tens of kB per partition, which
in 16 kB batches went out in several produce requests one after the other (aiokafka keeps one
request in flight per broker, and puts one batch per partition in a request).

The router's table writes go the same way (`Router._store`): faust's own path for each one (a
`FutureMessage`, its producer buffer's task, `Producer.send`, a callback) cost as much as the
write itself, and serialized each state twice, once for RocksDB and once for the changelog.

Used only without transactions: a transaction's records go through faust's transactional
producers (`Router._deliver_in_transactions`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatchBuilder

TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)
SMALL_HEADERS = 32
# Over the record's key, value and headers, an upper bound of the rest aiokafka counts: the
# batch header (61 bytes), the record's own overhead (21) and a varint (≤ 5) for each length.
SLACK = 61 + 21 + 5 * 2 * (SMALL_HEADERS + 1)


class Record(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def key(self) -> bytes: ...
    @property
    def value(self) -> bytes: ...
    @property
    def headers(self) -> list[tuple[str, bytes]]: ...
    @property
    def partition(self) -> int | None: ...  # None: the producer's partitioner picks


@dataclass
class Sent:
    """Records queued as one record batch, and the future of the broker's answer."""

    records: list[Any]
    future: Any


def too_large(record: Record, limit: int) -> MessageSizeTooLargeError | None:
    """The error aiokafka's `send` raises for a record over `limit` (`max_request_size`)."""
    headers = record.headers
    if len(headers) <= SMALL_HEADERS:  # a cheap upper bound first: nearly every record fits
        bound = len(record.key) + len(record.value) + SLACK
        for k, v in headers:
            bound += 4 * len(k) + len(v)  # a str's UTF-8 is at most 4 bytes a character
        if bound <= limit:
            return None
    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(record.key, record.value, headers)
    if size <= limit:
        return None
    return MessageSizeTooLargeError(
        f"The message is {size} bytes when serialized which is larger than the maximum "
        f"request size ({limit})")


def refused_for_size(exc: BaseException | None) -> bool:
    """Whether the client or the broker refused a record for its size (faust wraps errors)."""
    while exc is not None:
        if isinstance(exc, TOO_LARGE):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


async def send(producer: AIOKafkaProducer, records: Sequence[Any],
               alone: frozenset[int] = frozenset(),
               ) -> tuple[list[Sent], list[Any], Exception | None]:
    """Queue `records` (already size-checked), in order within each partition.

    Returns what was queued, the records the producer did not queue (in order) and why. A
    record whose `id` is in `alone` gets a record batch of its own: the caller's way to find
    which record of a refused batch the broker refuses.
    """
    sent: list[Sent] = []
    try:
        await _send(producer, records, alone, sent)
    except Exception as exc:
        queued = {id(r) for s in sent for r in s.records}
        return sent, [r for r in records if id(r) not in queued], exc
    return sent, [], None


@dataclass
class Answers:
    """The broker's answers to record batches sent (`acknowledged`)."""

    again: list[Any]  # records of batches not acknowledged, to send again
    alone: frozenset[int]  # of those, the ones a batch refused for its size held
    too_large: list[tuple[Any, BaseException]]  # single records refused for their size
    failure: BaseException | None  # the first other error


async def acknowledged(sent: list[Sent]) -> Answers:
    """Wait for every batch's answer and sort them out: which records to send again, which
    of them alone (to find the record a refused batch was refused for), which were refused
    for their size in a batch of their own."""
    answers = Answers([], frozenset(), [], None)
    results = await asyncio.gather(*(s.future for s in sent), return_exceptions=True)
    for s, result in zip(sent, results, strict=True):
        if not isinstance(result, BaseException):
            continue
        if not refused_for_size(result):
            answers.again += s.records
            answers.failure = answers.failure or result
        elif len(s.records) == 1:
            answers.too_large.append((s.records[0], result))
        else:
            answers.again += s.records
            answers.alone |= {id(r) for r in s.records}
    return answers


async def _send(producer: AIOKafkaProducer, records: Sequence[Any], alone: frozenset[int],
                sent: list[Sent]) -> None:
    partitioner = producer._partitioner  # type: ignore[attr-defined]
    metadata = producer.client.cluster
    partitions = {}
    for topic in {r.topic for r in records}:
        await producer.client._wait_on_metadata(topic)
        partitions[topic] = (list(metadata.partitions_for_topic(topic)),
                             list(metadata.available_partitions_for_topic(topic)))
    by_partition: dict[tuple[str, int], list[Any]] = {}
    for r in records:
        partition = r.partition if r.partition is not None \
            else partitioner(r.key, *partitions[r.topic])
        by_partition.setdefault((r.topic, partition), []).append(r)
    for (topic, partition), group in by_partition.items():
        for chunk, builder in chunks(group, alone, lambda: _builder(producer)):
            future = await producer.send_batch(builder, topic, partition=partition)
            sent.append(Sent(chunk, future))


def chunks(records: list[Any], alone: frozenset[int], new: Callable[[], BatchBuilder],
           ) -> Iterator[tuple[list[Any], BatchBuilder]]:
    """One partition's records as closed record batches, in order; see `send` for `alone`."""
    chunk: list[Any] = []
    builder = new()
    for r in records:
        if chunk and id(r) in alone:
            yield chunk, _closed(builder)
            chunk, builder = [], new()
        if builder.append(timestamp=None, key=r.key, value=r.value, headers=r.headers) is None:
            yield chunk, _closed(builder)  # full (never when empty: a first record always fits)
            chunk, builder = [], new()
            builder.append(timestamp=None, key=r.key, value=r.value, headers=r.headers)
        chunk.append(r)
        if id(r) in alone:
            yield chunk, _closed(builder)
            chunk, builder = [], new()
    if chunk:
        yield chunk, _closed(builder)


def _builder(producer: AIOKafkaProducer) -> BatchBuilder:
    accumulator: Any = producer._message_accumulator  # type: ignore[attr-defined]
    # The accumulator's compression is the attribute bits; the producer's is the codec name.
    return BatchBuilder(producer._max_request_size,  # type: ignore[attr-defined]
                        accumulator._compression_type)


def _closed(builder: BatchBuilder) -> BatchBuilder:
    builder.close()  # nothing `send` queues may join it
    return builder
