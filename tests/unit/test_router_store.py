"""The router's table store keeps each partition's applied changelog offset in memory."""

from __future__ import annotations

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
