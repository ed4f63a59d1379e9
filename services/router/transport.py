"""faust's aiokafka transport, with two corrections. Registered as the `flowline://` scheme.

1. A configurable fetch wait. faust hardcodes `fetch_max_wait_ms=1500`; Apache Kafka answers a
   fetch as soon as data arrives, but the local Tansu broker polls, so each hop through the
   router took ~0.75 s (measured 2026-11-22). `FLOWLINE_FETCH_MAX_WAIT_MS` sets it (20 ms).

2. Commits that never skip a record. faust's own commit bookkeeping loses records around a
   restart (`offsets.py` says how); here the commit point comes from `offsets.commit_point`,
   and a partition with nothing committed yet is sought to the start of its log after each
   rebalance, since aiokafka leaves it wherever the fetcher had got to. faust's own "gap"
   detection is ignored: holes are confirmed empty only by reading the log (`stall.py`).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from typing import Any

from faust.transport import drivers
from faust.transport.drivers import aiokafka as faust_aiokafka

from services.router.offsets import commit_point

log = logging.getLogger(__name__)


def fetch_max_wait_ms() -> int:
    return int(os.environ.get("FLOWLINE_FETCH_MAX_WAIT_MS", "20"))


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = fetch_max_wait_ms()  # read when the consumer starts
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._log_starts: dict[Any, int] = {}
        self._empty: defaultdict[Any, list[tuple[int, int]]] = defaultdict(list)

    def commit_start(self, tp: Any) -> int | None:
        """The next offset to commit from: the committed one, else the start of the log."""
        committed = self._committed_offset[tp]
        return int(committed) if committed else self._log_starts.get(tp)

    def acked_offsets(self, tp: Any) -> list[int]:
        return list(self._acked[tp])

    def confirm_empty(self, tp: Any, lo: int, hi: int) -> None:
        """Offsets [lo, hi) were read from the log and hold no record: commit past them."""
        self._empty[tp].append((lo, hi))

    def _new_offset(self, tp: Any) -> int | None:
        start = self.commit_start(tp)
        index: set[int] = self._acked_index[tp]
        if start is None or not index:
            return None
        point = commit_point(start, index, self._empty[tp])
        if point is None:
            return None
        self._acked[tp] = [o for o in self._acked[tp] if o >= point]
        index.difference_update([o for o in index if o < point])
        self._empty[tp] = [(lo, hi) for lo, hi in self._empty[tp] if hi > point]
        return point

    async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
        log.debug("%s[%s]: faust saw a jump to %s; the commit waits for offsets.commit_point",
                  tp.topic, tp.partition, offset_to)

    async def perform_seek(self) -> None:
        await super().perform_seek()
        fresh = [tp for tp in self.assignment()
                 if self.app.topics.acks_enabled_for(tp.topic) and not self._committed_offset[tp]]
        if not fresh:
            return
        starts = await self.earliest_offsets(*fresh)
        for tp in fresh:
            start = starts.get(tp)
            if start is None:
                continue
            self._log_starts[tp] = start
            await self.seek(tp, start)


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


def register() -> None:
    """Make `flowline://host:port` a faust broker URL served by this transport."""
    drivers.TRANSPORTS.aliases.setdefault("flowline", f"{__name__}:Transport")
