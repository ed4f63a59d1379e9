"""Start the broker a run measures against (or use an external one) and name its version.

For an external broker on this machine (`--bootstrap 127.0.0.1:PORT`, e.g. one started with
`flowline broker --kind kafka`), the process listening on the port is found through /proc, so
its CPU is booked as ours rather than as other people's load, and an Apache Kafka broker's
data dir and version are read from its command line and `server.properties`.
"""

from __future__ import annotations

import os
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


def _kafka_jar_version() -> str:
    jars = sorted(DEFAULT_KAFKA_LIBS.glob("kafka_2.13-*.jar"))
    match = re.search(r"kafka_2\.13-([\d.]+)\.jar", jars[0].name) if jars else None
    return match.group(1) if match else "?"


def broker_version(broker: LocalBroker) -> str:
    if isinstance(broker, ExternalBroker):
        cmdline = _cmdline(broker_pid(broker))
        if "kafka.Kafka" in cmdline:
            return f"Apache Kafka {_kafka_jar_version()} (KRaft, single node; external)"
        return "external"
    if broker.kind == "kafka":
        return f"Apache Kafka {_kafka_jar_version()} (KRaft, single node)"
    name = Path(find_tansu()).name
    match = re.search(r"tansu-v([\w.\-]+)", name)
    return f"Tansu {match.group(1) if match else name} (memory storage)"


def broker_data_dir(broker: LocalBroker) -> Path | None:
    if isinstance(broker, ApacheKafkaBroker):
        return broker.data_dir
    if isinstance(broker, ExternalBroker):
        # `flowline broker --data-dir D` runs Kafka with D/server.properties and log.dirs=D/data
        for arg in _cmdline(broker_pid(broker)).split("\0"):
            if arg.endswith("server.properties") and Path(arg).is_file():
                return Path(arg).parent
    return None


def broker_pid(broker: LocalBroker) -> int | None:
    if isinstance(broker, ExternalBroker):
        host, _, port = broker.bootstrap.rpartition(":")
        return listening_pid(int(port)) if host in ("127.0.0.1", "localhost") else None
    return getattr(broker, "pid", None)


def _cmdline(pid: int | None) -> str:
    if pid is None:
        return ""
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:
        return ""


def listening_pid(port: int) -> int | None:
    """The process with a TCP socket listening on `port`, or None (not ours to see)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                inodes.add(f"socket:[{inode}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(proc.name)
        except OSError:
            continue
    return None
