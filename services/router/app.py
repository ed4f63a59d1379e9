"""The router: a faust app that decodes, calls the pure `decide`, sends, then stores.

Order matters for "nothing lost": a record's outputs (commands, events, dead letters) are sent
and acknowledged by the broker *before* the new state is written to the changelog-backed table,
and faust flushes the producer before it commits the input offset. A crash at any point either
replays the record against the old state (deterministic: `now` is the event's own time, so the
same commands with the same ids come out again, and consumers dedupe by id) or finds its event id
already in the state (a no-op).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

import faust
from faust.types import EventT
from pydantic import BaseModel, ValidationError

from schemas.messages import RejectReason, StartInstance
from schemas.topics import (
    COMMAND_V1,
    DEAD_LETTER_V1,
    INSTANCE_REQUESTS,
    STEP_COMPLETIONS,
    instance_event_type,
)
from services.common.envelopes import MalformedRecord, decode, encode
from services.common.kafka import dead_letter_record
from services.common.metrics import render
from services.common.settings import Settings
from services.router import metrics, transport
from services.router.definitions_view import DefinitionsView
from services.router.routing import Decision, Graph, InstanceState, decide, resolve_version
from services.router.stall import StallHealer

log = logging.getLogger(__name__)
SERVICE = "router"
DEFINITION_WAIT = 2.0  # seconds to wait for a version an approval has just published


class Rejected(Exception):
    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


class Router:
    """Handles one input record at a time (per partition, in order)."""

    def __init__(self, settings: Settings, app: faust.App, table: Any,
                 view: DefinitionsView) -> None:
        self.settings = settings
        self.table = table
        self.view = view
        raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw",
                               "partitions": settings.partitions}
        self.commands = app.topic(settings.commands_topic, **raw)
        self.events = app.topic(settings.instance_events_topic, **raw)
        self.dead_letters = app.topic(settings.dead_letters_topic, **raw)
        self.types: dict[str, type[BaseModel]] = {
            **INSTANCE_REQUESTS.types, **STEP_COMPLETIONS.types
        }

    async def handle(self, event: EventT) -> None:
        started = time.perf_counter()
        msg = event.message
        kind = "requests" if msg.topic == self.settings.requests_topic else "completions"
        try:
            decision = await self._decide(msg)
        except Rejected as exc:
            await self._dead_letter(msg, exc.reason, exc.detail)
            metrics.EVENTS.labels(kind, "rejected").inc()
            metrics.REJECTIONS.labels(exc.reason.value).inc()
            return
        if decision.duplicate:
            metrics.DUPLICATES.inc()
            metrics.EVENTS.labels(kind, "duplicate").inc()
            return
        await self._emit(msg, decision)
        if decision.state is not None:
            self.table[decision.state.instance_id] = decision.state.to_dict()
        result = "rejected" if decision.rejection else "routed"
        metrics.EVENTS.labels(kind, result).inc()
        metrics.LATENCY.observe(time.perf_counter() - started)

    async def _decide(self, msg: Any) -> Decision:
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
        if ce.type.startswith("flowline.instance.") and ce.type != "flowline.instance.start.v1":
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
        stored = self.table.get(iid)
        state = InstanceState.from_dict(stored) if stored else None
        graph = await self._graph(message, state)
        return decide(graph, state, message, ce.id, ce.time)  # type: ignore[arg-type]

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

    async def _emit(self, msg: Any, decision: Decision) -> None:
        pending = []
        for command in decision.commands:
            headers, value = encode(COMMAND_V1, command.dump(), service=SERVICE,
                                    event_id=command.command_id, subject=command.instance_id,
                                    time=_parse(command.entered_at))
            pending.append(await self.commands.send(
                key=command.instance_id.encode(), value=value, headers=headers))
            metrics.COMMANDS.labels(command.step_type).inc()
        for n, ev in enumerate(decision.events):
            # Deterministic ids: a replay after a crash emits the same events, not new ones.
            event_id = f"{ev.source_event_id}/{n}"
            headers, value = encode(instance_event_type(ev.kind.value), ev.dump(),
                                    service=SERVICE, event_id=event_id,
                                    subject=ev.instance_id, time=_parse(ev.at))
            pending.append(await self.events.send(
                key=ev.instance_id.encode(), value=value, headers=headers))
        if decision.rejection:
            pending.append(await self._send_dead_letter(
                msg, decision.rejection.reason, decision.rejection.detail))
            metrics.REJECTIONS.labels(decision.rejection.reason.value).inc()
        if pending:
            await asyncio.gather(*pending)

    async def _dead_letter(self, msg: Any, reason: RejectReason, detail: str) -> None:
        await (await self._send_dead_letter(msg, reason, detail))

    async def _send_dead_letter(self, msg: Any, reason: RejectReason, detail: str) -> Any:
        log.warning("rejected %s[%s]@%s: %s %s", msg.topic, msg.partition, msg.offset,
                    reason.value, detail)
        key, data = dead_letter_record(
            consumer=SERVICE, topic=msg.topic, partition=msg.partition, offset=msg.offset,
            key=msg.key, headers=msg.headers, value=msg.value, reason=reason, detail=detail)
        headers, value = encode(DEAD_LETTER_V1, data, service=SERVICE,
                                event_id=f"{msg.topic}/{msg.partition}/{msg.offset}")
        return await self.dead_letters.send(key=key.encode(), value=value, headers=headers)


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
    app = faust.App(
        settings.router_app_id,
        broker=f"flowline://{settings.kafka_bootstrap}",
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        # STYLE.md: faust's defaults make every rebalance wait ≥30 s.
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        broker_rebalance_timeout=20,
        broker_commit_interval=1.0,
        # The router awaits the acks of each record before the next: a linger only adds
        # latency with nothing to batch (bench, Kafka, 1k instances: 125 -> 184-202 routed/s).
        producer_linger=0.0,
        stream_recovery_delay=1.0,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        web_enabled=True,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_port=settings.router_web_port,
        web_in_thread=False,
        datadir=str(settings.data_dir / "router"),
    )
    table = app.Table("instances", default=None, partitions=settings.partitions)
    if view is None:  # not `or`: an empty view has len 0 and is falsy
        view = DefinitionsView(settings.kafka_bootstrap, settings.definitions_topic)
    router = Router(settings, app, table, view)
    inputs = app.topic(settings.requests_topic, settings.completions_topic,
                       key_serializer="raw", value_serializer="raw")

    @app.agent(inputs, name="route")
    async def route(stream: Any) -> None:
        async for event in stream.events():
            healer.saw_event()
            try:
                await router.handle(event)
            except Exception as exc:  # a bug must not stop routing; the record is kept
                log.exception("routing failed for %s", event.message.topic)
                await router._dead_letter(event.message, RejectReason.PROCESSING_ERROR,
                                          f"{type(exc).__name__}: {exc}")

    healer = StallHealer(app, {settings.requests_topic, settings.completions_topic},
                         settings.kafka_bootstrap)

    @app.timer(interval=1.0)
    async def _heal_stalls() -> None:
        await healer.check()

    @app.timer(interval=5.0)
    async def _gauges() -> None:
        metrics.INSTANCES.set(len(table))
        metrics.DEFINITIONS.set(len(view))

    @app.page("/metrics")
    async def _metrics(web: Any, request: Any) -> Any:
        body, _ = render()
        # aiohttp refuses a charset inside content_type; Prometheus text is ASCII anyway.
        return web.bytes(body, content_type="text/plain; version=0.0.4")

    @app.page("/healthz")
    async def _health(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "definitions": len(view), "instances": len(table)})

    return app
