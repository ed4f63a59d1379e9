"""The router's table store keeps each partition's applied changelog offset in memory."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from faust.types import TP

from services.common.settings import Settings
from services.router import store
from services.router.app import create_app


def test_the_router_table_keeps_persisted_offsets_in_memory_not_in_rocksdb(
        tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, partitions=4))
    table: Any = app.tables["instances"]
    data = table.data  # the store faust built from the app's store URL
    assert isinstance(data, store.Store)
    tp = TP(table.changelog_topic.get_topic_name(), 3)
    assert data.persisted_offset(tp) is None
    data.set_persisted_offset(tp, 41)
    data.set_persisted_offset(tp, 42)
    assert data.persisted_offset(tp) == 42
    assert data.persisted_offset(TP(tp.topic, 1)) is None
    # No put per changelog record: RocksDB holds no offset for the partition.
    assert data._db_for_partition(3).get(data.offset_key) is None


def test_the_router_table_writes_no_rocksdb_log_and_keeps_its_data_when_revoked(
        tmp_path: Path) -> None:
    """The router rebuilds its RocksDB copy from the changelog at every start, so a put need
    only change memory: the partition's write-ahead log stays empty. A partition revoked and
    assigned again in the same process is read from its database, and its persisted offset
    says so: closing the database (faust drops it) must keep what only memory held."""
    app = create_app(Settings(data_dir=tmp_path, partitions=4))
    data: Any = app.tables["instances"].data
    db = data._db_for_partition(2)
    for n in range(200):
        db.put(f"instance-{n}".encode(), b"x" * 800)
    assert db.get(b"instance-199") == b"x" * 800
    logs = list(data.partition_path(2).glob("*.log"))
    assert logs and sum(log.stat().st_size for log in logs) == 0
    data._dbs.pop(2)  # what faust's `revoke_partitions` does
    del db
    gc.collect()
    assert data._db_for_partition(2).get(b"instance-199") == b"x" * 800
