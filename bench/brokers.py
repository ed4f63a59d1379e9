"""Start the broker a run measures against (or use an external one) and name its version."""

from __future__ import annotations

import re
from pathlib import Path

from services.common.brokers import (
    DEFAULT_KAFKA_LIBS,
    ApacheKafkaBroker,
    ExternalBroker,
    LocalBroker,
    TansuBroker,
    find_tansu,
)


def make_broker(kind: str, bootstrap: str | None, data_dir: Path) -> LocalBroker:
    if bootstrap:
        return ExternalBroker(bootstrap, kind="tansu" if kind == "tansu" else "kafka")
    if kind == "tansu":
        return TansuBroker(data_dir=data_dir / "tansu")
    return ApacheKafkaBroker(data_dir=data_dir / "kafka")


def broker_version(broker: LocalBroker) -> str:
    if isinstance(broker, ExternalBroker):
        return "external"
    if broker.kind == "kafka":
        jars = sorted(DEFAULT_KAFKA_LIBS.glob("kafka_2.13-*.jar"))
        match = re.search(r"kafka_2\.13-([\d.]+)\.jar", jars[0].name) if jars else None
        return f"Apache Kafka {match.group(1) if match else '?'} (KRaft, single node)"
    name = Path(find_tansu()).name
    match = re.search(r"tansu-v([\w.\-]+)", name)
    return f"Tansu {match.group(1) if match else name} (memory storage)"


def broker_data_dir(broker: LocalBroker) -> Path | None:
    return broker.data_dir if isinstance(broker, ApacheKafkaBroker) else None


def broker_pid(broker: LocalBroker) -> int | None:
    return getattr(broker, "pid", None)
