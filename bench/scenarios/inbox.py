"""Completion → inbox row committed, and the gateway's POST latency under load.

The whole stack runs (definitions, tasks with its SQLite inbox, router, gateway), each service
its own process as in production. 2 × M instances are started and the bench waits until each
has its first inbox row. The first M go through every round unmeasured, exactly as the measured
ones will, then the measured M make one round through Kafka unmeasured (the warm-up). Then
rounds of one completion per instance at `inbox_rate`/s, paced:

- `kafka`: completions produced straight to `step-completions` (linger 0, as equipment would);
- `gateway`: the same, as `POST /v1/instances/{id}/completions` from concurrent clients.

Each completion makes the router enter the next step, and the tasks service insert that step's
inbox row (command id `instance/step/1`). A reader thread polls the tasks database every
`POLL_S` for new rows: it sees a row once its transaction is committed (SQLite readers see
only commits), so `inbox_ms` = first seen − send (an upper bound, by at most `POLL_S`).
`command_ms` = the router's step command's CreateTime − send: the router's part of it.
`post_ms` = POST sent → 202 received, client side. `rows_per_second`: how fast rows appeared.

Why the warm-up is a whole pass: a JVM compiles its hot code as traffic reaches it, and traffic
at 200/s reaches it slowly. With one warm-up round, the broker's JIT compiler threads took
0.23-0.29 of a core during the measured rounds (bench/results/NOTES.md, session 13), even after
the bench's 90 s generic warm-up: this scenario's requests take paths the generic one does not.
A broker in service has long compiled them; the measured rounds should meet one like it, and
`broker_jit_cores` says how far they did.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer

from bench import workload
from bench.context import Context
from bench.gcpause import no_collections
from bench.kafka_io import Seen, TopicReader, produce_all
from bench.machine import CpuMeter
from bench.pacing import paced_send
from bench.stack import prepare, stack_settings
from bench.stats import percentiles
from services.devstack import Stack

POLL_S = 0.002
SERVICES = ("definitions", "tasks", "router", "gateway")


class InboxWatcher:
    """Notes when each task row (by command id) first becomes visible in the tasks DB."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inbox-watcher", daemon=True)

    def start(self) -> InboxWatcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        conn = None
        last = 0
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=1.0)
                rows = conn.execute("SELECT rowid, command_id FROM tasks WHERE rowid > ? "
                                    "ORDER BY rowid", (last,)).fetchall()
            except sqlite3.Error:  # not created yet, or migrating: try again
                rows = []
                if conn is not None:
                    conn.close()
                    conn = None
            now = time.time()
            for rowid, command_id in rows:
                self.seen.setdefault(command_id, now)
                last = max(last, rowid)
            self._stop.wait(POLL_S)
        if conn is not None:
            conn.close()

    async def wait_for(self, ids: list[str], within: float) -> int:
        """Wait until every command id in `ids` has a row; returns how many are missing."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            missing = sum(1 for i in ids if i not in self.seen)
            if not missing:
                return 0
            await asyncio.sleep(0.05)
        return sum(1 for i in ids if i not in self.seen)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def next_step(round_: int) -> str:
    """The step the completion of workload.PATH[round_] leads to."""
    return workload.PATH[round_ + 1][0] if round_ + 1 < len(workload.PATH) else "ship"


async def run(ctx: Context) -> dict[str, Any]:
    sizes = ctx.sizes
    m, rate = sizes.inbox_instances, sizes.inbox_rate
    settings = stack_settings(ctx, "i")
    await prepare(settings)
    meter = CpuMeter()
    meter.track(ctx.broker_pid, "broker")
    stack = Stack(settings)
    tag = settings.topic_prefix.rstrip(".")
    warm_tag = f"{tag}w"  # instances that go through every round unmeasured, first
    iids = [workload.instance_id(tag, n) for n in range(m)]
    warm_iids = [workload.instance_id(warm_tag, n) for n in range(m)]
    watcher = InboxWatcher(settings.data_dir / "tasks.db")
    created: dict[str, int] = {}  # command id -> the router's CreateTime (ms)

    def on_command(seen: Seen) -> None:
        created.setdefault(json.loads(seen.value)["command_id"], seen.create_ms)

    commands = await TopicReader(ctx.bootstrap, settings.commands_topic, keep=False,
                                 fetch_max_wait_ms=settings.fetch_max_wait_ms,
                                 on_record=on_command).start()
    result: dict[str, Any] = {"instances": m, "rate": rate}
    try:
        await asyncio.to_thread(stack.start, SERVICES, 90)
        for service in SERVICES:
            meter.track(stack.procs[service].pid, service)
        watcher.start()
        await produce_all(ctx.bootstrap, settings.requests_topic,
                          workload.starts(warm_tag, m) + workload.starts(tag, m))
        first = [f"{iid}/{workload.PATH[0][0]}/1" for iid in warm_iids + iids]
        if missing := await watcher.wait_for(first, within=60 + 2 * m / 20):
            raise RuntimeError(f"{missing}/{2 * m} instances have no inbox row for their first "
                               "step")
        rounds = len(workload.PATH)
        phases = (("kafka", "Kafka", _via_kafka), ("gateway", "the gateway", _via_gateway))
        # Unmeasured: M other instances through every round, as the measured ones will go
        # (the broker's JIT meets this scenario's requests), then the measured ones' first
        # round through Kafka (the services' first second after a start pays for paths taken
        # the first time: `latency.py`).
        ctx.say(f"inbox: warm-up: {m} other instances through all {rounds} rounds at "
                f"{rate:.0f}/s, then round 0 of the measured ones via Kafka")
        warm: dict[str, float] = {}
        began = time.monotonic()
        for path, _, send in phases:
            for r in _rounds(path, rounds, warm=True):
                await send(ctx, settings, warm_tag, m, r, rate, warm, [])
        await _via_kafka(ctx, settings, tag, m, 0, rate, warm, [])
        if missing := await watcher.wait_for(list(warm), within=30 + len(warm) / 50):
            raise RuntimeError(f"{missing}/{len(warm)} warm-up completions made no inbox row")
        result["warmup"] = {"completions": len(warm),
                            "seconds": round(time.monotonic() - began, 1)}
        for path, name, send in phases:
            measured = _rounds(path, rounds, warm=False)
            ctx.say(f"inbox: rounds {measured.start}..{measured.stop - 1} × {m} completions "
                    f"via {name} at {rate:.0f}/s")
            sent: dict[str, float] = {}
            post_ms: list[float] = []
            counted: dict[str, int] = {}
            with no_collections(counted):  # the bench's clock must not stop (bench/gcpause.py)
                began = time.monotonic()
                phase = CpuMeter()  # the broker's compiler threads meanwhile: ~0 once warm
                phase.track(ctx.broker_pid, "broker")
                for r in measured:
                    await send(ctx, settings, tag, m, r, rate, sent, post_ms)
                achieved = round(len(sent) / (time.monotonic() - began), 1)
                missing = await watcher.wait_for(list(sent), within=30 + len(sent) / 50)
            inbox = [1000 * (watcher.seen[c] - t) for c, t in sent.items() if c in watcher.seen]
            seen = sorted(watcher.seen[c] for c in sent if c in watcher.seen)
            rows_rate = round((len(seen) - 1) / (seen[-1] - seen[0]), 1) \
                if len(seen) > 1 and seen[-1] > seen[0] else None
            routed = [created[c] - 1000 * t for c, t in sent.items() if c in created]
            result[path] = {"completions": len(sent), "achieved_rate": achieved,
                            "missing_rows": missing, "inbox_ms": percentiles(inbox),
                            "command_ms": percentiles(routed), "rows_per_second": rows_rate,
                            **counted}
            if "broker" in (jit := phase.report()["jit_cores_by_process"]):
                result[path]["broker_jit_cores"] = jit["broker"]
            if post_ms:
                result[path]["post_ms"] = percentiles(post_ms)
    finally:
        watcher.stop()
        await commands.stop()
        for service in SERVICES:
            proc = stack.procs.get(service)
            meter.retire(proc.pid if proc else None)
        await asyncio.to_thread(stack.stop)
        result["cpu"] = meter.report()
    return result


def _rounds(path: str, rounds: int, warm: bool) -> range:
    """The rounds of workload.PATH sent via `path`: the first half via Kafka, the rest via the
    gateway; the measured instances' round 0 is their warm-up."""
    if path == "kafka":
        return range(0 if warm else 1, rounds // 2)
    return range(rounds // 2, rounds)


async def _via_kafka(ctx: Context, settings: Any, tag: str, m: int, r: int, rate: float,
                     sent: dict[str, float], post_ms: list[float]) -> None:
    records = workload.completions(tag, m, rounds=r + 1)[r * m:]
    step = next_step(r)
    producer = AIOKafkaProducer(bootstrap_servers=ctx.bootstrap, linger_ms=0, acks="all")
    await producer.start()

    def note(record: workload.Record, t: float) -> None:
        sent.setdefault(f"{record.key.decode()}/{step}/1", t)

    try:
        await paced_send(producer, settings.completions_topic, records, rate, on_sent=note)
    finally:
        await producer.stop()


async def _via_gateway(ctx: Context, settings: Any, tag: str, m: int, r: int, rate: float,
                       sent: dict[str, float], post_ms: list[float]) -> None:
    """POSTs at `rate`, each sent on time whether or not earlier ones were answered.

    The client is aiohttp's: httpx's connection pool rescans its queue of waiting requests
    for each one, and at 200/s offered it took 65 % of a core in the bench process, which
    then sent only 53-78/s (measured, session 6): the figure was the client's.
    """
    step, outcome = workload.PATH[r]
    after = next_step(r)
    url = f"http://127.0.0.1:{settings.gateway_port}/v1/instances"
    failures: list[str] = []

    async def post(client: aiohttp.ClientSession, iid: str) -> None:
        body: dict[str, Any] = {"step": step, "operator": "bench"}
        if outcome:
            body["outcome"] = outcome
        t = time.time()
        sent.setdefault(f"{iid}/{after}/1", t)
        async with client.post(f"{url}/{iid}/completions", json=body) as response:
            text = await response.text()
            post_ms.append(1000 * (time.time() - t))
            if response.status != 202:
                failures.append(f"{response.status} {text[:200]}")

    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=30)) as client:
        started = time.monotonic()
        tasks = []
        for n in range(m):
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(client, workload.instance_id(tag, n))))
        await asyncio.gather(*tasks)
    if failures:
        raise RuntimeError(f"{len(failures)} POSTs failed, e.g. {failures[0]}")
