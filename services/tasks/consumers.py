"""The Kafka side of the tasks service: micro-batches in, one SQL transaction per batch.

At-least-once: offsets are committed only after the batch's transaction (and its dead
letters) succeeded, so a crash in between means a redelivery, which the handlers make a no-op.
A batch's commit runs while the next batch is applied; the one after waits for it.
A record that cannot be decoded or validated is dead-lettered and committed: it never blocks
its partition. A database error is retried with backoff; an error that retrying cannot fix
is isolated to its record, which is dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from schemas.messages import RejectReason
from services.common.db import Transactions
from services.common.envelopes import MalformedRecord, decode, utcnow
from services.common.kafka import EventProducer, send_dead_letter
from services.common.settings import Settings
from services.tasks import metrics, rows

log = logging.getLogger(__name__)

Batch = dict[TopicPartition, list[ConsumerRecord]]
BATCH_MAX = 500  # records per batch (one transaction)
# A fold: records of one topic into rows, in the caller's transaction (`Transactions.run`).
Apply = Callable[[Session, Sequence[Any], datetime], Any]


@dataclass(frozen=True)
class Handler:
    """How one topic's records become rows: accepted CloudEvents types, data model, fold."""

    ce_types: frozenset[str]
    model: type[BaseModel]
    apply: Apply
    check: Callable[[Any], None] = field(default=lambda _msg: None)  # extra validation


class Rejected(Exception):
    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _retryable(exc: BaseException) -> bool:
    """A lost connection or a locked database heals by itself; other errors do not."""
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


def _count(batch: Batch) -> int:
    return sum(len(records) for records in batch.values())


class BatchConsumer:
    """Consume `handlers`' topics in one group and fold them into SQL in micro-batches."""

    def __init__(self, settings: Settings, transactions: Transactions,
                 producer: EventProducer, handlers: dict[str, Handler], group_id: str,
                 name: str = "tasks",
                 on_commit: Callable[[frozenset[str]], None] = lambda _tables: None) -> None:
        self.settings, self.transactions, self.producer = settings, transactions, producer
        self.handlers, self.group_id, self.name = handlers, group_id, name
        # Told the tables a batch inserted rows into, once committed: e.g. to wake the outbox
        # publishers that have new rows to send.
        self.on_commit = on_commit
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._commit: asyncio.Task[None] | None = None  # the last batch's offsets, under way
        self._taken: Batch = {}  # records taken while a batch was applied: the next batch
        self._taking: asyncio.Future[Batch] | None = None  # the `getmany` waiting for records

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            *self.handlers,
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # Short timeouts: a restarted service rejoins in seconds, not half a minute.
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            rebalance_timeout_ms=20000,
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
            isolation_level=self.settings.isolation_level,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"{self.name}-consumer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._committed()  # a batch applied is a batch committed, if the broker lets us
        if self._consumer is not None:
            await self._consumer.stop()

    async def _run(self) -> None:
        """Take records and apply them in batches, taking the next batch's while one applies.

        aiokafka sends no new fetch to a broker while records it fetched from it wait to be
        taken, so records reaching the broker while a batch is applied used to wait for the
        batch after next. One `getmany` is kept waiting at all times instead (cancelled only at a
        stop: a cancelled `getmany` leaves aiokafka counting a fetch in progress), and a batch is
        what it took while the one before applied (bench `inbox`, bench/results/NOTES.md,
        session 7). The fold runs in a thread of its own on SQLite, so taking costs it little.
        """
        assert self._consumer is not None
        backoff = 0.2
        batch: Batch = {}
        work: asyncio.Future[None] | None = None
        try:
            while True:
                batch = {}
                try:
                    while not self._taken:
                        await self._take()
                    batch, self._taken = self._taken, {}
                    work = asyncio.ensure_future(self.process(batch))
                    while not work.done():
                        await self._take(work)
                    work.result()
                    backoff = 0.2
                except Exception as exc:  # retried: log loudly, rewind, back off
                    log.exception("%s: batch failed, retrying in %.1fs", self.name, backoff)
                    metrics.BATCH_FAILURES.labels(type(exc).__name__).inc()
                    if work is not None and not work.done():  # the take failed: finish first
                        await asyncio.wait({work})
                    # Back to the batch's first records, and to those taken since (a take
                    # still waiting returns records from there on).
                    for tp, records in {**self._taken, **batch}.items():
                        self._consumer.seek(tp, records[0].offset)
                    self._taken = {}
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
        finally:  # stopping: the batch's work ends here, and the consumer stops next
            for future in (work, self._taking):
                if future is not None and not future.done():
                    future.cancel()
                    await asyncio.wait({future})

    async def _take(self, work: asyncio.Future[None] | None = None) -> None:
        """Wait for the waiting `getmany` (or for `work` to end first), adding what it took
        to `_taken`; a new one is started while there is room."""
        assert self._consumer is not None
        room = BATCH_MAX - _count(self._taken)
        if self._taking is None and room > 0:
            self._taking = asyncio.ensure_future(
                self._consumer.getmany(timeout_ms=500, max_records=room))
        waiting = {f for f in (self._taking, work) if f is not None}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if self._taking is not None and self._taking.done():
            taking, self._taking = self._taking, None
            for tp, records in taking.result().items():
                self._taken.setdefault(tp, []).extend(records)

    @property
    def running(self) -> bool:
        """True while the consume loop is alive (for health checks)."""
        return self._task is not None and not self._task.done()

    async def process(self, batch: Batch) -> None:
        """Apply one fetched batch, dead-letter what cannot be applied, commit offsets."""
        valid: dict[str, list[tuple[ConsumerRecord, Any]]] = {t: [] for t in self.handlers}
        rejects: list[tuple[ConsumerRecord, Rejected]] = []
        for records in batch.values():
            for record in records:
                try:
                    valid[record.topic].append((record, self._parse(record)))
                except Rejected as rejected:
                    rejects.append((record, rejected))
        now = utcnow()
        written: frozenset[str] = frozenset()
        try:
            written = await self.transactions.run(
                self._fold({topic: [m for _, m in items] for topic, items in valid.items()}, now))
        except Exception as exc:
            if _retryable(exc):
                raise
            # One bad record must not sink its batch: apply them one by one to find it.
            found, written = await self._one_by_one(valid, now)
            rejects += found
        if written:
            self.on_commit(written)
        for record, why in rejects:
            await self._dead_letter(record, why)
        for topic, items in valid.items():
            metrics.RECORDS.labels(topic.removeprefix(self.settings.topic_prefix)).inc(len(items))
        # The commit runs while the next batch is fetched and applied (a round trip to the
        # broker: ~10 ms a batch under load, bench `inbox`); commits stay in order.
        await self._committed()
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
        self._commit = asyncio.create_task(self._commit_offsets(offsets),
                                           name=f"{self.name}-commit")

    async def _committed(self) -> None:
        """Wait for the commit under way, if any."""
        commit = self._commit
        if commit is not None:
            await asyncio.shield(commit)  # a cancelled waiter leaves the commit to finish
            if self._commit is commit:
                self._commit = None

    async def _commit_offsets(self, offsets: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        owned = self._consumer.assignment()  # a rebalance may have taken some away since
        offsets = {tp: offset for tp, offset in offsets.items() if tp in owned}
        try:
            if offsets:
                await self._consumer.commit(offsets)
        except CommitFailedError:  # rebalanced away: the new owner redelivers, idempotently
            log.warning("%s: offset commit failed after a rebalance", self.name)
        except Exception:  # left uncommitted: redelivered after a restart, a no-op then
            log.exception("%s: offset commit failed", self.name)

    def _fold(self, messages: dict[str, list[Any]],
              now: datetime) -> Callable[[Session], frozenset[str]]:
        """One transaction's work: each topic's messages through its handler, commands first;
        it returns the tables it inserted rows into."""

        def fold(session: Session) -> frozenset[str]:
            with rows.one_flush(session):  # the topics' rows written together
                for topic, batch in messages.items():
                    self.handlers[topic].apply(session, batch, now)
            return rows.written(session)

        return fold

    def _parse(self, record: ConsumerRecord) -> Any:
        handler = self.handlers[record.topic]
        try:
            decoded = decode(record.headers, record.key, record.value)
        except MalformedRecord as exc:
            raise Rejected(RejectReason.MALFORMED, str(exc)) from exc
        if decoded.type not in handler.ce_types:
            raise Rejected(RejectReason.UNSUPPORTED_TYPE, f"unknown ce_type {decoded.type!r}")
        try:
            message = handler.model.model_validate(decoded.data)
            handler.check(message)
        except (ValidationError, ValueError) as exc:
            detail = f"invalid {handler.model.__name__}: {exc}"
            raise Rejected(RejectReason.MALFORMED, detail) from exc
        return message

    async def _one_by_one(self, valid: dict[str, list[tuple[ConsumerRecord, Any]]], now: datetime,
                          ) -> tuple[list[tuple[ConsumerRecord, Rejected]], frozenset[str]]:
        """The records that fail on their own, and the tables the others inserted into."""
        failed = []
        written: frozenset[str] = frozenset()
        for topic, items in valid.items():
            for record, message in items:
                try:
                    written |= await self.transactions.run(self._fold({topic: [message]}, now))
                except Exception as exc:
                    if _retryable(exc):
                        raise
                    log.exception("%s: record %s@%d failed", self.name, topic, record.offset)
                    failed.append((record, Rejected(RejectReason.MALFORMED,
                                                    f"could not apply: {exc!r}"[:2000])))
        return failed, written

    async def _dead_letter(self, record: ConsumerRecord, rejected: Rejected) -> None:
        metrics.DEAD_LETTERS.labels(rejected.reason.value).inc()
        await send_dead_letter(
            self.producer, consumer=self.group_id, topic=record.topic,
            partition=record.partition, offset=record.offset, key=record.key,
            headers=list(record.headers or ()), value=record.value,
            reason=rejected.reason, detail=rejected.detail,
        )
