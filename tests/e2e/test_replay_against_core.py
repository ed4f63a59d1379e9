"""kill -9 the router mid-stream, restart it, and hold what came out against the pure core.

Scripted parts (rework loops, a scrap decision, a return) are first run through `decide`
locally: that gives every command the router must emit and every part's end. Then the same
records go to a real router on the session's broker; it is killed with SIGKILL while part of
them is unrouted and the rest arrives while it is down. Afterwards:
- the de-duplicated command stream equals the core's, command by command;
- a command emitted twice (a replay after the kill) has the same content both times;
- every part ended where the core says, with the same terminal status and visit table.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from bench.stack import prepare
from bench.workload import process_version
from schemas.messages import StartInstance, StepCompletion, Subject
from schemas.topics import COMMAND_V1, COMPLETED_V1, START_V1
from services.common.envelopes import decode
from services.common.kafka import EventProducer
from services.common.settings import Settings
from services.devstack import Stack
from services.router.routing import Graph, InstanceState, decide
from tests.conftest import async_wait_for, free_port

pytestmark = pytest.mark.durability
PARTS = 24
T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


def outcome(part: int, step: str, visit: int) -> str | None:
    """The script: inspect fails `part % 5` times (4+ ends in the scrap decision), final QA
    fails once for every third part, the scrap decision alternates scrap and return."""
    if step == "inspect":
        return "fail" if visit <= part % 5 else "pass"
    if step == "final_qa":
        return "fail" if part % 3 == 0 and visit == 1 else "pass"
    if step == "scrap_decision":
        return "scrap" if part % 2 else "return"
    return None


Record = tuple[str, str, str, dict[str, Any], str, datetime]  # topic kind, key, type, ...


class Simulation:
    """Runs scripted parts through `decide`; keeps the records to send and what came out."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.records: list[Record] = []
        self.commands: dict[str, dict[str, Any]] = {}
        self.ends: dict[str, InstanceState] = {}

    def feed(self, part: int, tick: int, state: InstanceState | None, kind: str,
             ce_type: str, msg: StartInstance | StepCompletion) -> InstanceState:
        event_id = f"{msg.instance_id}#{tick}"
        at = T0 + timedelta(minutes=part, seconds=tick)
        d = decide(self.graph, state, msg, event_id, at)
        assert d.rejection is None and d.state is not None, d.rejection
        self.records.append((kind, msg.instance_id, ce_type, msg.dump(), event_id, at))
        for cmd in d.commands:
            self.commands[cmd.command_id] = cmd.dump()
        return d.state

    def run(self, run: str) -> Simulation:
        for part in range(PARTS):
            iid = f"{run}-{part:03d}"
            state = self.feed(part, 0, None, "requests", START_V1, StartInstance(
                instance_id=iid, process=self.graph.version.key,
                subject=Subject(type="part", id=iid)))
            tick = 0
            while state.active:
                tick += 1
                [(step, visit)] = state.active.items()
                state = self.feed(part, tick, state, "completions", COMPLETED_V1,
                                  StepCompletion(instance_id=iid, step=step, visit=visit,
                                                 outcome=outcome(part, step, visit)))
            self.ends[iid] = state
        return self


@pytest.fixture()
def router(broker: Any, tmp_path: Path) -> Iterator[Stack]:
    settings = Settings(kafka_bootstrap=broker.bootstrap, partitions=4,
                        topic_prefix=f"r{uuid.uuid4().hex[:8]}.", data_dir=tmp_path,
                        router_web_port=free_port())
    asyncio.run(prepare(settings))
    with Stack(settings) as stack:
        yield stack


class Collector:
    """Every record of the commands and instance-events topics, from the beginning."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.commands: dict[str, list[bytes]] = {}
        self.ends: dict[str, dict[str, Any]] = {}
        self.visits: dict[str, dict[str, int]] = {}  # the last visit table each part showed

    async def poll(self, consumer: AIOKafkaConsumer) -> None:
        batches = await consumer.getmany(timeout_ms=200)
        for records in batches.values():
            for r in records:
                ce = decode(r.headers, r.key, r.value)
                if r.topic == self.settings.commands_topic:
                    assert ce.type == COMMAND_V1
                    self.commands.setdefault(ce.id, []).append(r.value)
                else:
                    if ce.data.get("visits") is not None:
                        self.visits[ce.data["instance_id"]] = ce.data["visits"]
                    if ce.data.get("kind") == "completed":
                        self.ends[ce.data["instance_id"]] = ce.data


async def test_kill_9_mid_stream_matches_the_pure_core(router: Stack) -> None:
    settings = router.settings
    graph = Graph.of(process_version())
    sim = Simulation(graph).run(f"k{uuid.uuid4().hex[:6]}")
    records, expected, ends = sim.records, sim.commands, sim.ends
    producer = EventProducer(settings, "e2e-mes")
    consumer = AIOKafkaConsumer(settings.commands_topic, settings.instance_events_topic,
                                bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    seen = Collector(settings)
    topic = {"requests": settings.requests_topic, "completions": settings.completions_topic}

    async def send(batch: list[Record]) -> None:
        for kind, key, ce_type, data, event_id, at in batch:
            await producer.send(topic[kind], key, ce_type, data, event_id=event_id, time=at,
                                wait=False)
        await producer.flush()

    async def commands_at_least(n: int) -> bool:
        await seen.poll(consumer)
        return len(seen.commands) >= n

    await producer.start()
    await consumer.start()
    try:
        router.start(("router",), timeout=90)
        half = len(records) // 2
        await send(records[:half])
        await async_wait_for(lambda: commands_at_least(len(expected) // 4), within=90,
                             what="a quarter of the commands before the kill")
        router.kill("router")  # SIGKILL: whatever was in flight is not committed
        await send(records[half:])  # accepted by the broker while the router is down
        router.start_service("router")
        await async_wait_for(lambda: commands_at_least(len(expected)), within=180,
                             what=f"all {len(expected)} commands after the restart")

        async def all_ended() -> bool:
            await seen.poll(consumer)
            return len(seen.ends) >= len(ends)

        await async_wait_for(all_ended, within=60, what="every part's completed event")
    finally:
        await consumer.stop()
        await producer.stop()

    assert set(seen.commands) == set(expected)
    for command_id, values in seen.commands.items():
        assert len(set(values)) == 1, f"{command_id} emitted with different content"
        assert json.loads(values[0]) == expected[command_id], command_id
    for iid, state in ends.items():
        assert seen.ends[iid]["terminal_status"] == state.terminal_status, iid
        assert seen.visits[iid] == state.visits, iid
    assert {s.terminal_status for s in ends.values()} == {"completed", "scrapped", "returned"}
