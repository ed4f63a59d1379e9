"""Per-partition gauges: how far the router is behind on its inputs, and what its table holds.

Lag, per assigned input partition, is the end offset minus the router's *committed* offset,
the offset a restarted worker would read from; with nothing committed yet, the start of the
log (`transport._Consumer.commit_start`). A read position would say less: faust fetches ahead
of what the agent has routed, and the commit waits for every record before it
(`offsets.py`), so the committed offset is the measure of work not yet safe. End offsets come
from `consumer.highwaters`, which `transport.py` corrects by reading the log (the local Tansu
broker reports the last batch's base offset + 1). Both are read only when the worker is
settled (recovery complete, no rebalance under way); a partition revoked in a rebalance loses
its label set at once, so no stale value outlives its assignment.

Table sizes are exact counts of keys per changelog partition, not RocksDB's
`estimate-num-keys` (it counts overwrites until compaction and faust's own offset key: 20,000
keys written once read as 21,585, after six rewrites as 31,531; measured 2026-11-22). Each
partition database is counted once when it becomes active after recovery, a key scan in
chunks so routing goes on; from then on the router reports each instance it stores for the
first time (`TableSizes.added`), since nothing deletes one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from faust.types import TP

from services.router import metrics

log = logging.getLogger(__name__)
REFRESH_SECONDS = 2.0
SCAN_CHUNK = 10_000  # keys counted between yields to the event loop


class TableSizes:
    """Instances per changelog partition of the (RocksDB) table this worker holds."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self._counts: dict[int, int] = {}
        self._dbs: dict[int, Any] = {}  # the database each count belongs to
        self._scanning: dict[int, int] = {}  # partition -> instances added since its scan began

    def added(self, partition: int) -> None:
        """The router stored an instance the table did not hold (in `partition`)."""
        if partition in self._counts:
            self._counts[partition] += 1
        elif partition in self._scanning:
            self._scanning[partition] += 1

    def counts(self) -> dict[int, int]:
        return dict(self._counts)

    async def refresh(self) -> None:
        """Forget partitions no longer active (or reopened), count newly active ones.

        Call only once recovery is complete: a partition being recovered is still filling.
        """
        active = self._active()
        for p in list(self._counts):
            if active.get(p) is not self._dbs[p]:
                del self._counts[p], self._dbs[p]
        for p, db in active.items():
            if p not in self._counts:
                n = await self._scan(p, db)
                if self._active().get(p) is db:  # not revoked while it was counted
                    self._counts[p], self._dbs[p] = n, db

    def _active(self) -> dict[int, Any]:
        store = self.table.data
        topic = self.table.changelog_topic_name
        actives = self.table.app.assignor.assigned_actives()
        return {p: db for p, db in store._dbs.items() if TP(topic, p) in actives}

    async def _scan(self, partition: int, db: Any) -> int:
        # A RocksDB iterator reads the snapshot taken when it is created: a key stored later is
        # not seen by it and is counted by `added` instead. Nothing awaits in between.
        offset_key = self.table.data.offset_key
        it = db.iter()
        it.seek_to_first()
        self._scanning[partition] = 0
        try:
            n = seen = 0
            while it.valid():
                if it.key() != offset_key:
                    n += 1
                it.next()
                seen += 1
                if seen % SCAN_CHUNK == 0:
                    await asyncio.sleep(0)
            return n + self._scanning[partition]
        finally:
            del self._scanning[partition]


class PartitionGauges:
    """Refreshes `flowline_router_consumer_lag`, `flowline_router_table_instances` and the
    total `flowline_router_instances`."""

    def __init__(self, app: Any, table: Any, inputs: set[str]) -> None:
        self.app = app
        self.inputs = inputs
        self.sizes = TableSizes(table)
        self._lagging: set[tuple[str, int]] = set()  # label sets of the lag gauge
        self._sized: dict[int, int] = {}  # label sets of the table gauge, and their values
        app.on_partitions_revoked.connect(self._on_revoked)

    async def refresh(self) -> None:
        """Never raises: a metric must not take the router down."""
        try:
            await self._refresh()
        except Exception:
            log.exception("refreshing the partition gauges failed")

    async def _refresh(self) -> None:
        app = self.app
        rebalances = app.rebalancing_count

        def settled() -> bool:
            # After each await: a rebalance that began meanwhile has revoked the partitions
            # read, and `_on_revoked` has removed their labels; none may be set again.
            return bool(app.tables.recovery.completed.is_set() and not app.rebalancing
                        and app.rebalancing_count == rebalances)

        if not settled():
            return
        consumer = app.consumer
        tps = [tp for tp in consumer.assignment() if tp.topic in self.inputs]
        ends = await consumer.highwaters(*tps) if tps else {}
        if not settled():
            return
        lagging = set()
        for tp in tps:
            start, end = consumer.commit_start(tp), ends.get(tp)
            if start is not None and end is not None:
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, end - start))
                lagging.add((tp.topic, tp.partition))
        for topic, partition in self._lagging - lagging:
            metrics.CONSUMER_LAG.remove(topic, str(partition))
        self._lagging = lagging
        await self.sizes.refresh()
        if not settled():
            return
        counts = self.sizes.counts()
        for p in self._sized.keys() - counts.keys():
            metrics.TABLE_INSTANCES.remove(str(p))
        for p, n in counts.items():
            metrics.TABLE_INSTANCES.labels(str(p)).set(n)
        self._sized = counts
        metrics.INSTANCES.set(sum(counts.values()))

    async def _on_revoked(self, sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        # aiokafka revokes every partition when a rebalance starts; those kept come back at
        # the first refresh after it (a kept table partition with its count: `TableSizes`
        # keeps a count while its database stays open).
        changelog = self.sizes.table.changelog_topic_name
        for tp in revoked:
            if (tp.topic, tp.partition) in self._lagging:
                metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition))
                self._lagging.discard((tp.topic, tp.partition))
            if tp.topic == changelog and tp.partition in self._sized:
                metrics.TABLE_INSTANCES.remove(str(tp.partition))
                del self._sized[tp.partition]
        metrics.INSTANCES.set(sum(self._sized.values()))
