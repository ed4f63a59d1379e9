"""Find records the router's commit is waiting for, and either re-read them or prove them absent.

faust can fetch records and never deliver them: while a rebalance suspends flow, its fetch loop
drops messages but still advances its read position, and a partition's position can sit at the
end of the log with the commit behind it (after a `kill -9` restart, on Tansu and Apache Kafka
alike; measured 2026-11-22, faust-streaming 0.15.3). `transport.py` never commits past such a
hole, so nothing is lost, but nothing routes either until someone looks.

The check, every second (4 times a second with transactions): a partition whose commit start
has acknowledged offsets beyond it, or records beyond it while the agent sits idle, has a hole.
A hole that stays for `hole_seconds` (3 s; 0.5 s with transactions) is read directly from the
log with a plain consumer: if it holds records, the router seeks back and reads them again
(records already routed carry event ids the instance state remembers, so they are no-ops); if
it holds none (transaction markers, compaction), the hole is confirmed empty and the commit
moves past it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import Counter

from services.router.offsets import hole

log = logging.getLogger(__name__)
REWINDS = Counter("flowline_router_stall_rewinds_total",
                  "Partitions sought back to their commit start to re-read records never delivered")


class StallHealer:
    def __init__(self, app: Any, topics: set[str], bootstrap: str,
                 idle_seconds: float = 3.0, hole_seconds: float | None = None) -> None:
        self.app = app
        self.topics = topics
        self.bootstrap = bootstrap
        self.idle_seconds = idle_seconds
        # How long a hole must stay before the log is read. With transactions, holes are
        # routine (each commit that wrote to an input leaves a marker there) and the
        # partition's transaction stays open until its commit passes them: be quick.
        self.hole_seconds = idle_seconds if hole_seconds is None else hole_seconds
        self.last_event = time.monotonic()
        self.last_batch = time.monotonic()  # the agent's, not a re-read's
        self._holes: dict[Any, tuple[tuple[int, int], float]] = {}
        self._rewound: dict[Any, int] = {}  # partition -> the offset last re-read from
        self.agent: Any = None  # the agent's coroutine, for `_state`

    def saw_event(self) -> None:
        self.last_event = self.last_batch = time.monotonic()

    async def check(self) -> None:
        """Never raises: a diagnostic must not take the router down."""
        try:
            await self._check()
        except Exception:
            log.exception("stall check failed")

    async def _check(self) -> None:
        if not self.app.tables.recovery.completed.is_set() or self.app.rebalancing:
            self._holes.clear()
            return
        consumer = self.app.consumer
        tps = [tp for tp in consumer.assignment() if tp.topic in self.topics]
        if not tps:
            return
        idle = time.monotonic() - self.last_event >= self.idle_seconds
        # End offsets come from faust's `highwaters`, which asks the consumer thread (the
        # aiokafka consumer lives on that thread and must not be called from this loop).
        ends = await consumer.highwaters(*tps) if idle else {}
        now = time.monotonic()
        for tp in tps:
            start = consumer.commit_start(tp)
            gap = None if start is None else hole(start, consumer.acked_offsets(tp), ends.get(tp))
            if gap is None:
                self._holes.pop(tp, None)
                continue
            seen = self._holes.get(tp)
            if seen is None or seen[0][0] != gap[0]:
                self._holes[tp] = (gap, now)
                continue
            if now - seen[1] < self.hole_seconds:
                continue
            del self._holes[tp]
            await self._resolve(consumer, tp, gap)

    async def _resolve(self, consumer: Any, tp: Any, gap: tuple[int, int]) -> None:
        lo, hi = gap
        if await self._holds_records(tp, lo, hi):
            log.warning("%s[%s]: offsets %s..%s hold records the agent never got; re-reading "
                        "from %s", tp.topic, tp.partition, lo, hi - 1, lo)
            if self._rewound.get(tp) == lo:  # the last re-read from here routed nothing
                log.error("%s[%s]: re-read from %s again, no progress since the last: %s",
                          tp.topic, tp.partition, lo, self._state(consumer, tp))
            self._rewound[tp] = lo
            REWINDS.inc()
            consumer.resume_partitions({tp})  # a partition left paused is never fetched
            await consumer.seek(tp, lo)
            self.last_event = time.monotonic()
        else:
            log.info("%s[%s]: offsets %s..%s hold no records; committing past them",
                     tp.topic, tp.partition, lo, hi - 1)
            consumer.confirm_empty(tp, lo, hi)

    def _state(self, consumer: Any, tp: Any) -> str:
        """What could hold delivery up, for a stall that re-reading does not cure."""
        try:
            app = self.app
            buffers = [c.queue.qsize() for c in consumer._channels(tp.topic)]
            return (f"agent's last batch {time.monotonic() - self.last_batch:.1f}s ago, "
                    f"waiting at {awaiting(self.agent)}; "
                    f"stream buffers {buffers}; flow suspended {consumer.suspend_flow.is_set()}; "
                    f"flow control active {app.flow_control.is_active()}; producer buffer "
                    f"{app.producer.buffer.size}; read offset {consumer._read_offset.get(tp)}; "
                    f"paused {tp in consumer._paused_partitions}")
        except Exception as exc:  # a diagnostic must not fail the check
            return f"(state unavailable: {exc!r})"

    async def _holds_records(self, tp: Any, lo: int, hi: int, within: float = 10.0) -> bool:
        """Read [lo, hi) with a consumer of our own; True if any record is there.

        When the read does not finish in time the answer is True: re-reading is safe,
        committing past a record is not.
        """
        isolation = "read_committed" if self.app.in_transaction else "read_uncommitted"
        reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                  isolation_level=isolation)
        part = TopicPartition(tp.topic, tp.partition)
        await reader.start()
        try:
            reader.assign([part])
            reader.seek(part, lo)
            deadline = time.monotonic() + within
            while time.monotonic() < deadline:
                batch = await reader.getmany(part, timeout_ms=500)
                if any(lo <= r.offset < hi for r in batch.get(part, [])):
                    return True
                if await reader.position(part) >= hi:
                    return False
            return True
        finally:
            await reader.stop()


def awaiting(coroutine: Any) -> str:
    """Where `coroutine` is suspended: each coroutine it awaits, outermost first (file:line)."""
    if coroutine is None:
        return "(unknown)"
    where: list[str] = []
    awaited: Any = coroutine
    while awaited is not None and len(where) < 40:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None) \
            or getattr(awaited, "gi_frame", None)
        if frame is not None:
            where.append(f"{frame.f_code.co_name} ({frame.f_code.co_filename.rsplit('/', 2)[-1]}"
                         f":{frame.f_lineno})")
        awaited = (getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
                   or getattr(awaited, "gi_yieldfrom", None))
    return " -> ".join(where) or repr(coroutine)
