"""kill -9 the router mid-stream, restart it, and hold what came out against the pure core.

Scripted parts (rework loops, a scrap decision, a return) are first run through `decide`
locally: that gives every command the router must emit and every part's end. Then the same
records go to a real router on the session's broker; it is killed with SIGKILL while part of
them is unrouted and the rest arrives while it is down. Afterwards:
- the de-duplicated command stream equals the core's, command by command;
- a command emitted twice (a replay after the kill) has the same content both times;
- every part ended where the core says, with the same terminal status and visit table.

With `exactly_once` (Apache Kafka's transactions) a reader that sees only committed records
(isolation.level=read_committed) gets every command exactly once, kill -9 or not, while a
plain reader may also see the copies an aborted transaction left in the log.
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

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
        self.made: list[list[str]] = []  # per record: the command ids it makes
        self.commands: dict[str, dict[str, Any]] = {}
        self.ends: dict[str, InstanceState] = {}

    def feed(self, part: int, tick: int, state: InstanceState | None, kind: str,
             ce_type: str, msg: StartInstance | StepCompletion) -> InstanceState:
        event_id = f"{msg.instance_id}#{tick}"
        at = T0 + timedelta(minutes=part, seconds=tick)
        d = decide(self.graph, state, msg, event_id, at)
        assert d.rejection is None and d.state is not None, d.rejection
        self.records.append((kind, msg.instance_id, ce_type, msg.dump(), event_id, at))
        self.made.append([cmd.command_id for cmd in d.commands])
        for cmd in d.commands:
            self.commands[cmd.command_id] = cmd.dump()
        return d.state

    def waves(self) -> list[list[int]]:
        """Record indexes by round: the k-th record of every part. A part's record k+1 only
        makes sense once record k was routed (its command is what the operator completes)."""
        per_part: dict[str, list[int]] = {}
        for n, record in enumerate(self.records):
            per_part.setdefault(record[1], []).append(n)
        depth = max(len(v) for v in per_part.values())
        return [[v[k] for v in per_part.values() if k < len(v)] for k in range(depth)]

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


def router_settings(broker: Any, data_dir: Path) -> Settings:
    return Settings(kafka_bootstrap=broker.bootstrap, fetch_max_wait_ms=broker.fetch_max_wait_ms,
                    partitions=4,
                    topic_prefix=f"r{uuid.uuid4().hex[:8]}.", data_dir=data_dir,
                    router_web_port=free_port())


@pytest.fixture()
def router(broker: Any, tmp_path: Path) -> Iterator[Stack]:
    settings = router_settings(broker, tmp_path)
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
        self.log_ends: dict[TopicPartition, int] = {}  # end offsets once everything was read

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


Action = Callable[[], object]


async def run_against_core(settings: Settings, before: dict[int, Action],
                           after: dict[int, Action], committed_only: bool = False) -> Collector:
    """Send the simulated records round by round, the way equipment reports: a part's next
    completion goes out once the command of its previous one was seen. `before[k]` runs
    just before round k is sent (records then arrive while, say, the router is down),
    `after[k]` right after it (with round k in flight). With `committed_only` commands are
    read as a transactional consumer reads them, and each must come exactly once."""
    graph = Graph.of(process_version())
    sim = Simulation(graph).run(f"k{uuid.uuid4().hex[:6]}")
    expected, ends = sim.commands, sim.ends
    producer = EventProducer(settings, "e2e-mes")
    consumer = AIOKafkaConsumer(settings.commands_topic, settings.instance_events_topic,
                                bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level="read_committed" if committed_only
                                else "read_uncommitted")
    seen = Collector(settings)
    topic = {"requests": settings.requests_topic, "completions": settings.completions_topic}

    async def routed(ids: set[str]) -> bool:
        await seen.poll(consumer)
        return ids <= set(seen.commands)

    async def all_ended() -> bool:
        await seen.poll(consumer)
        return len(seen.ends) >= len(ends)

    await producer.start()
    await consumer.start()
    try:
        for k, wave in enumerate(sim.waves()):
            if k in before:
                await asyncio.to_thread(before[k])
            for n in wave:
                kind, key, ce_type, data, event_id, at = sim.records[n]
                await producer.send(topic[kind], key, ce_type, data, event_id=event_id,
                                    time=at, wait=False)
            await producer.flush()
            if k in after:
                await asyncio.to_thread(after[k])
            made = {c for n in wave for c in sim.made[n]}
            await async_wait_for(lambda: routed(made),  # noqa: B023 (awaited right here)
                                 within=120, what=f"the {len(made)} commands of round {k}")
        await async_wait_for(all_ended, within=60, what="every part's completed event")
        seen.log_ends = await consumer.end_offsets(list(consumer.assignment()))
    finally:
        await consumer.stop()
        await producer.stop()

    assert set(seen.commands) == set(expected)
    for command_id, values in seen.commands.items():
        assert len(set(values)) == 1, f"{command_id} emitted with different content"
        if committed_only:
            assert len(values) == 1, f"{command_id} committed {len(values)} times"
        assert json.loads(values[0]) == expected[command_id], command_id
    for iid, state in ends.items():
        assert seen.ends[iid]["terminal_status"] == state.terminal_status, iid
        assert seen.visits[iid] == state.visits, iid
    assert {s.terminal_status for s in ends.values()} == {"completed", "scrapped", "returned"}
    return seen


async def test_kill_9_mid_stream_matches_the_pure_core(router: Stack) -> None:
    router.start(("router",), timeout=90)

    def kill() -> None:
        router.kill("router")  # SIGKILL: whatever was in flight is not committed

    def restart() -> None:
        router.start_service("router")

    def kill_and_restart() -> None:
        kill()
        restart()

    # Round 3 reaches the broker while the router is down; round 6 is in flight at the kill.
    await run_against_core(router.settings, before={3: kill},
                           after={3: restart, 6: kill_and_restart})


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_a_second_router_joins_then_the_first_dies(broker: Any, tmp_path: Path,
                                                         guarantee: str) -> None:
    if guarantee == "exactly_once" and broker.kind != "kafka":
        pytest.skip("transactions need Apache Kafka (Tansu 0.6 has none)")
    first = router_settings(broker, tmp_path / "w0").model_copy(
        update={"router_guarantee": guarantee})
    second = first.model_copy(update={"router_web_port": free_port(),
                                      "data_dir": tmp_path / "w1"})
    await prepare(first)
    with Stack(first) as a, Stack(second) as b:

        def crash_the_first() -> None:
            # It must have lived through the join: with transactions it once crashed in that
            # rebalance's recovery (an unknown changelog end), and this test passed anyway.
            assert a.procs["router"].poll() is None, \
                f"the first router died before it was killed: see {a.log_dir / 'router.log'}"
            a.kill("router")  # leaves by crashing: b takes every partition

        a.start(("router",), timeout=90)
        await run_against_core(first, before={}, after={
            2: lambda: b.start(("router",), timeout=90),  # joins: a rebalance mid-stream
            5: crash_the_first,
        }, committed_only=guarantee == "exactly_once")


@pytest.fixture()
def transactional_router(broker: Any, tmp_path: Path) -> Iterator[Stack]:
    if broker.kind != "kafka":
        pytest.skip("transactions need Apache Kafka (Tansu 0.6 has none)")
    settings = router_settings(broker, tmp_path).model_copy(
        update={"router_guarantee": "exactly_once"})
    asyncio.run(prepare(settings))
    with Stack(settings) as stack:
        yield stack


async def test_exactly_once_commits_each_command_once_across_kill_9(
        transactional_router: Stack) -> None:
    router = transactional_router
    router.start(("router",), timeout=90)

    def kill_and_restart() -> None:
        router.kill("router")  # the open transactions die with it; the restart aborts them
        router.start_service("router")

    def stop_and_restart() -> None:
        router.kill("router", signal.SIGTERM)  # a clean stop commits what it routed, states too
        router.start_service("router")

    seen = await run_against_core(router.settings, before={}, committed_only=True, after={
        2: kill_and_restart, 4: stop_and_restart, 6: kill_and_restart})
    # Transactions were in use: each commit leaves a marker in the log, so the commands
    # topic's offsets run past the records a committed read returns.
    ends = sum(end for tp, end in seen.log_ends.items()
               if tp.topic == router.settings.commands_topic)
    assert ends > sum(len(values) for values in seen.commands.values())
