"""Re-read records that faust fetched but never delivered (with `transport.py`'s gap guard).

faust resumes stream partitions before it seeks them to their committed offsets, and while flow
is suspended during a rebalance its fetch loop drops messages but still advances its read
position. After a `kill -9` restart (on the local broker and on Apache Kafka alike) this left
partitions with their position at the end of the log and
their committed offset behind it: nothing lost, since nothing was committed, but nothing routed
either until the next rebalance (measured: 2 of 3 e2e runs, 2026-11-22, faust-streaming 0.15.3).

The check: when the agent has been idle for a while and a partition has records beyond its
committed offset, seek back to the committed offset. Re-reading is safe by construction:
records that were routed carry event ids the instance state remembers, so they are no-ops.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import Counter

log = logging.getLogger(__name__)
REWINDS = Counter("flowline_router_stall_rewinds_total",
                  "Partitions sought back to their committed offset after a silent stall")


class StallHealer:
    def __init__(self, app: Any, topics: set[str], idle_seconds: float = 3.0) -> None:
        self.app = app
        self.topics = topics
        self.idle_seconds = idle_seconds
        self.last_event = time.monotonic()

    def saw_event(self) -> None:
        self.last_event = time.monotonic()

    async def check(self) -> None:
        """Never raises: a diagnostic must not take the router down."""
        try:
            await self._check()
        except Exception:
            log.exception("stall check failed")

    async def _check(self) -> None:
        if time.monotonic() - self.last_event < self.idle_seconds:
            return  # busy: committed offsets trail reads in normal operation
        if not self.app.tables.recovery.completed.is_set() or self.app.rebalancing:
            return
        consumer = self.app.consumer
        # The next offset committed comes from faust's own bookkeeping; the end offsets from
        # faust's `highwaters`, which asks the consumer thread (the aiokafka consumer lives on
        # that thread and must not be called from this loop). Records beyond the committed
        # offset while the agent sat idle for seconds were dropped or never fetched.
        committed: dict[Any, int | None] = dict(consumer._committed_offset)
        tps = [tp for tp in consumer.assignment() if tp.topic in self.topics]
        if not tps:
            return
        ends = await consumer.highwaters(*tps)
        for tp in tps:
            end, next_committed = ends.get(tp), committed.get(tp)
            if end is None or next_committed is None or end <= next_committed:
                continue
            log.warning("%s[%s]: %s record(s) after committed offset %s but the agent is idle; "
                        "re-reading from %s", tp.topic, tp.partition, end - next_committed,
                        next_committed, next_committed)
            REWINDS.inc()
            consumer.resume_partitions({tp})  # a partition left paused is never fetched
            await consumer.seek(tp, next_committed)
            self.last_event = time.monotonic()
