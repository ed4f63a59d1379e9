"""A local broker plus the four services on free ports: what `flowline dev` and the demo run."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.common.brokers import LocalBroker, broker_from_env
from services.common.settings import Settings
from services.devstack import Stack


def port_or_free(preferred: int) -> int:
    """`preferred` when nothing listens there, else any free port."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


def local_settings(broker: LocalBroker, data_dir: Path) -> Settings:
    ports = [port_or_free(p) for p in (8100, 8101, 8102, 8103)]
    return Settings(
        kafka_bootstrap=broker.bootstrap,
        fetch_max_wait_ms=broker.fetch_max_wait_ms,
        data_dir=data_dir,
        gateway_port=ports[0],
        definitions_url=f"http://127.0.0.1:{ports[1]}",
        tasks_url=f"http://127.0.0.1:{ports[2]}",
        router_web_port=ports[3],
        partitions=4,  # plenty for one machine; production uses 12+
    )


@contextmanager
def dev_stack(broker_kind: str = "tansu",
              data_dir: Path = Path(".flowline/dev")) -> Iterator[tuple[Stack, LocalBroker]]:
    """Start a broker and every service; stop them all on exit, whatever happened."""
    # The local broker keeps topics in memory, so yesterday's databases would describe
    # instances the new broker never saw: start clean.
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    broker = broker_from_env(broker_kind)
    broker.start()
    try:
        stack = Stack(local_settings(broker, data_dir.resolve()))
        try:
            stack.start()
            yield stack, broker
        finally:
            stack.stop()
    finally:
        broker.stop()
