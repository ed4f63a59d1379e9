"""The router: a faust app that decodes, calls the pure `decide`, sends, then stores.

Records are routed in batches (`batches.py`). Order matters for "nothing lost": every output of
a batch (commands, events, dead letters, requests to the router's own inputs) is sent and
acknowledged by the broker *before* the batch's new states are written to the changelog-backed
table, and the batch's input records are acknowledged to faust only after that; faust flushes
the producer before it commits an input offset (`transport.py` owns which offset), and that
flush waits for the table writes the router sends itself (`Router._store`). Within a
batch each record is decided in order against the state the records before it produced, so
per-instance order holds. A crash at any point either replays records against the old state
(deterministic: `now` is the event's own time, so the same commands with the same ids come out
again, and consumers dedupe by id) or finds their event ids already in the state (no-ops).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import faust
from faust.types import EventT
from pydantic import BaseModel, ValidationError

from schemas.messages import (
    ControlInstance,
    InstanceAction,
    RejectReason,
    StartInstance,
    StepCompletion,
)
from schemas.topics import (
    CANCEL_V1,
    COMMAND_V1,
    COMPLETED_V1,
    DEAD_LETTER_V1,
    INSTANCE_REQUESTS,
    START_V1,
    STEP_COMPLETIONS,
    instance_event_type,
)
from services.common.envelopes import Decoded, MalformedRecord, decode, encode, encode_json
from services.common.kafka import dead_letter_record
from services.common.metrics import render
from services.common.settings import Settings
from services.router import metrics, sending, store, transport
from services.router.batches import as_current, batches
from services.router.definitions_view import DefinitionsView
from services.router.lag import REFRESH_SECONDS, PartitionGauges
from services.router.partitioner import MemoPartitioner
from services.router.routing import Decision, Graph, InstanceState, decide, resolve_version
from services.router.stall import StallHealer

log = logging.getLogger(__name__)
SERVICE = "router"
DEFINITION_WAIT = 2.0  # seconds to wait for a version an approval has just published
BATCH_MAX = 500  # records per batch: bounds the memory a batch holds and its ack wait
RETRY_MAX_DELAY = 5.0  # seconds between attempts to deliver a batch the broker refused
COMMIT_INTERVAL = 1.0  # seconds between offset commits (faust's `broker_commit_interval`)
# Per partition database (one per input partition this worker owns). faust's defaults
# (64 MB × 3 memtables, a 2 GB block cache) are sized for one big table per machine.
ROCKSDB: dict[str, Any] = {
    "driver": "rocksdict",
    "write_buffer_size": 1 << 20,
    "max_write_buffer_number": 2,
    "block_cache_size": 2 << 20,
    "block_cache_compressed_size": 0,
    "bloom_filter_size": 10,
}


class Rejected(Exception):
    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class Out:
    """One record to produce."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    source: int = 0  # the input partition whose record made it: its transaction, if any
    partition: int | None = None  # None: the key's partition (a changelog write names its own)


@dataclass
class Batch:
    """What a batch has decided so far: outputs to deliver and the newest state per instance."""

    outputs: list[Out] = field(default_factory=list)
    # instance id -> (the record that produced the state, the state): later records read it
    states: dict[str, tuple[EventT, InstanceState]] = field(default_factory=dict)
    # (topic kind, result, started) per record, booked once the batch is delivered
    results: list[tuple[str, str, float]] = field(default_factory=list)
    # instances the table did not hold when the batch first read them
    new: set[str] = field(default_factory=set)
    commands: Counter[str] = field(default_factory=Counter)  # step commands sent, by step type


class Router:
    """Routes batches of input records (per partition, in order)."""

    def __init__(self, settings: Settings, app: faust.App, table: Any,
                 view: DefinitionsView, busy: Callable[[], None] = lambda: None,
                 added: Callable[[int], None] = lambda partition: None) -> None:
        self.settings = settings
        self.busy = busy
        self.added = added  # told the partition of each instance stored for the first time
        self.app = app
        self.table = table
        # Reads go to the table's store: faust's table asks the store whether it holds a key
        # and then for its value, two RocksDB reads where one will do. (A plain mapping, as
        # the golden replays pass, is its own store.)
        self.stored: Mapping[str, Any] = table.data if isinstance(table, faust.Table) else table
        self.view = view
        self.types: dict[str, type[BaseModel]] = {
            **INSTANCE_REQUESTS.types, **STEP_COMPLETIONS.types
        }

    async def handle(self, event: EventT) -> None:
        """Route one record (a batch of one)."""
        await self.handle_batch([event])

    async def handle_batch(self, events: list[EventT]) -> None:
        """Decide each record in order, deliver every output, then store each changed state.

        Never raises for a bad or unroutable record (it goes to dead letters); returns only
        once the outputs are acknowledged and the states stored, so the caller may ack.
        """
        batch = Batch()
        for event in events:
            await self._route(event, batch)
        await self._deliver(batch.outputs)
        await self._store(batch)
        done = time.perf_counter()
        for (kind, result), n in Counter((k, r) for k, r, _ in batch.results).items():
            metrics.EVENTS.labels(kind, result).inc(n)
        for step_type, n in batch.commands.items():
            metrics.COMMANDS.labels(step_type).inc(n)
        for _, result, started in batch.results:
            if result != "duplicate":
                metrics.LATENCY.observe(done - started)
        metrics.BATCH_SIZE.observe(len(events))

    async def _store(self, batch: Batch) -> None:
        """Write each changed state to the table: its store, and its changelog partition (the
        input record's own). Returns once the writes are queued; faust's flush before each
        commit waits for their acks (`transport._Producer.track_changelog`)."""
        producer: Any = self.app.producer  # transport._Producer
        if self.app.in_transaction or not isinstance(self.table, faust.Table):
            for iid, (event, state) in batch.states.items():
                with as_current(event):
                    self.table[iid] = stored_value(state)
            if self.app.in_transaction:  # into the transaction before the batch is acked
                await producer.publish_held()
        else:
            await self._store_batched(batch, producer)
        for iid, (event, _) in batch.states.items():
            if iid in batch.new:
                self.added(event.message.partition)

    async def _store_batched(self, batch: Batch, producer: Any) -> None:
        """The states' changelog writes as record batches (`sending.py`), each serialized once
        for both the store and the changelog, as faust's table would write them."""
        store, aiokafka_producer = self.table.data, producer._ensure_producer()
        limit = aiokafka_producer._max_request_size
        topic = self.table.changelog_topic.get_topic_name()
        writes = []
        for iid, (event, state) in batch.states.items():
            with as_current(event):  # the store's partition is the record's own
                value = stored_value(state)
                out = Out(topic, store._encode_key(iid), store._encode_value(value), [],
                          partition=event.message.partition)
                if sending.too_large(out, limit):
                    self.table[iid] = value  # faust's path, and its error, as before
                    continue
                store._set(out.key, out.value)
            writes.append(out)
        sent, unsent, _ = await sending.send(aiokafka_producer, writes)
        producer.track_changelog(sent, store, unsent)

    async def _route(self, event: EventT, batch: Batch) -> None:
        started = time.perf_counter()
        msg = event.message
        kind = "requests" if msg.topic == self.settings.requests_topic else "completions"
        try:
            with as_current(event):
                decision, ce = await self._decide(msg, batch)
            emitted = self._emit(msg, ce, decision)
        except Rejected as exc:
            batch.outputs.append(self._dead_letter(msg, exc.reason, exc.detail))
            metrics.REJECTIONS.labels(exc.reason.value).inc()
            batch.results.append((kind, "rejected", started))
            return
        except Exception as exc:  # a bug must not stop routing; the record is kept
            log.exception("routing failed for %s[%s]@%s", msg.topic, msg.partition, msg.offset)
            batch.outputs.append(self._dead_letter(
                msg, RejectReason.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}"))
            batch.results.append((kind, "error", started))
            return
        if decision.duplicate:
            metrics.DUPLICATES.inc()
            batch.results.append((kind, "duplicate", started))
            return
        batch.outputs += emitted
        batch.commands.update(command.step_type for command in decision.commands)
        if decision.state is not None:
            batch.states[decision.state.instance_id] = (event, decision.state)
        batch.results.append((kind, "rejected" if decision.rejection else "routed", started))

    async def _decide(self, msg: Any, batch: Batch) -> tuple[Decision, Decoded]:
        try:
            record_time = msg.timestamp if msg.timestamp else None
            ce = decode(msg.headers, msg.key, msg.value,
                        _from_millis(record_time) if record_time else None)
        except MalformedRecord as exc:
            raise Rejected(RejectReason.MALFORMED, str(exc)) from exc
        model = self.types.get(ce.type)
        if model is None:
            raise Rejected(RejectReason.UNSUPPORTED_TYPE,
                           f"{ce.type!r} is not accepted on {msg.topic}")
        data = dict(ce.data)
        if ce.type.startswith("flowline.instance.") and ce.type != START_V1:
            # The type says what to do; a contradicting `action` in the data must not win.
            data["action"] = ce.type.split(".")[2]
        try:
            message = model.model_validate(data)
        except ValidationError as exc:
            raise Rejected(RejectReason.MALFORMED, _short(exc)) from exc
        iid: str = message.instance_id  # type: ignore[attr-defined]
        key = msg.key.decode("utf-8", "replace") if isinstance(msg.key, bytes) else msg.key
        if key != iid:
            # Per-instance order and state locality rely on the key being the instance id.
            raise Rejected(RejectReason.MALFORMED,
                           f"record key {key!r} is not the instance id {iid!r}")
        state = self._state(iid, batch)
        graph = await self._graph(message, state)
        target = await self._migration_target(message, state)
        decision = decide(graph, state, message, ce.id, ce.time,  # type: ignore[arg-type]
                          target)
        return decision, ce

    async def _migration_target(self, message: BaseModel,
                                state: InstanceState | None) -> Graph | None:
        """The version a `migrate` control names, when the router knows it."""
        if not isinstance(message, ControlInstance) or state is None \
                or message.action != InstanceAction.MIGRATE or message.to_version is None:
            return None
        await self.view.wait_for(state.tenant, state.process_key, message.to_version,
                                 DEFINITION_WAIT)
        return self.view.graph(state.tenant, state.process_key, message.to_version)

    def _state(self, iid: str, batch: Batch) -> InstanceState | None:
        """The newest state: this batch's, else the table's (`decide` never mutates it)."""
        pending = batch.states.get(iid)
        if pending is not None:
            return pending[1]
        stored = self.stored.get(iid)
        if not stored:
            batch.new.add(iid)
            return None
        return InstanceState.from_dict(stored)

    async def _graph(self, message: BaseModel, state: InstanceState | None) -> Graph | None:
        if isinstance(message, StartInstance):
            await self.view.wait_for(message.tenant, message.process, message.version,
                                     DEFINITION_WAIT)
            version = resolve_version(self.view.versions(message.tenant, message.process),
                                      message.version)
            return self.view.graph(version.tenant, version.key, version.version) \
                if version else None
        if state is None:
            return None
        await self.view.wait_for(state.tenant, state.process_key, state.version,
                                 DEFINITION_WAIT)
        return self.view.graph(state.tenant, state.process_key, state.version)

    def _emit(self, msg: Any, ce: Decoded, decision: Decision) -> list[Out]:
        """The records a decision produces, encoded; ids are deterministic so replays dedupe."""
        s = self.settings
        out = []
        for command in decision.commands:
            headers, value = encode_json(COMMAND_V1, command.dump_json(), service=SERVICE,
                                         event_id=command.command_id,
                                         subject=command.instance_id,
                                         time=_parse(command.entered_at))
            out.append(Out(s.commands_topic, command.instance_id.encode(), value, headers,
                           msg.partition))
        for n, ev in enumerate(decision.events):
            headers, value = encode_json(instance_event_type(ev.kind.value), ev.dump_json(),
                                         service=SERVICE, event_id=f"{ev.source_event_id}/{n}",
                                         subject=ev.instance_id, time=_parse(ev.at))
            out.append(Out(s.instance_events_topic, ev.instance_id.encode(), value, headers,
                           msg.partition))
        # Messages to the router's own inputs: a subprocess step starts its child (id
        # "start:<child>", so a replay starts it once), a child that ended completes its
        # parent's step and an ended parent cancels its children (id "<this event's
        # id>/req/<n>", deterministic like the rest).
        for n, request in enumerate(getattr(decision, "requests", None) or ()):
            out.append(self._request(request, f"{ce.id}/req/{n}", ce.time, msg.partition))
        if decision.rejection:
            out.append(self._dead_letter(msg, decision.rejection.reason,
                                         decision.rejection.detail))
            metrics.REJECTIONS.labels(decision.rejection.reason.value).inc()
        return out

    def _request(self, request: StartInstance | StepCompletion | ControlInstance,
                 event_id: str, at: datetime, source: int) -> Out:
        s = self.settings
        iid = request.instance_id
        if isinstance(request, StartInstance):
            topic, ce_type, event_id = s.requests_topic, START_V1, f"start:{iid}"
        elif isinstance(request, StepCompletion):
            topic, ce_type = s.completions_topic, COMPLETED_V1
        elif isinstance(request, ControlInstance) and request.action == InstanceAction.CANCEL:
            topic, ce_type = s.requests_topic, CANCEL_V1
        else:
            raise TypeError(f"the router cannot send a {type(request).__name__} to itself")
        headers, value = encode_json(ce_type, request.dump_json(), service=SERVICE,
                                     event_id=event_id, subject=iid, time=at)
        return Out(topic, iid.encode(), value, headers, source)

    def _dead_letter(self, msg: Any, reason: RejectReason, detail: str) -> Out:
        log.warning("rejected %s[%s]@%s: %s %s", msg.topic, msg.partition, msg.offset,
                    reason.value, detail)
        key, data = dead_letter_record(
            consumer=SERVICE, topic=msg.topic, partition=msg.partition, offset=msg.offset,
            key=msg.key, headers=msg.headers, value=msg.value, reason=reason, detail=detail)
        headers, value = encode(DEAD_LETTER_V1, data, service=SERVICE,
                                event_id=f"{msg.topic}/{msg.partition}/{msg.offset}")
        return Out(self.settings.dead_letters_topic, key.encode(), value, headers,
                   msg.partition)

    async def _deliver(self, outputs: list[Out]) -> None:
        """Send every record without waiting (`sending.py`), then wait for all acks at once.

        A batch the broker does not acknowledge (after the client's own retries) is sent
        again, whole and in order, until it is: consumers dedupe by id, and storing state or
        committing an input past an undelivered output would lose it. The one exception is a
        record too large for the broker, which no retry can deliver: it is logged and
        counted, and the rest of the batch goes on (else one record would stop the router).
        """
        if self.app.in_transaction:
            return await self._deliver_in_transactions(outputs)
        delay = 0.1
        alone: frozenset[int] = frozenset()  # records to send in a record batch of their own
        while True:
            faust_producer: Any = self.app.producer  # transport._Producer
            producer = faust_producer._ensure_producer()  # aiokafka's, under faust's
            limit = producer._max_request_size
            outputs = [o for o in outputs if not self._over_the_limit(o, limit)]
            # Not even queued: the same remedy as a failed ack.
            sent, unsent, refused = await sending.send(producer, outputs, alone)
            answers = await sending.acknowledged(sent)
            for o, exc in answers.too_large:
                self._unsendable(o, exc)
            outputs, alone = answers.again + unsent, answers.alone  # refused: each alone, now
            failure = refused or answers.failure
            if not outputs:
                return
            if failure is None:
                continue
            metrics.DELIVERY_RETRIES.inc()
            self.busy()  # retrying is not idling: the stall healer must not step in
            log.error("outputs not acknowledged (%s: %s); sending the batch's %d again in "
                      "%.1fs", type(failure).__name__, failure, len(outputs), delay)
            await asyncio.sleep(delay)
            delay = min(2 * delay, RETRY_MAX_DELAY)

    async def _deliver_in_transactions(self, outputs: list[Out]) -> None:
        """Send each output in its input partition's transaction and wait for the acks.

        A failed send leaves its transaction unable to commit, so nothing is retried here:
        the worker stops (faust's `crash`), and the restarted one aborts what was open (a
        new producer with the same transactional id fences the old) and routes the batch's
        records again from the committed offsets.
        """
        tm: Any = self.app.consumer.transactions  # transport._TransactionManager
        try:
            sent = [await tm.send(o.topic, o.key, o.value, None, None, o.headers,
                                  transactional_id=tm.for_partition(o.source))
                    for o in outputs]
            await asyncio.gather(*sent)
        except Exception as exc:
            log.critical("a transaction could not take the batch's outputs (%s: %s); "
                         "stopping, a restart routes the batch again", type(exc).__name__, exc)
            await self.app.crash(exc)
            raise

    def _over_the_limit(self, out: Out, limit: int) -> bool:
        """Whether aiokafka would refuse `out` for its size (then it is dropped, logged)."""
        error = sending.too_large(out, limit)
        if error is not None:
            self._unsendable(out, error)
        return error is not None

    def _unsendable(self, out: Out, exc: BaseException) -> None:
        metrics.UNSENDABLE.labels(out.topic).inc()
        ce_id = dict(out.headers).get("ce_id", b"?").decode("utf-8", "replace")
        log.error("dropped an output the broker refuses as too large (%s): topic %s, key %r, "
                  "ce_id %s, %d bytes", type(exc).__name__, out.topic, out.key, ce_id,
                  len(out.value))


def stored_value(state: InstanceState) -> dict[str, Any]:
    """What the table stores for a state: `state.to_dict()`, without its deep copy.

    `to_dict` is `dataclasses.asdict`, which copies every nested dict and list (7 % of the
    router's CPU in the batched profile). Nothing changes a state once `decide` has returned
    it (`decide` copies its input before changing anything, tested in
    `test_decide_does_not_mutate_the_state_it_is_given`), so the table may share them.
    """
    return {f.name: getattr(state, f.name) for f in fields(state)}


def _from_millis(ms: float) -> datetime:
    # faust gives the record timestamp in seconds (float); aiokafka in milliseconds.
    seconds = ms / 1000.0 if ms > 1e11 else ms
    return datetime.fromtimestamp(seconds, UTC)


def _parse(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def _short(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])


def create_app(settings: Settings, view: DefinitionsView | None = None) -> faust.App:
    """Build the router app; nothing connects until the worker starts it.

    The worker must also run `view` (the definitions reader) as a service: see `main.run`.
    """
    transport.register()
    store.register()
    app = faust.App(
        settings.router_app_id,
        broker=f"flowline://{settings.kafka_bootstrap}",
        # Instance state lives off the Python heap (bench `memory`: 2.6 KB per instance as a
        # dict, 0.2-0.4 KB with RocksDB): one database per partition, small memtables and
        # caches (ROCKSDB), rebuilt from the changelog at every start (`main.py` says why);
        # each partition's applied changelog offset is kept in memory (`store.py`).
        store=f"{store.SCHEME}://",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        # STYLE.md: faust's defaults make every rebalance wait ≥30 s.
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        broker_rebalance_timeout=20,
        broker_commit_interval=COMMIT_INTERVAL,
        # The router awaits each batch's acks before the next, and aiokafka batches while a
        # request is in flight: a linger adds latency at low rates and, re-measured in
        # session 4, saved no CPU under full load (bench/results/NOTES.md).
        producer_linger=settings.router_linger_ms / 1000,
        producer_partitioner=MemoPartitioner(),  # Kafka's partitioning; each key hashed once
        # faust waits this long after a rebalance for more members to come before it recovers
        # tables and routes (bench, kill -9 → first command: 1.0 s → 0: about -0.5 s).
        stream_recovery_delay=0.0,
        consumer_auto_offset_reset="earliest",
        processing_guarantee=settings.router_guarantee,
        table_standby_replicas=0,
        web_enabled=True,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_port=settings.router_web_port,
        web_in_thread=False,
        datadir=str(settings.data_dir / "router"),
    )
    table = app.Table("instances", default=None, partitions=settings.partitions,
                      options=dict(ROCKSDB))
    if view is None:  # not `or`: an empty view has len 0 and is falsy
        view = DefinitionsView(settings.kafka_bootstrap, settings.definitions_topic,
                               settings.fetch_max_wait_ms)
    healer = StallHealer(app, {settings.requests_topic, settings.completions_topic},
                         settings.kafka_bootstrap,
                         hole_seconds=0.5 if settings.router_transactions else None)
    gauges = PartitionGauges(app, table, {settings.requests_topic, settings.completions_topic})
    router = Router(settings, app, table, view, busy=healer.saw_event, added=gauges.sizes.added)
    # Both read end offsets through `transport.py`'s one probe consumer, which the consumer
    # thread may run twice at once: it would be reassigned under one reader by the other.
    reading_ends = asyncio.Lock()
    inputs = app.topic(settings.requests_topic, settings.completions_topic,
                       key_serializer="raw", value_serializer="raw")

    @app.agent(inputs, name="route")
    async def route(stream: Any) -> None:
        routing = route_batches(stream)
        healer.agent = routing  # where it waits, should a stall outlast re-reading
        await routing

    async def route_batches(stream: Any) -> None:
        # Closed as the agent ends, however it ends: that stops the task taking events.
        async with contextlib.aclosing(batches(stream, BATCH_MAX)) as taken:
            async for events in taken:
                consumer: Any = app.consumer  # transport._Consumer
                consumer.took()  # a delivery held for room in the stream buffer may go on
                async with consumer.batch_guard:  # a transaction's commit waits for this
                    if not app.flow_control.is_active():  # a rebalance began: read again
                        consumer.forget([event.message for event in events])
                        continue
                    healer.saw_event()
                    await router.handle_batch(events)
                    for event in events:  # only now: outputs acknowledged, states stored
                        await stream.ack(event)

    @app.on_rebalance_complete.connect
    def _freeze_the_heap(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Once the worker is up (and after each rebalance) what is alive stays: the app, its
        # consumers, producers, tables. Left in the collector's oldest generation, every full
        # collection walked them all, ~110,000 objects, in 66-102 ms with the event loop
        # stopped; frozen, full collections walk only what came after, in 0.4-8 ms
        # (measured with a gc callback, session 10).
        gc.freeze()

    @app.timer(interval=0.25 if settings.router_transactions else 1.0)
    async def _heal_stalls() -> None:
        async with reading_ends:
            await healer.check()

    @app.timer(interval=REFRESH_SECONDS)
    async def _gauges() -> None:
        async with reading_ends:
            await gauges.refresh()
        metrics.DEFINITIONS.set(len(view))

    @app.page("/metrics")
    async def _metrics(web: Any, request: Any) -> Any:
        body, _ = render()
        # aiohttp refuses a charset inside content_type; Prometheus text is ASCII anyway.
        return web.bytes(body, content_type="text/plain; version=0.0.4")

    @app.page("/healthz")
    async def _health(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "definitions": len(view),
                         "instances": sum(gauges.sizes.counts().values())})

    return app
