"""faust's aiokafka transport, with two corrections. Registered as the `flowline://` scheme.

1. A configurable fetch wait. faust hardcodes `fetch_max_wait_ms=1500`; Apache Kafka answers a
   fetch as soon as data arrives, but the local Tansu broker polls, so each hop through the
   router took ~0.75 s (measured 2026-11-22). `FLOWLINE_FETCH_MAX_WAIT_MS` sets it (20 ms).

2. No silent gaps. When the offsets faust delivers jump (4 after 2), faust records the missing
   offsets as a "gap" and commits past them as if acknowledged: right for compacted topics and
   transaction markers, where nothing is there. But around a restart faust also drops records
   it fetched while flow was suspended, and then the "gap" is a real completion that was never
   routed: committed, so lost (seen in e2e traces, 2026-11-22, faust-streaming 0.15.3). So the
   first time a gap shows up it is not acknowledged: the commit stops before it and the stall
   healer (`stall.py`) re-reads from there. A gap that shows up again at the same offsets after
   that re-read has nothing in it, and is acknowledged then.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from faust.transport import drivers
from faust.transport.drivers import aiokafka as faust_aiokafka

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

    async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
        suspects: set[tuple[Any, int, int]] = self.__dict__.setdefault("_suspect_gaps", set())
        gap = (tp, offset_from, offset_to)
        if gap in suspects:  # re-read and still nothing there: a marker, not a lost record
            suspects.discard(gap)
            await super()._add_gap(tp, offset_from, offset_to)
            return
        suspects.add(gap)
        log.warning("%s[%s]: offsets %s..%s were never delivered; the commit waits before them "
                    "until they are read again", tp.topic, tp.partition, offset_from, offset_to)


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


def register() -> None:
    """Make `flowline://host:port` a faust broker URL served by this transport."""
    drivers.TRANSPORTS.aliases.setdefault("flowline", f"{__name__}:Transport")
