"""faust's aiokafka transport with a configurable fetch wait.

faust hardcodes `fetch_max_wait_ms=1500` for its worker consumer. Apache Kafka answers a fetch as
soon as data arrives, so that costs nothing there; the local Tansu broker polls, so each hop
through the router took ~0.75 s (measured 2026-11-22). Registered as the `flowline://` broker
scheme; `FLOWLINE_FETCH_MAX_WAIT_MS` sets the wait.
"""

from __future__ import annotations

import os
from typing import Any

from faust.transport import drivers
from faust.transport.drivers import aiokafka as faust_aiokafka


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


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


def register() -> None:
    """Make `flowline://host:port` a faust broker URL served by this transport."""
    drivers.TRANSPORTS.aliases.setdefault("flowline", f"{__name__}:Transport")
