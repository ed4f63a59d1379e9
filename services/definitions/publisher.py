"""The outbox publisher: sends unsent outbox rows to Kafka, marks them sent, retries forever.

A row is written in the same transaction as the change it announces, so a crash or a broker
outage can delay an event but never lose it. Sending is at-least-once: a crash between the
send and the ``sent_at`` update re-sends that row, which consumers dedupe by ``ce_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common.kafka import EventProducer
from services.common.settings import Settings
from services.definitions import metrics
from services.definitions.models import Outbox, utcnow
from services.definitions.repository import as_utc

log = logging.getLogger(__name__)

ProducerFactory = Callable[[Settings], EventProducer]


def default_producer(settings: Settings) -> EventProducer:
    # A short request timeout: a dead broker should fail a pass quickly and be retried,
    # rather than hold an approval's publish attempt for aiokafka's default 40 s.
    return EventProducer(settings, "definitions", request_timeout_ms=5000)


class OutboxPublisher:
    """Background sender; ``run()`` is the task, ``kick()`` asks for a pass right away."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], *,
                 producer_factory: ProducerFactory = default_producer,
                 idle_interval: float = 1.0, initial_backoff: float = 0.5,
                 max_backoff: float = 30.0, batch: int = 100) -> None:
        self.settings = settings
        self.sessions = sessions
        self.producer_factory = producer_factory
        self.idle_interval = idle_interval
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.batch = batch
        self._producer: EventProducer | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._waiters: dict[int, asyncio.Future[bool]] = {}
        # Ids sent lately, so a waiter that registers just after its row went out still sees it.
        self._recent: deque[int] = deque(maxlen=1000)

    def kick(self) -> None:
        """Start a pass now instead of after the idle interval or the current backoff."""
        self._wake.set()

    async def run(self) -> None:
        """Publish passes until cancelled; failed passes back off exponentially (capped)."""
        backoff = self.initial_backoff
        while True:
            # Cleared before the pass, so a kick that lands during it triggers another one.
            self._wake.clear()
            try:
                await self.publish_pending()
                delay, backoff = self.idle_interval, self.initial_backoff
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker down, timeouts, ...: all retryable here
                metrics.PUBLISH_FAILURES.inc()
                log.warning("outbox publish failed, retrying in %.1fs: %r", backoff, exc)
                self._fail_waiters()
                await self._drop_producer()
                delay, backoff = backoff, min(backoff * 2, self.max_backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def publish_pending(self) -> int:
        """One pass: send unsent rows oldest first; returns how many were sent."""
        async with self._lock:
            async with self.sessions() as s:
                rows = list(await s.scalars(select(Outbox).where(Outbox.sent_at.is_(None))
                                            .order_by(Outbox.id).limit(self.batch)))
            sent = 0
            for row in rows:
                try:
                    producer = await self._started_producer()
                    await producer.send(row.topic, key=row.key, ce_type=row.ce_type,
                                        data=row.payload, event_id=row.event_id,
                                        time=as_utc(row.created_at))
                except Exception as exc:
                    await self._record_failure(row.id, exc)
                    raise
                async with self.sessions.begin() as s:
                    await s.execute(update(Outbox).where(Outbox.id == row.id)
                                    .values(sent_at=utcnow(), attempts=Outbox.attempts + 1))
                sent += 1
                metrics.PUBLISHED.inc()
                self._recent.append(row.id)
                waiter = self._waiters.get(row.id)
                if waiter is not None and not waiter.done():
                    waiter.set_result(True)
            await self._update_pending()
            return sent

    async def wait_published(self, outbox_id: int, within: float) -> bool:
        """Kick a pass and wait (bounded) for ``outbox_id`` to go out; False if it did not."""
        if outbox_id in self._recent:
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[outbox_id] = waiter
        self.kick()
        try:
            return await asyncio.wait_for(waiter, within)
        except TimeoutError:
            return False
        finally:
            self._waiters.pop(outbox_id, None)

    async def close(self) -> None:
        self._fail_waiters()
        await self._drop_producer()

    async def _started_producer(self) -> EventProducer:
        if self._producer is None:
            producer = self.producer_factory(self.settings)
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _drop_producer(self) -> None:
        # A producer that failed is not trusted again: the next pass builds a fresh one.
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def _record_failure(self, outbox_id: int, exc: Exception) -> None:
        with contextlib.suppress(Exception):  # bookkeeping only; the row stays unsent anyway
            async with self.sessions.begin() as s:
                await s.execute(update(Outbox).where(Outbox.id == outbox_id).values(
                    attempts=Outbox.attempts + 1, last_error=repr(exc)[:2000]))

    def _fail_waiters(self) -> None:
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_result(False)

    async def _update_pending(self) -> None:
        async with self.sessions() as s:
            pending = await s.scalar(select(func.count()).where(Outbox.sent_at.is_(None)))
        metrics.PENDING.set(pending or 0)
