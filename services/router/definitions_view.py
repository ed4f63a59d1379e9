"""Every approved process version, read from the compacted `flowline.definitions` topic.

A global table: every router worker reads all partitions from the beginning and keeps the last
record per key, so any worker can route any instance. It is a plain aiokafka reader rather than
a faust `GlobalTable` because faust's GlobalTable, pointed at an external changelog topic, hung
in partition assignment on the local broker (measured: 2026-11-22, faust-streaming 0.15.3), and
this topic is not faust's to write: the definitions service publishes it, complete as written.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service
from pydantic import ValidationError

from schemas.graph import ProcessVersion
from schemas.topics import DEFINITION_V1
from services.common.envelopes import MalformedRecord, decode
from services.router.routing import Graph

log = logging.getLogger(__name__)


class DefinitionsView(Service):
    """Process versions by (tenant, key, version), with compiled routing graphs.

    A `mode` service: the faust worker starts it with the app and stops it on shutdown.
    """

    def __init__(self, bootstrap: str, topic: str, fetch_max_wait_ms: int) -> None:
        super().__init__()
        self.bootstrap = bootstrap
        self.topic = topic
        self.fetch_max_wait_ms = fetch_max_wait_ms  # `Settings.fetch_max_wait_ms`
        self._versions: dict[tuple[str, str], dict[int, ProcessVersion]] = defaultdict(dict)
        self._graphs: dict[tuple[str, str, int], Graph] = {}
        self._changed = asyncio.Condition()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def on_start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
        )
        await self._consumer.start()
        partitions = await self._wait_for_partitions()
        self._consumer.assign([TopicPartition(self.topic, p) for p in partitions])
        await self._consumer.seek_to_beginning()
        self._task = asyncio.create_task(self._read(), name="definitions-view")

    async def on_stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer:
            await self._consumer.stop()

    async def _wait_for_partitions(self) -> set[int]:
        assert self._consumer is not None
        for _ in range(600):
            partitions = self._consumer.partitions_for_topic(self.topic)
            if partitions:
                return partitions
            await self._consumer._client.force_metadata_update()  # the topic may be new
            await asyncio.sleep(0.1)
        raise RuntimeError(f"topic {self.topic} does not exist: run `flowline topics`")

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    self._apply(record.key, record.value, record.headers)
            if batches:
                async with self._changed:
                    self._changed.notify_all()

    def _apply(self, key: bytes | None, value: bytes | None, headers: object) -> None:
        try:
            decoded = decode(headers, key, value)  # type: ignore[arg-type]
            if decoded.type != DEFINITION_V1:
                raise MalformedRecord(f"unexpected type {decoded.type}")
            version = ProcessVersion.model_validate(decoded.data)
        except (MalformedRecord, ValidationError) as exc:
            # The definitions service is the only writer; a bad record is a bug there, and
            # skipping it must not stop routing of every other process.
            log.error("ignoring bad definitions record %r: %s", key, exc)
            return
        self._versions[(version.tenant, version.key)][version.version] = version
        self._graphs[(version.tenant, version.key, version.version)] = Graph.of(version)

    def versions(self, tenant: str, key: str) -> dict[int, ProcessVersion]:
        return self._versions.get((tenant, key), {})

    def graph(self, tenant: str, key: str, version: int) -> Graph | None:
        return self._graphs.get((tenant, key, version))

    async def wait_for(self, tenant: str, key: str, version: int | None,
                       wait_seconds: float) -> None:
        """Wait (bounded) for a version to arrive: an approval may be milliseconds ahead."""

        def present() -> bool:
            known = self.versions(tenant, key)
            return bool(known) if version is None else version in known

        if present():
            return
        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(present), wait_seconds)
        except TimeoutError:
            pass

    def __len__(self) -> int:
        return len(self._graphs)
