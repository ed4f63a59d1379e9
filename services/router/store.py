"""faust's RocksDB store with each partition's persisted changelog offset kept in memory.

faust writes a table's persisted offset (how far its local copy has applied the changelog)
into RocksDB once per changelog record acknowledged: one RocksDB put per state stored, 2.0 %
of the router's profile samples under load (bench `--profile`, session 11). It is read back
only to recover a partition from that point on: at a rebalance, from this process's own
writes, and at a start, from an earlier process's. The router deletes its RocksDB data at
every start (`main.py`: the changelog is the only truth), so no earlier process's offset is
ever read, and this process's own ones serve as well from memory.

For the same reason the partition databases write no write-ahead log: it exists to recover
RocksDB's own memory after a crash, and after a crash the router starts from the changelog
alone. Each put then changes memory only (~5 µs against ~9 µs with the log, which also wrote
to the log file at every put).
"""

from __future__ import annotations

from typing import Any

import rocksdict
from faust.stores import STORES, rocksdb

SCHEME = "flowline-rocksdb"


class Store(rocksdb.Store):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._offsets: dict[int, int] = {}  # partition → last changelog offset applied

    def persisted_offset(self, tp: Any) -> int | None:
        """The last changelog offset applied to this partition's copy, if any."""
        return self._offsets.get(tp.partition)

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        self._offsets[tp.partition] = offset

    def _open_for_partition(self, partition: int) -> Any:
        db = super()._open_for_partition(partition)
        if isinstance(db, rocksdict.Rdict):
            db.set_write_options(_NO_LOG)
        return db


_NO_LOG = rocksdict.WriteOptions()
_NO_LOG.disable_wal = True  # type: ignore[method-assign,assignment]  # a property; the stub says method


def register() -> None:
    """Make `flowline-rocksdb://` a faust store URL served by `Store`."""
    STORES.aliases.setdefault(SCHEME, f"{__name__}:Store")
