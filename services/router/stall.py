"""Re-read records that faust fetched but never delivered.

faust resumes stream partitions before it seeks them to their committed offsets, and while flow
is suspended during a rebalance its fetch loop drops messages but still advances its read
position. After a `kill -9` restart on the local broker (two rebalances in quick succession as
the dead member is expired) this left partitions with their position at the end of the log and
their committed offset behind it: nothing lost, since nothing was committed, but nothing routed
either until the next rebalance (measured: 2 of 3 e2e runs, 2026-11-22, faust-streaming 0.15.3).

The check: when the agent has been idle for a while and a partition's committed offset trails
its fetch position, seek back to the committed offset. Re-reading is safe by construction:
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
        # faust's own bookkeeping, kept on this loop (the aiokafka consumer lives on faust's
        # consumer thread and must not be called from here): the last offset read per
        # partition, and the next offset committed.
        read: dict[Any, int | None] = dict(consumer._read_offset)
        committed: dict[Any, int | None] = dict(consumer._committed_offset)
        for tp in consumer.assignment():
            if tp.topic not in self.topics:
                continue
            last_read = read.get(tp)
            if last_read is None:
                continue
            next_committed = committed.get(tp)
            if next_committed is None:
                next_committed = (await consumer.earliest_offsets(tp)).get(tp) or 0
            if last_read >= next_committed:
                log.warning("%s[%s]: read up to offset %s but committed only up to %s while "
                            "idle; re-reading from %s", tp.topic, tp.partition, last_read,
                            next_committed, next_committed)
                REWINDS.inc()
                await consumer.seek(tp, next_committed)
                self.last_event = time.monotonic()
