"""Broker disk used by a topic (Apache Kafka only: Tansu keeps everything in memory)."""

from __future__ import annotations

from pathlib import Path


def log_dir(broker_data_dir: Path | None) -> Path | None:
    """The broker's `log.dirs` (`<data dir>/data`, as Flowline runs Kafka), or None when its
    files are not ours to see."""
    root = None if broker_data_dir is None else broker_data_dir / "data"
    return root if root is not None and root.is_dir() else None


def topic_bytes(broker_data_dir: Path | None, topic: str) -> int | None:
    """Bytes of `topic`'s log segments, or None when the broker's files are not ours to see."""
    if (root := log_dir(broker_data_dir)) is None:
        return None
    total = 0
    for part in root.glob(f"{topic}-*"):
        if part.name.rsplit("-", 1)[0] != topic:
            continue
        total += sum(f.stat().st_size for f in part.glob("*.log"))
    return total


def partition_dirs(broker_data_dir: Path | None, prefixes: tuple[str, ...]) -> list[str]:
    """The broker's partition directories of topics named with one of `prefixes`, live or
    deleted and not yet removed (`<topic>-<partition>.<id>-delete`); [] when not ours to see."""
    if (root := log_dir(broker_data_dir)) is None or not prefixes:
        return []
    return sorted(d.name for d in root.iterdir() if d.name.startswith(prefixes))


def changelog_topic(router_app_id: str, table: str = "instances") -> str:
    """faust names a table's changelog `<app id>-<table>-changelog`."""
    return f"{router_app_id}-{table}-changelog"


def changelog_figures(broker_data_dir: Path | None, router_app_id: str,
                      instances: int) -> dict[str, float]:
    """Broker disk used by the router's instance changelog, total and per instance ({} when
    the broker's data dir is not ours to read)."""
    size = topic_bytes(broker_data_dir, changelog_topic(router_app_id))
    if size is None:
        return {}
    return {"changelog_bytes": size, "changelog_bytes_per_instance": round(size / instances, 1)}
