"""How the router cuts one partition's outputs into record batches (`sending.chunks`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, RecordListTooLargeError
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from services.router.sending import Sent, acknowledged, chunks, too_large


@dataclass
class Rec:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    partition: int | None = None


def records(n: int, size: int = 100) -> list[Rec]:
    return [Rec("t", f"k{i}".encode(), bytes([65 + i % 26]) * size, [("ce_id", str(i).encode())])
            for i in range(n)]


def builder(size: int = 16_384) -> BatchBuilder:
    return BatchBuilder(size, 0)


def contents(batch: BatchBuilder) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    read = MemoryRecords(bytes(batch._build())).next_batch()
    assert read is not None
    return [(r.key, r.value, list(r.headers)) for r in read]


def test_records_that_fit_go_in_one_batch_in_order() -> None:
    recs = records(20)
    [(chunk, batch)] = list(chunks(recs, frozenset(), builder))
    assert chunk == recs
    assert contents(batch) == [(r.key, r.value, r.headers) for r in recs]
    assert batch.closed()  # nothing `send` queues may join it


def test_a_full_batch_starts_the_next_and_nothing_is_lost_or_reordered() -> None:
    recs = records(25, size=300)
    cut = list(chunks(recs, frozenset(), lambda: builder(2_000)))
    assert len(cut) > 3
    assert [r for chunk, _ in cut for r in chunk] == recs
    for chunk, batch in cut:
        assert contents(batch) == [(r.key, r.value, r.headers) for r in chunk]
        assert batch.size() <= 2_000


def test_a_record_larger_than_a_batch_still_gets_one_of_its_own() -> None:
    recs = records(3, size=100)
    big = Rec("t", b"big", b"x" * 5_000, [])
    cut = list(chunks([recs[0], big, recs[1]], frozenset(), lambda: builder(2_000)))
    assert [chunk for chunk, _ in cut] == [[recs[0]], [big], [recs[1]]]


def test_records_named_alone_each_get_a_batch_of_their_own() -> None:
    recs = records(6)
    alone = frozenset({id(recs[2]), id(recs[3])})
    cut = [chunk for chunk, _ in chunks(recs, alone, builder)]
    assert cut == [recs[:2], [recs[2]], [recs[3]], recs[4:]]


def test_too_large_agrees_with_aiokafkas_own_size_check_at_the_limit() -> None:
    limit = 10_000
    for n_headers in (0, 7, 32, 40):
        headers = [(f"h{i}", b"v" * 30) for i in range(n_headers)]
        for size in range(limit - 1_500, limit + 50, 7):
            r = Rec("t", b"key", b"x" * size, headers)
            exact = DefaultRecordBatchBuilder.estimate_size_in_bytes(r.key, r.value, r.headers)
            assert (too_large(r, limit) is not None) == (exact > limit), (n_headers, size)


async def test_acknowledged_sorts_the_brokers_answers() -> None:
    loop = asyncio.get_running_loop()
    recs = records(6)
    answers: list[object] = ["acknowledged", KafkaTimeoutError("no ack"),
               RecordListTooLargeError("too big a batch"), MessageSizeTooLargeError("too big")]
    batches = [[recs[0]], [recs[1], recs[2]], [recs[3], recs[4]], [recs[5]]]
    sent = []
    for batch, answer in zip(batches, answers, strict=True):
        future = loop.create_future()
        if isinstance(answer, BaseException):
            future.set_exception(answer)
        else:
            future.set_result(answer)
        sent.append(Sent(batch, future))
    got = await acknowledged(sent)
    assert got.again == [recs[1], recs[2], recs[3], recs[4]]  # in the order they were sent
    assert got.alone == frozenset({id(recs[3]), id(recs[4])})  # a batch refused for its size
    assert [(r, type(e)) for r, e in got.too_large] == [(recs[5], MessageSizeTooLargeError)]
    assert isinstance(got.failure, KafkaTimeoutError)
