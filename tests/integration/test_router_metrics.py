"""The router's /metrics shows, per partition, its consumer lag and its table's size (a real broker,
real router processes): lag above 0 while a backlog waits, 0 once it is committed; table counts
exact through overwrites and through a rebalance that moves partitions away and back.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from bench import workload
from bench.kafka_io import produce_all
from bench.stack import prepare
from schemas.messages import StartInstance
from schemas.topics import START_V1
from services.common.envelopes import encode
from services.common.settings import Settings
from services.devstack import Stack
from services.router.app import DEFINITION_WAIT
from services.router.lag import REFRESH_SECONDS
from tests.conftest import free_port, wait_for

pytestmark = pytest.mark.integration
N = 40  # instances
LAG = "flowline_router_consumer_lag"
TABLE = "flowline_router_table_instances"
TOTAL = "flowline_router_instances"

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


@pytest.fixture()
def router(settings: Settings) -> Settings:
    """Topics and the remanufacturing version; each test starts its routers itself."""
    live = settings.model_copy(update={"router_web_port": free_port(), "log_level": "WARNING"})
    asyncio.run(prepare(live))
    return live


@pytest.fixture()
def stacks() -> Iterator[list[Stack]]:
    started: list[Stack] = []
    yield started
    for stack in started:
        stack.stop()


def start(settings: Settings, stacks: list[Stack], worker: int = 0) -> Settings:
    """Start router worker `worker` (its own web port and data dir; one group, one table)."""
    if worker:
        settings = settings.model_copy(update={"router_web_port": free_port(),
                                               "data_dir": settings.data_dir / f"w{worker}"})
    stacks.append(Stack(settings).start(("router",), timeout=90))
    return settings


def scrape(settings: Settings) -> Samples:
    text = httpx.get(f"http://127.0.0.1:{settings.router_web_port}/metrics", timeout=5).text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


def lags(samples: Samples) -> dict[tuple[str, int], float]:
    return {(dict(k)["topic"], int(dict(k)["partition"])): v
            for k, v in samples.get(LAG, {}).items()}


def table(samples: Samples) -> dict[int, float]:
    return {int(dict(k)["partition"]): v for k, v in samples.get(TABLE, {}).items()}


def routed(samples: Samples, kind: str) -> float:
    return samples.get("flowline_router_events_total", {}).get(
        (("result", "routed"), ("topic_kind", kind)), 0.0)


def inputs(settings: Settings) -> set[tuple[str, int]]:
    return {(topic, p) for topic in (settings.requests_topic, settings.completions_topic)
            for p in range(settings.partitions)}


def caught_up(settings: Settings, instances: int, expect: set[tuple[str, int]] | None = None,
              ) -> Samples | None:
    """The samples once every expected input partition shows lag 0 and the table `instances`."""
    s = scrape(settings)
    lag = lags(s)
    want = inputs(settings) if expect is None else expect
    if set(lag) == want and not any(lag.values()) and sum(table(s).values()) == instances:
        return s
    return None


def unknown_process_start(iid: str) -> workload.Record:
    """A start the router waits `DEFINITION_WAIT` seconds on (the process is never published),
    then dead-letters: it holds the records behind it back, so the lag stays above 0."""
    data = StartInstance(instance_id=iid, process="never-published",
                         subject={"type": "part", "id": iid}).dump()  # type: ignore[arg-type]
    headers, value = encode(START_V1, data, service="test", subject=iid)
    return workload.Record(iid.encode(), value, headers)


async def produce_to(bootstrap: str, topic: str, partition: int,
                     records: list[workload.Record]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for r in records:
            await producer.send_and_wait(topic, r.value, key=r.key, headers=r.headers,
                                         partition=partition)
    finally:
        await producer.stop()


def test_lag_counts_the_backlog_down_to_zero_and_the_table_counts_each_instance_once(
        router: Settings, stacks: list[Stack]) -> None:
    # Slow records first on requests[0]: enough that the backlog outlasts three refreshes.
    slow = math.ceil(3 * REFRESH_SECONDS / DEFINITION_WAIT)
    asyncio.run(produce_to(router.kafka_bootstrap, router.requests_topic, 0,
                           [unknown_process_start(f"slow-{n}") for n in range(slow)]))
    ids = [workload.instance_id("m", n) for n in range(N)]
    asyncio.run(produce_all(router.kafka_bootstrap, router.requests_topic,
                            [workload.start_record(iid) for iid in ids]))
    start(router, stacks)

    backlog = wait_for(lambda: lags(scrape(router)).get((router.requests_topic, 0)), 60,
                       what="a positive lag on requests[0] while its backlog waits")
    assert backlog >= slow
    s = wait_for(lambda: caught_up(router, N), 60, what="lag 0 everywhere and N instances")
    assert set(table(s)) == set(range(router.partitions))
    assert s[TOTAL][()] == N
    assert routed(s, "requests") == N

    # Every instance's state is written again: the counts must not grow (RocksDB's own
    # estimate would: it counts overwrites until compaction).
    asyncio.run(produce_all(router.kafka_bootstrap, router.completions_topic,
                            [workload.completion_record(iid, "receive", None) for iid in ids]))
    wait_for(lambda: routed(scrape(router), "completions") == N, 60, what="N routed completions")
    s = wait_for(lambda: caught_up(router, N), 30, what="lag 0 after the completions")
    assert s[TOTAL][()] == N


def test_revoked_partitions_leave_the_gauges_and_come_back_counted(
        router: Settings, stacks: list[Stack]) -> None:
    asyncio.run(produce_all(router.kafka_bootstrap, router.requests_topic,
                            [workload.start_record(workload.instance_id("r", n))
                             for n in range(N)]))
    first = start(router, stacks)
    wait_for(lambda: caught_up(first, N), 60, what="one worker holding every partition")

    # A second worker joins: the first gives half its partitions away, and shows only its own.
    second = start(router, stacks, worker=1)

    def split() -> tuple[Samples, Samples] | None:
        a, b = scrape(first), scrape(second)
        la, lb = lags(a), lags(b)
        if not la or not lb or set(la) & set(lb) or set(la) | set(lb) != inputs(router):
            return None
        ta, tb = table(a), table(b)
        if set(ta) & set(tb) or set(ta) | set(tb) != set(range(router.partitions)):
            return None
        if any(la.values()) or any(lb.values()) or sum(ta.values()) + sum(tb.values()) != N:
            return None
        return a, b

    a, b = wait_for(split, 90, what="two workers, each showing only its own partitions")
    assert a[TOTAL][()] + b[TOTAL][()] == N
    # Input and changelog partitions move together (the table is co-partitioned).
    assert {p for _, p in lags(a)} == set(table(a))

    # It leaves: the first takes every partition back and counts the returned ones again.
    stacks.pop().stop()
    wait_for(lambda: caught_up(first, N), 90, what="the first worker holding everything again")



def batch_sizes(s: Samples) -> tuple[float, float, float]:
    """(batches, records, batches of at most 200 records) from the batch size histogram."""
    buckets = {dict(k).get("le"): v for k, v in s["flowline_router_batch_size_bucket"].items()}
    return (s["flowline_router_batch_size_count"][()], s["flowline_router_batch_size_sum"][()],
            buckets["200.0"])


def test_a_backlog_is_routed_in_batches_of_hundreds(router: Settings,
                                                    stacks: list[Stack]) -> None:
    """Records that pile up while the router runs are taken hundreds at a time, so a produce
    request carries many outputs. faust's own fetch loop handed records over one event-loop
    round at a time: the agent woke between them, and under a backlog its batches averaged
    ~12 records (bench/results/NOTES.md, session 5)."""
    n = 300
    ids = [workload.instance_id("b", i) for i in range(n)]
    asyncio.run(produce_all(router.kafka_bootstrap, router.requests_topic,
                            [workload.start_record(iid) for iid in ids]))
    start(router, stacks)
    before = wait_for(lambda: (lambda s: s if routed(s, "requests") == n else None)(
        scrape(router)), 90, what=f"{n} routed starts")
    # Every instance's next five steps at once, to the running router (the steps in order).
    asyncio.run(produce_all(router.kafka_bootstrap, router.completions_topic,
                            workload.completions("b", n, rounds=5)))
    after = wait_for(lambda: (lambda s: s if routed(s, "completions") == 5 * n else None)(
        scrape(router)), 90, what=f"{5 * n} routed completions")
    (b0, r0, small0), (b1, r1, small1) = batch_sizes(before), batch_sizes(after)
    batches, records = b1 - b0, r1 - r0
    assert records >= 5 * n
    assert batches - (small1 - small0) >= 1, f"no batch above 200 records in {batches}"
    assert records / batches >= 50, f"{batches} batches for {records} records"
